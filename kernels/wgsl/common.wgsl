// common.wgsl — helpers shared by every radiant WGSL kernel. Not a kernel:
// the build (build/wgsl.rs) and the backend (src/wgpu/pipelines.rs) put it
// after a variant's `const` prelude and before the kernel's own source.
//
// Storage: every activation buffer is bound as array<u32>. f32 is one
// element per word; f16 and bf16 pack two elements per word, element 2i in
// the low half (little-endian byte order). Kernels index in elements from the
// start of the bound window, so a view may start at any element — odd 16-bit
// offsets included — with no 256-byte-aligned binding offset. `DT` (from each
// kernel's prelude) selects the dtype: 0 = f32, 1 = f16, 2 = bf16.
//
// Conversions are software: decoding is exact, encoding rounds to nearest
// even with IEEE overflow to ±inf, so results never depend on the driver's
// pack2x16float rounding or f16 subnormal flushing, and no shader-f16 feature
// is needed. 16-bit outputs are written with two atomics (clear the half,
// then set it), so threads writing the two halves of one word never lose each
// other's value and neighbouring elements outside the view stay untouched.

const DT_F32: u32 = 0u;
const DT_F16: u32 = 1u;
const DT_BF16: u32 = 2u;

// Bits of f32 -inf (a literal infinity cannot be written in WGSL): the
// initial running max, and the lse of rows with no visible key.
const NEG_INF_BITS: u32 = 0xff800000u;

// Word holding element i of a buffer of dtype dt (an activation dtype).
fn widx_dt(dt: u32, i: u32) -> u32 {
    if (dt == DT_F32) {
        return i;
    }
    return i >> 1u;
}

// Word holding element i of an activation buffer.
fn widx(i: u32) -> u32 {
    return widx_dt(DT, i);
}

// Byte i of a byte buffer bound as array<u32>, given its word (i >> 2).
fn byte_of(word: u32, i: u32) -> u32 {
    return (word >> ((i & 3u) << 3u)) & 0xffu;
}

fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // Zero or subnormal: m · 2^-24, exact in f32.
        let mag = f32(m) * 5.9604644775390625e-8;
        return select(mag, -mag, sign != 0u);
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// f32 -> f16 bits, round to nearest even, overflow to inf, NaN stays NaN.
fn f32_to_f16(v: f32) -> u32 {
    let x = bitcast<u32>(v);
    let sign = (x >> 16u) & 0x8000u;
    let ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) {
        return sign | 0x7e00u;
    }
    if (ax >= 0x477ff000u) {
        // >= 65520 rounds to inf.
        return sign | 0x7c00u;
    }
    if (ax >= 0x38800000u) {
        // Normal f16: rebias the exponent (127 - 15) and round 13 bits off.
        let r = ax - 0x38000000u;
        return sign | ((r + 0x0fffu + ((r >> 13u) & 1u)) >> 13u);
    }
    if (ax < 0x33000000u) {
        // Below 2^-25 (half the smallest subnormal; the tie goes to 0).
        return sign;
    }
    // Subnormal f16: count of 2^-24 units = m · 2^(e - 126), m with its
    // implicit bit; e in 102..=112, so the shift is 14..=24.
    let e = ax >> 23u;
    let m = (ax & 0x7fffffu) | 0x800000u;
    let shift = 126u - e;
    let q = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    var r = q;
    if (rem > half || (rem == half && (q & 1u) == 1u)) {
        r = q + 1u;
    }
    return sign | r;
}

// f32 -> bf16 bits, round to nearest even, NaN stays NaN (quieted).
fn f32_to_bf16(v: f32) -> u32 {
    let x = bitcast<u32>(v);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return ((x >> 16u) & 0xffffu) | 0x40u;
    }
    return ((x + 0x7fffu + ((x >> 16u) & 1u)) >> 16u) & 0xffffu;
}

// Element i of a buffer of dtype dt, given the word holding it.
fn decode_dt(dt: u32, word: u32, i: u32) -> f32 {
    if (dt == DT_F32) {
        return bitcast<f32>(word);
    }
    let bits = (word >> ((i & 1u) << 4u)) & 0xffffu;
    if (dt == DT_F16) {
        return f16_to_f32(bits);
    }
    return bitcast<f32>(bits << 16u);
}

// Element i of an activation buffer, given the word holding it.
fn decode(word: u32, i: u32) -> f32 {
    return decode_dt(DT, word, i);
}

// The 16 storage bits of v in the 16-bit dtype DT.
fn encode16(v: f32) -> u32 {
    if (DT == DT_F16) {
        return f32_to_f16(v);
    }
    return f32_to_bf16(v);
}

// v rounded to the storage dtype (what a store then a load would give).
fn round_dt(v: f32) -> f32 {
    if (DT == DT_F32) {
        return v;
    }
    let bits = encode16(v);
    if (DT == DT_F16) {
        return f16_to_f32(bits);
    }
    return bitcast<f32>(bits << 16u);
}

// tanh without overflow for large |x| (some drivers compute tanh as
// sinh/cosh, which is inf/inf = NaN past |x| ~ 89), and without the
// cancellation of (1 − t)/(1 + t) near 0 (it returned 0 for |x| < 3e-8, so a
// large softcap flattened every score): below 1/8 the odd Taylor polynomial
// to x⁷ (truncation < 2e-9 relative). Absolute error ~1e-7.
fn tanh_safe(x: f32) -> f32 {
    let ax = abs(x);
    if (ax < 0.125) {
        let x2 = x * x;
        return x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
    }
    let t = exp(-2.0 * ax);
    let r = (1.0 - t) / (1.0 + t);
    return select(r, -r, x < 0.0);
}

// Non-finite tests on the bits: WGSL lets a compiler assume floats are
// finite, so `x != x` or comparisons with infinities are not reliable.
const NAN_BITS: u32 = 0x7fc00000u;

// NaN or +inf: a score that makes a softmax row undefined (NaN).
fn is_nan_or_pos_inf(x: f32) -> bool {
    let b = bitcast<u32>(x);
    return (b & 0x7fffffffu) > 0x7f800000u || b == 0x7f800000u;
}

fn is_neg_inf(x: f32) -> bool {
    return bitcast<u32>(x) == NEG_INF_BITS;
}

// rms_norm's row scale: y = ldexp(x, shift) · inv · (w + offset).
struct RmsRowScale {
    shift: i32,
    inv: f32,
}

// Whether a row's f32 sum of squares lost the row's scale: it overflowed,
// or it is so small that its squares may have underflowed while eps is too
// small to dominate. A NaN sum is neither (the row is NaN).
fn rms_needs_rescale(sum_sq: f32, eps: f32) -> bool {
    let b = bitcast<u32>(sum_sq);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return false;
    }
    return b == 0x7f800000u || (sum_sq < ldexp(1.0, -100) && eps < ldexp(1.0, -70));
}

// The scale of a row whose sum lost its scale, from the row's largest |x|
// (`amax`) and the sum of squares of the row scaled by 2^-exponent(amax),
// computed by the caller with `rms_rescale_shift` (as LAPACK's nrm2).
fn rms_rescale_shift(amax: f32) -> i32 {
    return -frexp(amax).exp;
}

fn rms_rescaled(plain: RmsRowScale, amax: f32, scaled_sum_sq: f32, hidden: u32, eps: f32) -> RmsRowScale {
    if (!(amax > 0.0) || is_nan_or_pos_inf(amax)) {
        return plain; // all zero, or ±inf (its element is NaN)
    }
    let k = rms_rescale_shift(amax);
    let t = ldexp(eps, 2 * k); // eps in the scaled units
    if (is_nan_or_pos_inf(t)) {
        return RmsRowScale(0, 1.0 / sqrt(eps)); // mean(x²) is negligible
    }
    return RmsRowScale(k, 1.0 / sqrt(scaled_sum_sq / f32(hidden) + t));
}
