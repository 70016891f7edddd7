//! awq_matmul on the `cpu` backend: `y = x · dequant(W)ᵀ (+ bias)` with W
//! dequantized in registers, never materialized.
//!
//! Layout: qweight `[K, N/8]` is packed along N, interleaved (nibble `i` of
//! a word is column `ORDER[i]` of its 8). One vector of u32 is `8·LANES`
//! columns of one depth; the kernel extracts nibble `i` of every lane with
//! a shift and a mask and keeps one accumulator per nibble, so lane `l` of
//! accumulator `i` is column `8l + ORDER[i]`. Zero words use the same
//! order, so they unpack into that layout directly; the strip's scales are
//! permuted into it once per call, and the strip's output is un-permuted at
//! the end.
//!
//! Work split: tasks own strips of `STRIP` columns (`STRIP/2` bytes of each
//! qweight row), stream every depth of the strip once per block of
//! `awq_mr` rows of x (a 4096-deep strip is 512 KiB, in L2, when M needs
//! several blocks); no dequantize-on-pack GEMM path yet. Per group of
//! `group_size` depths the kernel accumulates `Σ_k x[k]·q[k,n]` and adds
//! `s·(acc − z·Σ_k x[k])` at the group end (the factored form).
//!
//! f32 x (the fast path) converts nibbles in place (`w & 0xF << 4i` is
//! `q·16^i`; accumulator i is scaled back by 16^-i, exactly, at the group
//! end), unless x is huge (Σ|x| ≥ 2^96 per row) where the accumulators
//! could overflow: then nibbles are shifted down first.
//!
//! Rounding: the contract rounds W to x's dtype. f32 x: W is exact, the
//! factored form reassociates it. f16 / bf16 x: the factored form never
//! forms W, so those run `awq_direct`: `W = s·(q − z)` per element, rounded
//! to x's dtype in registers (slower; see `gptq_matmul.rs` for why the
//! exact weight is not good enough). f32 accumulation in a fixed order;
//! bias added before the one rounding to x's dtype.
//!
//! Words past the last whole vector of a strip take a scalar path.

use half::{bf16, f16};

use crate::cpu::access::lock;
use crate::cpu::quant_common::{Scales, by_columns, group_sums, round_code, x_f32};
use crate::cpu::simd::Elem;
use crate::cpu::simd::quant::{AwqStrip, QuantKernels, quant_kernels};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::AwqMatmulProblem;
use crate::quant::pack::{AWQ_ORDER, AWQ_REVERSE};

const OP: &str = "awq_matmul";

/// Output columns per task (a multiple of `8 · NV1 · LANES` on every level).
const STRIP: usize = 256;

struct Weight<'a> {
    qw: &'a [u32],
    qz: &'a [u32],
    scales: Scales<'a>,
    k: usize,
    n: usize,
    groups: usize,
    group_size: usize,
}

pub(crate) fn run(p: &AwqMatmulProblem<'_>) -> Result<()> {
    run_with(p, quant_kernels())
}

/// [`run`] with the kernels of a given level (tests run every level).
pub(crate) fn run_with(p: &AwqMatmulProblem<'_>, qk: &QuantKernels) -> Result<()> {
    let w = p.weight;
    let mut inputs = vec![p.x, w.qweight(), w.qzeros(), w.scales()];
    inputs.extend(p.bias);
    let mut locked = lock(OP, &inputs, &[p.out])?;
    let (inp, mut outs) = locked.split();
    let weight = Weight {
        qw: inp.get(w.qweight())?,
        qz: inp.get(w.qzeros())?,
        scales: Scales::get(OP, &inp, w.scales())?,
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
    let lanes = qk.lanes;
    let (k, n) = (w.k, w.n);
    let ng = w.groups.max(1);
    let gs = w.group_size.max(1);
    let x32 = x_f32(&x[..m * k]);
    let x32 = &*x32;
    let sx = group_sums(x32, m, k, gs, ng);
    let wpr = n / 8;
    // In-place nibbles scale the accumulators by up to 16^6 (see
    // `awq_groups`): fine unless x is huge.
    let limit = 2f32.powi(96);
    let round = round_code(E::DTYPE);
    // f16 / bf16 x: nibbles in place against scales prescaled by 16^-i,
    // which needs `s·z` exact (f16 / bf16 scales) and s·16^-6 normal.
    let scaled = if round == 0 {
        x32.chunks(k.max(1))
            .all(|row| row.iter().map(|v| v.abs()).sum::<f32>() < limit)
    } else {
        w.scales.half_and_normal(2f32.powi(-100))
    };
    let prescale_tab = round != 0 && scaled;
    by_columns((m, n, STRIP), bias, out, |j0, nn, buf| {
        if k == 0 || w.groups == 0 {
            return;
        }
        let (w0, nw) = (j0 / 8, nn / 8);
        let nvec = nw / lanes;
        let vcols = 8 * nvec * lanes;
        let mut srow = vec![0.0f32; nn];
        if nvec > 0 {
            // Scales in the kernel's order: element (v·8 + i)·LANES + l is
            // column 8(v·LANES + l) + ORDER[i].
            let tw = vcols;
            let mut tab = vec![0.0f32; w.groups * tw];
            for g in 0..w.groups {
                w.scales.widen_into(g * n + j0, &mut srow);
                let t = &mut tab[g * tw..(g + 1) * tw];
                for (vi, chunk) in t.chunks_exact_mut(lanes).enumerate() {
                    let (v, col) = (vi / 8, AWQ_ORDER[vi % 8]);
                    let src = &srow[8 * v * lanes..8 * (v + 1) * lanes];
                    // For f16 / bf16 x with in-place nibbles: s·16^-i.
                    let scale = if prescale_tab && vi % 8 < 7 {
                        1.0 / (1u32 << (4 * (vi % 8))) as f32
                    } else {
                        1.0
                    };
                    for (dst, word) in chunk.iter_mut().zip(src.chunks_exact(8)) {
                        *dst = word[col] * scale;
                    }
                }
            }
            let mr = qk.awq_mr();
            let mut perm = vec![0.0f32; mr * tw];
            for i0 in (0..m).step_by(mr) {
                let mm = mr.min(m - i0);
                perm.fill(0.0);
                qk.awq(AwqStrip {
                    scaled,
                    round,
                    qw: &w.qw[w0..],
                    qw_rs: wpr,
                    k,
                    gs,
                    zw: &w.qz[w0..],
                    zw_rs: wpr,
                    x: &x32[i0 * k..],
                    x_rs: k,
                    m: mm,
                    sx: &sx[i0 * ng..],
                    sx_rs: ng,
                    tab: &tab,
                    tw,
                    out: &mut perm,
                    out_rs: tw,
                    nvec,
                });
                for i in 0..mm {
                    let src = &perm[i * tw..(i + 1) * tw];
                    let dst = &mut buf[(i0 + i) * STRIP..];
                    for (vi, chunk) in src.chunks_exact(lanes).enumerate() {
                        let (v, col) = (vi / 8, AWQ_ORDER[vi % 8]);
                        let words = &mut dst[8 * v * lanes..8 * (v + 1) * lanes];
                        for (&val, word) in chunk.iter().zip(words.chunks_exact_mut(8)) {
                            word[col] = val;
                        }
                    }
                }
            }
        }
        // Columns past the last whole vector of words.
        for c in vcols..nn {
            let col = j0 + c;
            let shift = 4 * AWQ_REVERSE[col % 8] as u32;
            for i in 0..m {
                let xr = &x32[i * k..(i + 1) * k];
                let mut acc = 0.0f32;
                for (kk, &xv) in xr.iter().enumerate() {
                    let g = (kk / gs).min(w.groups - 1);
                    let q = (w.qw[kk * wpr + col / 8] >> shift) & 0xF;
                    let z = (w.qz[g * wpr + col / 8] >> shift) & 0xF;
                    let s = w.scales.at(g * n + col);
                    acc += xv * E::from_f32((q as f32 - z as f32) * s).to_f32();
                }
                buf[i * STRIP + c] = acc;
            }
        }
    });
}
