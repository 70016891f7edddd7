//! matmul: `C[b,M,N] = A[b,M,K] · B (+ bias[N])`.
//!
//! Layouts (all row-major, contiguous):
//! * `a`: `[M,K]` or `[batch,M,K]`.
//! * `b`, [`BLayout::Kn`]: `[K,N]` or `[batch,K,N]` (plain matrix product).
//! * `b`, [`BLayout::Nk`]: `[N,K]` or `[batch,N,K]` (linear-layer weights,
//!   `y = x·Wᵀ`).
//! * A 2-D `b` broadcasts over a 3-D `a`; a 3-D `b` needs a 3-D `a` with the
//!   same batch.
//! * `bias`: optional `[N]`, added to every row.
//! * `out`: `[M,N]` or `[batch,M,N]`, following `a`.
//!
//! `a`, `b`, `bias` and `out` share one activation dtype. Devices accumulate
//! in f32 (the reference in f64) and round once to the output dtype.
//!
//! Error bound: with unit round-off u of the dtype and `|A|·|B|` the product
//! of absolute values, each element is within `u·|C| + K·2⁻²⁴·(|A|·|B|)`
//! (output rounding plus f32 accumulation); the per-dtype tolerances in
//! `tests/conformance/tolerance.rs` are set from this.
//!
//! Counts for rooflines: `2·batch·M·N·K` FLOPs; bytes = every input read once
//! plus the output written once.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::{
    OpKind, OpQuery, check_device, check_float, check_index_range, check_inputs_before_alloc,
    check_no_alias, check_rank, check_shape, check_tensor, ensure_supported,
};
use crate::tensor::Tensor;

const OP: &str = "matmul";

/// How `b` is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BLayout {
    /// `b` is `[K,N]`: `C = A·B`.
    #[default]
    Kn,
    /// `b` is `[N,K]` (linear-layer weights): `C = A·Bᵀ`.
    Nk,
}

impl BLayout {
    /// The case-file spelling (`kn` / `nk`).
    pub fn name(self) -> &'static str {
        match self {
            BLayout::Kn => "kn",
            BLayout::Nk => "nk",
        }
    }

    pub fn parse(s: &str) -> Option<BLayout> {
        match s {
            "kn" => Some(BLayout::Kn),
            "nk" => Some(BLayout::Nk),
            _ => None,
        }
    }
}

/// Parameters of [`matmul`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatmulParams {
    pub b_layout: BLayout,
}

/// A validated matmul: every dimension derived, every argument checked.
#[derive(Debug, Clone)]
pub struct MatmulProblem<'a> {
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub out: &'a Tensor,
    pub params: MatmulParams,
    /// Number of matrices (1 for 2-D `a`).
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// True if `b` has its own batch dimension; false if it broadcasts.
    pub b_batched: bool,
}

impl MatmulProblem<'_> {
    pub fn query(&self) -> OpQuery {
        OpQuery::new(OpKind::Matmul, self.a.dtype())
    }

    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.m * self.n) as f64 * self.k as f64
    }

    pub fn bytes(&self) -> f64 {
        let mut bytes = self.a.byte_len() + self.b.byte_len() + self.out.byte_len();
        if let Some(bias) = self.bias {
            bytes += bias.byte_len();
        }
        bytes as f64
    }
}

/// The output shape of a matmul of `a` and `b`, or the validation error.
pub fn output_shape(a: &Tensor, b: &Tensor, params: &MatmulParams) -> Result<Vec<usize>> {
    let dims = derive_dims(a, b, params)?;
    Ok(if a.rank() == 3 {
        vec![dims.batch, dims.m, dims.n]
    } else {
        vec![dims.m, dims.n]
    })
}

struct Dims {
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    b_batched: bool,
}

fn derive_dims(a: &Tensor, b: &Tensor, params: &MatmulParams) -> Result<Dims> {
    check_rank(OP, "a", a, &[2, 3])?;
    check_rank(OP, "b", b, &[2, 3])?;
    let (batch, m, k) = match *a.shape() {
        [m, k] => (1, m, k),
        [batch, m, k] => (batch, m, k),
        _ => unreachable!("rank checked above"),
    };
    let b_batched = b.rank() == 3;
    let (b_batch, b_rows, b_cols) = match *b.shape() {
        [rows, cols] => (batch, rows, cols),
        [batch, rows, cols] => (batch, rows, cols),
        _ => unreachable!("rank checked above"),
    };
    if b_batched && a.rank() != 3 {
        return Err(Error::invalid(
            OP,
            "b",
            format!(
                "a 3-D b {:?} needs a 3-D a, got a {:?}",
                b.shape(),
                a.shape()
            ),
        ));
    }
    if b_batch != batch {
        return Err(Error::invalid(
            OP,
            "b",
            format!("batch {b_batch} does not match a's batch {batch}"),
        ));
    }
    let (b_k, n) = match params.b_layout {
        BLayout::Kn => (b_rows, b_cols),
        BLayout::Nk => (b_cols, b_rows),
    };
    if b_k != k {
        return Err(Error::invalid(
            OP,
            "b",
            format!(
                "shape {:?} (layout {}) has K = {b_k}, but a {:?} has K = {k}",
                b.shape(),
                params.b_layout.name(),
                a.shape()
            ),
        ));
    }
    Ok(Dims {
        batch,
        m,
        n,
        k,
        b_batched,
    })
}

/// Checks every argument and derives the problem.
pub fn validate<'a>(
    backend: &dyn Backend,
    a: &'a Tensor,
    b: &'a Tensor,
    bias: Option<&'a Tensor>,
    out: &'a Tensor,
    params: MatmulParams,
) -> Result<MatmulProblem<'a>> {
    let mut args = vec![("a", a), ("b", b), ("out", out)];
    if let Some(bias) = bias {
        args.push(("bias", bias));
    }
    for (name, t) in &args {
        check_tensor(OP, name, t)?;
        check_float(OP, name, t)?;
        check_index_range(OP, name, t.shape())?;
        if t.dtype() != a.dtype() {
            return Err(Error::invalid(
                OP,
                name,
                format!("dtype {} differs from a's dtype {}", t.dtype(), a.dtype()),
            ));
        }
    }
    check_device(OP, backend, &args)?;
    let dims = derive_dims(a, b, &params)?;
    if let Some(bias) = bias {
        check_shape(OP, "bias", bias, &[dims.n])?;
    }
    let out_shape = output_shape(a, b, &params)?;
    check_shape(OP, "out", out, &out_shape)?;
    check_index_range(OP, "out", &out_shape)?;
    let mut inputs = vec![("a", a), ("b", b)];
    if let Some(bias) = bias {
        inputs.push(("bias", bias));
    }
    check_no_alias(OP, &[("out", out)], &inputs)?;
    Ok(MatmulProblem {
        a,
        b,
        bias,
        out,
        params,
        batch: dims.batch,
        m: dims.m,
        n: dims.n,
        k: dims.k,
        b_batched: dims.b_batched,
    })
}

/// `out = a · b (+ bias)`, written into a caller-provided `out`.
pub fn matmul_into(
    backend: &dyn Backend,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    params: MatmulParams,
) -> Result<()> {
    let problem = validate(backend, a, b, bias, out, params)?;
    ensure_supported(backend, &problem.query())?;
    backend.matmul(&problem)
}

/// `a · b (+ bias)` in a newly allocated tensor.
pub fn matmul(
    backend: &dyn Backend,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    params: MatmulParams,
) -> Result<Tensor> {
    let mut inputs = vec![("a", a), ("b", b)];
    if let Some(bias) = bias {
        inputs.push(("bias", bias));
    }
    let shape = output_shape(a, b, &params)?;
    check_inputs_before_alloc(OP, &inputs, &shape)?;
    let out = backend.alloc_tensor(a.dtype(), &shape)?;
    matmul_into(backend, a, b, bias, &out, params)?;
    Ok(out)
}
