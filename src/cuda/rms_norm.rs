//! rms_norm on CUDA: `kernels/cuda/rms_norm.cu`, one block per row.

use cudarc::driver::{CudaStream, LaunchConfig, PushKernelArg};

use crate::error::Result;
use crate::ops::RmsNormProblem;

use super::backend::{CudaBackend, Plan};
use super::kernels::{Entry, Kernels};
use super::{dim_i32, driver_error, grid_x, plan_mismatch};

const OP: &str = "rms_norm";

/// Device addresses and sizes of one rms_norm launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args {
    pub x: u64,
    pub weight: u64,
    pub out: u64,
    pub rows: usize,
    pub hidden: usize,
    pub eps: f32,
    pub weight_offset: f32,
}

/// Threads per row: about 8 elements per thread (one 16-byte pack of
/// f16), a power of two between 64 and 1024 (a multiple of any warp).
pub(crate) fn threads_for(hidden: usize) -> u32 {
    hidden.div_ceil(8).next_power_of_two().clamp(64, 1024) as u32
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
        .arg(&args.weight)
        .arg(&args.out)
        .arg(&rows)
        .arg(&hidden)
        .arg(&args.eps)
        .arg(&args.weight_offset);
    // SAFETY: the arguments match the kernel's signature (three pointers,
    // i64 rows, int hidden, two floats); the pointers address `rows * hidden`
    // elements (x, out) and `hidden` elements (weight), checked by the caller.
    unsafe { builder.launch(config) }.map_err(|e| driver_error(kernels.device_name(), op, e))?;
    Ok(())
}

pub(crate) fn run(backend: &CudaBackend, problem: &RmsNormProblem<'_>) -> Result<()> {
    let Plan::RmsNorm(entry) = backend.plan(&problem.query())? else {
        return Err(plan_mismatch(backend.kernels().device_name(), OP));
    };
    let args = Args {
        x: backend.ptr(OP, "x", problem.x)?,
        weight: backend.ptr(OP, "weight", problem.weight)?,
        out: backend.ptr(OP, "out", problem.out)?,
        rows: problem.rows,
        hidden: problem.hidden,
        eps: problem.params.eps as f32,
        weight_offset: problem.params.weight_offset as f32,
    };
    launch(backend.kernels(), backend.stream(), OP, entry, &args)
}

#[cfg(test)]
mod tests {
    use super::threads_for;

    #[test]
    fn threads_are_warp_multiples() {
        for hidden in [1, 7, 64, 512, 4096, 5120, 8192, 1 << 20] {
            let t = threads_for(hidden);
            assert!(
                (64..=1024).contains(&t) && t.is_multiple_of(64),
                "{hidden}: {t}"
            );
        }
        assert_eq!(threads_for(4096), 512);
    }
}
