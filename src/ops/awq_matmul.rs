//! awq_matmul: `y[M,N] = x[M,K] · dequant(W)ᵀ (+ bias[N])` against a 4-bit
//! AWQ (gemm layout) weight.
//!
//! Layouts (row-major, contiguous):
//! * `x`: `[..., K]`, rank ≥ 2, leading dims flattened into M; f32, f16 or
//!   bf16.
//! * `weight`: a [`DeviceAwqWeight`] (see `quant::awq`): `qweight` i32
//!   `[K, N/8]` and `qzeros` i32 `[K/gs, N/8]`, both packed along N with the
//!   interleave ORDER = `[0,2,4,6,1,3,5,7]`; `scales` `[K/gs, N]`. Validated
//!   when it was built.
//! * `bias`: optional `[N]`, x's dtype. `out`: `[..., N]`, x's dtype.
//!
//! Rounding contract: `W[n,k] = scales[k/gs, n] · (q[k,n] − z[k/gs, n])`
//! formed in f32 (exact for f16/bf16 scales) and rounded to x's dtype; the
//! products accumulate in f32 on devices (f64 in the reference); bias is
//! added before the one rounding to the output dtype.
//!
//! Error bound: as `matmul` with the rounded weight (`u·|y| +
//! K·2⁻²⁴·(|x|·|W|ᵀ)`); tolerances in `ops::tolerance`.
//!
//! Counts for rooflines: `2·M·N·K` FLOPs; bytes = packed weight + scales +
//! zeros + x + out (+ bias).

use crate::backend::Backend;
use crate::error::Result;
use crate::ops::gptq_matmul::{check_x, linear_bytes, output_shape, validate_linear};
use crate::ops::{OpKind, OpQuery, ensure_supported};
use crate::quant::DeviceAwqWeight;
use crate::tensor::Tensor;

const OP: &str = "awq_matmul";

/// A validated awq_matmul.
#[derive(Debug, Clone)]
pub struct AwqMatmulProblem<'a> {
    pub x: &'a Tensor,
    pub weight: &'a DeviceAwqWeight,
    pub bias: Option<&'a Tensor>,
    pub out: &'a Tensor,
    /// Rows of x (the product of its leading dims).
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl AwqMatmulProblem<'_> {
    /// `bits` is `Some(4)`: AWQ weights are always 4-bit.
    pub fn query(&self) -> OpQuery {
        OpQuery {
            bits: Some(4),
            ..OpQuery::new(OpKind::AwqMatmul, self.x.dtype())
        }
    }

    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n) as f64 * self.k as f64
    }

    pub fn bytes(&self) -> f64 {
        linear_bytes(self.x, self.bias, self.out, &self.weight.tensors())
    }
}

/// Checks every argument and derives the problem.
pub fn validate<'a>(
    backend: &dyn Backend,
    x: &'a Tensor,
    weight: &'a DeviceAwqWeight,
    bias: Option<&'a Tensor>,
    out: &'a Tensor,
) -> Result<AwqMatmulProblem<'a>> {
    let (k, n) = (weight.k(), weight.n());
    let m = validate_linear(OP, backend, x, &weight.tensors(), k, n, bias, out)?;
    Ok(AwqMatmulProblem {
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
pub fn awq_matmul_into(
    backend: &dyn Backend,
    x: &Tensor,
    weight: &DeviceAwqWeight,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    let problem = validate(backend, x, weight, bias, out)?;
    ensure_supported(backend, &problem.query())?;
    backend.awq_matmul(&problem)
}

/// `x · dequant(weight)ᵀ (+ bias)` in a newly allocated tensor.
pub fn awq_matmul(
    backend: &dyn Backend,
    x: &Tensor,
    weight: &DeviceAwqWeight,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    check_x(OP, x, weight.k(), weight.n())?;
    let out = backend.alloc_tensor(x.dtype(), &output_shape(x, weight.n()))?;
    awq_matmul_into(backend, x, weight, bias, &out)?;
    Ok(out)
}
