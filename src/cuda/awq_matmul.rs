//! awq_matmul on CUDA: `kernels/cuda/awq_matmul.cu`, dequantization fused
//! into a 32×64-tiled f32-accumulating GEMM (`quant_matmul.cuh`).

use cudarc::driver::{CudaStream, LaunchConfig, PushKernelArg};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::AwqMatmulProblem;

use super::backend::{CudaBackend, Plan};
use super::gptq_matmul::{grid_for, scale_code};
use super::kernels::{Entry, Kernels};
use super::{dim_i32, driver_error, plan_mismatch};

const OP: &str = "awq_matmul";

/// Device addresses and sizes of one awq_matmul launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args {
    pub x: u64,
    pub qweight: u64,
    pub qzeros: u64,
    pub scales: u64,
    /// 0: no bias.
    pub bias: u64,
    pub out: u64,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub groups: usize,
    pub scale_dtype: DType,
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
    if args.groups == 0 || !args.k.is_multiple_of(args.groups) || !args.n.is_multiple_of(8) {
        return Err(Error::invalid(
            op,
            "weight",
            format!(
                "K = {} in {} groups, N = {} (AWQ needs whole groups and N % 8 == 0)",
                args.k, args.groups, args.n
            ),
        ));
    }
    let (m, n, k) = (args.m as i64, args.n as i64, args.k as i64);
    let group_size = dim_i32(op, "weight", args.k / args.groups)?;
    let groups = dim_i32(op, "weight", args.groups)?;
    let scale_dtype = scale_code(op, args.scale_dtype)?;
    let function = kernels.function(op, entry)?;
    let config = LaunchConfig {
        grid_dim: (grid_for(args.m, args.n), 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut builder = stream.launch_builder(&function);
    builder
        .arg(&args.x)
        .arg(&args.qweight)
        .arg(&args.qzeros)
        .arg(&args.scales)
        .arg(&args.bias)
        .arg(&args.out)
        .arg(&m)
        .arg(&n)
        .arg(&k)
        .arg(&group_size)
        .arg(&groups)
        .arg(&scale_dtype);
    // SAFETY: the arguments match the kernel's signature (six pointers,
    // three i64, three int); x/out address M·K / M·N elements, qweight K·N/8
    // and qzeros G·N/8 words, scales G·N, bias N (checked when the weight
    // was built and by the caller).
    unsafe { builder.launch(config) }.map_err(|e| driver_error(kernels.device_name(), op, e))?;
    Ok(())
}

pub(crate) fn run(backend: &CudaBackend, problem: &AwqMatmulProblem<'_>) -> Result<()> {
    let Plan::AwqMatmul(entry) = backend.plan(&problem.query())? else {
        return Err(plan_mismatch(backend.kernels().device_name(), OP));
    };
    let w = problem.weight;
    let args = Args {
        x: backend.ptr(OP, "x", problem.x)?,
        qweight: backend.ptr(OP, "qweight", w.qweight())?,
        qzeros: backend.ptr(OP, "qzeros", w.qzeros())?,
        scales: backend.ptr(OP, "scales", w.scales())?,
        bias: match problem.bias {
            Some(bias) => backend.ptr(OP, "bias", bias)?,
            None => 0,
        },
        out: backend.ptr(OP, "out", problem.out)?,
        m: problem.m,
        n: problem.n,
        k: problem.k,
        groups: w.groups(),
        scale_dtype: w.scales().dtype(),
    };
    launch(backend.kernels(), backend.stream(), OP, entry, &args)
}
