//! The storage engine's configuration, from `riptide.toml`.

use riptide_config::{Config, DirectIo};
use riptide_storage::{MemoryFlush, MemorySync, StorageConfig};
use std::time::Duration;

/// The configuration of each shard's storage engine; the read cache is split evenly among the
/// shards.
pub fn storage_config(config: &Config) -> StorageConfig {
    let storage = &config.storage;
    StorageConfig {
        segment_size_bytes: storage.segment_size_bytes,
        cache_size_bytes: (storage.read_cache_bytes / config.storage_shards() as u64) as usize,
        write_buffer_size_bytes: storage.write_buffer_bytes as usize,
        read_buffer_size_bytes: storage.read_buffer_bytes as usize,
        readahead_reads_in_flight_max: storage.readahead_reads_in_flight as usize,
        preallocate: storage.preallocate_segments,
        direct_io: storage.direct_io != DirectIo::Off,
        memory_flush: MemoryFlush {
            size_bytes: storage.memory_flush_bytes as usize,
            messages_count: storage.memory_flush_messages,
            interval_us: storage.memory_flush_interval_ms * 1000,
        },
        memory_sync: MemorySync {
            interval_us: storage.memory_sync_interval_ms * 1000,
            size_bytes: storage.memory_sync_bytes,
        },
        deferred_offset_write_delay: Duration::from_millis(storage.auto_commit_write_delay_ms),
        ..StorageConfig::default()
    }
}
