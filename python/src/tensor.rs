//! `radiant.Tensor`: a tensor that stays on its device between calls.

use std::sync::Arc;

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use numpy::PyUntypedArray;
use radiant::cpu::memory::HostMemory;
use radiant::{Backend, Tensor};

use crate::dlpack;
use crate::host::{self, HostView, accepts_host, dtype_name, run, to_numpy};
use crate::{backend_of, open, to_py};

/// A tensor on a radiant device (see the class docstring in radiant.pyi).
///
/// Made by `radiant.tensor`, `Tensor.from_numpy`, `Tensor.from_dlpack` /
/// `radiant.from_dlpack`, `.to(device)`, or returned by an op whose main
/// input was not a numpy array.
#[pyclass(module = "radiant", name = "Tensor", frozen, weakref)]
pub struct PyTensor {
    pub tensor: Tensor,
    pub backend: Arc<dyn Backend>,
}

impl PyTensor {
    pub fn new(tensor: Tensor, backend: Arc<dyn Backend>) -> Self {
        PyTensor { tensor, backend }
    }

    fn is_host(&self) -> bool {
        HostMemory::of(self.tensor.buffer()).is_some()
    }
}

/// Copies `t` (on `from`) to a new tensor on `to`.
fn transfer(
    py: Python<'_>,
    t: &Tensor,
    from: &Arc<dyn Backend>,
    to: &Arc<dyn Backend>,
) -> PyResult<Tensor> {
    run(py, || {
        let host = from.download_tensor(t)?;
        to.upload_tensor(&host)
    })
}

/// `radiant.tensor` / `from_numpy` / `from_dlpack`: see radiant.pyi.
pub fn make(
    py: Python<'_>,
    what: &str,
    obj: &Bound<'_, PyAny>,
    device: Option<&Bound<'_, PyAny>>,
    copy: Option<bool>,
) -> PyResult<PyTensor> {
    if let Ok(src) = obj.cast::<PyTensor>() {
        let src = src.get();
        let backend = match device {
            Some(d) if !d.is_none() => backend_of(py, d)?,
            _ => src.backend.clone(),
        };
        if copy != Some(true) && backend.owns(src.tensor.buffer()) {
            return Ok(PyTensor::new(src.tensor.clone(), backend));
        }
        if copy == Some(false) {
            return Err(PyBufferError::new_err(format!(
                "{what}: copy=False, but the tensor lives on {} and the target is {}",
                src.backend.name(),
                backend.name()
            )));
        }
        let t = transfer(py, &src.tensor, &src.backend, &backend)?;
        return Ok(PyTensor::new(t, backend));
    }
    let backend = match device {
        Some(d) if !d.is_none() => backend_of(py, d)?,
        _ => open(py, "best")?,
    };
    let v: HostView = host::view(what, obj)?;
    let shareable = accepts_host(backend.as_ref()) && v.aliasable() && !v.readonly;
    if copy != Some(true) && shareable {
        let t = v.into_tensor(backend.name())?;
        return Ok(PyTensor::new(t, backend));
    }
    if copy == Some(false) {
        let why = if !accepts_host(backend.as_ref()) {
            format!(
                "the data is in host memory and {} is not a host device",
                backend.name()
            )
        } else if v.readonly {
            "the data is read-only".to_string()
        } else {
            "the data is not 4-byte aligned".to_string()
        };
        return Err(PyBufferError::new_err(format!(
            "{what}: copy=False, but the memory cannot be shared: {why}"
        )));
    }
    let h = v.copy()?;
    drop(v);
    let t = run(py, || backend.upload_tensor(&h))?;
    Ok(PyTensor::new(t, backend))
}

#[pymethods]
impl PyTensor {
    #[new]
    fn py_new() -> PyResult<Self> {
        Err(PyTypeError::new_err(
            "use radiant.tensor(data, device=...), radiant.Tensor.from_numpy or radiant.from_dlpack",
        ))
    }

    /// Tensor.from_numpy(array, device=None, copy=None) -> Tensor
    ///
    /// A numpy array (float32, float16, ml_dtypes.bfloat16, int32, uint8;
    /// C-contiguous) on `device` (default "best"). On a host device (cpu,
    /// reference) the tensor shares the array's memory when it is writable
    /// and 4-byte aligned (copy=None); copy=True always copies, copy=False
    /// raises BufferError when it cannot share.
    #[staticmethod]
    #[pyo3(signature = (array, device = None, copy = None))]
    fn from_numpy(
        py: Python<'_>,
        array: &Bound<'_, PyAny>,
        device: Option<&Bound<'_, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Self> {
        if array.cast::<PyUntypedArray>().is_err() {
            return Err(PyTypeError::new_err(format!(
                "Tensor.from_numpy: expected a numpy.ndarray, got {}",
                array.get_type().name()?
            )));
        }
        make(py, "Tensor.from_numpy", array, device, copy)
    }

    /// Tensor.from_dlpack(obj, device=None, copy=None) -> Tensor
    ///
    /// Any object with `__dlpack__` (torch, numpy, jax, cupy, a
    /// radiant.Tensor) or a DLPack capsule. Host memory is shared on a host
    /// device (as in `from_numpy`); GPU memory is refused with BufferError
    /// (zero-copy CUDA import is not implemented: pass `t.cpu()`).
    #[staticmethod]
    #[pyo3(signature = (obj, device = None, copy = None))]
    fn from_dlpack(
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        device: Option<&Bound<'_, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Self> {
        make(py, "Tensor.from_dlpack", obj, device, copy)
    }

    /// The shape, a tuple of ints.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.tensor.shape())
    }

    /// The dtype name: float32, float16, bfloat16, int32, uint8 or float8_e4m3fn.
    #[getter]
    fn dtype(&self) -> &'static str {
        dtype_name(self.tensor.dtype())
    }

    /// The device name (cpu, reference, cuda:0, wgpu:0, ...).
    #[getter]
    fn device(&self) -> String {
        self.backend.name().to_string()
    }

    #[getter]
    fn ndim(&self) -> usize {
        self.tensor.rank()
    }

    /// Bytes of the elements.
    #[getter]
    fn nbytes(&self) -> usize {
        self.tensor.byte_len()
    }

    /// A numpy copy of the tensor (bfloat16 needs ml_dtypes; float8_e4m3fn
    /// comes back as its uint8 bytes).
    fn numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let h = run(py, || self.backend.download_tensor(&self.tensor))?;
        to_numpy(py, &h)
    }

    /// The tensor on `device`: itself when it is already there, the same
    /// memory when both are host devices (cpu, reference), else a copy.
    fn to(slf: &Bound<'_, Self>, device: &Bound<'_, PyAny>) -> PyResult<Py<PyTensor>> {
        let py = slf.py();
        let me = slf.get();
        let target = backend_of(py, device)?;
        if target.name() == me.backend.name() {
            return Ok(slf.clone().unbind());
        }
        let t = if target.owns(me.tensor.buffer()) {
            me.tensor.clone()
        } else {
            transfer(py, &me.tensor, &me.backend, &target)?
        };
        Py::new(py, PyTensor::new(t, target))
    }

    /// DLPack export. Host tensors are shared without copying (the capsule
    /// keeps the memory alive); `stream` is accepted and ignored (radiant's
    /// host results are complete when an op returns). A GPU tensor is
    /// exported only as a host copy, when `dl_device=(1, 0)` (kDLCPU) is
    /// asked for. `max_version=(1, x)` gives a versioned capsule.
    #[pyo3(signature = (stream = None, *, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<&Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = stream;
        let version = match max_version {
            Some((major, minor)) if major >= 1 => Some(if major > 1 { u32::MAX } else { minor }),
            _ => None,
        };
        let wants_host = match dl_device {
            None => false,
            Some((dlpack::K_DL_CPU, _)) => true,
            Some(d) if d == self.dl_device() => false,
            Some((ty, id)) => {
                return Err(PyBufferError::new_err(format!(
                    "radiant.Tensor.__dlpack__: cannot export to DLPack device ({ty}, {id}); \
                     the tensor is on {}",
                    self.backend.name()
                )));
            }
        };
        let must_copy = copy == Some(true) || (wants_host && !self.is_host());
        if !self.is_host() && !wants_host {
            return Err(PyBufferError::new_err(format!(
                "radiant.Tensor.__dlpack__: the tensor lives on {}; DLPack export of GPU memory is \
                 not implemented: ask for a host copy (dl_device=(1, 0)) or use .to(\"cpu\") / .numpy()",
                self.backend.name()
            )));
        }
        if must_copy {
            if copy == Some(false) {
                return Err(PyBufferError::new_err(
                    "radiant.Tensor.__dlpack__: copy=False, but the tensor is not in host memory",
                ));
            }
            let host = run(py, || self.backend.download_tensor(&self.tensor))?;
            let buffer = HostMemory::alloc("cpu", host.bytes().len()).map_err(to_py)?;
            radiant::cpu::memory::upload(&buffer, 0, host.bytes()).map_err(to_py)?;
            let t = Tensor::from_buffer(buffer, host.dtype(), host.shape(), 0).map_err(to_py)?;
            return dlpack::export(py, &t, version, true);
        }
        dlpack::export(py, &self.tensor, version, false)
    }

    /// (device_type, device_id): (1, 0) kDLCPU for host tensors, (2, N)
    /// kDLCUDA for cuda:N, (15, N) kDLWebGPU for wgpu:N.
    fn __dlpack_device__(&self) -> (i32, i32) {
        self.dl_device()
    }

    /// numpy.asarray(tensor): a copy (copy=False raises ValueError).
    #[pyo3(signature = (dtype = None, copy = None))]
    fn __array__<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&Bound<'py, PyAny>>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if copy == Some(false) {
            return Err(PyValueError::new_err(
                "radiant.Tensor: numpy.asarray(copy=False) is not supported; use numpy.from_dlpack",
            ));
        }
        let arr = self.numpy(py)?;
        match dtype {
            Some(d) if !d.is_none() => arr.call_method1("astype", (d,)),
            _ => Ok(arr),
        }
    }

    fn __len__(&self) -> PyResult<usize> {
        self.tensor
            .shape()
            .first()
            .copied()
            .ok_or_else(|| PyTypeError::new_err("len() of a 0-d radiant.Tensor"))
    }

    fn __repr__(&self) -> String {
        let dims: Vec<String> = self.tensor.shape().iter().map(|d| d.to_string()).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        format!(
            "radiant.Tensor(shape={shape}, dtype={}, device='{}')",
            dtype_name(self.tensor.dtype()),
            self.backend.name()
        )
    }
}

impl PyTensor {
    fn dl_device(&self) -> (i32, i32) {
        if self.is_host() {
            return (dlpack::K_DL_CPU, 0);
        }
        let name = self.backend.name();
        let (family, index) = name.split_once(':').unwrap_or((name, "0"));
        let id = index.parse().unwrap_or(0);
        match family {
            "cuda" => (dlpack::K_DL_CUDA, id),
            "rocm" => (dlpack::K_DL_ROCM, id),
            "wgpu" => (dlpack::K_DL_WEBGPU, id),
            _ => (dlpack::K_DL_CPU, 0),
        }
    }
}
