//! The portable level: 8 f32 lanes as a plain array. LLVM vectorizes each
//! lane loop for the baseline target (two SSE2 registers on x86-64, two NEON
//! registers on aarch64, where `mul_add` becomes a fused `fmla`).

use half::{bf16, f16};

use super::Simd;

/// The portable instruction set (always available).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

type V8 = [f32; 8];

#[inline(always)]
fn map2(a: V8, b: V8, f: impl Fn(f32, f32) -> f32) -> V8 {
    std::array::from_fn(|i| f(a[i], b[i]))
}

impl Simd for Portable {
    const LANES: usize = 8;
    type V = V8;

    #[inline(always)]
    unsafe fn new_unchecked() -> Self {
        Portable
    }
    #[inline(always)]
    fn splat(self, x: f32) -> V8 {
        [x; 8]
    }
    #[inline(always)]
    fn add(self, a: V8, b: V8) -> V8 {
        map2(a, b, |x, y| x + y)
    }
    #[inline(always)]
    fn sub(self, a: V8, b: V8) -> V8 {
        map2(a, b, |x, y| x - y)
    }
    #[inline(always)]
    fn mul(self, a: V8, b: V8) -> V8 {
        map2(a, b, |x, y| x * y)
    }
    #[inline(always)]
    fn div(self, a: V8, b: V8) -> V8 {
        map2(a, b, |x, y| x / y)
    }
    #[inline(always)]
    fn max(self, a: V8, b: V8) -> V8 {
        map2(a, b, |x, y| if x > y { x } else { y })
    }
    #[inline(always)]
    fn min(self, a: V8, b: V8) -> V8 {
        map2(a, b, |x, y| if x < y { x } else { y })
    }
    #[inline(always)]
    fn fma(self, a: V8, b: V8, c: V8) -> V8 {
        // FMA is baseline on aarch64; on x86-64 baseline `mul_add` would be
        // a libm call, so multiply and add separately there.
        #[cfg(target_arch = "aarch64")]
        return std::array::from_fn(|i| a[i].mul_add(b[i], c[i]));
        #[cfg(not(target_arch = "aarch64"))]
        return std::array::from_fn(|i| a[i] * b[i] + c[i]);
    }
    #[inline(always)]
    fn round(self, a: V8) -> V8 {
        a.map(f32::round_ties_even)
    }
    #[inline(always)]
    fn pow2i(self, n: V8) -> V8 {
        n.map(|n| f32::from_bits(((n as i32 + 127) as u32) << 23))
    }
    #[inline(always)]
    fn select_lt(self, a: V8, b: V8, x: V8, y: V8) -> V8 {
        std::array::from_fn(|i| if a[i] < b[i] { x[i] } else { y[i] })
    }
    #[inline(always)]
    fn reduce_sum(self, v: V8) -> f32 {
        ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
    }
    #[inline(always)]
    fn reduce_max(self, v: V8) -> f32 {
        v.into_iter().fold(f32::NEG_INFINITY, f32::max)
    }
    #[inline(always)]
    fn prefetch(self, _p: *const f32) {}
    #[inline(always)]
    fn prefetch_l2(self, _p: *const f32) {}
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> V8 {
        // SAFETY: the caller guarantees 8 readable floats.
        unsafe { p.cast::<V8>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: V8) {
        // SAFETY: the caller guarantees 8 writable floats.
        unsafe { p.cast::<V8>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32, v: V8) {
        // SAFETY: forwarded precondition (a plain store).
        unsafe { self.store(p, v) }
    }
    #[inline(always)]
    fn store_fence(self) {}
    #[inline(always)]
    unsafe fn load_f16(self, p: *const u16) -> V8 {
        // SAFETY: the caller guarantees 8 readable u16.
        let bits = unsafe { p.cast::<[u16; 8]>().read_unaligned() };
        bits.map(|b| f16::from_bits(b).to_f32())
    }
    #[inline(always)]
    unsafe fn store_f16(self, p: *mut u16, v: V8) {
        // SAFETY: the caller guarantees 8 writable u16.
        unsafe {
            p.cast::<[u16; 8]>()
                .write_unaligned(v.map(|x| f16::from_f32(x).to_bits()))
        }
    }
    #[inline(always)]
    unsafe fn load_bf16(self, p: *const u16) -> V8 {
        // SAFETY: the caller guarantees 8 readable u16.
        let bits = unsafe { p.cast::<[u16; 8]>().read_unaligned() };
        bits.map(|b| f32::from_bits((b as u32) << 16))
    }
    #[inline(always)]
    unsafe fn store_bf16(self, p: *mut u16, v: V8) {
        // SAFETY: the caller guarantees 8 writable u16.
        unsafe {
            p.cast::<[u16; 8]>()
                .write_unaligned(v.map(|x| bf16::from_f32(x).to_bits()))
        }
    }

    type I = [u32; 8];
    type Lut = [f32; 16];

    #[inline(always)]
    unsafe fn load_u32(self, p: *const u32) -> [u32; 8] {
        // SAFETY: the caller guarantees 8 readable u32.
        unsafe { p.cast::<[u32; 8]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn load_u8_u32(self, p: *const u8) -> [u32; 8] {
        // SAFETY: the caller guarantees 8 readable bytes.
        let bytes = unsafe { p.cast::<[u8; 8]>().read_unaligned() };
        bytes.map(u32::from)
    }
    #[inline(always)]
    fn splat_u32(self, x: u32) -> [u32; 8] {
        [x; 8]
    }
    #[inline(always)]
    fn and_u32(self, a: [u32; 8], b: [u32; 8]) -> [u32; 8] {
        std::array::from_fn(|i| a[i] & b[i])
    }
    #[inline(always)]
    fn or_u32(self, a: [u32; 8], b: [u32; 8]) -> [u32; 8] {
        std::array::from_fn(|i| a[i] | b[i])
    }
    #[inline(always)]
    fn shr_u32(self, a: [u32; 8], n: u32) -> [u32; 8] {
        a.map(|x| x.checked_shr(n).unwrap_or(0))
    }
    #[inline(always)]
    fn shl_u32(self, a: [u32; 8], n: u32) -> [u32; 8] {
        a.map(|x| x.checked_shl(n).unwrap_or(0))
    }
    #[inline(always)]
    fn u32_to_f32(self, a: [u32; 8]) -> V8 {
        a.map(|x| x as i32 as f32)
    }
    #[inline(always)]
    fn bits_to_f32(self, a: [u32; 8]) -> V8 {
        a.map(f32::from_bits)
    }
    #[inline(always)]
    fn lut16_new(self, table: &[f32; 16]) -> [f32; 16] {
        *table
    }
    #[inline(always)]
    fn lut16(self, lut: [f32; 16], idx: [u32; 8]) -> V8 {
        idx.map(|i| lut[(i & 15) as usize])
    }
    #[inline(always)]
    unsafe fn load_spread8(self, p: *const f32) -> V8 {
        // SAFETY: the caller guarantees 8 readable floats.
        [unsafe { *p }; 8]
    }
    #[inline(always)]
    unsafe fn load_fields(self, p: *const u32, bits: u32) -> V8 {
        let per = (32 / bits) as usize;
        let mask = (1u32 << bits) - 1;
        std::array::from_fn(|l| {
            // SAFETY: l / per < 8·bits/32 words, readable (caller).
            let word = unsafe { *p.add(l / per) };
            ((word >> (bits * (l % per) as u32)) & mask) as f32
        })
    }
    #[inline(always)]
    fn round_f16(self, v: V8) -> V8 {
        v.map(|x| f16::from_f32(x).to_f32())
    }
    #[inline(always)]
    fn round_bf16(self, v: V8) -> V8 {
        v.map(|x| bf16::from_f32(x).to_f32())
    }
}

mod entries {
    crate::cpu::simd::isa_table! {
        token: super::Portable,
        level: crate::cpu::simd::Level::Portable,
        gemm: (4, 2),
        dot: (2, 4),
        gemv: 4,
    }
}

/// The portable table (always available).
pub(super) fn table() -> super::Kernels {
    entries::table()
}

mod quant_entries {
    crate::cpu::simd::quant::quant_table! {
        token: super::Portable,
        level: crate::cpu::simd::Level::Portable,
        gptq: (2, 2, 4),
        awq: (1, 1, 1),
        nvfp4: (2, 4, 4),
    }
}

/// The portable quantized-matmul table (always available).
pub(super) fn quant_table() -> super::quant::QuantKernels {
    quant_entries::quant_table()
}
