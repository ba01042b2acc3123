//! Counters of one storage shard, written by its thread only and read by the stats publisher.

use riptide_config::stats::{HistogramSnapshot, ShardSnapshot, LATENCY_BUCKETS_US};
use std::sync::atomic::{AtomicU64, Ordering};

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
}
