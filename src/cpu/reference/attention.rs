//! Reference attention: materialize each query row's visible scores in f64,
//! softmax them, weight the values. No tiling, no online softmax: the
//! definition, so that flash-style kernels have something plain to match.

use crate::cpu::memory::{read_tensor, write_tensor};
use crate::error::Result;
use crate::ops::{AttentionParams, AttentionProblem};
use crate::tensor::HostTensor;

/// One query row against its visible keys: returns (output row, lse).
///
/// Non-finite scores follow the contract in `ops/attention.rs`: a score
/// beyond the f32 range is ±inf (kernels form scores in f32); −inf scores
/// get weight 0, and a row whose visible scores are all −inf is treated as
/// fully masked (output 0, lse −inf, as FlashAttention does); a NaN or +inf
/// score makes the row NaN through IEEE arithmetic (`e^(s − max)` with
/// `s = max = +inf` is NaN).
pub fn attend(
    query: &[f64],
    keys: &[&[f64]],
    values: &[&[f64]],
    scale: f64,
    softcap: f64,
) -> (Vec<f64>, f64) {
    let head_dim = query.len();
    let scores: Vec<f64> = keys
        .iter()
        .map(|key| {
            let dot = f32_range(query.iter().zip(key.iter()).map(|(a, b)| a * b).sum());
            let s = f32_range(scale * dot);
            if softcap > 0.0 {
                softcap * (s / softcap).tanh()
            } else {
                s
            }
        })
        .collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let has_nan = scores.iter().any(|s| s.is_nan());
    if max == f64::NEG_INFINITY && !has_nan {
        return (vec![0.0; head_dim], f64::NEG_INFINITY);
    }
    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = weights.iter().sum();
    let mut out = vec![0.0; head_dim];
    for (weight, value) in weights.iter().zip(values) {
        for (o, v) in out.iter_mut().zip(value.iter()) {
            *o += weight / sum * v;
        }
    }
    (out, max + sum.ln())
}

/// `x`, or ±inf when it lies beyond the f32 range: what an f32 kernel gets
/// for the same value.
fn f32_range(x: f64) -> f64 {
    if x.abs() > f32::MAX as f64 {
        x.signum() * f64::INFINITY
    } else {
        x
    }
}

/// Shapes of a varlen attention evaluated on host values.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub heads_q: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
}

/// Varlen attention on row-major host values. Returns (out like q, lse
/// `[Hq, total_q]`).
pub fn eval(
    shape: AttentionShape,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    offsets_q: &[usize],
    offsets_k: &[usize],
    params: &AttentionParams,
) -> (Vec<f64>, Vec<f64>) {
    let AttentionShape {
        heads_q,
        heads_kv,
        head_dim,
    } = shape;
    let group = heads_q / heads_kv;
    let total_q = q.len() / (heads_q * head_dim);
    let scale = params.scale(head_dim);
    let mut out = vec![0.0; q.len()];
    let mut lse = vec![0.0; heads_q * total_q];
    let row = |token: usize, heads: usize, head: usize| -> std::ops::Range<usize> {
        let start = (token * heads + head) * head_dim;
        start..start + head_dim
    };
    for s in 0..offsets_q.len().saturating_sub(1) {
        let (q_start, q_end) = (offsets_q[s], offsets_q[s + 1]);
        let (k_start, k_end) = (offsets_k[s], offsets_k[s + 1]);
        let (sq, sk) = (q_end - q_start, k_end - k_start);
        for i in 0..sq {
            let pos = i as i64 + sk as i64 - sq as i64;
            let (lo, hi) = params.visible_keys(pos, sk);
            for h in 0..heads_q {
                let kv_head = h / group;
                let keys: Vec<&[f64]> = (lo..hi)
                    .map(|j| &k[row(k_start + j, heads_kv, kv_head)])
                    .collect();
                let values: Vec<&[f64]> = (lo..hi)
                    .map(|j| &v[row(k_start + j, heads_kv, kv_head)])
                    .collect();
                let token = q_start + i;
                let (o, l) = attend(
                    &q[row(token, heads_q, h)],
                    &keys,
                    &values,
                    scale,
                    params.effective_softcap(),
                );
                out[row(token, heads_q, h)].copy_from_slice(&o);
                lse[h * total_q + token] = l;
            }
        }
    }
    (out, lse)
}

pub fn run(problem: &AttentionProblem<'_>) -> Result<()> {
    const OP: &str = "attention";
    let q = read_tensor(OP, "q", problem.q)?.to_f64_vec();
    let k = read_tensor(OP, "k", problem.k)?.to_f64_vec();
    let v = read_tensor(OP, "v", problem.v)?.to_f64_vec();
    let shape = AttentionShape {
        heads_q: problem.heads_q,
        heads_kv: problem.heads_kv,
        head_dim: problem.head_dim,
    };
    let (out, lse) = eval(
        shape,
        &q,
        &k,
        &v,
        &problem.seq_offsets_q,
        &problem.seq_offsets_k,
        &problem.params,
    );
    write_tensor(
        OP,
        "out",
        problem.out,
        &HostTensor::from_f64(problem.out.dtype(), problem.out.shape(), &out)?,
    )?;
    if let Some(lse_out) = problem.lse {
        write_tensor(
            OP,
            "lse",
            lse_out,
            &HostTensor::from_f64(lse_out.dtype(), lse_out.shape(), &lse)?,
        )?;
    }
    Ok(())
}
