//! The cases `radiant check` runs: every op over a spread of shapes and
//! options, in every activation dtype, built from seeded random data.
//!
//! The shapes are chosen to break kernels, not to be typical: size 1, odd
//! sizes, sizes one past a power of two (no tile divides them), GQA / MQA,
//! varlen batches with empty sequences, partially filled pages, causal,
//! sliding-window and softcap variants; for the quantized matmuls, random
//! weights through the quantizers (GPTQ 4/8 bit, symmetric or not, group
//! sizes 32/64/128/-1 including a partial last group, act-order
//! permutations, v1 and v2 zero storage; AWQ g64/g128; NVFP4 in both
//! global-scale conventions, odd N, K padded to 16) — plus one LLM-sized
//! problem per op unless `quick`. Every case is an ordinary [`Case`], run
//! through [`crate::case::run`] like a replayed file; attention cases carry
//! the reference's `expected_lse` so the log-sum-exp output is checked too.

use crate::case::Case;
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::{AttentionParams, BLayout, MatmulParams, RmsNormParams};
use crate::quant::{
    AwqQuantizeParams, AwqWeight, GptqQuantizeParams, GptqWeight, GroupSize, Nvfp4Producer,
    Nvfp4Weight, ZeroFormat,
};
use crate::tensor::HostTensor;

/// Every check case, in a stable order (op, then shape, then dtype).
pub fn cases(quick: bool) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for dtype in DType::FLOATS {
        let mut rng = Rng::new(0x5eed ^ dtype as u64);
        cases.extend(matmul_cases(&mut rng, dtype, quick)?);
        cases.extend(norm_cases(&mut rng, dtype, quick)?);
        cases.extend(attention_cases(&mut rng, dtype, quick)?);
        cases.extend(paged_cases(&mut rng, dtype, quick)?);
        cases.extend(gptq_cases(&mut rng, dtype, quick)?);
        cases.extend(awq_cases(&mut rng, dtype, quick)?);
        cases.extend(nvfp4_cases(&mut rng, dtype, quick)?);
    }
    // Group by op, then dtype, so the table reads op by op.
    cases.sort_by_key(|case| case.op());
    Ok(cases)
}

/// A matmul problem: `a` and `b` shapes as stored.
struct MatmulSpec {
    label: &'static str,
    a: &'static [usize],
    b: &'static [usize],
    b_layout: BLayout,
    bias: bool,
}

fn matmul_cases(rng: &mut Rng, dtype: DType, quick: bool) -> Result<Vec<Case>> {
    use BLayout::{Kn, Nk};
    let spec = |label, a, b, b_layout, bias| MatmulSpec {
        label,
        a,
        b,
        b_layout,
        bias,
    };
    let mut specs = vec![
        spec("small", &[4, 8], &[8, 8], Kn, false),
        spec("odd", &[7, 13], &[11, 13], Nk, true),
        spec("gemv", &[1, 257], &[129, 257], Nk, false),
        spec("tile", &[3, 65, 129], &[129, 67], Kn, true),
        spec("batched", &[2, 17, 33], &[2, 19, 33], Nk, false),
    ];
    if !quick {
        specs.push(spec("llm", &[64, 2048], &[1024, 2048], Nk, true));
    }
    specs
        .into_iter()
        .map(|spec| {
            let rank = spec.b.len();
            let n = match spec.b_layout {
                Kn => spec.b[rank - 1],
                Nk => spec.b[rank - 2],
            };
            let a = rng.tensor(dtype, spec.a, 1.0)?;
            let b = rng.tensor(dtype, spec.b, 1.0)?;
            let bias = if spec.bias {
                Some(rng.tensor(dtype, &[n], 1.0)?)
            } else {
                None
            };
            let params = MatmulParams {
                b_layout: spec.b_layout,
            };
            Ok(Case::matmul(a, b, bias, params)?.named(spec.label))
        })
        .collect()
}

/// rms_norm and fused_add_rms_norm over the same shapes.
fn norm_cases(rng: &mut Rng, dtype: DType, quick: bool) -> Result<Vec<Case>> {
    let llama = RmsNormParams::default();
    let gemma = RmsNormParams {
        eps: 1e-5,
        weight_offset: 1.0,
    };
    let mut specs: Vec<(&str, &[usize], RmsNormParams)> = vec![
        ("small", &[1, 8], llama),
        ("odd", &[7, 13], llama),
        ("tile", &[2, 5, 4097], llama),
        ("gemma", &[5, 127], gemma),
    ];
    if !quick {
        specs.push(("llm", &[64, 4096], llama));
    }
    let mut cases = Vec::new();
    for (label, shape, params) in specs {
        let hidden = shape[shape.len() - 1];
        // Inputs away from 1 in scale, weights around 1 (or around 0 for
        // Gemma, whose checkpoints store weight - 1).
        let x = rng.tensor(dtype, shape, 4.0)?;
        let center = 1.0 - params.weight_offset;
        let weight = rng.tensor_around(dtype, &[hidden], center, 0.5)?;
        let residual = rng.tensor(dtype, shape, 4.0)?;
        cases.push(Case::rms_norm(x.clone(), weight.clone(), params)?.named(label));
        cases.push(Case::fused_add_rms_norm(x, residual, weight, params)?.named(label));
    }
    Ok(cases)
}

/// An attention problem: per-sequence lengths, heads (q, kv), head dim.
struct AttentionSpec {
    label: &'static str,
    q_lens: &'static [usize],
    k_lens: &'static [usize],
    heads: (usize, usize),
    head_dim: usize,
    params: AttentionParams,
}

fn attention_cases(rng: &mut Rng, dtype: DType, quick: bool) -> Result<Vec<Case>> {
    let plain = AttentionParams::default();
    let causal = AttentionParams {
        causal: true,
        ..plain
    };
    let spec = |label, q_lens, k_lens, heads, head_dim, params| AttentionSpec {
        label,
        q_lens,
        k_lens,
        heads,
        head_dim,
        params,
    };
    let window = AttentionParams {
        window_left: 5,
        window_right: 2,
        softmax_scale: Some(0.2),
        ..plain
    };
    let softcap = AttentionParams {
        softcap: 30.0,
        ..causal
    };
    let sliding = AttentionParams {
        window_left: 31,
        ..causal
    };
    let mut specs = vec![
        spec("small", &[4], &[4], (1, 1), 8, plain),
        // Empty and single-token sequences, q shorter than k (bottom-right).
        spec(
            "gqa varlen",
            &[1, 7, 0, 5],
            &[3, 7, 4, 9],
            (6, 2),
            40,
            causal,
        ),
        spec("window", &[9, 4], &[9, 12], (4, 4), 32, window),
        spec("softcap", &[6], &[11], (8, 2), 64, softcap),
        spec("tile", &[65], &[129], (4, 1), 80, sliding),
    ];
    if !quick {
        specs.push(spec("llm", &[256, 384], &[256, 384], (16, 4), 128, causal));
    }
    specs
        .into_iter()
        .map(|spec| {
            let (heads_q, heads_kv) = spec.heads;
            let total_q = spec.q_lens.iter().sum();
            let total_k = spec.k_lens.iter().sum();
            // Scaled so that scores spread over a few units (softmax not flat).
            let q = rng.tensor(dtype, &[total_q, heads_q, spec.head_dim], 2.0)?;
            let k = rng.tensor(dtype, &[total_k, heads_kv, spec.head_dim], 2.0)?;
            let v = rng.tensor(dtype, &[total_k, heads_kv, spec.head_dim], 1.0)?;
            let cu_q = cu_seqlens(spec.q_lens)?;
            let cu_k = cu_seqlens(spec.k_lens)?;
            let case = Case::attention(q, k, v, cu_q, cu_k, spec.params)?.named(spec.label);
            with_reference_lse(case)
        })
        .collect()
}

/// Adds the reference log-sum-exp as `expected_lse` (f32, as the op
/// returns it), so that `run` requests and checks the lse output.
fn with_reference_lse(case: Case) -> Result<Case> {
    let lse = case
        .reference_outputs()?
        .into_iter()
        .find(|(name, _)| *name == "lse");
    let shape = case.output_spec("lse").map(|(_, shape)| shape.to_vec());
    match (lse, shape) {
        (Some((_, values)), Some(shape)) => {
            let expected = HostTensor::from_f64(DType::F32, &shape, &values)?;
            case.with_expected("expected_lse", expected)
        }
        _ => Ok(case),
    }
}

/// A paged decode problem: context lengths, block size, heads, head dim.
struct PagedSpec {
    label: &'static str,
    context_lens: &'static [usize],
    block_size: usize,
    heads: (usize, usize),
    head_dim: usize,
    params: AttentionParams,
}

fn paged_cases(rng: &mut Rng, dtype: DType, quick: bool) -> Result<Vec<Case>> {
    let plain = AttentionParams::default();
    let spec = |label, context_lens, block_size, heads, head_dim, params| PagedSpec {
        label,
        context_lens,
        block_size,
        heads,
        head_dim,
        params,
    };
    let window_softcap = AttentionParams {
        window_left: 9,
        softcap: 20.0,
        ..plain
    };
    let mut specs = vec![
        spec("small", &[5], 4, (2, 1), 16, plain),
        // An empty context, one token, partially filled last pages.
        spec("gqa", &[0, 1, 17, 33], 16, (8, 2), 64, plain),
        spec(
            "window softcap",
            &[20, 7, 40],
            8,
            (4, 4),
            32,
            window_softcap,
        ),
        spec("tile", &[100, 63, 129], 5, (12, 4), 80, plain),
    ];
    if !quick {
        let lens = &[1024, 1, 500, 777, 16, 17, 900, 333];
        specs.push(spec("llm", lens, 16, (32, 8), 128, plain));
    }
    specs
        .into_iter()
        .map(|spec| {
            let (heads_q, heads_kv) = spec.heads;
            let batch = spec.context_lens.len();
            let blocks_per_seq: Vec<usize> = spec
                .context_lens
                .iter()
                .map(|len| len.div_ceil(spec.block_size))
                .collect();
            let max_blocks = blocks_per_seq.iter().copied().max().unwrap_or(0).max(1);
            // A few spare blocks, and the used ones handed out in random
            // order, so that a kernel ignoring the table reads wrong data.
            let num_blocks = blocks_per_seq.iter().sum::<usize>() + 3;
            let mut free: Vec<usize> = (0..num_blocks).collect();
            rng.shuffle(&mut free);
            let mut tables = vec![0i32; batch * max_blocks];
            for (b, &count) in blocks_per_seq.iter().enumerate() {
                for slot in 0..count {
                    tables[b * max_blocks + slot] = free.pop().unwrap_or(0) as i32;
                }
            }
            let cache_shape = [num_blocks, spec.block_size, heads_kv, spec.head_dim];
            let lens: Vec<i32> = spec.context_lens.iter().map(|&l| l as i32).collect();
            Ok(Case::paged_attention(
                rng.tensor(dtype, &[batch, heads_q, spec.head_dim], 2.0)?,
                rng.tensor(dtype, &cache_shape, 2.0)?,
                rng.tensor(dtype, &cache_shape, 1.0)?,
                HostTensor::from_i32(&[batch, max_blocks], &tables)?,
                HostTensor::from_i32(&[batch], &lens)?,
                spec.params,
            )?
            .named(spec.label))
        })
        .collect()
}

/// A quantized matmul problem: M, N, K, bias.
struct LinearSpec {
    label: &'static str,
    m: usize,
    n: usize,
    k: usize,
    bias: bool,
}

const fn linear(label: &'static str, m: usize, n: usize, k: usize, bias: bool) -> LinearSpec {
    LinearSpec {
        label,
        m,
        n,
        k,
        bias,
    }
}

/// Weights `[N, K]` to quantize, in f32: uniform with a per-row scale, every
/// fifth row non-negative (so asymmetric groups get z = 0), and the first
/// 16 columns of row 1 zero (an all-zero NVFP4 block, a constant group).
fn weights_to_quantize(rng: &mut Rng, n: usize, k: usize) -> Result<HostTensor> {
    let mut values = Vec::with_capacity(n * k);
    for row in 0..n {
        let scale = 0.25 + (row % 7) as f64 * 0.25;
        for col in 0..k {
            let v = scale * rng.unit();
            values.push(match (row % 5, row, col) {
                (_, 1, 0..16) => 0.0,
                (0, _, _) => v.abs(),
                _ => v,
            });
        }
    }
    HostTensor::from_f64(DType::F32, &[n, k], &values)
}

/// x `[M, K]` and the optional bias `[N]`, in the activation dtype.
fn activations(
    rng: &mut Rng,
    dtype: DType,
    spec: &LinearSpec,
) -> Result<(HostTensor, Option<HostTensor>)> {
    let x = rng.tensor(dtype, &[spec.m, spec.k], 1.0)?;
    let bias = if spec.bias {
        Some(rng.tensor(dtype, &[spec.n], 1.0)?)
    } else {
        None
    };
    Ok((x, bias))
}

fn gptq_cases(rng: &mut Rng, dtype: DType, quick: bool) -> Result<Vec<Case>> {
    // (problem, bits, group size, sym, act-order, zero storage, scale dtype)
    let v1 = ZeroFormat::V1;
    let v2 = ZeroFormat::V2;
    let mut specs = vec![
        (
            linear("4b g128 sym", 1, 64, 256, false),
            4,
            128,
            true,
            false,
            v1,
            DType::F16,
        ),
        (
            linear("4b g32 asym act-order", 5, 40, 160, true),
            4,
            32,
            false,
            true,
            v1,
            DType::F16,
        ),
        (
            linear("8b g-1 sym v2", 16, 36, 96, true),
            8,
            -1,
            true,
            false,
            v2,
            DType::BF16,
        ),
        // K = 200 is not a multiple of 64: a partial last group.
        (
            linear("8b g64 asym act-order", 5, 44, 200, false),
            8,
            64,
            false,
            true,
            v1,
            DType::F16,
        ),
        (
            linear("4b g128 asym v2", 16, 24, 392, true),
            4,
            128,
            false,
            false,
            v2,
            DType::F32,
        ),
    ];
    if !quick {
        specs.push((
            linear("llm", 16, 1024, 2048, true),
            4,
            128,
            false,
            true,
            v1,
            DType::F16,
        ));
    }
    specs
        .into_iter()
        .map(
            |(spec, bits, group, sym, act_order, zero_format, scale_dtype)| {
                let w = weights_to_quantize(rng, spec.n, spec.k)?;
                let act_order = act_order.then(|| {
                    let mut perm: Vec<usize> = (0..spec.k).collect();
                    rng.shuffle(&mut perm);
                    perm
                });
                let params = GptqQuantizeParams {
                    bits,
                    group_size: GroupSize::from_config(group).unwrap_or(GroupSize::PerChannel),
                    sym,
                    zero_format,
                    act_order,
                    scale_dtype,
                };
                let weight = GptqWeight::quantize(&w, &params)?;
                let (x, bias) = activations(rng, dtype, &spec)?;
                Ok(Case::gptq_matmul(x, &weight, bias)?.named(spec.label))
            },
        )
        .collect()
}

fn awq_cases(rng: &mut Rng, dtype: DType, quick: bool) -> Result<Vec<Case>> {
    let mut specs = vec![
        (linear("g128", 1, 64, 256, false), 128),
        (linear("g64 bias", 5, 40, 192, true), 64),
        (linear("g64", 16, 24, 128, false), 64),
    ];
    if !quick {
        specs.push((linear("llm", 16, 1024, 2048, true), 128));
    }
    specs
        .into_iter()
        .map(|(spec, group)| {
            let w = weights_to_quantize(rng, spec.n, spec.k)?;
            let params = AwqQuantizeParams {
                group_size: GroupSize::Columns(group),
                scale_dtype: DType::F16,
            };
            let weight = AwqWeight::quantize(&w, &params)?;
            let (x, bias) = activations(rng, dtype, &spec)?;
            Ok(Case::awq_matmul(x, &weight, bias)?.named(spec.label))
        })
        .collect()
}

fn nvfp4_cases(rng: &mut Rng, dtype: DType, quick: bool) -> Result<Vec<Case>> {
    use Nvfp4Producer::{CompressedTensors, ModelOpt};
    let mut specs = vec![
        (linear("modelopt", 1, 63, 256, false), ModelOpt),
        (linear("ct bias", 5, 33, 176, true), CompressedTensors),
        // K = 100: the packed rows are padded to 112.
        (linear("modelopt K pad", 16, 17, 100, true), ModelOpt),
        (linear("ct", 16, 7, 64, false), CompressedTensors),
    ];
    if !quick {
        specs.push((linear("llm", 16, 1024, 2048, true), CompressedTensors));
    }
    specs
        .into_iter()
        .map(|(spec, producer)| {
            let w = weights_to_quantize(rng, spec.n, spec.k)?;
            let weight = Nvfp4Weight::quantize(&w, producer)?;
            let (x, bias) = activations(rng, dtype, &spec)?;
            Ok(Case::nvfp4_matmul(x, &weight, bias)?.named(spec.label))
        })
        .collect()
}

fn cu_seqlens(lens: &[usize]) -> Result<HostTensor> {
    let mut offsets = vec![0i32];
    for &len in lens {
        offsets.push(offsets[offsets.len() - 1] + len as i32);
    }
    HostTensor::from_i32(&[offsets.len()], &offsets)
}

/// SplitMix64: a tiny seeded generator, so check cases are the same on
/// every run and every machine (radiant has no rand dependency).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// Uniform in [-scale, scale), rounded to `dtype`.
    fn tensor(&mut self, dtype: DType, shape: &[usize], scale: f64) -> Result<HostTensor> {
        self.tensor_around(dtype, shape, 0.0, scale)
    }

    /// Uniform in [center - spread, center + spread), rounded to `dtype`.
    fn tensor_around(
        &mut self,
        dtype: DType,
        shape: &[usize],
        center: f64,
        spread: f64,
    ) -> Result<HostTensor> {
        let n = shape.iter().product();
        let values: Vec<f64> = (0..n).map(|_| center + spread * self.unit()).collect();
        HostTensor::from_f64(dtype, shape, &values)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}
