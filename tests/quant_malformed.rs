//! Bad input never panics: malformed or truncated safetensors bytes, random
//! small tensors of any dtype and shape for the weight constructors, and a
//! typed error for each documented kind of bad weight.

use proptest::prelude::*;
use radiant::cpu::ReferenceBackend;
use radiant::ops;
use radiant::quant::config::{AwqConfig, GptqConfig};
use radiant::quant::{
    AwqLayout, AwqTensors, AwqWeight, Checkpoint, GlobalScale, GptqLayout, GptqQuantizeParams,
    GptqTensors, GptqWeight, GroupSize, Nvfp4Tensors, Nvfp4Weight, ZeroFormat,
};
use radiant::{Backend, DType, Error, HostTensor};

fn st_bytes(tensors: &[(&str, &HostTensor)]) -> Vec<u8> {
    let views: Vec<_> = tensors
        .iter()
        .map(|(name, t)| {
            let view = safetensors::tensor::TensorView::new(
                t.dtype().to_safetensors(),
                t.shape().to_vec(),
                t.bytes(),
            )
            .unwrap();
            (name.to_string(), view)
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

const GPTQ: GptqConfig = GptqConfig {
    bits: 4,
    group_size: GroupSize::Columns(32),
    desc_act: false,
    sym: false,
    zero_format: ZeroFormat::V1,
    static_groups: false,
};

/// A valid GPTQ layer with bias, as safetensors bytes (no prefix).
fn valid_gptq_file() -> Vec<u8> {
    let values: Vec<f32> = (0..32 * 64)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0)
        .collect();
    let w = HostTensor::from_f32(DType::F32, &[32, 64], &values).unwrap();
    let q = GptqWeight::quantize(
        &w,
        &GptqQuantizeParams {
            group_size: GroupSize::Columns(32),
            sym: false,
            ..Default::default()
        },
    )
    .unwrap();
    let bias = HostTensor::from_f32(DType::F16, &[32], &[0.25; 32]).unwrap();
    st_bytes(&[
        ("qweight", q.qweight()),
        ("qzeros", q.qzeros()),
        ("scales", q.scales()),
        ("g_idx", q.g_idx()),
        ("bias", &bias),
    ])
}

/// Tries every loader on a checkpoint; whatever loads must also run.
fn exercise(ckpt: &Checkpoint) {
    let dev = ReferenceBackend::new();
    let dev: &dyn Backend = &dev;
    let x = |k: usize| {
        dev.upload_tensor(&HostTensor::from_f32(DType::F32, &[2, k], &vec![0.5; 2 * k]).unwrap())
            .unwrap()
    };
    if let Ok(l) = ckpt.load_gptq("", &GPTQ) {
        let _ = l.weight.dequantize(DType::F16).unwrap();
        let w = l.weight.upload(dev).unwrap();
        ops::gptq_matmul(dev, &x(w.k()), &w, None).unwrap();
    }
    let awq = AwqConfig {
        group_size: GroupSize::Columns(32),
    };
    if let Ok(l) = ckpt.load_awq("", &awq) {
        let w = l.weight.upload(dev).unwrap();
        ops::awq_matmul(dev, &x(w.k()), &w, None).unwrap();
    }
    if let Ok(l) = ckpt.load_nvfp4("") {
        let w = l.weight.upload(dev).unwrap();
        ops::nvfp4_matmul(dev, &x(w.k()), &w, None).unwrap();
    }
    for name in ckpt.tensor_names() {
        let _ = ckpt.tensor(name);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(ckpt) = Checkpoint::from_bytes(bytes) {
            exercise(&ckpt);
        }
    }

    #[test]
    fn truncated_files_are_errors(cut in 0usize..100_000) {
        let bytes = valid_gptq_file();
        let cut = cut % bytes.len();
        let e = Checkpoint::from_bytes(bytes[..cut].to_vec()).unwrap_err();
        prop_assert!(matches!(e, Error::Format { .. }), "{}", e);
    }

    #[test]
    fn corrupted_files_never_panic(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        digits in prop::collection::vec((any::<usize>(), 0u8..10), 0..4),
    ) {
        let mut bytes = valid_gptq_file();
        let len = bytes.len();
        for (at, value) in edits {
            bytes[at % len] = value;
        }
        // Rewrite digits inside the JSON header: shapes and offsets change
        // while the header stays parseable.
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()).min(len as u64 - 8) as usize;
        let positions: Vec<usize> = (8..8 + header_len).filter(|&i| bytes[i].is_ascii_digit()).collect();
        if !positions.is_empty() {
            for (at, digit) in digits {
                bytes[positions[at % positions.len()]] = b'0' + digit;
            }
        }
        if let Ok(ckpt) = Checkpoint::from_bytes(bytes) {
            exercise(&ckpt);
        }
    }
}

// ---------------------------------------------------------------------------
// Random small weights straight into the constructors.

fn arb_tensor() -> impl Strategy<Value = HostTensor> {
    let dtypes = prop::sample::select(vec![
        DType::I32,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::U8,
        DType::F8E4M3,
    ]);
    (
        dtypes,
        prop::collection::vec(0usize..10, 0..3),
        any::<u64>(),
    )
        .prop_map(|(dtype, shape, seed)| {
            let n: usize = shape.iter().product::<usize>() * dtype.size_in_bytes();
            let mut s = seed | 1;
            let bytes = (0..n)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    s as u8
                })
                .collect();
            HostTensor::from_bytes(dtype, &shape, bytes).unwrap()
        })
}

fn arb_group() -> impl Strategy<Value = GroupSize> {
    prop_oneof![
        Just(GroupSize::PerChannel),
        (0usize..40).prop_map(GroupSize::Columns)
    ]
}

/// A xorshift stream from a proptest seed (contents need not shrink).
fn stream(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

fn random_words(shape: &[usize], next: &mut impl FnMut() -> u64) -> HostTensor {
    let count: usize = shape.iter().product();
    HostTensor::from_i32(
        shape,
        &(0..count).map(|_| next() as i32).collect::<Vec<_>>(),
    )
    .unwrap()
}

/// Finite positive f16 scales, or any bits at all when `wild`.
fn random_scales(shape: &[usize], wild: bool, next: &mut impl FnMut() -> u64) -> HostTensor {
    let count: usize = shape.iter().product();
    let bytes = (0..count)
        .flat_map(|_| {
            let bits = next() as u16;
            (if wild { bits } else { bits % 0x7C00 }).to_le_bytes()
        })
        .collect();
    HostTensor::from_bytes(DType::F16, shape, bytes).unwrap()
}

/// Small GPTQ tensors with random contents and shapes that are right more
/// often than not, so the checks past the shapes get exercised too.
fn arb_gptq() -> impl Strategy<Value = (GptqTensors, GptqLayout)> {
    (
        prop::sample::select(vec![3u32, 4, 4, 8, 8]),
        1usize..3,
        1usize..3,
        prop::sample::select(vec![
            GroupSize::PerChannel,
            GroupSize::Columns(8),
            GroupSize::Columns(16),
            GroupSize::Columns(5),
        ]),
        any::<u64>(),
        any::<bool>(),
        0u8..8,
    )
        .prop_map(|(bits, kw, nw, group_size, seed, v2, flaw)| {
            let pf = if bits == 8 { 4 } else { 8 };
            let (k, n) = (kw * pf, nw * pf);
            let g = group_size.groups(k).max(1);
            let mut next = stream(seed);
            let g_idx: Vec<i32> = (0..k)
                .map(|_| (next() % (g as u64 + u64::from(flaw == 1))) as i32)
                .collect();
            let tensors = GptqTensors {
                qweight: random_words(&[k / pf, n], &mut next),
                qzeros: random_words(&[g, n / pf], &mut next),
                scales: random_scales(&[g, n], flaw == 2, &mut next),
                g_idx: if flaw == 3 {
                    None
                } else {
                    Some(HostTensor::from_i32(&[k], &g_idx).unwrap())
                },
            };
            let zero_format = if v2 { ZeroFormat::V2 } else { ZeroFormat::V1 };
            (
                tensors,
                GptqLayout {
                    bits,
                    group_size,
                    zero_format,
                },
            )
        })
}

/// Small AWQ tensors, mostly consistent, random contents.
fn arb_awq() -> impl Strategy<Value = (AwqTensors, AwqLayout)> {
    (
        1usize..4,
        1usize..3,
        prop::sample::select(vec![8usize, 16, 12]),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(kg, nw, gs, seed, wild)| {
            let (k, n) = (kg * 16, nw * 8);
            let g = k.div_ceil(gs);
            let mut next = stream(seed);
            let tensors = AwqTensors {
                qweight: random_words(&[k, n / 8], &mut next),
                qzeros: random_words(&[g, n / 8], &mut next),
                scales: random_scales(&[g, n], wild, &mut next),
            };
            (
                tensors,
                AwqLayout {
                    group_size: GroupSize::Columns(gs),
                },
            )
        })
}

/// Small NVFP4 tensors with random bytes (NaN scale bytes included) and a
/// random global scale.
fn arb_nvfp4() -> impl Strategy<Value = (Nvfp4Tensors, Option<usize>)> {
    (
        1usize..4,
        1usize..4,
        any::<u64>(),
        any::<u32>(),
        any::<bool>(),
        prop::option::of(0usize..70),
    )
        .prop_map(|(blocks, n, seed, global, divisor, k)| {
            let mut next = stream(seed);
            let mut bytes = |count: usize| (0..count).map(|_| next() as u8).collect::<Vec<_>>();
            let g = if global % 4 == 0 {
                f32::from_bits(global)
            } else {
                (global % 1000 + 1) as f32 / 256.0
            };
            let tensors = Nvfp4Tensors {
                weight_packed: HostTensor::from_u8(
                    DType::U8,
                    &[n, blocks * 8],
                    bytes(n * blocks * 8),
                )
                .unwrap(),
                weight_scale: HostTensor::from_u8(DType::F8E4M3, &[n, blocks], bytes(n * blocks))
                    .unwrap(),
                global_scale: if divisor {
                    GlobalScale::Divisor(g)
                } else {
                    GlobalScale::Multiplier(g)
                },
            };
            (tensors, k)
        })
}

fn run_all(
    dev: &dyn Backend,
    gptq: Option<GptqWeight>,
    awq: Option<AwqWeight>,
    nv: Option<Nvfp4Weight>,
) {
    let x = |k: usize| {
        dev.upload_tensor(&HostTensor::from_f32(DType::F16, &[1, k], &vec![1.0; k]).unwrap())
            .unwrap()
    };
    if let Some(w) = gptq {
        let _ = (w.codes(), w.zeros(), w.is_act_order(), w.is_symmetric());
        let d = w.upload(dev).unwrap();
        ops::gptq_matmul(dev, &x(w.k()), &d, None).unwrap();
    }
    if let Some(w) = awq {
        let d = w.upload(dev).unwrap();
        ops::awq_matmul(dev, &x(w.k()), &d, None).unwrap();
    }
    if let Some(w) = nv {
        let d = w.upload(dev).unwrap();
        ops::nvfp4_matmul(dev, &x(w.k()), &d, None).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_gptq_structs_never_panic(
        (tensors, layout) in arb_gptq(),
        swap in prop::option::of(arb_tensor()),
        which in 0usize..4,
    ) {
        let mut tensors = tensors;
        if let Some(t) = swap {
            match which {
                0 => tensors.qweight = t,
                1 => tensors.qzeros = t,
                2 => tensors.scales = t,
                _ => tensors.g_idx = Some(t),
            }
        }
        let dev = ReferenceBackend::new();
        if let Ok(w) = GptqWeight::new(tensors, layout) {
            run_all(&dev, Some(w), None, None);
        }
    }

    #[test]
    fn random_awq_and_nvfp4_structs_never_panic(
        (awq, layout) in arb_awq(),
        (nv, k) in arb_nvfp4(),
        a in arb_tensor(), b in arb_tensor(), c in arb_tensor(),
        global in any::<u32>(), which in 0usize..8,
    ) {
        let dev = ReferenceBackend::new();
        let awq = AwqWeight::new(awq, layout).ok();
        let nv = match k {
            Some(k) => Nvfp4Weight::with_in_features(nv, k),
            None => Nvfp4Weight::new(nv),
        }.ok();
        run_all(&dev, None, awq, nv);
        // Entirely random tensors: almost always refused, never a panic.
        let g = f32::from_bits(global);
        let global_scale = if which % 2 == 0 { GlobalScale::Divisor(g) } else { GlobalScale::Multiplier(g) };
        let awq = AwqWeight::new(
            AwqTensors { qweight: a.clone(), qzeros: b.clone(), scales: c },
            AwqLayout { group_size: GroupSize::Columns(which) },
        ).ok();
        let nv = Nvfp4Weight::new(Nvfp4Tensors { weight_packed: a, weight_scale: b, global_scale }).ok();
        run_all(&dev, None, awq, nv);
    }

    #[test]
    fn random_quantize_inputs_never_panic(
        w in arb_tensor(),
        bits in prop::sample::select(vec![0u32, 4, 8, 9]),
        group_size in arb_group(),
        sym in any::<bool>(),
    ) {
        let params = GptqQuantizeParams { bits, group_size, sym, ..Default::default() };
        let _ = GptqWeight::quantize(&w, &params);
        let _ = AwqWeight::quantize(&w, &radiant::quant::AwqQuantizeParams { group_size, scale_dtype: DType::F16 });
        let _ = Nvfp4Weight::quantize(&w, radiant::quant::Nvfp4Producer::ModelOpt);
        let _ = Nvfp4Weight::quantize(&w, radiant::quant::Nvfp4Producer::CompressedTensors);
    }
}

// ---------------------------------------------------------------------------
// One typed error per documented kind of bad weight.

fn invalid_arg(e: Error) -> &'static str {
    match e {
        Error::InvalidArgument { arg, .. } => arg,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

/// A consistent 4-bit, K = 64, N = 16, group 32 GPTQ layer.
fn gptq_tensors() -> GptqTensors {
    GptqTensors {
        qweight: HostTensor::from_i32(&[8, 16], &[0x1234_5678; 128]).unwrap(),
        qzeros: HostTensor::from_i32(&[2, 2], &[0x7777_7777; 4]).unwrap(),
        scales: HostTensor::from_f32(DType::F16, &[2, 16], &[0.01; 32]).unwrap(),
        g_idx: Some(
            HostTensor::from_i32(&[64], &(0..64).map(|i| i / 32).collect::<Vec<_>>()).unwrap(),
        ),
    }
}

const LAYOUT: GptqLayout = GptqLayout {
    bits: 4,
    group_size: GroupSize::Columns(32),
    zero_format: ZeroFormat::V1,
};

#[test]
fn gptq_bad_weights_are_typed_errors() {
    GptqWeight::new(gptq_tensors(), LAYOUT).unwrap();
    let with = |f: &dyn Fn(&mut GptqTensors), layout: GptqLayout| {
        let mut t = gptq_tensors();
        f(&mut t);
        invalid_arg(GptqWeight::new(t, layout).unwrap_err())
    };
    let nothing = |_: &mut GptqTensors| {};
    assert_eq!(with(&nothing, GptqLayout { bits: 3, ..LAYOUT }), "bits");
    assert_eq!(with(&nothing, GptqLayout { bits: 2, ..LAYOUT }), "bits");
    assert_eq!(
        with(
            &nothing,
            GptqLayout {
                group_size: GroupSize::Columns(0),
                ..LAYOUT
            }
        ),
        "group_size"
    );
    assert_eq!(
        with(
            &nothing,
            GptqLayout {
                group_size: GroupSize::Columns(16),
                ..LAYOUT
            }
        ),
        "scales"
    );
    assert_eq!(
        with(
            &|t| t.g_idx = Some(HostTensor::from_i32(&[64], &[2; 64]).unwrap()),
            LAYOUT
        ),
        "g_idx",
        "g_idx entries must be < G"
    );
    assert_eq!(
        with(
            &|t| t.g_idx = Some(HostTensor::from_i32(&[64], &[-1; 64]).unwrap()),
            LAYOUT
        ),
        "g_idx"
    );
    assert_eq!(
        with(
            &|t| t.g_idx = Some(HostTensor::from_i32(&[32], &[0; 32]).unwrap()),
            LAYOUT
        ),
        "g_idx"
    );
    assert_eq!(
        with(
            &|t| t.qzeros = HostTensor::from_i32(&[2, 3], &[0; 6]).unwrap(),
            LAYOUT
        ),
        "qzeros"
    );
    assert_eq!(
        with(
            &|t| t.qweight = HostTensor::from_f32(DType::F32, &[8, 16], &[0.0; 128]).unwrap(),
            LAYOUT
        ),
        "qweight",
        "wrong dtype"
    );
    assert_eq!(
        with(
            &|t| t.qweight = HostTensor::from_i32(&[8, 12], &[0; 96]).unwrap(),
            LAYOUT
        ),
        "qweight",
        "N % 8"
    );
    assert_eq!(
        with(
            &|t| t.qweight = HostTensor::from_i32(&[128], &[0; 128]).unwrap(),
            LAYOUT
        ),
        "qweight",
        "rank"
    );
    assert_eq!(
        with(
            &|t| t.scales = HostTensor::zeros(DType::I32, &[2, 16]).unwrap(),
            LAYOUT
        ),
        "scales"
    );
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut values = [0.01f32; 32];
        values[5] = bad;
        let scales = HostTensor::from_f32(DType::F16, &[2, 16], &values).unwrap();
        assert_eq!(
            with(&|t| t.scales = scales.clone(), LAYOUT),
            "scales",
            "{bad} scale"
        );
    }
    let empty = GptqTensors {
        qweight: HostTensor::from_i32(&[0, 16], &[]).unwrap(),
        ..gptq_tensors()
    };
    assert!(GptqWeight::new(empty, LAYOUT).is_err());
}

#[test]
fn awq_and_nvfp4_bad_weights_are_typed_errors() {
    let awq = |k: usize, n: usize, g: usize, group: GroupSize| {
        AwqWeight::new(
            AwqTensors {
                qweight: HostTensor::from_i32(&[k, n / 8], &vec![0; k * n / 8]).unwrap(),
                qzeros: HostTensor::from_i32(&[g, n / 8], &vec![0; g * n / 8]).unwrap(),
                scales: HostTensor::from_f32(DType::F16, &[g, n], &vec![0.1; g * n]).unwrap(),
            },
            AwqLayout { group_size: group },
        )
    };
    awq(64, 16, 2, GroupSize::Columns(32)).unwrap();
    assert_eq!(
        invalid_arg(awq(64, 16, 2, GroupSize::Columns(48)).unwrap_err()),
        "group_size",
        "48 does not divide 64"
    );
    assert_eq!(
        invalid_arg(awq(64, 16, 3, GroupSize::Columns(32)).unwrap_err()),
        "scales"
    );

    let nv = |bytes: Vec<u8>, global: GlobalScale| {
        Nvfp4Weight::new(Nvfp4Tensors {
            weight_packed: HostTensor::from_u8(DType::U8, &[2, 16], vec![0x11; 32]).unwrap(),
            weight_scale: HostTensor::from_u8(DType::F8E4M3, &[2, 2], bytes).unwrap(),
            global_scale: global,
        })
    };
    nv(vec![0x38; 4], GlobalScale::Multiplier(1.0)).unwrap();
    assert_eq!(
        invalid_arg(nv(vec![0x38, 0x7F, 0x38, 0x38], GlobalScale::Multiplier(1.0)).unwrap_err()),
        "weight_scale"
    );
    assert_eq!(
        invalid_arg(nv(vec![0xFF; 4], GlobalScale::Divisor(1.0)).unwrap_err()),
        "weight_scale"
    );
    for g in [0.0, -1.0, f32::NAN, f32::INFINITY, 1e38] {
        assert_eq!(
            invalid_arg(nv(vec![0x38; 4], GlobalScale::Multiplier(g)).unwrap_err()),
            "global_scale",
            "g = {g}"
        );
    }
    for d in [0.0, -2.0, f32::NAN, f32::INFINITY, 1e-40] {
        assert_eq!(
            invalid_arg(nv(vec![0x38; 4], GlobalScale::Divisor(d)).unwrap_err()),
            "global_scale",
            "d = {d}"
        );
    }
    // K must fill the packed rows (rounded up to 16).
    let t = Nvfp4Tensors {
        weight_packed: HostTensor::from_u8(DType::U8, &[2, 16], vec![0; 32]).unwrap(),
        weight_scale: HostTensor::from_u8(DType::F8E4M3, &[2, 2], vec![0x38; 4]).unwrap(),
        global_scale: GlobalScale::Multiplier(1.0),
    };
    assert!(
        Nvfp4Weight::with_in_features(t.clone(), 20).is_ok(),
        "K = 20 padded to 32"
    );
    assert_eq!(
        invalid_arg(Nvfp4Weight::with_in_features(t.clone(), 16).unwrap_err()),
        "weight_packed"
    );
    assert!(Nvfp4Weight::with_in_features(t, 0).is_err());
}

#[test]
fn loader_reports_files_and_layers() {
    // A checkpoint whose g_idx is out of range: a Format error naming the layer.
    let mut t = gptq_tensors();
    t.g_idx = Some(HostTensor::from_i32(&[64], &[7; 64]).unwrap());
    let bytes = st_bytes(&[
        ("l.qweight", &t.qweight),
        ("l.qzeros", &t.qzeros),
        ("l.scales", &t.scales),
        ("l.g_idx", t.g_idx.as_ref().unwrap()),
    ]);
    let ckpt = Checkpoint::from_bytes(bytes).unwrap();
    let cfg = GptqConfig {
        group_size: GroupSize::Columns(32),
        ..GPTQ
    };
    match ckpt.load_gptq("l", &cfg) {
        Err(Error::Format { path, reason }) => {
            assert!(path.contains("layer `l`"), "{path}");
            assert!(reason.contains("g_idx"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Missing tensors.
    assert!(matches!(
        ckpt.load_gptq("m", &cfg),
        Err(Error::Format { .. })
    ));
    // A dtype radiant does not read.
    let header = br#"{"t":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 8]);
    let ckpt = Checkpoint::from_bytes(bytes).unwrap();
    assert!(matches!(ckpt.tensor("t"), Err(Error::Format { .. })));
}
