//! Tolerances, in one place, per (op, dtype), and the comparison every test,
//! `radiant check` and `radiant replay` use.
//!
//! An output passes when
//! * no element is NaN (NaN never passes, even against a NaN reference),
//! * infinite reference elements are matched exactly (attention's lse is −inf
//!   for rows with no visible key),
//! * the norm-wise relative error `‖out − ref‖₂ / ‖ref‖₂ ≤ rel_l2`, and
//! * the largest element error `max|out − ref| ≤ max_abs · max(1, max|ref|)`.
//!
//! The reference is the f64 evaluation (unrounded). The bounds come from the
//! error analysis in each `ops/<op>.rs`: the output rounding (unit roundoff u
//! of the dtype: 2⁻²⁴, 2⁻¹¹, 2⁻⁸) dominates for f16/bf16; f32 accumulation
//! over long reductions dominates for f32; flash-style attention may round
//! probabilities to the activation dtype before `P·V`, which roughly doubles
//! the f16/bf16 error.

use crate::dtype::DType;
use crate::ops::OpKind;

/// Allowed error for one output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Bound on `‖out − ref‖₂ / ‖ref‖₂`.
    pub rel_l2: f64,
    /// Bound on `max|out − ref|`, relative to `max(1, max|ref|)`.
    pub max_abs: f64,
    /// Floor on the denominator of `rel_l2`, as an RMS value: the error is
    /// divided by `max(‖ref‖₂, norm_floor·√n)`. 0 for outputs whose scale is
    /// meaningful; 1 for log-domain outputs (lse), where a value near 0 says
    /// nothing about the precision needed and the absolute error is what
    /// matters.
    pub norm_floor: f64,
}

/// The tolerance of `op`'s main output at activation dtype `dtype`.
pub fn tolerance(op: OpKind, dtype: DType) -> Tolerance {
    use DType::*;
    use OpKind::*;
    let (rel_l2, max_abs) = match (op, dtype) {
        (Matmul | GptqMatmul | AwqMatmul | Nvfp4Matmul, F32) => (2e-5, 1e-4),
        (Matmul | GptqMatmul | AwqMatmul | Nvfp4Matmul, F16) => (1e-3, 2e-3),
        (Matmul | GptqMatmul | AwqMatmul | Nvfp4Matmul, BF16) => (8e-3, 1.6e-2),
        (RmsNorm | FusedAddRmsNorm, F32) => (1e-5, 1e-5),
        (RmsNorm | FusedAddRmsNorm, F16) => (1e-3, 2e-3),
        (RmsNorm | FusedAddRmsNorm, BF16) => (8e-3, 1.6e-2),
        (Attention | PagedAttention, F32) => (2e-5, 1e-4),
        (Attention | PagedAttention, F16) => (2e-3, 4e-3),
        (Attention | PagedAttention, BF16) => (1.6e-2, 3e-2),
        // Storage dtypes are never activations: an impossible combination
        // gets a bound that fails everything but an exact match.
        (_, U8 | I32 | F8E4M3) => (0.0, 0.0),
    };
    // Attention outputs are convex combinations of v, and kernels compute
    // the weights e^(s − max) in f32, which flushes below e^−87 where the
    // f64 reference keeps ~1e-40: an output made only of such weights is
    // ~1e-40·|v| in the reference and 0 on a device. Judge outputs whose
    // RMS is below 2^-100 by absolute error at that scale; every output of
    // ordinary size is judged exactly as before.
    let norm_floor = match op {
        Attention | PagedAttention => 2f64.powi(-100),
        _ => 0.0,
    };
    Tolerance {
        rel_l2,
        max_abs,
        norm_floor,
    }
}

/// The tolerance of attention's f32 log-sum-exp output. Scores are formed
/// from the same (already rounded) inputs in f32 whatever the dtype.
pub fn lse_tolerance() -> Tolerance {
    Tolerance {
        rel_l2: 2e-5,
        max_abs: 1e-4,
        norm_floor: 1.0,
    }
}

/// Errors of one output against its reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// `‖out − ref‖₂ / ‖ref‖₂` over finite reference elements (the absolute
    /// norm when the reference is all zero).
    pub rel_l2: f64,
    /// `max|out − ref|` over finite reference elements.
    pub max_abs: f64,
    /// Elements that are NaN in `out`, or differ where the reference is ±inf.
    pub bad_elements: usize,
    /// Index of the first bad element or of the largest error.
    pub worst_index: Option<usize>,
    pub passed: bool,
}

/// Compares `out` with `reference` (same length; a length mismatch fails).
pub fn compare(out: &[f64], reference: &[f64], tol: Tolerance) -> Comparison {
    let mut diff_sq = 0.0;
    let mut ref_sq = 0.0;
    let mut ref_max: f64 = 0.0;
    let mut max_abs: f64 = 0.0;
    let mut bad_elements = 0;
    let mut finite = 0usize;
    let mut worst_index = None;
    let mut first_bad = None;
    for (i, (&o, &r)) in out.iter().zip(reference).enumerate() {
        if o.is_nan()
            || (r.is_infinite() && o != r)
            || (!r.is_infinite() && o.is_infinite())
            || r.is_nan()
        {
            bad_elements += 1;
            first_bad.get_or_insert(i);
            continue;
        }
        if r.is_infinite() {
            continue;
        }
        finite += 1;
        let d = (o - r).abs();
        diff_sq += d * d;
        ref_sq += r * r;
        ref_max = ref_max.max(r.abs());
        if d > max_abs || worst_index.is_none() {
            max_abs = max_abs.max(d);
            worst_index = Some(i);
        }
    }
    if out.len() != reference.len() {
        bad_elements += out.len().abs_diff(reference.len());
    }
    let denominator_sq = ref_sq.max(tol.norm_floor * tol.norm_floor * finite as f64);
    let rel_l2 = if denominator_sq > 0.0 {
        (diff_sq / denominator_sq).sqrt()
    } else {
        diff_sq.sqrt()
    };
    let passed =
        bad_elements == 0 && rel_l2 <= tol.rel_l2 && max_abs <= tol.max_abs * ref_max.max(1.0);
    Comparison {
        rel_l2,
        max_abs,
        bad_elements,
        worst_index: first_bad.or(worst_index),
        passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_never_passes() {
        let tol = Tolerance {
            rel_l2: 1.0,
            max_abs: 1.0,
            norm_floor: 0.0,
        };
        assert!(!compare(&[f64::NAN], &[1.0], tol).passed);
        assert!(!compare(&[f64::NAN], &[f64::NAN], tol).passed);
    }

    #[test]
    fn infinities_must_match() {
        let tol = Tolerance {
            rel_l2: 1e-6,
            max_abs: 1e-6,
            norm_floor: 0.0,
        };
        assert!(compare(&[f64::NEG_INFINITY, 1.0], &[f64::NEG_INFINITY, 1.0], tol).passed);
        assert!(!compare(&[0.0, 1.0], &[f64::NEG_INFINITY, 1.0], tol).passed);
        assert!(!compare(&[f64::INFINITY], &[1.0], tol).passed);
    }

    #[test]
    fn bounds_are_applied() {
        let tol = Tolerance {
            rel_l2: 1e-3,
            max_abs: 1e-3,
            norm_floor: 0.0,
        };
        assert!(compare(&[1.0005, 2.0], &[1.0, 2.0], tol).passed);
        assert!(!compare(&[1.01, 2.0], &[1.0, 2.0], tol).passed);
        assert!(
            !compare(&[1.0], &[1.0, 2.0], tol).passed,
            "length mismatch fails"
        );
    }

    #[test]
    fn lse_near_zero_is_judged_by_absolute_error() {
        // 3.5e-7 absolute on an lse of 1.5e-3: fine for a log-sum-exp.
        let reference = [0.001_485_664];
        assert!(compare(&[0.001_486_017_4], &reference, lse_tolerance()).passed);
        assert!(!compare(&[0.0016], &reference, lse_tolerance()).passed);
    }
}
