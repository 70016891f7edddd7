//! gptq_matmul on CUDA: `kernels/cuda/gptq_matmul.cu`, dequantization fused
//! into a 32×64-tiled f32-accumulating GEMM (`quant_matmul.cuh`).

use cudarc::driver::{CudaStream, LaunchConfig, PushKernelArg};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::GptqMatmulProblem;

use super::backend::{CudaBackend, Plan};
use super::kernels::{Entry, Kernels};
use super::{dim_i32, driver_error, grid_x, plan_mismatch};

const OP: &str = "gptq_matmul";
/// Tile of `quant_matmul.cuh`: rows of x × output columns.
pub(crate) const TILE_M: usize = 32;
pub(crate) const TILE_N: usize = 64;

/// The kernels' runtime code for a scale dtype (0 f32, 1 f16, 2 bf16).
pub(crate) fn scale_code(op: &'static str, dtype: DType) -> Result<i32> {
    match dtype {
        DType::F32 => Ok(0),
        DType::F16 => Ok(1),
        DType::BF16 => Ok(2),
        other => Err(Error::invalid(
            op,
            "scales",
            format!("must be f32, f16 or bf16, not {other}"),
        )),
    }
}

/// Blocks for an M×N quantized matmul.
pub(crate) fn grid_for(m: usize, n: usize) -> u32 {
    grid_x(m.div_ceil(TILE_M).saturating_mul(n.div_ceil(TILE_N)))
}

/// Device addresses and sizes of one gptq_matmul launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args {
    pub x: u64,
    pub qweight: u64,
    pub qzeros: u64,
    pub scales: u64,
    pub g_idx: u64,
    /// 0: no bias.
    pub bias: u64,
    pub out: u64,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub bits: u32,
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
    if !matches!(args.bits, 4 | 8) || args.groups == 0 {
        return Err(Error::invalid(
            op,
            "weight",
            format!("{} bits, {} groups", args.bits, args.groups),
        ));
    }
    let (m, n, k) = (args.m as i64, args.n as i64, args.k as i64);
    let bits = args.bits as i32;
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
        .arg(&args.g_idx)
        .arg(&args.bias)
        .arg(&args.out)
        .arg(&m)
        .arg(&n)
        .arg(&k)
        .arg(&bits)
        .arg(&groups)
        .arg(&scale_dtype);
    // SAFETY: the arguments match the kernel's signature (seven pointers,
    // three i64, three int); x/out address M·K / M·N elements, qweight
    // K/pf·N and qzeros G·N/pf words, scales G·N, g_idx K, bias N (checked
    // when the weight was built and by the caller); group indices are
    // clamped in the kernel.
    unsafe { builder.launch(config) }.map_err(|e| driver_error(kernels.device_name(), op, e))?;
    Ok(())
}

pub(crate) fn run(backend: &CudaBackend, problem: &GptqMatmulProblem<'_>) -> Result<()> {
    let Plan::GptqMatmul(entry) = backend.plan(&problem.query())? else {
        return Err(plan_mismatch(backend.kernels().device_name(), OP));
    };
    let w = problem.weight;
    let args = Args {
        x: backend.ptr(OP, "x", problem.x)?,
        qweight: backend.ptr(OP, "qweight", w.qweight())?,
        qzeros: backend.ptr(OP, "qzeros", w.qzeros())?,
        scales: backend.ptr(OP, "scales", w.scales())?,
        g_idx: backend.ptr(OP, "g_idx", w.g_idx())?,
        bias: match problem.bias {
            Some(bias) => backend.ptr(OP, "bias", bias)?,
            None => 0,
        },
        out: backend.ptr(OP, "out", problem.out)?,
        m: problem.m,
        n: problem.n,
        k: problem.k,
        bits: w.bits(),
        groups: w.groups(),
        scale_dtype: w.scales().dtype(),
    };
    launch(backend.kernels(), backend.stream(), OP, entry, &args)
}
