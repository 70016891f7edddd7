//! Reference nvfp4_matmul: dequantize in f32 (block multiplier first), round
//! W to x's dtype, then the f64 matmul — the contract of
//! `ops/nvfp4_matmul.rs`, written out.

use crate::cpu::reference::ReferenceBackend;
use crate::cpu::reference::gptq_matmul::{corrupted, linear_eval, run_linear};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::nvfp4_matmul::Nvfp4MatmulProblem;
use crate::quant::Nvfp4Weight;

const OP: &str = "nvfp4_matmul";

/// `y = x · round_x(dequant(W))ᵀ (+ bias)` in f64, for `x` holding M rows of
/// K values and `y` M rows of N.
pub fn eval(x: &[f64], weight: &Nvfp4Weight, x_dtype: DType, bias: Option<&[f64]>) -> Vec<f64> {
    linear_eval(
        x,
        &weight.dequantize_f32(),
        weight.n(),
        weight.k(),
        x_dtype,
        bias,
    )
}

pub fn run(problem: &Nvfp4MatmulProblem<'_>) -> Result<()> {
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
