#!/usr/bin/env python3
"""Golden cases for the core ops (matmul, rms_norm, fused_add_rms_norm,
attention, paged_attention), computed independently with PyTorch in float64.

Inputs are random normal, generated with fixed seeds and stored in the storage
dtype; every expected output is the formula evaluated in float64 from the stored
(already rounded) inputs and rounded ONCE to the storage dtype (expected_lse
stays float32).

Usage:  python scripts/golden/make_core_cases.py [OUT_DIR]   (default tests/golden/core)
"""

import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_common import DTYPES, randn, round_once, summarize, write_case  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "golden", "core")
SOURCE = f"torch {torch.__version__.split('+')[0]} float64"
written = []


def out_path(name):
    return os.path.join(OUT, name + ".safetensors")


def save(name, op, tensors, params, description):
    p = out_path(name)
    write_case(p, op, tensors, params, SOURCE, description)
    written.append(p)


# --------------------------------------------------------------------------- matmul

def matmul_case(name, seed, dt, a_shape, b_shape, layout, bias, description):
    g = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dt]
    K = a_shape[-1]
    a = randn(g, a_shape, dtype)
    b = randn(g, b_shape, dtype, scale=1.0 / math.sqrt(K))
    b64 = b.double()
    bkn = b64 if layout == "kn" else b64.transpose(-1, -2)
    assert bkn.shape[-2] == K
    N = bkn.shape[-1]
    out = torch.matmul(a.double(), bkn)  # broadcasts a 2-D b over a 3-D a
    tensors = {"a": a, "b": b}
    if bias:
        bi = randn(g, (N,), dtype)
        out = out + bi.double()
        tensors["bias"] = bi
    tensors["expected"] = round_once(out, dtype)
    save(name, "matmul", tensors, {"b_layout": layout}, description)


def make_matmul():
    matmul_case("matmul_kn_f32", 101, "f32", (5, 64), (64, 48), "kn", False,
                "2-D a[M,K] @ b[K,N]")
    matmul_case("matmul_nk_bias_f16", 102, "f16", (7, 96), (40, 96), "nk", True,
                "2-D a[M,K] @ b[N,K]^T + bias")
    matmul_case("matmul_nk_bf16", 103, "bf16", (1, 128), (72, 128), "nk", False,
                "M=1 (GEMV shape), b[N,K]")
    matmul_case("matmul_batched_kn_bf16", 104, "bf16", (3, 4, 32), (3, 32, 24), "kn", True,
                "batched a[B,M,K] @ b[B,K,N] + bias")
    matmul_case("matmul_batched_nk_f32", 105, "f32", (2, 6, 40), (2, 20, 40), "nk", False,
                "batched a[B,M,K] @ b[B,N,K]^T")
    matmul_case("matmul_broadcast_nk_f16", 106, "f16", (2, 5, 48), (24, 48), "nk", False,
                "3-D a[B,M,K] with 2-D b[N,K] broadcast over the batch")
    matmul_case("matmul_broadcast_kn_bias_bf16", 107, "bf16", (3, 3, 64), (64, 16), "kn", True,
                "3-D a[B,M,K] with 2-D b[K,N] broadcast over the batch, + bias")


# --------------------------------------------------------------------------- rms_norm

def rms64(x64, w64, eps, offset):
    return x64 / torch.sqrt((x64 * x64).mean(dim=-1, keepdim=True) + eps) * (w64 + offset)


def rms_case(name, seed, dt, rows, H, eps, offset, description, x_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dt]
    x = randn(g, (rows, H), dtype, scale=x_scale)
    w = randn(g, (H,), dtype, scale=0.1) if offset else (1.0 + randn(g, (H,), torch.float32, 0.1)).to(dtype)
    y = rms64(x.double(), w.double(), eps, offset)
    save(name, "rms_norm", {"x": x, "weight": w, "expected": round_once(y, dtype)},
         {"eps": eps, "weight_offset": offset}, description)


def fused_case(name, seed, dt, rows, H, eps, offset, description):
    g = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dt]
    x = randn(g, (rows, H), dtype)
    r = randn(g, (rows, H), dtype, scale=3.0)
    w = randn(g, (H,), dtype, scale=0.1) if offset else (1.0 + randn(g, (H,), torch.float32, 0.1)).to(dtype)
    new_r = round_once(x.double() + r.double(), dtype)  # rounded to storage dtype FIRST
    y = rms64(new_r.double(), w.double(), eps, offset)
    save(name, "fused_add_rms_norm",
         {"x": x, "residual": r, "weight": w, "expected": round_once(y, dtype),
          "expected_residual": new_r},
         {"eps": eps, "weight_offset": offset}, description)


def make_norms():
    rms_case("rms_norm_f32", 201, "f32", 4, 256, 1e-6, 0, "Llama-style RMSNorm")
    rms_case("rms_norm_f16", 202, "f16", 5, 128, 1e-5, 0, "Llama-style RMSNorm, inputs scaled by 8",
             x_scale=8.0)
    rms_case("rms_norm_gemma_bf16", 203, "bf16", 3, 192, 1e-6, 1, "Gemma-style RMSNorm (weight + 1)")
    rms_case("rms_norm_small_bf16", 204, "bf16", 2, 64, 0.1, 0, "large eps relative to tiny inputs",
             x_scale=0.05)
    fused_case("fused_add_rms_norm_f32", 211, "f32", 3, 128, 1e-6, 0, "residual add then RMSNorm")
    fused_case("fused_add_rms_norm_f16", 212, "f16", 4, 256, 1e-5, 0,
               "residual add (rounded to f16 first) then RMSNorm")
    fused_case("fused_add_rms_norm_gemma_bf16", 213, "bf16", 6, 96, 1e-6, 1,
               "residual add (rounded to bf16 first) then Gemma RMSNorm (weight + 1)")


# --------------------------------------------------------------------------- attention

def visible_mask(sq, sk, causal, wl, wr):
    """FlashAttention semantics: bottom-right aligned, query i at pos i + sk - sq."""
    if causal:
        wr = 0
    i = torch.arange(sq).unsqueeze(1)
    j = torch.arange(sk).unsqueeze(0)
    pos = i + sk - sq
    m = torch.ones(sq, sk, dtype=torch.bool)
    if wl >= 0:
        m &= j >= pos - wl
    if wr >= 0:
        m &= j <= pos + wr
    return m


def attn_seq_f64(q, k, v, scale, causal, wl, wr, softcap):
    """One sequence. q [sq,Hq,D], k/v [sk,Hkv,D] float64.
    Returns out [sq,Hq,D] f64 and lse [Hq,sq] f64 (explicit math)."""
    sq, Hq, D = q.shape
    sk, Hkv, _ = k.shape
    grp = Hq // Hkv
    ke = k.repeat_interleave(grp, dim=1)  # query head h -> kv head h // grp
    ve = v.repeat_interleave(grp, dim=1)
    s = torch.einsum("qhd,khd->hqk", q, ke) * scale
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    m = visible_mask(sq, sk, causal, wl, wr).unsqueeze(0)  # [1,sq,sk]
    s = s.masked_fill(~m, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # [Hq,sq], -inf where nothing is visible
    p = torch.exp(s - lse.unsqueeze(-1))
    p = torch.nan_to_num(p, nan=0.0)  # fully masked rows: -inf - -inf
    out = torch.einsum("hqk,khd->qhd", p, ve)
    return out, lse


def attn_seq_sdpa(q, k, v, scale, causal, wl, wr):
    """Same as attn_seq_f64 without softcap, via torch's SDPA (math backend, f64)."""
    sq, Hq, D = q.shape
    sk, Hkv, _ = k.shape
    m = visible_mask(sq, sk, causal, wl, wr)
    if sq == 0:
        return q.new_zeros(0, Hq, D)
    if sk == 0:
        return q.new_zeros(sq, Hq, D)
    o = F.scaled_dot_product_attention(
        q.transpose(0, 1).unsqueeze(0), k.transpose(0, 1).unsqueeze(0),
        v.transpose(0, 1).unsqueeze(0), attn_mask=m, scale=scale, enable_gqa=True)
    o = o.squeeze(0).transpose(0, 1)
    dead = ~m.any(dim=1)  # rows with no visible key -> 0 (SDPA may give NaN)
    o[dead] = 0.0
    return o


def attention_case(name, seed, dt, seqs, Hq, Hkv, D, causal, scale=None, wl=-1, wr=-1,
                   softcap=0.0, q_scale=1.0, description=""):
    g = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dt]
    sqs = [s[0] for s in seqs]
    sks = [s[1] for s in seqs]
    cu_q = torch.tensor([0] + list(torch.tensor(sqs).cumsum(0)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(torch.tensor(sks).cumsum(0)), dtype=torch.int32)
    tq, tk = int(cu_q[-1]), int(cu_k[-1])
    q = randn(g, (tq, Hq, D), dtype, scale=q_scale)
    k = randn(g, (tk, Hkv, D), dtype)
    v = randn(g, (tk, Hkv, D), dtype)
    eff_scale = scale if scale is not None else 1.0 / math.sqrt(D)
    out = torch.zeros(tq, Hq, D, dtype=torch.float64)
    lse = torch.full((Hq, tq), float("-inf"), dtype=torch.float64)
    for b in range(len(seqs)):
        q0, q1, k0, k1 = int(cu_q[b]), int(cu_q[b + 1]), int(cu_k[b]), int(cu_k[b + 1])
        qb, kb, vb = q[q0:q1].double(), k[k0:k1].double(), v[k0:k1].double()
        o, l = attn_seq_f64(qb, kb, vb, eff_scale, causal, wl, wr, softcap)
        if softcap == 0:
            o_sdpa = attn_seq_sdpa(qb, kb, vb, eff_scale, causal, wl, wr)
            assert torch.allclose(o, o_sdpa, rtol=1e-10, atol=1e-12), name
            o = o_sdpa  # SDPA is the source of truth where it applies
        out[q0:q1] = o
        lse[:, q0:q1] = l
    tensors = {"q": q, "k": k, "v": v, "cu_seqlens_q": cu_q, "cu_seqlens_k": cu_k,
               "expected": round_once(out, dtype), "expected_lse": lse.float()}
    params = {"causal": causal, "softmax_scale": scale, "window_left": wl,
              "window_right": wr, "softcap": softcap}
    save(name, "attention", tensors, params, description)


def make_attention():
    attention_case("attention_gqa_causal_bf16", 301, "bf16", [(5, 5), (3, 9)], 8, 2, 64, True,
                   description="GQA Hq=8 Hkv=2, causal, second sequence sq<sk (bottom-right)")
    attention_case("attention_mqa_f16", 302, "f16", [(4, 6), (7, 7)], 4, 1, 32, False,
                   description="MQA Hkv=1, non-causal, sq<sk and sq=sk")
    attention_case("attention_mqa_causal_f32", 303, "f32", [(2, 11), (6, 6)], 6, 1, 64, True,
                   description="MQA Hkv=1, causal, sq<sk (bottom-right)")
    attention_case("attention_window_left_causal_f16", 304, "f16", [(9, 9), (4, 10)], 4, 2, 64, True,
                   wl=3, description="sliding window left=3, causal, GQA 4/2")
    attention_case("attention_window_both_f32", 305, "f32", [(8, 8), (3, 7)], 4, 2, 32, False,
                   wl=2, wr=1, description="sliding window left=2 right=1, non-causal")
    attention_case("attention_window_both_bf16", 306, "bf16", [(6, 10), (5, 5)], 2, 2, 64, False,
                   wl=4, wr=2, description="sliding window left=4 right=2, non-causal, MHA")
    attention_case("attention_softcap_causal_bf16", 307, "bf16", [(6, 6), (3, 8)], 4, 2, 64, True,
                   softcap=5.0, q_scale=3.0,
                   description="softcap 5 (scores ~N(0,9), so the cap matters), causal, GQA")
    attention_case("attention_softcap_window_f16", 308, "f16", [(7, 9)], 8, 2, 32, True,
                   softcap=10.0, wl=4, q_scale=3.0, scale=0.25,
                   description="softcap 10 with sliding window left=4, causal, scale 0.25")
    attention_case("attention_varlen_mixed_f16", 309, "f16",
                   [(0, 0), (1, 1), (6, 6), (0, 3), (1, 5), (9, 12)], 4, 2, 64, True, scale=0.1,
                   description="batch mixing seqlens 0, 1 and longer; causal; softmax_scale 0.1")
    attention_case("attention_varlen_noncausal_bf16", 310, "bf16", [(1, 1), (0, 4), (5, 8), (3, 3)],
                   4, 4, 32, False, scale=0.2,
                   description="batch mixing seqlens 0, 1 and longer; non-causal; softmax_scale 0.2")
    attention_case("attention_fully_masked_f32", 311, "f32", [(6, 3), (2, 0), (4, 4)], 4, 2, 32, True,
                   description="causal with sq>sk (first rows see no key) and sk=0: "
                               "fully masked rows output 0 and lse -inf")
    attention_case("attention_fully_masked_window_bf16", 312, "bf16", [(5, 2), (3, 3)], 4, 1, 64, False,
                   wl=0, wr=0, description="window 0/0 non-causal with sq>sk: rows at negative "
                                           "positions see nothing (output 0, lse -inf)")
    attention_case("attention_d128_f32", 313, "f32", [(3, 5), (2, 2)], 2, 1, 128, True,
                   description="head dim 128, causal, MQA")


# --------------------------------------------------------------------------- paged attention

def paged_case(name, seed, dt, ctx_lens, Hq, Hkv, D, block_size, num_blocks, scale=None,
               wl=-1, wr=-1, softcap=0.0, q_scale=1.0, causal=True, description=""):
    g = torch.Generator().manual_seed(seed)
    dtype = DTYPES[dt]
    B = len(ctx_lens)
    q = randn(g, (B, Hq, D), dtype, scale=q_scale)
    kc = randn(g, (num_blocks, block_size, Hkv, D), dtype)
    vc = randn(g, (num_blocks, block_size, Hkv, D), dtype)
    need = [(c + block_size - 1) // block_size for c in ctx_lens]
    max_blocks = max(max(need), 1) + 1  # one spare column (unused entries = 0)
    assert sum(need) <= num_blocks
    perm = torch.randperm(num_blocks, generator=g).tolist()  # shuffled, non-contiguous ids
    bt = torch.zeros(B, max_blocks, dtype=torch.int32)
    it = iter(perm)
    for b in range(B):
        for i in range(need[b]):
            bt[b, i] = next(it)
    eff_scale = scale if scale is not None else 1.0 / math.sqrt(D)
    out = torch.zeros(B, Hq, D, dtype=torch.float64)
    for b in range(B):
        c = ctx_lens[b]
        t = torch.arange(c)
        blk = bt[b, t // block_size].long()
        kb = kc[blk, t % block_size].double()  # [c,Hkv,D]
        vb = vc[blk, t % block_size].double()
        qb = q[b:b + 1].double()  # sq=1, at position c-1
        o, _ = attn_seq_f64(qb, kb, vb, eff_scale, True, wl, wr, softcap)
        if softcap == 0:
            o_sdpa = attn_seq_sdpa(qb, kb, vb, eff_scale, True, wl, wr)
            assert torch.allclose(o, o_sdpa, rtol=1e-10, atol=1e-12), name
            o = o_sdpa
        out[b] = o[0]
    tensors = {"q": q, "k_cache": kc, "v_cache": vc, "block_tables": bt,
               "context_lens": torch.tensor(ctx_lens, dtype=torch.int32),
               "expected": round_once(out, dtype)}
    params = {"causal": causal, "softmax_scale": scale, "window_left": wl,
              "window_right": wr, "softcap": softcap}
    save(name, "paged_attention", tensors, params, description)


def make_paged():
    paged_case("paged_attention_gqa_f16", 401, "f16", [0, 17, 5, 32], 8, 2, 64, 16, 8,
               description="GQA 8/2, block 16, context lens 0 (output 0), 17, 5 (partial blocks), 32")
    paged_case("paged_attention_window_bf16", 402, "bf16", [13, 1, 24], 4, 2, 64, 8, 10, wl=7,
               description="sliding window left=7, block 8, partially filled last blocks")
    paged_case("paged_attention_softcap_f32", 403, "f32", [9, 0, 20], 4, 1, 32, 4, 12,
               softcap=10.0, q_scale=4.0, causal=False,
               description="softcap 10, MQA, block 4, context len 0 row (causal=false: a no-op)")
    paged_case("paged_attention_mqa_scale_bf16", 404, "bf16", [31, 2], 8, 1, 128, 16, 5, scale=0.05,
               description="MQA 8/1, head dim 128, softmax_scale 0.05")
    paged_case("paged_attention_window_softcap_f16", 405, "f16", [40, 7, 0, 16], 4, 2, 32, 16, 8,
               wl=10, wr=0, softcap=20.0, q_scale=3.0,
               description="window left=10 right=0 with softcap 20, GQA 4/2")


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    make_matmul()
    make_norms()
    make_attention()
    make_paged()
    print(f"wrote {len(written)} cases to {OUT} ({SOURCE})")
    total = summarize(written)
    assert total < 1.5 * 1024 * 1024, total
