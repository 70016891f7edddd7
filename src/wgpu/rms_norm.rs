//! rms_norm on wgpu: `kernels/wgsl/rms_norm.wgsl`, one workgroup per row.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::ops::RmsNormProblem;

use super::context::{WgpuBackend, dt_code, u32_param};
use super::pipelines::Kernel;
use super::pipelines::kernels::rms_norm;

const OP: &str = "rms_norm";

/// `struct Params` of rms_norm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    hidden: u32,
    x_off: u32,
    w_off: u32,
    out_off: u32,
    eps: f32,
    weight_offset: f32,
    _pad: u32,
}

pub(crate) fn run(backend: &WgpuBackend, problem: &RmsNormProblem<'_>) -> Result<()> {
    let query = problem.query();
    backend.select(&query)?;
    let dt =
        dt_code(query.dtype).ok_or_else(|| Error::invalid(OP, "x", "not an activation dtype"))?;
    if problem.rows == 0 {
        return Ok(());
    }
    let (x, x_off) = backend.window(query.op, "x", problem.x)?;
    let (w, w_off) = backend.window(query.op, "weight", problem.weight)?;
    let (out, out_off) = backend.window(query.op, "out", problem.out)?;
    let params = Params {
        rows: u32_param(OP, "x", problem.rows)?,
        hidden: u32_param(OP, "x", problem.hidden)?,
        x_off,
        w_off,
        out_off,
        eps: problem.params.eps as f32,
        weight_offset: problem.params.weight_offset as f32,
        _pad: 0,
    };
    backend.launch(
        query.op,
        Kernel::RmsNorm(rms_norm::Variant { dt }),
        bytemuck::bytes_of(&params),
        &[x, w, out],
        problem.rows as u64,
    )
}
