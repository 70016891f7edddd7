//! Paged decode attention on the `cpu` backend.
//!
//! The block table is read directly: no gathered copy of the cache. Work
//! split: each sequence's visible context is cut into partitions of `PART`
//! tokens at fixed positions (multiples of `PART`), and one rayon task runs
//! per (sequence, partition), so a long context is spread over all
//! threads. A task keeps the online-softmax state of every query head and
//! walks its tokens `CHUNK` at a time (a chunk may span several cache
//! blocks, so the per-step softmax and accumulator costs are amortized over
//! more tokens than one small block holds), one kv head after the other.
//! Per (chunk, kv head): scores by dot-product tiles straight from the cache
//! rows (f16/bf16 converted in registers) for the `Hq/Hkv` query heads of
//! the group (GQA: each K/V row is read once for the group), the softmax
//! update, then `O += P·V` with the GEMM microkernel on the chunk's V rows
//! converted to f32. The K and V rows of the next (chunk, kv head) are
//! prefetched through the block table (blocks are scattered: the hardware
//! prefetcher cannot guess them), a few rows after each score tile, so the
//! prefetches overlap the arithmetic instead of queueing in one burst.
//! Partial states `(m, l, O)` are merged per sequence in partition order, so
//! the result does not depend on the number of threads.
//!
//! Measured on a 2-vCPU Zen 4 VM shared with other builds (noisy; 1 thread,
//! batch 16, context 4096, block 16, 32/8 heads, D = 128): one block per
//! softmax step, token-major, with a whole-block prefetch burst took
//! 75–77 ms (f32) / 55 ms (f16); chunks of 32 tokens, head-major,
//! interleaved prefetch: ~57 / ~42 ms. Chunks of 64 and 128 were slower
//! (the f32 V chunk no longer fits L1 beside the scores).

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
const CHUNK: usize = 32;

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

/// One task: tokens `u0..u1` of sequence `b`, every kv head.
#[derive(Clone, Copy)]
struct Part {
    b: usize,
    u0: usize,
    u1: usize,
}

/// A partition's softmax state: per query head, the running max, the sum
/// and the unnormalized output row.
struct Partial {
    m: Vec<f32>,
    l: Vec<f32>,
    o: Vec<f32>,
}

fn typed<E: Elem>(p: &PagedAttentionProblem<'_>, q: &[E], kc: &[E], vc: &[E], out: &mut [E]) {
    let (hq, dd) = (p.heads_q, p.head_dim);
    // Tasks in (sequence, partition) order; starts[b] is sequence b's first.
    let mut parts = Vec::new();
    let mut starts = Vec::with_capacity(p.batch + 1);
    for (b, &len) in p.host_context_lens.iter().enumerate() {
        let (lo, hi) = p.params.visible_keys(len as i64 - 1, len);
        starts.push(parts.len());
        if lo < hi {
            for part in lo / PART..hi.div_ceil(PART) {
                let u0 = (part * PART).max(lo);
                let u1 = ((part + 1) * PART).min(hi);
                parts.push(Part { b, u0, u1 });
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
    out.par_chunks_mut(hq * dd)
        .enumerate()
        .for_each(|(b, slot)| merge(kt, ek, &partials[starts[b]..starts[b + 1]], dd, slot));
}

/// Merges the partitions of one sequence and writes its rows.
fn merge<E: Elem>(kt: &Kernels, ek: &ElemKernels<E>, parts: &[Partial], dd: usize, slot: &mut [E]) {
    let mut o = vec![0.0f32; dd];
    for (h, out_row) in slot.chunks_exact_mut(dd).enumerate() {
        let m = parts
            .iter()
            .map(|part| part.m[h])
            .fold(f32::NEG_INFINITY, f32::max);
        o.fill(0.0);
        let mut l = 0.0f32;
        // As in `Online::update`: with every score −inf (or NaN) the
        // partitions were accumulated relative to 0, not −inf; a NaN sum
        // then reaches `finish_row` and the row is NaN, an all −inf row 0.
        let shift = if m == f32::NEG_INFINITY { 0.0 } else { m };
        for part in parts {
            let w = (part.m[h] - shift).exp();
            l += part.l[h] * w;
            for (acc, &x) in o.iter_mut().zip(&part.o[h * dd..][..dd]) {
                *acc += w * x;
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
    // The cache-block segments of tokens c0..c1: (offset of the first
    // token's row in the cache, first token relative to c0, token count).
    let segments = |c0: usize, c1: usize, segs: &mut Vec<(usize, usize, usize)>| {
        segs.clear();
        let mut t = c0;
        while t < c1 {
            let block = p.host_block_tables[part.b * p.max_blocks + t / bs] as usize;
            let slot = t % bs;
            let nt = (bs - slot).min(c1 - t);
            segs.push(((block * bs + slot) * row_stride, t - c0, nt));
            t += nt;
        }
    };
    // The rows of kv head `kvh` for `segs`' tokens, as pieces of at most
    // `dnr` tokens of one block: (offset of the first row, token count).
    let pieces_of = |segs: &[(usize, usize, usize)], kvh: usize, out: &mut Vec<(usize, usize)>| {
        out.clear();
        for &(base, _, nt) in segs {
            for j in (0..nt).step_by(dnr) {
                out.push((base + j * row_stride + kvh * dd, dnr.min(nt - j)));
            }
        }
    };
    // Hints that the K and V rows of `pieces` will be read soon (blocks
    // are scattered: the hardware prefetcher cannot guess them).
    let fetch = |pieces: &[(usize, usize)]| {
        for &(r, nt) in pieces {
            ek.prefetch_rows(&kc[r..], row_stride, (nt, dd));
            ek.prefetch_rows(&vc[r..], row_stride, (nt, dd));
        }
    };
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let sc = &mut *guard;
        let qf = zeroed(&mut sc.q, hq * dd);
        ek.widen(&q[part.b * hq * dd..][..hq * dd], qf);
        let mut state = Online {
            m: {
                sc.m.clear();
                sc.m.resize(hq, f32::NEG_INFINITY);
                &mut sc.m
            },
            l: zeroed(&mut sc.l, hq),
            o: zeroed(&mut sc.o, hq * dpad),
            o_rs: dpad,
            head_dim: dd,
        };
        let s = zeroed(&mut sc.s, g * CHUNK);
        let vp = zeroed(&mut sc.vp, CHUNK * dpad);
        let (mut segs, mut next, mut ahead) = (Vec::new(), Vec::new(), Vec::new());
        // Walk the partition CHUNK tokens at a time (chunks may span
        // several cache blocks), one kv head after the other: a step is a
        // (chunk, kv head). The rows of the step after the current one are
        // prefetched a few at a time between the score tiles, so the
        // prefetches overlap the arithmetic instead of queueing in a burst.
        let mut c0 = part.u0;
        segments(c0, (c0 + CHUNK).min(part.u1), &mut next);
        pieces_of(&next, 0, &mut ahead);
        fetch(&ahead);
        while c0 < part.u1 {
            let c1 = (c0 + CHUNK).min(part.u1);
            let n = c1 - c0;
            std::mem::swap(&mut segs, &mut next);
            segments(c1, (c1 + CHUNK).min(part.u1), &mut next);
            for kvh in 0..hkv {
                if kvh + 1 < hkv {
                    pieces_of(&segs, kvh + 1, &mut ahead);
                } else {
                    pieces_of(&next, 0, &mut ahead);
                }
                let mut issued = 0;
                let rows = kvh * g..(kvh + 1) * g;
                // Scores of the group's query heads against the chunk:
                // each K row is read once for the group (GQA).
                for &(base, off, nt) in &segs {
                    let head = base + kvh * dd;
                    for jt in (0..nt).step_by(dnr) {
                        for it in (0..g).step_by(dmr) {
                            ek.dot_tile(DotTile {
                                k: dd,
                                x: &qf[(kvh * g + it) * dd..],
                                x_rs: dd,
                                w: &kc[head + jt * row_stride..],
                                w_rs: row_stride,
                                out: &mut s[it * CHUNK + off + jt..],
                                out_rs: CHUNK,
                                m: dmr.min(g - it),
                                n: dnr.min(nt - jt),
                            });
                        }
                        let upto = (issued + 1).min(ahead.len());
                        fetch(&ahead[issued..upto]);
                        issued = upto;
                    }
                }
                fetch(&ahead[issued..]);
                for (gi, srow) in s.chunks_exact_mut(CHUNK).enumerate() {
                    kt.scale_softcap(&mut srow[..n], scale, cap);
                    state.update(kt, rows.start + gi, &mut srow[..n], 0, n);
                }
                for &(base, off, nt) in &segs {
                    ek.widen_rows(
                        &vc[base + kvh * dd..],
                        row_stride,
                        &mut vp[off * dpad..],
                        dpad,
                        (nt, dd),
                    );
                }
                pv_product(
                    kt,
                    g,
                    n,
                    s,
                    CHUNK,
                    vp,
                    dpad,
                    &mut state.o[rows.start * dpad..rows.end * dpad],
                );
            }
            c0 = c1;
        }
        let mut o = vec![0.0f32; hq * dd];
        for (h, row) in o.chunks_exact_mut(dd).enumerate() {
            row.copy_from_slice(&state.o[h * dpad..][..dd]);
        }
        Partial {
            m: state.m.to_vec(),
            l: state.l.to_vec(),
            o,
        }
    })
}
