//! The appliance's stop sequence as two flags every thread can read: network threads stop
//! accepting first, and only once they have all stopped may the shards and the metadata service
//! stop (so no request can reach a stopped server).

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Lifecycle {
    shutdown: AtomicBool,
    servers_stop: AtomicBool,
}

impl Lifecycle {
    /// Network threads stop accepting and finish what they read.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Shards and the metadata service finish and stop; set only after every network thread
    /// stopped.
    pub fn request_servers_stop(&self) {
        self.servers_stop.store(true, Ordering::Release);
    }

    pub fn servers_stopping(&self) -> bool {
        self.servers_stop.load(Ordering::Acquire)
    }
}
