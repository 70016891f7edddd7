//! # radiant
//!
//! The hot operations of LLM inference — matmul, RMSNorm, fused attention,
//! paged decode attention, and matmul against GPTQ / AWQ / NVFP4 quantized
//! weights — behind one object-safe trait, [`Backend`], on every accelerator:
//! the CPU, NVIDIA (CUDA), AMD (ROCm) and any WebGPU GPU.
//!
//! ## The contract
//!
//! * **One trait.** Engines hold `Arc<dyn Backend>` and pick the vendor at
//!   run time ([`device`], [`devices`]). Buffers are untyped device memory;
//!   [`Tensor`] views carry dtype, shape, strides and offset.
//! * **Validation once.** Every op entry point in [`ops`] checks shapes,
//!   dtypes, value ranges and aliasing, and returns a typed [`Error`] naming
//!   the op, the argument and the reason — never a panic. Backends receive
//!   validated problems and only choose and launch kernels.
//! * **Capabilities cannot drift.** Before any launch the entry point asks
//!   [`Backend::supports`] with the problem's [`OpQuery`]; what it answers is
//!   exactly what runs.
//! * **One oracle.** [`cpu::reference`] evaluates every op in f64, plainly.
//!   The conformance suite (`tests/`) proves every backend computes the same
//!   function within per-(op, dtype) tolerances; the reference itself is
//!   checked against golden vectors from PyTorch and the quantization
//!   packages.
//!
//! ```
//! use radiant::{HostTensor, DType, ops};
//!
//! let dev = radiant::device("reference")?;
//! let a = dev.upload_tensor(&HostTensor::from_f32(DType::F32, &[2, 3], &[1., 2., 3., 4., 5., 6.])?)?;
//! let w = dev.upload_tensor(&HostTensor::from_f32(DType::F32, &[1, 3], &[1., 0., -1.])?)?;
//! let params = ops::MatmulParams { b_layout: ops::BLayout::Nk };
//! let y = ops::matmul(dev.as_ref(), &a, &w, None, params)?;
//! assert_eq!(dev.download_tensor(&y)?.to_f32_vec(), vec![-2.0, -2.0]);
//! # Ok::<(), radiant::Error>(())
//! ```

#![warn(unsafe_op_in_unsafe_fn)]

pub mod backend;
pub mod bench;
pub mod case;
pub mod check;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod dtype;
pub mod error;
pub mod ops;
pub mod quant;
pub mod tensor;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub use backend::{Backend, DeviceInfo};
pub use device::{DeviceEntry, device, devices};
pub use dtype::DType;
pub use error::{Error, Result, Unsupported};
pub use ops::{OpKind, OpQuery};
pub use quant::{AwqWeight, Checkpoint, GptqWeight, Nvfp4Weight, QuantConfig};
pub use tensor::{Buffer, HostTensor, Tensor};
