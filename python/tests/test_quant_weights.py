"""Quantized weight classes: GptqWeight, AwqWeight, Nvfp4Weight.

Loaded from the golden case files (tests/golden/quant, made by the reference
packages) through radiant's safetensors loader, and built by quantize();
checked against the files' expected weights and outputs, against the
per-call checkpoint-array form of the ops, and across devices.
"""

import json
import math
import pathlib
import struct

import numpy as np
import pytest

import radiant

from test_ops import BF16, DEVICES, GOLDEN, close, read_safetensors

QUANT_FILES = sorted((GOLDEN / "quant").glob("*.safetensors"))
CLASSES = {
    "gptq_matmul": (radiant.GptqWeight, radiant.gptq_matmul),
    "awq_matmul": (radiant.AwqWeight, radiant.awq_matmul),
    "nvfp4_matmul": (radiant.Nvfp4Weight, radiant.nvfp4_matmul),
}
# The reference backend runs every quantized op (other backends may skip
# with NotImplementedError where they have no kernel yet; test_golden_weight
# and test_to_device cover them).
QDEV = "reference"
DT = {"f16": np.float16, "f32": np.float32, "bf16": BF16}


def load_case(path):
    meta, tensors = read_safetensors(path)
    if any(v is None for k, v in tensors.items() if not k.startswith("expected")):
        pytest.skip("bf16 case: ml_dtypes is not installed")
    return meta, tensors


@pytest.mark.skipif(not QUANT_FILES, reason="no golden quant files in this checkout")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", QUANT_FILES, ids=lambda p: p.stem)
def test_golden_weight(device, path):
    meta, tensors = load_case(path)
    cls, op = CLASSES[meta["op"]]
    w = cls.from_safetensors(str(path), device=device)  # layout from the case __metadata__
    assert w.device == device
    x = tensors["x"]
    if tensors["expected_weight"] is None:
        pytest.skip("bf16 expected weight: ml_dtypes is not installed")
    n, k = tensors["expected_weight"].shape
    assert (w.n, w.k) == (n, k)
    if meta["op"] == "gptq_matmul":
        assert w.bits == int(meta["bits"]) and w.group_size == int(meta["group_size"])
        assert w.format == meta["format"]
        assert w.act_order == ("act-order" in meta["description"])
    elif meta["op"] == "awq_matmul":
        assert w.bits == 4 and w.group_size == int(meta["group_size"])
    else:
        assert w.producer == ("modelopt" if "weight_scale_2" in tensors else "compressed-tensors")
        assert w.k_padded == math.ceil(k / 16) * 16 and w.block_size == 16
    # dequantization, bit for bit the reference package's
    wdt = DT[meta["expected_weight_dtype"]]
    deq = w.dequantize(wdt)
    assert deq.dtype == wdt and deq.shape == (n, k)
    exp = tensors["expected_weight"]
    diff = deq.astype(np.float32) != exp.astype(np.float32)
    both_zero = (deq.astype(np.float32) == 0) & (exp.astype(np.float32) == 0)
    assert not np.any(diff & ~both_zero)
    if "expected_weight_f32" in tensors:
        np.testing.assert_array_equal(w.dequantize("float32"), tensors["expected_weight_f32"])
    # the op with the resident weight
    bias = w.bias
    if "bias" in tensors:
        assert isinstance(bias, radiant.Tensor) and bias.device == device
        np.testing.assert_array_equal(bias.numpy(), tensors["bias"])
        bias = bias.numpy().astype(x.dtype)
    else:
        assert bias is None
    try:
        out = op(x, weight=w, bias=bias)
    except NotImplementedError as e:
        pytest.skip(f"{device}: {e}")
    assert isinstance(out, np.ndarray) and out.dtype == x.dtype
    if tensors["expected"] is not None:
        close(out, tensors["expected"], x.dtype.type, scale=2 * math.sqrt(k))
    # positional weight, Tensor activations, and the checkpoint-array form agree
    out2 = op(x, w, bias=bias)
    np.testing.assert_array_equal(out2, out)
    tx = radiant.tensor(x, device=device)
    out3 = op(tx, weight=w, bias=bias)
    assert isinstance(out3, radiant.Tensor) and out3.device == device
    np.testing.assert_array_equal(out3.numpy(), out)
    arrays = {kk: v for kk, v in tensors.items() if not kk.startswith("expected") and kk not in ("x", "bias")}
    params = {p: json.loads(meta[p]) if p != "format" else meta[p]
              for p in ("bits", "group_size", "sym", "format") if p in meta}
    if meta["op"] == "awq_matmul":
        params = {"group_size": params["group_size"]}
    per_call = op(x, **arrays, **params, bias=bias, device=device)
    np.testing.assert_array_equal(per_call, out)


@pytest.mark.skipif(not QUANT_FILES, reason="no golden quant files in this checkout")
@pytest.mark.parametrize("path", QUANT_FILES, ids=lambda p: p.stem)
def test_golden_constructors_and_tensors(path):
    meta, tensors = load_case(path)
    cls, _ = CLASSES[meta["op"]]
    w = cls.from_safetensors(path, device="cpu")  # a pathlib.Path works too
    t = w.tensors()
    for name, arr in t.items():
        if tensors.get(name) is not None:  # the checkpoint's own bytes come back
            np.testing.assert_array_equal(arr.view(np.uint8).ravel(), tensors[name].view(np.uint8).ravel())
    kw = {}
    if meta["op"] == "gptq_matmul":
        kw = dict(bits=w.bits, group_size=w.group_size, format=w.format)
    elif meta["op"] == "awq_matmul":
        kw = dict(group_size=w.group_size)
    else:
        kw = dict(in_features=w.k)
    w2 = cls(**t, **kw, device="reference")
    np.testing.assert_array_equal(w2.dequantize(), w.dequantize())
    assert repr(w).startswith(f"radiant.{cls.__name__}(")


@pytest.mark.parametrize("src", DEVICES)
@pytest.mark.parametrize("dst", DEVICES)
def test_to_device(src, dst):
    rng = np.random.default_rng(0)
    wf = rng.standard_normal((32, 64)).astype(np.float32)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    for w in (radiant.GptqWeight.quantize(wf, bits=4, group_size=32, device=src),
              radiant.AwqWeight.quantize(wf, group_size=32, device=src),
              radiant.Nvfp4Weight.quantize(wf, device=src)):
        v = w.to(dst)
        assert v.device == dst
        if src == dst:
            assert v is w
        np.testing.assert_array_equal(v.dequantize(), w.dequantize())
        op = {radiant.GptqWeight: radiant.gptq_matmul, radiant.AwqWeight: radiant.awq_matmul,
              radiant.Nvfp4Weight: radiant.nvfp4_matmul}[type(w)]
        try:
            y = op(x, weight=v)
        except NotImplementedError as e:
            pytest.skip(f"{dst}: {e}")
        ref = x.astype(np.float64) @ w.dequantize().astype(np.float64).T
        close(y, ref, np.float32, scale=math.sqrt(64) * 4)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("group_size", [32, -1])
def test_gptq_quantize(bits, sym, act_order, group_size):
    rng = np.random.default_rng(bits + 2 * sym + 4 * act_order)
    n, k = 32, 128
    wf = rng.standard_normal((n, k)).astype(np.float32)
    perm = rng.permutation(k) if act_order else None
    w = radiant.GptqWeight.quantize(wf, bits=bits, group_size=group_size, sym=sym, act_order=perm,
                                    format="gptq", scale_dtype="float16", device=QDEV)
    assert (w.n, w.k, w.bits, w.group_size) == (n, k, bits, group_size)
    assert w.sym == sym or not sym  # an asymmetric quantization may still land on 2^(b-1)
    assert w.act_order == (act_order and group_size != -1)
    assert w.scale_dtype == "float16" and w.format == "gptq" and w.bias is None
    deq = w.dequantize()
    # round to nearest: every element within half a step of its group's scale
    scales = w.tensors()["scales"].astype(np.float32)
    g_idx = w.tensors()["g_idx"]
    step = scales[g_idx, :].T  # [N, K]
    assert np.all(np.abs(deq.astype(np.float64) - wf) <= step / 2)
    x = rng.standard_normal((4, k)).astype(np.float16)
    y = radiant.gptq_matmul(x, weight=w, sym=True if sym else None)
    close(y, x.astype(np.float64) @ deq.astype(np.float64).T, np.float16, scale=math.sqrt(k))


def test_awq_and_nvfp4_quantize():
    rng = np.random.default_rng(11)
    wf = rng.standard_normal((16, 96)).astype(np.float32)
    a = radiant.AwqWeight.quantize(wf, group_size=32, scale_dtype=np.float16, device=QDEV)
    assert (a.n, a.k, a.bits, a.group_size, a.groups) == (16, 96, 4, 32, 3)
    step = np.repeat(a.tensors()["scales"].astype(np.float32), 32, axis=0).T
    assert np.all(np.abs(a.dequantize().astype(np.float64) - wf) <= step / 2)
    wf2 = rng.standard_normal((8, 40)).astype(np.float32)  # K not a multiple of 16
    for producer, key in (("modelopt", "weight_scale_2"), ("compressed-tensors", "weight_global_scale")):
        q = radiant.Nvfp4Weight.quantize(wf2, producer=producer, device=QDEV)
        assert (q.n, q.k, q.k_padded, q.producer) == (8, 40, 48, producer)
        t = q.tensors()
        assert key in t and t["weight_packed"].shape == (8, 24) and t["weight_scale"].shape == (8, 3)
        rel = np.linalg.norm(q.dequantize() - wf2) / np.linalg.norm(wf2)
        assert rel < 0.15, rel  # 4-bit floats
        x = rng.standard_normal((2, 40)).astype(np.float32)
        y = radiant.nvfp4_matmul(x, q)
        close(y, x.astype(np.float64) @ q.dequantize().astype(np.float64).T, np.float32, scale=8)


def test_bad_weights(tmp_path):
    rng = np.random.default_rng(3)
    wf = rng.standard_normal((32, 64)).astype(np.float32)
    x = np.ones((2, 64), np.float32)
    with pytest.raises(ValueError, match="bits"):
        radiant.GptqWeight.quantize(wf, bits=3)
    with pytest.raises(ValueError, match="group_size"):
        radiant.GptqWeight.quantize(wf, group_size=0)
    with pytest.raises(ValueError, match="act_order"):
        radiant.GptqWeight.quantize(wf, group_size=32, act_order=np.zeros(64, np.int64))
    with pytest.raises(ValueError):
        radiant.AwqWeight.quantize(np.ascontiguousarray(wf[:, :60]), group_size=32)
    with pytest.raises(ValueError, match="producer"):
        radiant.Nvfp4Weight.quantize(wf, producer="nvidia")
    with pytest.raises(ValueError, match="scale_dtype"):
        radiant.AwqWeight.quantize(wf, scale_dtype="int8")
    with pytest.raises(ValueError):
        radiant.GptqWeight.quantize(np.full((32, 64), np.nan, np.float32))
    w = radiant.GptqWeight.quantize(wf, group_size=32, device="cpu")
    with pytest.raises(ValueError, match="not both"):
        radiant.gptq_matmul(x, w, qzeros=np.zeros((2, 4), np.int32))
    with pytest.raises(TypeError, match="GptqWeight"):
        radiant.gptq_matmul(x, weight=radiant.AwqWeight.quantize(wf, group_size=32))
    with pytest.raises(TypeError, match="missing"):
        radiant.gptq_matmul(x, bits=4, group_size=32)
    with pytest.raises(ValueError, match="gptq"):
        radiant.gptq_matmul(np.ones((2, 48), np.float32), w)
    gpu = [d for d in DEVICES if d not in ("cpu", "reference")]
    if gpu:
        with pytest.raises(ValueError, match=r"\.to\("):
            radiant.gptq_matmul(x, w, device=gpu[0])
    # files: missing, wrong format, no layout
    with pytest.raises(ValueError, match="no such file"):
        radiant.GptqWeight.from_safetensors(tmp_path / "missing.safetensors")
    if QUANT_FILES:
        awq = next(p for p in QUANT_FILES if p.name.startswith("awq"))
        with pytest.raises(ValueError):
            radiant.GptqWeight.from_safetensors(awq)  # no g_idx-compatible tensors / bits
        with pytest.raises(ValueError):
            radiant.Nvfp4Weight.from_safetensors(awq)
    plain = tmp_path / "plain.safetensors"
    header = json.dumps({"qweight": {"dtype": "I32", "shape": [8, 32], "data_offsets": [0, 1024]}}).encode()
    plain.write_bytes(struct.pack("<Q", len(header)) + header + bytes(1024))
    with pytest.raises(ValueError, match="group_size"):
        radiant.AwqWeight.from_safetensors(plain)
    with pytest.raises(ValueError):
        radiant.GptqWeight.from_safetensors(plain, bits=4, group_size=32)  # qzeros missing
