//! attention (varlen prefill): for random batches mixing sequence lengths 0,
//! 1 and long (up to 100) with sq < sk, sq = sk and sq > sk, GQA ratios 1–8,
//! head dims 1 to 128 (odd ones too), causal on/off, left/right windows,
//! softcap, custom softmax scales, with and without the lse output, inputs at
//! buffer offsets, in f32/f16/bf16: `out` and `lse` are fully written,
//! nothing outside them is, and both match the f64 oracle.
//!
//! Structural checks with answers known independently of the oracle:
//! * `matches_paged`: the last query row of a single sequence equals paged
//!   decode attention over the same keys in a shuffled paged cache;
//! * `masked_rows`: a row with no visible key (sk = 0, or masked by the
//!   causal / right window) outputs exactly 0 and lse = −inf;
//! * `gqa_head_mapping`: with q = 0 the softmax is uniform, so query head h
//!   must output the mean of kv head h / (Hq/Hkv)'s values — a number the
//!   test knows exactly.

use proptest::prelude::*;
use proptest::sample::select;
use radiant::cpu::reference::attention::{AttentionShape, eval};
use radiant::ops::tolerance::{lse_tolerance, tolerance};
use radiant::ops::{self, AttentionParams};
use radiant::{Backend, DType, OpKind, OpQuery, Tensor};

use crate::harness::{
    self, Check, Guarded, Rng, check_close, check_exact, fail, launch, must, upload, upload_i32,
};
use crate::paged_attention::{self as paged, CacheLayout};

/// Head dims kernels specialize on, and odd ones they must not break on.
pub fn head_dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => select(vec![1usize, 8, 32, 64, 80, 128]),
        1 => 2..=20usize,
    ]
}

fn window() -> impl Strategy<Value = i64> {
    prop_oneof![4 => Just(-1i64), 2 => 0..=8i64, 1 => 9..=64i64]
}

/// Scale, causal, window and softcap: shared with paged attention.
pub fn params() -> impl Strategy<Value = AttentionParams> {
    (
        any::<bool>(),
        prop_oneof![
            2 => Just(None),
            1 => select(vec![0.02, 0.25, 1.0]).prop_map(Some),
        ],
        window(),
        window(),
        select(vec![0.0, 0.0, 5.0, 30.0]),
    )
        .prop_map(
            |(causal, softmax_scale, window_left, window_right, softcap)| AttentionParams {
                causal,
                softmax_scale,
                window_left,
                window_right,
                softcap,
            },
        )
}

fn seqlen() -> impl Strategy<Value = usize> {
    prop_oneof![2 => Just(0usize), 2 => Just(1usize), 4 => 2..=16usize, 2 => 17..=100usize]
}

#[derive(Debug, Clone)]
pub struct AttentionCase {
    pub dtype: DType,
    /// (sq, sk) per sequence.
    pub seqlens: Vec<(usize, usize)>,
    pub heads_kv: usize,
    /// Hq / Hkv.
    pub group: usize,
    pub head_dim: usize,
    pub params: AttentionParams,
    pub lse: bool,
    pub offset: usize,
    pub seed: u64,
}

impl AttentionCase {
    fn heads_q(&self) -> usize {
        self.heads_kv * self.group
    }

    /// Multiply-adds of a dense evaluation: bounds the suite's run time.
    fn work(&self) -> usize {
        let pairs: usize = self.seqlens.iter().map(|(sq, sk)| sq * sk).sum();
        pairs * self.heads_q() * self.head_dim
    }
}

pub fn cases() -> impl Strategy<Value = AttentionCase> {
    let seq = prop_oneof![
        1 => seqlen().prop_map(|len| (len, len)),
        2 => (seqlen(), seqlen()),
    ];
    (
        harness::dtype(),
        prop::collection::vec(seq, 1..=4),
        1..=2usize,
        1..=8usize,
        head_dim(),
        params(),
        any::<bool>(),
        harness::offset(),
        any::<u64>(),
    )
        .prop_map(
            |(dtype, seqlens, heads_kv, group, head_dim, params, lse, offset, seed)| {
                AttentionCase {
                    dtype,
                    seqlens,
                    heads_kv,
                    group,
                    head_dim,
                    params,
                    lse,
                    offset,
                    seed,
                }
            },
        )
        .prop_filter("bounded work", |case| case.work() <= 6_000_000)
}

/// Prefix sums: `[0, l0, l0 + l1, ...]`.
fn offsets(lens: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut offsets = vec![0];
    for len in lens {
        offsets.push(offsets.last().unwrap() + len);
    }
    offsets
}

fn as_i32(offsets: &[usize]) -> Vec<i32> {
    offsets.iter().map(|&o| o as i32).collect()
}

/// The problem on the host: q, k, v and the sequence offsets.
struct Inputs {
    shape: AttentionShape,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    offsets_q: Vec<usize>,
    offsets_k: Vec<usize>,
}

impl Inputs {
    fn total_q(&self) -> usize {
        *self.offsets_q.last().unwrap()
    }

    fn total_k(&self) -> usize {
        *self.offsets_k.last().unwrap()
    }

    fn oracle(&self, params: &AttentionParams) -> (Vec<f64>, Vec<f64>) {
        eval(
            self.shape,
            &self.q,
            &self.k,
            &self.v,
            &self.offsets_q,
            &self.offsets_k,
            params,
        )
    }
}

/// Uploads `inputs` and runs attention; returns (out, lse if asked).
fn run(
    backend: &dyn Backend,
    dtype: DType,
    inputs: &Inputs,
    params: AttentionParams,
    with_lse: bool,
    offset: usize,
) -> Check<(Vec<f64>, Option<Vec<f64>>)> {
    let AttentionShape {
        heads_q,
        heads_kv,
        head_dim,
    } = inputs.shape;
    let q_shape = [inputs.total_q(), heads_q, head_dim];
    let kv_shape = [inputs.total_k(), heads_kv, head_dim];
    let q = upload(backend, dtype, &q_shape, &inputs.q, offset)?;
    let k = upload(backend, dtype, &kv_shape, &inputs.k, offset / 2)?;
    let v = upload(backend, dtype, &kv_shape, &inputs.v, offset / 3)?;
    let cu_q = upload_i32(
        backend,
        &[inputs.offsets_q.len()],
        &as_i32(&inputs.offsets_q),
    )?;
    let cu_k = upload_i32(
        backend,
        &[inputs.offsets_k.len()],
        &as_i32(&inputs.offsets_k),
    )?;
    let out = Guarded::new(backend, dtype, &q_shape)?;
    let lse = match with_lse {
        true => Some(Guarded::new(
            backend,
            DType::F32,
            &[heads_q, inputs.total_q()],
        )?),
        false => None,
    };
    let lse_tensor: Option<&Tensor> = lse.as_ref().map(|g| &g.tensor);
    launch("attention", || {
        ops::attention_into(
            backend,
            &q,
            &k,
            &v,
            &cu_q,
            &cu_k,
            &out.tensor,
            lse_tensor,
            params,
        )
    })?;
    let got_lse = match &lse {
        Some(lse) => Some(lse.read(backend, "attention lse")?),
        None => None,
    };
    Ok((out.read(backend, "attention out")?, got_lse))
}

fn query(dtype: DType, head_dim: usize) -> OpQuery {
    OpQuery {
        head_dim: Some(head_dim),
        ..OpQuery::new(OpKind::Attention, dtype)
    }
}

pub fn check(backend: &dyn Backend, case: &AttentionCase) -> Check {
    let dtype = case.dtype;
    if !harness::supported(backend, &query(dtype, case.head_dim)) {
        return Ok(());
    }
    let shape = AttentionShape {
        heads_q: case.heads_q(),
        heads_kv: case.heads_kv,
        head_dim: case.head_dim,
    };
    let offsets_q = offsets(case.seqlens.iter().map(|s| s.0));
    let offsets_k = offsets(case.seqlens.iter().map(|s| s.1));
    let (total_q, total_k) = (*offsets_q.last().unwrap(), *offsets_k.last().unwrap());
    let mut rng = Rng::new(case.seed);
    let inputs = Inputs {
        shape,
        q: rng.values(dtype, total_q * shape.heads_q * shape.head_dim, 1.0),
        k: rng.values(dtype, total_k * shape.heads_kv * shape.head_dim, 1.0),
        v: rng.values(dtype, total_k * shape.heads_kv * shape.head_dim, 1.0),
        offsets_q,
        offsets_k,
    };
    let (got, got_lse) = run(backend, dtype, &inputs, case.params, case.lse, case.offset)?;
    let (want, want_lse) = inputs.oracle(&case.params);
    let tol = tolerance(OpKind::Attention, dtype);
    check_close("attention out", dtype, tol, &got, &want, case)?;
    if let Some(got_lse) = got_lse {
        check_close(
            "attention lse",
            DType::F32,
            lse_tolerance(),
            &got_lse,
            &want_lse,
            case,
        )?;
    }
    Ok(())
}

pub fn random(backend: &dyn Backend) {
    proptest!(harness::config(128), |(case in cases())| {
        check(backend, &case)?;
    });
}

// ---------------------------------------------------------------------------
// attention's last row == paged attention.

#[derive(Debug, Clone)]
pub struct SingleCase {
    pub dtype: DType,
    pub sq: usize,
    pub sk: usize,
    pub heads_kv: usize,
    pub group: usize,
    pub head_dim: usize,
    pub params: AttentionParams,
    pub block_size: usize,
    pub seed: u64,
}

fn single_cases() -> impl Strategy<Value = SingleCase> {
    (
        harness::dtype(),
        1..=6usize,
        0..=80usize,
        1..=2usize,
        1..=8usize,
        head_dim(),
        params(),
        select(vec![1usize, 4, 16]),
        any::<u64>(),
    )
        .prop_map(
            |(dtype, sq, sk, heads_kv, group, head_dim, params, block_size, seed)| SingleCase {
                dtype,
                sq,
                sk,
                heads_kv,
                group,
                head_dim,
                params,
                block_size,
                seed,
            },
        )
}

fn check_matches_paged(backend: &dyn Backend, case: &SingleCase) -> Check {
    let dtype = case.dtype;
    let paged_query = OpQuery {
        op: OpKind::PagedAttention,
        ..query(dtype, case.head_dim)
    };
    if !harness::supported(backend, &query(dtype, case.head_dim))
        || !harness::supported(backend, &paged_query)
    {
        return Ok(());
    }
    let shape = AttentionShape {
        heads_q: case.heads_kv * case.group,
        heads_kv: case.heads_kv,
        head_dim: case.head_dim,
    };
    let q_row = shape.heads_q * shape.head_dim;
    let kv_row = shape.heads_kv * shape.head_dim;
    let mut rng = Rng::new(case.seed);
    let inputs = Inputs {
        shape,
        q: rng.values(dtype, case.sq * q_row, 1.0),
        k: rng.values(dtype, case.sk * kv_row, 1.0),
        v: rng.values(dtype, case.sk * kv_row, 1.0),
        offsets_q: vec![0, case.sq],
        offsets_k: vec![0, case.sk],
    };
    let (attention_out, _) = run(backend, dtype, &inputs, case.params, false, 0)?;
    let last_row = &attention_out[(case.sq - 1) * q_row..];

    let layout = CacheLayout {
        block_size: case.block_size,
        heads_kv: case.heads_kv,
        head_dim: case.head_dim,
        spare_blocks: 2,
        spare_columns: 1,
    };
    let cache = paged::build_cache(&mut rng, &layout, &[(&inputs.k, &inputs.v)]);
    let q_last = &inputs.q[(case.sq - 1) * q_row..];
    let paged_out = paged::run(
        backend,
        dtype,
        &layout,
        &cache,
        q_last,
        shape.heads_q,
        case.params,
        0,
    )?;
    check_close(
        "paged_attention out vs attention's last row",
        dtype,
        tolerance(OpKind::Attention, dtype),
        &paged_out,
        last_row,
        case,
    )
}

pub fn matches_paged(backend: &dyn Backend) {
    proptest!(harness::config(64), |(case in single_cases())| {
        check_matches_paged(backend, &case)?;
    });
}

// ---------------------------------------------------------------------------
// Rows with no visible key.

fn check_masked(
    backend: &dyn Backend,
    dtype: DType,
    seqlens: &[(usize, usize)],
    params: AttentionParams,
    masked_rows: usize,
) -> Check {
    let what = format!("{dtype} seqlens {seqlens:?} {params:?}");
    let shape = AttentionShape {
        heads_q: 4,
        heads_kv: 2,
        head_dim: 8,
    };
    if !harness::supported(backend, &query(dtype, shape.head_dim)) {
        return Ok(());
    }
    let offsets_q = offsets(seqlens.iter().map(|s| s.0));
    let offsets_k = offsets(seqlens.iter().map(|s| s.1));
    let (total_q, total_k) = (*offsets_q.last().unwrap(), *offsets_k.last().unwrap());
    let mut rng = Rng::new(7);
    let inputs = Inputs {
        shape,
        q: rng.values(dtype, total_q * 4 * 8, 1.0),
        k: rng.values(dtype, total_k * 2 * 8, 1.0),
        v: rng.values(dtype, total_k * 2 * 8, 1.0),
        offsets_q,
        offsets_k,
    };
    let (want, want_lse) = inputs.oracle(&params);
    // The case is built so that exactly `masked_rows` rows see no key.
    let masked: Vec<usize> = (0..total_q)
        .filter(|&row| want_lse[row] == f64::NEG_INFINITY)
        .collect();
    if masked.len() != masked_rows {
        return Err(fail(format!(
            "oracle: {what} should mask {masked_rows} rows, it masks {masked:?}"
        )));
    }
    let (got, got_lse) = run(backend, dtype, &inputs, params, true, 0)?;
    let got_lse = got_lse.expect("asked for lse");
    let row_len = shape.heads_q * shape.head_dim;
    for &row in &masked {
        let zeros = vec![0.0; row_len];
        check_exact(
            &format!("out of fully masked row {row}"),
            &got[row * row_len..(row + 1) * row_len],
            &zeros,
            &what,
        )?;
        let lse_of_row: Vec<f64> = (0..shape.heads_q)
            .map(|h| got_lse[h * total_q + row])
            .collect();
        check_exact(
            &format!("lse of fully masked row {row}"),
            &lse_of_row,
            &[f64::NEG_INFINITY; 4],
            &what,
        )?;
    }
    let tol = tolerance(OpKind::Attention, dtype);
    check_close("attention out", dtype, tol, &got, &want, &what)?;
    check_close(
        "attention lse",
        DType::F32,
        lse_tolerance(),
        &got_lse,
        &want_lse,
        &what,
    )
}

pub fn masked_rows(backend: &dyn Backend) {
    let causal = AttentionParams {
        causal: true,
        ..AttentionParams::default()
    };
    let right_window = AttentionParams {
        window_right: 1,
        ..AttentionParams::default()
    };
    let window_both = AttentionParams {
        window_left: 0,
        window_right: 0,
        softcap: 5.0,
        ..AttentionParams::default()
    };
    for dtype in DType::FLOATS {
        // sk = 0: every row; sq = 4 > sk = 2 causal: rows at positions −2, −1.
        must(check_masked(backend, dtype, &[(3, 0), (4, 2)], causal, 5));
        // Right window 1 with positions −4..=1: positions ≤ −2 see nothing.
        must(check_masked(
            backend,
            dtype,
            &[(6, 2), (2, 0)],
            right_window,
            5,
        ));
        // A one-key window with sq > sk: positions < 0 see nothing.
        must(check_masked(
            backend,
            dtype,
            &[(5, 3), (0, 4)],
            window_both,
            2,
        ));
    }
}

// ---------------------------------------------------------------------------
// GQA head mapping, by hand.

/// Hkv = 2, Hq = 6 (group 3), D = 4, sk = 4. With q = 0 every score is 0, so
/// the output of query head h is the plain mean over keys of kv head
/// g = h / 3, whose values are `v[j, g, d] = 4g + j + d/4`: the mean is
/// `4g + 1.5 + d/4`, exact in every dtype, and lse = ln 4.
pub const GQA_HEADS_Q: usize = 6;
pub const GQA_HEADS_KV: usize = 2;
pub const GQA_HEAD_DIM: usize = 4;
pub const GQA_KEYS: usize = 4;

/// v for the hand-built GQA case, `[keys, Hkv, D]` row-major.
pub fn gqa_values() -> Vec<f64> {
    let mut v = Vec::new();
    for j in 0..GQA_KEYS {
        for g in 0..GQA_HEADS_KV {
            for d in 0..GQA_HEAD_DIM {
                v.push((4 * g + j) as f64 + d as f64 / 4.0);
            }
        }
    }
    v
}

/// The known output of `rows` query rows, `[rows, Hq, D]`.
pub fn gqa_expected(rows: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for _ in 0..rows {
        for h in 0..GQA_HEADS_Q {
            let g = h / (GQA_HEADS_Q / GQA_HEADS_KV);
            for d in 0..GQA_HEAD_DIM {
                out.push(4.0 * g as f64 + 1.5 + d as f64 / 4.0);
            }
        }
    }
    out
}

pub fn gqa_head_mapping(backend: &dyn Backend) {
    for dtype in DType::FLOATS {
        if !harness::supported(backend, &query(dtype, GQA_HEAD_DIM)) {
            continue;
        }
        let rows = 2;
        let mut rng = Rng::new(11);
        let inputs = Inputs {
            shape: AttentionShape {
                heads_q: GQA_HEADS_Q,
                heads_kv: GQA_HEADS_KV,
                head_dim: GQA_HEAD_DIM,
            },
            q: vec![0.0; rows * GQA_HEADS_Q * GQA_HEAD_DIM],
            k: rng.values(dtype, GQA_KEYS * GQA_HEADS_KV * GQA_HEAD_DIM, 1.0),
            v: gqa_values(),
            offsets_q: vec![0, rows],
            offsets_k: vec![0, GQA_KEYS],
        };
        let params = AttentionParams::default();
        must((|| {
            let (got, got_lse) = run(backend, dtype, &inputs, params, true, 0)?;
            let what = format!("hand-built GQA case, {dtype}");
            let tol = tolerance(OpKind::Attention, dtype);
            check_close(
                "attention out",
                dtype,
                tol,
                &got,
                &gqa_expected(rows),
                &what,
            )?;
            let ln4 = vec![4f64.ln(); GQA_HEADS_Q * rows];
            check_close(
                "attention lse",
                DType::F32,
                lse_tolerance(),
                &got_lse.expect("asked for lse"),
                &ln4,
                &what,
            )
        })());
    }
}
