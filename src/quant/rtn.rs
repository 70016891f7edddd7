//! Round-to-nearest integer quantization of one group (GPTQ and AWQ).
//!
//! The range is `[min(0, min w), max(0, max w)]` (GPTQ's quantizer; AWQ's
//! producers use `[min w, max w]`, which leaves the zero point out of range
//! for a one-signed group). Scale `s = (max − min) / (2^b − 1)` (symmetric:
//! `2·max|w| / (2^b − 1)` with `z = 2^(b−1)`); asymmetric `z = clamp(round(−min
//! / s), 0, 2^b − 1)`; codes `q = clamp(round(w / s) + z, 0, 2^b − 1)`, all
//! rounding half to even. An all-zero group uses the range [−1, 1], like GPTQ.
//!
//! The scale is rounded UP to the storage dtype (not to nearest) and z and q
//! are computed from the stored scale. A scale that is never smaller than the
//! exact one keeps the whole range on the grid, which gives the guarantee the
//! tests check: `|w − s·(q − z)| ≤ s/2` for every element.

use half::{bf16, f16};

use crate::dtype::DType;
use crate::error::{Error, Result};

/// The stored scale and zero point of one group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupParams {
    /// Exactly representable in the scale dtype.
    pub scale: f32,
    pub zero: u8,
}

/// The smallest value of `dtype` that is ≥ `v` (v > 0), or `None` when it
/// would be infinite.
fn round_up(dtype: DType, v: f64) -> Option<f32> {
    let up = match dtype {
        DType::F16 => {
            let mut h = f16::from_f64(v);
            if h.to_f64() < v {
                h = f16::from_bits(h.to_bits() + 1);
            }
            h.to_f32()
        }
        DType::BF16 => {
            let mut h = bf16::from_f64(v);
            if h.to_f64() < v {
                h = bf16::from_bits(h.to_bits() + 1);
            }
            h.to_f32()
        }
        _ => {
            let mut f = v as f32;
            if f64::from(f) < v {
                f = f32::from_bits(f.to_bits() + 1);
            }
            f
        }
    };
    up.is_finite().then_some(up)
}

/// Scale and zero point of a group of (finite) `values`.
pub(crate) fn group_params(
    op: &'static str,
    values: impl Iterator<Item = f32>,
    bits: u32,
    sym: bool,
    scale_dtype: DType,
) -> Result<GroupParams> {
    let maxq = f64::from((1u32 << bits) - 1);
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for v in values {
        lo = lo.min(f64::from(v));
        hi = hi.max(f64::from(v));
    }
    if sym {
        hi = hi.max(-lo);
        lo = -hi;
    }
    if lo == 0.0 && hi == 0.0 {
        (lo, hi) = (-1.0, 1.0);
    }
    let scale = round_up(scale_dtype, (hi - lo) / maxq).ok_or_else(|| {
        Error::invalid(
            op,
            "weight",
            format!(
                "a group spanning [{lo}, {hi}] needs a scale beyond the range of {scale_dtype}"
            ),
        )
    })?;
    let zero = if sym {
        1u32 << (bits - 1)
    } else {
        (-lo / f64::from(scale)).round_ties_even().clamp(0.0, maxq) as u32
    };
    Ok(GroupParams {
        scale,
        zero: zero as u8,
    })
}

/// The code of `w` in a group: `clamp(round(w / s) + z, 0, 2^b − 1)`. The
/// quotient is formed in f64 so that f32 rounding cannot move it across a
/// half-integer.
pub(crate) fn code(w: f32, params: GroupParams, bits: u32) -> u8 {
    let maxq = f64::from((1u32 << bits) - 1);
    let q = (f64::from(w) / f64::from(params.scale)).round_ties_even() + f64::from(params.zero);
    q.clamp(0.0, maxq) as u8
}
