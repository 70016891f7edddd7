//! Python bindings for radiant: one function per op, numpy in, numpy out.
//!
//! Every function validates its numpy arguments (dtype, C-contiguity), copies
//! them into [`HostTensor`]s, and then — with the GIL released — uploads them
//! to the chosen backend, runs the op through `radiant::ops` (which does the
//! full validation) and downloads the result. Every radiant error becomes a
//! Python exception carrying radiant's message:
//!
//! | radiant error        | Python exception      |
//! |----------------------|-----------------------|
//! | `InvalidArgument`    | `ValueError`          |
//! | `Format`             | `ValueError`          |
//! | `Unsupported`        | `NotImplementedError` |
//! | `Unavailable`        | `RuntimeError`        |
//! | `Device`             | `RuntimeError`        |
//! | `OutOfMemory`        | `MemoryError`         |
//! | `Io`                 | `OSError`             |
//!
//! A numpy dtype radiant has no type for (float64, int64, ...) or an argument
//! that is not a numpy array raises `TypeError`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use half::f16;
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{
    PyMemoryError, PyNotImplementedError, PyOSError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use radiant::ops::{self, AttentionParams, BLayout, MatmulParams, RmsNormParams};
use radiant::quant::GroupSize;
use radiant::quant::{
    AwqLayout, AwqTensors, AwqWeight, GlobalScale, GptqLayout, GptqTensors, GptqWeight,
    Nvfp4Tensors, Nvfp4Weight, ZeroFormat, nvfp4::BLOCK,
};
use radiant::{Backend, DType, Error, HostTensor, Tensor};

// ---------------------------------------------------------------------------
// Errors

fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::InvalidArgument { .. } | Error::Format { .. } => PyValueError::new_err(msg),
        Error::Unsupported(_) => PyNotImplementedError::new_err(msg),
        Error::OutOfMemory { .. } => PyMemoryError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::Unavailable { .. } | Error::Device { .. } => PyRuntimeError::new_err(msg),
    }
}

// ---------------------------------------------------------------------------
// Devices

fn cache() -> &'static Mutex<HashMap<String, Arc<dyn Backend>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<dyn Backend>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Opens (once per process) the device called `name`, without the GIL.
fn open(py: Python<'_>, name: &str) -> PyResult<Arc<dyn Backend>> {
    if let Some(b) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(name) {
        return Ok(b.clone());
    }
    let owned = name.to_string();
    let backend = py.detach(move || radiant::device(&owned)).map_err(to_py)?;
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), backend.clone());
    Ok(backend)
}

/// A radiant device: "reference", "cpu", "cuda:N", "wgpu:N" or "best".
#[pyclass(module = "radiant", frozen)]
struct Device {
    backend: Arc<dyn Backend>,
}

#[pymethods]
impl Device {
    #[new]
    #[pyo3(signature = (name = "best"))]
    fn new(py: Python<'_>, name: &str) -> PyResult<Self> {
        Ok(Device {
            backend: open(py, name)?,
        })
    }

    /// The selection name (`reference`, `cpu`, `cuda:0`, ...).
    #[getter]
    fn name(&self) -> String {
        self.backend.name().to_string()
    }

    /// Human-readable device description (CPU model, GPU name).
    #[getter]
    fn description(&self) -> String {
        self.backend.info().device
    }

    fn __repr__(&self) -> String {
        format!("radiant.Device({:?})", self.backend.name())
    }
}

fn backend_of(py: Python<'_>, device: &Bound<'_, PyAny>) -> PyResult<Arc<dyn Backend>> {
    if let Ok(d) = device.cast::<Device>() {
        return Ok(d.get().backend.clone());
    }
    if let Ok(name) = device.extract::<String>() {
        return open(py, &name);
    }
    Err(PyTypeError::new_err(format!(
        "device must be a str or radiant.Device, got {}",
        device.get_type().name()?
    )))
}

/// Every device radiant can use here, and every backend family it cannot.
///
/// Returns a list of dicts with keys `name` (str), `available` (bool),
/// `reason` (str or None: why the family is unavailable) and `description`
/// (str or None: the device's human-readable name).
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let entries = py.detach(radiant::devices);
    let mut out = Vec::new();
    for entry in entries {
        let d = PyDict::new(py);
        d.set_item("name", &entry.name)?;
        match &entry.status {
            Ok(backend) => {
                d.set_item("available", true)?;
                d.set_item("reason", py.None())?;
                d.set_item("description", backend.info().device)?;
            }
            Err(reason) => {
                d.set_item("available", false)?;
                d.set_item("reason", reason)?;
                d.set_item("description", py.None())?;
            }
        }
        out.push(d);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// numpy <-> HostTensor

fn slice_bytes<T: numpy::Element + bytemuck::Pod>(
    arr: &Bound<'_, PyUntypedArray>,
    dtype: DType,
) -> PyResult<HostTensor> {
    let typed = arr.cast::<PyArrayDyn<T>>()?;
    let ro = typed.readonly();
    let values = ro
        .as_slice()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let bytes = bytemuck::cast_slice::<T, u8>(values).to_vec();
    HostTensor::from_bytes(dtype, arr.shape(), bytes).map_err(to_py)
}

/// Copies a C-contiguous numpy array into a host tensor. `allowed` lists
/// the radiant dtypes this argument may have (checked here only to give a
/// `TypeError` for dtypes radiant has no type for; the op validates the rest).
fn host(op: &str, arg: &str, obj: &Bound<'_, PyAny>) -> PyResult<HostTensor> {
    let py = obj.py();
    let arr = obj.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{op}: invalid argument `{arg}`: must be a numpy.ndarray, got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    if !arr.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{op}: invalid argument `{arg}`: must be C-contiguous (use numpy.ascontiguousarray)"
        )));
    }
    let dt = arr.dtype();
    if !dt.is_native_byteorder().unwrap_or(true) {
        return Err(PyValueError::new_err(format!(
            "{op}: invalid argument `{arg}`: must be in native byte order"
        )));
    }
    if dt.is_equiv_to(&numpy::dtype::<f32>(py)) {
        slice_bytes::<f32>(arr, DType::F32)
    } else if dt.is_equiv_to(&numpy::dtype::<f16>(py)) {
        slice_bytes::<f16>(arr, DType::F16)
    } else if dt.is_equiv_to(&numpy::dtype::<i32>(py)) {
        slice_bytes::<i32>(arr, DType::I32)
    } else if dt.is_equiv_to(&numpy::dtype::<u8>(py)) {
        slice_bytes::<u8>(arr, DType::U8)
    } else if dt.itemsize() == 2 && dt.getattr("name")?.extract::<String>()? == "bfloat16" {
        // ml_dtypes.bfloat16: numpy has no native type; read the same bytes
        // through a uint16 view.
        let bits = arr.call_method1("view", ("uint16",))?;
        slice_bytes::<u16>(bits.cast::<PyUntypedArray>()?, DType::BF16)
    } else {
        Err(PyTypeError::new_err(format!(
            "{op}: invalid argument `{arg}`: unsupported dtype {} \
             (radiant takes float32, float16 and ml_dtypes.bfloat16 activations, int32 offsets / tables, uint8 packed weights)",
            dt.str()?
        )))
    }
}

fn host_opt(op: &str, arg: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<HostTensor>> {
    match obj {
        Some(o) if !o.is_none() => host(op, arg, o).map(Some),
        _ => Ok(None),
    }
}

fn to_numpy<'py>(py: Python<'py>, t: &HostTensor) -> PyResult<Bound<'py, PyAny>> {
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
            // Only reached for bf16 inputs, which came from ml_dtypes.
            let bf16 = py.import("ml_dtypes")?.getattr("bfloat16")?;
            let v: Vec<u16> = bytemuck::pod_collect_to_vec(bytes);
            PyArray1::from_vec(py, v)
                .reshape(shape)?
                .call_method1("view", (bf16,))?
        }
    };
    Ok(arr)
}

fn up(b: &dyn Backend, t: &HostTensor) -> radiant::Result<Tensor> {
    b.upload_tensor(t)
}

fn up_opt(b: &dyn Backend, t: &Option<HostTensor>) -> radiant::Result<Option<Tensor>> {
    t.as_ref().map(|t| b.upload_tensor(t)).transpose()
}

// ---------------------------------------------------------------------------
// Dense ops

/// matmul(a, b, bias=None, b_layout="kn", device="best") -> numpy.ndarray
///
/// `C[..., M, N] = A[..., M, K] · B (+ bias[N])`. `b` is `[K, N]` for
/// `b_layout="kn"` or linear-layer weights `[N, K]` for `b_layout="nk"`; a
/// 2-D `b` broadcasts over a batched `a`. Returns an array of `a`'s dtype.
#[pyfunction]
#[pyo3(signature = (a, b, bias = None, b_layout = "kn", device = None))]
fn matmul<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
    bias: Option<&Bound<'py, PyAny>>,
    b_layout: &str,
    device: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "matmul";
    let b_layout = match b_layout {
        "kn" => BLayout::Kn,
        "nk" => BLayout::Nk,
        other => {
            return Err(PyValueError::new_err(format!(
                "matmul: invalid argument `b_layout`: expected \"kn\" or \"nk\", got {other:?}"
            )));
        }
    };
    let (a, b, bias) = (
        host(OP, "a", a)?,
        host(OP, "b", b)?,
        host_opt(OP, "bias", bias)?,
    );
    let backend = device_or_best(py, device)?;
    let out = py
        .detach(|| {
            let be = backend.as_ref();
            let (a, b, bias) = (up(be, &a)?, up(be, &b)?, up_opt(be, &bias)?);
            let y = ops::matmul(be, &a, &b, bias.as_ref(), MatmulParams { b_layout })?;
            be.download_tensor(&y)
        })
        .map_err(to_py)?;
    to_numpy(py, &out)
}

fn device_or_best(py: Python<'_>, device: Option<&Bound<'_, PyAny>>) -> PyResult<Arc<dyn Backend>> {
    match device {
        Some(d) if !d.is_none() => backend_of(py, d),
        _ => open(py, "best"),
    }
}

/// rms_norm(x, weight, eps=1e-6, weight_offset=0.0, device="best") -> numpy.ndarray
///
/// `y = x / sqrt(mean(x²) + eps) · (weight + weight_offset)` over the last dim
/// (`weight_offset=1.0` for Gemma). Returns an array of `x`'s dtype.
#[pyfunction]
#[pyo3(signature = (x, weight, eps = 1e-6, weight_offset = 0.0, device = None))]
fn rms_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    eps: f64,
    weight_offset: f64,
    device: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "rms_norm";
    let (x, w) = (host(OP, "x", x)?, host(OP, "weight", weight)?);
    let backend = device_or_best(py, device)?;
    let params = RmsNormParams { eps, weight_offset };
    let out = py
        .detach(|| {
            let be = backend.as_ref();
            let (x, w) = (up(be, &x)?, up(be, &w)?);
            let y = ops::rms_norm(be, &x, &w, params)?;
            be.download_tensor(&y)
        })
        .map_err(to_py)?;
    to_numpy(py, &out)
}

/// fused_add_rms_norm(x, residual, weight, eps=1e-6, weight_offset=0.0, device="best")
///     -> (out, new_residual)
///
/// `new_residual = round(x + residual)`, `out = rms_norm(new_residual)`. The
/// input `residual` array is not modified; both results have `x`'s dtype.
#[pyfunction]
#[pyo3(signature = (x, residual, weight, eps = 1e-6, weight_offset = 0.0, device = None))]
fn fused_add_rms_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    residual: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    eps: f64,
    weight_offset: f64,
    device: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    const OP: &str = "fused_add_rms_norm";
    let x = host(OP, "x", x)?;
    let r = host(OP, "residual", residual)?;
    let w = host(OP, "weight", weight)?;
    let backend = device_or_best(py, device)?;
    let params = RmsNormParams { eps, weight_offset };
    let (out, res) = py
        .detach(|| {
            let be = backend.as_ref();
            let (x, r, w) = (up(be, &x)?, up(be, &r)?, up(be, &w)?);
            let y = ops::fused_add_rms_norm(be, &x, &r, &w, params)?;
            Ok::<_, Error>((be.download_tensor(&y)?, be.download_tensor(&r)?))
        })
        .map_err(to_py)?;
    Ok((to_numpy(py, &out)?, to_numpy(py, &res)?))
}

fn attention_params(
    causal: bool,
    softmax_scale: Option<f64>,
    window_left: i64,
    window_right: i64,
    softcap: f64,
) -> AttentionParams {
    AttentionParams {
        causal,
        softmax_scale,
        window_left,
        window_right,
        softcap,
    }
}

/// attention(q, k, v, cu_seqlens_q, cu_seqlens_k, causal=False, softmax_scale=None,
///           window_left=-1, window_right=-1, softcap=0.0, return_lse=False, device="best")
///
/// Varlen (packed) prefill attention, FlashAttention semantics: `q[total_q, Hq, D]`,
/// `k, v[total_k, Hkv, D]`, int32 `cu_seqlens_q/k[B+1]`. GQA/MQA, causal
/// (bottom-right aligned), sliding window (-1 = unbounded), softcap (0 = off),
/// `softmax_scale=None` means `1/sqrt(D)`. Returns `out` (q's dtype), or
/// `(out, lse)` with `lse` float32 `[Hq, total_q]` when `return_lse=True`.
#[pyfunction]
#[pyo3(signature = (q, k, v, cu_seqlens_q, cu_seqlens_k, causal = false, softmax_scale = None,
                    window_left = -1, window_right = -1, softcap = 0.0, return_lse = false,
                    device = None))]
#[allow(clippy::too_many_arguments)]
fn attention<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    cu_seqlens_q: &Bound<'py, PyAny>,
    cu_seqlens_k: &Bound<'py, PyAny>,
    causal: bool,
    softmax_scale: Option<f64>,
    window_left: i64,
    window_right: i64,
    softcap: f64,
    return_lse: bool,
    device: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "attention";
    let q = host(OP, "q", q)?;
    let k = host(OP, "k", k)?;
    let v = host(OP, "v", v)?;
    let cq = host(OP, "cu_seqlens_q", cu_seqlens_q)?;
    let ck = host(OP, "cu_seqlens_k", cu_seqlens_k)?;
    let backend = device_or_best(py, device)?;
    let params = attention_params(causal, softmax_scale, window_left, window_right, softcap);
    let (out, lse) = py
        .detach(|| {
            let be = backend.as_ref();
            let (q, k, v) = (up(be, &q)?, up(be, &k)?, up(be, &v)?);
            let (cq, ck) = (up(be, &cq)?, up(be, &ck)?);
            if !return_lse {
                let y = ops::attention(be, &q, &k, &v, &cq, &ck, params)?;
                return Ok::<_, Error>((be.download_tensor(&y)?, None));
            }
            let out = be.alloc_tensor(q.dtype(), q.shape())?;
            let (total_q, heads_q) = (
                q.shape().first().copied().unwrap_or(0),
                q.shape().get(1).copied().unwrap_or(0),
            );
            let lse = be.alloc_tensor(DType::F32, &[heads_q, total_q])?;
            ops::attention_into(be, &q, &k, &v, &cq, &ck, &out, Some(&lse), params)?;
            Ok((be.download_tensor(&out)?, Some(be.download_tensor(&lse)?)))
        })
        .map_err(to_py)?;
    let out = to_numpy(py, &out)?;
    match lse {
        None => Ok(out),
        Some(lse) => Ok((out, to_numpy(py, &lse)?).into_pyobject(py)?.into_any()),
    }
}

/// paged_attention(q, k_cache, v_cache, block_tables, context_lens, softmax_scale=None,
///                 window_left=-1, window_right=-1, softcap=0.0, causal=False, device="best")
///
/// Decode attention against a paged KV cache (vLLM layout): `q[B, Hq, D]`,
/// `k_cache, v_cache[num_blocks, block_size, Hkv, D]`, int32
/// `block_tables[B, max_blocks]` and `context_lens[B]`. Returns q's dtype.
#[pyfunction]
#[pyo3(signature = (q, k_cache, v_cache, block_tables, context_lens, softmax_scale = None,
                    window_left = -1, window_right = -1, softcap = 0.0, causal = false,
                    device = None))]
#[allow(clippy::too_many_arguments)]
fn paged_attention<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    k_cache: &Bound<'py, PyAny>,
    v_cache: &Bound<'py, PyAny>,
    block_tables: &Bound<'py, PyAny>,
    context_lens: &Bound<'py, PyAny>,
    softmax_scale: Option<f64>,
    window_left: i64,
    window_right: i64,
    softcap: f64,
    causal: bool,
    device: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "paged_attention";
    let q = host(OP, "q", q)?;
    let kc = host(OP, "k_cache", k_cache)?;
    let vc = host(OP, "v_cache", v_cache)?;
    let bt = host(OP, "block_tables", block_tables)?;
    let cl = host(OP, "context_lens", context_lens)?;
    let backend = device_or_best(py, device)?;
    let params = attention_params(causal, softmax_scale, window_left, window_right, softcap);
    let out = py
        .detach(|| {
            let be = backend.as_ref();
            let (q, kc, vc) = (up(be, &q)?, up(be, &kc)?, up(be, &vc)?);
            let (bt, cl) = (up(be, &bt)?, up(be, &cl)?);
            let y = ops::paged_attention(be, &q, &kc, &vc, &bt, &cl, params)?;
            be.download_tensor(&y)
        })
        .map_err(to_py)?;
    to_numpy(py, &out)
}

// ---------------------------------------------------------------------------
// Quantized matmuls

/// A float scalar given as a Python number or a one-element float array
/// (how checkpoints store it).
fn scalar(op: &str, arg: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if obj.cast::<PyUntypedArray>().is_ok() {
        let t = host(op, arg, obj)?;
        if !t.dtype().is_float() || t.numel() != 1 || t.shape().len() > 1 {
            return Err(PyValueError::new_err(format!(
                "{op}: invalid argument `{arg}`: must be one float ([1] or []), got {} {:?}",
                t.dtype(),
                t.shape()
            )));
        }
        return Ok(Some(t.to_f64_vec()[0]));
    }
    obj.extract::<f64>().map(Some).map_err(|_| {
        PyTypeError::new_err(format!("{op}: invalid argument `{arg}`: must be a float"))
    })
}

fn group_size_of(op: &str, group_size: i64) -> PyResult<GroupSize> {
    GroupSize::from_config(group_size).ok_or_else(|| {
        PyValueError::new_err(format!(
            "{op}: invalid argument `group_size`: must be -1 or positive, got {group_size}"
        ))
    })
}

/// gptq_matmul(x, qweight, qzeros, scales, g_idx, bits, group_size, sym=None,
///             format="gptq", bias=None, device="best") -> numpy.ndarray
///
/// `y = x · dequant(W)ᵀ (+ bias)` against a GPTQ layer as stored in the
/// checkpoint (int32 `qweight[K·bits/32, N]`, `qzeros[G, N·bits/32]`, float
/// `scales[G, N]`, int32 `g_idx[K]` or None). `format` is `"gptq"` (v1 zero
/// storage) or `"gptq_v2"`; `sym=True` requires every zero point to be
/// 2^(bits-1). Returns x's dtype.
#[pyfunction]
#[pyo3(signature = (x, qweight, qzeros, scales, g_idx, bits, group_size, sym = None,
                    format = "gptq", bias = None, device = None))]
#[allow(clippy::too_many_arguments)]
fn gptq_matmul<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    qweight: &Bound<'py, PyAny>,
    qzeros: &Bound<'py, PyAny>,
    scales: &Bound<'py, PyAny>,
    g_idx: Option<&Bound<'py, PyAny>>,
    bits: u32,
    group_size: i64,
    sym: Option<bool>,
    format: &str,
    bias: Option<&Bound<'py, PyAny>>,
    device: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "gptq_matmul";
    let zero_format = ZeroFormat::parse(format).ok_or_else(|| {
        PyValueError::new_err(format!(
            "gptq_matmul: invalid argument `format`: expected \"gptq\" or \"gptq_v2\", got {format:?}"
        ))
    })?;
    let layout = GptqLayout {
        bits,
        group_size: group_size_of(OP, group_size)?,
        zero_format,
    };
    let tensors = GptqTensors {
        qweight: host(OP, "qweight", qweight)?,
        qzeros: host(OP, "qzeros", qzeros)?,
        scales: host(OP, "scales", scales)?,
        g_idx: host_opt(OP, "g_idx", g_idx)?,
    };
    let x = host(OP, "x", x)?;
    let bias = host_opt(OP, "bias", bias)?;
    let backend = device_or_best(py, device)?;
    let out = py
        .detach(|| {
            let weight = GptqWeight::new(tensors, layout)?;
            if sym == Some(true) {
                let mid = 1u8 << (weight.bits() - 1);
                if let Some(i) = weight.zeros().iter().position(|&z| z != mid) {
                    return Err(Error::invalid(
                        "gptq_matmul",
                        "sym",
                        format!(
                            "sym=True, but zero point z[{}, {}] is not 2^(bits-1) = {mid}",
                            i / weight.n(),
                            i % weight.n()
                        ),
                    ));
                }
            }
            let be = backend.as_ref();
            let w = weight.upload(be)?;
            let (x, bias) = (up(be, &x)?, up_opt(be, &bias)?);
            let y = ops::gptq_matmul(be, &x, &w, bias.as_ref())?;
            be.download_tensor(&y)
        })
        .map_err(to_py)?;
    to_numpy(py, &out)
}

/// awq_matmul(x, qweight, qzeros, scales, group_size, bias=None, device="best")
///     -> numpy.ndarray
///
/// `y = x · dequant(W)ᵀ (+ bias)` against a 4-bit AWQ (gemm layout) layer:
/// int32 `qweight[K, N/8]`, `qzeros[G, N/8]`, float `scales[G, N]`.
#[pyfunction]
#[pyo3(signature = (x, qweight, qzeros, scales, group_size, bias = None, device = None))]
#[allow(clippy::too_many_arguments)]
fn awq_matmul<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    qweight: &Bound<'py, PyAny>,
    qzeros: &Bound<'py, PyAny>,
    scales: &Bound<'py, PyAny>,
    group_size: i64,
    bias: Option<&Bound<'py, PyAny>>,
    device: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "awq_matmul";
    let layout = AwqLayout {
        group_size: group_size_of(OP, group_size)?,
    };
    let tensors = AwqTensors {
        qweight: host(OP, "qweight", qweight)?,
        qzeros: host(OP, "qzeros", qzeros)?,
        scales: host(OP, "scales", scales)?,
    };
    let x = host(OP, "x", x)?;
    let bias = host_opt(OP, "bias", bias)?;
    let backend = device_or_best(py, device)?;
    let out = py
        .detach(|| {
            let weight = AwqWeight::new(tensors, layout)?;
            let be = backend.as_ref();
            let w = weight.upload(be)?;
            let (x, bias) = (up(be, &x)?, up_opt(be, &bias)?);
            let y = ops::awq_matmul(be, &x, &w, bias.as_ref())?;
            be.download_tensor(&y)
        })
        .map_err(to_py)?;
    to_numpy(py, &out)
}

/// nvfp4_matmul(x, weight_packed, weight_scale, weight_scale_2=None,
///              weight_global_scale=None, bias=None, device="best") -> numpy.ndarray
///
/// `y = x · dequant(W)ᵀ (+ bias)` against an NVFP4 layer: uint8
/// `weight_packed[N, Kp/2]`, E4M3 block scales as raw uint8 bytes
/// `weight_scale[N, Kp/16]`, and exactly one of `weight_scale_2` (ModelOpt
/// multiplier) or `weight_global_scale` (compressed-tensors divisor).
#[pyfunction]
#[pyo3(signature = (x, weight_packed, weight_scale, weight_scale_2 = None,
                    weight_global_scale = None, bias = None, device = None))]
#[allow(clippy::too_many_arguments)]
fn nvfp4_matmul<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight_packed: &Bound<'py, PyAny>,
    weight_scale: &Bound<'py, PyAny>,
    weight_scale_2: Option<&Bound<'py, PyAny>>,
    weight_global_scale: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    device: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "nvfp4_matmul";
    let weight_scale_2 = scalar(OP, "weight_scale_2", weight_scale_2)?;
    let weight_global_scale = scalar(OP, "weight_global_scale", weight_global_scale)?;
    let global_scale = match (weight_scale_2, weight_global_scale) {
        (Some(g), None) => GlobalScale::Multiplier(g as f32),
        (None, Some(d)) => GlobalScale::Divisor(d as f32),
        _ => {
            return Err(PyValueError::new_err(
                "nvfp4_matmul: invalid argument `weight_scale_2`: give exactly one of \
                 weight_scale_2 (ModelOpt multiplier) or weight_global_scale (compressed-tensors divisor)",
            ));
        }
    };
    let tensors = Nvfp4Tensors {
        weight_packed: host(OP, "weight_packed", weight_packed)?,
        weight_scale: host(OP, "weight_scale", weight_scale)?,
        global_scale,
    };
    let x = host(OP, "x", x)?;
    let bias = host_opt(OP, "bias", bias)?;
    let backend = device_or_best(py, device)?;
    let out = py
        .detach(|| {
            let packed_k = tensors.weight_packed.shape().get(1).map(|c| c * 2);
            let weight = match x.shape().last().copied() {
                Some(k) if k > 0 && Some(k.div_ceil(BLOCK) * BLOCK) == packed_k => {
                    Nvfp4Weight::with_in_features(tensors, k)?
                }
                _ => Nvfp4Weight::new(tensors)?,
            };
            let be = backend.as_ref();
            let w = weight.upload(be)?;
            let (x, bias) = (up(be, &x)?, up_opt(be, &bias)?);
            let y = ops::nvfp4_matmul(be, &x, &w, bias.as_ref())?;
            be.download_tensor(&y)
        })
        .map_err(to_py)?;
    to_numpy(py, &out)
}

// ---------------------------------------------------------------------------

/// radiant: LLM inference kernels (matmul, RMSNorm, attention, paged attention,
/// GPTQ / AWQ / NVFP4 matmul) on CPU, CUDA and WebGPU, from numpy.
#[pymodule(name = "radiant")]
fn radiant_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Device>()?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(matmul, m)?)?;
    m.add_function(wrap_pyfunction!(rms_norm, m)?)?;
    m.add_function(wrap_pyfunction!(fused_add_rms_norm, m)?)?;
    m.add_function(wrap_pyfunction!(attention, m)?)?;
    m.add_function(wrap_pyfunction!(paged_attention, m)?)?;
    m.add_function(wrap_pyfunction!(gptq_matmul, m)?)?;
    m.add_function(wrap_pyfunction!(awq_matmul, m)?)?;
    m.add_function(wrap_pyfunction!(nvfp4_matmul, m)?)?;
    Ok(())
}
