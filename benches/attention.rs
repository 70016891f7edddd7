//! Variable-length causal prefill attention on every available backend.

mod common;

use criterion::{Criterion, criterion_group};
use radiant::ops::OpKind;

fn attention(c: &mut Criterion) {
    common::bench_op(c, OpKind::Attention, |_, _| {});
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = attention
}
criterion::criterion_main!(benches);
