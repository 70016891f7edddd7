//! gptq_matmul: `y[M,N] = x[M,K] · dequant(W)ᵀ (+ bias[N])` against a GPTQ
//! weight (4 or 8 bits, symmetric or not, any group size, act-order g_idx).
//!
//! Layouts (row-major, contiguous):
//! * `x`: `[..., K]`, rank ≥ 2; the leading dims are flattened into M, so
//!   `[batch, seq, K]` works as is. f32, f16 or bf16.
//! * `weight`: a [`DeviceGptqWeight`] (see `quant::gptq`): `qweight` i32
//!   `[K/pf, N]`, `qzeros` i32 `[G, N/pf]` (z itself: the upload converts v1
//!   checkpoints), `scales` `[G, N]` (f16, bf16 or f32), `g_idx` i32 `[K]`.
//!   Validated when it was built, so nothing of it is re-checked per call
//!   except that it lives on the backend and does not alias `out`.
//! * `bias`: optional `[N]`, x's dtype.
//! * `out`: `[..., N]` (x's leading dims), x's dtype.
//!
//! Rounding contract: `W[n,k] = scales[g_idx[k], n] · (q[k,n] − z[g_idx[k], n])`
//! is formed in f32 (exact for f16/bf16 scales) and ROUNDED TO x's DTYPE —
//! f32 x sees the exact product, f16 x sees f16 weights, which is what
//! f16 tensor-core kernels compute. The products with x accumulate in f32 on
//! devices (f64 in the reference); bias is added before the one rounding to
//! the output dtype. Kernels clamp group indices to `[0, G)` so that a device
//! weight overwritten after upload can give wrong numbers but never read out
//! of bounds.
//!
//! Error bound: that of `matmul` with the rounded weight: `u·|y| +
//! K·2⁻²⁴·(|x|·|W|ᵀ)` per element (u the unit round-off of x's dtype). The
//! tolerances are `ops::tolerance::tolerance(GptqMatmul, dtype)`.
//!
//! Counts for rooflines: `2·M·N·K` FLOPs; bytes = packed weight + scales +
//! zeros + g_idx + x + out (+ bias), each read or written once.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::{
    OpKind, OpQuery, check_device, check_float, check_index_range, check_no_alias, check_shape,
    check_tensor, ensure_supported,
};
use crate::quant::DeviceGptqWeight;
use crate::tensor::Tensor;

const OP: &str = "gptq_matmul";

/// A validated gptq_matmul.
#[derive(Debug, Clone)]
pub struct GptqMatmulProblem<'a> {
    pub x: &'a Tensor,
    pub weight: &'a DeviceGptqWeight,
    pub bias: Option<&'a Tensor>,
    pub out: &'a Tensor,
    /// Rows of x (the product of its leading dims).
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl GptqMatmulProblem<'_> {
    pub fn query(&self) -> OpQuery {
        OpQuery {
            bits: Some(self.weight.bits()),
            ..OpQuery::new(OpKind::GptqMatmul, self.x.dtype())
        }
    }

    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n) as f64 * self.k as f64
    }

    pub fn bytes(&self) -> f64 {
        linear_bytes(self.x, self.bias, self.out, &self.weight.tensors())
    }
}

/// The output shape of a quantized matmul: x's shape with its last dim
/// (K) replaced by N.
pub fn output_shape(x: &Tensor, n: usize) -> Vec<usize> {
    let mut shape = x.shape().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    shape
}

/// Checks every argument and derives the problem.
pub fn validate<'a>(
    backend: &dyn Backend,
    x: &'a Tensor,
    weight: &'a DeviceGptqWeight,
    bias: Option<&'a Tensor>,
    out: &'a Tensor,
) -> Result<GptqMatmulProblem<'a>> {
    let (k, n) = (weight.k(), weight.n());
    let m = validate_linear(OP, backend, x, &weight.tensors(), k, n, bias, out)?;
    Ok(GptqMatmulProblem {
        x,
        weight,
        bias,
        out,
        m,
        n,
        k,
    })
}

/// `out = x · dequant(weight)ᵀ (+ bias)`, written into a caller-provided `out`.
pub fn gptq_matmul_into(
    backend: &dyn Backend,
    x: &Tensor,
    weight: &DeviceGptqWeight,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    let problem = validate(backend, x, weight, bias, out)?;
    ensure_supported(backend, &problem.query())?;
    backend.gptq_matmul(&problem)
}

/// `x · dequant(weight)ᵀ (+ bias)` in a newly allocated tensor.
pub fn gptq_matmul(
    backend: &dyn Backend,
    x: &Tensor,
    weight: &DeviceGptqWeight,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    // x is checked before the output is allocated, so a bad x is reported
    // against this op rather than as an allocation failure.
    check_x(OP, x, weight.k(), weight.n())?;
    let out = backend.alloc_tensor(x.dtype(), &output_shape(x, weight.n()))?;
    gptq_matmul_into(backend, x, weight, bias, &out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Validation shared by the three quantized matmuls (gptq, awq, nvfp4): the
// weight is already valid, so only x, bias, out and their relation to the
// weight's tensors are checked. Returns M.

#[allow(clippy::too_many_arguments)] // one call per op, every argument named at the call site
pub(crate) fn validate_linear(
    op: &'static str,
    backend: &dyn Backend,
    x: &Tensor,
    weight: &[(&'static str, &Tensor)],
    k: usize,
    n: usize,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<usize> {
    check_x(op, x, k, n)?;
    let mut args = vec![("x", x), ("out", out)];
    if let Some(bias) = bias {
        args.push(("bias", bias));
    }
    for (name, t) in &args[1..] {
        check_tensor(op, name, t)?;
        if t.dtype() != x.dtype() {
            return Err(Error::invalid(
                op,
                name,
                format!("dtype {} differs from x's dtype {}", t.dtype(), x.dtype()),
            ));
        }
    }
    if let Some(bias) = bias {
        check_shape(op, "bias", bias, &[n])?;
    }
    let out_shape = output_shape(x, n);
    check_shape(op, "out", out, &out_shape)?;
    check_index_range(op, "out", &out_shape)?;
    args.extend_from_slice(weight);
    check_device(op, backend, &args)?;
    let mut inputs: Vec<(&'static str, &Tensor)> = vec![("x", x)];
    if let Some(bias) = bias {
        inputs.push(("bias", bias));
    }
    inputs.extend_from_slice(weight);
    check_no_alias(op, &[("out", out)], &inputs)?;
    Ok(x.numel() / k)
}

/// x must be a contiguous float tensor `[..., K]` of rank ≥ 2 whose output
/// `[..., N]` stays within 32-bit indexing.
pub(crate) fn check_x(op: &'static str, x: &Tensor, k: usize, n: usize) -> Result<()> {
    check_tensor(op, "x", x)?;
    check_float(op, "x", x)?;
    check_index_range(op, "x", x.shape())?;
    if x.rank() < 2 {
        return Err(Error::invalid(
            op,
            "x",
            format!(
                "must have rank >= 2 ([..., K], leading dims flattened into M), got shape {:?}",
                x.shape()
            ),
        ));
    }
    let x_k = x.shape()[x.rank() - 1];
    if x_k != k {
        return Err(Error::invalid(
            op,
            "x",
            format!(
                "shape {:?} has K = {x_k}, but the weight has K = {k} (N = {n})",
                x.shape()
            ),
        ));
    }
    check_index_range(op, "out", &output_shape(x, n))
}

/// Bytes moved by a quantized matmul: every tensor read or written once.
pub(crate) fn linear_bytes(
    x: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    weight: &[(&'static str, &Tensor)],
) -> f64 {
    let weight_bytes: usize = weight.iter().map(|(_, t)| t.byte_len()).sum();
    (x.byte_len() + out.byte_len() + bias.map_or(0, Tensor::byte_len) + weight_bytes) as f64
}
