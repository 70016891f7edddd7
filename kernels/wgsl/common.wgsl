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

// Largest finite f32 magnitude used as "minus infinity" for running maxima
// (a literal infinity cannot be written in WGSL).
const NEG_BIG: f32 = -3.0e38;
// Bits of f32 -inf (written to lse for rows with no visible key).
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
// sinh/cosh, which is inf/inf = NaN past |x| ~ 89). Absolute error ~1e-7.
fn tanh_safe(x: f32) -> f32 {
    let t = exp(-2.0 * abs(x));
    let r = (1.0 - t) / (1.0 + t);
    return select(r, -r, x < 0.0);
}
