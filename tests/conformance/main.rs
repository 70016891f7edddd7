//! The one conformance suite: every backend computes the same function as
//! the f64 oracle (`radiant::cpu::reference`), within the tolerance table,
//! writing exactly its outputs; rejects every malformed argument with a
//! typed error; and stays correct under concurrent use.
//!
//! Tests are ordinary functions taking `&dyn Backend`, one module per op.
//! `backend_tests!` instantiates all of them for one backend name; a backend
//! that is not available here skips with a printed reason, unless
//! `RADIANT_REQUIRE_BACKENDS` (e.g. `reference,cpu,wgpu`) names it, in which
//! case its tests fail. An op a backend does not `supports()` is reported as
//! skipped, never failed; one it claims and then fails is a failure.
//!
//! Run one backend with `cargo test --test conformance reference::`; see
//! skip reasons with `-- --nocapture`; scale the random case counts with
//! `PROPTEST_CASES`.

mod attention;
mod awq_matmul;
mod edge_values;
mod fused_add_rms_norm;
mod gptq_matmul;
mod harness;
mod malformed;
mod matmul;
mod nvfp4_matmul;
mod paged_attention;
mod rms_norm;
mod threads;

/// Every test of the suite, for the backend selected by `$name`.
macro_rules! backend_tests {
    ($backend:ident, $name:literal) => {
        mod $backend {
            use crate::harness::{run_on, run_shared};
            use crate::*;

            #[test]
            fn matmul_random() {
                run_on($name, matmul::random)
            }
            #[test]
            fn rms_norm_random() {
                run_on($name, rms_norm::random)
            }
            #[test]
            fn fused_add_rms_norm_random() {
                run_on($name, fused_add_rms_norm::random)
            }
            #[test]
            fn fused_add_rms_norm_matches_composition() {
                run_on($name, fused_add_rms_norm::matches_composition)
            }
            #[test]
            fn attention_random() {
                run_on($name, attention::random)
            }
            #[test]
            fn attention_matches_paged() {
                run_on($name, attention::matches_paged)
            }
            #[test]
            fn attention_masked_rows() {
                run_on($name, attention::masked_rows)
            }
            #[test]
            fn attention_gqa_head_mapping() {
                run_on($name, attention::gqa_head_mapping)
            }
            #[test]
            fn paged_attention_random() {
                run_on($name, paged_attention::random)
            }
            #[test]
            fn paged_attention_gqa_head_mapping() {
                run_on($name, paged_attention::gqa_head_mapping)
            }
            #[test]
            fn gptq_matmul_random() {
                run_on($name, gptq_matmul::random)
            }
            #[test]
            fn awq_matmul_random() {
                run_on($name, awq_matmul::random)
            }
            #[test]
            fn nvfp4_matmul_random() {
                run_on($name, nvfp4_matmul::random)
            }
            #[test]
            fn malformed_random() {
                run_on($name, malformed::random)
            }
            #[test]
            fn malformed_each_once() {
                run_on($name, malformed::each_once)
            }
            #[test]
            fn malformed_huge_views() {
                run_on($name, malformed::huge_views)
            }
            #[test]
            fn edge_attention_non_finite() {
                run_on($name, edge_values::attention_non_finite)
            }
            #[test]
            fn edge_attention_huge_windows() {
                run_on($name, edge_values::attention_huge_windows)
            }
            #[test]
            fn edge_attention_f32_parameters() {
                run_on($name, edge_values::attention_f32_parameters)
            }
            #[test]
            fn edge_paged_attention_non_finite() {
                run_on($name, edge_values::paged_attention_non_finite)
            }
            #[test]
            fn edge_rms_norm_extreme_scales() {
                run_on($name, edge_values::rms_norm_extreme_scales)
            }
            #[test]
            fn edge_zero_size() {
                run_on($name, edge_values::zero_size)
            }
            #[test]
            fn threads_concurrent() {
                run_shared($name, threads::concurrent)
            }
        }
    };
}

backend_tests!(reference, "reference");
backend_tests!(cpu, "cpu");
backend_tests!(wgpu, "wgpu:0");
backend_tests!(cuda, "cuda:0");
backend_tests!(rocm, "rocm:0");

/// A typo in `RADIANT_REQUIRE_BACKENDS` must not silently require nothing.
#[test]
fn required_backends_are_known() {
    for name in harness::required_backends() {
        assert!(
            harness::BACKENDS.contains(&name.as_str()),
            "RADIANT_REQUIRE_BACKENDS names {name}, which this suite does not run (it runs {:?})",
            harness::BACKENDS
        );
    }
}

/// The quantized matmuls' contract rounds the f32 dequantized weight ONCE
/// to x's dtype, and `DType::round` is documented as round-to-nearest-even.
/// 1 + 2^-8 + 2^-23 is just above the tie between 1 and 1 + 2^-7 in bf16,
/// so it rounds up. (`half::bf16::from_f64` truncates the f64 to its top
/// 32 bits before rounding and loses the sticky bit; radiant rounds once.)
#[test]
fn bf16_rounding_is_correct() {
    use radiant::{DType, HostTensor};
    let value = f32::from_bits(0x3F80_8001);
    let once = HostTensor::from_f32(DType::BF16, &[1], &[value]).unwrap();
    assert_eq!(once.to_f64_vec()[0], 1.0 + 2f64.powi(-7), "from_f32");
    assert_eq!(
        DType::BF16.round(f64::from(value)),
        1.0 + 2f64.powi(-7),
        "DType::round"
    );
    let from_f64 = HostTensor::from_f64(DType::BF16, &[1], &[f64::from(value)]).unwrap();
    assert_eq!(
        from_f64.to_f64_vec()[0],
        1.0 + 2f64.powi(-7),
        "HostTensor::from_f64"
    );
}
