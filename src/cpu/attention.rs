//! Variable-length prefill attention on the `cpu` backend, flash-style.
//!
//! Work split: one rayon task per (sequence, tile of query tokens, kv head).
//! A task's rows are its tokens × the `Hq/Hkv` query heads of the kv head
//! (GQA: every K/V tile is loaded once for the whole group), at most
//! `BLOCK_ROWS` rows. The task walks the keys its rows can see (causal and
//! window masks skip whole tiles) in tiles of `BK` keys:
//!
//! 1. pack the K tile transposed into `NR`-key f32 panels;
//! 2. `S = Q·Kᵀ` with the GEMM microkernel (rows × BK, never the full score
//!    matrix);
//! 3. per row: scale, softcap, mask to the row's visible range, online
//!    softmax update (running max `m`, sum `l`, rescale of the output row);
//! 4. pack the V tile as f32 rows and `O += P·V` with the microkernel.
//!
//! Scores, probabilities and the output accumulate in f32 (probabilities are
//! not rounded to the activation dtype). Each task writes its own output
//! rows and lse entries, handed to it as disjoint slices, so the result does
//! not depend on the number of threads.

use std::cell::RefCell;

use half::{bf16, f16};
use rayon::prelude::*;

use crate::cpu::access::lock;
use crate::cpu::simd::{Elem, ElemKernels, GemmTile, Kernels, kernels};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::{AttentionParams, AttentionProblem};

const OP: &str = "attention";

/// Rows (query tokens × group heads) per task: the K/V tile packing is
/// amortized over them; Q, O and S of a task (~0.5 MiB at D = 128) stay in L2.
/// Measured on Zen 4: 96 → 64, 192 → 70, 384 → 79 GFLOP/s/core at seq 2048.
const BLOCK_ROWS: usize = 384;
/// Keys per tile.
const BK: usize = 64;

/// Per-thread scratch of one task, reused across tasks and calls.
#[derive(Default)]
pub(crate) struct Scratch {
    pub q: Vec<f32>,
    pub o: Vec<f32>,
    pub s: Vec<f32>,
    pub kp: Vec<f32>,
    pub vp: Vec<f32>,
    pub m: Vec<f32>,
    pub l: Vec<f32>,
    pub row: Vec<f32>,
}

thread_local! {
    pub(crate) static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Resizes `v` to `len` and zero-fills it.
pub(crate) fn zeroed(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    v.clear();
    v.resize(len, 0.0);
    v
}

pub(crate) fn run(p: &AttentionProblem<'_>) -> Result<()> {
    let mut outputs_list = vec![p.out];
    outputs_list.extend(p.lse);
    let mut locked = lock(OP, &[p.q, p.k, p.v], &outputs_list)?;
    let (inputs, mut outputs) = locked.split();
    let lse = match p.lse {
        Some(lse) => Some(outputs.take::<f32>(lse)?),
        None => None,
    };
    macro_rules! go {
        ($t:ty) => {
            typed::<$t>(
                p,
                inputs.get(p.q)?,
                inputs.get(p.k)?,
                inputs.get(p.v)?,
                outputs.take(p.out)?,
                lse,
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

/// A tile of query tokens `t0..t1` (local to sequence `seq`).
#[derive(Clone, Copy)]
struct QTile {
    seq: usize,
    t0: usize,
    t1: usize,
}

/// The online-softmax state of a block of rows and the shared row update.
pub(crate) struct Online<'a> {
    pub m: &'a mut [f32],
    pub l: &'a mut [f32],
    pub o: &'a mut [f32],
    /// Row stride of `o`.
    pub o_rs: usize,
    pub head_dim: usize,
}

impl Online<'_> {
    /// Folds the scores `s[lo..hi]` of row `r` (already scaled and capped)
    /// into the state; turns `s[..n]` into probabilities (0 outside
    /// `lo..hi`) relative to the new running max.
    pub(crate) fn update(&mut self, kt: &Kernels, r: usize, s: &mut [f32], lo: usize, hi: usize) {
        if lo >= hi {
            s.fill(0.0);
            return;
        }
        let seg = &mut s[lo..hi];
        let m_new = self.m[r].max(kt.row_max(seg));
        // While every score so far is −inf (or NaN, which `max` skips),
        // subtract 0 instead of −inf: −inf scores then weigh 0 and NaN stays
        // NaN, as the contract says (e^(−inf − (−inf)) would be NaN).
        let shift = if m_new == f32::NEG_INFINITY {
            0.0
        } else {
            m_new
        };
        let sum = kt.exp_sub_sum(seg, shift);
        s[..lo].fill(0.0);
        s[hi..].fill(0.0);
        if self.m[r] != m_new {
            // First visible keys: m = −inf, alpha = 0 on a zero row.
            let alpha = (self.m[r] - m_new).exp();
            self.l[r] *= alpha;
            kt.scale_row(&mut self.o[r * self.o_rs..][..self.head_dim], alpha);
            self.m[r] = m_new;
        }
        self.l[r] += sum;
    }
}

/// `O[rows × dpad] += P[rows × kc] · V[kc × dpad]` with the microkernel
/// (`P` row stride `p_rs`, `V` row stride `dpad`, a multiple of NR).
#[allow(clippy::too_many_arguments)] // two matrices with their strides
pub(crate) fn pv_product(
    kt: &Kernels,
    rows: usize,
    kc: usize,
    p: &[f32],
    p_rs: usize,
    v: &[f32],
    dpad: usize,
    o: &mut [f32],
) {
    let (mr, nr) = (kt.mr, kt.nr);
    if kc == 0 {
        return;
    }
    for dp in (0..dpad).step_by(nr) {
        for ip in (0..rows).step_by(mr) {
            kt.gemm_tile(GemmTile {
                kc,
                a: &p[ip * p_rs..],
                a_rs: p_rs,
                a_cs: 1,
                b: &v[dp..],
                b_rs: dpad,
                c: &mut o[ip * dpad + dp..],
                c_rs: dpad,
                m: mr.min(rows - ip),
                n: nr,
                accumulate: true,
            });
        }
    }
}

/// Writes normalized output rows (`o / l`, or 0 when `l = 0`) and returns
/// the lse of row `r` (`m + ln l`, −inf when nothing was visible). A NaN
/// `l` (a NaN or +inf score) gives a NaN row and lse.
pub(crate) fn finish_row<E: Elem>(
    kt: &Kernels,
    ek: &ElemKernels<E>,
    o_row: &mut [f32],
    m: f32,
    l: f32,
    out: &mut [E],
) -> f32 {
    if l > 0.0 || l.is_nan() {
        kt.scale_row(o_row, 1.0 / l);
        ek.narrow(o_row, &[], out);
        m + l.ln()
    } else {
        out.fill(E::from_f32(0.0));
        f32::NEG_INFINITY
    }
}

fn typed<E: Elem>(
    p: &AttentionProblem<'_>,
    q: &[E],
    k: &[E],
    v: &[E],
    out: &mut [E],
    lse: Option<&mut [f32]>,
) {
    let (hq, hkv, dd) = (p.heads_q, p.heads_kv, p.head_dim);
    let g = hq / hkv;
    if p.total_q == 0 {
        return;
    }
    let bq = (BLOCK_ROWS / g).max(1);
    let mut tiles = Vec::new();
    let mut tile_of_token = vec![0usize; p.total_q];
    for seq in 0..p.batch {
        let sq = p.seq_offsets_q[seq + 1] - p.seq_offsets_q[seq];
        for t0 in (0..sq).step_by(bq) {
            let t1 = (t0 + bq).min(sq);
            let q0 = p.seq_offsets_q[seq];
            tile_of_token[q0 + t0..q0 + t1].fill(tiles.len());
            tiles.push(QTile { seq, t0, t1 });
        }
    }
    // Hand each task its output rows and lse entries as disjoint slices.
    let ntasks = tiles.len() * hkv;
    let mut outs: Vec<Vec<&mut [E]>> = (0..ntasks).map(|_| Vec::new()).collect();
    for (idx, slot) in out.chunks_mut(g * dd).enumerate() {
        outs[tile_of_token[idx / hkv] * hkv + idx % hkv].push(slot);
    }
    let mut lses: Vec<Vec<&mut [f32]>> = (0..ntasks).map(|_| Vec::new()).collect();
    if let Some(lse) = lse {
        for (h, mut rest) in lse.chunks_mut(p.total_q).enumerate() {
            for (ti, tile) in tiles.iter().enumerate() {
                let (piece, tail) = rest.split_at_mut(tile.t1 - tile.t0);
                rest = tail;
                lses[ti * hkv + h / g].push(piece);
            }
        }
    }
    let kt = kernels();
    let ek = E::table(kt);
    outs.into_par_iter()
        .zip(lses)
        .enumerate()
        .for_each(|(task, (outs, lses))| {
            let tile = tiles[task / hkv];
            attend_tile(kt, ek, p, (q, k, v), tile, task % hkv, outs, lses);
        });
}

#[allow(clippy::too_many_arguments)] // one task's coordinates and outputs
fn attend_tile<E: Elem>(
    kt: &Kernels,
    ek: &ElemKernels<E>,
    p: &AttentionProblem<'_>,
    (q, k, v): (&[E], &[E], &[E]),
    tile: QTile,
    kvh: usize,
    mut outs: Vec<&mut [E]>,
    mut lses: Vec<&mut [f32]>,
) {
    let (hq, hkv, dd) = (p.heads_q, p.heads_kv, p.head_dim);
    let g = hq / hkv;
    let (mr, nr) = (kt.mr, kt.nr);
    let (qs, ks) = (p.seq_offsets_q[tile.seq], p.seq_offsets_k[tile.seq]);
    let sq = p.seq_offsets_q[tile.seq + 1] - qs;
    let sk = p.seq_offsets_k[tile.seq + 1] - ks;
    let rows = (tile.t1 - tile.t0) * g;
    let dpad = dd.div_ceil(nr) * nr;
    let bkpad = BK.div_ceil(nr) * nr;
    let params: &AttentionParams = &p.params;
    let pos = |t: usize| (t + sk) as i64 - sq as i64;
    let (scale, cap) = (p.scale as f32, p.params.softcap as f32);
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let sc = &mut *guard;
        let qf = zeroed(&mut sc.q, rows * dd);
        for (r, dst) in qf.chunks_exact_mut(dd).enumerate() {
            let (t, gi) = (tile.t0 + r / g, r % g);
            ek.widen(&q[((qs + t) * hq + kvh * g + gi) * dd..][..dd], dst);
        }
        let mut state = Online {
            m: {
                sc.m.clear();
                sc.m.resize(rows, f32::NEG_INFINITY);
                &mut sc.m
            },
            l: zeroed(&mut sc.l, rows),
            o: zeroed(&mut sc.o, rows * dpad),
            o_rs: dpad,
            head_dim: dd,
        };
        let s = zeroed(&mut sc.s, rows * bkpad);
        let kp = zeroed(&mut sc.kp, bkpad * dd);
        let vp = zeroed(&mut sc.vp, BK * dpad);
        let row = zeroed(&mut sc.row, dd);
        let lo = params.visible_keys(pos(tile.t0), sk).0;
        let hi = params.visible_keys(pos(tile.t1 - 1), sk).1;
        for j0 in (lo..hi).step_by(BK) {
            let j1 = (j0 + BK).min(hi);
            let nk = j1 - j0;
            // Row r's visible keys within this chunk, as chunk columns.
            let row_keys = |r: usize| {
                let (vlo, vhi) = params.visible_keys(pos(tile.t0 + r / g), sk);
                (vlo.clamp(j0, j1) - j0, vhi.clamp(j0, j1) - j0)
            };
            // K tile, transposed into NR-key panels: kp[jp][d][jj].
            for (jp, panel) in kp.chunks_exact_mut(dd * nr).enumerate() {
                for jj in 0..nr {
                    let j = j0 + jp * nr + jj;
                    if j < j1 {
                        ek.widen(&k[((ks + j) * hkv + kvh) * dd..][..dd], row);
                        for (d, &x) in row.iter().enumerate() {
                            panel[d * nr + jj] = x;
                        }
                    } else {
                        for d in 0..dd {
                            panel[d * nr + jj] = 0.0;
                        }
                    }
                }
            }
            // S = Q·Kᵀ for the panels that hold keys.
            for jp in 0..nk.div_ceil(nr) {
                for ip in (0..rows).step_by(mr) {
                    kt.gemm_tile(GemmTile {
                        kc: dd,
                        a: &qf[ip * dd..],
                        a_rs: dd,
                        a_cs: 1,
                        b: &kp[jp * dd * nr..][..dd * nr],
                        b_rs: nr,
                        c: &mut s[ip * bkpad + jp * nr..],
                        c_rs: bkpad,
                        m: mr.min(rows - ip),
                        n: nr,
                        accumulate: false,
                    });
                }
            }
            let mut partly_masked = false;
            for (r, srow) in s.chunks_exact_mut(bkpad).enumerate() {
                let (a, b) = row_keys(r);
                partly_masked |= (a, b) != (0, nk);
                if a < b {
                    kt.scale_softcap(&mut srow[a..b], scale, cap);
                }
                state.update(kt, r, &mut srow[..nk], a, b.max(a));
            }
            // V tile as f32 rows of dpad (the padding stays zero).
            for (jj, dst) in vp.chunks_exact_mut(dpad).take(nk).enumerate() {
                ek.widen(
                    &v[((ks + j0 + jj) * hkv + kvh) * dd..][..dd],
                    &mut dst[..dd],
                );
            }
            let vp_used = &vp[..nk * dpad];
            if partly_masked && vp_used.iter().any(|x| !x.is_finite()) {
                // A masked key's probability is 0, but 0·NaN and 0·inf are
                // NaN: with a non-finite value in the chunk, sum each row
                // over its visible keys only (rare, so plainly).
                for r in 0..rows {
                    let (a, b) = row_keys(r);
                    let o_row = &mut state.o[r * dpad..][..dd];
                    for jj in a..b.max(a) {
                        let pj = s[r * bkpad + jj];
                        for (o, &x) in o_row.iter_mut().zip(&vp_used[jj * dpad..][..dd]) {
                            *o += pj * x;
                        }
                    }
                }
            } else {
                pv_product(kt, rows, nk, s, bkpad, vp, dpad, state.o);
            }
        }
        for r in 0..rows {
            let (t, gi) = (r / g, r % g);
            let l = finish_row(
                kt,
                ek,
                &mut state.o[r * dpad..][..dd],
                state.m[r],
                state.l[r],
                &mut outs[t][gi * dd..][..dd],
            );
            if let Some(piece) = lses.get_mut(gi) {
                piece[t] = l;
            }
        }
    });
}
