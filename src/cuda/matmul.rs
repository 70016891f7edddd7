//! matmul on CUDA: `kernels/cuda/matmul.cu`, 64×64 output tiles; tensor
//! cores (mma.sync m16n8k16) for f16 / bf16 on sm_80+, a SIMT kernel
//! otherwise. One launch covers every batch.

use cudarc::driver::{CudaStream, LaunchConfig, PushKernelArg};

use crate::error::Result;
use crate::ops::{BLayout, MatmulProblem};

use super::backend::{CudaBackend, Plan};
use super::kernels::{Entry, Kernels};
use super::{driver_error, grid_x, plan_mismatch};

const OP: &str = "matmul";
/// Output tile edge of both kernels (`BM` = `BN`).
const TILE: usize = 64;

/// Device addresses and sizes of one matmul launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args {
    pub a: u64,
    pub b: u64,
    /// 0: no bias.
    pub bias: u64,
    pub out: u64,
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub b_layout: BLayout,
    pub b_batched: bool,
}

/// Queues the kernel on `stream`. An empty output launches nothing; K = 0
/// still launches (the output is the bias, or zero).
pub(crate) fn launch(
    kernels: &Kernels,
    stream: &CudaStream,
    op: &'static str,
    plan: Plan,
    args: &Args,
) -> Result<()> {
    let Plan::Matmul {
        entry,
        tensor_cores,
    } = plan
    else {
        return Err(plan_mismatch(kernels.device_name(), op));
    };
    launch_entry(kernels, stream, op, entry, tensor_cores, args)
}

fn launch_entry(
    kernels: &Kernels,
    stream: &CudaStream,
    op: &'static str,
    entry: Entry,
    tensor_cores: bool,
    args: &Args,
) -> Result<()> {
    if args.batch == 0 || args.m == 0 || args.n == 0 {
        return Ok(());
    }
    let tiles = args
        .batch
        .saturating_mul(args.m.div_ceil(TILE))
        .saturating_mul(args.n.div_ceil(TILE));
    let function = kernels.function(op, entry)?;
    let config = LaunchConfig {
        grid_dim: (grid_x(tiles), 1, 1),
        block_dim: (if tensor_cores { 128 } else { 256 }, 1, 1),
        shared_mem_bytes: 0,
    };
    let (batch, m, n, k) = (
        args.batch as i64,
        args.m as i64,
        args.n as i64,
        args.k as i64,
    );
    let b_nk = i32::from(args.b_layout == BLayout::Nk);
    let b_batched = i32::from(args.b_batched);
    let mut builder = stream.launch_builder(&function);
    builder
        .arg(&args.a)
        .arg(&args.b)
        .arg(&args.bias)
        .arg(&args.out)
        .arg(&batch)
        .arg(&m)
        .arg(&n)
        .arg(&k)
        .arg(&b_nk)
        .arg(&b_batched);
    // SAFETY: the arguments match the kernel's signature (four pointers,
    // four i64 sizes, two int flags); a, b, bias and out address
    // batch·M·K, (batch or 1)·K·N, N and batch·M·N elements (checked by the
    // caller); a null bias is allowed.
    unsafe { builder.launch(config) }.map_err(|e| driver_error(kernels.device_name(), op, e))?;
    Ok(())
}

pub(crate) fn run(backend: &CudaBackend, problem: &MatmulProblem<'_>) -> Result<()> {
    let plan = backend.plan(&problem.query())?;
    let args = Args {
        a: backend.ptr(OP, "a", problem.a)?,
        b: backend.ptr(OP, "b", problem.b)?,
        bias: match problem.bias {
            Some(bias) => backend.ptr(OP, "bias", bias)?,
            None => 0,
        },
        out: backend.ptr(OP, "out", problem.out)?,
        batch: problem.batch,
        m: problem.m,
        n: problem.n,
        k: problem.k,
        b_layout: problem.params.b_layout,
        b_batched: problem.b_batched,
    };
    launch(backend.kernels(), backend.stream(), OP, plan, &args)
}
