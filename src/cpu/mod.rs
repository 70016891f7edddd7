//! Host backends: `reference` (the oracle, in `reference/`) and, sharing the
//! same host memory, the fast `cpu` backend (`backend.rs`, one file per op,
//! SIMD kernels in `simd/`).

mod access;
mod attention;
mod backend;
mod fused_add_rms_norm;
mod matmul;
pub mod memory;
mod paged_attention;
pub mod reference;
mod rms_norm;
mod simd;
#[cfg(test)]
mod tests;

pub use backend::CpuBackend;
pub use reference::ReferenceBackend;
