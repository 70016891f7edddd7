"""Tests of the radiant Python binding.

Every op is checked on every available backend (reference, cpu, and wgpu /
cuda where present) against a numpy implementation written here, in f32 and
f16; bad inputs must raise the documented exceptions and leave the
interpreter alive; the golden case files under tests/golden/ are replayed
through the Python API (keyword arguments = the case files' names).
"""

import json
import math
import os
import pathlib
import struct
import subprocess
import sys

import numpy as np
import pytest

import radiant

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"

try:  # bf16 arrays come from ml_dtypes; without it bf16 is skipped
    import ml_dtypes

    BF16 = ml_dtypes.bfloat16
except ImportError:  # pragma: no cover - depends on the environment
    BF16 = None

DEVICES = [d["name"] for d in radiant.devices() if d["available"]]
DTYPES = [np.float32, np.float16] + [
    pytest.param(BF16, id="bfloat16") if BF16 is not None
    else pytest.param(None, id="bfloat16", marks=pytest.mark.skip(reason="ml_dtypes is not installed"))
]
# Tolerances against a float64 numpy reference, relative to the output's
# magnitude (|err| <= tol * max(1, max|ref|)).
TOL = {np.float32: 2e-5, np.float16: 4e-3}
if BF16 is not None:
    TOL[BF16] = 3e-2


def close(out, ref, dtype, scale=1.0):
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    assert out.shape == ref.shape
    mag = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    err = float(np.max(np.abs(out - ref))) if ref.size else 0.0
    assert err <= TOL[dtype] * mag * scale, f"max error {err} (magnitude {mag})"


def rnd(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- numpy refs


def np_rms_norm(x, w, eps, off):
    x = x.astype(np.float64)
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(ms + eps) * (w.astype(np.float64) + off)


def np_attention_one(q, k, v, sq, sk, causal, scale, wl, wr, softcap):
    """q[sq,Hq,D], k/v[sk,Hkv,D] -> out[sq,Hq,D], lse[Hq,sq] (float64)."""
    hq, d = q.shape[1], q.shape[2]
    hkv = k.shape[1]
    if causal:
        wr = 0
    out = np.zeros((sq, hq, d))
    lse = np.full((hq, sq), -np.inf)
    for h in range(hq):
        hk = h // (hq // hkv)
        for i in range(sq):
            pos = i + sk - sq
            lo = 0 if wl < 0 else max(pos - wl, 0)
            hi = sk - 1 if wr < 0 else min(pos + wr, sk - 1)
            if hi < lo:
                continue
            s = k[lo : hi + 1, hk, :].astype(np.float64) @ q[i, h, :].astype(np.float64) * scale
            if softcap > 0:
                s = softcap * np.tanh(s / softcap)
            m = s.max()
            p = np.exp(s - m)
            out[i, h] = p @ v[lo : hi + 1, hk, :].astype(np.float64) / p.sum()
            lse[h, i] = m + math.log(p.sum())
    return out, lse


def np_attention(q, k, v, cq, ck, causal=False, scale=None, wl=-1, wr=-1, softcap=0.0):
    d = q.shape[2]
    scale = 1 / math.sqrt(d) if scale is None else scale
    out = np.zeros(q.shape)
    lse = np.full((q.shape[1], q.shape[0]), -np.inf)
    for b in range(len(cq) - 1):
        q0, q1, k0, k1 = cq[b], cq[b + 1], ck[b], ck[b + 1]
        o, l = np_attention_one(q[q0:q1], k[k0:k1], v[k0:k1], q1 - q0, k1 - k0, causal, scale, wl, wr, softcap)
        out[q0:q1] = o
        lse[:, q0:q1] = l
    return out, lse


def np_paged(q, kc, vc, tables, lens, scale=None, wl=-1, wr=-1, softcap=0.0):
    b_, hq, d = q.shape
    bs = kc.shape[1]
    scale = 1 / math.sqrt(d) if scale is None else scale
    out = np.zeros(q.shape)
    for b in range(b_):
        n = lens[b]
        idx = [tables[b, j // bs] * bs + j % bs for j in range(n)]
        k = kc.reshape(-1, kc.shape[2], d)[idx]
        v = vc.reshape(-1, vc.shape[2], d)[idx]
        o, _ = np_attention_one(q[b : b + 1], k, v, 1, n, False, scale, wl, wr, softcap)
        out[b] = o[0]
    return out


# ---------------------------------------------------------------- API basics


def test_devices_listed():
    entries = radiant.devices()
    names = [e["name"] for e in entries]
    assert "reference" in names and "cpu" in names
    for e in entries:
        assert set(e) >= {"name", "available", "reason"}
        assert e["available"] == (e["reason"] is None)
    assert "reference" in DEVICES and "cpu" in DEVICES
    # CI marks the backends it can run as required (as for `cargo test`).
    required = [n for n in os.environ.get("RADIANT_REQUIRE_BACKENDS", "").split(",") if n]
    for family in required:
        assert any(d == family or d.startswith(family + ":") for d in DEVICES), (
            f"required backend {family} is unavailable: "
            + str([e["reason"] for e in entries if e["name"].split(":")[0] == family])
        )


def test_device_object():
    d = radiant.Device("reference")
    assert d.name == "reference"
    assert "reference" in repr(d)
    best = radiant.Device("best")
    assert best.name in DEVICES
    with pytest.raises(RuntimeError):
        radiant.Device("nosuch:7")
    x = np.ones((2, 8), np.float32)
    w = np.ones(8, np.float32)
    np.testing.assert_allclose(radiant.rms_norm(x, w, device=d), radiant.rms_norm(x, w, device="reference"))
    radiant.rms_norm(x, w)  # default device "best"


# ---------------------------------------------------------------- ops vs numpy


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["kn", "nk"])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul(device, dtype, layout, batched, with_bias):
    rng = np.random.default_rng(1)
    m, k, n = 5, 24, 7
    a = rnd(rng, (3, m, k) if batched else (m, k), dtype)
    b = rnd(rng, (k, n) if layout == "kn" else (n, k), dtype)
    bias = rnd(rng, (n,), dtype) if with_bias else None
    out = radiant.matmul(a, b, bias=bias, b_layout=layout, device=device)
    assert out.dtype == dtype
    bm = b.astype(np.float64) if layout == "kn" else b.astype(np.float64).T
    ref = a.astype(np.float64) @ bm
    if with_bias:
        ref = ref + bias.astype(np.float64)
    close(out, ref, dtype, scale=math.sqrt(k))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("off", [0.0, 1.0])
def test_rms_norm(device, dtype, off):
    rng = np.random.default_rng(2)
    x = rnd(rng, (3, 4, 64), dtype)
    w = rnd(rng, (64,), dtype)
    out = radiant.rms_norm(x, w, eps=1e-5, weight_offset=off, device=device)
    assert out.dtype == dtype and out.shape == x.shape
    close(out, np_rms_norm(x, w, 1e-5, off), dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_add_rms_norm(device, dtype):
    rng = np.random.default_rng(3)
    x = rnd(rng, (6, 32), dtype)
    r = rnd(rng, (6, 32), dtype)
    r_before = r.copy()
    w = rnd(rng, (32,), dtype)
    out, new_r = radiant.fused_add_rms_norm(x, r, w, eps=1e-6, weight_offset=0.0, device=device)
    assert out.dtype == dtype and new_r.dtype == dtype
    np.testing.assert_array_equal(r, r_before)  # the input is not modified
    summed = (x.astype(np.float64) + r.astype(np.float64)).astype(dtype)
    np.testing.assert_array_equal(new_r, summed)
    close(out, np_rms_norm(summed, w, 1e-6, 0.0), dtype)


ATTN_CASES = [
    dict(),
    dict(causal=True),
    dict(causal=True, window_left=3),
    dict(window_left=2, window_right=1, softmax_scale=0.3),
    dict(softcap=5.0, causal=True),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(ATTN_CASES)))
def test_attention(device, dtype, case):
    kw = ATTN_CASES[case]
    rng = np.random.default_rng(4 + case)
    hq, hkv, d = 4, 2, 16
    cq = np.array([0, 3, 4, 9], np.int32)
    ck = np.array([0, 5, 6, 15], np.int32)
    q = rnd(rng, (cq[-1], hq, d), dtype)
    k = rnd(rng, (ck[-1], hkv, d), dtype)
    v = rnd(rng, (ck[-1], hkv, d), dtype)
    out, lse = radiant.attention(q, k, v, cq, ck, return_lse=True, device=device, **kw)
    assert out.dtype == dtype and out.shape == q.shape
    assert lse.dtype == np.float32 and lse.shape == (hq, q.shape[0])
    ref, ref_lse = np_attention(
        q, k, v, cq, ck, kw.get("causal", False), kw.get("softmax_scale"),
        kw.get("window_left", -1), kw.get("window_right", -1), kw.get("softcap", 0.0),
    )
    close(out, ref, dtype)
    finite = np.isfinite(ref_lse)
    assert np.array_equal(np.isfinite(lse), finite)
    close(lse[finite], ref_lse[finite], dtype, scale=4)
    only = radiant.attention(q, k, v, cq, ck, device=device, **kw)
    assert isinstance(only, np.ndarray)
    np.testing.assert_array_equal(only, out)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [dict(), dict(window_left=5, softcap=10.0), dict(softmax_scale=0.1)])
def test_paged_attention(device, dtype, kw):
    rng = np.random.default_rng(5)
    b, hq, hkv, d, bs, nblocks = 3, 4, 1, 16, 4, 10
    q = rnd(rng, (b, hq, d), dtype)
    kc = rnd(rng, (nblocks, bs, hkv, d), dtype)
    vc = rnd(rng, (nblocks, bs, hkv, d), dtype)
    tables = np.array([[3, 1, 7], [0, 9, 2], [5, 5, 5]], np.int32)
    lens = np.array([11, 1, 8], np.int32)
    out = radiant.paged_attention(q, kc, vc, tables, lens, device=device, **kw)
    assert out.dtype == dtype and out.shape == q.shape
    ref = np_paged(q, kc, vc, tables, lens, kw.get("softmax_scale"), kw.get("window_left", -1),
                   kw.get("window_right", -1), kw.get("softcap", 0.0))
    close(out, ref, dtype)


# ---------------------------------------------------------------- bad inputs


def test_bad_dtype():
    a = np.ones((2, 3), np.float64)
    with pytest.raises(TypeError, match="dtype"):
        radiant.matmul(a, a.T.copy(), device="reference")
    with pytest.raises(TypeError, match="numpy"):
        radiant.rms_norm([[1.0, 2.0]], np.ones(2, np.float32), device="reference")
    # a dtype radiant knows, in the wrong place: radiant's own validation
    with pytest.raises(ValueError, match="rms_norm"):
        radiant.rms_norm(np.ones((2, 4), np.int32), np.ones(4, np.int32), device="cpu")
    with pytest.raises(ValueError):
        radiant.matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float16), device="cpu")


def test_bad_shape():
    with pytest.raises(ValueError, match="matmul"):
        radiant.matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), device="cpu")
    with pytest.raises(ValueError, match="weight"):
        radiant.rms_norm(np.ones((2, 4), np.float32), np.ones(5, np.float32), device="reference")
    with pytest.raises(ValueError, match="b_layout"):
        radiant.matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), b_layout="xx")


def test_non_contiguous():
    a = np.ones((4, 6), np.float32)[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        radiant.matmul(a, np.ones((3, 2), np.float32), device="cpu")
    with pytest.raises(ValueError, match="contiguous"):
        radiant.rms_norm(np.ones((6, 4), np.float32).T, np.ones(6, np.float32), device="cpu")


def test_bad_cu_seqlens():
    q = np.ones((4, 2, 8), np.float32)
    ok = np.array([0, 4], np.int32)
    for bad in (np.array([0, 5], np.int32), np.array([0, 3, 2, 4], np.int32), np.array([1, 4], np.int32)):
        with pytest.raises(ValueError, match="cu_seqlens"):
            radiant.attention(q, q, q, bad, ok, device="cpu")
    with pytest.raises(TypeError):
        radiant.attention(q, q, q, ok.astype(np.int64), ok, device="cpu")
    with pytest.raises(ValueError):
        radiant.paged_attention(q, np.ones((2, 4, 2, 8), np.float32), np.ones((2, 4, 2, 8), np.float32),
                                np.array([[0], [9], [0], [0]], np.int32), np.array([1, 1, 1, 1], np.int32),
                                device="reference")


def test_bad_quant_arguments():
    x = np.ones((2, 64), np.float16)
    qweight = np.zeros((8, 16), np.int32)
    qzeros = np.zeros((1, 2), np.int32)
    scales = np.ones((1, 16), np.float16)
    with pytest.raises(ValueError, match="bits"):
        radiant.gptq_matmul(x, qweight, qzeros, scales, None, bits=3, group_size=-1, device="reference")
    with pytest.raises(ValueError, match="format"):
        radiant.gptq_matmul(x, qweight, qzeros, scales, None, bits=4, group_size=-1, format="v9",
                            device="reference")
    with pytest.raises(ValueError, match="group_size"):
        radiant.awq_matmul(x, qweight, qzeros, scales, group_size=0, device="reference")
    packed = np.zeros((16, 32), np.uint8)
    bscale = np.zeros((16, 4), np.uint8)
    with pytest.raises(ValueError, match="weight_scale_2"):
        radiant.nvfp4_matmul(x, packed, bscale, weight_scale_2=1.0, weight_global_scale=1.0)
    with pytest.raises(ValueError):
        radiant.nvfp4_matmul(x, packed, bscale, weight_scale_2=np.ones(3, np.float32))


def test_threads_release_the_gil():
    import concurrent.futures

    rng = np.random.default_rng(9)
    a = rnd(rng, (64, 128), np.float32)
    b = rnd(rng, (128, 64), np.float32)
    want = radiant.matmul(a, b, device="cpu")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: radiant.matmul(a, b, device="cpu"), range(16)))
    for out in outs:
        np.testing.assert_array_equal(out, want)


def test_unknown_device():
    with pytest.raises(RuntimeError):
        radiant.rms_norm(np.ones((1, 4), np.float32), np.ones(4, np.float32), device="nosuch")
    with pytest.raises(TypeError):
        radiant.rms_norm(np.ones((1, 4), np.float32), np.ones(4, np.float32), device=3)


def test_interpreter_survives_bad_inputs():
    """The same bad calls in a child interpreter: it must exit normally."""
    code = (
        "import numpy as np, radiant\n"
        "bad = [lambda: radiant.matmul(np.ones((2,3),np.float64), np.ones((3,2),np.float64)),\n"
        "       lambda: radiant.matmul(np.ones((2,3),np.float32), np.ones((4,2),np.float32), device='cpu'),\n"
        "       lambda: radiant.attention(*(np.ones((4,2,8),np.float32),)*3, np.array([0,9],np.int32),\n"
        "                                 np.array([0,4],np.int32), device='cpu'),\n"
        "       lambda: radiant.rms_norm(np.ones((8,4),np.float32)[::2], np.ones(4,np.float32))]\n"
        "n = 0\n"
        "for f in bad:\n"
        "    try: f()\n"
        "    except (ValueError, TypeError): n += 1\n"
        "assert n == len(bad), n\n"
        "print('alive')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "alive" in res.stdout


# ---------------------------------------------------------------- golden replays

NP_DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "U8": np.uint8, "F8_E4M3": np.uint8}
if BF16 is not None:
    NP_DTYPES["BF16"] = BF16


def read_safetensors(path):
    """A minimal safetensors reader (no torch, no safetensors package needed).
    Returns (metadata, {name: array}); None for a tensor numpy cannot hold."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        dt = NP_DTYPES.get(info["dtype"])
        if dt is None:
            tensors[name] = None
            continue
        lo, hi = info["data_offsets"]
        tensors[name] = np.frombuffer(raw[8 + n + lo : 8 + n + hi], dtype=dt).reshape(info["shape"]).copy()
    return meta, tensors


PARAMS = {
    "matmul": ["b_layout"],
    "rms_norm": ["eps", "weight_offset"],
    "fused_add_rms_norm": ["eps", "weight_offset"],
    "attention": ["causal", "softmax_scale", "window_left", "window_right", "softcap"],
    "paged_attention": ["causal", "softmax_scale", "window_left", "window_right", "softcap"],
    "gptq_matmul": ["bits", "group_size", "sym", "format"],
    "awq_matmul": ["group_size"],
    "nvfp4_matmul": [],
}


def parse_param(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


GOLDEN_FILES = sorted(GOLDEN.glob("*/*.safetensors"))


@pytest.mark.skipif(not GOLDEN_FILES, reason="no golden case files in this checkout")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_golden(device, path):
    meta, tensors = read_safetensors(path)
    op = meta["op"]
    if any(v is None for k, v in tensors.items() if not k.startswith("expected")):
        pytest.skip("bf16 case: numpy has no bfloat16 and ml_dtypes is not installed")
    kwargs = {k: v for k, v in tensors.items() if not k.startswith("expected")}
    for p in PARAMS[op]:
        if p in meta:
            kwargs[p] = parse_param(meta[p])
    if op == "nvfp4_matmul" and "weight" in kwargs:
        kwargs["weight_packed"] = kwargs.pop("weight")
    act = kwargs.get("x", kwargs.get("a", kwargs.get("q")))
    if "bias" in kwargs:
        kwargs["bias"] = kwargs["bias"].astype(act.dtype)
    if op == "attention":
        kwargs["return_lse"] = "expected_lse" in tensors
    kwargs["device"] = device
    try:
        result = getattr(radiant, op)(**kwargs)
    except NotImplementedError as e:
        pytest.skip(f"{device}: {e}")
    dtype = act.dtype.type
    if op == "fused_add_rms_norm":
        out, res = result
        np.testing.assert_array_equal(res, tensors["expected_residual"])
    elif op == "attention" and kwargs["return_lse"]:
        out, lse = result
        exp_lse = tensors["expected_lse"]
        assert np.array_equal(np.isfinite(lse), np.isfinite(exp_lse))
        f = np.isfinite(exp_lse)
        close(lse[f], exp_lse[f], dtype, scale=4)
    else:
        out = result
    assert out.dtype == act.dtype
    exp = tensors["expected"]
    if exp is None:
        pytest.skip("expected output is bf16")
    scale = 1.0
    if op in ("matmul", "gptq_matmul", "awq_matmul", "nvfp4_matmul"):
        scale = math.sqrt(act.shape[-1])
    # golden outputs are rounded to the activation dtype: allow that rounding
    close(out, exp, dtype, scale=2 * scale)
