//! CUDA device checks that the conformance suite does not make directly:
//! one short run of every kernel entry point against the reference (small
//! shapes that still hit every path: tails, misaligned views, both
//! attention tile configs, split-context paged attention, tensor cores),
//! typed errors, the engine-facing `launch` API on a caller's stream, and
//! each way of loading kernels (cubin, PTX JIT, NVRTC).
//!
//! Without a CUDA device every test prints why and passes, unless
//! `RADIANT_REQUIRE_BACKENDS` names cuda (the device script sets it).
//! `scripts/gpu-check.sh` also runs this binary under compute-sanitizer
//! (memcheck, racecheck) with `RADIANT_CUDA_DEVICE_QUICK=1` (aligned views
//! only): it is kept short for that.

#![cfg(feature = "cuda")]

use std::sync::Arc;

use radiant::cuda::cudarc::driver::CudaContext;
use radiant::cuda::kernels::Source;
use radiant::cuda::{Kernels, launch};
use radiant::ops::tolerance::{compare, lse_tolerance, tolerance};
use radiant::ops::{self, AttentionParams, BLayout, MatmulParams, RmsNormParams};
use radiant::quant::{
    AwqQuantizeParams, AwqWeight, GptqQuantizeParams, GptqWeight, GroupSize, Nvfp4Producer,
    Nvfp4Weight,
};
use radiant::{Backend, DType, Error, HostTensor, OpKind, Tensor};

fn required() -> bool {
    std::env::var("RADIANT_REQUIRE_BACKENDS")
        .unwrap_or_default()
        .split(',')
        .any(|b| b.trim() == "cuda" || b.trim().starts_with("cuda:"))
}

fn cuda0() -> Option<Arc<dyn Backend>> {
    match radiant::device("cuda:0") {
        Ok(backend) => Some(backend),
        Err(e) if required() => panic!("cuda:0 is required but unavailable: {e}"),
        Err(e) => {
            println!("skipped: {e}");
            None
        }
    }
}

fn reference() -> Arc<dyn Backend> {
    radiant::device("reference").unwrap()
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn host(dtype: DType, shape: &[usize], seed: u64) -> HostTensor {
    let n = shape.iter().product();
    HostTensor::from_f32(dtype, shape, &values(n, seed)).unwrap()
}

/// `host` uploaded `offset` elements into a NaN-filled buffer (a misaligned
/// view when the offset is odd).
fn place(dev: &dyn Backend, host: &HostTensor, offset: usize) -> Tensor {
    let size = host.dtype().size_in_bytes();
    let total = (offset + host.numel() + 3) * size;
    let buffer = dev.alloc(total).unwrap();
    dev.upload(&buffer, 0, &vec![0xff; total]).unwrap();
    let t = Tensor::from_buffer(buffer, host.dtype(), host.shape(), offset).unwrap();
    dev.upload(t.buffer(), t.byte_offset(), host.bytes())
        .unwrap();
    t
}

#[track_caller]
fn assert_close(what: &str, op: OpKind, got: &HostTensor, want: &HostTensor) {
    let tol = if got.dtype() == DType::F32 && op == OpKind::Attention && what.contains("lse") {
        lse_tolerance()
    } else {
        tolerance(op, want.dtype())
    };
    let c = compare(&got.to_f64_vec(), &want.to_f64_vec(), tol);
    assert!(c.passed, "{what}: {c:?}");
}

/// Runs `f` on cuda:0 and on the reference and compares every output.
/// Without a device, `f` runs on the reference against itself, so the
/// test's own setup (placement, quantization, op arguments) is exercised
/// on every machine.
fn check(what: &str, op: OpKind, f: impl Fn(&dyn Backend, usize) -> Vec<HostTensor>) {
    let dev = cuda0().unwrap_or_else(reference);
    let want = f(reference().as_ref(), 0);
    // Quick (under compute-sanitizer): aligned views only.
    let quick = std::env::var("RADIANT_CUDA_DEVICE_QUICK").as_deref() == Ok("1");
    let offsets: &[usize] = if quick { &[0] } else { &[0, 1] };
    for &offset in offsets {
        let got = f(dev.as_ref(), offset);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let label = if i == 1 && op == OpKind::Attention {
                "lse"
            } else {
                "out"
            };
            assert_close(&format!("{what} offset {offset} {label}"), op, g, w);
        }
    }
}

#[test]
fn every_matmul_kernel() {
    let shapes: [(&[usize], &[usize], BLayout, bool); 5] = [
        (&[1, 1], &[1, 1], BLayout::Kn, false),
        (&[65, 33], &[33, 130], BLayout::Kn, true),
        (&[3, 70, 40], &[129, 40], BLayout::Nk, true),
        (&[2, 17, 64], &[2, 64, 9], BLayout::Kn, false),
        (&[2, 31, 96], &[2, 72, 96], BLayout::Nk, false),
    ];
    for dtype in DType::FLOATS {
        for (i, &(a_shape, b_shape, b_layout, bias)) in shapes.iter().enumerate() {
            let n = match b_layout {
                BLayout::Kn => b_shape[b_shape.len() - 1],
                BLayout::Nk => b_shape[b_shape.len() - 2],
            };
            let a = host(dtype, a_shape, 1 + i as u64);
            let b = host(dtype, b_shape, 11 + i as u64);
            let bias_host = host(dtype, &[n], 21 + i as u64);
            check(
                &format!("matmul {dtype} {a_shape:?} {b_shape:?}"),
                OpKind::Matmul,
                |dev, off| {
                    let (a, b) = (place(dev, &a, off), place(dev, &b, off));
                    let bias_t = bias.then(|| place(dev, &bias_host, off));
                    let params = MatmulParams { b_layout };
                    let out = ops::matmul(dev, &a, &b, bias_t.as_ref(), params).unwrap();
                    vec![dev.download_tensor(&out).unwrap()]
                },
            );
        }
    }
}

#[test]
fn every_norm_kernel() {
    for dtype in DType::FLOATS {
        // 4096: the 16-byte vector path (offset 0); 4099 and offset 1: scalar.
        for hidden in [1, 4096, 4099] {
            let x = host(dtype, &[3, hidden], 2);
            let r = host(dtype, &[3, hidden], 3);
            let w = host(dtype, &[hidden], 4);
            let params = RmsNormParams {
                eps: 1e-5,
                weight_offset: 1.0,
            };
            check(
                &format!("rms_norm {dtype} {hidden}"),
                OpKind::RmsNorm,
                |dev, off| {
                    let (x, w) = (place(dev, &x, off), place(dev, &w, off));
                    let out = ops::rms_norm(dev, &x, &w, params).unwrap();
                    vec![dev.download_tensor(&out).unwrap()]
                },
            );
            check(
                &format!("fused_add_rms_norm {dtype} {hidden}"),
                OpKind::FusedAddRmsNorm,
                |dev, off| {
                    let (x, r, w) = (
                        place(dev, &x, off),
                        place(dev, &r, off),
                        place(dev, &w, off),
                    );
                    let out = ops::fused_add_rms_norm(dev, &x, &r, &w, params).unwrap();
                    vec![
                        dev.download_tensor(&out).unwrap(),
                        dev.download_tensor(&r).unwrap(),
                    ]
                },
            );
        }
    }
}

#[test]
fn every_attention_kernel() {
    let variants = [
        AttentionParams::default(),
        AttentionParams {
            causal: true,
            ..AttentionParams::default()
        },
        AttentionParams {
            window_left: 3,
            window_right: 2,
            softcap: 30.0,
            softmax_scale: Some(0.3),
            ..AttentionParams::default()
        },
    ];
    let (q_lens, k_lens) = ([0usize, 5, 37, 1], [3usize, 5, 70, 0]);
    let cu = |lens: &[usize]| {
        let mut acc = vec![0i32];
        for &l in lens {
            acc.push(acc.last().unwrap() + l as i32);
        }
        acc
    };
    let (cu_q, cu_k) = (cu(&q_lens), cu(&k_lens));
    let (total_q, total_k) = (
        *cu_q.last().unwrap() as usize,
        *cu_k.last().unwrap() as usize,
    );
    for dtype in DType::FLOATS {
        // 64: 16x32 tiles; 256: 8x16 tiles.
        for (head_dim, heads_q, heads_kv) in [(64, 4, 2), (256, 2, 1)] {
            let q = host(dtype, &[total_q, heads_q, head_dim], 5);
            let k = host(dtype, &[total_k, heads_kv, head_dim], 6);
            let v = host(dtype, &[total_k, heads_kv, head_dim], 7);
            let cq = HostTensor::from_i32(&[cu_q.len()], &cu_q).unwrap();
            let ck = HostTensor::from_i32(&[cu_k.len()], &cu_k).unwrap();
            for (i, params) in variants.iter().enumerate() {
                check(
                    &format!("attention {dtype} d{head_dim} variant {i}"),
                    OpKind::Attention,
                    |dev, off| {
                        let (q, k, v) = (
                            place(dev, &q, off),
                            place(dev, &k, off),
                            place(dev, &v, off),
                        );
                        let (cq, ck) = (place(dev, &cq, 0), place(dev, &ck, 0));
                        let out = dev.alloc_tensor(dtype, q.shape()).unwrap();
                        let lse = dev.alloc_tensor(DType::F32, &[heads_q, total_q]).unwrap();
                        ops::attention_into(dev, &q, &k, &v, &cq, &ck, &out, Some(&lse), *params)
                            .unwrap();
                        vec![
                            dev.download_tensor(&out).unwrap(),
                            dev.download_tensor(&lse).unwrap(),
                        ]
                    },
                );
            }
        }
    }
}

#[test]
fn every_paged_attention_kernel() {
    let block_size = 16;
    // 1500 tokens: three 512-token partitions and the merge kernel.
    let lens = [0i32, 1, 1500, 37];
    let max_blocks = 1500usize.div_ceil(block_size);
    let num_blocks = lens.len() * max_blocks + 3;
    // Every sequence gets its own, shuffled blocks.
    let tables: Vec<i32> = (0..lens.len() * max_blocks)
        .map(|i| ((i * 7919 + 3) % num_blocks) as i32)
        .collect();
    let variants = [
        AttentionParams::default(),
        AttentionParams {
            window_left: 700,
            softcap: 20.0,
            ..AttentionParams::default()
        },
    ];
    for dtype in DType::FLOATS {
        for (head_dim, heads_q, heads_kv) in [(128, 4, 1), (80, 2, 2)] {
            let q = host(dtype, &[lens.len(), heads_q, head_dim], 8);
            let kc = host(dtype, &[num_blocks, block_size, heads_kv, head_dim], 9);
            let vc = host(dtype, &[num_blocks, block_size, heads_kv, head_dim], 10);
            let bt = HostTensor::from_i32(&[lens.len(), max_blocks], &tables).unwrap();
            let cl = HostTensor::from_i32(&[lens.len()], &lens).unwrap();
            for (i, params) in variants.iter().enumerate() {
                check(
                    &format!("paged {dtype} d{head_dim} variant {i}"),
                    OpKind::PagedAttention,
                    |dev, off| {
                        let (q, kc, vc) = (
                            place(dev, &q, off),
                            place(dev, &kc, off),
                            place(dev, &vc, off),
                        );
                        let (bt, cl) = (place(dev, &bt, 0), place(dev, &cl, 0));
                        let out =
                            ops::paged_attention(dev, &q, &kc, &vc, &bt, &cl, *params).unwrap();
                        vec![dev.download_tensor(&out).unwrap()]
                    },
                );
            }
        }
    }
}

#[test]
fn every_quantized_kernel() {
    let (m, n, k) = (5, 96, 256);
    let w = host(DType::F32, &[n, k], 12);
    let perm: Vec<usize> = (0..k).map(|i| (i * 37 + 11) % k).collect();
    let gptq = [
        GptqQuantizeParams::default(),
        GptqQuantizeParams {
            bits: 8,
            group_size: GroupSize::Columns(32),
            sym: false,
            act_order: Some(perm),
            scale_dtype: DType::BF16,
            ..GptqQuantizeParams::default()
        },
    ];
    for dtype in DType::FLOATS {
        let x = host(dtype, &[m, k], 13);
        let bias = host(dtype, &[n], 14);
        for params in &gptq {
            let weight = GptqWeight::quantize(&w, params).unwrap();
            check(
                &format!("gptq {dtype} {} bits", params.bits),
                OpKind::GptqMatmul,
                |dev, off| {
                    let device_weight = weight.upload(dev).unwrap();
                    let (x, bias) = (place(dev, &x, off), place(dev, &bias, off));
                    let out = ops::gptq_matmul(dev, &x, &device_weight, Some(&bias)).unwrap();
                    vec![dev.download_tensor(&out).unwrap()]
                },
            );
        }
        let awq = AwqWeight::quantize(&w, &AwqQuantizeParams::default()).unwrap();
        check(&format!("awq {dtype}"), OpKind::AwqMatmul, |dev, off| {
            let device_weight = awq.upload(dev).unwrap();
            let x = place(dev, &x, off);
            let out = ops::awq_matmul(dev, &x, &device_weight, None).unwrap();
            vec![dev.download_tensor(&out).unwrap()]
        });
        for producer in [Nvfp4Producer::ModelOpt, Nvfp4Producer::CompressedTensors] {
            let nvfp4 = Nvfp4Weight::quantize(&w, producer).unwrap();
            check(
                &format!("nvfp4 {dtype} {producer:?}"),
                OpKind::Nvfp4Matmul,
                |dev, off| {
                    let device_weight = nvfp4.upload(dev).unwrap();
                    let x = place(dev, &x, off);
                    let out = ops::nvfp4_matmul(dev, &x, &device_weight, None).unwrap();
                    vec![dev.download_tensor(&out).unwrap()]
                },
            );
        }
    }
}

#[test]
fn errors_are_typed_and_empty_problems_launch_nothing() {
    let Some(dev) = cuda0() else { return };
    match dev.alloc(1 << 52) {
        Err(Error::OutOfMemory { bytes, .. }) => assert_eq!(bytes, 1 << 52),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    let a = dev.upload_tensor(&host(DType::F16, &[0, 8], 1)).unwrap();
    let b = dev.upload_tensor(&host(DType::F16, &[8, 4], 2)).unwrap();
    let out = ops::matmul(dev.as_ref(), &a, &b, None, MatmulParams::default()).unwrap();
    assert_eq!(out.shape(), [0, 4]);
    dev.synchronize().unwrap();
}

/// The engine-facing API on the engine's own context and stream, against
/// the reference, through every way of loading kernels.
#[test]
fn launch_api_through_every_load_path() {
    if cuda0().is_none() {
        return;
    }
    let ctx = CudaContext::new(0).unwrap();
    let stream = ctx.new_stream().unwrap();
    let (rows, hidden) = (4, 1000);
    let x_host = host(DType::F16, &[rows, hidden], 31);
    let w_host = host(DType::F16, &[hidden], 32);
    let params = RmsNormParams::default();
    let reference = reference();
    let want = {
        let r = reference.as_ref();
        let (x, w) = (
            r.upload_tensor(&x_host).unwrap(),
            r.upload_tensor(&w_host).unwrap(),
        );
        r.download_tensor(&ops::rms_norm(r, &x, &w, params).unwrap())
            .unwrap()
    };
    let as_f16 = |t: &HostTensor| -> Vec<half::f16> {
        t.to_f32_vec()
            .into_iter()
            .map(half::f16::from_f32)
            .collect()
    };
    let x = stream.clone_htod(&as_f16(&x_host)).unwrap();
    let w = stream.clone_htod(&as_f16(&w_host)).unwrap();
    for sources in [&[Source::Cubin][..], &[Source::Ptx], &[Source::Nvrtc]] {
        let kernels = Kernels::with_sources(&ctx, sources).unwrap();
        let mut y = stream.alloc_zeros::<half::f16>(rows * hidden).unwrap();
        let result = launch::rms_norm(
            &kernels,
            &stream,
            &x.as_view(),
            &w.as_view(),
            &mut y.as_view_mut(),
            params,
        );
        match result {
            Err(Error::Device { reason, .. }) if reason.contains("no image among") => {
                println!("skipped {sources:?}: {reason}");
                continue;
            }
            other => other.unwrap(),
        }
        let got: Vec<half::f16> = stream.clone_dtoh(&y).unwrap();
        let got = HostTensor::from_f32(
            DType::F16,
            &[rows, hidden],
            &got.iter().map(|v| v.to_f32()).collect::<Vec<_>>(),
        )
        .unwrap();
        assert_close(
            &format!("launch::rms_norm via {sources:?}"),
            OpKind::RmsNorm,
            &got,
            &want,
        );
        println!(
            "{sources:?}: loaded from {:?}",
            kernels.loaded_from(radiant::cuda::kernels::KernelFile::RmsNorm)
        );
    }
}
