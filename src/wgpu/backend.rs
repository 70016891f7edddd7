//! `impl Backend for WgpuBackend`, and the one selection function that both
//! `supports()` and every launch call, so the capability answer cannot drift
//! from what runs.

use crate::backend::{Backend, DeviceInfo};
use crate::error::{Result, Unsupported};
use crate::ops::{
    AttentionProblem, AwqMatmulProblem, FusedAddRmsNormProblem, GptqMatmulProblem, MatmulProblem,
    Nvfp4MatmulProblem, OpKind, OpQuery, PagedAttentionProblem, RmsNormProblem,
};
use crate::tensor::Buffer;

use super::context::{WgpuBackend, dt_code};
use super::{
    attention, awq_matmul, fused_add_rms_norm, gptq_matmul, matmul, nvfp4_matmul, paged_attention,
    rms_norm,
};

/// Largest head dim the attention kernels take: 64 threads own 4 dims each
/// and q is staged in 256 f32 of workgroup memory (kernels/wgsl/attention.wgsl).
pub(crate) const MAX_HEAD_DIM: usize = 256;

impl WgpuBackend {
    /// Whether a kernel exists for `query`. Called by `supports()` and by
    /// every op before it launches.
    pub(crate) fn select(&self, query: &OpQuery) -> Result<(), Unsupported> {
        let refuse = |reason: String| {
            Err(Unsupported {
                backend: self.name_str().to_string(),
                op: query.op,
                reason,
            })
        };
        if dt_code(query.dtype).is_none() {
            return refuse(format!(
                "activations must be f32, f16 or bf16, not {}",
                query.dtype
            ));
        }
        match query.op {
            OpKind::Matmul | OpKind::RmsNorm | OpKind::FusedAddRmsNorm => Ok(()),
            OpKind::Attention | OpKind::PagedAttention => match query.head_dim {
                Some(d) if d > MAX_HEAD_DIM => refuse(format!(
                    "head_dim {d} exceeds the WGSL kernels' maximum of {MAX_HEAD_DIM} \
                     (64 threads x 4 dims each)"
                )),
                _ => Ok(()),
            },
            OpKind::GptqMatmul => match query.bits {
                None | Some(4) | Some(8) => Ok(()),
                Some(bits) => refuse(format!("GPTQ kernels exist for 4 and 8 bits, not {bits}")),
            },
            OpKind::AwqMatmul => match query.bits {
                None | Some(4) => Ok(()),
                Some(bits) => refuse(format!("AWQ kernels exist for 4 bits, not {bits}")),
            },
            OpKind::Nvfp4Matmul => Ok(()),
        }
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> &str {
        self.name_str()
    }

    fn info(&self) -> DeviceInfo {
        self.device_info()
    }

    fn owns(&self, buffer: &Buffer) -> bool {
        self.owns_buffer(buffer)
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer> {
        self.alloc_buffer(bytes)
    }

    fn upload(&self, dst: &Buffer, offset: usize, src: &[u8]) -> Result<()> {
        self.upload_bytes(dst, offset, src)
    }

    fn download(&self, src: &Buffer, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.download_bytes(src, offset, dst)
    }

    fn synchronize(&self) -> Result<()> {
        self.sync()
    }

    fn supports(&self, query: &OpQuery) -> Result<(), Unsupported> {
        self.select(query)
    }

    fn matmul(&self, problem: &MatmulProblem<'_>) -> Result<()> {
        matmul::run(self, problem)
    }

    fn rms_norm(&self, problem: &RmsNormProblem<'_>) -> Result<()> {
        rms_norm::run(self, problem)
    }

    fn fused_add_rms_norm(&self, problem: &FusedAddRmsNormProblem<'_>) -> Result<()> {
        fused_add_rms_norm::run(self, problem)
    }

    fn attention(&self, problem: &AttentionProblem<'_>) -> Result<()> {
        attention::run(self, problem)
    }

    fn paged_attention(&self, problem: &PagedAttentionProblem<'_>) -> Result<()> {
        paged_attention::run(self, problem)
    }

    fn gptq_matmul(&self, problem: &GptqMatmulProblem<'_>) -> Result<()> {
        gptq_matmul::run(self, problem)
    }

    fn awq_matmul(&self, problem: &AwqMatmulProblem<'_>) -> Result<()> {
        awq_matmul::run(self, problem)
    }

    fn nvfp4_matmul(&self, problem: &Nvfp4MatmulProblem<'_>) -> Result<()> {
        nvfp4_matmul::run(self, problem)
    }
}
