//! The suite's shared machinery, kept small on purpose:
//!
//! * choosing the backend under test, or skipping it with the reason
//!   (`RADIANT_REQUIRE_BACKENDS` turns the skip into a failure);
//! * reporting an op the backend does not `supports()` as skipped, once;
//! * deterministic random inputs, already rounded to the storage dtype (the
//!   oracle evaluates exactly the values the backend sees);
//! * inputs uploaded at an offset inside a NaN-poisoned buffer (a kernel that
//!   ignores the view offset or reads past the view sees NaN);
//! * guarded outputs: the output view sits between guard regions and the
//!   whole buffer is poisoned before the launch; reading it back fails on an
//!   out-of-bounds write (changed guard) or an unwritten element (poison);
//! * the comparison with the one tolerance table, with a useful message.
//!
//! Checks return `Check` (`Result<_, TestCaseError>`) so that proptest can
//! shrink a failing case; non-proptest tests turn the error into a panic
//! with [`must`].

use std::collections::BTreeSet;
use std::fmt::{Debug, Display};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRng, TestRunner};
use radiant::ops::tolerance::{Tolerance, compare};
use radiant::{Backend, DType, Error, HostTensor, OpKind, OpQuery, Tensor};

/// The result of one check; the error carries the whole story.
pub type Check<T = ()> = Result<T, TestCaseError>;

pub fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

/// A failure while preparing a case (alloc, upload, download): never the
/// backend's op, but still a failure of the backend.
pub fn setup<E: Display>(error: E) -> TestCaseError {
    fail(format!("test setup failed: {error}"))
}

/// Panics with the message of a failed check (for non-proptest tests).
#[track_caller]
pub fn must(check: Check) {
    if let Err(error) = check {
        panic!("{error}");
    }
}

/// Proptest settings: an explicit case count, no regression files (every
/// case carries its seed, so the printed minimal case reproduces it), and a
/// bound on shrinking so a failure on a slow backend still ends.
/// `PROPTEST_CASES` in the environment overrides `cases`.
pub fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

/// Draws one value of `strategy` (for tests that reuse the case generators
/// outside `proptest!`, like the threads test).
pub fn sample<S: Strategy>(strategy: &S, runner: &mut TestRunner) -> S::Value {
    strategy
        .new_tree(runner)
        .expect("case strategies never reject everything")
        .current()
}

/// A runner whose draws depend only on `seed`.
pub fn seeded_runner(seed: u8) -> TestRunner {
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

// ---------------------------------------------------------------------------
// Backends: available, skipped, or required.

/// Every backend the suite is instantiated for (see `backend_tests!`).
pub const BACKENDS: [&str; 5] = ["reference", "cpu", "wgpu:0", "cuda:0", "rocm:0"];

/// `wgpu` means `wgpu:0`; `reference` and `cpu` have no index.
pub fn canonical(name: &str) -> String {
    let name = name.trim();
    if name.contains(':') || name == "reference" || name == "cpu" {
        name.to_string()
    } else {
        format!("{name}:0")
    }
}

/// The backends `RADIANT_REQUIRE_BACKENDS` (comma-separated) requires.
pub fn required_backends() -> Vec<String> {
    std::env::var("RADIANT_REQUIRE_BACKENDS")
        .unwrap_or_default()
        .split(',')
        .filter(|name| !name.trim().is_empty())
        .map(canonical)
        .collect()
}

/// The backend `name`, or `None` after printing why it is skipped. Panics
/// instead when the environment requires it.
pub fn open(name: &str) -> Option<Arc<dyn Backend>> {
    match radiant::device(name) {
        Ok(backend) => Some(backend),
        Err(error) => {
            let reason = match error {
                Error::Unavailable { reason, .. } => reason,
                other => other.to_string(),
            };
            if required_backends().contains(&canonical(name)) {
                panic!("{name} is required by RADIANT_REQUIRE_BACKENDS but unavailable: {reason}");
            }
            println!("skipped: {name} unavailable: {reason}");
            None
        }
    }
}

/// Runs `test` on backend `name` if it is available.
pub fn run_on(name: &str, test: fn(&dyn Backend)) {
    if let Some(backend) = open(name) {
        test(backend.as_ref());
    }
}

/// Runs `test` on a shared handle to backend `name` if it is available.
pub fn run_shared(name: &str, test: fn(Arc<dyn Backend>)) {
    if let Some(backend) = open(name) {
        test(backend);
    }
}

/// Whether `backend` runs `query`. A refusal is a skip, printed once per
/// (backend, query); it is never a failure. (An op the backend accepts here
/// and then fails is a failure: see [`launch`].)
pub fn supported(backend: &dyn Backend, query: &OpQuery) -> bool {
    static REPORTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    match backend.supports(query) {
        Ok(()) => true,
        Err(unsupported) => {
            let key = format!("{} {query:?}", backend.name());
            let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
            if reported.insert(key) {
                println!(
                    "skipped: {} {} {}{}{}: {}",
                    backend.name(),
                    query.op,
                    query.dtype,
                    query
                        .head_dim
                        .map_or(String::new(), |d| format!(" head_dim {d}")),
                    query.bits.map_or(String::new(), |b| format!(" {b}-bit")),
                    unsupported.reason
                );
            }
            false
        }
    }
}

// ---------------------------------------------------------------------------
// Random inputs.

/// The activation dtypes.
pub fn dtype() -> impl Strategy<Value = DType> {
    select(DType::FLOATS.to_vec())
}

/// Where an input view starts in its buffer: usually 0, sometimes not.
pub fn offset() -> impl Strategy<Value = usize> {
    prop_oneof![2 => Just(0usize), 1 => 1..=37usize]
}

/// SplitMix64: tensor contents come from a seed in the case, so a shrunk
/// case prints everything needed to reproduce it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` values uniform in `[-scale, scale]`, rounded to `dtype`.
    pub fn values(&mut self, dtype: DType, n: usize, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                dtype.round((2.0 * unit - 1.0) * scale)
            })
            .collect()
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Element-wise sum rounded to `dtype` (the host side of "add, then norm").
pub fn rounded_sum(dtype: DType, a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| dtype.round(x + y)).collect()
}

// ---------------------------------------------------------------------------
// Device memory: poisoned uploads and guarded outputs.

/// Every byte of a fresh buffer: NaN in f32, f16 and bf16 alike.
pub const POISON: u8 = 0xFF;
/// Guard elements before and after every output view (odd after, so the
/// end of the buffer is not aligned with the end of a tile).
pub const GUARD_BEFORE: usize = 64;
pub const GUARD_AFTER: usize = 67;

fn poisoned_buffer(backend: &dyn Backend, bytes: usize) -> Check<radiant::Buffer> {
    let buffer = backend.alloc(bytes).map_err(setup)?;
    backend
        .upload(&buffer, 0, &vec![POISON; bytes])
        .map_err(setup)?;
    Ok(buffer)
}

/// Uploads `host` as a view starting `offset` elements into a buffer that
/// has `offset` poisoned elements on each side of it.
pub fn upload_host(backend: &dyn Backend, host: &HostTensor, offset: usize) -> Check<Tensor> {
    let size = host.dtype().size_in_bytes();
    let buffer = poisoned_buffer(backend, 2 * offset * size + host.bytes().len())?;
    backend
        .upload(&buffer, offset * size, host.bytes())
        .map_err(setup)?;
    Tensor::from_buffer(buffer, host.dtype(), host.shape(), offset).map_err(setup)
}

/// Uploads float `values` (already representable in `dtype`) as `shape`.
pub fn upload(
    backend: &dyn Backend,
    dtype: DType,
    shape: &[usize],
    values: &[f64],
    offset: usize,
) -> Check<Tensor> {
    let host = HostTensor::from_f64(dtype, shape, values).map_err(setup)?;
    upload_host(backend, &host, offset)
}

/// Uploads i32 metadata (sequence offsets, block tables, lengths).
pub fn upload_i32(backend: &dyn Backend, shape: &[usize], values: &[i32]) -> Check<Tensor> {
    let host = HostTensor::from_i32(shape, values).map_err(setup)?;
    upload_host(backend, &host, 0)
}

/// An output view between guard regions, in a buffer poisoned before the
/// launch.
pub struct Guarded {
    pub tensor: Tensor,
}

impl Guarded {
    /// A poisoned output of `shape`.
    pub fn new(backend: &dyn Backend, dtype: DType, shape: &[usize]) -> Check<Guarded> {
        let bytes = (GUARD_BEFORE + numel(shape) + GUARD_AFTER) * dtype.size_in_bytes();
        let buffer = poisoned_buffer(backend, bytes)?;
        let tensor = Tensor::from_buffer(buffer, dtype, shape, GUARD_BEFORE).map_err(setup)?;
        Ok(Guarded { tensor })
    }

    /// An in/out argument: poisoned guards around `initial`.
    pub fn with_values(backend: &dyn Backend, initial: &HostTensor) -> Check<Guarded> {
        let guarded = Guarded::new(backend, initial.dtype(), initial.shape())?;
        backend
            .upload(
                guarded.tensor.buffer(),
                guarded.tensor.byte_offset(),
                initial.bytes(),
            )
            .map_err(setup)?;
        Ok(guarded)
    }

    /// Downloads the whole buffer; fails if a guard byte changed or an
    /// element of the view still holds the poison; returns the view's values.
    pub fn read(&self, backend: &dyn Backend, what: &str) -> Check<Vec<f64>> {
        let t = &self.tensor;
        let size = t.dtype().size_in_bytes();
        let mut bytes = vec![0u8; t.buffer().len_bytes()];
        backend.download(t.buffer(), 0, &mut bytes).map_err(setup)?;
        let (start, end) = (t.byte_offset(), t.byte_offset() + t.byte_len());
        let changed = (0..start)
            .chain(end..bytes.len())
            .find(|&i| bytes[i] != POISON);
        if let Some(i) = changed {
            let element = i as i64 / size as i64 - (start / size) as i64;
            return Err(fail(format!(
                "{what}: out-of-bounds write: guard byte {i} changed (element {element} of a view of {} elements)",
                t.numel()
            )));
        }
        let view = &bytes[start..end];
        let unwritten: Vec<usize> = view
            .chunks_exact(size)
            .enumerate()
            .filter(|(_, element)| element.iter().all(|&b| b == POISON))
            .map(|(i, _)| i)
            .collect();
        if let Some(&first) = unwritten.first() {
            return Err(fail(format!(
                "{what}: {} of {} output elements still hold the poison bit pattern (first: {first}): \
                 never written, or computed from poisoned memory outside an input view",
                unwritten.len(),
                t.numel()
            )));
        }
        let host = HostTensor::from_bytes(t.dtype(), t.shape(), view.to_vec()).map_err(setup)?;
        Ok(host.to_f64_vec())
    }
}

// ---------------------------------------------------------------------------
// Launching and comparing.

pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_string())
}

/// Runs `call` with panics caught: a panic fails with a clear message.
pub fn no_panic<T>(what: &str, call: impl FnOnce() -> T) -> Check<T> {
    catch_unwind(AssertUnwindSafe(call))
        .map_err(|payload| fail(format!("{what} panicked: {}", panic_message(&*payload))))
}

/// Launches an op the backend said it supports: any error is a failure.
pub fn launch(what: &str, call: impl FnOnce() -> radiant::Result<()>) -> Check {
    no_panic(what, call)?.map_err(|error| {
        fail(format!(
            "{what}: the backend accepted the problem in supports() but the op failed: {error}"
        ))
    })
}

/// Compares `got` with the unrounded f64 `want` under `tol`.
pub fn check_close(
    what: &str,
    dtype: DType,
    tol: Tolerance,
    got: &[f64],
    want: &[f64],
    case: &dyn Debug,
) -> Check {
    let c = compare(got, want, tol);
    if c.passed {
        return Ok(());
    }
    let worst = c.worst_index.map_or("-".to_string(), |i| {
        format!("{i} (got {:?}, want {:?})", got.get(i), want.get(i))
    });
    Err(fail(format!(
        "{what} [{dtype}] does not match the oracle: rel_l2 {:.3e} (tol {:.1e}), \
         max_abs {:.3e} (tol {:.1e} x max(1, max|ref|)), {} NaN/inf mismatches, \
         worst index {worst}, {} elements\ncase: {case:?}",
        c.rel_l2,
        tol.rel_l2,
        c.max_abs,
        tol.max_abs,
        c.bad_elements,
        want.len()
    )))
}

/// Requires `got` to equal `want` bit for bit (as f64 values).
pub fn check_exact(what: &str, got: &[f64], want: &[f64], case: &dyn Debug) -> Check {
    let mismatch = got
        .iter()
        .zip(want)
        .position(|(g, w)| g.to_bits() != w.to_bits() && g != w);
    if got.len() != want.len() || mismatch.is_some() {
        let i = mismatch.unwrap_or(0);
        return Err(fail(format!(
            "{what} must be exact: element {i} is {:?}, want {:?} ({} vs {} elements)\ncase: {case:?}",
            got.get(i),
            want.get(i),
            got.len(),
            want.len()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Quantized matmuls: what the three ops share.

/// Weights `[n, k]` to quantize, in f32: uniform with a per-row scale,
/// every fifth row non-negative (asymmetric groups get z = 0), and the
/// first 16 columns of row 1 zero (an all-zero NVFP4 block, a constant
/// GPTQ / AWQ group).
pub fn weights_to_quantize(rng: &mut Rng, n: usize, k: usize) -> Check<HostTensor> {
    let mut values = Vec::with_capacity(n * k);
    for row in 0..n {
        let scale = 0.25 + (row % 7) as f64 * 0.25;
        let row_values = rng.values(DType::F32, k, scale);
        for (col, v) in row_values.into_iter().enumerate() {
            values.push(match (row % 5, row, col) {
                (_, 1, 0..16) => 0.0,
                (0, _, _) => v.abs(),
                _ => v,
            });
        }
    }
    HostTensor::from_f64(DType::F32, &[n, k], &values).map_err(setup)
}

/// One quantized-matmul problem around an already built weight.
#[derive(Debug, Clone, Copy)]
pub struct Linear<'a> {
    /// `gptq_matmul`, ...
    pub op: OpKind,
    pub dtype: DType,
    /// x's leading dims (their product is M).
    pub lead: &'a [usize],
    pub n: usize,
    pub k: usize,
    pub bias: bool,
    /// x's offset in its poisoned buffer (the bias sits at `offset + 1`).
    pub offset: usize,
}

/// Runs one quantized matmul: random x (and bias) in the activation dtype
/// at buffer offsets, a guarded poisoned output; `launch_op(x, bias, out)`
/// calls the op. The result must match the oracle `oracle(x, bias)` (the
/// reference `eval`), which must itself equal the dense f64 matmul against
/// `dequantized` (the weight dequantized and rounded to x's dtype, `[N,
/// K]`): the contract, spelled out.
pub fn check_linear(
    backend: &dyn Backend,
    p: Linear<'_>,
    rng: &mut Rng,
    dequantized: &HostTensor,
    oracle: impl FnOnce(&[f64], Option<&[f64]>) -> Vec<f64>,
    launch_op: impl FnOnce(&Tensor, Option<&Tensor>, &Tensor) -> radiant::Result<()>,
    case: &dyn Debug,
) -> Check {
    let Linear {
        op, dtype, n, k, ..
    } = p;
    let x_shape = [p.lead, &[k]].concat();
    let out_shape = [p.lead, &[n]].concat();
    let x = rng.values(dtype, numel(&x_shape), 1.0);
    let bias = p.bias.then(|| rng.values(dtype, n, 1.0));
    let x_t = upload(backend, dtype, &x_shape, &x, p.offset)?;
    let bias_t = match &bias {
        Some(bias) => Some(upload(backend, dtype, &[n], bias, p.offset + 1)?),
        None => None,
    };
    let out = Guarded::new(backend, dtype, &out_shape)?;
    let what = op.name();
    launch(what, || launch_op(&x_t, bias_t.as_ref(), &out.tensor))?;
    let got = out.read(backend, &format!("{what} out"))?;

    let want = oracle(&x, bias.as_deref());
    let shape = radiant::cpu::reference::matmul::MatmulShape {
        batch: 1,
        m: numel(p.lead),
        n,
        k,
        b_layout: radiant::ops::BLayout::Nk,
        b_batched: false,
    };
    let dense = radiant::cpu::reference::matmul::eval(
        shape,
        &x,
        &dequantized.to_f64_vec(),
        bias.as_deref(),
    );
    check_exact(
        &format!("{what} oracle vs dense matmul of dequantize({dtype})"),
        &want,
        &dense,
        case,
    )?;
    check_close(
        &format!("{what} out"),
        dtype,
        radiant::ops::tolerance::tolerance(op, dtype),
        &got,
        &want,
        case,
    )
}
