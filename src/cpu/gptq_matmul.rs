//! gptq_matmul on the `cpu` backend: `y = x · dequant(W)ᵀ (+ bias)` with W
//! dequantized in registers, never materialized.
//!
//! Work split: tasks own strips of `STRIP` output columns (the qweight
//! words of a strip are contiguous along N, `STRIP·4` bytes per word row),
//! stream the strip's words down K once per block of `gptq_mr` rows of x,
//! and keep the tile's accumulators in registers (`simd/quant.rs`). For
//! M = 1 a strip is one body call of 8 (AVX-512) or 4 (AVX2) vectors of
//! columns, so each packed word is loaded once and feeds 8 (4-bit) or 4
//! (8-bit) FMAs per row of x. Larger M re-streams the strip (it is
//! `K/pf · STRIP · 4` bytes, 256 KiB for K = 4096 at 4 bits: in L2) once
//! per row block; no dequantize-on-pack GEMM path yet, so prefill runs at
//! the dequantizing GEMV's speed per row block rather than at GEMM speed.
//!
//! Fast path (f32 x, `g_idx` the sequential `k / group_size` — checked on
//! every call, O(K) — and groups of whole words): each group accumulates
//! `Σ_k x[k]·q[k,n]` and adds `s·(acc − z·Σ_k x[k])` at its end (the
//! factored form). Fields are converted in place (`w & mask << b·j` is
//! `q·2^(b·j)`, against x prescaled by `2^(−b·j)`, exact), so an element
//! costs an and, a convert and an FMA. x with tiny elements (< 2^-100,
//! which prescaling would push out of the normal range) takes the shifting
//! variant.
//!
//! Otherwise every depth looks up its group (act-order; a group size that
//! splits a word) — clamped to `[0, G)` as the contract requires — and
//! forms `W = s·(q − z)` per element.
//!
//! Rounding: the contract rounds W to x's dtype. f32 x: W is exact, and the
//! factored form is that W reassociated. f16 / bf16 x: W is formed per
//! element and rounded to x's dtype in registers (F16C / integer RNE), so
//! the factored form is not available (it never forms W) and this path
//! (sequential groups included) runs per element; it costs about four
//! times the fast path. Using the exact f32 weight for f16 / bf16 x was
//! tried first and is NOT inside the tolerance: it differs by one rounding
//! of W per element, but the tolerance is relative to |y|, and an output
//! with cancellation (|y| ≪ Σ|x·W|, e.g. N = 1 in the conformance suite)
//! fails it. Accumulation is f32 in a fixed order; bias is added before the
//! one rounding to x's dtype.
//!
//! Lookup-table GEMV (AVX-512, M = 1, f16 / bf16 x, 4-bit, sequential
//! groups of whole 128-depth chunks, or one group with K % 128 = 0): per
//! (column, group) a 16-entry table `T[q] = round(s·(q − z))` (formed as
//! the per-element paths form it, so bit-identical weights) in one vector;
//! blocks of 16 word rows × 16 columns are transposed in registers and each
//! column's nibbles index its table (`permutexvar`), against x permuted once
//! per call (`permute_gptq_lut_x`). One accumulator vector per column over
//! all of K, reduced once: the order depends on the shape only. About 1.7×
//! the per-element path (4096², 1 thread); f32 x keeps the factored form
//! (faster there), M > 1 the row-block bodies.
//!
//! Columns past the last whole vector of a strip (N not a multiple of the
//! lane count) take a scalar path.

use half::{bf16, f16};

use crate::cpu::access::lock;
use crate::cpu::quant_common::{Scales, by_columns, group_sums, round_code, x_f32};
use crate::cpu::simd::Elem;
use crate::cpu::simd::quant::{
    GptqStrip, GroupMap, Groups, QuantKernels, permute_gptq_lut_x, prescale_gptq_x, prescale_ok,
    quant_kernels,
};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::GptqMatmulProblem;

const OP: &str = "gptq_matmul";

/// Strips the lookup-table GEMV ran (tests check they reach it).
#[cfg(test)]
pub(crate) static LUT_CALLS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Output columns per task (a multiple of every level's `NV1 · LANES`).
const STRIP: usize = 128;

/// The weight in place.
struct Weight<'a> {
    qw: &'a [u32],
    qz: &'a [u32],
    scales: Scales<'a>,
    g_idx: &'a [i32],
    bits: u32,
    k: usize,
    n: usize,
    groups: usize,
    group_size: usize,
}

pub(crate) fn run(p: &GptqMatmulProblem<'_>) -> Result<()> {
    run_with(p, quant_kernels())
}

/// [`run`] with the kernels of a given level (tests run every level).
pub(crate) fn run_with(p: &GptqMatmulProblem<'_>, qk: &QuantKernels) -> Result<()> {
    let w = p.weight;
    let mut inputs = vec![p.x, w.qweight(), w.qzeros(), w.scales(), w.g_idx()];
    inputs.extend(p.bias);
    let mut locked = lock(OP, &inputs, &[p.out])?;
    let (inp, mut outs) = locked.split();
    let weight = Weight {
        qw: inp.get(w.qweight())?,
        qz: inp.get(w.qzeros())?,
        scales: Scales::get(OP, &inp, w.scales())?,
        g_idx: inp.get(w.g_idx())?,
        bits: w.bits(),
        k: p.k,
        n: p.n,
        groups: w.groups(),
        group_size: w.group_size().columns(p.k),
    };
    macro_rules! go {
        ($t:ty) => {{
            let bias = match p.bias {
                Some(b) => Some(inp.get::<$t>(b)?),
                None => None,
            };
            typed::<$t>(qk, &weight, p.m, inp.get(p.x)?, bias, outs.take(p.out)?)
        }};
    }
    match p.x.dtype() {
        DType::F16 => go!(f16),
        DType::BF16 => go!(bf16),
        _ => go!(f32),
    }
    Ok(())
}

fn typed<E: Elem>(
    qk: &QuantKernels,
    w: &Weight<'_>,
    m: usize,
    x: &[E],
    bias: Option<&[E]>,
    out: &mut [E],
) {
    let (k, n, bits) = (w.k, w.n, w.bits);
    let pf = (32 / bits) as usize;
    let krows = k / pf;
    let ng = w.groups.max(1);
    let gs = w.group_size.max(1);
    let x32 = x_f32(&x[..m * k]);
    let x32 = &*x32;
    let sequential = w
        .g_idx
        .iter()
        .enumerate()
        .all(|(i, &g)| g as usize == i / gs);
    // The factored form never forms W: f32 x only (f16 / bf16 x must see W
    // rounded to their dtype, formed per element).
    let round = round_code(E::DTYPE);
    let whole = sequential && (gs.is_multiple_of(pf) || w.groups <= 1);
    let uniform = round == 0 && whole;
    // f16 / bf16 x with sequential groups: W per element from per-group
    // tables (`gptq_rounded`), which needs `s·z` exact (f16 / bf16 scales)
    // and `s·2^(−b·j)` normal.
    // One row of f16 / bf16 x, 4-bit, sequential groups of whole 128-depth
    // chunks: the lookup-table GEMV (`QuantKernels::gptq4_lut`, AVX-512).
    // It takes f32 x too (tables unrounded), but the factored form is
    // faster there (0.57 vs 0.88 ms, 4096², 1 thread), so f32 stays on it.
    // M > 1 keeps the row-block bodies (they reuse each word across rows).
    let lut = m == 1
        && round != 0
        && bits == 4
        && sequential
        && qk.has_gptq4_lut()
        && k >= 128
        && k.is_multiple_of(128)
        && (w.groups <= 1 || (gs.is_multiple_of(128) && k.div_ceil(gs) <= w.groups));
    let rounded = !lut && round != 0 && whole && w.scales.half_and_normal(2f32.powi(-100));
    let uniform = uniform && !lut;
    let map = (!uniform && !rounded && !lut).then(|| GroupMap::clamped(w.g_idx, ng));
    let sx = if uniform {
        group_sums(x32, m, k, gs, ng)
    } else {
        Vec::new()
    };
    let gw = if w.groups <= 1 { krows } else { gs / pf };
    let xp = if lut {
        permute_gptq_lut_x(&x32[..k])
    } else {
        Vec::new()
    };
    let cpg = if w.groups <= 1 { usize::MAX } else { gs / 128 };
    // The fast path reads x prescaled per field (see `gptq_groups`).
    let prescaled = uniform && prescale_ok(x32);
    let xs = prescaled.then(|| prescale_gptq_x(x32, bits));
    let x_kernel: &[f32] = xs.as_deref().unwrap_or(x32);
    let group_of = |kk: usize| match &map {
        Some(map) => map.get(kk),
        None => kk / gs,
    };
    let mask = (1u32 << bits) - 1;
    let zpw = n / pf;
    by_columns((m, n, STRIP), bias, out, |j0, nn, buf| {
        if krows == 0 {
            return;
        }
        // Scales and zeros of the strip, f32, per group: `[G][2][nn]` (s,
        // z); for the rounded path `[G][pf + 1][nn]` (s·2^(−b·j) for field
        // j < pf − 1, s for the top field, then −s·z).
        let tw = nn;
        let rows = if rounded { pf + 1 } else { 2 };
        let mut tab = vec![0.0f32; ng * rows * tw];
        let mut s_row = vec![0.0f32; tw];
        let mut z_row = vec![0.0f32; tw];
        for g in 0..w.groups {
            w.scales.widen_into(g * n + j0, &mut s_row);
            qk.unpack_fields(&w.qz[g * zpw + j0 / pf..(g + 1) * zpw], bits, &mut z_row);
            let t = &mut tab[g * rows * tw..(g + 1) * rows * tw];
            if !rounded {
                t[..tw].copy_from_slice(&s_row);
                t[tw..].copy_from_slice(&z_row);
                continue;
            }
            for (j, dst) in t.chunks_exact_mut(tw).enumerate() {
                if j == pf {
                    for ((d, &sv), &zv) in dst.iter_mut().zip(&s_row).zip(&z_row) {
                        *d = -(sv * zv);
                    }
                } else {
                    let scale = if j + 1 < pf {
                        2f32.powi(-((bits as usize * j) as i32))
                    } else {
                        1.0
                    };
                    for (d, &sv) in dst.iter_mut().zip(&s_row) {
                        *d = sv * scale;
                    }
                }
            }
        }
        let nvec = if lut { nn / 16 } else { nn / qk.lanes };
        let lanes = if lut { 16 } else { qk.lanes };
        if lut {
            #[cfg(test)]
            LUT_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let done = qk.gptq4_lut(round, &w.qw[j0..], n, krows, &xp, &tab, tw, cpg, buf, nvec);
            assert!(done, "gptq4_lut chosen without a body");
        }
        let mr = qk.gptq_mr();
        for i0 in (0..m).step_by(mr) {
            if lut {
                break;
            }
            let mm = mr.min(m - i0);
            let groups = match &map {
                Some(map) => Groups::PerDepth(map),
                None if rounded => Groups::UniformRounded { gw },
                None => Groups::Uniform {
                    gw,
                    sx: &sx[i0 * ng..],
                    sx_rs: ng,
                },
            };
            qk.gptq(GptqStrip {
                bits,
                prescaled,
                round,
                qw: &w.qw[j0..],
                qw_rs: n,
                krows,
                groups,
                x: &x_kernel[i0 * k..],
                x_rs: k,
                m: mm,
                tab: &tab,
                tw,
                ngroups: ng,
                out: &mut buf[i0 * STRIP..],
                out_rs: STRIP,
                nvec,
            });
        }
        // Columns past the last whole vector.
        for c in nvec * lanes..nn {
            let col = j0 + c;
            for i in 0..m {
                let xr = &x32[i * k..(i + 1) * k];
                let mut acc = 0.0f32;
                for (kk, &xv) in xr.iter().enumerate() {
                    let g = group_of(kk);
                    let q = (w.qw[kk / pf * n + col] >> (bits * (kk % pf) as u32)) & mask;
                    let z = (w.qz[g * zpw + col / pf] >> (bits * (col % pf) as u32)) & mask;
                    let wv = (q as f32 - z as f32) * w.scales.at(g * n + col);
                    // W rounded to x's dtype, as the contract says.
                    let wv = E::from_f32(wv).to_f32();
                    acc += xv * wv;
                }
                buf[i * STRIP + c] = acc;
            }
        }
    });
}
