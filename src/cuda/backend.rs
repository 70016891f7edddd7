//! `impl Backend for CudaBackend`: memory on the backend's stream, and
//! [`select`], the one selection function that `supports()`, every backend
//! op and every `launch` function call.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, result};

use crate::backend::{Backend, DeviceInfo};
use crate::dtype::DType;
use crate::error::{Error, Result, Unsupported};
use crate::ops::{
    AttentionProblem, AwqMatmulProblem, FusedAddRmsNormProblem, GptqMatmulProblem, MatmulProblem,
    Nvfp4MatmulProblem, OpKind, OpQuery, PagedAttentionProblem, RmsNormProblem,
};
use crate::tensor::{Buffer, Tensor};

use super::kernels::{self as k, Arch, Entry, Kernels, LoadPath, load_paths};
use super::{alloc_error, driver_error, nvrtc};

/// Largest attention head dim: the kernels keep up to 256 / 32 accumulator
/// dims per lane and size shared memory for it (kernels/cuda/attention.cu).
pub const MAX_HEAD_DIM: usize = 256;

/// The kernel(s) that run one op on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    RmsNorm(Entry),
    FusedAddRmsNorm(Entry),
    /// `tensor_cores`: the mma.sync kernel (f16 / bf16 on sm_80+).
    Matmul {
        entry: Entry,
        tensor_cores: bool,
    },
    Attention(Entry),
    /// The split-context kernel and the kernel merging its partitions.
    PagedAttention {
        main: Entry,
        reduce: Entry,
    },
    GptqMatmul(Entry),
    AwqMatmul(Entry),
    Nvfp4Matmul(Entry),
}

/// Which kernel runs `query` on a device of `arch`, or why none does.
/// `supports()`, the backend's ops and the `launch` API all call this.
pub fn select(arch: Arch, query: &OpQuery) -> Result<Plan, String> {
    use k::{
        attention as at, awq_matmul as aw, fused_add_rms_norm as fa, gptq_matmul as gq,
        matmul as mm, nvfp4_matmul as nv, paged_attention as pa, rms_norm as rn,
    };
    let dtype = query.dtype;
    let by_dtype = |f32: Entry, f16: Entry, bf16: Entry| match dtype {
        DType::F32 => Ok(f32),
        DType::F16 => Ok(f16),
        DType::BF16 => Ok(bf16),
        other => Err(format!("activations must be f32, f16 or bf16, not {other}")),
    };
    let head_dim_ok = || match query.head_dim {
        Some(d) if d > MAX_HEAD_DIM => Err(format!(
            "head_dim {d} exceeds the CUDA kernels' maximum of {MAX_HEAD_DIM} \
             (8 accumulator dims per lane of a 32-lane warp)"
        )),
        _ => Ok(()),
    };
    match query.op {
        OpKind::RmsNorm => {
            by_dtype(rn::RMS_NORM_F32, rn::RMS_NORM_F16, rn::RMS_NORM_BF16).map(Plan::RmsNorm)
        }
        OpKind::FusedAddRmsNorm => by_dtype(
            fa::FUSED_ADD_RMS_NORM_F32,
            fa::FUSED_ADD_RMS_NORM_F16,
            fa::FUSED_ADD_RMS_NORM_BF16,
        )
        .map(Plan::FusedAddRmsNorm),
        OpKind::Matmul => {
            let simt = by_dtype(
                mm::MATMUL_SIMT_F32,
                mm::MATMUL_SIMT_F16,
                mm::MATMUL_SIMT_BF16,
            )?;
            let tensor_cores = arch >= Arch::TENSOR_CORES && dtype != DType::F32;
            let entry = match (tensor_cores, dtype) {
                (true, DType::F16) => mm::MATMUL_TC_F16,
                (true, DType::BF16) => mm::MATMUL_TC_BF16,
                _ => simt,
            };
            Ok(Plan::Matmul {
                entry,
                tensor_cores: entry != simt,
            })
        }
        OpKind::Attention => {
            head_dim_ok()?;
            by_dtype(at::ATTENTION_F32, at::ATTENTION_F16, at::ATTENTION_BF16).map(Plan::Attention)
        }
        OpKind::PagedAttention => {
            head_dim_ok()?;
            let main = by_dtype(
                pa::PAGED_ATTENTION_F32,
                pa::PAGED_ATTENTION_F16,
                pa::PAGED_ATTENTION_BF16,
            )?;
            let reduce = by_dtype(
                pa::PAGED_ATTENTION_REDUCE_F32,
                pa::PAGED_ATTENTION_REDUCE_F16,
                pa::PAGED_ATTENTION_REDUCE_BF16,
            )?;
            Ok(Plan::PagedAttention { main, reduce })
        }
        OpKind::GptqMatmul => match query.bits {
            None | Some(4 | 8) => by_dtype(
                gq::GPTQ_MATMUL_F32,
                gq::GPTQ_MATMUL_F16,
                gq::GPTQ_MATMUL_BF16,
            )
            .map(Plan::GptqMatmul),
            Some(bits) => Err(format!("GPTQ with {bits} bits: the kernel takes 4 or 8")),
        },
        OpKind::AwqMatmul => match query.bits {
            None | Some(4) => by_dtype(aw::AWQ_MATMUL_F32, aw::AWQ_MATMUL_F16, aw::AWQ_MATMUL_BF16)
                .map(Plan::AwqMatmul),
            Some(bits) => Err(format!("AWQ with {bits} bits: the kernel takes 4")),
        },
        OpKind::Nvfp4Matmul => by_dtype(
            nv::NVFP4_MATMUL_F32,
            nv::NVFP4_MATMUL_F16,
            nv::NVFP4_MATMUL_BF16,
        )
        .map(Plan::Nvfp4Matmul),
    }
}

/// A `Buffer`'s memory on this backend: one allocation on its stream.
pub(crate) struct CudaMemory {
    #[allow(dead_code)] // owned for its Drop, which frees the allocation
    slice: CudaSlice<u8>,
    /// The device pointer of `slice` (cached: cudarc hands it out per stream).
    ptr: u64,
}

/// One CUDA device (`cuda:N`): its context, its stream, its kernels.
pub struct CudaBackend {
    name: String,
    stream: Arc<CudaStream>,
    kernels: Arc<Kernels>,
    info: DeviceInfo,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("name", &self.name)
            .field("device", &self.info.device)
            .field("arch", &self.kernels.arch())
            .finish()
    }
}

impl CudaBackend {
    /// Opens device `ordinal`: retains its primary context, creates the
    /// backend's stream. The driver must be present ([`super::driver_present`]).
    pub fn new(ordinal: usize) -> Result<Self> {
        let name = format!("cuda:{ordinal}");
        let unavailable = |reason: String| Error::Unavailable {
            backend: name.clone(),
            reason,
        };
        if !super::driver_present() {
            return Err(unavailable(
                "libcuda (the NVIDIA driver library) was not found".into(),
            ));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| unavailable(format!("cannot open the device: {e}")))?;
        // SAFETY: this context handle is the backend's own (other handles of
        // the same primary context keep their tracking); everything the
        // backend does is ordered on its one stream, so no event is needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| unavailable(format!("cannot create a stream: {e}")))?;
        let kernels = Kernels::new(&ctx)?;
        let arch = kernels.arch();
        // Every file shares the build's images, so the first file's paths
        // are the device's.
        let paths = load_paths(k::KernelFile::ALL[0].info(), arch, nvrtc::is_available());
        if paths.is_empty() {
            return Err(unavailable(format!(
                "no embedded kernel image runs on {arch} (cubins: {:?}, PTX: {}) and libnvrtc \
                 was not found to compile the sources",
                k::BUILD.cubin_archs,
                if k::BUILD.nvcc.is_some() {
                    k::BUILD.ptx_arch
                } else {
                    "none"
                },
            )));
        }
        let device = ctx.name().unwrap_or_else(|_| "unknown NVIDIA GPU".into());
        let memory_bytes = ctx.total_mem().ok().map(|b| b as u64);
        let driver = super::driver_version()
            .ok()
            .map(|v| format!("CUDA driver API {}.{}", v / 1000, (v % 1000) / 10));
        let mut features = vec![format!("{arch}")];
        if arch >= Arch::TENSOR_CORES {
            features.push("tensor cores (mma.sync f16/bf16)".into());
        }
        features.push(format!(
            "kernels from {}",
            paths
                .iter()
                .map(LoadPath::to_string)
                .collect::<Vec<_>>()
                .join(", else ")
        ));
        Ok(CudaBackend {
            info: DeviceInfo {
                name: name.clone(),
                device,
                driver,
                memory_bytes,
                features,
            },
            name,
            stream,
            kernels,
        })
    }

    pub(crate) fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn arch(&self) -> Arch {
        self.kernels.arch()
    }

    /// The backend's stream, for engines mixing the `Backend` API with
    /// their own launches.
    pub fn cuda_stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// [`select`] for this device, as an `Unsupported` refusal.
    pub(crate) fn plan(&self, query: &OpQuery) -> Result<Plan, Unsupported> {
        select(self.kernels.arch(), query).map_err(|reason| Unsupported {
            backend: self.name.clone(),
            op: query.op,
            reason,
        })
    }

    fn memory<'a>(
        &self,
        op: &'static str,
        arg: &'static str,
        buffer: &'a Buffer,
    ) -> Result<&'a CudaMemory> {
        match buffer.memory::<CudaMemory>() {
            Some(memory) if buffer.device() == self.name => Ok(memory),
            _ => Err(Error::invalid(
                op,
                arg,
                format!("lives on {}, not on {}", buffer.device(), self.name),
            )),
        }
    }

    /// The device address of `tensor`'s first element.
    pub(crate) fn ptr(&self, op: &'static str, arg: &'static str, tensor: &Tensor) -> Result<u64> {
        let memory = self.memory(op, arg, tensor.buffer())?;
        Ok(memory.ptr + tensor.byte_offset() as u64)
    }

    fn range(&self, op: &'static str, buffer: &Buffer, offset: usize, len: usize) -> Result<u64> {
        let memory = self.memory(op, "buffer", buffer)?;
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
        Ok(memory.ptr + offset as u64)
    }
}

/// Runs `f`, turning a panic inside cudarc (it panics when a driver symbol
/// it expects is missing, e.g. on a driver older than the bindings) into a
/// typed device error: no panic crosses the `Backend` API.
fn guard<T>(backend: &str, op: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(Error::Device {
            backend: backend.to_string(),
            op,
            reason: format!(
                "the CUDA driver bindings panicked: {}",
                super::panic_message(panic)
            ),
        })
    })
}

impl Backend for CudaBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    fn owns(&self, buffer: &Buffer) -> bool {
        buffer.device() == self.name && buffer.memory::<CudaMemory>().is_some()
    }

    fn alloc(&self, bytes: usize) -> Result<Buffer> {
        guard(&self.name, "alloc", || {
            // One byte at least: a zero-byte cuMemAlloc is an error, and every
            // buffer gets a distinct address.
            let len = bytes.max(1);
            // SAFETY: the contents are unspecified by contract (`alloc` returns
            // uninitialized memory); u8 has no invalid bit patterns.
            let slice = unsafe { self.stream.alloc::<u8>(len) }
                .map_err(|e| alloc_error(&self.name, bytes, e))?;
            let ptr = slice.device_ptr(&self.stream).0;
            let memory = CudaMemory { ptr, slice };
            Ok(Buffer::new(&self.name, bytes, Arc::new(memory)))
        })
    }

    fn upload(&self, dst: &Buffer, offset: usize, src: &[u8]) -> Result<()> {
        guard(&self.name, "upload", || {
            let ptr = self.range("upload", dst, offset, src.len())?;
            if src.is_empty() {
                return Ok(());
            }
            // SAFETY: [ptr, ptr + len) lies inside the allocation (checked by
            // `range`); for pageable host memory the driver has copied `src` to
            // staging memory when this returns, so `src` may be dropped.
            unsafe {
                self.stream
                    .context()
                    .bind_to_thread()
                    .and_then(|()| result::memcpy_htod_async(ptr, src, self.stream.cu_stream()))
            }
            .map_err(|e| driver_error(&self.name, "upload", e))
        })
    }

    fn download(&self, src: &Buffer, offset: usize, dst: &mut [u8]) -> Result<()> {
        guard(&self.name, "download", || {
            let ptr = self.range("download", src, offset, dst.len())?;
            if dst.is_empty() {
                return self.synchronize();
            }
            // SAFETY: the source range lies inside the allocation (checked); the
            // stream is synchronized before `dst` is used, and a copy to pageable
            // memory completes before the call returns anyway.
            unsafe {
                self.stream
                    .context()
                    .bind_to_thread()
                    .and_then(|()| result::memcpy_dtoh_async(dst, ptr, self.stream.cu_stream()))
            }
            .map_err(|e| driver_error(&self.name, "download", e))?;
            self.synchronize()
        })
    }

    fn synchronize(&self) -> Result<()> {
        guard(&self.name, "synchronize", || {
            self.stream
                .synchronize()
                .map_err(|e| driver_error(&self.name, "synchronize", e))
        })
    }

    fn supports(&self, query: &OpQuery) -> Result<(), Unsupported> {
        self.plan(query).map(|_| ())
    }

    fn matmul(&self, problem: &MatmulProblem<'_>) -> Result<()> {
        guard(&self.name, "matmul", || super::matmul::run(self, problem))
    }

    fn rms_norm(&self, problem: &RmsNormProblem<'_>) -> Result<()> {
        guard(&self.name, "rms_norm", || {
            super::rms_norm::run(self, problem)
        })
    }

    fn fused_add_rms_norm(&self, problem: &FusedAddRmsNormProblem<'_>) -> Result<()> {
        guard(&self.name, "fused_add_rms_norm", || {
            super::fused_add_rms_norm::run(self, problem)
        })
    }

    fn attention(&self, problem: &AttentionProblem<'_>) -> Result<()> {
        guard(&self.name, "attention", || {
            super::attention::run(self, problem)
        })
    }

    fn paged_attention(&self, problem: &PagedAttentionProblem<'_>) -> Result<()> {
        guard(&self.name, "paged_attention", || {
            super::paged_attention::run(self, problem)
        })
    }

    fn gptq_matmul(&self, problem: &GptqMatmulProblem<'_>) -> Result<()> {
        guard(&self.name, "gptq_matmul", || {
            super::gptq_matmul::run(self, problem)
        })
    }

    fn awq_matmul(&self, problem: &AwqMatmulProblem<'_>) -> Result<()> {
        guard(&self.name, "awq_matmul", || {
            super::awq_matmul::run(self, problem)
        })
    }

    fn nvfp4_matmul(&self, problem: &Nvfp4MatmulProblem<'_>) -> Result<()> {
        guard(&self.name, "nvfp4_matmul", || {
            super::nvfp4_matmul::run(self, problem)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(op: OpKind, dtype: DType) -> OpQuery {
        OpQuery::new(op, dtype)
    }

    #[test]
    fn selection_by_arch_and_dtype() {
        let ampere = Arch::new(8, 0);
        let turing = Arch::new(7, 5);
        for dtype in [DType::F16, DType::BF16] {
            let plan = select(ampere, &query(OpKind::Matmul, dtype)).unwrap();
            assert!(
                matches!(
                    plan,
                    Plan::Matmul {
                        tensor_cores: true,
                        ..
                    }
                ),
                "{plan:?}"
            );
            let plan = select(turing, &query(OpKind::Matmul, dtype)).unwrap();
            assert!(
                matches!(
                    plan,
                    Plan::Matmul {
                        tensor_cores: false,
                        ..
                    }
                ),
                "{plan:?}"
            );
        }
        let plan = select(ampere, &query(OpKind::Matmul, DType::F32)).unwrap();
        assert_eq!(
            plan,
            Plan::Matmul {
                entry: k::matmul::MATMUL_SIMT_F32,
                tensor_cores: false
            }
        );
        assert_eq!(
            select(ampere, &query(OpKind::RmsNorm, DType::BF16)),
            Ok(Plan::RmsNorm(k::rms_norm::RMS_NORM_BF16))
        );
        assert!(select(ampere, &query(OpKind::RmsNorm, DType::I32)).is_err());
    }

    #[test]
    fn selection_checks_quantized_bits() {
        let q = |op, bits| OpQuery {
            bits,
            ..OpQuery::new(op, DType::BF16)
        };
        let ampere = Arch::new(8, 0);
        for (op, bits, ok) in [
            (OpKind::GptqMatmul, Some(4), true),
            (OpKind::GptqMatmul, Some(8), true),
            (OpKind::GptqMatmul, Some(3), false),
            (OpKind::GptqMatmul, None, true),
            (OpKind::AwqMatmul, Some(4), true),
            (OpKind::AwqMatmul, Some(8), false),
            (OpKind::Nvfp4Matmul, None, true),
        ] {
            assert_eq!(select(ampere, &q(op, bits)).is_ok(), ok, "{op} {bits:?}");
        }
    }

    #[test]
    fn selection_refuses_large_head_dims() {
        for op in [OpKind::Attention, OpKind::PagedAttention] {
            for (d, ok) in [
                (1, true),
                (64, true),
                (256, true),
                (257, false),
                (512, false),
            ] {
                let q = OpQuery {
                    head_dim: Some(d),
                    ..OpQuery::new(op, DType::F16)
                };
                assert_eq!(select(Arch::new(9, 0), &q).is_ok(), ok, "{op} head_dim {d}");
            }
        }
    }

    #[test]
    fn every_selected_entry_is_embedded() {
        let archs = [Arch::new(7, 5), Arch::new(8, 0), Arch::new(9, 0)];
        for arch in archs {
            for op in OpKind::ALL {
                for dtype in DType::FLOATS {
                    let entries = match select(arch, &query(op, dtype)) {
                        Ok(
                            Plan::RmsNorm(e)
                            | Plan::FusedAddRmsNorm(e)
                            | Plan::Attention(e)
                            | Plan::GptqMatmul(e)
                            | Plan::AwqMatmul(e)
                            | Plan::Nvfp4Matmul(e),
                        ) => vec![e],
                        Ok(Plan::Matmul { entry, .. }) => vec![entry],
                        Ok(Plan::PagedAttention { main, reduce }) => vec![main, reduce],
                        Err(_) => continue,
                    };
                    for e in entries {
                        assert!(e.file.info().entries.contains(&e.name), "{e:?}");
                    }
                }
            }
        }
    }
}
