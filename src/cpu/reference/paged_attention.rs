//! Reference paged decode attention: follow the block table token by token,
//! then apply the same per-row definition as the reference attention.

use crate::cpu::memory::{read_tensor, write_tensor};
use crate::cpu::reference::attention::attend;
use crate::error::Result;
use crate::ops::{AttentionParams, PagedAttentionProblem};
use crate::tensor::HostTensor;

/// Shapes of a paged attention evaluated on host values.
#[derive(Debug, Clone, Copy)]
pub struct PagedShape {
    pub heads_q: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
    pub block_size: usize,
    pub max_blocks: usize,
}

/// Returns the output `[B, Hq, D]` for row-major host values.
pub fn eval(
    shape: PagedShape,
    q: &[f64],
    k_cache: &[f64],
    v_cache: &[f64],
    block_tables: &[i32],
    context_lens: &[usize],
    params: &AttentionParams,
) -> Vec<f64> {
    let PagedShape {
        heads_q,
        heads_kv,
        head_dim,
        block_size,
        max_blocks,
    } = shape;
    let group = heads_q / heads_kv;
    let scale = params.scale(head_dim);
    let mut out = vec![0.0; q.len()];
    for (b, &len) in context_lens.iter().enumerate() {
        let (lo, hi) = params.visible_keys(len as i64 - 1, len);
        for h in 0..heads_q {
            let kv_head = h / group;
            let cache_row = |t: usize| {
                let block = block_tables[b * max_blocks + t / block_size] as usize;
                let start = ((block * block_size + t % block_size) * heads_kv + kv_head) * head_dim;
                start..start + head_dim
            };
            let keys: Vec<&[f64]> = (lo..hi).map(|t| &k_cache[cache_row(t)]).collect();
            let values: Vec<&[f64]> = (lo..hi).map(|t| &v_cache[cache_row(t)]).collect();
            let q_row = (b * heads_q + h) * head_dim..(b * heads_q + h + 1) * head_dim;
            let (o, _lse) = attend(
                &q[q_row.clone()],
                &keys,
                &values,
                scale,
                params.effective_softcap(),
            );
            out[q_row].copy_from_slice(&o);
        }
    }
    out
}

pub fn run(problem: &PagedAttentionProblem<'_>) -> Result<()> {
    const OP: &str = "paged_attention";
    let q = read_tensor(OP, "q", problem.q)?.to_f64_vec();
    let k_cache = read_tensor(OP, "k_cache", problem.k_cache)?.to_f64_vec();
    let v_cache = read_tensor(OP, "v_cache", problem.v_cache)?.to_f64_vec();
    let shape = PagedShape {
        heads_q: problem.heads_q,
        heads_kv: problem.heads_kv,
        head_dim: problem.head_dim,
        block_size: problem.block_size,
        max_blocks: problem.max_blocks,
    };
    let out = eval(
        shape,
        &q,
        &k_cache,
        &v_cache,
        &problem.host_block_tables,
        &problem.host_context_lens,
        &problem.params,
    );
    write_tensor(
        OP,
        "out",
        problem.out,
        &HostTensor::from_f64(problem.out.dtype(), problem.out.shape(), &out)?,
    )
}
