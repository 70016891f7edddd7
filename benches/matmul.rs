//! matmul on every available backend, beside the CPU peers on the same
//! shapes: the `gemm` crate (what candle uses; f32 and f16) and faer (f32).
//! Peers use every thread of the global rayon pool, like radiant's CPU
//! backend. bf16 has no peer here (neither crate multiplies bf16).
//!
//! The peers are dev-dependencies: `radiant bench` (the library) cannot
//! measure them without making every user build them.

mod common;

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group};
use faer::{Accum, MatMut, MatRef, Par};
use gemm::Parallelism;
use radiant::DType;
use radiant::bench::cases::Rng;
use radiant::bench::{BenchCase, Shape};
use radiant::ops::{BLayout, OpKind};

/// Row-major `a` `[m,k]`, `b` `[k,n]` or `[n,k]`, `out` `[m,n]`.
struct HostMatmul<T> {
    a: Vec<T>,
    b: Vec<T>,
    out: Vec<T>,
}

impl<T: Copy> HostMatmul<T> {
    fn new(m: usize, n: usize, k: usize, zero: T, cast: impl Fn(f32) -> T) -> Self {
        let mut rng = Rng::new(0x9e3779b9);
        HostMatmul {
            a: rng.uniform_vec(m * k, 1.0).into_iter().map(&cast).collect(),
            b: rng.uniform_vec(k * n, 1.0).into_iter().map(&cast).collect(),
            out: vec![zero; m * n],
        }
    }
}

impl<T: Copy> HostMatmul<T> {
    /// Checks the first and last output rows against a plain dot product,
    /// so a wrong stride in a peer call fails loudly instead of timing the
    /// wrong product.
    fn check(
        &self,
        peer: &str,
        (m, n, k): (usize, usize, usize),
        layout: BLayout,
        f: impl Fn(T) -> f32,
    ) {
        for i in [0, m - 1] {
            for j in 0..n {
                let want: f32 = (0..k)
                    .map(|kk| {
                        let b = match layout {
                            BLayout::Kn => self.b[kk * n + j],
                            BLayout::Nk => self.b[j * k + kk],
                        };
                        f(self.a[i * k + kk]) * f(b)
                    })
                    .sum();
                let got = f(self.out[i * n + j]);
                let tolerance = 1e-2 * (k as f32).sqrt();
                assert!(
                    (got - want).abs() <= tolerance,
                    "{peer}: out[{i},{j}] = {got}, expected {want}"
                );
            }
        }
    }
}

/// `out = a·b` with the `gemm` crate, for T = f32 or gemm::f16.
fn gemm_matmul<T: 'static + Copy>(
    x: &mut HostMatmul<T>,
    (m, n, k): (usize, usize, usize),
    layout: BLayout,
    zero: T,
    one: T,
) {
    // gemm takes (column stride, row stride) per operand. b [k,n]
    // row-major: (1, n). Weights [n,k] read as bᵀ: (k, 1).
    let (rhs_cs, rhs_rs) = match layout {
        BLayout::Kn => (1, n as isize),
        BLayout::Nk => (k as isize, 1),
    };
    assert!(x.a.len() >= m * k && x.b.len() >= n * k && x.out.len() >= m * n);
    // SAFETY: `a` holds m·k, `b` k·n and `out` m·n elements (asserted
    // above), and the strides address exactly those row-major matrices;
    // `out` is a distinct, exclusively borrowed buffer, so it aliases
    // neither input. With read_dst = false the (zero) alpha is unused.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            x.out.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.a.as_ptr(),
            1,
            k as isize,
            x.b.as_ptr(),
            rhs_cs,
            rhs_rs,
            zero,
            one,
            false,
            false,
            false,
            Parallelism::Rayon(0),
        );
    }
}

fn faer_matmul(x: &mut HostMatmul<f32>, (m, n, k): (usize, usize, usize), layout: BLayout) {
    let lhs = MatRef::from_row_major_slice(&x.a, m, k);
    let rhs = match layout {
        BLayout::Kn => MatRef::from_row_major_slice(&x.b, k, n),
        BLayout::Nk => MatRef::from_row_major_slice(&x.b, n, k).transpose(),
    };
    let dst = MatMut::from_row_major_slice_mut(&mut x.out, m, n);
    faer::linalg::matmul::matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::rayon(0));
}

fn bench_peers(group: &mut BenchmarkGroup<'_, WallTime>, case: &BenchCase) {
    let Shape::Matmul { m, n, k, b_layout } = case.shape else {
        return;
    };
    let dims = (m, n, k);
    let id = |peer: &str| BenchmarkId::new(peer, common::parameter(case));
    group.throughput(common::throughput(case.flops(), case.bytes()));
    match case.dtype {
        DType::F32 => {
            let mut data = None;
            group.bench_function(id("gemm"), |b| {
                let x = data.get_or_insert_with(|| {
                    let mut x = HostMatmul::new(m, n, k, 0.0f32, |v| v);
                    gemm_matmul(&mut x, dims, b_layout, 0.0, 1.0);
                    x.check("gemm", dims, b_layout, |v| v);
                    x
                });
                b.iter(|| gemm_matmul(black_box(&mut *x), dims, b_layout, 0.0, 1.0));
            });
            let mut data = None;
            group.bench_function(id("faer"), |b| {
                let x = data.get_or_insert_with(|| {
                    let mut x = HostMatmul::new(m, n, k, 0.0f32, |v| v);
                    faer_matmul(&mut x, dims, b_layout);
                    x.check("faer", dims, b_layout, |v| v);
                    x
                });
                b.iter(|| faer_matmul(black_box(&mut *x), dims, b_layout));
            });
        }
        DType::F16 => {
            let (zero, one) = (gemm::f16::ZERO, gemm::f16::ONE);
            let mut data = None;
            group.bench_function(id("gemm"), |b| {
                let x = data.get_or_insert_with(|| {
                    let mut x = HostMatmul::new(m, n, k, zero, gemm::f16::from_f32);
                    gemm_matmul(&mut x, dims, b_layout, zero, one);
                    x.check("gemm", dims, b_layout, gemm::f16::to_f32);
                    x
                });
                b.iter(|| gemm_matmul(black_box(&mut *x), dims, b_layout, zero, one));
            });
        }
        _ => {}
    }
}

fn matmul(c: &mut Criterion) {
    common::bench_op(c, OpKind::Matmul, bench_peers);
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = matmul
}
criterion::criterion_main!(benches);
