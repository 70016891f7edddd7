//! Backend-independent op contracts.
//!
//! Each `ops/<op>.rs` opens with the op's formula, layouts, error bound and
//! FLOP / byte counts, then provides:
//! * a params struct with defaults,
//! * `validate`, which turns user arguments into a `<Op>Problem` — every
//!   dimension derived, every dtype, shape, value range and aliasing rule
//!   checked — or a typed error naming the op, the argument and the reason,
//! * the public entry points (`<op>` allocating the output, `<op>_into`
//!   writing a caller-provided output).
//!
//! Backends receive only validated problems: they choose and launch kernels.
//! Before any launch, the entry point asks `Backend::supports` with the
//! problem's [`OpQuery`], so the capability answer and what runs can never
//! drift apart.

use std::fmt;
use std::str::FromStr;

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{Tensor, checked_numel};

pub mod attention;
pub mod awq_matmul;
pub mod fused_add_rms_norm;
pub mod gptq_matmul;
pub mod matmul;
pub mod nvfp4_matmul;
pub mod paged_attention;
pub mod rms_norm;
pub mod tolerance;

pub use attention::{AttentionParams, AttentionProblem, attention, attention_into};
pub use awq_matmul::{AwqMatmulProblem, awq_matmul, awq_matmul_into};
pub use fused_add_rms_norm::{FusedAddRmsNormProblem, fused_add_rms_norm, fused_add_rms_norm_into};
pub use gptq_matmul::{GptqMatmulProblem, gptq_matmul, gptq_matmul_into};
pub use matmul::{BLayout, MatmulParams, MatmulProblem, matmul, matmul_into};
pub use nvfp4_matmul::{Nvfp4MatmulProblem, nvfp4_matmul, nvfp4_matmul_into};
pub use paged_attention::{PagedAttentionProblem, paged_attention, paged_attention_into};
pub use rms_norm::{RmsNormParams, RmsNormProblem, rms_norm, rms_norm_into};

/// Every op radiant defines. The names are the case-file `op` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Matmul,
    RmsNorm,
    FusedAddRmsNorm,
    Attention,
    PagedAttention,
    GptqMatmul,
    AwqMatmul,
    Nvfp4Matmul,
}

impl OpKind {
    pub const ALL: [OpKind; 8] = [
        OpKind::Matmul,
        OpKind::RmsNorm,
        OpKind::FusedAddRmsNorm,
        OpKind::Attention,
        OpKind::PagedAttention,
        OpKind::GptqMatmul,
        OpKind::AwqMatmul,
        OpKind::Nvfp4Matmul,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            OpKind::Matmul => "matmul",
            OpKind::RmsNorm => "rms_norm",
            OpKind::FusedAddRmsNorm => "fused_add_rms_norm",
            OpKind::Attention => "attention",
            OpKind::PagedAttention => "paged_attention",
            OpKind::GptqMatmul => "gptq_matmul",
            OpKind::AwqMatmul => "awq_matmul",
            OpKind::Nvfp4Matmul => "nvfp4_matmul",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OpKind::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = OpKind::ALL.iter().map(|op| op.name()).collect();
                format!("unknown op `{s}` (expected one of {})", names.join(", "))
            })
    }
}

/// What a backend is asked to run: the op, the activation dtype, and the few
/// parameters that decide whether a kernel exists for it. Problems produce
/// their query with `query()`; `radiant info` builds queries directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpQuery {
    pub op: OpKind,
    pub dtype: DType,
    /// Attention head dim, when the op has one.
    pub head_dim: Option<usize>,
    /// Quantized weight bits, when the op has them.
    pub bits: Option<u32>,
}

impl OpQuery {
    pub fn new(op: OpKind, dtype: DType) -> Self {
        OpQuery {
            op,
            dtype,
            head_dim: None,
            bits: None,
        }
    }
}

/// Asks the backend whether it runs `query`; turns a refusal into an error.
pub(crate) fn ensure_supported(backend: &dyn Backend, query: &OpQuery) -> Result<()> {
    backend.supports(query).map_err(Error::Unsupported)
}

// ---------------------------------------------------------------------------
// Validation helpers shared by every op. Each returns a typed error naming the
// op and the argument.

/// `t` must be a contiguous view with an activation dtype on `backend`.
pub(crate) fn check_tensor(op: &'static str, arg: &'static str, t: &Tensor) -> Result<()> {
    if !t.is_contiguous() {
        return Err(Error::invalid(
            op,
            arg,
            format!(
                "must be contiguous (row-major), got shape {:?} strides {:?}",
                t.shape(),
                t.strides()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_rank(
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
    ranks: &[usize],
) -> Result<()> {
    if !ranks.contains(&t.rank()) {
        let want: Vec<String> = ranks.iter().map(|r| r.to_string()).collect();
        return Err(Error::invalid(
            op,
            arg,
            format!(
                "must have rank {}, got shape {:?}",
                want.join(" or "),
                t.shape()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_float(op: &'static str, arg: &'static str, t: &Tensor) -> Result<()> {
    if !t.dtype().is_float() {
        return Err(Error::invalid(
            op,
            arg,
            format!("must be f32, f16 or bf16, got {}", t.dtype()),
        ));
    }
    Ok(())
}

pub(crate) fn check_dtype(
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
    dtype: DType,
) -> Result<()> {
    if t.dtype() != dtype {
        return Err(Error::invalid(
            op,
            arg,
            format!("must be {dtype}, got {}", t.dtype()),
        ));
    }
    Ok(())
}

pub(crate) fn check_shape(
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
    shape: &[usize],
) -> Result<()> {
    if t.shape() != shape {
        return Err(Error::invalid(
            op,
            arg,
            format!("must have shape {shape:?}, got {:?}", t.shape()),
        ));
    }
    Ok(())
}

/// All tensors must live on `backend`'s device.
pub(crate) fn check_device(
    op: &'static str,
    backend: &dyn Backend,
    args: &[(&'static str, &Tensor)],
) -> Result<()> {
    for (arg, t) in args {
        if !backend.owns(t.buffer()) {
            return Err(Error::invalid(
                op,
                arg,
                format!(
                    "lives on {}, but the op runs on {}",
                    t.buffer().device(),
                    backend.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Outputs may not share a buffer with any other argument: kernels read
/// inputs while writing outputs, and wgpu forbids binding one buffer both
/// read-only and writable in a dispatch. (A buffer may be read by several
/// input arguments.)
pub(crate) fn check_no_alias(
    op: &'static str,
    outputs: &[(&'static str, &Tensor)],
    inputs: &[(&'static str, &Tensor)],
) -> Result<()> {
    for (i, (out_name, out)) in outputs.iter().enumerate() {
        let others = inputs.iter().chain(outputs[i + 1..].iter());
        for (other_name, other) in others {
            if out.buffer().id() == other.buffer().id() {
                return Err(Error::invalid(
                    op,
                    out_name,
                    format!(
                        "shares a buffer with `{other_name}`; outputs must have their own buffers"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Element counts must stay below 2^31 so that every backend (including
/// 32-bit GPU index arithmetic) addresses them safely.
pub(crate) const MAX_ELEMENTS: usize = i32::MAX as usize;

pub(crate) fn check_index_range(
    op: &'static str,
    arg: &'static str,
    shape: &[usize],
) -> Result<()> {
    if let Some(dim) = shape.iter().find(|&&d| d > MAX_ELEMENTS) {
        return Err(Error::invalid(
            op,
            arg,
            format!(
                "dimension {dim} in {shape:?} exceeds 2^31 - 1, which kernels index with 32 bits"
            ),
        ));
    }
    match checked_numel(shape) {
        Some(n) if n <= MAX_ELEMENTS => Ok(()),
        _ => Err(Error::invalid(
            op,
            arg,
            format!(
                "shape {shape:?} has more than 2^31 - 1 elements, which kernels index with 32 bits"
            ),
        )),
    }
}

/// The checks an allocating entry point runs on its inputs (named after the
/// op) before it allocates the output, so a bad shape is reported as the
/// op's argument, and never costs an allocation.
pub(crate) fn check_inputs_before_alloc(
    op: &'static str,
    inputs: &[(&'static str, &Tensor)],
    out_shape: &[usize],
) -> Result<()> {
    for (name, t) in inputs {
        check_tensor(op, name, t)?;
        check_float(op, name, t)?;
        check_index_range(op, name, t.shape())?;
    }
    check_index_range(op, "out", out_shape)
}

/// Reads a small i32 tensor (sequence offsets, block tables) to the host
/// for validation. On a GPU this is a synchronizing copy of a few bytes.
pub(crate) fn read_i32(
    backend: &dyn Backend,
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
) -> Result<Vec<i32>> {
    check_dtype(op, arg, t, DType::I32)?;
    check_tensor(op, arg, t)?;
    let host = backend.download_tensor(t)?;
    host.to_i32_vec()
        .ok_or_else(|| Error::invalid(op, arg, "must be i32"))
}
