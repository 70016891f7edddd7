//! rms_norm on every available backend, beside a plain copy of the same
//! bytes (the bandwidth ceiling a memory-bound norm can approach).

mod common;

use criterion::{Criterion, criterion_group};
use radiant::bench::Shape;
use radiant::ops::OpKind;

fn rms_norm(c: &mut Criterion) {
    common::bench_op(c, OpKind::RmsNorm, |group, case| {
        if let Shape::RmsNorm { rows, hidden } = case.shape {
            // x read, out written: the norm's traffic less the weight row.
            common::bench_copy(group, case, rows * hidden * case.dtype.size_in_bytes());
        }
    });
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = rms_norm
}
criterion::criterion_main!(benches);
