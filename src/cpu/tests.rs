//! The `cpu` backend against the reference on shapes that cross every
//! blocking boundary of its kernels (several KC and NC blocks and row
//! blocks in the GEMM, several key tiles and query tiles in attention,
//! several partitions in paged decode), and bit-for-bit independence of the
//! thread count. The conformance suite (tests/conformance) covers the
//! contract on random shapes; these cases target the cpu kernels' seams.

use std::sync::Arc;

use crate::backend::Backend;
use crate::cpu::{CpuBackend, ReferenceBackend};
use crate::dtype::DType;
use crate::ops::tolerance::{Tolerance, compare, lse_tolerance, tolerance};
use crate::ops::{self, AttentionParams, BLayout, MatmulParams, OpKind};
use crate::tensor::{HostTensor, Tensor};

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Pair {
    cpu: Arc<dyn Backend>,
    reference: Arc<dyn Backend>,
}

impl Pair {
    fn new() -> Self {
        Pair {
            cpu: Arc::new(CpuBackend::new()),
            reference: Arc::new(ReferenceBackend::new()),
        }
    }

    /// One tensor uploaded to the shared host memory (both backends read it).
    fn tensor(&self, dtype: DType, shape: &[usize], seed: u64) -> Tensor {
        let n = shape.iter().product();
        let host = HostTensor::from_f32(dtype, shape, &values(n, seed)).unwrap();
        self.cpu.upload_tensor(&host).unwrap()
    }

    fn i32s(&self, shape: &[usize], v: &[i32]) -> Tensor {
        self.cpu
            .upload_tensor(&HostTensor::from_i32(shape, v).unwrap())
            .unwrap()
    }

    fn read(&self, t: &Tensor) -> Vec<f64> {
        self.cpu.download_tensor(t).unwrap().to_f64_vec()
    }
}

fn check(what: &str, got: &[f64], want: &[f64], tol: Tolerance) {
    let c = compare(got, want, tol);
    assert!(c.passed, "{what}: {c:?}");
}

/// Runs `f` on a rayon pool of `threads` threads.
fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[derive(Clone, Copy)]
struct MatmulCase {
    batch: Option<usize>,
    m: usize,
    n: usize,
    k: usize,
    layout: BLayout,
    bias: bool,
    b_batched: bool,
    dtype: DType,
}

fn matmul_case(pair: &Pair, c: MatmulCase) {
    let a_shape = match c.batch {
        Some(b) => vec![b, c.m, c.k],
        None => vec![c.m, c.k],
    };
    let mut b_shape = match c.layout {
        BLayout::Kn => vec![c.k, c.n],
        BLayout::Nk => vec![c.n, c.k],
    };
    if c.b_batched {
        b_shape.insert(0, c.batch.unwrap());
    }
    let a = pair.tensor(c.dtype, &a_shape, 1);
    let b = pair.tensor(c.dtype, &b_shape, 2);
    let bias = c.bias.then(|| pair.tensor(c.dtype, &[c.n], 3));
    let params = MatmulParams { b_layout: c.layout };
    let got = ops::matmul(pair.cpu.as_ref(), &a, &b, bias.as_ref(), params).unwrap();
    let want = ops::matmul(pair.reference.as_ref(), &a, &b, bias.as_ref(), params).unwrap();
    let what = format!(
        "matmul {:?} {}x{}x{} {:?} {}",
        c.batch, c.m, c.n, c.k, c.layout, c.dtype
    );
    check(
        &what,
        &pair.read(&got),
        &pair.read(&want),
        tolerance(OpKind::Matmul, c.dtype),
    );
}

#[test]
fn matmul_crosses_every_block() {
    let pair = Pair::new();
    let base = MatmulCase {
        batch: None,
        m: 150,
        n: 2100,
        k: 300,
        layout: BLayout::Kn,
        bias: true,
        b_batched: false,
        dtype: DType::F32,
    };
    for c in [
        // GEMM: 2 NC blocks, 2 KC blocks, several row blocks, edge tiles.
        base,
        MatmulCase {
            dtype: DType::BF16,
            bias: false,
            ..base
        },
        // [N,K] weights, swapped GEMM, f16, broadcast over a batch.
        MatmulCase {
            batch: Some(2),
            m: 37,
            n: 530,
            k: 270,
            layout: BLayout::Nk,
            dtype: DType::F16,
            ..base
        },
        MatmulCase {
            m: 150,
            n: 2100,
            k: 20,
            layout: BLayout::Nk,
            ..base
        },
        // Dot path (small M), batched b.
        MatmulCase {
            batch: Some(2),
            m: 5,
            n: 300,
            k: 700,
            layout: BLayout::Nk,
            b_batched: true,
            dtype: DType::BF16,
            ..base
        },
        MatmulCase {
            m: 1,
            n: 300,
            k: 1030,
            layout: BLayout::Nk,
            ..base
        },
        // GEMV against [K,N].
        MatmulCase {
            m: 1,
            n: 600,
            k: 700,
            dtype: DType::F16,
            ..base
        },
        // K = 0: bias (or zeros) only.
        MatmulCase {
            m: 3,
            n: 5,
            k: 0,
            ..base
        },
    ] {
        matmul_case(&pair, c);
    }
}

fn attention_run(
    pair: &Pair,
    backend: &dyn Backend,
    dtype: DType,
    lens: &[(usize, usize)],
    heads: (usize, usize, usize),
    params: AttentionParams,
) -> (Vec<f64>, Vec<f64>) {
    let (hq, hkv, d) = heads;
    let total_q: usize = lens.iter().map(|l| l.0).sum();
    let total_k: usize = lens.iter().map(|l| l.1).sum();
    let mut cu_q = vec![0i32];
    let mut cu_k = vec![0i32];
    for &(sq, sk) in lens {
        cu_q.push(cu_q.last().unwrap() + sq as i32);
        cu_k.push(cu_k.last().unwrap() + sk as i32);
    }
    let q = pair.tensor(dtype, &[total_q, hq, d], 4);
    let k = pair.tensor(dtype, &[total_k, hkv, d], 5);
    let v = pair.tensor(dtype, &[total_k, hkv, d], 6);
    let cu_q = pair.i32s(&[cu_q.len()], &cu_q);
    let cu_k = pair.i32s(&[cu_k.len()], &cu_k);
    let out = pair.cpu.alloc_tensor(dtype, &[total_q, hq, d]).unwrap();
    let lse = pair.cpu.alloc_tensor(DType::F32, &[hq, total_q]).unwrap();
    ops::attention_into(backend, &q, &k, &v, &cu_q, &cu_k, &out, Some(&lse), params).unwrap();
    (pair.read(&out), pair.read(&lse))
}

#[test]
fn attention_crosses_tiles_and_masks() {
    let pair = Pair::new();
    // Sequences: longer keys than queries (bottom-right causal), an empty
    // key range, a long one (several query and key tiles).
    let lens = [(70, 130), (3, 0), (150, 150)];
    let cases = [
        (
            DType::F32,
            (6, 2, 72),
            AttentionParams {
                causal: true,
                ..Default::default()
            },
        ),
        (
            DType::BF16,
            (4, 4, 64),
            AttentionParams {
                window_left: 40,
                window_right: 7,
                softcap: 5.0,
                softmax_scale: Some(0.3),
                ..Default::default()
            },
        ),
        (
            DType::F16,
            (8, 1, 40),
            AttentionParams {
                causal: true,
                window_left: 90,
                ..Default::default()
            },
        ),
    ];
    for (dtype, heads, params) in cases {
        let (out, lse) = attention_run(&pair, pair.cpu.as_ref(), dtype, &lens, heads, params);
        let (want, want_lse) =
            attention_run(&pair, pair.reference.as_ref(), dtype, &lens, heads, params);
        let what = format!("attention {dtype} {heads:?} {params:?}");
        check(&what, &out, &want, tolerance(OpKind::Attention, dtype));
        check(&format!("{what} lse"), &lse, &want_lse, lse_tolerance());
    }
}

fn paged_run(
    pair: &Pair,
    backend: &dyn Backend,
    dtype: DType,
    params: AttentionParams,
) -> Vec<f64> {
    let (hq, hkv, d, bs) = (8, 2, 48, 16);
    let lens = [1300usize, 1, 0, 517];
    let max_blocks = 1300usize.div_ceil(bs);
    let num_blocks = 2 * max_blocks + 3;
    // Scattered blocks: sequence b takes blocks in a shuffled order.
    let mut table = Vec::new();
    for b in 0..lens.len() {
        for i in 0..max_blocks {
            table.push(((i * 37 + b * 11) % num_blocks) as i32);
        }
    }
    let q = pair.tensor(dtype, &[lens.len(), hq, d], 7);
    let kc = pair.tensor(dtype, &[num_blocks, bs, hkv, d], 8);
    let vc = pair.tensor(dtype, &[num_blocks, bs, hkv, d], 9);
    let bt = pair.i32s(&[lens.len(), max_blocks], &table);
    let lens: Vec<i32> = lens.iter().map(|&l| l as i32).collect();
    let cl = pair.i32s(&[lens.len()], &lens);
    let out = ops::paged_attention(backend, &q, &kc, &vc, &bt, &cl, params).unwrap();
    pair.read(&out)
}

#[test]
fn paged_attention_crosses_partitions() {
    let pair = Pair::new();
    for (dtype, params) in [
        (DType::F32, AttentionParams::default()),
        (
            DType::F16,
            AttentionParams {
                window_left: 700,
                softcap: 10.0,
                ..Default::default()
            },
        ),
        (
            DType::BF16,
            AttentionParams {
                softmax_scale: Some(0.05),
                ..Default::default()
            },
        ),
    ] {
        let got = paged_run(&pair, pair.cpu.as_ref(), dtype, params);
        let want = paged_run(&pair, pair.reference.as_ref(), dtype, params);
        check(
            &format!("paged_attention {dtype} {params:?}"),
            &got,
            &want,
            tolerance(OpKind::PagedAttention, dtype),
        );
    }
}

#[test]
fn results_do_not_depend_on_threads() {
    let pair = Pair::new();
    let run = |threads: usize| {
        with_threads(threads, || {
            let cpu = pair.cpu.as_ref();
            let mut outs = Vec::new();
            for layout in [BLayout::Kn, BLayout::Nk] {
                let a = pair.tensor(DType::F32, &[150, 600], 1);
                let b = pair.tensor(DType::F32, &[600, 600], 2);
                let y = ops::matmul(cpu, &a, &b, None, MatmulParams { b_layout: layout }).unwrap();
                outs.push(pair.read(&y));
            }
            let params = AttentionParams {
                causal: true,
                ..Default::default()
            };
            outs.push(attention_run(&pair, cpu, DType::F32, &[(200, 200)], (4, 2, 64), params).0);
            outs.push(paged_run(&pair, cpu, DType::F32, params));
            let x = pair.tensor(DType::F32, &[64, 1000], 3);
            let w = pair.tensor(DType::F32, &[1000], 4);
            outs.push(pair.read(&ops::rms_norm(cpu, &x, &w, Default::default()).unwrap()));
            outs
        })
    };
    let one = run(1);
    for threads in [2, 3] {
        let many = run(threads);
        for (i, (a, b)) in one.iter().zip(&many).enumerate() {
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "output {i} differs between 1 and {threads} threads"
            );
        }
    }
}

#[test]
fn rms_norm_streams_large_rows() {
    // 32 MiB of f32 output: the non-temporal store path.
    let pair = Pair::new();
    let (rows, h) = (2048, 4099);
    let x = pair.tensor(DType::F32, &[rows, h], 10);
    let w = pair.tensor(DType::F32, &[h], 11);
    let params = ops::RmsNormParams {
        eps: 1e-5,
        weight_offset: 1.0,
    };
    let got = ops::rms_norm(pair.cpu.as_ref(), &x, &w, params).unwrap();
    let want = ops::rms_norm(pair.reference.as_ref(), &x, &w, params).unwrap();
    check(
        "rms_norm stream",
        &pair.read(&got),
        &pair.read(&want),
        tolerance(OpKind::RmsNorm, DType::F32),
    );
}
