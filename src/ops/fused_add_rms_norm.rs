//! fused_add_rms_norm: `residual ← x + residual; out = rms_norm(residual)`.
//!
//! The transformer's pre-norm step: the residual stream is updated in place
//! and normalized in one pass. Layouts and params as `rms_norm`: `x`,
//! `residual` and `out` `[..., H]`, `weight` `[H]`, one activation dtype.
//!
//! Rounding contract (part of the op, and what engines rely on to match
//! their unfused path): the sum `x + residual` is rounded to the storage
//! dtype first, that rounded value is written to `residual`, and *that
//! rounded value* is normalized. Error bound as `rms_norm`.
//!
//! Counts: `5·rows·H` FLOPs; bytes = x, residual and weight read, residual
//! and out written.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::rms_norm::{check_params, rows_and_hidden};
use crate::ops::{
    OpKind, OpQuery, RmsNormParams, check_device, check_float, check_index_range,
    check_inputs_before_alloc, check_no_alias, check_shape, check_tensor, ensure_supported,
};
use crate::tensor::Tensor;

const OP: &str = "fused_add_rms_norm";

/// A validated fused_add_rms_norm. `residual` is both read and written.
#[derive(Debug, Clone)]
pub struct FusedAddRmsNormProblem<'a> {
    pub x: &'a Tensor,
    pub residual: &'a Tensor,
    pub weight: &'a Tensor,
    pub out: &'a Tensor,
    pub params: RmsNormParams,
    pub rows: usize,
    pub hidden: usize,
}

impl FusedAddRmsNormProblem<'_> {
    pub fn query(&self) -> OpQuery {
        OpQuery::new(OpKind::FusedAddRmsNorm, self.x.dtype())
    }
    pub fn flops(&self) -> f64 {
        5.0 * self.rows as f64 * self.hidden as f64
    }
    pub fn bytes(&self) -> f64 {
        (self.x.byte_len()
            + 2 * self.residual.byte_len()
            + self.weight.byte_len()
            + self.out.byte_len()) as f64
    }
}

pub fn validate<'a>(
    backend: &dyn Backend,
    x: &'a Tensor,
    residual: &'a Tensor,
    weight: &'a Tensor,
    out: &'a Tensor,
    params: RmsNormParams,
) -> Result<FusedAddRmsNormProblem<'a>> {
    let args = [
        ("x", x),
        ("residual", residual),
        ("weight", weight),
        ("out", out),
    ];
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
    check_shape(OP, "residual", residual, x.shape())?;
    check_shape(OP, "out", out, x.shape())?;
    check_no_alias(
        OP,
        &[("out", out), ("residual", residual)],
        &[("x", x), ("weight", weight)],
    )?;
    Ok(FusedAddRmsNormProblem {
        x,
        residual,
        weight,
        out,
        params,
        rows,
        hidden,
    })
}

/// Updates `residual` in place and writes the normalized rows to `out`.
pub fn fused_add_rms_norm_into(
    backend: &dyn Backend,
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    out: &Tensor,
    params: RmsNormParams,
) -> Result<()> {
    let problem = validate(backend, x, residual, weight, out, params)?;
    ensure_supported(backend, &problem.query())?;
    backend.fused_add_rms_norm(&problem)
}

/// Updates `residual` in place and returns the normalized rows.
pub fn fused_add_rms_norm(
    backend: &dyn Backend,
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    params: RmsNormParams,
) -> Result<Tensor> {
    check_inputs_before_alloc(
        OP,
        &[("x", x), ("residual", residual), ("weight", weight)],
        x.shape(),
    )?;
    let out = backend.alloc_tensor(x.dtype(), x.shape())?;
    fused_add_rms_norm_into(backend, x, residual, weight, &out, params)?;
    Ok(out)
}
