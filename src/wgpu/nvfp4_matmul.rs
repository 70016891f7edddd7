//! nvfp4_matmul on wgpu: `kernels/wgsl/nvfp4_matmul.wgsl`, the shared GEMM
//! tiles (64×64, or 4×256 for decode-sized M) with E2M1 codes decoded (and
//! rounded to x's dtype) as they are staged. The block multiplier of each of
//! the 256 E4M3 scale bytes is formed here, on the host, exactly as the
//! reference forms it, and passed as a table.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::ops::Nvfp4MatmulProblem;
use crate::quant::GlobalScale;
use crate::quant::e4m3;

use super::context::{WgpuBackend, Window, dt_code, u32_param};
use super::pipelines::kernels::nvfp4_matmul;
use super::pipelines::{Kernel, LinearGrid};

const OP: &str = "nvfp4_matmul";

/// `struct Params` of nvfp4_matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    k_padded: u32,
    tiles_n: u32,
    num_tiles: u32,
    x_off: u32,
    w_off: u32,
    s_off: u32,
    bias_off: u32,
    out_off: u32,
    _pad0: u32,
}

/// `m(byte)` for every E4M3 byte: the exact decode times (or divided by)
/// the global scale, in f32, as `GlobalScale::block_multiplier` forms it.
fn multiplier_table(global: GlobalScale) -> Vec<f32> {
    (0..=255u8)
        .map(|byte| global.block_multiplier(e4m3::decode(byte)))
        .collect()
}

pub(crate) fn run(backend: &WgpuBackend, problem: &Nvfp4MatmulProblem<'_>) -> Result<()> {
    let query = problem.query();
    backend.select(&query)?;
    let weight = problem.weight;
    let dt =
        dt_code(query.dtype).ok_or_else(|| Error::invalid(OP, "x", "not an activation dtype"))?;
    if problem.out.numel() == 0 {
        return Ok(());
    }
    let grid = LinearGrid::new(problem.m, problem.n);
    let tiles_n = grid.tiles_n;
    let num_tiles = grid.tiles_m * tiles_n;
    let op = query.op;
    let global = weight.global_scale();
    let table = backend.table_buffer(op, bytemuck::cast_slice(&multiplier_table(global)))?;
    let (x, x_off) = backend.window(op, "x", problem.x)?;
    let (w, w_off) = backend.window(op, "weight_packed", weight.weight_packed())?;
    let (s, s_off) = backend.window(op, "weight_scale", weight.weight_scale())?;
    let (bias, bias_off) = match problem.bias {
        Some(bias) => backend.window(op, "bias", bias)?,
        None => backend.unused_window(),
    };
    let (out, out_off) = backend.window(op, "out", problem.out)?;
    let params = Params {
        m: u32_param(OP, "x", problem.m)?,
        n: u32_param(OP, "weight_packed", problem.n)?,
        k: u32_param(OP, "x", problem.k)?,
        k_padded: u32_param(OP, "weight_packed", weight.k_padded())?,
        tiles_n: u32_param(OP, "weight_packed", tiles_n)?,
        num_tiles: u32_param(OP, "out", num_tiles)?,
        x_off,
        w_off,
        s_off,
        bias_off,
        out_off,
        _pad0: 0,
    };
    let kernel = Kernel::Nvfp4Matmul(nvfp4_matmul::Variant {
        dt,
        minus_zero: matches!(global, GlobalScale::Divisor(_)),
        has_bias: problem.bias.is_some(),
        skinny: grid.skinny,
    });
    backend.launch(
        op,
        kernel,
        bytemuck::bytes_of(&params),
        &[x, w, s, Window::whole(&table), bias, out],
        num_tiles as u64,
    )
}
