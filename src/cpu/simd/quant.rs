//! SIMD bodies of the quantized matmuls (`cpu/{gptq,awq,nvfp4}_matmul.rs`),
//! their function table ([`QuantKernels`], one per level, chosen with the
//! level of [`super::kernels`]) and its safe wrappers.
//!
//! Every body dequantizes in registers: a packed weight vector is loaded
//! once, its fields are extracted with shifts and masks on u32 lanes
//! (GPTQ / AWQ) or looked up in a 16-entry table (NVFP4 E2M1), converted
//! to f32 and multiplied into every row of x of the tile before the next
//! vector is loaded. Nothing of W is ever written to memory.
//!
//! * GPTQ (`qweight [K/pf, N]`, packed along K): one u32 vector is `LANES`
//!   columns × `pf` depths. With sequential groups the bodies accumulate
//!   `Σ_k x[k]·q[k,n]` per group and add `s·(acc − z·Σ_k x[k])` at the group
//!   end (the factored form: no per-element subtract or scale; f32 x
//!   only); with an act-order `g_idx`, or f16 / bf16 x (whose contract
//!   rounds W to their dtype), each depth looks up its group and forms
//!   `s·(q − z)` per element, rounded to x's dtype (`round_w`).
//! * AWQ (`qweight [K, N/8]`, packed along N, interleaved): one u32 vector
//!   is `8·LANES` columns of one depth; nibble `i` of lane `l` is column
//!   `8l + ORDER[i]`, so the accumulators (and the scale table and output
//!   the driver hands in) are in that permuted order; the driver undoes it.
//! * NVFP4 (`[N, Kp/2]` bytes, packed along K): dot products along K.
//!   `LANES` bytes are `2·LANES` elements: the low nibbles form one vector,
//!   the high nibbles another, against x de-interleaved the same way by the
//!   driver; lane `l` of both belongs to block `l / 8` of the span.
//!
//! Summation orders depend only on the arguments (never on threads).

// Register tiles are indexed by (row, vector, field) in lockstep, as in
// `bodies.rs`.
#![allow(clippy::needless_range_loop)]

use std::sync::OnceLock;

use super::{Level, Simd, kernels};

/// Arguments of the GPTQ bodies (see [`GptqStrip`]).
pub(crate) struct GptqRaw {
    pub qw: *const u32,
    pub qw_rs: usize,
    pub krows: usize,
    /// Word rows per group (sequential groups).
    pub gw: usize,
    /// The group of each depth (act-order), entries `< groups`.
    pub gk: *const u32,
    pub x: *const f32,
    pub x_rs: usize,
    pub m: usize,
    pub tab: *const f32,
    pub tw: usize,
    pub sx: *const f32,
    pub sx_rs: usize,
    pub out: *mut f32,
    pub out_rs: usize,
}

/// GPTQ, sequential groups of `gw` word rows: `out[i][j] = Σ_g s[g][j]·
/// (Σ_{k∈g} x[i][k]·q[k][j] − z[g][j]·sx[i][g])` for `i < m`, `j <
/// NV·LANES` (overwritten). With `PRE`, x must be prescaled: element k
/// holds `x[k]·2^(−BITS·(k % pf))` unless `k % pf = pf − 1` (see
/// [`prescale_gptq_x`]).
///
/// # Safety
/// `1 ≤ m ≤ MR`; `krows ≥ 1`, `gw ≥ 1`; for `r < krows`: `NV·LANES` u32 at
/// `qw + r·qw_rs` readable; rows `i < m` of x hold `krows·32/BITS` floats;
/// for `g < ceil(krows/gw)`: `NV·LANES` floats at `tab + 2g·tw` and
/// `tab + 2g·tw + tw`, and `sx[i·sx_rs + g]` for `i < m`, readable;
/// `out + i·out_rs + j` writable for `i < m`, `j < NV·LANES`.
#[inline(always)]
pub(crate) unsafe fn gptq_groups<
    S: Simd,
    const BITS: u32,
    const MR: usize,
    const NV: usize,
    const PRE: bool,
>(
    s: S,
    t: &GptqRaw,
) {
    let lanes = S::LANES;
    let pf = (32 / BITS) as usize;
    let field = (1u32 << BITS) - 1;
    let mask = s.splat_u32(field);
    // Prescaled x (PRE): field j < pf − 1 is converted in place,
    // `(w & mask << BITS·j)` = q·2^(BITS·j) exactly, against x·2^(−BITS·j);
    // the top field is shifted down. One op less per element.
    let masks: [S::I; 8] =
        std::array::from_fn(|j| s.splat_u32(field << ((BITS as usize * j) % 32)));
    let xr: [*const f32; MR] = std::array::from_fn(|i| t.x.wrapping_add(i.min(t.m - 1) * t.x_rs));
    let sxr: [*const f32; MR] =
        std::array::from_fn(|i| t.sx.wrapping_add(i.min(t.m - 1) * t.sx_rs));
    let zero = s.splat(0.0);
    let mut y = [[zero; NV]; MR];
    let groups = t.krows.div_ceil(t.gw);
    for g in 0..groups {
        let r1 = ((g + 1) * t.gw).min(t.krows);
        let mut acc = [[zero; NV]; MR];
        for r in g * t.gw..r1 {
            let row = t.qw.wrapping_add(r * t.qw_rs);
            // SAFETY: r < krows: NV·LANES u32 of row r are readable.
            let w: [S::I; NV] = std::array::from_fn(|v| unsafe { s.load_u32(row.add(v * lanes)) });
            for j in 0..pf {
                let k = r * pf + j;
                // SAFETY: k < krows·pf: element k of rows min(i, m−1).
                let xv: [S::V; MR] = std::array::from_fn(|i| s.splat(unsafe { *xr[i].add(k) }));
                for v in 0..NV {
                    let bits = if !PRE {
                        s.and_u32(s.shr_u32(w[v], j as u32 * BITS), mask)
                    } else if j + 1 < pf {
                        s.and_u32(w[v], masks[j])
                    } else {
                        s.shr_u32(w[v], j as u32 * BITS)
                    };
                    let q = s.u32_to_f32(bits);
                    for i in 0..MR {
                        acc[i][v] = s.fma(xv[i], q, acc[i][v]);
                    }
                }
            }
        }
        let tab = t.tab.wrapping_add(2 * g * t.tw);
        for v in 0..NV {
            // SAFETY: g < groups: the scale and zero rows of group g hold
            // NV·LANES floats; sx[i][g] is readable for rows min(i, m−1).
            unsafe {
                let sv = s.load(tab.add(v * lanes));
                let zv = s.load(tab.add(t.tw + v * lanes));
                for i in 0..MR {
                    let sxv = s.splat(*sxr[i].add(g));
                    y[i][v] = s.fma(sv, s.sub(acc[i][v], s.mul(zv, sxv)), y[i][v]);
                }
            }
        }
    }
    for (i, row) in y.iter().enumerate().take(t.m) {
        for (v, &yv) in row.iter().enumerate() {
            // SAFETY: i < m, v·LANES + LANES ≤ NV·LANES: inside the output.
            unsafe { s.store(t.out.add(i * t.out_rs + v * lanes), yv) };
        }
    }
}

/// W rounded to x's dtype as the contract does: `RND` 0 (f32: exact), 1
/// (f16) or 2 (bf16).
#[inline(always)]
fn round_w<S: Simd, const RND: u8>(s: S, v: S::V) -> S::V {
    match RND {
        1 => s.round_f16(v),
        2 => s.round_bf16(v),
        _ => v,
    }
}

/// GPTQ, sequential groups of `gw` word rows, for f16 / bf16 x: the weight
/// formed per element and rounded to x's dtype (`RND`, see [`round_w`]),
/// with fields converted in place: `W = round(fma(s·2^(−BITS·j), q·2^(BITS·j),
/// −s·z))` — one rounding of the exact `s·(q − z)` (the scaled products are
/// exact, and `s·z` is exact for f16 / bf16 scales, which the driver
/// requires). `out[i][j] = Σ_k x[i][k]·W[k][j]` (overwritten).
///
/// # Safety
/// As [`gptq_groups`], except the table: per group g, `pf + 1` rows of
/// `tw` floats at `tab + g·(pf+1)·tw` (row j < pf: `s·2^(−BITS·j)`, or `s`
/// for the top field; row pf: `−s·z`), each holding `NV·LANES` readable
/// floats; `sx` is not read.
#[inline(always)]
pub(crate) unsafe fn gptq_rounded<
    S: Simd,
    const BITS: u32,
    const MR: usize,
    const NV: usize,
    const RND: u8,
>(
    s: S,
    t: &GptqRaw,
) {
    let lanes = S::LANES;
    let pf = (32 / BITS) as usize;
    let field = (1u32 << BITS) - 1;
    let masks: [S::I; 8] =
        std::array::from_fn(|j| s.splat_u32(field << ((BITS as usize * j) % 32)));
    let xr: [*const f32; MR] = std::array::from_fn(|i| t.x.wrapping_add(i.min(t.m - 1) * t.x_rs));
    let zero = s.splat(0.0);
    let mut y = [[zero; NV]; MR];
    let groups = t.krows.div_ceil(t.gw);
    for g in 0..groups {
        let tab = t.tab.wrapping_add(g * (pf + 1) * t.tw);
        // SAFETY: g < groups: row pf of the group's table holds NV·LANES.
        let nsz: [S::V; NV] =
            std::array::from_fn(|v| unsafe { s.load(tab.add(pf * t.tw + v * lanes)) });
        for r in g * t.gw..((g + 1) * t.gw).min(t.krows) {
            let row = t.qw.wrapping_add(r * t.qw_rs);
            // SAFETY: r < krows: NV·LANES u32 of row r are readable.
            let w: [S::I; NV] = std::array::from_fn(|v| unsafe { s.load_u32(row.add(v * lanes)) });
            for j in 0..pf {
                let k = r * pf + j;
                // SAFETY: k < krows·pf: element k of rows min(i, m−1).
                let xv: [S::V; MR] = std::array::from_fn(|i| s.splat(unsafe { *xr[i].add(k) }));
                for v in 0..NV {
                    let bits = if j + 1 < pf {
                        s.and_u32(w[v], masks[j])
                    } else {
                        s.shr_u32(w[v], j as u32 * BITS)
                    };
                    // SAFETY: row j < pf of the group's table holds NV·LANES.
                    let sj = unsafe { s.load(tab.add(j * t.tw + v * lanes)) };
                    let wv = round_w::<S, RND>(s, s.fma(sj, s.u32_to_f32(bits), nsz[v]));
                    for i in 0..MR {
                        y[i][v] = s.fma(xv[i], wv, y[i][v]);
                    }
                }
            }
        }
    }
    for (i, row) in y.iter().enumerate().take(t.m) {
        for (v, &yv) in row.iter().enumerate() {
            // SAFETY: i < m, inside the NV·LANES output columns.
            unsafe { s.store(t.out.add(i * t.out_rs + v * lanes), yv) };
        }
    }
}

/// GPTQ with a per-depth group map (act-order), the weight formed per
/// element and rounded to x's dtype (`RND`, see [`round_w`]): `out[i][j] =
/// Σ_k x[i][k]·round(s[gk[k]][j]·(q[k][j] − z[gk[k]][j]))` (overwritten).
///
/// # Safety
/// As [`gptq_groups`], with `gk` readable for `krows·32/BITS` entries, each
/// a group whose scale and zero rows are readable (instead of `gw`, `sx`).
#[inline(always)]
pub(crate) unsafe fn gptq_gidx<
    S: Simd,
    const BITS: u32,
    const MR: usize,
    const NV: usize,
    const RND: u8,
>(
    s: S,
    t: &GptqRaw,
) {
    let lanes = S::LANES;
    let pf = (32 / BITS) as usize;
    let mask = s.splat_u32((1u32 << BITS) - 1);
    let xr: [*const f32; MR] = std::array::from_fn(|i| t.x.wrapping_add(i.min(t.m - 1) * t.x_rs));
    let zero = s.splat(0.0);
    let mut y = [[zero; NV]; MR];
    for r in 0..t.krows {
        let row = t.qw.wrapping_add(r * t.qw_rs);
        // SAFETY: r < krows: NV·LANES u32 of row r are readable.
        let w: [S::I; NV] = std::array::from_fn(|v| unsafe { s.load_u32(row.add(v * lanes)) });
        for j in 0..pf {
            let k = r * pf + j;
            // SAFETY: k < krows·pf: gk[k] and element k of rows min(i, m−1).
            let (g, xv) = unsafe {
                let xv: [S::V; MR] = std::array::from_fn(|i| s.splat(*xr[i].add(k)));
                (*t.gk.add(k) as usize, xv)
            };
            let tab = t.tab.wrapping_add(2 * g * t.tw);
            for v in 0..NV {
                // SAFETY: gk[k] is a group whose rows hold NV·LANES floats.
                let (sv, zv) = unsafe {
                    (
                        s.load(tab.add(v * lanes)),
                        s.load(tab.add(t.tw + v * lanes)),
                    )
                };
                let q = s.u32_to_f32(s.and_u32(s.shr_u32(w[v], j as u32 * BITS), mask));
                let wv = round_w::<S, RND>(s, s.mul(s.sub(q, zv), sv));
                for i in 0..MR {
                    y[i][v] = s.fma(xv[i], wv, y[i][v]);
                }
            }
        }
    }
    for (i, row) in y.iter().enumerate().take(t.m) {
        for (v, &yv) in row.iter().enumerate() {
            // SAFETY: i < m, inside the NV·LANES output columns.
            unsafe { s.store(t.out.add(i * t.out_rs + v * lanes), yv) };
        }
    }
}

/// Arguments of [`awq_groups`] (see [`AwqStrip`]).
pub(crate) struct AwqRaw {
    pub qw: *const u32,
    pub qw_rs: usize,
    pub k: usize,
    pub gs: usize,
    pub zw: *const u32,
    pub zw_rs: usize,
    pub x: *const f32,
    pub x_rs: usize,
    pub m: usize,
    pub sx: *const f32,
    pub sx_rs: usize,
    pub tab: *const f32,
    pub tw: usize,
    pub out: *mut f32,
    pub out_rs: usize,
}

/// AWQ: `NV` vectors of words (`8·NV·LANES` columns) of every depth, in
/// groups of `gs` depths; adds `s·(Σ_k x·q − z·Σ_k x)` per group into `out`
/// in the permuted order (element `(v·8 + i)·LANES + l` is column
/// `8(v·LANES + l) + ORDER[i]`); `tab` holds the scales in that order.
///
/// # Safety
/// `1 ≤ m ≤ MR`, `k ≥ 1`, `gs ≥ 1`; for `r < k`: `NV·LANES` u32 at
/// `qw + r·qw_rs`; for `g < ceil(k/gs)`: `NV·LANES` u32 at `zw + g·zw_rs`,
/// `8·NV·LANES` floats at `tab + g·tw`, `sx[i·sx_rs + g]` readable; rows
/// `i < m` of x hold k floats; `8·NV·LANES` floats at `out + i·out_rs`
/// readable and writable.
#[inline(always)]
pub(crate) unsafe fn awq_groups<S: Simd, const MR: usize, const NV: usize, const PRE: bool>(
    s: S,
    t: &AwqRaw,
) {
    let lanes = S::LANES;
    let mask = s.splat_u32(0xF);
    // PRE: nibble i < 7 is converted in place, `(w & 0xF << 4i)` =
    // q·16^i exactly, so accumulator i sums x·q·16^i and is scaled by
    // 16^-i (exactly) at the group end; nibble 7 is shifted down. One op
    // less per element; needs Σ|x| small enough not to overflow (the
    // driver checks).
    let masks: [S::I; 8] = std::array::from_fn(|i| s.splat_u32(0xF << (4 * i)));
    let unscale: [S::V; 8] = std::array::from_fn(|i| {
        s.splat(if PRE && i < 7 {
            1.0 / (1u32 << (4 * i)) as f32
        } else {
            1.0
        })
    });
    let xr: [*const f32; MR] = std::array::from_fn(|i| t.x.wrapping_add(i.min(t.m - 1) * t.x_rs));
    let sxr: [*const f32; MR] =
        std::array::from_fn(|i| t.sx.wrapping_add(i.min(t.m - 1) * t.sx_rs));
    let zero = s.splat(0.0);
    let groups = t.k.div_ceil(t.gs);
    for g in 0..groups {
        let mut acc = [[[zero; 8]; NV]; MR];
        for r in g * t.gs..((g + 1) * t.gs).min(t.k) {
            let row = t.qw.wrapping_add(r * t.qw_rs);
            // SAFETY: r < k: NV·LANES words of row r, element r of x rows.
            let (w, xv) = unsafe {
                let w: [S::I; NV] = std::array::from_fn(|v| s.load_u32(row.add(v * lanes)));
                let xv: [S::V; MR] = std::array::from_fn(|i| s.splat(*xr[i].add(r)));
                (w, xv)
            };
            for v in 0..NV {
                for nib in 0..8 {
                    let bits = if !PRE {
                        s.and_u32(s.shr_u32(w[v], 4 * nib as u32), mask)
                    } else if nib < 7 {
                        s.and_u32(w[v], masks[nib])
                    } else {
                        s.shr_u32(w[v], 28)
                    };
                    let q = s.u32_to_f32(bits);
                    for i in 0..MR {
                        acc[i][v][nib] = s.fma(xv[i], q, acc[i][v][nib]);
                    }
                }
            }
        }
        let zrow = t.zw.wrapping_add(g * t.zw_rs);
        let trow = t.tab.wrapping_add(g * t.tw);
        for v in 0..NV {
            // SAFETY: g < groups: NV·LANES zero words of group g.
            let zwv = unsafe { s.load_u32(zrow.add(v * lanes)) };
            for nib in 0..8 {
                let e = (v * 8 + nib) * lanes;
                let zv = s.u32_to_f32(s.and_u32(s.shr_u32(zwv, 4 * nib as u32), mask));
                // SAFETY: e + LANES ≤ 8·NV·LANES floats of the scale row and
                // of output rows i < m; sx[i][g] readable.
                unsafe {
                    let sv = s.load(trow.add(e));
                    for i in 0..t.m.min(MR) {
                        let o = t.out.add(i * t.out_rs + e);
                        let a = if PRE {
                            s.mul(acc[i][v][nib], unscale[nib])
                        } else {
                            acc[i][v][nib]
                        };
                        let corr = s.sub(a, s.mul(zv, s.splat(*sxr[i].add(g))));
                        s.store(o, s.fma(sv, corr, s.load(o)));
                    }
                }
            }
        }
    }
}

/// AWQ with the weight formed per element and rounded to x's dtype (`RND`
/// 1 or 2, see [`round_w`]), for f16 / bf16 x: adds `Σ_k x·round(s·(q −
/// z))` into `out`, in the order and under the contract of [`awq_groups`].
///
/// # Safety
/// As [`awq_groups`].
#[inline(always)]
pub(crate) unsafe fn awq_direct<
    S: Simd,
    const MR: usize,
    const NV: usize,
    const RND: u8,
    const PRE: bool,
>(
    s: S,
    t: &AwqRaw,
) {
    let lanes = S::LANES;
    let mask = s.splat_u32(0xF);
    // PRE: nibble i < 7 is converted in place (q·16^i) against a scale
    // table holding s·16^-i, and `W = fma(s·16^-i, q·16^i, −s·z)`: one
    // rounding of the exact s·(q − z) (s·z is exact for f16 / bf16
    // scales, which the driver requires).
    let masks: [S::I; 8] = std::array::from_fn(|i| s.splat_u32(0xF << (4 * i)));
    let up: [S::V; 8] =
        std::array::from_fn(|i| s.splat(if i < 7 { (1u32 << (4 * i)) as f32 } else { 1.0 }));
    let xr: [*const f32; MR] = std::array::from_fn(|i| t.x.wrapping_add(i.min(t.m - 1) * t.x_rs));
    let zero = s.splat(0.0);
    let groups = t.k.div_ceil(t.gs);
    for g in 0..groups {
        let zrow = t.zw.wrapping_add(g * t.zw_rs);
        let trow = t.tab.wrapping_add(g * t.tw);
        let mut zs = [[zero; 8]; NV];
        for (v, zv) in zs.iter_mut().enumerate() {
            // SAFETY: g < groups: NV·LANES zero words of group g.
            let zwv = unsafe { s.load_u32(zrow.add(v * lanes)) };
            for (nib, z) in zv.iter_mut().enumerate() {
                *z = s.u32_to_f32(s.and_u32(s.shr_u32(zwv, 4 * nib as u32), mask));
                if PRE {
                    // SAFETY: (v·8 + nib)·LANES + LANES ≤ 8·NV·LANES floats
                    // of the scale row of group g.
                    let sv = unsafe { s.load(trow.add((v * 8 + nib) * lanes)) };
                    // −s·z, with s = (s·16^-i)·16^i exactly.
                    *z = s.sub(zero, s.mul(s.mul(sv, up[nib]), *z));
                }
            }
        }
        let mut acc = [[[zero; 8]; NV]; MR];
        for r in g * t.gs..((g + 1) * t.gs).min(t.k) {
            let row = t.qw.wrapping_add(r * t.qw_rs);
            // SAFETY: r < k: NV·LANES words of row r, element r of x rows.
            let (w, xv) = unsafe {
                let w: [S::I; NV] = std::array::from_fn(|v| s.load_u32(row.add(v * lanes)));
                let xv: [S::V; MR] = std::array::from_fn(|i| s.splat(*xr[i].add(r)));
                (w, xv)
            };
            for v in 0..NV {
                for nib in 0..8 {
                    // SAFETY: (v·8 + nib)·LANES + LANES ≤ 8·NV·LANES floats
                    // of the scale row of group g.
                    let sv = unsafe { s.load(trow.add((v * 8 + nib) * lanes)) };
                    let wv = if PRE {
                        let bits = if nib < 7 {
                            s.and_u32(w[v], masks[nib])
                        } else {
                            s.shr_u32(w[v], 28)
                        };
                        s.fma(sv, s.u32_to_f32(bits), zs[v][nib])
                    } else {
                        let q = s.u32_to_f32(s.and_u32(s.shr_u32(w[v], 4 * nib as u32), mask));
                        s.mul(s.sub(q, zs[v][nib]), sv)
                    };
                    let wv = round_w::<S, RND>(s, wv);
                    for i in 0..MR {
                        acc[i][v][nib] = s.fma(xv[i], wv, acc[i][v][nib]);
                    }
                }
            }
        }
        for (i, row) in acc.iter().enumerate().take(t.m.min(MR)) {
            for (v, nibs) in row.iter().enumerate() {
                for (nib, &a) in nibs.iter().enumerate() {
                    // SAFETY: inside the 8·NV·LANES floats of output row i < m.
                    unsafe {
                        let o = t.out.add(i * t.out_rs + (v * 8 + nib) * lanes);
                        s.store(o, s.add(s.load(o), a));
                    }
                }
            }
        }
    }
}

/// Arguments of [`nvfp4_tile`] (see [`Nvfp4Tile`]).
pub(crate) struct Nvfp4Raw {
    pub w: *const u8,
    pub w_rs: usize,
    pub n: usize,
    pub spans: usize,
    pub mult: *const f32,
    pub mult_rs: usize,
    pub x: *const f32,
    pub x_rs: usize,
    pub m: usize,
    pub lut: [f32; 16],
    pub out: *mut f32,
    pub out_rs: usize,
}

/// NVFP4: `out[i·out_rs + j] = Σ_sp Σ_l xlo·wlo + xhi·whi` over `spans`
/// spans of `LANES` bytes of weight rows `j < n`, with
/// `w = table[nibble] × mult[j][block]` (the block multiplier formed
/// first, as the contract says; then rounded to x's dtype, `RND` as in
/// [`round_w`]) and x rows de-interleaved per span
/// (`[x[2l]]`, then `[x[2l+1]]`).
///
/// # Safety
/// `1 ≤ m ≤ MR`, `1 ≤ n ≤ NR`; rows `j < n`: `spans·LANES` bytes at
/// `w + j·w_rs` and `(spans − 1)·LANES/8 + LANES` floats at
/// `mult + j·mult_rs` readable; rows `i < m` of x hold `2·spans·LANES` floats; `out + i·out_rs
/// + j` writable for `i < m`, `j < n`.
#[inline(always)]
pub(crate) unsafe fn nvfp4_tile<S: Simd, const MR: usize, const NR: usize, const RND: u8>(
    s: S,
    t: &Nvfp4Raw,
) {
    let lanes = S::LANES;
    let lut = s.lut16_new(&t.lut);
    let xr: [*const f32; MR] = std::array::from_fn(|i| t.x.wrapping_add(i.min(t.m - 1) * t.x_rs));
    let wr: [*const u8; NR] = std::array::from_fn(|j| t.w.wrapping_add(j.min(t.n - 1) * t.w_rs));
    let mr: [*const f32; NR] =
        std::array::from_fn(|j| t.mult.wrapping_add(j.min(t.n - 1) * t.mult_rs));
    let zero = s.splat(0.0);
    let mut acc = [[zero; NR]; MR];
    for sp in 0..t.spans {
        // SAFETY: sp < spans: 2·LANES floats of the span in rows min(i, m−1).
        let (xlo, xhi) = unsafe {
            let xlo: [S::V; MR] = std::array::from_fn(|i| s.load(xr[i].add(2 * sp * lanes)));
            let xhi: [S::V; MR] =
                std::array::from_fn(|i| s.load(xr[i].add(2 * sp * lanes + lanes)));
            (xlo, xhi)
        };
        for j in 0..NR {
            // SAFETY: sp < spans: LANES bytes of the span in row min(j, n−1),
            // and LANES floats from its multipliers (the table is padded).
            let (b, mv) = unsafe {
                (
                    s.load_u8_u32(wr[j].add(sp * lanes)),
                    s.load_spread8(mr[j].add(sp * lanes / 8)),
                )
            };
            let wlo = round_w::<S, RND>(s, s.mul(s.lut16(lut, b), mv));
            let whi = round_w::<S, RND>(s, s.mul(s.lut16(lut, s.shr_u32(b, 4)), mv));
            for i in 0..MR {
                acc[i][j] = s.fma(xhi[i], whi, s.fma(xlo[i], wlo, acc[i][j]));
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(t.m) {
        for (j, &v) in row.iter().enumerate().take(t.n) {
            // SAFETY: i < m, j < n.
            unsafe { *t.out.add(i * t.out_rs + j) = s.reduce_sum(v) };
        }
    }
}

/// E4M3 bytes decoded exactly (`((b & 0x7F) << 20 | sign) × 2^120` — the
/// subnormals land on f32 subnormals, scaled exactly) and turned into block
/// multipliers: `× g`, or `/ g` when `divide`.
///
/// # Safety
/// `bytes` readable and `out` writable for `n` elements.
#[inline(always)]
pub(crate) unsafe fn e4m3_mults<S: Simd>(
    s: S,
    bytes: *const u8,
    out: *mut f32,
    n: usize,
    g: f32,
    divide: bool,
) {
    let lanes = S::LANES;
    let (mag, sign) = (s.splat_u32(0x7F), s.splat_u32(0x80));
    let (p120, gv) = (s.splat(POW2_120), s.splat(g));
    let mut i = 0;
    while i + lanes <= n {
        // SAFETY: i + LANES ≤ n.
        unsafe {
            let b = s.load_u8_u32(bytes.add(i));
            let bits = s.or_u32(
                s.shl_u32(s.and_u32(b, mag), 20),
                s.shl_u32(s.and_u32(b, sign), 24),
            );
            let scale = s.mul(s.bits_to_f32(bits), p120);
            let m = if divide {
                s.div(scale, gv)
            } else {
                s.mul(scale, gv)
            };
            s.store(out.add(i), m);
        }
        i += lanes;
    }
    while i < n {
        // SAFETY: i < n.
        unsafe { *out.add(i) = e4m3_mult_scalar(*bytes.add(i), g, divide) };
        i += 1;
    }
}

const POW2_120: f32 = 1.329_228e36;

/// The scalar form of [`e4m3_mults`] for one byte.
pub(crate) fn e4m3_mult_scalar(byte: u8, g: f32, divide: bool) -> f32 {
    let b = u32::from(byte);
    let scale = f32::from_bits(((b & 0x7F) << 20) | ((b & 0x80) << 24)) * POW2_120;
    if divide { scale / g } else { scale * g }
}

/// `out[c] = field c of the words at p` for `c < n` (see
/// [`Simd::load_fields`]).
///
/// # Safety
/// `p` readable for `ceil(n·bits/32)` u32 and `out` writable for `n` floats;
/// `bits` is 4 or 8.
#[inline(always)]
pub(crate) unsafe fn unpack_fields<S: Simd>(
    s: S,
    p: *const u32,
    bits: u32,
    out: *mut f32,
    n: usize,
) {
    let lanes = S::LANES;
    let per = (32 / bits) as usize;
    let mut c = 0;
    while c + lanes <= n {
        // SAFETY: fields c .. c + LANES lie in words < ceil(n·bits/32);
        // c is a multiple of LANES, hence of per (LANES ≥ 8 ≥ per).
        unsafe { s.store(out.add(c), s.load_fields(p.add(c / per), bits)) };
        c += lanes;
    }
    while c < n {
        // SAFETY: c < n.
        unsafe {
            let word = *p.add(c / per);
            *out.add(c) = ((word >> (bits * (c % per) as u32)) & ((1u32 << bits) - 1)) as f32;
        }
        c += 1;
    }
}

/// Whether x can be prescaled for the GPTQ fast path without losing
/// precision: every nonzero |x| ≥ 2^-100 (so x·2^-24 stays normal).
pub(crate) fn prescale_ok(x: &[f32]) -> bool {
    let tiny = 2f32.powi(-100);
    x.iter().all(|&v| v == 0.0 || v.abs() >= tiny || v.is_nan())
}

/// x prescaled for [`gptq_groups`] with `PRE`: `x[k]·2^(−bits·(k % pf))`
/// except the top field of each word (`k % pf = pf − 1`), which is exact.
pub(crate) fn prescale_gptq_x(x: &[f32], bits: u32) -> Vec<f32> {
    let pf = (32 / bits) as usize;
    let scale: Vec<f32> = (0..pf)
        .map(|j| {
            if j + 1 < pf {
                2f32.powi(-((bits as usize * j) as i32))
            } else {
                1.0
            }
        })
        .collect();
    x.iter()
        .enumerate()
        .map(|(k, &v)| v * scale[k % pf])
        .collect()
}

/// The group of each input depth, every entry `< groups` (clamped when
/// built, so the kernels can index with it unchecked).
pub(crate) struct GroupMap {
    idx: Vec<u32>,
    groups: usize,
}

impl GroupMap {
    /// Clamps each entry of `g_idx` to `[0, groups)` (`groups ≥ 1`).
    pub(crate) fn clamped(g_idx: &[i32], groups: usize) -> GroupMap {
        let groups = groups.max(1);
        let top = (groups - 1) as i64;
        GroupMap {
            idx: g_idx
                .iter()
                .map(|&g| i64::from(g).clamp(0, top) as u32)
                .collect(),
            groups,
        }
    }

    pub(crate) fn get(&self, k: usize) -> usize {
        self.idx[k] as usize
    }
}

/// How a GPTQ strip finds the group of a depth.
pub(crate) enum Groups<'a> {
    /// Sequential groups of `gw` word rows; `sx[i·sx_rs + g]` is the sum
    /// of row i of x over group g.
    Uniform {
        gw: usize,
        sx: &'a [f32],
        sx_rs: usize,
    },
    /// A per-depth map (act-order, or groups that split a word).
    PerDepth(&'a GroupMap),
    /// Sequential groups of `gw` word rows with W rounded to x's dtype
    /// ([`gptq_rounded`]: the table holds `pf + 1` rows per group).
    UniformRounded { gw: usize },
}

/// One GPTQ call: `nvec` vectors of columns, every depth, `m ≤ gptq_mr()`
/// rows of x. `out` (row stride `out_rs`) is overwritten.
pub(crate) struct GptqStrip<'a> {
    pub bits: u32,
    /// x is prescaled ([`prescale_gptq_x`]; sequential groups only).
    pub prescaled: bool,
    /// W rounded to x's dtype: 0 (f32, exact), 1 (f16), 2 (bf16); only
    /// with a per-depth map.
    pub round: u8,
    /// qweight from word row 0 of the strip's first column, row stride
    /// `qw_rs` words, `krows` word rows.
    pub qw: &'a [u32],
    pub qw_rs: usize,
    pub krows: usize,
    pub groups: Groups<'a>,
    /// f32 rows of x (all K), stride `x_rs`.
    pub x: &'a [f32],
    pub x_rs: usize,
    pub m: usize,
    /// Per group g: scales at `2g·tw`, zeros at `2g·tw + tw`, from the
    /// strip's first column; `ngroups` groups.
    pub tab: &'a [f32],
    pub tw: usize,
    pub ngroups: usize,
    pub out: &'a mut [f32],
    pub out_rs: usize,
    pub nvec: usize,
}

/// Arguments of the 4-bit GPTQ lookup-table GEMV (one row of x, sequential
/// groups of whole 128-depth chunks): for `cb < ncb`, `c < 16`, column
/// `n = 16·cb + c` of the strip: `out[n] = Σ_k x[k]·round(s[g][n]·(q[k][n]
/// − z[g][n]))` with `g = (k / 128) / cpg`, summed per column in one f32
/// vector accumulator over the chunks, lane w of chunk ch taking depths
/// `128·ch + 8w + j` (j = 0..8 in order), then reduced once.
///
/// # Safety
/// `krows ≥ 16` and a multiple of 16, `1 ≤ ncb ≤ 8`, `cpg ≥ 1`, `tw ≥
/// 16·ncb`; for `r < krows`: `16·ncb` u32 at `qw + r·qw_rs` readable;
/// `krows·8` floats at `xp` readable, laid out as `xp[128·ch + 16j + w] =
/// x[128·ch + 8w + j]`; for `g < ceil(krows/16 / cpg)`: `16·ncb` floats at
/// `tab + 2g·tw` (scales) and `tab + 2g·tw + tw` (zeros) readable; `16·ncb`
/// floats at `out` writable.
pub(crate) struct GptqLutRaw {
    pub qw: *const u32,
    pub qw_rs: usize,
    pub krows: usize,
    pub xp: *const f32,
    pub tab: *const f32,
    pub tw: usize,
    pub cpg: usize,
    pub out: *mut f32,
    pub ncb: usize,
}

/// `x` (one row, `k` a multiple of 128) permuted for [`GptqLutRaw`]:
/// `xp[128·ch + 16j + w] = x[128·ch + 8w + j]`.
pub(crate) fn permute_gptq_lut_x(x: &[f32]) -> Vec<f32> {
    let mut xp = vec![0.0f32; x.len()];
    for (src, dst) in x.chunks_exact(128).zip(xp.chunks_exact_mut(128)) {
        for j in 0..8 {
            for w in 0..16 {
                dst[16 * j + w] = src[8 * w + j];
            }
        }
    }
    xp
}

/// One AWQ call: `nvec` vectors of words (`8·nvec·LANES` columns).
pub(crate) struct AwqStrip<'a> {
    /// W rounded to x's dtype: 0 (f32, exact: the factored form), 1
    /// (f16) or 2 (bf16) (per element).
    pub round: u8,
    /// Convert nibbles in place (as `q·16^i`). f32 x ([`awq_groups`]): the
    /// accumulators are scaled back, only when `Σ_k |x[i][k]| < 2^96` for
    /// every row. f16 / bf16 x ([`awq_direct`]): `tab` must hold
    /// `s·16^-i` for nibble i < 7, and the scales must be f16 / bf16 with
    /// nonzero magnitudes ≥ 2^-100.
    pub scaled: bool,
    pub qw: &'a [u32],
    pub qw_rs: usize,
    pub k: usize,
    pub gs: usize,
    pub zw: &'a [u32],
    pub zw_rs: usize,
    pub x: &'a [f32],
    pub x_rs: usize,
    pub m: usize,
    pub sx: &'a [f32],
    pub sx_rs: usize,
    /// Scales per group in the permuted order, row stride `tw`.
    pub tab: &'a [f32],
    pub tw: usize,
    /// Permuted output rows (accumulated into), stride `out_rs`.
    pub out: &'a mut [f32],
    pub out_rs: usize,
    pub nvec: usize,
}

/// One NVFP4 tile: `n ≤ nvfp4_nr()` weight rows, `m ≤ nvfp4_mr()` x rows,
/// `spans` spans of `LANES` bytes.
pub(crate) struct Nvfp4Tile<'a> {
    /// W rounded to x's dtype: 0 (f32, exact), 1 (f16), 2 (bf16).
    pub round: u8,
    pub w: &'a [u8],
    pub w_rs: usize,
    pub n: usize,
    pub spans: usize,
    pub mult: &'a [f32],
    pub mult_rs: usize,
    pub x: &'a [f32],
    pub x_rs: usize,
    pub m: usize,
    pub lut: [f32; 16],
    pub out: &'a mut [f32],
    pub out_rs: usize,
}

type GptqFns = [unsafe fn(&GptqRaw); 3];
type AwqFns = [unsafe fn(&AwqRaw); 3];

/// Bodies of the rows × vectors shapes `[1 × NV1, MR × NV, MR × 1]`, plain
/// and prescaled.
pub(crate) struct GptqUniform {
    pub(super) plain: GptqFns,
    pub(super) pre: GptqFns,
    /// W rounded to f16, bf16 ([`gptq_rounded`]).
    pub(super) rounded: [GptqFns; 2],
}

/// The quantized-matmul table of one level.
pub(crate) struct QuantKernels {
    pub lanes: usize,
    pub(super) gptq_mr: usize,
    /// `[1 × NV1, MR × NV, MR × 1]` bodies and their vector counts.
    pub(super) gptq_nv: [usize; 3],
    pub(super) gptq4: GptqUniform,
    pub(super) gptq8: GptqUniform,
    /// Per-depth bodies by rounding (f32, f16, bf16 x).
    pub(super) gptq4_gidx: [GptqFns; 3],
    pub(super) gptq8_gidx: [GptqFns; 3],
    pub(super) awq_mr: usize,
    pub(super) awq_nv: [usize; 3],
    /// Plain, then with scaled accumulators (`AwqStrip::scaled`).
    pub(super) awq: [AwqFns; 2],
    /// Per-element weights rounded to f16, bf16 (f16 / bf16 x), plain then
    /// in-place nibbles (`AwqStrip::scaled`).
    pub(super) awq_direct: [[AwqFns; 2]; 2],
    pub(super) nvfp4_mr: usize,
    /// `[1 × NR1, MR × NR]`.
    pub(super) nvfp4_nr: [usize; 2],
    /// By rounding (f32, f16, bf16 x), then `[1 × NR1, MR × NR]`.
    pub(super) nvfp4: [[unsafe fn(&Nvfp4Raw); 2]; 3],
    pub(super) e4m3_mults: unsafe fn(*const u8, *mut f32, usize, f32, bool),
    pub(super) unpack_fields: unsafe fn(*const u32, u32, *mut f32, usize),
    /// 4-bit GEMV by per-(column, group) lookup tables, by rounding (f16,
    /// bf16 x); AVX-512 only ([`GptqLutRaw`]).
    pub(super) gptq4_lut: Option<[unsafe fn(&GptqLutRaw); 2]>,
}

/// The table for the level [`kernels`] runs at.
pub(crate) fn quant_kernels() -> &'static QuantKernels {
    static TABLE: OnceLock<QuantKernels> = OnceLock::new();
    TABLE.get_or_init(|| {
        QuantKernels::for_level(kernels().level).unwrap_or_else(super::portable::quant_table)
    })
}

/// Splits `nvec` vectors into calls of the widest body first: yields
/// `(body, first vector, vectors)`.
fn chunks(nvec: usize, wide: usize, narrow: usize, pick: [usize; 2]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut v = 0;
    while v + wide <= nvec {
        out.push((pick[0], v, wide));
        v += wide;
    }
    while v < nvec {
        out.push((pick[1], v, narrow));
        v += narrow;
    }
    out
}

impl QuantKernels {
    /// The table of `level`, or `None` if this CPU lacks its features.
    pub(crate) fn for_level(level: Level) -> Option<QuantKernels> {
        match level {
            Level::Portable => Some(super::portable::quant_table()),
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => super::x86::avx2_detected().then(super::x86::avx2_quant_table),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => super::x86::avx512_detected().then(|| {
                let mut t = super::x86::avx512_quant_table();
                t.gptq4_lut = Some([
                    super::x86::gptq4_lut_avx512::<1>,
                    super::x86::gptq4_lut_avx512::<2>,
                ]);
                t
            }),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// Most rows of x per GPTQ / AWQ / NVFP4 call.
    pub(crate) fn gptq_mr(&self) -> usize {
        self.gptq_mr
    }
    pub(crate) fn awq_mr(&self) -> usize {
        self.awq_mr
    }
    pub(crate) fn nvfp4_mr(&self) -> usize {
        self.nvfp4_mr
    }
    /// Most weight rows per NVFP4 call for `m` rows of x.
    pub(crate) fn nvfp4_nr(&self, m: usize) -> usize {
        if m == 1 {
            self.nvfp4_nr[0]
        } else {
            self.nvfp4_nr[1]
        }
    }

    /// This table without the lookup-table GEMV (tests compare the paths).
    #[cfg(test)]
    pub(crate) fn without_gptq4_lut(mut self) -> QuantKernels {
        self.gptq4_lut = None;
        self
    }

    /// Whether [`Self::gptq4_lut`] runs at this level.
    pub(crate) fn has_gptq4_lut(&self) -> bool {
        self.gptq4_lut.is_some()
    }

    /// The 4-bit lookup-table GEMV over `ncb` blocks of 16 columns (see
    /// [`GptqLutRaw`]; `xp` from [`permute_gptq_lut_x`], `tab` as
    /// [`GptqStrip::tab`], `round` 1 (f16 x) or 2 (bf16 x)). Returns false
    /// (writing nothing) where this level has no such body.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gptq4_lut(
        &self,
        round: u8,
        qw: &[u32],
        qw_rs: usize,
        krows: usize,
        xp: &[f32],
        tab: &[f32],
        tw: usize,
        cpg: usize,
        out: &mut [f32],
        ncb: usize,
    ) -> bool {
        let Some(fns) = &self.gptq4_lut else {
            return false;
        };
        if ncb == 0 {
            return true;
        }
        assert!(ncb <= 8, "gptq4_lut: at most 8 column blocks per call");
        let cols = 16 * ncb;
        assert!((1..=2).contains(&round) && krows >= 16 && krows.is_multiple_of(16) && cpg >= 1);
        assert!(tw >= cols && out.len() >= cols && xp.len() >= krows * 8);
        assert!((krows - 1) * qw_rs + cols <= qw.len());
        let groups = (krows / 16).div_ceil(cpg);
        assert!(2 * (groups - 1) * tw + tw + cols <= tab.len());
        let raw = GptqLutRaw {
            qw: qw.as_ptr(),
            qw_rs,
            krows,
            xp: xp.as_ptr(),
            tab: tab.as_ptr(),
            tw,
            cpg,
            out: out.as_mut_ptr(),
            ncb,
        };
        // SAFETY: the table exists only after detection of its features;
        // the asserts above are the body's `# Safety` bounds.
        unsafe { fns[round as usize - 1](&raw) };
        true
    }

    /// GPTQ over a strip (see [`GptqStrip`]).
    pub(crate) fn gptq(&self, t: GptqStrip<'_>) {
        let lanes = self.lanes;
        if t.nvec == 0 {
            return;
        }
        let pf = match t.bits {
            4 => 8,
            8 => 4,
            _ => panic!("gptq: bits must be 4 or 8"),
        };
        let cols = t.nvec * lanes;
        assert!((1..=self.gptq_mr).contains(&t.m) && t.krows >= 1 && t.ngroups >= 1);
        assert!((t.krows - 1) * t.qw_rs + cols <= t.qw.len());
        assert!((t.m - 1) * t.x_rs + t.krows * pf <= t.x.len());
        assert!(t.tw >= cols && (t.ngroups - 1) * 2 * t.tw + t.tw + cols <= t.tab.len());
        assert!(t.m == 1 || t.out_rs >= cols);
        assert!((t.m - 1) * t.out_rs + cols <= t.out.len());
        let (fns, gw, gk, sx, sx_rs) = match &t.groups {
            Groups::Uniform { gw, sx, sx_rs } => {
                // The factored form never forms W, so it cannot round it.
                assert!(t.round == 0, "gptq: sequential groups need f32 x");
                let groups = t.krows.div_ceil((*gw).max(1));
                assert!(*gw >= 1 && groups <= t.ngroups);
                assert!((t.m - 1) * sx_rs + groups <= sx.len());
                let fns = if t.bits == 4 {
                    &self.gptq4
                } else {
                    &self.gptq8
                };
                let fns = if t.prescaled { &fns.pre } else { &fns.plain };
                (fns, *gw, std::ptr::null(), sx.as_ptr(), *sx_rs)
            }
            Groups::UniformRounded { gw } => {
                let groups = t.krows.div_ceil((*gw).max(1));
                assert!(*gw >= 1 && groups <= t.ngroups && (1..=2).contains(&t.round));
                let rows = (pf + 1) * t.tw;
                assert!((t.ngroups - 1) * rows + pf * t.tw + cols <= t.tab.len());
                let fns = if t.bits == 4 {
                    &self.gptq4
                } else {
                    &self.gptq8
                };
                let fns = &fns.rounded[usize::from(t.round) - 1];
                (fns, *gw, std::ptr::null(), std::ptr::null(), 0)
            }
            Groups::PerDepth(map) => {
                assert!(map.idx.len() >= t.krows * pf && map.groups <= t.ngroups);
                let fns = if t.bits == 4 {
                    &self.gptq4_gidx
                } else {
                    &self.gptq8_gidx
                };
                let fns = &fns[usize::from(t.round.min(2))];
                (fns, 1, map.idx.as_ptr(), std::ptr::null(), 0)
            }
        };
        let pick = if t.m == 1 { [0, 2] } else { [1, 2] };
        let wide = self.gptq_nv[pick[0]];
        for (body, v0, _) in chunks(t.nvec, wide, self.gptq_nv[2], pick) {
            let c0 = v0 * lanes;
            let raw = GptqRaw {
                qw: t.qw[c0..].as_ptr(),
                qw_rs: t.qw_rs,
                krows: t.krows,
                gw,
                gk,
                x: t.x.as_ptr(),
                x_rs: t.x_rs,
                m: t.m,
                tab: t.tab[c0..].as_ptr(),
                tw: t.tw,
                sx,
                sx_rs,
                out: t.out[c0..].as_mut_ptr(),
                out_rs: t.out_rs,
            };
            // SAFETY: features detected (table invariant); the asserts
            // bound every row of qw (krows rows of `cols` words from column
            // 0, so of the chunk's columns too), of x (krows·pf floats), of
            // the tables (ngroups groups, every group index used is below:
            // ceil(krows/gw) or a clamped GroupMap entry), of sx and of
            // out (m rows of `cols` floats, disjoint since out_rs >= cols).
            unsafe { fns[body](&raw) }
        }
    }

    /// AWQ over a strip (see [`AwqStrip`]); adds into `out`.
    pub(crate) fn awq(&self, t: AwqStrip<'_>) {
        let lanes = self.lanes;
        if t.nvec == 0 {
            return;
        }
        let words = t.nvec * lanes;
        let cols = 8 * words;
        assert!((1..=self.awq_mr).contains(&t.m) && t.k >= 1 && t.gs >= 1);
        let groups = t.k.div_ceil(t.gs);
        assert!((t.k - 1) * t.qw_rs + words <= t.qw.len());
        assert!((groups - 1) * t.zw_rs + words <= t.zw.len());
        assert!(t.tw >= cols && (groups - 1) * t.tw + cols <= t.tab.len());
        assert!((t.m - 1) * t.sx_rs + groups <= t.sx.len());
        assert!((t.m - 1) * t.x_rs + t.k <= t.x.len());
        assert!(t.m == 1 || t.out_rs >= cols);
        assert!((t.m - 1) * t.out_rs + cols <= t.out.len());
        let pick = if t.m == 1 { [0, 2] } else { [1, 2] };
        let wide = self.awq_nv[pick[0]];
        for (body, v0, _) in chunks(t.nvec, wide, self.awq_nv[2], pick) {
            let w0 = v0 * lanes;
            let raw = AwqRaw {
                qw: t.qw[w0..].as_ptr(),
                qw_rs: t.qw_rs,
                k: t.k,
                gs: t.gs,
                zw: t.zw[w0..].as_ptr(),
                zw_rs: t.zw_rs,
                x: t.x.as_ptr(),
                x_rs: t.x_rs,
                m: t.m,
                sx: t.sx.as_ptr(),
                sx_rs: t.sx_rs,
                tab: t.tab[8 * w0..].as_ptr(),
                tw: t.tw,
                out: t.out[8 * w0..].as_mut_ptr(),
                out_rs: t.out_rs,
            };
            // SAFETY: features detected; the asserts bound k rows of
            // `words` words of qw, `groups` rows of zero words and of the
            // scale table (8 floats per word), m rows of x, sx and out
            // (disjoint since out_rs >= cols).
            unsafe {
                match t.round {
                    0 => (self.awq[usize::from(t.scaled)][body])(&raw),
                    r => {
                        let fns = &self.awq_direct[usize::from(t.scaled)];
                        (fns[usize::from(r.min(2)) - 1][body])(&raw)
                    }
                }
            }
        }
    }

    /// One NVFP4 tile (see [`Nvfp4Tile`]); overwrites `out`.
    pub(crate) fn nvfp4(&self, t: Nvfp4Tile<'_>) {
        let lanes = self.lanes;
        let body = usize::from(t.m > 1);
        assert!((1..=self.nvfp4_mr).contains(&t.m) && (1..=self.nvfp4_nr[body]).contains(&t.n));
        assert!(t.m == 1 || t.out_rs >= t.n);
        assert!((t.m - 1) * t.out_rs + t.n <= t.out.len());
        if t.spans > 0 {
            assert!((t.n - 1) * t.w_rs + t.spans * lanes <= t.w.len());
            assert!((t.n - 1) * t.mult_rs + (t.spans - 1) * lanes / 8 + lanes <= t.mult.len());
            assert!((t.m - 1) * t.x_rs + 2 * t.spans * lanes <= t.x.len());
        }
        let raw = Nvfp4Raw {
            w: t.w.as_ptr(),
            w_rs: t.w_rs,
            n: t.n,
            spans: t.spans,
            mult: t.mult.as_ptr(),
            mult_rs: t.mult_rs,
            x: t.x.as_ptr(),
            x_rs: t.x_rs,
            m: t.m,
            lut: t.lut,
            out: t.out.as_mut_ptr(),
            out_rs: t.out_rs,
        };
        // SAFETY: features detected; the asserts bound the n weight rows
        // (spans·LANES bytes; LANES multipliers read from each span's
        // first, the last span included), the m x rows
        // (2·spans·LANES floats) and the m × n outputs.
        unsafe { (self.nvfp4[usize::from(t.round.min(2))][body])(&raw) }
    }

    /// `out[c] = f32(field c)` of `bits`-bit fields packed lowest first in
    /// `words` (4 or 8 bits).
    pub(crate) fn unpack_fields(&self, words: &[u32], bits: u32, out: &mut [f32]) {
        assert!(bits == 4 || bits == 8);
        assert!(words.len() * (32 / bits as usize) >= out.len());
        // SAFETY: features detected; out.len() fields lie in words (checked)
        // and out.len() floats are written.
        unsafe { (self.unpack_fields)(words.as_ptr(), bits, out.as_mut_ptr(), out.len()) }
    }

    /// `out[i] = e4m3(bytes[i]) × g` (or `/ g` when `divide`).
    pub(crate) fn e4m3_mults(&self, bytes: &[u8], out: &mut [f32], g: f32, divide: bool) {
        assert!(out.len() >= bytes.len());
        // SAFETY: features detected; bytes.len() elements of both.
        unsafe { (self.e4m3_mults)(bytes.as_ptr(), out.as_mut_ptr(), bytes.len(), g, divide) }
    }
}

/// The three row-tile variants of a GPTQ body `f::<BITS, MR, NV, MODE>`:
/// one row (`NV1` vectors wide), `MR` rows (`NV` wide), `MR` rows one
/// vector wide (the strip's tail).
macro_rules! by_rows {
    ($f:ident, $bits:tt, $mode:tt; $mr:expr, $nv:expr, $nv1:expr) => {
        [
            $f::<$bits, 1, $nv1, $mode>,
            $f::<$bits, $mr, $nv, $mode>,
            $f::<$bits, $mr, 1, $mode>,
        ]
    };
}

/// Builds a [`QuantKernels`] table for one instruction set (as
/// `isa_table!` does for [`super::Kernels`]).
macro_rules! quant_table {
    (
        token: $S:ty,
        level: $level:expr,
        gptq: ($gmr:literal, $gnv:literal, $gnv1:literal),
        awq: ($amr:literal, $anv:literal, $anv1:literal),
        nvfp4: ($nmr:literal, $nnr:literal, $nnr1:literal),
        $(#[$attr:meta])*
    ) => {
        use crate::cpu::simd::Simd;
        use crate::cpu::simd::quant::{self as q, AwqRaw, GptqRaw, Nvfp4Raw, QuantKernels};

        // Each entry: the token's features are present (the table is only
        // built after detection) and the arguments satisfy the body's
        // `# Safety` (checked by the safe wrappers of `QuantKernels`).

        $(#[$attr])*
        unsafe fn gptq_groups<const B: u32, const MR: usize, const NV: usize, const PRE: bool>(
            t: &GptqRaw,
        ) {
            // SAFETY: see the contract above.
            unsafe { q::gptq_groups::<$S, B, MR, NV, PRE>(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn unpack_fields(p: *const u32, bits: u32, out: *mut f32, n: usize) {
            // SAFETY: see the contract above.
            unsafe { q::unpack_fields(<$S>::new_unchecked(), p, bits, out, n) }
        }
        $(#[$attr])*
        unsafe fn gptq_gidx<const B: u32, const MR: usize, const NV: usize, const R: u8>(
            t: &GptqRaw,
        ) {
            // SAFETY: see the contract above.
            unsafe { q::gptq_gidx::<$S, B, MR, NV, R>(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn gptq_rounded<const B: u32, const MR: usize, const NV: usize, const R: u8>(
            t: &GptqRaw,
        ) {
            // SAFETY: see the contract above.
            unsafe { q::gptq_rounded::<$S, B, MR, NV, R>(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn awq_direct<const MR: usize, const NV: usize, const R: u8, const P: bool>(
            t: &AwqRaw,
        ) {
            // SAFETY: see the contract above.
            unsafe { q::awq_direct::<$S, MR, NV, R, P>(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn awq_groups<const MR: usize, const NV: usize, const PRE: bool>(t: &AwqRaw) {
            // SAFETY: see the contract above.
            unsafe { q::awq_groups::<$S, MR, NV, PRE>(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn nvfp4_tile<const MR: usize, const NR: usize, const R: u8>(t: &Nvfp4Raw) {
            // SAFETY: see the contract above.
            unsafe { q::nvfp4_tile::<$S, MR, NR, R>(<$S>::new_unchecked(), t) }
        }
        $(#[$attr])*
        unsafe fn e4m3_mults(b: *const u8, out: *mut f32, n: usize, g: f32, divide: bool) {
            // SAFETY: see the contract above.
            unsafe { q::e4m3_mults(<$S>::new_unchecked(), b, out, n, g, divide) }
        }

        /// This instruction set's table. Call only after detection.
        pub(crate) fn quant_table() -> QuantKernels {
            QuantKernels {
                lanes: <$S as Simd>::LANES,
                gptq_mr: $gmr,
                gptq_nv: [$gnv1, $gnv, 1],
                gptq4: q::GptqUniform {
                    plain: $crate::cpu::simd::quant::by_rows!(gptq_groups, 4, false; $gmr, $gnv, $gnv1),
                    pre: $crate::cpu::simd::quant::by_rows!(gptq_groups, 4, true; $gmr, $gnv, $gnv1),
                    rounded: [
                        $crate::cpu::simd::quant::by_rows!(gptq_rounded, 4, 1; $gmr, $gnv, $gnv1),
                        $crate::cpu::simd::quant::by_rows!(gptq_rounded, 4, 2; $gmr, $gnv, $gnv1),
                    ],
                },
                gptq8: q::GptqUniform {
                    plain: $crate::cpu::simd::quant::by_rows!(gptq_groups, 8, false; $gmr, $gnv, $gnv1),
                    pre: $crate::cpu::simd::quant::by_rows!(gptq_groups, 8, true; $gmr, $gnv, $gnv1),
                    rounded: [
                        $crate::cpu::simd::quant::by_rows!(gptq_rounded, 8, 1; $gmr, $gnv, $gnv1),
                        $crate::cpu::simd::quant::by_rows!(gptq_rounded, 8, 2; $gmr, $gnv, $gnv1),
                    ],
                },
                gptq4_gidx: [
                    $crate::cpu::simd::quant::by_rows!(gptq_gidx, 4, 0; $gmr, $gnv, $gnv1),
                    $crate::cpu::simd::quant::by_rows!(gptq_gidx, 4, 1; $gmr, $gnv, $gnv1),
                    $crate::cpu::simd::quant::by_rows!(gptq_gidx, 4, 2; $gmr, $gnv, $gnv1),
                ],
                gptq8_gidx: [
                    $crate::cpu::simd::quant::by_rows!(gptq_gidx, 8, 0; $gmr, $gnv, $gnv1),
                    $crate::cpu::simd::quant::by_rows!(gptq_gidx, 8, 1; $gmr, $gnv, $gnv1),
                    $crate::cpu::simd::quant::by_rows!(gptq_gidx, 8, 2; $gmr, $gnv, $gnv1),
                ],
                awq_mr: $amr,
                awq_nv: [$anv1, $anv, 1],
                awq: [
                    [
                        awq_groups::<1, $anv1, false>,
                        awq_groups::<$amr, $anv, false>,
                        awq_groups::<$amr, 1, false>,
                    ],
                    [
                        awq_groups::<1, $anv1, true>,
                        awq_groups::<$amr, $anv, true>,
                        awq_groups::<$amr, 1, true>,
                    ],
                ],
                awq_direct: [
                    [
                        [
                            awq_direct::<1, $anv1, 1, false>,
                            awq_direct::<$amr, $anv, 1, false>,
                            awq_direct::<$amr, 1, 1, false>,
                        ],
                        [
                            awq_direct::<1, $anv1, 2, false>,
                            awq_direct::<$amr, $anv, 2, false>,
                            awq_direct::<$amr, 1, 2, false>,
                        ],
                    ],
                    [
                        [
                            awq_direct::<1, $anv1, 1, true>,
                            awq_direct::<$amr, $anv, 1, true>,
                            awq_direct::<$amr, 1, 1, true>,
                        ],
                        [
                            awq_direct::<1, $anv1, 2, true>,
                            awq_direct::<$amr, $anv, 2, true>,
                            awq_direct::<$amr, 1, 2, true>,
                        ],
                    ],
                ],
                nvfp4_mr: $nmr,
                nvfp4_nr: [$nnr1, $nnr],
                nvfp4: [
                    [nvfp4_tile::<1, $nnr1, 0>, nvfp4_tile::<$nmr, $nnr, 0>],
                    [nvfp4_tile::<1, $nnr1, 1>, nvfp4_tile::<$nmr, $nnr, 1>],
                    [nvfp4_tile::<1, $nnr1, 2>, nvfp4_tile::<$nmr, $nnr, 2>],
                ],
                e4m3_mults,
                unpack_fields,
                gptq4_lut: None,
            }
        }
    };
}
pub(crate) use by_rows;
pub(crate) use quant_table;
