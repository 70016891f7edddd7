//! Paged decode attention on the `cpu` backend.
//!
//! The block table is read directly: no gathered copy of the cache. Work
//! split: each sequence's visible context is cut into partitions of `PART`
//! tokens at fixed positions (multiples of `PART`), and one rayon task runs
//! per (sequence, kv head, partition), so a long context is spread over
//! all threads. A task keeps the online-softmax state of the kv head's
//! `Hq/Hkv` query heads (GQA: each K/V row is read once for the group) and
//! walks its tokens in chunks of `CHUNK`: scores by dot-product tiles
//! straight from the cache rows (f16/bf16 converted in registers), then
//! the softmax update, then `O += P·V` with the GEMM microkernel on the
//! chunk's V rows converted to f32. Partial states `(m, l, O)` are merged
//! per (sequence, kv head) in partition order, so the result does not
//! depend on the number of threads.

use half::{bf16, f16};
use rayon::prelude::*;

use crate::cpu::access::lock;
use crate::cpu::attention::{Online, SCRATCH, finish_row, pv_product, zeroed};
use crate::cpu::simd::{DotTile, Elem, ElemKernels, Kernels, kernels};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::PagedAttentionProblem;

const OP: &str = "paged_attention";

/// Tokens per partition (one task).
const PART: usize = 512;
/// Tokens per softmax step.
const CHUNK: usize = 64;

pub(crate) fn run(p: &PagedAttentionProblem<'_>) -> Result<()> {
    let mut locked = lock(OP, &[p.q, p.k_cache, p.v_cache], &[p.out])?;
    let (inputs, mut outputs) = locked.split();
    macro_rules! go {
        ($t:ty) => {
            typed::<$t>(
                p,
                inputs.get(p.q)?,
                inputs.get(p.k_cache)?,
                inputs.get(p.v_cache)?,
                outputs.take(p.out)?,
            )
        };
    }
    match p.q.dtype() {
        DType::F16 => go!(f16),
        DType::BF16 => go!(bf16),
        _ => go!(f32),
    }
    Ok(())
}

/// One task: tokens `u0..u1` of sequence `b` for kv head `kvh`.
#[derive(Clone, Copy)]
struct Part {
    b: usize,
    kvh: usize,
    u0: usize,
    u1: usize,
}

/// A partition's softmax state: per query head of the group, the running
/// max, the sum and the unnormalized output row.
struct Partial {
    m: Vec<f32>,
    l: Vec<f32>,
    o: Vec<f32>,
}

fn typed<E: Elem>(p: &PagedAttentionProblem<'_>, q: &[E], kc: &[E], vc: &[E], out: &mut [E]) {
    let (hq, hkv, dd) = (p.heads_q, p.heads_kv, p.head_dim);
    let g = hq / hkv;
    // Tasks in (sequence, kv head, partition) order; starts[i] is the first
    // task of (b, kvh) with i = b·Hkv + kvh.
    let mut parts = Vec::new();
    let mut starts = Vec::with_capacity(p.batch * hkv + 1);
    for (b, &len) in p.host_context_lens.iter().enumerate() {
        let (lo, hi) = p.params.visible_keys(len as i64 - 1, len);
        for kvh in 0..hkv {
            starts.push(parts.len());
            if lo < hi {
                for part in lo / PART..hi.div_ceil(PART) {
                    let u0 = (part * PART).max(lo);
                    let u1 = ((part + 1) * PART).min(hi);
                    parts.push(Part { b, kvh, u0, u1 });
                }
            }
        }
    }
    starts.push(parts.len());
    let kt = kernels();
    let ek = E::table(kt);
    let partials: Vec<Partial> = parts
        .par_iter()
        .map(|&part| decode_part(kt, ek, p, (q, kc, vc), part))
        .collect();
    out.par_chunks_mut(g * dd)
        .enumerate()
        .for_each(|(i, slot)| merge(kt, ek, &partials[starts[i]..starts[i + 1]], dd, slot));
}

/// Merges the partitions of one (sequence, kv head) and writes its rows.
fn merge<E: Elem>(
    kt: &Kernels,
    ek: &ElemKernels<E>,
    parts: &[Partial],
    dd: usize,
    slot: &mut [E],
) {
    let mut o = vec![0.0f32; dd];
    for (gi, out_row) in slot.chunks_exact_mut(dd).enumerate() {
        let m = parts
            .iter()
            .map(|part| part.m[gi])
            .fold(f32::NEG_INFINITY, f32::max);
        o.fill(0.0);
        let mut l = 0.0f32;
        if m > f32::NEG_INFINITY {
            for part in parts {
                let w = (part.m[gi] - m).exp();
                l += part.l[gi] * w;
                for (acc, &x) in o.iter_mut().zip(&part.o[gi * dd..][..dd]) {
                    *acc += w * x;
                }
            }
        }
        finish_row(kt, ek, &mut o, m, l, out_row);
    }
}

fn decode_part<E: Elem>(
    kt: &Kernels,
    ek: &ElemKernels<E>,
    p: &PagedAttentionProblem<'_>,
    (q, kc, vc): (&[E], &[E], &[E]),
    part: Part,
) -> Partial {
    let (hq, hkv, dd, bs) = (p.heads_q, p.heads_kv, p.head_dim, p.block_size);
    let g = hq / hkv;
    let dpad = dd.div_ceil(kt.nr) * kt.nr;
    let (dmr, dnr) = (ek.dot_mr(), ek.dot_nr());
    let row_stride = hkv * dd;
    let (scale, cap) = (p.scale as f32, p.params.softcap as f32);
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let sc = &mut *guard;
        let qf = zeroed(&mut sc.q, g * dd);
        ek.widen(&q[(part.b * hq + part.kvh * g) * dd..][..g * dd], qf);
        let mut state = Online {
            m: {
                sc.m.clear();
                sc.m.resize(g, f32::NEG_INFINITY);
                &mut sc.m
            },
            l: zeroed(&mut sc.l, g),
            o: zeroed(&mut sc.o, g * dpad),
            o_rs: dpad,
            head_dim: dd,
        };
        let s = zeroed(&mut sc.s, g * CHUNK);
        let vp = zeroed(&mut sc.vp, CHUNK * dpad);
        for c0 in (part.u0..part.u1).step_by(CHUNK) {
            let c1 = (c0 + CHUNK).min(part.u1);
            let nt = c1 - c0;
            // Walk the chunk one cache block segment at a time.
            let mut t = c0;
            while t < c1 {
                let block = p.host_block_tables[part.b * p.max_blocks + t / bs] as usize;
                let slot = t % bs;
                let seg = (bs - slot).min(c1 - t);
                let base = ((block * bs + slot) * hkv + part.kvh) * dd;
                let col = t - c0;
                for jt in (0..seg).step_by(dnr) {
                    for it in (0..g).step_by(dmr) {
                        ek.dot_tile(DotTile {
                            k: dd,
                            x: &qf[it * dd..],
                            x_rs: dd,
                            w: &kc[base + jt * row_stride..],
                            w_rs: row_stride,
                            out: &mut s[it * CHUNK + col + jt..],
                            out_rs: CHUNK,
                            m: dmr.min(g - it),
                            n: dnr.min(seg - jt),
                        });
                    }
                }
                for jj in 0..seg {
                    ek.widen(
                        &vc[base + jj * row_stride..][..dd],
                        &mut vp[(col + jj) * dpad..][..dd],
                    );
                }
                t += seg;
            }
            for (gi, srow) in s.chunks_exact_mut(CHUNK).enumerate() {
                kt.scale_softcap(&mut srow[..nt], scale, cap);
                state.update(kt, gi, &mut srow[..nt], 0, nt);
            }
            pv_product(kt, g, nt, s, CHUNK, vp, dpad, state.o);
        }
        let mut o = vec![0.0f32; g * dd];
        for (gi, row) in o.chunks_exact_mut(dd).enumerate() {
            row.copy_from_slice(&state.o[gi * dpad..][..dd]);
        }
        Partial {
            m: state.m.to_vec(),
            l: state.l.to_vec(),
            o,
        }
    })
}
