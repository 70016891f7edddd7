//! The one trait every backend implements.
//!
//! It is object-safe (no generic methods; the dtype is a run-time value) so an
//! engine, the CLI, the tests and the Python binding all hold
//! `Arc<dyn Backend>` and pick the vendor at run time. The surface is small:
//! memory (allocate / upload / download / synchronize), a capability query,
//! and one method per op family. Op methods receive problems that `ops/` has
//! already validated; call them through `radiant::ops`, never directly.

use std::fmt;

use crate::error::{Error, Result, Unsupported};
use crate::ops::{
    AttentionProblem, FusedAddRmsNormProblem, MatmulProblem, OpQuery, PagedAttentionProblem,
    RmsNormProblem,
};
use crate::ops::{AwqMatmulProblem, GptqMatmulProblem, Nvfp4MatmulProblem};
use crate::tensor::{Buffer, HostTensor, Tensor, checked_numel};

/// What a backend says about itself (`radiant info`).
#[derive(Debug, Clone, Default)]
pub struct DeviceInfo {
    /// Selection name: `reference`, `cpu`, `cuda:0`, `wgpu:1`, ...
    pub name: String,
    /// Human-readable device name (CPU model, GPU marketing name).
    pub device: String,
    /// Driver / runtime versions, when there are any.
    pub driver: Option<String>,
    /// Device memory in bytes, when known.
    pub memory_bytes: Option<u64>,
    /// Notable features (SIMD level, shader-f16, tensor cores, ...).
    pub features: Vec<String>,
}

/// A compute backend. Implementations must be `Send + Sync`: concurrent calls
/// from several threads must give correct results.
pub trait Backend: Send + Sync + fmt::Debug {
    /// The selection name (`reference`, `cpu`, `cuda:0`, ...).
    fn name(&self) -> &str;

    fn info(&self) -> DeviceInfo;

    /// True if `buffer` was allocated by this backend (or one sharing its
    /// memory, like `reference` and `cpu` sharing host memory).
    fn owns(&self, buffer: &Buffer) -> bool;

    /// Allocates `bytes` of device memory. The contents are unspecified.
    fn alloc(&self, bytes: usize) -> Result<Buffer>;

    /// Copies `src` into `dst` starting at byte `offset`.
    fn upload(&self, dst: &Buffer, offset: usize, src: &[u8]) -> Result<()>;

    /// Copies `dst.len()` bytes of `src` starting at byte `offset` into `dst`.
    /// Waits for work that writes `src` to finish.
    fn download(&self, src: &Buffer, offset: usize, dst: &mut [u8]) -> Result<()>;

    /// Waits until all work submitted to this backend has finished.
    fn synchronize(&self) -> Result<()>;

    /// Whether this backend runs `query`. The op entry points call this
    /// before every launch, so the answer is exactly what runs.
    fn supports(&self, query: &OpQuery) -> Result<(), Unsupported>;

    fn matmul(&self, problem: &MatmulProblem<'_>) -> Result<()>;
    fn rms_norm(&self, problem: &RmsNormProblem<'_>) -> Result<()>;
    fn fused_add_rms_norm(&self, problem: &FusedAddRmsNormProblem<'_>) -> Result<()>;
    fn attention(&self, problem: &AttentionProblem<'_>) -> Result<()>;
    fn paged_attention(&self, problem: &PagedAttentionProblem<'_>) -> Result<()>;

    /// `y = x · dequant(W)ᵀ (+ bias)` against a GPTQ weight.
    fn gptq_matmul(&self, problem: &GptqMatmulProblem<'_>) -> Result<()>;
    /// `y = x · dequant(W)ᵀ (+ bias)` against an AWQ weight.
    fn awq_matmul(&self, problem: &AwqMatmulProblem<'_>) -> Result<()>;
    /// `y = x · dequant(W)ᵀ (+ bias)` against an NVFP4 weight.
    fn nvfp4_matmul(&self, problem: &Nvfp4MatmulProblem<'_>) -> Result<()>;
}

/// Conveniences over the raw memory methods, for every backend.
impl dyn Backend + '_ {
    /// Allocates a contiguous tensor. Its contents are unspecified.
    pub fn alloc_tensor(&self, dtype: crate::DType, shape: &[usize]) -> Result<Tensor> {
        let bytes = checked_numel(shape)
            .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
            .ok_or_else(|| {
                Error::invalid("alloc", "shape", format!("{shape:?} overflows usize"))
            })?;
        let buffer = self.alloc(bytes)?;
        Tensor::from_buffer(buffer, dtype, shape, 0)
    }

    /// Copies a host tensor to a new device tensor.
    pub fn upload_tensor(&self, host: &HostTensor) -> Result<Tensor> {
        let tensor = self.alloc_tensor(host.dtype(), host.shape())?;
        self.upload(tensor.buffer(), 0, host.bytes())?;
        Ok(tensor)
    }

    /// Copies a contiguous device tensor to the host.
    pub fn download_tensor(&self, tensor: &Tensor) -> Result<HostTensor> {
        if !tensor.is_contiguous() {
            return Err(Error::invalid("download", "tensor", "must be contiguous"));
        }
        if !self.owns(tensor.buffer()) {
            return Err(Error::invalid(
                "download",
                "tensor",
                format!(
                    "lives on {}, not on {}",
                    tensor.buffer().device(),
                    self.name()
                ),
            ));
        }
        let mut bytes = vec![0u8; tensor.byte_len()];
        self.download(tensor.buffer(), tensor.byte_offset(), &mut bytes)?;
        HostTensor::from_bytes(tensor.dtype(), tensor.shape(), bytes)
    }
}
