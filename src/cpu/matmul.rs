//! matmul on the `cpu` backend: `C = A·B (+ bias)`, f32 accumulation.
//!
//! Three paths, chosen from the shape alone:
//!
//! * **GEMM** (the general case): BLIS-style blocking around one register
//!   tile (`MR × NR`: 6×16 on AVX2, 8×32 on AVX-512) that broadcasts `MR`
//!   rows of an operand X and multiplies `NR`-wide rows of a packed
//!   operand Y. For each block of `NC` columns and `KC` depths, Y is packed
//!   (converted to f32) into `[KC][NR]` panels shared by all threads; the
//!   rows of X are split into blocks of at most `MC_MAX` rows, one rayon
//!   task each, which copies its `rows × KC` slice of X to f32 rows (in L2;
//!   f32 rows are read in place unless their stride is a multiple of 4 KiB)
//!   and runs the tile over it, Y panel by Y panel.
//!   - `b` as `[K,N]`: X = A, Y = B, C written in place (f32) or through an
//!     f32 buffer rounded once with the bias (f16/bf16).
//!   - `b` as `[N,K]` (weights): computed as `Cᵀ = W·Aᵀ`, X = W, Y = Aᵀ, so
//!     only the small activation matrix is transposed while packing, never
//!     the weights; `Cᵀ` is transposed into the output with the bias.
//! * **Dot** (`b` laid out `[N,K]`, M ≤ `DOT_MAX_M`: decode and small
//!   batches, the linear-layer case): no packing at all. Tasks take `DOT_COLS`
//!   rows of W; each computes tiles of `dot_mr × dot_nr` dot products
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

/// Depth of a packed block: `KC_BYTES / (4·NR)`, at most `KC`. 256 on AVX2
/// (NR = 16) and on AVX-512 (NR = 32: the 32 KiB B micro-panel then lives
/// in L2, but halving the passes over C measured faster than keeping it in
/// L1 with KC = 128).
const KC: usize = 256;
const KC_BYTES: usize = 32 << 10;
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
    /// Per-thread packed X block, reused across calls.
    static PACK_X: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
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
    let bias32: Vec<f32> = bias
        .map(|b| widened(ek, b).into_owned())
        .unwrap_or_default();
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
            BLayout::Kn if m == 1 => {
                gemv_kn_path(ek, d, &widened(ek, a_mat), b_mat, &bias32, out_mat)
            }
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

/// How the rows are split into tasks: blocks of `mc` rows (the last may be
/// shorter), a multiple of the thread count when there are enough rows so
/// that threads get equal work. The split never changes a result.
fn row_blocks(m: usize, mr: usize) -> usize {
    let panels = m.div_ceil(mr);
    let threads = rayon::current_num_threads().max(1);
    let mut blocks = panels.div_ceil((MC_MAX / mr).max(1));
    if panels >= threads {
        blocks = blocks.div_ceil(threads) * threads;
    }
    panels.div_ceil(blocks.clamp(1, panels)) * mr
}

/// The `Y` operand of [`gemm_core`], element `(k, j)`.
#[derive(Clone, Copy)]
enum YSource<'a, E> {
    /// `src[k·ld + j]`: a `[K,N]` matrix (contiguous along j: packing copies).
    Rows(&'a [E], usize),
    /// `src[j·ld + k]`: the transpose of a row-major matrix (packing
    /// gathers; only used for the small activation matrix).
    Cols(&'a [E], usize),
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
    let Dims { m, n, k, layout } = d;
    match layout {
        BLayout::Kn => {
            // C = A·B: A rows are broadcast, B rows are the vector operand.
            let y = YSource::Rows(b, n);
            if let Some(out32) = as_f32_mut(out) {
                gemm_core(kt, ek, (m, n, k), a, y, out32);
                if !bias.is_empty() {
                    out32.par_chunks_mut(n).for_each(|row| {
                        for (o, &bv) in row.iter_mut().zip(bias) {
                            *o += bv;
                        }
                    });
                }
            } else {
                let mut c = vec![0.0f32; m * n];
                gemm_core(kt, ek, (m, n, k), a, y, &mut c);
                out.par_chunks_mut(n)
                    .zip(c.par_chunks(n))
                    .for_each(|(o, c)| ek.narrow(c, bias, o));
            }
        }
        BLayout::Nk => {
            // Cᵀ = W·Aᵀ: the weight rows are broadcast (packing copies
            // them, no transpose of the big operand); Aᵀ is the vector
            // operand. Then Cᵀ is transposed into the output.
            let mut ct = vec![0.0f32; n * m];
            gemm_core(kt, ek, (n, m, k), b, YSource::Cols(a, k), &mut ct);
            const T: usize = 16;
            let ct = &ct;
            out.par_chunks_mut(T * n)
                .enumerate()
                .for_each(|(blk, rows)| {
                    let i0 = blk * T;
                    let nrows = rows.len() / n;
                    let mut tmp = vec![0.0f32; nrows * n];
                    for j in 0..n {
                        let src = &ct[j * m + i0..][..nrows];
                        for (ii, &v) in src.iter().enumerate() {
                            tmp[ii * n + j] = v;
                        }
                    }
                    for (o, t) in rows.chunks_mut(n).zip(tmp.chunks(n)) {
                        ek.narrow(t, bias, o);
                    }
                });
        }
    }
}

/// `C[m×n] = X[m×k]·Y[k×n]` in f32 (C row-major, row stride n): the
/// blocked GEMM. X rows are broadcast by the microkernel, Y is packed into
/// `NR`-column panels.
fn gemm_core<E: Elem>(
    kt: &Kernels,
    ek: &ElemKernels<E>,
    (m, n, k): (usize, usize, usize),
    x: &[E],
    y: YSource<'_, E>,
    c: &mut [f32],
) {
    let nr = kt.nr;
    let kcb = (KC_BYTES / (4 * nr)).clamp(16, KC);
    let mc = row_blocks(m, kt.mr);
    let nc_max = NC.min(n.div_ceil(nr) * nr);
    let mut packed_y = vec![0.0f32; kcb.min(k) * nc_max];
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        let npanels = nc.div_ceil(nr);
        for pc in (0..k).step_by(kcb) {
            let kc = kcb.min(k - pc);
            let py = &mut packed_y[..npanels * kc * nr];
            py.par_chunks_mut(kc * nr)
                .enumerate()
                .for_each(|(jp, panel)| pack_y(ek, y, n, pc, kc, jc + jp * nr, nr, panel));
            let py = &*py;
            c.par_chunks_mut(mc * n)
                .enumerate()
                .for_each(|(bi, c_rows)| {
                    compute_block(
                        kt,
                        ek,
                        BlockArgs {
                            x,
                            ldx: k,
                            row0: bi * mc,
                            rows: c_rows.len() / n,
                            pc,
                            kc,
                            py,
                            nc,
                            c: c_rows,
                            c_rs: n,
                            c_col0: jc,
                            accumulate: pc > 0,
                        },
                    )
                });
        }
    }
}

/// Packs columns `j0 .. j0+NR` of Y, depths `pc .. pc+kc`, as `[kc][NR]`
/// f32 (columns past n are zero).
#[allow(clippy::too_many_arguments)] // one panel's coordinates
fn pack_y<E: Elem>(
    ek: &ElemKernels<E>,
    y: YSource<'_, E>,
    n: usize,
    pc: usize,
    kc: usize,
    j0: usize,
    nr: usize,
    panel: &mut [f32],
) {
    let nn = nr.min(n - j0);
    match y {
        YSource::Rows(src, ld) => {
            ek.widen_rows(&src[pc * ld + j0..], ld, panel, nr, (kc, nn));
            if nn < nr {
                for dst in panel.chunks_exact_mut(nr) {
                    dst[nn..].fill(0.0);
                }
            }
        }
        YSource::Cols(src, ld) => {
            let mut tmp = [0.0f32; KC];
            for jj in 0..nr {
                if jj < nn {
                    let s = &src[(j0 + jj) * ld + pc..][..kc];
                    ek.widen(s, &mut tmp[..kc]);
                    for (kk, &v) in tmp[..kc].iter().enumerate() {
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
    x: &'a [E],
    ldx: usize,
    /// First row of X (and C) of this block, and the number of rows.
    row0: usize,
    rows: usize,
    pc: usize,
    kc: usize,
    /// The packed Y block: `ceil(nc / NR)` panels of `[kc][NR]`.
    py: &'a [f32],
    nc: usize,
    /// The block's rows of C (row stride `c_rs`), columns from `c_col0`.
    c: &'a mut [f32],
    c_rs: usize,
    c_col0: usize,
    accumulate: bool,
}

fn compute_block<E: Elem>(kt: &Kernels, ek: &ElemKernels<E>, args: BlockArgs<'_, E>) {
    let BlockArgs {
        x,
        ldx,
        row0,
        rows,
        pc,
        kc,
        py,
        nc,
        c,
        c_rs,
        c_col0,
        accumulate,
    } = args;
    let (mr, nr) = (kt.mr, kt.nr);
    PACK_X.with(|cell| {
        // The microkernel broadcasts from MR rows of X. f32 rows are read in
        // place unless their stride is a multiple of 4 KiB (then all MR rows
        // would fall in one L1 set); otherwise the block's rows are copied
        // (converted) to contiguous f32 rows of kc.
        let mut pack = cell.borrow_mut();
        let (px, ld): (&[f32], usize) = match as_f32(x) {
            Some(x32) if (ldx * 4) % 4096 != 0 => (&x32[row0 * ldx + pc..], ldx),
            _ => {
                if pack.len() < rows * kc {
                    pack.resize(rows * kc, 0.0);
                }
                let px = &mut pack[..rows * kc];
                ek.widen_rows(&x[row0 * ldx + pc..], ldx, px, kc, (rows, kc));
                (&*px, kc)
            }
        };
        for jp in 0..nc.div_ceil(nr) {
            let panel = &py[jp * kc * nr..][..kc * nr];
            let n = nr.min(nc - jp * nr);
            for i0 in (0..rows).step_by(mr) {
                kt.gemm_tile(GemmTile {
                    kc,
                    a: &px[i0 * ld..],
                    a_rs: ld,
                    a_cs: 1,
                    b: panel,
                    b_rs: nr,
                    c: &mut c[i0 * c_rs + c_col0 + jp * nr..],
                    c_rs,
                    m: mr.min(rows - i0),
                    n,
                    accumulate,
                });
            }
        }
    });
}
