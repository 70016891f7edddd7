//! matmul: for random shapes — 1, odd, not a multiple of any tile, deep K
//! with small M/N, medium (up to 130x130x300), tall and wide outputs, and
//! the empty edges (M = 0, N = 0, K = 0 where the output is the bias alone)
//! — with both `b` layouts, with and without bias, 2-D and 3-D `a` with
//! batched or broadcast `b`, inputs at buffer offsets, in f32/f16/bf16: the
//! backend writes every output element, nothing outside the output, and
//! matches the f64 oracle within the tolerance table.

use proptest::prelude::*;
use proptest::sample::select;
use radiant::cpu::reference::matmul::{MatmulShape, eval};
use radiant::ops::tolerance::tolerance;
use radiant::ops::{self, BLayout, MatmulParams};
use radiant::{Backend, DType, OpKind, OpQuery};

use crate::harness::{self, Check, Guarded, Rng, check_close, launch, numel, upload};

#[derive(Debug, Clone)]
pub struct MatmulCase {
    pub dtype: DType,
    /// `None`: 2-D `a`; `Some(batch)`: 3-D `a`.
    pub batch: Option<usize>,
    /// With a 3-D `a`: whether `b` has its own batch (else it broadcasts).
    pub b_batched: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub layout: BLayout,
    pub bias: bool,
    pub offset: usize,
    pub seed: u64,
}

/// (M, N, K), mostly small and odd, sometimes deep, medium, tall, wide or
/// empty.
fn dims() -> impl Strategy<Value = (usize, usize, usize)> {
    let big = || select(vec![129usize, 257]);
    prop_oneof![
        8 => (1..=70usize, 1..=70usize, 1..=70usize),
        1 => (1..=8usize, 1..=8usize, 256..=1024usize),
        1 => (65..=130usize, 65..=130usize, 65..=300usize),
        1 => (big(), 1..=24usize, 1..=48usize),
        1 => (1..=24usize, big(), 1..=48usize),
        1 => (0..=9usize, 0..=9usize, 0..=9usize),
    ]
}

pub fn cases() -> impl Strategy<Value = MatmulCase> {
    (
        harness::dtype(),
        dims(),
        prop_oneof![Just(None), (1..=3usize).prop_map(Some)],
        any::<bool>(),
        prop_oneof![Just(BLayout::Kn), Just(BLayout::Nk)],
        any::<bool>(),
        harness::offset(),
        any::<u64>(),
    )
        .prop_map(
            |(dtype, (m, n, k), batch, b_batched, layout, bias, offset, seed)| MatmulCase {
                dtype,
                batch,
                b_batched: b_batched && batch.is_some(),
                m,
                n,
                k,
                layout,
                bias,
                offset,
                seed,
            },
        )
}

/// Runs one case on `backend` and compares it with the oracle.
pub fn check(backend: &dyn Backend, case: &MatmulCase) -> Check {
    let MatmulCase { dtype, m, n, k, .. } = *case;
    if !harness::supported(backend, &OpQuery::new(OpKind::Matmul, dtype)) {
        return Ok(());
    }
    let batch = case.batch.unwrap_or(1);
    let lead: Vec<usize> = case.batch.into_iter().collect();
    let a_shape = [lead.as_slice(), &[m, k]].concat();
    let out_shape = [lead.as_slice(), &[m, n]].concat();
    let b_matrix = match case.layout {
        BLayout::Kn => [k, n],
        BLayout::Nk => [n, k],
    };
    let b_shape = if case.b_batched {
        vec![batch, b_matrix[0], b_matrix[1]]
    } else {
        b_matrix.to_vec()
    };

    let mut rng = Rng::new(case.seed);
    let a = rng.values(dtype, numel(&a_shape), 1.0);
    let b = rng.values(dtype, numel(&b_shape), 1.0);
    let bias = case.bias.then(|| rng.values(dtype, n, 1.0));

    let a_t = upload(backend, dtype, &a_shape, &a, case.offset)?;
    let b_t = upload(backend, dtype, &b_shape, &b, case.offset / 2)?;
    let bias_t = match &bias {
        Some(bias) => Some(upload(backend, dtype, &[n], bias, case.offset + 1)?),
        None => None,
    };
    let out = Guarded::new(backend, dtype, &out_shape)?;
    let params = MatmulParams {
        b_layout: case.layout,
    };
    launch("matmul", || {
        ops::matmul_into(backend, &a_t, &b_t, bias_t.as_ref(), &out.tensor, params)
    })?;
    let got = out.read(backend, "matmul out")?;

    let shape = MatmulShape {
        batch,
        m,
        n,
        k,
        b_layout: case.layout,
        b_batched: case.b_batched,
    };
    let want = eval(shape, &a, &b, bias.as_deref());
    check_close(
        "matmul out",
        dtype,
        tolerance(OpKind::Matmul, dtype),
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
