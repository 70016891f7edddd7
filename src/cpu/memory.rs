//! Host memory shared by the `reference` and `cpu` backends.
//!
//! A buffer is a run of host bytes behind a lock: views of any dtype can be
//! read in place, and concurrent calls from several threads are data-race
//! free. Both host backends accept each other's buffers (it is the same
//! memory).
//!
//! The bytes are either
//! * owned: a 64-byte aligned allocation made by [`HostMemory::alloc`]
//!   (what every backend `alloc` returns), or
//! * external: memory someone else allocated (a numpy array, a DLPack
//!   producer such as torch), wrapped without copying by
//!   [`HostMemory::from_external`], which keeps the producer alive until the
//!   last view of the buffer is dropped.
//!
//! Alignment. Owned buffers are 64-byte aligned; external buffers need only
//! [`EXTERNAL_ALIGN`] = 4 bytes, the largest element size of any radiant
//! dtype, so that a view at any element offset is aligned for its dtype.
//! Nothing in the CPU kernels needs more: `cpu::access` casts views with
//! `bytemuck::try_cast_slice` (checked, an error rather than undefined
//! behaviour if it were ever wrong), every SIMD load and store is an
//! unaligned one (`loadu` / `storeu` / `read_unaligned`), and the one
//! aligned store (the non-temporal `stream` of rms_norm) first walks to an
//! aligned address with `align_offset`. The 64-byte alignment of owned
//! buffers is for cache lines, not for correctness.

use std::any::Any;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::tensor::{Buffer, HostTensor, Tensor};

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// The smallest alignment, in bytes, of memory given to
/// [`HostMemory::from_external`] (see the module docs).
pub const EXTERNAL_ALIGN: usize = 4;

/// Who owns the bytes.
enum Storage {
    /// Allocated here. The vector is never touched again after its pointer
    /// is taken (only dropped), so the pointer stays valid.
    Owned(#[allow(dead_code)] Vec<Line>),
    /// Someone else's memory; dropping the owner releases it. Behind a
    /// mutex only so that `HostMemory` is `Sync` for any `Send` owner (the
    /// owner is never accessed, only dropped).
    External(#[allow(dead_code)] Mutex<Box<dyn Any + Send>>),
}

/// The memory behind a host [`Buffer`].
pub struct HostMemory {
    /// Start of the bytes (dangling when `len` is 0). Every access goes
    /// through this pointer, under `lock`.
    ptr: NonNull<u8>,
    len: usize,
    lock: RwLock<()>,
    _storage: Storage,
}

// SAFETY: `ptr` points to memory owned by `_storage` (a vector, or the
// producer that `from_external`'s caller promised keeps it alive and valid),
// which is `Send` and is dropped with `self`. Shared and exclusive access to
// the bytes is only handed out through `read` / `write`, which hold the
// read / write side of `lock` for the lifetime of the slices they return,
// so moving the memory to another thread or sharing it between threads
// cannot produce a data race inside radiant. (Writers outside radiant, who
// got the pointer from `as_ptr`, are bound by its contract.)
unsafe impl Send for HostMemory {}
// SAFETY: as above: every `&self` method either returns plain values or
// goes through `lock`.
unsafe impl Sync for HostMemory {}

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
        // `as_mut_ptr` materializes no reference to the elements, and the
        // vector is never accessed again (it moves into `_storage`, which
        // does not move its heap allocation), so the pointer stays valid.
        let ptr = NonNull::new(lines.as_mut_ptr().cast::<u8>()).unwrap_or(NonNull::dangling());
        let memory = HostMemory {
            ptr,
            len,
            lock: RwLock::new(()),
            _storage: Storage::Owned(lines),
        };
        Ok(Buffer::new(device, len, Arc::new(memory)))
    }

    /// Wraps `len` bytes of someone else's host memory at `ptr` as a buffer
    /// of device `device`, without copying. `owner` is kept until the last
    /// clone of the buffer (and of every view of it) is dropped, then
    /// dropped — on whichever thread drops the buffer last.
    ///
    /// Fails (so that the caller copies instead) if `ptr` is null while
    /// `len > 0`, or not aligned to [`EXTERNAL_ALIGN`].
    ///
    /// # Safety
    ///
    /// Until `owner` is dropped, the `len` bytes at `ptr` must stay
    /// allocated, initialized, readable and writable (ops write only to
    /// buffers they are given as outputs, but a caller may pass this
    /// buffer as one), and must not be accessed by anything outside
    /// radiant while a radiant op or upload / download is using the buffer
    /// (radiant's own accesses are serialized by the buffer's lock; outside
    /// readers and writers are not). Dropping `owner` must be safe on any
    /// thread.
    pub unsafe fn from_external(
        device: &str,
        ptr: *mut u8,
        len: usize,
        owner: Box<dyn Any + Send>,
    ) -> Result<Buffer> {
        let ptr = match NonNull::new(ptr) {
            Some(p) => p,
            None if len == 0 => NonNull::dangling(),
            None => {
                return Err(Error::invalid(
                    "from_external",
                    "ptr",
                    format!("null pointer for {len} bytes"),
                ));
            }
        };
        if len > 0 && !(ptr.as_ptr() as usize).is_multiple_of(EXTERNAL_ALIGN) {
            return Err(Error::invalid(
                "from_external",
                "ptr",
                format!("address {ptr:p} is not {EXTERNAL_ALIGN}-byte aligned"),
            ));
        }
        if len > isize::MAX as usize {
            return Err(Error::invalid(
                "from_external",
                "len",
                format!("{len} bytes exceed isize::MAX"),
            ));
        }
        let memory = HostMemory {
            ptr,
            len,
            lock: RwLock::new(()),
            _storage: Storage::External(Mutex::new(owner)),
        };
        Ok(Buffer::new(device, len, Arc::new(memory)))
    }

    /// The host memory of `buffer`, or `None` for a device buffer.
    pub fn of(buffer: &Buffer) -> Option<&HostMemory> {
        buffer.memory::<HostMemory>()
    }

    /// True for memory wrapped by [`HostMemory::from_external`].
    pub fn is_external(&self) -> bool {
        matches!(self._storage, Storage::External(_))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-byte buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of the first byte, for handing the memory to another
    /// library without copying (DLPack export). Valid, for `len` bytes,
    /// while this memory (any clone of its buffer) is alive. Using it is
    /// the caller's `unsafe`: radiant's lock is not taken, so reads and
    /// writes through it must not overlap a radiant op or upload / download
    /// on the same buffer.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn read(&self) -> HostRead<'_> {
        // A panic while holding the lock cannot leave bytes in an invalid
        // state (every bit pattern is a valid byte), so poisoning is ignored.
        let guard = self.lock.read().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `ptr` is valid for `len` initialized bytes while `self`
        // lives (owned: the vector; external: `from_external`'s contract),
        // and the read guard, held as long as the slice, excludes writers.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) };
        HostRead {
            _guard: guard,
            bytes,
        }
    }

    pub fn write(&self) -> HostWrite<'_> {
        let guard = self.lock.write().unwrap_or_else(|e| e.into_inner());
        // SAFETY: as in `read`; the write guard, held as long as the slice,
        // excludes every other reader and writer.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) };
        HostWrite {
            _guard: guard,
            bytes,
        }
    }
}

/// Shared access to a host buffer's bytes.
pub struct HostRead<'a> {
    _guard: RwLockReadGuard<'a, ()>,
    bytes: &'a [u8],
}

impl HostRead<'_> {
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }
}

/// Exclusive access to a host buffer's bytes.
pub struct HostWrite<'a> {
    _guard: RwLockWriteGuard<'a, ()>,
    bytes: &'a mut [u8],
}

impl HostWrite<'_> {
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::backend::Backend;
    use crate::cpu::{CpuBackend, ReferenceBackend};
    use crate::dtype::DType;
    use crate::ops::{self, MatmulParams, RmsNormParams};

    /// Counts its drops.
    struct Owner(Arc<AtomicUsize>);
    impl Drop for Owner {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// `values` as f32 bytes in a vector of u32 words (4-byte aligned), with
    /// `pad` leading words so the data starts off a 64-byte boundary.
    fn words(values: &[f32], pad: usize) -> Vec<u32> {
        let mut w = vec![0u32; pad];
        w.extend(values.iter().map(|v| v.to_bits()));
        w
    }

    #[test]
    fn external_memory_is_shared_and_released_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut data = words(&[1.0, 2.0, 3.0, 4.0], 1);
        let ptr = data[1..].as_mut_ptr().cast::<u8>();
        // SAFETY: `data` outlives every clone of the buffer (dropped below,
        // before `data`), and nothing else touches it meanwhile.
        let buffer =
            unsafe { HostMemory::from_external("cpu", ptr, 16, Box::new(Owner(drops.clone()))) }
                .unwrap();
        let memory = HostMemory::of(&buffer).unwrap();
        assert!(memory.is_external() && memory.len() == 16 && memory.as_ptr() == ptr);
        assert_eq!(&memory.read().bytes()[4..8], &2.0f32.to_le_bytes());
        memory.write().bytes_mut()[0..4].copy_from_slice(&9.0f32.to_le_bytes());
        let clone = buffer.clone();
        drop(buffer);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(clone);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(f32::from_bits(data[1]), 9.0);
    }

    #[test]
    fn unaligned_or_null_external_memory_is_refused() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut data = vec![0u32; 4];
        let odd = data.as_mut_ptr().cast::<u8>().wrapping_add(2);
        // SAFETY: refused before anything is read; the owner is dropped.
        let r = unsafe { HostMemory::from_external("cpu", odd, 8, Box::new(Owner(drops.clone()))) };
        assert!(r.is_err());
        // SAFETY: as above.
        let r = unsafe {
            HostMemory::from_external(
                "cpu",
                std::ptr::null_mut(),
                8,
                Box::new(Owner(drops.clone())),
            )
        };
        assert!(r.is_err());
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        // A zero-length buffer may have a null pointer.
        // SAFETY: nothing is addressed.
        let empty =
            unsafe { HostMemory::from_external("cpu", std::ptr::null_mut(), 0, Box::new(())) }
                .unwrap();
        assert!(HostMemory::of(&empty).unwrap().read().bytes().is_empty());
    }

    /// The CPU kernels need only element alignment: an external buffer
    /// starting 4 bytes past a 64-byte boundary gives the same results as an
    /// owned one, through the SIMD (`cpu`) and scalar (`reference`) paths.
    #[test]
    fn kernels_run_on_external_memory_aligned_to_4_bytes() {
        let (rows, cols) = (3usize, 37usize);
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 4.0)
            .collect();
        let w: Vec<f32> = (0..cols).map(|i| 0.5 + i as f32 / 64.0).collect();
        let backends: [Arc<dyn Backend>; 2] = [
            Arc::new(CpuBackend::new()),
            Arc::new(ReferenceBackend::new()),
        ];
        for be in backends {
            let be = be.as_ref();
            for pad in 0..4 {
                let mut xs = words(&x, pad + 1);
                let ptr = xs[pad + 1..].as_mut_ptr().cast::<u8>();
                // SAFETY: `xs` outlives the buffer (the tensors using it are
                // dropped at the end of this iteration, before `xs`).
                let buffer =
                    unsafe { HostMemory::from_external(be.name(), ptr, x.len() * 4, Box::new(())) }
                        .unwrap();
                let ext = Tensor::from_buffer(buffer, DType::F32, &[rows, cols], 0).unwrap();
                let own = be
                    .upload_tensor(&HostTensor::from_f32(DType::F32, &[rows, cols], &x).unwrap())
                    .unwrap();
                let wt = be
                    .upload_tensor(&HostTensor::from_f32(DType::F32, &[cols], &w).unwrap())
                    .unwrap();
                let params = RmsNormParams {
                    eps: 1e-6,
                    weight_offset: 0.0,
                };
                let a = ops::rms_norm(be, &ext, &wt, params).unwrap();
                let b = ops::rms_norm(be, &own, &wt, params).unwrap();
                assert_eq!(
                    be.download_tensor(&a).unwrap(),
                    be.download_tensor(&b).unwrap()
                );
                let wm = wt.reshape(&[cols, 1]).unwrap();
                let a = ops::matmul(be, &ext, &wm, None, MatmulParams::default()).unwrap();
                let b = ops::matmul(be, &own, &wm, None, MatmulParams::default()).unwrap();
                assert_eq!(
                    be.download_tensor(&a).unwrap(),
                    be.download_tensor(&b).unwrap()
                );
            }
        }
    }
}
