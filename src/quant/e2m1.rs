//! FP4 E2M1: the NVFP4 element. Bit 3 is the sign; bits 0–2 index the
//! magnitudes `[0, 0.5, 1, 1.5, 2, 3, 4, 6]`. Code 8 is −0. There is no Inf
//! or NaN.

/// The magnitude of each 3-bit code.
pub const MAGNITUDES: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];

/// The largest magnitude (encode saturates to it).
pub const MAX: f32 = 6.0;

/// Decodes the low 4 bits of `code` (higher bits are ignored). Code 8 is −0.
pub fn decode(code: u8) -> f32 {
    let magnitude = MAGNITUDES[usize::from(code & 0x7)];
    if code & 0x8 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// Encodes `value` as a 4-bit code: round half to even on the grid (ties
/// 0.25→0, 0.75→1, 1.25→1, 1.75→2, 2.5→2, 3.5→4, 5→4), saturating above 5
/// to ±6. The sign is taken before rounding, so a tiny negative becomes
/// code 8 (−0), as the producers do. NaN encodes as +0 (quantizers reject
/// NaN weights before they get here).
pub fn encode(value: f32) -> u8 {
    if value.is_nan() {
        return 0;
    }
    let sign = if value.is_sign_negative() { 0x8 } else { 0 };
    let a = value.abs();
    // Upper bound of each code's rounding interval, and whether the bound
    // itself (a tie) belongs to this code: ties go to the code whose index is
    // even, i.e. to the lower code when it is even.
    const BOUNDS: [(f32, bool); 7] = [
        (0.25, true),  // 0 | 0.5: tie → code 0
        (0.75, false), // 0.5 | 1: tie → code 2
        (1.25, true),  // 1 | 1.5: tie → code 2
        (1.75, false), // 1.5 | 2: tie → code 4
        (2.5, true),   // 2 | 3: tie → code 4
        (3.5, false),  // 3 | 4: tie → code 6
        (5.0, true),   // 4 | 6: tie → code 6
    ];
    let mut code = 7u8;
    for (i, &(bound, tie_here)) in BOUNDS.iter().enumerate() {
        if a < bound || (a == bound && tie_here) {
            code = i as u8;
            break;
        }
    }
    sign | code
}
