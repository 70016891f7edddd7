//! attention: variable-length prefill attention (FlashAttention's varlen
//! contract).
//!
//! Layouts (row-major, contiguous):
//! * `q` `[total_q, Hq, D]`, `k` and `v` `[total_k, Hkv, D]`, `out` like `q`;
//!   one activation dtype for all four.
//! * `cu_seqlens_q`, `cu_seqlens_k`: i32 `[batch + 1]`, non-decreasing,
//!   starting at 0 and ending at `total_q` / `total_k`. Sequence `s` owns
//!   rows `cu[s]..cu[s+1]`; a sequence may have 0 queries or 0 keys.
//! * `lse` (optional output): f32 `[Hq, total_q]`, natural-log log-sum-exp of
//!   each query row's visible scaled (and capped) scores.
//! * GQA / MQA: `Hq` is a multiple of `Hkv`; query head `h` reads kv head
//!   `h / (Hq / Hkv)`.
//!
//! Math, per sequence with lengths `sq`, `sk`, query row `i`, key `j`:
//! * `s = softmax_scale · q_i·k_j` (`softmax_scale` defaults to `1/sqrt(D)`);
//! * softcap `c > 0`: `s ← c·tanh(s / c)` (before the mask);
//! * the query sits bottom-right: `pos = i + sk − sq`; key `j` is visible iff
//!   `pos − window_left ≤ j ≤ pos + window_right`, `−1` meaning unbounded on
//!   that side; `causal` sets `window_right = 0`;
//! * `out_i = Σ_j softmax(s)_j · v_j` over visible keys. A row with no visible
//!   key (sk = 0, or masked out) outputs 0 and `lse = −inf`.
//!
//! Parameters are used in f32 on every backend (the reference included):
//! `softmax_scale` must be finite as an f32, `softcap` 0 or a normal f32;
//! windows may be any value ≥ −1, up to `i64::MAX` (arithmetic saturates).
//!
//! Non-finite inputs, the same on every backend: a score beyond the f32
//! range is ±inf (scores are formed in f32); a NaN or +inf visible score
//! makes the row's output and lse NaN (IEEE: `e^(s − max)` is NaN), and a
//! NaN in `q` makes every score of its row NaN; a −inf score weighs 0, and a
//! row whose visible scores are all −inf is fully masked (0, lse −inf, as
//! FlashAttention). Masked keys are never read into the result. A NaN in
//! `v` at a visible key makes that output element NaN, whatever its weight;
//! an infinite value in `v` gives ±inf, or NaN when its weight underflows
//! to 0 — where that happens differs between f32 and f64 arithmetic, so
//! infinite values are outside the contract.
//!
//! Error bound: devices keep scores, the running max and sums in f32 and may
//! round the probabilities to the activation dtype before the `P·V` product
//! (as flash kernels do), so f16/bf16 outputs carry a few units of roundoff.
//!
//! Counts: `4·Hq·D·(visible pairs)` FLOPs (QKᵀ and PV), counted exactly from
//! the masks; bytes = q, k, v read once, out (and lse) written once.

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::{
    OpKind, OpQuery, check_device, check_dtype, check_float, check_index_range,
    check_inputs_before_alloc, check_no_alias, check_rank, check_shape, check_tensor,
    ensure_supported, read_i32,
};
use crate::tensor::Tensor;

const OP: &str = "attention";

/// Parameters of [`attention`] and `paged_attention`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    /// Sets `window_right = 0` (bottom-right aligned).
    pub causal: bool,
    /// `None` means `1 / sqrt(D)`.
    pub softmax_scale: Option<f64>,
    /// Keys visible to the left of the query's position; −1 = unbounded.
    pub window_left: i64,
    /// Keys visible to the right of the query's position; −1 = unbounded.
    pub window_right: i64,
    /// Logit soft-capping `c·tanh(s/c)`; 0 = off.
    pub softcap: f64,
}

impl Default for AttentionParams {
    fn default() -> Self {
        AttentionParams {
            causal: false,
            softmax_scale: None,
            window_left: -1,
            window_right: -1,
            softcap: 0.0,
        }
    }
}

impl AttentionParams {
    /// The scale actually used for head dim `head_dim`: the given or
    /// default value rounded to f32, the precision every kernel applies it
    /// in (the reference uses the same rounded value, so a scale like 1e-46
    /// means the same thing on every backend).
    pub fn scale(&self, head_dim: usize) -> f64 {
        let scale = self.softmax_scale.unwrap_or(1.0 / (head_dim as f64).sqrt());
        scale as f32 as f64
    }

    /// The softcap actually applied (0 = off): the given value rounded to
    /// f32, as kernels apply it. Validation admits only 0 or a normal f32.
    pub fn effective_softcap(&self) -> f64 {
        self.softcap as f32 as f64
    }

    /// The window after applying `causal`: (left, right), −1 = unbounded.
    pub fn effective_window(&self) -> (i64, i64) {
        let right = if self.causal { 0 } else { self.window_right };
        (self.window_left, right)
    }

    /// Checks scale, window and softcap for `op`, in the precision the
    /// kernels use them: the scale must be finite as an f32, the softcap 0
    /// or a normal positive f32 (a subnormal softcap would round to 0 in
    /// some kernels and not in others).
    pub(crate) fn check(&self, op: &'static str) -> Result<()> {
        if let Some(scale) = self.softmax_scale
            && !(scale as f32).is_finite()
        {
            return Err(Error::invalid(
                op,
                "softmax_scale",
                format!(
                    "must be finite as an f32 (|scale| <= {:e}), got {scale}",
                    f32::MAX
                ),
            ));
        }
        if self.window_left < -1 {
            return Err(Error::invalid(
                op,
                "window_left",
                format!("must be >= -1, got {}", self.window_left),
            ));
        }
        if self.window_right < -1 {
            return Err(Error::invalid(
                op,
                "window_right",
                format!("must be >= -1, got {}", self.window_right),
            ));
        }
        let cap = self.softcap as f32;
        let cap_ok = self.softcap == 0.0 || (cap.is_finite() && cap >= f32::MIN_POSITIVE);
        if !self.softcap.is_finite() || self.softcap < 0.0 || !cap_ok {
            return Err(Error::invalid(
                op,
                "softcap",
                format!(
                    "must be 0 (off) or a normal positive f32 ({:e} ..= {:e}), got {}",
                    f32::MIN_POSITIVE,
                    f32::MAX,
                    self.softcap
                ),
            ));
        }
        Ok(())
    }

    /// The visible key range `[lo, hi)` (clamped to `0..seqlen_k`) for the
    /// query at absolute position `pos`; empty when `lo >= hi`.
    pub fn visible_keys(&self, pos: i64, seqlen_k: usize) -> (usize, usize) {
        let (left, right) = self.effective_window();
        let sk = seqlen_k as i64;
        // Saturating: any window >= -1 is valid, up to i64::MAX.
        let lo = if left < 0 {
            0
        } else {
            pos.saturating_sub(left).max(0)
        };
        let hi = if right < 0 {
            sk
        } else {
            pos.saturating_add(right).saturating_add(1).clamp(0, sk)
        };
        (lo.min(sk) as usize, hi.max(0) as usize)
    }
}

/// A validated attention. `cu_seqlens_*` are also kept on the host (they
/// were read for validation) so CPU backends and launch sizing can use them.
#[derive(Debug, Clone)]
pub struct AttentionProblem<'a> {
    pub q: &'a Tensor,
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub cu_seqlens_q: &'a Tensor,
    pub cu_seqlens_k: &'a Tensor,
    pub out: &'a Tensor,
    pub lse: Option<&'a Tensor>,
    pub params: AttentionParams,
    pub seq_offsets_q: Vec<usize>,
    pub seq_offsets_k: Vec<usize>,
    pub batch: usize,
    pub total_q: usize,
    pub total_k: usize,
    pub heads_q: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
    pub max_seqlen_q: usize,
    pub max_seqlen_k: usize,
    /// The effective softmax scale.
    pub scale: f64,
}

impl AttentionProblem<'_> {
    pub fn query(&self) -> OpQuery {
        OpQuery {
            head_dim: Some(self.head_dim),
            ..OpQuery::new(OpKind::Attention, self.q.dtype())
        }
    }

    /// Number of (query, key) pairs that are visible, summed over sequences.
    pub fn visible_pairs(&self) -> f64 {
        let mut pairs = 0.0;
        for s in 0..self.batch {
            let sq = self.seq_offsets_q[s + 1] - self.seq_offsets_q[s];
            let sk = self.seq_offsets_k[s + 1] - self.seq_offsets_k[s];
            for i in 0..sq {
                let pos = i as i64 + sk as i64 - sq as i64;
                let (lo, hi) = self.params.visible_keys(pos, sk);
                pairs += hi.saturating_sub(lo) as f64;
            }
        }
        pairs
    }

    pub fn flops(&self) -> f64 {
        4.0 * self.heads_q as f64 * self.head_dim as f64 * self.visible_pairs()
    }

    pub fn bytes(&self) -> f64 {
        let lse = self.lse.map_or(0, |t| t.byte_len());
        (self.q.byte_len() + self.k.byte_len() + self.v.byte_len() + self.out.byte_len() + lse)
            as f64
    }
}

/// Checks a cu_seqlens vector and converts it to offsets.
fn seq_offsets(
    arg: &'static str,
    cu: &[i32],
    total: usize,
    tensor_arg: &'static str,
) -> Result<Vec<usize>> {
    if cu.first() != Some(&0) {
        return Err(Error::invalid(
            OP,
            arg,
            format!("must start at 0, got {:?}", cu.first()),
        ));
    }
    let mut offsets = Vec::with_capacity(cu.len());
    for (s, pair) in cu.windows(2).enumerate() {
        if pair[1] < pair[0] {
            return Err(Error::invalid(
                OP,
                arg,
                format!(
                    "must be non-decreasing, but entry {} = {} < entry {} = {}",
                    s + 1,
                    pair[1],
                    s,
                    pair[0]
                ),
            ));
        }
    }
    for &value in cu {
        offsets.push(value as usize); // non-negative: starts at 0 and never decreases
    }
    let last = *offsets.last().unwrap_or(&0);
    if last != total {
        return Err(Error::invalid(
            OP,
            arg,
            format!("ends at {last}, but `{tensor_arg}` has {total} rows"),
        ));
    }
    Ok(offsets)
}

/// Checks head counts and head dims of q against the kv argument `kv_arg`
/// (`k` for attention, `k_cache` for paged attention).
pub(crate) fn check_qkv_heads(
    op: &'static str,
    kv_arg: &'static str,
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    kv_head_dim: usize,
) -> Result<()> {
    if head_dim == 0 {
        return Err(Error::invalid(op, "q", "head dim is 0"));
    }
    if kv_head_dim != head_dim {
        return Err(Error::invalid(
            op,
            kv_arg,
            format!("head dim {kv_head_dim} differs from q's {head_dim}"),
        ));
    }
    if q_heads == 0 {
        return Err(Error::invalid(op, "q", "has 0 heads"));
    }
    if kv_heads == 0 {
        return Err(Error::invalid(op, kv_arg, "has 0 kv heads"));
    }
    if !q_heads.is_multiple_of(kv_heads) {
        return Err(Error::invalid(
            op,
            kv_arg,
            format!("q has {q_heads} heads, not a multiple of k's {kv_heads} kv heads"),
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // mirrors the op's documented argument list
pub fn validate<'a>(
    backend: &dyn Backend,
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    cu_seqlens_q: &'a Tensor,
    cu_seqlens_k: &'a Tensor,
    out: &'a Tensor,
    lse: Option<&'a Tensor>,
    params: AttentionParams,
) -> Result<AttentionProblem<'a>> {
    let mut args = vec![
        ("q", q),
        ("k", k),
        ("v", v),
        ("cu_seqlens_q", cu_seqlens_q),
        ("cu_seqlens_k", cu_seqlens_k),
        ("out", out),
    ];
    if let Some(lse) = lse {
        args.push(("lse", lse));
    }
    for (name, t) in &args {
        check_tensor(OP, name, t)?;
        check_index_range(OP, name, t.shape())?;
    }
    for (name, t) in [("q", q), ("k", k), ("v", v), ("out", out)] {
        check_float(OP, name, t)?;
        check_rank(OP, name, t, &[3])?;
        if t.dtype() != q.dtype() {
            return Err(Error::invalid(
                OP,
                name,
                format!("dtype {} differs from q's dtype {}", t.dtype(), q.dtype()),
            ));
        }
    }
    check_device(OP, backend, &args)?;
    params.check(OP)?;
    let [total_q, heads_q, head_dim] = [q.shape()[0], q.shape()[1], q.shape()[2]];
    let [total_k, heads_kv, kv_head_dim] = [k.shape()[0], k.shape()[1], k.shape()[2]];
    check_qkv_heads(OP, "k", heads_q, heads_kv, head_dim, kv_head_dim)?;
    check_shape(OP, "v", v, k.shape())?;
    check_shape(OP, "out", out, q.shape())?;
    check_rank(OP, "cu_seqlens_q", cu_seqlens_q, &[1])?;
    check_rank(OP, "cu_seqlens_k", cu_seqlens_k, &[1])?;
    if cu_seqlens_q.numel() == 0 {
        return Err(Error::invalid(
            OP,
            "cu_seqlens_q",
            "must have batch + 1 >= 1 entries",
        ));
    }
    check_shape(OP, "cu_seqlens_k", cu_seqlens_k, cu_seqlens_q.shape())?;
    if let Some(lse) = lse {
        check_dtype(OP, "lse", lse, DType::F32)?;
        check_shape(OP, "lse", lse, &[heads_q, total_q])?;
    }
    let mut outputs = vec![("out", out)];
    if let Some(lse) = lse {
        outputs.push(("lse", lse));
    }
    check_no_alias(
        OP,
        &outputs,
        &[
            ("q", q),
            ("k", k),
            ("v", v),
            ("cu_seqlens_q", cu_seqlens_q),
            ("cu_seqlens_k", cu_seqlens_k),
        ],
    )?;
    let cu_q = read_i32(backend, OP, "cu_seqlens_q", cu_seqlens_q)?;
    let cu_k = read_i32(backend, OP, "cu_seqlens_k", cu_seqlens_k)?;
    let seq_offsets_q = seq_offsets("cu_seqlens_q", &cu_q, total_q, "q")?;
    let seq_offsets_k = seq_offsets("cu_seqlens_k", &cu_k, total_k, "k")?;
    let batch = seq_offsets_q.len() - 1;
    let max_len = |offsets: &[usize]| offsets.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    Ok(AttentionProblem {
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        out,
        lse,
        params,
        max_seqlen_q: max_len(&seq_offsets_q),
        max_seqlen_k: max_len(&seq_offsets_k),
        seq_offsets_q,
        seq_offsets_k,
        batch,
        total_q,
        total_k,
        heads_q,
        heads_kv,
        head_dim,
        scale: params.scale(head_dim),
    })
}

/// Attention into caller-provided `out` (and optional `lse`).
#[allow(clippy::too_many_arguments)] // mirrors the op's documented argument list
pub fn attention_into(
    backend: &dyn Backend,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cu_seqlens_q: &Tensor,
    cu_seqlens_k: &Tensor,
    out: &Tensor,
    lse: Option<&Tensor>,
    params: AttentionParams,
) -> Result<()> {
    let problem = validate(
        backend,
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        out,
        lse,
        params,
    )?;
    ensure_supported(backend, &problem.query())?;
    backend.attention(&problem)
}

/// Attention into a new tensor shaped like `q`.
pub fn attention(
    backend: &dyn Backend,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cu_seqlens_q: &Tensor,
    cu_seqlens_k: &Tensor,
    params: AttentionParams,
) -> Result<Tensor> {
    check_inputs_before_alloc(OP, &[("q", q), ("k", k), ("v", v)], q.shape())?;
    let out = backend.alloc_tensor(q.dtype(), q.shape())?;
    attention_into(
        backend,
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        &out,
        None,
        params,
    )?;
    Ok(out)
}
