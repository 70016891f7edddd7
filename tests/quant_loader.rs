//! Checkpoint loading by real tensor names: configs from the three config
//! files, sharded checkpoints through model.safetensors.index.json, single
//! files, in-memory bytes, and the typed errors for bad checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use radiant::quant::config::{GptqConfig, Nvfp4Config};
use radiant::quant::{
    AwqQuantizeParams, AwqWeight, Checkpoint, GlobalScale, GptqQuantizeParams, GptqWeight,
    GroupSize, Nvfp4Producer, Nvfp4Weight, QuantConfig, QuantLinear, ZeroFormat,
};
use radiant::{DType, Error, HostTensor};

fn st_bytes(tensors: &[(String, &HostTensor)]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            let view = safetensors::tensor::TensorView::new(
                t.dtype().to_safetensors(),
                t.shape().to_vec(),
                t.bytes(),
            )
            .unwrap();
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// A fresh empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("radiant-quant-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn weight_tensor(seed: u32, n: usize, k: usize) -> HostTensor {
    let values: Vec<f32> = (0..n * k)
        .map(|i| {
            (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1 << 24) as f32
                - 0.5)
                * 0.1
        })
        .collect();
    HostTensor::from_f32(DType::F32, &[n, k], &values).unwrap()
}

fn is_format(e: &Error) -> bool {
    matches!(e, Error::Format { .. })
}

// ---------------------------------------------------------------------------
// Configs

fn config(text: &str) -> radiant::Result<QuantConfig> {
    QuantConfig::from_json_str("test.json", text)
}

#[test]
fn gptq_configs() {
    // AutoGPTQ's quantize_config.json has no quant_method.
    let c = config(
        r#"{"bits": 4, "group_size": 128, "desc_act": true, "sym": false, "static_groups": false}"#,
    )
    .unwrap();
    assert_eq!(
        c,
        QuantConfig::Gptq(GptqConfig {
            bits: 4,
            group_size: GroupSize::Columns(128),
            desc_act: true,
            sym: false,
            zero_format: ZeroFormat::V1,
            static_groups: false,
        })
    );
    let c = config(r#"{"quant_method": "gptq", "bits": 8, "group_size": -1, "format": "gptq_v2"}"#)
        .unwrap();
    let QuantConfig::Gptq(g) = c else { panic!() };
    assert_eq!(
        (g.bits, g.group_size, g.zero_format, g.sym),
        (8, GroupSize::PerChannel, ZeroFormat::V2, true)
    );
    // transformers spells it checkpoint_format.
    let c = config(
        r#"{"quant_method": "gptq", "bits": 4, "group_size": 32, "checkpoint_format": "gptq_v2"}"#,
    )
    .unwrap();
    assert!(matches!(
        c,
        QuantConfig::Gptq(GptqConfig {
            zero_format: ZeroFormat::V2,
            ..
        })
    ));
    for bad in [
        r#"{"quant_method": "gptq", "bits": 3, "group_size": 128}"#,
        r#"{"quant_method": "gptq", "bits": 4, "group_size": 0}"#,
        r#"{"quant_method": "gptq", "bits": "4"}"#,
        r#"{"quant_method": "gptq", "bits": 4, "format": "marlin"}"#,
        r#"{"quant_method": "gptq", "group_size": 128}"#,
        r#"{"quant_method": "gptq", "bits": 4, "desc_act": "yes"}"#,
    ] {
        let e = config(bad).unwrap_err();
        assert!(is_format(&e), "{bad}: {e}");
    }
}

#[test]
fn awq_configs() {
    let c = config(r#"{"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": true, "version": "GEMM"}"#).unwrap();
    let QuantConfig::Awq(a) = c else { panic!() };
    assert_eq!(a.group_size, GroupSize::Columns(64));
    let c = config(r#"{"quant_method": "awq", "w_bit": 4, "q_group_size": 128}"#).unwrap();
    assert!(matches!(c, QuantConfig::Awq(a) if a.group_size == GroupSize::Columns(128)));
    for bad in [
        r#"{"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"}"#,
        r#"{"quant_method": "awq", "bits": 4, "group_size": 128, "version": "exllama"}"#,
        r#"{"quant_method": "awq", "bits": 8, "group_size": 128}"#,
        r#"{"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": false}"#,
    ] {
        assert!(is_format(&config(bad).unwrap_err()), "{bad}");
    }
}

#[test]
fn nvfp4_configs() {
    let ct = r#"{
        "quant_method": "compressed-tensors",
        "format": "nvfp4-pack-quantized",
        "config_groups": {"group_0": {
            "targets": ["Linear"],
            "weights": {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16, "symmetric": true},
            "input_activations": null,
            "format": "nvfp4-pack-quantized"
        }},
        "ignore": ["lm_head"]
    }"#;
    assert_eq!(
        config(ct).unwrap(),
        QuantConfig::Nvfp4(Nvfp4Config {
            producer: Nvfp4Producer::CompressedTensors
        })
    );
    let modelopt = r#"{"producer": {"name": "modelopt", "version": "0.47.0"},
        "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": null, "group_size": 16, "exclude_modules": ["lm_head"]}}"#;
    assert_eq!(
        config(modelopt).unwrap(),
        QuantConfig::Nvfp4(Nvfp4Config {
            producer: Nvfp4Producer::ModelOpt
        })
    );
    let c = config(r#"{"quant_method": "modelopt", "quant_algo": "NVFP4"}"#).unwrap();
    assert_eq!(c.method(), "nvfp4");
    for bad in [
        ct.replace("nvfp4-pack-quantized", "pack-quantized"),
        ct.replace("\"float\"", "\"int\""),
        ct.replace("\"group_size\": 16", "\"group_size\": 32"),
        modelopt.replace("\"NVFP4\"", "\"FP8\""),
        modelopt.replace("\"NVFP4\"", "\"NVFP4_AWQ\""),
        r#"{"quant_method": "bitsandbytes"}"#.into(),
        r#"{"something": 1}"#.into(),
        "[1, 2]".into(),
        "{not json".into(),
    ] {
        assert!(is_format(&config(&bad).unwrap_err()), "{bad}");
    }
}

// ---------------------------------------------------------------------------
// Checkpoints on disk

fn gptq_layer(seed: u32) -> GptqWeight {
    GptqWeight::quantize(
        &weight_tensor(seed, 64, 128),
        &GptqQuantizeParams {
            bits: 4,
            group_size: GroupSize::Columns(32),
            sym: false,
            zero_format: ZeroFormat::V1,
            act_order: Some((0..128).map(|i| (i * 37) % 128).collect()),
            scale_dtype: DType::F16,
        },
    )
    .unwrap()
}

fn gptq_named<'a>(prefix: &str, w: &'a GptqWeight) -> Vec<(String, &'a HostTensor)> {
    vec![
        (format!("{prefix}.qweight"), w.qweight()),
        (format!("{prefix}.qzeros"), w.qzeros()),
        (format!("{prefix}.scales"), w.scales()),
        (format!("{prefix}.g_idx"), w.g_idx()),
    ]
}

const GPTQ_CONFIG: &str = r#"{"architectures": ["X"], "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": true, "sym": false, "format": "gptq"}}"#;

#[test]
fn sharded_gptq_checkpoint_loads_by_tensor_name() {
    let dir = temp_dir("sharded");
    let (a, b) = (gptq_layer(1), gptq_layer(2));
    let bias = HostTensor::from_f32(DType::F16, &[64], &[0.5; 64]).unwrap();
    let (pa, pb) = (
        "model.layers.0.mlp.down_proj",
        "model.layers.1.mlp.down_proj",
    );
    // Layer 0 in shard 1; layer 1 split across both shards.
    let mut shard1 = gptq_named(pa, &a);
    let mut named_b = gptq_named(pb, &b);
    shard1.push(named_b.remove(0));
    let mut shard2 = named_b;
    shard2.push((format!("{pb}.bias"), &bias));
    let files = [
        ("model-00001-of-00002.safetensors", &shard1),
        ("model-00002-of-00002.safetensors", &shard2),
    ];
    let mut weight_map = serde_json::Map::new();
    for (file, tensors) in files {
        write(&dir.join(file), &st_bytes(tensors));
        for (name, _) in tensors {
            weight_map.insert(name.clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    write(
        &dir.join("model.safetensors.index.json"),
        index.to_string().as_bytes(),
    );
    write(&dir.join("config.json"), GPTQ_CONFIG.as_bytes());

    let ckpt = Checkpoint::open(&dir).unwrap();
    assert!(matches!(ckpt.config(), Some(QuantConfig::Gptq(_))));
    assert_eq!(ckpt.tensor_names().len(), 9);
    let QuantLinear::Gptq(la) = ckpt.load_linear(pa).unwrap() else {
        panic!("gptq")
    };
    assert_eq!(la.weight, a);
    assert!(la.bias.is_none());
    let QuantLinear::Gptq(lb) = ckpt.load_linear(&format!("{pb}.")).unwrap() else {
        panic!("gptq")
    };
    assert_eq!(lb.weight, b);
    assert_eq!(lb.bias.as_ref(), Some(&bias));
    assert!(is_format(
        &ckpt
            .load_linear("model.layers.2.mlp.down_proj")
            .unwrap_err()
    ));

    // A shard name that leaves the directory is refused.
    let evil = serde_json::json!({"weight_map": {"x": "../elsewhere.safetensors"}});
    write(
        &dir.join("model.safetensors.index.json"),
        evil.to_string().as_bytes(),
    );
    assert!(is_format(&Checkpoint::open(&dir).unwrap_err()));
    // An index that puts a tensor in the wrong shard is refused.
    let mut wrong = weight_map.clone();
    wrong.insert(
        format!("{pa}.qweight"),
        "model-00002-of-00002.safetensors".into(),
    );
    let wrong = serde_json::json!({ "weight_map": wrong });
    write(
        &dir.join("model.safetensors.index.json"),
        wrong.to_string().as_bytes(),
    );
    assert!(is_format(&Checkpoint::open(&dir).unwrap_err()));
    // A truncated shard is refused when opened.
    write(
        &dir.join("model.safetensors.index.json"),
        index.to_string().as_bytes(),
    );
    let bytes = std::fs::read(dir.join("model-00002-of-00002.safetensors")).unwrap();
    write(
        &dir.join("model-00002-of-00002.safetensors"),
        &bytes[..bytes.len() - 3],
    );
    assert!(is_format(&Checkpoint::open(&dir).unwrap_err()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn single_file_and_quantize_config_json() {
    let dir = temp_dir("single");
    let a = gptq_layer(3).with_zero_format(ZeroFormat::V2);
    write(
        &dir.join("model.safetensors"),
        &st_bytes(&gptq_named("proj", &a)),
    );
    write(
        &dir.join("quantize_config.json"),
        br#"{"bits": 4, "group_size": 32, "desc_act": true, "sym": false, "checkpoint_format": "gptq_v2"}"#,
    );
    for path in [dir.clone(), dir.join("model.safetensors")] {
        let ckpt = Checkpoint::open(&path).unwrap();
        let QuantLinear::Gptq(l) = ckpt.load_linear("proj").unwrap() else {
            panic!()
        };
        assert_eq!(l.weight, a);
    }
    // The same bytes with the wrong zero format declared decode differently.
    std::fs::remove_file(dir.join("quantize_config.json")).unwrap();
    let ckpt = Checkpoint::open(&dir).unwrap();
    assert!(ckpt.config().is_none());
    assert!(
        is_format(&ckpt.load_linear("proj").unwrap_err()),
        "no config"
    );
    let v1 = GptqConfig {
        bits: 4,
        group_size: GroupSize::Columns(32),
        desc_act: true,
        sym: false,
        zero_format: ZeroFormat::V1,
        static_groups: false,
    };
    let l = ckpt.load_gptq("proj", &v1).unwrap();
    assert_ne!(l.weight.dequantize_f32(), a.dequantize_f32());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn awq_and_nvfp4_checkpoints() {
    let dir = temp_dir("awq");
    let w = AwqWeight::quantize(&weight_tensor(4, 64, 128), &AwqQuantizeParams::default()).unwrap();
    let named = vec![
        ("l.qweight".to_string(), w.qweight()),
        ("l.qzeros".to_string(), w.qzeros()),
        ("l.scales".to_string(), w.scales()),
    ];
    write(&dir.join("model.safetensors"), &st_bytes(&named));
    write(
        &dir.join("config.json"),
        br#"{"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true, "version": "gemm"}}"#,
    );
    let QuantLinear::Awq(l) = Checkpoint::open(&dir).unwrap().load_linear("l").unwrap() else {
        panic!()
    };
    assert_eq!(l.weight, w);
    std::fs::remove_dir_all(&dir).unwrap();

    // ModelOpt names: P.weight (u8), P.weight_scale, P.weight_scale_2 as a
    // 0-d scalar, P.input_scale (ignored); hf_quant_config.json.
    let dir = temp_dir("modelopt");
    let w = Nvfp4Weight::quantize(&weight_tensor(5, 32, 64), Nvfp4Producer::ModelOpt).unwrap();
    let GlobalScale::Multiplier(g) = w.global_scale() else {
        panic!()
    };
    let g = HostTensor::from_f32(DType::F32, &[], &[g]).unwrap();
    let input_scale = HostTensor::from_f32(DType::F32, &[], &[1.0]).unwrap();
    let named = vec![
        ("m.weight".to_string(), w.weight_packed()),
        ("m.weight_scale".to_string(), w.weight_scale()),
        ("m.weight_scale_2".to_string(), &g),
        ("m.input_scale".to_string(), &input_scale),
    ];
    write(&dir.join("model.safetensors"), &st_bytes(&named));
    write(
        &dir.join("hf_quant_config.json"),
        br#"{"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", "group_size": 16}}"#,
    );
    let QuantLinear::Nvfp4(l) = Checkpoint::open(&dir).unwrap().load_linear("m").unwrap() else {
        panic!()
    };
    assert_eq!(l.weight, w);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nvfp4_tensor_name_errors() {
    let w =
        Nvfp4Weight::quantize(&weight_tensor(6, 16, 32), Nvfp4Producer::CompressedTensors).unwrap();
    let GlobalScale::Divisor(d) = w.global_scale() else {
        panic!()
    };
    let d = HostTensor::from_f32(DType::F32, &[1], &[d]).unwrap();
    let pqs = HostTensor::from_f32(DType::F16, &[32], &[1.0; 32]).unwrap();
    let dense = HostTensor::from_f32(DType::BF16, &[16, 32], &[0.0; 512]).unwrap();
    let two = HostTensor::from_f32(DType::F32, &[2], &[1.0, 2.0]).unwrap();
    let base = |extra: Vec<(&str, &HostTensor)>, global: Option<&HostTensor>| {
        let mut named = vec![
            ("p.weight_packed".to_string(), w.weight_packed()),
            ("p.weight_scale".to_string(), w.weight_scale()),
        ];
        if let Some(global) = global {
            named.push(("p.weight_global_scale".to_string(), global));
        }
        named.extend(extra.into_iter().map(|(n, t)| (n.to_string(), t)));
        Checkpoint::from_bytes(st_bytes(&named)).unwrap()
    };
    assert_eq!(base(vec![], Some(&d)).load_nvfp4("p").unwrap().weight, w);
    // (extra tensors, global scale) pairs that must be refused.
    type Extra<'a> = Vec<(&'a str, &'a HostTensor)>;
    let cases: Vec<(Extra<'_>, Option<&HostTensor>)> = vec![
        (vec![("p.pre_quant_scale", &pqs)], Some(&d)),
        (vec![("p.weight_scale_2", &d)], Some(&d)),
        (vec![], None),
        (vec![], Some(&two)),
    ];
    for (extra, global) in cases {
        assert!(is_format(&base(extra, global).load_nvfp4("p").unwrap_err()));
    }
    // An unquantized `P.weight` is not NVFP4.
    let named = vec![
        ("q.weight".to_string(), &dense),
        ("q.weight_scale".to_string(), w.weight_scale()),
        ("q.weight_scale_2".to_string(), &d),
    ];
    let e = Checkpoint::from_bytes(st_bytes(&named))
        .unwrap()
        .load_nvfp4("q")
        .unwrap_err();
    assert!(is_format(&e), "{e}");
}

#[test]
fn in_memory_case_metadata_is_readable() {
    let w = gptq_layer(9);
    let named = gptq_named("x", &w);
    let views: Vec<_> = named
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(
                    t.dtype().to_safetensors(),
                    t.shape().to_vec(),
                    t.bytes(),
                )
                .unwrap(),
            )
        })
        .collect();
    let meta = HashMap::from([("op".to_string(), "gptq_matmul".to_string())]);
    let bytes = safetensors::serialize(views, Some(meta)).unwrap();
    let ckpt = Checkpoint::from_bytes(bytes).unwrap();
    assert_eq!(ckpt.metadata().unwrap()["op"], "gptq_matmul");
    assert_eq!(ckpt.source(), "<memory>");
    assert!(ckpt.contains("x.g_idx"));
    assert_eq!(ckpt.tensor("x.scales").unwrap(), *w.scales());
}
