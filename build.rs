//! Build script. Kernels for the device backends are compiled and embedded
//! here as those backends land (CUDA with nvcc or embedded sources for NVRTC,
//! WGSL validated with naga). For now it only tracks the kernel folders.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
}
