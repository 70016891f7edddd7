//! The WGSL backend: radiant's ops as WGSL compute shaders through wgpu, on
//! any WebGPU-capable adapter (Vulkan, Metal, DX12).
//!
//! # Design contract
//!
//! * **Discovery.** Every adapter wgpu enumerates becomes `wgpu:0`,
//!   `wgpu:1`, ... (enumeration order). An adapter that cannot run the
//!   kernels (no compute, limits below what they need, device request failed)
//!   is listed as unavailable with the reason; nothing panics. Devices are
//!   created once per process and shared, so every `device("wgpu:0")` uses
//!   the same pipeline cache. Software adapters (`DeviceType::Cpu`: lavapipe,
//!   WARP, SwiftShader) are listed *after* the host backends, so `best`
//!   never prefers an emulated GPU over `cpu` / `reference`.
//! * **Memory.** A [`crate::Buffer`] holds a `wgpu::Buffer`
//!   (STORAGE | COPY_SRC | COPY_DST, size rounded up to 4 bytes). Uploads go
//!   through `Queue::write_buffer`; the 4-byte copy alignment is met by
//!   reading back and merging the partial words at unaligned edges. Downloads
//!   copy to a staging buffer, `map_async` and wait.
//! * **Views and offsets.** Tensors carry element offsets; 2-byte dtypes may
//!   start at odd elements. A tensor is bound as a window starting at its
//!   offset rounded down to `min_storage_buffer_offset_alignment`; the
//!   remaining element offset is passed in the kernel's uniform parameters
//!   and kernels index in elements. Activations are bound as `array<u32>`
//!   (two 16-bit elements per word); 16-bit outputs are written with atomics
//!   so neighbouring elements (inside or outside the view) are never
//!   clobbered. See `kernels/wgsl/common.wgsl`.
//! * **f16 / bf16.** Converted in the shader with exact software decoding
//!   and round-to-nearest-even encoding, on every adapter: no `shader-f16`
//!   feature is needed and results do not depend on driver rounding. (Native
//!   f16 arithmetic would not change results, since accumulation is f32.)
//! * **Kernels.** One WGSL file per op family in `kernels/wgsl/` (same stems
//!   as `ops/`), embedded at build time. A variant is the kernel plus a
//!   prelude of `const` declarations (dtype, layout flags, bit width),
//!   `common.wgsl` (dtype conversions) and any `// @include`d library
//!   (`linear_tile.wgsl`, the GEMM core — 64×64 tiles, 4×256 for
//!   decode-sized M — shared by matmul and the GPTQ / AWQ / NVFP4 matmuls,
//!   which dequantize while staging B). build.rs validates every variant
//!   with naga and generates typed constants for them. Each variant is compiled at most once per device (the pipeline
//!   cache in `pipelines.rs`).
//! * **Errors.** Every wgpu call runs inside error scopes (validation,
//!   out-of-memory, internal), serialized per device because wgpu's scope
//!   stack is per device. A captured error, an uncaptured one (a handler is
//!   installed: wgpu's default would panic) or a lost device becomes a typed
//!   [`crate::Error`]; output is never silently zero.
//! * **Limits.** Kernels need the WebGPU default compute limits (256
//!   invocations, 12 KiB workgroup memory); adapters below are unavailable.
//!   Grids are 2-D (x ≤ `max_compute_workgroups_per_dimension`), so
//!   workgroup counts up to that limit squared work. A tensor larger than
//!   `max_storage_buffer_binding_size` fails with an `Unsupported` error
//!   naming the limit; shape-independent limits (attention head_dim ≤ 256,
//!   GPTQ 4/8 bits, AWQ 4 bits) are reported by `supports()`.
//! * **Caller-owned devices.** [`WgpuBackend::from_device`] runs on an
//!   engine's own `wgpu::Device`, [`WgpuBackend::import_buffer`] wraps its
//!   buffers and [`WgpuBackend::wgpu_buffer`] hands radiant's back, so an
//!   engine that already holds its tensors in wgpu pays no copy.

mod attention;
mod awq_matmul;
mod backend;
mod context;
mod fused_add_rms_norm;
mod gptq_matmul;
mod matmul;
mod nvfp4_matmul;
mod paged_attention;
mod pipelines;
mod rms_norm;

#[cfg(test)]
mod tests;

pub use context::WgpuBackend;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use crate::backend::Backend;
use crate::device::DeviceEntry;

/// One enumerated adapter, as discovered once per process.
struct Discovered {
    name: String,
    status: Result<Arc<WgpuBackend>, String>,
    software: bool,
}

fn discover_once() -> &'static [Discovered] {
    static DISCOVERED: OnceLock<Vec<Discovered>> = OnceLock::new();
    DISCOVERED.get_or_init(|| {
        catch_unwind(AssertUnwindSafe(context::discover_adapters)).unwrap_or_else(|panic| {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            vec![Discovered {
                name: "wgpu".into(),
                status: Err(format!("adapter discovery panicked: {reason}")),
                software: false,
            }]
        })
    })
}

/// The wgpu entries of device discovery: (hardware adapters and
/// family-level failures, software adapters). `device.rs` lists the second
/// group after the host backends.
pub(crate) fn discover() -> (Vec<DeviceEntry>, Vec<DeviceEntry>) {
    let mut hardware = Vec::new();
    let mut software = Vec::new();
    for found in discover_once() {
        let entry = DeviceEntry {
            name: found.name.clone(),
            status: found
                .status
                .clone()
                .map(|backend| backend as Arc<dyn Backend>),
        };
        if found.software {
            software.push(entry);
        } else {
            hardware.push(entry);
        }
    }
    (hardware, software)
}
