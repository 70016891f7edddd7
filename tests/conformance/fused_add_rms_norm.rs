//! fused_add_rms_norm: on the rms_norm case generator (ranks, hidden sizes
//! up to 4096, scales, eps, weight_offset, dtypes), both outputs are right:
//! the in/out `residual` becomes exactly `round(x + residual)` (the rounding
//! order is part of the contract, and the sum of two stored values rounded
//! once is exact, so no tolerance applies) without a write outside its view,
//! and `out` matches the oracle, which normalizes the *rounded* sum.
//!
//! `matches_composition` is the "fused op vs composed slow version" check on
//! the backend under test: the fused op equals the host-rounded sum followed
//! by the backend's own rms_norm.

use proptest::prelude::*;
use radiant::cpu::reference::fused_add_rms_norm::eval;
use radiant::ops;
use radiant::ops::tolerance::tolerance;
use radiant::{Backend, HostTensor, OpKind, OpQuery, Tensor};

use crate::harness::{
    self, Check, Guarded, Rng, check_close, check_exact, launch, numel, rounded_sum, setup, upload,
};
use crate::rms_norm::{NormCase, cases};

/// The fused op's inputs on the device and on the host.
struct Fused {
    x: Vec<f64>,
    residual: Vec<f64>,
    weight: Vec<f64>,
    x_t: Tensor,
    w_t: Tensor,
}

impl Fused {
    fn new(backend: &dyn Backend, case: &NormCase) -> Check<Fused> {
        let dtype = case.dtype;
        let mut rng = Rng::new(case.seed);
        let n = numel(&case.shape);
        let x = rng.values(dtype, n, case.x_scale);
        let residual = rng.values(dtype, n, case.x_scale);
        let weight = rng.values(dtype, case.hidden(), 1.0);
        let x_t = upload(backend, dtype, &case.shape, &x, case.offset)?;
        let w_t = upload(backend, dtype, &[case.hidden()], &weight, case.offset / 2)?;
        Ok(Fused {
            x,
            residual,
            weight,
            x_t,
            w_t,
        })
    }

    /// Runs the fused op; returns (out, new residual) as read back.
    fn run(&self, backend: &dyn Backend, case: &NormCase) -> Check<(Vec<f64>, Vec<f64>)> {
        let host_residual =
            HostTensor::from_f64(case.dtype, &case.shape, &self.residual).map_err(setup)?;
        let residual = Guarded::with_values(backend, &host_residual)?;
        let out = Guarded::new(backend, case.dtype, &case.shape)?;
        launch("fused_add_rms_norm", || {
            ops::fused_add_rms_norm_into(
                backend,
                &self.x_t,
                &residual.tensor,
                &self.w_t,
                &out.tensor,
                case.params(),
            )
        })?;
        Ok((
            out.read(backend, "fused_add_rms_norm out")?,
            residual.read(backend, "fused_add_rms_norm residual")?,
        ))
    }
}

pub fn check(backend: &dyn Backend, case: &NormCase) -> Check {
    let dtype = case.dtype;
    if !harness::supported(backend, &OpQuery::new(OpKind::FusedAddRmsNorm, dtype)) {
        return Ok(());
    }
    let fused = Fused::new(backend, case)?;
    let (got_out, got_residual) = fused.run(backend, case)?;
    let (want_out, want_residual) = eval(
        &fused.x,
        &fused.residual,
        &fused.weight,
        case.hidden(),
        &case.params(),
        dtype,
    );
    check_exact(
        "fused_add_rms_norm residual",
        &got_residual,
        &want_residual,
        case,
    )?;
    check_close(
        "fused_add_rms_norm out",
        dtype,
        tolerance(OpKind::FusedAddRmsNorm, dtype),
        &got_out,
        &want_out,
        case,
    )
}

/// The fused op against `round(x + residual)` then the backend's rms_norm.
pub fn check_composition(backend: &dyn Backend, case: &NormCase) -> Check {
    let dtype = case.dtype;
    let fused_query = OpQuery::new(OpKind::FusedAddRmsNorm, dtype);
    let norm_query = OpQuery::new(OpKind::RmsNorm, dtype);
    if !harness::supported(backend, &fused_query) || !harness::supported(backend, &norm_query) {
        return Ok(());
    }
    let fused = Fused::new(backend, case)?;
    let (fused_out, fused_residual) = fused.run(backend, case)?;

    let sum = rounded_sum(dtype, &fused.x, &fused.residual);
    let sum_t = upload(backend, dtype, &case.shape, &sum, 0)?;
    let composed = Guarded::new(backend, dtype, &case.shape)?;
    launch("rms_norm", || {
        ops::rms_norm_into(backend, &sum_t, &fused.w_t, &composed.tensor, case.params())
    })?;
    let composed_out = composed.read(backend, "composed rms_norm out")?;

    check_exact(
        "fused residual vs round(x + residual)",
        &fused_residual,
        &sum,
        case,
    )?;
    check_close(
        "fused_add_rms_norm out vs rms_norm(round(x + residual))",
        dtype,
        tolerance(OpKind::FusedAddRmsNorm, dtype),
        &fused_out,
        &composed_out,
        case,
    )
}

pub fn random(backend: &dyn Backend) {
    proptest!(harness::config(96), |(case in cases())| {
        check(backend, &case)?;
    });
}

pub fn matches_composition(backend: &dyn Backend) {
    proptest!(harness::config(48), |(case in cases())| {
        check_composition(backend, &case)?;
    });
}
