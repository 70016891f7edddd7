//! fused_add_rms_norm on wgpu: `kernels/wgsl/fused_add_rms_norm.wgsl`, one
//! workgroup per row; the rounded sum is written back to `residual`.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::ops::FusedAddRmsNormProblem;

use super::context::{WgpuBackend, dt_code, u32_param};
use super::pipelines::Kernel;
use super::pipelines::kernels::fused_add_rms_norm;

const OP: &str = "fused_add_rms_norm";

/// `struct Params` of fused_add_rms_norm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    hidden: u32,
    x_off: u32,
    res_off: u32,
    w_off: u32,
    out_off: u32,
    eps: f32,
    weight_offset: f32,
}

pub(crate) fn run(backend: &WgpuBackend, problem: &FusedAddRmsNormProblem<'_>) -> Result<()> {
    let query = problem.query();
    backend.select(&query)?;
    let dt =
        dt_code(query.dtype).ok_or_else(|| Error::invalid(OP, "x", "not an activation dtype"))?;
    if problem.rows == 0 {
        return Ok(());
    }
    let (x, x_off) = backend.window(query.op, "x", problem.x)?;
    let (residual, res_off) = backend.window(query.op, "residual", problem.residual)?;
    let (w, w_off) = backend.window(query.op, "weight", problem.weight)?;
    let (out, out_off) = backend.window(query.op, "out", problem.out)?;
    let params = Params {
        rows: u32_param(OP, "x", problem.rows)?,
        hidden: u32_param(OP, "x", problem.hidden)?,
        x_off,
        res_off,
        w_off,
        out_off,
        eps: problem.params.eps as f32,
        weight_offset: problem.params.weight_offset as f32,
    };
    backend.launch(
        query.op,
        Kernel::FusedAddRmsNorm(fused_add_rms_norm::Variant { dt }),
        bytemuck::bytes_of(&params),
        &[x, residual, w, out],
        problem.rows as u64,
    )
}
