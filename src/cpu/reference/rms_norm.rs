//! Reference rms_norm: the formula in f64, one row at a time.

use crate::cpu::memory::{read_tensor, write_tensor};
use crate::error::Result;
use crate::ops::{RmsNormParams, RmsNormProblem};
use crate::tensor::HostTensor;

/// `y = x / sqrt(mean(x²) + eps) · (w + offset)` for each row of `x`, with
/// `eps` and `offset` rounded to f32 as every kernel uses them.
pub fn eval(x: &[f64], weight: &[f64], hidden: usize, params: &RmsNormParams) -> Vec<f64> {
    let (eps, offset) = (params.eps_f32(), params.weight_offset_f32());
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(hidden) {
        let mean_square = row.iter().map(|v| v * v).sum::<f64>() / hidden as f64;
        let inv_rms = 1.0 / (mean_square + eps).sqrt();
        for (value, w) in row.iter().zip(weight) {
            out.push(value * inv_rms * (w + offset));
        }
    }
    out
}

pub fn run(problem: &RmsNormProblem<'_>) -> Result<()> {
    let x = read_tensor("rms_norm", "x", problem.x)?.to_f64_vec();
    let weight = read_tensor("rms_norm", "weight", problem.weight)?.to_f64_vec();
    let out = eval(&x, &weight, problem.hidden, &problem.params);
    let out = HostTensor::from_f64(problem.out.dtype(), problem.out.shape(), &out)?;
    write_tensor("rms_norm", "out", problem.out, &out)
}
