#!/usr/bin/env python3
"""Golden cases for the quantized matmuls (gptq_matmul, awq_matmul, nvfp4_matmul),
produced by the real quantization packages on CPU:

  GPTQ : AutoGPTQ 0.7.1 (GPTQ algorithm + QuantLinear.pack, pure-torch modules loaded
         directly since the package does not import on transformers 5) and GPTQModel
         (its GPTQ + TorchLinear.pack_block / dequantize_weight, v2 -> v1 export).
  AWQ  : AutoAWQ (pseudo_quantize_tensor + WQLinear_GEMM.from_linear, dequantize_gemm)
         and GPTQModel (AwqTorchLinear.pack, its dequantize_gemm).
  NVFP4: nvidia-modelopt (NVFP4QTensor.quantize / dequantize, weight_scale_2) and
         compressed-tensors (NVFP4PackedCompressor.compress / decompress with the
         NVFP4A16 preset, weight_global_scale).

Each case stores the checkpoint tensors (no layer prefix; `bias` in x's dtype),
`expected_weight` (the package's own dequantized weight, [N, K], in the dtype the
package produced), in some cases `expected_weight_f32` (the package's own f32
dequantization, [N, K]; see F32_CASES) and `expected`, per radiant's op contract:
W = the package's f32 dequantization rounded once to x's dtype, then
x . W^T (+ bias) in float64, rounded once to x's dtype.

Every package's f32 dequantization is obtained the package's own way (its
dequantization run with float32 scales / a float32 target dtype) and checked:
rounded to the package's native dtype it must equal the package's native
dequantization bit for bit (fatal if not), and it is compared with an independent
decoder written from QUANT_FORMATS.md (mismatches reported, not fatal).

Usage:  python scripts/golden/make_quant_cases.py [OUT_DIR]   (default tests/golden/quant)
"""

import importlib.metadata as md
import importlib.util
import os
import sys
import types
import warnings
from types import SimpleNamespace

os.environ.setdefault("GPTQMODEL_DISABLE_PACK_EXT", "1")  # pure-python packer, no JIT build
os.environ.setdefault("GPTQ_TORCH_TRITON_DEQUANT", "0")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_common import round_once, summarize, write_case  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "golden", "quant")
written = []
findings = []  # mismatches between a package and the QUANT_FORMATS.md decoder

torch.set_num_threads(1)  # GPTQ's Cholesky/matmuls: keep the run reproducible
if not torch.cuda.is_available():
    torch.cuda.synchronize = lambda *a, **k: None  # AutoGPTQ's fasterquant calls it


def ver(pkg):
    return md.version(pkg)


# --------------------------------------------------------------------------- package loading

def load_autogptq():
    """auto-gptq 0.7.1's __init__ fails on transformers 5; register empty parent
    packages so its pure-torch modules import without running __init__.py."""
    if "auto_gptq" not in sys.modules:
        spec = importlib.util.find_spec("auto_gptq")
        root = os.path.dirname(spec.origin)
    else:
        root = sys.modules["auto_gptq"].__path__[0]
    for name, sub in [("auto_gptq", ""), ("auto_gptq.quantization", "quantization"),
                      ("auto_gptq.nn_modules", "nn_modules"),
                      ("auto_gptq.nn_modules.qlinear", "nn_modules/qlinear")]:
        if name not in sys.modules:
            m = types.ModuleType(name)
            m.__path__ = [os.path.join(root, sub)]
            sys.modules[name] = m
    from auto_gptq.nn_modules.qlinear.qlinear_cuda import QuantLinear
    from auto_gptq.quantization.gptq import GPTQ
    return GPTQ, QuantLinear


# --------------------------------------------------------------------------- independent decoders
# Written from QUANT_FORMATS.md only; used to cross-check the packages.

def u32(t):
    return t.numpy().astype(np.int64) & 0xFFFFFFFF


def ref_gptq(qweight, qzeros, scales, g_idx, bits, fmt, out_dtype=None):
    pf, mask = 32 // bits, (1 << bits) - 1
    qw = u32(qweight)
    K, N = qw.shape[0] * pf, qw.shape[1]
    k = np.arange(K)
    q = (qw[k // pf, :] >> (bits * (k % pf))[:, None]) & mask  # [K, N]
    qz = u32(qzeros)
    if fmt == "gptq":  # v1 stores z - 1: add to the whole word, wrapping
        qz = (qz + (0x11111111 if bits == 4 else 0x01010101)) & 0xFFFFFFFF
    n = np.arange(N)
    z = (qz[:, n // pf] >> (bits * (n % pf))[None, :]) & mask  # [G, N]
    g = g_idx.numpy().astype(np.int64)
    w32 = scales.float().numpy()[g] * (q - z[g]).astype(np.float32)  # exact in f32
    return round_once(torch.from_numpy(w32.T.astype(np.float64)), out_dtype or scales.dtype)


def ref_awq(qweight, qzeros, scales, group_size, out_dtype=None):
    rev = np.array([0, 4, 1, 5, 2, 6, 3, 7])
    qw, qz = u32(qweight), u32(qzeros)
    K, N = qw.shape[0], qw.shape[1] * 8
    n = np.arange(N)
    q = (qw[:, n // 8] >> (4 * rev[n % 8])[None, :]) & 0xF  # [K, N]
    z = (qz[:, n // 8] >> (4 * rev[n % 8])[None, :]) & 0xF  # [G, N]
    g = np.arange(K) // group_size
    w32 = scales.float().numpy()[g] * (q - z[g]).astype(np.float32)
    return round_once(torch.from_numpy(w32.T.astype(np.float64)), out_dtype or scales.dtype)


E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)


def ref_nvfp4(packed, scale_e4m3, g32, out_dtype, divisor=None):
    """W = e2m1(code) * (f32(scale) * g), all in f32, then one cast.  With
    `divisor` d the block multiplier is f32(scale) / d instead."""
    p = packed.numpy()
    codes = np.empty((p.shape[0], p.shape[1] * 2), np.int64)
    codes[:, 0::2] = p & 0xF
    codes[:, 1::2] = p >> 4
    s = scale_e4m3.float().numpy()  # e4m3 -> f32 is exact
    if divisor is not None:
        mult = (s / np.float32(divisor)).astype(np.float32)  # block multiplier first
    else:
        mult = (s * np.float32(g32)).astype(np.float32)  # block multiplier first
    w32 = E2M1[codes] * np.repeat(mult, 16, axis=1)
    return torch.from_numpy(w32).to(out_dtype)  # single f32 -> out rounding


def check_weight(name, what, got, ref):
    """Bit-level comparison; differences that are only the sign of a zero are
    counted separately (E2M1 code 8 is -0)."""
    assert got.shape == ref.shape and got.dtype == ref.dtype, (name, got.shape, ref.shape, got.dtype, ref.dtype)
    it = torch.int16 if got.element_size() == 2 else torch.int32
    bits_differ = got.view(it) != ref.view(it)
    zero_sign = bits_differ & (got == 0) & (ref == 0)
    value = int((bits_differ & ~zero_sign).sum())
    nz = int(zero_sign.sum())
    if value == 0 and nz == 0:
        status = "bit-exact"
    else:
        status = f"{value} of {got.numel()} values differ"
        if nz:
            neg = int((zero_sign & torch.signbit(ref)).sum())
            status += f"; {nz} zeros differ only in sign (decoder -0 in {neg}, package +0 there)"
    print(f"  {name}: package dequant vs {what}: {status}")
    if status != "bit-exact":
        findings.append(f"{name}: package dequant vs {what}: {status}")
    return value


def check_f32(name, w_native, w32):
    """The package's f32 dequantization, rounded once to the package's native
    dtype, must be the package's native dequantization (the product is formed
    in f32 and cast once): fatal otherwise, since `expected` is built from it."""
    assert w32.dtype == torch.float32 and w32.shape == w_native.shape, (name, w32.dtype, w32.shape)
    r = w32.to(w_native.dtype)  # f32 -> f16/bf16: one round-to-nearest-even
    it = torch.int16 if r.element_size() == 2 else torch.int32
    differ = (r.view(it) != w_native.view(it)) & ~((r == 0) & (w_native == 0))
    assert not differ.any(), f"{name}: package f32 dequant rounded to {w_native.dtype} != package dequant " \
        f"in {int(differ.sum())} values"
    print(f"  {name}: package f32 dequant rounded to {DT_NAME[w_native.dtype]} = package dequant, bit for bit")


# Cases that store `expected_weight_f32`, besides every case whose x dtype differs
# from the package's weight dtype (there `expected` is built from it): one case
# for each producer not otherwise covered, so that every producer's f32
# dequantization is checked in Rust.  Storing it in every case would more than
# double the directory (4 bytes per weight), past the ~1.5 MB budget; the script
# itself checks the f32 dequantization of every case.
F32_CASES = {"awq_g64_gptqmodel_f16", "nvfp4_modelopt_f16"}


# --------------------------------------------------------------------------- shared bits

def make_layer(seed, N, K, bias, dtype=torch.float16, pos_rows=()):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, K, generator=g) * 0.05
    for r in pos_rows:  # all-positive rows -> asymmetric zero point z = 0
        w[r] = w[r].abs() + 0.02
    lin = torch.nn.Linear(K, N, bias=bias).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(w.to(dtype))
        if bias:
            lin.bias.copy_((torch.randn(N, generator=g) * 0.1).to(dtype))
    xcal = (torch.randn(256, K, generator=g) * torch.exp(torch.randn(K, generator=g))).to(dtype)
    return lin, xcal, g


def make_x(g, M, K, dtype):
    return torch.randn(M, K, generator=g).to(dtype)


def expected_out(x, w32_nk, bias):
    """radiant's op contract: W formed in f32, rounded ONCE to x's dtype, the
    product accumulated exactly (f64 here), bias added, one rounding to x's dtype."""
    assert w32_nk.dtype == torch.float32
    w = w32_nk.to(x.dtype)  # f32 -> x dtype: a single RNE rounding (identity for f32)
    y = x.double() @ w.double().t()
    if bias is not None:
        assert bias.dtype == x.dtype
        y = y + bias.double()
    return round_once(y, x.dtype)


def case_tensors(name, x, tensors, bias, w_nk, w32_nk):
    """x, the checkpoint tensors, bias (rounded once to x's dtype), the weights
    and `expected`."""
    t = {"x": x, **tensors}
    bias_x = None
    if bias is not None:
        bias_x = bias.detach().to(x.dtype)
        t["bias"] = bias_x
    t["expected_weight"] = w_nk
    if x.dtype != w_nk.dtype or name in F32_CASES:
        t["expected_weight_f32"] = w32_nk
    t["expected"] = expected_out(x, w32_nk, bias_x)
    return t


def save(name, op, tensors, params, source, description):
    p = os.path.join(OUT, name + ".safetensors")
    write_case(p, op, tensors, params, source, description)
    written.append(p)


# --------------------------------------------------------------------------- GPTQ

def gptq_autogptq(name, seed, M, K, N, bits, gs, sym, actorder, x_dtype, bias, description):
    GPTQ, QuantLinear = load_autogptq()
    lin, xcal, g = make_layer(seed, N, K, bias)
    q = GPTQ(lin)
    q.quantizer.configure(bits, perchannel=True, sym=sym, mse=False)
    q.add_batch(xcal, lin(xcal))
    scale, zero, g_idx = q.fasterquant(blocksize=128, percdamp=0.01, group_size=gs, actorder=actorder)
    assert not (zero == 0).any(), "AutoGPTQ's packer corrupts z = 0 (v1 stores -1); pick another seed"
    ql = QuantLinear(bits, gs, K, N, bias, weight_dtype=torch.float16)
    ql.pack(lin, scale, zero, g_idx)  # lin.weight holds GPTQ's Q after fasterquant
    # The package's dequantization: QuantLinear.forward's pure-torch path, fed an
    # identity matrix (one non-zero product per output -> exact), without bias.
    qbias, ql.bias = ql.bias, None
    with torch.no_grad():
        w_kn = ql(torch.eye(K, dtype=torch.float16))
        # the same path with the scales upcast to f32: W in f32 (exact products)
        s16 = ql.scales
        ql.scales = s16.float()
        w32_kn = ql(torch.eye(K, dtype=torch.float32))
        ql.scales = s16
    ql.bias = qbias
    w_nk = w_kn.t().contiguous()
    w32_nk = w32_kn.t().contiguous()
    tensors = {"qweight": ql.qweight, "qzeros": ql.qzeros, "scales": ql.scales, "g_idx": ql.g_idx.to(torch.int32)}
    check_weight(name, "QUANT_FORMATS decoder", w_nk, ref_gptq(*tensors.values(), bits, "gptq"))
    check_f32(name, w_nk, w32_nk)
    check_weight(name, "QUANT_FORMATS decoder (f32)", w32_nk,
                 ref_gptq(*tensors.values(), bits, "gptq", torch.float32))
    finish_gptq(name, seed, M, K, x_dtype, tensors, ql.bias, w_nk, w32_nk, bits, gs, sym, "gptq",
                f"auto-gptq {ver('auto-gptq')}", description, actorder)


def gptq_gptqmodel(name, seed, M, K, N, bits, gs, sym, actorder, x_dtype, bias, fmt, description,
                   pos_rows=()):
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear
    from gptqmodel.quantization.config import QuantizeConfig
    from gptqmodel.quantization.gptq import GPTQ
    from gptqmodel.utils.model import convert_gptq_v1_to_v2_format_module, convert_gptq_v2_to_v1_format_module
    lin, xcal, g = make_layer(seed, N, K, bias, pos_rows=pos_rows)
    qcfg = QuantizeConfig(bits=bits, group_size=gs, desc_act=actorder, sym=sym)
    q = GPTQ(lin, qcfg)
    q.quantizer.configure(perchannel=True)
    q.add_batch(xcal, lin(xcal))
    scale, zero, g_idx = q.fasterquant(group_size=gs, actorder=actorder)[:3]
    nzero = int((zero == 0).sum())
    if pos_rows:
        assert nzero > 0, "expected some z = 0"
    ql = TorchLinear(bits=bits, group_size=gs, sym=sym, desc_act=actorder, in_features=K,
                     out_features=N, bias=bias)
    ql.pack_block(lin, scale, zero, g_idx)  # in-memory layout is v2 (qzeros hold z)
    ql.eval()
    with torch.no_grad():
        w_nk = ql.dequantize_weight().t().contiguous()
        # the same dequantization with the scales upcast to f32 (exact products)
        s16 = ql.scales
        ql.scales = s16.float()
        w32_nk = ql.dequantize_weight().t().contiguous()
        ql.scales = s16
    if fmt == "gptq":  # export as GPTQModel saves format "gptq": v2 -> v1
        convert_gptq_v2_to_v1_format_module(ql, qcfg)
        v1 = ql.qzeros.clone()
        convert_gptq_v1_to_v2_format_module(ql, bits, torch.int32)  # load path back to v2
        ql._zeros_cache = None
        ql._zeros_cache_state = None
        with torch.no_grad():
            w2 = ql.dequantize_weight().t().contiguous()
        assert torch.equal(w2.view(torch.int16), w_nk.view(torch.int16)), "v1 round trip changed the weight"
        qzeros = v1
    else:
        qzeros = ql.qzeros.clone()
    tensors = {"qweight": ql.qweight, "qzeros": qzeros, "scales": ql.scales, "g_idx": ql.g_idx.to(torch.int32)}
    check_weight(name, "QUANT_FORMATS decoder", w_nk, ref_gptq(*tensors.values(), bits, fmt))
    check_f32(name, w_nk, w32_nk)
    check_weight(name, "QUANT_FORMATS decoder (f32)", w32_nk, ref_gptq(*tensors.values(), bits, fmt, torch.float32))
    if nzero and fmt == "gptq":
        # the per-nibble "+1" (AutoGPTQ / exllama style) would decode these words wrongly
        pn = ref_gptq_per_nibble(tensors["qzeros"], bits, N)
        zz = ref_zeros(tensors["qzeros"], bits, N, fmt)
        print(f"  {name}: {nzero} zero points are 0; per-nibble v1 decode differs in "
              f"{int((pn != zz).sum())} zero points")
    finish_gptq(name, seed, M, K, x_dtype, tensors, ql.bias, w_nk, w32_nk, bits, gs, sym, fmt,
                f"gptqmodel {ver('gptqmodel')}", description, actorder, nzero=nzero)


def ref_zeros(qzeros, bits, N, fmt):
    pf, mask = 32 // bits, (1 << bits) - 1
    qz = u32(qzeros)
    if fmt == "gptq":
        qz = (qz + (0x11111111 if bits == 4 else 0x01010101)) & 0xFFFFFFFF
    n = np.arange(N)
    return (qz[:, n // pf] >> (bits * (n % pf))[None, :]) & mask


def ref_gptq_per_nibble(qzeros, bits, N):
    pf, mask = 32 // bits, (1 << bits) - 1
    n = np.arange(N)
    return ((u32(qzeros)[:, n // pf] >> (bits * (n % pf))[None, :]) & mask) + 1


def finish_gptq(name, seed, M, K, x_dtype, tensors, bias, w_nk, w32_nk, bits, gs, sym, fmt, source,
                description, actorder, nzero=0):
    g = torch.Generator().manual_seed(seed + 1000)
    x = make_x(g, M, K, x_dtype)
    t = case_tensors(name, x, tensors, bias, w_nk, w32_nk)
    gi = tensors["g_idx"]
    mono = bool((gi[1:] >= gi[:-1]).all())
    params = {"bits": bits, "group_size": gs, "sym": sym, "format": fmt,
              "expected_weight_dtype": DT_NAME[w_nk.dtype]}
    desc = f"{description}; desc_act={'true' if actorder else 'false'}; g_idx {'monotonic' if mono else 'non-monotonic'}; {nzero} zero points z=0"
    save(name, "gptq_matmul", t, params, source, desc)


# --------------------------------------------------------------------------- AWQ

def awq_autoawq(name, seed, M, K, N, gs, x_dtype, bias, description, pos_rows=()):
    from awq.modules.linear.gemm import WQLinear_GEMM
    from awq.quantize.quantizer import AwqQuantizer
    from awq.utils.packing_utils import dequantize_gemm
    lin, _, g = make_layer(seed, N, K, bias, pos_rows=pos_rows)
    # AwqQuantizer._apply_quant: pseudo-quantize, then WQLinear_GEMM.from_linear.
    # (The activation-aware scale search / clipping only changes W, not the format.)
    cfg = SimpleNamespace(w_bit=4, group_size=gs, zero_point=True)
    with torch.no_grad():
        lin.weight.data, scales, zeros = AwqQuantizer.pseudo_quantize_tensor(cfg, lin.weight.data)
    ql = WQLinear_GEMM.from_linear(lin, 4, gs, init_only=False, scales=scales.t().contiguous(),
                                   zeros=zeros.t().contiguous())
    w_nk = dequantize_gemm(ql.qweight, ql.qzeros, ql.scales, 4, gs).t().contiguous()
    w32_nk = dequantize_gemm(ql.qweight, ql.qzeros, ql.scales.float(), 4, gs).t().contiguous()
    finish_awq(name, seed, M, K, x_dtype, ql, w_nk, w32_nk, gs, f"autoawq {ver('autoawq')}", description,
               int((zeros == 0).sum()))


def awq_gptqmodel(name, seed, M, K, N, gs, x_dtype, bias, description, pos_rows=()):
    from gptqmodel.looper.awq_processor import AWQProcessor
    from gptqmodel.nn_modules.qlinear.torch_awq import AwqTorchLinear
    from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm
    lin, _, g = make_layer(seed, N, K, bias, pos_rows=pos_rows)
    cfg = SimpleNamespace(qcfg=SimpleNamespace(group_size=gs, sym=False, bits=4))
    with torch.no_grad():
        lin.weight.data, scales, zeros = AWQProcessor.pseudo_quantize_tensor(cfg, lin.weight.data)
    ql = AwqTorchLinear(bits=4, group_size=gs, sym=False, desc_act=False, in_features=K,
                        out_features=N, bias=bias)
    ql.pack(lin, scales, zeros)
    w_nk = dequantize_gemm(ql.qweight, ql.qzeros, ql.scales, 4, gs).t().contiguous()
    w32_nk = dequantize_gemm(ql.qweight, ql.qzeros, ql.scales.float(), 4, gs).t().contiguous()
    finish_awq(name, seed, M, K, x_dtype, ql, w_nk, w32_nk, gs, f"gptqmodel {ver('gptqmodel')}", description,
               int((zeros == 0).sum()))


def finish_awq(name, seed, M, K, x_dtype, ql, w_nk, w32_nk, gs, source, description, nzero):
    tensors = {"qweight": ql.qweight, "qzeros": ql.qzeros, "scales": ql.scales}
    check_weight(name, "QUANT_FORMATS decoder", w_nk, ref_awq(*tensors.values(), gs))
    check_f32(name, w_nk, w32_nk)
    check_weight(name, "QUANT_FORMATS decoder (f32)", w32_nk, ref_awq(*tensors.values(), gs, torch.float32))
    g = torch.Generator().manual_seed(seed + 1000)
    x = make_x(g, M, K, x_dtype)
    t = case_tensors(name, x, tensors, ql.bias, w_nk, w32_nk)
    save(name, "awq_matmul", t, {"group_size": gs, "expected_weight_dtype": DT_NAME[w_nk.dtype]}, source,
         f"{description}; {nzero} zero points z=0")


# --------------------------------------------------------------------------- NVFP4

DT_NAME = {torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32"}


def nvfp4_weight(seed, N, K, dtype, bias):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, K, generator=g) * 0.05
    w[:, :16] *= 4.0  # one wider-range block column
    w[0, 16:32] = 0.0  # an all-zero block (producers pick different scales for it)
    w[1, 32:48] *= 1e-4  # a tiny block: subnormal e4m3 block scale
    w = w.to(dtype)
    b = (torch.randn(N, generator=g) * 0.1).to(dtype) if bias else None
    return w, b, g


def nvfp4_modelopt(name, seed, M, K, N, w_dtype, x_dtype, bias, description):
    from modelopt.torch.quantization.qtensor.nvfp4_tensor import NVFP4QTensor
    w, b, g = nvfp4_weight(seed, N, K, w_dtype, bias)
    qt, wscale, wscale2 = NVFP4QTensor.quantize(w, 16)
    packed = qt._quantized_data
    w_nk = qt.dequantize(dtype=w_dtype, scale=wscale, double_scale=wscale2, block_sizes={-1: 16})
    w32_nk = qt.dequantize(dtype=torch.float32, scale=wscale, double_scale=wscale2, block_sizes={-1: 16})
    assert wscale2.dtype == torch.float32, wscale2.dtype
    ws2 = wscale2.float().reshape(1)
    check_weight(name, "QUANT_FORMATS decoder (x weight_scale_2)", w_nk,
                 ref_nvfp4(packed, wscale, ws2.item(), w_dtype))
    check_f32(name, w_nk, w32_nk)
    check_weight(name, "QUANT_FORMATS decoder (x weight_scale_2, f32)", w32_nk,
                 ref_nvfp4(packed, wscale, ws2.item(), torch.float32))
    tensors = {"weight_packed": packed, "weight_scale": wscale, "weight_scale_2": ws2}
    finish_nvfp4(name, seed, M, K, x_dtype, tensors, b, w_nk, w32_nk, f"nvidia-modelopt {ver('nvidia-modelopt')}",
                 description + f"; ModelOpt weight_scale_2 had shape {list(wscale2.shape)}")


def nvfp4_compressed_tensors(name, seed, M, K, N, w_dtype, x_dtype, bias, description):
    from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
    from compressed_tensors.quantization import QuantizationScheme
    from compressed_tensors.quantization.quant_scheme import NVFP4A16
    from compressed_tensors.quantization.utils.helpers import calculate_qparams, generate_gparam
    w, b, g = nvfp4_weight(seed, N, K, w_dtype, bias)
    scheme = QuantizationScheme(targets=["Linear"], **NVFP4A16)
    args = scheme.weights
    # what llm-compressor's observers do: tensor-wide global scale, then per-16 scales
    gscale = generate_gparam(w.amin().reshape(1).float(), w.amax().reshape(1).float())
    wg = w.float().reshape(N, K // 16, 16)
    scale, _ = calculate_qparams(wg.amin(-1), wg.amax(-1), args, global_scale=gscale)
    sd = {"weight": w, "weight_scale": scale, "weight_global_scale": gscale}
    comp = NVFP4PackedCompressor.compress(sd, scheme)
    packed, wscale, wgs = comp["weight_packed"], comp["weight_scale"], comp["weight_global_scale"]
    dec = NVFP4PackedCompressor.decompress(dict(comp), scheme)
    w_nk = dec["weight"]
    # NVFP4PackedCompressor.decompress always works in bf16 (unpack_fp4_from_uint8's
    # default dtype); its own steps with dtype float32 give the f32 weight.  The same
    # steps with bf16 must reproduce decompress() exactly.
    assert torch.equal(ct_decompress(comp, scheme, torch.bfloat16).view(torch.int16), w_nk.view(torch.int16))
    w32_nk = ct_decompress(comp, scheme, torch.float32)
    assert wgs.dtype == torch.float32, wgs.dtype
    wgs = wgs.float().reshape(1)
    check_weight(name, "QUANT_FORMATS decoder (x 1/weight_global_scale)", w_nk,
                 ref_nvfp4(packed, wscale, np.float32(1.0) / np.float32(wgs.item()), w_nk.dtype))
    check_f32(name, w_nk, w32_nk)
    check_weight(name, "QUANT_FORMATS decoder (/ weight_global_scale, f32)", w32_nk,
                 ref_nvfp4(packed, wscale, None, torch.float32, divisor=wgs.item()))
    recip = ref_nvfp4(packed, wscale, np.float32(1.0) / np.float32(wgs.item()), torch.float32)
    nw = int((recip != w32_nk).sum())
    print(f"  {name}: f32 weights with scale*(1/gs) instead of scale/gs: {nw} of {recip.numel()} differ")
    # compressed-tensors divides: scale / global_scale (not scale * (1 / global_scale))
    div = (wscale.float() / wgs).numpy().astype(np.float32)
    mul = (wscale.float().numpy() * (np.float32(1.0) / np.float32(wgs.item()))).astype(np.float32)
    nd = int((div != mul).sum())
    print(f"  {name}: block multipliers scale/gs vs scale*(1/gs) differ in {nd} of {div.size} blocks")
    if nd:
        findings.append(f"{name}: f32 block multiplier scale/gs != scale*(1/gs) in {nd} of {div.size} blocks")
    tensors = {"weight_packed": packed, "weight_scale": wscale, "weight_global_scale": wgs}
    finish_nvfp4(name, seed, M, K, x_dtype, tensors, b, w_nk, w32_nk,
                 f"compressed-tensors {ver('compressed-tensors')}", description)


def ct_decompress(comp, scheme, dtype):
    """NVFP4PackedCompressor.decompress's steps (compressed-tensors 0.20), with the
    working dtype as a parameter instead of unpack_fp4_from_uint8's bf16 default."""
    from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
    from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8
    from compressed_tensors.quantization.lifecycle.forward import dequantize
    packed = comp["weight_packed"]
    m, n = packed.shape
    unpacked = unpack_fp4_from_uint8(packed, m, n * 2, dtype=dtype)
    scale = NVFP4PackedCompressor._decompress_scale(comp["weight_scale"], unpacked.dtype)
    return dequantize(x_q=unpacked, scale=scale, args=scheme.weights,
                      global_scale=comp.get("weight_global_scale"), dtype=unpacked.dtype)


def finish_nvfp4(name, seed, M, K, x_dtype, tensors, b, w_nk, w32_nk, source, description):
    assert tensors["weight_packed"].dtype == torch.uint8
    assert tensors["weight_scale"].dtype == torch.float8_e4m3fn
    g = torch.Generator().manual_seed(seed + 1000)
    x = make_x(g, M, K, x_dtype)
    t = case_tensors(name, x, tensors, b, w_nk, w32_nk)
    save(name, "nvfp4_matmul", t, {"expected_weight_dtype": DT_NAME[w_nk.dtype]}, source, description)


# --------------------------------------------------------------------------- cases

def main():
    F16, BF16, F32 = torch.float16, torch.bfloat16, torch.float32
    print("GPTQ")
    gptq_autogptq("gptq_4bit_g128_sym_autogptq_f16", 11, 1, 512, 64, 4, 128, True, False, F16, False,
                  "AutoGPTQ 4-bit g128 sym, M=1")
    gptq_gptqmodel("gptq_4bit_g32_asym_actorder_gptqmodel_f16", 12, 3, 256, 64, 4, 32, False, True, F16,
                   True, "gptq", "GPTQModel 4-bit g32 asym, desc_act (act-order), v1 zeros, bias")
    gptq_autogptq("gptq_8bit_gm1_sym_autogptq_bf16", 13, 16, 256, 96, 8, -1, True, False, BF16, True,
                  "AutoGPTQ 8-bit group_size -1 (one group) sym, bias, bf16 activations")
    gptq_autogptq("gptq_8bit_g64_asym_actorder_autogptq_f16", 14, 3, 384, 64, 8, 64, False, True, F16, False,
                  "AutoGPTQ 8-bit g64 asym, desc_act (act-order)")
    gptq_gptqmodel("gptq_4bit_g64_asym_zero_v2_gptqmodel_f32", 15, 16, 256, 128, 4, 64, False, False, F32,
                   True, "gptq_v2", "GPTQModel 4-bit g64 asym with z=0 zero points, v2 zeros (stores z), "
                   "bias, f32 activations", pos_rows=(0, 3, 9, 10, 11, 17, 64, 127))
    gptq_gptqmodel("gptq_4bit_g32_asym_zero_v1_gptqmodel_f16", 16, 3, 256, 64, 4, 32, False, False, F16,
                   False, "gptq", "GPTQModel 4-bit g32 asym with z=0 zero points exported as v1 "
                   "(whole-word z-1, borrows across nibbles)", pos_rows=(1, 2, 8, 15, 31, 40, 63))
    gptq_gptqmodel("gptq_8bit_g128_sym_gptqmodel_f16", 17, 1, 256, 96, 8, 128, True, False, F16, False,
                   "gptq", "GPTQModel 8-bit g128 sym, v1 zeros, M=1")
    print("AWQ")
    awq_autoawq("awq_g128_autoawq_f16", 21, 1, 512, 64, 128, F16, True, "AutoAWQ GEMM 4-bit g128, bias, M=1")
    awq_autoawq("awq_g64_autoawq_bf16", 22, 16, 256, 64, 64, BF16, False,
                "AutoAWQ GEMM 4-bit g64, bf16 activations, some z=0", pos_rows=(2, 5, 33))
    awq_gptqmodel("awq_g64_gptqmodel_f16", 23, 3, 192, 96, 64, F16, True,
                  "GPTQModel AWQ GEMM 4-bit g64, bias", pos_rows=(7,))
    print("NVFP4")
    nvfp4_modelopt("nvfp4_modelopt_f16", 31, 3, 128, 64, F16, F16, False,
                   "ModelOpt NVFP4 (weight_scale_2 multiplier), f16 weight")
    nvfp4_modelopt("nvfp4_modelopt_n200_bf16", 32, 1, 256, 200, BF16, BF16, True,
                   "ModelOpt NVFP4, N=200, bf16 weight and activations, bias")
    # seed 37: a global scale whose f32 reciprocal would change ~63% of the f32
    # weights (scale * (1/gs) vs scale / gs), so expected_weight_f32 tells them apart
    nvfp4_compressed_tensors("nvfp4_ct_f16", 37, 16, 320, 48, F16, F16, True,
                             "compressed-tensors NVFP4A16 (weight_global_scale divisor), f16 weight, bias")
    nvfp4_compressed_tensors("nvfp4_ct_n200_k176_bf16", 34, 3, 176, 200, BF16, BF16, False,
                             "compressed-tensors NVFP4A16, N=200, K=176 (11 blocks, K % 32 != 0), "
                             "bf16 weight")
    print(f"wrote {len(written)} cases to {OUT}")
    total = summarize(written)
    print("findings:" if findings else "findings: none")
    for f in findings:
        print("  " + f)
    assert total < 1.5 * 1024 * 1024, total


if __name__ == "__main__":
    main()
