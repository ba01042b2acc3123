//! The statistics snapshot the dataplane publishes for the control process.
//!
//! Counters live in atomics owned by each thread (written by that thread only, read by the
//! publisher); every [`STATS_PUBLISH_INTERVAL_MS`] the publisher renders a [`StatsSnapshot`] to
//! `<data>/runtime/stats.json` (temp file + rename, so a reader never sees half a file).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A lock-free latency histogram with fixed buckets ([`LATENCY_BUCKETS_US`]).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    pub fn record_us(&self, value_us: u64) {
        let index = LATENCY_BUCKETS_US
            .iter()
            .position(|&bound| value_us <= bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(value_us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bucket_bounds_us: LATENCY_BUCKETS_US.to_vec(),
            bucket_counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }
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
}

/// Counters of one storage shard.
#[derive(Debug, Default)]
pub struct ShardCounters {
    pub partitions: AtomicU64,
    pub appends: AtomicU64,
    pub append_errors: AtomicU64,
    pub messages_appended: AtomicU64,
    pub bytes_appended: AtomicU64,
    pub reads: AtomicU64,
    pub request_ring_depth: AtomicU64,
    pub append_latency: LatencyHistogram,
    /// Durations of the storage shard's durable writes (O_DSYNC write or fdatasync), as the
    /// shard last published them.
    pub fsync_latency: std::sync::Mutex<HistogramSnapshot>,
    /// Memory of the shard's read cache and the polls it answered, as the shard last
    /// published them.
    pub cached_bytes: AtomicU64,
    pub reads_from_memory: AtomicU64,
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
        }
    }
}

impl ShardCounters {
    pub fn snapshot(&self, index: usize, core: Option<usize>) -> ShardSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ShardSnapshot {
            index,
            core,
            partitions: get(&self.partitions),
            appends: get(&self.appends),
            append_errors: get(&self.append_errors),
            messages_appended: get(&self.messages_appended),
            bytes_appended: get(&self.bytes_appended),
            reads: get(&self.reads),
            request_ring_depth: get(&self.request_ring_depth),
            append_latency: self.append_latency.snapshot(),
            fsync_latency: self
                .fsync_latency
                .lock()
                .map(|h| h.clone())
                .unwrap_or_default(),
            cached_bytes: get(&self.cached_bytes),
            reads_from_memory: get(&self.reads_from_memory),
        }
    }
}

/// Writes `snapshot` atomically (temp file + rename) to `<data>/runtime/stats.json`.
///
/// # Errors
/// The I/O error of the write or rename.
pub fn write_snapshot(data_dir: &Path, snapshot: &StatsSnapshot) -> std::io::Result<()> {
    let path = stats_path(data_dir);
    let temp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_values_by_upper_bound() {
        let histogram = LatencyHistogram::default();
        for value in [5, 10, 11, 2_000_000] {
            histogram.record_us(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.bucket_counts[0], 2);
        assert_eq!(snapshot.bucket_counts[1], 1);
        assert_eq!(*snapshot.bucket_counts.last().unwrap(), 1);
        assert_eq!(snapshot.count, 4);
        assert_eq!(snapshot.sum_us, 2_000_026);
    }

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

    #[test]
    fn snapshot_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("runtime")).unwrap();
        let snapshot = StatsSnapshot {
            mode: "kernel".into(),
            workers: vec![WorkerCounters::default().snapshot(0, Some(1))],
            ..StatsSnapshot::default()
        };
        write_snapshot(dir.path(), &snapshot).unwrap();
        let read: StatsSnapshot =
            serde_json::from_slice(&std::fs::read(stats_path(dir.path())).unwrap()).unwrap();
        assert_eq!(read, snapshot);
    }
}
