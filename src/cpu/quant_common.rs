//! Driver pieces shared by the quantized matmuls of the `cpu` backend
//! (`gptq_matmul.rs`, `awq_matmul.rs`, `nvfp4_matmul.rs`): x widened to
//! f32 rows, per-group sums of x, scale rows widened to f32, and the
//! column-task split with the final rounding (bias added, once).
//!
//! The split: tasks own fixed chunks of output columns (the chunk width is
//! a per-op constant), compute all M rows of their chunk into an f32 buffer
//! `[m][cols]`, and a second parallel pass rounds each output row with the
//! bias. Chunk boundaries and every summation order depend on the shape
//! only, so results never depend on the thread count.

use std::borrow::Cow;

use half::{bf16, f16};
use rayon::prelude::*;

use crate::cpu::access::Inputs;
use crate::cpu::simd::{Elem, kernels};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// `x` as f32: borrowed for f32, widened otherwise.
pub(crate) fn x_f32<E: Elem>(x: &[E]) -> Cow<'_, [f32]> {
    if E::DTYPE == DType::F32
        && let Ok(x32) = bytemuck::try_cast_slice::<E, f32>(x)
    {
        return Cow::Borrowed(x32);
    }
    let mut v = vec![0.0f32; x.len()];
    E::table(kernels()).widen(x, &mut v);
    Cow::Owned(v)
}

/// How the kernels round W for activations of `dtype` (the contract rounds
/// the f32 weight to x's dtype): 0 f32 (exact), 1 f16, 2 bf16.
pub(crate) fn round_code(dtype: DType) -> u8 {
    match dtype {
        DType::F16 => 1,
        DType::BF16 => 2,
        _ => 0,
    }
}

/// `sx[i·groups + g] = Σ_{k ∈ [g·gs, (g+1)·gs) ∩ [0, k)} x[i][k]`, summed in
/// order.
pub(crate) fn group_sums(x: &[f32], m: usize, k: usize, gs: usize, groups: usize) -> Vec<f32> {
    let mut sx = vec![0.0f32; m * groups];
    if k == 0 || gs == 0 {
        return sx;
    }
    for i in 0..m {
        let row = &x[i * k..(i + 1) * k];
        for (g, chunk) in row.chunks(gs).enumerate().take(groups) {
            sx[i * groups + g] = chunk.iter().sum();
        }
    }
    sx
}

/// A `[G, N]` scale tensor in place, in its own dtype.
#[derive(Clone, Copy)]
pub(crate) enum Scales<'a> {
    F16(&'a [f16]),
    Bf16(&'a [bf16]),
    F32(&'a [f32]),
}

impl<'a> Scales<'a> {
    pub(crate) fn get(op: &'static str, inputs: &Inputs<'a>, t: &Tensor) -> Result<Scales<'a>> {
        Ok(match t.dtype() {
            DType::F16 => Scales::F16(inputs.get(t)?),
            DType::BF16 => Scales::Bf16(inputs.get(t)?),
            DType::F32 => Scales::F32(inputs.get(t)?),
            other => {
                return Err(Error::Device {
                    backend: "cpu".into(),
                    op,
                    reason: format!("internal: scales of dtype {other}"),
                });
            }
        })
    }

    /// `dst[c] = f32(scales[start + c])` for `c < dst.len()`.
    pub(crate) fn widen_into(&self, start: usize, dst: &mut [f32]) {
        let kt = kernels();
        let len = dst.len();
        match self {
            Scales::F16(s) => kt.f16.widen(&s[start..start + len], dst),
            Scales::Bf16(s) => kt.bf16.widen(&s[start..start + len], dst),
            Scales::F32(s) => dst.copy_from_slice(&s[start..start + len]),
        }
    }

    /// f16 / bf16 scales (so `s·z` is exact in f32) none of whose nonzero
    /// magnitudes is below `tiny`.
    pub(crate) fn half_and_normal(&self, tiny: f32) -> bool {
        match self {
            // f16 magnitudes are never below 2^-24.
            Scales::F16(_) => tiny <= 2f32.powi(-24),
            // On the bits: |v| < tiny ⇔ (v & 0x7FFF) < bits(tiny).
            Scales::Bf16(s) => {
                let limit = (tiny.to_bits() >> 16) as u16;
                s.iter().all(|v| {
                    let b = v.to_bits() & 0x7FFF;
                    b == 0 || b >= limit
                })
            }
            Scales::F32(_) => false,
        }
    }

    /// One scale as f32.
    pub(crate) fn at(&self, i: usize) -> f32 {
        match self {
            Scales::F16(s) => s[i].to_f32(),
            Scales::Bf16(s) => s[i].to_f32(),
            Scales::F32(s) => s[i],
        }
    }
}

/// Runs `task(j0, nn, buf)` for every chunk of `cols` output columns
/// (`buf` is `[m][cols]` f32, zeroed, the task fills its first `nn`
/// columns of each row), then writes `out[i][j] = round(buf + bias)`.
pub(crate) fn by_columns<E: Elem>(
    (m, n, cols): (usize, usize, usize),
    bias: Option<&[E]>,
    out: &mut [E],
    task: impl Fn(usize, usize, &mut [f32]) + Sync + Send,
) {
    if m == 0 || n == 0 {
        return;
    }
    let ek = E::table(kernels());
    let chunks = n.div_ceil(cols);
    let mut tmp = vec![0.0f32; chunks * m * cols];
    tmp.par_chunks_mut(m * cols)
        .enumerate()
        .for_each(|(c, buf)| task(c * cols, cols.min(n - c * cols), buf));
    let bias32: Vec<f32> = match bias {
        Some(b) => {
            let mut v = vec![0.0f32; b.len()];
            ek.widen(b, &mut v);
            v
        }
        None => Vec::new(),
    };
    out.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for c in 0..chunks {
            let j0 = c * cols;
            let nn = cols.min(n - j0);
            let add = if bias32.is_empty() {
                &[][..]
            } else {
                &bias32[j0..j0 + nn]
            };
            ek.narrow(&tmp[(c * m + i) * cols..][..nn], add, &mut row[j0..j0 + nn]);
        }
    });
}
