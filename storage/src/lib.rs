//! riptide-storage: durable partition logs on io_uring + O_DIRECT, with group commit, crash
//! recovery, consumer offsets and retention. See `docs/internals.md` for the `Shard` contract.
//!
//! Layers, bottom up: `io` (the only module talking to the kernel), `record` / `index` /
//! `segment` (on-disk structures and recovery), `partition` (write path with group commit),
//! `read` and `readahead` (polls), `offsets` (consumer offsets), `retention`, `shard` (the
//! public API, one per storage thread). `testkit` builds deterministic batches for tests, the
//! crash helper and the benchmark.

pub mod constants;
mod engine;
pub mod index;
pub mod io;
mod memory_sync;
pub mod metadata;
mod offsets;
mod partition;
mod read;
mod readahead;
pub mod record;
mod retention;
pub mod segment;
mod shard;
pub mod stats;
pub mod testkit;
mod types;

pub use shard::Shard;
pub use stats::{LatencyHistogram, ShardStats};
pub use types::*;
