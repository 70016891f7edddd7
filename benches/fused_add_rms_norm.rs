//! fused_add_rms_norm on every available backend, beside a plain copy of
//! the same bytes (x and residual read, residual and out written).

mod common;

use criterion::{Criterion, criterion_group};
use radiant::bench::Shape;
use radiant::ops::OpKind;

fn fused_add_rms_norm(c: &mut Criterion) {
    common::bench_op(c, OpKind::FusedAddRmsNorm, |group, case| {
        if let Shape::FusedAddRmsNorm { rows, hidden } = case.shape {
            // Copying two activations' worth moves all four of the op's.
            common::bench_copy(group, case, 2 * rows * hidden * case.dtype.size_in_bytes());
        }
    });
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = fused_add_rms_norm
}
criterion::criterion_main!(benches);
