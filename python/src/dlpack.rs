//! DLPack (<https://dmlc.github.io/dlpack/latest/>): the C structs, the
//! consumer side (`from_dlpack`: a capsule from any producer's `__dlpack__`)
//! and the producer side (`radiant.Tensor.__dlpack__`).
//!
//! The structs are written here from the DLPack 1.x header (`dlpack.h`),
//! both the legacy `DLManagedTensor` (capsule name `"dltensor"`) and the
//! versioned `DLManagedTensorVersioned` (`"dltensor_versioned"`); their
//! layout is part of the DLPack ABI and must not change.
//!
//! Consumer. A capsule is consumed by renaming it to `"used_dltensor"` /
//! `"used_dltensor_versioned"`; from then on radiant owns the managed tensor
//! and calls its deleter exactly once, when the last radiant buffer using the
//! memory is dropped (or at once, if the tensor is rejected). A capsule with
//! a major version other than 1 is not consumed (its own destructor frees
//! it). Only host-accessible memory is imported (`kDLCPU`, `kDLCUDAHost`,
//! `kDLROCMHost`); GPU memory (`kDLCUDA`, ...) is refused with a
//! `BufferError` before the producer's `__dlpack__` is even called: radiant
//! cannot wrap a foreign device pointer as one of its own device buffers, so
//! the caller must hand over a host copy (`t.cpu()`).
//!
//! Producer. A host tensor is exported without copying: the managed tensor's
//! context holds a clone of the radiant buffer, so the memory lives until
//! the consumer calls the deleter (or until the capsule is destroyed
//! unconsumed). A tensor on a GPU backend is exported only as a host copy,
//! when the consumer asks for `dl_device=(kDLCPU, 0)`.

use std::any::Any;
use std::ffi::{CStr, c_void};

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict};

use radiant::DType;
use radiant::cpu::memory::HostMemory;
use radiant::tensor::Tensor;

use crate::host::HostView;

// ---------------------------------------------------------------------------
// The ABI (dlpack.h, DLPack 1.x).

pub const K_DL_CPU: i32 = 1;
pub const K_DL_CUDA: i32 = 2;
pub const K_DL_CUDA_HOST: i32 = 3;
pub const K_DL_ROCM: i32 = 10;
pub const K_DL_ROCM_HOST: i32 = 11;
pub const K_DL_WEBGPU: i32 = 15;

const K_DL_INT: u8 = 0;
const K_DL_UINT: u8 = 1;
const K_DL_FLOAT: u8 = 2;
const K_DL_BFLOAT: u8 = 4;
const K_DL_FLOAT8_E4M3FN: u8 = 10;

const FLAG_READ_ONLY: u64 = 1 << 0;
const FLAG_IS_COPIED: u64 = 1 << 1;

/// The DLPack major version these structs implement.
const MAJOR: u32 = 1;
/// The newest minor version whose enum values this file knows.
const MINOR: u32 = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDevice {
    pub device_type: i32,
    pub device_id: i32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDataType {
    pub code: u8,
    pub bits: u8,
    pub lanes: u16,
}

#[repr(C)]
#[derive(Debug)]
pub struct DLTensor {
    pub data: *mut c_void,
    pub device: DLDevice,
    pub ndim: i32,
    pub dtype: DLDataType,
    pub shape: *mut i64,
    pub strides: *mut i64,
    pub byte_offset: u64,
}

#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensor {
    pub dl_tensor: DLTensor,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLPackVersion {
    pub major: u32,
    pub minor: u32,
}

#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensorVersioned {
    pub version: DLPackVersion,
    pub manager_ctx: *mut c_void,
    pub deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    pub flags: u64,
    pub dl_tensor: DLTensor,
}

const LEGACY: &CStr = c"dltensor";
const LEGACY_USED: &CStr = c"used_dltensor";
const VERSIONED: &CStr = c"dltensor_versioned";
const VERSIONED_USED: &CStr = c"used_dltensor_versioned";

fn dl_dtype(dtype: DType) -> DLDataType {
    let (code, bits) = match dtype {
        DType::F32 => (K_DL_FLOAT, 32),
        DType::F16 => (K_DL_FLOAT, 16),
        DType::BF16 => (K_DL_BFLOAT, 16),
        DType::I32 => (K_DL_INT, 32),
        DType::U8 => (K_DL_UINT, 8),
        DType::F8E4M3 => (K_DL_FLOAT8_E4M3FN, 8),
    };
    DLDataType {
        code,
        bits,
        lanes: 1,
    }
}

fn radiant_dtype(dt: DLDataType) -> Option<DType> {
    if dt.lanes != 1 {
        return None;
    }
    Some(match (dt.code, dt.bits) {
        (K_DL_FLOAT, 32) => DType::F32,
        (K_DL_FLOAT, 16) => DType::F16,
        (K_DL_BFLOAT, 16) => DType::BF16,
        (K_DL_INT, 32) => DType::I32,
        (K_DL_UINT, 8) => DType::U8,
        (K_DL_FLOAT8_E4M3FN, 8) => DType::F8E4M3,
        _ => return None,
    })
}

/// Host-accessible DLPack device types.
fn is_host_device(device_type: i32) -> bool {
    matches!(device_type, K_DL_CPU | K_DL_CUDA_HOST | K_DL_ROCM_HOST)
}

fn device_name(device_type: i32) -> &'static str {
    match device_type {
        K_DL_CPU => "kDLCPU",
        K_DL_CUDA => "kDLCUDA",
        K_DL_CUDA_HOST => "kDLCUDAHost",
        4 => "kDLOpenCL",
        7 => "kDLVulkan",
        8 => "kDLMetal",
        K_DL_ROCM => "kDLROCM",
        K_DL_ROCM_HOST => "kDLROCMHost",
        13 => "kDLCUDAManaged",
        14 => "kDLOneAPI",
        K_DL_WEBGPU => "kDLWebGPU",
        _ => "an unknown device type",
    }
}

// ---------------------------------------------------------------------------
// Consumer.

/// A consumed managed tensor: calls the producer's deleter exactly once, on
/// drop.
struct Managed {
    ptr: *mut c_void,
    versioned: bool,
}

// SAFETY: the DLPack Python specification lets the consumer call the deleter
// from any thread; producers that need the GIL take it themselves, and
// `drop` attaches to the interpreter anyway. The pointer is not otherwise
// used after construction (the `HostView` copied what it needed).
unsafe impl Send for Managed {}

impl Drop for Managed {
    fn drop(&mut self) {
        let (ptr, versioned) = (self.ptr, self.versioned);
        let call = move || {
            // SAFETY: `ptr` is the managed tensor of a capsule this process
            // renamed to "used_*": nobody else calls its deleter, and `drop`
            // runs once.
            unsafe {
                if versioned {
                    let m = ptr.cast::<DLManagedTensorVersioned>();
                    if let Some(deleter) = (*m).deleter {
                        deleter(m);
                    }
                } else {
                    let m = ptr.cast::<DLManagedTensor>();
                    if let Some(deleter) = (*m).deleter {
                        deleter(m);
                    }
                }
            }
        };
        // Call it with the GIL held (safe for every producer). While the
        // interpreter shuts down the producer may be gone: leak instead.
        let _ = Python::try_attach(|_| call());
    }
}

/// Why `consume` refused, before or after the capsule was consumed.
fn buffer_error(msg: impl Into<String>) -> PyErr {
    PyBufferError::new_err(msg.into())
}

/// Asks `obj` for a DLPack capsule: `__dlpack__(max_version=(1, 1))`,
/// falling back to the legacy `__dlpack__()` for producers that predate
/// versioning. A capsule passed directly is used as is.
fn capsule_of<'py>(what: &str, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if obj.cast::<PyCapsule>().is_ok() {
        return Ok(obj.clone());
    }
    if !obj.hasattr("__dlpack__")? {
        return Err(PyTypeError::new_err(format!(
            "{what}: must be a numpy.ndarray, a radiant.Tensor or an object with __dlpack__ (torch, cupy, jax), got {}",
            obj.get_type().name()?
        )));
    }
    if obj.hasattr("__dlpack_device__")? {
        let (device_type, device_id): (i32, i32) =
            obj.call_method0("__dlpack_device__")?.extract()?;
        if !is_host_device(device_type) {
            return Err(buffer_error(format!(
                "{what}: the DLPack tensor lives on {} (device {device_id}); radiant imports host memory \
                 only (zero-copy import of GPU memory is not implemented): pass a host copy, e.g. t.cpu()",
                device_name(device_type)
            )));
        }
    }
    let py = obj.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("max_version", (MAJOR, MINOR))?;
    match obj.call_method("__dlpack__", (), Some(&kwargs)) {
        Ok(c) => Ok(c),
        Err(e) if e.is_instance_of::<PyTypeError>(py) => obj.call_method0("__dlpack__"),
        Err(e) => Err(e),
    }
}

/// Imports a DLPack producer (or a capsule) as a host view: the memory is
/// not copied; the view keeps the producer's managed tensor until dropped.
pub fn import(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<HostView> {
    let capsule = capsule_of(what, obj)?;
    let capsule = capsule.cast::<PyCapsule>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what}: __dlpack__ returned {}, not a DLPack capsule",
            capsule
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let raw = capsule.as_ptr();
    // SAFETY: `raw` is a live capsule (we hold a reference). `IsValid` and
    // `GetPointer` with a name that matches never fail or set an exception.
    let (ptr, versioned) = unsafe {
        if ffi::PyCapsule_IsValid(raw, VERSIONED.as_ptr()) == 1 {
            (ffi::PyCapsule_GetPointer(raw, VERSIONED.as_ptr()), true)
        } else if ffi::PyCapsule_IsValid(raw, LEGACY.as_ptr()) == 1 {
            (ffi::PyCapsule_GetPointer(raw, LEGACY.as_ptr()), false)
        } else {
            let consumed = ffi::PyCapsule_IsValid(raw, LEGACY_USED.as_ptr()) == 1
                || ffi::PyCapsule_IsValid(raw, VERSIONED_USED.as_ptr()) == 1;
            return Err(if consumed {
                PyValueError::new_err(format!(
                    "{what}: this DLPack capsule was already consumed (a capsule can be imported once)"
                ))
            } else {
                PyTypeError::new_err(format!(
                    "{what}: not a DLPack capsule (expected the name \"dltensor\" or \"dltensor_versioned\")"
                ))
            });
        }
    };
    if ptr.is_null() {
        return Err(PyValueError::new_err(format!(
            "{what}: the DLPack capsule holds a null pointer"
        )));
    }
    if versioned {
        // SAFETY: a "dltensor_versioned" capsule points to a
        // DLManagedTensorVersioned, whose `version` field comes first in
        // every major version.
        let version = unsafe { (*ptr.cast::<DLManagedTensorVersioned>()).version };
        if version.major != MAJOR {
            // Not consumed: the capsule's destructor calls the deleter.
            return Err(buffer_error(format!(
                "{what}: DLPack version {}.{} is not supported (radiant reads major version {MAJOR})",
                version.major, version.minor
            )));
        }
    }
    let used = if versioned {
        VERSIONED_USED
    } else {
        LEGACY_USED
    };
    // SAFETY: a valid capsule; the name is a 'static C string, as
    // PyCapsule_SetName requires.
    if unsafe { ffi::PyCapsule_SetName(raw, used.as_ptr()) } != 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    // From here on this process owns the managed tensor: `managed` calls its
    // deleter once, whatever happens below.
    let managed = Managed { ptr, versioned };
    // SAFETY: the capsule's pointer is the managed tensor its name says
    // (checked above), alive until its deleter runs.
    let (t, flags) = unsafe {
        if versioned {
            let m = &*ptr.cast::<DLManagedTensorVersioned>();
            (&m.dl_tensor as *const DLTensor, m.flags)
        } else {
            let m = &*ptr.cast::<DLManagedTensor>();
            (&m.dl_tensor as *const DLTensor, 0)
        }
    };
    // SAFETY: `t` points into the managed tensor, alive while `managed` is.
    let t = unsafe { &*t };
    describe(what, t, flags & FLAG_READ_ONLY != 0, Box::new(managed))
}

/// Validates a DLTensor and describes its memory.
fn describe(
    what: &str,
    t: &DLTensor,
    readonly: bool,
    owner: Box<dyn Any + Send>,
) -> PyResult<HostView> {
    if !is_host_device(t.device.device_type) {
        return Err(buffer_error(format!(
            "{what}: the DLPack tensor lives on {} (device {}); radiant imports host memory only: \
             pass a host copy, e.g. t.cpu()",
            device_name(t.device.device_type),
            t.device.device_id
        )));
    }
    let dtype = radiant_dtype(t.dtype).ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{what}: unsupported DLPack dtype (code {}, {} bits, {} lanes); radiant takes float32, \
             float16, bfloat16, int32, uint8 and float8_e4m3fn",
            t.dtype.code, t.dtype.bits, t.dtype.lanes
        ))
    })?;
    let ndim = usize::try_from(t.ndim)
        .ok()
        .filter(|&n| n <= 64)
        .ok_or_else(|| PyValueError::new_err(format!("{what}: invalid DLPack ndim {}", t.ndim)))?;
    if ndim > 0 && t.shape.is_null() {
        return Err(PyValueError::new_err(format!(
            "{what}: DLPack tensor of rank {ndim} has no shape"
        )));
    }
    let dims: &[i64] = if ndim == 0 {
        &[]
    } else {
        // SAFETY: DLPack: `shape` points to `ndim` int64 values, alive with
        // the managed tensor (which `owner` keeps).
        unsafe { std::slice::from_raw_parts(t.shape, ndim) }
    };
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| PyValueError::new_err(format!("{what}: negative DLPack shape {dims:?}")))?;
    let numel = radiant::tensor::checked_numel(&shape);
    let len = numel
        .and_then(|n| n.checked_mul(dtype.size_in_bytes()))
        .filter(|&l| l <= isize::MAX as usize)
        .ok_or_else(|| PyValueError::new_err(format!("{what}: DLPack shape {dims:?} overflows")))?;
    if ndim > 0 && !t.strides.is_null() && len > 0 {
        // SAFETY: as for `shape`.
        let strides = unsafe { std::slice::from_raw_parts(t.strides, ndim) };
        let mut expected = 1i64;
        for (&dim, &stride) in dims.iter().zip(strides).rev() {
            if dim != 1 && stride != expected {
                return Err(PyValueError::new_err(format!(
                    "{what}: the DLPack tensor is not C-contiguous (shape {dims:?}, strides \
                     {strides:?} elements); radiant does not copy strided memory: make it \
                     contiguous first (e.g. .contiguous() in torch)"
                )));
            }
            expected = expected.saturating_mul(dim);
        }
    }
    let base = t.data.cast::<u8>();
    if base.is_null() && len > 0 {
        return Err(PyValueError::new_err(format!(
            "{what}: DLPack tensor of {len} bytes has a null data pointer"
        )));
    }
    let offset = usize::try_from(t.byte_offset).map_err(|_| {
        PyValueError::new_err(format!(
            "{what}: DLPack byte_offset {} overflows",
            t.byte_offset
        ))
    })?;
    let ptr = if len == 0 {
        std::ptr::null_mut()
    } else {
        base.wrapping_add(offset)
    };
    Ok(HostView {
        ptr,
        len,
        dtype,
        shape,
        readonly,
        owner,
    })
}

// ---------------------------------------------------------------------------
// Producer.

/// What an exported managed tensor owns: the radiant buffer (so the memory
/// outlives the radiant tensor) and the shape / strides arrays the DLTensor
/// points into.
struct Exported<M> {
    managed: M,
    _buffer: radiant::Buffer,
    _shape: Vec<i64>,
    _strides: Vec<i64>,
}

unsafe extern "C" fn delete_legacy(m: *mut DLManagedTensor) {
    if m.is_null() {
        return;
    }
    // SAFETY: `manager_ctx` is the `Box<Exported<_>>` leaked by `export`;
    // DLPack calls the deleter once.
    unsafe {
        drop(Box::from_raw(
            (*m).manager_ctx.cast::<Exported<DLManagedTensor>>(),
        ));
    }
}

unsafe extern "C" fn delete_versioned(m: *mut DLManagedTensorVersioned) {
    if m.is_null() {
        return;
    }
    // SAFETY: as in `delete_legacy`.
    unsafe {
        drop(Box::from_raw(
            (*m).manager_ctx
                .cast::<Exported<DLManagedTensorVersioned>>(),
        ));
    }
}

/// Runs `f` with the current exception saved and restored: capsule
/// destructors may run while an exception is being raised.
///
/// # Safety
/// The GIL must be held.
unsafe fn preserving_error(f: impl FnOnce()) {
    let (mut ty, mut value, mut tb) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    // SAFETY: the GIL is held (caller); Fetch/Restore move the references.
    unsafe { ffi::PyErr_Fetch(&mut ty, &mut value, &mut tb) };
    f();
    // SAFETY: as above.
    unsafe { ffi::PyErr_Restore(ty, value, tb) };
}

unsafe extern "C" fn capsule_destructor_legacy(capsule: *mut ffi::PyObject) {
    // SAFETY: CPython calls capsule destructors with the GIL held. A capsule
    // still named "dltensor" was never consumed: its managed tensor is ours
    // to delete. A renamed one belongs to its consumer.
    unsafe {
        preserving_error(|| {
            if ffi::PyCapsule_IsValid(capsule, LEGACY.as_ptr()) == 1 {
                let m =
                    ffi::PyCapsule_GetPointer(capsule, LEGACY.as_ptr()).cast::<DLManagedTensor>();
                delete_legacy(m);
            }
        })
    }
}

unsafe extern "C" fn capsule_destructor_versioned(capsule: *mut ffi::PyObject) {
    // SAFETY: as in `capsule_destructor_legacy`.
    unsafe {
        preserving_error(|| {
            if ffi::PyCapsule_IsValid(capsule, VERSIONED.as_ptr()) == 1 {
                let m = ffi::PyCapsule_GetPointer(capsule, VERSIONED.as_ptr())
                    .cast::<DLManagedTensorVersioned>();
                delete_versioned(m);
            }
        })
    }
}

fn dims_i64(what: &str, values: &[usize]) -> PyResult<Vec<i64>> {
    values
        .iter()
        .map(|&v| i64::try_from(v))
        .collect::<Result<_, _>>()
        .map_err(|_| buffer_error(format!("{what}: a dimension does not fit in int64")))
}

/// Exports a contiguous host tensor as a DLPack capsule, sharing its memory.
/// `version`: `Some(minor)` for a versioned capsule (major 1), `None` for a
/// legacy one. `copied` sets the versioned IS_COPIED flag.
pub fn export<'py>(
    py: Python<'py>,
    tensor: &Tensor,
    version: Option<u32>,
    copied: bool,
) -> PyResult<Bound<'py, PyAny>> {
    const WHAT: &str = "radiant.Tensor.__dlpack__";
    let memory = HostMemory::of(tensor.buffer()).ok_or_else(|| {
        buffer_error(format!(
            "{WHAT}: the tensor lives on {}, not in host memory",
            tensor.buffer().device()
        ))
    })?;
    if !tensor.is_contiguous() {
        return Err(buffer_error(format!(
            "{WHAT}: the tensor is not contiguous"
        )));
    }
    let shape = dims_i64(WHAT, tensor.shape())?;
    let strides = dims_i64(WHAT, tensor.strides())?;
    let byte_offset = u64::try_from(tensor.byte_offset())
        .map_err(|_| buffer_error(format!("{WHAT}: byte offset overflows")))?;
    let ndim =
        i32::try_from(shape.len()).map_err(|_| buffer_error(format!("{WHAT}: rank overflows")))?;
    let dl_tensor = |shape: &mut Vec<i64>, strides: &mut Vec<i64>| DLTensor {
        data: memory.as_ptr().cast::<c_void>(),
        device: DLDevice {
            device_type: K_DL_CPU,
            device_id: 0,
        },
        ndim,
        dtype: dl_dtype(tensor.dtype()),
        shape: shape.as_mut_ptr(),
        strides: strides.as_mut_ptr(),
        byte_offset,
    };
    let (ptr, name, destructor): (*mut c_void, &'static CStr, ffi::PyCapsule_Destructor) =
        match version {
            Some(minor) => {
                let mut boxed = Box::new(Exported {
                    managed: DLManagedTensorVersioned {
                        version: DLPackVersion {
                            major: MAJOR,
                            minor: minor.min(MINOR),
                        },
                        manager_ctx: std::ptr::null_mut(),
                        deleter: Some(delete_versioned),
                        flags: if copied { FLAG_IS_COPIED } else { 0 },
                        dl_tensor: DLTensor {
                            data: std::ptr::null_mut(),
                            device: DLDevice {
                                device_type: K_DL_CPU,
                                device_id: 0,
                            },
                            ndim: 0,
                            dtype: dl_dtype(tensor.dtype()),
                            shape: std::ptr::null_mut(),
                            strides: std::ptr::null_mut(),
                            byte_offset: 0,
                        },
                    },
                    _buffer: tensor.buffer().clone(),
                    _shape: shape,
                    _strides: strides,
                });
                let e = &mut *boxed;
                e.managed.dl_tensor = dl_tensor(&mut e._shape, &mut e._strides);
                let raw = Box::into_raw(boxed);
                // SAFETY: `raw` is a live, uniquely owned allocation.
                unsafe { (*raw).managed.manager_ctx = raw.cast::<c_void>() };
                // SAFETY: `managed` is the first field of a live allocation.
                let m = unsafe { std::ptr::addr_of_mut!((*raw).managed) };
                (m.cast::<c_void>(), VERSIONED, capsule_destructor_versioned)
            }
            None => {
                let mut boxed = Box::new(Exported {
                    managed: DLManagedTensor {
                        dl_tensor: DLTensor {
                            data: std::ptr::null_mut(),
                            device: DLDevice {
                                device_type: K_DL_CPU,
                                device_id: 0,
                            },
                            ndim: 0,
                            dtype: dl_dtype(tensor.dtype()),
                            shape: std::ptr::null_mut(),
                            strides: std::ptr::null_mut(),
                            byte_offset: 0,
                        },
                        manager_ctx: std::ptr::null_mut(),
                        deleter: Some(delete_legacy),
                    },
                    _buffer: tensor.buffer().clone(),
                    _shape: shape,
                    _strides: strides,
                });
                let e = &mut *boxed;
                e.managed.dl_tensor = dl_tensor(&mut e._shape, &mut e._strides);
                let raw = Box::into_raw(boxed);
                // SAFETY: as above.
                unsafe { (*raw).managed.manager_ctx = raw.cast::<c_void>() };
                // SAFETY: as above.
                let m = unsafe { std::ptr::addr_of_mut!((*raw).managed) };
                (m.cast::<c_void>(), LEGACY, capsule_destructor_legacy)
            }
        };
    // SAFETY: `ptr` is a managed tensor whose deleter frees everything; the
    // name is 'static; the destructor deletes it unless a consumer renamed
    // the capsule (and so took ownership).
    let capsule = unsafe { ffi::PyCapsule_New(ptr, name.as_ptr(), Some(destructor)) };
    if capsule.is_null() {
        // Not wrapped: delete it here.
        // SAFETY: `ptr` was made above and handed to nobody.
        unsafe {
            if version.is_some() {
                delete_versioned(ptr.cast());
            } else {
                delete_legacy(ptr.cast());
            }
        }
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `PyCapsule_New` returned a new reference.
    Ok(unsafe { Bound::from_owned_ptr(py, capsule) })
}
