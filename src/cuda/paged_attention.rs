//! paged_attention on CUDA: `kernels/cuda/paged_attention.cu`. The visible
//! context of each sequence is split into partitions of 512 tokens, one
//! block per (partition, head, sequence); with more than one partition a
//! second kernel merges the partial softmax states from an f32 workspace
//! allocated on the stream (stream-ordered, freed after the merge).

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

use crate::error::{Error, Result};
use crate::ops::{AttentionParams as OpParams, PagedAttentionProblem};

use super::attention::{WARP, window_i32};
use super::backend::{CudaBackend, Plan};
use super::kernels::Kernels;
use super::{alloc_error, dim_i32, driver_error, grid_x, grid_yz, plan_mismatch};

const OP: &str = "paged_attention";
/// Tokens per partition (one block each).
pub(crate) const PARTITION: usize = 512;
/// Warps per block (`kWarps` of paged_attention.cu).
const WARPS: u32 = 4;

/// `struct PagedParams` of paged_attention.cu, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct KernelParams {
    q: u64,
    k_cache: u64,
    v_cache: u64,
    out: u64,
    block_tables: u64,
    context_lens: u64,
    partials: u64,
    batch: i64,
    heads_q: i32,
    heads_kv: i32,
    head_dim: i32,
    block_size: i32,
    max_blocks: i32,
    num_blocks: i32,
    partitions: i32,
    partition_size: i32,
    window_left: i32,
    window_right: i32,
    scale: f32,
    softcap: f32,
}
const _: () = assert!(std::mem::size_of::<KernelParams>() == 112);

// SAFETY: a plain #[repr(C)] struct of integers and floats whose layout
// matches the kernel's parameter struct (sizes asserted on both sides).
unsafe impl DeviceRepr for KernelParams {}

/// Device addresses and sizes of one paged attention launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args {
    pub q: u64,
    pub k_cache: u64,
    pub v_cache: u64,
    pub block_tables: u64,
    pub context_lens: u64,
    pub out: u64,
    pub batch: usize,
    pub heads_q: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub max_blocks: usize,
    /// An upper bound on any sequence's visible tokens (sizes the grid).
    pub max_visible: usize,
    pub scale: f32,
    pub params: OpParams,
}

/// Partitions for `max_visible` tokens (at least one).
pub(crate) fn partitions_for(max_visible: usize) -> usize {
    max_visible.div_ceil(PARTITION).max(1)
}

/// Queues the kernel(s) on `stream`. An empty batch launches nothing.
pub(crate) fn launch(
    kernels: &Kernels,
    stream: &Arc<CudaStream>,
    op: &'static str,
    plan: Plan,
    args: &Args,
) -> Result<()> {
    let Plan::PagedAttention { main, reduce } = plan else {
        return Err(plan_mismatch(kernels.device_name(), op));
    };
    if args.batch == 0 || args.heads_q == 0 {
        return Ok(());
    }
    let partitions = partitions_for(args.max_visible);
    let (left, right) = args.params.effective_window();
    let workspace = if partitions > 1 {
        let floats = args
            .batch
            .checked_mul(args.heads_q)
            .and_then(|n| n.checked_mul(partitions))
            .and_then(|n| n.checked_mul(args.head_dim + 2))
            .ok_or_else(|| {
                Error::invalid(
                    op,
                    "context_lens",
                    "the split-context workspace overflows usize",
                )
            })?;
        // SAFETY: every slot the merge reads is written by the first kernel
        // (each block writes its slot, even an empty one).
        let slice = unsafe { stream.alloc::<f32>(floats) }
            .map_err(|e| alloc_error(kernels.device_name(), floats * 4, e))?;
        Some(slice)
    } else {
        None
    };
    let partials = match &workspace {
        Some(slice) => slice.device_ptr(stream).0,
        None => 0,
    };
    let params = KernelParams {
        q: args.q,
        k_cache: args.k_cache,
        v_cache: args.v_cache,
        out: args.out,
        block_tables: args.block_tables,
        context_lens: args.context_lens,
        partials,
        batch: args.batch as i64,
        heads_q: dim_i32(op, "q", args.heads_q)?,
        heads_kv: dim_i32(op, "k_cache", args.heads_kv)?,
        head_dim: dim_i32(op, "q", args.head_dim)?,
        block_size: dim_i32(op, "k_cache", args.block_size)?,
        max_blocks: dim_i32(op, "block_tables", args.max_blocks)?,
        num_blocks: dim_i32(op, "k_cache", args.num_blocks)?,
        partitions: dim_i32(op, "context_lens", partitions)?,
        partition_size: PARTITION as i32,
        window_left: window_i32(left),
        window_right: window_i32(right),
        scale: args.scale,
        softcap: args.params.softcap as f32,
    };
    let error = |e| driver_error(kernels.device_name(), op, e);
    let function = kernels.function(op, main)?;
    let config = LaunchConfig {
        grid_dim: (
            grid_x(partitions),
            grid_yz(args.heads_q),
            grid_yz(args.batch),
        ),
        block_dim: (WARPS * WARP, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut builder = stream.launch_builder(&function);
    builder.arg(&params);
    // SAFETY: the kernel takes one PagedParams by value (layout checked);
    // q/out address B·Hq·D elements, the caches num_blocks·block_size·Hkv·D,
    // the table B·max_blocks and context_lens B ints (checked by the
    // caller), the workspace B·Hq·partitions·(D+2) floats; head_dim ≤ 256
    // was checked by `select`.
    unsafe { builder.launch(config) }.map_err(error)?;
    if partitions > 1 {
        let function = kernels.function(op, reduce)?;
        let config = LaunchConfig {
            grid_dim: (grid_yz(args.heads_q), grid_yz(args.batch), 1),
            block_dim: (WARPS * WARP, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut builder = stream.launch_builder(&function);
        builder.arg(&params);
        // SAFETY: as above; the merge reads the workspace the first kernel
        // wrote earlier on the same stream.
        unsafe { builder.launch(config) }.map_err(error)?;
    }
    // The workspace is freed here, stream-ordered after the merge.
    drop(workspace);
    Ok(())
}

pub(crate) fn run(backend: &CudaBackend, problem: &PagedAttentionProblem<'_>) -> Result<()> {
    let plan = backend.plan(&problem.query())?;
    let max_visible = problem
        .host_context_lens
        .iter()
        .map(|&len| {
            let (lo, hi) = problem.params.visible_keys(len as i64 - 1, len);
            hi.saturating_sub(lo)
        })
        .max()
        .unwrap_or(0);
    let args = Args {
        q: backend.ptr(OP, "q", problem.q)?,
        k_cache: backend.ptr(OP, "k_cache", problem.k_cache)?,
        v_cache: backend.ptr(OP, "v_cache", problem.v_cache)?,
        block_tables: backend.ptr(OP, "block_tables", problem.block_tables)?,
        context_lens: backend.ptr(OP, "context_lens", problem.context_lens)?,
        out: backend.ptr(OP, "out", problem.out)?,
        batch: problem.batch,
        heads_q: problem.heads_q,
        heads_kv: problem.heads_kv,
        head_dim: problem.head_dim,
        num_blocks: problem.num_blocks,
        block_size: problem.block_size,
        max_blocks: problem.max_blocks,
        max_visible,
        scale: problem.scale as f32,
        params: problem.params,
    };
    launch(backend.kernels(), backend.stream(), OP, plan, &args)
}

#[cfg(test)]
mod tests {
    use super::partitions_for;

    #[test]
    fn partitions_cover_the_context() {
        assert_eq!(partitions_for(0), 1);
        assert_eq!(partitions_for(1), 1);
        assert_eq!(partitions_for(512), 1);
        assert_eq!(partitions_for(513), 2);
        assert_eq!(partitions_for(131_072), 256);
    }
}
