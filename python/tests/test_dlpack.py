"""DLPack: radiant as a consumer (from_dlpack, op arguments) and as a
producer (Tensor.__dlpack__), with numpy and — when it is installed — torch.

Zero-copy is proven by mutation: a change made through one side must be
visible through the other. Lifetimes are proven with weak references: the
producer stays alive while radiant uses its memory and is released (its
deleter called) once radiant is done. Anything that could crash runs in a
child interpreter.
"""

import ctypes
import gc
import subprocess
import sys
import weakref

import numpy as np
import pytest

import radiant

from test_ops import BF16, DEVICES

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed (pip install torch to run these)")
GPU = [d for d in DEVICES if d not in ("cpu", "reference")]


class Producer:
    """Exposes only the DLPack protocol of an array (so radiant cannot take
    the numpy path); `legacy=True` mimics a pre-1.0 producer without
    max_version."""

    def __init__(self, array, legacy=False):
        self.array = array
        self.legacy = legacy
        self.calls = []

    def __dlpack__(self, stream=None, **kw):
        self.calls.append(kw)
        if self.legacy:
            if kw:
                raise TypeError("unexpected keyword")
            return self.array.__dlpack__()
        return self.array.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


def capsule_name(cap):
    return repr(cap).split('"')[1]


# ---------------------------------------------------------------- radiant as a consumer


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_import_is_zero_copy_on_host(device, legacy):
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    p = Producer(a, legacy=legacy)
    t = radiant.from_dlpack(p, device=device)
    assert t.shape == (4, 6) and t.dtype == "float32" and t.device == device
    a[2, 3] = -1.0  # mutate the source: the radiant tensor sees it
    assert t.numpy()[2, 3] == -1.0
    if not legacy:
        assert p.calls[0].get("max_version") == (1, 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.uint8])
def test_import_values(device, dtype):
    a = (np.arange(30) % 7).astype(dtype).reshape(5, 6)
    t = radiant.Tensor.from_dlpack(Producer(a), device=device)
    np.testing.assert_array_equal(t.numpy(), a)


def test_import_copy_rules():
    a = np.ones(8, np.float32)
    c = radiant.from_dlpack(Producer(a), device="cpu", copy=True)
    a[0] = 5.0
    assert c.numpy()[0] == 1.0
    ro = np.ones(8, np.float32)
    ro.flags.writeable = False
    t = radiant.from_dlpack(Producer(ro), device="cpu")  # versioned: READ_ONLY flag -> copy
    np.testing.assert_array_equal(t.numpy(), ro)
    with pytest.raises(BufferError, match="read-only"):
        radiant.from_dlpack(Producer(ro), device="cpu", copy=False)
    if GPU:
        g = radiant.from_dlpack(Producer(a), device=GPU[0])
        a[1] = 9.0
        assert g.numpy()[1] == 1.0


def test_import_byte_offset():
    base = np.arange(40, dtype=np.float32)
    view = base[8:]  # numpy exports a shifted data pointer (or byte_offset)
    t = radiant.from_dlpack(Producer(view), device="cpu")
    base[10] = 100.0
    assert t.numpy()[2] == 100.0


def test_capsule_directly_and_only_once():
    a = np.arange(5, dtype=np.float32)
    cap = a.__dlpack__()
    assert capsule_name(cap) == "dltensor"
    t = radiant.from_dlpack(cap, device="cpu")
    assert capsule_name(cap) == "used_dltensor"
    np.testing.assert_array_equal(t.numpy(), a)
    with pytest.raises(ValueError, match="already consumed"):
        radiant.from_dlpack(cap)
    vcap = a.__dlpack__(max_version=(1, 0))
    assert capsule_name(vcap) == "dltensor_versioned"
    radiant.from_dlpack(vcap, device="cpu")
    assert capsule_name(vcap) == "used_dltensor_versioned"


def test_producer_lifetime_and_single_delete():
    """The producer lives while radiant uses it and is freed afterwards;
    a double call of its deleter would corrupt numpy's refcounts, so this
    runs in a child interpreter that must exit cleanly."""
    code = (
        "import gc, weakref, numpy as np, radiant\n"
        "class P:\n"
        "    def __init__(s, a): s.a = a\n"
        "    def __dlpack__(s, **kw): return s.a.__dlpack__(**kw)\n"
        "    def __dlpack_device__(s): return s.a.__dlpack_device__()\n"
        "for legacy in (False, True):\n"
        "    a = np.arange(100, dtype=np.float32)\n"
        "    ref = weakref.ref(a)\n"
        "    cap = a.__dlpack__() if legacy else a.__dlpack__(max_version=(1, 0))\n"
        "    t = radiant.from_dlpack(cap, device='cpu')\n"
        "    del a, cap; gc.collect()\n"
        "    assert ref() is not None, 'freed while radiant uses it'\n"
        "    y = radiant.rms_norm(t, np.ones(100, np.float32))\n"
        "    assert t.numpy()[99] == 99.0\n"
        "    del t; gc.collect()\n"
        "    assert ref() is None, 'the deleter was not called'\n"
        "# a rejected tensor (float64) is released at once\n"
        "a = np.ones(4); ref = weakref.ref(a)\n"
        "try: radiant.from_dlpack(P(a))\n"
        "except TypeError: pass\n"
        "else: raise SystemExit('float64 accepted')\n"
        "del a; gc.collect(); assert ref() is None, 'rejected tensor leaked'\n"
        "# an op argument imported for one call is released after it\n"
        "a = np.ones((2, 8), np.float32); ref = weakref.ref(a)\n"
        "radiant.rms_norm(P(a), np.ones(8, np.float32), device='cpu')\n"
        "del a; gc.collect(); assert ref() is None, 'op argument leaked'\n"
        "# an unconsumed exported capsule frees itself\n"
        "t = radiant.tensor(np.ones(4, np.float32), device='cpu'); cap = t.__dlpack__(); del cap, t; gc.collect()\n"
        "print('alive')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "alive" in res.stdout


def test_import_rejects():
    with pytest.raises(ValueError, match="contiguous"):
        radiant.from_dlpack(Producer(np.ones((4, 6), np.float32)[:, ::2]))
    with pytest.raises(TypeError, match="dtype"):
        radiant.from_dlpack(Producer(np.ones(3, np.float64)))
    with pytest.raises(TypeError, match="dtype"):
        radiant.from_dlpack(Producer(np.ones(3, np.bool_)))
    with pytest.raises(TypeError, match="__dlpack__"):
        radiant.from_dlpack(object())

    class NotACapsule:
        def __dlpack__(self, **kw):
            return 42

    with pytest.raises(TypeError, match="capsule"):
        radiant.from_dlpack(NotACapsule())
    # a capsule with another name
    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    name = ctypes.create_string_buffer(b"something_else")
    cap = new(ctypes.addressof(name), name, None)
    with pytest.raises(TypeError, match="not a DLPack capsule"):
        radiant.from_dlpack(cap)


def test_gpu_producer_is_refused_before_export():
    class CudaProducer:
        called = False

        def __dlpack_device__(self):
            return (2, 0)  # kDLCUDA

        def __dlpack__(self, **kw):
            CudaProducer.called = True
            raise AssertionError("must not be called")

    with pytest.raises(BufferError, match="kDLCUDA"):
        radiant.from_dlpack(CudaProducer())
    with pytest.raises(BufferError, match="host copy"):
        radiant.rms_norm(CudaProducer(), np.ones(4, np.float32))
    assert not CudaProducer.called


@pytest.mark.parametrize("device", DEVICES)
def test_ops_take_dlpack_producers(device):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 16)).astype(np.float32), rng.standard_normal((8, 16)).astype(np.float32)
    want = radiant.matmul(x, w, b_layout="nk", device=device)
    got = radiant.matmul(Producer(x), Producer(w), b_layout="nk", device=device)
    assert isinstance(got, radiant.Tensor)  # the main input was not numpy
    np.testing.assert_array_equal(got.numpy(), want)


# ---------------------------------------------------------------- radiant as a producer


@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_export_to_numpy_is_zero_copy(device):
    t = radiant.tensor(np.arange(12, dtype=np.float32).reshape(3, 4), device=device, copy=True)
    v = np.from_dlpack(t)
    assert v.shape == (3, 4) and v.dtype == np.float32
    v[1, 1] = 50.0  # write through numpy, read through radiant
    assert t.numpy()[1, 1] == 50.0
    ref = weakref.ref(t)
    del t
    gc.collect()
    assert ref() is None  # the Tensor object is gone; the view keeps the memory
    assert v[1, 1] == 50.0 and v.sum() == np.arange(12).sum() - 5 + 50


def test_export_capsules():
    t = radiant.tensor(np.ones((2, 3), np.float16), device="cpu")
    assert t.__dlpack_device__() == (1, 0)
    assert capsule_name(t.__dlpack__()) == "dltensor"
    assert capsule_name(t.__dlpack__(max_version=(1, 0))) == "dltensor_versioned"
    assert capsule_name(t.__dlpack__(None, max_version=(0, 8))) == "dltensor"
    # our own capsules round-trip through radiant's consumer, sharing memory
    back = radiant.from_dlpack(t.__dlpack__(max_version=(1, 1)), device="cpu")
    np.from_dlpack(t)[0, 0] = 3.0
    assert back.numpy()[0, 0] == 3.0
    copied = np.from_dlpack(t, copy=True) if np.lib.NumpyVersion(np.__version__) >= "2.1.0" else None
    if copied is not None:
        copied[0, 1] = 7.0
        assert t.numpy()[0, 1] == 1.0
    with pytest.raises(BufferError):
        t.__dlpack__(dl_device=(2, 0))


@pytest.mark.skipif(not GPU, reason="no GPU device (wgpu / cuda) available")
def test_export_gpu_tensor_needs_host_copy():
    t = radiant.tensor(np.arange(6, dtype=np.float32), device=GPU[0])
    assert t.__dlpack_device__()[0] in (2, 15)
    with pytest.raises(BufferError, match="dl_device"):
        t.__dlpack__()
    cap = t.__dlpack__(max_version=(1, 0), dl_device=(1, 0))
    np.testing.assert_array_equal(radiant.from_dlpack(cap, device="cpu").numpy(), np.arange(6))
    with pytest.raises(BufferError):
        t.__dlpack__(dl_device=(1, 0), copy=False)


# ---------------------------------------------------------------- torch


@needs_torch
def test_torch_to_radiant_zero_copy():
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    t = radiant.from_dlpack(x, device="cpu")
    x[1, 2] = -5.0
    assert t.numpy()[1, 2] == -5.0
    # and radiant ops read torch memory in place
    y = radiant.rms_norm(x, torch.ones(4), device="cpu")
    assert isinstance(y, radiant.Tensor)
    ref = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(torch.from_dlpack(y), ref, rtol=1e-5, atol=1e-5)


@needs_torch
def test_radiant_to_torch_zero_copy():
    t = radiant.tensor(np.arange(6, dtype=np.float32), device="cpu", copy=True)
    x = torch.from_dlpack(t)
    x[4] = 40.0
    assert t.numpy()[4] == 40.0
    del t
    gc.collect()
    assert float(x[4]) == 40.0


@needs_torch
def test_torch_bfloat16_and_float16():
    for dt in (torch.bfloat16, torch.float16):
        x = torch.randn(4, 8).to(dt)
        t = radiant.from_dlpack(x, device="cpu")
        assert t.dtype == {torch.bfloat16: "bfloat16", torch.float16: "float16"}[dt]
        back = torch.from_dlpack(t)
        assert back.dtype == dt
        assert torch.equal(back, x)
        w = torch.ones(8, dtype=dt)
        y = torch.from_dlpack(radiant.rms_norm(x, w, device="cpu"))
        ref = (x.float() / torch.sqrt((x.float() ** 2).mean(-1, keepdim=True) + 1e-6)).to(dt)
        torch.testing.assert_close(y, ref, rtol=2e-2, atol=2e-2)


@needs_torch
def test_torch_rejects():
    with pytest.raises(ValueError, match="contiguous"):
        radiant.from_dlpack(torch.ones(4, 6).t())
    with pytest.raises(TypeError, match="dtype"):
        radiant.from_dlpack(torch.ones(3, dtype=torch.float64))
    with pytest.raises((RuntimeError, BufferError)):  # torch refuses to export a tensor that requires grad
        radiant.from_dlpack(torch.ones(3, requires_grad=True))


@needs_torch
@pytest.mark.parametrize("device", DEVICES)
def test_ops_against_torch(device):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 24, generator=g), torch.randn(24, 7, generator=g)
    out = torch.from_dlpack(radiant.matmul(a, b, device=device).to("cpu"))
    torch.testing.assert_close(out, a @ b, rtol=1e-4, atol=1e-4)
    q, k, v = (torch.randn(6, 2, 16, generator=g) for _ in range(3))
    cu = torch.tensor([0, 6], dtype=torch.int32)
    o = torch.from_dlpack(radiant.attention(q, k, v, cu, cu, causal=True, device=device).to("cpu"))
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=True
    ).transpose(0, 1)
    torch.testing.assert_close(o, ref, rtol=1e-4, atol=1e-4)
