//! rms_norm: for x of rank 1 to 3 (leading dims 0, 1, odd, larger), hidden
//! sizes 1, odd, not a multiple of any tile, and large (up to 4096), inputs
//! scaled small, unit and large (a sum of squares that overflows f16 must
//! not), several eps, weight_offset 0 and 1 (Gemma), inputs at buffer
//! offsets, in f32/f16/bf16: every output element is written, nothing
//! outside the output is, and the result matches the f64 oracle.

use proptest::prelude::*;
use proptest::sample::select;
use radiant::cpu::reference::rms_norm::eval;
use radiant::ops::tolerance::tolerance;
use radiant::ops::{self, RmsNormParams};
use radiant::{Backend, DType, OpKind, OpQuery};

use crate::harness::{self, Check, Guarded, Rng, check_close, launch, numel, upload};

/// A case for rms_norm and fused_add_rms_norm.
#[derive(Debug, Clone)]
pub struct NormCase {
    pub dtype: DType,
    /// x's shape; the last dim is hidden.
    pub shape: Vec<usize>,
    pub eps: f64,
    pub weight_offset: f64,
    /// x (and residual) are uniform in `[-x_scale, x_scale]`.
    pub x_scale: f64,
    pub offset: usize,
    pub seed: u64,
}

impl NormCase {
    pub fn hidden(&self) -> usize {
        *self.shape.last().expect("rank >= 1")
    }

    pub fn params(&self) -> RmsNormParams {
        RmsNormParams {
            eps: self.eps,
            weight_offset: self.weight_offset,
        }
    }
}

fn hidden() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1..=70usize,
        1 => select(vec![129usize, 257, 1000]),
        1 => Just(4096usize),
    ]
}

fn leading_dim() -> impl Strategy<Value = usize> {
    prop_oneof![6 => 1..=5usize, 1 => Just(0usize), 1 => 6..=40usize]
}

pub fn cases() -> impl Strategy<Value = NormCase> {
    (
        harness::dtype(),
        prop::collection::vec(leading_dim(), 0..=2),
        hidden(),
        select(vec![1e-6, 1e-5, 1e-2, 0.0]),
        select(vec![0.0, 1.0]),
        select(vec![1.0, 1e-3, 100.0]),
        harness::offset(),
        any::<u64>(),
    )
        .prop_map(
            |(dtype, mut shape, hidden, eps, weight_offset, x_scale, offset, seed)| {
                shape.push(hidden);
                NormCase {
                    dtype,
                    shape,
                    eps,
                    weight_offset,
                    x_scale,
                    offset,
                    seed,
                }
            },
        )
}

pub fn check(backend: &dyn Backend, case: &NormCase) -> Check {
    let dtype = case.dtype;
    if !harness::supported(backend, &OpQuery::new(OpKind::RmsNorm, dtype)) {
        return Ok(());
    }
    let hidden = case.hidden();
    let mut rng = Rng::new(case.seed);
    let x = rng.values(dtype, numel(&case.shape), case.x_scale);
    let weight = rng.values(dtype, hidden, 1.0);

    let x_t = upload(backend, dtype, &case.shape, &x, case.offset)?;
    let w_t = upload(backend, dtype, &[hidden], &weight, case.offset / 3)?;
    let out = Guarded::new(backend, dtype, &case.shape)?;
    launch("rms_norm", || {
        ops::rms_norm_into(backend, &x_t, &w_t, &out.tensor, case.params())
    })?;
    let got = out.read(backend, "rms_norm out")?;

    let want = eval(&x, &weight, hidden, &case.params());
    check_close(
        "rms_norm out",
        dtype,
        tolerance(OpKind::RmsNorm, dtype),
        &got,
        &want,
        case,
    )
}

pub fn random(backend: &dyn Backend) {
    proptest!(harness::config(128), |(case in cases())| {
        check(backend, &case)?;
    });
}
