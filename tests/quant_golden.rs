//! Golden vectors from the reference packages (AutoGPTQ, GPTQModel, AutoAWQ,
//! nvidia-modelopt, compressed-tensors), made by
//! scripts/golden/make_quant_cases.py into tests/golden/quant/.
//!
//! For every case: the weight is rebuilt from the checkpoint tensors through
//! the validated loader (in-memory bytes, empty prefix); its dequantization
//! must equal the package's `expected_weight` BIT FOR BIT; and the reference
//! op's output must be within the op's tolerance of `expected`.
//!
//! `expected` was computed by the generator with the PACKAGE's weight dtype
//! (`expected_weight_dtype`: the scales' dtype for GPTQ / AWQ, the
//! decompressor's dtype for NVFP4), while radiant's contract rounds W to x's
//! dtype. Where the two dtypes differ, `expected` carries the coarser of the
//! two weight roundings, so the output is compared at the tolerance of the
//! coarser dtype (e.g. f32 x with f16 package weights: the f16 tolerance).
//! The dense check against `expected_weight` at x's own tolerance is done
//! too, and is exact in spirit: it uses the package weight itself.

use std::path::{Path, PathBuf};

use radiant::cpu::ReferenceBackend;
use radiant::ops::tolerance::{compare, tolerance};
use radiant::ops::{self, BLayout, MatmulParams, OpKind};
use radiant::quant::{AwqConfig, Checkpoint, GptqConfig, GroupSize, ZeroFormat};
use radiant::{Backend, DType, HostTensor, Tensor};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/quant")
}

fn golden_files() -> Vec<PathBuf> {
    let dir = golden_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "golden directory {} is missing ({e}): run scripts/golden/make_quant_cases.py",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no golden cases in {}: run scripts/golden/make_quant_cases.py",
        dir.display()
    );
    files
}

fn meta<'a>(ckpt: &'a Checkpoint, key: &str) -> &'a str {
    ckpt.metadata()
        .and_then(|m| m.get(key))
        .unwrap_or_else(|| panic!("case metadata lacks `{key}`"))
}

/// The dequantized weight and its device form, as the case's op needs it.
enum Loaded {
    Gptq(radiant::quant::GptqWeight),
    Awq(radiant::quant::AwqWeight),
    Nvfp4(radiant::quant::Nvfp4Weight),
}

impl Loaded {
    fn dequantize(&self, dtype: DType) -> HostTensor {
        match self {
            Loaded::Gptq(w) => w.dequantize(dtype),
            Loaded::Awq(w) => w.dequantize(dtype),
            Loaded::Nvfp4(w) => w.dequantize(dtype),
        }
        .expect("dequantize")
    }

    fn run(&self, dev: &dyn Backend, x: &Tensor, bias: Option<&Tensor>) -> Tensor {
        match self {
            Loaded::Gptq(w) => ops::gptq_matmul(dev, x, &w.upload(dev).unwrap(), bias),
            Loaded::Awq(w) => ops::awq_matmul(dev, x, &w.upload(dev).unwrap(), bias),
            Loaded::Nvfp4(w) => ops::nvfp4_matmul(dev, x, &w.upload(dev).unwrap(), bias),
        }
        .expect("op")
    }
}

fn load(ckpt: &Checkpoint, op: OpKind) -> (Loaded, Option<HostTensor>) {
    match op {
        OpKind::GptqMatmul => {
            let group: i64 = meta(ckpt, "group_size").parse().unwrap();
            let config = GptqConfig {
                bits: meta(ckpt, "bits").parse().unwrap(),
                group_size: GroupSize::from_config(group).unwrap(),
                desc_act: false,
                sym: meta(ckpt, "sym") == "true",
                zero_format: ZeroFormat::parse(meta(ckpt, "format")).unwrap(),
                static_groups: false,
            };
            let layer = ckpt.load_gptq("", &config).expect("load gptq");
            (Loaded::Gptq(layer.weight), layer.bias)
        }
        OpKind::AwqMatmul => {
            let group: i64 = meta(ckpt, "group_size").parse().unwrap();
            let config = AwqConfig {
                group_size: GroupSize::from_config(group).unwrap(),
            };
            let layer = ckpt.load_awq("", &config).expect("load awq");
            (Loaded::Awq(layer.weight), layer.bias)
        }
        OpKind::Nvfp4Matmul => {
            let layer = ckpt.load_nvfp4("").expect("load nvfp4");
            (Loaded::Nvfp4(layer.weight), layer.bias)
        }
        other => panic!("not a quantized op: {other}"),
    }
}

/// Bit-level comparison of two same-dtype tensors: (differing values,
/// differing only in the sign of a zero).
fn bit_diff(got: &HostTensor, want: &HostTensor) -> (usize, usize) {
    assert_eq!(got.dtype(), want.dtype());
    assert_eq!(got.shape(), want.shape());
    let size = got.dtype().size_in_bytes();
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let mut values = 0;
    let mut zero_signs = 0;
    for (i, (a, b)) in got
        .bytes()
        .chunks(size)
        .zip(want.bytes().chunks(size))
        .enumerate()
    {
        if a != b {
            if g[i] == 0.0 && w[i] == 0.0 {
                zero_signs += 1;
            } else {
                values += 1;
            }
        }
    }
    (values, zero_signs)
}

/// The coarser (larger unit round-off) of two float dtypes.
fn coarser(a: DType, b: DType) -> DType {
    if a.unit_roundoff() >= b.unit_roundoff() {
        a
    } else {
        b
    }
}

#[test]
fn golden_quant_cases() {
    let dev = ReferenceBackend::new();
    let dev: &dyn Backend = &dev;
    let mut failures = Vec::new();
    let mut ops_seen = std::collections::BTreeSet::new();
    for path in golden_files() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let ckpt = Checkpoint::from_bytes(std::fs::read(&path).unwrap()).expect("case parses");
        let op: OpKind = meta(&ckpt, "op").parse().unwrap();
        ops_seen.insert(op);
        let (weight, bias) = load(&ckpt, op);

        // 1. Dequantization, bit for bit.
        let expected_weight = ckpt.tensor("expected_weight").unwrap();
        let wdtype: DType = meta(&ckpt, "expected_weight_dtype").parse().unwrap();
        assert_eq!(expected_weight.dtype(), wdtype, "{name}: metadata dtype");
        let (values, zero_signs) = bit_diff(&weight.dequantize(wdtype), &expected_weight);
        let deq = if values == 0 && zero_signs == 0 {
            "bit-exact".to_string()
        } else {
            failures.push(format!(
                "{name}: dequantized weight: {values} values and {zero_signs} zero signs differ"
            ));
            format!("{values} values / {zero_signs} zero signs differ")
        };

        // compressed-tensors divides by its global scale; record how many
        // weights multiplying by the f32 reciprocal would have got wrong.
        if let Loaded::Nvfp4(w) = &weight {
            if let radiant::quant::GlobalScale::Divisor(d) = w.global_scale() {
                let recip = radiant::quant::Nvfp4Weight::new(radiant::quant::Nvfp4Tensors {
                    weight_packed: w.weight_packed().clone(),
                    weight_scale: w.weight_scale().clone(),
                    global_scale: radiant::quant::GlobalScale::Multiplier(1.0 / d),
                })
                .unwrap();
                let (a, b) = (recip.dequantize(wdtype).unwrap(), &expected_weight);
                let wrong = a
                    .to_f64_vec()
                    .iter()
                    .zip(b.to_f64_vec())
                    .filter(|(x, y)| **x != *y)
                    .count();
                println!("{name}: scale·(1/d) instead of scale/d would change {wrong} weights");
            }
        }

        // 2. The reference op against `expected`.
        let x = ckpt.tensor("x").unwrap();
        let xdtype = x.dtype();
        let xd = dev.upload_tensor(&x).unwrap();
        let bias_d = bias.map(|b| dev.upload_tensor(&b.to_dtype(xdtype).unwrap()).unwrap());
        let y = dev.download_tensor(&weight.run(dev, &xd, bias_d.as_ref())).unwrap();
        let expected = ckpt.tensor("expected").unwrap();
        assert_eq!(y.shape(), expected.shape(), "{name}: output shape");
        let tol_dtype = coarser(xdtype, wdtype);
        let cmp = compare(&y.to_f64_vec(), &expected.to_f64_vec(), tolerance(op, tol_dtype));
        if !cmp.passed {
            failures.push(format!("{name}: op output vs expected: {cmp:?}"));
        }

        // 3. The same x against the package's own weight through dense matmul,
        //    at x's own tolerance: isolates the product from the weight rounding.
        let w_in_x = expected_weight.to_dtype(xdtype).unwrap();
        let exact = w_in_x.to_f64_vec() == expected_weight.to_f64_vec();
        let w_pkg = dev.upload_tensor(&w_in_x).unwrap();
        let dense = ops::matmul(
            dev,
            &xd,
            &w_pkg,
            bias_d.as_ref(),
            MatmulParams {
                b_layout: BLayout::Nk,
            },
        )
        .unwrap();
        let dense = dev.download_tensor(&dense).unwrap();
        let dense_cmp = if exact {
            let c = compare(&dense.to_f64_vec(), &expected.to_f64_vec(), tolerance(op, xdtype));
            if !c.passed {
                failures.push(format!("{name}: dense matmul vs expected: {c:?}"));
            }
            format!("dense rel {:.2e}", c.rel_l2)
        } else {
            "dense n/a (package weight not representable in x's dtype)".into()
        };
        println!(
            "{name:50} {op:13} x {xdtype:4} w {wdtype:4}: dequant {deq}; op rel {:.2e} max {:.2e} (tol {tol_dtype}) {}; {dense_cmp}",
            cmp.rel_l2,
            cmp.max_abs,
            if cmp.passed { "ok" } else { "FAIL" }
        );
    }
    for op in [OpKind::GptqMatmul, OpKind::AwqMatmul, OpKind::Nvfp4Matmul] {
        assert!(
            ops_seen.contains(&op),
            "no golden case for {op} in {}",
            golden_dir().display()
        );
    }
    assert!(failures.is_empty(), "golden failures:\n{}", failures.join("\n"));
}
