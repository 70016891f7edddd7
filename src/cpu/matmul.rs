//! matmul on the `cpu` backend: `C = A·B (+ bias)`, f32 accumulation.
//!
//! Three paths, chosen from the shape alone:
//!
//! * **GEMM** (the general case): BLIS-style cache blocking. For each block
//!   of `NC` columns and `KC` depths, B is packed (converted to f32) into
//!   `NR`-column panels shared by all threads; the rows are split into
//!   blocks of at most `MC_MAX` rows, one rayon task each, which packs its
//!   `rows × KC` slice of A into `MR`-row panels (in L2) and runs the
//!   register-tiled microkernel (`MR × NR`, 6×16 on AVX2, 8×32 on AVX-512)
//!   over its rows, B panel by B panel (each in L1). f32 outputs are
//!   accumulated in place; f16/bf16 outputs go through an f32 block that
//!   is rounded once, with the bias, after the last `KC` block.
//! * **Dot** (`b` laid out `[N,K]`, M ≤ `DOT_MAX_M`: decode and small
//!   batches, the linear-layer case): no packing at all. Tasks take `DOT_COLS`
//!   rows of W; each computes a tile of `dot_mr × dot_nr` dot products
//!   along K with one vector accumulator per pair (f16/bf16 converted in
//!   registers), so W streams from memory exactly once.
//! * **GEMV-kn** (`b` laid out `[K,N]`, M = 1): each task owns a strip of
//!   columns and streams B's rows.
//!
//! The summation order of every element depends only on `KC` and the
//! kernel, never on the thread count or the row / column split.

use std::borrow::Cow;
use std::cell::RefCell;

use half::{bf16, f16};
use rayon::prelude::*;

use crate::cpu::access::lock;
use crate::cpu::simd::{DotTile, Elem, ElemKernels, GemmTile, Kernels, kernels};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::{BLayout, MatmulProblem};

const OP: &str = "matmul";

/// Depth of a packed block: an `MR × KC` A panel and a `KC × NR` B panel
/// stay in L1 (6·256·4 + 256·16·4 = 22 KiB on AVX2).
const KC: usize = 256;
/// Columns of a packed B block (`KC × NC` f32 = 2 MiB, in L3).
const NC: usize = 2048;
/// Most rows of a task's A block (`MC_MAX × KC` f32 = 144 KiB, in L2).
const MC_MAX: usize = 144;
/// `[N,K]` problems with at most this many rows use the dot path.
const DOT_MAX_M: usize = 32;
/// W rows per dot-path task (a multiple of every level's dot widths).
const DOT_COLS: usize = 96;
/// Columns per GEMV-kn task.
const GEMV_COLS: usize = 256;

thread_local! {
    /// Per-thread packed A block, reused across calls.
    static PACK_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn run(p: &MatmulProblem<'_>) -> Result<()> {
    let mut input_tensors = vec![p.a, p.b];
    input_tensors.extend(p.bias);
    let mut locked = lock(OP, &input_tensors, &[p.out])?;
    let (inputs, mut outputs) = locked.split();
    macro_rules! go {
        ($t:ty) => {{
            let bias = match p.bias {
                Some(bias) => Some(inputs.get::<$t>(bias)?),
                None => None,
            };
            typed::<$t>(
                p,
                inputs.get(p.a)?,
                inputs.get(p.b)?,
                bias,
                outputs.take(p.out)?,
            )
        }};
    }
    match p.a.dtype() {
        DType::F16 => go!(f16),
        DType::BF16 => go!(bf16),
        _ => go!(f32),
    }
    Ok(())
}

/// `x` as f32 in place when `E` is f32.
fn as_f32<E: Elem>(x: &[E]) -> Option<&[f32]> {
    (E::DTYPE == DType::F32)
        .then(|| bytemuck::try_cast_slice(x).ok())
        .flatten()
}

fn as_f32_mut<E: Elem>(x: &mut [E]) -> Option<&mut [f32]> {
    if E::DTYPE == DType::F32 {
        bytemuck::try_cast_slice_mut(x).ok()
    } else {
        None
    }
}

/// `x` as f32: borrowed for f32, converted otherwise.
fn widened<'a, E: Elem>(ek: &ElemKernels<E>, x: &'a [E]) -> Cow<'a, [f32]> {
    match as_f32(x) {
        Some(x) => Cow::Borrowed(x),
        None => {
            let mut v = vec![0.0; x.len()];
            ek.widen(x, &mut v);
            Cow::Owned(v)
        }
    }
}

/// The dimensions of one matrix product.
#[derive(Clone, Copy)]
struct Dims {
    m: usize,
    n: usize,
    k: usize,
    layout: BLayout,
}

fn typed<E: Elem>(p: &MatmulProblem<'_>, a: &[E], b: &[E], bias: Option<&[E]>, out: &mut [E]) {
    let kt = kernels();
    let ek = E::table(kt);
    let d = Dims {
        m: p.m,
        n: p.n,
        k: p.k,
        layout: p.params.b_layout,
    };
    let (m, n, k) = (d.m, d.n, d.k);
    if m == 0 || n == 0 || p.batch == 0 {
        return;
    }
    let bias32: Vec<f32> = bias.map(|b| widened(ek, b).into_owned()).unwrap_or_default();
    if k == 0 {
        let zeros;
        let row: &[f32] = if bias32.is_empty() {
            zeros = vec![0.0; n];
            &zeros
        } else {
            &bias32
        };
        out.par_chunks_mut(n).for_each(|o| ek.narrow(row, &[], o));
        return;
    }
    for bi in 0..p.batch {
        let a_mat = &a[bi * m * k..][..m * k];
        let b_mat = if p.b_batched {
            &b[bi * k * n..][..k * n]
        } else {
            &b[..k * n]
        };
        let out_mat = &mut out[bi * m * n..][..m * n];
        match d.layout {
            BLayout::Nk if m <= DOT_MAX_M => {
                dot_path(ek, d, &widened(ek, a_mat), b_mat, &bias32, out_mat)
            }
            BLayout::Kn if m == 1 => gemv_kn_path(ek, d, &widened(ek, a_mat), b_mat, &bias32, out_mat),
            _ => gemm_path(kt, ek, d, a_mat, b_mat, &bias32, out_mat),
        }
    }
}

/// Small M against `[N,K]` weights: tiles of dot products along K.
fn dot_path<E: Elem>(
    ek: &ElemKernels<E>,
    d: Dims,
    x: &[f32],
    w: &[E],
    bias: &[f32],
    out: &mut [E],
) {
    let Dims { m, n, k, .. } = d;
    let cols = DOT_COLS;
    let chunks = n.div_ceil(cols);
    // tmp is [chunk][m][cols]: each task owns one contiguous chunk.
    let mut tmp = vec![0.0f32; chunks * m * cols];
    tmp.par_chunks_mut(m * cols)
        .enumerate()
        .for_each(|(c, buf)| {
            let j0 = c * cols;
            let nn = cols.min(n - j0);
            if m == 1 {
                let g = ek.gemv_nr();
                for jt in (0..nn).step_by(g) {
                    ek.gemv_dot(DotTile {
                        k,
                        x,
                        x_rs: k,
                        w: &w[(j0 + jt) * k..],
                        w_rs: k,
                        out: &mut buf[jt..],
                        out_rs: cols,
                        m: 1,
                        n: g.min(nn - jt),
                    });
                }
                return;
            }
            let (dmr, dnr) = (ek.dot_mr(), ek.dot_nr());
            for jt in (0..nn).step_by(dnr) {
                for it in (0..m).step_by(dmr) {
                    ek.dot_tile(DotTile {
                        k,
                        x: &x[it * k..],
                        x_rs: k,
                        w: &w[(j0 + jt) * k..],
                        w_rs: k,
                        out: &mut buf[it * cols + jt..],
                        out_rs: cols,
                        m: dmr.min(m - it),
                        n: dnr.min(nn - jt),
                    });
                }
            }
        });
    out.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for c in 0..chunks {
            let j0 = c * cols;
            let nn = cols.min(n - j0);
            let add = if bias.is_empty() {
                &[][..]
            } else {
                &bias[j0..j0 + nn]
            };
            ek.narrow(&tmp[(c * m + i) * cols..][..nn], add, &mut row[j0..j0 + nn]);
        }
    });
}

/// One row against a `[K,N]` matrix: column strips, rows streamed.
fn gemv_kn_path<E: Elem>(
    ek: &ElemKernels<E>,
    d: Dims,
    x: &[f32],
    b: &[E],
    bias: &[f32],
    out: &mut [E],
) {
    let n = d.n;
    let mut tmp = vec![0.0f32; n];
    tmp.par_chunks_mut(GEMV_COLS)
        .enumerate()
        .for_each(|(c, strip)| ek.gemv_kn(x, &b[c * GEMV_COLS..], n, strip));
    ek.narrow(&tmp, bias, out);
}

/// How the rows are split into tasks: `blocks` blocks of `mc` rows (the
/// last may be shorter). A multiple of the thread count when there are
/// enough rows, so that threads get equal work; the split never changes a
/// result.
fn row_blocks(m: usize, mr: usize) -> usize {
    let panels = m.div_ceil(mr);
    let threads = rayon::current_num_threads().max(1);
    let mut blocks = panels.div_ceil((MC_MAX / mr).max(1));
    if panels >= threads {
        blocks = blocks.div_ceil(threads) * threads;
    }
    panels.div_ceil(blocks.clamp(1, panels)) * mr
}

fn gemm_path<E: Elem>(
    kt: &Kernels,
    ek: &ElemKernels<E>,
    d: Dims,
    a: &[E],
    b: &[E],
    bias: &[f32],
    out: &mut [E],
) {
    let Dims { m, n, k, .. } = d;
    let nr = kt.nr;
    let mc = row_blocks(m, kt.mr);
    let nc_max = NC.min(n.div_ceil(nr) * nr);
    let mut packed_b = vec![0.0f32; KC.min(k) * nc_max];
    let mut c32 = if E::DTYPE == DType::F32 {
        Vec::new()
    } else {
        vec![0.0f32; m * nc_max.min(n)]
    };
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        let npanels = nc.div_ceil(nr);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let last = pc + kc == k;
            let pb = &mut packed_b[..npanels * kc * nr];
            pb.par_chunks_mut(kc * nr)
                .enumerate()
                .for_each(|(jp, panel)| {
                    pack_b(ek, d, b, pc, kc, jc + jp * nr, nr, panel);
                });
            let pb = &*pb;
            let block = |row0: usize, c: &mut [f32], c_rs: usize, c_col0: usize| {
                let rows = c.len() / c_rs;
                compute_block(
                    kt,
                    ek,
                    BlockArgs {
                        a,
                        lda: k,
                        row0,
                        rows,
                        pc,
                        kc,
                        pb,
                        nc,
                        c,
                        c_rs,
                        c_col0,
                        accumulate: pc > 0,
                    },
                );
            };
            if let Some(out32) = as_f32_mut(out) {
                out32
                    .par_chunks_mut(mc * n)
                    .enumerate()
                    .for_each(|(bi, c_rows)| {
                        block(bi * mc, c_rows, n, jc);
                        if last && !bias.is_empty() {
                            for row in c_rows.chunks_mut(n) {
                                for (o, &bv) in row[jc..jc + nc].iter_mut().zip(&bias[jc..]) {
                                    *o += bv;
                                }
                            }
                        }
                    });
            } else {
                c32[..m * nc]
                    .par_chunks_mut(mc * nc)
                    .zip(out.par_chunks_mut(mc * n))
                    .enumerate()
                    .for_each(|(bi, (c_rows, o_rows))| {
                        block(bi * mc, c_rows, nc, 0);
                        if last {
                            let add = if bias.is_empty() {
                                &[][..]
                            } else {
                                &bias[jc..jc + nc]
                            };
                            for (crow, orow) in c_rows.chunks(nc).zip(o_rows.chunks_mut(n)) {
                                ek.narrow(crow, add, &mut orow[jc..jc + nc]);
                            }
                        }
                    });
            }
        }
    }
}

/// Packs columns `j0 .. j0+NR` of B, depths `pc .. pc+kc`, as `[kc][NR]`
/// f32 (columns past N are zero).
#[allow(clippy::too_many_arguments)] // one panel's coordinates
fn pack_b<E: Elem>(
    ek: &ElemKernels<E>,
    d: Dims,
    b: &[E],
    pc: usize,
    kc: usize,
    j0: usize,
    nr: usize,
    panel: &mut [f32],
) {
    let nn = nr.min(d.n - j0);
    match d.layout {
        BLayout::Kn => {
            for (kk, dst) in panel.chunks_exact_mut(nr).enumerate() {
                ek.widen(&b[(pc + kk) * d.n + j0..][..nn], &mut dst[..nn]);
                dst[nn..].fill(0.0);
            }
        }
        BLayout::Nk => {
            let mut tmp = [0.0f32; KC];
            for jj in 0..nr {
                if jj < nn {
                    let src = &b[(j0 + jj) * d.k + pc..][..kc];
                    let vals: &[f32] = match as_f32(src) {
                        Some(s) => s,
                        None => {
                            ek.widen(src, &mut tmp[..kc]);
                            &tmp[..kc]
                        }
                    };
                    for (kk, &v) in vals.iter().enumerate() {
                        panel[kk * nr + jj] = v;
                    }
                } else {
                    for kk in 0..kc {
                        panel[kk * nr + jj] = 0.0;
                    }
                }
            }
        }
    }
}

/// One task's work for one `(jc, pc)` block.
struct BlockArgs<'a, E> {
    a: &'a [E],
    lda: usize,
    /// First row of A (and C) of this block, and the number of rows.
    row0: usize,
    rows: usize,
    pc: usize,
    kc: usize,
    /// The packed B block: `ceil(nc / NR)` panels of `[kc][NR]`.
    pb: &'a [f32],
    nc: usize,
    /// The block's rows of C (row stride `c_rs`), columns from `c_col0`.
    c: &'a mut [f32],
    c_rs: usize,
    c_col0: usize,
    accumulate: bool,
}

fn compute_block<E: Elem>(kt: &Kernels, ek: &ElemKernels<E>, args: BlockArgs<'_, E>) {
    let BlockArgs {
        a,
        lda,
        row0,
        rows,
        pc,
        kc,
        pb,
        nc,
        c,
        c_rs,
        c_col0,
        accumulate,
    } = args;
    let (mr, nr) = (kt.mr, kt.nr);
    let panels = rows.div_ceil(mr);
    PACK_A.with(|cell| {
        let mut pack = cell.borrow_mut();
        if pack.len() < panels * kc * mr {
            pack.resize(panels * kc * mr, 0.0);
        }
        let pa = &mut pack[..panels * kc * mr];
        let mut tmp = [0.0f32; KC];
        for (ip, panel) in pa.chunks_exact_mut(kc * mr).enumerate() {
            for i in 0..mr {
                let r = ip * mr + i;
                if r >= rows {
                    for kk in 0..kc {
                        panel[kk * mr + i] = 0.0;
                    }
                    continue;
                }
                let src = &a[(row0 + r) * lda + pc..][..kc];
                let vals: &[f32] = match as_f32(src) {
                    Some(s) => s,
                    None => {
                        ek.widen(src, &mut tmp[..kc]);
                        &tmp[..kc]
                    }
                };
                for (kk, &v) in vals.iter().enumerate() {
                    panel[kk * mr + i] = v;
                }
            }
        }
        let pa = &*pa;
        for jp in 0..nc.div_ceil(nr) {
            let bpanel = &pb[jp * kc * nr..][..kc * nr];
            let n = nr.min(nc - jp * nr);
            for ip in 0..panels {
                kt.gemm_tile(GemmTile {
                    kc,
                    a: &pa[ip * kc * mr..][..kc * mr],
                    a_rs: 1,
                    a_cs: mr,
                    b: bpanel,
                    b_rs: nr,
                    c: &mut c[ip * mr * c_rs + c_col0 + jp * nr..],
                    c_rs,
                    m: mr.min(rows - ip * mr),
                    n,
                    accumulate,
                });
            }
        }
    });
}
