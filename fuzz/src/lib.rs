//! The differential fuzzer's engine: turns fuzz bytes into a random but
//! valid problem for one op — shapes, dtypes, parameters at the edges of
//! their ranges, NaN / ±inf / huge / tiny values — runs it on every backend
//! under test, and panics when two backends disagree beyond the op's
//! tolerance (NaN for NaN), or when one accepts what another refuses.
//!
//! The backends are `reference` and `cpu`, plus any listed in
//! `RADIANT_FUZZ_BACKENDS` (comma-separated, e.g. `wgpu:0`; the fuzz crate
//! must then be built with `--features wgpu`).
//!
//! Values are 0, ±0, NaN, ±inf or magnitudes in `1e-5 ..= 30`; the norms
//! scale whole rows by up to 1e±20 and 3e38 (their kernels rescale such
//! rows). Larger magnitudes in the products are outside what f32 arithmetic
//! can promise against an f64 oracle: a score of 1e14 has an f32 spacing of
//! 1.6e7, which a softmax turns into wrong weights, and sums of huge terms
//! that cancel lose everything to rounding. Within these ranges any
//! disagreement is a bug.

use std::sync::{Arc, OnceLock};

use radiant::ops::tolerance::{Tolerance, compare, lse_tolerance, tolerance};
use radiant::ops::{self, AttentionParams, BLayout, MatmulParams, RmsNormParams};
use radiant::{Backend, DType, Error, HostTensor, OpKind, Tensor};

/// A reader of fuzz bytes; past the end it reads zeros.
pub struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Input { bytes, at: 0 }
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// An integer in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        let word = u16::from_le_bytes([self.byte(), self.byte()]) as usize;
        lo + word % (hi - lo + 1)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.byte() as usize % items.len()]
    }

    /// A value: mostly ordinary, sometimes an edge.
    pub fn value(&mut self) -> f64 {
        match self.byte() % 16 {
            0 => self.pick(&[0.0, -0.0, 30.0, -30.0, 1e-5, -1e-5, 0.5, -1.0]),
            1 if self.byte() % 4 == 0 => self.pick(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
            _ => (self.byte() as f64 - 127.5) / 32.0,
        }
    }

    pub fn values(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.value()).collect()
    }

    /// Values for attention: as `values` with magnitudes capped at 4. A
    /// score's f32 error grows with |q||k|·D, and a softmax turns score
    /// errors into weight errors; typical activations are of this size.
    pub fn attention_values(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| match self.value() {
                v if v.is_finite() => v.clamp(-4.0, 4.0),
                v => v,
            })
            .collect()
    }

    /// Values with NaN but no infinities (attention's `v`: an infinite
    /// value times an underflowed weight is NaN in one precision and inf
    /// in another, which the contract leaves open).
    pub fn values_no_inf(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| match self.value() {
                v if v.is_infinite() => 4f64.copysign(v),
                v if v.is_finite() => v.clamp(-4.0, 4.0),
                v => v,
            })
            .collect()
    }

    /// Finite ordinary values (for inputs a case needs finite, like weights
    /// to quantize).
    pub fn finite_values(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| (self.byte() as f64 - 127.5) / 32.0)
            .collect()
    }
}

/// The backends under test, opened once.
fn backends() -> &'static [Arc<dyn Backend>] {
    static BACKENDS: OnceLock<Vec<Arc<dyn Backend>>> = OnceLock::new();
    BACKENDS.get_or_init(|| {
        let extra = std::env::var("RADIANT_FUZZ_BACKENDS").unwrap_or_default();
        ["reference", "cpu"]
            .into_iter()
            .map(str::to_string)
            .chain(extra.split(',').map(|s| s.trim().to_string()))
            .filter(|name| !name.is_empty())
            .map(|name| {
                radiant::device(&name)
                    .unwrap_or_else(|e| panic!("fuzz backend {name} is unavailable: {e}"))
            })
            .collect()
    })
}

/// What one backend answered: every output as f64, or the error.
type Answer = Result<Vec<Vec<f64>>, Error>;

fn put(b: &dyn Backend, dtype: DType, shape: &[usize], values: &[f64]) -> Result<Tensor, Error> {
    b.upload_tensor(&HostTensor::from_f64(dtype, shape, values)?)
}

fn put_i32(b: &dyn Backend, shape: &[usize], values: &[i32]) -> Result<Tensor, Error> {
    b.upload_tensor(&HostTensor::from_i32(shape, values)?)
}

fn get(b: &dyn Backend, t: &Tensor) -> Result<Vec<f64>, Error> {
    Ok(b.download_tensor(t)?.to_f64_vec())
}

/// How one output is judged.
#[derive(Clone)]
enum Bound {
    /// The op's tolerance, relative to the output's norm.
    Rel(Tolerance),
    /// Element i within `tol.max_abs · scale[i]`, where `scale[i]` is the
    /// size of the terms that form it (Σ|a||b| for a dot product, max|v| for
    /// a convex combination): rounding error is relative to the terms, not
    /// to a result they cancel to.
    Terms(Tolerance, Vec<f64>),
}

/// Runs `case` on every backend and requires one answer.
fn differential(what: &str, bounds: &[Bound], case: impl Fn(&dyn Backend) -> Answer) {
    let backends = backends();
    let first = case(backends[0].as_ref());
    for other in &backends[1..] {
        let answer = case(other.as_ref());
        match (&first, &answer) {
            (Ok(want), Ok(got)) => {
                for (i, (w, g)) in want.iter().zip(got).enumerate() {
                    if let Err(why) = same_answer(&bounds[i], g, w) {
                        panic!(
                            "{what}: output {i} of {} differs from {}: {why}\nwant {w:?}\ngot  {g:?}",
                            other.name(),
                            backends[0].name()
                        );
                    }
                }
            }
            (Err(Error::Unsupported(_)), _) | (_, Err(Error::Unsupported(_))) => {}
            (Err(a), Err(b)) if std::mem::discriminant(a) == std::mem::discriminant(b) => {}
            _ => panic!(
                "{what}: {} answered {first:?} but {} answered {answer:?}",
                backends[0].name(),
                other.name()
            ),
        }
    }
}

/// NaN for NaN at the same places, the rest within the bound.
fn same_answer(bound: &Bound, got: &[f64], want: &[f64]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} values vs {}", got.len(), want.len()));
    }
    if let Some(i) = (0..got.len()).find(|&i| got[i].is_nan() != want[i].is_nan()) {
        return Err(format!("element {i}: {} vs {}", got[i], want[i]));
    }
    let tol = match bound {
        Bound::Rel(tol) => *tol,
        Bound::Terms(tol, scale) => {
            for i in 0..got.len() {
                let (g, w) = (got[i], want[i]);
                let ok = g.is_nan() || g == w || (g - w).abs() <= tol.max_abs * scale[i];
                if !ok {
                    return Err(format!(
                        "element {i}: {g} vs {w}, more than {:e} x {:e} apart",
                        tol.max_abs, scale[i]
                    ));
                }
            }
            return Ok(());
        }
    };
    let (g, w): (Vec<f64>, Vec<f64>) = got
        .iter()
        .zip(want)
        .filter(|(g, _)| !g.is_nan())
        .map(|(g, w)| (*g, *w))
        .unzip();
    let c = compare(&g, &w, tol);
    if c.passed {
        Ok(())
    } else {
        Err(format!(
            "rel_l2 {:.3e}, max_abs {:.3e}, {} inf mismatches, worst {:?}",
            c.rel_l2, c.max_abs, c.bad_elements, c.worst_index
        ))
    }
}

/// One fuzz iteration: an op chosen by the first byte.
pub fn run(bytes: &[u8]) {
    let mut input = Input::new(bytes);
    let dtype = input.pick(&DType::FLOATS);
    match input.byte() % 5 {
        0 => matmul(&mut input, dtype),
        1 => rms_norm(&mut input, dtype),
        2 => fused_add_rms_norm(&mut input, dtype),
        3 => attention(&mut input, dtype),
        _ => paged_attention(&mut input, dtype),
    }
}

fn matmul(input: &mut Input, dtype: DType) {
    let (batch, m, n, k) = (
        input.range(1, 2),
        input.range(0, 9),
        input.range(0, 9),
        input.range(0, 40),
    );
    let layout = input.pick(&[BLayout::Kn, BLayout::Nk]);
    let broadcast = input.byte() % 2 == 0;
    let a = input.values(batch * m * k);
    let b_shape = match (broadcast, layout) {
        (true, BLayout::Kn) => vec![k, n],
        (true, BLayout::Nk) => vec![n, k],
        (false, BLayout::Kn) => vec![batch, k, n],
        (false, BLayout::Nk) => vec![batch, n, k],
    };
    let bv = input.values(b_shape.iter().product());
    let bias = (input.byte() % 2 == 0).then(|| input.values(n));
    let what = format!("matmul {dtype} a [{batch},{m},{k}] b {b_shape:?} {layout:?}");
    // Σ|a||b| (+|bias|) per output, from the inputs as rounded to dtype.
    let (ar, br) = (rounded(dtype, &a), rounded(dtype, &bv));
    let bias_r = bias.as_ref().map(|v| rounded(dtype, v));
    let mut terms = Vec::with_capacity(batch * m * n);
    for bi in 0..batch {
        let b_base = if broadcast { 0 } else { bi * k * n };
        for i in 0..m {
            for j in 0..n {
                let mut t = bias_r.as_ref().map_or(0.0, |v| v[j].abs());
                for kk in 0..k {
                    let bval = match layout {
                        BLayout::Kn => br[b_base + kk * n + j],
                        BLayout::Nk => br[b_base + j * k + kk],
                    };
                    t += (ar[(bi * m + i) * k + kk] * bval).abs();
                }
                terms.push(t);
            }
        }
    }
    let bound = Bound::Terms(tolerance(OpKind::Matmul, dtype), terms);
    differential(&what, &[bound], |b| {
        let at = put(b, dtype, &[batch, m, k], &a)?;
        let bt = put(b, dtype, &b_shape, &bv)?;
        let bias = bias.as_ref().map(|v| put(b, dtype, &[n], v)).transpose()?;
        let params = MatmulParams { b_layout: layout };
        let out = ops::matmul(b, &at, &bt, bias.as_ref(), params)?;
        Ok(vec![get(b, &out)?])
    });
}

fn norm_params(input: &mut Input) -> RmsNormParams {
    RmsNormParams {
        eps: input.pick(&[1e-6, 0.0, 1e-45, 1e-30, 1.0, 1e39, -1e-6, f64::NAN]),
        weight_offset: input.pick(&[0.0, 1.0, -1.0, 1e39]),
    }
}

/// Norm inputs may be huge or tiny (the kernels rescale such rows).
fn norm_values(input: &mut Input, n: usize) -> Vec<f64> {
    let scale = input.pick(&[1.0, 1.0, 1e20, 1e-25, 3e38, 1e-40]);
    input.values(n).into_iter().map(|v| v * scale).collect()
}

fn rms_norm(input: &mut Input, dtype: DType) {
    let (rows, h) = (input.range(0, 5), input.range(1, 70));
    let x = norm_values(input, rows * h);
    let w = input.values(h);
    let params = norm_params(input);
    let what = format!("rms_norm {dtype} [{rows},{h}] {params:?}");
    differential(
        &what,
        &[Bound::Rel(tolerance(OpKind::RmsNorm, dtype))],
        |b| {
            let xt = put(b, dtype, &[rows, h], &x)?;
            let wt = put(b, dtype, &[h], &w)?;
            let out = ops::rms_norm(b, &xt, &wt, params)?;
            Ok(vec![get(b, &out)?])
        },
    );
}

fn fused_add_rms_norm(input: &mut Input, dtype: DType) {
    let (rows, h) = (input.range(0, 5), input.range(1, 70));
    let x = norm_values(input, rows * h);
    let r = input.values(rows * h);
    let w = input.values(h);
    let params = norm_params(input);
    let what = format!("fused_add_rms_norm {dtype} [{rows},{h}] {params:?}");
    let tol = Bound::Rel(tolerance(OpKind::FusedAddRmsNorm, dtype));
    differential(&what, &[tol.clone(), tol], |b| {
        let xt = put(b, dtype, &[rows, h], &x)?;
        let rt = put(b, dtype, &[rows, h], &r)?;
        let wt = put(b, dtype, &[h], &w)?;
        let out = ops::fused_add_rms_norm(b, &xt, &rt, &wt, params)?;
        Ok(vec![get(b, &out)?, get(b, &rt)?])
    });
}

fn attention_params(input: &mut Input) -> AttentionParams {
    let window = [-1i64, -1, 0, 1, 3, i64::MAX, i64::MAX - 1, -2];
    AttentionParams {
        causal: input.byte() % 2 == 0,
        softmax_scale: input.pick(&[
            None,
            None,
            Some(0.0),
            Some(1e-30),
            Some(1e30),
            Some(-0.5),
            Some(1e39),
            Some(f64::NAN),
        ]),
        window_left: input.pick(&window),
        window_right: input.pick(&window),
        softcap: input.pick(&[0.0, 0.0, 5.0, 1e-30, 1e6, 2147483648.0, 1e-46, 1e39, -1.0]),
    }
}

fn attention(input: &mut Input, dtype: DType) {
    let seqs = input.range(1, 3);
    let (hkv, group, d) = (input.range(1, 2), input.range(1, 3), input.range(1, 20));
    let hq = hkv * group;
    let (mut cu_q, mut cu_k) = (vec![0i32], vec![0i32]);
    for _ in 0..seqs {
        cu_q.push(cu_q.last().unwrap() + input.range(0, 6) as i32);
        cu_k.push(cu_k.last().unwrap() + input.range(0, 9) as i32);
    }
    let (tq, tk) = (
        *cu_q.last().unwrap() as usize,
        *cu_k.last().unwrap() as usize,
    );
    let q = input.attention_values(tq * hq * d);
    let k = input.attention_values(tk * hkv * d);
    let v = input.values_no_inf(tk * hkv * d);
    let params = attention_params(input);
    let what = format!(
        "attention {dtype} q [{tq},{hq},{d}] k [{tk},{hkv},{d}] cu_q {cu_q:?} cu_k {cu_k:?} {params:?}\nq {q:?}\nk {k:?}\nv {v:?}"
    );
    let out_bound = Bound::Terms(
        tolerance(OpKind::Attention, dtype),
        vec![max_abs_finite(dtype, &v); tq * hq * d],
    );
    differential(&what, &[out_bound, Bound::Rel(lse_tolerance())], |b| {
        let qt = put(b, dtype, &[tq, hq, d], &q)?;
        let kt = put(b, dtype, &[tk, hkv, d], &k)?;
        let vt = put(b, dtype, &[tk, hkv, d], &v)?;
        let cq = put_i32(b, &[seqs + 1], &cu_q)?;
        let ck = put_i32(b, &[seqs + 1], &cu_k)?;
        let out = b.alloc_tensor(dtype, &[tq, hq, d])?;
        let lse = b.alloc_tensor(DType::F32, &[hq, tq])?;
        ops::attention_into(b, &qt, &kt, &vt, &cq, &ck, &out, Some(&lse), params)?;
        Ok(vec![get(b, &out)?, get(b, &lse)?])
    });
}

fn paged_attention(input: &mut Input, dtype: DType) {
    let batch = input.range(1, 3);
    let (hkv, group, d) = (input.range(1, 2), input.range(1, 3), input.range(1, 20));
    let hq = hkv * group;
    let block_size = input.pick(&[1usize, 2, 4, 16]);
    let max_blocks = input.range(1, 4);
    let num_blocks = batch * max_blocks;
    // A shuffled assignment of blocks to sequences.
    let mut blocks: Vec<i32> = (0..num_blocks as i32).collect();
    for i in (1..blocks.len()).rev() {
        let j = input.range(0, i);
        blocks.swap(i, j);
    }
    let lens: Vec<i32> = (0..batch)
        .map(|_| input.range(0, max_blocks * block_size) as i32)
        .collect();
    let q = input.attention_values(batch * hq * d);
    let cache = num_blocks * block_size * hkv * d;
    let kc = input.attention_values(cache);
    let vc = input.values_no_inf(cache);
    let params = attention_params(input);
    let what = format!(
        "paged_attention {dtype} q [{batch},{hq},{d}] blocks {num_blocks}x{block_size} lens {lens:?} {params:?}"
    );
    let bound = Bound::Terms(
        tolerance(OpKind::PagedAttention, dtype),
        vec![max_abs_finite(dtype, &vc); batch * hq * d],
    );
    differential(&what, &[bound], |b| {
        let qt = put(b, dtype, &[batch, hq, d], &q)?;
        let shape = [num_blocks, block_size, hkv, d];
        let kt = put(b, dtype, &shape, &kc)?;
        let vt = put(b, dtype, &shape, &vc)?;
        let bt = put_i32(b, &[batch, max_blocks], &blocks)?;
        let lt = put_i32(b, &[batch], &lens)?;
        let out = ops::paged_attention(b, &qt, &kt, &vt, &bt, &lt, params)?;
        Ok(vec![get(b, &out)?])
    });
}

/// `values` as `dtype` stores them.
fn rounded(dtype: DType, values: &[f64]) -> Vec<f64> {
    values.iter().map(|&v| dtype.round(v)).collect()
}

/// The largest finite |value| as `dtype` stores it (at least 1e-30): the
/// size of the terms an attention output is a convex combination of.
fn max_abs_finite(dtype: DType, values: &[f64]) -> f64 {
    rounded(dtype, values)
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(1e-30, |m, v| m.max(v.abs()))
}
