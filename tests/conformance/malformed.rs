//! Malformed arguments: every contract violation an op entry point can see —
//! wrong rank, mismatched dims, wrong or mixed dtypes, non-contiguous views,
//! an output sharing a buffer with another argument, bad cu_seqlens, Hq not a
//! multiple of Hkv, head dim 0, block-table entries out of range (only the
//! entries actually read), bad context lens, NaN / negative / infinite
//! scalars, views whose element count exceeds 2^31 − 1 — returns
//! `Err(InvalidArgument { op, arg, .. })` naming the op and the argument at
//! fault, and never panics. The allocating entry points (`ops::matmul`, ...)
//! are held to the same rule.
//!
//! The same machinery proves the converse: valid but unusual arguments (an
//! input buffer shared by several inputs, garbage in table entries that are
//! never read) are accepted.
//!
//! The quantized matmuls (gptq_matmul, awq_matmul, nvfp4_matmul) share one
//! list of malformations — x with the wrong K, rank or dtype, a bad bias, a
//! bad or aliasing output (including an output in the weight's own
//! buffer), the allocating entry points — run against each of them with a
//! valid weight built through the quantizers. (Malformed weights are
//! refused by the weight constructors, before any op: tests/quant_malformed.rs.)
//!
//! (A tensor from another backend's memory is not testable yet: only the
//! host backends exist, and they share memory.)

use std::collections::BTreeSet;
use std::sync::Mutex;

use proptest::prelude::*;
use proptest::sample::select;
use radiant::ops::{self, AttentionParams, BLayout, MatmulParams, RmsNormParams};
use radiant::quant::{
    AwqQuantizeParams, AwqWeight, DeviceAwqWeight, DeviceGptqWeight, DeviceNvfp4Weight,
    GptqQuantizeParams, GptqWeight, GroupSize, Nvfp4Producer, Nvfp4Weight,
};
use radiant::tensor::contiguous_strides;
use radiant::{Backend, DType, Error, HostTensor, Tensor};

use crate::harness::{self, Check, fail, no_panic};

/// The valid problem every malformation starts from. Every dim is ≥ 2 so
/// that a view with doubled strides is never contiguous.
#[derive(Debug, Clone)]
pub struct Base {
    pub dtype: DType,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub rows: usize,
    pub hidden: usize,
    pub seq_q: [usize; 2],
    pub seq_k: [usize; 2],
    pub heads_kv: usize,
    pub group: usize,
    pub head_dim: usize,
    pub block_size: usize,
    pub batch: usize,
}

pub fn bases() -> impl Strategy<Value = Base> {
    (
        (harness::dtype(), 2..=6usize, 2..=6usize, 2..=6usize),
        (2..=5usize, 2..=9usize),
        ([1..=4usize, 1..=4usize], [1..=4usize, 1..=4usize]),
        (1..=2usize, 2..=4usize, 2..=9usize, 1..=4usize, 1..=3usize),
    )
        .prop_map(
            |(
                (dtype, m, n, k),
                (rows, hidden),
                (seq_q, seq_k),
                (heads_kv, group, head_dim, block_size, batch),
            )| Base {
                dtype,
                m,
                n,
                k,
                rows,
                hidden,
                seq_q,
                seq_k,
                heads_kv,
                group,
                head_dim,
                block_size,
                batch,
            },
        )
}

/// Builds tensors for one base problem on one backend. Setup failures panic
/// with "setup:" (and are reported as such by `no_panic`).
pub struct Cx<'a> {
    pub backend: &'a dyn Backend,
    pub base: &'a Base,
}

/// A dim larger than any valid element count (kernels index with 32 bits);
/// with a zero stride it fits in a one-row buffer. Views whose element
/// count overflows usize are refused when they are built (`huge_views`).
const HUGE: usize = 1 << 40;

impl Cx<'_> {
    fn buffer(&self, bytes: usize) -> radiant::Buffer {
        self.backend.alloc(bytes).expect("setup: alloc")
    }

    /// A contiguous tensor (contents irrelevant: validation must fail first).
    fn typed(&self, dtype: DType, shape: &[usize]) -> Tensor {
        let bytes = harness::numel(shape) * dtype.size_in_bytes();
        Tensor::from_buffer(self.buffer(bytes), dtype, shape, 0).expect("setup: view")
    }

    fn float(&self, shape: &[usize]) -> Tensor {
        self.typed(self.base.dtype, shape)
    }

    /// A float dtype other than the base's.
    fn other_float(&self) -> DType {
        match self.base.dtype {
            DType::F32 => DType::BF16,
            _ => DType::F32,
        }
    }

    fn i32s(&self, shape: &[usize], values: &[i32]) -> Tensor {
        let host = HostTensor::from_i32(shape, values).expect("setup: host tensor");
        self.backend.upload_tensor(&host).expect("setup: upload")
    }

    /// A non-contiguous view: every stride doubled.
    fn strided(&self, dtype: DType, shape: &[usize]) -> Tensor {
        let strides: Vec<usize> = contiguous_strides(shape).iter().map(|s| 2 * s).collect();
        let bytes = 2 * harness::numel(shape) * dtype.size_in_bytes();
        Tensor::from_buffer_strided(self.buffer(bytes), dtype, shape, &strides, 0)
            .expect("setup: strided view")
    }

    /// `shape` with its first dim replaced by [`HUGE`] at stride 0: more
    /// than 2^31 − 1 elements (indeed more than usize holds) over a buffer
    /// holding one row.
    fn huge(&self, dtype: DType, shape: &[usize]) -> Tensor {
        let mut shape = shape.to_vec();
        shape[0] = HUGE;
        let mut strides = contiguous_strides(&shape);
        strides[0] = 0;
        let bytes = harness::numel(&shape[1..]) * dtype.size_in_bytes();
        Tensor::from_buffer_strided(self.buffer(bytes), dtype, &shape, &strides, 0)
            .expect("setup: zero-stride view")
    }

    /// Two non-overlapping views into one buffer.
    fn pair(&self, a: (DType, &[usize]), b: (DType, &[usize])) -> (Tensor, Tensor) {
        let a_bytes = harness::numel(a.1) * a.0.size_in_bytes();
        let b_offset = a_bytes.div_ceil(b.0.size_in_bytes());
        let bytes = (b_offset + harness::numel(b.1)) * b.0.size_in_bytes();
        let buffer = self.buffer(bytes);
        (
            Tensor::from_buffer(buffer.clone(), a.0, a.1, 0).expect("setup: view"),
            Tensor::from_buffer(buffer, b.0, b.1, b_offset).expect("setup: view"),
        )
    }

    // Derived attention dims.
    fn heads_q(&self) -> usize {
        self.base.heads_kv * self.base.group
    }
    fn total_q(&self) -> usize {
        self.base.seq_q.iter().sum()
    }
    fn total_k(&self) -> usize {
        self.base.seq_k.iter().sum()
    }
    fn q_shape(&self) -> [usize; 3] {
        [self.total_q(), self.heads_q(), self.base.head_dim]
    }
    fn kv_shape(&self) -> [usize; 3] {
        [self.total_k(), self.base.heads_kv, self.base.head_dim]
    }
    fn cu_q(&self) -> Vec<i32> {
        let [a, b] = self.base.seq_q;
        vec![0, a as i32, (a + b) as i32]
    }
    fn cu_k(&self) -> Vec<i32> {
        let [a, b] = self.base.seq_k;
        vec![0, a as i32, (a + b) as i32]
    }

    // Derived paged dims: two full blocks per sequence, every entry read.
    const MAX_BLOCKS: usize = 2;
    fn num_blocks(&self) -> usize {
        self.base.batch * Self::MAX_BLOCKS
    }
    fn paged_q_shape(&self) -> [usize; 3] {
        [self.base.batch, self.heads_q(), self.base.head_dim]
    }
    fn cache_shape(&self) -> [usize; 4] {
        [
            self.num_blocks(),
            self.base.block_size,
            self.base.heads_kv,
            self.base.head_dim,
        ]
    }
    fn full_len(&self) -> i32 {
        (Self::MAX_BLOCKS * self.base.block_size) as i32
    }
    fn table(&self) -> Tensor {
        let ids: Vec<i32> = (0..self.num_blocks() as i32).collect();
        self.i32s(&[self.base.batch, Self::MAX_BLOCKS], &ids)
    }
    fn lens(&self, first: i32) -> Tensor {
        let mut lens = vec![self.full_len(); self.base.batch];
        lens[0] = first;
        self.i32s(&[self.base.batch], &lens)
    }

    // Valid problems, one per op, for the malformations to break.

    fn matmul(&self) -> Matmul {
        let Base { m, n, k, .. } = *self.base;
        Matmul {
            a: self.float(&[m, k]),
            b: self.float(&[k, n]),
            bias: Some(self.float(&[n])),
            out: self.float(&[m, n]),
            params: MatmulParams::default(),
        }
    }

    fn norm(&self) -> Norm {
        let Base { rows, hidden, .. } = *self.base;
        Norm {
            x: self.float(&[rows, hidden]),
            residual: self.float(&[rows, hidden]),
            weight: self.float(&[hidden]),
            out: self.float(&[rows, hidden]),
            params: RmsNormParams::default(),
        }
    }

    fn attention(&self) -> Attention {
        Attention {
            q: self.float(&self.q_shape()),
            k: self.float(&self.kv_shape()),
            v: self.float(&self.kv_shape()),
            cu_q: self.i32s(&[3], &self.cu_q()),
            cu_k: self.i32s(&[3], &self.cu_k()),
            out: self.float(&self.q_shape()),
            lse: Some(self.typed(DType::F32, &[self.heads_q(), self.total_q()])),
            params: AttentionParams::default(),
        }
    }

    fn paged(&self) -> Paged {
        Paged {
            q: self.float(&self.paged_q_shape()),
            k_cache: self.float(&self.cache_shape()),
            v_cache: self.float(&self.cache_shape()),
            block_tables: self.table(),
            context_lens: self.lens(self.full_len()),
            out: self.float(&self.paged_q_shape()),
            params: AttentionParams::default(),
        }
    }
}

pub struct Matmul {
    a: Tensor,
    b: Tensor,
    bias: Option<Tensor>,
    out: Tensor,
    params: MatmulParams,
}

impl Matmul {
    fn run(&self, cx: &Cx) -> radiant::Result<()> {
        let Matmul {
            a,
            b,
            bias,
            out,
            params,
        } = self;
        ops::matmul_into(cx.backend, a, b, bias.as_ref(), out, *params)
    }
}

/// rms_norm and fused_add_rms_norm (which also uses `residual`).
pub struct Norm {
    x: Tensor,
    residual: Tensor,
    weight: Tensor,
    out: Tensor,
    params: RmsNormParams,
}

impl Norm {
    fn rms(&self, cx: &Cx) -> radiant::Result<()> {
        ops::rms_norm_into(cx.backend, &self.x, &self.weight, &self.out, self.params)
    }

    fn fused(&self, cx: &Cx) -> radiant::Result<()> {
        let Norm {
            x,
            residual,
            weight,
            out,
            params,
        } = self;
        ops::fused_add_rms_norm_into(cx.backend, x, residual, weight, out, *params)
    }
}

pub struct Attention {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cu_q: Tensor,
    cu_k: Tensor,
    out: Tensor,
    lse: Option<Tensor>,
    params: AttentionParams,
}

impl Attention {
    fn run(&self, cx: &Cx) -> radiant::Result<()> {
        let Attention {
            q,
            k,
            v,
            cu_q,
            cu_k,
            out,
            lse,
            params,
        } = self;
        ops::attention_into(cx.backend, q, k, v, cu_q, cu_k, out, lse.as_ref(), *params)
    }
}

pub struct Paged {
    q: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    block_tables: Tensor,
    context_lens: Tensor,
    out: Tensor,
    params: AttentionParams,
}

impl Paged {
    fn run(&self, cx: &Cx) -> radiant::Result<()> {
        let Paged {
            q,
            k_cache,
            v_cache,
            block_tables,
            context_lens,
            out,
            params,
        } = self;
        ops::paged_attention_into(
            cx.backend,
            q,
            k_cache,
            v_cache,
            block_tables,
            context_lens,
            out,
            *params,
        )
    }
}

/// One malformation: what is wrong, and the op and argument the error must
/// name.
pub struct Malformed {
    pub what: &'static str,
    pub op: &'static str,
    pub arg: &'static str,
    pub call: fn(&Cx) -> radiant::Result<()>,
}

const fn bad(
    op: &'static str,
    arg: &'static str,
    what: &'static str,
    call: fn(&Cx) -> radiant::Result<()>,
) -> Malformed {
    Malformed {
        what,
        op,
        arg,
        call,
    }
}

const MM: &str = "matmul";
const RMS: &str = "rms_norm";
const FUSED: &str = "fused_add_rms_norm";
const ATTN: &str = "attention";
const PAGED: &str = "paged_attention";

/// Scalars that break the attention parameters.
fn with_params(cx: &Cx, params: AttentionParams, paged: bool) -> radiant::Result<()> {
    if paged {
        Paged {
            params,
            ..cx.paged()
        }
        .run(cx)
    } else {
        Attention {
            params,
            ..cx.attention()
        }
        .run(cx)
    }
}

fn scale(value: f64) -> AttentionParams {
    AttentionParams {
        softmax_scale: Some(value),
        ..AttentionParams::default()
    }
}

fn windows(left: i64, right: i64) -> AttentionParams {
    AttentionParams {
        window_left: left,
        window_right: right,
        ..AttentionParams::default()
    }
}

fn softcap(value: f64) -> AttentionParams {
    AttentionParams {
        softcap: value,
        ..AttentionParams::default()
    }
}

fn eps(cx: &Cx, eps: f64, weight_offset: f64, fused: bool) -> radiant::Result<()> {
    let norm = Norm {
        params: RmsNormParams { eps, weight_offset },
        ..cx.norm()
    };
    if fused { norm.fused(cx) } else { norm.rms(cx) }
}

pub const MALFORMED: &[Malformed] = &[
    // ---- matmul ----
    bad(MM, "a", "a of rank 1", |cx| {
        let mut p = cx.matmul();
        p.a = cx.float(&[cx.base.k]);
        p.run(cx)
    }),
    bad(MM, "a", "a of rank 4", |cx| {
        let mut p = cx.matmul();
        p.a = cx.float(&[1, 1, cx.base.m, cx.base.k]);
        p.run(cx)
    }),
    bad(MM, "b", "b of rank 1", |cx| {
        let mut p = cx.matmul();
        p.b = cx.float(&[cx.base.k]);
        p.run(cx)
    }),
    bad(MM, "b", "b [K+1, N] (kn)", |cx| {
        let mut p = cx.matmul();
        p.b = cx.float(&[cx.base.k + 1, cx.base.n]);
        p.run(cx)
    }),
    bad(MM, "b", "b [N, K+1] (nk)", |cx| {
        let mut p = cx.matmul();
        p.b = cx.float(&[cx.base.n, cx.base.k + 1]);
        p.params.b_layout = BLayout::Nk;
        p.run(cx)
    }),
    bad(MM, "b", "b [K, N] read as nk (K != N)", |cx| {
        let mut p = cx.matmul();
        p.b = cx.float(&[cx.base.k, cx.base.k + 1]);
        p.params.b_layout = BLayout::Nk;
        p.run(cx)
    }),
    bad(MM, "b", "3-D b with 2-D a", |cx| {
        let mut p = cx.matmul();
        p.b = cx.float(&[2, cx.base.k, cx.base.n]);
        p.run(cx)
    }),
    bad(MM, "b", "b batch 3 vs a batch 2", |cx| {
        let Base { m, n, k, .. } = *cx.base;
        let mut p = cx.matmul();
        p.a = cx.float(&[2, m, k]);
        p.b = cx.float(&[3, k, n]);
        p.out = cx.float(&[2, m, n]);
        p.run(cx)
    }),
    bad(MM, "bias", "bias [N+1]", |cx| {
        let mut p = cx.matmul();
        p.bias = Some(cx.float(&[cx.base.n + 1]));
        p.run(cx)
    }),
    bad(MM, "bias", "bias [1, N]", |cx| {
        let mut p = cx.matmul();
        p.bias = Some(cx.float(&[1, cx.base.n]));
        p.run(cx)
    }),
    bad(MM, "out", "out [M, N+1]", |cx| {
        let mut p = cx.matmul();
        p.out = cx.float(&[cx.base.m, cx.base.n + 1]);
        p.run(cx)
    }),
    bad(MM, "out", "3-D out for 2-D a", |cx| {
        let mut p = cx.matmul();
        p.out = cx.float(&[1, cx.base.m, cx.base.n]);
        p.run(cx)
    }),
    bad(MM, "a", "a of dtype i32", |cx| {
        let mut p = cx.matmul();
        p.a = cx.typed(DType::I32, &[cx.base.m, cx.base.k]);
        p.run(cx)
    }),
    bad(MM, "a", "a of dtype u8", |cx| {
        let mut p = cx.matmul();
        p.a = cx.typed(DType::U8, &[cx.base.m, cx.base.k]);
        p.run(cx)
    }),
    bad(MM, "b", "b of another float dtype", |cx| {
        let mut p = cx.matmul();
        p.b = cx.typed(cx.other_float(), &[cx.base.k, cx.base.n]);
        p.run(cx)
    }),
    bad(MM, "bias", "bias of another float dtype", |cx| {
        let mut p = cx.matmul();
        p.bias = Some(cx.typed(cx.other_float(), &[cx.base.n]));
        p.run(cx)
    }),
    bad(MM, "out", "out of another float dtype", |cx| {
        let mut p = cx.matmul();
        p.out = cx.typed(cx.other_float(), &[cx.base.m, cx.base.n]);
        p.run(cx)
    }),
    bad(MM, "a", "non-contiguous a", |cx| {
        let mut p = cx.matmul();
        p.a = cx.strided(cx.base.dtype, &[cx.base.m, cx.base.k]);
        p.run(cx)
    }),
    bad(MM, "b", "non-contiguous b", |cx| {
        let mut p = cx.matmul();
        p.b = cx.strided(cx.base.dtype, &[cx.base.k, cx.base.n]);
        p.run(cx)
    }),
    bad(MM, "out", "non-contiguous out", |cx| {
        let mut p = cx.matmul();
        p.out = cx.strided(cx.base.dtype, &[cx.base.m, cx.base.n]);
        p.run(cx)
    }),
    bad(MM, "out", "out in a's buffer", |cx| {
        let Base { dtype, m, n, k, .. } = *cx.base;
        let mut p = cx.matmul();
        (p.a, p.out) = cx.pair((dtype, &[m, k]), (dtype, &[m, n]));
        p.run(cx)
    }),
    bad(MM, "out", "out in bias's buffer", |cx| {
        let Base { dtype, m, n, .. } = *cx.base;
        let mut p = cx.matmul();
        let (bias, out) = cx.pair((dtype, &[n]), (dtype, &[m, n]));
        (p.bias, p.out) = (Some(bias), out);
        p.run(cx)
    }),
    bad(MM, "a", "a with 2^40 rows at stride 0", |cx| {
        let mut p = cx.matmul();
        p.a = cx.huge(cx.base.dtype, &[1, cx.base.k]);
        p.run(cx)
    }),
    bad(MM, "a", "ops::matmul of [2^40, 0] x [0, 2^40]", |cx| {
        let a = cx.float(&[HUGE, 0]);
        let b = cx.float(&[0, HUGE]);
        ops::matmul(cx.backend, &a, &b, None, MatmulParams::default()).map(drop)
    }),
    // ---- rms_norm ----
    bad(RMS, "x", "x of rank 0", |cx| {
        let mut p = cx.norm();
        p.x = cx.float(&[]);
        p.out = cx.float(&[]);
        p.rms(cx)
    }),
    bad(RMS, "x", "hidden 0", |cx| {
        let mut p = cx.norm();
        p.x = cx.float(&[cx.base.rows, 0]);
        p.out = cx.float(&[cx.base.rows, 0]);
        p.weight = cx.float(&[0]);
        p.rms(cx)
    }),
    bad(RMS, "weight", "weight [1, H]", |cx| {
        let mut p = cx.norm();
        p.weight = cx.float(&[1, cx.base.hidden]);
        p.rms(cx)
    }),
    bad(RMS, "weight", "weight [H+1]", |cx| {
        let mut p = cx.norm();
        p.weight = cx.float(&[cx.base.hidden + 1]);
        p.rms(cx)
    }),
    bad(RMS, "out", "out [rows, H+1]", |cx| {
        let mut p = cx.norm();
        p.out = cx.float(&[cx.base.rows, cx.base.hidden + 1]);
        p.rms(cx)
    }),
    bad(RMS, "x", "x of dtype i32", |cx| {
        let mut p = cx.norm();
        p.x = cx.typed(DType::I32, &[cx.base.rows, cx.base.hidden]);
        p.rms(cx)
    }),
    bad(RMS, "weight", "weight of another float dtype", |cx| {
        let mut p = cx.norm();
        p.weight = cx.typed(cx.other_float(), &[cx.base.hidden]);
        p.rms(cx)
    }),
    bad(RMS, "out", "out of another float dtype", |cx| {
        let mut p = cx.norm();
        p.out = cx.typed(cx.other_float(), &[cx.base.rows, cx.base.hidden]);
        p.rms(cx)
    }),
    bad(RMS, "x", "non-contiguous x", |cx| {
        let mut p = cx.norm();
        p.x = cx.strided(cx.base.dtype, &[cx.base.rows, cx.base.hidden]);
        p.rms(cx)
    }),
    bad(RMS, "weight", "non-contiguous weight", |cx| {
        let mut p = cx.norm();
        p.weight = cx.strided(cx.base.dtype, &[cx.base.hidden]);
        p.rms(cx)
    }),
    bad(RMS, "out", "out in x's buffer", |cx| {
        let Base {
            dtype,
            rows,
            hidden,
            ..
        } = *cx.base;
        let mut p = cx.norm();
        (p.x, p.out) = cx.pair((dtype, &[rows, hidden]), (dtype, &[rows, hidden]));
        p.rms(cx)
    }),
    bad(RMS, "out", "out in weight's buffer", |cx| {
        let Base {
            dtype,
            rows,
            hidden,
            ..
        } = *cx.base;
        let mut p = cx.norm();
        (p.weight, p.out) = cx.pair((dtype, &[hidden]), (dtype, &[rows, hidden]));
        p.rms(cx)
    }),
    bad(RMS, "eps", "eps NaN", |cx| eps(cx, f64::NAN, 0.0, false)),
    bad(RMS, "eps", "eps -1e-6", |cx| eps(cx, -1e-6, 0.0, false)),
    bad(RMS, "eps", "eps +inf", |cx| {
        eps(cx, f64::INFINITY, 0.0, false)
    }),
    bad(RMS, "weight_offset", "weight_offset NaN", |cx| {
        eps(cx, 1e-6, f64::NAN, false)
    }),
    bad(RMS, "weight_offset", "weight_offset -inf", |cx| {
        eps(cx, 1e-6, f64::NEG_INFINITY, false)
    }),
    bad(RMS, "x", "x with 2^40 rows at stride 0", |cx| {
        let mut p = cx.norm();
        p.x = cx.huge(cx.base.dtype, &[1, cx.base.hidden]);
        p.rms(cx)
    }),
    bad(
        RMS,
        "x",
        "ops::rms_norm of x with 2^40 rows at stride 0",
        |cx| {
            let p = cx.norm();
            let x = cx.huge(cx.base.dtype, &[1, cx.base.hidden]);
            ops::rms_norm(cx.backend, &x, &p.weight, p.params).map(drop)
        },
    ),
    // ---- fused_add_rms_norm ----
    bad(FUSED, "x", "x of rank 0", |cx| {
        let mut p = cx.norm();
        (p.x, p.residual, p.out) = (cx.float(&[]), cx.float(&[]), cx.float(&[]));
        p.fused(cx)
    }),
    bad(FUSED, "weight", "weight [H+1]", |cx| {
        let mut p = cx.norm();
        p.weight = cx.float(&[cx.base.hidden + 1]);
        p.fused(cx)
    }),
    bad(FUSED, "residual", "residual [rows+1, H]", |cx| {
        let mut p = cx.norm();
        p.residual = cx.float(&[cx.base.rows + 1, cx.base.hidden]);
        p.fused(cx)
    }),
    bad(FUSED, "out", "out [rows, H+1]", |cx| {
        let mut p = cx.norm();
        p.out = cx.float(&[cx.base.rows, cx.base.hidden + 1]);
        p.fused(cx)
    }),
    bad(FUSED, "residual", "residual of another float dtype", |cx| {
        let mut p = cx.norm();
        p.residual = cx.typed(cx.other_float(), &[cx.base.rows, cx.base.hidden]);
        p.fused(cx)
    }),
    bad(FUSED, "x", "x of dtype u8", |cx| {
        let mut p = cx.norm();
        p.x = cx.typed(DType::U8, &[cx.base.rows, cx.base.hidden]);
        p.fused(cx)
    }),
    bad(FUSED, "residual", "non-contiguous residual", |cx| {
        let mut p = cx.norm();
        p.residual = cx.strided(cx.base.dtype, &[cx.base.rows, cx.base.hidden]);
        p.fused(cx)
    }),
    bad(FUSED, "residual", "residual in x's buffer", |cx| {
        let Base {
            dtype,
            rows,
            hidden,
            ..
        } = *cx.base;
        let mut p = cx.norm();
        (p.x, p.residual) = cx.pair((dtype, &[rows, hidden]), (dtype, &[rows, hidden]));
        p.fused(cx)
    }),
    bad(FUSED, "residual", "residual in weight's buffer", |cx| {
        let Base {
            dtype,
            rows,
            hidden,
            ..
        } = *cx.base;
        let mut p = cx.norm();
        (p.weight, p.residual) = cx.pair((dtype, &[hidden]), (dtype, &[rows, hidden]));
        p.fused(cx)
    }),
    bad(FUSED, "out", "out in residual's buffer", |cx| {
        let Base {
            dtype,
            rows,
            hidden,
            ..
        } = *cx.base;
        let mut p = cx.norm();
        (p.residual, p.out) = cx.pair((dtype, &[rows, hidden]), (dtype, &[rows, hidden]));
        p.fused(cx)
    }),
    bad(FUSED, "out", "out in x's buffer", |cx| {
        let Base {
            dtype,
            rows,
            hidden,
            ..
        } = *cx.base;
        let mut p = cx.norm();
        (p.x, p.out) = cx.pair((dtype, &[rows, hidden]), (dtype, &[rows, hidden]));
        p.fused(cx)
    }),
    bad(FUSED, "eps", "eps NaN", |cx| eps(cx, f64::NAN, 0.0, true)),
    bad(FUSED, "eps", "eps -1", |cx| eps(cx, -1.0, 1.0, true)),
    bad(FUSED, "weight_offset", "weight_offset +inf", |cx| {
        eps(cx, 1e-6, f64::INFINITY, true)
    }),
    bad(
        FUSED,
        "residual",
        "residual with 2^40 rows at stride 0",
        |cx| {
            let mut p = cx.norm();
            p.residual = cx.huge(cx.base.dtype, &[1, cx.base.hidden]);
            p.fused(cx)
        },
    ),
    bad(
        FUSED,
        "x",
        "ops::fused_add_rms_norm of x with 2^40 rows at stride 0",
        |cx| {
            let p = cx.norm();
            let x = cx.huge(cx.base.dtype, &[1, cx.base.hidden]);
            ops::fused_add_rms_norm(cx.backend, &x, &p.residual, &p.weight, p.params).map(drop)
        },
    ),
    // ---- attention ----
    bad(ATTN, "q", "q of rank 2", |cx| {
        let mut p = cx.attention();
        p.q = cx.float(&[cx.total_q(), cx.heads_q() * cx.base.head_dim]);
        p.run(cx)
    }),
    bad(ATTN, "k", "k of rank 4", |cx| {
        let mut p = cx.attention();
        p.k = cx.float(&[1, cx.total_k(), cx.base.heads_kv, cx.base.head_dim]);
        p.run(cx)
    }),
    bad(ATTN, "v", "v with one more row than k", |cx| {
        let mut p = cx.attention();
        p.v = cx.float(&[cx.total_k() + 1, cx.base.heads_kv, cx.base.head_dim]);
        p.run(cx)
    }),
    bad(ATTN, "out", "out with another head count", |cx| {
        let mut p = cx.attention();
        p.out = cx.float(&[cx.total_q(), cx.heads_q() + 1, cx.base.head_dim]);
        p.run(cx)
    }),
    bad(ATTN, "q", "q of dtype i32", |cx| {
        let mut p = cx.attention();
        p.q = cx.typed(DType::I32, &cx.q_shape());
        p.run(cx)
    }),
    bad(ATTN, "k", "k of another float dtype", |cx| {
        let mut p = cx.attention();
        p.k = cx.typed(cx.other_float(), &cx.kv_shape());
        p.run(cx)
    }),
    bad(ATTN, "v", "v of another float dtype", |cx| {
        let mut p = cx.attention();
        p.v = cx.typed(cx.other_float(), &cx.kv_shape());
        p.run(cx)
    }),
    bad(ATTN, "out", "out of another float dtype", |cx| {
        let mut p = cx.attention();
        p.out = cx.typed(cx.other_float(), &cx.q_shape());
        p.run(cx)
    }),
    bad(ATTN, "q", "head dim 0", |cx| {
        let mut p = cx.attention();
        let [tq, hq, _] = cx.q_shape();
        let [tk, hkv, _] = cx.kv_shape();
        (p.q, p.out) = (cx.float(&[tq, hq, 0]), cx.float(&[tq, hq, 0]));
        (p.k, p.v) = (cx.float(&[tk, hkv, 0]), cx.float(&[tk, hkv, 0]));
        p.run(cx)
    }),
    bad(ATTN, "k", "k head dim differs from q's", |cx| {
        let mut p = cx.attention();
        let [tk, hkv, d] = cx.kv_shape();
        (p.k, p.v) = (cx.float(&[tk, hkv, d + 1]), cx.float(&[tk, hkv, d + 1]));
        p.run(cx)
    }),
    bad(ATTN, "k", "Hq not a multiple of Hkv", |cx| {
        let mut p = cx.attention();
        let hkv = cx.base.heads_kv + 1;
        let [tk, _, d] = cx.kv_shape();
        let [tq, ..] = cx.q_shape();
        (p.q, p.out) = (
            cx.float(&[tq, 2 * hkv + 1, d]),
            cx.float(&[tq, 2 * hkv + 1, d]),
        );
        (p.k, p.v) = (cx.float(&[tk, hkv, d]), cx.float(&[tk, hkv, d]));
        p.lse = None;
        p.run(cx)
    }),
    bad(ATTN, "q", "q with 0 heads", |cx| {
        let mut p = cx.attention();
        let [tq, _, d] = cx.q_shape();
        (p.q, p.out) = (cx.float(&[tq, 0, d]), cx.float(&[tq, 0, d]));
        p.lse = None;
        p.run(cx)
    }),
    bad(ATTN, "k", "k with 0 heads", |cx| {
        let mut p = cx.attention();
        let [tk, _, d] = cx.kv_shape();
        (p.k, p.v) = (cx.float(&[tk, 0, d]), cx.float(&[tk, 0, d]));
        p.run(cx)
    }),
    bad(ATTN, "cu_seqlens_q", "cu_seqlens_q starting at 1", |cx| {
        let mut p = cx.attention();
        let mut cu = cx.cu_q();
        cu[0] = 1;
        p.cu_q = cx.i32s(&[3], &cu);
        p.run(cx)
    }),
    bad(ATTN, "cu_seqlens_k", "cu_seqlens_k decreasing", |cx| {
        let mut p = cx.attention();
        let tk = cx.total_k() as i32;
        p.cu_k = cx.i32s(&[3], &[0, tk + 1, tk]);
        p.run(cx)
    }),
    bad(
        ATTN,
        "cu_seqlens_q",
        "cu_seqlens_q with a negative entry",
        |cx| {
            let mut p = cx.attention();
            p.cu_q = cx.i32s(&[3], &[0, i32::MIN, cx.total_q() as i32]);
            p.run(cx)
        },
    ),
    bad(
        ATTN,
        "cu_seqlens_q",
        "cu_seqlens_q past the end of q",
        |cx| {
            let mut p = cx.attention();
            let mut cu = cx.cu_q();
            cu[2] += 1;
            p.cu_q = cx.i32s(&[3], &cu);
            p.run(cx)
        },
    ),
    bad(
        ATTN,
        "cu_seqlens_k",
        "cu_seqlens_k ending before the end of k",
        |cx| {
            let mut p = cx.attention();
            let mut cu = cx.cu_k();
            cu[2] -= 1;
            p.cu_k = cx.i32s(&[3], &cu);
            p.run(cx)
        },
    ),
    bad(
        ATTN,
        "cu_seqlens_k",
        "cu_seqlens_k shorter than cu_seqlens_q",
        |cx| {
            let mut p = cx.attention();
            p.cu_k = cx.i32s(&[2], &[0, cx.total_k() as i32]);
            p.run(cx)
        },
    ),
    bad(ATTN, "cu_seqlens_q", "cu_seqlens_q empty", |cx| {
        let mut p = cx.attention();
        p.cu_q = cx.i32s(&[0], &[]);
        p.run(cx)
    }),
    bad(ATTN, "cu_seqlens_q", "cu_seqlens_q of rank 2", |cx| {
        let mut p = cx.attention();
        p.cu_q = cx.i32s(&[1, 3], &cx.cu_q());
        p.run(cx)
    }),
    bad(ATTN, "cu_seqlens_q", "cu_seqlens_q of dtype f32", |cx| {
        let mut p = cx.attention();
        p.cu_q = cx.typed(DType::F32, &[3]);
        p.run(cx)
    }),
    bad(ATTN, "cu_seqlens_k", "non-contiguous cu_seqlens_k", |cx| {
        let mut p = cx.attention();
        p.cu_k = cx.strided(DType::I32, &[3]);
        p.run(cx)
    }),
    bad(ATTN, "lse", "lse of dtype f16", |cx| {
        let mut p = cx.attention();
        p.lse = Some(cx.typed(DType::F16, &[cx.heads_q(), cx.total_q()]));
        p.run(cx)
    }),
    bad(ATTN, "lse", "lse [Hq, total_q + 1]", |cx| {
        let mut p = cx.attention();
        p.lse = Some(cx.typed(DType::F32, &[cx.heads_q(), cx.total_q() + 1]));
        p.run(cx)
    }),
    bad(ATTN, "lse", "non-contiguous lse", |cx| {
        let mut p = cx.attention();
        p.lse = Some(cx.strided(DType::F32, &[cx.heads_q(), cx.total_q()]));
        p.run(cx)
    }),
    bad(ATTN, "q", "non-contiguous q", |cx| {
        let mut p = cx.attention();
        p.q = cx.strided(cx.base.dtype, &cx.q_shape());
        p.run(cx)
    }),
    bad(ATTN, "v", "non-contiguous v", |cx| {
        let mut p = cx.attention();
        p.v = cx.strided(cx.base.dtype, &cx.kv_shape());
        p.run(cx)
    }),
    bad(ATTN, "out", "out in q's buffer", |cx| {
        let d = cx.base.dtype;
        let mut p = cx.attention();
        (p.q, p.out) = cx.pair((d, &cx.q_shape()), (d, &cx.q_shape()));
        p.run(cx)
    }),
    bad(ATTN, "out", "out in cu_seqlens_k's buffer", |cx| {
        let mut p = cx.attention();
        let (cu_k, out) = cx.pair((DType::I32, &[3]), (cx.base.dtype, &cx.q_shape()));
        let values = HostTensor::from_i32(&[3], &cx.cu_k()).expect("setup: host tensor");
        cx.backend
            .upload(cu_k.buffer(), 0, values.bytes())
            .expect("setup: upload");
        (p.cu_k, p.out) = (cu_k, out);
        p.run(cx)
    }),
    bad(ATTN, "lse", "lse in k's buffer", |cx| {
        let mut p = cx.attention();
        let lse_shape = [cx.heads_q(), cx.total_q()];
        let (k, lse) = cx.pair((cx.base.dtype, &cx.kv_shape()), (DType::F32, &lse_shape));
        (p.k, p.lse) = (k, Some(lse));
        p.run(cx)
    }),
    bad(ATTN, "out", "out and lse in one buffer", |cx| {
        let mut p = cx.attention();
        let lse_shape = [cx.heads_q(), cx.total_q()];
        let (out, lse) = cx.pair((cx.base.dtype, &cx.q_shape()), (DType::F32, &lse_shape));
        (p.out, p.lse) = (out, Some(lse));
        p.run(cx)
    }),
    bad(ATTN, "softmax_scale", "softmax_scale NaN", |cx| {
        with_params(cx, scale(f64::NAN), false)
    }),
    bad(ATTN, "softmax_scale", "softmax_scale +inf", |cx| {
        with_params(cx, scale(f64::INFINITY), false)
    }),
    bad(ATTN, "window_left", "window_left -2", |cx| {
        with_params(cx, windows(-2, -1), false)
    }),
    bad(ATTN, "window_right", "window_right -7", |cx| {
        with_params(cx, windows(3, -7), false)
    }),
    bad(ATTN, "softcap", "softcap -1", |cx| {
        with_params(cx, softcap(-1.0), false)
    }),
    bad(ATTN, "softcap", "softcap NaN", |cx| {
        with_params(cx, softcap(f64::NAN), false)
    }),
    bad(ATTN, "softcap", "softcap +inf", |cx| {
        with_params(cx, softcap(f64::INFINITY), false)
    }),
    bad(ATTN, "q", "q with 2^40 rows at stride 0", |cx| {
        let mut p = cx.attention();
        p.q = cx.huge(cx.base.dtype, &cx.q_shape());
        p.run(cx)
    }),
    bad(
        ATTN,
        "q",
        "ops::attention of q with 2^40 rows at stride 0",
        |cx| {
            let p = cx.attention();
            let q = cx.huge(cx.base.dtype, &cx.q_shape());
            ops::attention(cx.backend, &q, &p.k, &p.v, &p.cu_q, &p.cu_k, p.params).map(drop)
        },
    ),
    // ---- paged_attention ----
    bad(PAGED, "q", "q of rank 2", |cx| {
        let mut p = cx.paged();
        p.q = cx.float(&[cx.base.batch, cx.heads_q() * cx.base.head_dim]);
        p.run(cx)
    }),
    bad(PAGED, "k_cache", "k_cache of rank 3", |cx| {
        let mut p = cx.paged();
        let [nb, bs, hkv, d] = cx.cache_shape();
        p.k_cache = cx.float(&[nb * bs, hkv, d]);
        p.run(cx)
    }),
    bad(PAGED, "v_cache", "v_cache with one more block", |cx| {
        let mut p = cx.paged();
        let [nb, bs, hkv, d] = cx.cache_shape();
        p.v_cache = cx.float(&[nb + 1, bs, hkv, d]);
        p.run(cx)
    }),
    bad(PAGED, "out", "out with one more row", |cx| {
        let mut p = cx.paged();
        let [b, hq, d] = cx.paged_q_shape();
        p.out = cx.float(&[b + 1, hq, d]);
        p.run(cx)
    }),
    bad(PAGED, "q", "q of dtype i32", |cx| {
        let mut p = cx.paged();
        p.q = cx.typed(DType::I32, &cx.paged_q_shape());
        p.run(cx)
    }),
    bad(PAGED, "k_cache", "k_cache of another float dtype", |cx| {
        let mut p = cx.paged();
        p.k_cache = cx.typed(cx.other_float(), &cx.cache_shape());
        p.run(cx)
    }),
    bad(PAGED, "v_cache", "v_cache of another float dtype", |cx| {
        let mut p = cx.paged();
        p.v_cache = cx.typed(cx.other_float(), &cx.cache_shape());
        p.run(cx)
    }),
    bad(PAGED, "out", "out of another float dtype", |cx| {
        let mut p = cx.paged();
        p.out = cx.typed(cx.other_float(), &cx.paged_q_shape());
        p.run(cx)
    }),
    bad(PAGED, "block_tables", "block_tables of dtype f32", |cx| {
        let mut p = cx.paged();
        p.block_tables = cx.typed(DType::F32, &[cx.base.batch, Cx::MAX_BLOCKS]);
        p.run(cx)
    }),
    bad(PAGED, "context_lens", "context_lens of dtype f16", |cx| {
        let mut p = cx.paged();
        p.context_lens = cx.typed(DType::F16, &[cx.base.batch]);
        p.run(cx)
    }),
    bad(PAGED, "block_tables", "block_tables of rank 1", |cx| {
        let mut p = cx.paged();
        let ids: Vec<i32> = (0..cx.num_blocks() as i32).collect();
        p.block_tables = cx.i32s(&[ids.len()], &ids);
        p.run(cx)
    }),
    bad(
        PAGED,
        "block_tables",
        "block_tables with batch + 1 rows",
        |cx| {
            let mut p = cx.paged();
            let ids: Vec<i32> = (0..(cx.base.batch + 1) as i32 * 2).map(|i| i / 2).collect();
            p.block_tables = cx.i32s(&[cx.base.batch + 1, Cx::MAX_BLOCKS], &ids);
            p.run(cx)
        },
    ),
    bad(PAGED, "context_lens", "context_lens [batch + 1]", |cx| {
        let mut p = cx.paged();
        p.context_lens = cx.i32s(&[cx.base.batch + 1], &vec![1; cx.base.batch + 1]);
        p.run(cx)
    }),
    bad(PAGED, "q", "head dim 0", |cx| {
        let mut p = cx.paged();
        let [b, hq, _] = cx.paged_q_shape();
        let [nb, bs, hkv, _] = cx.cache_shape();
        (p.q, p.out) = (cx.float(&[b, hq, 0]), cx.float(&[b, hq, 0]));
        (p.k_cache, p.v_cache) = (cx.float(&[nb, bs, hkv, 0]), cx.float(&[nb, bs, hkv, 0]));
        p.run(cx)
    }),
    bad(
        PAGED,
        "k_cache",
        "k_cache head dim differs from q's",
        |cx| {
            let mut p = cx.paged();
            let [nb, bs, hkv, d] = cx.cache_shape();
            let shape = [nb, bs, hkv, d + 1];
            (p.k_cache, p.v_cache) = (cx.float(&shape), cx.float(&shape));
            p.run(cx)
        },
    ),
    bad(PAGED, "k_cache", "Hq not a multiple of Hkv", |cx| {
        let mut p = cx.paged();
        let [nb, bs, hkv, d] = cx.cache_shape();
        let hkv = hkv + 1;
        let [b, _, _] = cx.paged_q_shape();
        (p.q, p.out) = (
            cx.float(&[b, 2 * hkv + 1, d]),
            cx.float(&[b, 2 * hkv + 1, d]),
        );
        (p.k_cache, p.v_cache) = (cx.float(&[nb, bs, hkv, d]), cx.float(&[nb, bs, hkv, d]));
        p.run(cx)
    }),
    bad(PAGED, "k_cache", "block_size 0", |cx| {
        let mut p = cx.paged();
        let [nb, _, hkv, d] = cx.cache_shape();
        (p.k_cache, p.v_cache) = (cx.float(&[nb, 0, hkv, d]), cx.float(&[nb, 0, hkv, d]));
        p.context_lens = cx.lens(0);
        p.run(cx)
    }),
    bad(PAGED, "block_tables", "a read entry of -1", |cx| {
        let mut p = cx.paged();
        let mut ids: Vec<i32> = (0..cx.num_blocks() as i32).collect();
        let last = ids.len() - 1;
        ids[last] = -1;
        p.block_tables = cx.i32s(&[cx.base.batch, Cx::MAX_BLOCKS], &ids);
        p.run(cx)
    }),
    bad(PAGED, "block_tables", "a read entry of num_blocks", |cx| {
        let mut p = cx.paged();
        let mut ids: Vec<i32> = (0..cx.num_blocks() as i32).collect();
        ids[0] = cx.num_blocks() as i32;
        p.block_tables = cx.i32s(&[cx.base.batch, Cx::MAX_BLOCKS], &ids);
        p.run(cx)
    }),
    bad(PAGED, "context_lens", "context_len -1", |cx| {
        let mut p = cx.paged();
        p.context_lens = cx.lens(-1);
        p.run(cx)
    }),
    bad(PAGED, "context_lens", "context_len past the table", |cx| {
        let mut p = cx.paged();
        p.context_lens = cx.lens(cx.full_len() + 1);
        p.run(cx)
    }),
    bad(PAGED, "q", "non-contiguous q", |cx| {
        let mut p = cx.paged();
        p.q = cx.strided(cx.base.dtype, &cx.paged_q_shape());
        p.run(cx)
    }),
    bad(PAGED, "k_cache", "non-contiguous k_cache", |cx| {
        let mut p = cx.paged();
        p.k_cache = cx.strided(cx.base.dtype, &cx.cache_shape());
        p.run(cx)
    }),
    bad(PAGED, "block_tables", "non-contiguous block_tables", |cx| {
        let mut p = cx.paged();
        p.block_tables = cx.strided(DType::I32, &[cx.base.batch, Cx::MAX_BLOCKS]);
        p.run(cx)
    }),
    bad(PAGED, "out", "out in k_cache's buffer", |cx| {
        let d = cx.base.dtype;
        let mut p = cx.paged();
        (p.k_cache, p.out) = cx.pair((d, &cx.cache_shape()), (d, &cx.paged_q_shape()));
        p.run(cx)
    }),
    bad(PAGED, "out", "out in q's buffer", |cx| {
        let d = cx.base.dtype;
        let mut p = cx.paged();
        (p.q, p.out) = cx.pair((d, &cx.paged_q_shape()), (d, &cx.paged_q_shape()));
        p.run(cx)
    }),
    bad(PAGED, "softmax_scale", "softmax_scale NaN", |cx| {
        with_params(cx, scale(f64::NAN), true)
    }),
    bad(PAGED, "window_left", "window_left -2", |cx| {
        with_params(cx, windows(-2, 0), true)
    }),
    bad(PAGED, "window_right", "window_right -2", |cx| {
        with_params(cx, windows(-1, -2), true)
    }),
    bad(PAGED, "softcap", "softcap -30", |cx| {
        with_params(cx, softcap(-30.0), true)
    }),
    bad(
        PAGED,
        "k_cache",
        "k_cache with 2^40 blocks at stride 0",
        |cx| {
            let mut p = cx.paged();
            p.k_cache = cx.huge(cx.base.dtype, &cx.cache_shape());
            p.run(cx)
        },
    ),
    bad(
        PAGED,
        "q",
        "ops::paged_attention of q with 2^40 rows at stride 0",
        |cx| {
            let p = cx.paged();
            let q = cx.huge(cx.base.dtype, &cx.paged_q_shape());
            ops::paged_attention(
                cx.backend,
                &q,
                &p.k_cache,
                &p.v_cache,
                &p.block_tables,
                &p.context_lens,
                p.params,
            )
            .map(drop)
        },
    ),
];

/// Valid but unusual arguments that must be accepted.
pub struct Accepted {
    pub what: &'static str,
    pub call: fn(&Cx) -> radiant::Result<()>,
}

pub const ACCEPTED: &[Accepted] = &[
    Accepted {
        what: "matmul baseline",
        call: |cx| cx.matmul().run(cx),
    },
    Accepted {
        what: "matmul with a and b in one buffer",
        call: |cx| {
            let Base { dtype, m, n, k, .. } = *cx.base;
            let mut p = cx.matmul();
            (p.a, p.b) = cx.pair((dtype, &[m, k]), (dtype, &[k, n]));
            p.run(cx)
        },
    },
    Accepted {
        what: "rms_norm baseline",
        call: |cx| cx.norm().rms(cx),
    },
    Accepted {
        what: "fused_add_rms_norm baseline",
        call: |cx| cx.norm().fused(cx),
    },
    Accepted {
        what: "attention baseline",
        call: |cx| cx.attention().run(cx),
    },
    Accepted {
        what: "attention with k and v in one buffer",
        call: |cx| {
            let d = cx.base.dtype;
            let mut p = cx.attention();
            (p.k, p.v) = cx.pair((d, &cx.kv_shape()), (d, &cx.kv_shape()));
            p.run(cx)
        },
    },
    Accepted {
        what: "attention with cu_seqlens_q and cu_seqlens_k the same tensor",
        call: |cx| {
            let mut p = cx.attention();
            let [tq, hq, d] = cx.q_shape();
            let [_, hkv, _] = cx.kv_shape();
            (p.k, p.v) = (cx.float(&[tq, hkv, d]), cx.float(&[tq, hkv, d]));
            p.cu_k = p.cu_q.clone();
            p.lse = Some(cx.typed(DType::F32, &[hq, tq]));
            p.run(cx)
        },
    },
    Accepted {
        what: "paged_attention baseline",
        call: |cx| cx.paged().run(cx),
    },
    Accepted {
        what: "paged_attention with garbage in table entries that are never read",
        call: |cx| {
            let mut p = cx.paged();
            let mut ids: Vec<i32> = (0..cx.num_blocks() as i32).collect();
            ids[1] = -1; // sequence 0 has one token: only entry [0, 0] is read
            p.block_tables = cx.i32s(&[cx.base.batch, Cx::MAX_BLOCKS], &ids);
            p.context_lens = cx.lens(1);
            p.run(cx)
        },
    },
    Accepted {
        what: "paged_attention with context_len 0 and a garbage row",
        call: |cx| {
            let mut p = cx.paged();
            let mut ids: Vec<i32> = (0..cx.num_blocks() as i32).collect();
            (ids[0], ids[1]) = (i32::MIN, i32::MAX);
            p.block_tables = cx.i32s(&[cx.base.batch, Cx::MAX_BLOCKS], &ids);
            p.context_lens = cx.lens(0);
            p.run(cx)
        },
    },
];

// ---------------------------------------------------------------------------
// The quantized matmuls: one list of malformations, run against each op.

/// Which quantized matmul a [`QuantMalformed`] entry runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantOp {
    Gptq,
    Awq,
    Nvfp4,
}

impl QuantOp {
    pub const ALL: [QuantOp; 3] = [QuantOp::Gptq, QuantOp::Awq, QuantOp::Nvfp4];

    /// The op name its errors carry.
    pub fn name(self) -> &'static str {
        match self {
            QuantOp::Gptq => "gptq_matmul",
            QuantOp::Awq => "awq_matmul",
            QuantOp::Nvfp4 => "nvfp4_matmul",
        }
    }
}

/// A valid weight on the backend.
pub enum DeviceWeight {
    Gptq(DeviceGptqWeight),
    Awq(DeviceAwqWeight),
    Nvfp4(DeviceNvfp4Weight),
}

impl DeviceWeight {
    /// The packed codes (`qweight` / `weight_packed`), the largest tensor.
    fn packed(&self) -> &Tensor {
        match self {
            DeviceWeight::Gptq(w) => w.qweight(),
            DeviceWeight::Awq(w) => w.qweight(),
            DeviceWeight::Nvfp4(w) => w.weight_packed(),
        }
    }
}

pub struct Quant {
    x: Tensor,
    weight: DeviceWeight,
    bias: Option<Tensor>,
    out: Tensor,
}

impl Quant {
    /// The `*_into` entry point.
    fn run(&self, cx: &Cx) -> radiant::Result<()> {
        let Quant {
            x,
            weight,
            bias,
            out,
        } = self;
        let (backend, bias) = (cx.backend, bias.as_ref());
        match weight {
            DeviceWeight::Gptq(w) => ops::gptq_matmul_into(backend, x, w, bias, out),
            DeviceWeight::Awq(w) => ops::awq_matmul_into(backend, x, w, bias, out),
            DeviceWeight::Nvfp4(w) => ops::nvfp4_matmul_into(backend, x, w, bias, out),
        }
    }

    /// The allocating entry point (`out` unused).
    fn alloc(&self, cx: &Cx) -> radiant::Result<()> {
        let (backend, x, bias) = (cx.backend, &self.x, self.bias.as_ref());
        match &self.weight {
            DeviceWeight::Gptq(w) => ops::gptq_matmul(backend, x, w, bias).map(drop),
            DeviceWeight::Awq(w) => ops::awq_matmul(backend, x, w, bias).map(drop),
            DeviceWeight::Nvfp4(w) => ops::nvfp4_matmul(backend, x, w, bias).map(drop),
        }
    }
}

impl Cx<'_> {
    /// (M, N, K) of the quantized problems: N = 8n and K = 32k hold whole
    /// words and whole groups of 32 for every format.
    fn qdims(&self) -> (usize, usize, usize) {
        (self.base.m, 8 * self.base.n, 32 * self.base.k)
    }

    /// A valid quantized problem for `op`: x `[M, K]`, bias `[N]`, out
    /// `[M, N]`, and a weight from the quantizer (4-bit, groups of 32).
    fn quant(&self, op: QuantOp) -> Quant {
        let (m, n, k) = self.qdims();
        let values: Vec<f64> = (0..n * k)
            .map(|i| (i * 37 % 17) as f64 / 8.0 - 1.0)
            .collect();
        let w = HostTensor::from_f64(DType::F32, &[n, k], &values).expect("setup: weight");
        let backend = self.backend;
        let weight = match op {
            QuantOp::Gptq => {
                let params = GptqQuantizeParams {
                    group_size: GroupSize::Columns(32),
                    ..GptqQuantizeParams::default()
                };
                let w = GptqWeight::quantize(&w, &params).expect("setup: quantize");
                DeviceWeight::Gptq(w.upload(backend).expect("setup: upload"))
            }
            QuantOp::Awq => {
                let params = AwqQuantizeParams {
                    group_size: GroupSize::Columns(32),
                    ..AwqQuantizeParams::default()
                };
                let w = AwqWeight::quantize(&w, &params).expect("setup: quantize");
                DeviceWeight::Awq(w.upload(backend).expect("setup: upload"))
            }
            QuantOp::Nvfp4 => {
                let w =
                    Nvfp4Weight::quantize(&w, Nvfp4Producer::ModelOpt).expect("setup: quantize");
                DeviceWeight::Nvfp4(w.upload(backend).expect("setup: upload"))
            }
        };
        Quant {
            x: self.float(&[m, k]),
            weight,
            bias: Some(self.float(&[n])),
            out: self.float(&[m, n]),
        }
    }
}

/// A malformation of any quantized matmul; the error must name the op and
/// `arg`.
pub struct QuantMalformed {
    pub what: &'static str,
    pub arg: &'static str,
    pub call: fn(&Cx, QuantOp) -> radiant::Result<()>,
}

const fn qbad(
    arg: &'static str,
    what: &'static str,
    call: fn(&Cx, QuantOp) -> radiant::Result<()>,
) -> QuantMalformed {
    QuantMalformed { what, arg, call }
}

pub const QUANT_MALFORMED: &[QuantMalformed] = &[
    qbad("x", "x of rank 1", |cx, op| {
        let mut p = cx.quant(op);
        p.x = cx.float(&[cx.qdims().2]);
        p.run(cx)
    }),
    qbad("x", "x [M, K+1]", |cx, op| {
        let (m, _, k) = cx.qdims();
        let mut p = cx.quant(op);
        p.x = cx.float(&[m, k + 1]);
        p.run(cx)
    }),
    qbad("x", "x [M, K-1]", |cx, op| {
        let (m, _, k) = cx.qdims();
        let mut p = cx.quant(op);
        p.x = cx.float(&[m, k - 1]);
        p.run(cx)
    }),
    qbad("x", "x [M, N] (K and N swapped)", |cx, op| {
        let (m, n, _) = cx.qdims();
        let mut p = cx.quant(op);
        p.x = cx.float(&[m, n]);
        p.run(cx)
    }),
    qbad("x", "x of dtype i32", |cx, op| {
        let (m, _, k) = cx.qdims();
        let mut p = cx.quant(op);
        p.x = cx.typed(DType::I32, &[m, k]);
        p.run(cx)
    }),
    qbad("x", "x of dtype u8", |cx, op| {
        let (m, _, k) = cx.qdims();
        let mut p = cx.quant(op);
        p.x = cx.typed(DType::U8, &[m, k]);
        p.run(cx)
    }),
    qbad("x", "non-contiguous x", |cx, op| {
        let (m, _, k) = cx.qdims();
        let mut p = cx.quant(op);
        p.x = cx.strided(cx.base.dtype, &[m, k]);
        p.run(cx)
    }),
    qbad("x", "x with 2^62 rows at stride 0", |cx, op| {
        let (_, _, k) = cx.qdims();
        let mut p = cx.quant(op);
        p.x = cx.huge(cx.base.dtype, &[1, k]);
        p.run(cx)
    }),
    qbad("bias", "bias [N+1]", |cx, op| {
        let mut p = cx.quant(op);
        p.bias = Some(cx.float(&[cx.qdims().1 + 1]));
        p.run(cx)
    }),
    qbad("bias", "bias [1, N]", |cx, op| {
        let mut p = cx.quant(op);
        p.bias = Some(cx.float(&[1, cx.qdims().1]));
        p.run(cx)
    }),
    qbad("bias", "bias of another float dtype", |cx, op| {
        let mut p = cx.quant(op);
        p.bias = Some(cx.typed(cx.other_float(), &[cx.qdims().1]));
        p.run(cx)
    }),
    qbad("bias", "non-contiguous bias", |cx, op| {
        let mut p = cx.quant(op);
        p.bias = Some(cx.strided(cx.base.dtype, &[cx.qdims().1]));
        p.run(cx)
    }),
    qbad("out", "out [M, N+1]", |cx, op| {
        let (m, n, _) = cx.qdims();
        let mut p = cx.quant(op);
        p.out = cx.float(&[m, n + 1]);
        p.run(cx)
    }),
    qbad("out", "3-D out for 2-D x", |cx, op| {
        let (m, n, _) = cx.qdims();
        let mut p = cx.quant(op);
        p.out = cx.float(&[1, m, n]);
        p.run(cx)
    }),
    qbad("out", "out of another float dtype", |cx, op| {
        let (m, n, _) = cx.qdims();
        let mut p = cx.quant(op);
        p.out = cx.typed(cx.other_float(), &[m, n]);
        p.run(cx)
    }),
    qbad("out", "non-contiguous out", |cx, op| {
        let (m, n, _) = cx.qdims();
        let mut p = cx.quant(op);
        p.out = cx.strided(cx.base.dtype, &[m, n]);
        p.run(cx)
    }),
    qbad("out", "out in x's buffer", |cx, op| {
        let (m, n, k) = cx.qdims();
        let d = cx.base.dtype;
        let mut p = cx.quant(op);
        (p.x, p.out) = cx.pair((d, &[m, k]), (d, &[m, n]));
        p.run(cx)
    }),
    qbad("out", "out in bias's buffer", |cx, op| {
        let (m, n, _) = cx.qdims();
        let d = cx.base.dtype;
        let mut p = cx.quant(op);
        let (bias, out) = cx.pair((d, &[n]), (d, &[m, n]));
        (p.bias, p.out) = (Some(bias), out);
        p.run(cx)
    }),
    qbad("out", "out in the weight's packed codes", |cx, op| {
        let (m, n, _) = cx.qdims();
        let mut p = cx.quant(op);
        let buffer = p.weight.packed().buffer().clone();
        p.out = Tensor::from_buffer(buffer, cx.base.dtype, &[m, n], 0).expect("setup: view");
        p.run(cx)
    }),
    qbad(
        "x",
        "the allocating entry point with x [M, K+1]",
        |cx, op| {
            let (m, _, k) = cx.qdims();
            let mut p = cx.quant(op);
            p.x = cx.float(&[m, k + 1]);
            p.alloc(cx)
        },
    ),
    qbad(
        "x",
        "the allocating entry point with x of dtype i32",
        |cx, op| {
            let (m, _, k) = cx.qdims();
            let mut p = cx.quant(op);
            p.x = cx.typed(DType::I32, &[m, k]);
            p.alloc(cx)
        },
    ),
    qbad(
        "x",
        "the allocating entry point with x of 2^62 rows at stride 0",
        |cx, op| {
            let (_, _, k) = cx.qdims();
            let mut p = cx.quant(op);
            p.x = cx.huge(cx.base.dtype, &[1, k]);
            p.alloc(cx)
        },
    ),
    qbad(
        "bias",
        "the allocating entry point with bias [N+1]",
        |cx, op| {
            let mut p = cx.quant(op);
            p.bias = Some(cx.float(&[cx.qdims().1 + 1]));
            p.alloc(cx)
        },
    ),
];

/// Valid but unusual calls of any quantized matmul.
pub struct QuantAccepted {
    pub what: &'static str,
    pub call: fn(&Cx, QuantOp) -> radiant::Result<()>,
}

pub const QUANT_ACCEPTED: &[QuantAccepted] = &[
    QuantAccepted {
        what: "baseline",
        call: |cx, op| cx.quant(op).run(cx),
    },
    QuantAccepted {
        what: "no bias",
        call: |cx, op| {
            let mut p = cx.quant(op);
            p.bias = None;
            p.run(cx)
        },
    },
    QuantAccepted {
        what: "3-D x [2, M, K]",
        call: |cx, op| {
            let (m, n, k) = cx.qdims();
            let mut p = cx.quant(op);
            (p.x, p.out) = (cx.float(&[2, m, k]), cx.float(&[2, m, n]));
            p.run(cx)
        },
    },
    QuantAccepted {
        what: "x and bias in one buffer",
        call: |cx, op| {
            let (m, n, k) = cx.qdims();
            let d = cx.base.dtype;
            let mut p = cx.quant(op);
            let (x, bias) = cx.pair((d, &[m, k]), (d, &[n]));
            (p.x, p.bias) = (x, Some(bias));
            p.run(cx)
        },
    },
    QuantAccepted {
        what: "the allocating entry point",
        call: |cx, op| cx.quant(op).alloc(cx),
    },
];

/// Every call the malformed tests make: the per-op lists, then the
/// quantized lists for each quantized op.
#[derive(Clone, Copy)]
enum Item {
    Bad(&'static Malformed),
    Ok(&'static Accepted),
    QuantBad(&'static QuantMalformed, QuantOp),
    QuantOk(&'static QuantAccepted, QuantOp),
}

fn items() -> Vec<Item> {
    let mut items: Vec<Item> = MALFORMED.iter().map(Item::Bad).collect();
    items.extend(ACCEPTED.iter().map(Item::Ok));
    for op in QuantOp::ALL {
        items.extend(QUANT_MALFORMED.iter().map(|bad| Item::QuantBad(bad, op)));
        items.extend(QUANT_ACCEPTED.iter().map(|ok| Item::QuantOk(ok, op)));
    }
    items
}

fn check_item(cx: &Cx, item: Item) -> Check {
    match item {
        Item::Bad(bad) => expect_invalid(cx, bad.op, bad.arg, bad.what, || (bad.call)(cx)),
        Item::Ok(ok) => expect_accepted(cx, ok.what, || (ok.call)(cx)),
        Item::QuantBad(bad, op) => {
            expect_invalid(cx, op.name(), bad.arg, bad.what, || (bad.call)(cx, op))
        }
        Item::QuantOk(ok, op) => {
            let what = format!("{} {}", op.name(), ok.what);
            expect_accepted(cx, &what, || (ok.call)(cx, op))
        }
    }
}

/// Runs one malformation: it must fail with InvalidArgument naming `op`
/// and `arg`.
fn expect_invalid(
    cx: &Cx,
    op: &'static str,
    arg: &'static str,
    what: &str,
    call: impl FnOnce() -> radiant::Result<()>,
) -> Check {
    let what = format!("{op} with {what}");
    match no_panic(&what, call)? {
        Err(Error::InvalidArgument {
            op: got_op,
            arg: got_arg,
            ..
        }) if got_op == op && got_arg == arg => Ok(()),
        other => Err(fail(format!(
            "{what}: expected InvalidArgument {{ op: {op:?}, arg: {arg:?} }}, got {other:?}\nbase: {:?}",
            cx.base
        ))),
    }
}

/// Runs one valid call: it must succeed (or be reported unsupported, once
/// per call).
fn expect_accepted(cx: &Cx, what: &str, call: impl FnOnce() -> radiant::Result<()>) -> Check {
    static REPORTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    match no_panic(what, call)? {
        Ok(()) => Ok(()),
        Err(Error::Unsupported(unsupported)) => {
            let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
            if reported.insert(format!("{} {what}", cx.backend.name())) {
                println!("skipped: {what}: {unsupported}");
            }
            Ok(())
        }
        Err(error) => Err(fail(format!(
            "{what}: a valid call was refused: {error}\nbase: {:?}",
            cx.base
        ))),
    }
}

/// Random bases, random malformations (and accepted calls).
pub fn random(backend: &dyn Backend) {
    let items = items();
    let indices: Vec<usize> = (0..items.len()).collect();
    proptest!(harness::config(256), |(base in bases(), index in select(indices))| {
        let cx = Cx { backend, base: &base };
        check_item(&cx, items[index])?;
    });
}

/// Every malformation and accepted call once on a fixed base, reporting all
/// failures together.
pub fn each_once(backend: &dyn Backend) {
    let base = Base {
        dtype: DType::F32,
        m: 3,
        n: 5,
        k: 4,
        rows: 3,
        hidden: 7,
        seq_q: [2, 3],
        seq_k: [4, 1],
        heads_kv: 2,
        group: 2,
        head_dim: 8,
        block_size: 4,
        batch: 2,
    };
    let cx = Cx {
        backend,
        base: &base,
    };
    let items = items();
    let failures: Vec<String> = items
        .iter()
        .filter_map(|&item| check_item(&cx, item).err().map(|error| error.to_string()))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} calls misbehaved:\n{}",
        failures.len(),
        items.len(),
        failures.join("\n")
    );
}

/// A zero-stride view may describe more elements than usize holds; the
/// library accepts building it, so asking its size must not panic.
pub fn huge_views(backend: &dyn Backend) {
    let buffer = backend.alloc(16).expect("setup: alloc");
    let view = no_panic("Tensor::from_buffer_strided", || {
        Tensor::from_buffer_strided(buffer, DType::F32, &[1 << 62, 4], &[0, 1], 0)
    });
    let view = match view {
        Ok(Ok(view)) => view,
        // Refusing the view is a fine answer too.
        Ok(Err(Error::InvalidArgument { .. })) => return,
        other => panic!("building a zero-stride view: {other:?}"),
    };
    harness::must(
        no_panic("Tensor::numel of a [2^62, 4] zero-stride view", || {
            view.numel()
        })
        .map(drop),
    );
    harness::must(
        no_panic("Tensor::byte_len of a [2^62, 4] zero-stride view", || {
            view.byte_len()
        })
        .map(drop),
    );
    harness::must(
        no_panic("download_tensor of a [2^62, 4] zero-stride view", || {
            backend.download_tensor(&view).map(drop)
        })
        .map(drop),
    );
}
