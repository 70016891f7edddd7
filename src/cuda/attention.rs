//! attention on CUDA: `kernels/cuda/attention.cu`, flash style (online
//! softmax over key tiles in shared memory), one block per (query tile,
//! head, sequence).

use cudarc::driver::{CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};

use crate::error::Result;
use crate::ops::{AttentionParams as OpParams, AttentionProblem};

use super::backend::{CudaBackend, Plan};
use super::kernels::{Entry, Kernels};
use super::{dim_i32, driver_error, grid_x, grid_yz, plan_mismatch};

const OP: &str = "attention";
/// Warps per block (attention.cu's 4-warp split).
const WARPS: u32 = 4;
/// Threads per warp on NVIDIA GPUs (`kWarp` of common.cuh).
pub(crate) const WARP: u32 = 32;

/// `struct AttentionParams` of attention.cu, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct KernelParams {
    q: u64,
    k: u64,
    v: u64,
    out: u64,
    lse: u64,
    cu_seqlens_q: u64,
    cu_seqlens_k: u64,
    batch: i64,
    total_q: i64,
    heads_q: i32,
    heads_kv: i32,
    head_dim: i32,
    q_tile: i32,
    kv_tile: i32,
    window_left: i32,
    window_right: i32,
    scale: f32,
    softcap: f32,
    pad: i32,
}
const _: () = assert!(std::mem::size_of::<KernelParams>() == 112);

// SAFETY: a plain #[repr(C)] struct of integers and floats whose layout
// matches the kernel's parameter struct (sizes asserted on both sides).
unsafe impl DeviceRepr for KernelParams {}

/// Device addresses and sizes of one attention launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args {
    pub q: u64,
    pub k: u64,
    pub v: u64,
    pub cu_seqlens_q: u64,
    pub cu_seqlens_k: u64,
    pub out: u64,
    /// 0: no lse output.
    pub lse: u64,
    pub batch: usize,
    pub total_q: usize,
    pub heads_q: usize,
    pub heads_kv: usize,
    pub head_dim: usize,
    pub max_seqlen_q: usize,
    pub scale: f32,
    pub params: OpParams,
}

/// A window bound for the kernel: −1 (unbounded) stays; bounds past
/// `i32::MAX` reach every key of any sequence (lengths are < 2^31), so they
/// are unbounded too.
pub(crate) fn window_i32(bound: i64) -> i32 {
    if bound < 0 || bound >= i64::from(i32::MAX) {
        -1
    } else {
        bound as i32
    }
}

/// (query rows per block, keys per tile) for `head_dim`: keeps dynamic
/// shared memory `(q_tile·D + kv_tile·(2D+1))·4` bytes under 48 KiB.
pub(crate) fn tiles_for(head_dim: usize) -> (u32, u32) {
    if head_dim <= 128 { (16, 32) } else { (8, 16) }
}

/// Dynamic shared memory of one block.
pub(crate) fn shared_bytes(head_dim: usize) -> u32 {
    let (q_tile, kv_tile) = tiles_for(head_dim);
    let d = head_dim as u32;
    (q_tile * d + kv_tile * (2 * d + 1)) * 4
}

/// Queues the kernel on `stream`. No query row launches nothing.
pub(crate) fn launch(
    kernels: &Kernels,
    stream: &CudaStream,
    op: &'static str,
    entry: Entry,
    args: &Args,
) -> Result<()> {
    if args.batch == 0 || args.total_q == 0 || args.max_seqlen_q == 0 {
        return Ok(());
    }
    let (q_tile, kv_tile) = tiles_for(args.head_dim);
    let (left, right) = args.params.effective_window();
    let params = KernelParams {
        q: args.q,
        k: args.k,
        v: args.v,
        out: args.out,
        lse: args.lse,
        cu_seqlens_q: args.cu_seqlens_q,
        cu_seqlens_k: args.cu_seqlens_k,
        batch: args.batch as i64,
        total_q: args.total_q as i64,
        heads_q: dim_i32(op, "q", args.heads_q)?,
        heads_kv: dim_i32(op, "k", args.heads_kv)?,
        head_dim: dim_i32(op, "q", args.head_dim)?,
        q_tile: q_tile as i32,
        kv_tile: kv_tile as i32,
        window_left: window_i32(left),
        window_right: window_i32(right),
        scale: args.scale,
        softcap: args.params.softcap as f32,
        pad: 0,
    };
    let function = kernels.function(op, entry)?;
    let config = LaunchConfig {
        grid_dim: (
            grid_x(args.max_seqlen_q.div_ceil(q_tile as usize)),
            grid_yz(args.heads_q),
            grid_yz(args.batch),
        ),
        block_dim: (WARPS * WARP, 1, 1),
        shared_mem_bytes: shared_bytes(args.head_dim),
    };
    let mut builder = stream.launch_builder(&function);
    builder.arg(&params);
    // SAFETY: the kernel takes one AttentionParams by value (layout checked);
    // q/out address total_q·Hq·D elements, k/v the cu_seqlens_k total, lse
    // Hq·total_q floats, the cu_seqlens batch+1 ints (checked by the
    // caller); head_dim ≤ 256 was checked by `select`.
    unsafe { builder.launch(config) }.map_err(|e| driver_error(kernels.device_name(), op, e))?;
    Ok(())
}

pub(crate) fn run(backend: &CudaBackend, problem: &AttentionProblem<'_>) -> Result<()> {
    let Plan::Attention(entry) = backend.plan(&problem.query())? else {
        return Err(plan_mismatch(backend.kernels().device_name(), OP));
    };
    let args = Args {
        q: backend.ptr(OP, "q", problem.q)?,
        k: backend.ptr(OP, "k", problem.k)?,
        v: backend.ptr(OP, "v", problem.v)?,
        cu_seqlens_q: backend.ptr(OP, "cu_seqlens_q", problem.cu_seqlens_q)?,
        cu_seqlens_k: backend.ptr(OP, "cu_seqlens_k", problem.cu_seqlens_k)?,
        out: backend.ptr(OP, "out", problem.out)?,
        lse: match problem.lse {
            Some(lse) => backend.ptr(OP, "lse", lse)?,
            None => 0,
        },
        batch: problem.batch,
        total_q: problem.total_q,
        heads_q: problem.heads_q,
        heads_kv: problem.heads_kv,
        head_dim: problem.head_dim,
        max_seqlen_q: problem.max_seqlen_q,
        scale: problem.scale as f32,
        params: problem.params,
    };
    launch(backend.kernels(), backend.stream(), OP, entry, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_memory_fits_48k_up_to_the_max_head_dim() {
        for d in 1..=super::super::backend::MAX_HEAD_DIM {
            assert!(
                shared_bytes(d) <= 48 * 1024,
                "head_dim {d}: {}",
                shared_bytes(d)
            );
            let (q_tile, kv_tile) = tiles_for(d);
            assert!(q_tile / WARPS <= 4 && kv_tile <= WARP);
        }
    }

    #[test]
    fn windows_map_to_i32() {
        assert_eq!(window_i32(-1), -1);
        assert_eq!(window_i32(0), 0);
        assert_eq!(window_i32(4096), 4096);
        assert_eq!(window_i32(i64::from(i32::MAX)), -1);
        assert_eq!(window_i32(i64::MAX), -1);
    }
}
