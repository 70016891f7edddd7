//! Host backends: `reference` (the oracle, in `reference/`) and, sharing the
//! same host memory, the fast `cpu` backend (`backend.rs`, one file per op,
//! SIMD kernels in `simd/`).

mod access;
mod attention;
mod awq_matmul;
mod backend;
mod fused_add_rms_norm;
mod gptq_matmul;
mod matmul;
pub mod memory;
mod nvfp4_matmul;
mod paged_attention;
mod quant_common;
#[cfg(test)]
mod quant_tests;
pub mod reference;
mod rms_norm;
mod simd;
#[cfg(test)]
mod tests;

pub use backend::CpuBackend;
pub use reference::ReferenceBackend;
