//! Running a case on a backend and judging its outputs.
//!
//! Inputs are uploaded, outputs allocated and poisoned with NaN (so an
//! element a kernel forgets to write fails), the op runs through its public
//! `radiant::ops::*_into` entry point, and each output is compared with its
//! `expected*` tensor when the case has one, else with the reference
//! backend's f64 evaluation of the stored inputs, under the one tolerance
//! table (`ops::tolerance`).

use std::fmt;

use crate::backend::Backend;
use crate::case::{Case, CaseParams};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::tolerance::{Comparison, Tolerance, compare};
use crate::ops::{self, AttentionParams, MatmulParams, OpKind, RmsNormParams};
use crate::tensor::{HostTensor, Tensor};

/// What an output was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Against {
    /// The case's `expected*` tensor.
    Expected,
    /// The reference backend's f64 evaluation.
    Reference,
}

/// One output's comparison.
#[derive(Debug, Clone)]
pub struct OutputReport {
    /// `out`, `residual`, `lse`, or `weight` (a quantized case's host
    /// dequantization, checked bit for bit against `expected_weight`).
    pub name: String,
    pub against: Against,
    pub tolerance: Tolerance,
    pub comparison: Comparison,
}

/// The outcome of a case on a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The backend does not run this case (neither pass nor fail).
    Unsupported(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Pass => f.write_str("PASS"),
            Verdict::Fail => f.write_str("FAIL"),
            Verdict::Unsupported(reason) => write!(f, "UNSUPPORTED: {reason}"),
        }
    }
}

/// What running one case on one backend found.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case's name (its file name, for a loaded case).
    pub case: String,
    pub op: OpKind,
    pub dtype: DType,
    /// The problem's dimensions and flags, one line.
    pub shapes: String,
    pub backend: String,
    /// Empty when the case is unsupported.
    pub outputs: Vec<OutputReport>,
    pub verdict: Verdict,
}

impl CaseReport {
    /// The largest relative error over the outputs.
    pub fn rel_err(&self) -> Option<f64> {
        self.outputs
            .iter()
            .map(|o| o.comparison.rel_l2)
            .reduce(f64::max)
    }

    /// The largest absolute error over the outputs.
    pub fn max_abs(&self) -> Option<f64> {
        self.outputs
            .iter()
            .map(|o| o.comparison.max_abs)
            .reduce(f64::max)
    }

    /// Why a failing case failed, one clause per failing output.
    pub fn failure_detail(&self) -> Option<String> {
        let clauses: Vec<String> = self
            .outputs
            .iter()
            .filter(|o| !o.comparison.passed)
            .map(|o| {
                let c = &o.comparison;
                let against = match o.against {
                    Against::Expected => "expected",
                    Against::Reference => "reference",
                };
                let mut clause = format!(
                    "{} vs {against}: rel {:.2e} (bound {:.1e}), max abs {:.2e} (bound {:.1e} x max(1,|ref|))",
                    o.name, c.rel_l2, o.tolerance.rel_l2, c.max_abs, o.tolerance.max_abs
                );
                if c.bad_elements > 0 {
                    clause += &format!(", {} NaN/inf mismatches", c.bad_elements);
                }
                if let Some(i) = c.worst_index {
                    clause += &format!(", worst at element {i}");
                }
                clause
            })
            .collect();
        (!clauses.is_empty()).then(|| clauses.join("; "))
    }
}

/// Runs `case` on `backend` and compares every output it produces.
///
/// Returns an `Unsupported` verdict when the backend does not run the case;
/// errors only for failures of the machinery itself (device errors, out of
/// memory).
pub fn run(case: &Case, backend: &dyn Backend) -> Result<CaseReport> {
    let mut report = CaseReport {
        case: case.name().to_string(),
        op: case.op(),
        dtype: case.dtype(),
        shapes: case.summary().to_string(),
        backend: backend.name().to_string(),
        outputs: Vec::new(),
        verdict: Verdict::Pass,
    };
    // Ask first, so an unsupported case uploads nothing.
    if let Err(unsupported) = backend.supports(&case.checked.query) {
        report.verdict = Verdict::Unsupported(unsupported.reason);
        return Ok(report);
    }
    let produced = match launch(case, backend) {
        Ok(produced) => produced,
        Err(Error::Unsupported(unsupported)) => {
            report.verdict = Verdict::Unsupported(unsupported.reason);
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    let mut reference = None; // evaluated once, only if some output needs it
    for (name, got) in produced {
        let spec = case
            .checked
            .outputs
            .iter()
            .find(|spec| spec.name == name)
            .ok_or_else(|| Error::format(case.name(), format!("internal: no spec for `{name}`")))?;
        let (against, want) = match case.expected(spec.expected) {
            Some(expected) => (Against::Expected, expected.to_f64_vec()),
            None => {
                if reference.is_none() {
                    reference = Some(case.reference_outputs()?);
                }
                let values = reference
                    .iter()
                    .flatten()
                    .find(|(n, _)| *n == name)
                    .map(|(_, values)| values.clone())
                    .unwrap_or_default(); // a missing reference fails the length check
                (Against::Reference, values)
            }
        };
        report.outputs.push(OutputReport {
            name: name.to_string(),
            against,
            tolerance: spec.tolerance,
            comparison: compare(&got.to_f64_vec(), &want, spec.tolerance),
        });
    }
    if report.outputs.iter().any(|o| !o.comparison.passed) {
        report.verdict = Verdict::Fail;
    }
    Ok(report)
}

/// The outputs an op produced on the backend, downloaded.
type Produced = Vec<(&'static str, HostTensor)>;

/// One function per op (one for the three quantized matmuls).
fn launch(case: &Case, backend: &dyn Backend) -> Result<Produced> {
    let io = DeviceIo { case, backend };
    match case.params() {
        CaseParams::Matmul(p) => launch_matmul(&io, p),
        CaseParams::RmsNorm(p) => launch_rms_norm(&io, p),
        CaseParams::FusedAddRmsNorm(p) => launch_fused_add_rms_norm(&io, p),
        CaseParams::Attention(p) => launch_attention(&io, p),
        CaseParams::PagedAttention(p) => launch_paged_attention(&io, p),
        CaseParams::GptqMatmul(_) | CaseParams::AwqMatmul(_) | CaseParams::Nvfp4Matmul => {
            launch_quantized(&io)
        }
    }
}

/// Moves a case's tensors to and from one backend.
struct DeviceIo<'a> {
    case: &'a Case,
    backend: &'a dyn Backend,
}

impl DeviceIo<'_> {
    fn input(&self, name: &str) -> Result<Tensor> {
        self.optional(name)?
            .ok_or_else(|| Error::format(self.case.name(), format!("missing tensor `{name}`")))
    }

    fn optional(&self, name: &str) -> Result<Option<Tensor>> {
        self.case
            .input(name)
            .map(|host| self.backend.upload_tensor(host))
            .transpose()
    }

    /// A new output tensor filled with NaN (all-ones bytes are NaN in f32,
    /// f16 and bf16), so unwritten elements cannot pass.
    fn output(&self, name: &str) -> Result<Tensor> {
        let (dtype, shape) = self.case.output_spec(name).ok_or_else(|| {
            Error::format(self.case.name(), format!("internal: no output `{name}`"))
        })?;
        let tensor = self.backend.alloc_tensor(dtype, shape)?;
        self.backend
            .upload(tensor.buffer(), 0, &vec![0xFF; tensor.byte_len()])?;
        Ok(tensor)
    }

    fn download(&self, tensor: &Tensor) -> Result<HostTensor> {
        self.backend.download_tensor(tensor)
    }
}

fn launch_matmul(io: &DeviceIo, p: &MatmulParams) -> Result<Produced> {
    let (a, b, bias) = (io.input("a")?, io.input("b")?, io.optional("bias")?);
    let out = io.output("out")?;
    ops::matmul_into(io.backend, &a, &b, bias.as_ref(), &out, *p)?;
    Ok(vec![("out", io.download(&out)?)])
}

fn launch_rms_norm(io: &DeviceIo, p: &RmsNormParams) -> Result<Produced> {
    let (x, weight) = (io.input("x")?, io.input("weight")?);
    let out = io.output("out")?;
    ops::rms_norm_into(io.backend, &x, &weight, &out, *p)?;
    Ok(vec![("out", io.download(&out)?)])
}

fn launch_fused_add_rms_norm(io: &DeviceIo, p: &RmsNormParams) -> Result<Produced> {
    // `residual` is read and written in place: it is both input and output.
    let (x, residual, weight) = (io.input("x")?, io.input("residual")?, io.input("weight")?);
    let out = io.output("out")?;
    ops::fused_add_rms_norm_into(io.backend, &x, &residual, &weight, &out, *p)?;
    Ok(vec![
        ("out", io.download(&out)?),
        ("residual", io.download(&residual)?),
    ])
}

fn launch_attention(io: &DeviceIo, p: &AttentionParams) -> Result<Produced> {
    let (q, k, v) = (io.input("q")?, io.input("k")?, io.input("v")?);
    let (cu_q, cu_k) = (io.input("cu_seqlens_q")?, io.input("cu_seqlens_k")?);
    let out = io.output("out")?;
    // The lse is requested only when the case has one to compare with.
    let lse = match io.case.expected("expected_lse") {
        Some(_) => Some(io.output("lse")?),
        None => None,
    };
    ops::attention_into(io.backend, &q, &k, &v, &cu_q, &cu_k, &out, lse.as_ref(), *p)?;
    let mut produced = vec![("out", io.download(&out)?)];
    if let Some(lse) = lse {
        produced.push(("lse", io.download(&lse)?));
    }
    Ok(produced)
}

fn launch_paged_attention(io: &DeviceIo, p: &AttentionParams) -> Result<Produced> {
    let (q, k_cache, v_cache) = (io.input("q")?, io.input("k_cache")?, io.input("v_cache")?);
    let (tables, lens) = (io.input("block_tables")?, io.input("context_lens")?);
    let out = io.output("out")?;
    ops::paged_attention_into(io.backend, &q, &k_cache, &v_cache, &tables, &lens, &out, *p)?;
    Ok(vec![("out", io.download(&out)?)])
}

/// gptq_matmul, awq_matmul, nvfp4_matmul: the case's validated host weight
/// is uploaded with `upload` and the op runs through its `*_into` entry
/// point. With `expected_weight`, the host dequantization in that tensor's
/// dtype is an output too (`weight`), to be matched bit for bit.
fn launch_quantized(io: &DeviceIo) -> Result<Produced> {
    let quant = io.case.checked.quant.as_ref().ok_or_else(|| {
        Error::format(
            io.case.name(),
            "internal: a quantized case without its weight",
        )
    })?;
    let x = io.input("x")?;
    // The bias as rounded to x's dtype when the case was built.
    let bias = quant
        .bias
        .as_ref()
        .map(|bias| io.backend.upload_tensor(bias))
        .transpose()?;
    let out = io.output("out")?;
    quant.launch(io.backend, &x, bias.as_ref(), &out)?;
    let mut produced = vec![("out", io.download(&out)?)];
    if let Some((dtype, _)) = io.case.output_spec("weight") {
        produced.push(("weight", quant.weight.dequantize(dtype)?));
    }
    Ok(produced)
}
