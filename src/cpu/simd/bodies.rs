//! Kernel bodies, written once, generic over the instruction set ([`Simd`])
//! and the element type ([`Elem`]).
//!
//! Every body is `#[inline(always)]` so that it is compiled inside the
//! `#[target_feature]` entry point of its instruction set (`isa_table!`),
//! where the intrinsics behind the `Simd` methods inline. They work on raw
//! pointers; each states in `# Safety` what the safe wrappers in `simd/mod.rs`
//! check before calling it.
//!
//! Summation order is fixed by the arguments alone (never by threads): the
//! GEMM tile sums k in order in registers; reductions use a fixed set of
//! lane accumulators combined in a fixed order.

use super::{Elem, MAX_NR, Simd};

/// Arguments of [`gemm_tile`] (see `GemmTile` in `simd/mod.rs`).
pub(crate) struct GemmTileRaw {
    pub kc: usize,
    pub a: *const f32,
    pub a_rs: usize,
    pub a_cs: usize,
    pub b: *const f32,
    pub b_rs: usize,
    pub c: *mut f32,
    pub c_rs: usize,
    pub m: usize,
    pub n: usize,
    pub accumulate: bool,
}

/// Arguments of [`dot_tile`] (see `DotTile` in `simd/mod.rs`).
pub(crate) struct DotTileRaw<E> {
    pub k: usize,
    pub x: *const f32,
    pub x_rs: usize,
    pub w: *const E,
    pub w_rs: usize,
    pub out: *mut f32,
    pub out_rs: usize,
    pub m: usize,
    pub n: usize,
}

/// Arguments of [`gemv_kn`].
pub(crate) struct GemvKnRaw<E> {
    pub k: usize,
    pub x: *const f32,
    pub b: *const E,
    pub b_rs: usize,
    pub out: *mut f32,
    pub n: usize,
}

/// Arguments of [`scale_mul`].
pub(crate) struct ScaleMulRaw<E> {
    pub x: *const E,
    pub w: *const E,
    pub out: *mut E,
    pub n: usize,
    pub inv: f32,
    pub offset: f32,
    /// Non-temporal stores for f32 outputs.
    pub stream: bool,
}

/// `C[m×n] (+)= A[MR×kc]·B[kc×(NV·LANES)]`, an `MR × NV` register tile.
///
/// # Safety
/// `1 ≤ m ≤ MR`, `1 ≤ n ≤ NV·LANES ≤ MAX_NR`; for `i < m`, `k < kc`:
/// `a + i·a_rs + k·a_cs` readable; for `k < kc`: `NV·LANES` floats at
/// `b + k·b_rs` readable; for `i < m`, `j < n`: `c + i·c_rs + j` readable and
/// writable, and no other reference to those elements is live.
#[inline(always)]
pub(crate) unsafe fn gemm_tile<S: Simd, const MR: usize, const NV: usize>(s: S, t: &GemmTileRaw) {
    let lanes = S::LANES;
    let zero = s.splat(0.0);
    let mut acc = [[zero; NV]; MR];
    // Rows past m re-read row m − 1: no out-of-bounds read, same speed.
    let rows: [*const f32; MR] = std::array::from_fn(|i| t.a.wrapping_add(i.min(t.m - 1) * t.a_rs));
    // Fetch the C tile while the k loop runs (C rows are far apart and
    // usually out of cache when K spans several blocks).
    if t.accumulate {
        for i in 0..t.m {
            let row = t.c.wrapping_add(i * t.c_rs);
            s.prefetch(row);
            s.prefetch(row.wrapping_add(t.n - 1));
        }
    }
    let mut b = t.b;
    let mut ka = 0;
    for _ in 0..t.kc {
        let mut bv = [zero; NV];
        for (j, v) in bv.iter_mut().enumerate() {
            // SAFETY: row k of B holds NV·LANES readable floats.
            *v = unsafe { s.load(b.add(j * lanes)) };
        }
        for i in 0..MR {
            // SAFETY: element (min(i, m−1), k) of A is readable.
            let av = s.splat(unsafe { *rows[i].add(ka) });
            for j in 0..NV {
                acc[i][j] = s.fma(av, bv[j], acc[i][j]);
            }
        }
        b = b.wrapping_add(t.b_rs);
        ka += t.a_cs;
    }
    if t.n == NV * lanes {
        for (i, row) in acc.iter().enumerate().take(t.m) {
            for (j, &v) in row.iter().enumerate() {
                // SAFETY: (i, j·LANES ..) is inside the m × n tile of C.
                unsafe {
                    let p = t.c.add(i * t.c_rs + j * lanes);
                    let v = if t.accumulate { s.add(s.load(p), v) } else { v };
                    s.store(p, v);
                }
            }
        }
    } else {
        let mut buf = [0.0f32; MAX_NR];
        for (i, row) in acc.iter().enumerate().take(t.m) {
            for (j, &v) in row.iter().enumerate() {
                // SAFETY: NV·LANES ≤ MAX_NR floats of buf.
                unsafe { s.store(buf.as_mut_ptr().add(j * lanes), v) };
            }
            for (j, &v) in buf.iter().enumerate().take(t.n) {
                // SAFETY: (i, j) with j < n is inside the tile of C.
                unsafe {
                    let p = t.c.add(i * t.c_rs + j);
                    *p = if t.accumulate { *p + v } else { v };
                }
            }
        }
    }
}

/// `out[i·out_rs + j] = Σ_k x[i·x_rs + k]·w[j·w_rs + k]`, an `MR × NR` tile
/// of dot products with one vector accumulator each, reduced at the end.
///
/// # Safety
/// `1 ≤ m ≤ MR`, `1 ≤ n ≤ NR`; rows `i < m` of x and `j < n` of w hold `k`
/// readable elements; `out + i·out_rs + j` writable for `i < m`, `j < n`.
#[inline(always)]
pub(crate) unsafe fn dot_tile<S: Simd, E: Elem, const MR: usize, const NR: usize>(
    s: S,
    t: &DotTileRaw<E>,
) {
    let lanes = S::LANES;
    let kv = t.k - t.k % lanes;
    let xr: [*const f32; MR] = std::array::from_fn(|i| t.x.wrapping_add(i.min(t.m - 1) * t.x_rs));
    let wr: [*const E; NR] = std::array::from_fn(|j| t.w.wrapping_add(j.min(t.n - 1) * t.w_rs));
    let zero = s.splat(0.0);
    let mut acc = [[zero; NR]; MR];
    let mut kk = 0;
    while kk < kv {
        let mut wv = [zero; NR];
        for (j, v) in wv.iter_mut().enumerate() {
            // SAFETY: kk + LANES ≤ k elements of row min(j, n−1).
            *v = unsafe { E::load(s, wr[j].add(kk)) };
        }
        for i in 0..MR {
            // SAFETY: kk + LANES ≤ k elements of row min(i, m−1).
            let xv = unsafe { s.load(xr[i].add(kk)) };
            for j in 0..NR {
                acc[i][j] = s.fma(xv, wv[j], acc[i][j]);
            }
        }
        kk += lanes;
    }
    for (i, row) in acc.iter().enumerate().take(t.m) {
        for (j, &v) in row.iter().enumerate().take(t.n) {
            let mut sum = s.reduce_sum(v);
            for r in kv..t.k {
                // SAFETY: r < k elements of rows i < m and j < n.
                sum += unsafe { *xr[i].add(r) * (*wr[j].add(r)).to_f32() };
            }
            // SAFETY: (i, j) inside the m × n output tile.
            unsafe { *t.out.add(i * t.out_rs + j) = sum };
        }
    }
}

/// `out[j] = Σ_k x[k]·b[k·b_rs + j]` for `j < n` (one row times a `[K,N]`
/// matrix), `NV` vectors of columns at a time.
///
/// # Safety
/// `x` holds `k` floats; for `r < k`, `n` elements at `b + r·b_rs` are
/// readable; `out` holds `n` writable floats.
#[inline(always)]
pub(crate) unsafe fn gemv_kn<S: Simd, E: Elem, const NV: usize>(s: S, t: &GemvKnRaw<E>) {
    let lanes = S::LANES;
    let zero = s.splat(0.0);
    let mut j = 0;
    while j + NV * lanes <= t.n {
        let mut acc = [zero; NV];
        for r in 0..t.k {
            // SAFETY: r < k; columns j .. j + NV·LANES ≤ n of row r.
            unsafe {
                let xv = s.splat(*t.x.add(r));
                let row = t.b.add(r * t.b_rs + j);
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = s.fma(xv, E::load(s, row.add(v * lanes)), *a);
                }
            }
        }
        for (v, &a) in acc.iter().enumerate() {
            // SAFETY: j + NV·LANES ≤ n.
            unsafe { s.store(t.out.add(j + v * lanes), a) };
        }
        j += NV * lanes;
    }
    while j + lanes <= t.n {
        let mut acc = zero;
        for r in 0..t.k {
            // SAFETY: r < k; columns j .. j + LANES ≤ n of row r.
            unsafe {
                acc = s.fma(
                    s.splat(*t.x.add(r)),
                    E::load(s, t.b.add(r * t.b_rs + j)),
                    acc,
                )
            };
        }
        // SAFETY: j + LANES ≤ n.
        unsafe { s.store(t.out.add(j), acc) };
        j += lanes;
    }
    while j < t.n {
        let mut acc = 0.0f32;
        for r in 0..t.k {
            // SAFETY: r < k, j < n.
            unsafe { acc += *t.x.add(r) * (*t.b.add(r * t.b_rs + j)).to_f32() };
        }
        // SAFETY: j < n.
        unsafe { *t.out.add(j) = acc };
        j += 1;
    }
}

/// `dst[i] = src[i] as f32` for `i < n`.
///
/// # Safety
/// `src` readable and `dst` writable for `n` elements.
#[inline(always)]
pub(crate) unsafe fn widen<S: Simd, E: Elem>(s: S, src: *const E, dst: *mut f32, n: usize) {
    let lanes = S::LANES;
    let mut i = 0;
    while i + lanes <= n {
        // SAFETY: i + LANES ≤ n.
        unsafe { s.store(dst.add(i), E::load(s, src.add(i))) };
        i += lanes;
    }
    while i < n {
        // SAFETY: i < n.
        unsafe { *dst.add(i) = (*src.add(i)).to_f32() };
        i += 1;
    }
}

/// Arguments of [`widen_rows`].
pub(crate) struct WidenRowsRaw<E> {
    pub src: *const E,
    pub src_rs: usize,
    pub dst: *mut f32,
    pub dst_rs: usize,
    pub rows: usize,
    pub cols: usize,
}

/// `dst[r·dst_rs + j] = src[r·src_rs + j] as f32` for `r < rows`,
/// `j < cols`, prefetching the source rows a few ahead (packing reads
/// matrices that are usually in L3 or memory, one short segment per row).
///
/// # Safety
/// Rows `r < rows` of `src` readable and of `dst` writable for `cols`
/// elements.
#[inline(always)]
pub(crate) unsafe fn widen_rows<S: Simd, E: Elem>(s: S, t: &WidenRowsRaw<E>) {
    const AHEAD: usize = 6;
    let line = 64 / size_of::<E>();
    for r in 0..t.rows {
        if r + AHEAD < t.rows {
            let ahead = t.src.wrapping_add((r + AHEAD) * t.src_rs);
            let mut j = 0;
            while j < t.cols {
                s.prefetch(ahead.wrapping_add(j).cast());
                j += line;
            }
            s.prefetch(ahead.wrapping_add(t.cols - 1).cast());
        }
        // SAFETY: row r of src and dst hold cols elements.
        unsafe { widen(s, t.src.add(r * t.src_rs), t.dst.add(r * t.dst_rs), t.cols) };
    }
}

/// Prefetches (into L2) every cache line of rows `r < rows` (`cols` elements at
/// `src + r·rs`). Safe for any address: a prefetch never faults.
#[inline(always)]
pub(crate) fn prefetch_rows<S: Simd, E: Elem>(
    s: S,
    src: *const E,
    rs: usize,
    rows: usize,
    cols: usize,
) {
    let line = 64 / size_of::<E>();
    for r in 0..rows {
        let row = src.wrapping_add(r * rs);
        let mut j = 0;
        while j < cols {
            s.prefetch_l2(row.wrapping_add(j).cast());
            j += line;
        }
        s.prefetch_l2(row.wrapping_add(cols - 1).cast());
    }
}

/// `dst[i] = round(src[i] (+ add[i]))` for `i < n`; `add` may be null.
///
/// # Safety
/// `src` (and `add` unless null) readable and `dst` writable for `n`
/// elements.
#[inline(always)]
pub(crate) unsafe fn narrow<S: Simd, E: Elem>(
    s: S,
    src: *const f32,
    add: *const f32,
    dst: *mut E,
    n: usize,
) {
    let lanes = S::LANES;
    let mut i = 0;
    while i + lanes <= n {
        // SAFETY: i + LANES ≤ n.
        unsafe {
            let mut v = s.load(src.add(i));
            if !add.is_null() {
                v = s.add(v, s.load(add.add(i)));
            }
            E::store(s, dst.add(i), v);
        }
        i += lanes;
    }
    while i < n {
        // SAFETY: i < n.
        unsafe {
            let mut v = *src.add(i);
            if !add.is_null() {
                v += *add.add(i);
            }
            *dst.add(i) = E::from_f32(v);
        }
        i += 1;
    }
}

/// `Σ x[i]²` with four vector accumulators.
///
/// # Safety
/// `x` readable for `n` elements.
#[inline(always)]
pub(crate) unsafe fn sum_squares<S: Simd, E: Elem>(s: S, x: *const E, n: usize) -> f32 {
    let lanes = S::LANES;
    let zero = s.splat(0.0);
    let mut acc = [zero; 4];
    let mut i = 0;
    while i + 4 * lanes <= n {
        for (u, a) in acc.iter_mut().enumerate() {
            // SAFETY: i + 4·LANES ≤ n.
            let v = unsafe { E::load(s, x.add(i + u * lanes)) };
            *a = s.fma(v, v, *a);
        }
        i += 4 * lanes;
    }
    while i + lanes <= n {
        // SAFETY: i + LANES ≤ n.
        let v = unsafe { E::load(s, x.add(i)) };
        acc[0] = s.fma(v, v, acc[0]);
        i += lanes;
    }
    let mut sum = s.reduce_sum(s.add(s.add(acc[0], acc[1]), s.add(acc[2], acc[3])));
    while i < n {
        // SAFETY: i < n.
        let v = unsafe { (*x.add(i)).to_f32() };
        sum += v * v;
        i += 1;
    }
    sum
}

/// `out[i] = round(x[i]·inv·(w[i] + offset))`.
///
/// # Safety
/// `x`, `w` readable and `out` writable for `n` elements.
#[inline(always)]
pub(crate) unsafe fn scale_mul<S: Simd, E: Elem>(s: S, t: &ScaleMulRaw<E>) {
    let lanes = S::LANES;
    let (inv, off) = (s.splat(t.inv), s.splat(t.offset));
    let mut i = 0;
    if t.stream && E::DTYPE == crate::dtype::DType::F32 {
        // E is f32: plain stores up to a 4·LANES-byte boundary, then
        // non-temporal stores, then a fence.
        let out = t.out.cast::<f32>();
        let head = out.align_offset(4 * lanes).min(t.n);
        while i < head {
            // SAFETY: i < n.
            unsafe {
                let x = (*t.x.add(i)).to_f32();
                let w = (*t.w.add(i)).to_f32();
                *out.add(i) = x * t.inv * (w + t.offset);
            }
            i += 1;
        }
        while i + lanes <= t.n {
            // SAFETY: i + LANES ≤ n; out + i is aligned (loop above).
            unsafe {
                let x = E::load(s, t.x.add(i));
                let w = E::load(s, t.w.add(i));
                s.stream(out.add(i), s.mul(s.mul(x, inv), s.add(w, off)));
            }
            i += lanes;
        }
        s.store_fence();
    }
    while i + lanes <= t.n {
        // SAFETY: i + LANES ≤ n.
        unsafe {
            let x = E::load(s, t.x.add(i));
            let w = E::load(s, t.w.add(i));
            E::store(s, t.out.add(i), s.mul(s.mul(x, inv), s.add(w, off)));
        }
        i += lanes;
    }
    while i < t.n {
        // SAFETY: i < n.
        unsafe {
            let x = (*t.x.add(i)).to_f32();
            let w = (*t.w.add(i)).to_f32();
            *t.out.add(i) = E::from_f32(x * t.inv * (w + t.offset));
        }
        i += 1;
    }
}

/// `res[i] = round(x[i] + res[i])`; returns `Σ res[i]²` of the rounded sums.
///
/// # Safety
/// `x` readable and `res` readable and writable for `n` elements.
#[inline(always)]
pub(crate) unsafe fn add_round_sum_squares<S: Simd, E: Elem>(
    s: S,
    x: *const E,
    res: *mut E,
    n: usize,
) -> f32 {
    let lanes = S::LANES;
    let zero = s.splat(0.0);
    let mut acc = [zero; 2];
    let mut i = 0;
    while i + 2 * lanes <= n {
        for (u, a) in acc.iter_mut().enumerate() {
            let o = i + u * lanes;
            // SAFETY: o + LANES ≤ n.
            let r = unsafe {
                let v = s.add(E::load(s, x.add(o)), E::load(s, res.add(o)));
                E::store(s, res.add(o), v);
                E::load(s, res.add(o))
            };
            *a = s.fma(r, r, *a);
        }
        i += 2 * lanes;
    }
    let mut sum = s.reduce_sum(s.add(acc[0], acc[1]));
    while i < n {
        // SAFETY: i < n.
        let r = unsafe {
            let r = E::from_f32((*x.add(i)).to_f32() + (*res.add(i)).to_f32());
            *res.add(i) = r;
            r.to_f32()
        };
        sum += r * r;
        i += 1;
    }
    sum
}

/// The largest of `n` floats (−inf when `n = 0`).
///
/// # Safety
/// `x` readable for `n` floats.
#[inline(always)]
pub(crate) unsafe fn row_max<S: Simd>(s: S, x: *const f32, n: usize) -> f32 {
    let lanes = S::LANES;
    let mut acc = s.splat(f32::NEG_INFINITY);
    let mut i = 0;
    while i + lanes <= n {
        // SAFETY: i + LANES ≤ n.
        acc = s.max(acc, unsafe { s.load(x.add(i)) });
        i += lanes;
    }
    let mut m = s.reduce_max(acc);
    while i < n {
        // SAFETY: i < n.
        m = m.max(unsafe { *x.add(i) });
        i += 1;
    }
    m
}

/// `x[i] ← e^(x[i] − m)`; returns their sum.
///
/// # Safety
/// `x` readable and writable for `n` floats.
#[inline(always)]
pub(crate) unsafe fn exp_sub_sum<S: Simd>(s: S, x: *mut f32, n: usize, m: f32) -> f32 {
    let lanes = S::LANES;
    let mv = s.splat(m);
    let mut acc = s.splat(0.0);
    let mut i = 0;
    while i + lanes <= n {
        // SAFETY: i + LANES ≤ n.
        unsafe {
            let e = s.exp(s.sub(s.load(x.add(i)), mv));
            s.store(x.add(i), e);
            acc = s.add(acc, e);
        }
        i += lanes;
    }
    if i < n {
        // The tail goes through one padded vector so every lane uses the
        // same exp as the body.
        let mut buf = [f32::NEG_INFINITY; MAX_NR];
        // SAFETY: n − i < LANES ≤ MAX_NR elements of x and buf.
        unsafe {
            std::ptr::copy_nonoverlapping(x.add(i), buf.as_mut_ptr(), n - i);
            let e = s.exp(s.sub(s.load(buf.as_ptr()), mv));
            s.store(buf.as_mut_ptr(), e);
            acc = s.add(acc, e);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), x.add(i), n - i);
        }
    }
    s.reduce_sum(acc)
}

/// `x[i] ← a·x[i]`.
///
/// # Safety
/// `x` readable and writable for `n` floats.
#[inline(always)]
pub(crate) unsafe fn scale_row<S: Simd>(s: S, x: *mut f32, n: usize, a: f32) {
    let lanes = S::LANES;
    let av = s.splat(a);
    let mut i = 0;
    while i + lanes <= n {
        // SAFETY: i + LANES ≤ n.
        unsafe { s.store(x.add(i), s.mul(s.load(x.add(i)), av)) };
        i += lanes;
    }
    while i < n {
        // SAFETY: i < n.
        unsafe { *x.add(i) *= a };
        i += 1;
    }
}

/// `x[i] ← scale·x[i]`, then `cap·tanh(x[i]/cap)` when `cap > 0`.
///
/// # Safety
/// `x` readable and writable for `n` floats.
#[inline(always)]
pub(crate) unsafe fn scale_softcap<S: Simd>(s: S, x: *mut f32, n: usize, scale: f32, cap: f32) {
    if cap <= 0.0 {
        // SAFETY: forwarded precondition.
        return unsafe { scale_row(s, x, n, scale) };
    }
    let lanes = S::LANES;
    // Two multiplies, not one by `scale / cap`: that quotient can overflow
    // to inf and turn a zero score into NaN (0·inf). A normal cap (checked
    // by validation) keeps `1 / cap` finite.
    let (scalev, inv_cap, capv) = (s.splat(scale), s.splat(1.0 / cap), s.splat(cap));
    let apply = |v: S::V| s.mul(capv, s.tanh(s.mul(s.mul(v, scalev), inv_cap)));
    let mut i = 0;
    while i + lanes <= n {
        // SAFETY: i + LANES ≤ n.
        unsafe { s.store(x.add(i), apply(s.load(x.add(i)))) };
        i += lanes;
    }
    if i < n {
        let mut buf = [0.0f32; MAX_NR];
        // SAFETY: n − i < LANES ≤ MAX_NR elements of x and buf.
        unsafe {
            std::ptr::copy_nonoverlapping(x.add(i), buf.as_mut_ptr(), n - i);
            s.store(buf.as_mut_ptr(), apply(s.load(buf.as_ptr())));
            std::ptr::copy_nonoverlapping(buf.as_ptr(), x.add(i), n - i);
        }
    }
}
