//! Array arguments: numpy arrays, `radiant.Tensor`s and DLPack producers,
//! turned into radiant tensors on the op's device.
//!
//! * A `radiant.Tensor` is used where it lives; it must live on the op's
//!   device (host tensors are shared by `cpu` and `reference`).
//! * Host memory (a numpy array, or a DLPack tensor on `kDLCPU`) is aliased,
//!   not copied, when the device keeps its buffers in host memory (`cpu`,
//!   `reference`) and the memory is aligned to 4 bytes
//!   ([`radiant::cpu::memory::EXTERNAL_ALIGN`]); otherwise it is copied (and
//!   uploaded to a GPU device). Arguments an op writes (the residual of
//!   `fused_add_rms_norm`) are always copied unless they are
//!   `radiant.Tensor`s.

use std::any::Any;
use std::sync::Arc;

use half::f16;
use numpy::{PyArray1, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use radiant::cpu::memory::{EXTERNAL_ALIGN, HostMemory};
use radiant::{Backend, DType, Error, HostTensor, Tensor};

use crate::tensor::PyTensor;
use crate::{dlpack, to_py};

/// Host memory someone else owns (a numpy array, a DLPack producer),
/// described but not copied. `owner` keeps it alive.
pub struct HostView {
    /// Null when `len` is 0.
    pub ptr: *mut u8,
    pub len: usize,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The producer marked the memory read-only.
    pub readonly: bool,
    pub owner: Box<dyn Any + Send>,
}

impl HostView {
    /// A C-contiguous numpy array in native byte order.
    pub fn from_numpy(what: &str, arr: &Bound<'_, PyUntypedArray>) -> PyResult<HostView> {
        let py = arr.py();
        if !arr.is_c_contiguous() {
            return Err(PyValueError::new_err(format!(
                "{what}: must be C-contiguous (use numpy.ascontiguousarray)"
            )));
        }
        let dt = arr.dtype();
        if !dt.is_native_byteorder().unwrap_or(true) {
            return Err(PyValueError::new_err(format!(
                "{what}: must be in native byte order"
            )));
        }
        let dtype = if dt.is_equiv_to(&numpy::dtype::<f32>(py)) {
            DType::F32
        } else if dt.is_equiv_to(&numpy::dtype::<f16>(py)) {
            DType::F16
        } else if dt.is_equiv_to(&numpy::dtype::<i32>(py)) {
            DType::I32
        } else if dt.is_equiv_to(&numpy::dtype::<u8>(py)) {
            DType::U8
        } else if dt.itemsize() == 2 && dt.getattr("name")?.extract::<String>()? == "bfloat16" {
            // ml_dtypes.bfloat16: the same bytes as radiant's bf16.
            DType::BF16
        } else {
            return Err(PyTypeError::new_err(format!(
                "{what}: unsupported dtype {} (radiant takes float32, float16 and ml_dtypes.bfloat16 \
                 activations, int32 offsets / tables, uint8 packed weights)",
                dt.str()?
            )));
        };
        let shape = arr.shape().to_vec();
        let len = radiant::tensor::checked_numel(&shape)
            .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
            .ok_or_else(|| PyValueError::new_err(format!("{what}: shape {shape:?} overflows")))?;
        // SAFETY: `arr` is a live numpy array (we hold a reference); its
        // `data` field is the address of its first element.
        let data = unsafe { (*numpy::npyffi::_PyArray_GET_ITEM_DATA(arr.as_array_ptr())).data }
            .cast::<u8>();
        let writeable: bool = arr.getattr("flags")?.getattr("writeable")?.extract()?;
        Ok(HostView {
            ptr: if len == 0 { std::ptr::null_mut() } else { data },
            len,
            dtype,
            shape,
            readonly: !writeable,
            owner: Box::new(arr.clone().into_any().unbind()),
        })
    }

    /// The bytes, copied.
    pub fn copy(&self) -> PyResult<HostTensor> {
        let bytes = if self.len == 0 {
            Vec::new()
        } else {
            // SAFETY: the producer (kept alive by `owner`) guarantees `len`
            // readable bytes at `ptr`; the GIL is held, so no Python code
            // writes them during the copy.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec()
        };
        HostTensor::from_bytes(self.dtype, &self.shape, bytes).map_err(to_py)
    }

    /// Whether the memory can be aliased by a host buffer.
    pub fn aliasable(&self) -> bool {
        (self.ptr as usize).is_multiple_of(EXTERNAL_ALIGN)
    }

    /// A tensor of device `device` (a host backend) aliasing this memory.
    pub fn into_tensor(self, device: &str) -> PyResult<Tensor> {
        let HostView {
            ptr,
            len,
            dtype,
            shape,
            owner,
            ..
        } = self;
        // SAFETY: the producer keeps `len` bytes at `ptr` allocated and
        // valid while `owner` (a reference to the numpy array, or the
        // consumed DLPack managed tensor, whose deleter runs on drop) lives,
        // and the buffer keeps `owner`. Writes happen only when the tensor
        // is passed as an op's output or in-place argument, which the
        // binding does only for memory that is not read-only. Concurrent
        // access from outside radiant during an op is the caller's
        // responsibility, as with any DLPack consumer (documented).
        let buffer =
            unsafe { HostMemory::from_external(device, ptr, len, owner) }.map_err(to_py)?;
        Tensor::from_buffer(buffer, dtype, &shape, 0).map_err(to_py)
    }
}

/// Whether `backend` keeps its buffers in host memory (`cpu`, `reference`).
pub fn accepts_host(backend: &dyn Backend) -> bool {
    HostMemory::alloc("probe", 0).is_ok_and(|b| backend.owns(&b))
}

/// A converted array argument.
pub enum Arg {
    /// Host bytes to upload to the device.
    Host(HostTensor),
    /// Already on the device (a radiant.Tensor or aliased host memory).
    Dev(Tensor),
}

impl Arg {
    /// The argument as a tensor of `backend` (uploading host bytes).
    pub fn on(&self, backend: &dyn Backend) -> radiant::Result<Tensor> {
        match self {
            Arg::Host(h) => backend.upload_tensor(h),
            Arg::Dev(t) => Ok(t.clone()),
        }
    }
}

/// Describes host data from numpy or DLPack (no copy yet).
pub fn view(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<HostView> {
    if let Ok(arr) = obj.cast::<PyUntypedArray>() {
        return HostView::from_numpy(what, arr);
    }
    if obj.hasattr("__dlpack__")? || obj.cast::<pyo3::types::PyCapsule>().is_ok() {
        return dlpack::import(what, obj);
    }
    Err(PyTypeError::new_err(format!(
        "{what}: must be a numpy.ndarray, a radiant.Tensor or an object with __dlpack__, got {}",
        obj.get_type().name()?
    )))
}

/// Converts array argument `arg` of `op` for a call on `backend`. `written`:
/// the op writes it (host data is then always copied).
pub fn arg(
    op: &str,
    name: &str,
    obj: &Bound<'_, PyAny>,
    backend: &Arc<dyn Backend>,
    written: bool,
) -> PyResult<Arg> {
    let what = format!("{op}: invalid argument `{name}`");
    if let Ok(t) = obj.cast::<PyTensor>() {
        let t = t.get();
        if !backend.owns(t.tensor.buffer()) {
            return Err(PyValueError::new_err(format!(
                "{what}: the radiant.Tensor lives on {}, the op runs on {}: move it with .to({:?})",
                t.backend.name(),
                backend.name(),
                backend.name()
            )));
        }
        return Ok(Arg::Dev(t.tensor.clone()));
    }
    let v = view(&what, obj)?;
    if !written && v.aliasable() && accepts_host(backend.as_ref()) {
        return Ok(Arg::Dev(v.into_tensor(backend.name())?));
    }
    Ok(Arg::Host(v.copy()?))
}

/// `arg` for an optional argument (None stays None).
pub fn arg_opt(
    op: &str,
    name: &str,
    obj: Option<&Bound<'_, PyAny>>,
    backend: &Arc<dyn Backend>,
) -> PyResult<Option<Arg>> {
    match obj {
        Some(o) if !o.is_none() => arg(op, name, o, backend, false).map(Some),
        _ => Ok(None),
    }
}

pub fn on_opt(a: &Option<Arg>, backend: &dyn Backend) -> radiant::Result<Option<Tensor>> {
    a.as_ref().map(|a| a.on(backend)).transpose()
}

/// Copies an array argument into a host tensor (numpy, DLPack or a
/// radiant.Tensor, which is downloaded).
pub fn host(op: &str, name: &str, obj: &Bound<'_, PyAny>) -> PyResult<HostTensor> {
    if let Ok(t) = obj.cast::<PyTensor>() {
        let t = t.get();
        return obj
            .py()
            .detach(|| t.backend.download_tensor(&t.tensor))
            .map_err(to_py);
    }
    view(&format!("{op}: invalid argument `{name}`"), obj)?.copy()
}

pub fn host_opt(
    op: &str,
    name: &str,
    obj: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<HostTensor>> {
    match obj {
        Some(o) if !o.is_none() => host(op, name, o).map(Some),
        _ => Ok(None),
    }
}

/// The numpy name of a radiant dtype.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::I32 => "int32",
        DType::U8 => "uint8",
        DType::F8E4M3 => "float8_e4m3fn",
    }
}

/// A float dtype from a name ("float32", "f16", "bfloat16", ...) or a numpy
/// dtype / type (`np.float16`, `ml_dtypes.bfloat16`).
pub fn float_dtype(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<DType> {
    let name: String = match obj.extract::<String>() {
        Ok(s) => s,
        Err(_) => {
            let np = obj.py().import("numpy")?;
            np.call_method1("dtype", (obj,))
                .and_then(|d| d.getattr("name"))
                .and_then(|n| n.extract())
                .map_err(|_| PyTypeError::new_err(format!("{what}: not a dtype: {obj}")))?
        }
    };
    match name.as_str() {
        "float32" | "f32" => Ok(DType::F32),
        "float16" | "f16" | "half" => Ok(DType::F16),
        "bfloat16" | "bf16" => Ok(DType::BF16),
        other => Err(PyValueError::new_err(format!(
            "{what}: expected float32, float16 or bfloat16, got {other:?}"
        ))),
    }
}

/// A host tensor as a new numpy array (bf16 needs ml_dtypes; f8e4m3 bytes
/// come back as uint8).
pub fn to_numpy<'py>(py: Python<'py>, t: &HostTensor) -> PyResult<Bound<'py, PyAny>> {
    let shape = t.shape().to_vec();
    let bytes = t.bytes();
    let arr = match t.dtype() {
        DType::F32 => {
            let v: Vec<f32> = bytemuck::pod_collect_to_vec(bytes);
            PyArray1::from_vec(py, v).reshape(shape)?.into_any()
        }
        DType::F16 => {
            let v: Vec<f16> = bytemuck::pod_collect_to_vec(bytes);
            PyArray1::from_vec(py, v).reshape(shape)?.into_any()
        }
        DType::I32 => {
            let v: Vec<i32> = bytemuck::pod_collect_to_vec(bytes);
            PyArray1::from_vec(py, v).reshape(shape)?.into_any()
        }
        DType::U8 | DType::F8E4M3 => PyArray1::from_vec(py, bytes.to_vec())
            .reshape(shape)?
            .into_any(),
        DType::BF16 => {
            let bf16 = py
                .import("ml_dtypes")
                .map_err(|_| {
                    PyTypeError::new_err(
                        "a bfloat16 result needs the ml_dtypes package (numpy has no bfloat16): pip install ml_dtypes",
                    )
                })?
                .getattr("bfloat16")?;
            let v: Vec<u16> = bytemuck::pod_collect_to_vec(bytes);
            PyArray1::from_vec(py, v)
                .reshape(shape)?
                .call_method1("view", (bf16,))?
        }
    };
    Ok(arr)
}

/// Runs `f` without the GIL and maps radiant errors to Python exceptions.
pub fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
    py.detach(f).map_err(to_py)
}
