//! The CUDA backend: radiant's ops as CUDA kernels, through cudarc with
//! dynamic loading — nothing of CUDA is needed to build radiant.
//!
//! # Design contract
//!
//! * **Discovery.** `libcuda` is looked for with `is_culib_present()` before
//!   any driver call (cudarc panics when a library it needs is absent); no
//!   driver, `cuInit` failing or no device make the `cuda` family
//!   unavailable with the reason. Each device becomes `cuda:N` (driver
//!   order) with one backend per process, created once; a device below
//!   [`kernels::Arch::MIN`] (sm_75) or one no kernel image can reach (no
//!   cubin or PTX for its arch and no libnvrtc) is listed as unavailable
//!   with the reason. Driver calls during discovery run under
//!   `catch_unwind`, so even a driver missing a symbol cudarc expects is a
//!   reason, never a crash.
//! * **Kernels.** build.rs compiles `kernels/cuda/*.cu` with nvcc when it
//!   finds one (PTX compute_80 + cubins sm_80/86/89/90a), else embeds the
//!   sources. At run time each file is loaded on first use from the cubin for
//!   the device's arch, else the PTX (driver JIT), else NVRTC with a disk
//!   cache ([`kernels`], [`nvrtc`]). Entry points are generated constants.
//! * **Memory.** A [`crate::Buffer`] holds a `CudaSlice<u8>` allocated on the
//!   backend's own stream (stream-ordered `cuMemAllocAsync` where the device
//!   has memory pools). Everything of one backend — uploads, kernels,
//!   downloads — runs on that one stream, so it is ordered without events
//!   (cudarc's event tracking is off for the backend's context handle).
//!   `download` and `synchronize` wait for the stream; op calls return once
//!   the kernels are queued.
//! * **Views.** Tensors carry element offsets: kernels get the buffer's
//!   device pointer plus the view's byte offset, and take 16-byte vector
//!   paths only when every pointer they touch is 16-byte aligned.
//! * **Capabilities.** [`backend::select`] maps an `OpQuery` and the
//!   device's arch to the kernel that runs it, or the reason it cannot;
//!   `supports()`, every backend op and every [`launch`] function call it,
//!   so the answer cannot drift from what runs.
//! * **Errors.** Every driver error becomes a typed [`crate::Error`]:
//!   `OutOfMemory` for allocations, `Device` (naming the op) otherwise;
//!   nothing panics. Zero-size problems launch nothing.
//! * **Engines.** [`launch`] runs every op on the caller's cudarc stream with
//!   the caller's device slices, with no copies.
//!
//! Nothing of this backend has run on a GPU in the session that wrote it:
//! see `scripts/gpu-check.sh` for the device checks.

mod attention;
mod awq_matmul;
mod backend;
mod fused_add_rms_norm;
mod gptq_matmul;
pub mod kernels;
pub mod launch;
mod matmul;
mod nvfp4_matmul;
pub mod nvrtc;
mod paged_attention;
mod rms_norm;

pub use backend::{CudaBackend, MAX_HEAD_DIM, Plan, select};
/// The cudarc radiant is built against: engines use it to name the same
/// `CudaContext` / `CudaStream` / `CudaSlice` types the [`launch`] API takes.
pub use cudarc;
pub use kernels::{Arch, Kernels};

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaContext, DriverError, result, sys};

use crate::backend::Backend;
use crate::device::DeviceEntry;
use crate::error::Error;

/// True if libcuda can be opened (checked once). Nothing else of the driver
/// is touched before this says yes.
pub fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: is_culib_present only tries to dlopen candidate names.
    *PRESENT.get_or_init(|| catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false))
}

/// The driver's CUDA version (e.g. 13000 for 13.0).
pub(crate) fn driver_version() -> Result<i32, DriverError> {
    let mut version = 0;
    // SAFETY: `version` is a valid out-pointer; only called once the driver
    // library was found.
    unsafe { sys::cuDriverGetVersion(&mut version) }.result()?;
    Ok(version)
}

/// A driver error during `op` on device `backend`.
pub(crate) fn driver_error(backend: &str, op: &'static str, error: DriverError) -> Error {
    Error::Device {
        backend: backend.to_string(),
        op,
        reason: error.to_string(),
    }
}

/// A driver error while allocating `bytes`: out of memory is its own variant.
pub(crate) fn alloc_error(backend: &str, bytes: usize, error: DriverError) -> Error {
    if error.0 == sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY {
        Error::OutOfMemory {
            backend: backend.to_string(),
            bytes,
        }
    } else {
        driver_error(backend, "alloc", error)
    }
}

/// A size as the `int` a kernel takes, or the error naming the argument.
pub(crate) fn dim_i32(op: &'static str, arg: &'static str, value: usize) -> crate::Result<i32> {
    i32::try_from(value).map_err(|_| {
        Error::invalid(
            op,
            arg,
            format!("{value} exceeds the CUDA kernels' 32-bit dimension limit"),
        )
    })
}

/// A grid dimension for `work` independent units: at least 1, at most the
/// x limit (kernels stride over the rest).
pub(crate) fn grid_x(work: usize) -> u32 {
    work.clamp(1, i32::MAX as usize) as u32
}

/// A grid y / z dimension (kernels stride over the rest).
pub(crate) fn grid_yz(work: usize) -> u32 {
    work.clamp(1, 65_535) as u32
}

/// An internal inconsistency (the plan of `select` did not match the op):
/// reported as a device error rather than a panic.
pub(crate) fn plan_mismatch(backend: &str, op: &'static str) -> Error {
    Error::Device {
        backend: backend.to_string(),
        op,
        reason: "internal error: the selected kernel does not match the op".into(),
    }
}

fn unavailable(name: &str, reason: impl Into<String>) -> DeviceEntry {
    DeviceEntry {
        name: name.to_string(),
        status: Err(reason.into()),
    }
}

pub(crate) fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// Every CUDA device, or the reason the family is unavailable.
fn discover_uncached() -> Vec<DeviceEntry> {
    if !driver_present() {
        return vec![unavailable(
            "cuda",
            "libcuda (the NVIDIA driver library) was not found: no NVIDIA driver on this machine",
        )];
    }
    let found = catch_unwind(AssertUnwindSafe(|| {
        if let Err(e) = result::init() {
            return vec![unavailable("cuda", format!("cuInit failed: {e}"))];
        }
        let count = match CudaContext::device_count() {
            Ok(count) => count,
            Err(e) => return vec![unavailable("cuda", format!("cuDeviceGetCount failed: {e}"))],
        };
        if count <= 0 {
            return vec![unavailable(
                "cuda",
                "the NVIDIA driver reports no CUDA device",
            )];
        }
        (0..count as usize)
            .map(|ordinal| match CudaBackend::new(ordinal) {
                Ok(backend) => DeviceEntry {
                    name: backend.name().to_string(),
                    status: Ok(Arc::new(backend) as Arc<dyn Backend>),
                },
                Err(e) => unavailable(&format!("cuda:{ordinal}"), e.to_string()),
            })
            .collect()
    }));
    found.unwrap_or_else(|panic| {
        vec![unavailable(
            "cuda",
            format!(
                "the CUDA driver failed during discovery: {}",
                panic_message(panic)
            ),
        )]
    })
}

/// The CUDA entries of device discovery (computed once per process).
pub(crate) fn discover() -> Vec<DeviceEntry> {
    static DISCOVERED: OnceLock<Vec<DeviceEntry>> = OnceLock::new();
    DISCOVERED.get_or_init(discover_uncached).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without the NVIDIA driver (CI), discovery must report
    /// the family as unavailable with a reason, and selection must fail with
    /// a typed error — no panic. With a driver, it lists `cuda:N` entries.
    #[test]
    fn discovery_reports_cleanly() {
        let entries = discover();
        assert!(!entries.is_empty());
        if !driver_present() {
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].name, "cuda");
            let Err(reason) = &entries[0].status else {
                panic!("cuda is available without a driver")
            };
            assert!(reason.contains("libcuda"), "{reason}");
            match crate::device("cuda:0") {
                Err(Error::Unavailable { reason, .. }) => assert!(reason.contains("libcuda")),
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
        for entry in &entries {
            assert!(
                entry.name == "cuda" || entry.name.starts_with("cuda:"),
                "{}",
                entry.name
            );
        }
    }
}
