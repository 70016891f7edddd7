//! Edge values every backend must treat alike: non-finite inputs, parameters
//! at the edge of what validation admits, values whose squares leave the f32
//! range, and zero-size tensors. Each test is a reproducer of a disagreement
//! once seen between backends; the answer is the reference backend's (or a
//! typed error on every backend), compared NaN for NaN.

use radiant::ops::tolerance::{Tolerance, compare, lse_tolerance, tolerance};
use radiant::ops::{self, AttentionParams, BLayout, MatmulParams, RmsNormParams};
use radiant::quant::{GptqQuantizeParams, GroupSize, ZeroFormat};
use radiant::{Backend, DType, Error, GptqWeight, HostTensor, OpKind, OpQuery, Tensor};

use crate::harness::{self, Check, fail, must};

fn put(backend: &dyn Backend, dtype: DType, shape: &[usize], values: &[f64]) -> Check<Tensor> {
    let host = HostTensor::from_f64(dtype, shape, values).map_err(harness::setup)?;
    backend.upload_tensor(&host).map_err(harness::setup)
}

fn put_i32(backend: &dyn Backend, shape: &[usize], values: &[i32]) -> Check<Tensor> {
    let host = HostTensor::from_i32(shape, values).map_err(harness::setup)?;
    backend.upload_tensor(&host).map_err(harness::setup)
}

fn get(backend: &dyn Backend, t: &Tensor) -> Check<Vec<f64>> {
    Ok(backend
        .download_tensor(t)
        .map_err(harness::setup)?
        .to_f64_vec())
}

/// `got` equals `want` NaN for NaN (same positions), and the other values
/// within `tol`.
fn same_answer(what: &str, tol: Tolerance, got: &[f64], want: &[f64]) -> Check {
    if got.len() != want.len() {
        return Err(fail(format!(
            "{what}: {} values, reference has {}",
            got.len(),
            want.len()
        )));
    }
    if let Some(i) = (0..got.len()).find(|&i| got[i].is_nan() != want[i].is_nan()) {
        return Err(fail(format!(
            "{what}: element {i} is {} but the reference gives {}",
            got[i], want[i]
        )));
    }
    let (g, w): (Vec<f64>, Vec<f64>) = got
        .iter()
        .zip(want)
        .filter(|(g, _)| !g.is_nan())
        .map(|(g, w)| (*g, *w))
        .unzip();
    let c = compare(&g, &w, tol);
    if !c.passed {
        return Err(fail(format!(
            "{what}: got {got:?}, the reference gives {want:?} (rel_l2 {:.2e})",
            c.rel_l2
        )));
    }
    Ok(())
}

fn reference() -> std::sync::Arc<dyn Backend> {
    radiant::device("reference").expect("the reference backend is always present")
}

/// Runs `run` on `backend` and on the reference and requires the same
/// answer (every output), or requires both to refuse with `InvalidArgument`.
fn agree(
    backend: &dyn Backend,
    what: &str,
    tols: &[Tolerance],
    run: impl Fn(&dyn Backend) -> Check<Result<Vec<Vec<f64>>, Error>>,
) -> Check {
    let want = run(reference().as_ref())?;
    let got = run(backend)?;
    match (got, want) {
        (Ok(got), Ok(want)) => {
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                same_answer(&format!("{what} output {i}"), tols[i], g, w)?;
            }
            Ok(())
        }
        (Err(Error::InvalidArgument { .. }), Err(Error::InvalidArgument { .. })) => Ok(()),
        (got, want) => Err(fail(format!(
            "{what}: {} gives {got:?}, the reference {want:?}",
            backend.name()
        ))),
    }
}

fn attention_case(
    backend: &dyn Backend,
    dtype: DType,
    q: &[f64],
    k: &[f64],
    params: AttentionParams,
) -> Check<Result<Vec<Vec<f64>>, Error>> {
    attention_case_v(backend, dtype, q, k, &vec![1.0; k.len()], params)
}

fn attention_case_v(
    backend: &dyn Backend,
    dtype: DType,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    params: AttentionParams,
) -> Check<Result<Vec<Vec<f64>>, Error>> {
    let keys = k.len() / 4;
    let q_t = put(backend, dtype, &[q.len() / 4, 1, 4], q)?;
    let k_t = put(backend, dtype, &[keys, 1, 4], k)?;
    let v_t = put(backend, dtype, &[keys, 1, 4], v)?;
    let cu_q = put_i32(backend, &[2], &[0, (q.len() / 4) as i32])?;
    let cu_k = put_i32(backend, &[2], &[0, keys as i32])?;
    let out = backend
        .alloc_tensor(dtype, q_t.shape())
        .map_err(harness::setup)?;
    let lse = backend
        .alloc_tensor(DType::F32, &[1, q.len() / 4])
        .map_err(harness::setup)?;
    let ran = ops::attention_into(
        backend,
        &q_t,
        &k_t,
        &v_t,
        &cu_q,
        &cu_k,
        &out,
        Some(&lse),
        params,
    );
    Ok(match ran {
        Ok(()) => Ok(vec![get(backend, &out)?, get(backend, &lse)?]),
        Err(e) => Err(e),
    })
}

fn attention_agrees(
    backend: &dyn Backend,
    what: &str,
    q: &[f64],
    k: &[f64],
    params: AttentionParams,
) {
    for dtype in DType::FLOATS {
        let query = OpQuery {
            head_dim: Some(4),
            ..OpQuery::new(OpKind::Attention, dtype)
        };
        if !harness::supported(backend, &query) {
            continue;
        }
        let tols = [tolerance(OpKind::Attention, dtype), lse_tolerance()];
        must(agree(backend, &format!("{what} [{dtype}]"), &tols, |b| {
            attention_case(b, dtype, q, k, params)
        }));
    }
}

/// A NaN or +inf score makes its row NaN (out and lse); −inf scores weigh 0;
/// a row of only −inf scores is fully masked. Before: cpu returned 1.0 /
/// lse 2.0 and wgpu 0 / −inf for a NaN key, cpu 0.125 for a NaN query.
pub fn attention_non_finite(backend: &dyn Backend) {
    let ones = [1.0; 8];
    let mut nan_key = ones;
    nan_key[4] = f64::NAN;
    let p = AttentionParams::default();
    attention_agrees(backend, "NaN in k", &[1.0; 4], &nan_key, p);
    let mut nan_q = [1.0; 4];
    nan_q[2] = f64::NAN;
    attention_agrees(backend, "NaN in q", &nan_q, &ones, p);
    let mut inf_key = ones;
    inf_key[0] = f64::INFINITY;
    attention_agrees(backend, "+inf score", &[1.0; 4], &inf_key, p);
    let mut neg_key = ones;
    neg_key[0] = f64::NEG_INFINITY;
    attention_agrees(
        backend,
        "one -inf score",
        &[1.0, 0.0, 0.0, 0.0],
        &neg_key,
        p,
    );
    attention_agrees(
        backend,
        "only -inf scores",
        &[1.0, 0.0, 0.0, 0.0],
        &[f64::NEG_INFINITY, 1.0, 1.0, 1.0],
        p,
    );
    let capped = AttentionParams { softcap: 5.0, ..p };
    attention_agrees(backend, "NaN in k, softcap", &[1.0; 4], &nan_key, capped);
    // A NaN value at a key the causal mask hides from the first query must
    // not reach it (0 · NaN is NaN: cpu multiplied masked probabilities).
    let causal = AttentionParams { causal: true, ..p };
    let mut v = [0.5; 8];
    v[5] = f64::NAN;
    for dtype in DType::FLOATS {
        let tols = [tolerance(OpKind::Attention, dtype), lse_tolerance()];
        must(agree(
            backend,
            &format!("masked NaN in v [{dtype}]"),
            &tols,
            |b| attention_case_v(b, dtype, &[1.0; 8], &[0.25; 8], &v, causal),
        ));
    }
}

/// Windows up to i64::MAX are unbounded, not wrapped (before: reference and
/// cpu masked every key for `window_right = i64::MAX`).
pub fn attention_huge_windows(backend: &dyn Backend) {
    let q = [0.5, -1.0, 0.25, 1.0, 1.0, 0.0, -0.5, 0.5];
    let k = [
        0.1, 0.2, 0.3, 0.4, -0.4, 0.3, -0.2, 0.1, 1.0, 1.0, -1.0, 0.5,
    ];
    for (left, right) in [(i64::MAX, i64::MAX), (i64::MAX - 1, 0), (0, i64::MAX)] {
        let p = AttentionParams {
            window_left: left,
            window_right: right,
            ..AttentionParams::default()
        };
        attention_agrees(backend, &format!("window ({left}, {right})"), &q, &k, p);
    }
}

/// Parameters are checked and used in f32: a scale that is inf in f32, or a
/// subnormal softcap, is refused everywhere; huge and tiny softcaps that
/// are normal f32 give the reference's answer (before: 2^31 gave uniform
/// weights on cpu, 1e6 was 5% off on cpu and wgpu).
pub fn attention_f32_parameters(backend: &dyn Backend) {
    let q = [0.5, -1.0, 0.25, 1.0];
    let k = [
        0.1, 0.2, 0.3, 0.4, -0.4, 0.3, -0.2, 0.1, 1.0, 1.0, -1.0, 0.5,
    ];
    let base = AttentionParams::default();
    for params in [
        AttentionParams {
            softmax_scale: Some(1e39),
            ..base
        },
        AttentionParams {
            softcap: 1e-46,
            ..base
        },
        AttentionParams {
            softcap: 2f64.powi(31),
            ..base
        },
        AttentionParams {
            softcap: 1e6,
            ..base
        },
        AttentionParams {
            softcap: 1e-30,
            ..base
        },
        AttentionParams {
            softmax_scale: Some(1e30),
            softcap: 1e-30,
            ..base
        },
    ] {
        attention_agrees(backend, &format!("{params:?}"), &q, &k, params);
    }
}

/// paged_attention with a NaN in the cache: NaN out on every backend.
pub fn paged_attention_non_finite(backend: &dyn Backend) {
    for dtype in DType::FLOATS {
        let query = OpQuery {
            head_dim: Some(4),
            ..OpQuery::new(OpKind::PagedAttention, dtype)
        };
        if !harness::supported(backend, &query) {
            continue;
        }
        let tols = [tolerance(OpKind::PagedAttention, dtype)];
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            must(agree(
                backend,
                &format!("paged, {bad} in k_cache [{dtype}]"),
                &tols,
                |b| {
                    // Two sequences of 3 tokens in blocks of 2; the bad value
                    // is in sequence 0's second token.
                    let mut k = vec![0.5; 4 * 2 * 4];
                    k[4] = bad;
                    let q = put(b, dtype, &[2, 1, 4], &[1.0; 8])?;
                    let kc = put(b, dtype, &[4, 2, 1, 4], &k)?;
                    let vc = put(b, dtype, &[4, 2, 1, 4], &[1.0; 32])?;
                    let bt = put_i32(b, &[2, 2], &[0, 1, 2, 3])?;
                    let lens = put_i32(b, &[2], &[3, 3])?;
                    let ran = ops::paged_attention(
                        b,
                        &q,
                        &kc,
                        &vc,
                        &bt,
                        &lens,
                        AttentionParams::default(),
                    );
                    Ok(match ran {
                        Ok(out) => Ok(vec![get(b, &out)?]),
                        Err(e) => Err(e),
                    })
                },
            ));
        }
    }
}

/// Rows whose f32 sum of squares overflows (1e20) or underflows with
/// eps = 0 (1e-25) normalize like the reference (before: cpu / wgpu gave 0
/// and inf). Also for fused_add_rms_norm, and eps that is inf in f32 is
/// refused everywhere.
pub fn rms_norm_extreme_scales(backend: &dyn Backend) {
    for dtype in DType::FLOATS {
        if !harness::supported(backend, &OpQuery::new(OpKind::RmsNorm, dtype)) {
            continue;
        }
        let tols = [tolerance(OpKind::RmsNorm, dtype)];
        let weight: Vec<f64> = (0..8).map(|i| 0.5 + i as f64 / 8.0).collect();
        for (value, eps) in [
            (1e20f64, 1e-6),
            (-3e37, 0.0),
            (1e-25, 0.0),
            (1e-25, 1e-6),
            (0.0, 1e-6),
        ] {
            if dtype == DType::F16 && value.abs() > 65504.0 {
                continue;
            }
            let x: Vec<f64> = (0..16)
                .map(|i| value * (1.0 + (i % 5) as f64 / 4.0))
                .collect();
            let params = RmsNormParams {
                eps,
                ..RmsNormParams::default()
            };
            must(agree(
                backend,
                &format!("rms_norm x ~ {value:e}, eps {eps} [{dtype}]"),
                &tols,
                |b| {
                    let xt = put(b, dtype, &[2, 8], &x)?;
                    let wt = put(b, dtype, &[8], &weight)?;
                    Ok(ops::rms_norm(b, &xt, &wt, params)
                        .and_then(|out| Ok(vec![b.download_tensor(&out)?.to_f64_vec()])))
                },
            ));
            let fused_tols = [tols[0], tolerance(OpKind::FusedAddRmsNorm, dtype)];
            must(agree(
                backend,
                &format!("fused_add_rms_norm x ~ {value:e}, eps {eps} [{dtype}]"),
                &fused_tols,
                |b| {
                    let xt = put(b, dtype, &[2, 8], &x)?;
                    let rt = put(b, dtype, &[2, 8], &[0.0; 16])?;
                    let wt = put(b, dtype, &[8], &weight)?;
                    Ok(
                        ops::fused_add_rms_norm(b, &xt, &rt, &wt, params).and_then(|out| {
                            Ok(vec![
                                b.download_tensor(&out)?.to_f64_vec(),
                                b.download_tensor(&rt)?.to_f64_vec(),
                            ])
                        }),
                    )
                },
            ));
        }
        for eps in [1e39, -1.0, f64::NAN] {
            must(agree(
                backend,
                &format!("eps {eps} [{dtype}]"),
                &tols,
                |b| {
                    let xt = put(b, dtype, &[1, 8], &weight)?;
                    let wt = put(b, dtype, &[8], &weight)?;
                    let params = RmsNormParams {
                        eps,
                        ..RmsNormParams::default()
                    };
                    Ok(ops::rms_norm(b, &xt, &wt, params)
                        .and_then(|out| Ok(vec![b.download_tensor(&out)?.to_f64_vec()])))
                },
            ));
        }
    }
}

/// Zero-size inputs: the op succeeds and writes what there is (before: cpu
/// failed with "cannot view ... as its dtype in place").
pub fn zero_size(backend: &dyn Backend) {
    let dtype = DType::F32;
    let norm_tols = [tolerance(OpKind::RmsNorm, dtype)];
    if harness::supported(backend, &OpQuery::new(OpKind::RmsNorm, dtype)) {
        must(agree(backend, "rms_norm [0, 8]", &norm_tols, |b| {
            let x = put(b, dtype, &[0, 8], &[])?;
            let w = put(b, dtype, &[8], &[1.0; 8])?;
            Ok(ops::rms_norm(b, &x, &w, RmsNormParams::default())
                .and_then(|out| Ok(vec![b.download_tensor(&out)?.to_f64_vec()])))
        }));
    }
    // Host memory wrapped from outside with no elements (numpy's empty
    // arrays): its address need not be aligned for the dtype.
    if ["cpu", "reference"].contains(&backend.name()) {
        must(agree(
            backend,
            "rms_norm [0, 8], wrapped",
            &norm_tols,
            |b| {
                // SAFETY: a zero-length region: nothing is ever read or written.
                let empty = unsafe {
                    radiant::cpu::memory::HostMemory::from_external(
                        b.name(),
                        std::ptr::null_mut(),
                        0,
                        Box::new(()),
                    )
                }
                .map_err(harness::setup)?;
                let x = Tensor::from_buffer(empty, dtype, &[0, 8], 0).map_err(harness::setup)?;
                let w = put(b, dtype, &[8], &[1.0; 8])?;
                Ok(ops::rms_norm(b, &x, &w, RmsNormParams::default())
                    .and_then(|out| Ok(vec![b.download_tensor(&out)?.to_f64_vec()])))
            },
        ));
    }
    if harness::supported(backend, &OpQuery::new(OpKind::Matmul, dtype)) {
        let tols = [tolerance(OpKind::Matmul, dtype)];
        must(agree(backend, "matmul K = 0 with bias", &tols, |b| {
            let a = put(b, dtype, &[3, 0], &[])?;
            let w = put(b, dtype, &[2, 0], &[])?;
            let bias = put(b, dtype, &[2], &[1.5, -2.0])?;
            let params = MatmulParams {
                b_layout: BLayout::Nk,
            };
            Ok(ops::matmul(b, &a, &w, Some(&bias), params)
                .and_then(|out| Ok(vec![b.download_tensor(&out)?.to_f64_vec()])))
        }));
    }
    let query = OpQuery {
        head_dim: Some(4),
        ..OpQuery::new(OpKind::Attention, dtype)
    };
    if harness::supported(backend, &query) {
        let tols = [tolerance(OpKind::Attention, dtype), lse_tolerance()];
        must(agree(backend, "attention total_k = 0", &tols, |b| {
            attention_case(b, dtype, &[1.0; 8], &[], AttentionParams::default())
        }));
    }
    let query = OpQuery {
        bits: Some(4),
        ..OpQuery::new(OpKind::GptqMatmul, dtype)
    };
    if harness::supported(backend, &query) {
        let tols = [tolerance(OpKind::GptqMatmul, dtype)];
        must(agree(backend, "gptq_matmul M = 0", &tols, |b| {
            let w: Vec<f32> = (0..32 * 16).map(|i| (i % 7) as f32 - 3.0).collect();
            let w = HostTensor::from_f32(DType::F32, &[16, 32], &w).map_err(harness::setup)?;
            let params = GptqQuantizeParams {
                bits: 4,
                group_size: GroupSize::Columns(32),
                sym: true,
                zero_format: ZeroFormat::V1,
                act_order: None,
                scale_dtype: DType::F16,
            };
            let weight = GptqWeight::quantize(&w, &params)
                .and_then(|w| w.upload(b))
                .map_err(harness::setup)?;
            let x = put(b, dtype, &[0, 32], &[])?;
            Ok(ops::gptq_matmul(b, &x, &weight, None)
                .and_then(|out| Ok(vec![b.download_tensor(&out)?.to_f64_vec()])))
        }));
    }
}
