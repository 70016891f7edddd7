//! Build script. Kernels for the device backends are compiled or checked and
//! embedded here:
//! * `kernels/wgsl`: every variant of every kernel is validated with naga
//!   (so a shader error fails the build with no GPU) and `wgsl_kernels.rs`
//!   (sources, entry points, typed variant constants) is generated for the
//!   wgpu backend. Helpers live in `build/`.
//! * `kernels/cuda` (with the `cuda` feature): composed, compiled with nvcc
//!   to PTX + cubins when nvcc is found, else embedded as sources for NVRTC
//!   at run time; `cuda_kernels.rs` names every entry point (`build/cuda.rs`).
//! * ROCm: to come with that backend.

#[path = "build/cuda.rs"]
mod cuda;
#[path = "build/wgsl.rs"]
mod wgsl;

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=kernels");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    if let Err(message) = cuda::run(&manifest_dir, &out_dir) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
    if let Err(message) = wgsl::run(&manifest_dir, &out_dir) {
        // A build script fails by exiting non-zero; cargo prints stderr.
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
