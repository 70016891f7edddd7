//! Quantized weight formats: GPTQ, AWQ and NVFP4 — layouts, pack / quantize,
//! dequantize, checkpoint loading. The layouts, bit orders and rounding rules
//! are those of shared/QUANT_FORMATS.md, checked bit for bit against golden
//! vectors from the reference packages (tests/golden/quant).
//!
//! * Host weights ([`GptqWeight`], [`AwqWeight`], [`Nvfp4Weight`]) hold the
//!   checkpoint's tensors as [`HostTensor`]s. They are validated once, when
//!   built (shapes consistent across tensors, g_idx in range, bits, group
//!   size, scale dtypes, finite scales), so everything downstream —
//!   dequantization, upload, the kernels — can rely on the invariants.
//! * Device weights ([`DeviceGptqWeight`], ...) come from `upload`. Their
//!   fields are private: a device weight can only be made from a validated
//!   host weight, so the ops never re-validate g_idx or shapes per call.
//! * `dequantize` produces the linear-layer weight `[N, K]` in f32, f16 or
//!   bf16: the product is formed in f32 and rounded once to the output dtype,
//!   which is exactly what the packages compute.
//! * [`Checkpoint`] reads a layer by its checkpoint tensor names from a
//!   safetensors file, a sharded checkpoint directory, or in-memory bytes,
//!   with the quantization config found beside it ([`QuantConfig`]).
//!
//! NaN and Inf: constructors reject non-finite scales (and NaN E4M3 scale
//! bytes, and a non-finite or non-positive NVFP4 global scale), so no loaded
//! weight dequantizes to NaN. The scalar codecs ([`e4m3::decode`],
//! [`e2m1::decode`]) are total functions: NaN bytes decode to NaN and
//! propagate through arithmetic as IEEE says — there is no undefined
//! behaviour anywhere. A dequantized value beyond the output dtype's range
//! (e.g. an f16 scale of 60000 times 15) rounds to ±inf, as in PyTorch.

pub mod awq;
pub mod config;
pub mod e2m1;
pub mod e4m3;
pub mod gptq;
pub mod loader;
pub mod nvfp4;
pub mod pack;
mod rtn;

pub use awq::{AwqLayout, AwqQuantizeParams, AwqTensors, AwqWeight, DeviceAwqWeight};
pub use config::{AwqConfig, GptqConfig, Nvfp4Config, QuantConfig};
pub use gptq::{
    DeviceGptqWeight, GptqLayout, GptqQuantizeParams, GptqTensors, GptqWeight, ZeroFormat,
};
pub use loader::{Checkpoint, LoadedLinear, QuantLinear};
pub use nvfp4::{DeviceNvfp4Weight, GlobalScale, Nvfp4Producer, Nvfp4Tensors, Nvfp4Weight};

use half::{bf16, f16};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::MAX_ELEMENTS;
use crate::tensor::HostTensor;

/// How many input columns share one scale / zero point (GPTQ, AWQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupSize {
    /// `group_size: -1` in configs: one group spanning all of K (one scale
    /// per output channel).
    PerChannel,
    /// `group_size: c` with c > 0 (32, 64, 128 in practice).
    Columns(usize),
}

impl GroupSize {
    /// From a config value: −1 or a positive size.
    pub fn from_config(value: i64) -> Option<GroupSize> {
        match value {
            -1 => Some(GroupSize::PerChannel),
            v if v > 0 => usize::try_from(v).ok().map(GroupSize::Columns),
            _ => None,
        }
    }

    /// The config spelling (−1 for per-channel).
    pub fn to_config(self) -> i64 {
        match self {
            GroupSize::PerChannel => -1,
            GroupSize::Columns(c) => i64::try_from(c).unwrap_or(i64::MAX),
        }
    }

    /// Columns per group for an input size `k` (per-channel: `k`).
    pub fn columns(self, k: usize) -> usize {
        match self {
            GroupSize::PerChannel => k,
            GroupSize::Columns(c) => c,
        }
    }

    /// Number of groups `G = ceil(k / columns)` (0 when k = 0).
    pub fn groups(self, k: usize) -> usize {
        match self.columns(k) {
            0 => 0,
            c => k.div_ceil(c),
        }
    }

    /// Rejects `Columns(0)`, which has no meaning.
    pub(crate) fn check(self, op: &'static str) -> Result<()> {
        if self == GroupSize::Columns(0) {
            return Err(Error::invalid(op, "group_size", "must be -1 or > 0, got 0"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Shared validation and conversion helpers.

/// `t` must have one of `dtypes` and exactly `shape`.
pub(crate) fn check_host(
    op: &'static str,
    arg: &'static str,
    t: &HostTensor,
    dtypes: &[DType],
    shape: &[usize],
) -> Result<()> {
    if !dtypes.contains(&t.dtype()) {
        let names: Vec<&str> = dtypes.iter().map(|d| d.name()).collect();
        return Err(Error::invalid(
            op,
            arg,
            format!("must be {}, got {}", names.join(" or "), t.dtype()),
        ));
    }
    if t.shape() != shape {
        return Err(Error::invalid(
            op,
            arg,
            format!("must have shape {shape:?}, got {:?}", t.shape()),
        ));
    }
    Ok(())
}

/// `t` must be rank 2; returns its (rows, cols).
pub(crate) fn dims2(op: &'static str, arg: &'static str, t: &HostTensor) -> Result<(usize, usize)> {
    match *t.shape() {
        [rows, cols] => Ok((rows, cols)),
        _ => Err(Error::invalid(
            op,
            arg,
            format!("must have rank 2, got shape {:?}", t.shape()),
        )),
    }
}

/// The dequantized `[N, K]` weight must be indexable with 32 bits by every
/// backend, whatever its packed size.
pub(crate) fn check_weight_size(op: &'static str, n: usize, k: usize) -> Result<()> {
    if n == 0 || k == 0 {
        return Err(Error::invalid(
            op,
            "weight",
            format!("N = {n} and K = {k} must both be > 0"),
        ));
    }
    match n.checked_mul(k) {
        Some(nk) if nk <= MAX_ELEMENTS => Ok(()),
        _ => Err(Error::invalid(
            op,
            "weight",
            format!("N·K = {n}·{k} exceeds 2^31 - 1 elements, which kernels index with 32 bits"),
        )),
    }
}

/// An i32 tensor's words, reinterpreted as u32 (packed codes are unsigned).
pub(crate) fn words(t: &HostTensor) -> Vec<u32> {
    t.bytes()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// u32 words as an i32 tensor (the checkpoint dtype of packed words).
pub(crate) fn words_tensor(shape: &[usize], words: &[u32]) -> Result<HostTensor> {
    let bytes = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    HostTensor::from_bytes(DType::I32, shape, bytes)
}

/// A float tensor's values in f32 (exact for f32, f16 and bf16).
pub(crate) fn floats(t: &HostTensor) -> Vec<f32> {
    let b = t.bytes();
    match t.dtype() {
        DType::F16 => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => b
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => t.to_f32_vec(),
    }
}

/// Scales must be finite: a NaN or Inf scale would silently poison a whole
/// group of outputs.
pub(crate) fn check_finite(op: &'static str, arg: &'static str, values: &[f32]) -> Result<()> {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            op,
            arg,
            format!("element {i} is {}; scales must be finite", values[i]),
        ));
    }
    Ok(())
}

/// f32 values (the exact dequantized products) rounded once to `dtype`.
pub(crate) fn to_dtype(
    op: &'static str,
    dtype: DType,
    shape: &[usize],
    values: &[f32],
) -> Result<HostTensor> {
    if !dtype.is_float() {
        return Err(Error::invalid(
            op,
            "dtype",
            format!("dequantizes to f32, f16 or bf16, not {dtype}"),
        ));
    }
    HostTensor::from_f32(dtype, shape, values)
}

/// Weights to quantize: a finite float tensor `[N, K]`, returned as f32.
pub(crate) fn weights_to_quantize(
    op: &'static str,
    weight: &HostTensor,
) -> Result<(usize, usize, Vec<f32>)> {
    let (n, k) = dims2(op, "weight", weight)?;
    if !weight.dtype().is_float() {
        return Err(Error::invalid(
            op,
            "weight",
            format!("must be f32, f16 or bf16, got {}", weight.dtype()),
        ));
    }
    let values = floats(weight);
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            op,
            "weight",
            format!(
                "element {i} is {}; only finite weights can be quantized",
                values[i]
            ),
        ));
    }
    Ok((n, k, values))
}
