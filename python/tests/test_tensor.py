"""radiant.Tensor: device-resident tensors.

Round trips on every available device and dtype, moves between devices,
the copy / share rules, and every op on Tensors against the same op on numpy
arrays (results must be identical: the same kernels run on the same bytes).
"""

import gc
import subprocess
import sys

import numpy as np
import pytest

import radiant

from test_ops import BF16, DEVICES, DTYPES, rnd

HOST = ["cpu", "reference"]
GPU = [d for d in DEVICES if d not in HOST]

ALL_DTYPES = [np.float32, np.float16, np.int32, np.uint8] + (
    [pytest.param(BF16, id="bfloat16")] if BF16 is not None else []
)


def sample(rng, shape, dtype):
    if dtype in (np.int32, np.uint8):
        return np.asarray(rng.integers(0, 100, size=shape)).astype(dtype)
    return np.asarray(rng.standard_normal(shape)).astype(dtype)


# ---------------------------------------------------------------- basics


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("shape", [(3, 5), (7,), (2, 3, 4), (), (0, 4)])
def test_round_trip(device, dtype, shape):
    x = sample(np.random.default_rng(0), shape, dtype)
    t = radiant.tensor(x, device=device)
    assert isinstance(t, radiant.Tensor)
    assert t.shape == shape
    assert t.ndim == len(shape)
    assert t.dtype == np.dtype(dtype).name
    assert t.device == device
    assert t.nbytes == x.nbytes
    back = t.numpy()
    assert back.dtype == x.dtype and back.shape == x.shape
    np.testing.assert_array_equal(back.reshape(-1).view(np.uint8), x.reshape(-1).view(np.uint8))
    np.testing.assert_array_equal(np.asarray(t).reshape(-1).view(np.uint8), x.reshape(-1).view(np.uint8))
    assert repr(t) == f"radiant.Tensor(shape={shape}, dtype={t.dtype}, device='{device}')"
    # Tensor.from_numpy is the same thing.
    u = radiant.Tensor.from_numpy(x, device=device)
    np.testing.assert_array_equal(u.numpy().reshape(-1).view(np.uint8), x.reshape(-1).view(np.uint8))


def test_default_device_and_constructor():
    t = radiant.tensor(np.ones(3, np.float32))
    assert t.device == radiant.Device("best").name
    assert len(t) == 3
    with pytest.raises(TypeError):
        radiant.Tensor()
    with pytest.raises(TypeError):
        len(radiant.tensor(np.ones((), np.float32), device="cpu"))
    with pytest.raises(TypeError, match="numpy"):
        radiant.Tensor.from_numpy([1.0, 2.0])
    with pytest.raises(TypeError, match="numpy"):
        radiant.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="dtype"):
        radiant.tensor(np.ones(3, np.float64), device="cpu")
    with pytest.raises(ValueError, match="contiguous"):
        radiant.tensor(np.ones((4, 4), np.float32)[:, ::2], device="cpu")


@pytest.mark.parametrize("src", DEVICES)
@pytest.mark.parametrize("dst", DEVICES)
def test_to(src, dst):
    x = rnd(np.random.default_rng(1), (4, 6), np.float16)
    t = radiant.tensor(x, device=src)
    u = t.to(dst)
    assert u.device == dst
    np.testing.assert_array_equal(u.numpy(), x)
    if src == dst:
        assert u is t
    w = t.to(radiant.Device(dst))
    assert w.device == dst


def test_host_devices_share_memory():
    x = np.zeros(8, np.float32)
    t = radiant.tensor(x, device="cpu")
    r = t.to("reference")
    x[3] = 5.0  # t and r both alias x
    assert t.numpy()[3] == 5.0 and r.numpy()[3] == 5.0


# ---------------------------------------------------------------- copy rules


@pytest.mark.parametrize("device", HOST)
def test_numpy_is_shared_on_host(device):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = radiant.tensor(x, device=device)
    x[1, 2] = -7.0
    assert t.numpy()[1, 2] == -7.0
    c = radiant.tensor(x, device=device, copy=True)
    x[1, 2] = 3.0
    assert c.numpy()[1, 2] == -7.0
    s = radiant.tensor(x, device=device, copy=False)
    x[0, 0] = 9.0
    assert s.numpy()[0, 0] == 9.0


def test_source_outlives_python_reference():
    x = np.arange(1000, dtype=np.float32)
    t = radiant.tensor(x, device="cpu")
    del x
    gc.collect()
    np.testing.assert_array_equal(t.numpy(), np.arange(1000, dtype=np.float32))


def test_read_only_and_unaligned_are_copied():
    ro = np.arange(8, dtype=np.float32)
    ro.flags.writeable = False
    t = radiant.tensor(ro, device="cpu")
    np.testing.assert_array_equal(t.numpy(), ro)
    with pytest.raises(BufferError, match="read-only"):
        radiant.tensor(ro, device="cpu", copy=False)
    raw = np.zeros(65, np.uint8)
    odd = raw[1:]  # 1 byte past an aligned start
    assert odd.ctypes.data % 4 != 0
    t = radiant.tensor(odd, device="cpu")
    raw[5] = 7
    assert t.numpy()[4] == 0  # a copy
    with pytest.raises(BufferError, match="aligned"):
        radiant.tensor(odd, device="cpu", copy=False)


@pytest.mark.skipif(not GPU, reason="no GPU device (wgpu / cuda) available")
def test_gpu_tensor_copies():
    x = np.ones(4, np.float32)
    t = radiant.tensor(x, device=GPU[0])
    x[0] = 2.0
    assert t.numpy()[0] == 1.0
    with pytest.raises(BufferError):
        radiant.tensor(x, device=GPU[0], copy=False)
    with pytest.raises(BufferError):
        radiant.tensor(t, device="cpu", copy=False)
    u = radiant.tensor(t, device="cpu")
    assert u.device == "cpu" and u.numpy()[0] == 1.0


# ---------------------------------------------------------------- ops on Tensors


def both(device, fn, *arrays, **kw):
    """fn on numpy arrays and on Tensors of the same arrays: (numpy, Tensor)."""
    want = fn(*arrays, device=device, **kw)
    tensors = [radiant.tensor(a, device=device) for a in arrays]
    got = fn(*tensors, **kw)  # device comes from the tensors
    return want, got


def same(got, want):
    assert isinstance(got, radiant.Tensor)
    np.testing.assert_array_equal(got.numpy().view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_tensors(device, dtype):
    rng = np.random.default_rng(2)
    a, b, bias = rnd(rng, (2, 5, 24), dtype), rnd(rng, (7, 24), dtype), rnd(rng, (7,), dtype)
    want, got = both(device, radiant.matmul, a, b, bias, b_layout="nk")
    same(got, want)
    assert got.device == device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_tensors(device, dtype):
    rng = np.random.default_rng(3)
    want, got = both(device, radiant.rms_norm, rnd(rng, (3, 64), dtype), rnd(rng, (64,), dtype),
                     eps=1e-5, weight_offset=1.0)
    same(got, want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_add_rms_norm_tensors(device, dtype):
    rng = np.random.default_rng(4)
    x, r, w = rnd(rng, (6, 32), dtype), rnd(rng, (6, 32), dtype), rnd(rng, (32,), dtype)
    r_orig = r.copy()
    out, res = radiant.fused_add_rms_norm(x, r, w, device=device)
    np.testing.assert_array_equal(r, r_orig)  # a numpy residual is never modified
    tx, tr, tw = (radiant.tensor(a, device=device) for a in (x, r, w))
    tout, tres = radiant.fused_add_rms_norm(tx, tr, tw)
    same(tout, out)
    assert tres is tr  # a Tensor residual is updated in place
    same(tr, res)
    if device in HOST:  # ... and tr shares r's memory on a host device
        np.testing.assert_array_equal(r, res)
    # a numpy residual beside Tensors is still not modified
    r2 = r_orig.copy()
    _, res2 = radiant.fused_add_rms_norm(tx, r2, tw)
    np.testing.assert_array_equal(r2, r_orig)
    same(res2, res)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_tensors(device, dtype):
    rng = np.random.default_rng(5)
    cq, ck = np.array([0, 3, 7], np.int32), np.array([0, 5, 11], np.int32)
    q, k, v = rnd(rng, (7, 4, 16), dtype), rnd(rng, (11, 2, 16), dtype), rnd(rng, (11, 2, 16), dtype)
    (want, want_lse), (got, got_lse) = both(device, radiant.attention, q, k, v, cq, ck,
                                            causal=True, return_lse=True)
    same(got, want)
    same(got_lse, want_lse)
    want, got = both(device, radiant.paged_attention, rnd(rng, (2, 4, 16), dtype),
                     rnd(rng, (6, 4, 2, 16), dtype), rnd(rng, (6, 4, 2, 16), dtype),
                     np.array([[1, 4], [5, 0]], np.int32), np.array([7, 3], np.int32))
    same(got, want)


@pytest.mark.parametrize("device", DEVICES)
def test_mixed_inputs(device):
    rng = np.random.default_rng(6)
    x, w = rnd(rng, (4, 32), np.float32), rnd(rng, (16, 32), np.float32)
    tw = radiant.tensor(w, device=device)
    want = radiant.matmul(x, w, b_layout="nk", device=device)
    got = radiant.matmul(x, tw, b_layout="nk")  # numpy main input: numpy out, on tw's device
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, want)
    got = radiant.matmul(radiant.tensor(x, device=device), w, b_layout="nk")
    same(got, want)


def test_wrong_device_and_aliasing():
    x = np.ones((2, 8), np.float32)
    t = radiant.tensor(x, device="cpu")
    if GPU:
        with pytest.raises(ValueError, match=r"\.to\("):
            radiant.rms_norm(t, np.ones(8, np.float32), device=GPU[0])
    # host tensors are usable on either host device
    radiant.rms_norm(t, np.ones(8, np.float32), device="reference")
    # the in-place residual must not share memory with x
    r = radiant.tensor(x, device="cpu")
    with pytest.raises(ValueError, match="shares memory"):
        radiant.fused_add_rms_norm(x, r, np.ones(8, np.float32))
    with pytest.raises(ValueError):
        radiant.fused_add_rms_norm(r, r, np.ones(8, np.float32))


def test_threads_with_tensors():
    import concurrent.futures

    rng = np.random.default_rng(7)
    a = radiant.tensor(rnd(rng, (64, 128), np.float32), device="cpu")
    b = radiant.tensor(rnd(rng, (128, 64), np.float32), device="cpu")
    want = radiant.matmul(a, b).numpy()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: radiant.matmul(a, b).numpy(), range(16)))
    for out in outs:
        np.testing.assert_array_equal(out, want)


def test_interpreter_survives_bad_tensor_use():
    code = (
        "import gc, numpy as np, radiant\n"
        "t = radiant.tensor(np.ones((2, 8), np.float32), device='cpu')\n"
        "bad = [lambda: radiant.tensor(np.ones(3, np.float64)),\n"
        "       lambda: radiant.tensor(np.ones((4, 4), np.float32).T),\n"
        "       lambda: radiant.rms_norm(t, np.ones(9, np.float32)),\n"
        "       lambda: radiant.fused_add_rms_norm(t, t, np.ones(8, np.float32)),\n"
        "       lambda: radiant.matmul(t, t),\n"
        "       lambda: t.to('nosuch'),\n"
        "       lambda: radiant.Tensor()]\n"
        "n = 0\n"
        "for f in bad:\n"
        "    try: f()\n"
        "    except (ValueError, TypeError, RuntimeError, BufferError): n += 1\n"
        "assert n == len(bad), n\n"
        "v = np.from_dlpack(t); del t; gc.collect(); assert v.sum() == 16\n"
        "print('alive')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "alive" in res.stdout
