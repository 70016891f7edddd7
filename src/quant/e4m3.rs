//! FP8 E4M3FN (`s eeee mmm`, bias 7): the NVFP4 block-scale byte.
//!
//! e = 0 encodes subnormals m·2⁻⁹; otherwise 2^(e−7)·(1 + m/8). The largest
//! finite value is 448 (0x7E); 0x7F and 0xFF are NaN; there is no infinity.
//! 0x80 is −0. Every byte is checked against the spec's table in
//! tests/quant_formats.rs.

/// The largest finite magnitude (0x7E).
pub const MAX: f32 = 448.0;

/// True for the two NaN bytes, 0x7F and 0xFF.
pub fn is_nan(byte: u8) -> bool {
    byte & 0x7F == 0x7F
}

/// Decodes one E4M3FN byte exactly (every value is representable in f32).
pub fn decode(byte: u8) -> f32 {
    let sign = if byte & 0x80 != 0 { -1.0f32 } else { 1.0 };
    let exponent = ((byte >> 3) & 0x0F) as i32;
    let mantissa = (byte & 0x07) as f32;
    if is_nan(byte) {
        return f32::NAN;
    }
    if exponent == 0 {
        sign * mantissa * (2.0f32).powi(-9)
    } else {
        sign * (2.0f32).powi(exponent - 7) * (1.0 + mantissa / 8.0)
    }
}

/// Encodes an f32 as E4M3FN: clamp to ±448 first (so ±Inf and anything
/// past 464 saturate instead of becoming NaN, as torch ≥ 2.12 does), then
/// round to nearest, ties to the even code. The sign is kept, so a tiny
/// negative becomes 0x80 (−0). NaN encodes as 0x7F.
pub fn encode(value: f32) -> u8 {
    if value.is_nan() {
        return 0x7F;
    }
    let sign: u8 = if value.is_sign_negative() { 0x80 } else { 0 };
    let magnitude = value.abs().min(MAX);
    // Search the 127 non-negative finite codes for the nearest value; ties go
    // to the even code (mantissa LSB 0). Codes are monotonic in value, so a
    // tie is between two adjacent codes, one of them even; near a tie both
    // are within a factor of 2 of `magnitude`, so the f32 differences are
    // exact (Sterbenz) and a tie found here is a true tie. Scales are encoded
    // once per block at quantization time, so clarity wins over speed.
    let mut best = 0u8;
    let mut best_err = f32::INFINITY;
    for code in 0u8..=0x7E {
        let err = (decode(code) - magnitude).abs();
        if err < best_err || (err == best_err && code & 1 == 0) {
            best = code;
            best_err = err;
        }
    }
    sign | best
}
