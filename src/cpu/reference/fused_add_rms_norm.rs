//! Reference fused_add_rms_norm: round the sum to the storage dtype, then
//! normalize the rounded sum with the reference rms_norm.

use crate::cpu::memory::{read_tensor, write_tensor};
use crate::cpu::reference::rms_norm;
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::{FusedAddRmsNormProblem, RmsNormParams};
use crate::tensor::HostTensor;

/// Returns (normalized output, new residual) in f64; the new residual is
/// already rounded to `dtype`, as the contract requires.
pub fn eval(
    x: &[f64],
    residual: &[f64],
    weight: &[f64],
    hidden: usize,
    params: &RmsNormParams,
    dtype: DType,
) -> (Vec<f64>, Vec<f64>) {
    let new_residual: Vec<f64> = x
        .iter()
        .zip(residual)
        .map(|(a, b)| dtype.round(a + b))
        .collect();
    let out = rms_norm::eval(&new_residual, weight, hidden, params);
    (out, new_residual)
}

pub fn run(problem: &FusedAddRmsNormProblem<'_>) -> Result<()> {
    const OP: &str = "fused_add_rms_norm";
    let x = read_tensor(OP, "x", problem.x)?.to_f64_vec();
    let residual = read_tensor(OP, "residual", problem.residual)?.to_f64_vec();
    let weight = read_tensor(OP, "weight", problem.weight)?.to_f64_vec();
    let dtype = problem.x.dtype();
    let (out, new_residual) = eval(
        &x,
        &residual,
        &weight,
        problem.hidden,
        &problem.params,
        dtype,
    );
    let shape = problem.x.shape();
    write_tensor(
        OP,
        "residual",
        problem.residual,
        &HostTensor::from_f64(dtype, shape, &new_residual)?,
    )?;
    write_tensor(
        OP,
        "out",
        problem.out,
        &HostTensor::from_f64(dtype, shape, &out)?,
    )
}
