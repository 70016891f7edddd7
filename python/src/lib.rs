//! Python bindings for radiant: one function per op, plus device-resident
//! tensors (`radiant.Tensor`), quantized weights (`GptqWeight`, `AwqWeight`,
//! `Nvfp4Weight`) and DLPack import / export.
//!
//! Modules: `host` (array arguments: numpy, radiant.Tensor, DLPack),
//! `dlpack` (the DLPack structs, consumer and producer), `tensor`
//! (`radiant.Tensor`), `quant` (the weight classes).
//!
//! Each op converts its array arguments under the GIL (`host::arg`: a
//! radiant.Tensor is used in place, host memory is aliased on host devices
//! or copied for GPU ones), then — with the GIL released — uploads what
//! needs uploading, runs the op through `radiant::ops` (which does the full
//! validation) and, when the main input was a numpy array, downloads the
//! result; otherwise the result stays on the device as a radiant.Tensor.
//! Every radiant error becomes a Python exception carrying radiant's message:
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
//! that is not an array raises `TypeError`; DLPack exchange failures raise
//! `BufferError`.

mod dlpack;
mod host;
mod quant;
mod tensor;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use numpy::PyUntypedArray;
use pyo3::exceptions::{
    PyMemoryError, PyNotImplementedError, PyOSError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use radiant::cpu::memory::HostMemory;
use radiant::ops::{self, AttentionParams, BLayout, MatmulParams, RmsNormParams};
use radiant::quant::{
    AwqLayout, AwqTensors, AwqWeight, GptqLayout, GptqTensors, GptqWeight, GroupSize, Nvfp4Tensors,
    Nvfp4Weight, ZeroFormat, nvfp4::BLOCK,
};
use radiant::{Backend, DType, Error, Tensor};

use host::{Arg, arg, arg_opt, host, host_opt, on_opt, run, to_numpy};
use quant::{PyAwqWeight, PyGptqWeight, PyNvfp4Weight, check_resident, global_scale};
use tensor::PyTensor;

// ---------------------------------------------------------------------------
// Errors

pub(crate) fn to_py(err: Error) -> PyErr {
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
pub(crate) fn open(py: Python<'_>, name: &str) -> PyResult<Arc<dyn Backend>> {
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

pub(crate) fn backend_of(py: Python<'_>, device: &Bound<'_, PyAny>) -> PyResult<Arc<dyn Backend>> {
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

pub(crate) fn device_or_best(
    py: Python<'_>,
    device: Option<&Bound<'_, PyAny>>,
) -> PyResult<Arc<dyn Backend>> {
    match device {
        Some(d) if !d.is_none() => backend_of(py, d),
        _ => open(py, "best"),
    }
}

/// The device of a device-resident argument (a Tensor or a weight).
fn resident(obj: &Bound<'_, PyAny>) -> Option<Arc<dyn Backend>> {
    if let Ok(t) = obj.cast::<PyTensor>() {
        return Some(t.get().backend.clone());
    }
    if let Ok(w) = obj.cast::<PyGptqWeight>() {
        return Some(w.get().backend.clone());
    }
    if let Ok(w) = obj.cast::<PyAwqWeight>() {
        return Some(w.get().backend.clone());
    }
    if let Ok(w) = obj.cast::<PyNvfp4Weight>() {
        return Some(w.get().backend.clone());
    }
    None
}

/// The device an op runs on: `device` if given, else the device of the
/// first device-resident argument, else "best".
fn op_device(
    py: Python<'_>,
    device: Option<&Bound<'_, PyAny>>,
    args: &[Option<&Bound<'_, PyAny>>],
) -> PyResult<Arc<dyn Backend>> {
    if let Some(d) = device.filter(|d| !d.is_none()) {
        return backend_of(py, d);
    }
    match args.iter().flatten().find_map(|a| resident(a)) {
        Some(b) => Ok(b),
        None => open(py, "best"),
    }
}

/// Results are numpy arrays when the main input is a numpy array, and
/// radiant.Tensors (staying on the device) otherwise.
fn returns_tensor(main: &Bound<'_, PyAny>) -> bool {
    main.cast::<PyUntypedArray>().is_err()
}

/// An op's result, as numpy (downloaded) or as a radiant.Tensor.
fn output<'py>(
    py: Python<'py>,
    t: Tensor,
    backend: &Arc<dyn Backend>,
    as_tensor: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if as_tensor {
        return Ok(Bound::new(py, PyTensor::new(t, backend.clone()))?.into_any());
    }
    let h = run(py, || backend.download_tensor(&t))?;
    to_numpy(py, &h)
}

/// The host byte range of a tensor, if it lives in host memory.
fn host_range(t: &Tensor) -> Option<(usize, usize)> {
    let m = HostMemory::of(t.buffer())?;
    let start = (m.as_ptr() as usize).checked_add(t.byte_offset())?;
    Some((start, start.checked_add(t.byte_len())?))
}

// ---------------------------------------------------------------------------
// Dense ops

/// matmul(a, b, bias=None, b_layout="kn", device=None) -> ndarray | Tensor
///
/// `C[..., M, N] = A[..., M, K] · B (+ bias[N])`. `b` is `[K, N]` for
/// `b_layout="kn"` or linear-layer weights `[N, K]` for `b_layout="nk"`; a
/// 2-D `b` broadcasts over a batched `a`. Returns `a`'s dtype: a numpy array
/// when `a` is one, else a radiant.Tensor on the op's device.
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
    let backend = op_device(py, device, &[Some(a), Some(b), bias])?;
    let (a_, b_) = (
        arg(OP, "a", a, &backend, false)?,
        arg(OP, "b", b, &backend, false)?,
    );
    let bias_ = arg_opt(OP, "bias", bias, &backend)?;
    let be = backend.as_ref();
    let y = run(py, || {
        let (a, b, bias) = (a_.on(be)?, b_.on(be)?, on_opt(&bias_, be)?);
        ops::matmul(be, &a, &b, bias.as_ref(), MatmulParams { b_layout })
    })?;
    output(py, y, &backend, returns_tensor(a))
}

/// rms_norm(x, weight, eps=1e-6, weight_offset=0.0, device=None) -> ndarray | Tensor
///
/// `y = x / sqrt(mean(x²) + eps) · (weight + weight_offset)` over the last dim
/// (`weight_offset=1.0` for Gemma). Returns `x`'s dtype.
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
    let backend = op_device(py, device, &[Some(x), Some(weight)])?;
    let x_ = arg(OP, "x", x, &backend, false)?;
    let w_ = arg(OP, "weight", weight, &backend, false)?;
    let params = RmsNormParams { eps, weight_offset };
    let be = backend.as_ref();
    let y = run(py, || ops::rms_norm(be, &x_.on(be)?, &w_.on(be)?, params))?;
    output(py, y, &backend, returns_tensor(x))
}

/// fused_add_rms_norm(x, residual, weight, eps=1e-6, weight_offset=0.0, device=None)
///     -> (out, new_residual)
///
/// `new_residual = round(x + residual)`, `out = rms_norm(new_residual)`. A
/// numpy / DLPack `residual` is not modified; a radiant.Tensor `residual` is
/// updated in place (the engine's residual stream) and returned as the second
/// result when results are Tensors. Both results have `x`'s dtype.
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
    let backend = op_device(py, device, &[Some(x), Some(residual), Some(weight)])?;
    let x_ = arg(OP, "x", x, &backend, false)?;
    let r_ = arg(OP, "residual", residual, &backend, true)?;
    let w_ = arg(OP, "weight", weight, &backend, false)?;
    // The residual is written in place: no other argument may share its
    // memory through another buffer (the ops layer checks same-buffer
    // aliasing; two imports of one array are two buffers).
    if let Arg::Dev(r) = &r_
        && let Some((r0, r1)) = host_range(r)
    {
        for (name, other) in [("x", &x_), ("weight", &w_)] {
            if let Arg::Dev(t) = other
                && t.buffer().id() != r.buffer().id()
                && let Some((o0, o1)) = host_range(t)
                && o0 < r1
                && r0 < o1
            {
                return Err(PyValueError::new_err(format!(
                    "{OP}: invalid argument `residual`: it is updated in place and shares memory with `{name}`"
                )));
            }
        }
    }
    let params = RmsNormParams { eps, weight_offset };
    let be = backend.as_ref();
    let (y, r) = run(py, || {
        let (x, r, w) = (x_.on(be)?, r_.on(be)?, w_.on(be)?);
        let y = ops::fused_add_rms_norm(be, &x, &r, &w, params)?;
        Ok::<_, Error>((y, r))
    })?;
    let as_tensor = returns_tensor(x);
    let out = output(py, y, &backend, as_tensor)?;
    let res = match residual.cast::<PyTensor>() {
        Ok(t) if as_tensor => t.clone().into_any(),
        _ => output(py, r, &backend, as_tensor)?,
    };
    Ok((out, res))
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
///           window_left=-1, window_right=-1, softcap=0.0, return_lse=False, device=None)
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
    let backend = op_device(
        py,
        device,
        &[
            Some(q),
            Some(k),
            Some(v),
            Some(cu_seqlens_q),
            Some(cu_seqlens_k),
        ],
    )?;
    let q_ = arg(OP, "q", q, &backend, false)?;
    let k_ = arg(OP, "k", k, &backend, false)?;
    let v_ = arg(OP, "v", v, &backend, false)?;
    let cq_ = arg(OP, "cu_seqlens_q", cu_seqlens_q, &backend, false)?;
    let ck_ = arg(OP, "cu_seqlens_k", cu_seqlens_k, &backend, false)?;
    let params = attention_params(causal, softmax_scale, window_left, window_right, softcap);
    let be = backend.as_ref();
    let (out, lse) = run(py, || {
        let (q, k, v) = (q_.on(be)?, k_.on(be)?, v_.on(be)?);
        let (cq, ck) = (cq_.on(be)?, ck_.on(be)?);
        if !return_lse {
            let y = ops::attention(be, &q, &k, &v, &cq, &ck, params)?;
            return Ok::<_, Error>((y, None));
        }
        let out = be.alloc_tensor(q.dtype(), q.shape())?;
        let (total_q, heads_q) = (
            q.shape().first().copied().unwrap_or(0),
            q.shape().get(1).copied().unwrap_or(0),
        );
        let lse = be.alloc_tensor(DType::F32, &[heads_q, total_q])?;
        ops::attention_into(be, &q, &k, &v, &cq, &ck, &out, Some(&lse), params)?;
        Ok((out, Some(lse)))
    })?;
    let as_tensor = returns_tensor(q);
    let out = output(py, out, &backend, as_tensor)?;
    match lse {
        None => Ok(out),
        Some(lse) => Ok((out, output(py, lse, &backend, as_tensor)?)
            .into_pyobject(py)?
            .into_any()),
    }
}

/// paged_attention(q, k_cache, v_cache, block_tables, context_lens, softmax_scale=None,
///                 window_left=-1, window_right=-1, softcap=0.0, causal=False, device=None)
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
    let backend = op_device(
        py,
        device,
        &[
            Some(q),
            Some(k_cache),
            Some(v_cache),
            Some(block_tables),
            Some(context_lens),
        ],
    )?;
    let q_ = arg(OP, "q", q, &backend, false)?;
    let kc_ = arg(OP, "k_cache", k_cache, &backend, false)?;
    let vc_ = arg(OP, "v_cache", v_cache, &backend, false)?;
    let bt_ = arg(OP, "block_tables", block_tables, &backend, false)?;
    let cl_ = arg(OP, "context_lens", context_lens, &backend, false)?;
    let params = attention_params(causal, softmax_scale, window_left, window_right, softcap);
    let be = backend.as_ref();
    let y = run(py, || {
        let (q, kc, vc) = (q_.on(be)?, kc_.on(be)?, vc_.on(be)?);
        let (bt, cl) = (bt_.on(be)?, cl_.on(be)?);
        ops::paged_attention(be, &q, &kc, &vc, &bt, &cl, params)
    })?;
    output(py, y, &backend, returns_tensor(q))
}

// ---------------------------------------------------------------------------
// Quantized matmuls

fn group_size_of(op: &str, group_size: i64) -> PyResult<GroupSize> {
    GroupSize::from_config(group_size).ok_or_else(|| {
        PyValueError::new_err(format!(
            "{op}: invalid argument `group_size`: must be -1 or positive, got {group_size}"
        ))
    })
}

fn given(obj: Option<&Bound<'_, PyAny>>) -> bool {
    obj.is_some_and(|o| !o.is_none())
}

fn required<'a, 'py>(
    op: &str,
    name: &str,
    obj: Option<&'a Bound<'py, PyAny>>,
) -> PyResult<&'a Bound<'py, PyAny>> {
    obj.filter(|o| !o.is_none()).ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{op}: missing argument `{name}` (pass the checkpoint arrays, or weight=<radiant weight>)"
        ))
    })
}

fn no_arrays_with_weight(op: &str, names: &[(&str, bool)]) -> PyResult<()> {
    match names.iter().find(|(_, g)| *g) {
        Some((name, _)) => Err(PyValueError::new_err(format!(
            "{op}: invalid argument `{name}`: give either weight=<radiant weight> or the checkpoint arrays, not both"
        ))),
        None => Ok(()),
    }
}

/// gptq_matmul(x, qweight=None, qzeros=None, scales=None, g_idx=None, bits=None,
///             group_size=None, sym=None, format="gptq", bias=None, device=None,
///             *, weight=None) -> ndarray | Tensor
///
/// `y = x · dequant(W)ᵀ (+ bias)` against a GPTQ layer: either a
/// `radiant.GptqWeight` (`weight=`, or in place of `qweight`), which stays on
/// its device, or the checkpoint arrays (int32 `qweight[K·bits/32, N]`,
/// `qzeros[G, N·bits/32]`, float `scales[G, N]`, int32 `g_idx[K]` or None,
/// with `bits` and `group_size`), uploaded for this call. `format` is
/// `"gptq"` (v1 zero storage) or `"gptq_v2"`; `sym=True` requires every
/// zero point to be 2^(bits-1). Returns x's dtype.
#[pyfunction]
#[pyo3(signature = (x, qweight = None, qzeros = None, scales = None, g_idx = None, bits = None,
                    group_size = None, sym = None, format = "gptq", bias = None, device = None,
                    *, weight = None))]
#[allow(clippy::too_many_arguments)]
fn gptq_matmul<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    qweight: Option<&Bound<'py, PyAny>>,
    qzeros: Option<&Bound<'py, PyAny>>,
    scales: Option<&Bound<'py, PyAny>>,
    g_idx: Option<&Bound<'py, PyAny>>,
    bits: Option<u32>,
    group_size: Option<i64>,
    sym: Option<bool>,
    format: &str,
    bias: Option<&Bound<'py, PyAny>>,
    device: Option<&Bound<'py, PyAny>>,
    weight: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "gptq_matmul";
    let zero_format = ZeroFormat::parse(format).ok_or_else(|| {
        PyValueError::new_err(format!(
            "gptq_matmul: invalid argument `format`: expected \"gptq\" or \"gptq_v2\", got {format:?}"
        ))
    })?;
    let qweight_is_weight = qweight.is_some_and(|q| q.cast::<PyGptqWeight>().is_ok());
    let weight = weight
        .filter(|w| !w.is_none())
        .or(qweight.filter(|_| qweight_is_weight));
    if let Some(wobj) = weight {
        let w = wobj.cast::<PyGptqWeight>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{OP}: invalid argument `weight`: must be a radiant.GptqWeight, got {}",
                wobj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        no_arrays_with_weight(
            OP,
            &[
                ("qweight", given(qweight) && !qweight_is_weight),
                ("qzeros", given(qzeros)),
                ("scales", given(scales)),
                ("g_idx", given(g_idx)),
                ("bits", bits.is_some()),
                ("group_size", group_size.is_some()),
            ],
        )?;
        let w = w.get();
        if sym == Some(true) && !w.weight.is_symmetric() {
            return Err(PyValueError::new_err(format!(
                "{OP}: invalid argument `sym`: sym=True, but the weight's zero points are not all 2^(bits-1)"
            )));
        }
        let backend = op_device(py, device, &[Some(x), Some(wobj), bias])?;
        check_resident(
            OP,
            &w.weight.tensors(),
            w.backend.as_ref(),
            backend.as_ref(),
        )?;
        let x_ = arg(OP, "x", x, &backend, false)?;
        let bias_ = arg_opt(OP, "bias", bias, &backend)?;
        let be = backend.as_ref();
        let y = run(py, || {
            ops::gptq_matmul(be, &x_.on(be)?, &w.weight, on_opt(&bias_, be)?.as_ref())
        })?;
        return output(py, y, &backend, returns_tensor(x));
    }
    let bits = bits.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{OP}: missing argument `bits` (with the checkpoint arrays)"
        ))
    })?;
    let group_size = group_size.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{OP}: missing argument `group_size` (with the checkpoint arrays)"
        ))
    })?;
    let layout = GptqLayout {
        bits,
        group_size: group_size_of(OP, group_size)?,
        zero_format,
    };
    let tensors = GptqTensors {
        qweight: host(OP, "qweight", required(OP, "qweight", qweight)?)?,
        qzeros: host(OP, "qzeros", required(OP, "qzeros", qzeros)?)?,
        scales: host(OP, "scales", required(OP, "scales", scales)?)?,
        g_idx: host_opt(OP, "g_idx", g_idx)?,
    };
    let backend = op_device(py, device, &[Some(x), bias])?;
    let x_ = arg(OP, "x", x, &backend, false)?;
    let bias_ = arg_opt(OP, "bias", bias, &backend)?;
    let be = backend.as_ref();
    let y = run(py, || {
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
        let w = weight.upload(be)?;
        ops::gptq_matmul(be, &x_.on(be)?, &w, on_opt(&bias_, be)?.as_ref())
    })?;
    output(py, y, &backend, returns_tensor(x))
}

/// awq_matmul(x, qweight=None, qzeros=None, scales=None, group_size=None, bias=None,
///            device=None, *, weight=None) -> ndarray | Tensor
///
/// `y = x · dequant(W)ᵀ (+ bias)` against a 4-bit AWQ (gemm layout) layer:
/// a `radiant.AwqWeight` (`weight=`, or in place of `qweight`), or the
/// checkpoint arrays int32 `qweight[K, N/8]`, `qzeros[G, N/8]`, float
/// `scales[G, N]` with `group_size`.
#[pyfunction]
#[pyo3(signature = (x, qweight = None, qzeros = None, scales = None, group_size = None,
                    bias = None, device = None, *, weight = None))]
#[allow(clippy::too_many_arguments)]
fn awq_matmul<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    qweight: Option<&Bound<'py, PyAny>>,
    qzeros: Option<&Bound<'py, PyAny>>,
    scales: Option<&Bound<'py, PyAny>>,
    group_size: Option<i64>,
    bias: Option<&Bound<'py, PyAny>>,
    device: Option<&Bound<'py, PyAny>>,
    weight: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "awq_matmul";
    let qweight_is_weight = qweight.is_some_and(|q| q.cast::<PyAwqWeight>().is_ok());
    let weight = weight
        .filter(|w| !w.is_none())
        .or(qweight.filter(|_| qweight_is_weight));
    if let Some(wobj) = weight {
        let w = wobj.cast::<PyAwqWeight>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{OP}: invalid argument `weight`: must be a radiant.AwqWeight, got {}",
                wobj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        no_arrays_with_weight(
            OP,
            &[
                ("qweight", given(qweight) && !qweight_is_weight),
                ("qzeros", given(qzeros)),
                ("scales", given(scales)),
                ("group_size", group_size.is_some()),
            ],
        )?;
        let w = w.get();
        let backend = op_device(py, device, &[Some(x), Some(wobj), bias])?;
        check_resident(
            OP,
            &w.weight.tensors(),
            w.backend.as_ref(),
            backend.as_ref(),
        )?;
        let x_ = arg(OP, "x", x, &backend, false)?;
        let bias_ = arg_opt(OP, "bias", bias, &backend)?;
        let be = backend.as_ref();
        let y = run(py, || {
            ops::awq_matmul(be, &x_.on(be)?, &w.weight, on_opt(&bias_, be)?.as_ref())
        })?;
        return output(py, y, &backend, returns_tensor(x));
    }
    let group_size = group_size.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{OP}: missing argument `group_size` (with the checkpoint arrays)"
        ))
    })?;
    let layout = AwqLayout {
        group_size: group_size_of(OP, group_size)?,
    };
    let tensors = AwqTensors {
        qweight: host(OP, "qweight", required(OP, "qweight", qweight)?)?,
        qzeros: host(OP, "qzeros", required(OP, "qzeros", qzeros)?)?,
        scales: host(OP, "scales", required(OP, "scales", scales)?)?,
    };
    let backend = op_device(py, device, &[Some(x), bias])?;
    let x_ = arg(OP, "x", x, &backend, false)?;
    let bias_ = arg_opt(OP, "bias", bias, &backend)?;
    let be = backend.as_ref();
    let y = run(py, || {
        let w = AwqWeight::new(tensors, layout)?.upload(be)?;
        ops::awq_matmul(be, &x_.on(be)?, &w, on_opt(&bias_, be)?.as_ref())
    })?;
    output(py, y, &backend, returns_tensor(x))
}

/// nvfp4_matmul(x, weight_packed=None, weight_scale=None, weight_scale_2=None,
///              weight_global_scale=None, bias=None, device=None, *, weight=None)
///     -> ndarray | Tensor
///
/// `y = x · dequant(W)ᵀ (+ bias)` against an NVFP4 layer: a
/// `radiant.Nvfp4Weight` (`weight=`, or in place of `weight_packed`), or the
/// checkpoint arrays uint8 `weight_packed[N, Kp/2]` (ModelOpt's name
/// `weight` is accepted too), E4M3 block scales as raw uint8 bytes
/// `weight_scale[N, Kp/16]`, and exactly one of `weight_scale_2` (ModelOpt
/// multiplier) or `weight_global_scale` (compressed-tensors divisor).
#[pyfunction]
#[pyo3(signature = (x, weight_packed = None, weight_scale = None, weight_scale_2 = None,
                    weight_global_scale = None, bias = None, device = None, *, weight = None))]
#[allow(clippy::too_many_arguments)]
fn nvfp4_matmul<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    weight_packed: Option<&Bound<'py, PyAny>>,
    weight_scale: Option<&Bound<'py, PyAny>>,
    weight_scale_2: Option<&Bound<'py, PyAny>>,
    weight_global_scale: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    device: Option<&Bound<'py, PyAny>>,
    weight: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "nvfp4_matmul";
    let packed_is_weight = weight_packed.is_some_and(|q| q.cast::<PyNvfp4Weight>().is_ok());
    let weight = weight.filter(|w| !w.is_none());
    // ModelOpt calls the packed array `weight`.
    let (weight, weight_packed) = match weight {
        Some(w) if w.cast::<PyNvfp4Weight>().is_err() && !given(weight_packed) => (None, Some(w)),
        Some(w) => (Some(w), weight_packed),
        None if packed_is_weight => (weight_packed, None),
        None => (None, weight_packed),
    };
    if let Some(wobj) = weight {
        let w = wobj.cast::<PyNvfp4Weight>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{OP}: invalid argument `weight`: must be a radiant.Nvfp4Weight, got {}",
                wobj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        no_arrays_with_weight(
            OP,
            &[
                ("weight_packed", given(weight_packed)),
                ("weight_scale", given(weight_scale)),
                ("weight_scale_2", given(weight_scale_2)),
                ("weight_global_scale", given(weight_global_scale)),
            ],
        )?;
        let w = w.get();
        let backend = op_device(py, device, &[Some(x), Some(wobj), bias])?;
        check_resident(
            OP,
            &w.weight.tensors(),
            w.backend.as_ref(),
            backend.as_ref(),
        )?;
        let x_ = arg(OP, "x", x, &backend, false)?;
        let bias_ = arg_opt(OP, "bias", bias, &backend)?;
        let be = backend.as_ref();
        let y = run(py, || {
            ops::nvfp4_matmul(be, &x_.on(be)?, &w.weight, on_opt(&bias_, be)?.as_ref())
        })?;
        return output(py, y, &backend, returns_tensor(x));
    }
    let global_scale = global_scale(OP, weight_scale_2, weight_global_scale)?;
    let tensors = Nvfp4Tensors {
        weight_packed: host(
            OP,
            "weight_packed",
            required(OP, "weight_packed", weight_packed)?,
        )?,
        weight_scale: host(
            OP,
            "weight_scale",
            required(OP, "weight_scale", weight_scale)?,
        )?,
        global_scale,
    };
    let backend = op_device(py, device, &[Some(x), bias])?;
    let x_ = arg(OP, "x", x, &backend, false)?;
    let bias_ = arg_opt(OP, "bias", bias, &backend)?;
    let be = backend.as_ref();
    let y = run(py, || {
        let x = x_.on(be)?;
        let packed_k = tensors.weight_packed.shape().get(1).map(|c| c * 2);
        let weight = match x.shape().last().copied() {
            Some(k) if k > 0 && Some(k.div_ceil(BLOCK) * BLOCK) == packed_k => {
                Nvfp4Weight::with_in_features(tensors, k)?
            }
            _ => Nvfp4Weight::new(tensors)?,
        };
        let w = weight.upload(be)?;
        ops::nvfp4_matmul(be, &x, &w, on_opt(&bias_, be)?.as_ref())
    })?;
    output(py, y, &backend, returns_tensor(x))
}

// ---------------------------------------------------------------------------
// Tensors

/// tensor(data, device=None, copy=None) -> Tensor
///
/// A radiant.Tensor on `device` (default: the device of a radiant.Tensor
/// `data`, else "best") from a numpy array, any object with `__dlpack__`
/// or a radiant.Tensor. copy=None shares memory when it can (host data on a
/// host device: writable and 4-byte aligned), True always copies, False
/// raises BufferError instead of copying.
#[pyfunction]
#[pyo3(name = "tensor", signature = (data, device = None, copy = None))]
fn tensor_fn(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    device: Option<&Bound<'_, PyAny>>,
    copy: Option<bool>,
) -> PyResult<PyTensor> {
    tensor::make(py, "radiant.tensor", data, device, copy)
}

/// from_dlpack(obj, device=None, copy=None) -> Tensor
///
/// `radiant.Tensor.from_dlpack`: imports any DLPack producer (or capsule).
#[pyfunction]
#[pyo3(signature = (obj, device = None, copy = None))]
fn from_dlpack(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    device: Option<&Bound<'_, PyAny>>,
    copy: Option<bool>,
) -> PyResult<PyTensor> {
    tensor::make(py, "radiant.from_dlpack", obj, device, copy)
}

// ---------------------------------------------------------------------------

/// radiant: LLM inference kernels (matmul, RMSNorm, attention, paged attention,
/// GPTQ / AWQ / NVFP4 matmul) on CPU, CUDA and WebGPU, from numpy, DLPack or
/// device-resident radiant.Tensors.
#[pymodule(name = "radiant")]
fn radiant_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Device>()?;
    m.add_class::<PyTensor>()?;
    m.add_class::<PyGptqWeight>()?;
    m.add_class::<PyAwqWeight>()?;
    m.add_class::<PyNvfp4Weight>()?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(tensor_fn, m)?)?;
    m.add_function(wrap_pyfunction!(from_dlpack, m)?)?;
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
