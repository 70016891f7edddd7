//! fused_add_rms_norm on the `cpu` backend: per row, one pass computes
//! `residual = round(x + residual)` (written back in the storage dtype) and
//! the sum of squares of those rounded values; a second pass (from cache)
//! writes `residual · inv_rms · (w + offset)`. Rows are split as in
//! `rms_norm`.

use rayon::prelude::*;

use crate::cpu::access::lock;
use crate::cpu::rms_norm::{rows_per_task, streams, write_row};
use crate::cpu::simd::{Elem, kernels};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::FusedAddRmsNormProblem;

const OP: &str = "fused_add_rms_norm";

pub(crate) fn run(p: &FusedAddRmsNormProblem<'_>) -> Result<()> {
    let mut locked = lock(OP, &[p.x, p.weight], &[p.out, p.residual])?;
    let (inputs, mut outputs) = locked.split();
    match p.x.dtype() {
        DType::F16 => typed::<half::f16>(
            p,
            inputs.get(p.x)?,
            inputs.get(p.weight)?,
            outputs.take(p.residual)?,
            outputs.take(p.out)?,
        ),
        DType::BF16 => typed::<half::bf16>(
            p,
            inputs.get(p.x)?,
            inputs.get(p.weight)?,
            outputs.take(p.residual)?,
            outputs.take(p.out)?,
        ),
        _ => typed::<f32>(
            p,
            inputs.get(p.x)?,
            inputs.get(p.weight)?,
            outputs.take(p.residual)?,
            outputs.take(p.out)?,
        ),
    }
    Ok(())
}

fn typed<E: Elem>(
    p: &FusedAddRmsNormProblem<'_>,
    x: &[E],
    weight: &[E],
    residual: &mut [E],
    out: &mut [E],
) {
    let k = E::table(kernels());
    let h = p.hidden;
    let offset = p.params.weight_offset as f32;
    let min_rows = rows_per_task(h, size_of::<E>(), 64 << 10);
    let stream = streams(std::mem::size_of_val(out));
    out.par_chunks_mut(h)
        .zip(residual.par_chunks_mut(h))
        .zip(x.par_chunks(h))
        .with_min_len(min_rows)
        .for_each(|((out_row, res_row), x_row)| {
            let sum_squares = k.add_round_sum_squares(x_row, res_row);
            write_row(
                k,
                res_row,
                weight,
                out_row,
                sum_squares,
                &p.params,
                offset,
                stream,
            );
        });
}
