//! The engine-facing low-level API: every op launched on the caller's
//! cudarc stream with the caller's device slices — no copies, no
//! allocations except paged attention's split-context workspace (allocated
//! and freed stream-ordered on the caller's stream).
//!
//! * Create one [`Kernels`] per CUDA context ([`Kernels::new`]); it loads
//!   each kernel module on first use and is `Send + Sync`.
//! * Pass views: a `CudaSlice` gives one with `.as_view()` /
//!   `.as_view_mut()`, a sub-range with `.slice(a..b)` / `.slice_mut(a..b)`.
//!   Element types are `f32`, `half::f16` and `half::bf16` ([`CudaFloat`]).
//! * Every size is checked against the slices' lengths, every parameter as
//!   in [`crate::ops`], and the op against [`super::select`] (the function
//!   the `Backend` uses), before anything is queued. Errors are typed; a
//!   zero-size op queues nothing.
//! * The calls return once the kernels are queued; synchronize the stream
//!   (or record an event) before reading outputs on the host. cudarc's
//!   event tracking, if the caller's context has it on, orders the views
//!   across streams as for any cudarc launch.
//! * Outputs must not overlap inputs (not checked: views carry no identity).
//!
//! The attention ops take device-side offsets and tables the kernels trust
//! (reading them back would cost a synchronizing copy), so they are `unsafe`
//! with their contract stated.
//!
//! ```no_run
//! use radiant::cuda::cudarc::driver::CudaContext;
//! use radiant::cuda::{Kernels, launch};
//! use radiant::ops::RmsNormParams;
//! use half::f16;
//!
//! // The engine's own context and stream.
//! let ctx = CudaContext::new(0)?;
//! let stream = ctx.default_stream();
//! // Once per context: kernel modules load lazily, on first use.
//! let kernels = Kernels::new(&ctx)?;
//!
//! let hidden = 4096;
//! let x = stream.clone_htod(&vec![f16::from_f32(0.5); 8 * hidden])?;
//! let weight = stream.clone_htod(&vec![f16::ONE; hidden])?;
//! let mut y = stream.alloc_zeros::<f16>(8 * hidden)?;
//! launch::rms_norm(
//!     &kernels,
//!     &stream,
//!     &x.as_view(),
//!     &weight.as_view(),
//!     &mut y.as_view_mut(),
//!     RmsNormParams::default(),
//! )?;
//! stream.synchronize()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use cudarc::driver::{CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, DeviceRepr};

use crate::dtype::DType;
use crate::error::{Error, Result, Unsupported};
use crate::ops::{AttentionParams, BLayout, OpKind, OpQuery, RmsNormParams};

use super::backend::{Plan, select};
use super::kernels::Kernels;
use super::{
    attention as att, awq_matmul as awq, fused_add_rms_norm as fused, gptq_matmul as gptq,
    matmul as mm, nvfp4_matmul as nvfp4, paged_attention as paged, rms_norm as rms,
};
use crate::quant::GlobalScale;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// An activation element type the kernels take: `f32`, `half::f16`,
/// `half::bf16`.
pub trait CudaFloat: DeviceRepr + Copy + sealed::Sealed {
    const DTYPE: DType;
}
impl CudaFloat for f32 {
    const DTYPE: DType = DType::F32;
}
impl CudaFloat for half::f16 {
    const DTYPE: DType = DType::F16;
}
impl CudaFloat for half::bf16 {
    const DTYPE: DType = DType::BF16;
}

/// The stream must belong to the context the kernels were loaded into.
fn check_stream(op: &'static str, kernels: &Kernels, stream: &CudaStream) -> Result<()> {
    if stream.context().cu_ctx() != kernels.context().cu_ctx() {
        return Err(Error::invalid(
            op,
            "stream",
            "belongs to another CUDA context than `kernels`",
        ));
    }
    Ok(())
}

fn plan(kernels: &Kernels, query: OpQuery) -> Result<Plan> {
    select(kernels.arch(), &query).map_err(|reason| {
        Error::Unsupported(Unsupported {
            backend: kernels.device_name().to_string(),
            op: query.op,
            reason,
        })
    })
}

fn check_len(
    op: &'static str,
    arg: &'static str,
    len: usize,
    expected: Option<usize>,
) -> Result<()> {
    match expected {
        Some(e) if e == len => Ok(()),
        Some(e) => Err(Error::invalid(
            op,
            arg,
            format!("has {len} elements, expected {e}"),
        )),
        None => Err(Error::invalid(
            op,
            arg,
            "the expected element count overflows usize",
        )),
    }
}

fn product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// `out = rms_norm(x)` over rows of `weight.len()` elements.
pub fn rms_norm<T: CudaFloat>(
    kernels: &Kernels,
    stream: &Arc<CudaStream>,
    x: &CudaView<'_, T>,
    weight: &CudaView<'_, T>,
    out: &mut CudaViewMut<'_, T>,
    params: RmsNormParams,
) -> Result<()> {
    const OP: &str = "rms_norm";
    check_stream(OP, kernels, stream)?;
    crate::ops::rms_norm::check_params(OP, &params)?;
    let hidden = weight.len();
    if hidden == 0 || x.len() % hidden != 0 {
        return Err(Error::invalid(
            OP,
            "x",
            format!("{} elements are not whole rows of {hidden}", x.len()),
        ));
    }
    check_len(OP, "out", out.len(), Some(x.len()))?;
    let Plan::RmsNorm(entry) = plan(kernels, OpQuery::new(OpKind::RmsNorm, T::DTYPE))? else {
        return Err(super::plan_mismatch(kernels.device_name(), OP));
    };
    let (x_ptr, _x) = x.device_ptr(stream);
    let (w_ptr, _w) = weight.device_ptr(stream);
    let (out_ptr, _out) = out.device_ptr_mut(stream);
    let args = rms::Args {
        x: x_ptr,
        weight: w_ptr,
        out: out_ptr,
        rows: x.len() / hidden,
        hidden,
        eps: params.eps as f32,
        weight_offset: params.weight_offset as f32,
    };
    rms::launch(kernels, stream, OP, entry, &args)
}

/// `residual ← x + residual` (rounded to `T`), `out = rms_norm(residual)`,
/// over rows of `weight.len()` elements.
pub fn fused_add_rms_norm<T: CudaFloat>(
    kernels: &Kernels,
    stream: &Arc<CudaStream>,
    x: &CudaView<'_, T>,
    residual: &mut CudaViewMut<'_, T>,
    weight: &CudaView<'_, T>,
    out: &mut CudaViewMut<'_, T>,
    params: RmsNormParams,
) -> Result<()> {
    const OP: &str = "fused_add_rms_norm";
    check_stream(OP, kernels, stream)?;
    crate::ops::rms_norm::check_params(OP, &params)?;
    let hidden = weight.len();
    if hidden == 0 || x.len() % hidden != 0 {
        return Err(Error::invalid(
            OP,
            "x",
            format!("{} elements are not whole rows of {hidden}", x.len()),
        ));
    }
    check_len(OP, "residual", residual.len(), Some(x.len()))?;
    check_len(OP, "out", out.len(), Some(x.len()))?;
    let Plan::FusedAddRmsNorm(entry) =
        plan(kernels, OpQuery::new(OpKind::FusedAddRmsNorm, T::DTYPE))?
    else {
        return Err(super::plan_mismatch(kernels.device_name(), OP));
    };
    let (x_ptr, _x) = x.device_ptr(stream);
    let (r_ptr, _r) = residual.device_ptr_mut(stream);
    let (w_ptr, _w) = weight.device_ptr(stream);
    let (out_ptr, _out) = out.device_ptr_mut(stream);
    let args = fused::Args {
        x: x_ptr,
        residual: r_ptr,
        weight: w_ptr,
        out: out_ptr,
        rows: x.len() / hidden,
        hidden,
        eps: params.eps as f32,
        weight_offset: params.weight_offset as f32,
    };
    fused::launch(kernels, stream, OP, entry, &args)
}

/// Sizes and layout of a [`matmul`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulShape {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// `Kn`: b is `[K,N]`; `Nk`: b is `[N,K]` (linear weights).
    pub b_layout: BLayout,
    /// False: one b shared by every batch.
    pub b_batched: bool,
}

/// `out[b] = a[b] · b (+ bias)`, row-major, f32 accumulation.
pub fn matmul<T: CudaFloat>(
    kernels: &Kernels,
    stream: &Arc<CudaStream>,
    a: &CudaView<'_, T>,
    b: &CudaView<'_, T>,
    bias: Option<&CudaView<'_, T>>,
    out: &mut CudaViewMut<'_, T>,
    shape: MatmulShape,
) -> Result<()> {
    const OP: &str = "matmul";
    check_stream(OP, kernels, stream)?;
    let MatmulShape {
        batch,
        m,
        n,
        k,
        b_layout,
        b_batched,
    } = shape;
    check_len(OP, "a", a.len(), product(&[batch, m, k]))?;
    let b_count = if b_batched { batch } else { 1 };
    check_len(OP, "b", b.len(), product(&[b_count, k, n]))?;
    check_len(OP, "out", out.len(), product(&[batch, m, n]))?;
    if let Some(bias) = bias {
        check_len(OP, "bias", bias.len(), Some(n))?;
    }
    let plan = plan(kernels, OpQuery::new(OpKind::Matmul, T::DTYPE))?;
    let (a_ptr, _a) = a.device_ptr(stream);
    let (b_ptr, _b) = b.device_ptr(stream);
    let bias_guard = bias.map(|bias| bias.device_ptr(stream));
    let (out_ptr, _out) = out.device_ptr_mut(stream);
    let args = mm::Args {
        a: a_ptr,
        b: b_ptr,
        bias: bias_guard.as_ref().map_or(0, |(ptr, _)| *ptr),
        out: out_ptr,
        batch,
        m,
        n,
        k,
        b_layout,
        b_batched,
    };
    mm::launch(kernels, stream, OP, plan, &args)
}

/// Head counts and sizes of an [`attention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub heads_q: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
    /// The longest query sequence (sizes the grid; rows beyond it are not
    /// computed).
    pub max_seqlen_q: usize,
}

/// Variable-length prefill attention (see [`crate::ops::attention`]):
/// q/out `[total_q, Hq, D]`, k/v `[total_k, Hkv, D]`, optional f32 `lse`
/// `[Hq, total_q]`.
///
/// # Safety
///
/// The kernels trust the device-side offsets: `cu_seqlens_q` and
/// `cu_seqlens_k` (batch + 1 entries each) must start at 0, never decrease
/// and end at total_q / total_k, and no sequence may have more than
/// `shape.max_seqlen_q` queries. Otherwise the kernel reads or writes out
/// of bounds (or leaves rows unwritten).
#[allow(clippy::too_many_arguments)] // mirrors the op's documented argument list
pub unsafe fn attention<T: CudaFloat>(
    kernels: &Kernels,
    stream: &Arc<CudaStream>,
    q: &CudaView<'_, T>,
    k: &CudaView<'_, T>,
    v: &CudaView<'_, T>,
    cu_seqlens_q: &CudaView<'_, i32>,
    cu_seqlens_k: &CudaView<'_, i32>,
    out: &mut CudaViewMut<'_, T>,
    lse: Option<&mut CudaViewMut<'_, f32>>,
    shape: AttentionShape,
    params: AttentionParams,
) -> Result<()> {
    const OP: &str = "attention";
    check_stream(OP, kernels, stream)?;
    params.check(OP)?;
    let AttentionShape {
        heads_q,
        heads_kv,
        head_dim,
        max_seqlen_q,
    } = shape;
    crate::ops::attention::check_qkv_heads(OP, "k", heads_q, heads_kv, head_dim, head_dim)?;
    let overflow = || Error::invalid(OP, "q", "Hq·D overflows usize");
    let q_row = product(&[heads_q, head_dim]).ok_or_else(overflow)?;
    let kv_row = product(&[heads_kv, head_dim]).ok_or_else(overflow)?;
    if q.len() % q_row != 0 {
        return Err(Error::invalid(
            OP,
            "q",
            format!("{} elements are not whole rows of Hq·D = {q_row}", q.len()),
        ));
    }
    if k.len() % kv_row != 0 {
        return Err(Error::invalid(
            OP,
            "k",
            format!(
                "{} elements are not whole rows of Hkv·D = {kv_row}",
                k.len()
            ),
        ));
    }
    check_len(OP, "v", v.len(), Some(k.len()))?;
    check_len(OP, "out", out.len(), Some(q.len()))?;
    let total_q = q.len() / q_row;
    if cu_seqlens_q.is_empty() {
        return Err(Error::invalid(
            OP,
            "cu_seqlens_q",
            "must have batch + 1 >= 1 entries",
        ));
    }
    check_len(
        OP,
        "cu_seqlens_k",
        cu_seqlens_k.len(),
        Some(cu_seqlens_q.len()),
    )?;
    if let Some(lse) = &lse {
        check_len(OP, "lse", lse.len(), product(&[heads_q, total_q]))?;
    }
    let query = OpQuery {
        head_dim: Some(head_dim),
        ..OpQuery::new(OpKind::Attention, T::DTYPE)
    };
    let Plan::Attention(entry) = plan(kernels, query)? else {
        return Err(super::plan_mismatch(kernels.device_name(), OP));
    };
    let (q_ptr, _q) = q.device_ptr(stream);
    let (k_ptr, _k) = k.device_ptr(stream);
    let (v_ptr, _v) = v.device_ptr(stream);
    let (cq_ptr, _cq) = cu_seqlens_q.device_ptr(stream);
    let (ck_ptr, _ck) = cu_seqlens_k.device_ptr(stream);
    let (out_ptr, _out) = out.device_ptr_mut(stream);
    let lse_guard = lse.map(|lse| lse.device_ptr_mut(stream));
    let args = att::Args {
        q: q_ptr,
        k: k_ptr,
        v: v_ptr,
        cu_seqlens_q: cq_ptr,
        cu_seqlens_k: ck_ptr,
        out: out_ptr,
        lse: lse_guard.as_ref().map_or(0, |(ptr, _)| *ptr),
        batch: cu_seqlens_q.len() - 1,
        total_q,
        heads_q,
        heads_kv,
        head_dim,
        max_seqlen_q,
        scale: params.scale(head_dim) as f32,
        params,
    };
    att::launch(kernels, stream, OP, entry, &args)
}

/// Head counts and cache geometry of a [`paged_attention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagedShape {
    pub heads_q: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
    pub block_size: usize,
    /// The longest context (sizes the split-context grid).
    pub max_context_len: usize,
}

/// One decode step against a paged KV cache (see
/// [`crate::ops::paged_attention`]): q/out `[B, Hq, D]`, caches
/// `[num_blocks, block_size, Hkv, D]`, `block_tables` `[B, max_blocks]`,
/// `context_lens` `[B]`.
///
/// # Safety
///
/// The kernels trust the device-side lengths: every `context_lens[b]` must
/// lie in `0..=min(shape.max_context_len, max_blocks·block_size)`.
/// (Table entries outside `0..num_blocks` are skipped, not read.)
#[allow(clippy::too_many_arguments)] // mirrors the op's documented argument list
pub unsafe fn paged_attention<T: CudaFloat>(
    kernels: &Kernels,
    stream: &Arc<CudaStream>,
    q: &CudaView<'_, T>,
    k_cache: &CudaView<'_, T>,
    v_cache: &CudaView<'_, T>,
    block_tables: &CudaView<'_, i32>,
    context_lens: &CudaView<'_, i32>,
    out: &mut CudaViewMut<'_, T>,
    shape: PagedShape,
    params: AttentionParams,
) -> Result<()> {
    const OP: &str = "paged_attention";
    check_stream(OP, kernels, stream)?;
    params.check(OP)?;
    let PagedShape {
        heads_q,
        heads_kv,
        head_dim,
        block_size,
        max_context_len,
    } = shape;
    crate::ops::attention::check_qkv_heads(OP, "k_cache", heads_q, heads_kv, head_dim, head_dim)?;
    if block_size == 0 {
        return Err(Error::invalid(OP, "k_cache", "block_size is 0"));
    }
    let batch = context_lens.len();
    check_len(OP, "q", q.len(), product(&[batch, heads_q, head_dim]))?;
    check_len(OP, "out", out.len(), Some(q.len()))?;
    let block_elems = product(&[block_size, heads_kv, head_dim])
        .ok_or_else(|| Error::invalid(OP, "k_cache", "block_size·Hkv·D overflows usize"))?;
    if k_cache.len() % block_elems != 0 {
        return Err(Error::invalid(
            OP,
            "k_cache",
            format!(
                "{} elements are not whole blocks of {block_elems}",
                k_cache.len()
            ),
        ));
    }
    check_len(OP, "v_cache", v_cache.len(), Some(k_cache.len()))?;
    let max_blocks = block_tables.len().checked_div(batch).unwrap_or(0);
    check_len(
        OP,
        "block_tables",
        block_tables.len(),
        product(&[batch, max_blocks]),
    )?;
    let query = OpQuery {
        head_dim: Some(head_dim),
        ..OpQuery::new(OpKind::PagedAttention, T::DTYPE)
    };
    let plan = plan(kernels, query)?;
    let (q_ptr, _q) = q.device_ptr(stream);
    let (kc_ptr, _kc) = k_cache.device_ptr(stream);
    let (vc_ptr, _vc) = v_cache.device_ptr(stream);
    let (bt_ptr, _bt) = block_tables.device_ptr(stream);
    let (cl_ptr, _cl) = context_lens.device_ptr(stream);
    let (out_ptr, _out) = out.device_ptr_mut(stream);
    let args = paged::Args {
        q: q_ptr,
        k_cache: kc_ptr,
        v_cache: vc_ptr,
        block_tables: bt_ptr,
        context_lens: cl_ptr,
        out: out_ptr,
        batch,
        heads_q,
        heads_kv,
        head_dim,
        num_blocks: k_cache.len() / block_elems,
        block_size,
        max_blocks,
        max_visible: max_context_len,
        scale: params.scale(head_dim) as f32,
        params,
    };
    paged::launch(kernels, stream, OP, plan, &args)
}

/// Sizes of a [`gptq_matmul`] (see [`crate::ops::gptq_matmul`] and
/// QUANT_FORMATS.md): x `[m, k]`, qweight i32 `[k/pf, n]`, qzeros i32
/// `[groups, n/pf]` holding z itself (v2), scales `[groups, n]`, g_idx i32
/// `[k]`, pf = 32 / bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptqShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// 4 or 8.
    pub bits: u32,
    pub groups: usize,
}

/// `out = x · dequant(W)ᵀ (+ bias)` against a GPTQ weight. Group indices
/// are clamped on the device, so any g_idx content is memory-safe.
#[allow(clippy::too_many_arguments)] // mirrors the op's documented argument list
pub fn gptq_matmul<T: CudaFloat, S: CudaFloat>(
    kernels: &Kernels,
    stream: &Arc<CudaStream>,
    x: &CudaView<'_, T>,
    qweight: &CudaView<'_, i32>,
    qzeros: &CudaView<'_, i32>,
    scales: &CudaView<'_, S>,
    g_idx: &CudaView<'_, i32>,
    bias: Option<&CudaView<'_, T>>,
    out: &mut CudaViewMut<'_, T>,
    shape: GptqShape,
) -> Result<()> {
    const OP: &str = "gptq_matmul";
    check_stream(OP, kernels, stream)?;
    let GptqShape {
        m,
        n,
        k,
        bits,
        groups,
    } = shape;
    if !matches!(bits, 4 | 8) {
        return Err(Error::invalid(
            OP,
            "bits",
            format!("must be 4 or 8, got {bits}"),
        ));
    }
    let pf = (32 / bits) as usize;
    if k % pf != 0 || n % pf != 0 || groups == 0 {
        return Err(Error::invalid(
            OP,
            "qweight",
            format!("K = {k} and N = {n} must be multiples of {pf}, with at least one group"),
        ));
    }
    check_len(OP, "x", x.len(), product(&[m, k]))?;
    check_len(OP, "qweight", qweight.len(), product(&[k / pf, n]))?;
    check_len(OP, "qzeros", qzeros.len(), product(&[groups, n / pf]))?;
    check_len(OP, "scales", scales.len(), product(&[groups, n]))?;
    check_len(OP, "g_idx", g_idx.len(), Some(k))?;
    check_len(OP, "out", out.len(), product(&[m, n]))?;
    if let Some(bias) = bias {
        check_len(OP, "bias", bias.len(), Some(n))?;
    }
    let query = OpQuery {
        bits: Some(bits),
        ..OpQuery::new(OpKind::GptqMatmul, T::DTYPE)
    };
    let Plan::GptqMatmul(entry) = plan(kernels, query)? else {
        return Err(super::plan_mismatch(kernels.device_name(), OP));
    };
    let (x_ptr, _x) = x.device_ptr(stream);
    let (qw_ptr, _qw) = qweight.device_ptr(stream);
    let (qz_ptr, _qz) = qzeros.device_ptr(stream);
    let (s_ptr, _s) = scales.device_ptr(stream);
    let (g_ptr, _g) = g_idx.device_ptr(stream);
    let bias_guard = bias.map(|bias| bias.device_ptr(stream));
    let (out_ptr, _out) = out.device_ptr_mut(stream);
    let args = gptq::Args {
        x: x_ptr,
        qweight: qw_ptr,
        qzeros: qz_ptr,
        scales: s_ptr,
        g_idx: g_ptr,
        bias: bias_guard.as_ref().map_or(0, |(ptr, _)| *ptr),
        out: out_ptr,
        m,
        n,
        k,
        bits,
        groups,
        scale_dtype: S::DTYPE,
    };
    gptq::launch(kernels, stream, OP, entry, &args)
}

/// Sizes of an [`awq_matmul`] (AutoAWQ "gemm" layout): x `[m, k]`,
/// qweight i32 `[k, n/8]`, qzeros i32 `[groups, n/8]`, scales
/// `[groups, n]`; group size k / groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwqShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub groups: usize,
}

/// `out = x · dequant(W)ᵀ (+ bias)` against an AWQ weight.
#[allow(clippy::too_many_arguments)] // mirrors the op's documented argument list
pub fn awq_matmul<T: CudaFloat, S: CudaFloat>(
    kernels: &Kernels,
    stream: &Arc<CudaStream>,
    x: &CudaView<'_, T>,
    qweight: &CudaView<'_, i32>,
    qzeros: &CudaView<'_, i32>,
    scales: &CudaView<'_, S>,
    bias: Option<&CudaView<'_, T>>,
    out: &mut CudaViewMut<'_, T>,
    shape: AwqShape,
) -> Result<()> {
    const OP: &str = "awq_matmul";
    check_stream(OP, kernels, stream)?;
    let AwqShape { m, n, k, groups } = shape;
    if groups == 0 || k % groups != 0 || n % 8 != 0 {
        return Err(Error::invalid(
            OP,
            "qweight",
            format!("K = {k} must split into {groups} whole groups and N = {n} be a multiple of 8"),
        ));
    }
    check_len(OP, "x", x.len(), product(&[m, k]))?;
    check_len(OP, "qweight", qweight.len(), product(&[k, n / 8]))?;
    check_len(OP, "qzeros", qzeros.len(), product(&[groups, n / 8]))?;
    check_len(OP, "scales", scales.len(), product(&[groups, n]))?;
    check_len(OP, "out", out.len(), product(&[m, n]))?;
    if let Some(bias) = bias {
        check_len(OP, "bias", bias.len(), Some(n))?;
    }
    let query = OpQuery {
        bits: Some(4),
        ..OpQuery::new(OpKind::AwqMatmul, T::DTYPE)
    };
    let Plan::AwqMatmul(entry) = plan(kernels, query)? else {
        return Err(super::plan_mismatch(kernels.device_name(), OP));
    };
    let (x_ptr, _x) = x.device_ptr(stream);
    let (qw_ptr, _qw) = qweight.device_ptr(stream);
    let (qz_ptr, _qz) = qzeros.device_ptr(stream);
    let (s_ptr, _s) = scales.device_ptr(stream);
    let bias_guard = bias.map(|bias| bias.device_ptr(stream));
    let (out_ptr, _out) = out.device_ptr_mut(stream);
    let args = awq::Args {
        x: x_ptr,
        qweight: qw_ptr,
        qzeros: qz_ptr,
        scales: s_ptr,
        bias: bias_guard.as_ref().map_or(0, |(ptr, _)| *ptr),
        out: out_ptr,
        m,
        n,
        k,
        groups,
        scale_dtype: S::DTYPE,
    };
    awq::launch(kernels, stream, OP, entry, &args)
}

/// Sizes of an [`nvfp4_matmul`]: x `[m, k]`, packed u8 `[n, kp/2]`, block
/// scales (E4M3 bytes) `[n, kp/16]`, kp = k rounded up to 16.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nvfp4Shape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub global_scale: GlobalScale,
}

/// `out = x · dequant(W)ᵀ (+ bias)` against an NVFP4 weight.
#[allow(clippy::too_many_arguments)] // mirrors the op's documented argument list
pub fn nvfp4_matmul<T: CudaFloat>(
    kernels: &Kernels,
    stream: &Arc<CudaStream>,
    x: &CudaView<'_, T>,
    packed: &CudaView<'_, u8>,
    scales: &CudaView<'_, u8>,
    bias: Option<&CudaView<'_, T>>,
    out: &mut CudaViewMut<'_, T>,
    shape: Nvfp4Shape,
) -> Result<()> {
    const OP: &str = "nvfp4_matmul";
    check_stream(OP, kernels, stream)?;
    let Nvfp4Shape {
        m,
        n,
        k,
        global_scale,
    } = shape;
    let g = global_scale.value();
    if !g.is_finite() || g <= 0.0 {
        return Err(Error::invalid(
            OP,
            "global_scale",
            format!("must be finite and > 0, got {g}"),
        ));
    }
    let k_padded = k.div_ceil(16) * 16;
    check_len(OP, "x", x.len(), product(&[m, k]))?;
    check_len(
        OP,
        "weight_packed",
        packed.len(),
        product(&[n, k_padded / 2]),
    )?;
    check_len(
        OP,
        "weight_scale",
        scales.len(),
        product(&[n, k_padded / 16]),
    )?;
    check_len(OP, "out", out.len(), product(&[m, n]))?;
    if let Some(bias) = bias {
        check_len(OP, "bias", bias.len(), Some(n))?;
    }
    let Plan::Nvfp4Matmul(entry) = plan(kernels, OpQuery::new(OpKind::Nvfp4Matmul, T::DTYPE))?
    else {
        return Err(super::plan_mismatch(kernels.device_name(), OP));
    };
    let (x_ptr, _x) = x.device_ptr(stream);
    let (p_ptr, _p) = packed.device_ptr(stream);
    let (s_ptr, _s) = scales.device_ptr(stream);
    let bias_guard = bias.map(|bias| bias.device_ptr(stream));
    let (out_ptr, _out) = out.device_ptr_mut(stream);
    let args = nvfp4::Args {
        x: x_ptr,
        packed: p_ptr,
        scales: s_ptr,
        bias: bias_guard.as_ref().map_or(0, |(ptr, _)| *ptr),
        out: out_ptr,
        m,
        n,
        k,
        k_padded,
        global_scale,
    };
    nvfp4::launch(kernels, stream, OP, entry, &args)
}
