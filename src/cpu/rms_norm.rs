//! rms_norm on the `cpu` backend: one row per task (rows grouped so a task
//! moves at least ~64 KiB), two passes over each row: a vectorized sum of
//! squares (four f32 vector accumulators), then one vectorized write of
//! `x · inv_rms · (w + offset)`. The second pass reads the row from L1/L2,
//! so memory sees one read of x and one write of out (non-temporal for
//! outputs of 32 MiB or more).

use rayon::prelude::*;

use crate::cpu::access::lock;
use crate::cpu::simd::{Elem, ElemKernels, kernels};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::{RmsNormParams, RmsNormProblem};

const OP: &str = "rms_norm";

pub(crate) fn run(p: &RmsNormProblem<'_>) -> Result<()> {
    let mut locked = lock(OP, &[p.x, p.weight], &[p.out])?;
    let (inputs, mut outputs) = locked.split();
    match p.x.dtype() {
        DType::F16 => typed::<half::f16>(
            p,
            inputs.get(p.x)?,
            inputs.get(p.weight)?,
            outputs.take(p.out)?,
        ),
        DType::BF16 => typed::<half::bf16>(
            p,
            inputs.get(p.x)?,
            inputs.get(p.weight)?,
            outputs.take(p.out)?,
        ),
        _ => typed::<f32>(
            p,
            inputs.get(p.x)?,
            inputs.get(p.weight)?,
            outputs.take(p.out)?,
        ),
    }
    Ok(())
}

/// Rows per rayon task so that each task moves at least `bytes`.
pub(crate) fn rows_per_task(hidden: usize, elem_bytes: usize, bytes: usize) -> usize {
    bytes.div_ceil(hidden * elem_bytes).max(1)
}

/// Outputs of at least this many bytes are written with non-temporal
/// stores: they cannot stay in cache anyway, and skipping the read for
/// ownership saves a third of the memory traffic.
const STREAM_BYTES: usize = 32 << 20;

/// Whether an output of `bytes` is streamed (see `STREAM_BYTES`).
pub(crate) fn streams(bytes: usize) -> bool {
    bytes >= STREAM_BYTES
}

/// `1 / sqrt(mean + eps)` from a row's sum of squares.
pub(crate) fn inv_rms(sum_squares: f32, hidden: usize, params: &RmsNormParams) -> f32 {
    (1.0 / (sum_squares as f64 / hidden as f64 + params.eps_f32()).sqrt()) as f32
}

/// Whether a row's f32 sum of squares lost the row's scale: it overflowed,
/// or it is so small that its squares may have underflowed while eps is too
/// small to dominate the mean. (A NaN sum is neither: the row is NaN.)
pub(crate) fn needs_rescale(sum_squares: f32, eps: f64) -> bool {
    sum_squares == f32::INFINITY || (sum_squares < 2f32.powi(-100) && eps < 2f64.powi(-70))
}

/// Writes one normalized row `out = row · inv_rms · (w + offset)` from the
/// row's f32 sum of squares; a row whose sum lost its scale (see
/// [`needs_rescale`]) is redone in f64, where neither the squares nor
/// `1 / rms` can leave the range.
#[allow(clippy::too_many_arguments)] // one row, its weight, and how to write it
pub(crate) fn write_row<E: Elem>(
    k: &ElemKernels<E>,
    row: &[E],
    weight: &[E],
    out_row: &mut [E],
    sum_squares: f32,
    params: &RmsNormParams,
    offset: f32,
    stream: bool,
) {
    let hidden = row.len();
    if !needs_rescale(sum_squares, params.eps_f32()) {
        let inv = inv_rms(sum_squares, hidden, params);
        k.scale_mul(row, weight, out_row, inv, offset, stream);
        return;
    }
    let sum: f64 = row
        .iter()
        .map(|v| {
            let v = v.to_f32() as f64;
            v * v
        })
        .sum();
    let inv = 1.0 / (sum / hidden as f64 + params.eps_f32()).sqrt();
    for ((o, v), w) in out_row.iter_mut().zip(row).zip(weight) {
        let w = (w.to_f32() + offset) as f64;
        *o = E::from_f32((v.to_f32() as f64 * inv * w) as f32);
    }
}

fn typed<E: Elem>(p: &RmsNormProblem<'_>, x: &[E], weight: &[E], out: &mut [E]) {
    let k = E::table(kernels());
    let h = p.hidden;
    let offset = p.params.weight_offset as f32;
    let min_rows = rows_per_task(h, size_of::<E>(), 64 << 10);
    let stream = streams(std::mem::size_of_val(out));
    out.par_chunks_mut(h)
        .zip(x.par_chunks(h))
        .with_min_len(min_rows)
        .for_each(|(out_row, x_row)| {
            let sum_squares = k.sum_squares(x_row);
            write_row(
                k,
                x_row,
                weight,
                out_row,
                sum_squares,
                &p.params,
                offset,
                stream,
            );
        });
}
