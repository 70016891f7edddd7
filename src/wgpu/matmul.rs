//! matmul on wgpu: `kernels/wgsl/matmul.wgsl` (64×64 or 4×256 tiles, f32
//! accumulation), one launch for every batch.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::ops::{BLayout, MatmulProblem};

use super::context::{WgpuBackend, dt_code, u32_param};
use super::pipelines::kernels::matmul;
use super::pipelines::{Kernel, LinearGrid};

const OP: &str = "matmul";

/// `struct Params` of matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles_m: u32,
    tiles_n: u32,
    num_tiles: u32,
    a_off: u32,
    b_off: u32,
    bias_off: u32,
    out_off: u32,
    b_batch_stride: u32,
    _pad: u32,
}

pub(crate) fn run(backend: &WgpuBackend, problem: &MatmulProblem<'_>) -> Result<()> {
    let query = problem.query();
    backend.select(&query)?;
    let dt =
        dt_code(query.dtype).ok_or_else(|| Error::invalid(OP, "a", "not an activation dtype"))?;
    if problem.out.numel() == 0 {
        return Ok(());
    }
    let grid = LinearGrid::new(problem.m, problem.n);
    let (tiles_m, tiles_n) = (grid.tiles_m, grid.tiles_n);
    let num_tiles = problem.batch * tiles_m * tiles_n;
    let (a, a_off) = backend.window(query.op, "a", problem.a)?;
    let (b, b_off) = backend.window(query.op, "b", problem.b)?;
    let (bias, bias_off) = match problem.bias {
        Some(bias) => backend.window(query.op, "bias", bias)?,
        None => backend.unused_window(),
    };
    let (out, out_off) = backend.window(query.op, "out", problem.out)?;
    let params = Params {
        m: u32_param(OP, "a", problem.m)?,
        n: u32_param(OP, "b", problem.n)?,
        k: u32_param(OP, "a", problem.k)?,
        tiles_m: u32_param(OP, "a", tiles_m)?,
        tiles_n: u32_param(OP, "b", tiles_n)?,
        num_tiles: u32_param(OP, "out", num_tiles)?,
        a_off,
        b_off,
        bias_off,
        out_off,
        b_batch_stride: if problem.b_batched {
            u32_param(OP, "b", problem.k * problem.n)?
        } else {
            0
        },
        _pad: 0,
    };
    let kernel = Kernel::Matmul(matmul::Variant {
        dt,
        b_nk: problem.params.b_layout == BLayout::Nk,
        has_bias: problem.bias.is_some(),
        skinny: grid.skinny,
    });
    backend.launch(
        query.op,
        kernel,
        bytemuck::bytes_of(&params),
        &[a, b, bias, out],
        num_tiles as u64,
    )
}
