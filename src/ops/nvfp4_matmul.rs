//! nvfp4_matmul: `y[M,N] = x[M,K] · dequant(W)ᵀ (+ bias[N])` against an NVFP4
//! weight (W4A16: E2M1 elements, one E4M3 scale per 16 K elements, an f32
//! global scale).
//!
//! Layouts (row-major, contiguous):
//! * `x`: `[..., K]`, rank ≥ 2, leading dims flattened into M; f32, f16 or
//!   bf16.
//! * `weight`: a [`DeviceNvfp4Weight`] (see `quant::nvfp4`): `weight_packed`
//!   u8 `[N, Kp/2]` (element 2j in the low nibble of byte j), `weight_scale`
//!   f8e4m3 `[N, Kp/16]` in the linear layout, and the global scale (a
//!   multiplier g, ModelOpt, or a divisor d, compressed-tensors) passed by
//!   value. Kp is K rounded up to 16; padded elements are never read into y.
//! * `bias`: optional `[N]`, x's dtype. `out`: `[..., N]`, x's dtype.
//!
//! Rounding contract: the block multiplier `m = f32(scale) × g` (or
//! `f32(scale) / d`) is formed first, in f32, then `W[n,k] = e2m1(code) × m`
//! in f32 (E2M1 code 8 is −0, or +0 in the ModelOpt convention to match its
//! dequantization bit for bit — invisible in y), then W is rounded to x's
//! dtype; the products accumulate in f32
//! on devices (f64 in the reference); bias is added before the one rounding
//! to the output dtype. No NVFP4 tensor cores exist before Blackwell: other
//! devices dequantize in registers.
//!
//! Error bound: as `matmul` with the rounded weight (`u·|y| +
//! K·2⁻²⁴·(|x|·|W|ᵀ)`); tolerances in `ops::tolerance`.
//!
//! Counts for rooflines: `2·M·N·K` FLOPs; bytes = packed weight + block
//! scales + x + out (+ bias).

use crate::backend::Backend;
use crate::error::Result;
use crate::ops::gptq_matmul::{check_x, linear_bytes, output_shape, validate_linear};
use crate::ops::{OpKind, OpQuery, ensure_supported};
use crate::quant::DeviceNvfp4Weight;
use crate::tensor::Tensor;

const OP: &str = "nvfp4_matmul";

/// A validated nvfp4_matmul.
#[derive(Debug, Clone)]
pub struct Nvfp4MatmulProblem<'a> {
    pub x: &'a Tensor,
    pub weight: &'a DeviceNvfp4Weight,
    pub bias: Option<&'a Tensor>,
    pub out: &'a Tensor,
    /// Rows of x (the product of its leading dims).
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl Nvfp4MatmulProblem<'_> {
    /// `bits` is `None`: the element is a float format, not an integer width.
    pub fn query(&self) -> OpQuery {
        OpQuery::new(OpKind::Nvfp4Matmul, self.x.dtype())
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
    weight: &'a DeviceNvfp4Weight,
    bias: Option<&'a Tensor>,
    out: &'a Tensor,
) -> Result<Nvfp4MatmulProblem<'a>> {
    let (k, n) = (weight.k(), weight.n());
    let m = validate_linear(OP, backend, x, &weight.tensors(), k, n, bias, out)?;
    Ok(Nvfp4MatmulProblem {
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
pub fn nvfp4_matmul_into(
    backend: &dyn Backend,
    x: &Tensor,
    weight: &DeviceNvfp4Weight,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    let problem = validate(backend, x, weight, bias, out)?;
    ensure_supported(backend, &problem.query())?;
    backend.nvfp4_matmul(&problem)
}

/// `x · dequant(weight)ᵀ (+ bias)` in a newly allocated tensor.
pub fn nvfp4_matmul(
    backend: &dyn Backend,
    x: &Tensor,
    weight: &DeviceNvfp4Weight,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    check_x(OP, x, weight.k(), weight.n())?;
    let out = backend.alloc_tensor(x.dtype(), &output_shape(x, weight.n()))?;
    nvfp4_matmul_into(backend, x, weight, bias, &out)?;
    Ok(out)
}
