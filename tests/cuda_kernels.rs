//! What can be checked of the CUDA backend without a GPU:
//!
//! * the images build.rs embedded: with nvcc (CI installs it), every kernel
//!   entry point is in the compute_80 PTX and in every cubin's ELF symbol
//!   table, and each cubin is a CUDA ELF; without nvcc, only sources;
//! * the embedded sources: composed (no `#include` left), hashed as the
//!   NVRTC cache expects, naming every entry;
//! * NVRTC (when libnvrtc can be opened, e.g. from the nvidia-cuda-nvrtc
//!   wheel on `LD_LIBRARY_PATH`): it compiles every embedded source for
//!   sm_80 and sm_75, and the disk cache round-trips;
//! * discovery on a machine without the driver: `cuda` is unavailable with
//!   the reason, and selecting `cuda:0` is a typed error, never a panic.
//!
//! `RADIANT_EXPECT_NVCC=1` (CI) fails the first check if the build did not
//! take the nvcc path, `=0` if it did; `RADIANT_REQUIRE_NVRTC=1` fails the
//! NVRTC checks instead of skipping them when libnvrtc is absent.

#![cfg(feature = "cuda")]

use radiant::cuda::kernels::{self, Arch, BUILD, FileInfo, KernelFile};
use radiant::cuda::nvrtc;

/// Names of the function symbols of a 64-bit little-endian ELF image, and
/// its `e_machine`. `None` if the image is not such an ELF.
fn elf_functions(image: &[u8]) -> Option<(u16, Vec<String>)> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(image.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |at: usize| Some(u64::from_le_bytes(image.get(at..at + 8)?.try_into().ok()?) as usize);
    if !image.starts_with(b"\x7fELF") || image.get(4) != Some(&2) || image.get(5) != Some(&1) {
        return None;
    }
    let machine = u16_at(0x12)?;
    let sh_off = u64_at(0x28)?;
    let sh_size = u16_at(0x3a)? as usize;
    let sh_num = u16_at(0x3c)? as usize;
    let section = |i: usize| sh_off + i * sh_size;
    let mut names = Vec::new();
    for i in 0..sh_num {
        let sh = section(i);
        if u32_at(sh + 4)? != 2 {
            continue; // not SHT_SYMTAB
        }
        let (offset, size, entsize) = (u64_at(sh + 0x18)?, u64_at(sh + 0x20)?, u64_at(sh + 0x38)?);
        let strtab = section(u32_at(sh + 0x28)? as usize);
        let str_off = u64_at(strtab + 0x18)?;
        for sym in (offset..offset + size).step_by(entsize.max(1)) {
            let info = *image.get(sym + 4)?;
            if info & 0xf != 2 {
                continue; // not STT_FUNC
            }
            let name_at = str_off + u32_at(sym)? as usize;
            let end = image.get(name_at..)?.iter().position(|&b| b == 0)?;
            names.push(String::from_utf8_lossy(&image[name_at..name_at + end]).into_owned());
        }
    }
    Some((machine, names))
}

/// EM_CUDA.
const EM_CUDA: u16 = 190;

fn assert_cubin_has_entries(what: &str, info: &FileInfo, image: &[u8]) {
    let (machine, functions) =
        elf_functions(image).unwrap_or_else(|| panic!("{what}: not a 64-bit ELF image"));
    assert_eq!(machine, EM_CUDA, "{what}: e_machine");
    for entry in info.entries {
        assert!(
            functions.iter().any(|f| f == entry),
            "{what}: entry point `{entry}` missing; functions: {functions:?}"
        );
    }
}

fn ptx_has_entry(ptx: &str, name: &str) -> bool {
    ptx.lines().any(|line| {
        line.split_once(".entry ")
            .and_then(|(_, rest)| rest.trim_start().strip_prefix(name))
            .is_some_and(|rest| rest.trim_start().starts_with('('))
    })
}

#[test]
fn every_entry_point_is_in_the_embedded_ptx_and_cubins() {
    match std::env::var("RADIANT_EXPECT_NVCC").as_deref() {
        Ok("1") => assert!(
            BUILD.nvcc.is_some(),
            "RADIANT_EXPECT_NVCC=1 but build.rs found no nvcc"
        ),
        Ok("0") => assert!(
            BUILD.nvcc.is_none(),
            "RADIANT_EXPECT_NVCC=0 but build.rs used nvcc"
        ),
        _ => {}
    }
    let Some(nvcc) = BUILD.nvcc else {
        for file in KernelFile::ALL {
            let info = file.info();
            assert!(
                info.ptx.is_none() && info.cubins.is_empty(),
                "{}",
                info.path
            );
        }
        println!("skipped: build.rs took the NVRTC path (no nvcc): only sources are embedded");
        return;
    };
    println!(
        "kernels built by nvcc ({nvcc}): PTX {}, cubins {:?}",
        BUILD.ptx_arch, BUILD.cubin_archs
    );
    assert_eq!(BUILD.ptx_arch, "compute_80");
    assert_eq!(BUILD.cubin_archs, ["sm_80", "sm_86", "sm_89", "sm_90a"]);
    for file in KernelFile::ALL {
        let info = file.info();
        let ptx = info
            .ptx
            .unwrap_or_else(|| panic!("{}: no PTX embedded", info.path));
        assert!(ptx.contains(".target sm_80"), "{}: PTX target", info.path);
        for entry in info.entries {
            assert!(
                ptx_has_entry(ptx, entry),
                "{}: `{entry}` missing from the PTX",
                info.path
            );
        }
        let archs: Vec<&str> = info.cubins.iter().map(|c| c.arch).collect();
        assert_eq!(archs, BUILD.cubin_archs, "{}", info.path);
        for cubin in info.cubins {
            assert_cubin_has_entries(&format!("{} {}", info.path, cubin.arch), info, cubin.image);
        }
    }
}

#[test]
fn sources_are_composed_hashed_and_name_every_entry() {
    // The kernel folder: the build's, or the working directory's when the
    // binary runs elsewhere (scripts/gpu-check.sh on a device machine).
    let dirs = [
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/kernels/cuda")),
        std::path::PathBuf::from("kernels/cuda"),
    ];
    if let Some(dir) = dirs.iter().find(|d| d.is_dir()) {
        let files = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "cu"))
            .count();
        assert_eq!(
            KernelFile::ALL.len(),
            files,
            "one module per kernels/cuda/*.cu"
        );
    }
    for file in KernelFile::ALL {
        let info = file.info();
        assert_eq!(info.path, format!("kernels/cuda/{}.cu", info.stem));
        assert!(info.source.contains(&format!("#line 1 \"{}\"", info.path)));
        assert!(
            !info
                .source
                .lines()
                .any(|l| l.trim_start().starts_with("#include")),
            "{}: an #include survived composition",
            info.path
        );
        assert_eq!(kernels::fnv1a(info.source.as_bytes()), info.source_hash);
        let declared = info.source.matches("extern \"C\" __global__").count();
        assert_eq!(
            declared,
            info.entries.len(),
            "{}: entries {:?}",
            info.path,
            info.entries
        );
    }
    // The generated constants point into their file.
    assert_eq!(kernels::rms_norm::RMS_NORM_BF16.name, "rms_norm_bf16");
    assert_eq!(kernels::rms_norm::RMS_NORM_BF16.file, KernelFile::RmsNorm);
    assert_eq!(kernels::matmul::MATMUL_TC_F16.file, KernelFile::Matmul);
}

/// Whether NVRTC checks can run; panics when they are required but cannot.
fn nvrtc_or_skip() -> bool {
    if nvrtc::is_available() {
        return true;
    }
    let reason = "libnvrtc not found (put the nvidia-cuda-nvrtc wheel's lib/ on LD_LIBRARY_PATH)";
    if std::env::var("RADIANT_REQUIRE_NVRTC").as_deref() == Ok("1") {
        panic!("RADIANT_REQUIRE_NVRTC=1 but {reason}");
    }
    println!("skipped: {reason}");
    false
}

#[test]
fn nvrtc_compiles_every_embedded_source() {
    if !nvrtc_or_skip() {
        return;
    }
    println!("NVRTC {:?}", nvrtc::version());
    for arch in [Arch::new(8, 0), Arch::new(7, 5)] {
        for file in KernelFile::ALL {
            let info = file.info();
            let cubin = nvrtc::compile_cubin(info.path, info.source, arch)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_cubin_has_entries(&format!("{} NVRTC {arch}", info.path), info, &cubin);
        }
    }
}

#[test]
fn nvrtc_disk_cache_round_trips() {
    if !nvrtc_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("radiant-cuda-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let info = KernelFile::RmsNorm.info();
    let arch = Arch::new(8, 6);
    let first = nvrtc::cached_cubin_in(&dir, info, arch, 13000).unwrap();
    let key = nvrtc::cache_key(
        info.stem,
        info.source_hash,
        arch,
        13000,
        nvrtc::version().unwrap(),
    );
    let path = dir.join(&key);
    assert_eq!(std::fs::read(&path).unwrap(), first, "cached under {key}");
    // A hit returns the file's bytes (marked, to prove no recompile)...
    let mut marked = first.clone();
    let last = marked.len() - 1;
    marked[last] ^= 0xff;
    std::fs::write(&path, &marked).unwrap();
    assert_eq!(
        nvrtc::cached_cubin_in(&dir, info, arch, 13000).unwrap(),
        marked
    );
    // ...a corrupt entry is recompiled and replaced...
    std::fs::write(&path, b"not an ELF").unwrap();
    assert_eq!(
        nvrtc::cached_cubin_in(&dir, info, arch, 13000).unwrap(),
        first
    );
    assert_eq!(std::fs::read(&path).unwrap(), first);
    // ...and another driver version is another entry.
    nvrtc::cached_cubin_in(&dir, info, arch, 12080).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn discovery_without_a_driver_is_a_reason_not_a_panic() {
    let entries = radiant::devices();
    let cuda: Vec<_> = entries
        .iter()
        .filter(|e| e.name == "cuda" || e.name.starts_with("cuda:"))
        .collect();
    assert!(!cuda.is_empty(), "discovery lists the cuda family");
    if radiant::cuda::driver_present() {
        for entry in cuda {
            match &entry.status {
                Ok(backend) => println!("{}: {:?}", entry.name, backend.info()),
                Err(reason) => println!("{}: unavailable: {reason}", entry.name),
            }
        }
        return;
    }
    assert_eq!(cuda.len(), 1);
    let Err(reason) = &cuda[0].status else {
        panic!("cuda is available without a driver")
    };
    println!("cuda: unavailable: {reason}");
    assert!(reason.contains("libcuda"));
    for name in ["cuda", "cuda:0", "cuda:3"] {
        match radiant::device(name) {
            Err(radiant::Error::Unavailable { reason, .. }) => assert!(reason.contains("libcuda")),
            other => panic!("{name}: expected Unavailable, got {other:?}"),
        }
    }
}
