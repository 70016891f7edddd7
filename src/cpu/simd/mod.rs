//! SIMD kernels of the `cpu` backend, chosen at run time, once.
//!
//! # Dispatch
//!
//! [`kernels()`] detects the CPU's features on first use and caches a table
//! of function pointers ([`Kernels`]) in a `OnceLock`; every op reads that
//! table. Levels, best first:
//!
//! * `avx512`: AVX-512F (+ AVX2, FMA, F16C), 16 f32 lanes, 32 registers.
//! * `avx2`: AVX2 + FMA + F16C (f16 conversion in hardware), 8 lanes.
//! * `portable`: plain Rust on `[f32; 8]` arrays that LLVM vectorizes for the
//!   baseline target: SSE2 on x86-64, NEON (with fused multiply-add, which
//!   is baseline there) on aarch64.
//!
//! The crate is never built with `target-cpu=native`: a binary or wheel
//! built on one machine must run on baseline x86-64, so every ISA-specific
//! kernel is a `#[target_feature]` function that is only installed in the
//! table after `is_x86_feature_detected!` confirmed its features. The
//! environment variable `RADIANT_CPU_SIMD=portable|avx2|avx512` caps the
//! level (for tests and benchmarks; it can never raise it).
//!
//! # Why `std::arch` and not `pulp`
//!
//! The kernels need exact control of register tiling (a 6×16 FMA tile on
//! AVX2, 8×32 on AVX-512), of the f16/bf16 conversions (F16C, and bf16
//! round-to-nearest-even in integer lanes) and of the inlining boundary.
//! `std::arch` gives that with no dependency. We keep pulp's good idea: each
//! kernel body is written *once*, generic over a small [`Simd`] trait whose
//! methods are `#[inline(always)]` wrappers of intrinsics, and instantiated
//! per instruction set inside a `#[target_feature]` entry point (the
//! [`isa_table!`] macro), so the intrinsics inline into code compiled for
//! that instruction set.
//!
//! # Safety structure
//!
//! All `unsafe` of the `cpu` backend lives under this module. A [`Simd`]
//! token (`Avx2`, `Avx512`) can only be created after feature detection, so
//! its arithmetic methods are safe; loads and stores take raw pointers and
//! are `unsafe fn`s. The generic kernel bodies in `bodies` are `unsafe fn`s
//! over raw pointers; the safe methods of [`Kernels`] / [`ElemKernels`] check
//! every slice bound the body relies on before calling them, so the
//! drivers (`cpu/matmul.rs`, ...) are safe code.

use std::sync::OnceLock;

use half::{bf16, f16};

use crate::dtype::DType;

mod bodies;
mod portable;
pub(crate) mod quant;
#[cfg(target_arch = "x86_64")]
mod x86;

use bodies::{DotTileRaw, GemmTileRaw, GemvKnRaw, ScaleMulRaw, WidenRowsRaw};

/// The most f32 columns any level's GEMM tile has (AVX-512: 2 × 16).
pub(crate) const MAX_NR: usize = 64;

/// An instruction set: a zero-sized token proving its features are present,
/// with `#[inline(always)]` vector operations on `LANES` f32 lanes.
pub(crate) trait Simd: Copy + Send + Sync + 'static {
    const LANES: usize;
    type V: Copy;

    /// The token without detection.
    ///
    /// # Safety
    /// The CPU must support every feature of this instruction set.
    unsafe fn new_unchecked() -> Self;

    fn splat(self, x: f32) -> Self::V;
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a·b + c` (fused where the instruction set has FMA).
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Round to the nearest integer, ties to even.
    fn round(self, a: Self::V) -> Self::V;
    /// `2^n` for integral `n` in `[-126, 127]`.
    fn pow2i(self, n: Self::V) -> Self::V;
    /// Lane-wise `if a < b { x } else { y }`.
    fn select_lt(self, a: Self::V, b: Self::V, x: Self::V, y: Self::V) -> Self::V;
    fn reduce_sum(self, v: Self::V) -> f32;
    fn reduce_max(self, v: Self::V) -> f32;
    /// Hints that the cache line holding `p` will be read soon. Never
    /// faults and has no architectural effect, so any address is fine.
    fn prefetch(self, p: *const f32);
    /// As [`Simd::prefetch`], into L2 only (for streams read a little later).
    fn prefetch_l2(self, p: *const f32);

    /// # Safety
    /// `p` must be valid for reading `LANES` f32 (no alignment needed).
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// # Safety
    /// `p` must be valid for writing `LANES` f32 (no alignment needed).
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// A non-temporal store (bypasses the caches, no read for ownership).
    ///
    /// # Safety
    /// `p` must be valid for writing `LANES` f32 and aligned to `4·LANES`
    /// bytes; call [`Simd::store_fence`] before other threads read them.
    unsafe fn stream(self, p: *mut f32, v: Self::V);
    /// Orders earlier non-temporal stores before later stores.
    fn store_fence(self);
    /// # Safety
    /// `p` must be valid for reading `LANES` u16.
    unsafe fn load_f16(self, p: *const u16) -> Self::V;
    /// Rounds to nearest even. # Safety: `p` valid for writing `LANES` u16.
    unsafe fn store_f16(self, p: *mut u16, v: Self::V);
    /// # Safety
    /// `p` must be valid for reading `LANES` u16.
    unsafe fn load_bf16(self, p: *const u16) -> Self::V;
    /// Rounds to nearest even. # Safety: `p` valid for writing `LANES` u16.
    unsafe fn store_bf16(self, p: *mut u16, v: Self::V);

    /// `e^x` with a few ulp of error; exactly 0 below −87.3 (and for −inf);
    /// NaN for NaN.
    #[inline(always)]
    fn exp(self, x: Self::V) -> Self::V {
        // Cephes expf: x = n·ln2 + r, |r| ≤ ln2/2, e^r by a degree-7
        // polynomial, 2^n assembled in the exponent bits. `max`/`min`
        // return their second operand when either is NaN (x86 semantics,
        // mirrored by the portable level), so x goes second: a NaN survives
        // the clamp and poisons the polynomial instead of becoming e^−87.3.
        let xc = self.min(self.splat(88.3), self.max(self.splat(-87.3), x));
        let n = self.round(self.mul(xc, self.splat(std::f32::consts::LOG2_E)));
        let r = self.fma(n, self.splat(-0.693_359_4), xc);
        let r = self.fma(n, self.splat(2.121_944_4e-4), r);
        let mut p = self.splat(1.987_569_1e-4);
        p = self.fma(p, r, self.splat(1.398_199_9e-3));
        p = self.fma(p, r, self.splat(8.333_452e-3));
        p = self.fma(p, r, self.splat(4.166_579_6e-2));
        p = self.fma(p, r, self.splat(1.666_666_5e-1));
        p = self.fma(p, r, self.splat(0.5));
        let p = self.fma(p, self.mul(r, r), self.add(r, self.splat(1.0)));
        let e = self.mul(p, self.pow2i(n));
        self.select_lt(x, self.splat(-87.3), self.splat(0.0), e)
    }

    /// `tanh(x)`: `(1 − e^{−2|x|}) / (1 + e^{−2|x|})` with the sign of x for
    /// |x| ≥ 1/8, and the odd Taylor polynomial to x⁷ below (the quotient
    /// cancels catastrophically near 0: it gave 0 for |x| < 3e-8, which made
    /// a large softcap flatten every score). NaN for NaN.
    #[inline(always)]
    fn tanh(self, x: Self::V) -> Self::V {
        let ax = self.max(x, self.sub(self.splat(0.0), x));
        let t = self.exp(self.mul(ax, self.splat(-2.0)));
        let one = self.splat(1.0);
        let r = self.div(self.sub(one, t), self.add(one, t));
        let far = self.select_lt(x, self.splat(0.0), self.sub(self.splat(0.0), r), r);
        // x·(1 − x²/3 + 2x⁴/15 − 17x⁶/315): truncation < 2e-9 relative at 1/8.
        let x2 = self.mul(x, x);
        let mut p = self.splat(-17.0 / 315.0);
        p = self.fma(p, x2, self.splat(2.0 / 15.0));
        p = self.fma(p, x2, self.splat(-1.0 / 3.0));
        p = self.fma(p, x2, one);
        let near = self.mul(x, p);
        self.select_lt(ax, self.splat(0.125), near, far)
    }

    // Integer lanes, for the quantized matmuls (`quant.rs`): `LANES` u32
    // lanes beside the f32 lanes, and a 16-entry f32 lookup table.

    /// `LANES` u32 lanes.
    type I: Copy;
    /// A 16-entry f32 table held in registers (see [`Simd::lut16`]).
    type Lut: Copy;
    /// # Safety
    /// `p` must be valid for reading `LANES` u32 (no alignment needed).
    unsafe fn load_u32(self, p: *const u32) -> Self::I;
    /// `LANES` bytes, each zero-extended to a u32 lane.
    ///
    /// # Safety
    /// `p` must be valid for reading `LANES` bytes.
    unsafe fn load_u8_u32(self, p: *const u8) -> Self::I;
    fn splat_u32(self, x: u32) -> Self::I;
    fn and_u32(self, a: Self::I, b: Self::I) -> Self::I;
    fn or_u32(self, a: Self::I, b: Self::I) -> Self::I;
    /// Logical shift right by `n` (0 for `n >= 32`); a constant `n`
    /// compiles to the immediate form after inlining.
    fn shr_u32(self, a: Self::I, n: u32) -> Self::I;
    /// Shift left by `n` (0 for `n >= 32`).
    fn shl_u32(self, a: Self::I, n: u32) -> Self::I;
    /// Each lane, read as an i32, converted to f32 (exact below 2^24).
    fn u32_to_f32(self, a: Self::I) -> Self::V;
    /// Each lane's bits reinterpreted as an f32.
    fn bits_to_f32(self, a: Self::I) -> Self::V;
    /// Loads a 16-entry table into registers.
    fn lut16_new(self, table: &[f32; 16]) -> Self::Lut;
    /// `table[idx & 15]` in each lane (higher bits of `idx` are ignored).
    fn lut16(self, lut: Self::Lut, idx: Self::I) -> Self::V;
    /// Lane `l` holds `p[l / 8]` (one value per 8 lanes).
    ///
    /// # Safety
    /// `p` must be valid for reading `LANES` floats (only the first
    /// `LANES / 8` are used).
    unsafe fn load_spread8(self, p: *const f32) -> Self::V;
    /// Lane `l` holds field `l` of the words at `p` (`bits`-bit fields,
    /// lowest first: field `l` is `(p[l·bits/32] >> (l·bits % 32)) &
    /// (2^bits − 1)`), as f32. `bits` is 4 or 8.
    ///
    /// # Safety
    /// `p` must be valid for reading `LANES·bits/32` u32.
    unsafe fn load_fields(self, p: *const u32, bits: u32) -> Self::V;
    /// Each (finite) lane rounded to the nearest f16, ties to even, as f32.
    fn round_f16(self, v: Self::V) -> Self::V;
    /// Each (finite) lane rounded to the nearest bf16, ties to even, as f32.
    fn round_bf16(self, v: Self::V) -> Self::V;
}

/// An activation element type the kernels read and write.
pub(crate) trait Elem: bytemuck::Pod + Send + Sync + 'static {
    const DTYPE: DType;
    fn to_f32(self) -> f32;
    /// Round to nearest even.
    fn from_f32(v: f32) -> Self;
    /// # Safety
    /// `p` must be valid for reading `S::LANES` elements.
    unsafe fn load<S: Simd>(s: S, p: *const Self) -> S::V;
    /// # Safety
    /// `p` must be valid for writing `S::LANES` elements.
    unsafe fn store<S: Simd>(s: S, p: *mut Self, v: S::V);
    /// This type's kernels in `k`.
    fn table(k: &Kernels) -> &ElemKernels<Self>;
}

impl Elem for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const Self) -> S::V {
        // SAFETY: forwarded precondition.
        unsafe { s.load(p) }
    }
    #[inline(always)]
    unsafe fn store<S: Simd>(s: S, p: *mut Self, v: S::V) {
        // SAFETY: forwarded precondition.
        unsafe { s.store(p, v) }
    }
    fn table(k: &Kernels) -> &ElemKernels<Self> {
        &k.f32
    }
}

impl Elem for f16 {
    const DTYPE: DType = DType::F16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const Self) -> S::V {
        // SAFETY: f16 is a transparent u16; forwarded precondition.
        unsafe { s.load_f16(p.cast()) }
    }
    #[inline(always)]
    unsafe fn store<S: Simd>(s: S, p: *mut Self, v: S::V) {
        // SAFETY: f16 is a transparent u16; forwarded precondition.
        unsafe { s.store_f16(p.cast(), v) }
    }
    fn table(k: &Kernels) -> &ElemKernels<Self> {
        &k.f16
    }
}

impl Elem for bf16 {
    const DTYPE: DType = DType::BF16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    #[inline(always)]
    unsafe fn load<S: Simd>(s: S, p: *const Self) -> S::V {
        // SAFETY: bf16 is a transparent u16; forwarded precondition.
        unsafe { s.load_bf16(p.cast()) }
    }
    #[inline(always)]
    unsafe fn store<S: Simd>(s: S, p: *mut Self, v: S::V) {
        // SAFETY: bf16 is a transparent u16; forwarded precondition.
        unsafe { s.store_bf16(p.cast(), v) }
    }
    fn table(k: &Kernels) -> &ElemKernels<Self> {
        &k.bf16
    }
}

/// The instruction set a table was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Portable,
    Avx2,
    Avx512,
}

impl Level {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2+fma+f16c",
            Level::Avx512 => "avx512f+avx2+fma+f16c",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "scalar" | "none" => Some(Level::Portable),
            "avx2" => Some(Level::Avx2),
            "avx512" => Some(Level::Avx512),
            _ => None,
        }
    }
}

/// One GEMM microkernel call: `C[m×n] (+)= A[m×kc] · B[kc×NR]`, see
/// [`Kernels::gemm_tile`].
pub(crate) struct GemmTile<'a> {
    pub kc: usize,
    /// Element `(i, k)` of A is `a[i·a_rs + k·a_cs]`.
    pub a: &'a [f32],
    pub a_rs: usize,
    pub a_cs: usize,
    /// Row `k` of B is `b[k·b_rs ..][.. NR]` (all NR columns readable).
    pub b: &'a [f32],
    pub b_rs: usize,
    /// Element `(i, j)` of C is `c[i·c_rs + j]`.
    pub c: &'a mut [f32],
    pub c_rs: usize,
    pub m: usize,
    pub n: usize,
    /// Add to C instead of overwriting it.
    pub accumulate: bool,
}

/// One dot-product tile: `out[i·out_rs + j] = Σ_k x[i·x_rs + k]·w[j·w_rs + k]`
/// for `i < m`, `j < n`.
pub(crate) struct DotTile<'a, E> {
    pub k: usize,
    pub x: &'a [f32],
    pub x_rs: usize,
    pub w: &'a [E],
    pub w_rs: usize,
    pub out: &'a mut [f32],
    pub out_rs: usize,
    pub m: usize,
    pub n: usize,
}

/// The function table of one level, shared by every dtype.
pub(crate) struct Kernels {
    pub level: Level,
    /// GEMM microkernel rows (MR) and columns (NR).
    pub mr: usize,
    pub nr: usize,
    gemm_tile: unsafe fn(&GemmTileRaw),
    row_max: unsafe fn(*const f32, usize) -> f32,
    exp_sub_sum: unsafe fn(*mut f32, usize, f32) -> f32,
    scale_row: unsafe fn(*mut f32, usize, f32),
    scale_softcap: unsafe fn(*mut f32, usize, f32, f32),
    pub f32: ElemKernels<f32>,
    pub f16: ElemKernels<f16>,
    pub bf16: ElemKernels<bf16>,
}

/// The dtype-specific part of a table.
pub(crate) struct ElemKernels<E> {
    dot_mr: usize,
    dot_nr: usize,
    gemv_nr: usize,
    widen: unsafe fn(*const E, *mut f32, usize),
    widen_rows: unsafe fn(&WidenRowsRaw<E>),
    prefetch_rows: unsafe fn(*const E, usize, usize, usize),
    narrow: unsafe fn(*const f32, *const f32, *mut E, usize),
    dot_tile: unsafe fn(&DotTileRaw<E>),
    gemv_dot: unsafe fn(&DotTileRaw<E>),
    gemv_kn: unsafe fn(&GemvKnRaw<E>),
    sum_squares: unsafe fn(*const E, usize) -> f32,
    scale_mul: unsafe fn(&ScaleMulRaw<E>),
    add_round_sum_squares: unsafe fn(*const E, *mut E, usize) -> f32,
}

/// The table for the best level this CPU supports (capped by
/// `RADIANT_CPU_SIMD`), detected once.
pub(crate) fn kernels() -> &'static Kernels {
    static TABLE: OnceLock<Kernels> = OnceLock::new();
    TABLE.get_or_init(|| {
        let cap = std::env::var("RADIANT_CPU_SIMD")
            .ok()
            .and_then(|s| Level::parse(&s))
            .unwrap_or(Level::Avx512);
        available_levels()
            .into_iter()
            .filter(|&level| level <= cap)
            .max()
            .and_then(Kernels::for_level)
            .unwrap_or_else(portable::table)
    })
}

/// Every level this CPU can run, worst first.
pub(crate) fn available_levels() -> Vec<Level> {
    let mut levels = vec![Level::Portable];
    #[cfg(target_arch = "x86_64")]
    {
        if x86::avx2_detected() {
            levels.push(Level::Avx2);
        }
        if x86::avx512_detected() {
            levels.push(Level::Avx512);
        }
    }
    levels
}

impl Kernels {
    /// The table of `level`, or `None` if this CPU lacks its features.
    pub(crate) fn for_level(level: Level) -> Option<Kernels> {
        match level {
            Level::Portable => Some(portable::table()),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => x86::avx2_detected().then(x86::avx2_table),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => x86::avx512_detected().then(x86::avx512_table),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// The GEMM microkernel: `C[m×n] (+)= A[m×kc]·B[kc×NR]` accumulated in
    /// registers over k (in order), then stored (or added) once.
    ///
    /// Rows of A past `m` are never read (the kernel re-reads row `m − 1`);
    /// B must have all NR columns of each row readable (pad packed panels).
    pub(crate) fn gemm_tile(&self, t: GemmTile<'_>) {
        assert!((1..=self.mr).contains(&t.m) && (1..=self.nr).contains(&t.n));
        assert!(t.c_rs >= t.n && (t.m - 1) * t.c_rs + t.n <= t.c.len());
        if t.kc > 0 {
            assert!((t.m - 1) * t.a_rs + (t.kc - 1) * t.a_cs < t.a.len());
            assert!((t.kc - 1) * t.b_rs + self.nr <= t.b.len());
        }
        let raw = GemmTileRaw {
            kc: t.kc,
            a: t.a.as_ptr(),
            a_rs: t.a_rs,
            a_cs: t.a_cs,
            b: t.b.as_ptr(),
            b_rs: t.b_rs,
            c: t.c.as_mut_ptr(),
            c_rs: t.c_rs,
            m: t.m,
            n: t.n,
            accumulate: t.accumulate,
        };
        // SAFETY: the table holds this level's entry only if its features
        // were detected; the asserts above bound every address the kernel
        // touches: A rows < m at k < kc, B rows < kc × NR columns, C rows
        // < m × n columns (rows never overlap since c_rs >= n).
        unsafe { (self.gemm_tile)(&raw) }
    }

    /// The largest element of `x` (−inf for an empty slice).
    pub(crate) fn row_max(&self, x: &[f32]) -> f32 {
        // SAFETY: features detected (table invariant); reads x.len() floats.
        unsafe { (self.row_max)(x.as_ptr(), x.len()) }
    }

    /// `x ← e^(x − m)`; returns the sum of the new values.
    pub(crate) fn exp_sub_sum(&self, x: &mut [f32], m: f32) -> f32 {
        // SAFETY: features detected; reads and writes x.len() floats.
        unsafe { (self.exp_sub_sum)(x.as_mut_ptr(), x.len(), m) }
    }

    /// `x ← a·x`.
    pub(crate) fn scale_row(&self, x: &mut [f32], a: f32) {
        // SAFETY: features detected; reads and writes x.len() floats.
        unsafe { (self.scale_row)(x.as_mut_ptr(), x.len(), a) }
    }

    /// `x ← scale·x`, then `cap·tanh(x/cap)` when `cap > 0`.
    pub(crate) fn scale_softcap(&self, x: &mut [f32], scale: f32, cap: f32) {
        // SAFETY: features detected; reads and writes x.len() floats.
        unsafe { (self.scale_softcap)(x.as_mut_ptr(), x.len(), scale, cap) }
    }
}

impl<E: Elem> ElemKernels<E> {
    /// `dst[i] = src[i] as f32` for every element of `src`.
    pub(crate) fn widen(&self, src: &[E], dst: &mut [f32]) {
        assert!(dst.len() >= src.len());
        // SAFETY: features detected; src.len() elements read from src and
        // written to dst (checked above).
        unsafe { (self.widen)(src.as_ptr(), dst.as_mut_ptr(), src.len()) }
    }

    /// `dst[r·dst_rs ..][.. cols] = src[r·src_rs ..][.. cols]` widened, for
    /// `r < rows`, prefetching source rows ahead.
    pub(crate) fn widen_rows(
        &self,
        src: &[E],
        src_rs: usize,
        dst: &mut [f32],
        dst_rs: usize,
        (rows, cols): (usize, usize),
    ) {
        if rows == 0 || cols == 0 {
            return;
        }
        assert!((rows - 1) * src_rs + cols <= src.len());
        assert!(dst_rs >= cols && (rows - 1) * dst_rs + cols <= dst.len());
        let raw = WidenRowsRaw {
            src: src.as_ptr(),
            src_rs,
            dst: dst.as_mut_ptr(),
            dst_rs,
            rows,
            cols,
        };
        // SAFETY: features detected; every row r < rows of src and dst
        // holds cols elements (checked); dst rows do not overlap.
        unsafe { (self.widen_rows)(&raw) }
    }

    /// Hints that rows `r < rows` of `src` (row stride `rs`, `cols`
    /// elements each) will be read soon: one prefetch per cache line.
    pub(crate) fn prefetch_rows(&self, src: &[E], rs: usize, (rows, cols): (usize, usize)) {
        if rows == 0 || cols == 0 {
            return;
        }
        assert!((rows - 1) * rs + cols <= src.len());
        // SAFETY: features detected; the rows lie inside src (checked),
        // and a prefetch reads nothing architecturally anyway.
        unsafe { (self.prefetch_rows)(src.as_ptr(), rs, rows, cols) }
    }

    /// `dst[i] = round(src[i] + add[i])` (`add` empty: no addition).
    pub(crate) fn narrow(&self, src: &[f32], add: &[f32], dst: &mut [E]) {
        assert!(dst.len() >= src.len());
        assert!(add.is_empty() || add.len() >= src.len());
        let add = if add.is_empty() {
            std::ptr::null()
        } else {
            add.as_ptr()
        };
        // SAFETY: features detected; src.len() elements of src, add (when
        // not null) and dst are in bounds (checked above).
        unsafe { (self.narrow)(src.as_ptr(), add, dst.as_mut_ptr(), src.len()) }
    }

    fn check_dot(&self, t: &DotTile<'_, E>, mr: usize, nr: usize) -> DotTileRaw<E> {
        assert!((1..=mr).contains(&t.m) && (1..=nr).contains(&t.n));
        assert!((t.m - 1) * t.x_rs + t.k <= t.x.len());
        assert!((t.n - 1) * t.w_rs + t.k <= t.w.len());
        assert!((t.m - 1) * t.out_rs + t.n <= t.out.len());
        assert!(t.m == 1 || t.out_rs >= t.n);
        DotTileRaw {
            k: t.k,
            x: t.x.as_ptr(),
            x_rs: t.x_rs,
            w: t.w.as_ptr(),
            w_rs: t.w_rs,
            out: t.out.as_ptr().cast_mut(),
            out_rs: t.out_rs,
            m: t.m,
            n: t.n,
        }
    }

    /// A `dot_mr × dot_nr` tile of dot products (see [`DotTile`]).
    pub(crate) fn dot_tile(&self, t: DotTile<'_, E>) {
        let mut raw = self.check_dot(&t, self.dot_mr, self.dot_nr);
        raw.out = t.out.as_mut_ptr();
        // SAFETY: features detected; check_dot bounded every row of x and
        // w the kernel reads (rows ≥ m / ≥ n are clamped to m−1 / n−1) and
        // every element of out it writes.
        unsafe { (self.dot_tile)(&raw) }
    }

    /// A `1 × gemv_nr` tile of dot products (matrix-vector, one x row).
    pub(crate) fn gemv_dot(&self, t: DotTile<'_, E>) {
        let mut raw = self.check_dot(&t, 1, self.gemv_nr);
        raw.out = t.out.as_mut_ptr();
        // SAFETY: as in `dot_tile`, with at most one row of x.
        unsafe { (self.gemv_dot)(&raw) }
    }

    /// `out[j] = Σ_k x[k]·b[k·b_rs + j]` for `j < out.len()`.
    pub(crate) fn gemv_kn(&self, x: &[f32], b: &[E], b_rs: usize, out: &mut [f32]) {
        let (k, n) = (x.len(), out.len());
        if n == 0 {
            return;
        }
        assert!(k == 0 || (k - 1) * b_rs + n <= b.len());
        let raw = GemvKnRaw {
            k,
            x: x.as_ptr(),
            b: b.as_ptr(),
            b_rs,
            out: out.as_mut_ptr(),
            n,
        };
        // SAFETY: features detected; rows k' < k of b hold n readable
        // elements at k'·b_rs (checked), x holds k, out holds n.
        unsafe { (self.gemv_kn)(&raw) }
    }

    /// `Σ x²` accumulated in f32.
    pub(crate) fn sum_squares(&self, x: &[E]) -> f32 {
        // SAFETY: features detected; reads x.len() elements.
        unsafe { (self.sum_squares)(x.as_ptr(), x.len()) }
    }

    /// `out = round(x · inv · (w + offset))`, elementwise; `stream` writes
    /// f32 outputs with non-temporal stores (for outputs far larger than
    /// the caches: no read for ownership).
    #[allow(clippy::too_many_arguments)] // three rows and three scalars
    pub(crate) fn scale_mul(
        &self,
        x: &[E],
        w: &[E],
        out: &mut [E],
        inv: f32,
        offset: f32,
        stream: bool,
    ) {
        let n = x.len();
        assert!(w.len() >= n && out.len() >= n);
        let raw = ScaleMulRaw {
            x: x.as_ptr(),
            w: w.as_ptr(),
            out: out.as_mut_ptr(),
            n,
            inv,
            offset,
            stream,
        };
        // SAFETY: features detected; n elements of x, w and out in bounds.
        unsafe { (self.scale_mul)(&raw) }
    }

    /// `res = round(x + res)`; returns `Σ res²` of the rounded values.
    pub(crate) fn add_round_sum_squares(&self, x: &[E], res: &mut [E]) -> f32 {
        assert!(res.len() >= x.len());
        // SAFETY: features detected; x.len() elements of x and res.
        unsafe { (self.add_round_sum_squares)(x.as_ptr(), res.as_mut_ptr(), x.len()) }
    }

    /// Rows of x per `dot_tile` call.
    pub(crate) fn dot_mr(&self) -> usize {
        self.dot_mr
    }
    /// Rows of w per `dot_tile` call.
    pub(crate) fn dot_nr(&self) -> usize {
        self.dot_nr
    }
    /// Rows of w per `gemv_dot` call.
    pub(crate) fn gemv_nr(&self) -> usize {
        self.gemv_nr
    }
}

/// Builds a [`Kernels`] table for one instruction set: every generic body
/// of `kernels` instantiated for the token type, inside functions carrying
/// the instruction set's `#[target_feature]` attributes.
macro_rules! isa_table {
    (
        token: $S:ty,
        level: $level:expr,
        gemm: ($mr:literal, $nv:literal),
        dot: ($dmr:literal, $dnr:literal),
        gemv: $gnr:literal,
        $(#[$attr:meta])*
    ) => {
        use half::{bf16, f16};

        use crate::cpu::simd::bodies::{
            self as kernels, DotTileRaw, GemmTileRaw, GemvKnRaw, ScaleMulRaw, WidenRowsRaw,
        };
        use crate::cpu::simd::{Elem, ElemKernels, Kernels, Simd};

        // Each entry below has the same contract: the token's features are
        // present (the table is only built after detection) and the
        // pointer arguments satisfy the generic body's `# Safety`.
        // `new_unchecked` relies on the first, the body on the second.

        $(#[$attr])*
        unsafe fn gemm_tile(t: &GemmTileRaw) {
            // SAFETY: see the contract above.
            unsafe { kernels::gemm_tile::<$S, $mr, $nv>(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn row_max(x: *const f32, n: usize) -> f32 {
            // SAFETY: see the contract above.
            unsafe { kernels::row_max(<$S>::new_unchecked(), x, n) }
        }
        $(#[$attr])*
        unsafe fn exp_sub_sum(x: *mut f32, n: usize, m: f32) -> f32 {
            // SAFETY: see the contract above.
            unsafe { kernels::exp_sub_sum(<$S>::new_unchecked(), x, n, m) }
        }
        $(#[$attr])*
        unsafe fn scale_row(x: *mut f32, n: usize, a: f32) {
            // SAFETY: see the contract above.
            unsafe { kernels::scale_row(<$S>::new_unchecked(), x, n, a) }
        }
        $(#[$attr])*
        unsafe fn scale_softcap(x: *mut f32, n: usize, scale: f32, cap: f32) {
            // SAFETY: see the contract above.
            unsafe { kernels::scale_softcap(<$S>::new_unchecked(), x, n, scale, cap) }
        }
        $(#[$attr])*
        unsafe fn widen<E: Elem>(src: *const E, dst: *mut f32, n: usize) {
            // SAFETY: see the contract above.
            unsafe { kernels::widen(<$S>::new_unchecked(), src, dst, n) }
        }
        $(#[$attr])*
        unsafe fn widen_rows<E: Elem>(t: &WidenRowsRaw<E>) {
            // SAFETY: see the contract above.
            unsafe { kernels::widen_rows(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn prefetch_rows<E: Elem>(src: *const E, rs: usize, rows: usize, cols: usize) {
            // SAFETY: see the contract above.
            let s = unsafe { <$S>::new_unchecked() };
            kernels::prefetch_rows(s, src, rs, rows, cols)
        }
        $(#[$attr])*
        unsafe fn narrow<E: Elem>(src: *const f32, add: *const f32, dst: *mut E, n: usize) {
            // SAFETY: see the contract above.
            unsafe { kernels::narrow(<$S>::new_unchecked(), src, add, dst, n) }
        }
        $(#[$attr])*
        unsafe fn dot_tile<E: Elem>(t: &DotTileRaw<E>) {
            // SAFETY: see the contract above.
            unsafe { kernels::dot_tile::<$S, E, $dmr, $dnr>(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn gemv_dot<E: Elem>(t: &DotTileRaw<E>) {
            // SAFETY: see the contract above.
            unsafe { kernels::dot_tile::<$S, E, 1, $gnr>(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn gemv_kn<E: Elem>(t: &GemvKnRaw<E>) {
            // SAFETY: see the contract above.
            unsafe { kernels::gemv_kn::<$S, E, 4>(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn sum_squares<E: Elem>(x: *const E, n: usize) -> f32 {
            // SAFETY: see the contract above.
            unsafe { kernels::sum_squares(<$S>::new_unchecked(), x, n) }
        }
        $(#[$attr])*
        unsafe fn scale_mul<E: Elem>(t: &ScaleMulRaw<E>) {
            // SAFETY: see the contract above.
            unsafe { kernels::scale_mul(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn add_round_sum_squares<E: Elem>(x: *const E, res: *mut E, n: usize) -> f32 {
            // SAFETY: see the contract above.
            unsafe { kernels::add_round_sum_squares(<$S>::new_unchecked(), x, res, n) }
        }

        fn elem_table<E: Elem>() -> ElemKernels<E> {
            ElemKernels {
                dot_mr: $dmr,
                dot_nr: $dnr,
                gemv_nr: $gnr,
                widen: widen::<E>,
                widen_rows: widen_rows::<E>,
                prefetch_rows: prefetch_rows::<E>,
                narrow: narrow::<E>,
                dot_tile: dot_tile::<E>,
                gemv_dot: gemv_dot::<E>,
                gemv_kn: gemv_kn::<E>,
                sum_squares: sum_squares::<E>,
                scale_mul: scale_mul::<E>,
                add_round_sum_squares: add_round_sum_squares::<E>,
            }
        }

        /// This instruction set's table. Call only after detection.
        pub(crate) fn table() -> Kernels {
            const { assert!($mr * $nv * <$S as Simd>::LANES > 0) };
            const { assert!($nv * <$S as Simd>::LANES <= crate::cpu::simd::MAX_NR) };
            Kernels {
                level: $level,
                mr: $mr,
                nr: $nv * <$S as Simd>::LANES,
                gemm_tile,
                row_max,
                exp_sub_sum,
                scale_row,
                scale_softcap,
                f32: elem_table::<f32>(),
                f16: elem_table::<f16>(),
                bf16: elem_table::<bf16>(),
            }
        }
    };
}
pub(crate) use isa_table;

#[cfg(test)]
mod tests;
