//! Case files (`radiant::case`) and the `radiant` CLI, from the outside:
//! round trips, verdicts, malformed input, golden vectors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use proptest::prelude::*;
use radiant::case::{self, Against, Case, CaseParams, Verdict};
use radiant::cpu::ReferenceBackend;
use radiant::ops::{
    AttentionParams, AttentionProblem, BLayout, FusedAddRmsNormProblem, MatmulParams,
    MatmulProblem, PagedAttentionProblem, RmsNormParams, RmsNormProblem,
};
use radiant::{
    Backend, Buffer, DType, DeviceInfo, Error, HostTensor, OpKind, OpQuery, Unsupported,
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

#[test]
fn quantized_cases_load_and_are_not_implemented_yet() {
    let mut rng = Rng(2);
    let x = rng.tensor(DType::F16, &[2, 64]);
    let qweight = HostTensor::from_i32(&[8, 16], &[0; 128]).unwrap();
    let bytes = raw_file(
        &[("op", "gptq_matmul"), ("bits", "4"), ("group_size", "32")],
        &[("x", &x), ("qweight", &qweight)],
    );
    let case = Case::from_bytes(&bytes, "gptq").unwrap();
    assert_eq!(case.op(), OpKind::GptqMatmul);
    let report = case::run(&case, reference().as_ref()).unwrap();
    match report.verdict {
        Verdict::Unsupported(reason) => assert!(reason.contains("not implemented in case files")),
        other => panic!("expected unsupported, got {other}"),
    }
    // Raw params survive a round trip.
    let again = Case::from_bytes(&case.to_bytes().unwrap(), "gptq").unwrap();
    assert_eq!(again.params(), case.params());
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
    for op in [
        "matmul",
        "rms_norm",
        "fused_add_rms_norm",
        "attention",
        "paged_attention",
    ] {
        assert!(stdout.contains(op), "{op} missing from {stdout}");
    }
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn check_cases_are_valid_and_cover_every_dtype() {
    let cases = radiant::check::cases(true).unwrap();
    for dtype in DType::FLOATS {
        for op in [
            OpKind::Matmul,
            OpKind::RmsNorm,
            OpKind::FusedAddRmsNorm,
            OpKind::Attention,
            OpKind::PagedAttention,
        ] {
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
}
