//! A network thread's context: its links to the shards and the metadata service and its view of
//! shared state. Handlers send requests through it; the worker core delivers the replies.

use crate::mesh::messages::{MetadataReply, MetadataRequest, ShardReply, ShardRequest};
use crate::mesh::ring::WorkerLinks;
use crate::session::counters::WorkerCounters;
use crate::session::shared::Shared;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Most requests one frame can send to any one shard (deleting partitions sends a delete and then
/// the remaining partitions' new settings); a frame is dispatched only when every ring has this
/// much room, so a dispatched request is never refused by a full ring.
pub const SHARD_REQUESTS_PER_LINK_PER_FRAME_MAX: usize = 2;
/// Most metadata requests one frame sends (a change, or a password check).
pub const METADATA_REQUESTS_PER_FRAME_MAX: usize = 1;

pub struct WorkerContext {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub links: WorkerLinks,
    /// Round-robin counters of balanced partitioning, per (stream, topic), local to the thread.
    pub balanced_next: HashMap<(u32, u32), u32>,
    /// The time the driver last passed in, and the wall-clock reading it is reckoned from: the
    /// worker core reads no clock of its own (its tests run on virtual time).
    now: Instant,
    wall_anchor: (Instant, u64),
}

impl WorkerContext {
    /// `wall_anchor`: an instant and the wall-clock time (µs since the Unix epoch) at it.
    pub fn new(
        index: usize,
        shared: Arc<Shared>,
        links: WorkerLinks,
        wall_anchor: (Instant, u64),
    ) -> WorkerContext {
        WorkerContext {
            index,
            shared,
            links,
            balanced_next: HashMap::new(),
            now: wall_anchor.0,
            wall_anchor,
        }
    }

    /// The `now` the driver last passed in.
    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// Wall-clock time at the last `now` the driver passed in, µs since the Unix epoch.
    pub fn now_us(&self) -> u64 {
        let (anchor, anchor_us) = self.wall_anchor;
        let elapsed_us = self.now.saturating_duration_since(anchor).as_micros();
        anchor_us.saturating_add(u64::try_from(elapsed_us).unwrap_or(u64::MAX))
    }

    pub fn counters(&self) -> &WorkerCounters {
        &self.shared.worker_counters[self.index]
    }

    /// Whether every ring can take what one more frame could send.
    pub fn may_send_a_frame(&self) -> bool {
        self.links
            .shards
            .iter()
            .all(|link| link.has_room(SHARD_REQUESTS_PER_LINK_PER_FRAME_MAX))
            && self
                .links
                .metadata
                .has_room(METADATA_REQUESTS_PER_FRAME_MAX)
    }

    pub fn send_to_shard(&mut self, shard: usize, request: ShardRequest) {
        self.links.shards[shard].send(request);
    }

    pub fn send_to_metadata(&mut self, request: MetadataRequest) {
        self.links.metadata.send(request);
    }

    /// Wakes every server sent a request since the last call (once per turn of the loop).
    pub fn wake_servers(&mut self) {
        for link in &mut self.links.shards {
            link.wake_if_sent();
        }
        self.links.metadata.wake_if_sent();
    }

    /// The next shard reply waiting on any ring.
    pub fn take_shard_reply(&mut self) -> Option<ShardReply> {
        self.links
            .shards
            .iter_mut()
            .find_map(crate::mesh::ring::Link::take_reply)
    }

    pub fn take_metadata_reply(&mut self) -> Option<MetadataReply> {
        self.links.metadata.take_reply()
    }

    /// Requests of this thread still at a server.
    pub fn requests_outstanding(&self) -> usize {
        self.links
            .shards
            .iter()
            .map(|link| link.outstanding())
            .sum::<usize>()
            + self.links.metadata.outstanding()
    }
}
