//! nvfp4_matmul: random weights through `Nvfp4Weight::quantize` in both
//! global-scale conventions (ModelOpt's `weight_scale_2` multiplier,
//! compressed-tensors' `weight_global_scale` divisor), with all-zero blocks
//! — any N (odd, 1, not a multiple of any tile), K a multiple of 16 or not
//! (the packed rows padded to 16 with zeros), up to 20 blocks — against x
//! of 1 to 24 rows (2-D or 3-D), with and without bias, x at buffer
//! offsets, in f32/f16/bf16: every output element is written, nothing
//! outside the output is (padding included), and the result matches the
//! oracle.

use proptest::prelude::*;
use radiant::cpu::reference::nvfp4_matmul::eval;
use radiant::ops;
use radiant::quant::{Nvfp4Producer, Nvfp4Weight};
use radiant::{Backend, DType, OpKind, OpQuery};

use crate::gptq_matmul::lead;
use crate::harness::{self, Check, Linear, Rng, check_linear, setup};

#[derive(Debug, Clone)]
pub struct Nvfp4Case {
    pub dtype: DType,
    pub producer: Nvfp4Producer,
    pub lead: Vec<usize>,
    pub n: usize,
    pub k: usize,
    pub bias: bool,
    pub offset: usize,
    pub seed: u64,
}

pub fn cases() -> impl Strategy<Value = Nvfp4Case> {
    (
        harness::dtype(),
        prop_oneof![
            Just(Nvfp4Producer::ModelOpt),
            Just(Nvfp4Producer::CompressedTensors)
        ],
        (
            lead(),
            prop_oneof![3 => 1..=70usize, 1 => 120..=200usize],
            prop_oneof![(1..=20usize).prop_map(|b| 16 * b), 1..=320usize],
        ),
        (any::<bool>(), harness::offset(), any::<u64>()),
    )
        .prop_map(
            |(dtype, producer, (lead, n, k), (bias, offset, seed))| Nvfp4Case {
                dtype,
                producer,
                lead,
                n,
                k,
                bias,
                offset,
                seed,
            },
        )
}

/// Runs one case on `backend` and compares it with the oracle.
pub fn check(backend: &dyn Backend, case: &Nvfp4Case) -> Check {
    let query = OpQuery::new(OpKind::Nvfp4Matmul, case.dtype);
    if !harness::supported(backend, &query) {
        return Ok(());
    }
    let mut rng = Rng::new(case.seed);
    let w = harness::weights_to_quantize(&mut rng, case.n, case.k)?;
    let weight = Nvfp4Weight::quantize(&w, case.producer).map_err(setup)?;
    let device = weight.upload(backend).map_err(setup)?;
    let dequantized = weight.dequantize(case.dtype).map_err(setup)?;
    let p = Linear {
        op: OpKind::Nvfp4Matmul,
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
        |x, bias, out| ops::nvfp4_matmul_into(backend, x, &device, bias, out),
        case,
    )
}

pub fn random(backend: &dyn Backend) {
    proptest!(harness::config(48), |(case in cases())| {
        check(backend, &case)?;
    });
}
