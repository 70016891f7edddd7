//! paged_attention (decode): for random batches of context lengths (0, 1,
//! partially filled last blocks, up to 100), block sizes 1/3/4/16, shuffled
//! non-contiguous block ids, more blocks in the cache and more columns in
//! the table than needed, GQA ratios 1–8, head dims 1 to 128, windows,
//! softcap and custom scales, in f32/f16/bf16: `out` is fully written,
//! nothing outside it is, and it matches the f64 oracle.
//!
//! Every cache slot that holds no token is NaN and every table entry past a
//! sequence's last block is out of range: a kernel that reads a slot or an
//! entry the contract says it must not read fails.
//!
//! `gqa_head_mapping` repeats attention's hand-built GQA case through a
//! paged cache: query head h must use kv head h / (Hq/Hkv).

use proptest::prelude::*;
use proptest::sample::select;
use radiant::cpu::reference::paged_attention::{PagedShape, eval};
use radiant::ops::tolerance::tolerance;
use radiant::ops::{self, AttentionParams};
use radiant::{Backend, DType, OpKind, OpQuery};

use crate::attention::{self, GQA_HEAD_DIM, GQA_HEADS_KV, GQA_HEADS_Q, GQA_KEYS};
use crate::harness::{self, Check, Guarded, Rng, check_close, launch, must, upload, upload_i32};

/// How a paged cache is laid out.
#[derive(Debug, Clone)]
pub struct CacheLayout {
    pub block_size: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
    /// Blocks in the cache that no sequence uses.
    pub spare_blocks: usize,
    /// Table columns past the longest sequence's last block.
    pub spare_columns: usize,
}

/// A paged KV cache on the host.
pub struct Cache {
    /// `[num_blocks, block_size, Hkv, D]`, NaN where no token lives.
    pub k: Vec<f64>,
    pub v: Vec<f64>,
    /// `[batch, max_blocks]`; entries past a sequence's blocks are garbage.
    pub table: Vec<i32>,
    pub context_lens: Vec<usize>,
    pub num_blocks: usize,
    pub max_blocks: usize,
}

/// Scatters each sequence's `(k, v)` rows (`[len, Hkv, D]`) into blocks with
/// shuffled ids.
pub fn build_cache(rng: &mut Rng, layout: &CacheLayout, seqs: &[(&[f64], &[f64])]) -> Cache {
    let bs = layout.block_size;
    let row = layout.heads_kv * layout.head_dim;
    let context_lens: Vec<usize> = seqs.iter().map(|(k, _)| k.len() / row).collect();
    let blocks: Vec<usize> = context_lens.iter().map(|len| len.div_ceil(bs)).collect();
    let num_blocks = blocks.iter().sum::<usize>() + layout.spare_blocks;
    let max_blocks = blocks.iter().copied().max().unwrap_or(0) + layout.spare_columns;
    let mut ids: Vec<usize> = (0..num_blocks).collect();
    rng.shuffle(&mut ids);
    let mut ids = ids.into_iter();

    let mut k = vec![f64::NAN; num_blocks * bs * row];
    let mut v = vec![f64::NAN; num_blocks * bs * row];
    let mut table = Vec::with_capacity(seqs.len() * max_blocks);
    for (b, (seq_k, seq_v)) in seqs.iter().enumerate() {
        for column in 0..max_blocks {
            if column >= blocks[b] {
                let garbage = [-1, num_blocks as i32 + 7, i32::MIN, i32::MAX];
                table.push(garbage[rng.below(garbage.len())]);
                continue;
            }
            let id = ids.next().expect("enough blocks");
            table.push(id as i32);
            let tokens = column * bs..((column + 1) * bs).min(context_lens[b]);
            for t in tokens {
                let slot = (id * bs + t % bs) * row;
                k[slot..slot + row].copy_from_slice(&seq_k[t * row..(t + 1) * row]);
                v[slot..slot + row].copy_from_slice(&seq_v[t * row..(t + 1) * row]);
            }
        }
    }
    Cache {
        k,
        v,
        table,
        context_lens,
        num_blocks,
        max_blocks,
    }
}

/// Uploads the cache and `q` (`[batch, Hq, D]`), runs paged attention and
/// returns `out`.
#[allow(clippy::too_many_arguments)] // one argument per piece of the problem
pub fn run(
    backend: &dyn Backend,
    dtype: DType,
    layout: &CacheLayout,
    cache: &Cache,
    q: &[f64],
    heads_q: usize,
    params: AttentionParams,
    offset: usize,
) -> Check<Vec<f64>> {
    let batch = cache.context_lens.len();
    let q_shape = [batch, heads_q, layout.head_dim];
    let cache_shape = [
        cache.num_blocks,
        layout.block_size,
        layout.heads_kv,
        layout.head_dim,
    ];
    let lens: Vec<i32> = cache.context_lens.iter().map(|&l| l as i32).collect();
    let q_t = upload(backend, dtype, &q_shape, q, offset)?;
    let k_t = upload(backend, dtype, &cache_shape, &cache.k, offset / 2)?;
    let v_t = upload(backend, dtype, &cache_shape, &cache.v, offset / 3)?;
    let table_t = upload_i32(backend, &[batch, cache.max_blocks], &cache.table)?;
    let lens_t = upload_i32(backend, &[batch], &lens)?;
    let out = Guarded::new(backend, dtype, &q_shape)?;
    launch("paged_attention", || {
        ops::paged_attention_into(
            backend,
            &q_t,
            &k_t,
            &v_t,
            &table_t,
            &lens_t,
            &out.tensor,
            params,
        )
    })?;
    out.read(backend, "paged_attention out")
}

fn oracle(
    layout: &CacheLayout,
    cache: &Cache,
    q: &[f64],
    heads_q: usize,
    params: &AttentionParams,
) -> Vec<f64> {
    let shape = PagedShape {
        heads_q,
        heads_kv: layout.heads_kv,
        head_dim: layout.head_dim,
        block_size: layout.block_size,
        max_blocks: cache.max_blocks,
    };
    eval(
        shape,
        q,
        &cache.k,
        &cache.v,
        &cache.table,
        &cache.context_lens,
        params,
    )
}

fn query(dtype: DType, head_dim: usize) -> OpQuery {
    OpQuery {
        head_dim: Some(head_dim),
        ..OpQuery::new(OpKind::PagedAttention, dtype)
    }
}

#[derive(Debug, Clone)]
pub struct PagedCase {
    pub dtype: DType,
    pub context_lens: Vec<usize>,
    pub layout: CacheLayout,
    /// Hq / Hkv.
    pub group: usize,
    pub params: AttentionParams,
    pub offset: usize,
    pub seed: u64,
}

fn context_len() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0usize), 1 => Just(1usize), 4 => 2..=40usize, 2 => 41..=100usize]
}

pub fn cases() -> impl Strategy<Value = PagedCase> {
    let layout = (
        select(vec![1usize, 3, 4, 16]),
        1..=2usize,
        attention::head_dim(),
        0..=3usize,
        0..=2usize,
    )
        .prop_map(
            |(block_size, heads_kv, head_dim, spare_blocks, spare_columns)| CacheLayout {
                block_size,
                heads_kv,
                head_dim,
                spare_blocks,
                spare_columns,
            },
        );
    (
        harness::dtype(),
        prop::collection::vec(context_len(), 1..=4),
        layout,
        1..=8usize,
        attention::params(),
        harness::offset(),
        any::<u64>(),
    )
        .prop_map(
            |(dtype, context_lens, layout, group, params, offset, seed)| PagedCase {
                dtype,
                context_lens,
                layout,
                group,
                params,
                offset,
                seed,
            },
        )
}

pub fn check(backend: &dyn Backend, case: &PagedCase) -> Check {
    let dtype = case.dtype;
    let layout = &case.layout;
    if !harness::supported(backend, &query(dtype, layout.head_dim)) {
        return Ok(());
    }
    let heads_q = layout.heads_kv * case.group;
    let row = layout.heads_kv * layout.head_dim;
    let mut rng = Rng::new(case.seed);
    let q = rng.values(
        dtype,
        case.context_lens.len() * heads_q * layout.head_dim,
        1.0,
    );
    let kv: Vec<(Vec<f64>, Vec<f64>)> = case
        .context_lens
        .iter()
        .map(|&len| {
            (
                rng.values(dtype, len * row, 1.0),
                rng.values(dtype, len * row, 1.0),
            )
        })
        .collect();
    let seqs: Vec<(&[f64], &[f64])> = kv.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    let cache = build_cache(&mut rng, layout, &seqs);

    let got = run(
        backend,
        dtype,
        layout,
        &cache,
        &q,
        heads_q,
        case.params,
        case.offset,
    )?;
    let want = oracle(layout, &cache, &q, heads_q, &case.params);
    check_close(
        "paged_attention out",
        dtype,
        tolerance(OpKind::PagedAttention, dtype),
        &got,
        &want,
        case,
    )
}

pub fn random(backend: &dyn Backend) {
    proptest!(harness::config(128), |(case in cases())| {
        check(backend, &case)?;
    });
}

/// attention's hand-built GQA case (q = 0, known means) through a cache of
/// 2-token blocks; two sequences so the batch index is exercised too.
pub fn gqa_head_mapping(backend: &dyn Backend) {
    let layout = CacheLayout {
        block_size: 2,
        heads_kv: GQA_HEADS_KV,
        head_dim: GQA_HEAD_DIM,
        spare_blocks: 1,
        spare_columns: 1,
    };
    for dtype in DType::FLOATS {
        if !harness::supported(backend, &query(dtype, GQA_HEAD_DIM)) {
            continue;
        }
        let mut rng = Rng::new(5);
        let keys = rng.values(dtype, GQA_KEYS * GQA_HEADS_KV * GQA_HEAD_DIM, 1.0);
        let values = attention::gqa_values();
        let cache = build_cache(&mut rng, &layout, &[(&keys, &values), (&keys, &values)]);
        let q = vec![0.0; 2 * GQA_HEADS_Q * GQA_HEAD_DIM];
        let params = AttentionParams::default();
        must((|| {
            let got = run(backend, dtype, &layout, &cache, &q, GQA_HEADS_Q, params, 0)?;
            check_close(
                "paged_attention out",
                dtype,
                tolerance(OpKind::PagedAttention, dtype),
                &got,
                &attention::gqa_expected(2),
                &format!("hand-built GQA case, {dtype}"),
            )
        })());
    }
}
