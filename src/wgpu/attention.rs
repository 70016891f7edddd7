//! attention (varlen prefill) on wgpu: `kernels/wgsl/attention.wgsl`, one
//! workgroup per (query row, query head), online softmax over key tiles.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::ops::AttentionProblem;

use super::context::{WgpuBackend, dt_code, u32_param};
use super::pipelines::Kernel;
use super::pipelines::kernels::attention;

const OP: &str = "attention";

/// `struct Params` of attention.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    heads_q: u32,
    heads_kv: u32,
    head_dim: u32,
    batch: u32,
    num_rows: u32,
    total_q: u32,
    q_off: u32,
    k_off: u32,
    v_off: u32,
    cuq_off: u32,
    cuk_off: u32,
    out_off: u32,
    lse_off: u32,
    has_lse: u32,
    window_left: i32,
    window_right: i32,
    scale: f32,
    softcap: f32,
    _pad0: u32,
    _pad1: u32,
}

/// A window bound as the kernels' i32: −1 (unbounded) stays −1, larger
/// windows saturate at i32::MAX, which no sequence (< 2^31 rows) reaches.
pub(crate) fn window_param(window: i64) -> i32 {
    window.clamp(-1, i64::from(i32::MAX)) as i32
}

pub(crate) fn run(backend: &WgpuBackend, problem: &AttentionProblem<'_>) -> Result<()> {
    let query = problem.query();
    backend.select(&query)?;
    let dt =
        dt_code(query.dtype).ok_or_else(|| Error::invalid(OP, "q", "not an activation dtype"))?;
    let num_rows = problem.total_q * problem.heads_q;
    if num_rows == 0 {
        return Ok(());
    }
    let (q, q_off) = backend.window(query.op, "q", problem.q)?;
    let (k, k_off) = backend.window(query.op, "k", problem.k)?;
    let (v, v_off) = backend.window(query.op, "v", problem.v)?;
    let (cu_q, cuq_off) = backend.window(query.op, "cu_seqlens_q", problem.cu_seqlens_q)?;
    let (cu_k, cuk_off) = backend.window(query.op, "cu_seqlens_k", problem.cu_seqlens_k)?;
    let (out, out_off) = backend.window(query.op, "out", problem.out)?;
    let (lse, lse_off) = match problem.lse {
        Some(lse) => backend.window(query.op, "lse", lse)?,
        None => backend.unused_window(),
    };
    let (left, right) = problem.params.effective_window();
    let params = Params {
        heads_q: u32_param(OP, "q", problem.heads_q)?,
        heads_kv: u32_param(OP, "k", problem.heads_kv)?,
        head_dim: u32_param(OP, "q", problem.head_dim)?,
        batch: u32_param(OP, "cu_seqlens_q", problem.batch)?,
        num_rows: u32_param(OP, "q", num_rows)?,
        total_q: u32_param(OP, "q", problem.total_q)?,
        q_off,
        k_off,
        v_off,
        cuq_off,
        cuk_off,
        out_off,
        lse_off,
        has_lse: u32::from(problem.lse.is_some()),
        window_left: window_param(left),
        window_right: window_param(right),
        scale: problem.scale as f32,
        softcap: problem.params.softcap as f32,
        _pad0: 0,
        _pad1: 0,
    };
    backend.launch(
        query.op,
        Kernel::Attention(attention::Variant { dt }),
        bytemuck::bytes_of(&params),
        &[q, k, v, cu_q, cu_k, out, lse],
        num_rows as u64,
    )
}
