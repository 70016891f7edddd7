//! Host memory shared by the `reference` and `cpu` backends.
//!
//! A buffer is a 64-byte aligned byte vector behind a lock: views of any
//! dtype can be read in place, SIMD loads are aligned, and concurrent calls
//! from several threads are data-race free. Both host backends accept each
//! other's buffers (it is the same memory).

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::tensor::{Buffer, HostTensor, Tensor};

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// The memory behind a host [`Buffer`].
pub struct HostMemory {
    lines: RwLock<Vec<Line>>,
    len: usize,
}

impl HostMemory {
    /// A zero-filled host buffer of `len` bytes, owned by device `device`.
    pub fn alloc(device: &str, len: usize) -> Result<Buffer> {
        let count = len.div_ceil(64);
        let mut lines = Vec::new();
        lines
            .try_reserve_exact(count)
            .map_err(|_| Error::OutOfMemory {
                backend: device.to_string(),
                bytes: len,
            })?;
        lines.resize(count, Line([0; 64]));
        let memory = HostMemory {
            lines: RwLock::new(lines),
            len,
        };
        Ok(Buffer::new(device, len, Arc::new(memory)))
    }

    /// The host memory of `buffer`, or `None` for a device buffer.
    pub fn of(buffer: &Buffer) -> Option<&HostMemory> {
        buffer.memory::<HostMemory>()
    }

    pub fn read(&self) -> HostRead<'_> {
        // A panic while holding the lock cannot leave bytes in an invalid
        // state (every bit pattern is a valid byte), so poisoning is ignored.
        HostRead {
            guard: self.lines.read().unwrap_or_else(|e| e.into_inner()),
            len: self.len,
        }
    }

    pub fn write(&self) -> HostWrite<'_> {
        HostWrite {
            guard: self.lines.write().unwrap_or_else(|e| e.into_inner()),
            len: self.len,
        }
    }
}

/// Shared access to a host buffer's bytes.
pub struct HostRead<'a> {
    guard: RwLockReadGuard<'a, Vec<Line>>,
    len: usize,
}

impl HostRead<'_> {
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<Line, u8>(&self.guard)[..self.len]
    }
}

/// Exclusive access to a host buffer's bytes.
pub struct HostWrite<'a> {
    guard: RwLockWriteGuard<'a, Vec<Line>>,
    len: usize,
}

impl HostWrite<'_> {
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<Line, u8>(&mut self.guard)[..self.len]
    }
}

fn host_memory<'a>(op: &'static str, arg: &'static str, t: &'a Tensor) -> Result<&'a HostMemory> {
    HostMemory::of(t.buffer()).ok_or_else(|| {
        Error::invalid(
            op,
            arg,
            format!("lives on {}, not in host memory", t.buffer().device()),
        )
    })
}

/// Copies a contiguous view out of host memory (the lock is held only for
/// the copy, so a backend that reads all inputs first, then writes outputs,
/// never holds two locks at once).
pub fn read_tensor(op: &'static str, arg: &'static str, t: &Tensor) -> Result<HostTensor> {
    let memory = host_memory(op, arg, t)?;
    let start = t.byte_offset();
    let bytes = memory.read().bytes()[start..start + t.byte_len()].to_vec();
    HostTensor::from_bytes(t.dtype(), t.shape(), bytes)
}

/// Writes a host tensor's bytes into a contiguous view of the same size.
pub fn write_tensor(
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
    value: &HostTensor,
) -> Result<()> {
    if value.bytes().len() != t.byte_len() {
        return Err(Error::Device {
            backend: t.buffer().device().to_string(),
            op,
            reason: format!(
                "internal: {} bytes computed for `{arg}` {:?}, view holds {}",
                value.bytes().len(),
                t.shape(),
                t.byte_len()
            ),
        });
    }
    let memory = host_memory(op, arg, t)?;
    let start = t.byte_offset();
    memory.write().bytes_mut()[start..start + t.byte_len()].copy_from_slice(value.bytes());
    Ok(())
}

/// The host memory of `buffer` if `len` bytes at `offset` lie inside it.
fn host_range<'a>(
    op: &'static str,
    buffer: &'a Buffer,
    offset: usize,
    len: usize,
) -> Result<&'a HostMemory> {
    let memory = HostMemory::of(buffer).ok_or_else(|| {
        Error::invalid(
            op,
            "buffer",
            format!("lives on {}, not in host memory", buffer.device()),
        )
    })?;
    if offset
        .checked_add(len)
        .is_none_or(|end| end > buffer.len_bytes())
    {
        return Err(Error::invalid(
            op,
            "offset",
            format!(
                "{len} bytes at offset {offset} exceed the {}-byte buffer",
                buffer.len_bytes()
            ),
        ));
    }
    Ok(memory)
}

/// `Backend::upload` for both host backends.
pub fn upload(dst: &Buffer, offset: usize, src: &[u8]) -> Result<()> {
    let memory = host_range("upload", dst, offset, src.len())?;
    memory.write().bytes_mut()[offset..offset + src.len()].copy_from_slice(src);
    Ok(())
}

/// `Backend::download` for both host backends.
pub fn download(src: &Buffer, offset: usize, dst: &mut [u8]) -> Result<()> {
    let memory = host_range("download", src, offset, dst.len())?;
    dst.copy_from_slice(&memory.read().bytes()[offset..offset + dst.len()]);
    Ok(())
}
