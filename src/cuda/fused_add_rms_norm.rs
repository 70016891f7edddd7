//! fused_add_rms_norm on CUDA: `kernels/cuda/fused_add_rms_norm.cu`, one
//! block per row (the same split as rms_norm).

use cudarc::driver::{CudaStream, LaunchConfig, PushKernelArg};

use crate::error::Result;
use crate::ops::FusedAddRmsNormProblem;

use super::backend::{CudaBackend, Plan};
use super::kernels::{Entry, Kernels};
use super::rms_norm::threads_for;
use super::{dim_i32, driver_error, grid_x, plan_mismatch};

const OP: &str = "fused_add_rms_norm";

/// Device addresses and sizes of one fused_add_rms_norm launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args {
    pub x: u64,
    pub residual: u64,
    pub weight: u64,
    pub out: u64,
    pub rows: usize,
    pub hidden: usize,
    pub eps: f32,
    pub weight_offset: f32,
}

/// Queues the kernel on `stream`. Zero rows launch nothing.
pub(crate) fn launch(
    kernels: &Kernels,
    stream: &CudaStream,
    op: &'static str,
    entry: Entry,
    args: &Args,
) -> Result<()> {
    if args.rows == 0 || args.hidden == 0 {
        return Ok(());
    }
    let hidden = dim_i32(op, "x", args.hidden)?;
    let rows = args.rows as i64;
    let function = kernels.function(op, entry)?;
    let config = LaunchConfig {
        grid_dim: (grid_x(args.rows), 1, 1),
        block_dim: (threads_for(args.hidden), 1, 1),
        shared_mem_bytes: 0,
    };
    let mut builder = stream.launch_builder(&function);
    builder
        .arg(&args.x)
        .arg(&args.residual)
        .arg(&args.weight)
        .arg(&args.out)
        .arg(&rows)
        .arg(&hidden)
        .arg(&args.eps)
        .arg(&args.weight_offset);
    // SAFETY: the arguments match the kernel's signature (four pointers,
    // i64 rows, int hidden, two floats); x, residual and out address
    // `rows * hidden` elements and weight `hidden`, checked by the caller.
    unsafe { builder.launch(config) }.map_err(|e| driver_error(kernels.device_name(), op, e))?;
    Ok(())
}

pub(crate) fn run(backend: &CudaBackend, problem: &FusedAddRmsNormProblem<'_>) -> Result<()> {
    let Plan::FusedAddRmsNorm(entry) = backend.plan(&problem.query())? else {
        return Err(plan_mismatch(backend.kernels().device_name(), OP));
    };
    let args = Args {
        x: backend.ptr(OP, "x", problem.x)?,
        residual: backend.ptr(OP, "residual", problem.residual)?,
        weight: backend.ptr(OP, "weight", problem.weight)?,
        out: backend.ptr(OP, "out", problem.out)?,
        rows: problem.rows,
        hidden: problem.hidden,
        eps: problem.params.eps as f32,
        weight_offset: problem.params.weight_offset as f32,
    };
    launch(backend.kernels(), backend.stream(), OP, entry, &args)
}
