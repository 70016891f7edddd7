//! Case files: one op invocation in one safetensors file, replayable on any
//! backend (`radiant replay`) — the black-box contract of DESIGN.md.
//!
//! # The format
//!
//! * `__metadata__["op"]`: the op name (`matmul`, `rms_norm`,
//!   `fused_add_rms_norm`, `attention`, `paged_attention`, `gptq_matmul`,
//!   `awq_matmul`, `nvfp4_matmul`).
//! * Every scalar parameter is a metadata string in JSON spelling: numbers
//!   (`0.125`, `1e-6`, `-1`), booleans (`true`), `null`. Names are plain
//!   text (`kn`; a JSON string `"kn"` is accepted too).
//!   - matmul: `b_layout` (`kn`: b is `[K,N]`; `nk`: b is `[N,K]`).
//!   - rms_norm, fused_add_rms_norm: `eps`, `weight_offset`.
//!   - attention, paged_attention: `causal`, `softmax_scale` (`null` =
//!     `1/sqrt(D)`), `window_left`, `window_right` (`-1` or `null` =
//!     unbounded), `softcap` (`0` or `null` = off).
//!   - A missing parameter takes the op's default (`MatmulParams::default()`,
//!     `RmsNormParams::default()`, `AttentionParams::default()`). Files
//!     written by [`Case::save`] always spell out every parameter.
//! * Tensors: the op's inputs under their documented names
//!   (matmul `a`, `b`, optional `bias`; rms_norm `x`, `weight`;
//!   fused_add_rms_norm `x`, `residual`, `weight`; attention `q`, `k`, `v`,
//!   `cu_seqlens_q`, `cu_seqlens_k`; paged_attention `q`, `k_cache`,
//!   `v_cache`, `block_tables`, `context_lens`), plus optional expected
//!   outputs: `expected` (the op's output, in the activation dtype),
//!   `expected_residual` (fused_add_rms_norm's updated residual) and
//!   `expected_lse` (attention's f32 `[Hq, total_q]` log-sum-exp).
//! * The activation dtype is the dtype of `a` / `x` / `q`.
//!
//! Tolerated and kept: extra metadata keys (`source`, `description`, ...)
//! and `expected_*` tensors radiant does not know (an unknown `expected_*`
//! whose dtype radiant has no type for is dropped). Rejected with
//! [`Error::Format`]: unreadable safetensors, a missing or unknown `op`, a
//! malformed parameter, an unknown input tensor (usually a misspelling), a
//! missing required input, any dtype or shape the op's validation refuses,
//! and a known `expected*` whose dtype or shape differs from the output.
//!
//! # The quantized ops
//!
//! Tensors are the checkpoint's names without the layer prefix; each weight
//! is built through its validated constructor (`GptqWeight::new`, ...), so a
//! malformed layer is an [`Error::Format`] giving the constructor's reason.
//!
//! * gptq_matmul: `x`, `qweight`, `qzeros`, `scales`, `g_idx`, optional
//!   `bias`; metadata `bits` (4 or 8) and `group_size` (`-1` = all of K),
//!   both required (no default could be right), `format` (`gptq`: v1 zero
//!   storage, the default; `gptq_v2`; the legacy key `checkpoint_format` is
//!   read too) and `sym` (`true`/`false`, or `null`/absent = not stated;
//!   `true` requires every zero point to be 2^(bits−1), since kernels that
//!   trust `sym` ignore `qzeros`).
//! * awq_matmul (gemm layout): `x`, `qweight`, `qzeros`, `scales`, optional
//!   `bias`; metadata `group_size` (required; `bits`, if given, must be 4).
//! * nvfp4_matmul: `x`, `weight_packed` u8 (or `weight`, ModelOpt's name),
//!   `weight_scale` (F8_E4M3, or its bytes as u8), exactly one of
//!   `weight_scale_2` (f32 `[1]` or `[]`: ModelOpt's multiplier) or
//!   `weight_global_scale` (compressed-tensors' divisor), optional `bias`.
//!   K is x's last dim; the packed rows may be padded to a multiple of 16.
//! * `bias` may be stored in the checkpoint's float dtype: it is rounded to
//!   x's dtype before the call, as an engine would.
//! * `expected` is the output in x's dtype. `expected_weight` (optional, any
//!   float dtype, `[N, K]`) is the producing package's dequantized weight:
//!   [`run`] then also checks radiant's host dequantization in that dtype
//!   against it bit for bit (±0 equal), reported as the output `weight`.

mod format;
mod problem;
mod quant;
mod run;

use std::collections::BTreeMap;
use std::path::Path;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::{AttentionParams, MatmulParams, OpKind, RmsNormParams};
use crate::quant::{AwqWeight, GlobalScale, GptqWeight, Nvfp4Weight};
use crate::tensor::HostTensor;

pub use quant::{AwqCaseParams, GptqCaseParams};
pub use run::{Against, CaseReport, OutputReport, Verdict, run};

/// The op of a case and its typed scalar parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseParams {
    Matmul(MatmulParams),
    RmsNorm(RmsNormParams),
    FusedAddRmsNorm(RmsNormParams),
    Attention(AttentionParams),
    PagedAttention(AttentionParams),
    GptqMatmul(GptqCaseParams),
    AwqMatmul(AwqCaseParams),
    /// NVFP4 has no scalar parameters: the global-scale convention is
    /// given by the tensor's name.
    Nvfp4Matmul,
}

impl CaseParams {
    pub fn op(&self) -> OpKind {
        match self {
            CaseParams::Matmul(_) => OpKind::Matmul,
            CaseParams::RmsNorm(_) => OpKind::RmsNorm,
            CaseParams::FusedAddRmsNorm(_) => OpKind::FusedAddRmsNorm,
            CaseParams::Attention(_) => OpKind::Attention,
            CaseParams::PagedAttention(_) => OpKind::PagedAttention,
            CaseParams::GptqMatmul(_) => OpKind::GptqMatmul,
            CaseParams::AwqMatmul(_) => OpKind::AwqMatmul,
            CaseParams::Nvfp4Matmul => OpKind::Nvfp4Matmul,
        }
    }
}

/// One op invocation: typed params, named host inputs, optional expected
/// outputs. Always valid: every constructor runs the op's validation, so a
/// `Case` that exists can be run (its fields are private for that reason).
#[derive(Debug, Clone)]
pub struct Case {
    name: String,
    params: CaseParams,
    inputs: BTreeMap<String, HostTensor>,
    expected: BTreeMap<String, HostTensor>,
    /// Metadata keys that are not parameters, kept for `save`.
    extra_metadata: BTreeMap<String, String>,
    /// What validation derived: the query, a shapes summary, output specs.
    checked: problem::Checked,
}

impl Case {
    /// Builds and validates a case. `name` is used in error messages and
    /// reports (a file name, or a short label). Input names must be the
    /// op's documented names; expected outputs are added with
    /// [`Case::with_expected`].
    pub fn new<S: Into<String>>(
        name: impl Into<String>,
        params: CaseParams,
        inputs: impl IntoIterator<Item = (S, HostTensor)>,
    ) -> Result<Case> {
        Self::assemble(
            name.into(),
            params,
            inputs.into_iter().map(|(n, t)| (n.into(), t)).collect(),
            BTreeMap::new(),
            BTreeMap::new(),
        )
    }

    /// A matmul case (`a`, `b`, optional `bias`).
    pub fn matmul(
        a: HostTensor,
        b: HostTensor,
        bias: Option<HostTensor>,
        params: MatmulParams,
    ) -> Result<Case> {
        let mut inputs = vec![("a", a), ("b", b)];
        inputs.extend(bias.map(|bias| ("bias", bias)));
        Self::new("matmul", CaseParams::Matmul(params), inputs)
    }

    /// An rms_norm case.
    pub fn rms_norm(x: HostTensor, weight: HostTensor, params: RmsNormParams) -> Result<Case> {
        let inputs = [("x", x), ("weight", weight)];
        Self::new("rms_norm", CaseParams::RmsNorm(params), inputs)
    }

    /// A fused_add_rms_norm case (`residual` is the value before the update).
    pub fn fused_add_rms_norm(
        x: HostTensor,
        residual: HostTensor,
        weight: HostTensor,
        params: RmsNormParams,
    ) -> Result<Case> {
        let inputs = [("x", x), ("residual", residual), ("weight", weight)];
        Self::new(
            "fused_add_rms_norm",
            CaseParams::FusedAddRmsNorm(params),
            inputs,
        )
    }

    /// A varlen attention case.
    pub fn attention(
        q: HostTensor,
        k: HostTensor,
        v: HostTensor,
        cu_seqlens_q: HostTensor,
        cu_seqlens_k: HostTensor,
        params: AttentionParams,
    ) -> Result<Case> {
        let inputs = [
            ("q", q),
            ("k", k),
            ("v", v),
            ("cu_seqlens_q", cu_seqlens_q),
            ("cu_seqlens_k", cu_seqlens_k),
        ];
        Self::new("attention", CaseParams::Attention(params), inputs)
    }

    /// A paged decode attention case.
    pub fn paged_attention(
        q: HostTensor,
        k_cache: HostTensor,
        v_cache: HostTensor,
        block_tables: HostTensor,
        context_lens: HostTensor,
        params: AttentionParams,
    ) -> Result<Case> {
        let inputs = [
            ("q", q),
            ("k_cache", k_cache),
            ("v_cache", v_cache),
            ("block_tables", block_tables),
            ("context_lens", context_lens),
        ];
        Self::new(
            "paged_attention",
            CaseParams::PagedAttention(params),
            inputs,
        )
    }

    /// A gptq_matmul case from a host weight (e.g. from
    /// [`GptqWeight::quantize`]): its tensors under their checkpoint names,
    /// its layout as metadata, `sym` stating whether every zero point is
    /// 2^(bits−1).
    pub fn gptq_matmul(
        x: HostTensor,
        weight: &GptqWeight,
        bias: Option<HostTensor>,
    ) -> Result<Case> {
        let layout = weight.layout();
        let params = GptqCaseParams {
            bits: layout.bits,
            group_size: layout.group_size,
            sym: Some(weight.is_symmetric()),
            zero_format: layout.zero_format,
        };
        let mut inputs = vec![
            ("x", x),
            ("qweight", weight.qweight().clone()),
            ("qzeros", weight.qzeros().clone()),
            ("scales", weight.scales().clone()),
            ("g_idx", weight.g_idx().clone()),
        ];
        inputs.extend(bias.map(|bias| ("bias", bias)));
        Self::new("gptq_matmul", CaseParams::GptqMatmul(params), inputs)
    }

    /// An awq_matmul case from a host weight (e.g. from
    /// [`AwqWeight::quantize`]).
    pub fn awq_matmul(x: HostTensor, weight: &AwqWeight, bias: Option<HostTensor>) -> Result<Case> {
        let params = AwqCaseParams {
            group_size: weight.group_size(),
        };
        let mut inputs = vec![
            ("x", x),
            ("qweight", weight.qweight().clone()),
            ("qzeros", weight.qzeros().clone()),
            ("scales", weight.scales().clone()),
        ];
        inputs.extend(bias.map(|bias| ("bias", bias)));
        Self::new("awq_matmul", CaseParams::AwqMatmul(params), inputs)
    }

    /// An nvfp4_matmul case from a host weight (e.g. from
    /// [`Nvfp4Weight::quantize`]): `weight_packed`, `weight_scale` and the
    /// global scale as f32 `[1]` under its convention's name
    /// (`weight_scale_2` or `weight_global_scale`). x's K may be less than
    /// the packed width (padded weights).
    pub fn nvfp4_matmul(
        x: HostTensor,
        weight: &Nvfp4Weight,
        bias: Option<HostTensor>,
    ) -> Result<Case> {
        let (name, value) = match weight.global_scale() {
            GlobalScale::Multiplier(g) => ("weight_scale_2", g),
            GlobalScale::Divisor(d) => ("weight_global_scale", d),
        };
        let mut inputs = vec![
            ("x", x),
            ("weight_packed", weight.weight_packed().clone()),
            ("weight_scale", weight.weight_scale().clone()),
            (name, HostTensor::from_f32(DType::F32, &[1], &[value])?),
        ];
        inputs.extend(bias.map(|bias| ("bias", bias)));
        Self::new("nvfp4_matmul", CaseParams::Nvfp4Matmul, inputs)
    }

    /// Renames the case (the name shown in reports and errors).
    pub fn named(mut self, name: impl Into<String>) -> Case {
        self.name = name.into();
        self
    }

    /// Adds (or replaces) an expected output. `name` must be `expected` or
    /// start with `expected_`; the known ones must match the output's dtype
    /// and shape.
    pub fn with_expected(self, name: &str, tensor: HostTensor) -> Result<Case> {
        let mut expected = self.expected;
        expected.insert(name.to_string(), tensor);
        Self::assemble(
            self.name,
            self.params,
            self.inputs,
            expected,
            self.extra_metadata,
        )
    }

    /// Adds a free-form metadata entry (`source`, `description`, ...).
    /// `op` and the op's parameter names are refused: they come from the
    /// params.
    pub fn with_metadata(mut self, key: &str, value: &str) -> Result<Case> {
        if format::is_reserved_key(&self.params, key) {
            return Err(Error::format(
                &self.name,
                format!("metadata key `{key}` is set by the op's params"),
            ));
        }
        self.extra_metadata
            .insert(key.to_string(), value.to_string());
        Ok(self)
    }

    /// Reads a case file.
    pub fn load(path: impl AsRef<Path>) -> Result<Case> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses a case from safetensors bytes; `name` labels errors.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Case> {
        let parsed = format::parse(bytes, name)?;
        Self::assemble(
            name.to_string(),
            parsed.params,
            parsed.inputs,
            parsed.expected,
            parsed.extra_metadata,
        )
    }

    /// The case as safetensors bytes (every parameter spelled out).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        format::write(self)
    }

    /// Writes the case file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?).map_err(|e| Error::io(path.display().to_string(), e))
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn op(&self) -> OpKind {
        self.params.op()
    }
    pub fn params(&self) -> &CaseParams {
        &self.params
    }
    /// The activation dtype (of `a` / `x` / `q`), which is the output dtype.
    pub fn dtype(&self) -> DType {
        self.checked.query.dtype
    }
    /// A short description of the problem's dimensions and flags.
    pub fn summary(&self) -> &str {
        &self.checked.summary
    }
    pub fn input(&self, name: &str) -> Option<&HostTensor> {
        self.inputs.get(name)
    }
    pub fn inputs(&self) -> &BTreeMap<String, HostTensor> {
        &self.inputs
    }
    /// `expected`, `expected_residual`, `expected_lse`, `expected_weight`
    /// (quantized ops), or a tolerated extra.
    pub fn expected(&self, name: &str) -> Option<&HostTensor> {
        self.expected.get(name)
    }
    pub fn expected_outputs(&self) -> &BTreeMap<String, HostTensor> {
        &self.expected
    }
    /// Free-form metadata (everything but `op` and the parameters).
    pub fn extra_metadata(&self) -> &BTreeMap<String, String> {
        &self.extra_metadata
    }

    /// The reference backend's f64 evaluation of every output the op has
    /// (`out`, and `residual` / `lse` where the op has them), unrounded.
    pub fn reference_outputs(&self) -> Result<Vec<(&'static str, Vec<f64>)>> {
        problem::reference(self)
    }

    /// The shape and dtype of output `name` (`out`, `residual`, `lse`, or
    /// `weight`: a quantized case's dequantized weight, when the case has
    /// `expected_weight` to compare it with).
    pub fn output_spec(&self, name: &str) -> Option<(DType, &[usize])> {
        self.checked
            .outputs
            .iter()
            .find(|spec| spec.name == name)
            .map(|spec| (spec.dtype, spec.shape.as_slice()))
    }

    fn assemble(
        name: String,
        params: CaseParams,
        inputs: BTreeMap<String, HostTensor>,
        expected: BTreeMap<String, HostTensor>,
        extra_metadata: BTreeMap<String, String>,
    ) -> Result<Case> {
        for key in expected.keys() {
            if !format::is_expected_name(key) {
                return Err(Error::format(
                    &name,
                    format!("`{key}` is not an expected-output name (expected or expected_*)"),
                ));
            }
        }
        let checked = problem::check(&name, &params, &inputs, &expected)?;
        Ok(Case {
            name,
            params,
            inputs,
            expected,
            extra_metadata,
            checked,
        })
    }
}
