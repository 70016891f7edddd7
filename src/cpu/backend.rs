//! The fast CPU backend, selected as `cpu`.
//!
//! It shares host memory with `reference` (either accepts the other's
//! buffers) and works on it in place: each op locks its buffers (see
//! `access.rs`), then runs SIMD kernels chosen once at run time (see
//! `simd/`) on rayon's global pool (`RAYON_NUM_THREADS` sets its size).
//!
//! Results never depend on the number of threads: work is split into tasks
//! whose boundaries and summation orders are fixed by the problem alone.

use crate::backend::{Backend, DeviceInfo};
use crate::cpu::memory::HostMemory;
use crate::cpu::simd::kernels;
use crate::cpu::{attention, fused_add_rms_norm, matmul, paged_attention, rms_norm};
use crate::error::{Error, Result, Unsupported};
use crate::ops::{
    AttentionProblem, FusedAddRmsNormProblem, MatmulProblem, OpKind, OpQuery,
    PagedAttentionProblem, RmsNormProblem,
};
use crate::tensor::Buffer;

/// The fast CPU backend.
#[derive(Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub const NAME: &'static str = "cpu";

    pub fn new() -> Self {
        CpuBackend
    }

    /// The SIMD level the kernels run at (`avx2+fma+f16c`, ...).
    pub fn simd_level(&self) -> &'static str {
        kernels().level.name()
    }

    /// The one selection function: `supports` answers with it, and every op
    /// method calls it before running, so the two cannot drift.
    fn select(&self, query: &OpQuery) -> Result<(), Unsupported> {
        let refuse = |reason: String| Unsupported {
            backend: Self::NAME.into(),
            op: query.op,
            reason,
        };
        if !query.dtype.is_float() {
            return Err(refuse(format!(
                "activations must be f32, f16 or bf16, not {}",
                query.dtype
            )));
        }
        match query.op {
            OpKind::Matmul
            | OpKind::RmsNorm
            | OpKind::FusedAddRmsNorm
            | OpKind::Attention
            | OpKind::PagedAttention => Ok(()),
            OpKind::GptqMatmul | OpKind::AwqMatmul | OpKind::Nvfp4Matmul => Err(refuse(
                "quantized matmul has no cpu kernel yet (use the reference backend)".into(),
            )),
        }
    }
}

fn host_range<'a>(
    op: &'static str,
    buffer: &'a Buffer,
    offset: usize,
    len: usize,
) -> Result<&'a HostMemory> {
    let memory = HostMemory::of(buffer).ok_or_else(|| {
        Error::invalid(
            op,
            "buffer",
            format!("lives on {}, not in host memory", buffer.device()),
        )
    })?;
    if offset
        .checked_add(len)
        .is_none_or(|end| end > buffer.len_bytes())
    {
        return Err(Error::invalid(
            op,
            "offset",
            format!(
                "{len} bytes at offset {offset} exceed the {}-byte buffer",
                buffer.len_bytes()
            ),
        ));
    }
    Ok(memory)
}

impl Backend for CpuBackend {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: Self::NAME.into(),
            device: format!(
                "host CPU ({} threads)",
                rayon::current_num_threads()
            ),
            driver: None,
            memory_bytes: None,
            features: vec![
                format!("simd: {}", self.simd_level()),
                "f32 accumulation".into(),
            ],
        }
    }

    fn owns(&self, buffer: &Buffer) -> bool {
        HostMemory::of(buffer).is_some()
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer> {
        HostMemory::alloc(Self::NAME, bytes)
    }

    fn upload(&self, dst: &Buffer, offset: usize, src: &[u8]) -> Result<()> {
        let memory = host_range("upload", dst, offset, src.len())?;
        memory.write().bytes_mut()[offset..offset + src.len()].copy_from_slice(src);
        Ok(())
    }

    fn download(&self, src: &Buffer, offset: usize, dst: &mut [u8]) -> Result<()> {
        let memory = host_range("download", src, offset, dst.len())?;
        dst.copy_from_slice(&memory.read().bytes()[offset..offset + dst.len()]);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn supports(&self, query: &OpQuery) -> Result<(), Unsupported> {
        self.select(query)
    }

    fn matmul(&self, problem: &MatmulProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        matmul::run(problem)
    }

    fn rms_norm(&self, problem: &RmsNormProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        rms_norm::run(problem)
    }

    fn fused_add_rms_norm(&self, problem: &FusedAddRmsNormProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        fused_add_rms_norm::run(problem)
    }

    fn attention(&self, problem: &AttentionProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        attention::run(problem)
    }

    fn paged_attention(&self, problem: &PagedAttentionProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        paged_attention::run(problem)
    }
}
