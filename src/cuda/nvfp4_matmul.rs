//! nvfp4_matmul on CUDA: `kernels/cuda/nvfp4_matmul.cu`, dequantization
//! fused into a 32×64-tiled f32-accumulating GEMM (`quant_matmul.cuh`). No
//! FP4 tensor cores: every arch dequantizes in registers.

use cudarc::driver::{CudaStream, LaunchConfig, PushKernelArg};

use crate::error::{Error, Result};
use crate::ops::Nvfp4MatmulProblem;
use crate::quant::GlobalScale;

use super::backend::{CudaBackend, Plan};
use super::gptq_matmul::grid_for;
use super::kernels::{Entry, Kernels};
use super::{driver_error, plan_mismatch};

const OP: &str = "nvfp4_matmul";

/// Device addresses and sizes of one nvfp4_matmul launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args {
    pub x: u64,
    pub packed: u64,
    pub scales: u64,
    /// 0: no bias.
    pub bias: u64,
    pub out: u64,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// K rounded up to 16 (the storage width of a row).
    pub k_padded: usize,
    pub global_scale: GlobalScale,
}

/// Queues the kernel on `stream`. An empty output launches nothing.
pub(crate) fn launch(
    kernels: &Kernels,
    stream: &CudaStream,
    op: &'static str,
    entry: Entry,
    args: &Args,
) -> Result<()> {
    if args.m == 0 || args.n == 0 {
        return Ok(());
    }
    if !args.k_padded.is_multiple_of(16) || args.k_padded < args.k {
        return Err(Error::invalid(
            op,
            "weight",
            format!(
                "padded K {} is not K = {} rounded up to 16",
                args.k_padded, args.k
            ),
        ));
    }
    let (m, n, k, k_padded) = (
        args.m as i64,
        args.n as i64,
        args.k as i64,
        args.k_padded as i64,
    );
    let (global, divisor) = match args.global_scale {
        GlobalScale::Multiplier(g) => (g, 0i32),
        GlobalScale::Divisor(d) => (d, 1i32),
    };
    let function = kernels.function(op, entry)?;
    let config = LaunchConfig {
        grid_dim: (grid_for(args.m, args.n), 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut builder = stream.launch_builder(&function);
    builder
        .arg(&args.x)
        .arg(&args.packed)
        .arg(&args.scales)
        .arg(&args.bias)
        .arg(&args.out)
        .arg(&m)
        .arg(&n)
        .arg(&k)
        .arg(&k_padded)
        .arg(&global)
        .arg(&divisor);
    // SAFETY: the arguments match the kernel's signature (five pointers,
    // four i64, a float, an int); x/out address M·K / M·N elements, packed
    // N·Kp/2 and scales N·Kp/16 bytes, bias N (checked when the weight was
    // built and by the caller).
    unsafe { builder.launch(config) }.map_err(|e| driver_error(kernels.device_name(), op, e))?;
    Ok(())
}

pub(crate) fn run(backend: &CudaBackend, problem: &Nvfp4MatmulProblem<'_>) -> Result<()> {
    let Plan::Nvfp4Matmul(entry) = backend.plan(&problem.query())? else {
        return Err(plan_mismatch(backend.kernels().device_name(), OP));
    };
    let w = problem.weight;
    let args = Args {
        x: backend.ptr(OP, "x", problem.x)?,
        packed: backend.ptr(OP, "weight_packed", w.weight_packed())?,
        scales: backend.ptr(OP, "weight_scale", w.weight_scale())?,
        bias: match problem.bias {
            Some(bias) => backend.ptr(OP, "bias", bias)?,
            None => 0,
        },
        out: backend.ptr(OP, "out", problem.out)?,
        m: problem.m,
        n: problem.n,
        k: problem.k,
        k_padded: w.k_padded(),
        global_scale: w.global_scale(),
    };
    launch(backend.kernels(), backend.stream(), OP, entry, &args)
}
