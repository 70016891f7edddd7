//! The NVRTC fallback: compile an embedded kernel source for the device's
//! exact arch at run time, and keep the cubin on disk.
//!
//! Used when the build found no nvcc (only sources are embedded), and on
//! devices no embedded image runs on (Turing: the PTX is compute_80). The
//! cache key is the source hash, the arch, the driver version and the NVRTC
//! version: a new driver or toolkit recompiles, the same one never does.
//! The cache lives in `$RADIANT_CUDA_CACHE`, else `$XDG_CACHE_HOME/radiant/cuda`,
//! else `$HOME/.cache/radiant/cuda`, else the system temp dir; writes are
//! atomic (temp file + rename) and best effort (a read-only cache only costs
//! a recompile).
//!
//! libnvrtc is opened through cudarc's dynamic loading, after
//! `is_culib_present()` confirmed it exists; cudarc panics on a missing
//! symbol, so every NVRTC call runs under `catch_unwind` and a panic becomes
//! an error string.

use std::ffi::{CStr, CString};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cudarc::nvrtc::{result, sys};

use super::kernels::{Arch, FileInfo};

/// Language flags; the same as build.rs gives nvcc (`-std=c++17 -lineinfo`).
pub const FLAGS: [&str; 2] = ["--std=c++17", "--generate-line-info"];

/// True if libnvrtc can be opened (checked once).
pub fn is_available() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: is_culib_present only tries to dlopen candidate names.
    *PRESENT.get_or_init(|| catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false))
}

/// The NVRTC version (major, minor), if libnvrtc is available.
pub fn version() -> Option<(i32, i32)> {
    if !is_available() {
        return None;
    }
    catch_unwind(|| {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: the two out-pointers are valid for the call.
        let status = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
        (status == sys::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
    })
    .ok()
    .flatten()
}

/// The cache file name for one compiled kernel file: every input that can
/// change the cubin is in it.
pub fn cache_key(
    stem: &str,
    source_hash: u64,
    arch: Arch,
    driver_version: i32,
    nvrtc_version: (i32, i32),
) -> String {
    format!(
        "{stem}-{source_hash:016x}-sm{}{}-driver{driver_version}-nvrtc{}.{}.cubin",
        arch.major, arch.minor, nvrtc_version.0, nvrtc_version.1
    )
}

/// The cache directory (see the module docs for the order of choices).
pub fn cache_dir() -> PathBuf {
    cache_dir_from(|name| std::env::var_os(name))
}

/// [`cache_dir`] over an explicit environment (testable).
pub fn cache_dir_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let non_empty = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty("RADIANT_CUDA_CACHE") {
        return dir;
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return dir.join("radiant").join("cuda");
    }
    if let Some(home) = non_empty("HOME") {
        return home.join(".cache").join("radiant").join("cuda");
    }
    std::env::temp_dir().join("radiant-cuda-cache")
}

/// True for a cached file that can be a cubin (an ELF image).
fn looks_like_cubin(bytes: &[u8]) -> bool {
    bytes.len() > 64 && bytes.starts_with(b"\x7fELF")
}

/// The cubin of `file` for `arch`: from the disk cache, else compiled with
/// NVRTC and stored there.
pub fn cached_cubin(file: &FileInfo, arch: Arch, driver_version: i32) -> Result<Vec<u8>, String> {
    cached_cubin_in(&cache_dir(), file, arch, driver_version)
}

/// [`cached_cubin`] with an explicit cache directory.
pub fn cached_cubin_in(
    dir: &Path,
    file: &FileInfo,
    arch: Arch,
    driver_version: i32,
) -> Result<Vec<u8>, String> {
    let nvrtc_version = version().ok_or("libnvrtc was not found")?;
    let path = dir.join(cache_key(
        file.stem,
        file.source_hash,
        arch,
        driver_version,
        nvrtc_version,
    ));
    if let Ok(bytes) = std::fs::read(&path)
        && looks_like_cubin(&bytes)
    {
        return Ok(bytes);
    }
    let cubin = compile_cubin(file.path, file.source, arch)?;
    store(dir, &path, &cubin);
    Ok(cubin)
}

/// Writes `bytes` to `path` atomically; failures are ignored (best effort).
fn store(dir: &Path, path: &Path, bytes: &[u8]) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Compiles `source` (a composed kernel file) to a cubin for `arch` with
/// NVRTC. The error carries NVRTC's log.
pub fn compile_cubin(name: &str, source: &str, arch: Arch) -> Result<Vec<u8>, String> {
    if !is_available() {
        return Err("libnvrtc was not found".into());
    }
    let src = CString::new(source).map_err(|_| format!("{name}: source contains a NUL byte"))?;
    let cname = CString::new(name).map_err(|_| format!("{name}: name contains a NUL byte"))?;
    let mut options: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
    options.push(format!(
        "--gpu-architecture=sm_{}{}",
        arch.major, arch.minor
    ));
    catch_unwind(AssertUnwindSafe(|| compile_inner(&src, &cname, &options)))
        .unwrap_or_else(|_| Err("libnvrtc lacks a function radiant needs (too old?)".into()))
        .map_err(|e| format!("NVRTC compiling {name} for {arch}: {e}"))
}

fn compile_inner(src: &CStr, name: &CStr, options: &[String]) -> Result<Vec<u8>, String> {
    let program = result::create_program(src, Some(name)).map_err(|e| format!("{e:?}"))?;
    // SAFETY: `program` is a live program until destroy_program below; the
    // options outlive the call.
    let compiled = unsafe { result::compile_program(program, options) };
    let outcome = match compiled {
        Err(e) => {
            // SAFETY: as above.
            let log = unsafe { result::get_program_log(program) }
                .map(|raw| {
                    let bytes: Vec<u8> = raw
                        .iter()
                        .map(|&c| c as u8)
                        .take_while(|&c| c != 0)
                        .collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                })
                .unwrap_or_default();
            Err(format!("{e:?}\n{log}"))
        }
        Ok(()) => {
            let mut size = 0usize;
            // SAFETY: `size` is a valid out-pointer; the buffer is `size` bytes.
            unsafe {
                let status = sys::nvrtcGetCUBINSize(program, &mut size);
                if status != sys::nvrtcResult::NVRTC_SUCCESS {
                    Err(format!("nvrtcGetCUBINSize: {status:?}"))
                } else {
                    let mut cubin = vec![0u8; size];
                    let status = sys::nvrtcGetCUBIN(program, cubin.as_mut_ptr().cast());
                    if status == sys::nvrtcResult::NVRTC_SUCCESS {
                        Ok(cubin)
                    } else {
                        Err(format!("nvrtcGetCUBIN: {status:?}"))
                    }
                }
            }
        }
    };
    // SAFETY: destroyed once, after its last use.
    let _ = unsafe { result::destroy_program(program) };
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn cache_key_names_every_input() {
        let key = cache_key("rms_norm", 0xdead_beef, Arch::new(8, 9), 13000, (13, 0));
        assert_eq!(
            key,
            "rms_norm-00000000deadbeef-sm89-driver13000-nvrtc13.0.cubin"
        );
        let others = [
            cache_key("matmul", 0xdead_beef, Arch::new(8, 9), 13000, (13, 0)),
            cache_key("rms_norm", 0xdead_bee0, Arch::new(8, 9), 13000, (13, 0)),
            cache_key("rms_norm", 0xdead_beef, Arch::new(8, 6), 13000, (13, 0)),
            cache_key("rms_norm", 0xdead_beef, Arch::new(8, 9), 12080, (13, 0)),
            cache_key("rms_norm", 0xdead_beef, Arch::new(8, 9), 13000, (12, 9)),
        ];
        for other in others {
            assert_ne!(key, other);
        }
    }

    #[test]
    fn cache_dir_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            cache_dir_from(env(&[("RADIANT_CUDA_CACHE", "/c"), ("HOME", "/h")])),
            PathBuf::from("/c")
        );
        assert_eq!(
            cache_dir_from(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            PathBuf::from("/x/radiant/cuda")
        );
        assert_eq!(
            cache_dir_from(env(&[("RADIANT_CUDA_CACHE", ""), ("HOME", "/h")])),
            PathBuf::from("/h/.cache/radiant/cuda")
        );
        assert_eq!(
            cache_dir_from(env(&[])),
            std::env::temp_dir().join("radiant-cuda-cache")
        );
    }

    #[test]
    fn only_elf_images_are_taken_from_the_cache() {
        let mut elf = b"\x7fELF".to_vec();
        elf.resize(100, 0);
        assert!(looks_like_cubin(&elf));
        assert!(!looks_like_cubin(b"\x7fELF"));
        assert!(!looks_like_cubin(&[0u8; 100]));
    }
}
