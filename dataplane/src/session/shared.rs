//! What every network thread can see: the configuration, the published catalog, where
//! partitions live and their published counters, consumer-group membership, connected clients,
//! admission, counters, and the stop sequence.
//!
//! The hot path only reads: the catalog is an immutable snapshot swapped atomically by the
//! metadata service, so a worker resolves names and permissions without a lock. Changes go to
//! the metadata service over a ring.

use crate::mesh::batch_buffers::BatchBufferPool;
use crate::mesh::lifecycle::Lifecycle;
use crate::metadata::CatalogView;
use crate::session::counters::WorkerCounters;
use crate::session::groups::GroupRegistry;
use crate::shard::counters::ShardCounters;
use crate::shard::directory::{effective_durability, partition_settings, PartitionDirectory};
use riptide_config::Config;
use riptide_storage::metadata::{Catalog, Durability, Topic};
use riptide_storage::{PartitionInfo, PartitionKey, PartitionSettings};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the data are plain
/// registries whose invariants hold between statements).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A connected client as `get_clients` shows it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub client_id: u32,
    pub address: String,
    pub user_id: Option<u32>,
    /// The session signed in on the connection (consumer sessions attach to it by this id).
    pub session_id: Option<u64>,
    pub transport: &'static str,
}

pub struct Shared {
    pub config: Config,
    pub started_at_us: u64,
    pub catalog: Arc<CatalogView>,
    /// Cluster mode only: who leads, whether this node takes writes, the roster.
    pub cluster: Option<Arc<crate::cluster::ClusterView>>,
    pub directory: Arc<PartitionDirectory>,
    pub shard_counters: Vec<Arc<ShardCounters>>,
    pub worker_counters: Vec<WorkerCounters>,
    pub groups: Mutex<GroupRegistry>,
    pub clients: Mutex<HashMap<u32, ClientInfo>>,
    /// Buffers of written batches, from the shards back to the network threads.
    pub batch_buffers: Arc<BatchBufferPool>,
    pub lifecycle: Arc<Lifecycle>,
    /// `retention.cleaner_interval_ms`, changeable live (the shards read it).
    pub cleaner_interval_ms: Arc<AtomicU64>,
    /// `[tls]` enabled: the server configuration new connections handshake with.
    pub tls: Option<Arc<crate::session::tls::TlsServer>>,
    /// Failed logins per peer address back off.
    pub login_throttle: crate::session::login_throttle::LoginThrottle,
    next_client_id: AtomicU32,
    /// Connections open across every network thread, against `tcp.connections_max`.
    connections_open: AtomicU32,
    bound_address: std::sync::OnceLock<std::net::SocketAddr>,
}

impl Shared {
    pub fn new(
        config: Config,
        catalog: Arc<CatalogView>,
        directory: Arc<PartitionDirectory>,
        workers: usize,
        started_at_us: u64,
    ) -> Shared {
        let cleaner_interval_ms = config.retention.cleaner_interval_ms;
        let login_throttle = crate::session::login_throttle::LoginThrottle::new(
            config.auth.login_backoff_after_failures,
            std::time::Duration::from_millis(config.auth.login_backoff_max_ms),
        );
        let shards = directory.shards();
        Shared {
            directory,
            config,
            started_at_us,
            catalog,
            cluster: None,
            shard_counters: (0..shards).map(|_| Arc::default()).collect(),
            worker_counters: (0..workers).map(|_| WorkerCounters::default()).collect(),
            groups: Mutex::new(GroupRegistry::default()),
            clients: Mutex::new(HashMap::new()),
            batch_buffers: Arc::default(),
            lifecycle: Arc::default(),
            cleaner_interval_ms: Arc::new(AtomicU64::new(cleaner_interval_ms)),
            next_client_id: AtomicU32::new(1),
            connections_open: AtomicU32::new(0),
            bound_address: std::sync::OnceLock::new(),
            tls: None,
            login_throttle,
        }
    }

    /// The current catalog snapshot (lock-free).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load()
    }

    pub fn metadata_commit(&self) -> u64 {
        self.catalog.commit()
    }

    pub fn shards(&self) -> usize {
        self.directory.shards()
    }

    /// The shard that owns a partition.
    pub fn shard_for(&self, key: PartitionKey) -> usize {
        self.directory.shard_for(key)
    }

    /// The published counters of a partition (zeros until its shard opened it).
    pub fn partition_info(&self, key: PartitionKey) -> PartitionInfo {
        self.directory.info(key)
    }

    /// The acknowledgement mode a topic gets: its `durability` option, never below the floor.
    pub fn effective_durability(&self, requested: Durability) -> Durability {
        effective_durability(
            requested,
            self.config.storage.ack_floor,
            self.cluster.is_some(),
        )
    }

    /// Storage settings of a topic's partitions.
    pub fn partition_settings(&self, topic: &Topic) -> PartitionSettings {
        partition_settings(topic, self.config.storage.ack_floor)
    }

    /// The address the TCP listeners bound (the configured port may be 0).
    pub fn bound_address(&self) -> Option<std::net::SocketAddr> {
        self.bound_address.get().copied()
    }

    pub fn set_bound_address(&self, address: std::net::SocketAddr) {
        let _ = self.bound_address.set(address);
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

    pub fn shutting_down(&self) -> bool {
        self.lifecycle.shutting_down()
    }
}
