//! The quantized matmuls in case files: typed params, the validated host
//! weight built from the case's checkpoint tensors, validation through the
//! op's own `validate`, the reference evaluation and the launch.
//!
//! The weight is built once, when the case is built, through the format's
//! validating constructor (`GptqWeight::new`, `AwqWeight::new`,
//! `Nvfp4Weight::with_in_features`), so a malformed layer is refused with
//! the constructor's reason and every later step works on a valid weight.

use std::collections::BTreeMap;

use crate::backend::Backend;
use crate::case::CaseParams;
use crate::case::problem::{Checked, OutputSpec};
use crate::cpu::ReferenceBackend;
use crate::cpu::reference;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::tolerance::{Tolerance, tolerance};
use crate::ops::{self, OpKind, OpQuery};
use crate::quant::nvfp4::BLOCK;
use crate::quant::{
    AwqLayout, AwqTensors, AwqWeight, GlobalScale, GptqLayout, GptqTensors, GptqWeight, GroupSize,
    Nvfp4Tensors, Nvfp4Weight, ZeroFormat, floats,
};
use crate::tensor::{HostTensor, Tensor};

/// The metadata of a gptq_matmul case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptqCaseParams {
    /// 4 or 8 (checked when the weight is built).
    pub bits: u32,
    pub group_size: GroupSize,
    /// What the file states about symmetry: `Some(true)` requires every
    /// zero point to be 2^(bits−1) (kernels that trust `sym` ignore
    /// `qzeros`); `None` states nothing. The stored zero points are always
    /// what the op uses.
    pub sym: Option<bool>,
    /// How `qzeros` stores the zero points (`format`: `gptq` = v1).
    pub zero_format: ZeroFormat,
}

impl GptqCaseParams {
    pub fn layout(&self) -> GptqLayout {
        GptqLayout {
            bits: self.bits,
            group_size: self.group_size,
            zero_format: self.zero_format,
        }
    }
}

/// The metadata of an awq_matmul case (4-bit gemm layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwqCaseParams {
    pub group_size: GroupSize,
}

impl AwqCaseParams {
    pub fn layout(&self) -> AwqLayout {
        AwqLayout {
            group_size: self.group_size,
        }
    }
}

/// A quantized case's validated host weight.
#[derive(Debug, Clone)]
pub(super) enum QuantWeight {
    Gptq(GptqWeight),
    Awq(AwqWeight),
    Nvfp4(Nvfp4Weight),
}

impl QuantWeight {
    fn n(&self) -> usize {
        match self {
            QuantWeight::Gptq(w) => w.n(),
            QuantWeight::Awq(w) => w.n(),
            QuantWeight::Nvfp4(w) => w.n(),
        }
    }

    fn k(&self) -> usize {
        match self {
            QuantWeight::Gptq(w) => w.k(),
            QuantWeight::Awq(w) => w.k(),
            QuantWeight::Nvfp4(w) => w.k(),
        }
    }

    /// The dequantized `[N, K]` weight in `dtype`, rounded once from f32.
    pub(super) fn dequantize(&self, dtype: DType) -> Result<HostTensor> {
        match self {
            QuantWeight::Gptq(w) => w.dequantize(dtype),
            QuantWeight::Awq(w) => w.dequantize(dtype),
            QuantWeight::Nvfp4(w) => w.dequantize(dtype),
        }
    }

    /// The reference's f64 `x · round_x(dequant(W))ᵀ (+ bias)`.
    fn eval(&self, x: &[f64], x_dtype: DType, bias: Option<&[f64]>) -> Vec<f64> {
        match self {
            QuantWeight::Gptq(w) => reference::gptq_matmul::eval(x, w, x_dtype, bias),
            QuantWeight::Awq(w) => reference::awq_matmul::eval(x, w, x_dtype, bias),
            QuantWeight::Nvfp4(w) => reference::nvfp4_matmul::eval(x, w, x_dtype, bias),
        }
    }

    /// Uploads the weight to `backend`, then either launches the op
    /// through its public entry point (`launch`, returning `None`) or only
    /// runs its validation (returning what it derived).
    fn validate_or_launch(
        &self,
        backend: &dyn Backend,
        x: &Tensor,
        bias: Option<&Tensor>,
        out: &Tensor,
        launch: bool,
    ) -> Result<Option<Validated>> {
        macro_rules! arm {
            ($w:expr, $into:path, $validate:path) => {{
                let w = $w.upload(backend)?;
                if launch {
                    $into(backend, x, &w, bias, out)?;
                    return Ok(None);
                }
                let p = $validate(backend, x, &w, bias, out)?;
                Ok(Some(Validated {
                    query: p.query(),
                    m: p.m,
                }))
            }};
        }
        match self {
            QuantWeight::Gptq(w) => arm!(w, ops::gptq_matmul_into, ops::gptq_matmul::validate),
            QuantWeight::Awq(w) => arm!(w, ops::awq_matmul_into, ops::awq_matmul::validate),
            QuantWeight::Nvfp4(w) => {
                arm!(w, ops::nvfp4_matmul_into, ops::nvfp4_matmul::validate)
            }
        }
    }

    /// The weight's part of the summary, e.g. `4bit g32 asym gptq act-order`.
    fn describe(&self) -> String {
        match self {
            QuantWeight::Gptq(w) => {
                let sym = if w.is_symmetric() { "sym" } else { "asym" };
                let mut s = format!(
                    "{}bit g{} {sym} {}",
                    w.bits(),
                    w.group_size().to_config(),
                    w.zero_format().name()
                );
                if w.is_act_order() {
                    s += " act-order";
                }
                s
            }
            QuantWeight::Awq(w) => format!("4bit g{}", w.group_size().to_config()),
            QuantWeight::Nvfp4(w) => {
                let mut s = String::new();
                if w.k_padded() != w.k() {
                    s += &format!("Kp={} ", w.k_padded());
                }
                s += match w.global_scale() {
                    GlobalScale::Multiplier(_) => "scale_2",
                    GlobalScale::Divisor(_) => "global_scale",
                };
                s
            }
        }
    }
}

/// What the op's validation derived.
struct Validated {
    query: OpQuery,
    m: usize,
}

/// A quantized case's weight and bias, ready to run.
#[derive(Debug, Clone)]
pub(super) struct QuantInputs {
    pub weight: QuantWeight,
    /// The case's bias rounded to x's dtype (when both are floats).
    pub bias: Option<HostTensor>,
}

impl QuantInputs {
    /// Runs the op on `backend` through its public entry point.
    pub(super) fn launch(
        &self,
        backend: &dyn Backend,
        x: &Tensor,
        bias: Option<&Tensor>,
        out: &Tensor,
    ) -> Result<()> {
        self.weight
            .validate_or_launch(backend, x, bias, out, true)
            .map(drop)
    }
}

/// (required, optional) tensors of the quantized ops. NVFP4's packed
/// weight (`weight_packed` or `weight`) and global scale (`weight_scale_2`
/// or `weight_global_scale`) are each one of two names, checked in `build`.
pub(super) fn input_names(op: OpKind) -> (&'static [&'static str], &'static [&'static str]) {
    match op {
        OpKind::GptqMatmul => (&["x", "qweight", "qzeros", "scales", "g_idx"], &["bias"]),
        OpKind::AwqMatmul => (&["x", "qweight", "qzeros", "scales"], &["bias"]),
        OpKind::Nvfp4Matmul => (
            &["x", "weight_scale"],
            &[
                "weight_packed",
                "weight",
                "weight_scale_2",
                "weight_global_scale",
                "bias",
            ],
        ),
        _ => (&[], &[]),
    }
}

fn get<'a>(inputs: &'a BTreeMap<String, HostTensor>, name: &str) -> Result<&'a HostTensor> {
    inputs
        .get(name)
        .ok_or_else(|| Error::format("case", format!("missing tensor `{name}`")))
}

/// Builds the validated host weight of a quantized case.
fn build_weight(params: &CaseParams, inputs: &BTreeMap<String, HostTensor>) -> Result<QuantWeight> {
    match params {
        CaseParams::GptqMatmul(p) => {
            let tensors = GptqTensors {
                qweight: get(inputs, "qweight")?.clone(),
                qzeros: get(inputs, "qzeros")?.clone(),
                scales: get(inputs, "scales")?.clone(),
                g_idx: Some(get(inputs, "g_idx")?.clone()),
            };
            let weight = GptqWeight::new(tensors, p.layout())?;
            if p.sym == Some(true) {
                check_symmetric(&weight)?;
            }
            Ok(QuantWeight::Gptq(weight))
        }
        CaseParams::AwqMatmul(p) => {
            let tensors = AwqTensors {
                qweight: get(inputs, "qweight")?.clone(),
                qzeros: get(inputs, "qzeros")?.clone(),
                scales: get(inputs, "scales")?.clone(),
            };
            Ok(QuantWeight::Awq(AwqWeight::new(tensors, p.layout())?))
        }
        CaseParams::Nvfp4Matmul => build_nvfp4(inputs).map(QuantWeight::Nvfp4),
        _ => Err(Error::format("case", "internal: not a quantized op")),
    }
}

/// `sym = true` must describe the stored zero points.
fn check_symmetric(weight: &GptqWeight) -> Result<()> {
    let mid = 1u8 << (weight.bits() - 1);
    let zeros = weight.zeros();
    match zeros.iter().position(|&z| z != mid) {
        None => Ok(()),
        Some(i) => {
            let (g, n) = (i / weight.n(), i % weight.n());
            Err(Error::format(
                "case",
                format!(
                    "metadata `sym` = true, but zero point z[{g}, {n}] = {} is not 2^(bits-1) = {mid} \
                     (kernels that trust `sym` would ignore qzeros); write `sym` = false",
                    zeros[i]
                ),
            ))
        }
    }
}

fn build_nvfp4(inputs: &BTreeMap<String, HostTensor>) -> Result<Nvfp4Weight> {
    let bad = |reason: String| Error::format("case", reason);
    let weight_packed = match (inputs.get("weight_packed"), inputs.get("weight")) {
        (Some(packed), None) | (None, Some(packed)) => packed.clone(),
        (Some(_), Some(_)) => {
            return Err(bad(
                "has both `weight_packed` and `weight` (ModelOpt's name for it); keep one".into(),
            ));
        }
        (None, None) => {
            return Err(bad(
                "nvfp4_matmul needs tensor `weight_packed` (or `weight`, ModelOpt's name)".into(),
            ));
        }
    };
    let scalar = |name: &str, t: &HostTensor| -> Result<f32> {
        if !t.dtype().is_float() || t.numel() != 1 || t.shape().len() > 1 {
            return Err(bad(format!(
                "`{name}` must be one float ([1] or []), got {} {:?}",
                t.dtype(),
                t.shape()
            )));
        }
        Ok(floats(t)[0])
    };
    let global_scale = match (
        inputs.get("weight_scale_2"),
        inputs.get("weight_global_scale"),
    ) {
        (Some(g), None) => GlobalScale::Multiplier(scalar("weight_scale_2", g)?),
        (None, Some(d)) => GlobalScale::Divisor(scalar("weight_global_scale", d)?),
        (Some(_), Some(_)) => {
            return Err(bad(
                "has both `weight_scale_2` (ModelOpt multiplier) and `weight_global_scale` \
                 (compressed-tensors divisor); which convention applies is ambiguous"
                    .into(),
            ));
        }
        (None, None) => {
            return Err(bad(
                "nvfp4_matmul needs `weight_scale_2` (ModelOpt multiplier) or \
                 `weight_global_scale` (compressed-tensors divisor)"
                    .into(),
            ));
        }
    };
    // K is x's last dim when the packed rows hold it (padded to 16);
    // otherwise the packed width, and the op's validation reports x.
    let packed_k = weight_packed.shape().get(1).map(|c| c.saturating_mul(2));
    let x_k = get(inputs, "x")?.shape().last().copied();
    let tensors = Nvfp4Tensors {
        weight_packed,
        weight_scale: get(inputs, "weight_scale")?.clone(),
        global_scale,
    };
    match x_k {
        Some(k) if k > 0 && Some(k.div_ceil(BLOCK) * BLOCK) == packed_k => {
            Nvfp4Weight::with_in_features(tensors, k)
        }
        _ => Nvfp4Weight::new(tensors),
    }
}

/// Validates a quantized case: builds the weight, runs the op's
/// validation on the reference backend, derives the outputs.
pub(super) fn check(
    params: &CaseParams,
    inputs: &BTreeMap<String, HostTensor>,
    expected: &BTreeMap<String, HostTensor>,
) -> Result<Checked> {
    let op = params.op();
    let weight = build_weight(params, inputs)?;
    let x_host = get(inputs, "x")?;
    let stored_bias = inputs.get("bias");
    let bias = match stored_bias {
        Some(b) if b.dtype().is_float() && x_host.dtype().is_float() => {
            Some(b.to_dtype(x_host.dtype())?)
        }
        other => other.cloned(),
    };

    let backend = ReferenceBackend::new();
    let backend: &dyn Backend = &backend;
    let x = backend.upload_tensor(x_host)?;
    let bias_t = bias
        .as_ref()
        .map(|b| backend.upload_tensor(b))
        .transpose()?;
    let (n, k) = (weight.n(), weight.k());
    let out_shape = ops::gptq_matmul::output_shape(&x, n);
    let out = backend.alloc_tensor(x.dtype(), &out_shape)?;
    let validated = weight
        .validate_or_launch(backend, &x, bias_t.as_ref(), &out, false)?
        .ok_or_else(|| Error::format("case", "internal: validation derived nothing"))?;

    let mut summary = format!("M={} N={n} K={k} {}", validated.m, weight.describe());
    if let Some(b) = stored_bias {
        summary += " +bias";
        if b.dtype() != x.dtype() {
            summary += &format!("({})", b.dtype());
        }
    }
    let mut outputs = vec![OutputSpec {
        name: "out",
        expected: "expected",
        dtype: x.dtype(),
        shape: out_shape,
        tolerance: tolerance(op, x.dtype()),
    }];
    if let Some(e) = expected.get("expected_weight") {
        if !e.dtype().is_float() {
            return Err(Error::format(
                "case",
                format!(
                    "`expected_weight` must be f32, f16 or bf16 (the dequantized weight), got {}",
                    e.dtype()
                ),
            ));
        }
        outputs.push(OutputSpec {
            name: "weight",
            expected: "expected_weight",
            dtype: e.dtype(),
            shape: vec![n, k],
            tolerance: exact(op, x.dtype()),
        });
    }
    Ok(Checked {
        query: validated.query,
        summary,
        outputs,
        quant: Some(QuantInputs { weight, bias }),
    })
}

/// Bit-for-bit equality (±0 equal): no relative or absolute error at all.
fn exact(op: OpKind, dtype: DType) -> Tolerance {
    Tolerance {
        rel_l2: 0.0,
        max_abs: 0.0,
        ..tolerance(op, dtype)
    }
}

/// The f64 reference output `out` of a quantized case.
pub(super) fn reference(
    quant: &QuantInputs,
    x: &HostTensor,
) -> Result<Vec<(&'static str, Vec<f64>)>> {
    let bias = quant.bias.as_ref().map(HostTensor::to_f64_vec);
    let out = quant
        .weight
        .eval(&x.to_f64_vec(), x.dtype(), bias.as_deref());
    Ok(vec![("out", out)])
}
