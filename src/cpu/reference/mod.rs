//! The reference backend: the oracle every other backend is tested against.
//!
//! Scalar code, f64 accumulation, no unsafe, no tricks: each op reads its
//! inputs into f64, evaluates the formula of `ops/<op>.rs` as written, and
//! rounds once to the output dtype. It is itself checked against golden
//! vectors from independent implementations (tests/golden). It is slow by
//! design; use the `cpu` backend for speed.

pub mod attention;
pub mod awq_matmul;
pub mod fused_add_rms_norm;
pub mod gptq_matmul;
pub mod matmul;
pub mod nvfp4_matmul;
pub mod paged_attention;
pub mod rms_norm;

use crate::backend::{Backend, DeviceInfo};
use crate::cpu::memory::HostMemory;
use crate::error::{Result, Unsupported};
use crate::ops::{
    AttentionProblem, FusedAddRmsNormProblem, MatmulProblem, OpQuery, PagedAttentionProblem,
    RmsNormProblem,
};
use crate::ops::{AwqMatmulProblem, GptqMatmulProblem, Nvfp4MatmulProblem};
use crate::tensor::Buffer;

/// The oracle backend, selected as `reference`.
#[derive(Debug, Default)]
pub struct ReferenceBackend;

impl ReferenceBackend {
    pub const NAME: &'static str = "reference";

    pub fn new() -> Self {
        ReferenceBackend
    }
}

impl Backend for ReferenceBackend {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: Self::NAME.into(),
            device: "host CPU, scalar f64 oracle".into(),
            driver: None,
            memory_bytes: None,
            features: vec!["f64 accumulation".into()],
        }
    }

    fn owns(&self, buffer: &Buffer) -> bool {
        HostMemory::of(buffer).is_some()
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer> {
        HostMemory::alloc(Self::NAME, bytes)
    }

    fn upload(&self, dst: &Buffer, offset: usize, src: &[u8]) -> Result<()> {
        crate::cpu::memory::upload(dst, offset, src)
    }

    fn download(&self, src: &Buffer, offset: usize, dst: &mut [u8]) -> Result<()> {
        crate::cpu::memory::download(src, offset, dst)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn supports(&self, query: &OpQuery) -> Result<(), Unsupported> {
        // The oracle defines every op for every activation dtype.
        if query.dtype.is_float() {
            Ok(())
        } else {
            Err(Unsupported {
                backend: Self::NAME.into(),
                op: query.op,
                reason: format!("activations must be f32, f16 or bf16, not {}", query.dtype),
            })
        }
    }

    fn matmul(&self, problem: &MatmulProblem<'_>) -> Result<()> {
        matmul::run(problem)
    }

    fn rms_norm(&self, problem: &RmsNormProblem<'_>) -> Result<()> {
        rms_norm::run(problem)
    }

    fn fused_add_rms_norm(&self, problem: &FusedAddRmsNormProblem<'_>) -> Result<()> {
        fused_add_rms_norm::run(problem)
    }

    fn attention(&self, problem: &AttentionProblem<'_>) -> Result<()> {
        attention::run(problem)
    }

    fn paged_attention(&self, problem: &PagedAttentionProblem<'_>) -> Result<()> {
        paged_attention::run(problem)
    }

    fn gptq_matmul(&self, problem: &GptqMatmulProblem<'_>) -> Result<()> {
        gptq_matmul::run(problem)
    }

    fn awq_matmul(&self, problem: &AwqMatmulProblem<'_>) -> Result<()> {
        awq_matmul::run(problem)
    }

    fn nvfp4_matmul(&self, problem: &Nvfp4MatmulProblem<'_>) -> Result<()> {
        nvfp4_matmul::run(problem)
    }
}
