//! Paged decode attention on every available backend.

mod common;

use criterion::{Criterion, criterion_group};
use radiant::ops::OpKind;

fn paged_attention(c: &mut Criterion) {
    common::bench_op(c, OpKind::PagedAttention, |_, _| {});
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = paged_attention
}
criterion::criterion_main!(benches);
