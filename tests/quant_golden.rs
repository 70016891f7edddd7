//! Golden vectors from the reference packages (AutoGPTQ, GPTQModel, AutoAWQ,
//! nvidia-modelopt, compressed-tensors), made by
//! scripts/golden/make_quant_cases.py into tests/golden/quant/.
//!
//! For every case: the weight is rebuilt from the checkpoint tensors through
//! the validated loader (in-memory bytes, empty prefix); its dequantization
//! must equal the package's `expected_weight` (in the package's own dtype,
//! `expected_weight_dtype`) BIT FOR BIT, and, where the case stores it, the
//! package's f32 dequantization `expected_weight_f32` bit for bit too (±0
//! equal in both: ModelOpt decodes E2M1 code 8 as +0); and the reference
//! op's output must be within `tolerance(op, x's dtype)` of `expected`.
//!
//! `expected` follows the op contract: the package's f32 weight rounded once
//! to x's dtype, x · Wᵀ (+ bias, stored in x's dtype) in f64, rounded once to
//! x's dtype. Every case whose x dtype differs from the package's weight
//! dtype stores `expected_weight_f32`, the weight `expected` was built from.
//! A dense matmul with that contract weight (the package's, not radiant's) is
//! checked against `expected` at the same tolerance, to tell a wrong product
//! from a wrong weight.

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

/// Bit-level comparison of two same-dtype tensors.
struct BitDiff {
    /// Elements whose bits differ, other than zeros of opposite sign.
    values: usize,
    /// Elements that differ only in the sign of a zero.
    zero_signs: usize,
    /// The first value difference: (flat index, got, want).
    first: Option<(usize, f64, f64)>,
}

fn bit_diff(got: &HostTensor, want: &HostTensor) -> BitDiff {
    assert_eq!(got.dtype(), want.dtype());
    assert_eq!(got.shape(), want.shape());
    let size = got.dtype().size_in_bytes();
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let mut d = BitDiff {
        values: 0,
        zero_signs: 0,
        first: None,
    };
    for (i, (a, b)) in got
        .bytes()
        .chunks(size)
        .zip(want.bytes().chunks(size))
        .enumerate()
    {
        if a != b {
            if g[i] == 0.0 && w[i] == 0.0 {
                d.zero_signs += 1;
            } else {
                d.values += 1;
                d.first.get_or_insert((i, g[i], w[i]));
            }
        }
    }
    d
}

/// Checks radiant's dequantization in `want`'s dtype against the package's
/// bit for bit (±0 equal); a one-line summary, and a failure if any value
/// differs.
fn check_dequant(
    name: &str,
    what: &str,
    got: &HostTensor,
    want: &HostTensor,
    failures: &mut Vec<String>,
) -> String {
    let d = bit_diff(got, want);
    let zeros = if d.zero_signs > 0 {
        format!(" ({} zeros differ only in sign)", d.zero_signs)
    } else {
        String::new()
    };
    if d.values == 0 {
        return format!("{what} bit-exact{zeros}");
    }
    let k = want.shape()[1];
    let (i, g, w) = d.first.unwrap();
    failures.push(format!(
        "{name}: {what}: {} of {} values differ; first at [n={}, k={}]: radiant {g:e}, package {w:e}{zeros}",
        d.values,
        want.numel(),
        i / k,
        i % k
    ));
    format!("{what} {} values differ{zeros}", d.values)
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

        // 1. Dequantization, bit for bit: in the package's dtype, and in f32
        //    where the case stores the package's f32 weight.
        let expected_weight = ckpt.tensor("expected_weight").unwrap();
        let wdtype: DType = meta(&ckpt, "expected_weight_dtype").parse().unwrap();
        assert_eq!(expected_weight.dtype(), wdtype, "{name}: metadata dtype");
        let mut deq = check_dequant(
            &name,
            &format!("dequant {wdtype}"),
            &weight.dequantize(wdtype),
            &expected_weight,
            &mut failures,
        );
        let expected_weight_f32 = ckpt
            .contains("expected_weight_f32")
            .then(|| ckpt.tensor("expected_weight_f32").unwrap());
        if let Some(w32) = &expected_weight_f32 {
            assert_eq!(w32.dtype(), DType::F32, "{name}: expected_weight_f32 dtype");
            assert_eq!(
                w32.shape(),
                expected_weight.shape(),
                "{name}: expected_weight_f32 shape"
            );
            deq += "; ";
            deq += &check_dequant(
                &name,
                "dequant f32",
                &weight.dequantize(DType::F32),
                w32,
                &mut failures,
            );
        }

        // compressed-tensors divides by its global scale; record how many
        // weights multiplying by the f32 reciprocal would have got wrong.
        if let Loaded::Nvfp4(w) = &weight
            && let radiant::quant::GlobalScale::Divisor(d) = w.global_scale()
        {
            let recip = radiant::quant::Nvfp4Weight::new(radiant::quant::Nvfp4Tensors {
                weight_packed: w.weight_packed().clone(),
                weight_scale: w.weight_scale().clone(),
                global_scale: radiant::quant::GlobalScale::Multiplier(1.0 / d),
            })
            .unwrap();
            let mut wanted = vec![&expected_weight];
            wanted.extend(expected_weight_f32.as_ref());
            for want in wanted {
                let wrong = recip
                    .dequantize(want.dtype())
                    .unwrap()
                    .to_f64_vec()
                    .iter()
                    .zip(want.to_f64_vec())
                    .filter(|(x, y)| **x != *y)
                    .count();
                println!(
                    "{name}: scale·(1/d) instead of scale/d would change {wrong} of {} {} weights",
                    want.numel(),
                    want.dtype()
                );
            }
        }

        // 2. The reference op against `expected`, at x's own tolerance.
        let x = ckpt.tensor("x").unwrap();
        let xdtype = x.dtype();
        let xd = dev.upload_tensor(&x).unwrap();
        if let Some(b) = &bias {
            assert_eq!(
                b.dtype(),
                xdtype,
                "{name}: the golden bias is stored in x's dtype"
            );
        }
        let bias_d = bias.map(|b| dev.upload_tensor(&b).unwrap());
        let y = dev
            .download_tensor(&weight.run(dev, &xd, bias_d.as_ref()))
            .unwrap();
        let expected = ckpt.tensor("expected").unwrap();
        assert_eq!(y.shape(), expected.shape(), "{name}: output shape");
        assert_eq!(expected.dtype(), xdtype, "{name}: expected dtype");
        let tol = tolerance(op, xdtype);
        let cmp = compare(&y.to_f64_vec(), &expected.to_f64_vec(), tol);
        if !cmp.passed {
            failures.push(format!("{name}: op output vs expected: {cmp:?}"));
        }

        // 3. Dense matmul with the package's contract weight (its f32 weight
        //    rounded once to x's dtype) against `expected`, same tolerance:
        //    isolates the product from radiant's dequantization.
        let w_contract = match &expected_weight_f32 {
            Some(w32) => w32.to_dtype(xdtype).unwrap(),
            None => {
                assert_eq!(
                    wdtype, xdtype,
                    "{name}: x's dtype differs from the package's weight dtype but the case has no expected_weight_f32"
                );
                expected_weight.clone()
            }
        };
        let w_pkg = dev.upload_tensor(&w_contract).unwrap();
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
        let dense_cmp = compare(&dense.to_f64_vec(), &expected.to_f64_vec(), tol);
        if !dense_cmp.passed {
            failures.push(format!("{name}: dense matmul vs expected: {dense_cmp:?}"));
        }
        println!(
            "{name:50} {op:13} x {xdtype:4} w {wdtype:4}: {deq}; op rel {:.2e} max {:.2e} (tol {} / {}) {}; dense rel {:.2e}",
            cmp.rel_l2,
            cmp.max_abs,
            tol.rel_l2,
            tol.max_abs,
            if cmp.passed { "ok" } else { "FAIL" },
            dense_cmp.rel_l2,
        );
    }
    for op in [OpKind::GptqMatmul, OpKind::AwqMatmul, OpKind::Nvfp4Matmul] {
        assert!(
            ops_seen.contains(&op),
            "no golden case for {op} in {}",
            golden_dir().display()
        );
    }
    assert!(
        failures.is_empty(),
        "golden failures:\n{}",
        failures.join("\n")
    );
}
