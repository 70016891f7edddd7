//! paged_attention: one decode step against a paged KV cache (vLLM layout).
//!
//! Layouts (row-major, contiguous):
//! * `q` `[B, Hq, D]`: the newest token of each sequence; `out` like `q`.
//! * `k_cache`, `v_cache` `[num_blocks, block_size, Hkv, D]`.
//! * `block_tables` i32 `[B, max_blocks]`: token `t` of sequence `b` lives in
//!   block `block_tables[b, t / block_size]` at slot `t % block_size`.
//! * `context_lens` i32 `[B]`: tokens in the cache for each sequence,
//!   including the current one; `0 ≤ context_len ≤ max_blocks·block_size`.
//!   Only the first `ceil(context_len / block_size)` table entries are read,
//!   and they must be in `0..num_blocks`.
//!
//! Math: the query sits at position `context_len − 1`; scores, scale,
//! softcap and window are exactly `attention`'s (so `causal` changes
//! nothing, and `window_left` keeps the last `window_left + 1` tokens). A
//! sequence with `context_len = 0` outputs 0. Parameters in f32 and
//! non-finite scores as `attention` (a NaN or +inf score: the row is NaN;
//! −inf scores weigh 0; all −inf: 0).
//!
//! Counts: `4·Hq·D·Σ visible tokens` FLOPs; bytes = the visible K/V rows, q,
//! out, and the table entries read.

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::attention::check_qkv_heads;
use crate::ops::{
    AttentionParams, OpKind, OpQuery, check_device, check_dtype, check_float, check_index_range,
    check_inputs_before_alloc, check_no_alias, check_rank, check_shape, check_tensor,
    ensure_supported, read_i32,
};
use crate::tensor::Tensor;

const OP: &str = "paged_attention";

/// A validated paged decode attention. The table and lengths are also kept
/// on the host (they were read for validation).
#[derive(Debug, Clone)]
pub struct PagedAttentionProblem<'a> {
    pub q: &'a Tensor,
    pub k_cache: &'a Tensor,
    pub v_cache: &'a Tensor,
    pub block_tables: &'a Tensor,
    pub context_lens: &'a Tensor,
    pub out: &'a Tensor,
    pub params: AttentionParams,
    pub host_block_tables: Vec<i32>,
    pub host_context_lens: Vec<usize>,
    pub batch: usize,
    pub heads_q: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub max_blocks: usize,
    pub max_context_len: usize,
    pub scale: f64,
}

impl PagedAttentionProblem<'_> {
    pub fn query(&self) -> OpQuery {
        OpQuery {
            head_dim: Some(self.head_dim),
            ..OpQuery::new(OpKind::PagedAttention, self.q.dtype())
        }
    }

    /// Keys each sequence attends to, summed over the batch.
    pub fn visible_tokens(&self) -> f64 {
        self.host_context_lens
            .iter()
            .map(|&len| {
                let (lo, hi) = self.params.visible_keys(len as i64 - 1, len);
                hi.saturating_sub(lo) as f64
            })
            .sum()
    }

    pub fn flops(&self) -> f64 {
        4.0 * self.heads_q as f64 * self.head_dim as f64 * self.visible_tokens()
    }

    pub fn bytes(&self) -> f64 {
        let kv_row = (self.heads_kv * self.head_dim * self.q.dtype().size_in_bytes()) as f64;
        2.0 * kv_row * self.visible_tokens()
            + (self.q.byte_len() + self.out.byte_len() + self.context_lens.byte_len()) as f64
    }
}

#[allow(clippy::too_many_arguments)] // mirrors the op's documented argument list
pub fn validate<'a>(
    backend: &dyn Backend,
    q: &'a Tensor,
    k_cache: &'a Tensor,
    v_cache: &'a Tensor,
    block_tables: &'a Tensor,
    context_lens: &'a Tensor,
    out: &'a Tensor,
    params: AttentionParams,
) -> Result<PagedAttentionProblem<'a>> {
    let args = [
        ("q", q),
        ("k_cache", k_cache),
        ("v_cache", v_cache),
        ("block_tables", block_tables),
        ("context_lens", context_lens),
        ("out", out),
    ];
    for (name, t) in &args {
        check_tensor(OP, name, t)?;
        check_index_range(OP, name, t.shape())?;
    }
    for (name, t) in [
        ("q", q),
        ("k_cache", k_cache),
        ("v_cache", v_cache),
        ("out", out),
    ] {
        check_float(OP, name, t)?;
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
    check_rank(OP, "q", q, &[3])?;
    check_rank(OP, "k_cache", k_cache, &[4])?;
    check_shape(OP, "v_cache", v_cache, k_cache.shape())?;
    check_shape(OP, "out", out, q.shape())?;
    let [batch, heads_q, head_dim] = [q.shape()[0], q.shape()[1], q.shape()[2]];
    let [num_blocks, block_size, heads_kv, kv_head_dim] = [
        k_cache.shape()[0],
        k_cache.shape()[1],
        k_cache.shape()[2],
        k_cache.shape()[3],
    ];
    check_qkv_heads(OP, "k_cache", heads_q, heads_kv, head_dim, kv_head_dim)?;
    if block_size == 0 {
        return Err(Error::invalid(OP, "k_cache", "block_size (dim 1) is 0"));
    }
    check_dtype(OP, "block_tables", block_tables, DType::I32)?;
    check_dtype(OP, "context_lens", context_lens, DType::I32)?;
    check_rank(OP, "block_tables", block_tables, &[2])?;
    if block_tables.shape()[0] != batch {
        return Err(Error::invalid(
            OP,
            "block_tables",
            format!("has {} rows, q has batch {batch}", block_tables.shape()[0]),
        ));
    }
    let max_blocks = block_tables.shape()[1];
    check_shape(OP, "context_lens", context_lens, &[batch])?;
    check_no_alias(
        OP,
        &[("out", out)],
        &[
            ("q", q),
            ("k_cache", k_cache),
            ("v_cache", v_cache),
            ("block_tables", block_tables),
            ("context_lens", context_lens),
        ],
    )?;

    let host_block_tables = read_i32(backend, OP, "block_tables", block_tables)?;
    let lens = read_i32(backend, OP, "context_lens", context_lens)?;
    let capacity = max_blocks.saturating_mul(block_size);
    let mut host_context_lens = Vec::with_capacity(batch);
    for (b, &len) in lens.iter().enumerate() {
        if len < 0 || len as usize > capacity {
            return Err(Error::invalid(
                OP,
                "context_lens",
                format!(
                    "entry {b} is {len}, outside 0..={capacity} (max_blocks {max_blocks} x block_size {block_size})"
                ),
            ));
        }
        let len = len as usize;
        for slot in 0..len.div_ceil(block_size) {
            let block = host_block_tables[b * max_blocks + slot];
            if block < 0 || block as usize >= num_blocks {
                return Err(Error::invalid(
                    OP,
                    "block_tables",
                    format!("entry [{b}, {slot}] is {block}, outside 0..{num_blocks}"),
                ));
            }
        }
        host_context_lens.push(len);
    }
    Ok(PagedAttentionProblem {
        q,
        k_cache,
        v_cache,
        block_tables,
        context_lens,
        out,
        params,
        max_context_len: host_context_lens.iter().copied().max().unwrap_or(0),
        host_block_tables,
        host_context_lens,
        batch,
        heads_q,
        heads_kv,
        head_dim,
        num_blocks,
        block_size,
        max_blocks,
        scale: params.scale(head_dim),
    })
}

#[allow(clippy::too_many_arguments)] // mirrors the op's documented argument list
pub fn paged_attention_into(
    backend: &dyn Backend,
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    block_tables: &Tensor,
    context_lens: &Tensor,
    out: &Tensor,
    params: AttentionParams,
) -> Result<()> {
    let problem = validate(
        backend,
        q,
        k_cache,
        v_cache,
        block_tables,
        context_lens,
        out,
        params,
    )?;
    ensure_supported(backend, &problem.query())?;
    backend.paged_attention(&problem)
}

pub fn paged_attention(
    backend: &dyn Backend,
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    block_tables: &Tensor,
    context_lens: &Tensor,
    params: AttentionParams,
) -> Result<Tensor> {
    check_inputs_before_alloc(
        OP,
        &[("q", q), ("k_cache", k_cache), ("v_cache", v_cache)],
        q.shape(),
    )?;
    let out = backend.alloc_tensor(q.dtype(), q.shape())?;
    paged_attention_into(
        backend,
        q,
        k_cache,
        v_cache,
        block_tables,
        context_lens,
        &out,
        params,
    )?;
    Ok(out)
}
