//! riptide-storage: durable partition logs on io_uring + O_DIRECT, with group commit, crash
//! recovery, consumer offsets and retention. See `docs/internals.md` for the `Shard` contract.
//!
//! Modules are layers: each names only modules below it (`storage/tests/layers.rs` fails on an
//! edge that runs the wrong way). Bottom up:
//!
//! ```text
//! constants                    limits (the shared ones from riptide-config)
//! types, stats                 the public plain-data types and counters
//! io, memory_sync, retention   the kernel (io_uring, O_DIRECT, fsync); pure policies
//! engine                       the I/O engine: ring + slot table, generic over its requests' tags
//! index, segment               on-disk structures and their recovery (records are the protocol
//!                              crate's batches: riptide_protocol::batch)
//! context                      what the layers above share in a shard: the engine with its tags,
//!                              completions, counters
//! offsets                      consumer offsets
//! partition                    one partition's write path with group commit, its cache
//! read                         polls: from memory, or a disk read walked and checked
//! readahead                    the read side of a shard: buffers, reads in flight, windows
//! shard                        the public API, one per storage thread
//! metadata, testkit            the metadata store; deterministic batches for tests and tools
//! ```

pub mod constants;
mod context;
mod engine;
pub mod index;
pub mod io;
mod memory_sync;
pub mod metadata;
mod offsets;
mod partition;
mod read;
mod readahead;
mod retention;
pub mod segment;
mod shard;
pub mod stats;
pub mod testkit;
mod types;

pub use shard::Shard;
pub use stats::{LatencyHistogram, ShardStats};
pub use types::*;
