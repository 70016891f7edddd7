//! The quantized matmuls on the reference backend: each equals the dense
//! `ops::matmul` with the dequantized weight rounded to x's dtype (bit for
//! bit: both are the same f64 sum rounded once), leading dims of x are
//! flattened, and every invalid argument is a typed error.

use radiant::cpu::ReferenceBackend;
use radiant::ops::{self, BLayout, MatmulParams, OpKind};
use radiant::quant::{
    AwqQuantizeParams, AwqWeight, GptqQuantizeParams, GptqWeight, GroupSize, Nvfp4Producer,
    Nvfp4Weight, ZeroFormat,
};
use radiant::{Backend, DType, Error, HostTensor, Tensor};

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn random(seed: u64, dtype: DType, shape: &[usize], scale: f32) -> HostTensor {
    let mut rng = Rng(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.uniform() * scale).collect();
    HostTensor::from_f32(dtype, shape, &values).unwrap()
}

/// One weight of each format, N = 48, K = 128.
enum Weight {
    Gptq(GptqWeight),
    Awq(AwqWeight),
    Nvfp4(Nvfp4Weight),
}

fn weights() -> Vec<Weight> {
    let w = random(1, DType::F32, &[48, 128], 0.05);
    vec![
        Weight::Gptq(
            GptqWeight::quantize(
                &w,
                &GptqQuantizeParams {
                    bits: 4,
                    group_size: GroupSize::Columns(32),
                    sym: false,
                    zero_format: ZeroFormat::V1,
                    act_order: Some((0..128).rev().collect()),
                    scale_dtype: DType::F16,
                },
            )
            .unwrap(),
        ),
        Weight::Gptq(
            GptqWeight::quantize(
                &w,
                &GptqQuantizeParams {
                    bits: 8,
                    group_size: GroupSize::PerChannel,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        Weight::Awq(
            AwqWeight::quantize(
                &w,
                &AwqQuantizeParams {
                    group_size: GroupSize::Columns(64),
                    scale_dtype: DType::BF16,
                },
            )
            .unwrap(),
        ),
        Weight::Nvfp4(Nvfp4Weight::quantize(&w, Nvfp4Producer::ModelOpt).unwrap()),
        Weight::Nvfp4(Nvfp4Weight::quantize(&w, Nvfp4Producer::CompressedTensors).unwrap()),
    ]
}

impl Weight {
    fn op(&self) -> OpKind {
        match self {
            Weight::Gptq(_) => OpKind::GptqMatmul,
            Weight::Awq(_) => OpKind::AwqMatmul,
            Weight::Nvfp4(_) => OpKind::Nvfp4Matmul,
        }
    }

    fn dequantize(&self, dtype: DType) -> HostTensor {
        match self {
            Weight::Gptq(w) => w.dequantize(dtype),
            Weight::Awq(w) => w.dequantize(dtype),
            Weight::Nvfp4(w) => w.dequantize(dtype),
        }
        .unwrap()
    }

    /// Uploads the weight and runs its op into `out`.
    fn run_into(
        &self,
        dev: &dyn Backend,
        x: &Tensor,
        bias: Option<&Tensor>,
        out: &Tensor,
    ) -> radiant::Result<()> {
        match self {
            Weight::Gptq(w) => ops::gptq_matmul_into(dev, x, &w.upload(dev)?, bias, out),
            Weight::Awq(w) => ops::awq_matmul_into(dev, x, &w.upload(dev)?, bias, out),
            Weight::Nvfp4(w) => ops::nvfp4_matmul_into(dev, x, &w.upload(dev)?, bias, out),
        }
    }

    fn run(&self, dev: &dyn Backend, x: &Tensor, bias: Option<&Tensor>) -> radiant::Result<Tensor> {
        match self {
            Weight::Gptq(w) => ops::gptq_matmul(dev, x, &w.upload(dev)?, bias),
            Weight::Awq(w) => ops::awq_matmul(dev, x, &w.upload(dev)?, bias),
            Weight::Nvfp4(w) => ops::nvfp4_matmul(dev, x, &w.upload(dev)?, bias),
        }
    }
}

#[test]
fn reference_op_equals_dense_matmul_with_the_dequantized_weight() {
    let dev = ReferenceBackend::new();
    let dev: &dyn Backend = &dev;
    for (i, weight) in weights().iter().enumerate() {
        for dtype in DType::FLOATS {
            for (x_shape, with_bias) in [(&[5usize, 128][..], false), (&[2, 3, 128][..], true)] {
                let x = dev
                    .upload_tensor(&random(10 + i as u64, dtype, x_shape, 1.0))
                    .unwrap();
                let bias =
                    with_bias.then(|| dev.upload_tensor(&random(20, dtype, &[48], 0.1)).unwrap());
                let y = weight.run(dev, &x, bias.as_ref()).unwrap();
                let mut want_shape = x_shape.to_vec();
                *want_shape.last_mut().unwrap() = 48;
                assert_eq!(y.shape(), &want_shape[..]);

                // Dense: x flattened to [M, K] times the weight rounded to x's dtype.
                let m: usize = x_shape[..x_shape.len() - 1].iter().product();
                let x2 = x.reshape(&[m, 128]).unwrap();
                let w = dev.upload_tensor(&weight.dequantize(dtype)).unwrap();
                let params = MatmulParams {
                    b_layout: BLayout::Nk,
                };
                let dense = ops::matmul(dev, &x2, &w, bias.as_ref(), params).unwrap();
                let got = dev.download_tensor(&y).unwrap();
                let want = dev.download_tensor(&dense).unwrap();
                assert_eq!(
                    got.bytes(),
                    want.bytes(),
                    "{} weight {i}, {dtype}, x {x_shape:?}",
                    weight.op()
                );
            }
        }
    }
}

#[test]
fn f16_activations_see_f16_rounded_weights() {
    // The contract: W is rounded to x's dtype before the product. With f32
    // x the exact f32 weight is used; the two outputs differ.
    let dev = ReferenceBackend::new();
    let dev: &dyn Backend = &dev;
    let weight = &weights()[3]; // NVFP4: f32 products are not f16-exact
    let x32 = random(5, DType::F32, &[4, 128], 1.0);
    let x16 = x32.to_dtype(DType::F16).unwrap();
    let x32 = x32
        .to_dtype(DType::F16)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap(); // same values
    let y32 = weight
        .run(dev, &dev.upload_tensor(&x32).unwrap(), None)
        .unwrap();
    let y16 = weight
        .run(dev, &dev.upload_tensor(&x16).unwrap(), None)
        .unwrap();
    let w16 = weight.dequantize(DType::F16).to_f64_vec();
    let x = x16.to_f64_vec();
    let y16 = dev.download_tensor(&y16).unwrap().to_f64_vec();
    for i in 0..4 {
        for j in 0..48 {
            let exact: f64 = (0..128).map(|k| x[i * 128 + k] * w16[j * 128 + k]).sum();
            assert_eq!(y16[i * 48 + j], DType::F16.round(exact));
        }
    }
    let y32 = dev.download_tensor(&y32).unwrap().to_f64_vec();
    assert_ne!(
        y32,
        y16.iter().map(|&v| DType::F32.round(v)).collect::<Vec<_>>()
    );
}

fn expect_invalid(result: radiant::Result<()>, arg: &str) {
    match result {
        Err(Error::InvalidArgument { arg: a, .. }) if a == arg => {}
        other => panic!("expected InvalidArgument on `{arg}`, got {other:?}"),
    }
}

#[test]
fn invalid_arguments_are_typed_errors() {
    let dev = ReferenceBackend::new();
    let dev: &dyn Backend = &dev;
    for weight in weights() {
        let x = dev
            .upload_tensor(&random(1, DType::F16, &[3, 128], 1.0))
            .unwrap();
        let out = dev.alloc_tensor(DType::F16, &[3, 48]).unwrap();
        weight.run_into(dev, &x, None, &out).unwrap();

        // Wrong K.
        let x_bad = dev
            .upload_tensor(&random(1, DType::F16, &[3, 64], 1.0))
            .unwrap();
        expect_invalid(weight.run_into(dev, &x_bad, None, &out), "x");
        // Rank 1.
        let x1 = dev
            .upload_tensor(&random(1, DType::F16, &[128], 1.0))
            .unwrap();
        expect_invalid(weight.run_into(dev, &x1, None, &out), "x");
        // Not a float.
        let xi = dev
            .upload_tensor(&HostTensor::zeros(DType::I32, &[3, 128]).unwrap())
            .unwrap();
        expect_invalid(weight.run_into(dev, &xi, None, &out), "x");
        assert!(weight.run(dev, &xi, None).is_err());
        // out: wrong dtype, wrong shape.
        let out32 = dev.alloc_tensor(DType::F32, &[3, 48]).unwrap();
        expect_invalid(weight.run_into(dev, &x, None, &out32), "out");
        let out_bad = dev.alloc_tensor(DType::F16, &[3, 47]).unwrap();
        expect_invalid(weight.run_into(dev, &x, None, &out_bad), "out");
        // bias: wrong dtype, wrong shape.
        let b32 = dev
            .upload_tensor(&random(2, DType::F32, &[48], 1.0))
            .unwrap();
        expect_invalid(weight.run_into(dev, &x, Some(&b32), &out), "bias");
        let b_bad = dev
            .upload_tensor(&random(2, DType::F16, &[47], 1.0))
            .unwrap();
        expect_invalid(weight.run_into(dev, &x, Some(&b_bad), &out), "bias");
        // Not contiguous.
        let strided =
            Tensor::from_buffer_strided(x.buffer().clone(), DType::F16, &[3, 64], &[128, 2], 0)
                .unwrap();
        let out_s = dev.alloc_tensor(DType::F16, &[3, 48]).unwrap();
        assert!(weight.run_into(dev, &strided, None, &out_s).is_err());
        // A huge zero-stride view of x is refused by the op itself, before
        // any output is allocated.
        let huge = Tensor::from_buffer_strided(
            x.buffer().clone(),
            DType::F16,
            &[1 << 40, 128],
            &[0, 1],
            0,
        )
        .unwrap();
        match weight.run(dev, &huge, None) {
            Err(Error::InvalidArgument { op, arg: "x", .. }) => assert_eq!(op, weight.op().name()),
            other => panic!("expected InvalidArgument on x, got {other:?}"),
        }
    }
}

#[test]
fn output_aliasing_is_rejected() {
    let dev = ReferenceBackend::new();
    let dev: &dyn Backend = &dev;
    // N = K = 128 so that out can be a view of x's buffer.
    let w = random(3, DType::F32, &[128, 128], 0.05);
    let gptq = GptqWeight::quantize(&w, &GptqQuantizeParams::default()).unwrap();
    let device = gptq.upload(dev).unwrap();
    let x = dev
        .upload_tensor(&random(1, DType::F32, &[2, 128], 1.0))
        .unwrap();
    let r = ops::gptq_matmul_into(dev, &x, &device, None, &x);
    expect_invalid(r, "out");
    // out over the bias.
    let bias = dev
        .upload_tensor(&random(2, DType::F32, &[2, 128], 1.0))
        .unwrap();
    let bias_row = bias.reshape(&[256]).unwrap();
    let bias_view = Tensor::from_buffer(bias_row.buffer().clone(), DType::F32, &[128], 0).unwrap();
    expect_invalid(
        ops::gptq_matmul_into(dev, &x, &device, Some(&bias_view), &bias),
        "out",
    );
    // out over one of the weight's own tensors (the f32 scales here have
    // [1, 128] elements: view them as a [1, 128] f32 output).
    let gptq32 = GptqWeight::quantize(
        &w,
        &GptqQuantizeParams {
            group_size: GroupSize::PerChannel,
            scale_dtype: DType::F32,
            ..Default::default()
        },
    )
    .unwrap()
    .upload(dev)
    .unwrap();
    let x1 = dev
        .upload_tensor(&random(1, DType::F32, &[1, 128], 1.0))
        .unwrap();
    let over_scales = gptq32.scales().clone();
    expect_invalid(
        ops::gptq_matmul_into(dev, &x1, &gptq32, None, &over_scales),
        "out",
    );
}

#[test]
fn problems_report_query_bits_and_counts() {
    let dev = ReferenceBackend::new();
    let dev: &dyn Backend = &dev;
    let w = random(3, DType::F32, &[64, 128], 0.05);
    for bits in [4u32, 8] {
        let gptq = GptqWeight::quantize(
            &w,
            &GptqQuantizeParams {
                bits,
                ..Default::default()
            },
        )
        .unwrap()
        .upload(dev)
        .unwrap();
        let x = dev
            .upload_tensor(&random(1, DType::BF16, &[2, 5, 128], 1.0))
            .unwrap();
        let out = dev.alloc_tensor(DType::BF16, &[2, 5, 64]).unwrap();
        let p = ops::gptq_matmul::validate(dev, &x, &gptq, None, &out).unwrap();
        let q = p.query();
        assert_eq!(
            (q.op, q.dtype, q.bits),
            (OpKind::GptqMatmul, DType::BF16, Some(bits))
        );
        assert_eq!((p.m, p.n, p.k), (10, 64, 128));
        assert_eq!(p.flops(), 2.0 * 10.0 * 64.0 * 128.0);
        let packed = 128 * 64 * bits as usize / 8;
        let scales = 64 * 2; // one group of f16 scales
        let zeros = 64 * bits as usize / 8;
        let g_idx = 128 * 4;
        let x_out = (10 * 128 + 10 * 64) * 2;
        assert_eq!(p.bytes(), (packed + scales + zeros + g_idx + x_out) as f64);
    }
    let awq = AwqWeight::quantize(&w, &AwqQuantizeParams::default())
        .unwrap()
        .upload(dev)
        .unwrap();
    let x = dev
        .upload_tensor(&random(1, DType::F32, &[2, 128], 1.0))
        .unwrap();
    let out = dev.alloc_tensor(DType::F32, &[2, 64]).unwrap();
    assert_eq!(
        ops::awq_matmul::validate(dev, &x, &awq, None, &out)
            .unwrap()
            .query()
            .bits,
        Some(4)
    );
    let nv = Nvfp4Weight::quantize(&w, Nvfp4Producer::ModelOpt)
        .unwrap()
        .upload(dev)
        .unwrap();
    let p = ops::nvfp4_matmul::validate(dev, &x, &nv, None, &out).unwrap();
    assert_eq!(p.query().op, OpKind::Nvfp4Matmul);
    assert_eq!(
        p.bytes(),
        (64 * 64 + 64 * 8 + 2 * 128 * 4 + 2 * 64 * 4) as f64
    );
}

#[test]
fn device_weights_round_trip_and_normalize_v1_zeros() {
    let dev = ReferenceBackend::new();
    let dev: &dyn Backend = &dev;
    let w = random(3, DType::F32, &[32, 64], 0.05);
    let params = GptqQuantizeParams {
        group_size: GroupSize::Columns(32),
        sym: false,
        zero_format: ZeroFormat::V1,
        act_order: Some((0..64).rev().collect()),
        ..Default::default()
    };
    let host = GptqWeight::quantize(&w, &params).unwrap();
    let device = host.upload(dev).unwrap();
    assert_eq!(device.source_zero_format(), ZeroFormat::V1);
    assert!(device.is_act_order());
    assert!(!device.is_symmetric());
    assert_eq!(
        (device.k(), device.n(), device.groups(), device.bits()),
        (64, 32, 2, 4)
    );
    // The device copy holds v2 words; it dequantizes to the same weight.
    let back = device.download(dev).unwrap();
    assert_eq!(back.zero_format(), ZeroFormat::V2);
    assert_eq!(back, host.with_zero_format(ZeroFormat::V2));
    assert_eq!(back.dequantize_f32(), host.dequantize_f32());
}

#[test]
fn a_weight_corrupted_on_the_device_is_an_error_not_a_panic() {
    let dev = ReferenceBackend::new();
    let dev: &dyn Backend = &dev;
    let w = random(3, DType::F32, &[32, 64], 0.05);
    let device = GptqWeight::quantize(&w, &GptqQuantizeParams::default())
        .unwrap()
        .upload(dev)
        .unwrap();
    // Overwrite g_idx[0] with a group that does not exist.
    dev.upload(device.g_idx().buffer(), 0, &1000i32.to_le_bytes())
        .unwrap();
    let x = dev
        .upload_tensor(&random(1, DType::F32, &[1, 64], 1.0))
        .unwrap();
    match ops::gptq_matmul(dev, &x, &device, None) {
        Err(Error::Device { op, .. }) => assert_eq!(op, "gptq_matmul"),
        other => panic!("expected a device error, got {other:?}"),
    }
}

#[test]
fn backends_without_a_kernel_refuse_with_unsupported() {
    // Every available backend either runs the op or refuses it with a typed
    // Unsupported error (a backend without a quantized kernel).
    let w = random(3, DType::F32, &[32, 64], 0.05);
    let host = GptqWeight::quantize(&w, &GptqQuantizeParams::default()).unwrap();
    for entry in radiant::devices() {
        let Ok(dev) = entry.status else { continue };
        let dev = dev.as_ref();
        let x = dev
            .upload_tensor(&random(1, DType::F32, &[1, 64], 1.0))
            .unwrap();
        let weight = host.upload(dev).unwrap();
        match ops::gptq_matmul(dev, &x, &weight, None) {
            Ok(_) | Err(Error::Unsupported(_)) => {}
            Err(other) => panic!("{}: {other}", entry.name),
        }
    }
}
