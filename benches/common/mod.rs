//! Shared by the per-op criterion benches: each loops radiant's shape list
//! (`radiant::bench::cases`, the same list as `radiant bench`) over every
//! backend `radiant::devices()` finds, so a new backend appears here with
//! no change to the bench files.
//!
//! * Throughput is the problem's FLOPs (criterion's "elem/s" column reads
//!   as FLOP/s) and bytes (B/s).
//! * Each sample launches the op `iters` times, then synchronizes once, so
//!   short device kernels are timed by throughput, not by round trips.
//! * Inputs are built lazily, on the first sample, so a criterion filter
//!   (`cargo bench --bench matmul -- bf16`) allocates only what it runs.
//! * `RADIANT_BENCH_QUICK=1` switches to the tiny shapes of
//!   `radiant bench --quick` (criterion's own `--quick` shortens sampling).
//! * GPU adapters emulated on the CPU (llvmpipe, WARP) are left out, with a
//!   note: at seconds per launch, criterion's ten samples per case would
//!   stretch `cargo bench` by many minutes. `RADIANT_BENCH_SOFTWARE=1`
//!   includes them (with the slow-backend FLOP budget); `radiant bench`
//!   always does.

// Each bench file uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use radiant::Backend;
use radiant::bench::roofline::is_software_adapter;
use radiant::bench::{BenchCase, PreparedCase, Suite, cases};
use radiant::ops::OpKind;

/// FLOP budget per case for slow backends (the scalar `reference` oracle,
/// GPU adapters emulated on the CPU) under criterion, which takes at least
/// 10 samples of at least one launch each: at the oracle's ~0.3–1 GFLOP/s
/// this keeps one case within seconds.
pub const SLOW_BACKEND_FLOP_BUDGET: f64 = 2e8;

/// Short measurements: a full `cargo bench` stays a few minutes on 2 cores.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

pub fn suite() -> Suite {
    if env_flag("RADIANT_BENCH_QUICK") {
        Suite::Quick
    } else {
        Suite::Full
    }
}

/// The cases of `op` in the current suite.
pub fn op_cases(op: OpKind) -> Vec<BenchCase> {
    cases(suite())
        .into_iter()
        .filter(|c| c.op() == op)
        .collect()
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Every available backend (software GPU adapters only on request).
pub fn backends() -> Vec<Arc<dyn Backend>> {
    let software = env_flag("RADIANT_BENCH_SOFTWARE");
    radiant::devices()
        .into_iter()
        .filter_map(|entry| match entry.status {
            Ok(backend) if !software && is_software_adapter(backend.as_ref()) => {
                eprintln!(
                    "note: skipping {}, a GPU emulated on the CPU (RADIANT_BENCH_SOFTWARE=1 includes it)",
                    entry.name
                );
                None
            }
            Ok(backend) => Some(backend),
            Err(reason) => {
                eprintln!("note: {} is unavailable: {reason}", entry.name);
                None
            }
        })
        .collect()
}

/// `dtype/shape`: the benchmark parameter shared by radiant and its peers,
/// so `matmul/<backend or peer>/f32/512x512x512 kn` line up.
pub fn parameter(case: &BenchCase) -> String {
    format!("{}/{}", case.dtype, case.shape)
}

pub fn throughput(flops: f64, bytes: f64) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: flops as u64,
        bytes: bytes as u64,
    }
}

/// Benches `case` on every backend in `group`.
pub fn bench_backends(
    group: &mut BenchmarkGroup<'_, WallTime>,
    backends: &[Arc<dyn Backend>],
    case: &BenchCase,
) {
    for backend in backends {
        if let Some(reason) = case.skip_reason(backend.as_ref(), SLOW_BACKEND_FLOP_BUDGET) {
            eprintln!(
                "note: skipping {} on {}: {reason}",
                case.id(),
                backend.name()
            );
            continue;
        }
        group.throughput(throughput(case.flops(), case.bytes()));
        let mut prepared: Option<PreparedCase> = None;
        let id = BenchmarkId::new(backend.name(), parameter(case));
        group.bench_function(id, |b| {
            let prepared = prepared.get_or_insert_with(|| {
                case.prepare(backend)
                    .unwrap_or_else(|e| panic!("{} on {}: {e}", case.id(), backend.name()))
            });
            b.iter_custom(|iters| {
                let start = Instant::now();
                prepared
                    .run_batch(iters as usize)
                    .unwrap_or_else(|e| panic!("{} on {}: {e}", case.id(), backend.name()));
                start.elapsed()
            });
        });
    }
}

/// The "plain copy" bandwidth baseline: copies `bytes` bytes with every
/// thread (`radiant::bench::roofline::parallel_copy`), counted as read +
/// written.
pub fn bench_copy(group: &mut BenchmarkGroup<'_, WallTime>, case: &BenchCase, bytes: usize) {
    group.throughput(Throughput::Bytes(2 * bytes as u64));
    let mut buffers: Option<(Vec<u8>, Vec<u8>)> = None;
    group.bench_function(BenchmarkId::new("copy", parameter(case)), |b| {
        let (src, dst) = buffers.get_or_insert_with(|| (vec![1u8; bytes], vec![0u8; bytes]));
        b.iter(|| radiant::bench::roofline::parallel_copy(dst, src));
    });
}

/// One criterion group for `op`: every case on every backend, plus
/// `extra` (peers, baselines) after each case's backends.
pub fn bench_op(
    c: &mut Criterion,
    op: OpKind,
    mut extra: impl FnMut(&mut BenchmarkGroup<'_, WallTime>, &BenchCase),
) {
    let backends = backends();
    let mut group = c.benchmark_group(op.name());
    for case in op_cases(op) {
        bench_backends(&mut group, &backends, &case);
        extra(&mut group, &case);
    }
    group.finish();
}
