//! Replication: a riptide cluster is one openraft group. Its log carries every write (metadata
//! changes, batches, consumer offsets, purges); every node applies the committed log to its own
//! catalog and partitions, so every node's partition logs are prefixes of the leader's, byte for
//! byte. Leader election, terms, membership changes and the order of writes are openraft's.
//!
//! In cluster mode the metadata service's thread runs this folder instead of
//! `metadata::MetadataService`: a tokio runtime (the only async runtime in the dataplane, on this
//! one thread) with the Raft node, the replication server and the loop that serves the network
//! threads' requests. Network threads and shards stay runtime-free.

mod durable;
pub mod log_store;
pub mod network;
pub mod node;
pub mod shard_client;
pub mod state_machine;
pub mod types;

use crate::mesh::ring::Waker;
use arc_swap::ArcSwap;
use riptide_config::cluster::ClusterStatus;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

/// A ring's wakeup eventfd, watched by the cluster thread's runtime.
pub struct WatchedWaker(Arc<Waker>);

impl std::os::fd::AsRawFd for WatchedWaker {
    fn as_raw_fd(&self) -> RawFd {
        self.0.fd()
    }
}

impl WatchedWaker {
    /// Registers `waker`'s eventfd with the runtime (call inside it).
    ///
    /// # Errors
    /// The epoll registration failed.
    pub fn watch(waker: Arc<Waker>) -> std::io::Result<AsyncFd<WatchedWaker>> {
        // SAFETY: the descriptor belongs to the `Waker`, which this value keeps alive (an `Arc`)
        // for as long as the `AsyncFd` exists, and a `Waker` never replaces its descriptor.
        unsafe { AsyncFd::register(WatchedWaker(waker)) }.map_err(std::io::Error::from)
    }

    /// Resets the eventfd's counter after it was seen readable.
    pub fn drain(&self) {
        self.0.drain();
    }
}

/// What every thread can see of the cluster: who leads, whether this node may take writes, and
/// the roster GetClusterMetadata answers.
#[derive(Debug)]
pub struct ClusterView {
    pub node_id: u64,
    /// The leader's id; 0 while there is none known.
    leader: AtomicU64,
    /// This node leads and has applied everything its predecessors committed.
    writable: AtomicBool,
    status: ArcSwap<ClusterStatus>,
}

impl ClusterView {
    pub fn new(node_id: u64, status: ClusterStatus) -> ClusterView {
        ClusterView {
            node_id,
            leader: AtomicU64::new(0),
            writable: AtomicBool::new(false),
            status: ArcSwap::from_pointee(status),
        }
    }

    pub fn leader(&self) -> Option<u64> {
        Some(self.leader.load(Ordering::Acquire)).filter(|id| *id != 0)
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.node_id)
    }

    /// Whether this node takes writes now.
    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    pub fn status(&self) -> Arc<ClusterStatus> {
        self.status.load_full()
    }

    fn publish(&self, status: ClusterStatus, writable: bool) {
        self.leader
            .store(status.leader.unwrap_or(0), Ordering::Release);
        self.writable.store(writable, Ordering::Release);
        self.status.store(Arc::new(status));
    }
}
