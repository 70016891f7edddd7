//! Device discovery and selection by name.
//!
//! `devices()` asks every backend family what it can run here; a family that
//! cannot run (no driver, no device, not built) appears with the reason
//! instead of a device, so `radiant info` can say why. Nothing here panics
//! when a driver is missing.

use std::sync::Arc;

use crate::backend::Backend;
use crate::cpu::ReferenceBackend;
use crate::error::{Error, Result};

/// One line of discovery: a usable device, or a family that is unavailable.
#[derive(Debug, Clone)]
pub struct DeviceEntry {
    /// `reference`, `cpu`, `cuda:0`, ... or the family name (`cuda`) when
    /// the family is unavailable.
    pub name: String,
    pub status: Result<Arc<dyn Backend>, String>,
}

impl DeviceEntry {
    fn available(backend: Arc<dyn Backend>) -> Self {
        DeviceEntry {
            name: backend.name().to_string(),
            status: Ok(backend),
        }
    }

    fn unavailable(family: &str, reason: &str) -> Self {
        DeviceEntry {
            name: family.to_string(),
            status: Err(reason.to_string()),
        }
    }
}

/// Every backend family, in the order `best` prefers them (last = fallback).
fn discover_all() -> Vec<DeviceEntry> {
    let (wgpu_hardware, wgpu_software) = wgpu_entries();
    let mut entries = vec![
        DeviceEntry::unavailable("rocm", "the ROCm backend is not part of this build yet"),
        DeviceEntry::available(Arc::new(crate::cpu::CpuBackend::new())),
        DeviceEntry::available(Arc::new(ReferenceBackend::new())),
    ];
    // CUDA devices first (`best` prefers them), or the family's reason.
    entries.splice(0..0, cuda_entries());
    // wgpu: hardware adapters rank before the host backends, software ones
    // (lavapipe, WARP, SwiftShader) after them, so `best` never prefers an
    // emulated GPU over `cpu` / `reference`.
    let host = entries
        .iter()
        .position(|entry| entry.name == "cpu" || entry.name == ReferenceBackend::NAME)
        .unwrap_or(entries.len());
    entries.splice(host..host, wgpu_hardware);
    entries.extend(wgpu_software);
    entries
}

/// `cuda:N` for every CUDA device, or why the family is unavailable.
#[cfg(feature = "cuda")]
fn cuda_entries() -> Vec<DeviceEntry> {
    crate::cuda::discover()
}

#[cfg(not(feature = "cuda"))]
fn cuda_entries() -> Vec<DeviceEntry> {
    vec![DeviceEntry::unavailable(
        "cuda",
        "built without the `cuda` cargo feature",
    )]
}

/// The wgpu adapters: (hardware adapters or the family's failure, software
/// adapters).
#[cfg(feature = "wgpu")]
fn wgpu_entries() -> (Vec<DeviceEntry>, Vec<DeviceEntry>) {
    crate::wgpu::discover()
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_entries() -> (Vec<DeviceEntry>, Vec<DeviceEntry>) {
    let reason = "built without the `wgpu` cargo feature";
    (vec![DeviceEntry::unavailable("wgpu", reason)], Vec::new())
}

/// Every device radiant can use here, and every family it cannot, with why.
pub fn devices() -> Vec<DeviceEntry> {
    discover_all()
}

/// Selects a device by name: `reference`, `cpu`, `cuda:0`, `rocm:0`,
/// `wgpu:0` (a bare family name means its device 0), or `best` (the first
/// available in the order CUDA, ROCm, wgpu, cpu, reference).
pub fn device(name: &str) -> Result<Arc<dyn Backend>> {
    let entries = discover_all();
    if name == "best" {
        return entries
            .into_iter()
            .find_map(|entry| entry.status.ok())
            .ok_or_else(|| Error::Unavailable {
                backend: "best".into(),
                reason: "no backend is available".into(),
            });
    }
    let wanted = if name.contains(':') || name == ReferenceBackend::NAME || name == "cpu" {
        name.to_string()
    } else {
        format!("{name}:0")
    };
    let family = wanted.split(':').next().unwrap_or_default().to_string();
    let mut family_reason = None;
    for entry in entries {
        match entry.status {
            Ok(backend) if entry.name == wanted => return Ok(backend),
            Err(reason) if entry.name == family || entry.name == wanted => {
                family_reason = Some(reason)
            }
            _ => {}
        }
    }
    Err(Error::Unavailable {
        backend: name.to_string(),
        reason: family_reason.unwrap_or_else(|| {
            "no such device (expected reference, cpu, cuda:N, rocm:N, wgpu:N or best)".to_string()
        }),
    })
}
