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
use crate::cpu::{
    attention, awq_matmul, fused_add_rms_norm, gptq_matmul, matmul, nvfp4_matmul, paged_attention,
    rms_norm,
};
use crate::error::{Result, Unsupported};
use crate::ops::{
    AttentionProblem, AwqMatmulProblem, FusedAddRmsNormProblem, GptqMatmulProblem, MatmulProblem,
    Nvfp4MatmulProblem, OpKind, OpQuery, PagedAttentionProblem, RmsNormProblem,
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
            | OpKind::PagedAttention
            | OpKind::Nvfp4Matmul => Ok(()),
            // The kernels exist for the bit widths the weights can have;
            // a query without bits asks about the op in general.
            OpKind::GptqMatmul => match query.bits {
                None | Some(4 | 8) => Ok(()),
                Some(bits) => Err(refuse(format!(
                    "GPTQ kernels exist for 4 and 8 bits, not {bits}"
                ))),
            },
            OpKind::AwqMatmul => match query.bits {
                None | Some(4) => Ok(()),
                Some(bits) => Err(refuse(format!("AWQ kernels exist for 4 bits, not {bits}"))),
            },
        }
    }
}

/// Runs `f` on a thread of rayon's pool: an op called from outside the pool
/// then pays one hand-off, and the parallel loops inside it are plain
/// joins between pool threads instead of one hand-off each.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: Self::NAME.into(),
            device: format!("host CPU ({} threads)", rayon::current_num_threads()),
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
        crate::cpu::memory::upload(dst, offset, src)
    }

    fn download(&self, src: &Buffer, offset: usize, dst: &mut [u8]) -> Result<()> {
        crate::cpu::memory::download(src, offset, dst)
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn supports(&self, query: &OpQuery) -> Result<(), Unsupported> {
        self.select(query)
    }

    fn matmul(&self, problem: &MatmulProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        on_pool(|| matmul::run(problem))
    }

    fn rms_norm(&self, problem: &RmsNormProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        on_pool(|| rms_norm::run(problem))
    }

    fn fused_add_rms_norm(&self, problem: &FusedAddRmsNormProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        on_pool(|| fused_add_rms_norm::run(problem))
    }

    fn attention(&self, problem: &AttentionProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        on_pool(|| attention::run(problem))
    }

    fn paged_attention(&self, problem: &PagedAttentionProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        on_pool(|| paged_attention::run(problem))
    }

    fn gptq_matmul(&self, problem: &GptqMatmulProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        on_pool(|| gptq_matmul::run(problem))
    }

    fn awq_matmul(&self, problem: &AwqMatmulProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        on_pool(|| awq_matmul::run(problem))
    }

    fn nvfp4_matmul(&self, problem: &Nvfp4MatmulProblem<'_>) -> Result<()> {
        self.select(&problem.query())?;
        on_pool(|| nvfp4_matmul::run(problem))
    }
}
