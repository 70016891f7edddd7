//! Buffers and tensors.
//!
//! * [`Buffer`]: untyped device memory owned by one backend. Cloning shares it.
//! * [`Tensor`]: a view into a buffer: dtype, shape, strides and an element
//!   offset. Views are cheap to clone and are what ops take and produce.
//! * [`HostTensor`]: an owned, contiguous, row-major tensor in host memory,
//!   the unit of upload, download, case files and golden vectors.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use half::{bf16, f16};

use crate::dtype::DType;
use crate::error::{Error, Result};

/// Untyped device memory. The backend that allocated it decides what
/// `memory` is (host bytes, a CUDA allocation, a wgpu buffer) and downcasts it
/// back when an op runs; a buffer from another backend is rejected with a
/// typed error instead of being misread.
#[derive(Clone)]
pub struct Buffer {
    id: u64,
    len_bytes: usize,
    device: Arc<str>,
    memory: Arc<dyn Any + Send + Sync>,
}

impl Buffer {
    /// Wraps backend memory. Called by backends' `alloc`.
    pub fn new(device: &str, len_bytes: usize, memory: Arc<dyn Any + Send + Sync>) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Buffer {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            len_bytes,
            device: device.into(),
            memory,
        }
    }

    /// A process-unique identity, used to detect aliasing between arguments.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    /// Name of the device that allocated the buffer (e.g. `cpu`, `cuda:0`).
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The backend-specific memory, if it is of type `T`.
    pub fn memory<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.memory.downcast_ref::<T>()
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("id", &self.id)
            .field("device", &self.device)
            .field("len_bytes", &self.len_bytes)
            .finish()
    }
}

/// Number of elements of `shape`, or `None` if the product overflows usize.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Row-major (C-order) strides for `shape`, in elements.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1usize;
    for (stride, &dim) in strides.iter_mut().zip(shape).rev() {
        *stride = acc;
        acc = acc.saturating_mul(dim);
    }
    strides
}

/// A typed view into a [`Buffer`].
///
/// Strides and the offset are in elements. Ops currently require row-major
/// contiguous views (checked, never assumed); the strides exist so that views
/// built by engines (a slice of a larger arena) can be described and checked.
#[derive(Clone)]
pub struct Tensor {
    buffer: Buffer,
    dtype: DType,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

impl Tensor {
    /// A contiguous view of `shape` starting `offset` elements into `buffer`.
    /// Fails if the view does not fit in the buffer.
    pub fn from_buffer(
        buffer: Buffer,
        dtype: DType,
        shape: &[usize],
        offset: usize,
    ) -> Result<Self> {
        let strides = contiguous_strides(shape);
        Self::from_buffer_strided(buffer, dtype, shape, &strides, offset)
    }

    /// A strided view. Fails if any addressed element lies outside the buffer.
    pub fn from_buffer_strided(
        buffer: Buffer,
        dtype: DType,
        shape: &[usize],
        strides: &[usize],
        offset: usize,
    ) -> Result<Self> {
        if shape.len() != strides.len() {
            return Err(Error::invalid(
                "tensor",
                "strides",
                format!("{} strides for a rank-{} shape", strides.len(), shape.len()),
            ));
        }
        // Element and byte counts must be representable (a stride-0 view of
        // a huge shape addresses few bytes but still has numel elements).
        if checked_numel(shape)
            .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
            .is_none()
        {
            return Err(Error::invalid(
                "tensor",
                "shape",
                format!("the element count of {shape:?} overflows usize"),
            ));
        }
        let end = span_end_bytes(dtype, shape, strides, offset).ok_or_else(|| {
            Error::invalid(
                "tensor",
                "shape",
                format!("the view {shape:?} overflows usize"),
            )
        })?;
        if end > buffer.len_bytes() {
            return Err(Error::invalid(
                "tensor",
                "shape",
                format!(
                    "a {dtype} view {shape:?} at element offset {offset} needs {end} bytes, the buffer has {}",
                    buffer.len_bytes()
                ),
            ));
        }
        Ok(Tensor {
            buffer,
            dtype,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset,
        })
    }

    pub fn buffer(&self) -> &Buffer {
        &self.buffer
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    /// Offset of the first element, in elements.
    pub fn offset(&self) -> usize {
        self.offset
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        // Cannot overflow: checked at construction.
        self.shape.iter().product()
    }
    /// Offset of the first element, in bytes.
    pub fn byte_offset(&self) -> usize {
        self.offset * self.dtype.size_in_bytes()
    }
    /// Bytes covered by a contiguous view.
    pub fn byte_len(&self) -> usize {
        self.numel() * self.dtype.size_in_bytes()
    }
    /// True when the view is row-major with no gaps (any size-1 dim may have
    /// any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&dim, &stride) in self.shape.iter().zip(&self.strides).rev() {
            if dim != 1 && stride != expected {
                return false;
            }
            expected *= dim;
        }
        true
    }

    /// The same elements with another shape (contiguous views only).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if !self.is_contiguous() {
            return Err(Error::invalid("reshape", "self", "view is not contiguous"));
        }
        if checked_numel(shape) != Some(self.numel()) {
            return Err(Error::invalid(
                "reshape",
                "shape",
                format!(
                    "{shape:?} does not hold the {} elements of {:?}",
                    self.numel(),
                    self.shape
                ),
            ));
        }
        Tensor::from_buffer(self.buffer.clone(), self.dtype, shape, self.offset)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({} {:?} on {}, offset {}",
            self.dtype,
            self.shape,
            self.buffer.device(),
            self.offset
        )?;
        if !self.is_contiguous() {
            write!(f, ", strides {:?}", self.strides)?;
        }
        write!(f, ")")
    }
}

/// One past the last byte a view addresses, or `None` on overflow.
fn span_end_bytes(
    dtype: DType,
    shape: &[usize],
    strides: &[usize],
    offset: usize,
) -> Option<usize> {
    if shape.contains(&0) {
        return offset.checked_mul(dtype.size_in_bytes());
    }
    let mut last = offset;
    for (&dim, &stride) in shape.iter().zip(strides) {
        last = last.checked_add((dim - 1).checked_mul(stride)?)?;
    }
    last.checked_add(1)?.checked_mul(dtype.size_in_bytes())
}

/// An owned, contiguous, row-major tensor in host memory (little-endian
/// bytes, the same layout as safetensors).
#[derive(Clone, PartialEq)]
pub struct HostTensor {
    dtype: DType,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl HostTensor {
    /// From raw little-endian bytes. Fails if the length does not match.
    pub fn from_bytes(dtype: DType, shape: &[usize], bytes: Vec<u8>) -> Result<Self> {
        let expected = checked_numel(shape)
            .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
            .ok_or_else(|| {
                Error::invalid("host tensor", "shape", format!("{shape:?} overflows usize"))
            })?;
        if bytes.len() != expected {
            return Err(Error::invalid(
                "host tensor",
                "bytes",
                format!(
                    "{} bytes for a {dtype} tensor {shape:?}, expected {expected}",
                    bytes.len()
                ),
            ));
        }
        Ok(HostTensor {
            dtype,
            shape: shape.to_vec(),
            bytes,
        })
    }

    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Self> {
        let len = checked_numel(shape)
            .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
            .ok_or_else(|| {
                Error::invalid("host tensor", "shape", format!("{shape:?} overflows usize"))
            })?;
        Self::from_bytes(dtype, shape, vec![0; len])
    }

    /// A float tensor of `dtype` holding `values` rounded to nearest even.
    /// `dtype` must be f32, f16 or bf16.
    pub fn from_f32(dtype: DType, shape: &[usize], values: &[f32]) -> Result<Self> {
        let bytes = match dtype {
            DType::F32 => bytemuck::cast_slice::<f32, u8>(values).to_vec(),
            DType::F16 => values
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                .collect(),
            DType::BF16 => values
                .iter()
                .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
                .collect(),
            other => {
                return Err(Error::invalid(
                    "host tensor",
                    "dtype",
                    format!("from_f32 builds float tensors, not {other}"),
                ));
            }
        };
        Self::from_bytes(dtype, shape, bytes)
    }

    /// Like [`HostTensor::from_f32`], rounding from f64 once.
    pub fn from_f64(dtype: DType, shape: &[usize], values: &[f64]) -> Result<Self> {
        let bytes = match dtype {
            DType::F32 => values
                .iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect(),
            DType::F16 => values
                .iter()
                .flat_map(|&v| crate::dtype::f16_from_f64(v).to_le_bytes())
                .collect(),
            DType::BF16 => values
                .iter()
                .flat_map(|&v| crate::dtype::bf16_from_f64(v).to_le_bytes())
                .collect(),
            other => {
                return Err(Error::invalid(
                    "host tensor",
                    "dtype",
                    format!("from_f64 builds float tensors, not {other}"),
                ));
            }
        };
        Self::from_bytes(dtype, shape, bytes)
    }

    pub fn from_i32(shape: &[usize], values: &[i32]) -> Result<Self> {
        Self::from_bytes(
            DType::I32,
            shape,
            bytemuck::cast_slice::<i32, u8>(values).to_vec(),
        )
    }

    pub fn from_u8(dtype: DType, shape: &[usize], values: Vec<u8>) -> Result<Self> {
        if dtype.size_in_bytes() != 1 {
            return Err(Error::invalid(
                "host tensor",
                "dtype",
                format!("{dtype} is not a byte type"),
            ));
        }
        Self::from_bytes(dtype, shape, values)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The same bytes with another shape of equal element count.
    pub fn reshape(self, shape: &[usize]) -> Result<Self> {
        Self::from_bytes(self.dtype, shape, self.bytes)
    }

    /// The values widened to f64 (exact for every float dtype); i32 and u8
    /// are converted as integers, E4M3 bytes are decoded.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let b = &self.bytes;
        match self.dtype {
            DType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            DType::F16 => b
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            DType::BF16 => b
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            DType::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            DType::U8 => b.iter().map(|&v| v as f64).collect(),
            DType::F8E4M3 => b
                .iter()
                .map(|&v| crate::quant::e4m3::decode(v) as f64)
                .collect(),
        }
    }

    /// The values as f32 (see [`HostTensor::to_f64_vec`]).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        self.to_f64_vec().into_iter().map(|v| v as f32).collect()
    }

    /// The values of an i32 tensor, or `None` for another dtype.
    pub fn to_i32_vec(&self) -> Option<Vec<i32>> {
        (self.dtype == DType::I32).then(|| {
            self.bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    /// Re-encodes a float tensor in another float dtype (round to nearest).
    pub fn to_dtype(&self, dtype: DType) -> Result<HostTensor> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        if !self.dtype.is_float() {
            return Err(Error::invalid(
                "host tensor",
                "dtype",
                format!("cannot convert {} to {dtype}", self.dtype),
            ));
        }
        HostTensor::from_f64(dtype, &self.shape, &self.to_f64_vec())
    }
}

impl fmt::Debug for HostTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostTensor({} {:?})", self.dtype, self.shape)
    }
}
