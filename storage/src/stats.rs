//! Latency histograms the control process exports.

use crate::constants::LATENCY_BUCKETS;

/// Power-of-two buckets of microseconds: bucket `i` counts samples in `[2^(i-1), 2^i)` µs
/// (bucket 0: below 1 µs; the last bucket also holds everything larger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    pub buckets: [u64; LATENCY_BUCKETS],
    pub count: u64,
    pub sum_us: u64,
    pub max_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: [0; LATENCY_BUCKETS],
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, latency_us: u64) {
        let bucket = (u64::BITS - latency_us.leading_zeros()) as usize;
        self.buckets[bucket.min(LATENCY_BUCKETS - 1)] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(latency_us);
        self.max_us = self.max_us.max(latency_us);
    }

    /// Upper bound (µs) of the bucket holding quantile `q` (0.0..=1.0); 0 when empty.
    pub fn quantile_upper_us(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return 1u64 << i;
            }
        }
        self.max_us
    }
}

/// Shard-wide counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// From `append` to the durable acknowledgement.
    pub append_latency: LatencyHistogram,
    /// Duration of each durable write (submission to the end of its linked fdatasync).
    pub fsync_latency: LatencyHistogram,
    pub appends_failed: u64,
    pub bytes_written: u64,
    /// Polls answered by a sequential readahead (already read or in flight).
    pub readahead_hits: u64,
    /// Most readahead reads the shard had in flight at once (bounded by
    /// `StorageConfig::readahead_reads_in_flight_max`).
    pub readahead_reads_in_flight_peak: u64,
    /// Memory held by written records kept for reads, over all partitions (bounded by
    /// `StorageConfig::cache_size_bytes`).
    pub cached_bytes: u64,
    /// Polls answered from those records without a disk read.
    pub reads_from_memory: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let mut h = LatencyHistogram::default();
        for us in [0, 1, 3, 900, 1000, 1000, 1000, 1000, 1000, 1 << 40] {
            h.record(us);
        }
        assert_eq!(h.count, 10);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[2], 1);
        assert_eq!(h.buckets[10], 6);
        assert_eq!(h.buckets[LATENCY_BUCKETS - 1], 1);
        assert_eq!(h.quantile_upper_us(0.5), 1024);
        assert_eq!(h.max_us, 1 << 40);
        assert_eq!(LatencyHistogram::default().quantile_upper_us(0.99), 0);
    }
}
