//! Reference awq_matmul: dequantize in f32, round W to x's dtype, then the
//! f64 matmul — the contract of `ops/awq_matmul.rs`, written out.

use crate::cpu::reference::ReferenceBackend;
use crate::cpu::reference::gptq_matmul::{corrupted, linear_eval, run_linear};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::awq_matmul::AwqMatmulProblem;
use crate::quant::AwqWeight;

const OP: &str = "awq_matmul";

/// `y = x · round_x(dequant(W))ᵀ (+ bias)` in f64, for `x` holding M rows of
/// K values and `y` M rows of N.
pub fn eval(x: &[f64], weight: &AwqWeight, x_dtype: DType, bias: Option<&[f64]>) -> Vec<f64> {
    linear_eval(
        x,
        &weight.dequantize_f32(),
        weight.n(),
        weight.k(),
        x_dtype,
        bias,
    )
}

pub fn run(problem: &AwqMatmulProblem<'_>) -> Result<()> {
    let weight = problem
        .weight
        .download(&ReferenceBackend)
        .map_err(|e| corrupted(OP, e))?;
    run_linear(
        OP,
        problem.x,
        problem.bias,
        problem.out,
        &weight.dequantize_f32(),
        problem.n,
        problem.k,
    )
}
