//! Counters of one network worker (kernel mode) or polling lcore (DPDK mode): written by that
//! thread only, read by the stats publisher.

use riptide_config::stats::WorkerSnapshot;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one network worker (kernel mode) or lcore (dpdk mode).
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub connections_open: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub requests: AtomicU64,
    pub request_errors: AtomicU64,
    pub evictions: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub ring_full_stalls: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub tls_plaintext_refused: AtomicU64,
    pub tls_clients_on_plaintext: AtomicU64,
    pub logins_throttled: AtomicU64,
    pub logins_failed: AtomicU64,
}

impl WorkerCounters {
    pub fn snapshot(&self, index: usize, core: Option<usize>) -> WorkerSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerSnapshot {
            index,
            core,
            connections_open: get(&self.connections_open),
            connections_accepted: get(&self.connections_accepted),
            connections_refused: get(&self.connections_refused),
            requests: get(&self.requests),
            request_errors: get(&self.request_errors),
            evictions: get(&self.evictions),
            messages_in: get(&self.messages_in),
            bytes_in: get(&self.bytes_in),
            messages_out: get(&self.messages_out),
            bytes_out: get(&self.bytes_out),
            ring_full_stalls: get(&self.ring_full_stalls),
            tls_handshakes: get(&self.tls_handshakes),
            tls_handshake_failures: get(&self.tls_handshake_failures),
            tls_plaintext_refused: get(&self.tls_plaintext_refused),
            tls_clients_on_plaintext: get(&self.tls_clients_on_plaintext),
            logins_throttled: get(&self.logins_throttled),
            logins_failed: get(&self.logins_failed),
        }
    }
}
