//! Quantized GEMV (M = 1, the decode step) on the `cpu` backend: GPTQ int4
//! g128, AWQ int4 g128 and NVFP4 against radiant's own bf16 matmul with the
//! weight laid out `[N, K]` (the baseline a quantized kernel must beat), on
//! the projection shapes of a 7B model: (N, K) = (4096, 4096) and
//! (11008, 4096).
//!
//! Each quantized kernel runs with bf16 x (the contract rounds W to bf16:
//! the per-element path) and with f32 x (exact W: GPTQ and AWQ take the
//! factored fast path).
//!
//! Throughput is the bytes of the weight as stored (packed codes, scales,
//! zeros, g_idx; N·K·2 for bf16), so criterion's B/s column is the weight
//! bandwidth each kernel achieves and the time ratio is the speed-up.
//! Weights are random valid bytes (no quantization pass: building an 11008
//! × 4096 weight by round-to-nearest would dominate the run).
//!
//! `RAYON_NUM_THREADS` sets the thread count, e.g.
//! `RAYON_NUM_THREADS=1 cargo bench --bench quant_matmul -- --warm-up-time 1 --measurement-time 3`.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use radiant::bench::cases::Rng;
use radiant::cpu::CpuBackend;
use radiant::ops::{self, BLayout, MatmulParams};
use radiant::quant::{
    AwqLayout, AwqTensors, AwqWeight, GlobalScale, GptqLayout, GptqTensors, GptqWeight, GroupSize,
    Nvfp4Tensors, Nvfp4Weight, ZeroFormat,
};
use radiant::{Backend, DType, HostTensor, Tensor};

const SHAPES: [(usize, usize); 2] = [(4096, 4096), (11008, 4096)];
const GROUP: usize = 128;

fn words(rng: &mut Rng, n: usize) -> Vec<i32> {
    (0..n)
        .map(|_| {
            let hi = (rng.uniform_vec(1, 1.0)[0].abs() * 65535.0) as u32;
            let lo = (rng.uniform_vec(1, 1.0)[0].abs() * 65535.0) as u32;
            ((hi << 16) | lo) as i32
        })
        .collect()
}

/// f16 scales `[g, n]` in [0.001, 0.011).
fn scales(rng: &mut Rng, g: usize, n: usize) -> HostTensor {
    let v: Vec<f32> = rng
        .uniform_vec(g * n, 1.0)
        .into_iter()
        .map(|s| 0.001 + s.abs() * 0.01)
        .collect();
    HostTensor::from_f32(DType::F16, &[g, n], &v).unwrap()
}

fn bench(c: &mut Criterion) {
    let backend = CpuBackend::new();
    let b: &dyn Backend = &backend;
    let mut group = c.benchmark_group("quant_gemv");
    for (n, k) in SHAPES {
        let mut rng = Rng::new(0x5eed);
        let g = k / GROUP;
        let shape = format!("n{n}_k{k}");
        let xv = rng.uniform_vec(k, 1.0);
        let x = b
            .upload_tensor(&HostTensor::from_f32(DType::BF16, &[1, k], &xv).unwrap())
            .unwrap();
        let x32 = b
            .upload_tensor(&HostTensor::from_f32(DType::F32, &[1, k], &xv).unwrap())
            .unwrap();
        let xs = [("x_bf16", &x), ("x_f32", &x32)];
        let bytes = |ts: &[(&'static str, &Tensor)]| -> u64 {
            ts.iter().map(|(_, t)| t.byte_len() as u64).sum()
        };

        // bf16 weights [N, K]: the baseline.
        let w16 = b
            .upload_tensor(
                &HostTensor::from_f32(DType::BF16, &[n, k], &rng.uniform_vec(n * k, 0.05)).unwrap(),
            )
            .unwrap();
        let params = MatmulParams {
            b_layout: BLayout::Nk,
        };
        group.throughput(Throughput::Bytes((n * k * 2) as u64));
        group.bench_function(BenchmarkId::new("bf16_matmul_nk", &shape), |bch| {
            bch.iter(|| black_box(ops::matmul(b, &x, &w16, None, params).unwrap()))
        });
        drop(w16);

        // GPTQ int4, group 128, sequential g_idx.
        let gptq = GptqWeight::new(
            GptqTensors {
                qweight: HostTensor::from_i32(&[k / 8, n], &words(&mut rng, k / 8 * n)).unwrap(),
                qzeros: HostTensor::from_i32(&[g, n / 8], &words(&mut rng, g * n / 8)).unwrap(),
                scales: scales(&mut rng, g, n),
                g_idx: None,
            },
            GptqLayout {
                bits: 4,
                group_size: GroupSize::Columns(GROUP),
                zero_format: ZeroFormat::V2,
            },
        )
        .unwrap()
        .upload(b)
        .unwrap();
        group.throughput(Throughput::Bytes(bytes(&gptq.tensors())));
        for (xn, x) in xs {
            let id = BenchmarkId::new(format!("gptq_int4_g128/{xn}"), &shape);
            group.bench_function(id, |bch| {
                bch.iter(|| black_box(ops::gptq_matmul(b, x, &gptq, None).unwrap()))
            });
        }
        drop(gptq);

        // AWQ int4, group 128.
        let awq = AwqWeight::new(
            AwqTensors {
                qweight: HostTensor::from_i32(&[k, n / 8], &words(&mut rng, k * n / 8)).unwrap(),
                qzeros: HostTensor::from_i32(&[g, n / 8], &words(&mut rng, g * n / 8)).unwrap(),
                scales: scales(&mut rng, g, n),
            },
            AwqLayout {
                group_size: GroupSize::Columns(GROUP),
            },
        )
        .unwrap()
        .upload(b)
        .unwrap();
        group.throughput(Throughput::Bytes(bytes(&awq.tensors())));
        for (xn, x) in xs {
            let id = BenchmarkId::new(format!("awq_int4_g128/{xn}"), &shape);
            group.bench_function(id, |bch| {
                bch.iter(|| black_box(ops::awq_matmul(b, x, &awq, None).unwrap()))
            });
        }
        drop(awq);

        // NVFP4: random codes, block scales in [2^-3, 2^3) (no NaN bytes).
        let packed: Vec<u8> = words(&mut rng, n * k / 8)
            .into_iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let block_scales: Vec<u8> = (0..n * k / 16).map(|i| 0x20 + (i % 48) as u8).collect();
        let nvfp4 = Nvfp4Weight::new(Nvfp4Tensors {
            weight_packed: HostTensor::from_u8(DType::U8, &[n, k / 2], packed).unwrap(),
            weight_scale: HostTensor::from_u8(DType::F8E4M3, &[n, k / 16], block_scales).unwrap(),
            global_scale: GlobalScale::Multiplier(1e-3),
        })
        .unwrap()
        .upload(b)
        .unwrap();
        group.throughput(Throughput::Bytes(bytes(&nvfp4.tensors())));
        for (xn, x) in xs {
            let id = BenchmarkId::new(format!("nvfp4/{xn}"), &shape);
            group.bench_function(id, |bch| {
                bch.iter(|| black_box(ops::nvfp4_matmul(b, x, &nvfp4, None).unwrap()))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}

criterion::criterion_main!(benches);
