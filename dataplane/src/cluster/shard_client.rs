//! The cluster thread's way to the storage shards: the same rings a network thread has, used
//! from async code. A request waits for ring room, goes out with a sequence number, and its
//! reply comes back through a pump task that waits on the thread's wakeup eventfd.

use crate::mesh::messages::{ConnectionId, RequestToken, ShardRequest};
use crate::mesh::ring::{ShardLink, Waker};
use crate::shard::{ShardOp, ShardOutcome};
use riptide_protocol::codes::ErrorCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{oneshot, Notify};

/// The connection id the cluster thread's requests carry (it has no connections; the sequence
/// number alone routes a reply).
const CLUSTER_CONNECTION: ConnectionId = ConnectionId {
    slot: u32::MAX,
    generation: 0,
};

struct Inner {
    links: Vec<ShardLink>,
    next_seq: u64,
    waiting: HashMap<u64, oneshot::Sender<ShardOutcome>>,
}

/// Cheap to clone; every clone reaches the same shards.
#[derive(Clone)]
pub struct ShardClient {
    inner: Arc<Mutex<Inner>>,
    /// Signalled when replies freed ring room.
    room: Arc<Notify>,
}

impl ShardClient {
    pub fn new(links: Vec<ShardLink>) -> ShardClient {
        ShardClient {
            inner: Arc::new(Mutex::new(Inner {
                links,
                next_seq: 1,
                waiting: HashMap::new(),
            })),
            room: Arc::new(Notify::new()),
        }
    }

    fn locked(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `op` on `shard` and waits for its outcome.
    pub async fn call(&self, shard: usize, op: ShardOp) -> ShardOutcome {
        let mut op = Some(op);
        loop {
            let notified = self.room.notified();
            if let Some(receiver) = self.try_send(shard, &mut op) {
                return receiver
                    .await
                    .unwrap_or(ShardOutcome::Failed(ErrorCode::Error));
            }
            notified.await;
        }
    }

    fn try_send(
        &self,
        shard: usize,
        op: &mut Option<ShardOp>,
    ) -> Option<oneshot::Receiver<ShardOutcome>> {
        let mut inner = self.locked();
        if !inner.links[shard].has_room(1) {
            return None;
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let (sender, receiver) = oneshot::channel();
        inner.waiting.insert(seq, sender);
        let token = RequestToken {
            connection: CLUSTER_CONNECTION,
            seq,
        };
        let link = &mut inner.links[shard];
        link.send(ShardRequest {
            token,
            op: op.take().expect("sent once"),
        });
        link.wake_if_sent();
        Some(receiver)
    }

    /// Delivers replies as the shards push them; runs for the life of the thread.
    pub async fn pump(self, waker: Arc<Waker>) {
        let fd = match super::WatchedWaker::watch(waker) {
            Ok(fd) => fd,
            Err(error) => {
                tracing::error!(%error, "cannot watch the cluster thread's wakeup eventfd");
                return;
            }
        };
        loop {
            self.deliver();
            match fd.readable().await {
                Ok(mut guard) => {
                    guard.get_inner().drain();
                    guard.clear_ready();
                }
                Err(error) => {
                    tracing::error!(%error, "wakeup eventfd failed");
                    return;
                }
            }
        }
    }

    fn deliver(&self) {
        let mut inner = self.locked();
        let mut delivered = false;
        for index in 0..inner.links.len() {
            while let Some(reply) = inner.links[index].take_reply() {
                delivered = true;
                if let Some(sender) = inner.waiting.remove(&reply.token.seq) {
                    let _ = sender.send(reply.outcome);
                }
            }
        }
        if delivered {
            self.room.notify_waiters();
        }
    }
}
