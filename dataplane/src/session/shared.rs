//! State every thread can see: the configuration, the metadata catalog, consumer-group
//! membership, connected clients, and per-partition counters.
//!
//! The hot path only reads: the catalog is an immutable snapshot swapped atomically (`arc-swap`),
//! so a worker resolves names and permissions without a lock. Metadata changes are rare; they are
//! serialised by one mutex, made durable by the metadata store, then published as a new snapshot.

use crate::mesh::batch_buffers::BatchBufferPool;
use crate::session::counters::WorkerCounters;
use crate::session::groups::GroupRegistry;
use crate::shard::counters::ShardCounters;
use arc_swap::ArcSwap;
use riptide_config::{AckFloor, Config};
use riptide_protocol::codes::ErrorCode;
use riptide_storage::metadata::{
    Catalog, Change, Durability, MetadataStore, SecretError, Topic, VerifiedLogins,
};
use riptide_storage::{
    AckMode, MemoryFlush, MemorySync, PartitionInfo, PartitionKey, PartitionSettings, StorageConfig,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Microseconds since the Unix epoch (the protocol's time unit).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the data are plain
/// registries whose invariants hold between statements).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A partition's offsets and sizes as its shard last published them.
#[derive(Debug, Default)]
pub struct PartitionCounters {
    /// Offset of the last message plus one; 0 while the partition is empty.
    next_offset: AtomicU64,
    messages_count: AtomicU64,
    size_bytes: AtomicU64,
    segments_count: AtomicU64,
}

impl PartitionCounters {
    pub fn publish(&self, info: &PartitionInfo) {
        self.next_offset
            .store(info.current_offset.map_or(0, |o| o + 1), Ordering::Relaxed);
        self.messages_count
            .store(info.messages_count, Ordering::Relaxed);
        self.size_bytes.store(info.size_bytes, Ordering::Relaxed);
        self.segments_count
            .store(u64::from(info.segments_count), Ordering::Relaxed);
    }

    pub fn read(&self) -> PartitionInfo {
        let next_offset = self.next_offset.load(Ordering::Relaxed);
        PartitionInfo {
            current_offset: next_offset.checked_sub(1),
            messages_count: self.messages_count.load(Ordering::Relaxed),
            size_bytes: self.size_bytes.load(Ordering::Relaxed),
            segments_count: self.segments_count.load(Ordering::Relaxed) as u32,
        }
    }
}

/// A connected client as `get_clients` shows it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub client_id: u32,
    pub address: String,
    pub user_id: Option<u32>,
    pub transport: &'static str,
}

pub struct Shared {
    pub config: Config,
    pub data_dir: PathBuf,
    pub started_at_us: u64,
    pub shard_counters: Vec<ShardCounters>,
    pub worker_counters: Vec<WorkerCounters>,
    pub groups: Mutex<GroupRegistry>,
    pub clients: Mutex<HashMap<u32, ClientInfo>>,
    /// Buffers of written batches, from the shards back to the network workers.
    pub batch_buffers: BatchBufferPool,
    pub verified_logins: VerifiedLogins,
    catalog: ArcSwap<Catalog>,
    metadata: Mutex<MetadataStore>,
    partitions: Mutex<HashMap<PartitionKey, Arc<PartitionCounters>>>,
    /// Count of durable metadata changes: the `commit` field of metadata replies.
    metadata_commit: AtomicU64,
    next_client_id: AtomicU32,
    /// `retention.cleaner_interval_ms`, changeable live.
    cleaner_interval_ms: AtomicU64,
    /// Connections open across every network worker, against `tcp.connections_max`.
    connections_open: AtomicU32,
    shutdown: AtomicBool,
    /// Set only after every network worker stopped, so no request can reach a stopped shard.
    storage_stop: AtomicBool,
    shards: usize,
    bound_address: std::sync::OnceLock<std::net::SocketAddr>,
}

impl Shared {
    pub fn new(
        config: Config,
        store: MetadataStore,
        catalog: Catalog,
        workers: usize,
        shards: usize,
    ) -> Result<Shared, SecretError> {
        let cleaner_interval_ms = config.retention.cleaner_interval_ms;
        let verified_logins =
            VerifiedLogins::new(Duration::from_secs(config.auth.verified_login_ttl_s))?;
        Ok(Shared {
            data_dir: config.system.path.clone(),
            config,
            started_at_us: now_us(),
            shard_counters: (0..shards).map(|_| ShardCounters::default()).collect(),
            worker_counters: (0..workers).map(|_| WorkerCounters::default()).collect(),
            groups: Mutex::new(GroupRegistry::default()),
            clients: Mutex::new(HashMap::new()),
            batch_buffers: BatchBufferPool::default(),
            verified_logins,
            catalog: ArcSwap::from_pointee(catalog),
            metadata: Mutex::new(store),
            partitions: Mutex::new(HashMap::new()),
            metadata_commit: AtomicU64::new(0),
            next_client_id: AtomicU32::new(1),
            connections_open: AtomicU32::new(0),
            cleaner_interval_ms: AtomicU64::new(cleaner_interval_ms),
            shutdown: AtomicBool::new(false),
            storage_stop: AtomicBool::new(false),
            shards,
            bound_address: std::sync::OnceLock::new(),
        })
    }

    /// The current catalog snapshot (lock-free).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    pub fn metadata_commit(&self) -> u64 {
        self.metadata_commit.load(Ordering::Acquire)
    }

    /// Applies a metadata change built from the current catalog: validated, made durable, then
    /// published. `build` runs under the metadata lock, so ids it allocates cannot collide.
    ///
    /// # Errors
    /// The code `build` returns, the catalog's validation error, or `CannotPersist` (as Iggy's
    /// generic `Error` code) when the store cannot write.
    pub fn mutate<R>(
        &self,
        build: impl FnOnce(&Catalog) -> Result<(Change, R), ErrorCode>,
    ) -> Result<(R, Arc<Catalog>), ErrorCode> {
        let mut store = lock(&self.metadata);
        let current = self.catalog.load_full();
        let (change, result) = build(&current)?;
        let mut next = Catalog::clone(&current);
        next.apply(&change)
            .map_err(|error| crate::session::dispatch::catalog_error_code(&error))?;
        store.apply(&change).map_err(|error| {
            tracing::error!(%error, "metadata change could not be made durable");
            ErrorCode::Error
        })?;
        let next = Arc::new(next);
        self.catalog.store(Arc::clone(&next));
        self.metadata_commit.fetch_add(1, Ordering::AcqRel);
        Ok((result, next))
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The shard that owns a partition.
    pub fn shard_for(&self, key: PartitionKey) -> usize {
        shard_of(key, self.shards)
    }

    pub fn partition_dir(&self, key: PartitionKey) -> PathBuf {
        self.data_dir
            .join("streams")
            .join(key.stream_id.to_string())
            .join("topics")
            .join(key.topic_id.to_string())
            .join("partitions")
            .join(key.partition_id.to_string())
    }

    /// Every partition in the catalog that `shard` owns, with its settings.
    pub fn owned_partitions(&self, shard: usize) -> Vec<(PartitionKey, PartitionSettings)> {
        let catalog = self.catalog();
        let mut owned = Vec::new();
        for stream in catalog.streams().values() {
            for topic in stream.topics.values() {
                let settings = self.partition_settings(topic);
                for partition in &topic.partitions {
                    let key = PartitionKey {
                        stream_id: stream.id,
                        topic_id: topic.id,
                        partition_id: partition.id,
                    };
                    if self.shard_for(key) == shard {
                        owned.push((key, settings));
                    }
                }
            }
        }
        owned
    }

    /// The acknowledgement mode a topic gets: its `durability` option, never below the floor.
    pub fn effective_durability(&self, requested: Durability) -> Durability {
        match self.config.storage.ack_floor {
            AckFloor::Persisted => Durability::Persisted,
            AckFloor::Memory => requested,
        }
    }

    /// Storage settings of a topic's partitions. The topic's size limit is shared evenly by its
    /// partitions, since each partition's retention runs on its own shard.
    pub fn partition_settings(&self, topic: &Topic) -> PartitionSettings {
        let ack_mode = match self.effective_durability(topic.options.durability) {
            Durability::Persisted => AckMode::Durable,
            Durability::Replicated => AckMode::Memory,
        };
        let partitions = topic.partitions.len().max(1) as u64;
        PartitionSettings {
            ack_mode,
            message_expiry_us: (topic.options.message_expiry_us != u64::MAX
                && topic.options.message_expiry_us != 0)
                .then_some(topic.options.message_expiry_us),
            max_size_bytes: (topic.options.max_topic_size_bytes != u64::MAX
                && topic.options.max_topic_size_bytes != 0)
                .then(|| topic.options.max_topic_size_bytes / partitions),
            segment_size_bytes: Some(topic.options.segment_size_bytes),
        }
    }

    pub fn storage_config(&self) -> StorageConfig {
        let storage = &self.config.storage;
        StorageConfig {
            segment_size_bytes: storage.segment_size_bytes,
            cache_size_bytes: (storage.read_cache_bytes / self.config.storage_shards() as u64)
                as usize,
            write_buffer_size_bytes: storage.write_buffer_bytes as usize,
            read_buffer_size_bytes: storage.read_buffer_bytes as usize,
            readahead_reads_in_flight_max: storage.readahead_reads_in_flight as usize,
            preallocate: storage.preallocate_segments,
            direct_io: storage.direct_io != riptide_config::DirectIo::Off,
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

    pub fn register_partition(&self, key: PartitionKey) -> Arc<PartitionCounters> {
        Arc::clone(lock(&self.partitions).entry(key).or_default())
    }

    pub fn unregister_partition(&self, key: PartitionKey) {
        lock(&self.partitions).remove(&key);
    }

    /// The published counters of a partition (zeros until its shard opened it).
    pub fn partition_info(&self, key: PartitionKey) -> PartitionInfo {
        lock(&self.partitions)
            .get(&key)
            .map(|c| c.read())
            .unwrap_or_default()
    }

    /// The address the TCP listeners bound (the configured port may be 0).
    pub fn bound_address(&self) -> Option<std::net::SocketAddr> {
        self.bound_address.get().copied()
    }

    pub fn set_bound_address(&self, address: std::net::SocketAddr) {
        let _ = self.bound_address.set(address);
    }

    pub fn cleaner_interval_ms(&self) -> u64 {
        self.cleaner_interval_ms.load(Ordering::Relaxed)
    }

    pub fn set_cleaner_interval_ms(&self, interval_ms: u64) {
        self.cleaner_interval_ms
            .store(interval_ms, Ordering::Relaxed);
    }

    /// Counts a new connection in, unless `tcp.connections_max` are open already.
    pub fn admit_connection(&self) -> bool {
        let max = self.config.tcp.connections_max;
        self.connections_open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .is_ok()
    }

    /// Counts a closed connection out (each admitted connection exactly once).
    pub fn release_connection(&self) {
        self.connections_open.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn next_client_id(&self) -> u32 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    pub fn request_storage_stop(&self) {
        self.storage_stop.store(true, Ordering::Release);
    }

    pub fn storage_stopping(&self) -> bool {
        self.storage_stop.load(Ordering::Acquire)
    }
}

/// A partition's shard: a function of its ids alone, so ownership survives restarts. Ids are
/// handed out in sequence, so their sum spreads a topic's partitions, and streams or topics of
/// one partition each, evenly over the shards (an XxHash32 of the ids put streams 0..3 all on
/// shard 0 of 2, and on only 2 of 4 shards).
fn shard_of(key: PartitionKey, shards: usize) -> usize {
    let ids_sum = u64::from(key.stream_id) + u64::from(key.topic_id) + u64::from(key.partition_id);
    (ids_sum % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(stream_id: u32, topic_id: u32, partition_id: u32) -> PartitionKey {
        PartitionKey {
            stream_id,
            topic_id,
            partition_id,
        }
    }

    #[test]
    fn partitions_of_a_topic_and_single_partition_streams_spread_evenly() {
        for shards in 1..=4 {
            let mut per_shard = vec![0; shards];
            for partition_id in 0..8 * shards as u32 {
                per_shard[shard_of(key(3, 1, partition_id), shards)] += 1;
            }
            assert!(per_shard.iter().all(|&count| count == 8), "{per_shard:?}");
            let streams: Vec<usize> = (0..shards as u32)
                .map(|stream_id| shard_of(key(stream_id, 0, 0), shards))
                .collect();
            assert_eq!(streams, (0..shards).collect::<Vec<_>>());
        }
    }
}
