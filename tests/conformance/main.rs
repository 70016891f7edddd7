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
mod fused_add_rms_norm;
mod harness;
mod malformed;
mod matmul;
mod paged_attention;
mod rms_norm;
mod threads;
// Quantized matmuls join here, one module each, on the same harness:
// mod gptq_matmul;
// mod awq_matmul;
// mod nvfp4_matmul;

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
            // Quantized matmuls: gptq_matmul::random, awq_matmul::random,
            // nvfp4_matmul::random go here.
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
