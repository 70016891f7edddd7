//! awq_matmul on wgpu: `kernels/wgsl/awq_matmul.wgsl`, the shared GEMM tiles
//! (64×64, or 4×256 for decode-sized M) with the interleaved 4-bit weight
//! dequantized (and rounded to x's dtype) as it is staged.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::ops::AwqMatmulProblem;

use super::context::{WgpuBackend, dt_code, u32_param};
use super::pipelines::kernels::awq_matmul;
use super::pipelines::{Kernel, LinearGrid};

const OP: &str = "awq_matmul";

/// `struct Params` of awq_matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    groups: u32,
    group_size: u32,
    tiles_n: u32,
    num_tiles: u32,
    x_off: u32,
    qw_off: u32,
    qz_off: u32,
    sc_off: u32,
    bias_off: u32,
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

pub(crate) fn run(backend: &WgpuBackend, problem: &AwqMatmulProblem<'_>) -> Result<()> {
    let query = problem.query();
    backend.select(&query)?;
    let weight = problem.weight;
    let dt =
        dt_code(query.dtype).ok_or_else(|| Error::invalid(OP, "x", "not an activation dtype"))?;
    let sdt = dt_code(weight.scales().dtype())
        .ok_or_else(|| Error::invalid(OP, "scales", "not a float dtype"))?;
    if problem.out.numel() == 0 {
        return Ok(());
    }
    let groups = weight.groups().max(1);
    let grid = LinearGrid::new(problem.m, problem.n);
    let tiles_n = grid.tiles_n;
    let num_tiles = grid.tiles_m * tiles_n;
    let op = query.op;
    let (x, x_off) = backend.window(op, "x", problem.x)?;
    let (qw, qw_off) = backend.window(op, "qweight", weight.qweight())?;
    let (qz, qz_off) = backend.window(op, "qzeros", weight.qzeros())?;
    let (sc, sc_off) = backend.window(op, "scales", weight.scales())?;
    let (bias, bias_off) = match problem.bias {
        Some(bias) => backend.window(op, "bias", bias)?,
        None => backend.unused_window(),
    };
    let (out, out_off) = backend.window(op, "out", problem.out)?;
    let params = Params {
        m: u32_param(OP, "x", problem.m)?,
        n: u32_param(OP, "qweight", problem.n)?,
        k: u32_param(OP, "x", problem.k)?,
        groups: u32_param(OP, "scales", groups)?,
        group_size: u32_param(OP, "scales", (problem.k / groups).max(1))?,
        tiles_n: u32_param(OP, "qweight", tiles_n)?,
        num_tiles: u32_param(OP, "out", num_tiles)?,
        x_off,
        qw_off,
        qz_off,
        sc_off,
        bias_off,
        out_off,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    let kernel = Kernel::AwqMatmul(awq_matmul::Variant {
        dt,
        sdt,
        has_bias: problem.bias.is_some(),
        skinny: grid.skinny,
    });
    backend.launch(
        op,
        kernel,
        bytemuck::bytes_of(&params),
        &[x, qw, qz, sc, bias, out],
        num_tiles as u64,
    )
}
