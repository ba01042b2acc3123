//! The statistics snapshot the dataplane publishes for the control process: the types of
//! `<data>/runtime/stats.json`. The dataplane's counters (atomics owned by each thread) render into
//! these every [`STATS_PUBLISH_INTERVAL_MS`]; riptide-control reads them for `/status` and
//! `/metrics`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How often `runtime/stats.json` is rewritten.
pub const STATS_PUBLISH_INTERVAL_MS: u64 = 500;
/// File name of the snapshot under `<data>/runtime/`.
pub const STATS_FILE_NAME: &str = "stats.json";
/// Upper bounds (µs) of the latency histogram buckets; the last bucket is everything above.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000,
];

/// Path of the snapshot file for a data directory.
pub fn stats_path(data_dir: &Path) -> PathBuf {
    data_dir.join("runtime").join(STATS_FILE_NAME)
}

/// A histogram as published: `bucket_counts[i]` counts values `<= bucket_bounds_us[i]` (and above
/// the previous bound); the extra last count is everything above the last bound.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HistogramSnapshot {
    pub bucket_bounds_us: Vec<u64>,
    pub bucket_counts: Vec<u64>,
    pub sum_us: u64,
    pub count: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerSnapshot {
    pub index: usize,
    pub core: Option<usize>,
    pub connections_open: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub requests: u64,
    pub request_errors: u64,
    pub evictions: u64,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    pub ring_full_stalls: u64,
    /// TLS handshakes completed (`[tls]` enabled).
    #[serde(default)]
    pub tls_handshakes: u64,
    /// TLS handshakes that failed (bad records, refused client certificates, alerts).
    #[serde(default)]
    pub tls_handshake_failures: u64,
    /// Connections to the TLS listener whose first bytes were not a TLS record.
    #[serde(default)]
    pub tls_plaintext_refused: u64,
    /// TLS clients on a plaintext listener (answered with an alert and closed).
    #[serde(default)]
    pub tls_clients_on_plaintext: u64,
    /// Logins refused without checking the password: the peer's address failed too often.
    #[serde(default)]
    pub logins_throttled: u64,
    /// Logins that failed on a wrong username or password.
    #[serde(default)]
    pub logins_failed: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ShardSnapshot {
    pub index: usize,
    pub core: Option<usize>,
    pub partitions: u64,
    pub appends: u64,
    pub append_errors: u64,
    pub messages_appended: u64,
    pub bytes_appended: u64,
    pub reads: u64,
    pub request_ring_depth: u64,
    pub append_latency: HistogramSnapshot,
    #[serde(default)]
    pub fsync_latency: HistogramSnapshot,
    #[serde(default)]
    pub cached_bytes: u64,
    #[serde(default)]
    pub reads_from_memory: u64,
}

/// Per DPDK port and queue packet counters (empty in kernel mode).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PortSnapshot {
    pub port: u16,
    pub queue: Option<u16>,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub mbuf_alloc_failures: u64,
    pub tcp_retransmits: u64,
    pub tcp_connections: u64,
}

/// What the sk_reuseport steering program reports (kernel mode with the program loaded).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SteeringSnapshot {
    pub policy: String,
    /// New connections steered to each worker.
    pub selected: Vec<u64>,
    /// Open connections per worker as the workers reported them to the program.
    pub open_connections: Vec<u64>,
    /// Selections that found no socket (the kernel then hashed).
    pub select_failed: u64,
}

/// What riptide's XDP program counted on the DPDK port's interface (af_xdp mode only).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct XdpSnapshot {
    /// Appliance TCP frames and ARP frames redirected to the AF_XDP socket.
    pub steered_tcp: u64,
    pub steered_arp: u64,
    /// Frames passed to the kernel (the host's own traffic on the interface).
    pub passed: u64,
    /// Appliance frames dropped: no AF_XDP socket on the receiving queue, or a failed redirect.
    pub dropped_no_socket: u64,
    pub dropped_redirect_failed: u64,
}

/// Converts a power-of-two histogram (bucket `i` holds values below `2^i`, the last bucket
/// everything above) into the published form.
pub fn power_of_two_histogram(buckets: &[u64], count: u64, sum_us: u64) -> HistogramSnapshot {
    let bounds = buckets.len().saturating_sub(1);
    HistogramSnapshot {
        bucket_bounds_us: (0..bounds).map(|i| 1u64 << i).collect(),
        bucket_counts: buckets.to_vec(),
        sum_us,
        count,
    }
}

/// The whole snapshot written to `runtime/stats.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StatsSnapshot {
    pub version: String,
    pub pid: u32,
    pub mode: String,
    pub tcp_address: String,
    pub started_at_us: u64,
    pub written_at_us: u64,
    pub steering: String,
    pub ring_capacity: u64,
    pub workers: Vec<WorkerSnapshot>,
    pub shards: Vec<ShardSnapshot>,
    pub ports: Vec<PortSnapshot>,
    #[serde(default)]
    pub steering_counters: Option<SteeringSnapshot>,
    #[serde(default)]
    pub xdp_counters: Option<XdpSnapshot>,
    pub streams: u64,
    pub topics: u64,
    pub partitions: u64,
    /// Cluster mode: this node's view of the cluster (the leader's includes follower lag).
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_of_two_buckets_keep_their_counts_and_an_overflow_bucket() {
        let histogram = power_of_two_histogram(&[1, 0, 2, 5], 8, 40);
        assert_eq!(histogram.bucket_bounds_us, vec![1, 2, 4]);
        assert_eq!(
            histogram.bucket_counts.len(),
            histogram.bucket_bounds_us.len() + 1
        );
        assert_eq!(histogram.bucket_counts.iter().sum::<u64>(), 8);
    }
}
