//! A case's inputs as the op's validated problem, on the reference backend.
//!
//! Building a case runs the op's own `validate` (so a case file is held to
//! exactly the contract the entry points enforce, and the reference `eval`
//! functions only ever see consistent shapes), derives the output shapes and
//! a one-line summary, and checks the known expected outputs against them.
//! The same validated problem gives the dimensions for the f64 reference
//! evaluation.

use std::collections::BTreeMap;

use crate::backend::Backend;
use crate::case::quant::{self, QuantInputs};
use crate::case::{Case, CaseParams};
use crate::cpu::ReferenceBackend;
use crate::cpu::reference;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::tolerance::{Tolerance, lse_tolerance, tolerance};
use crate::ops::{
    self, AttentionParams, AttentionProblem, FusedAddRmsNormProblem, MatmulParams, MatmulProblem,
    OpKind, OpQuery, PagedAttentionProblem, RmsNormParams, RmsNormProblem,
};
use crate::tensor::{HostTensor, Tensor};

/// What validating a case derived.
#[derive(Debug, Clone)]
pub(super) struct Checked {
    pub query: OpQuery,
    pub summary: String,
    pub outputs: Vec<OutputSpec>,
    /// A quantized op's validated weight and bias.
    pub quant: Option<QuantInputs>,
}

/// One output of the op.
#[derive(Debug, Clone)]
pub(super) struct OutputSpec {
    /// `out`, `residual`, `lse`, `weight`.
    pub name: &'static str,
    /// The tensor that holds its expected value in a case file.
    pub expected: &'static str,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub tolerance: Tolerance,
}

impl OutputSpec {
    fn new(name: &'static str, expected: &'static str, op: OpKind, t: &Tensor) -> Self {
        let tolerance = if name == "lse" {
            lse_tolerance()
        } else {
            tolerance(op, t.dtype())
        };
        OutputSpec {
            name,
            expected,
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            tolerance,
        }
    }
}

/// (required, optional) input names of each op.
pub(super) fn input_names(op: OpKind) -> (&'static [&'static str], &'static [&'static str]) {
    match op {
        OpKind::Matmul => (&["a", "b"], &["bias"]),
        OpKind::RmsNorm => (&["x", "weight"], &[]),
        OpKind::FusedAddRmsNorm => (&["x", "residual", "weight"], &[]),
        OpKind::Attention => (&["q", "k", "v", "cu_seqlens_q", "cu_seqlens_k"], &[]),
        OpKind::PagedAttention => (
            &["q", "k_cache", "v_cache", "block_tables", "context_lens"],
            &[],
        ),
        OpKind::GptqMatmul | OpKind::AwqMatmul | OpKind::Nvfp4Matmul => quant::input_names(op),
    }
}

/// The case's inputs uploaded to the reference backend (host memory: the
/// upload is a copy, and validation can read i32 tables back for free).
struct Staged<'a> {
    backend: ReferenceBackend,
    host: &'a BTreeMap<String, HostTensor>,
    tensors: BTreeMap<&'a str, Tensor>,
}

impl<'a> Staged<'a> {
    fn new(host: &'a BTreeMap<String, HostTensor>) -> Result<Self> {
        let backend = ReferenceBackend::new();
        let dyn_backend: &dyn Backend = &backend;
        let mut tensors = BTreeMap::new();
        for (name, tensor) in host {
            tensors.insert(name.as_str(), dyn_backend.upload_tensor(tensor)?);
        }
        Ok(Staged {
            backend,
            host,
            tensors,
        })
    }

    fn backend(&self) -> &dyn Backend {
        &self.backend
    }

    /// A present input (presence was checked against `input_names`).
    fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::format("case", format!("missing tensor `{name}`")))
    }

    fn values(&self, name: &str) -> Result<Vec<f64>> {
        self.host
            .get(name)
            .map(HostTensor::to_f64_vec)
            .ok_or_else(|| Error::format("case", format!("missing tensor `{name}`")))
    }

    fn alloc(&self, dtype: DType, shape: &[usize]) -> Result<Tensor> {
        self.backend().alloc_tensor(dtype, shape)
    }
}

/// Validates a case's contents; every failure is `Error::Format` naming
/// the case.
pub(super) fn check(
    name: &str,
    params: &CaseParams,
    inputs: &BTreeMap<String, HostTensor>,
    expected: &BTreeMap<String, HostTensor>,
) -> Result<Checked> {
    let as_format = |e: Error| match e {
        Error::Format { reason, .. } => Error::format(name, reason),
        other => Error::format(name, other.to_string()),
    };
    check_names(params.op(), inputs).map_err(as_format)?;
    let staged = || Staged::new(inputs);
    let checked = match params {
        CaseParams::Matmul(p) => staged().and_then(|s| with_matmul(&s, p, check_matmul)),
        CaseParams::RmsNorm(p) => staged().and_then(|s| with_rms_norm(&s, p, check_rms_norm)),
        CaseParams::FusedAddRmsNorm(p) => staged().and_then(|s| with_fused(&s, p, check_fused)),
        CaseParams::Attention(p) => staged().and_then(|s| with_attention(&s, p, check_attention)),
        CaseParams::PagedAttention(p) => staged().and_then(|s| with_paged(&s, p, check_paged)),
        // The quantized ops build their weight first (see `quant`).
        CaseParams::GptqMatmul(_) | CaseParams::AwqMatmul(_) | CaseParams::Nvfp4Matmul => {
            quant::check(params, inputs, expected)
        }
    }
    .map_err(as_format)?;
    for spec in &checked.outputs {
        if let Some(t) = expected.get(spec.expected)
            && (t.dtype() != spec.dtype || t.shape() != spec.shape)
        {
            return Err(Error::format(
                name,
                format!(
                    "`{}` is {} {:?}, but the output `{}` is {} {:?}",
                    spec.expected,
                    t.dtype(),
                    t.shape(),
                    spec.name,
                    spec.dtype,
                    spec.shape
                ),
            ));
        }
    }
    Ok(checked)
}

/// Every required input present, no unknown input (usually a misspelling,
/// which would otherwise silently drop e.g. a bias).
fn check_names(op: OpKind, inputs: &BTreeMap<String, HostTensor>) -> Result<()> {
    let (required, optional) = input_names(op);
    for name in required {
        if !inputs.contains_key(*name) {
            return Err(Error::format("case", format!("{op} needs tensor `{name}`")));
        }
    }
    for name in inputs.keys() {
        let known = required.contains(&name.as_str()) || optional.contains(&name.as_str());
        if !known {
            let mut names: Vec<&str> = required.iter().chain(optional).copied().collect();
            names.push("expected*");
            return Err(Error::format(
                "case",
                format!(
                    "unknown tensor `{name}` for {op} (known: {})",
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The f64 reference evaluation of every output of `case`, unrounded
/// (except fused_add_rms_norm's residual, which the contract rounds).
pub(super) fn reference(case: &Case) -> Result<Vec<(&'static str, Vec<f64>)>> {
    if let Some(quant) = &case.checked.quant {
        let x = case
            .input("x")
            .ok_or_else(|| Error::format(case.name(), "missing tensor `x`"))?;
        return quant::reference(quant, x);
    }
    let staged = Staged::new(case.inputs())?;
    match case.params() {
        CaseParams::Matmul(p) => with_matmul(&staged, p, reference_matmul),
        CaseParams::RmsNorm(p) => with_rms_norm(&staged, p, reference_rms_norm),
        CaseParams::FusedAddRmsNorm(p) => with_fused(&staged, p, reference_fused),
        CaseParams::Attention(p) => with_attention(&staged, p, reference_attention),
        CaseParams::PagedAttention(p) => with_paged(&staged, p, reference_paged),
        CaseParams::GptqMatmul(_) | CaseParams::AwqMatmul(_) | CaseParams::Nvfp4Matmul => Err(
            Error::format(case.name(), "internal: a quantized case without its weight"),
        ),
    }
}

// ---------------------------------------------------------------------------
// One validation per op; `f` gets the validated problem (to summarize it or
// to evaluate it).

fn with_matmul<R>(
    s: &Staged,
    p: &MatmulParams,
    f: impl FnOnce(&Staged, &MatmulProblem<'_>) -> Result<R>,
) -> Result<R> {
    let (a, b) = (s.get("a")?, s.get("b")?);
    let bias = s.tensors.get("bias");
    let out = s.alloc(a.dtype(), &ops::matmul::output_shape(a, b, p)?)?;
    f(
        s,
        &ops::matmul::validate(s.backend(), a, b, bias, &out, *p)?,
    )
}

fn with_rms_norm<R>(
    s: &Staged,
    p: &RmsNormParams,
    f: impl FnOnce(&Staged, &RmsNormProblem<'_>) -> Result<R>,
) -> Result<R> {
    let (x, weight) = (s.get("x")?, s.get("weight")?);
    let out = s.alloc(x.dtype(), x.shape())?;
    f(
        s,
        &ops::rms_norm::validate(s.backend(), x, weight, &out, *p)?,
    )
}

fn with_fused<R>(
    s: &Staged,
    p: &RmsNormParams,
    f: impl FnOnce(&Staged, &FusedAddRmsNormProblem<'_>) -> Result<R>,
) -> Result<R> {
    let (x, residual, weight) = (s.get("x")?, s.get("residual")?, s.get("weight")?);
    let out = s.alloc(x.dtype(), x.shape())?;
    let problem = ops::fused_add_rms_norm::validate(s.backend(), x, residual, weight, &out, *p)?;
    f(s, &problem)
}

fn with_attention<R>(
    s: &Staged,
    p: &AttentionParams,
    f: impl FnOnce(&Staged, &AttentionProblem<'_>) -> Result<R>,
) -> Result<R> {
    let (q, k, v) = (s.get("q")?, s.get("k")?, s.get("v")?);
    let (cu_q, cu_k) = (s.get("cu_seqlens_q")?, s.get("cu_seqlens_k")?);
    let out = s.alloc(q.dtype(), q.shape())?;
    // lse is always validated here so its shape is known; `run` requests it
    // from a backend only when the case has `expected_lse`.
    let lse_shape = match *q.shape() {
        [total_q, heads_q, _] => vec![heads_q, total_q],
        _ => vec![0], // q's rank is refused by validate
    };
    let lse = s.alloc(DType::F32, &lse_shape)?;
    let problem = ops::attention::validate(s.backend(), q, k, v, cu_q, cu_k, &out, Some(&lse), *p)?;
    f(s, &problem)
}

fn with_paged<R>(
    s: &Staged,
    p: &AttentionParams,
    f: impl FnOnce(&Staged, &PagedAttentionProblem<'_>) -> Result<R>,
) -> Result<R> {
    let (q, k_cache, v_cache) = (s.get("q")?, s.get("k_cache")?, s.get("v_cache")?);
    let (tables, lens) = (s.get("block_tables")?, s.get("context_lens")?);
    let out = s.alloc(q.dtype(), q.shape())?;
    let problem =
        ops::paged_attention::validate(s.backend(), q, k_cache, v_cache, tables, lens, &out, *p)?;
    f(s, &problem)
}

// ---------------------------------------------------------------------------
// Summaries and output specs.

fn check_matmul(_: &Staged, p: &MatmulProblem<'_>) -> Result<Checked> {
    let mut summary = format!("M={} N={} K={}", p.m, p.n, p.k);
    if p.a.rank() == 3 {
        let b = if p.b_batched { "" } else { " (b broadcast)" };
        summary += &format!(" batch={}{b}", p.batch);
    }
    summary += &format!(" {}", p.params.b_layout.name());
    if p.bias.is_some() {
        summary += " +bias";
    }
    Ok(Checked {
        query: p.query(),
        summary,
        outputs: vec![OutputSpec::new("out", "expected", OpKind::Matmul, p.out)],
        quant: None,
    })
}

fn check_rms_norm(_: &Staged, p: &RmsNormProblem<'_>) -> Result<Checked> {
    Ok(Checked {
        query: p.query(),
        summary: norm_summary(p.rows, p.hidden, &p.params),
        outputs: vec![OutputSpec::new("out", "expected", OpKind::RmsNorm, p.out)],
        quant: None,
    })
}

fn check_fused(_: &Staged, p: &FusedAddRmsNormProblem<'_>) -> Result<Checked> {
    let op = OpKind::FusedAddRmsNorm;
    Ok(Checked {
        query: p.query(),
        summary: norm_summary(p.rows, p.hidden, &p.params),
        outputs: vec![
            OutputSpec::new("out", "expected", op, p.out),
            OutputSpec::new("residual", "expected_residual", op, p.residual),
        ],
        quant: None,
    })
}

fn norm_summary(rows: usize, hidden: usize, p: &RmsNormParams) -> String {
    let mut summary = format!("rows={rows} H={hidden} eps={}", short(p.eps));
    if p.weight_offset != 0.0 {
        summary += &format!(" offset={}", short(p.weight_offset));
    }
    summary
}

/// `1e-6` rather than `0.000001`; plain decimals otherwise.
fn short(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

fn check_attention(_: &Staged, p: &AttentionProblem<'_>) -> Result<Checked> {
    let summary = format!(
        "batch={} q={} k={} H={}/{} D={}{}",
        p.batch,
        p.total_q,
        p.total_k,
        p.heads_q,
        p.heads_kv,
        p.head_dim,
        attention_flags(&p.params)
    );
    let mut outputs = vec![OutputSpec::new("out", "expected", OpKind::Attention, p.out)];
    if let Some(lse) = p.lse {
        outputs.push(OutputSpec::new(
            "lse",
            "expected_lse",
            OpKind::Attention,
            lse,
        ));
    }
    Ok(Checked {
        query: p.query(),
        summary,
        outputs,
        quant: None,
    })
}

fn check_paged(_: &Staged, p: &PagedAttentionProblem<'_>) -> Result<Checked> {
    let summary = format!(
        "batch={} ctx<={} H={}/{} D={} block={}{}",
        p.batch,
        p.max_context_len,
        p.heads_q,
        p.heads_kv,
        p.head_dim,
        p.block_size,
        attention_flags(&p.params)
    );
    Ok(Checked {
        query: p.query(),
        summary,
        outputs: vec![OutputSpec::new(
            "out",
            "expected",
            OpKind::PagedAttention,
            p.out,
        )],
        quant: None,
    })
}

/// The non-default attention options, e.g. ` causal window=(4,-1) softcap=5`.
fn attention_flags(p: &AttentionParams) -> String {
    let mut flags = String::new();
    if p.causal {
        flags += " causal";
    }
    if p.window_left >= 0 || p.window_right >= 0 {
        flags += &format!(" window=({},{})", p.window_left, p.window_right);
    }
    if p.softcap > 0.0 {
        flags += &format!(" softcap={}", short(p.softcap));
    }
    if let Some(scale) = p.softmax_scale {
        flags += &format!(" scale={}", short(scale));
    }
    flags
}

// ---------------------------------------------------------------------------
// Reference evaluations (f64, on the stored inputs).

type Outputs = Vec<(&'static str, Vec<f64>)>;

fn reference_matmul(s: &Staged, p: &MatmulProblem<'_>) -> Result<Outputs> {
    let shape = reference::matmul::MatmulShape {
        batch: p.batch,
        m: p.m,
        n: p.n,
        k: p.k,
        b_layout: p.params.b_layout,
        b_batched: p.b_batched,
    };
    let bias = match p.bias {
        Some(_) => Some(s.values("bias")?),
        None => None,
    };
    let out = reference::matmul::eval(shape, &s.values("a")?, &s.values("b")?, bias.as_deref());
    Ok(vec![("out", out)])
}

fn reference_rms_norm(s: &Staged, p: &RmsNormProblem<'_>) -> Result<Outputs> {
    let out = reference::rms_norm::eval(&s.values("x")?, &s.values("weight")?, p.hidden, &p.params);
    Ok(vec![("out", out)])
}

fn reference_fused(s: &Staged, p: &FusedAddRmsNormProblem<'_>) -> Result<Outputs> {
    let (out, residual) = reference::fused_add_rms_norm::eval(
        &s.values("x")?,
        &s.values("residual")?,
        &s.values("weight")?,
        p.hidden,
        &p.params,
        p.x.dtype(),
    );
    Ok(vec![("out", out), ("residual", residual)])
}

fn reference_attention(s: &Staged, p: &AttentionProblem<'_>) -> Result<Outputs> {
    let shape = reference::attention::AttentionShape {
        heads_q: p.heads_q,
        heads_kv: p.heads_kv,
        head_dim: p.head_dim,
    };
    let (out, lse) = reference::attention::eval(
        shape,
        &s.values("q")?,
        &s.values("k")?,
        &s.values("v")?,
        &p.seq_offsets_q,
        &p.seq_offsets_k,
        &p.params,
    );
    Ok(vec![("out", out), ("lse", lse)])
}

fn reference_paged(s: &Staged, p: &PagedAttentionProblem<'_>) -> Result<Outputs> {
    let shape = reference::paged_attention::PagedShape {
        heads_q: p.heads_q,
        heads_kv: p.heads_kv,
        head_dim: p.head_dim,
        block_size: p.block_size,
        max_blocks: p.max_blocks,
    };
    let out = reference::paged_attention::eval(
        shape,
        &s.values("q")?,
        &s.values("k_cache")?,
        &s.values("v_cache")?,
        &p.host_block_tables,
        &p.host_context_lens,
        &p.params,
    );
    Ok(vec![("out", out)])
}
