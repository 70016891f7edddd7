//! nvfp4_matmul on the `cpu` backend: `y = x · dequant(W)ᵀ (+ bias)` with W
//! dequantized in registers, never materialized.
//!
//! Layout: `weight_packed [N, Kp/2]` is packed along K, so this is the
//! matmul "dot" layout: each output column is a dot product along K. A
//! load of `LANES` bytes is `2·LANES` elements; the low nibbles give one
//! vector and the high nibbles (shifted by 4) another, each decoded through
//! a 16-entry E2M1 table held in registers (AVX-512: one `permutexvar_ps`;
//! AVX2: two `permutevar8x32` and a blend on bit 3). The driver
//! de-interleaves x once per call to match (`[x[2l]]`, `[x[2l+1]]` per span),
//! so no shuffle of the weights is needed. Lane `l` of a span belongs to
//! block `l / 8`.
//!
//! Block multipliers: `f32(scale) × g` (ModelOpt) or `f32(scale) / d`
//! (compressed-tensors), formed first in f32 exactly as the reference
//! does (the E4M3 byte decodes exactly by moving its bits into an f32 and
//! scaling by 2^120), for the task's rows once per call; then
//! `W = e2m1 × multiplier` in f32 per element, as in the contract.
//!
//! Work split: tasks own blocks of `ROWS` output columns (weight rows);
//! each computes tiles of `nvfp4_mr` rows of x × `nvfp4_nr(m)` weight rows
//! with one vector accumulator per pair, reduced at the end (so W streams
//! from memory once for M ≤ `nvfp4_mr`, and from L2 for larger M).
//! Elements past the last whole span (Kp not a multiple of `2·LANES`)
//! take a scalar path; padded elements past K meet x = 0.
//!
//! Rounding: `W = e2m1 × m` in f32, then rounded to x's dtype in registers
//! (f16 / bf16 x; exact for f32 x), as the contract says — the exact f32
//! weight is not good enough for f16 / bf16 (see `gptq_matmul.rs`). f32
//! accumulation in a fixed order; bias added before the one rounding to
//! x's dtype.

use half::{bf16, f16};

use crate::cpu::access::lock;
use crate::cpu::quant_common::{by_columns, round_code, x_f32};
use crate::cpu::simd::Elem;
use crate::cpu::simd::quant::{Nvfp4Tile, QuantKernels, e4m3_mult_scalar, quant_kernels};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::Nvfp4MatmulProblem;
use crate::quant::GlobalScale;
use crate::quant::nvfp4::BLOCK;

const OP: &str = "nvfp4_matmul";

/// Weight rows (output columns) per task.
const ROWS: usize = 32;

struct Weight<'a> {
    packed: &'a [u8],
    scales: &'a [u8],
    global: GlobalScale,
    k: usize,
    kp: usize,
    n: usize,
}

pub(crate) fn run(p: &Nvfp4MatmulProblem<'_>) -> Result<()> {
    run_with(p, quant_kernels())
}

/// [`run`] with the kernels of a given level (tests run every level).
pub(crate) fn run_with(p: &Nvfp4MatmulProblem<'_>, qk: &QuantKernels) -> Result<()> {
    let w = p.weight;
    let mut inputs = vec![p.x, w.weight_packed(), w.weight_scale()];
    inputs.extend(p.bias);
    let mut locked = lock(OP, &inputs, &[p.out])?;
    let (inp, mut outs) = locked.split();
    let weight = Weight {
        packed: inp.get(w.weight_packed())?,
        scales: inp.get(w.weight_scale())?,
        global: w.global_scale(),
        k: p.k,
        kp: w.k_padded(),
        n: p.n,
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
    let (k, kp, n) = (w.k, w.kp, w.n);
    let row_bytes = kp / 2;
    let blocks = kp / BLOCK;
    let spans = row_bytes / lanes;
    let span_k = 2 * lanes;
    let covered = spans * span_k;
    let x32 = x_f32(&x[..m * k]);
    let x32 = &*x32;
    // x de-interleaved per span, zero past K.
    let xd_rs = covered;
    let mut xd = vec![0.0f32; m * xd_rs];
    for i in 0..m {
        let src = &x32[i * k..(i + 1) * k];
        let dst = &mut xd[i * xd_rs..(i + 1) * xd_rs];
        for (e, &v) in src.iter().enumerate().take(covered) {
            let (sp, r) = (e / span_k, e % span_k);
            dst[sp * span_k + (r % 2) * lanes + r / 2] = v;
        }
    }
    let xd = &xd;
    let (g, divide) = match w.global {
        GlobalScale::Multiplier(g) => (g, false),
        GlobalScale::Divisor(d) => (d, true),
    };
    let lut: [f32; 16] = std::array::from_fn(|c| w.global.element(c as u8));
    by_columns((m, n, ROWS), bias, out, |j0, nn, buf| {
        if k == 0 {
            return;
        }
        // Padded: each span reads LANES multipliers from its first.
        let mut mult = vec![0.0f32; nn * blocks + lanes];
        for r in 0..nn {
            let row = &w.scales[(j0 + r) * blocks..(j0 + r + 1) * blocks];
            qk.e4m3_mults(row, &mut mult[r * blocks..(r + 1) * blocks], g, divide);
        }
        let wrows = &w.packed[j0 * row_bytes..(j0 + nn) * row_bytes];
        let mr = if m == 1 { 1 } else { qk.nvfp4_mr() };
        for i0 in (0..m).step_by(mr) {
            let mm = mr.min(m - i0);
            let nr = qk.nvfp4_nr(mm);
            for jt in (0..nn).step_by(nr) {
                qk.nvfp4(Nvfp4Tile {
                    round: round_code(E::DTYPE),
                    w: &wrows[jt * row_bytes..],
                    w_rs: row_bytes,
                    n: nr.min(nn - jt),
                    spans,
                    mult: &mult[jt * blocks..],
                    mult_rs: blocks,
                    x: &xd[i0 * xd_rs..],
                    x_rs: xd_rs,
                    m: mm,
                    lut,
                    out: &mut buf[i0 * ROWS + jt..],
                    out_rs: ROWS,
                });
            }
        }
        // Elements past the last whole span.
        if covered < k {
            for r in 0..nn {
                let wrow = &wrows[r * row_bytes..(r + 1) * row_bytes];
                for i in 0..m {
                    let xr = &x32[i * k..(i + 1) * k];
                    let mut acc = 0.0f32;
                    for (e, &xv) in xr.iter().enumerate().skip(covered) {
                        let code = (wrow[e / 2] >> (4 * (e % 2))) & 0xF;
                        let scale = w.scales[(j0 + r) * blocks + e / BLOCK];
                        let wv = lut[code as usize] * e4m3_mult_scalar(scale, g, divide);
                        let wv = E::from_f32(wv).to_f32();
                        acc += xv * wv;
                    }
                    buf[i * ROWS + r] += acc;
                }
            }
        }
    });
}
