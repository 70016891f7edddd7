//! Backend-level checks that the conformance suite does not make directly:
//! unaligned uploads and downloads, odd 16-bit view offsets with the
//! neighbouring elements left untouched, and device info. They skip (with
//! a message) on machines without a wgpu adapter.

use std::sync::Arc;

use crate::backend::Backend;
use crate::dtype::DType;
use crate::ops::{self, MatmulParams, RmsNormParams};
use crate::tensor::{HostTensor, Tensor};

fn wgpu0() -> Option<Arc<dyn Backend>> {
    match crate::device("wgpu:0") {
        Ok(backend) => Some(backend),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

#[test]
fn unaligned_upload_and_download_keep_neighbours() {
    let Some(dev) = wgpu0() else { return };
    let buffer = dev.alloc(11).unwrap();
    let base: Vec<u8> = (100..111).collect();
    dev.upload(&buffer, 0, &base).unwrap();
    for (offset, len) in [
        (1, 1),
        (3, 2),
        (5, 5),
        (2, 0),
        (4, 4),
        (0, 11),
        (9, 2),
        (6, 1),
    ] {
        let patch: Vec<u8> = (0..len as u8).map(|i| 200 + i).collect();
        let mut expected = base.clone();
        expected[offset..offset + len].copy_from_slice(&patch);
        dev.upload(&buffer, 0, &base).unwrap();
        dev.upload(&buffer, offset, &patch).unwrap();
        let mut all = vec![0u8; 11];
        dev.download(&buffer, 0, &mut all).unwrap();
        assert_eq!(all, expected, "upload of {len} bytes at {offset}");
        let mut part = vec![0u8; len];
        dev.download(&buffer, offset, &mut part).unwrap();
        assert_eq!(part, patch, "download of {len} bytes at {offset}");
    }
    assert!(dev.upload(&buffer, 10, &[1, 2]).is_err());
    let mut too_long = [0u8; 12];
    assert!(dev.download(&buffer, 0, &mut too_long).is_err());
}

/// A view of `host` at element `offset` inside a buffer filled with a
/// sentinel, so writes outside the view can be detected.
fn placed(dev: &dyn Backend, host: &HostTensor, offset: usize, slack: usize) -> Tensor {
    let size = host.dtype().size_in_bytes();
    let total = (offset + host.numel() + slack) * size;
    let buffer = dev.alloc(total).unwrap();
    dev.upload(&buffer, 0, &vec![0x5a; total]).unwrap();
    let t = Tensor::from_buffer(buffer, host.dtype(), host.shape(), offset).unwrap();
    dev.upload(t.buffer(), t.byte_offset(), host.bytes())
        .unwrap();
    t
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) % 200) as f32 / 100.0
                - 1.0
        })
        .collect()
}

fn rel_err(out: &[f64], reference: &[f64]) -> f64 {
    let num: f64 = out
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).powi(2))
        .sum();
    let den: f64 = reference.iter().map(|b| b * b).sum();
    (num / den.max(1e-30)).sqrt()
}

#[test]
fn odd_offsets_for_every_dtype() {
    let Some(dev) = wgpu0() else { return };
    let reference = crate::device("reference").unwrap();
    for dtype in DType::FLOATS {
        for offset in [0usize, 1, 3] {
            let (m, k, n) = (5, 19, 7);
            let a = HostTensor::from_f32(dtype, &[m, k], &values(m * k, 1)).unwrap();
            let b = HostTensor::from_f32(dtype, &[n, k], &values(n * k, 2)).unwrap();
            let params = MatmulParams {
                b_layout: ops::BLayout::Nk,
            };
            let da = placed(dev.as_ref(), &a, offset, 3);
            let db = placed(dev.as_ref(), &b, offset + 1, 1);
            let out_host = HostTensor::from_f32(dtype, &[m, n], &vec![0.0; m * n]).unwrap();
            let dout = placed(dev.as_ref(), &out_host, offset, 3);
            ops::matmul_into(dev.as_ref(), &da, &db, None, &dout, params).unwrap();
            let ra = reference.upload_tensor(&a).unwrap();
            let rb = reference.upload_tensor(&b).unwrap();
            let want = ops::matmul(reference.as_ref(), &ra, &rb, None, params).unwrap();
            let got = dev.download_tensor(&dout).unwrap();
            let want = reference.download_tensor(&want).unwrap();
            let err = rel_err(&got.to_f64_vec(), &want.to_f64_vec());
            assert!(err < 1e-2, "{dtype} offset {offset}: rel err {err}");

            // The sentinel around the output is intact.
            let size = dtype.size_in_bytes();
            let mut raw = vec![0u8; dout.buffer().len_bytes()];
            dev.download(dout.buffer(), 0, &mut raw).unwrap();
            let end = dout.byte_offset() + dout.byte_len();
            assert!(
                raw[..offset * size].iter().all(|&b| b == 0x5a),
                "{dtype}: before"
            );
            assert!(raw[end..].iter().all(|&b| b == 0x5a), "{dtype}: after");

            let x = HostTensor::from_f32(dtype, &[3, 33], &values(99, 3)).unwrap();
            let w = HostTensor::from_f32(dtype, &[33], &values(33, 4)).unwrap();
            let dx = placed(dev.as_ref(), &x, offset, 1);
            let dw = placed(dev.as_ref(), &w, offset + 1, 1);
            let got = ops::rms_norm(dev.as_ref(), &dx, &dw, RmsNormParams::default()).unwrap();
            let want = ops::rms_norm(
                reference.as_ref(),
                &reference.upload_tensor(&x).unwrap(),
                &reference.upload_tensor(&w).unwrap(),
                RmsNormParams::default(),
            )
            .unwrap();
            let err = rel_err(
                &dev.download_tensor(&got).unwrap().to_f64_vec(),
                &reference.download_tensor(&want).unwrap().to_f64_vec(),
            );
            assert!(
                err < 1e-2,
                "rms_norm {dtype} offset {offset}: rel err {err}"
            );
        }
    }
}

#[test]
fn info_names_the_adapter() {
    let Some(dev) = wgpu0() else { return };
    let info = dev.info();
    assert_eq!(info.name, "wgpu:0");
    assert!(!info.device.is_empty());
    assert!(info.features.iter().any(|f| f.starts_with("backend=")));
    let three_bit = crate::OpQuery {
        bits: Some(3),
        ..crate::OpQuery::new(crate::OpKind::GptqMatmul, DType::F16)
    };
    assert!(dev.supports(&three_bit).is_err());
    assert!(
        dev.supports(&crate::OpQuery::new(crate::OpKind::Matmul, DType::I32))
            .is_err()
    );
}

fn assert_close(what: &str, dtype: DType, got: &HostTensor, want: &HostTensor, tol: f64) {
    let (got, want) = (got.to_f64_vec(), want.to_f64_vec());
    assert_eq!(got.len(), want.len(), "{what}");
    assert!(got.iter().all(|v| !v.is_nan()), "{what} {dtype}: NaN");
    let err = rel_err(&got, &want);
    assert!(err < tol, "{what} {dtype}: rel err {err}");
}

/// More rows than one grid dimension holds (2-D dispatch).
#[test]
fn rows_beyond_one_grid_dimension() {
    let Some(dev) = wgpu0() else { return };
    let reference = crate::device("reference").unwrap();
    let rows = 65_535 + 70;
    let x = HostTensor::from_f32(DType::F16, &[rows, 3], &values(rows * 3, 5)).unwrap();
    let w = HostTensor::from_f32(DType::F16, &[3], &[0.5, -1.0, 2.0]).unwrap();
    let params = RmsNormParams::default();
    let got = ops::rms_norm(
        dev.as_ref(),
        &placed(dev.as_ref(), &x, 1, 0),
        &dev.upload_tensor(&w).unwrap(),
        params,
    )
    .unwrap();
    let want = ops::rms_norm(
        reference.as_ref(),
        &reference.upload_tensor(&x).unwrap(),
        &reference.upload_tensor(&w).unwrap(),
        params,
    )
    .unwrap();
    assert_close(
        "rms_norm",
        DType::F16,
        &dev.download_tensor(&got).unwrap(),
        &reference.download_tensor(&want).unwrap(),
        2e-3,
    );
}

/// The largest head dim, several key tiles, window and softcap, for the
/// prefill and the paged kernels.
#[test]
fn head_dim_256_and_long_sequences() {
    let Some(dev) = wgpu0() else { return };
    let reference = crate::device("reference").unwrap();
    let (d, hq, hkv) = (256, 4, 2);
    let (seq_q, seq_k) = ([3usize, 130], [150usize, 200]);
    let (tq, tk) = (seq_q.iter().sum::<usize>(), seq_k.iter().sum::<usize>());
    let cu = |lens: &[usize]| {
        let mut v = vec![0i32];
        for &l in lens {
            v.push(v.last().unwrap() + l as i32);
        }
        v
    };
    let attn = ops::AttentionParams {
        causal: true,
        window_left: 90,
        softcap: 5.0,
        ..Default::default()
    };
    for dtype in [DType::F32, DType::BF16] {
        let q = HostTensor::from_f32(dtype, &[tq, hq, d], &values(tq * hq * d, 7)).unwrap();
        let k = HostTensor::from_f32(dtype, &[tk, hkv, d], &values(tk * hkv * d, 8)).unwrap();
        let v = HostTensor::from_f32(dtype, &[tk, hkv, d], &values(tk * hkv * d, 9)).unwrap();
        let cq = HostTensor::from_i32(&[3], &cu(&seq_q)).unwrap();
        let ck = HostTensor::from_i32(&[3], &cu(&seq_k)).unwrap();
        let run = |b: &dyn Backend| {
            let up = |t: &HostTensor| b.upload_tensor(t).unwrap();
            let lse = b.alloc_tensor(DType::F32, &[hq, tq]).unwrap();
            let out = b.alloc_tensor(dtype, &[tq, hq, d]).unwrap();
            ops::attention_into(
                b,
                &up(&q),
                &up(&k),
                &up(&v),
                &up(&cq),
                &up(&ck),
                &out,
                Some(&lse),
                attn,
            )
            .unwrap();
            (
                b.download_tensor(&out).unwrap(),
                b.download_tensor(&lse).unwrap(),
            )
        };
        let (got, got_lse) = run(dev.as_ref());
        let (want, want_lse) = run(reference.as_ref());
        assert_close("attention", dtype, &got, &want, 2e-2);
        assert_close("attention lse", dtype, &got_lse, &want_lse, 1e-5);

        // Paged: the same keys in blocks of 16 through a shuffled table.
        let (block_size, batch, ctx) = (16, 2, [200usize, 37]);
        let max_blocks = 13;
        let num_blocks = batch * max_blocks;
        let kc = HostTensor::from_f32(
            dtype,
            &[num_blocks, block_size, hkv, d],
            &values(num_blocks * block_size * hkv * d, 10),
        )
        .unwrap();
        let vc = HostTensor::from_f32(
            dtype,
            &[num_blocks, block_size, hkv, d],
            &values(num_blocks * block_size * hkv * d, 11),
        )
        .unwrap();
        let table: Vec<i32> = (0..(batch * max_blocks) as i32)
            .map(|i| (i * 7) % num_blocks as i32)
            .collect();
        let bt = HostTensor::from_i32(&[batch, max_blocks], &table).unwrap();
        let lens = HostTensor::from_i32(&[batch], &[ctx[0] as i32, ctx[1] as i32]).unwrap();
        let qd = HostTensor::from_f32(dtype, &[batch, hq, d], &values(batch * hq * d, 12)).unwrap();
        let run = |b: &dyn Backend| {
            let up = |t: &HostTensor| b.upload_tensor(t).unwrap();
            let out =
                ops::paged_attention(b, &up(&qd), &up(&kc), &up(&vc), &up(&bt), &up(&lens), attn)
                    .unwrap();
            b.download_tensor(&out).unwrap()
        };
        assert_close(
            "paged_attention",
            dtype,
            &run(dev.as_ref()),
            &run(reference.as_ref()),
            2e-2,
        );
    }
    let too_big = crate::OpQuery {
        head_dim: Some(257),
        ..crate::OpQuery::new(crate::OpKind::Attention, DType::F16)
    };
    assert!(dev.supports(&too_big).is_err());
}

/// A tensor larger than the adapter's binding limit fails with a typed
/// error naming the limit. (Grids beyond one dimension: see
/// `rows_beyond_one_grid_dimension`; every kernel reads its workgroup id the
/// same way.)
#[test]
fn binding_limit_is_a_typed_error() {
    let Some(dev) = wgpu0() else { return };
    let max = dev
        .info()
        .features
        .iter()
        .find_map(|f| {
            f.strip_prefix("max_storage_buffer_binding_size=")?
                .parse::<usize>()
                .ok()
        })
        .unwrap();
    let rows = max / 4 / 64 + 1;
    if rows * 64 * 4 > (1 << 31) {
        return; // would exceed ops/' 2^31-element cap first
    }
    let x = dev.alloc_tensor(DType::F32, &[rows, 64]).unwrap();
    let w = dev.alloc_tensor(DType::F32, &[64]).unwrap();
    match ops::rms_norm(dev.as_ref(), &x, &w, RmsNormParams::default()) {
        Err(crate::Error::Unsupported(u)) => {
            assert!(u.reason.contains("max_storage_buffer_binding_size"), "{u}")
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

/// Runs one quantized matmul on a backend: (backend, x, bias) -> out.
type LinearRun<'a> = &'a dyn Fn(&dyn Backend, &Tensor, Option<&Tensor>) -> Tensor;

/// The three quantized matmuls against the reference, every activation
/// dtype, several formats, x at an odd offset, with the official tolerance.
#[test]
fn quantized_matmuls_match_the_reference() {
    use crate::quant::{
        AwqQuantizeParams, AwqWeight, GptqQuantizeParams, GptqWeight, GroupSize, Nvfp4Producer,
        Nvfp4Weight, ZeroFormat,
    };
    let Some(dev) = wgpu0() else { return };
    let reference = crate::device("reference").unwrap();
    let (n, k) = (72, 160);
    let w = HostTensor::from_f32(DType::F32, &[n, k], &values(n * k, 21)).unwrap();
    let perm: Vec<usize> = (0..k).map(|i| (i * 37) % k).collect();
    // 3 rows: the skinny (decode) tiles; 67: the square ones.
    for (m, dtype) in [
        (3, DType::F32),
        (67, DType::F32),
        (3, DType::F16),
        (67, DType::F16),
        (3, DType::BF16),
        (67, DType::BF16),
    ] {
        let x = HostTensor::from_f32(dtype, &[m, k], &values(m * k, 22)).unwrap();
        let bias = HostTensor::from_f32(dtype, &[n], &values(n, 23)).unwrap();
        let tol = crate::ops::tolerance::tolerance(crate::OpKind::GptqMatmul, dtype);
        let check = |what: &str, run: LinearRun<'_>| {
            for with_bias in [false, true] {
                let got = {
                    let dx = placed(dev.as_ref(), &x, 3, 1);
                    let db = with_bias.then(|| dev.upload_tensor(&bias).unwrap());
                    dev.download_tensor(&run(dev.as_ref(), &dx, db.as_ref()))
                        .unwrap()
                };
                let want = {
                    let rx = reference.upload_tensor(&x).unwrap();
                    let rb = with_bias.then(|| reference.upload_tensor(&bias).unwrap());
                    reference
                        .download_tensor(&run(reference.as_ref(), &rx, rb.as_ref()))
                        .unwrap()
                };
                let c = crate::ops::tolerance::compare(&got.to_f64_vec(), &want.to_f64_vec(), tol);
                assert!(c.passed, "{what} {dtype} m {m} bias {with_bias}: {c:?}");
            }
        };
        for (bits, group, sym, act, scale_dtype) in [
            (4, GroupSize::Columns(32), true, false, DType::F16),
            (4, GroupSize::Columns(64), false, true, DType::BF16),
            (8, GroupSize::Columns(32), false, false, DType::F32),
            (8, GroupSize::PerChannel, true, true, DType::F16),
        ] {
            let params = GptqQuantizeParams {
                bits,
                group_size: group,
                sym,
                zero_format: ZeroFormat::V1,
                act_order: act.then(|| perm.clone()),
                scale_dtype,
            };
            let q = GptqWeight::quantize(&w, &params).unwrap();
            let (qd, qr) = (
                q.upload(dev.as_ref()).unwrap(),
                q.upload(reference.as_ref()).unwrap(),
            );
            check(
                &format!("gptq {bits}-bit {group:?} sym {sym} act {act}"),
                &|b, x, bias| {
                    let weight = if b.name() == "reference" { &qr } else { &qd };
                    ops::gptq_matmul(b, x, weight, bias).unwrap()
                },
            );
        }
        for (group, scale_dtype) in [
            (GroupSize::Columns(32), DType::F16),
            (GroupSize::Columns(160), DType::F32),
        ] {
            let q = AwqWeight::quantize(
                &w,
                &AwqQuantizeParams {
                    group_size: group,
                    scale_dtype,
                },
            )
            .unwrap();
            let (qd, qr) = (
                q.upload(dev.as_ref()).unwrap(),
                q.upload(reference.as_ref()).unwrap(),
            );
            check(&format!("awq {group:?}"), &|b, x, bias| {
                let weight = if b.name() == "reference" { &qr } else { &qd };
                ops::awq_matmul(b, x, weight, bias).unwrap()
            });
        }
        for producer in [Nvfp4Producer::ModelOpt, Nvfp4Producer::CompressedTensors] {
            // K = 150 is padded to 160 in the packed rows.
            let w150 = HostTensor::from_f32(DType::F32, &[n, 150], &values(n * 150, 24)).unwrap();
            let x150 = HostTensor::from_f32(dtype, &[m, 150], &values(m * 150, 25)).unwrap();
            let q = Nvfp4Weight::quantize(&w150, producer).unwrap();
            let (qd, qr) = (
                q.upload(dev.as_ref()).unwrap(),
                q.upload(reference.as_ref()).unwrap(),
            );
            let run = |b: &dyn Backend| {
                let weight = if b.name() == "reference" { &qr } else { &qd };
                let xt = if b.name() == "reference" {
                    b.upload_tensor(&x150).unwrap()
                } else {
                    placed(b, &x150, 1, 0)
                };
                b.download_tensor(&ops::nvfp4_matmul(b, &xt, weight, None).unwrap())
                    .unwrap()
            };
            let c = crate::ops::tolerance::compare(
                &run(dev.as_ref()).to_f64_vec(),
                &run(reference.as_ref()).to_f64_vec(),
                tol,
            );
            assert!(c.passed, "nvfp4 {producer:?} {dtype} m {m}: {c:?}");
        }
    }
}

/// A wgpu validation error (here: a launch missing bindings) comes back as a
/// typed device error, and the device keeps working afterwards.
#[test]
fn validation_errors_become_typed_errors() {
    use super::pipelines::{Kernel, kernels::rms_norm};
    let Some(backend) = super::discover_once()
        .iter()
        .find_map(|d| d.status.as_ref().ok().cloned())
    else {
        return;
    };
    let (window, _) = backend.unused_window();
    let kernel = Kernel::RmsNorm(rms_norm::Variant { dt: 0 });
    let err = backend
        .launch(crate::OpKind::RmsNorm, kernel, &[0u8; 32], &[window], 1)
        .unwrap_err();
    eprintln!("captured: {err}");
    assert!(
        matches!(&err, crate::Error::Device { op: "rms_norm", .. }),
        "{err}"
    );
    let dev: &dyn Backend = backend.as_ref();
    let x = HostTensor::from_f32(DType::F32, &[1, 2], &[3.0, 4.0]).unwrap();
    let w = HostTensor::from_f32(DType::F32, &[2], &[1.0, 1.0]).unwrap();
    let params = RmsNormParams {
        eps: 0.0,
        ..Default::default()
    };
    let y = ops::rms_norm(
        dev,
        &dev.upload_tensor(&x).unwrap(),
        &dev.upload_tensor(&w).unwrap(),
        params,
    )
    .unwrap();
    let y = dev.download_tensor(&y).unwrap().to_f32_vec();
    let r = (12.5f32).sqrt();
    assert!(
        (y[0] - 3.0 / r).abs() < 1e-6 && (y[1] - 4.0 / r).abs() < 1e-6,
        "{y:?}"
    );
}

/// An engine's own device and buffers: no copy in, none out.
#[test]
fn caller_owned_device_and_buffers() {
    use ::wgpu as wg;
    if wgpu0().is_none() {
        return;
    }
    let instance = wg::Instance::new(&wg::InstanceDescriptor::from_env_or_default());
    let Some(adapter) = instance
        .enumerate_adapters(wg::Backends::all())
        .into_iter()
        .next()
    else {
        return;
    };
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wg::DeviceDescriptor::default())).unwrap();
    let engine = super::WgpuBackend::from_device("wgpu:engine", &adapter, device, queue).unwrap();
    let (device, queue) = engine.device();
    let usage = wg::BufferUsages::STORAGE | wg::BufferUsages::COPY_SRC | wg::BufferUsages::COPY_DST;
    let make = |contents: &[f32]| {
        let buffer = device.create_buffer(&wg::BufferDescriptor {
            label: None,
            size: (contents.len() * 4) as u64,
            usage,
            mapped_at_creation: false,
        });
        queue.write_buffer(&buffer, 0, bytemuck::cast_slice(contents));
        engine.import_buffer(buffer, contents.len() * 4).unwrap()
    };
    let x = Tensor::from_buffer(make(&[3.0, 4.0]), DType::F32, &[1, 2], 0).unwrap();
    let w = Tensor::from_buffer(make(&[1.0, 2.0]), DType::F32, &[2], 0).unwrap();
    let out = Tensor::from_buffer(make(&[0.0, 0.0]), DType::F32, &[1, 2], 0).unwrap();
    let dev: &dyn Backend = &engine;
    let params = RmsNormParams {
        eps: 0.0,
        ..Default::default()
    };
    ops::rms_norm_into(dev, &x, &w, &out, params).unwrap();
    assert!(engine.wgpu_buffer(out.buffer()).is_some());
    let y = dev.download_tensor(&out).unwrap().to_f32_vec();
    let r = (12.5f32).sqrt();
    assert!(
        (y[0] - 3.0 / r).abs() < 1e-6 && (y[1] - 8.0 / r).abs() < 1e-6,
        "{y:?}"
    );
    // A buffer of another backend is refused, not misread.
    let other = wgpu0().unwrap().alloc(8).unwrap();
    assert!(!dev.owns(&other) && engine.wgpu_buffer(&other).is_none());
}

/// A software adapter (lavapipe here) is listed after the host backends, so
/// `best` never picks it over `cpu` / `reference`.
#[test]
fn software_adapters_never_win_best() {
    let Some(dev) = wgpu0() else { return };
    let info = dev.info();
    eprintln!("{info:#?}");
    if !info.features.iter().any(|f| f.starts_with("type=Cpu")) {
        return;
    }
    let names: Vec<String> = crate::devices().into_iter().map(|e| e.name).collect();
    let position = |name: &str| names.iter().position(|n| n == name).unwrap();
    assert!(position("wgpu:0") > position("reference"), "{names:?}");
    assert_ne!(crate::device("best").unwrap().name(), "wgpu:0");
}
