//! FP8 E4M3FN (`s eeee mmm`, bias 7): the NVFP4 block-scale byte.
//!
//! e = 0 encodes subnormals m·2⁻⁹; otherwise 2^(e−7)·(1 + m/8). The largest
//! finite value is 448 (0x7E); 0x7F and 0xFF are NaN; there is no infinity.

/// Decodes one E4M3FN byte exactly (every value is representable in f32).
pub fn decode(byte: u8) -> f32 {
    let sign = if byte & 0x80 != 0 { -1.0f32 } else { 1.0 };
    let exponent = ((byte >> 3) & 0x0F) as i32;
    let mantissa = (byte & 0x07) as f32;
    if exponent == 0x0F && byte & 0x07 == 0x07 {
        return f32::NAN;
    }
    if exponent == 0 {
        sign * mantissa * (2.0f32).powi(-9)
    } else {
        sign * (2.0f32).powi(exponent - 7) * (1.0 + mantissa / 8.0)
    }
}

/// Encodes an f32 as E4M3FN: clamp to ±448, then round to nearest even.
/// NaN encodes as 0x7F.
pub fn encode(value: f32) -> u8 {
    if value.is_nan() {
        return 0x7F;
    }
    let sign: u8 = if value.is_sign_negative() { 0x80 } else { 0 };
    let magnitude = value.abs().min(448.0);
    // Search the 127 non-negative finite codes for the nearest value; ties go
    // to the even code (mantissa LSB 0). Scales are encoded once per block at
    // quantization time, so clarity wins over speed here.
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
