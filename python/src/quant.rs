//! Quantized weights that stay on their device: `radiant.GptqWeight`,
//! `radiant.AwqWeight`, `radiant.Nvfp4Weight`.
//!
//! Each wraps radiant's validated device weight (`DeviceGptqWeight`, ...):
//! built once — from checkpoint arrays, a safetensors checkpoint
//! (`from_safetensors`, radiant's loader) or a float weight (`quantize`,
//! round to nearest) — then passed to `gptq_matmul` / `awq_matmul` /
//! `nvfp4_matmul` any number of times without another upload.

use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use radiant::quant::{
    AwqConfig, AwqLayout, AwqQuantizeParams, AwqTensors, AwqWeight, Checkpoint, DeviceAwqWeight,
    DeviceGptqWeight, DeviceNvfp4Weight, GlobalScale, GptqConfig, GptqLayout, GptqQuantizeParams,
    GptqTensors, GptqWeight, GroupSize, Nvfp4Producer, Nvfp4Tensors, Nvfp4Weight, QuantConfig,
    ZeroFormat,
};
use radiant::{Backend, DType, Error, HostTensor, Tensor};

use crate::host::{dtype_name, float_dtype, host, host_opt, run, to_numpy};
use crate::tensor::PyTensor;
use crate::{backend_of, device_or_best};

// ---------------------------------------------------------------------------
// Shared helpers.

fn group_size_of(what: &str, group_size: i64) -> PyResult<GroupSize> {
    GroupSize::from_config(group_size).ok_or_else(|| {
        PyValueError::new_err(format!(
            "{what}: invalid argument `group_size`: must be -1 or positive, got {group_size}"
        ))
    })
}

fn zero_format_of(what: &str, format: &str) -> PyResult<ZeroFormat> {
    ZeroFormat::parse(format).ok_or_else(|| {
        PyValueError::new_err(format!(
            "{what}: invalid argument `format`: expected \"gptq\" or \"gptq_v2\", got {format:?}"
        ))
    })
}

fn open_checkpoint(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<Checkpoint> {
    let path: std::path::PathBuf = path.extract().map_err(|_| {
        PyTypeError::new_err("from_safetensors: `path` must be a str or os.PathLike")
    })?;
    run(py, move || Checkpoint::open(path))
}

/// A case file's `__metadata__` value (golden cases keep the layout there).
fn meta(ckpt: &Checkpoint, key: &str) -> Option<String> {
    ckpt.metadata().and_then(|m| m.get(key)).cloned()
}

fn parse_meta<T: std::str::FromStr>(ckpt: &Checkpoint, key: &str) -> PyResult<Option<T>> {
    match meta(ckpt, key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            PyValueError::new_err(format!(
                "{}: __metadata__ `{key}` = {v:?} is not valid",
                ckpt.source()
            ))
        }),
    }
}

fn missing(what: &str, ckpt: &Checkpoint, field: &str) -> PyErr {
    PyValueError::new_err(format!(
        "{what}: {} has no quantization config giving `{field}` (config.json, quantize_config.json, \
         or a case file's __metadata__): pass {field}=",
        ckpt.source()
    ))
}

fn wrong_method(what: &str, ckpt: &Checkpoint, method: &str) -> PyErr {
    PyValueError::new_err(format!(
        "{what}: the checkpoint {} is quantized with {method}",
        ckpt.source()
    ))
}

fn bias_tensor(
    py: Python<'_>,
    bias: &Option<Tensor>,
    backend: &Arc<dyn Backend>,
) -> PyResult<Option<Py<PyTensor>>> {
    bias.as_ref()
        .map(|b| Py::new(py, PyTensor::new(b.clone(), backend.clone())))
        .transpose()
}

fn upload_bias(be: &dyn Backend, bias: &Option<HostTensor>) -> radiant::Result<Option<Tensor>> {
    bias.as_ref().map(|b| be.upload_tensor(b)).transpose()
}

fn move_bias(
    bias: &Option<Tensor>,
    from: &dyn Backend,
    to: &dyn Backend,
) -> radiant::Result<Option<Tensor>> {
    bias.as_ref()
        .map(|b| {
            if to.owns(b.buffer()) {
                Ok(b.clone())
            } else {
                to.upload_tensor(&from.download_tensor(b)?)
            }
        })
        .transpose()
}

fn bias_to_dict(
    py: Python<'_>,
    d: &Bound<'_, PyDict>,
    bias: &Option<Tensor>,
    be: &Arc<dyn Backend>,
) -> PyResult<()> {
    if let Some(b) = bias {
        let h = run(py, || be.download_tensor(b))?;
        d.set_item("bias", to_numpy(py, &h)?)?;
    }
    Ok(())
}

fn dequant_dtype(dtype: Option<&Bound<'_, PyAny>>) -> PyResult<DType> {
    match dtype {
        Some(d) if !d.is_none() => float_dtype("dequantize: invalid argument `dtype`", d),
        _ => Ok(DType::F32),
    }
}

fn scale_dtype_of(what: &str, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<DType> {
    match dtype {
        Some(d) if !d.is_none() => {
            float_dtype(&format!("{what}: invalid argument `scale_dtype`"), d)
        }
        _ => Ok(DType::F16),
    }
}

/// All of a device weight's tensors live where `backend` can use them.
pub fn check_resident(
    op: &str,
    tensors: &[(&'static str, &Tensor)],
    weight_backend: &dyn Backend,
    backend: &dyn Backend,
) -> PyResult<()> {
    if tensors.iter().all(|(_, t)| backend.owns(t.buffer())) {
        return Ok(());
    }
    Err(PyValueError::new_err(format!(
        "{op}: invalid argument `weight`: it lives on {}, the op runs on {}: move it with .to({:?})",
        weight_backend.name(),
        backend.name(),
        backend.name()
    )))
}

// ---------------------------------------------------------------------------
// GPTQ

/// A GPTQ weight on a device. See radiant.pyi.
#[pyclass(module = "radiant", name = "GptqWeight", frozen, weakref)]
pub struct PyGptqWeight {
    pub weight: DeviceGptqWeight,
    pub bias: Option<Tensor>,
    pub backend: Arc<dyn Backend>,
}

impl PyGptqWeight {
    fn build(
        py: Python<'_>,
        host: GptqWeight,
        bias: Option<HostTensor>,
        backend: Arc<dyn Backend>,
    ) -> PyResult<Self> {
        let (weight, bias) = run(py, || {
            Ok::<_, Error>((
                host.upload(backend.as_ref())?,
                upload_bias(backend.as_ref(), &bias)?,
            ))
        })?;
        Ok(PyGptqWeight {
            weight,
            bias,
            backend,
        })
    }

    /// The host weight in its source zero format.
    fn host(&self, py: Python<'_>) -> PyResult<GptqWeight> {
        let w = run(py, || self.weight.download(self.backend.as_ref()))?;
        Ok(w.with_zero_format(self.weight.source_zero_format()))
    }
}

#[pymethods]
impl PyGptqWeight {
    /// GptqWeight(qweight, qzeros, scales, g_idx=None, *, bits, group_size,
    ///            format="gptq", bias=None, device=None)
    ///
    /// From a layer's checkpoint arrays (int32 qweight [K·bits/32, N],
    /// qzeros [G, N·bits/32], float scales [G, N], int32 g_idx [K] or None),
    /// validated once and uploaded to `device` (default "best").
    #[new]
    #[pyo3(signature = (qweight, qzeros, scales, g_idx = None, *, bits, group_size,
                        format = "gptq", bias = None, device = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        qweight: &Bound<'_, PyAny>,
        qzeros: &Bound<'_, PyAny>,
        scales: &Bound<'_, PyAny>,
        g_idx: Option<&Bound<'_, PyAny>>,
        bits: u32,
        group_size: i64,
        format: &str,
        bias: Option<&Bound<'_, PyAny>>,
        device: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        const W: &str = "GptqWeight";
        let layout = GptqLayout {
            bits,
            group_size: group_size_of(W, group_size)?,
            zero_format: zero_format_of(W, format)?,
        };
        let tensors = GptqTensors {
            qweight: host(W, "qweight", qweight)?,
            qzeros: host(W, "qzeros", qzeros)?,
            scales: host(W, "scales", scales)?,
            g_idx: host_opt(W, "g_idx", g_idx)?,
        };
        let bias = host_opt(W, "bias", bias)?;
        let backend = device_or_best(py, device)?;
        let weight = run(py, || GptqWeight::new(tensors, layout))?;
        Self::build(py, weight, bias, backend)
    }

    /// GptqWeight.from_safetensors(path, prefix="", device=None, *, bits=None,
    ///                             group_size=None, format=None) -> GptqWeight
    ///
    /// Loads layer `prefix` (`prefix.qweight`, `.qzeros`, `.scales`,
    /// optional `.g_idx`, `.bias`) from a safetensors file or checkpoint
    /// directory. The layout comes from the keywords, else the
    /// checkpoint's quantization config, else a case file's __metadata__.
    #[staticmethod]
    #[pyo3(signature = (path, prefix = "", device = None, *, bits = None, group_size = None,
                        format = None))]
    fn from_safetensors(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        prefix: &str,
        device: Option<&Bound<'_, PyAny>>,
        bits: Option<u32>,
        group_size: Option<i64>,
        format: Option<&str>,
    ) -> PyResult<Self> {
        const W: &str = "GptqWeight.from_safetensors";
        let backend = device_or_best(py, device)?;
        let ckpt = open_checkpoint(py, path)?;
        let config = match ckpt.config() {
            Some(QuantConfig::Gptq(c)) => Some(*c),
            Some(other) if bits.is_none() || group_size.is_none() => {
                return Err(wrong_method(W, &ckpt, other.method()));
            }
            _ => None,
        };
        let bits = match bits.or(config.map(|c| c.bits)) {
            Some(b) => b,
            None => parse_meta(&ckpt, "bits")?.ok_or_else(|| missing(W, &ckpt, "bits"))?,
        };
        let group_size = match group_size {
            Some(g) => group_size_of(W, g)?,
            None => match config.map(|c| c.group_size) {
                Some(g) => g,
                None => group_size_of(
                    W,
                    parse_meta(&ckpt, "group_size")?
                        .ok_or_else(|| missing(W, &ckpt, "group_size"))?,
                )?,
            },
        };
        let zero_format = match format {
            Some(f) => zero_format_of(W, f)?,
            None => match config.map(|c| c.zero_format) {
                Some(z) => z,
                None => match meta(&ckpt, "format") {
                    Some(f) => zero_format_of(W, &f)?,
                    None => ZeroFormat::V1,
                },
            },
        };
        let config = GptqConfig {
            bits,
            group_size,
            desc_act: config.is_some_and(|c| c.desc_act),
            sym: config.is_some_and(|c| c.sym),
            zero_format,
            static_groups: config.is_some_and(|c| c.static_groups),
        };
        let prefix = prefix.to_string();
        let layer = run(py, || ckpt.load_gptq(&prefix, &config))?;
        Self::build(py, layer.weight, layer.bias, backend)
    }

    /// GptqWeight.quantize(weight, bits=4, group_size=128, sym=True, act_order=None,
    ///                     format="gptq", scale_dtype="float16", device=None)
    ///
    /// Round-to-nearest GPTQ quantization of a float weight [N, K] (N and K
    /// multiples of 32/bits). `act_order`: None (sequential groups) or a
    /// permutation of range(K), the order in which columns are grouped
    /// (g_idx becomes non-monotonic, as in desc_act checkpoints).
    #[staticmethod]
    #[pyo3(signature = (weight, bits = 4, group_size = 128, sym = true, act_order = None,
                        format = "gptq", scale_dtype = None, device = None))]
    #[allow(clippy::too_many_arguments)]
    fn quantize(
        py: Python<'_>,
        weight: &Bound<'_, PyAny>,
        bits: u32,
        group_size: i64,
        sym: bool,
        act_order: Option<&Bound<'_, PyAny>>,
        format: &str,
        scale_dtype: Option<&Bound<'_, PyAny>>,
        device: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        const W: &str = "GptqWeight.quantize";
        let act_order = match act_order {
            Some(a) if !a.is_none() && !a.is(pyo3::types::PyBool::new(py, false)) => {
                let values: Vec<i64> = a.extract().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "{W}: invalid argument `act_order`: must be None or a permutation of range(K) (ints)"
                    ))
                })?;
                let perm = values
                    .iter()
                    .map(|&v| usize::try_from(v))
                    .collect::<Result<Vec<usize>, _>>()
                    .map_err(|_| {
                        PyValueError::new_err(format!(
                            "{W}: invalid argument `act_order`: negative entry"
                        ))
                    })?;
                Some(perm)
            }
            _ => None,
        };
        let params = GptqQuantizeParams {
            bits,
            group_size: group_size_of(W, group_size)?,
            sym,
            zero_format: zero_format_of(W, format)?,
            act_order,
            scale_dtype: scale_dtype_of(W, scale_dtype)?,
        };
        let w = host(W, "weight", weight)?;
        let backend = device_or_best(py, device)?;
        let q = run(py, || GptqWeight::quantize(&w, &params))?;
        Self::build(py, q, None, backend)
    }

    /// Output features N.
    #[getter]
    fn n(&self) -> usize {
        self.weight.n()
    }
    /// Input features K.
    #[getter]
    fn k(&self) -> usize {
        self.weight.k()
    }
    #[getter]
    fn bits(&self) -> u32 {
        self.weight.bits()
    }
    /// Columns per group (-1: one group per output channel).
    #[getter]
    fn group_size(&self) -> i64 {
        self.weight.group_size().to_config()
    }
    /// Number of groups G.
    #[getter]
    fn groups(&self) -> usize {
        self.weight.groups()
    }
    /// Zero-point storage of the source: "gptq" (v1) or "gptq_v2".
    #[getter]
    fn format(&self) -> &'static str {
        self.weight.source_zero_format().name()
    }
    /// Every zero point is 2^(bits-1).
    #[getter]
    fn sym(&self) -> bool {
        self.weight.is_symmetric()
    }
    /// g_idx is not sequential (act-order / desc_act).
    #[getter]
    fn act_order(&self) -> bool {
        self.weight.is_act_order()
    }
    #[getter]
    fn scale_dtype(&self) -> &'static str {
        dtype_name(self.weight.scales().dtype())
    }
    #[getter]
    fn device(&self) -> String {
        self.backend.name().to_string()
    }
    /// The checkpoint's bias (its own dtype) as a radiant.Tensor, or None.
    /// Not applied implicitly: pass `bias=w.bias` to gptq_matmul.
    #[getter]
    fn bias(&self, py: Python<'_>) -> PyResult<Option<Py<PyTensor>>> {
        bias_tensor(py, &self.bias, &self.backend)
    }

    /// The dequantized weight [N, K] as a numpy array of `dtype`
    /// (float32 default, float16, bfloat16).
    #[pyo3(signature = (dtype = None))]
    fn dequantize<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dtype = dequant_dtype(dtype)?;
        let w = self.host(py)?;
        let h = run(py, || w.dequantize(dtype))?;
        to_numpy(py, &h)
    }

    /// The checkpoint arrays (qweight, qzeros in the source format, scales,
    /// g_idx, and bias if any) as numpy arrays.
    fn tensors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let w = self.host(py)?;
        let d = PyDict::new(py);
        d.set_item("qweight", to_numpy(py, w.qweight())?)?;
        d.set_item("qzeros", to_numpy(py, w.qzeros())?)?;
        d.set_item("scales", to_numpy(py, w.scales())?)?;
        d.set_item("g_idx", to_numpy(py, w.g_idx())?)?;
        bias_to_dict(py, &d, &self.bias, &self.backend)?;
        Ok(d)
    }

    /// The weight on `device` (itself if already there).
    fn to(slf: &Bound<'_, Self>, device: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        let py = slf.py();
        let me = slf.get();
        let target = backend_of(py, device)?;
        if target.name() == me.backend.name() {
            return Ok(slf.clone().unbind());
        }
        let (from, to) = (me.backend.as_ref(), target.as_ref());
        let (weight, bias) = run(py, || {
            let weight = if me.weight.tensors().iter().all(|(_, t)| to.owns(t.buffer())) {
                me.weight.clone()
            } else {
                me.weight
                    .download(from)?
                    .with_zero_format(me.weight.source_zero_format())
                    .upload(to)?
            };
            Ok::<_, Error>((weight, move_bias(&me.bias, from, to)?))
        })?;
        Py::new(
            py,
            PyGptqWeight {
                weight,
                bias,
                backend: target,
            },
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "radiant.GptqWeight(n={}, k={}, bits={}, group_size={}, format='{}', act_order={}, device='{}')",
            self.weight.n(),
            self.weight.k(),
            self.weight.bits(),
            self.weight.group_size().to_config(),
            self.weight.source_zero_format().name(),
            if self.weight.is_act_order() {
                "True"
            } else {
                "False"
            },
            self.backend.name()
        )
    }
}

// ---------------------------------------------------------------------------
// AWQ

/// An AWQ (4-bit, gemm layout) weight on a device. See radiant.pyi.
#[pyclass(module = "radiant", name = "AwqWeight", frozen, weakref)]
pub struct PyAwqWeight {
    pub weight: DeviceAwqWeight,
    pub bias: Option<Tensor>,
    pub backend: Arc<dyn Backend>,
}

impl PyAwqWeight {
    fn build(
        py: Python<'_>,
        host: AwqWeight,
        bias: Option<HostTensor>,
        backend: Arc<dyn Backend>,
    ) -> PyResult<Self> {
        let (weight, bias) = run(py, || {
            Ok::<_, Error>((
                host.upload(backend.as_ref())?,
                upload_bias(backend.as_ref(), &bias)?,
            ))
        })?;
        Ok(PyAwqWeight {
            weight,
            bias,
            backend,
        })
    }

    fn host(&self, py: Python<'_>) -> PyResult<AwqWeight> {
        run(py, || self.weight.download(self.backend.as_ref()))
    }
}

#[pymethods]
impl PyAwqWeight {
    /// AwqWeight(qweight, qzeros, scales, *, group_size, bias=None, device=None)
    ///
    /// From a layer's checkpoint arrays (int32 qweight [K, N/8], qzeros
    /// [G, N/8], float scales [G, N]).
    #[new]
    #[pyo3(signature = (qweight, qzeros, scales, *, group_size, bias = None, device = None))]
    fn new(
        py: Python<'_>,
        qweight: &Bound<'_, PyAny>,
        qzeros: &Bound<'_, PyAny>,
        scales: &Bound<'_, PyAny>,
        group_size: i64,
        bias: Option<&Bound<'_, PyAny>>,
        device: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        const W: &str = "AwqWeight";
        let layout = AwqLayout {
            group_size: group_size_of(W, group_size)?,
        };
        let tensors = AwqTensors {
            qweight: host(W, "qweight", qweight)?,
            qzeros: host(W, "qzeros", qzeros)?,
            scales: host(W, "scales", scales)?,
        };
        let bias = host_opt(W, "bias", bias)?;
        let backend = device_or_best(py, device)?;
        let weight = run(py, || AwqWeight::new(tensors, layout))?;
        Self::build(py, weight, bias, backend)
    }

    /// AwqWeight.from_safetensors(path, prefix="", device=None, *, group_size=None)
    ///
    /// Loads layer `prefix` (`.qweight`, `.qzeros`, `.scales`, optional
    /// `.bias`); the group size comes from the keyword, else the config,
    /// else a case file's __metadata__.
    #[staticmethod]
    #[pyo3(signature = (path, prefix = "", device = None, *, group_size = None))]
    fn from_safetensors(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        prefix: &str,
        device: Option<&Bound<'_, PyAny>>,
        group_size: Option<i64>,
    ) -> PyResult<Self> {
        const W: &str = "AwqWeight.from_safetensors";
        let backend = device_or_best(py, device)?;
        let ckpt = open_checkpoint(py, path)?;
        let from_config = match ckpt.config() {
            Some(QuantConfig::Awq(c)) => Some(c.group_size),
            Some(other) if group_size.is_none() => {
                return Err(wrong_method(W, &ckpt, other.method()));
            }
            _ => None,
        };
        let group_size = match group_size {
            Some(g) => group_size_of(W, g)?,
            None => match from_config {
                Some(g) => g,
                None => group_size_of(
                    W,
                    parse_meta(&ckpt, "group_size")?
                        .ok_or_else(|| missing(W, &ckpt, "group_size"))?,
                )?,
            },
        };
        let prefix = prefix.to_string();
        let layer = run(py, || ckpt.load_awq(&prefix, &AwqConfig { group_size }))?;
        Self::build(py, layer.weight, layer.bias, backend)
    }

    /// AwqWeight.quantize(weight, group_size=128, scale_dtype="float16", device=None)
    ///
    /// Round-to-nearest asymmetric 4-bit quantization of a float weight
    /// [N, K] (N % 8 == 0, K % group_size == 0).
    #[staticmethod]
    #[pyo3(signature = (weight, group_size = 128, scale_dtype = None, device = None))]
    fn quantize(
        py: Python<'_>,
        weight: &Bound<'_, PyAny>,
        group_size: i64,
        scale_dtype: Option<&Bound<'_, PyAny>>,
        device: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        const W: &str = "AwqWeight.quantize";
        let params = AwqQuantizeParams {
            group_size: group_size_of(W, group_size)?,
            scale_dtype: scale_dtype_of(W, scale_dtype)?,
        };
        let w = host(W, "weight", weight)?;
        let backend = device_or_best(py, device)?;
        let q = run(py, || AwqWeight::quantize(&w, &params))?;
        Self::build(py, q, None, backend)
    }

    #[getter]
    fn n(&self) -> usize {
        self.weight.n()
    }
    #[getter]
    fn k(&self) -> usize {
        self.weight.k()
    }
    /// Always 4.
    #[getter]
    fn bits(&self) -> u32 {
        4
    }
    #[getter]
    fn group_size(&self) -> i64 {
        self.weight.group_size().to_config()
    }
    #[getter]
    fn groups(&self) -> usize {
        self.weight.groups()
    }
    #[getter]
    fn scale_dtype(&self) -> &'static str {
        dtype_name(self.weight.scales().dtype())
    }
    #[getter]
    fn device(&self) -> String {
        self.backend.name().to_string()
    }
    #[getter]
    fn bias(&self, py: Python<'_>) -> PyResult<Option<Py<PyTensor>>> {
        bias_tensor(py, &self.bias, &self.backend)
    }

    #[pyo3(signature = (dtype = None))]
    fn dequantize<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dtype = dequant_dtype(dtype)?;
        let w = self.host(py)?;
        let h = run(py, || w.dequantize(dtype))?;
        to_numpy(py, &h)
    }

    fn tensors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let w = self.host(py)?;
        let d = PyDict::new(py);
        d.set_item("qweight", to_numpy(py, w.qweight())?)?;
        d.set_item("qzeros", to_numpy(py, w.qzeros())?)?;
        d.set_item("scales", to_numpy(py, w.scales())?)?;
        bias_to_dict(py, &d, &self.bias, &self.backend)?;
        Ok(d)
    }

    fn to(slf: &Bound<'_, Self>, device: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        let py = slf.py();
        let me = slf.get();
        let target = backend_of(py, device)?;
        if target.name() == me.backend.name() {
            return Ok(slf.clone().unbind());
        }
        let (from, to) = (me.backend.as_ref(), target.as_ref());
        let (weight, bias) = run(py, || {
            let weight = if me.weight.tensors().iter().all(|(_, t)| to.owns(t.buffer())) {
                me.weight.clone()
            } else {
                me.weight.download(from)?.upload(to)?
            };
            Ok::<_, Error>((weight, move_bias(&me.bias, from, to)?))
        })?;
        Py::new(
            py,
            PyAwqWeight {
                weight,
                bias,
                backend: target,
            },
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "radiant.AwqWeight(n={}, k={}, bits=4, group_size={}, device='{}')",
            self.weight.n(),
            self.weight.k(),
            self.weight.group_size().to_config(),
            self.backend.name()
        )
    }
}

// ---------------------------------------------------------------------------
// NVFP4

/// An NVFP4 weight on a device. See radiant.pyi.
#[pyclass(module = "radiant", name = "Nvfp4Weight", frozen, weakref)]
pub struct PyNvfp4Weight {
    pub weight: DeviceNvfp4Weight,
    pub bias: Option<Tensor>,
    pub backend: Arc<dyn Backend>,
}

/// A global scale given as a Python float or a one-element float array.
pub fn scalar(what: &str, arg: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if let Ok(v) = obj.extract::<f64>() {
        return Ok(Some(v));
    }
    let t = host(what, arg, obj)?;
    if !t.dtype().is_float() || t.numel() != 1 || t.shape().len() > 1 {
        return Err(PyValueError::new_err(format!(
            "{what}: invalid argument `{arg}`: must be one float ([1] or []), got {} {:?}",
            t.dtype(),
            t.shape()
        )));
    }
    Ok(Some(t.to_f64_vec()[0]))
}

/// Exactly one of the two global-scale conventions.
pub fn global_scale(
    what: &str,
    weight_scale_2: Option<&Bound<'_, PyAny>>,
    weight_global_scale: Option<&Bound<'_, PyAny>>,
) -> PyResult<GlobalScale> {
    let g = scalar(what, "weight_scale_2", weight_scale_2)?;
    let d = scalar(what, "weight_global_scale", weight_global_scale)?;
    match (g, d) {
        (Some(g), None) => Ok(GlobalScale::Multiplier(g as f32)),
        (None, Some(d)) => Ok(GlobalScale::Divisor(d as f32)),
        _ => Err(PyValueError::new_err(format!(
            "{what}: invalid argument `weight_scale_2`: give exactly one of weight_scale_2 \
             (ModelOpt multiplier) or weight_global_scale (compressed-tensors divisor)"
        ))),
    }
}

impl PyNvfp4Weight {
    fn build(
        py: Python<'_>,
        host: Nvfp4Weight,
        bias: Option<HostTensor>,
        backend: Arc<dyn Backend>,
    ) -> PyResult<Self> {
        let (weight, bias) = run(py, || {
            Ok::<_, Error>((
                host.upload(backend.as_ref())?,
                upload_bias(backend.as_ref(), &bias)?,
            ))
        })?;
        Ok(PyNvfp4Weight {
            weight,
            bias,
            backend,
        })
    }

    fn host(&self, py: Python<'_>) -> PyResult<Nvfp4Weight> {
        run(py, || self.weight.download(self.backend.as_ref()))
    }
}

fn with_k(tensors: Nvfp4Tensors, k: Option<usize>) -> radiant::Result<Nvfp4Weight> {
    match k {
        Some(k) => Nvfp4Weight::with_in_features(tensors, k),
        None => Nvfp4Weight::new(tensors),
    }
}

#[pymethods]
impl PyNvfp4Weight {
    /// Nvfp4Weight(weight_packed, weight_scale, weight_scale_2=None,
    ///             weight_global_scale=None, *, in_features=None, bias=None, device=None)
    ///
    /// From a layer's checkpoint arrays: uint8 weight_packed [N, Kp/2], E4M3
    /// block scales as uint8 bytes [N, Kp/16], and exactly one global scale.
    /// `in_features`: K when the rows are padded (default Kp).
    #[new]
    #[pyo3(signature = (weight_packed, weight_scale, weight_scale_2 = None,
                        weight_global_scale = None, *, in_features = None, bias = None,
                        device = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        weight_packed: &Bound<'_, PyAny>,
        weight_scale: &Bound<'_, PyAny>,
        weight_scale_2: Option<&Bound<'_, PyAny>>,
        weight_global_scale: Option<&Bound<'_, PyAny>>,
        in_features: Option<usize>,
        bias: Option<&Bound<'_, PyAny>>,
        device: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        const W: &str = "Nvfp4Weight";
        let tensors = Nvfp4Tensors {
            weight_packed: host(W, "weight_packed", weight_packed)?,
            weight_scale: host(W, "weight_scale", weight_scale)?,
            global_scale: global_scale(W, weight_scale_2, weight_global_scale)?,
        };
        let bias = host_opt(W, "bias", bias)?;
        let backend = device_or_best(py, device)?;
        let weight = run(py, || with_k(tensors, in_features))?;
        Self::build(py, weight, bias, backend)
    }

    /// Nvfp4Weight.from_safetensors(path, prefix="", device=None, *, in_features=None)
    ///
    /// Loads layer `prefix`: `.weight_packed` (compressed-tensors) or
    /// `.weight` (ModelOpt), `.weight_scale`, and `.weight_scale_2`
    /// (multiplier) or `.weight_global_scale` (divisor); optional `.bias`.
    #[staticmethod]
    #[pyo3(signature = (path, prefix = "", device = None, *, in_features = None))]
    fn from_safetensors(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        prefix: &str,
        device: Option<&Bound<'_, PyAny>>,
        in_features: Option<usize>,
    ) -> PyResult<Self> {
        let backend = device_or_best(py, device)?;
        let ckpt = open_checkpoint(py, path)?;
        let prefix = prefix.to_string();
        let layer = run(py, || {
            let layer = ckpt.load_nvfp4(&prefix)?;
            let weight = match in_features {
                None => layer.weight,
                Some(k) => Nvfp4Weight::with_in_features(
                    Nvfp4Tensors {
                        weight_packed: layer.weight.weight_packed().clone(),
                        weight_scale: layer.weight.weight_scale().clone(),
                        global_scale: layer.weight.global_scale(),
                    },
                    k,
                )?,
            };
            Ok::<_, Error>((weight, layer.bias))
        })?;
        Self::build(py, layer.0, layer.1, backend)
    }

    /// Nvfp4Weight.quantize(weight, producer="modelopt", device=None)
    ///
    /// Quantizes a float weight [N, K] (any K; rows padded to 16) the way
    /// `producer` does: "modelopt" (weight_scale_2 multiplier) or
    /// "compressed-tensors" (weight_global_scale divisor).
    #[staticmethod]
    #[pyo3(signature = (weight, producer = "modelopt", device = None))]
    fn quantize(
        py: Python<'_>,
        weight: &Bound<'_, PyAny>,
        producer: &str,
        device: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        const W: &str = "Nvfp4Weight.quantize";
        let producer = match producer {
            "modelopt" => Nvfp4Producer::ModelOpt,
            "compressed-tensors" | "compressed_tensors" => Nvfp4Producer::CompressedTensors,
            other => {
                return Err(PyValueError::new_err(format!(
                    "{W}: invalid argument `producer`: expected \"modelopt\" or \"compressed-tensors\", got {other:?}"
                )));
            }
        };
        let w = host(W, "weight", weight)?;
        let backend = device_or_best(py, device)?;
        let q = run(py, || Nvfp4Weight::quantize(&w, producer))?;
        Self::build(py, q, None, backend)
    }

    #[getter]
    fn n(&self) -> usize {
        self.weight.n()
    }
    #[getter]
    fn k(&self) -> usize {
        self.weight.k()
    }
    /// K rounded up to 16 (the stored row width).
    #[getter]
    fn k_padded(&self) -> usize {
        self.weight.k_padded()
    }
    /// Elements per E4M3 block scale (16).
    #[getter]
    fn block_size(&self) -> usize {
        radiant::quant::nvfp4::BLOCK
    }
    /// The global scale's value (a multiplier for "modelopt", a divisor
    /// for "compressed-tensors").
    #[getter]
    fn global_scale(&self) -> f32 {
        self.weight.global_scale().value()
    }
    /// "modelopt" (weight_scale_2) or "compressed-tensors" (weight_global_scale).
    #[getter]
    fn producer(&self) -> &'static str {
        match self.weight.global_scale() {
            GlobalScale::Multiplier(_) => "modelopt",
            GlobalScale::Divisor(_) => "compressed-tensors",
        }
    }
    #[getter]
    fn device(&self) -> String {
        self.backend.name().to_string()
    }
    #[getter]
    fn bias(&self, py: Python<'_>) -> PyResult<Option<Py<PyTensor>>> {
        bias_tensor(py, &self.bias, &self.backend)
    }

    #[pyo3(signature = (dtype = None))]
    fn dequantize<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let dtype = dequant_dtype(dtype)?;
        let w = self.host(py)?;
        let h = run(py, || w.dequantize(dtype))?;
        to_numpy(py, &h)
    }

    /// The checkpoint arrays: weight_packed, weight_scale (E4M3 bytes as
    /// uint8), weight_scale_2 or weight_global_scale (float32 [1]), bias.
    fn tensors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let w = self.host(py)?;
        let d = PyDict::new(py);
        d.set_item("weight_packed", to_numpy(py, w.weight_packed())?)?;
        d.set_item("weight_scale", to_numpy(py, w.weight_scale())?)?;
        let (name, v) = match w.global_scale() {
            GlobalScale::Multiplier(g) => ("weight_scale_2", g),
            GlobalScale::Divisor(d) => ("weight_global_scale", d),
        };
        let scalar = HostTensor::from_f32(DType::F32, &[1], &[v]).map_err(crate::to_py)?;
        d.set_item(name, to_numpy(py, &scalar)?)?;
        bias_to_dict(py, &d, &self.bias, &self.backend)?;
        Ok(d)
    }

    fn to(slf: &Bound<'_, Self>, device: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        let py = slf.py();
        let me = slf.get();
        let target = backend_of(py, device)?;
        if target.name() == me.backend.name() {
            return Ok(slf.clone().unbind());
        }
        let (from, to) = (me.backend.as_ref(), target.as_ref());
        let (weight, bias) = run(py, || {
            let weight = if me.weight.tensors().iter().all(|(_, t)| to.owns(t.buffer())) {
                me.weight.clone()
            } else {
                me.weight.download(from)?.upload(to)?
            };
            Ok::<_, Error>((weight, move_bias(&me.bias, from, to)?))
        })?;
        Py::new(
            py,
            PyNvfp4Weight {
                weight,
                bias,
                backend: target,
            },
        )
    }

    fn __repr__(&self) -> String {
        format!(
            "radiant.Nvfp4Weight(n={}, k={}, producer='{}', global_scale={}, device='{}')",
            self.weight.n(),
            self.weight.k(),
            self.producer(),
            self.weight.global_scale().value(),
            self.backend.name()
        )
    }
}
