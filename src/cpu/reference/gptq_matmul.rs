//! Reference gptq_matmul: dequantize in f32, round W to x's dtype, then the
//! f64 matmul — the contract of `ops/gptq_matmul.rs`, written out.

use crate::cpu::memory::{read_tensor, write_tensor};
use crate::cpu::reference::ReferenceBackend;
use crate::cpu::reference::matmul::{self, MatmulShape};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::BLayout;
use crate::ops::gptq_matmul::GptqMatmulProblem;
use crate::quant::GptqWeight;
use crate::tensor::{HostTensor, Tensor};

const OP: &str = "gptq_matmul";

/// `y = x · round_x(dequant(W))ᵀ (+ bias)` in f64, for `x` holding M rows of
/// K values (already in x's dtype) and `y` M rows of N.
pub fn eval(x: &[f64], weight: &GptqWeight, x_dtype: DType, bias: Option<&[f64]>) -> Vec<f64> {
    linear_eval(
        x,
        &weight.dequantize_f32(),
        weight.n(),
        weight.k(),
        x_dtype,
        bias,
    )
}

/// The quantized matmuls' common definition, given the f32 dequantized
/// weight `[N, K]`: round it to x's dtype, multiply in f64, add bias.
pub(crate) fn linear_eval(
    x: &[f64],
    weight_f32: &[f32],
    n: usize,
    k: usize,
    x_dtype: DType,
    bias: Option<&[f64]>,
) -> Vec<f64> {
    let w: Vec<f64> = weight_f32
        .iter()
        .map(|&v| x_dtype.round(f64::from(v)))
        .collect();
    let shape = MatmulShape {
        batch: 1,
        m: x.len() / k,
        n,
        k,
        b_layout: BLayout::Nk,
        b_batched: false,
    };
    matmul::eval(shape, x, &w, bias)
}

/// Reads x and bias, evaluates, writes out: the run of every quantized
/// matmul once its weight is back on the host.
pub(crate) fn run_linear(
    op: &'static str,
    x: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    weight_f32: &[f32],
    n: usize,
    k: usize,
) -> Result<()> {
    let x_values = read_tensor(op, "x", x)?.to_f64_vec();
    let bias = match bias {
        Some(bias) => Some(read_tensor(op, "bias", bias)?.to_f64_vec()),
        None => None,
    };
    let y = linear_eval(&x_values, weight_f32, n, k, x.dtype(), bias.as_deref());
    let y = HostTensor::from_f64(out.dtype(), out.shape(), &y)?;
    write_tensor(op, "out", out, &y)
}

/// A device weight that no longer validates was overwritten after upload.
pub(crate) fn corrupted(op: &'static str, e: Error) -> Error {
    Error::Device {
        backend: ReferenceBackend::NAME.into(),
        op,
        reason: format!("the weight was modified on the device after upload: {e}"),
    }
}

pub fn run(problem: &GptqMatmulProblem<'_>) -> Result<()> {
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
