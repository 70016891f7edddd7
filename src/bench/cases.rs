//! The shape list: what `radiant bench` and the criterion benches measure,
//! written once.
//!
//! Shapes are those of LLM inference (Llama-class, hidden 4096, 32 query /
//! 8 KV heads of dim 128): square matmuls, the decode/prefill linear layer
//! `[M,4096]·W[4096,4096]ᵀ` for M = 1, 16, 128, the norms over a 4096×4096
//! activation, causal prefill attention over 512 and 2048 tokens, and a
//! decode step against a 4096-token paged cache for batch 1 and 16. Every
//! case runs in f32, f16 and bf16. [`Suite::Quick`] has tiny versions of the
//! same cases, to exercise the harness in seconds.

use std::fmt;
use std::sync::Arc;

use crate::backend::Backend;
use crate::bench::roofline;
use crate::cpu::ReferenceBackend;
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::{self, AttentionParams, BLayout, MatmulParams, OpKind, OpQuery, RmsNormParams};
use crate::tensor::{HostTensor, Tensor};

/// Which shape list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// The LLM-sized shapes.
    Full,
    /// Tiny shapes of the same cases.
    Quick,
}

/// The dimensions of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `C[M,N] = A[M,K]·B`, with `b` `[K,N]` or weights `[N,K]`.
    Matmul {
        m: usize,
        n: usize,
        k: usize,
        b_layout: BLayout,
    },
    RmsNorm {
        rows: usize,
        hidden: usize,
    },
    FusedAddRmsNorm {
        rows: usize,
        hidden: usize,
    },
    /// `batch` sequences of `seqlen` queries and keys each.
    Attention {
        batch: usize,
        seqlen: usize,
        heads_q: usize,
        heads_kv: usize,
        head_dim: usize,
        causal: bool,
    },
    /// One decode step of `batch` sequences of `context_len` cached tokens.
    PagedAttention {
        batch: usize,
        context_len: usize,
        block_size: usize,
        heads_q: usize,
        heads_kv: usize,
        head_dim: usize,
    },
}

impl Shape {
    pub fn op(&self) -> OpKind {
        match self {
            Shape::Matmul { .. } => OpKind::Matmul,
            Shape::RmsNorm { .. } => OpKind::RmsNorm,
            Shape::FusedAddRmsNorm { .. } => OpKind::FusedAddRmsNorm,
            Shape::Attention { .. } => OpKind::Attention,
            Shape::PagedAttention { .. } => OpKind::PagedAttention,
        }
    }
}

/// Compact, stable labels: `MxNxK kn|nk` for matmul, `ROWSxH` for the norms,
/// `b1 s512 h32/8 d128 causal` for attention, `b16 ctx4096 blk16 h32/8
/// d128` for paged attention. They name criterion benchmarks, so changing
/// one loses its history.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Matmul { m, n, k, b_layout } => {
                write!(f, "{m}x{n}x{k} {}", b_layout.name())
            }
            Shape::RmsNorm { rows, hidden } | Shape::FusedAddRmsNorm { rows, hidden } => {
                write!(f, "{rows}x{hidden}")
            }
            Shape::Attention {
                batch,
                seqlen,
                heads_q,
                heads_kv,
                head_dim,
                causal,
            } => {
                write!(f, "b{batch} s{seqlen} h{heads_q}/{heads_kv} d{head_dim}")?;
                if causal {
                    write!(f, " causal")?;
                }
                Ok(())
            }
            Shape::PagedAttention {
                batch,
                context_len,
                block_size,
                heads_q,
                heads_kv,
                head_dim,
            } => write!(
                f,
                "b{batch} ctx{context_len} blk{block_size} h{heads_q}/{heads_kv} d{head_dim}"
            ),
        }
    }
}

/// One benchmark: an op's shape in one dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchCase {
    pub shape: Shape,
    pub dtype: DType,
}

/// Every case of `suite`, grouped by op, then dtype, then shape.
pub fn cases(suite: Suite) -> Vec<BenchCase> {
    let quick = suite == Suite::Quick;
    let mut shapes = Vec::new();
    // matmul: square products (b as [K,N]), then the linear layer
    // y = x·Wᵀ with W [N,K]: GEMV (decode), small and large batches.
    let squares: &[usize] = if quick { &[64] } else { &[512, 1024, 2048] };
    for &s in squares {
        shapes.push(Shape::Matmul {
            m: s,
            n: s,
            k: s,
            b_layout: BLayout::Kn,
        });
    }
    let (rows, width): (&[usize], usize) = if quick {
        (&[1, 16], 256)
    } else {
        (&[1, 16, 128], 4096)
    };
    for &m in rows {
        shapes.push(Shape::Matmul {
            m,
            n: width,
            k: width,
            b_layout: BLayout::Nk,
        });
    }
    let (rows, hidden) = if quick { (64, 256) } else { (4096, 4096) };
    shapes.push(Shape::RmsNorm { rows, hidden });
    shapes.push(Shape::FusedAddRmsNorm { rows, hidden });
    let (heads_q, heads_kv, head_dim) = if quick { (4, 2, 64) } else { (32, 8, 128) };
    let seqlens: &[usize] = if quick { &[64] } else { &[512, 2048] };
    for &seqlen in seqlens {
        shapes.push(Shape::Attention {
            batch: 1,
            seqlen,
            heads_q,
            heads_kv,
            head_dim,
            causal: true,
        });
    }
    let context_len = if quick { 256 } else { 4096 };
    let batches: &[usize] = if quick { &[1, 4] } else { &[1, 16] };
    for &batch in batches {
        shapes.push(Shape::PagedAttention {
            batch,
            context_len,
            block_size: 16,
            heads_q,
            heads_kv,
            head_dim,
        });
    }

    let mut cases = Vec::new();
    for op in OpKind::ALL {
        for dtype in DType::FLOATS {
            for &shape in shapes.iter().filter(|s| s.op() == op) {
                cases.push(BenchCase { shape, dtype });
            }
        }
    }
    cases
}

/// The FLOP budget per case for slow backends in `radiant bench`: the
/// scalar f64 `reference` oracle (~0.3–1 GFLOP/s, and its memory-bound ops
/// far below their FLOP count's worth) and GPU adapters emulated on the CPU
/// (llvmpipe, WARP). Larger cases are skipped for them: with this budget the
/// full suite takes about a minute on the reference.
pub const SLOW_BACKEND_FLOP_BUDGET: f64 = 1e9;

impl BenchCase {
    pub fn op(&self) -> OpKind {
        self.shape.op()
    }

    /// `op/dtype/shape`, e.g. `matmul/bf16/1x4096x4096 nk`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.op(), self.dtype, self.shape)
    }

    /// The capability query the op entry point will ask.
    pub fn query(&self) -> OpQuery {
        let head_dim = match self.shape {
            Shape::Attention { head_dim, .. } | Shape::PagedAttention { head_dim, .. } => {
                Some(head_dim)
            }
            _ => None,
        };
        OpQuery {
            head_dim,
            ..OpQuery::new(self.op(), self.dtype)
        }
    }

    /// The case's FLOP count, from its shape alone (no allocation). It
    /// equals the validated problem's `flops()`, which a unit test checks;
    /// the measured rows use the problem's own count.
    pub fn flops(&self) -> f64 {
        match self.shape {
            Shape::Matmul { m, n, k, .. } => 2.0 * (m * n) as f64 * k as f64,
            Shape::RmsNorm { rows, hidden } => 4.0 * (rows * hidden) as f64,
            Shape::FusedAddRmsNorm { rows, hidden } => 5.0 * (rows * hidden) as f64,
            Shape::Attention {
                batch,
                seqlen,
                heads_q,
                head_dim,
                causal,
                ..
            } => {
                let pairs = if causal {
                    seqlen * (seqlen + 1) / 2
                } else {
                    seqlen * seqlen
                };
                4.0 * (heads_q * head_dim) as f64 * (batch * pairs) as f64
            }
            Shape::PagedAttention {
                batch,
                context_len,
                heads_q,
                head_dim,
                ..
            } => 4.0 * (heads_q * head_dim) as f64 * (batch * context_len) as f64,
        }
    }

    /// The case's byte count (inputs read once, outputs written once), from
    /// its shape alone; equal to the validated problem's `bytes()`.
    pub fn bytes(&self) -> f64 {
        let size = self.dtype.size_in_bytes();
        let elements = match self.shape {
            Shape::Matmul { m, n, k, .. } => m * k + n * k + m * n,
            Shape::RmsNorm { rows, hidden } => 2 * rows * hidden + hidden,
            Shape::FusedAddRmsNorm { rows, hidden } => 4 * rows * hidden + hidden,
            Shape::Attention {
                batch,
                seqlen,
                heads_q,
                heads_kv,
                head_dim,
                ..
            } => 2 * batch * seqlen * (heads_q + heads_kv) * head_dim,
            Shape::PagedAttention {
                batch,
                context_len,
                heads_q,
                heads_kv,
                head_dim,
                ..
            } => {
                // K and V rows of every visible token, q and out; plus the
                // i32 context lengths below.
                2 * batch * context_len * heads_kv * head_dim + 2 * batch * heads_q * head_dim
            }
        };
        let metadata = match self.shape {
            Shape::PagedAttention { batch, .. } => 4 * batch,
            _ => 0,
        };
        (elements * size + metadata) as f64
    }

    /// Why `backend` does not run this case, if it does not: the backend
    /// does not support it, or it is a slow backend ([`is_slow_backend`])
    /// and the case's FLOPs exceed `slow_budget`.
    pub fn skip_reason(&self, backend: &dyn Backend, slow_budget: f64) -> Option<String> {
        if let Err(unsupported) = backend.supports(&self.query()) {
            return Some(unsupported.to_string());
        }
        if self.flops() > slow_budget && is_slow_backend(backend) {
            return Some(format!(
                "{:.2} GFLOP is over the {:.2} GFLOP budget of slow backends",
                self.flops() / 1e9,
                slow_budget / 1e9
            ));
        }
        None
    }

    /// Allocates and fills the case's tensors on `backend` (deterministic
    /// pseudo-random values), ready to launch.
    pub fn prepare(&self, backend: &Arc<dyn Backend>) -> Result<PreparedCase> {
        let dev = backend.as_ref();
        let dtype = self.dtype;
        let mut rng = Rng::new(0x5EED ^ self.flops().to_bits());
        let mut random = |shape: &[usize], scale: f32| -> Result<Tensor> {
            let len = shape.iter().product();
            dev.upload_tensor(&HostTensor::from_f32(
                dtype,
                shape,
                &rng.uniform_vec(len, scale),
            )?)
        };
        let launch = match self.shape {
            Shape::Matmul { m, n, k, b_layout } => {
                let a = random(&[m, k], 1.0)?;
                let b_shape = match b_layout {
                    BLayout::Kn => [k, n],
                    BLayout::Nk => [n, k],
                };
                let b = random(&b_shape, 1.0)?;
                let out = dev.alloc_tensor(dtype, &[m, n])?;
                Launch::Matmul {
                    a,
                    b,
                    out,
                    params: MatmulParams { b_layout },
                }
            }
            Shape::RmsNorm { rows, hidden } => Launch::RmsNorm {
                x: random(&[rows, hidden], 1.0)?,
                weight: random(&[hidden], 1.0)?,
                out: dev.alloc_tensor(dtype, &[rows, hidden])?,
                params: RmsNormParams::default(),
            },
            Shape::FusedAddRmsNorm { rows, hidden } => Launch::FusedAddRmsNorm {
                // Small x: the residual grows by x at every launch and
                // must stay finite in f16 over many thousands of launches.
                x: random(&[rows, hidden], 1e-3)?,
                residual: random(&[rows, hidden], 1.0)?,
                weight: random(&[hidden], 1.0)?,
                out: dev.alloc_tensor(dtype, &[rows, hidden])?,
                params: RmsNormParams::default(),
            },
            Shape::Attention {
                batch,
                seqlen,
                heads_q,
                heads_kv,
                head_dim,
                causal,
            } => {
                let total = batch * seqlen;
                let cu: Vec<i32> = (0..=batch).map(|s| (s * seqlen) as i32).collect();
                let cu_q = dev.upload_tensor(&HostTensor::from_i32(&[batch + 1], &cu)?)?;
                let cu_k = dev.upload_tensor(&HostTensor::from_i32(&[batch + 1], &cu)?)?;
                Launch::Attention {
                    q: random(&[total, heads_q, head_dim], 1.0)?,
                    k: random(&[total, heads_kv, head_dim], 1.0)?,
                    v: random(&[total, heads_kv, head_dim], 1.0)?,
                    cu_q,
                    cu_k,
                    out: dev.alloc_tensor(dtype, &[total, heads_q, head_dim])?,
                    params: AttentionParams {
                        causal,
                        ..AttentionParams::default()
                    },
                }
            }
            Shape::PagedAttention {
                batch,
                context_len,
                block_size,
                heads_q,
                heads_kv,
                head_dim,
            } => {
                let max_blocks = context_len.div_ceil(block_size);
                let num_blocks = batch * max_blocks;
                // Blocks are scattered through the cache, as a serving
                // engine's allocator leaves them, not laid out in order.
                let mut table: Vec<i32> = (0..num_blocks as i32).collect();
                Rng::new(num_blocks as u64).shuffle(&mut table);
                let cache = [num_blocks, block_size, heads_kv, head_dim];
                Launch::PagedAttention {
                    q: random(&[batch, heads_q, head_dim], 1.0)?,
                    k_cache: random(&cache, 1.0)?,
                    v_cache: random(&cache, 1.0)?,
                    block_tables: dev
                        .upload_tensor(&HostTensor::from_i32(&[batch, max_blocks], &table)?)?,
                    context_lens: dev.upload_tensor(&HostTensor::from_i32(
                        &[batch],
                        &vec![context_len as i32; batch],
                    )?)?,
                    out: dev.alloc_tensor(dtype, &[batch, heads_q, head_dim])?,
                    params: AttentionParams::default(),
                }
            }
        };
        let (flops, bytes) = launch.counts(dev)?;
        Ok(PreparedCase {
            backend: Arc::clone(backend),
            launch,
            flops,
            bytes,
        })
    }
}

/// True for backends far slower than the hardware they run on, which the
/// FLOP budget applies to: the `reference` oracle and GPU adapters emulated
/// on the CPU ([`roofline::is_software_adapter`]).
pub fn is_slow_backend(backend: &dyn Backend) -> bool {
    backend.name() == ReferenceBackend::NAME || roofline::is_software_adapter(backend)
}

/// A case's tensors on one backend, ready to launch.
#[derive(Debug)]
pub struct PreparedCase {
    backend: Arc<dyn Backend>,
    launch: Launch,
    flops: f64,
    bytes: f64,
}

impl PreparedCase {
    /// FLOPs of one launch, from the validated problem.
    pub fn flops(&self) -> f64 {
        self.flops
    }

    /// Bytes moved by one launch, from the validated problem.
    pub fn bytes(&self) -> f64 {
        self.bytes
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Submits one launch through the public entry point (validation,
    /// capability check, kernel), as an engine would call it. It may return
    /// before the device finishes; see [`PreparedCase::synchronize`].
    pub fn launch(&self) -> Result<()> {
        self.launch.run(self.backend.as_ref())
    }

    /// Waits for every submitted launch to finish.
    pub fn synchronize(&self) -> Result<()> {
        self.backend.synchronize()
    }

    /// `n` launches, then one synchronize: the unit the timers measure.
    pub fn run_batch(&self, n: usize) -> Result<()> {
        for _ in 0..n {
            self.launch()?;
        }
        self.synchronize()
    }
}

/// The tensors and params of one launch.
#[derive(Debug)]
enum Launch {
    Matmul {
        a: Tensor,
        b: Tensor,
        out: Tensor,
        params: MatmulParams,
    },
    RmsNorm {
        x: Tensor,
        weight: Tensor,
        out: Tensor,
        params: RmsNormParams,
    },
    FusedAddRmsNorm {
        x: Tensor,
        residual: Tensor,
        weight: Tensor,
        out: Tensor,
        params: RmsNormParams,
    },
    Attention {
        q: Tensor,
        k: Tensor,
        v: Tensor,
        cu_q: Tensor,
        cu_k: Tensor,
        out: Tensor,
        params: AttentionParams,
    },
    PagedAttention {
        q: Tensor,
        k_cache: Tensor,
        v_cache: Tensor,
        block_tables: Tensor,
        context_lens: Tensor,
        out: Tensor,
        params: AttentionParams,
    },
}

impl Launch {
    fn run(&self, dev: &dyn Backend) -> Result<()> {
        match self {
            Launch::Matmul { a, b, out, params } => ops::matmul_into(dev, a, b, None, out, *params),
            Launch::RmsNorm {
                x,
                weight,
                out,
                params,
            } => ops::rms_norm_into(dev, x, weight, out, *params),
            Launch::FusedAddRmsNorm {
                x,
                residual,
                weight,
                out,
                params,
            } => ops::fused_add_rms_norm_into(dev, x, residual, weight, out, *params),
            Launch::Attention {
                q,
                k,
                v,
                cu_q,
                cu_k,
                out,
                params,
            } => ops::attention_into(dev, q, k, v, cu_q, cu_k, out, None, *params),
            Launch::PagedAttention {
                q,
                k_cache,
                v_cache,
                block_tables,
                context_lens,
                out,
                params,
            } => ops::paged_attention_into(
                dev,
                q,
                k_cache,
                v_cache,
                block_tables,
                context_lens,
                out,
                *params,
            ),
        }
    }

    /// (FLOPs, bytes) of the validated problem: the op contracts' counts.
    fn counts(&self, dev: &dyn Backend) -> Result<(f64, f64)> {
        Ok(match self {
            Launch::Matmul { a, b, out, params } => {
                let p = ops::matmul::validate(dev, a, b, None, out, *params)?;
                (p.flops(), p.bytes())
            }
            Launch::RmsNorm {
                x,
                weight,
                out,
                params,
            } => {
                let p = ops::rms_norm::validate(dev, x, weight, out, *params)?;
                (p.flops(), p.bytes())
            }
            Launch::FusedAddRmsNorm {
                x,
                residual,
                weight,
                out,
                params,
            } => {
                let p = ops::fused_add_rms_norm::validate(dev, x, residual, weight, out, *params)?;
                (p.flops(), p.bytes())
            }
            Launch::Attention {
                q,
                k,
                v,
                cu_q,
                cu_k,
                out,
                params,
            } => {
                let p = ops::attention::validate(dev, q, k, v, cu_q, cu_k, out, None, *params)?;
                (p.flops(), p.bytes())
            }
            Launch::PagedAttention {
                q,
                k_cache,
                v_cache,
                block_tables,
                context_lens,
                out,
                params,
            } => {
                let p = ops::paged_attention::validate(
                    dev,
                    q,
                    k_cache,
                    v_cache,
                    block_tables,
                    context_lens,
                    out,
                    *params,
                )?;
                (p.flops(), p.bytes())
            }
        })
    }
}

/// A small deterministic generator (SplitMix64) for bench inputs: the same
/// case gets the same values on every backend and every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-scale, scale)`.
    pub fn uniform(&mut self, scale: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
        (2.0 * unit - 1.0) * scale
    }

    pub fn uniform_vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(scale)).collect()
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, values: &mut [T]) {
        for i in (1..values.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            values.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_suite_has_the_llm_shapes() {
        let full = cases(Suite::Full);
        let labels: Vec<String> = full
            .iter()
            .filter(|c| c.dtype == DType::BF16)
            .map(|c| format!("{}/{}", c.op(), c.shape))
            .collect();
        for want in [
            "matmul/2048x2048x2048 kn",
            "matmul/1x4096x4096 nk",
            "matmul/128x4096x4096 nk",
            "rms_norm/4096x4096",
            "fused_add_rms_norm/4096x4096",
            "attention/b1 s2048 h32/8 d128 causal",
            "paged_attention/b16 ctx4096 blk16 h32/8 d128",
        ] {
            assert!(labels.iter().any(|l| l == want), "missing {want}");
        }
        assert_eq!(full.len(), 3 * 12);
    }

    #[test]
    fn shape_flops_match_the_problem_counts() {
        let backend: Arc<dyn Backend> = Arc::new(ReferenceBackend::new());
        for case in cases(Suite::Quick) {
            let prepared = case.prepare(&backend).unwrap();
            assert_eq!(case.flops(), prepared.flops(), "{}", case.id());
            assert_eq!(case.bytes(), prepared.bytes(), "{}", case.id());
            prepared.run_batch(1).unwrap();
        }
    }
}
