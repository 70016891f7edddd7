//! The `cpu` quantized matmuls against the f64 oracle at every SIMD level
//! this CPU has (portable, AVX2, AVX-512), on shapes that cross their seams:
//! M = 1 and M > the row block, N not a multiple of the lane count or of
//! the task width (scalar column tails), K with a partial last group or an
//! NVFP4 tail span; the sequential-group (factored) path and the per-depth
//! path (act-order, groups that split a word); bit-for-bit independence of
//! the thread count; and a device g_idx overwritten out of range (clamped,
//! never read out of bounds).

use std::sync::Arc;

use crate::backend::Backend;
use crate::cpu::simd::quant::QuantKernels;
use crate::cpu::simd::{Level, available_levels};
use crate::cpu::{CpuBackend, awq_matmul, gptq_matmul, nvfp4_matmul};
use crate::dtype::DType;
use crate::ops::tolerance::{compare, tolerance};
use crate::ops::{self, OpKind};
use crate::quant::{
    AwqQuantizeParams, AwqWeight, GptqQuantizeParams, GptqWeight, GroupSize, Nvfp4Producer,
    Nvfp4Weight, ZeroFormat,
};
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

fn cpu() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

fn tensor(b: &dyn Backend, dtype: DType, shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    b.upload_tensor(&HostTensor::from_f32(dtype, shape, &values(n, seed)).unwrap())
        .unwrap()
}

fn weight_values(n: usize, k: usize, seed: u64) -> HostTensor {
    HostTensor::from_f32(DType::F32, &[n, k], &values(n * k, seed)).unwrap()
}

fn read(b: &dyn Backend, t: &Tensor) -> Vec<f64> {
    b.download_tensor(t).unwrap().to_f64_vec()
}

fn levels() -> Vec<(Level, QuantKernels)> {
    available_levels()
        .into_iter()
        .filter_map(|l| QuantKernels::for_level(l).map(|k| (l, k)))
        .collect()
}

fn check(what: &str, op: OpKind, dtype: DType, got: &[f64], want: &[f64]) {
    let c = compare(got, want, tolerance(op, dtype));
    assert!(c.passed, "{what}: {c:?}");
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    dtype: DType,
    bias: bool,
}

const CASES: [Case; 4] = [
    Case {
        m: 1,
        n: 136,
        k: 320,
        dtype: DType::F32,
        bias: true,
    },
    Case {
        m: 7,
        n: 264,
        k: 256,
        dtype: DType::BF16,
        bias: false,
    },
    Case {
        m: 1,
        n: 1040,
        k: 512,
        dtype: DType::F16,
        bias: false,
    },
    Case {
        m: 18,
        n: 40,
        k: 128,
        dtype: DType::F32,
        bias: true,
    },
];

fn gptq_params(bits: u32, gs: i64, act_order: bool, k: usize) -> GptqQuantizeParams {
    GptqQuantizeParams {
        bits,
        group_size: GroupSize::from_config(gs).unwrap(),
        sym: bits == 8,
        zero_format: ZeroFormat::V1,
        act_order: act_order.then(|| {
            let mut p: Vec<usize> = (0..k).collect();
            p.reverse();
            p.swap(0, k / 2);
            p
        }),
        scale_dtype: if bits == 4 { DType::F16 } else { DType::BF16 },
    }
}

#[test]
fn gptq_every_level_matches_the_oracle() {
    let b = cpu();
    // (bits, group size, act-order): sequential groups (the factored path),
    // one group, act-order and a group size that splits a word (per depth).
    let layouts = [
        (4, 128, false),
        (4, -1, false),
        (8, 32, false),
        (4, 64, true),
        (8, 32, true),
        (4, 12, false),
    ];
    for (ci, c) in CASES.iter().enumerate() {
        for &(bits, gs, act) in &layouts {
            let host = GptqWeight::quantize(
                &weight_values(c.n, c.k, ci as u64),
                &gptq_params(bits, gs, act, c.k),
            )
            .unwrap();
            assert_eq!(host.is_act_order(), act);
            let w = host.upload(b.as_ref()).unwrap();
            let x = tensor(b.as_ref(), c.dtype, &[c.m, c.k], 10 + ci as u64);
            let bias = c.bias.then(|| tensor(b.as_ref(), c.dtype, &[c.n], 20));
            let xv = read(b.as_ref(), &x);
            let bv = bias.as_ref().map(|t| read(b.as_ref(), t));
            let want = crate::cpu::reference::gptq_matmul::eval(&xv, &host, c.dtype, bv.as_deref());
            for (level, qk) in levels() {
                let out = b.alloc_tensor(c.dtype, &[c.m, c.n]).unwrap();
                let p =
                    ops::gptq_matmul::validate(b.as_ref(), &x, &w, bias.as_ref(), &out).unwrap();
                gptq_matmul::run_with(&p, &qk).unwrap();
                let what = format!(
                    "gptq {level:?} bits {bits} gs {gs} act {act} m {} n {} k {} {}",
                    c.m, c.n, c.k, c.dtype
                );
                check(
                    &what,
                    OpKind::GptqMatmul,
                    c.dtype,
                    &read(b.as_ref(), &out),
                    &want,
                );
            }
        }
    }
}

#[test]
fn awq_every_level_matches_the_oracle() {
    let b = cpu();
    for (ci, c) in CASES.iter().enumerate() {
        for gs in [32i64, 64] {
            let params = AwqQuantizeParams {
                group_size: GroupSize::from_config(gs).unwrap(),
                scale_dtype: if gs == 32 { DType::F16 } else { DType::F32 },
            };
            let host = AwqWeight::quantize(&weight_values(c.n, c.k, ci as u64), &params).unwrap();
            let w = host.upload(b.as_ref()).unwrap();
            let x = tensor(b.as_ref(), c.dtype, &[c.m, c.k], 10 + ci as u64);
            let bias = c.bias.then(|| tensor(b.as_ref(), c.dtype, &[c.n], 20));
            let xv = read(b.as_ref(), &x);
            let bv = bias.as_ref().map(|t| read(b.as_ref(), t));
            let want = crate::cpu::reference::awq_matmul::eval(&xv, &host, c.dtype, bv.as_deref());
            for (level, qk) in levels() {
                let out = b.alloc_tensor(c.dtype, &[c.m, c.n]).unwrap();
                let p = ops::awq_matmul::validate(b.as_ref(), &x, &w, bias.as_ref(), &out).unwrap();
                awq_matmul::run_with(&p, &qk).unwrap();
                let what = format!(
                    "awq {level:?} gs {gs} m {} n {} k {} {}",
                    c.m, c.n, c.k, c.dtype
                );
                check(
                    &what,
                    OpKind::AwqMatmul,
                    c.dtype,
                    &read(b.as_ref(), &out),
                    &want,
                );
            }
        }
    }
}

#[test]
fn nvfp4_every_level_matches_the_oracle() {
    let b = cpu();
    // K = 200 pads to 208: 6 whole 32-element spans on AVX-512, 13 16-element
    // spans elsewhere, and a scalar tail past K.
    let mut cases: Vec<Case> = CASES.into_iter().collect();
    cases.push(Case {
        m: 5,
        n: 70,
        k: 200,
        dtype: DType::BF16,
        bias: true,
    });
    for (ci, c) in cases.iter().enumerate() {
        for producer in [Nvfp4Producer::ModelOpt, Nvfp4Producer::CompressedTensors] {
            let host =
                Nvfp4Weight::quantize(&weight_values(c.n, c.k, ci as u64), producer).unwrap();
            let w = host.upload(b.as_ref()).unwrap();
            let x = tensor(b.as_ref(), c.dtype, &[c.m, c.k], 10 + ci as u64);
            let bias = c.bias.then(|| tensor(b.as_ref(), c.dtype, &[c.n], 20));
            let xv = read(b.as_ref(), &x);
            let bv = bias.as_ref().map(|t| read(b.as_ref(), t));
            let want =
                crate::cpu::reference::nvfp4_matmul::eval(&xv, &host, c.dtype, bv.as_deref());
            for (level, qk) in levels() {
                let out = b.alloc_tensor(c.dtype, &[c.m, c.n]).unwrap();
                let p =
                    ops::nvfp4_matmul::validate(b.as_ref(), &x, &w, bias.as_ref(), &out).unwrap();
                nvfp4_matmul::run_with(&p, &qk).unwrap();
                let what = format!(
                    "nvfp4 {level:?} {producer:?} m {} n {} k {} {}",
                    c.m, c.n, c.k, c.dtype
                );
                check(
                    &what,
                    OpKind::Nvfp4Matmul,
                    c.dtype,
                    &read(b.as_ref(), &out),
                    &want,
                );
            }
        }
    }
}

/// E4M3 block multipliers decode every byte exactly as the reference does.
#[test]
fn e4m3_multipliers_are_exact() {
    let bytes: Vec<u8> = (0..=255u8)
        .filter(|&b| !crate::quant::e4m3::is_nan(b))
        .collect();
    for (level, qk) in levels() {
        for (g, divide) in [(0.37f32, false), (2688.0 / 3.1, true), (1.0, false)] {
            let mut out = vec![0.0f32; bytes.len()];
            qk.e4m3_mults(&bytes, &mut out, g, divide);
            for (&b, &m) in bytes.iter().zip(&out) {
                let s = crate::quant::e4m3::decode(b);
                let want = if divide { s / g } else { s * g };
                assert_eq!(m.to_bits(), want.to_bits(), "{level:?} byte {b:#04x}");
            }
        }
    }
}

/// Runs `f` on a rayon pool of `threads` threads.
fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn quant_results_do_not_depend_on_threads() {
    let b = cpu();
    let (n, k) = (520, 1024);
    let gptq = GptqWeight::quantize(&weight_values(n, k, 1), &gptq_params(4, 128, false, k))
        .unwrap()
        .upload(b.as_ref())
        .unwrap();
    let gptq_act = GptqWeight::quantize(&weight_values(n, k, 1), &gptq_params(8, 64, true, k))
        .unwrap()
        .upload(b.as_ref())
        .unwrap();
    let awq = AwqWeight::quantize(&weight_values(n, k, 2), &AwqQuantizeParams::default())
        .unwrap()
        .upload(b.as_ref())
        .unwrap();
    let nvfp4 = Nvfp4Weight::quantize(&weight_values(n, k, 3), Nvfp4Producer::ModelOpt)
        .unwrap()
        .upload(b.as_ref())
        .unwrap();
    for m in [1, 9] {
        let x = tensor(b.as_ref(), DType::BF16, &[m, k], 4);
        let run = |threads: usize| {
            with_threads(threads, || {
                let b = b.as_ref();
                [
                    ops::gptq_matmul(b, &x, &gptq, None).unwrap(),
                    ops::gptq_matmul(b, &x, &gptq_act, None).unwrap(),
                    ops::awq_matmul(b, &x, &awq, None).unwrap(),
                    ops::nvfp4_matmul(b, &x, &nvfp4, None).unwrap(),
                ]
                .map(|t| b.download_tensor(&t).unwrap().bytes().to_vec())
            })
        };
        let one = run(1);
        let two = run(2);
        let three = run(3);
        for (i, name) in ["gptq", "gptq act-order", "awq", "nvfp4"]
            .iter()
            .enumerate()
        {
            assert_eq!(one[i], two[i], "{name} m {m}: 1 vs 2 threads");
            assert_eq!(one[i], three[i], "{name} m {m}: 1 vs 3 threads");
        }
    }
}

/// A device g_idx overwritten after upload with out-of-range groups gives
/// wrong numbers, never an out-of-bounds read or a panic.
#[test]
fn gptq_clamps_overwritten_group_indices() {
    let b = cpu();
    let (n, k) = (64, 256);
    let w = GptqWeight::quantize(&weight_values(n, k, 5), &gptq_params(4, 64, true, k))
        .unwrap()
        .upload(b.as_ref())
        .unwrap();
    let bad: Vec<i32> = (0..k as i32)
        .map(|i| if i % 2 == 0 { 1 << 20 } else { -7 })
        .collect();
    let g = w.g_idx();
    b.upload(g.buffer(), g.byte_offset(), bytemuck::cast_slice(&bad))
        .unwrap();
    let x = tensor(b.as_ref(), DType::F32, &[3, k], 6);
    let y = ops::gptq_matmul(b.as_ref(), &x, &w, None).unwrap();
    assert!(read(b.as_ref(), &y).iter().all(|v| v.is_finite()));
}

/// x so small that the fast path's prescaled x (x·2^-24) would leave the
/// normal range: the kernels take the unscaled path and stay exact.
#[test]
fn gptq_tiny_activations_keep_their_precision() {
    let b = cpu();
    let (m, n, k) = (2, 64, 256);
    let host =
        GptqWeight::quantize(&weight_values(n, k, 7), &gptq_params(4, 128, false, k)).unwrap();
    let w = host.upload(b.as_ref()).unwrap();
    let xs: Vec<f32> = values(m * k, 8).iter().map(|v| v * 1e-33).collect();
    let x = b
        .upload_tensor(&HostTensor::from_f32(DType::F32, &[m, k], &xs).unwrap())
        .unwrap();
    let xv = read(b.as_ref(), &x);
    let want = crate::cpu::reference::gptq_matmul::eval(&xv, &host, DType::F32, None);
    for (level, qk) in levels() {
        let out = b.alloc_tensor(DType::F32, &[m, n]).unwrap();
        let p = ops::gptq_matmul::validate(b.as_ref(), &x, &w, None, &out).unwrap();
        gptq_matmul::run_with(&p, &qk).unwrap();
        let got = read(b.as_ref(), &out);
        // Relative to the (tiny) output itself.
        let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0.0f64, |a, (g, w)| a.max((g - w).abs()));
        assert!(
            err <= 1e-5 * scale,
            "{level:?}: max error {err} for outputs up to {scale}"
        );
    }
}

/// The contract rounds W to x's dtype. An output whose terms cancel (x
/// orthogonal to row 0 of W, so |y₀| ≪ Σ|x·W|) exposes a kernel that uses
/// the exact f32 weight instead: its error there is about one rounding of
/// W per term, far above f32 accumulation error. Checked per element:
/// `|got − want| ≤ 2^-8·|want| (output rounding) + 2^-17·Σ_k |x_k·W_nk|`.
#[test]
fn f16_bf16_activations_see_rounded_weights() {
    let b = cpu();
    let (n, k) = (24, 512);
    let wv = weight_values(n, k, 11);
    let gptq = GptqWeight::quantize(&wv, &gptq_params(4, 128, false, k)).unwrap();
    let awq = AwqWeight::quantize(&wv, &AwqQuantizeParams::default()).unwrap();
    let nvfp4 = Nvfp4Weight::quantize(&wv, Nvfp4Producer::CompressedTensors).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        for fmt in 0..3 {
            let w = match fmt {
                0 => gptq.dequantize(dtype),
                1 => awq.dequantize(dtype),
                _ => nvfp4.dequantize(dtype),
            }
            .unwrap()
            .to_f64_vec();
            // x ⟂ row 0 of the rounded W (then rounded to dtype itself).
            let r: Vec<f64> = values(k, 12).iter().map(|&v| f64::from(v)).collect();
            let dot: f64 = r.iter().zip(&w[..k]).map(|(a, b)| a * b).sum();
            let norm: f64 = w[..k].iter().map(|v| v * v).sum();
            let x: Vec<f32> = r
                .iter()
                .zip(&w[..k])
                .map(|(a, b)| (a - dot / norm * b) as f32)
                .collect();
            let xt = b
                .upload_tensor(&HostTensor::from_f32(dtype, &[1, k], &x).unwrap())
                .unwrap();
            let xv = read(b.as_ref(), &xt);
            let y = match fmt {
                0 => ops::gptq_matmul(b.as_ref(), &xt, &gptq.upload(b.as_ref()).unwrap(), None),
                1 => ops::awq_matmul(b.as_ref(), &xt, &awq.upload(b.as_ref()).unwrap(), None),
                _ => ops::nvfp4_matmul(b.as_ref(), &xt, &nvfp4.upload(b.as_ref()).unwrap(), None),
            }
            .unwrap();
            let got = read(b.as_ref(), &y);
            for j in 0..n {
                let row = &w[j * k..(j + 1) * k];
                let want: f64 = xv.iter().zip(row).map(|(a, b)| a * b).sum();
                let mass: f64 = xv.iter().zip(row).map(|(a, b)| (a * b).abs()).sum();
                let bound = 2f64.powi(-8) * want.abs() + 2f64.powi(-17) * mass;
                assert!(
                    (got[j] - want).abs() <= bound,
                    "format {fmt} {dtype} column {j}: got {}, want {want} (bound {bound})",
                    got[j]
                );
            }
        }
    }
}

/// The 4-bit lookup-table GEMV (AVX-512, M = 1, sequential groups of whole
/// 128-depth chunks) sees exactly the contract's rounded weights: a one-hot
/// x returns column k0 of `dequantize(dtype)` bit for bit (positions and
/// values, transposed blocks included), with negative, tiny and subnormal
/// products; a random x matches the oracle and the other path.
#[test]
fn gptq_lut_gemv_sees_exact_rounded_weights() {
    use crate::quant::GptqTensors;
    use std::sync::atomic::Ordering;
    let b = cpu();
    let Some(qk) = QuantKernels::for_level(Level::Avx512) else {
        eprintln!("no AVX-512: the lookup-table GEMV is not built here");
        return;
    };
    assert!(qk.has_gptq4_lut());
    let old = QuantKernels::for_level(Level::Avx512)
        .unwrap()
        .without_gptq4_lut();
    for &(n, k, gs) in &[
        (40usize, 256usize, 128i64),
        (136, 512, 256),
        (24, 384, -1),
        (16, 128, 128),
    ] {
        for sdt in [DType::F16, DType::BF16] {
            let mut params = gptq_params(4, gs, false, k);
            params.scale_dtype = sdt;
            let h0 = GptqWeight::quantize(&weight_values(n, k, n as u64 + 7), &params).unwrap();
            let shape = h0.scales().shape().to_vec();
            let mut sv = h0.scales().to_f32_vec();
            for (i, v) in sv.iter_mut().enumerate() {
                let c = i % n;
                *v *= match c % 5 {
                    1 => -1.0,
                    2 if sdt == DType::BF16 => -(2f32.powi(-120)),
                    2 => 2f32.powi(-12),
                    3 => 2f32.powi(-20),
                    _ => 1.0,
                };
            }
            let host = GptqWeight::new(
                GptqTensors {
                    qweight: h0.qweight().clone(),
                    qzeros: h0.qzeros().clone(),
                    scales: HostTensor::from_f32(sdt, &shape, &sv).unwrap(),
                    g_idx: None,
                },
                h0.layout(),
            )
            .unwrap();
            let w = host.upload(b.as_ref()).unwrap();
            for dtype in [DType::F16, DType::BF16] {
                let wd = host.dequantize(dtype).unwrap().to_f64_vec();
                let run = |qk: &QuantKernels, xv: &[f32]| {
                    let x = b
                        .upload_tensor(&HostTensor::from_f32(dtype, &[1, k], xv).unwrap())
                        .unwrap();
                    let out = b.alloc_tensor(dtype, &[1, n]).unwrap();
                    let p = ops::gptq_matmul::validate(b.as_ref(), &x, &w, None, &out).unwrap();
                    gptq_matmul::run_with(&p, qk).unwrap();
                    read(b.as_ref(), &out)
                };
                for k0 in [0, 1, 7, 8, 9, 15, 16, 127, k / 2 + 3, k - 1] {
                    let mut xv = vec![0.0f32; k];
                    xv[k0] = 1.0;
                    let before = gptq_matmul::LUT_CALLS.load(Ordering::Relaxed);
                    let got = run(&qk, &xv);
                    let after = gptq_matmul::LUT_CALLS.load(Ordering::Relaxed);
                    assert!(
                        after >= before + n.div_ceil(128),
                        "the lookup-table path did not run"
                    );
                    for j in 0..n {
                        assert_eq!(
                            got[j],
                            wd[j * k + k0],
                            "n {n} k {k} gs {gs} scales {sdt} x {dtype}: column {j} depth {k0}"
                        );
                    }
                }
                // x ⟂ row j0 (unscaled columns, whose outputs stay normal) of
                // the rounded W: the unrounded weight would
                // miss the bound there (as in the test above).
                for j0 in [5, 11] {
                    let r: Vec<f64> = values(k, 12).iter().map(|&v| f64::from(v)).collect();
                    let row = &wd[j0 * k..(j0 + 1) * k];
                    let dot: f64 = r.iter().zip(row).map(|(a, b)| a * b).sum();
                    let norm: f64 = row.iter().map(|v| v * v).sum();
                    let xv: Vec<f32> = r
                        .iter()
                        .zip(row)
                        .map(|(a, b)| (a - dot / norm * b) as f32)
                        .collect();
                    let got = run(&qk, &xv);
                    let xr = HostTensor::from_f32(dtype, &[1, k], &xv)
                        .unwrap()
                        .to_f64_vec();
                    let want: f64 = xr.iter().zip(row).map(|(a, b)| a * b).sum();
                    let mass: f64 = xr.iter().zip(row).map(|(a, b)| (a * b).abs()).sum();
                    let bound = 2f64.powi(-8) * want.abs() + 2f64.powi(-17) * mass;
                    assert!(
                        (got[j0] - want).abs() <= bound,
                        "n {n} k {k} gs {gs} scales {sdt} x {dtype} column {j0}: got {}, want {want} (bound {bound})",
                        got[j0]
                    );
                }
                let xv = values(k, 33);
                let got = run(&qk, &xv);
                let xr: Vec<f64> = HostTensor::from_f32(dtype, &[1, k], &xv)
                    .unwrap()
                    .to_f64_vec();
                let want = crate::cpu::reference::gptq_matmul::eval(&xr, &host, dtype, None);
                let what = format!("lut n {n} k {k} gs {gs} scales {sdt} x {dtype}");
                check(&what, OpKind::GptqMatmul, dtype, &got, &want);
                check(&what, OpKind::GptqMatmul, dtype, &got, &run(&old, &xv));
            }
        }
    }
}

/// `select` accepts every width the weights can have and names the ones it
/// refuses.
#[test]
fn quant_support_follows_the_bit_widths() {
    use crate::ops::OpQuery;
    let b = CpuBackend::new();
    let q = |op, bits| OpQuery {
        bits,
        ..OpQuery::new(op, DType::BF16)
    };
    for bits in [None, Some(4), Some(8)] {
        assert!(b.supports(&q(OpKind::GptqMatmul, bits)).is_ok());
    }
    assert!(b.supports(&q(OpKind::GptqMatmul, Some(3))).is_err());
    assert!(b.supports(&q(OpKind::AwqMatmul, Some(4))).is_ok());
    assert!(b.supports(&q(OpKind::AwqMatmul, Some(8))).is_err());
    assert!(b.supports(&q(OpKind::Nvfp4Matmul, None)).is_ok());
    assert!(
        b.supports(&OpQuery::new(OpKind::Nvfp4Matmul, DType::U8))
            .is_err()
    );
}
