//! Storage shards: each owns a share of the partitions through a `riptide_storage::Shard` (one
//! io_uring) and runs on a pinned thread of its own. This folder is the shard's executor and its
//! vocabulary; the thread that feeds it from the rings is `mesh::shard_thread`.

mod config;
pub mod core;
pub mod counters;
pub mod directory;
pub mod effects;
pub mod ops;

pub use self::config::storage_config;
pub use self::core::{ShardCore, ShardEnv};
pub use directory::{partition_settings, PartitionDirectory};
pub use ops::{PollFrom, ShardOp, ShardOutcome};
