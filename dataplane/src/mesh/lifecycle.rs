//! The appliance's stop sequence as flags every thread can read: the network threads stop
//! accepting first; once they have all stopped, the metadata service (or the cluster node) stops;
//! once it has, the shards stop. So no request can reach a stopped server: a cluster node still
//! applies to the shards while it stops.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Lifecycle {
    shutdown: AtomicBool,
    metadata_stop: AtomicBool,
    shards_stop: AtomicBool,
}

impl Lifecycle {
    /// Network threads stop accepting and finish what they read.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// The metadata service or cluster node finishes and stops; set after every network thread
    /// stopped.
    pub fn request_metadata_stop(&self) {
        self.metadata_stop.store(true, Ordering::Release);
    }

    pub fn metadata_stopping(&self) -> bool {
        self.metadata_stop.load(Ordering::Acquire)
    }

    /// The shards drain their rings, sync and stop; set after the metadata thread stopped.
    pub fn request_shards_stop(&self) {
        self.shards_stop.store(true, Ordering::Release);
    }

    pub fn shards_stopping(&self) -> bool {
        self.shards_stop.load(Ordering::Acquire)
    }
}
