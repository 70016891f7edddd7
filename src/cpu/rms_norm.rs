//! rms_norm on the `cpu` backend: one row per task (rows grouped so a task
//! moves at least ~64 KiB), two passes over each row: a vectorized sum of
//! squares (four f32 vector accumulators), then one vectorized write of
//! `x · inv_rms · (w + offset)`. The second pass reads the row from L1/L2,
//! so memory sees one read of x and one write of out (non-temporal for
//! outputs of 32 MiB or more).

use rayon::prelude::*;

use crate::cpu::access::lock;
use crate::cpu::simd::{Elem, kernels};
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
    (1.0 / (sum_squares as f64 / hidden as f64 + params.eps).sqrt()) as f32
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
            let inv = inv_rms(k.sum_squares(x_row), h, &p.params);
            k.scale_mul(x_row, weight, out_row, inv, offset, stream);
        });
}
