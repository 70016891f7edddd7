//! In-place access to the host buffers of one op call.
//!
//! The `cpu` backend never copies inputs out of host memory (weights are
//! gigabytes). [`lock`] takes a read guard on every distinct input buffer
//! and a write guard on every output buffer, acquiring all of them in
//! ascending [`Buffer::id`] order, so two calls on different threads that
//! share buffers can never deadlock. The ops layer guarantees that an output
//! shares its buffer with no other argument; inputs may share buffers among
//! themselves (they are deduplicated, one read guard per buffer).
//!
//! Views are then cast to their dtype in place: the buffer base is 64-byte
//! aligned and view offsets are in elements, so the cast is always aligned.

use bytemuck::Pod;

use crate::cpu::memory::{HostMemory, HostRead, HostWrite};
use crate::error::{Error, Result};
use crate::tensor::{Buffer, Tensor};

/// The guards of one op call. Dropping it releases every lock.
pub(crate) struct Locked<'a> {
    op: &'static str,
    reads: Vec<(u64, HostRead<'a>)>,
    writes: Vec<(u64, HostWrite<'a>)>,
}

fn memory<'a>(op: &'static str, buffer: &'a Buffer) -> Result<&'a HostMemory> {
    HostMemory::of(buffer).ok_or_else(|| {
        Error::invalid(
            op,
            "buffer",
            format!("lives on {}, not in host memory", buffer.device()),
        )
    })
}

/// Locks the buffers of `inputs` (shared) and `outputs` (exclusive) in
/// ascending buffer-id order.
pub(crate) fn lock<'a>(
    op: &'static str,
    inputs: &[&'a Tensor],
    outputs: &[&'a Tensor],
) -> Result<Locked<'a>> {
    // (id, buffer, writable), one entry per distinct buffer.
    let mut wanted: Vec<(u64, &'a Buffer, bool)> = Vec::new();
    for (t, write) in outputs
        .iter()
        .map(|t| (t, true))
        .chain(inputs.iter().map(|t| (t, false)))
    {
        let buffer = t.buffer();
        match wanted.iter_mut().find(|(id, _, _)| *id == buffer.id()) {
            Some(entry) if write || entry.2 => {
                return Err(Error::Device {
                    backend: "cpu".into(),
                    op,
                    reason: "internal: an output shares its buffer with another argument".into(),
                });
            }
            Some(_) => {}
            None => wanted.push((buffer.id(), buffer, write)),
        }
    }
    wanted.sort_by_key(|(id, _, _)| *id);
    let mut locked = Locked {
        op,
        reads: Vec::new(),
        writes: Vec::new(),
    };
    for (id, buffer, write) in wanted {
        let memory = memory(op, buffer)?;
        if write {
            locked.writes.push((id, memory.write()));
        } else {
            locked.reads.push((id, memory.read()));
        }
    }
    Ok(locked)
}

fn view<'s, E: Pod>(op: &'static str, bytes: &'s [u8], t: &Tensor) -> Result<&'s [E]> {
    if t.byte_len() == 0 {
        // An empty view has no elements to align: memory wrapped from
        // outside (an empty numpy array) may sit at any address.
        return Ok(&[]);
    }
    let range = t.byte_offset()..t.byte_offset() + t.byte_len();
    bytes
        .get(range)
        .and_then(|b| bytemuck::try_cast_slice(b).ok())
        .ok_or_else(|| internal(op, t))
}

fn internal(op: &'static str, t: &Tensor) -> Error {
    Error::Device {
        backend: "cpu".into(),
        op,
        reason: format!("internal: cannot view {t:?} as its dtype in place"),
    }
}

impl<'a> Locked<'a> {
    /// Splits the guards into the inputs (shared slices) and the outputs
    /// (exclusive slices, each taken once).
    pub(crate) fn split(&mut self) -> (Inputs<'_>, Outputs<'_>) {
        let reads = self.reads.iter().map(|(id, g)| (*id, g.bytes())).collect();
        let writes = self
            .writes
            .iter_mut()
            .map(|(id, g)| (*id, Some(g.bytes_mut())))
            .collect();
        (
            Inputs { op: self.op, reads },
            Outputs {
                op: self.op,
                writes,
            },
        )
    }
}

/// The input buffers of a locked call.
pub(crate) struct Inputs<'g> {
    op: &'static str,
    reads: Vec<(u64, &'g [u8])>,
}

impl<'g> Inputs<'g> {
    /// The elements of input view `t`, in place.
    pub(crate) fn get<E: Pod>(&self, t: &Tensor) -> Result<&'g [E]> {
        let bytes = self
            .reads
            .iter()
            .find(|(id, _)| *id == t.buffer().id())
            .map(|(_, b)| *b)
            .ok_or_else(|| internal(self.op, t))?;
        view(self.op, bytes, t)
    }
}

/// The output buffers of a locked call.
pub(crate) struct Outputs<'g> {
    op: &'static str,
    writes: Vec<(u64, Option<&'g mut [u8]>)>,
}

impl<'g> Outputs<'g> {
    /// The elements of output view `t`, in place (once per buffer).
    pub(crate) fn take<E: Pod>(&mut self, t: &Tensor) -> Result<&'g mut [E]> {
        let op = self.op;
        let bytes = self
            .writes
            .iter_mut()
            .find(|(id, _)| *id == t.buffer().id())
            .and_then(|(_, b)| b.take())
            .ok_or_else(|| internal(op, t))?;
        if t.byte_len() == 0 {
            return Ok(&mut []); // as in `view`: nothing to align
        }
        let range = t.byte_offset()..t.byte_offset() + t.byte_len();
        bytes
            .get_mut(range)
            .and_then(|b| bytemuck::try_cast_slice_mut(b).ok())
            .ok_or_else(|| internal(op, t))
    }
}
