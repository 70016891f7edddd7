//! paged_attention (decode) on wgpu: `kernels/wgsl/paged_attention.wgsl`,
//! one workgroup per (sequence, query head), online softmax over the
//! sequence's cache tokens in tiles of 64.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::ops::PagedAttentionProblem;

use super::attention::window_param;
use super::context::{WgpuBackend, dt_code, u32_param};
use super::pipelines::Kernel;
use super::pipelines::kernels::paged_attention;

const OP: &str = "paged_attention";

/// `struct Params` of paged_attention.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    heads_q: u32,
    heads_kv: u32,
    head_dim: u32,
    num_rows: u32,
    block_size: u32,
    max_blocks: u32,
    q_off: u32,
    k_off: u32,
    v_off: u32,
    bt_off: u32,
    len_off: u32,
    out_off: u32,
    window_left: i32,
    window_right: i32,
    scale: f32,
    softcap: f32,
}

pub(crate) fn run(backend: &WgpuBackend, problem: &PagedAttentionProblem<'_>) -> Result<()> {
    let query = problem.query();
    backend.select(&query)?;
    let dt =
        dt_code(query.dtype).ok_or_else(|| Error::invalid(OP, "q", "not an activation dtype"))?;
    let num_rows = problem.batch * problem.heads_q;
    if num_rows == 0 {
        return Ok(());
    }
    let (q, q_off) = backend.window(query.op, "q", problem.q)?;
    let (k, k_off) = backend.window(query.op, "k_cache", problem.k_cache)?;
    let (v, v_off) = backend.window(query.op, "v_cache", problem.v_cache)?;
    let (bt, bt_off) = backend.window(query.op, "block_tables", problem.block_tables)?;
    let (lens, len_off) = backend.window(query.op, "context_lens", problem.context_lens)?;
    let (out, out_off) = backend.window(query.op, "out", problem.out)?;
    let (left, right) = problem.params.effective_window();
    let params = Params {
        heads_q: u32_param(OP, "q", problem.heads_q)?,
        heads_kv: u32_param(OP, "k_cache", problem.heads_kv)?,
        head_dim: u32_param(OP, "q", problem.head_dim)?,
        num_rows: u32_param(OP, "q", num_rows)?,
        block_size: u32_param(OP, "k_cache", problem.block_size)?,
        max_blocks: u32_param(OP, "block_tables", problem.max_blocks)?,
        q_off,
        k_off,
        v_off,
        bt_off,
        len_off,
        out_off,
        window_left: window_param(left),
        window_right: window_param(right),
        scale: problem.scale as f32,
        softcap: problem.params.softcap as f32,
    };
    backend.launch(
        query.op,
        Kernel::PagedAttention(paged_attention::Variant { dt }),
        bytemuck::bytes_of(&params),
        &[q, k, v, bt, lens, out],
        num_rows as u64,
    )
}
