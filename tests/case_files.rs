//! Case files (`radiant::case`) and the `radiant` CLI, from the outside:
//! round trips, verdicts, malformed input, golden vectors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use proptest::prelude::*;
use radiant::case::{self, Against, AwqCaseParams, Case, CaseParams, GptqCaseParams, Verdict};
use radiant::cpu::ReferenceBackend;
use radiant::ops::{
    AttentionParams, AttentionProblem, BLayout, FusedAddRmsNormProblem, MatmulParams,
    MatmulProblem, PagedAttentionProblem, RmsNormParams, RmsNormProblem,
};
use radiant::quant::{AwqQuantizeParams, GptqQuantizeParams, GroupSize, Nvfp4Producer, ZeroFormat};
use radiant::{
    AwqWeight, Backend, Buffer, DType, DeviceInfo, Error, GptqWeight, HostTensor, Nvfp4Weight,
    OpKind, OpQuery, Unsupported,
};

// ---------------------------------------------------------------------------
// Helpers

/// A small deterministic generator (tests need no rand dependency).
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    fn tensor(&mut self, dtype: DType, shape: &[usize]) -> HostTensor {
        let values: Vec<f64> = (0..shape.iter().product()).map(|_| self.unit()).collect();
        HostTensor::from_f64(dtype, shape, &values).unwrap()
    }
}

fn reference() -> Arc<dyn Backend> {
    radiant::device("reference").unwrap()
}

/// One case per op (in `dtype`), with non-default params so a round trip
/// that dropped a parameter would show.
fn one_case_per_op(dtype: DType) -> Vec<Case> {
    let mut rng = Rng(7);
    let attention_params = AttentionParams {
        causal: true,
        softmax_scale: Some(0.3),
        window_left: 3,
        window_right: -1,
        softcap: 20.0,
    };
    let norm_params = RmsNormParams {
        eps: 1e-5,
        weight_offset: 1.0,
    };
    vec![
        Case::matmul(
            rng.tensor(dtype, &[3, 5]),
            rng.tensor(dtype, &[4, 5]),
            Some(rng.tensor(dtype, &[4])),
            MatmulParams {
                b_layout: BLayout::Nk,
            },
        )
        .unwrap(),
        Case::rms_norm(
            rng.tensor(dtype, &[3, 16]),
            rng.tensor(dtype, &[16]),
            norm_params,
        )
        .unwrap(),
        Case::fused_add_rms_norm(
            rng.tensor(dtype, &[3, 16]),
            rng.tensor(dtype, &[3, 16]),
            rng.tensor(dtype, &[16]),
            norm_params,
        )
        .unwrap(),
        Case::attention(
            rng.tensor(dtype, &[7, 4, 8]),
            rng.tensor(dtype, &[9, 2, 8]),
            rng.tensor(dtype, &[9, 2, 8]),
            HostTensor::from_i32(&[3], &[0, 3, 7]).unwrap(),
            HostTensor::from_i32(&[3], &[0, 4, 9]).unwrap(),
            attention_params,
        )
        .unwrap(),
        Case::paged_attention(
            rng.tensor(dtype, &[2, 4, 8]),
            rng.tensor(dtype, &[5, 4, 2, 8]),
            rng.tensor(dtype, &[5, 4, 2, 8]),
            HostTensor::from_i32(&[2, 3], &[4, 1, 0, 2, 3, 0]).unwrap(),
            HostTensor::from_i32(&[2], &[6, 9]).unwrap(),
            attention_params,
        )
        .unwrap(),
    ]
}

/// A safetensors file with exactly these metadata entries and tensors.
fn raw_file(metadata: &[(&str, &str)], tensors: &[(&str, &HostTensor)]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
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
    let metadata = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize(views, Some(metadata)).unwrap()
}

/// A valid rms_norm file, with `metadata` replacing the default entries.
fn rms_norm_file(metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut rng = Rng(3);
    let x = rng.tensor(DType::F32, &[2, 8]);
    let weight = rng.tensor(DType::F32, &[8]);
    raw_file(metadata, &[("x", &x), ("weight", &weight)])
}

fn assert_format_error(result: radiant::Result<Case>, needle: &str) {
    match result {
        Err(Error::Format { path, reason }) => {
            assert!(
                reason.contains(needle),
                "reason `{reason}` should mention `{needle}`"
            );
            assert!(!reason.contains('\n'), "one line: {reason}");
            assert_eq!(path, "test.safetensors");
        }
        Err(other) => panic!("expected Error::Format mentioning `{needle}`, got {other}"),
        Ok(case) => panic!(
            "expected Error::Format mentioning `{needle}`, loaded {:?}",
            case.op()
        ),
    }
}

fn temp_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

// ---------------------------------------------------------------------------
// Round trips and verdicts

#[test]
fn save_load_round_trips_every_op() {
    for dtype in DType::FLOATS {
        for case in one_case_per_op(dtype) {
            let out = case::run(&case, reference().as_ref()).unwrap();
            assert_eq!(out.verdict, Verdict::Pass);
            let expected = HostTensor::from_f64(
                dtype,
                case.output_spec("out").unwrap().1,
                &case.reference_outputs().unwrap()[0].1,
            )
            .unwrap();
            let case = case
                .with_expected("expected", expected)
                .unwrap()
                .with_metadata("description", "round trip")
                .unwrap();
            let path = temp_path(&format!("round_trip_{}_{dtype}.safetensors", case.op()));
            case.save(&path).unwrap();
            let loaded = Case::load(&path).unwrap();
            assert_eq!(loaded.params(), case.params(), "{}", case.op());
            assert_eq!(loaded.inputs(), case.inputs());
            assert_eq!(loaded.expected_outputs(), case.expected_outputs());
            assert_eq!(loaded.extra_metadata(), case.extra_metadata());
            assert_eq!(loaded.dtype(), dtype);
            assert_eq!(loaded.summary(), case.summary());
            // Bytes are stable: saving the loaded case gives the same file.
            assert_eq!(loaded.to_bytes().unwrap(), case.to_bytes().unwrap());
        }
    }
}

#[test]
fn random_cases_pass_on_reference_against_reference_and_expected() {
    let backend = reference();
    for dtype in DType::FLOATS {
        for case in one_case_per_op(dtype) {
            // Against the f64 reference (no expected tensors).
            let report = case::run(&case, backend.as_ref()).unwrap();
            assert_eq!(report.verdict, Verdict::Pass, "{report:?}");
            assert!(
                report
                    .outputs
                    .iter()
                    .all(|o| o.against == Against::Reference)
            );
            assert_eq!(report.backend, "reference");
            assert_eq!(report.dtype, dtype);

            // Against expected outputs rounded to the storage dtype, via a file.
            let mut with_expected = case.clone();
            for (name, values) in case.reference_outputs().unwrap() {
                let expected_name = match name {
                    "out" => "expected",
                    "residual" => "expected_residual",
                    "lse" => "expected_lse",
                    other => panic!("unexpected output {other}"),
                };
                let (out_dtype, shape) = case.output_spec(name).unwrap();
                let tensor = HostTensor::from_f64(out_dtype, shape, &values).unwrap();
                with_expected = with_expected.with_expected(expected_name, tensor).unwrap();
            }
            let bytes = with_expected.to_bytes().unwrap();
            let loaded = Case::from_bytes(&bytes, "expected.safetensors").unwrap();
            let report = case::run(&loaded, backend.as_ref()).unwrap();
            assert_eq!(report.verdict, Verdict::Pass, "{report:?}");
            assert!(
                report
                    .outputs
                    .iter()
                    .all(|o| o.against == Against::Expected)
            );
            let wanted = match case.op() {
                OpKind::FusedAddRmsNorm | OpKind::Attention => 2, // + residual / lse
                _ => 1,
            };
            assert_eq!(report.outputs.len(), wanted, "{:?}", case.op());
        }
    }
}

#[test]
fn corrupted_expected_fails() {
    let backend = reference();
    for case in one_case_per_op(DType::F32) {
        let (dtype, shape) = case
            .output_spec("out")
            .map(|(d, s)| (d, s.to_vec()))
            .unwrap();
        let mut values = case.reference_outputs().unwrap()[0].1.clone();
        let middle = values.len() / 2;
        values[middle] += 0.5;
        let corrupted = HostTensor::from_f64(dtype, &shape, &values).unwrap();
        let case = case.with_expected("expected", corrupted).unwrap();
        let report = case::run(&case, backend.as_ref()).unwrap();
        assert_eq!(report.verdict, Verdict::Fail, "{:?}", case.op());
        let detail = report.failure_detail().unwrap();
        assert!(detail.contains("out vs expected"), "{detail}");
    }
}

#[test]
fn nan_in_expected_fails() {
    let case = one_case_per_op(DType::F16).remove(1); // rms_norm
    let (dtype, shape) = case.output_spec("out").unwrap();
    let values = vec![f64::NAN; shape.iter().product()];
    let nan = HostTensor::from_f64(dtype, shape, &values).unwrap();
    let case = case.with_expected("expected", nan).unwrap();
    let report = case::run(&case, reference().as_ref()).unwrap();
    assert_eq!(report.verdict, Verdict::Fail);
}

#[test]
fn missing_params_take_defaults_and_extras_are_tolerated() {
    let mut rng = Rng(5);
    let x = rng.tensor(DType::BF16, &[2, 8]);
    let weight = rng.tensor(DType::BF16, &[8]);
    let extra = HostTensor::from_f64(DType::F32, &[3], &[1.0, 2.0, 3.0]).unwrap();
    let bytes = raw_file(
        &[("op", "rms_norm"), ("source", "test"), ("anything", "{}")],
        &[("x", &x), ("weight", &weight), ("expected_weird", &extra)],
    );
    let case = Case::from_bytes(&bytes, "defaults").unwrap();
    assert_eq!(
        case.params(),
        &CaseParams::RmsNorm(RmsNormParams::default())
    );
    assert_eq!(case.extra_metadata().get("source").unwrap(), "test");
    assert!(case.expected("expected_weird").is_some());
    let report = case::run(&case, reference().as_ref()).unwrap();
    assert_eq!(report.verdict, Verdict::Pass);
    assert_eq!(report.outputs.len(), 1, "unknown expected_* is ignored");

    // Attention: every parameter missing means AttentionParams::default().
    let q = rng.tensor(DType::F32, &[2, 1, 4]);
    let cu = HostTensor::from_i32(&[2], &[0, 2]).unwrap();
    let bytes = raw_file(
        &[("op", "attention")],
        &[
            ("q", &q),
            ("k", &q),
            ("v", &q),
            ("cu_seqlens_q", &cu),
            ("cu_seqlens_k", &cu),
        ],
    );
    let case = Case::from_bytes(&bytes, "defaults").unwrap();
    assert_eq!(
        case.params(),
        &CaseParams::Attention(AttentionParams::default())
    );
}

#[test]
fn metadata_values_are_json() {
    let mut rng = Rng(9);
    let q = rng.tensor(DType::F32, &[3, 2, 4]);
    let k = rng.tensor(DType::F32, &[5, 1, 4]);
    let cu_q = HostTensor::from_i32(&[2], &[0, 3]).unwrap();
    let cu_k = HostTensor::from_i32(&[2], &[0, 5]).unwrap();
    let tensors = [
        ("q", &q),
        ("k", &k),
        ("v", &k),
        ("cu_seqlens_q", &cu_q),
        ("cu_seqlens_k", &cu_k),
    ];
    let bytes = raw_file(
        &[
            ("op", "attention"),
            ("causal", "true"),
            ("softmax_scale", "0.125"),
            ("window_left", "null"),
            ("window_right", "2"),
            ("softcap", "null"),
        ],
        &tensors,
    );
    let case = Case::from_bytes(&bytes, "json").unwrap();
    let expected = AttentionParams {
        causal: true,
        softmax_scale: Some(0.125),
        window_left: -1,
        window_right: 2,
        softcap: 0.0,
    };
    assert_eq!(case.params(), &CaseParams::Attention(expected));

    // b_layout: plain text or a JSON string.
    let mut rng = Rng(1);
    let a = rng.tensor(DType::F32, &[2, 3]);
    let b = rng.tensor(DType::F32, &[4, 3]);
    for spelling in ["nk", "\"nk\""] {
        let bytes = raw_file(
            &[("op", "matmul"), ("b_layout", spelling)],
            &[("a", &a), ("b", &b)],
        );
        let case = Case::from_bytes(&bytes, "layout").unwrap();
        let want = MatmulParams {
            b_layout: BLayout::Nk,
        };
        assert_eq!(case.params(), &CaseParams::Matmul(want));
    }
}

// ---------------------------------------------------------------------------
// Malformed input: a one-line Error::Format, never a panic

#[test]
fn malformed_files_are_format_errors() {
    let good = rms_norm_file(&[("op", "rms_norm"), ("eps", "1e-6")]);
    assert!(Case::from_bytes(&good, "test.safetensors").is_ok());

    let load = |bytes: &[u8]| Case::from_bytes(bytes, "test.safetensors");
    assert_format_error(load(&good[..good.len() - 3]), "safetensors");
    assert_format_error(load(&good[..5]), "safetensors");
    assert_format_error(load(b""), "safetensors");
    assert_format_error(load(b"definitely not a safetensors file"), "safetensors");
    assert_format_error(load(&rms_norm_file(&[("eps", "1e-6")])), "no `op`");
    assert_format_error(
        load(&rms_norm_file(&[("op", "softmax")])),
        "unknown op `softmax`",
    );
    assert_format_error(
        load(&rms_norm_file(&[("op", "rms_norm"), ("eps", "1e-6,")])),
        "metadata `eps`",
    );
    assert_format_error(
        load(&rms_norm_file(&[("op", "rms_norm"), ("eps", "true")])),
        "expected a number",
    );
    assert_format_error(
        load(&rms_norm_file(&[("op", "rms_norm"), ("eps", "-1")])),
        "eps",
    );
    assert_format_error(
        load(&rms_norm_file(&[("op", "matmul")])),
        "matmul needs tensor `a`",
    );

    let mut rng = Rng(11);
    let x = rng.tensor(DType::F16, &[2, 8]);
    let weight32 = rng.tensor(DType::F32, &[8]);
    let weight = rng.tensor(DType::F16, &[8]);
    let meta = [("op", "rms_norm")];
    assert_format_error(
        load(&raw_file(&meta, &[("x", &x)])),
        "needs tensor `weight`",
    );
    assert_format_error(
        load(&raw_file(&meta, &[("x", &x), ("weight", &weight32)])),
        "dtype f32 differs",
    );
    assert_format_error(
        load(&raw_file(
            &meta,
            &[("x", &x), ("weight", &weight), ("wieght", &weight)],
        )),
        "unknown tensor `wieght`",
    );
    let short_weight = rng.tensor(DType::F16, &[7]);
    assert_format_error(
        load(&raw_file(&meta, &[("x", &x), ("weight", &short_weight)])),
        "weight",
    );
    let wrong_expected = rng.tensor(DType::F16, &[2, 7]);
    assert_format_error(
        load(&raw_file(
            &meta,
            &[
                ("x", &x),
                ("weight", &weight),
                ("expected", &wrong_expected),
            ],
        )),
        "`expected` is f16 [2, 7]",
    );
    let expected32 = rng.tensor(DType::F32, &[2, 8]);
    assert_format_error(
        load(&raw_file(
            &meta,
            &[("x", &x), ("weight", &weight), ("expected", &expected32)],
        )),
        "`expected` is f32",
    );

    // i32 tables given as floats, and inconsistent offsets.
    let q = rng.tensor(DType::F32, &[3, 2, 4]);
    let cu_float = HostTensor::from_f64(DType::F32, &[2], &[0.0, 3.0]).unwrap();
    let cu = HostTensor::from_i32(&[2], &[0, 3]).unwrap();
    let cu_bad = HostTensor::from_i32(&[2], &[0, 4]).unwrap();
    let meta = [("op", "attention")];
    assert_format_error(
        load(&raw_file(
            &meta,
            &[
                ("q", &q),
                ("k", &q),
                ("v", &q),
                ("cu_seqlens_q", &cu_float),
                ("cu_seqlens_k", &cu),
            ],
        )),
        "cu_seqlens_q",
    );
    assert_format_error(
        load(&raw_file(
            &meta,
            &[
                ("q", &q),
                ("k", &q),
                ("v", &q),
                ("cu_seqlens_q", &cu),
                ("cu_seqlens_k", &cu_bad),
            ],
        )),
        "cu_seqlens_k",
    );
    assert_format_error(
        load(&raw_file(
            &[("op", "attention"), ("causal", "yes")],
            &[
                ("q", &q),
                ("k", &q),
                ("v", &q),
                ("cu_seqlens_q", &cu),
                ("cu_seqlens_k", &cu),
            ],
        )),
        "metadata `causal` = `yes`",
    );
    assert_format_error(
        load(&raw_file(
            &[("op", "attention"), ("window_left", "1.5")],
            &[
                ("q", &q),
                ("k", &q),
                ("v", &q),
                ("cu_seqlens_q", &cu),
                ("cu_seqlens_k", &cu),
            ],
        )),
        "an integer",
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let err = Case::load(temp_path("does_not_exist.safetensors")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        match Case::from_bytes(&bytes, "test.safetensors") {
            Ok(_) | Err(Error::Format { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
        }
    }

    #[test]
    fn truncated_and_flipped_files_never_panic(cut in 0usize..1000, flip in 0usize..1000, bit in 0u8..8) {
        let good = one_case_per_op(DType::F16).remove(3).to_bytes().unwrap();
        let cut = cut % good.len();
        prop_assert!(
            matches!(Case::from_bytes(&good[..cut], "test.safetensors"), Err(Error::Format { .. })),
            "a truncated file must be a format error"
        );
        // A flipped bit anywhere: loads (data bits) or is a format error.
        let mut flipped = good.clone();
        let index = flip % flipped.len();
        flipped[index] ^= 1 << bit;
        match Case::from_bytes(&flipped, "test.safetensors") {
            Ok(case) => { case::run(&case, reference().as_ref()).unwrap(); }
            Err(Error::Format { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
        }
    }

    #[test]
    fn flipped_quant_files_never_panic(which in 0usize..5, flip in any::<usize>(), bit in 0u8..8) {
        let good = quant_cases(DType::F16).remove(which).to_bytes().unwrap();
        let mut flipped = good.clone();
        let index = flip % flipped.len();
        flipped[index] ^= 1 << bit;
        match Case::from_bytes(&flipped, "test.safetensors") {
            Ok(case) => { case::run(&case, reference().as_ref()).unwrap(); }
            Err(Error::Format { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Unsupported cases are reported, neither passed nor failed

/// The reference backend, refusing bf16.
#[derive(Debug)]
struct NoBf16(ReferenceBackend);

impl Backend for NoBf16 {
    fn name(&self) -> &str {
        "no-bf16"
    }
    fn info(&self) -> DeviceInfo {
        self.0.info()
    }
    fn owns(&self, buffer: &Buffer) -> bool {
        self.0.owns(buffer)
    }
    fn alloc(&self, bytes: usize) -> radiant::Result<Buffer> {
        self.0.alloc(bytes)
    }
    fn upload(&self, dst: &Buffer, offset: usize, src: &[u8]) -> radiant::Result<()> {
        self.0.upload(dst, offset, src)
    }
    fn download(&self, src: &Buffer, offset: usize, dst: &mut [u8]) -> radiant::Result<()> {
        self.0.download(src, offset, dst)
    }
    fn synchronize(&self) -> radiant::Result<()> {
        Ok(())
    }
    fn supports(&self, query: &OpQuery) -> Result<(), Unsupported> {
        if query.dtype == DType::BF16 {
            return Err(Unsupported {
                backend: self.name().into(),
                op: query.op,
                reason: "bf16 needs a newer device".into(),
            });
        }
        self.0.supports(query)
    }
    fn matmul(&self, p: &MatmulProblem<'_>) -> radiant::Result<()> {
        self.0.matmul(p)
    }
    fn rms_norm(&self, p: &RmsNormProblem<'_>) -> radiant::Result<()> {
        self.0.rms_norm(p)
    }
    fn fused_add_rms_norm(&self, p: &FusedAddRmsNormProblem<'_>) -> radiant::Result<()> {
        self.0.fused_add_rms_norm(p)
    }
    fn attention(&self, p: &AttentionProblem<'_>) -> radiant::Result<()> {
        self.0.attention(p)
    }
    fn paged_attention(&self, p: &PagedAttentionProblem<'_>) -> radiant::Result<()> {
        self.0.paged_attention(p)
    }
    fn gptq_matmul(&self, p: &radiant::ops::GptqMatmulProblem<'_>) -> radiant::Result<()> {
        self.0.gptq_matmul(p)
    }
    fn awq_matmul(&self, p: &radiant::ops::AwqMatmulProblem<'_>) -> radiant::Result<()> {
        self.0.awq_matmul(p)
    }
    fn nvfp4_matmul(&self, p: &radiant::ops::Nvfp4MatmulProblem<'_>) -> radiant::Result<()> {
        self.0.nvfp4_matmul(p)
    }
}

#[test]
fn unsupported_is_reported_not_failed() {
    let backend = NoBf16(ReferenceBackend::new());
    for case in one_case_per_op(DType::BF16) {
        let report = case::run(&case, &backend).unwrap();
        assert_eq!(
            report.verdict,
            Verdict::Unsupported("bf16 needs a newer device".into())
        );
        assert!(report.outputs.is_empty());
    }
    for case in one_case_per_op(DType::F16) {
        assert_eq!(case::run(&case, &backend).unwrap().verdict, Verdict::Pass);
    }
}

// ---------------------------------------------------------------------------
// Quantized matmuls: weights through the quantizers, checkpoint tensor names

/// A weight `[n, k]` to quantize, f32, with every fifth row non-negative
/// (asymmetric groups with z = 0).
fn weights(rng: &mut Rng, n: usize, k: usize) -> HostTensor {
    let values: Vec<f64> = (0..n * k)
        .map(|i| {
            let v = rng.unit();
            if (i / k).is_multiple_of(5) {
                v.abs()
            } else {
                v
            }
        })
        .collect();
    HostTensor::from_f64(DType::F32, &[n, k], &values).unwrap()
}

fn gptq_weight(rng: &mut Rng, n: usize, k: usize, params: &GptqQuantizeParams) -> GptqWeight {
    GptqWeight::quantize(&weights(rng, n, k), params).unwrap()
}

/// A spread of quantized cases in x dtype `dtype`: GPTQ 4-bit act-order
/// asymmetric v1 with bias, GPTQ 8-bit per-channel symmetric v2 on a 3-D x,
/// AWQ g64, NVFP4 ModelOpt with K padded to 16, NVFP4 compressed-tensors.
fn quant_cases(dtype: DType) -> Vec<Case> {
    let mut rng = Rng(21);
    let mut perm: Vec<usize> = (0..96).collect();
    perm.reverse();
    perm.swap(3, 70);
    let act_order = GptqQuantizeParams {
        bits: 4,
        group_size: GroupSize::Columns(32),
        sym: false,
        zero_format: ZeroFormat::V1,
        act_order: Some(perm),
        scale_dtype: DType::F16,
    };
    let per_channel = GptqQuantizeParams {
        bits: 8,
        group_size: GroupSize::PerChannel,
        sym: true,
        zero_format: ZeroFormat::V2,
        act_order: None,
        scale_dtype: DType::BF16,
    };
    let awq = AwqQuantizeParams {
        group_size: GroupSize::Columns(64),
        scale_dtype: DType::F16,
    };
    vec![
        Case::gptq_matmul(
            rng.tensor(dtype, &[3, 96]),
            &gptq_weight(&mut rng, 40, 96, &act_order),
            Some(rng.tensor(dtype, &[40])),
        )
        .unwrap(),
        Case::gptq_matmul(
            rng.tensor(dtype, &[2, 3, 64]),
            &gptq_weight(&mut rng, 12, 64, &per_channel),
            None,
        )
        .unwrap(),
        Case::awq_matmul(
            rng.tensor(dtype, &[1, 128]),
            &AwqWeight::quantize(&weights(&mut rng, 24, 128), &awq).unwrap(),
            Some(rng.tensor(dtype, &[24])),
        )
        .unwrap(),
        Case::nvfp4_matmul(
            rng.tensor(dtype, &[5, 40]),
            &Nvfp4Weight::quantize(&weights(&mut rng, 7, 40), Nvfp4Producer::ModelOpt).unwrap(),
            Some(rng.tensor(dtype, &[7])),
        )
        .unwrap(),
        Case::nvfp4_matmul(
            rng.tensor(dtype, &[2, 64]),
            &Nvfp4Weight::quantize(&weights(&mut rng, 9, 64), Nvfp4Producer::CompressedTensors)
                .unwrap(),
            None,
        )
        .unwrap(),
    ]
}

/// The reference output rounded to the case's dtype, as `expected`, and
/// the host dequantization in `weight_dtype` as `expected_weight`.
fn with_expected_outputs(case: Case, weight_dtype: DType) -> Case {
    let (dtype, shape) = case.output_spec("out").unwrap();
    let out = &case.reference_outputs().unwrap()[0].1;
    let expected = HostTensor::from_f64(dtype, shape, out).unwrap();
    let weight = dequantized(&case, weight_dtype);
    case.with_expected("expected", expected)
        .unwrap()
        .with_expected("expected_weight", weight)
        .unwrap()
}

/// The case's weight dequantized in `dtype`, rebuilt from its tensors.
fn dequantized(case: &Case, dtype: DType) -> HostTensor {
    use radiant::quant::{AwqTensors, GlobalScale, GptqTensors, Nvfp4Tensors};
    let t = |name: &str| case.input(name).unwrap().clone();
    match case.params() {
        CaseParams::GptqMatmul(p) => GptqWeight::new(
            GptqTensors {
                qweight: t("qweight"),
                qzeros: t("qzeros"),
                scales: t("scales"),
                g_idx: Some(t("g_idx")),
            },
            p.layout(),
        )
        .unwrap()
        .dequantize(dtype),
        CaseParams::AwqMatmul(p) => AwqWeight::new(
            AwqTensors {
                qweight: t("qweight"),
                qzeros: t("qzeros"),
                scales: t("scales"),
            },
            p.layout(),
        )
        .unwrap()
        .dequantize(dtype),
        CaseParams::Nvfp4Matmul => {
            let global_scale = match case.input("weight_scale_2") {
                Some(g) => GlobalScale::Multiplier(g.to_f32_vec()[0]),
                None => GlobalScale::Divisor(t("weight_global_scale").to_f32_vec()[0]),
            };
            let k = *case.input("x").unwrap().shape().last().unwrap();
            Nvfp4Weight::with_in_features(
                Nvfp4Tensors {
                    weight_packed: t("weight_packed"),
                    weight_scale: t("weight_scale"),
                    global_scale,
                },
                k,
            )
            .unwrap()
            .dequantize(dtype)
        }
        other => panic!("not a quantized case: {other:?}"),
    }
    .unwrap()
}

#[test]
fn quant_cases_round_trip_and_pass_on_reference() {
    let backend = reference();
    for dtype in DType::FLOATS {
        for case in quant_cases(dtype) {
            let op = case.op();
            // Against the reference: one output, `out`.
            let report = case::run(&case, backend.as_ref()).unwrap();
            assert_eq!(report.verdict, Verdict::Pass, "{op} {dtype}: {report:?}");
            assert_eq!(report.outputs.len(), 1);
            assert_eq!(report.outputs[0].against, Against::Reference);

            // Against expected outputs, through a file, with extras kept.
            let case = with_expected_outputs(case, DType::F16)
                .with_metadata("source", "radiant quantizer")
                .unwrap()
                .with_metadata("expected_weight_dtype", "f16")
                .unwrap();
            let path = temp_path(&format!("quant_round_trip_{op}_{dtype}.safetensors"));
            case.save(&path).unwrap();
            let loaded = Case::load(&path).unwrap();
            assert_eq!(loaded.params(), case.params(), "{op}");
            assert_eq!(loaded.inputs(), case.inputs());
            assert_eq!(loaded.expected_outputs(), case.expected_outputs());
            assert_eq!(loaded.extra_metadata(), case.extra_metadata());
            assert_eq!(loaded.dtype(), dtype);
            assert_eq!(loaded.summary(), case.summary());
            assert_eq!(loaded.to_bytes().unwrap(), case.to_bytes().unwrap());

            let report = case::run(&loaded, backend.as_ref()).unwrap();
            assert_eq!(report.verdict, Verdict::Pass, "{op} {dtype}: {report:?}");
            let names: Vec<&str> = report.outputs.iter().map(|o| o.name.as_str()).collect();
            assert_eq!(names, ["out", "weight"], "{op}");
            assert!(
                report
                    .outputs
                    .iter()
                    .all(|o| o.against == Against::Expected)
            );
            let weight = &report.outputs[1].comparison;
            assert_eq!((weight.rel_l2, weight.max_abs), (0.0, 0.0), "{op}: exact");
        }
    }
}

#[test]
fn quant_params_are_typed_and_spelled_out() {
    let cases = quant_cases(DType::F16);
    assert_eq!(
        cases[0].params(),
        &CaseParams::GptqMatmul(GptqCaseParams {
            bits: 4,
            group_size: GroupSize::Columns(32),
            sym: Some(false),
            zero_format: ZeroFormat::V1,
        })
    );
    assert!(
        cases[0].summary().contains("act-order"),
        "{}",
        cases[0].summary()
    );
    assert_eq!(
        cases[1].params(),
        &CaseParams::GptqMatmul(GptqCaseParams {
            bits: 8,
            group_size: GroupSize::PerChannel,
            sym: Some(true),
            zero_format: ZeroFormat::V2,
        })
    );
    assert!(
        cases[1].summary().starts_with("M=6 N=12 K=64"),
        "{}",
        cases[1].summary()
    );
    assert_eq!(
        cases[2].params(),
        &CaseParams::AwqMatmul(AwqCaseParams {
            group_size: GroupSize::Columns(64),
        })
    );
    assert_eq!(cases[3].params(), &CaseParams::Nvfp4Matmul);
    assert!(cases[3].input("weight_scale_2").is_some());
    assert!(
        cases[3].summary().contains("Kp=48"),
        "{}",
        cases[3].summary()
    );
    assert!(cases[4].input("weight_global_scale").is_some());

    // Parameters are reserved metadata keys.
    for key in ["bits", "group_size", "sym", "format", "checkpoint_format"] {
        assert!(cases[0].clone().with_metadata(key, "1").is_err(), "{key}");
    }
    assert!(cases[2].clone().with_metadata("group_size", "1").is_err());

    // Plain-text spellings as golden files write them, the legacy
    // `checkpoint_format`, and `sym` absent (not stated).
    let case = &cases[0];
    let tensors: Vec<(&str, &HostTensor)> = case
        .inputs()
        .iter()
        .map(|(name, t)| (name.as_str(), t))
        .collect();
    let bytes = raw_file(
        &[
            ("op", "gptq_matmul"),
            ("bits", "\"4\""),
            ("group_size", "32"),
            ("checkpoint_format", "\"gptq\""),
        ],
        &tensors,
    );
    let loaded = Case::from_bytes(&bytes, "legacy").unwrap();
    assert_eq!(
        loaded.params(),
        &CaseParams::GptqMatmul(GptqCaseParams {
            sym: None,
            ..match case.params() {
                CaseParams::GptqMatmul(p) => *p,
                _ => unreachable!(),
            }
        })
    );
    assert_eq!(
        case::run(&loaded, reference().as_ref()).unwrap().verdict,
        Verdict::Pass
    );
}

#[test]
fn quant_expected_weight_is_exact() {
    let backend = reference();
    let case = quant_cases(DType::F32).remove(0);
    let good = with_expected_outputs(case.clone(), DType::F16);
    let weight = good.expected("expected_weight").unwrap().clone();
    let values = weight.to_f64_vec();

    // One ulp off in one element fails, with the output named.
    let i = values.iter().position(|v| *v != 0.0).unwrap();
    let mut bytes = weight.bytes().to_vec();
    let bits = u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) + 1;
    bytes[2 * i..2 * i + 2].copy_from_slice(&bits.to_le_bytes());
    let off = HostTensor::from_bytes(DType::F16, weight.shape(), bytes).unwrap();
    let bad = good.clone().with_expected("expected_weight", off).unwrap();
    let report = case::run(&bad, backend.as_ref()).unwrap();
    assert_eq!(report.verdict, Verdict::Fail);
    let detail = report.failure_detail().unwrap();
    assert!(detail.starts_with("weight vs expected"), "{detail}");
    assert!(
        !detail.contains("out vs"),
        "the output itself passes: {detail}"
    );

    // The sign of a zero does not matter (ModelOpt decodes -0 as +0).
    let zero = values
        .iter()
        .position(|v| *v == 0.0)
        .expect("a zero weight");
    let mut signed = values;
    signed[zero] = -0.0;
    let signed = HostTensor::from_f64(DType::F16, weight.shape(), &signed).unwrap();
    let case = good.with_expected("expected_weight", signed).unwrap();
    assert_eq!(
        case::run(&case, backend.as_ref()).unwrap().verdict,
        Verdict::Pass
    );

    // expected_weight in another float dtype is compared in that dtype.
    for dtype in DType::FLOATS {
        let case = with_expected_outputs(quant_cases(DType::BF16).remove(4), dtype);
        let report = case::run(&case, backend.as_ref()).unwrap();
        assert_eq!(report.verdict, Verdict::Pass, "{dtype}: {report:?}");
        assert_eq!(case.output_spec("weight").unwrap().0, dtype);
    }
}

#[test]
fn quant_bias_in_checkpoint_dtype_is_rounded_to_x() {
    let backend = reference();
    for (x_dtype, bias_dtype) in [
        (DType::F32, DType::F16),
        (DType::BF16, DType::F16),
        (DType::F16, DType::F32),
    ] {
        let case = quant_cases(x_dtype).remove(0);
        let bias = case.input("bias").unwrap().to_dtype(bias_dtype).unwrap();
        let mut inputs = case.inputs().clone();
        inputs.insert("bias".into(), bias);
        let case = Case::new("bias", case.params().clone(), inputs).unwrap();
        assert!(
            case.summary().ends_with(&format!("+bias({bias_dtype})")),
            "{}",
            case.summary()
        );
        let report = case::run(&case, backend.as_ref()).unwrap();
        assert_eq!(report.verdict, Verdict::Pass, "{report:?}");
    }
}

#[test]
fn quant_modelopt_names_are_accepted() {
    // ModelOpt's `weight` for the packed codes and a 0-d `weight_scale_2`.
    let case = quant_cases(DType::F16).remove(3);
    let g = case
        .input("weight_scale_2")
        .unwrap()
        .clone()
        .reshape(&[])
        .unwrap();
    let bytes = raw_file(
        &[("op", "nvfp4_matmul"), ("source", "nvidia-modelopt")],
        &[
            ("x", case.input("x").unwrap()),
            ("weight", case.input("weight_packed").unwrap()),
            ("weight_scale", case.input("weight_scale").unwrap()),
            ("weight_scale_2", &g),
        ],
    );
    let loaded = Case::from_bytes(&bytes, "modelopt").unwrap();
    let report = case::run(&loaded, reference().as_ref()).unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{report:?}");
    // Same numbers as the weight_packed spelling (without its bias).
    let mut inputs = case.inputs().clone();
    inputs.remove("bias");
    let plain = Case::new("plain", CaseParams::Nvfp4Matmul, inputs).unwrap();
    assert_eq!(
        loaded.reference_outputs().unwrap(),
        plain.reference_outputs().unwrap()
    );
}

/// A quantized case's tensors with `changes` applied (`None` removes).
fn quant_file(
    case: &Case,
    metadata: &[(&str, &str)],
    changes: &[(&str, Option<&HostTensor>)],
) -> Vec<u8> {
    let mut inputs = case.inputs().clone();
    for (name, tensor) in changes {
        match tensor {
            Some(t) => inputs.insert(name.to_string(), (*t).clone()),
            None => inputs.remove(*name),
        };
    }
    let tensors: Vec<(&str, &HostTensor)> =
        inputs.iter().map(|(name, t)| (name.as_str(), t)).collect();
    raw_file(metadata, &tensors)
}

#[test]
fn malformed_quant_files_are_format_errors() {
    let load = |bytes: &[u8]| Case::from_bytes(bytes, "test.safetensors");
    let cases = quant_cases(DType::F16);
    let mut rng = Rng(13);

    // ---- gptq ----
    let gptq = &cases[0];
    let meta = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        let mut m = vec![
            ("op", "gptq_matmul"),
            ("bits", "4"),
            ("group_size", "32"),
            ("sym", "false"),
            ("format", "gptq"),
        ];
        for (k, v) in extra {
            m.retain(|(key, _)| key != k);
            if !v.is_empty() {
                m.push((k, v));
            }
        }
        m
    };
    assert!(load(&quant_file(gptq, &meta(&[]), &[])).is_ok());
    let bad = |extra: &[(&'static str, &'static str)], needle: &str| {
        assert_format_error(load(&quant_file(gptq, &meta(extra), &[])), needle);
    };
    bad(&[("bits", "")], "metadata `bits` is required");
    bad(&[("group_size", "")], "metadata `group_size` is required");
    bad(&[("bits", "3")], "bits");
    bad(&[("bits", "four")], "metadata `bits`");
    bad(&[("bits", "-4")], "metadata `bits`");
    bad(&[("group_size", "0")], "metadata `group_size`");
    bad(&[("group_size", "-2")], "metadata `group_size`");
    bad(&[("group_size", "64")], "scales");
    bad(&[("format", "marlin")], "metadata `format`");
    bad(&[("checkpoint_format", "gptq_v2")], "disagree");
    bad(&[("sym", "yes")], "metadata `sym`");
    bad(&[("sym", "true")], "`sym` = true");
    let with = |changes: &[(&str, Option<&HostTensor>)], needle: &str| {
        assert_format_error(load(&quant_file(gptq, &meta(&[]), changes)), needle);
    };
    with(&[("g_idx", None)], "needs tensor `g_idx`");
    with(&[("qzeros", None)], "needs tensor `qzeros`");
    let qweight = gptq.input("qweight").unwrap().clone();
    with(&[("qwieght", Some(&qweight))], "unknown tensor `qwieght`");
    let mut g_idx = gptq.input("g_idx").unwrap().to_i32_vec().unwrap();
    g_idx[5] = 3; // G = 3 groups: 0..3
    let g_idx = HostTensor::from_i32(&[96], &g_idx).unwrap();
    with(&[("g_idx", Some(&g_idx))], "g_idx");
    let short_g_idx = HostTensor::from_i32(&[95], &[0; 95]).unwrap();
    with(&[("g_idx", Some(&short_g_idx))], "g_idx");
    let scales = rng.tensor(DType::F16, &[2, 40]);
    with(&[("scales", Some(&scales))], "scales");
    let nan_scales = HostTensor::from_f64(DType::F16, &[3, 40], &[f64::NAN; 120]).unwrap();
    with(&[("scales", Some(&nan_scales))], "finite");
    let float_qweight = rng.tensor(DType::F32, &[12, 40]);
    with(&[("qweight", Some(&float_qweight))], "qweight");
    let x = rng.tensor(DType::F16, &[3, 95]);
    with(&[("x", Some(&x))], "`x`");
    let x = HostTensor::from_i32(&[3, 96], &[0; 288]).unwrap();
    with(&[("x", Some(&x))], "`x`");
    let bias = rng.tensor(DType::F16, &[41]);
    with(&[("bias", Some(&bias))], "bias");
    let bias = HostTensor::from_i32(&[40], &[0; 40]).unwrap();
    with(&[("bias", Some(&bias))], "bias");
    let expected = rng.tensor(DType::F16, &[3, 41]);
    with(
        &[("expected", Some(&expected))],
        "`expected` is f16 [3, 41]",
    );
    let expected = rng.tensor(DType::F32, &[3, 40]);
    with(&[("expected", Some(&expected))], "`expected` is f32");
    let weight = rng.tensor(DType::F16, &[96, 40]);
    with(
        &[("expected_weight", Some(&weight))],
        "`expected_weight` is f16 [96, 40]",
    );
    let weight = HostTensor::from_i32(&[40, 96], &[0; 3840]).unwrap();
    with(
        &[("expected_weight", Some(&weight))],
        "`expected_weight` must be",
    );

    // ---- awq ----
    let awq = &cases[2];
    let awq_meta = [("op", "awq_matmul"), ("group_size", "64")];
    assert!(load(&quant_file(awq, &awq_meta, &[])).is_ok());
    assert!(
        load(&quant_file(
            awq,
            &[("op", "awq_matmul"), ("group_size", "64"), ("bits", "4")],
            &[]
        ))
        .is_ok()
    );
    assert_format_error(
        load(&quant_file(
            awq,
            &[("op", "awq_matmul"), ("group_size", "64"), ("bits", "8")],
            &[],
        )),
        "AWQ is 4-bit",
    );
    assert_format_error(
        load(&quant_file(awq, &[("op", "awq_matmul")], &[])),
        "metadata `group_size` is required",
    );
    assert_format_error(
        load(&quant_file(
            awq,
            &[("op", "awq_matmul"), ("group_size", "48")],
            &[],
        )),
        "group_size",
    );
    let g_idx = HostTensor::from_i32(&[128], &[0; 128]).unwrap();
    assert_format_error(
        load(&quant_file(awq, &awq_meta, &[("g_idx", Some(&g_idx))])),
        "unknown tensor `g_idx`",
    );

    // ---- nvfp4 ----
    let nvfp4 = &cases[3];
    let nv_meta = [("op", "nvfp4_matmul")];
    assert!(load(&quant_file(nvfp4, &nv_meta, &[])).is_ok());
    let nv = |changes: &[(&str, Option<&HostTensor>)], needle: &str| {
        assert_format_error(load(&quant_file(nvfp4, &nv_meta, changes)), needle);
    };
    let packed = nvfp4.input("weight_packed").unwrap().clone();
    let g = nvfp4.input("weight_scale_2").unwrap().clone();
    nv(
        &[("weight", Some(&packed))],
        "both `weight_packed` and `weight`",
    );
    nv(&[("weight_packed", None)], "needs tensor `weight_packed`");
    nv(&[("weight_scale_2", None)], "needs `weight_scale_2`");
    nv(&[("weight_global_scale", Some(&g))], "ambiguous");
    nv(&[("weight_scale", None)], "needs tensor `weight_scale`");
    let two = HostTensor::from_f64(DType::F32, &[2], &[1.0, 1.0]).unwrap();
    nv(
        &[("weight_scale_2", Some(&two))],
        "`weight_scale_2` must be one float",
    );
    let negative = HostTensor::from_f64(DType::F32, &[1], &[-1.0]).unwrap();
    nv(&[("weight_scale_2", Some(&negative))], "global_scale");
    let mut scale_bytes = nvfp4.input("weight_scale").unwrap().bytes().to_vec();
    scale_bytes[2] = 0x7F;
    let nan_scale = HostTensor::from_u8(DType::F8E4M3, &[7, 3], scale_bytes).unwrap();
    nv(&[("weight_scale", Some(&nan_scale))], "NaN");
    let i32_packed = HostTensor::from_i32(&[7, 6], &[0; 42]).unwrap();
    nv(&[("weight_packed", Some(&i32_packed))], "weight_packed");
    // x's K must round up to the packed width (48): 40 is the real K,
    // 48 reads the padding as weights, 30 (padded to 32) does not fit.
    let x48 = rng.tensor(DType::F16, &[5, 48]);
    assert!(load(&quant_file(nvfp4, &nv_meta, &[("x", Some(&x48))])).is_ok());
    let x = rng.tensor(DType::F16, &[5, 30]);
    nv(&[("x", Some(&x))], "`x`");
    let pqs = rng.tensor(DType::F16, &[40]);
    nv(
        &[("pre_quant_scale", Some(&pqs))],
        "unknown tensor `pre_quant_scale`",
    );
}

#[test]
fn quant_cases_follow_supports() {
    // NoBf16 refuses bf16 in `supports`: those cases are reported
    // unsupported with no outputs. It accepts f16 (delegating to the
    // reference), so those cases run and pass.
    let backend = NoBf16(ReferenceBackend::new());
    for case in quant_cases(DType::BF16) {
        let report = case::run(&case, &backend).unwrap();
        assert!(
            matches!(report.verdict, Verdict::Unsupported(_)),
            "{} bf16: {}",
            case.op(),
            report.verdict
        );
        assert!(report.outputs.is_empty());
    }
    for case in quant_cases(DType::F16) {
        let report = case::run(&case, &backend).unwrap();
        assert!(
            matches!(report.verdict, Verdict::Pass),
            "{} f16: {}",
            case.op(),
            report.verdict
        );
    }
}

// ---------------------------------------------------------------------------
// Golden vectors from the quantization packages

#[test]
fn golden_quant_cases_pass_on_reference() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/quant");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {} ({e})", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "safetensors"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no case", dir.display());
    let backend = reference();
    let mut ops = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for file in &files {
        let case = Case::load(file).unwrap_or_else(|e| panic!("{e}"));
        ops.insert(case.op());
        let report = case::run(&case, backend.as_ref()).unwrap();
        assert!(
            report
                .outputs
                .iter()
                .all(|o| o.against == Against::Expected),
            "{}: golden files carry their expected outputs",
            file.display()
        );
        if case.expected("expected_weight").is_some() {
            assert!(
                report.outputs.iter().any(|o| o.name == "weight"),
                "{}: expected_weight is checked",
                file.display()
            );
        }
        if report.verdict != Verdict::Pass {
            failures.push(format!(
                "{}: {} {}",
                file.display(),
                report.verdict,
                report.failure_detail().unwrap_or_default()
            ));
        }
    }
    assert_eq!(
        ops.into_iter().collect::<Vec<_>>(),
        [OpKind::GptqMatmul, OpKind::AwqMatmul, OpKind::Nvfp4Matmul]
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// Golden vectors from PyTorch: the reference must pass every one

#[test]
fn golden_core_cases_pass_on_reference() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/core");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "golden files are missing: cannot read {} ({e}); generate them with scripts/golden/make_core_cases.py",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "safetensors"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "golden files are missing: {} holds no .safetensors file",
        dir.display()
    );
    let backend = reference();
    let mut failures = Vec::new();
    for file in &files {
        let case = Case::load(file).unwrap_or_else(|e| panic!("{e}"));
        let report = case::run(&case, backend.as_ref()).unwrap();
        assert!(
            report
                .outputs
                .iter()
                .all(|o| o.against == Against::Expected),
            "{}: golden files carry their expected outputs",
            file.display()
        );
        if report.verdict != Verdict::Pass {
            failures.push(format!(
                "{}: {} {}",
                file.display(),
                report.verdict,
                report.failure_detail().unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// The CLI

fn radiant_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_radiant"))
        .args(args)
        .output()
        .expect("the radiant binary runs")
}

#[test]
fn cli_info() {
    let output = radiant_cli(&["info"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("reference"), "{stdout}");
    assert!(stdout.contains("paged_attention"), "{stdout}");
}

#[test]
fn cli_replay() {
    let good = temp_path("cli_good.safetensors");
    one_case_per_op(DType::F16).remove(3).save(&good).unwrap();
    let output = radiant_cli(&["replay", good.to_str().unwrap(), "--backend", "reference"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("cli_good.safetensors"), "{stdout}");
    assert!(stdout.contains("PASS"), "{stdout}");

    // A failing case exits 1.
    let case = one_case_per_op(DType::F32).remove(0);
    let (dtype, shape) = case.output_spec("out").unwrap();
    let zeros = HostTensor::zeros(dtype, shape).unwrap();
    let failing = temp_path("cli_failing.safetensors");
    case.with_expected("expected", zeros)
        .unwrap()
        .save(&failing)
        .unwrap();
    let output = radiant_cli(&["replay", failing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("FAIL"));

    // A malformed file is reported by name, the others still run, exit 1.
    let bad = temp_path("cli_bad.safetensors");
    std::fs::write(&bad, b"garbage").unwrap();
    let output = radiant_cli(&["replay", bad.to_str().unwrap(), good.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("error: ") && stdout.contains("cli_bad.safetensors"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PASS"),
        "the good file still runs: {stdout}"
    );

    // An unknown backend is a setup error: exit 2, `error: ...`.
    let output = radiant_cli(&["replay", good.to_str().unwrap(), "--backend", "nope"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: "));
}

#[test]
fn cli_check_quick_on_reference() {
    let output = radiant_cli(&["check", "--quick", "--backend", "reference"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for op in OpKind::ALL.map(OpKind::name) {
        assert!(stdout.contains(op), "{op} missing from {stdout}");
    }
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn check_cases_are_valid_and_cover_every_dtype() {
    let cases = radiant::check::cases(true).unwrap();
    for dtype in DType::FLOATS {
        for op in OpKind::ALL {
            assert!(
                cases.iter().any(|c| c.op() == op && c.dtype() == dtype),
                "{op} {dtype}"
            );
        }
    }
    // Attention cases check the lse too.
    assert!(
        cases
            .iter()
            .filter(|c| c.op() == OpKind::Attention)
            .all(|c| c.expected("expected_lse").is_some())
    );
    // The quantized cases cover what their formats vary in.
    let summaries: Vec<String> = cases
        .iter()
        .filter(|c| c.dtype() == DType::F16)
        .map(|c| format!("{} {}", c.op(), c.summary()))
        .collect();
    for needle in [
        "gptq_matmul M=1 ",
        "4bit g32 asym gptq act-order",
        "8bit g-1 sym gptq_v2",
        "8bit g64 asym gptq act-order",
        "awq_matmul M=5 N=40 K=192 4bit g64 +bias",
        "4bit g128",
        "N=63 K=256 scale_2",
        "global_scale +bias",
        "Kp=112",
    ] {
        assert!(
            summaries.iter().any(|s| s.contains(needle)),
            "no check case with `{needle}`: {summaries:#?}"
        );
    }
}
