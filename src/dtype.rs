//! Element types. The dtype is a run-time value (not a type parameter) so that
//! the [`crate::Backend`] trait stays object-safe and an engine can pick
//! precisions from a config file.

use std::fmt;
use std::str::FromStr;

use half::{bf16, f16};

/// Element type of a tensor.
///
/// `F32`, `F16` and `BF16` are activation types: every op accepts them and
/// its output has the activation dtype. `U8`, `I32` and `F8E4M3` are storage
/// types for packed quantized weights and integer metadata (sequence offsets,
/// block tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F16,
    BF16,
    U8,
    I32,
    /// FP8 E4M3FN bytes (NVFP4 block scales), kept as raw bytes.
    F8E4M3,
}

impl DType {
    /// Every dtype, in a stable order (for tables and tests).
    pub const ALL: [DType; 6] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::U8,
        DType::I32,
        DType::F8E4M3,
    ];

    /// The activation dtypes every op is defined for.
    pub const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

    pub const fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::U8 | DType::F8E4M3 => 1,
        }
    }

    /// True for the activation dtypes (f32, f16, bf16).
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::F8E4M3 => "f8e4m3",
        }
    }

    /// Unit round-off of the dtype (half the distance from 1.0 to the next
    /// representable value); 0 for integer types.
    pub const fn unit_roundoff(self) -> f64 {
        match self {
            DType::F32 => 5.960_464_477_539_063e-8, // 2^-24
            DType::F16 => 4.882_812_5e-4,           // 2^-11
            DType::BF16 => 3.906_25e-3,             // 2^-8
            DType::F8E4M3 => 0.0625,                // 2^-4
            DType::U8 | DType::I32 => 0.0,
        }
    }

    /// Rounds an f64 to this activation dtype (round to nearest even) and
    /// back. Storage dtypes return the value unchanged (E4M3 rounding, with its
    /// saturation rule, lives in `quant::e4m3`).
    pub fn round(self, value: f64) -> f64 {
        match self {
            DType::F32 => value as f32 as f64,
            DType::F16 => f16_from_f64(value).to_f64(),
            DType::BF16 => bf16_from_f64(value).to_f64(),
            DType::U8 | DType::I32 | DType::F8E4M3 => value,
        }
    }

    /// The safetensors dtype with the same bytes.
    pub fn to_safetensors(self) -> safetensors::Dtype {
        match self {
            DType::F32 => safetensors::Dtype::F32,
            DType::F16 => safetensors::Dtype::F16,
            DType::BF16 => safetensors::Dtype::BF16,
            DType::U8 => safetensors::Dtype::U8,
            DType::I32 => safetensors::Dtype::I32,
            DType::F8E4M3 => safetensors::Dtype::F8_E4M3,
        }
    }

    /// The radiant dtype for a safetensors dtype, if radiant has one.
    pub fn from_safetensors(dtype: safetensors::Dtype) -> Option<DType> {
        Some(match dtype {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::U8 => DType::U8,
            safetensors::Dtype::I32 => DType::I32,
            safetensors::Dtype::F8_E4M3 => DType::F8E4M3,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(DType::F32),
            "f16" | "float16" | "half" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "u8" | "uint8" => Ok(DType::U8),
            "i32" | "int32" => Ok(DType::I32),
            "f8e4m3" | "f8_e4m3" | "float8_e4m3fn" => Ok(DType::F8E4M3),
            other => Err(format!(
                "unknown dtype `{other}` (expected f32, f16, bf16, u8, i32 or f8e4m3)"
            )),
        }
    }
}

/// `value` rounded to f32 with round-to-odd: the nearest f32 toward zero,
/// with its last bit set when inexact. Rounding that result to any format
/// with at most 22 significant bits (f16, bf16) equals rounding `value`
/// once, so f64 → f16/bf16 never double-rounds.
fn f32_round_to_odd(value: f64) -> f32 {
    let nearest = value as f32;
    if value.is_nan() || nearest as f64 == value {
        return nearest;
    }
    // Step toward zero if rounding went away from zero (or overflowed).
    let truncated = if (nearest as f64).abs() > value.abs() {
        if nearest.is_infinite() {
            f32::MAX.copysign(nearest)
        } else {
            f32::from_bits(nearest.to_bits() - 1)
        }
    } else {
        nearest
    };
    f32::from_bits(truncated.to_bits() | 1)
}

/// f64 → bf16, rounded once to nearest even. (`half::bf16::from_f64`
/// goes through f32 with round-to-nearest and can double-round.)
pub fn bf16_from_f64(value: f64) -> bf16 {
    bf16::from_f32(f32_round_to_odd(value))
}

/// f64 → f16, rounded once to nearest even.
pub fn f16_from_f64(value: f64) -> f16 {
    f16::from_f32(f32_round_to_odd(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f64_to_half_rounds_once() {
        // Just above the bf16 tie 1 + 2^-8: must round up, once.
        let above_tie = 1.0 + 2f64.powi(-8) + 2f64.powi(-40);
        assert_eq!(bf16_from_f64(above_tie).to_f64(), 1.0 + 2f64.powi(-7));
        let above_tie = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        assert_eq!(f16_from_f64(above_tie).to_f64(), 1.0 + 2f64.powi(-10));
        // Exact ties go to even; exact values are kept; signs and specials.
        assert_eq!(bf16_from_f64(1.0 + 2f64.powi(-8)).to_f64(), 1.0);
        assert_eq!(bf16_from_f64(-3.0).to_f64(), -3.0);
        assert!(bf16_from_f64(f64::NAN).is_nan());
        assert_eq!(bf16_from_f64(1e300).to_f64(), f64::INFINITY);
        assert_eq!(f16_from_f64(1e-300).to_f64(), 0.0);
        assert!(f16_from_f64(-1e-300).is_sign_negative());
        // Against exhaustive f32 inputs near 1 (f32 → bf16 is single rounding).
        for bits in 0x3F80_0000u32..0x3F80_4000 {
            let v = f32::from_bits(bits);
            assert_eq!(bf16_from_f64(v as f64), bf16::from_f32(v));
            assert_eq!(f16_from_f64(v as f64), f16::from_f32(v));
        }
    }
}
