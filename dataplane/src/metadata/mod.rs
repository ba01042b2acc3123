//! The metadata service: the one owner of the metadata store (streams, topics, partitions,
//! users, tokens, consumer groups). It runs on a thread of its own, reached over rings like a
//! shard (`mesh::metadata_thread`), so its fdatasync and its password hashing never stall a
//! network thread. Every other thread reads the catalog through [`CatalogView`], an immutable
//! snapshot swapped atomically after each change is durable.

mod errors;
mod service;

pub use errors::catalog_error_code;
pub use service::{snapshot_outcome, MetadataService, MetadataStartError};

use crate::shard::{ShardOp, ShardOutcome};
use arc_swap::ArcSwap;
use riptide_protocol::codes::ErrorCode;
use riptide_storage::metadata::{Catalog, Change};
use riptide_storage::{ConsumerRef, PartitionKey};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The published catalog: read lock-free by every thread, written by the metadata service only.
#[derive(Debug)]
pub struct CatalogView {
    current: ArcSwap<Catalog>,
    /// Count of durable metadata changes: the `commit` field of replies.
    commit: AtomicU64,
}

impl CatalogView {
    pub fn new(catalog: Catalog) -> CatalogView {
        CatalogView {
            current: ArcSwap::from_pointee(catalog),
            commit: AtomicU64::new(0),
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    pub fn commit(&self) -> u64 {
        self.commit.load(Ordering::Acquire)
    }

    /// Publishes the metadata service's new catalog; its commit number counts the changes.
    pub fn publish(&self, catalog: Arc<Catalog>) {
        self.current.store(catalog);
        self.commit.fetch_add(1, Ordering::AcqRel);
    }

    /// Publishes a cluster state machine's catalog as of log index `commit`: the same number on
    /// every node, so an SDK that moves to another node compares like with like (its
    /// metadata watermark).
    pub fn publish_at(&self, catalog: Arc<Catalog>, commit: u64) {
        self.current.store(catalog);
        self.commit.fetch_max(commit, Ordering::AcqRel);
    }
}

/// What a change hands back to the request that asked for it, besides the new catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Produced {
    Nothing,
    /// The id the change allocated (stream, topic, group, user).
    Id(u32),
    /// A new personal access token in clear (returned once, stored only hashed).
    Token(String),
}

/// A change that is durable and published.
#[derive(Debug)]
pub struct Applied {
    pub produced: Produced,
    /// The catalog that includes the change.
    pub catalog: Arc<Catalog>,
    /// Shard work the change implies (`shard::effects::effects_of`) that the requester still has
    /// to send; empty when the service did it already.
    pub effects: Vec<(usize, ShardOp)>,
}

/// Builds a change from the authoritative catalog, on the metadata thread: ids allocated there
/// cannot collide, and password hashing inside it runs there too.
pub type ChangeBuilder = Box<dyn FnOnce(&Catalog) -> Result<(Change, Produced), ErrorCode> + Send>;

/// A request to the metadata service.
pub enum MetadataOp {
    /// Make a change durable and publish it.
    Change(ChangeBuilder),
    /// Check a password login (argon2, or the verified-login cache).
    PasswordLogin { username: String, password: String },
    /// A data-plane write a cluster replicates (a single node sends these to its shards).
    Replicate(ReplicatedWrite),
    /// Build a system snapshot archive (on a helper thread: it walks files and compresses).
    Snapshot(Box<crate::diagnostics::SnapshotJob>),
}

/// When a cluster acknowledges a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterAck {
    /// `durability = replicated`: once a majority of the nodes hold it on stable storage
    /// (committed).
    Majority,
    /// `durability = persisted`: once the leader holds it on stable storage (its log synced); a
    /// failover before the commit may lose it.
    Leader,
}

/// The data-plane writes that go through a cluster's log.
#[derive(Debug)]
pub enum ReplicatedWrite {
    /// A validated SendMessages batch for a partition.
    Append {
        key: PartitionKey,
        batch: Vec<u8>,
        messages: u32,
        /// When the send is acknowledged: the topic's effective durability.
        ack: ClusterAck,
    },
    StoreOffset {
        key: PartitionKey,
        consumer: ConsumerRef,
        offset: u64,
    },
    DeleteOffset {
        key: PartitionKey,
        consumer: ConsumerRef,
    },
    Purge {
        keys: Vec<PartitionKey>,
    },
    DeleteSegments {
        key: PartitionKey,
        count: u32,
    },
}

impl std::fmt::Debug for MetadataOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetadataOp::Change(_) => f.write_str("Change"),
            MetadataOp::PasswordLogin { username, .. } => f
                .debug_struct("PasswordLogin")
                .field("username", username)
                .finish_non_exhaustive(),
            MetadataOp::Replicate(write) => write.fmt(f),
            MetadataOp::Snapshot(job) => job.fmt(f),
        }
    }
}

/// What the metadata service answers.
#[derive(Debug)]
pub enum MetadataOutcome {
    /// The change is on stable storage and published.
    Applied(Applied),
    /// The password is the user's and the user is active.
    LoggedIn {
        user_id: u32,
    },
    /// A replicated write is committed and applied; its shard outcome.
    Replicated(ShardOutcome),
    /// A system snapshot archive (zip).
    Snapshot(Vec<u8>),
    Failed(ErrorCode),
}
