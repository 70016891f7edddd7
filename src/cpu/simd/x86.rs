//! x86-64 levels: AVX2 + FMA + F16C (8 lanes) and AVX-512F (16 lanes).
//!
//! Tile shapes. AVX2 has 16 ymm registers: the GEMM tile is 6×16 (12
//! accumulators, 2 B vectors, 1 broadcast), the dot tile 4×3 (12
//! accumulators, 3 W vectors, 1 x vector). AVX-512 has 32 zmm registers:
//! GEMM 8×32 (16 accumulators; on Zen 4 a zmm FMA issues as two 256-bit
//! halves, so the extra registers matter more than the width), dot 4×4.
//! The matrix-vector dot uses 8 W rows (8 independent FMA chains cover the
//! FMA latency × 2 ports).
//!
//! bf16 has no conversion instruction in AVX2/AVX-512F: loads shift the 16
//! bits into the high half of an f32; stores round to nearest even in
//! integer lanes (`bits + 0x7fff + lsb`), keeping NaNs quiet, exactly like
//! `half::bf16::from_f32`.

use std::arch::x86_64::*;

use super::Simd;

/// AVX2 + FMA + F16C present.
pub(super) fn avx2_detected() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// AVX-512F present, on top of AVX2 + FMA + F16C.
pub(super) fn avx512_detected() -> bool {
    avx2_detected() && is_x86_feature_detected!("avx512f")
}

/// Token: AVX2, FMA and F16C are available.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(());

/// Token: AVX-512F (and AVX2, FMA, F16C) are available.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512(());

// In every method below the token's existence proves the instruction set
// is present (it is only created by `new_unchecked`, whose contract is
// detection), which is the one precondition of the arithmetic intrinsics.

impl Simd for Avx2 {
    const LANES: usize = 8;
    type V = __m256;

    #[inline(always)]
    unsafe fn new_unchecked() -> Self {
        Avx2(())
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_min_ps(a, b) }
    }
    #[inline(always)]
    fn fma(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: FMA is present (token).
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn round(self, a: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }
    #[inline(always)]
    fn pow2i(self, n: __m256) -> __m256 {
        // SAFETY: AVX2 is present (token).
        unsafe {
            let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e))
        }
    }
    #[inline(always)]
    fn select_lt(self, a: __m256, b: __m256, x: __m256, y: __m256) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)) }
    }
    #[inline(always)]
    fn reduce_sum(self, v: __m256) -> f32 {
        // SAFETY: AVX is present (token).
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
        }
    }
    #[inline(always)]
    fn reduce_max(self, v: __m256) -> f32 {
        // SAFETY: AVX is present (token).
        unsafe {
            let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_max_ss(s, _mm_shuffle_ps::<1>(s, s)))
        }
    }
    #[inline(always)]
    fn prefetch(self, p: *const f32) {
        // SAFETY: a prefetch never faults and has no architectural effect,
        // whatever the address; SSE is baseline on x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
    #[inline(always)]
    fn prefetch_l2(self, p: *const f32) {
        // SAFETY: as `prefetch`.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m256 {
        // SAFETY: AVX present (token); 8 readable floats (caller).
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m256) {
        // SAFETY: AVX present (token); 8 writable floats (caller).
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32, v: __m256) {
        // SAFETY: AVX present (token); 8 writable, 32-byte aligned floats
        // (caller).
        unsafe { _mm256_stream_ps(p, v) }
    }
    #[inline(always)]
    fn store_fence(self) {
        // SAFETY: SSE is baseline on x86-64.
        unsafe { _mm_sfence() }
    }
    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> __m256 {
        // SAFETY: F16C present (token); 8 readable u16 (caller).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut u16, v: __m256) {
        // SAFETY: F16C present (token); 8 writable u16 (caller).
        unsafe { _mm_storeu_si128(p.cast(), _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v)) }
    }
    #[inline(always)]
    unsafe fn load_bf16(self, p: *const u16) -> __m256 {
        // SAFETY: AVX2 present (token); 8 readable u16 (caller).
        unsafe {
            let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
        }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut u16, v: __m256) {
        // SAFETY: AVX2 present (token); 8 writable u16 (caller).
        unsafe {
            let bits = _mm256_castps_si256(v);
            let high = _mm256_srli_epi32::<16>(bits);
            let lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
            let biased = _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
            let rounded = _mm256_srli_epi32::<16>(biased);
            let quiet = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
            let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
            let r = _mm256_blendv_epi8(rounded, quiet, nan);
            // Values fit in 16 bits, so the saturating pack is exact; it
            // works per 128-bit half, so gather qwords 0 and 2.
            let packed = _mm256_permute4x64_epi64::<0b00_00_10_00>(_mm256_packus_epi32(r, r));
            _mm_storeu_si128(p.cast(), _mm256_castsi256_si128(packed));
        }
    }

    type I = __m256i;
    type Lut = (__m256, __m256);

    #[inline(always)]
    unsafe fn load_u32(self, p: *const u32) -> __m256i {
        // SAFETY: AVX present (token); 8 readable u32 (caller).
        unsafe { _mm256_loadu_si256(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load_u8_u32(self, p: *const u8) -> __m256i {
        // SAFETY: AVX2 present (token); 8 readable bytes (caller), and
        // `_mm_loadl_epi64` reads exactly 8.
        unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.cast())) }
    }
    #[inline(always)]
    fn splat_u32(self, x: u32) -> __m256i {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_set1_epi32(x as i32) }
    }
    #[inline(always)]
    fn and_u32(self, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX2 is present (token).
        unsafe { _mm256_and_si256(a, b) }
    }
    #[inline(always)]
    fn or_u32(self, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX2 is present (token).
        unsafe { _mm256_or_si256(a, b) }
    }
    #[inline(always)]
    fn shr_u32(self, a: __m256i, n: u32) -> __m256i {
        // SAFETY: AVX2 is present (token); counts >= 32 give 0.
        unsafe { _mm256_srl_epi32(a, _mm_cvtsi32_si128(n as i32)) }
    }
    #[inline(always)]
    fn shl_u32(self, a: __m256i, n: u32) -> __m256i {
        // SAFETY: AVX2 is present (token); counts >= 32 give 0.
        unsafe { _mm256_sll_epi32(a, _mm_cvtsi32_si128(n as i32)) }
    }
    #[inline(always)]
    fn u32_to_f32(self, a: __m256i) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_cvtepi32_ps(a) }
    }
    #[inline(always)]
    fn bits_to_f32(self, a: __m256i) -> __m256 {
        // SAFETY: AVX is present (token).
        unsafe { _mm256_castsi256_ps(a) }
    }
    #[inline(always)]
    fn lut16_new(self, table: &[f32; 16]) -> (__m256, __m256) {
        // SAFETY: AVX present (token); the table holds 16 floats.
        unsafe {
            (
                _mm256_loadu_ps(table.as_ptr()),
                _mm256_loadu_ps(table.as_ptr().add(8)),
            )
        }
    }
    #[inline(always)]
    fn lut16(self, lut: (__m256, __m256), idx: __m256i) -> __m256 {
        // `permutevar8x32` reads the low 3 bits of each index; bit 3
        // (moved to the sign bit) picks the upper half of the table.
        // SAFETY: AVX2 is present (token).
        unsafe {
            let lo = _mm256_permutevar8x32_ps(lut.0, idx);
            let hi = _mm256_permutevar8x32_ps(lut.1, idx);
            _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx)))
        }
    }
    #[inline(always)]
    unsafe fn load_spread8(self, p: *const f32) -> __m256 {
        // SAFETY: AVX present (token); 8 readable floats (caller).
        unsafe { _mm256_set1_ps(*p) }
    }
    #[inline(always)]
    unsafe fn load_fields(self, p: *const u32, bits: u32) -> __m256 {
        // SAFETY: AVX2 present (token); 1 (4-bit) or 2 (8-bit) readable
        // u32 (caller).
        unsafe {
            let (w, counts, mask) = if bits == 4 {
                (
                    _mm256_set1_epi32(*p as i32),
                    _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28),
                    0xF,
                )
            } else {
                (
                    _mm256_setr_epi32(
                        *p as i32,
                        *p as i32,
                        *p as i32,
                        *p as i32,
                        *p.add(1) as i32,
                        *p.add(1) as i32,
                        *p.add(1) as i32,
                        *p.add(1) as i32,
                    ),
                    _mm256_setr_epi32(0, 8, 16, 24, 0, 8, 16, 24),
                    0xFF,
                )
            };
            let f = _mm256_and_si256(_mm256_srlv_epi32(w, counts), _mm256_set1_epi32(mask));
            _mm256_cvtepi32_ps(f)
        }
    }
    #[inline(always)]
    fn round_f16(self, v: __m256) -> __m256 {
        // SAFETY: F16C is present (token).
        unsafe { _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v)) }
    }
    #[inline(always)]
    fn round_bf16(self, v: __m256) -> __m256 {
        // SAFETY: AVX2 is present (token).
        unsafe {
            let bits = _mm256_castps_si256(v);
            let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
            let biased = _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
            _mm256_castsi256_ps(_mm256_and_si256(biased, _mm256_set1_epi32(-65536)))
        }
    }
}

impl Simd for Avx512 {
    const LANES: usize = 16;
    type V = __m512;

    #[inline(always)]
    unsafe fn new_unchecked() -> Self {
        Avx512(())
    }
    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m512, b: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    fn fma(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn round(self, a: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    }
    #[inline(always)]
    fn pow2i(self, n: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe {
            let e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(e))
        }
    }
    #[inline(always)]
    fn select_lt(self, a: __m512, b: __m512, x: __m512, y: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b), y, x) }
    }
    #[inline(always)]
    fn reduce_sum(self, v: __m512) -> f32 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_reduce_add_ps(v) }
    }
    #[inline(always)]
    fn reduce_max(self, v: __m512) -> f32 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_reduce_max_ps(v) }
    }
    #[inline(always)]
    fn prefetch(self, p: *const f32) {
        // SAFETY: a prefetch never faults and has no architectural effect,
        // whatever the address; SSE is baseline on x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
    #[inline(always)]
    fn prefetch_l2(self, p: *const f32) {
        // SAFETY: as `prefetch`.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> __m512 {
        // SAFETY: AVX-512F present (token); 16 readable floats (caller).
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: __m512) {
        // SAFETY: AVX-512F present (token); 16 writable floats (caller).
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32, v: __m512) {
        // SAFETY: AVX-512F present (token); 16 writable, 64-byte aligned
        // floats (caller).
        unsafe { _mm512_stream_ps(p, v) }
    }
    #[inline(always)]
    fn store_fence(self) {
        // SAFETY: SSE is baseline on x86-64.
        unsafe { _mm_sfence() }
    }
    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> __m512 {
        // SAFETY: AVX-512F present (token); 16 readable u16 (caller).
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut u16, v: __m512) {
        // SAFETY: AVX-512F present (token); 16 writable u16 (caller).
        unsafe { _mm256_storeu_si256(p.cast(), _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v)) }
    }
    #[inline(always)]
    unsafe fn load_bf16(self, p: *const u16) -> __m512 {
        // SAFETY: AVX-512F present (token); 16 readable u16 (caller).
        unsafe {
            let w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w))
        }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut u16, v: __m512) {
        // SAFETY: AVX-512F present (token); 16 writable u16 (caller).
        unsafe {
            let bits = _mm512_castps_si512(v);
            let high = _mm512_srli_epi32::<16>(bits);
            let lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
            let biased = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
            let rounded = _mm512_srli_epi32::<16>(biased);
            let quiet = _mm512_or_si512(high, _mm512_set1_epi32(0x40));
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            let r = _mm512_mask_blend_epi32(nan, rounded, quiet);
            _mm256_storeu_si256(p.cast(), _mm512_cvtepi32_epi16(r));
        }
    }

    type I = __m512i;
    type Lut = __m512;

    #[inline(always)]
    unsafe fn load_u32(self, p: *const u32) -> __m512i {
        // SAFETY: AVX-512F present (token); 16 readable u32 (caller).
        unsafe { _mm512_loadu_si512(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load_u8_u32(self, p: *const u8) -> __m512i {
        // SAFETY: AVX-512F present (token); 16 readable bytes (caller).
        unsafe { _mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast())) }
    }
    #[inline(always)]
    fn splat_u32(self, x: u32) -> __m512i {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_set1_epi32(x as i32) }
    }
    #[inline(always)]
    fn and_u32(self, a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_and_si512(a, b) }
    }
    #[inline(always)]
    fn or_u32(self, a: __m512i, b: __m512i) -> __m512i {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_or_si512(a, b) }
    }
    #[inline(always)]
    fn shr_u32(self, a: __m512i, n: u32) -> __m512i {
        // SAFETY: AVX-512F is present (token); counts >= 32 give 0.
        unsafe { _mm512_srl_epi32(a, _mm_cvtsi32_si128(n as i32)) }
    }
    #[inline(always)]
    fn shl_u32(self, a: __m512i, n: u32) -> __m512i {
        // SAFETY: AVX-512F is present (token); counts >= 32 give 0.
        unsafe { _mm512_sll_epi32(a, _mm_cvtsi32_si128(n as i32)) }
    }
    #[inline(always)]
    fn u32_to_f32(self, a: __m512i) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_cvtepi32_ps(a) }
    }
    #[inline(always)]
    fn bits_to_f32(self, a: __m512i) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_castsi512_ps(a) }
    }
    #[inline(always)]
    fn lut16_new(self, table: &[f32; 16]) -> __m512 {
        // SAFETY: AVX-512F present (token); the table holds 16 floats.
        unsafe { _mm512_loadu_ps(table.as_ptr()) }
    }
    #[inline(always)]
    fn lut16(self, lut: __m512, idx: __m512i) -> __m512 {
        // SAFETY: AVX-512F is present (token); `permutexvar` reads the low
        // 4 bits of each index.
        unsafe { _mm512_permutexvar_ps(idx, lut) }
    }
    #[inline(always)]
    unsafe fn load_spread8(self, p: *const f32) -> __m512 {
        // SAFETY: AVX-512F present (token); 16 readable floats (caller).
        unsafe {
            let idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
            _mm512_permutexvar_ps(idx, _mm512_loadu_ps(p))
        }
    }
    #[inline(always)]
    unsafe fn load_fields(self, p: *const u32, bits: u32) -> __m512 {
        // SAFETY: AVX-512F present (token); 2 (4-bit) or 4 (8-bit)
        // readable u32 (caller): the masked load touches no other lane.
        unsafe {
            let (words, idx, counts, mask) = if bits == 4 {
                (
                    _mm512_maskz_loadu_epi32(0x3, p.cast()),
                    _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                    _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28),
                    0xF,
                )
            } else {
                (
                    _mm512_maskz_loadu_epi32(0xF, p.cast()),
                    _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                    _mm512_setr_epi32(0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24),
                    0xFF,
                )
            };
            let w = _mm512_permutexvar_epi32(idx, words);
            let f = _mm512_and_si512(_mm512_srlv_epi32(w, counts), _mm512_set1_epi32(mask));
            _mm512_cvtepi32_ps(f)
        }
    }
    #[inline(always)]
    fn round_f16(self, v: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe { _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v)) }
    }
    #[inline(always)]
    fn round_bf16(self, v: __m512) -> __m512 {
        // SAFETY: AVX-512F is present (token).
        unsafe {
            let bits = _mm512_castps_si512(v);
            let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
            let biased = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
            _mm512_castsi512_ps(_mm512_and_si512(biased, _mm512_set1_epi32(-65536)))
        }
    }
}

mod avx2 {
    crate::cpu::simd::isa_table! {
        token: super::Avx2,
        level: crate::cpu::simd::Level::Avx2,
        gemm: (6, 2),
        dot: (4, 3),
        gemv: 8,
        #[target_feature(enable = "avx2,fma,f16c")]
    }
}

mod avx512 {
    crate::cpu::simd::isa_table! {
        token: super::Avx512,
        level: crate::cpu::simd::Level::Avx512,
        gemm: (8, 2),
        dot: (4, 4),
        gemv: 8,
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    }
}

/// The AVX2 table. Call only when [`avx2_detected`].
pub(super) fn avx2_table() -> super::Kernels {
    avx2::table()
}

/// The AVX-512 table. Call only when [`avx512_detected`].
pub(super) fn avx512_table() -> super::Kernels {
    avx512::table()
}

mod avx2_quant {
    crate::cpu::simd::quant::quant_table! {
        token: super::Avx2,
        level: crate::cpu::simd::Level::Avx2,
        gptq: (2, 2, 4),
        awq: (1, 1, 1),
        nvfp4: (2, 4, 8),
        #[target_feature(enable = "avx2,fma,f16c")]
    }
}

mod avx512_quant {
    crate::cpu::simd::quant::quant_table! {
        token: super::Avx512,
        level: crate::cpu::simd::Level::Avx512,
        gptq: (4, 2, 8),
        awq: (2, 1, 2),
        nvfp4: (4, 4, 8),
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    }
}

/// The AVX2 quantized-matmul table. Call only when [`avx2_detected`].
pub(super) fn avx2_quant_table() -> super::quant::QuantKernels {
    avx2_quant::quant_table()
}

/// The AVX-512 quantized-matmul table. Call only when [`avx512_detected`].
pub(super) fn avx512_quant_table() -> super::quant::QuantKernels {
    avx512_quant::quant_table()
}

/// GPTQ 4-bit GEMV body over 16-column blocks by per-(column, group)
/// lookup tables (see [`super::quant::GptqLutRaw`]): `RND` 1 (f16 x) or 2
/// (bf16 x; 0 would leave W exact, for f32 x): every table entry is `round(s·(q − z))`
/// formed exactly as the per-element paths form it.
///
/// # Safety
/// AVX-512F, AVX2, FMA and F16C are present ([`avx512_detected`]), and `t`
/// satisfies the `# Safety` of [`super::quant::GptqLutRaw`].
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn gptq4_lut_avx512<const RND: u8>(t: &super::quant::GptqLutRaw) {
    // SAFETY: the caller guarantees the features (see above).
    let s = unsafe { Avx512::new_unchecked() };
    let chunks = t.krows / 16;
    let iota = _mm512_setr_ps(
        0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
    );
    // Accumulators and tables of the strip's columns (ncb ≤ 8), in L1;
    // the chunk loop is outside so the word rows stream contiguously.
    let zero = s.splat(0.0);
    let mut acc = [zero; 128];
    let mut tabs = [zero; 128];
    let cols = 16 * t.ncb;
    let mut cur_g = usize::MAX;
    for ch in 0..chunks {
        let g = ch / t.cpg;
        if g != cur_g {
            cur_g = g;
            let srow = t.tab.wrapping_add(2 * g * t.tw);
            let zrow = srow.wrapping_add(t.tw);
            for (c, tc) in tabs.iter_mut().enumerate().take(cols) {
                // SAFETY: g < ceil(chunks / cpg) and c < ncb·16: inside the
                // group's scale and zero rows.
                let (sv, zv) = unsafe { (*srow.add(c), *zrow.add(c)) };
                let w = s.mul(s.sub(iota, s.splat(zv)), s.splat(sv));
                *tc = match RND {
                    1 => s.round_f16(w),
                    2 => s.round_bf16(w),
                    _ => w,
                };
            }
        }
        // x for this chunk: [j][w] = x[128·ch + 8w + j].
        let xb = t.xp.wrapping_add(128 * ch);
        // SAFETY: 128·ch + 128 ≤ krows·8 floats of xp are readable.
        let mut xs = [zero; 8];
        for (j, xj) in xs.iter_mut().enumerate() {
            // SAFETY: see above.
            *xj = unsafe { s.load(xb.add(16 * j)) };
        }
        for cb in 0..t.ncb {
            let col0 = cb * 16;
            // 16 word rows × 16 columns, transposed so that vector c holds
            // column col0 + c, lane w = word row 16·ch + w.
            let base = t.qw.wrapping_add(16 * ch * t.qw_rs + col0);
            // SAFETY: word rows 16·ch + r < krows, columns col0..col0 + 16
            // are readable (the caller's bounds).
            let mut r = [_mm512_setzero_si512(); 16];
            for (i, ri) in r.iter_mut().enumerate() {
                // SAFETY: see above.
                *ri = unsafe { _mm512_loadu_si512(base.add(i * t.qw_rs) as *const _) };
            }
            let v = transpose16(&r);
            for c in 0..16 {
                let mut a = acc[col0 + c];
                let tc = tabs[col0 + c];
                for (j, &xj) in xs.iter().enumerate() {
                    // permutexvar reads the low 4 bits of each index lane:
                    // field j of word row 16·ch + w.
                    let wv = _mm512_permutexvar_ps(s.shr_u32(v[c], 4 * j as u32), tc);
                    a = s.fma(wv, xj, a);
                }
                acc[col0 + c] = a;
            }
        }
    }
    for (c, a) in acc.iter().enumerate().take(cols) {
        // SAFETY: c < ncb·16 output floats are writable.
        unsafe { *t.out.add(c) = _mm512_reduce_add_ps(*a) };
    }
}

/// Transposes 16 rows of 16 u32: lane w of result c is lane c of row w.
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose16(r: &[__m512i; 16]) -> [__m512i; 16] {
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // u[4a + b]: 128-bit lane L holds rows 4a..4a+4 of column 4L + b.
    let mut u = [_mm512_setzero_si512(); 16];
    for a in 0..4 {
        for h in 0..2 {
            let (lo, hi) = (t[4 * a + h], t[4 * a + 2 + h]);
            u[4 * a + 2 * h] = _mm512_unpacklo_epi64(lo, hi);
            u[4 * a + 2 * h + 1] = _mm512_unpackhi_epi64(lo, hi);
        }
    }
    let mut out = [_mm512_setzero_si512(); 16];
    for b in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0x44>(u[b], u[4 + b]);
        let v1 = _mm512_shuffle_i32x4::<0xEE>(u[b], u[4 + b]);
        let v2 = _mm512_shuffle_i32x4::<0x44>(u[8 + b], u[12 + b]);
        let v3 = _mm512_shuffle_i32x4::<0xEE>(u[8 + b], u[12 + b]);
        out[b] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
        out[4 + b] = _mm512_shuffle_i32x4::<0xDD>(v0, v2);
        out[8 + b] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
        out[12 + b] = _mm512_shuffle_i32x4::<0xDD>(v1, v3);
    }
    out
}
