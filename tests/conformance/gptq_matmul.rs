//! gptq_matmul: random weights through `GptqWeight::quantize` — 4 and 8
//! bits, symmetric or not, every group size (32, 64, 128, -1, with a partial
//! last group when K is not a multiple), act-order permutations (a
//! non-monotonic g_idx), v1 and v2 zero storage, f16 / bf16 / f32 scales —
//! against x of 1 to 24 rows (2-D, or 3-D with the leading dims flattened),
//! N and K any multiple of 32/bits (the words hold whole fields; N not a
//! multiple of 16 or 32 included), with and without bias, x at buffer
//! offsets, in f32/f16/bf16: every output element is written, nothing
//! outside the output is, and the result matches the oracle (the weight
//! dequantized, rounded to x's dtype, then the f64 matmul).

use proptest::prelude::*;
use proptest::sample::select;
use radiant::cpu::reference::gptq_matmul::eval;
use radiant::ops;
use radiant::quant::{GptqQuantizeParams, GptqWeight, GroupSize, ZeroFormat};
use radiant::{Backend, DType, OpKind, OpQuery};

use crate::harness::{self, Check, Linear, Rng, check_linear, setup};

#[derive(Debug, Clone)]
pub struct GptqCase {
    pub dtype: DType,
    pub bits: u32,
    /// 32, 64, 128 or -1 (one group over all of K).
    pub group_size: i64,
    pub sym: bool,
    pub zero_format: ZeroFormat,
    pub act_order: bool,
    pub scale_dtype: DType,
    /// x's leading dims: `[M]` or `[batch, rows]`.
    pub lead: Vec<usize>,
    pub n: usize,
    pub k: usize,
    pub bias: bool,
    pub offset: usize,
    pub seed: u64,
}

/// x's leading dims: mostly one small M (often 1, a decode step),
/// sometimes a 3-D `[batch, rows]`.
pub fn lead() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        2 => Just(vec![1usize]),
        5 => (2..=24usize).prop_map(|m| vec![m]),
        1 => (1..=3usize, 1..=5usize).prop_map(|(b, m)| vec![b, m]),
    ]
}

pub fn cases() -> impl Strategy<Value = GptqCase> {
    (
        (harness::dtype(), select(vec![4u32, 8])),
        (
            select(vec![32i64, 64, 128, -1]),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            prop_oneof![Just(ZeroFormat::V1), Just(ZeroFormat::V2)],
            select(vec![DType::F16, DType::BF16, DType::F32]),
        ),
        (lead(), 1..=12usize, 1..=48usize),
        (any::<bool>(), harness::offset(), any::<u64>()),
    )
        .prop_map(
            |(
                (dtype, bits),
                (group_size, sym, act_order),
                (zero_format, scale_dtype),
                (lead, n_words, k_words),
                (bias, offset, seed),
            )| {
                // N and K are multiples of the values per word: 8 (4-bit)
                // or 4 (8-bit).
                let pf = 32 / bits as usize;
                GptqCase {
                    dtype,
                    bits,
                    group_size,
                    sym,
                    zero_format,
                    act_order,
                    scale_dtype,
                    lead,
                    n: pf * n_words,
                    k: pf * k_words,
                    bias,
                    offset,
                    seed,
                }
            },
        )
}

/// Runs one case on `backend` and compares it with the oracle.
pub fn check(backend: &dyn Backend, case: &GptqCase) -> Check {
    let query = OpQuery {
        bits: Some(case.bits),
        ..OpQuery::new(OpKind::GptqMatmul, case.dtype)
    };
    if !harness::supported(backend, &query) {
        return Ok(());
    }
    let mut rng = Rng::new(case.seed);
    let w = harness::weights_to_quantize(&mut rng, case.n, case.k)?;
    let act_order = case.act_order.then(|| {
        let mut perm: Vec<usize> = (0..case.k).collect();
        rng.shuffle(&mut perm);
        perm
    });
    let params = GptqQuantizeParams {
        bits: case.bits,
        group_size: GroupSize::from_config(case.group_size).ok_or_else(|| setup("group size"))?,
        sym: case.sym,
        zero_format: case.zero_format,
        act_order,
        scale_dtype: case.scale_dtype,
    };
    let weight = GptqWeight::quantize(&w, &params).map_err(setup)?;
    let device = weight.upload(backend).map_err(setup)?;
    let dequantized = weight.dequantize(case.dtype).map_err(setup)?;
    let p = Linear {
        op: OpKind::GptqMatmul,
        dtype: case.dtype,
        lead: &case.lead,
        n: case.n,
        k: case.k,
        bias: case.bias,
        offset: case.offset,
    };
    check_linear(
        backend,
        p,
        &mut rng,
        &dequantized,
        |x, bias| eval(x, &weight, case.dtype, bias),
        |x, bias, out| ops::gptq_matmul_into(backend, x, &device, bias, out),
        case,
    )
}

pub fn random(backend: &dyn Backend) {
    proptest!(harness::config(64), |(case in cases())| {
        check(backend, &case)?;
    });
}
