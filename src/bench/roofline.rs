//! The roofline a measurement is judged against: peak FLOP/s and memory
//! bandwidth of the device a backend runs on.
//!
//! Host backends (`reference`, `cpu`) run on this machine's CPU, whose
//! ceilings are *measured* once per run, not looked up:
//!
//! * **peak f32 FMA rate**: every thread runs [`FMA_CHAINS`] independent
//!   vector FMA chains (enough to cover FMA latency × issue width on current
//!   x86 and Arm cores), 2 FLOPs per lane per FMA. The instruction set is
//!   chosen at run time: AVX2+FMA (256-bit) when the CPU has it, otherwise a
//!   portable kernel (NEON FMAs on aarch64, where FMA is baseline; separate
//!   multiply and add elsewhere). AVX-512 is not used: on Zen 4 it issues as
//!   two 256-bit halves (same peak), and on cores with full-width AVX-512
//!   units the true peak is up to 2× the figure measured here.
//! * **memory bandwidth**: a large copy (256 MiB, far beyond any
//!   last-level cache), counting bytes read *and* written (STREAM's
//!   convention, matching how op byte counts add inputs and outputs), and a
//!   read-only sweep of the same buffer, each best of a few. The roofline
//!   takes the higher: a read-dominated op (GEMV, decode attention) streams
//!   faster than a copy can, since a copy pays for its writes.
//!
//! Each is measured on one thread and on every thread of the current rayon
//! pool (the pool the backends run on); the roofline takes the better of
//! the two, so a noisy all-thread run on a loaded machine cannot lower it.
//! Shapes that fit in the last-level cache can still beat a DRAM
//! roofline; a percentage above 100 says so.
//!
//! Device backends (CUDA, ROCm, wgpu) will supply their own ceilings from
//! the device's properties; see [`roofline_for`].

use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;

use crate::backend::Backend;
use crate::cpu::memory::HostMemory;
use crate::dtype::DType;

/// Ceilings of one device: what a kernel could reach at best.
#[derive(Debug, Clone, PartialEq)]
pub struct Roofline {
    /// Peak f32 FLOP/s (an FMA counts as 2).
    pub peak_flops: f64,
    /// Memory bandwidth in bytes/s (bytes read plus bytes written).
    pub bandwidth_bytes_per_s: f64,
    /// Where the numbers come from ("measured: avx2+fma, 2 threads, ...").
    pub source: String,
}

/// Whether an op's speed is limited by arithmetic or by memory traffic on a
/// given device: compare its arithmetic intensity (FLOPs per byte) with the
/// device's balance (peak FLOP/s per byte/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Compute,
    Memory,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::Compute => "compute",
            Bound::Memory => "memory",
        }
    }
}

impl Roofline {
    /// FLOPs per byte at which the device turns from memory- to
    /// compute-bound.
    pub fn balance(&self) -> f64 {
        self.peak_flops / self.bandwidth_bytes_per_s
    }

    /// The peak FLOP rate for activations of `dtype`. Host backends compute
    /// 16-bit activations in f32, so this is the f32 peak for every dtype
    /// today; devices with faster 16-bit units will answer per dtype here.
    pub fn peak_flops_for(&self, _dtype: DType) -> f64 {
        self.peak_flops
    }

    /// Which ceiling an op of `flops` and `bytes` runs into.
    pub fn bound(&self, flops: f64, bytes: f64) -> Bound {
        if bytes > 0.0 && flops / bytes < self.balance() {
            Bound::Memory
        } else {
            Bound::Compute
        }
    }

    /// Achieved speed as a fraction of the attainable one,
    /// `min(peak, intensity · bandwidth)`; 1.0 is the roofline.
    pub fn fraction(&self, dtype: DType, flops: f64, bytes: f64, seconds: f64) -> f64 {
        let peak = self.peak_flops_for(dtype);
        let attainable_s = (flops / peak).max(bytes / self.bandwidth_bytes_per_s);
        if seconds > 0.0 {
            attainable_s / seconds
        } else {
            0.0
        }
    }
}

/// What one thread count achieved on this CPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostMeasurement {
    pub threads: usize,
    /// f32 FMA rate, FLOP/s.
    pub fma_flops: f64,
    /// Large-copy bandwidth, bytes read + written per second.
    pub copy_bytes_per_s: f64,
    /// Large read-only sweep, bytes read per second.
    pub read_bytes_per_s: f64,
}

/// This machine's CPU, measured on one thread and on every pool thread.
#[derive(Debug, Clone)]
pub struct HostRoofline {
    /// The FMA kernel used (`avx2+fma`, `neon`, `scalar`).
    pub kernel: &'static str,
    /// Size of the bandwidth buffers, in bytes.
    pub buffer_bytes: usize,
    pub one_thread: HostMeasurement,
    /// On every thread of the pool the backends run on.
    pub all_threads: HostMeasurement,
}

/// Number of independent FMA accumulators per thread. An FMA has a latency
/// of 4–5 cycles and 2 issue ports on current cores, so ≥ 10 chains keep
/// both ports busy; 12 leaves registers for the two operands.
pub const FMA_CHAINS: usize = 12;

/// Buffer size of the bandwidth measurements (8× a large server L3).
pub const COPY_BYTES: usize = 256 << 20;

/// How long one FMA measurement runs (per repetition).
const FMA_SECONDS: f64 = 0.05;

/// Measures this machine's CPU on the current rayon pool, best of `reps`
/// for each figure. `buffer_bytes` sizes the bandwidth buffers
/// ([`COPY_BYTES`] normally; `--quick` uses less).
pub fn measure_host(buffer_bytes: usize, reps: usize) -> HostRoofline {
    let threads = rayon::current_num_threads();
    let measure = |t: usize| HostMeasurement {
        threads: t,
        fma_flops: peak_fma_flops(t, reps),
        copy_bytes_per_s: copy_bandwidth(buffer_bytes, t, reps),
        read_bytes_per_s: read_bandwidth(buffer_bytes, t, reps),
    };
    HostRoofline {
        kernel: fma_kernel().name(),
        buffer_bytes,
        one_thread: measure(1),
        all_threads: measure(threads),
    }
}

impl HostRoofline {
    /// Threads of the pool the measurement (and the backends) ran on.
    pub fn threads(&self) -> usize {
        self.all_threads.threads
    }

    /// The host's ceilings: the best FMA rate and the best bandwidth (read
    /// or copy) over one thread and all threads.
    pub fn ceiling(&self) -> Roofline {
        let both = [self.one_thread, self.all_threads];
        let peak_flops = both.iter().map(|m| m.fma_flops).fold(0.0, f64::max);
        let bandwidth = both
            .iter()
            .map(|m| m.copy_bytes_per_s.max(m.read_bytes_per_s))
            .fold(0.0, f64::max);
        Roofline {
            peak_flops,
            bandwidth_bytes_per_s: bandwidth,
            source: format!(
                "measured on this CPU: {FMA_CHAINS} FMA chains ({}), {} MiB copy and read, \
                 best of 1 and {} threads",
                self.kernel,
                self.buffer_bytes >> 20,
                self.threads()
            ),
        }
    }
}

/// The roofline to judge `backend` against, or `None` when its device's
/// ceilings are unknown.
///
/// Backends that compute on this CPU get the host's
/// [`HostRoofline::ceiling`]: those whose buffers are host memory
/// (`reference`, `cpu`) and GPU adapters emulated on the CPU (llvmpipe).
/// Real devices will report their own ceilings (peak FLOP/s per dtype,
/// memory bandwidth) through the `Backend` trait once it has a method for
/// them; until then their rows show no percentage rather than a wrong one.
pub fn roofline_for(backend: &dyn Backend, host: &HostRoofline) -> Option<Roofline> {
    (is_host_backend(backend) || is_software_adapter(backend)).then(|| host.ceiling())
}

/// True when `backend` allocates host memory (`reference`, `cpu`).
pub fn is_host_backend(backend: &dyn Backend) -> bool {
    backend
        .alloc(1)
        .is_ok_and(|buffer| HostMemory::of(&buffer).is_some())
}

/// True for a GPU adapter that the driver emulates on the CPU (llvmpipe,
/// lavapipe, WARP, SwiftShader), which the wgpu backend reports as the
/// feature `type=Cpu` (wgpu's `DeviceType::Cpu`). A renamed feature only
/// costs the adapter its roofline percentage and FLOP budget, never a
/// wrong number; a `DeviceInfo` field would make this exact.
pub fn is_software_adapter(backend: &dyn Backend) -> bool {
    !is_host_backend(backend)
        && backend
            .info()
            .features
            .iter()
            .any(|f| f.eq_ignore_ascii_case("type=cpu"))
}

// ---------------------------------------------------------------------------
// Peak FMA rate

/// The FMA kernel this CPU runs, chosen once at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FmaKernel {
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// Portable code: fused multiply-adds where the target has them as a
    /// baseline (aarch64 NEON), separate multiply and add elsewhere.
    Portable,
}

impl FmaKernel {
    fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            FmaKernel::Avx2Fma => "avx2+fma",
            FmaKernel::Portable if cfg!(target_arch = "aarch64") => "neon",
            FmaKernel::Portable => "scalar",
        }
    }

    /// FLOPs one iteration of the kernel's loop performs.
    fn flops_per_iteration(self) -> f64 {
        match self {
            #[cfg(target_arch = "x86_64")]
            FmaKernel::Avx2Fma => (FMA_CHAINS * 8 * 2) as f64,
            FmaKernel::Portable => (FMA_CHAINS * PORTABLE_LANES * 2) as f64,
        }
    }

    /// Runs `iterations` rounds of every chain; returns a value depending on
    /// all of them so the work cannot be optimized away.
    fn run(self, iterations: u64) -> f32 {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `fma_kernel` returns `Avx2Fma` only after
            // `is_x86_feature_detected!` confirmed avx2 and fma on this CPU,
            // the one precondition of the `#[target_feature]` function.
            FmaKernel::Avx2Fma => unsafe { fma_chains_avx2(iterations) },
            FmaKernel::Portable => fma_chains_portable(iterations),
        }
    }
}

fn fma_kernel() -> FmaKernel {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        return FmaKernel::Avx2Fma;
    }
    FmaKernel::Portable
}

/// Peak FLOP/s of `threads` threads (at most the pool's), best of `reps`.
pub fn peak_fma_flops(threads: usize, reps: usize) -> f64 {
    let kernel = fma_kernel();
    let threads = threads.clamp(1, rayon::current_num_threads());
    // Calibrate the iteration count so one run takes about FMA_SECONDS.
    let mut iterations = 1u64 << 16;
    loop {
        let start = Instant::now();
        black_box(kernel.run(iterations));
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed > FMA_SECONDS / 4.0 || iterations >= 1 << 40 {
            let scale = (FMA_SECONDS / elapsed.max(1e-9)).clamp(1.0, 64.0);
            iterations = (iterations as f64 * scale) as u64;
            break;
        }
        iterations *= 4;
    }
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        let sink: f32 = rayon::broadcast(|ctx| {
            if ctx.index() < threads {
                kernel.run(iterations)
            } else {
                0.0
            }
        })
        .into_iter()
        .sum();
        black_box(sink);
        let elapsed = start.elapsed().as_secs_f64();
        let flops = kernel.flops_per_iteration() * iterations as f64 * threads as f64;
        best = best.max(flops / elapsed);
    }
    best
}

/// Multiplier and addend of every chain: `acc ← acc·MUL + ADD` converges to
/// a finite fixed point (≈ 0.1), so no chain overflows, underflows into
/// subnormals (slow on some cores), or turns NaN, however long it runs.
const FMA_MUL: f32 = 0.999;
const FMA_ADD: f32 = 1e-4;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_chains_avx2(iterations: u64) -> f32 {
    use std::arch::x86_64::*;

    let mul = _mm256_set1_ps(black_box(FMA_MUL));
    let add = _mm256_set1_ps(black_box(FMA_ADD));
    let mut acc = [_mm256_set1_ps(black_box(1.0)); FMA_CHAINS];
    for _ in 0..iterations {
        // A fixed-length loop over an array of registers: fully unrolled,
        // the accumulators stay in ymm registers.
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, mul, add);
        }
    }
    let mut sum = acc[0];
    for a in &acc[1..] {
        sum = _mm256_add_ps(sum, *a);
    }
    // Horizontal sum, so every lane of every chain is needed.
    let half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
    let pairs = _mm_hadd_ps(half, half);
    _mm_cvtss_f32(_mm_hadd_ps(pairs, pairs))
}

/// Lanes per chain of the portable kernel: one 128-bit vector (NEON, SSE).
const PORTABLE_LANES: usize = 4;

/// The portable kernel: the compiler vectorizes each `[f32; 4]` chain. On
/// aarch64 `mul_add` is a NEON `fmla` (FMA is baseline there); elsewhere a
/// fused `mul_add` could be a slow library call, so it multiplies and adds.
fn fma_chains_portable(iterations: u64) -> f32 {
    let mul = black_box(FMA_MUL);
    let add = black_box(FMA_ADD);
    let mut acc = [[black_box(1.0f32); PORTABLE_LANES]; FMA_CHAINS];
    for _ in 0..iterations {
        for chain in acc.iter_mut() {
            for lane in chain.iter_mut() {
                *lane = if cfg!(target_arch = "aarch64") {
                    lane.mul_add(mul, add)
                } else {
                    *lane * mul + add
                };
            }
        }
    }
    acc.iter().flatten().sum()
}

// ---------------------------------------------------------------------------
// Copy bandwidth

/// Copies `src` into `dst` (same length) in one contiguous chunk per thread
/// of the current rayon pool. This is the "plain copy" baseline of the
/// bandwidth-bound benches.
///
/// # Panics
///
/// Panics if the lengths differ, like `<[u8]>::copy_from_slice`.
pub fn parallel_copy(dst: &mut [u8], src: &[u8]) {
    parallel_copy_on(dst, src, rayon::current_num_threads());
}

/// Below this size a copy stays on one thread: waking the pool costs more
/// than it saves.
const PARALLEL_COPY_MIN_BYTES: usize = 1 << 20;

fn parallel_copy_on(dst: &mut [u8], src: &[u8], threads: usize) {
    assert_eq!(dst.len(), src.len(), "parallel_copy: lengths differ");
    if src.len() < PARALLEL_COPY_MIN_BYTES {
        dst.copy_from_slice(src);
        return;
    }
    // Chunks are multiples of 4 KiB so no two threads share a page.
    let chunk = src
        .len()
        .div_ceil(threads.max(1))
        .next_multiple_of(4096)
        .max(4096);
    if threads <= 1 || src.len() <= chunk {
        dst.copy_from_slice(src);
        return;
    }
    dst.par_chunks_mut(chunk)
        .zip(src.par_chunks(chunk))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// Read bandwidth in bytes/s of `threads` threads summing a `bytes`-byte
/// buffer, best of `reps`.
pub fn read_bandwidth(bytes: usize, threads: usize, reps: usize) -> f64 {
    let threads = threads.clamp(1, rayon::current_num_threads());
    let words = vec![1u64; bytes / 8];
    let chunk = words.len().div_ceil(threads).max(1);
    // Eight independent sums per thread: a vectorized, latency-free sweep.
    let sum = |part: &[u64]| {
        let mut acc = [0u64; 8];
        let mut lanes = part.chunks_exact(8);
        for lane in &mut lanes {
            for (a, w) in acc.iter_mut().zip(lane) {
                *a = a.wrapping_add(*w);
            }
        }
        let tail = lanes
            .remainder()
            .iter()
            .fold(0u64, |a, w| a.wrapping_add(*w));
        acc.iter().fold(tail, |a, w| a.wrapping_add(*w))
    };
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        let total: u64 = if threads == 1 {
            sum(black_box(&words))
        } else {
            black_box(&words)
                .par_chunks(chunk)
                .map(sum)
                .reduce(|| 0, u64::wrapping_add)
        };
        let elapsed = start.elapsed().as_secs_f64();
        black_box(total);
        best = best.max((words.len() * 8) as f64 / elapsed);
    }
    best
}

/// Copy bandwidth in bytes/s (read + written) of `threads` threads copying
/// `bytes` bytes, best of `reps`.
pub fn copy_bandwidth(bytes: usize, threads: usize, reps: usize) -> f64 {
    let threads = threads.clamp(1, rayon::current_num_threads());
    let src = vec![1u8; bytes];
    // Written once before timing, so page faults are not measured.
    let mut dst = vec![0u8; bytes];
    parallel_copy_on(&mut dst, &src, threads);
    let mut best = 0.0f64;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        parallel_copy_on(black_box(&mut dst), black_box(&src), threads);
        let elapsed = start.elapsed().as_secs_f64();
        best = best.max(2.0 * bytes as f64 / elapsed);
    }
    black_box(&dst);
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wgpu backend names its adapter type in a feature string; a
    /// software adapter (lavapipe in CI) must be recognised from it, or
    /// benches time it as a GPU with no roofline.
    #[cfg(feature = "wgpu")]
    #[test]
    fn a_software_wgpu_adapter_is_recognised() {
        let Ok(backend) = crate::device("wgpu:0") else {
            return; // no adapter on this machine: nothing to recognise
        };
        let cpu_type = backend
            .info()
            .features
            .iter()
            .any(|f| f.starts_with("type=Cpu"));
        assert_eq!(is_software_adapter(backend.as_ref()), cpu_type);
        assert!(!is_software_adapter(&crate::cpu::CpuBackend::new()));
    }

    #[test]
    fn fraction_follows_the_binding_ceiling() {
        let roof = Roofline {
            peak_flops: 100e9,
            bandwidth_bytes_per_s: 10e9,
            source: "test".into(),
        };
        assert_eq!(roof.balance(), 10.0);
        // Memory-bound: 1 GB at 10 GB/s takes 0.1 s at best.
        assert_eq!(roof.bound(1e9, 1e9), Bound::Memory);
        assert!((roof.fraction(DType::F32, 1e9, 1e9, 0.2) - 0.5).abs() < 1e-12);
        // Compute-bound: 100 GFLOP at 100 GFLOP/s takes 1 s at best.
        assert_eq!(roof.bound(100e9, 1e9), Bound::Compute);
        assert!((roof.fraction(DType::F32, 100e9, 1e9, 4.0) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn kernels_stay_finite_and_agree() {
        let portable = fma_chains_portable(10_000);
        assert!(portable.is_finite() && portable > 0.0);
        let kernel = fma_kernel();
        let simd = kernel.run(10_000);
        // Every lane converges to the same fixed point ADD / (1 − MUL).
        let lanes = (kernel.flops_per_iteration() / 2.0) as f32;
        let fixed_point = FMA_ADD / (1.0 - FMA_MUL);
        assert!(
            (simd / lanes - fixed_point).abs() < 1e-2 * fixed_point,
            "{simd}"
        );
    }

    #[test]
    fn parallel_copy_copies_every_byte() {
        let src: Vec<u8> = (0..(3 << 20) + 3u32).map(|i| (i % 251) as u8).collect();
        let mut dst = vec![0u8; src.len()];
        parallel_copy_on(&mut dst, &src, 3);
        assert_eq!(dst, src);
    }
}
