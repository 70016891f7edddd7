//! Host backends: `reference` (the oracle, in `reference/`) and, sharing the
//! same host memory, the fast `cpu` backend.

pub mod memory;
pub mod reference;

pub use reference::ReferenceBackend;
