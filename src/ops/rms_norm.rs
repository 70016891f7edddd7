//! rms_norm: `y = x / sqrt(mean(x²) + eps) · (weight + weight_offset)` over
//! the last dimension.
//!
//! Layouts (row-major, contiguous): `x` `[..., H]` (rank ≥ 1; all leading
//! dims are rows), `weight` `[H]`, `out` shaped like `x`. One activation dtype
//! for all three. `weight_offset` is 0 by default and 1 for Gemma-style
//! checkpoints (which store `weight − 1`).
//!
//! Rounding contract: the mean of squares accumulates in f32 on devices (f64
//! in the reference); `weight + weight_offset` is formed in f32/f64, not in
//! the storage dtype; the result is rounded once to the output dtype.
//! Error bound: `u·|y|` from the final rounding plus `~H·2⁻²⁴` relative from
//! f32 accumulation.
//!
//! `eps` must be ≥ 0 and finite as an f32; `weight_offset` finite as an f32.
//! Both are used at f32 precision on every backend, the reference included.
//! With `eps = 0` an all-zero row is 0/0: the output is NaN by definition,
//! so callers should keep eps > 0.
//!
//! Range: every finite input is admitted and the error bound holds for all
//! of them. Kernels sum squares in f32; when that sum overflows (|x| ≳ 1e19)
//! or underflows with eps too small to dominate (< 2⁻⁷⁰), the row is redone
//! with its values scaled by a power of two (GPUs) or in f64 (`cpu`), as
//! LAPACK's `nrm2` avoids the same loss, so x = 1e20 or x = 1e-25 with
//! eps = 0 normalize to ±1·w like the reference. Non-finite input: a NaN in
//! a row makes the whole row NaN; ±inf makes its own element NaN (inf · 0)
//! and the rest of the row 0 (mean(x²) = inf).
//!
//! Counts: `4·rows·H` FLOPs (square, add, scale, weight); bytes = x read,
//! weight read, out written.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::{
    OpKind, OpQuery, check_device, check_float, check_index_range, check_inputs_before_alloc,
    check_no_alias, check_rank, check_shape, check_tensor, ensure_supported,
};
use crate::tensor::Tensor;

const OP: &str = "rms_norm";

/// Parameters of [`rms_norm`] (and `fused_add_rms_norm`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsNormParams {
    pub eps: f64,
    pub weight_offset: f64,
}

impl RmsNormParams {
    /// `eps` as the kernels use it: rounded to f32.
    pub fn eps_f32(&self) -> f64 {
        self.eps as f32 as f64
    }

    /// `weight_offset` as the kernels use it: rounded to f32.
    pub fn weight_offset_f32(&self) -> f64 {
        self.weight_offset as f32 as f64
    }
}

impl Default for RmsNormParams {
    fn default() -> Self {
        RmsNormParams {
            eps: 1e-6,
            weight_offset: 0.0,
        }
    }
}

/// A validated rms_norm.
#[derive(Debug, Clone)]
pub struct RmsNormProblem<'a> {
    pub x: &'a Tensor,
    pub weight: &'a Tensor,
    pub out: &'a Tensor,
    pub params: RmsNormParams,
    /// Product of every dim but the last.
    pub rows: usize,
    /// The last dim.
    pub hidden: usize,
}

impl RmsNormProblem<'_> {
    pub fn query(&self) -> OpQuery {
        OpQuery::new(OpKind::RmsNorm, self.x.dtype())
    }
    pub fn flops(&self) -> f64 {
        4.0 * self.rows as f64 * self.hidden as f64
    }
    pub fn bytes(&self) -> f64 {
        (self.x.byte_len() + self.weight.byte_len() + self.out.byte_len()) as f64
    }
}

/// Checks `eps` and `weight_offset` for `op`.
pub(crate) fn check_params(op: &'static str, params: &RmsNormParams) -> Result<()> {
    // Checked in the precision the kernels use: 1e39 is finite in f64 but
    // inf in f32.
    if !(params.eps as f32).is_finite() || params.eps < 0.0 {
        return Err(Error::invalid(
            op,
            "eps",
            format!("must be >= 0 and finite as an f32, got {}", params.eps),
        ));
    }
    if !(params.weight_offset as f32).is_finite() {
        return Err(Error::invalid(
            op,
            "weight_offset",
            format!("must be finite as an f32, got {}", params.weight_offset),
        ));
    }
    Ok(())
}

/// Checks `x` and `weight` and returns (rows, hidden).
pub(crate) fn rows_and_hidden(
    op: &'static str,
    x: &Tensor,
    weight: &Tensor,
) -> Result<(usize, usize)> {
    if x.rank() == 0 {
        return Err(Error::invalid(
            op,
            "x",
            "must have rank >= 1 (the last dim is normalized)",
        ));
    }
    let hidden = x.shape()[x.rank() - 1];
    if hidden == 0 {
        return Err(Error::invalid(
            op,
            "x",
            format!("last dim is 0 in {:?}: the mean is undefined", x.shape()),
        ));
    }
    check_rank(op, "weight", weight, &[1])?;
    check_shape(op, "weight", weight, &[hidden])?;
    Ok((x.numel() / hidden, hidden))
}

pub fn validate<'a>(
    backend: &dyn Backend,
    x: &'a Tensor,
    weight: &'a Tensor,
    out: &'a Tensor,
    params: RmsNormParams,
) -> Result<RmsNormProblem<'a>> {
    let args = [("x", x), ("weight", weight), ("out", out)];
    for (name, t) in &args {
        check_tensor(OP, name, t)?;
        check_float(OP, name, t)?;
        check_index_range(OP, name, t.shape())?;
        if t.dtype() != x.dtype() {
            return Err(Error::invalid(
                OP,
                name,
                format!("dtype {} differs from x's dtype {}", t.dtype(), x.dtype()),
            ));
        }
    }
    check_device(OP, backend, &args)?;
    check_params(OP, &params)?;
    let (rows, hidden) = rows_and_hidden(OP, x, weight)?;
    check_shape(OP, "out", out, x.shape())?;
    check_no_alias(OP, &[("out", out)], &[("x", x), ("weight", weight)])?;
    Ok(RmsNormProblem {
        x,
        weight,
        out,
        params,
        rows,
        hidden,
    })
}

pub fn rms_norm_into(
    backend: &dyn Backend,
    x: &Tensor,
    weight: &Tensor,
    out: &Tensor,
    params: RmsNormParams,
) -> Result<()> {
    let problem = validate(backend, x, weight, out, params)?;
    ensure_supported(backend, &problem.query())?;
    backend.rms_norm(&problem)
}

pub fn rms_norm(
    backend: &dyn Backend,
    x: &Tensor,
    weight: &Tensor,
    params: RmsNormParams,
) -> Result<Tensor> {
    check_inputs_before_alloc(OP, &[("x", x), ("weight", weight)], x.shape())?;
    let out = backend.alloc_tensor(x.dtype(), x.shape())?;
    rms_norm_into(backend, x, weight, &out, params)?;
    Ok(out)
}
