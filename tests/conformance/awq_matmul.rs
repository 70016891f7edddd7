//! awq_matmul: random weights through `AwqWeight::quantize` (4-bit gemm
//! layout, interleaved nibbles, asymmetric with z = 0 groups) — group sizes
//! 32, 64, 128 and -1, K from one to three groups (any K for -1), N any
//! multiple of 8 (not of 16 or 32 included), f16 / bf16 / f32 scales —
//! against x of 1 to 24 rows (2-D or 3-D), with and without bias, x at
//! buffer offsets, in f32/f16/bf16: every output element is written,
//! nothing outside the output is, and the result matches the oracle.

use proptest::prelude::*;
use proptest::sample::select;
use radiant::cpu::reference::awq_matmul::eval;
use radiant::ops;
use radiant::quant::{AwqQuantizeParams, AwqWeight, GroupSize};
use radiant::{Backend, DType, OpKind, OpQuery};

use crate::gptq_matmul::lead;
use crate::harness::{self, Check, Linear, Rng, check_linear, setup};

#[derive(Debug, Clone)]
pub struct AwqCase {
    pub dtype: DType,
    /// 32, 64, 128 or -1.
    pub group_size: i64,
    pub scale_dtype: DType,
    pub lead: Vec<usize>,
    pub n: usize,
    pub k: usize,
    pub bias: bool,
    pub offset: usize,
    pub seed: u64,
}

pub fn cases() -> impl Strategy<Value = AwqCase> {
    (
        harness::dtype(),
        (select(vec![32i64, 64, 128, -1]), 1..=3usize, 1..=300usize),
        select(vec![DType::F16, DType::BF16, DType::F32]),
        (lead(), 1..=12usize),
        (any::<bool>(), harness::offset(), any::<u64>()),
    )
        .prop_map(
            |(
                dtype,
                (group_size, groups, any_k),
                scale_dtype,
                (lead, n_words),
                (bias, offset, seed),
            )| {
                // K is whole groups (AWQ has no partial group).
                let k = match group_size {
                    -1 => any_k,
                    gs => gs as usize * groups,
                };
                AwqCase {
                    dtype,
                    group_size,
                    scale_dtype,
                    lead,
                    n: 8 * n_words,
                    k,
                    bias,
                    offset,
                    seed,
                }
            },
        )
}

/// Runs one case on `backend` and compares it with the oracle.
pub fn check(backend: &dyn Backend, case: &AwqCase) -> Check {
    let query = OpQuery {
        bits: Some(4),
        ..OpQuery::new(OpKind::AwqMatmul, case.dtype)
    };
    if !harness::supported(backend, &query) {
        return Ok(());
    }
    let mut rng = Rng::new(case.seed);
    let w = harness::weights_to_quantize(&mut rng, case.n, case.k)?;
    let params = AwqQuantizeParams {
        group_size: GroupSize::from_config(case.group_size).ok_or_else(|| setup("group size"))?,
        scale_dtype: case.scale_dtype,
    };
    let weight = AwqWeight::quantize(&w, &params).map_err(setup)?;
    let device = weight.upload(backend).map_err(setup)?;
    let dequantized = weight.dequantize(case.dtype).map_err(setup)?;
    let p = Linear {
        op: OpKind::AwqMatmul,
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
        |x, bias, out| ops::awq_matmul_into(backend, x, &device, bias, out),
        case,
    )
}

pub fn random(backend: &dyn Backend) {
    proptest!(harness::config(48), |(case in cases())| {
        check(backend, &case)?;
    });
}
