//! The console's live overview: rates and latency computed from the dataplane's statistics
//! snapshots (`<data>/runtime/stats.json`, rewritten every 500 ms), sampled once a second into a
//! bounded ring so a page that opens sees the last minutes at once.
//!
//! Each sample is the difference of two snapshots: bytes and messages in (sends) and out (poll
//! replies) per second over all network workers, requests per second, and the p99 of the storage
//! shards' append latency over the interval (from the merged histogram buckets: the upper bound
//! of the bucket holding the 99th percentile).

use riptide_config::stats::StatsSnapshot;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a sample is taken.
pub const OVERVIEW_SAMPLE_INTERVAL_MS: u64 = 1000;
/// Samples kept: five minutes.
pub const OVERVIEW_SAMPLES_MAX: usize = 300;

/// One point of the overview's charts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// Time of the later snapshot, milliseconds since the epoch.
    pub t_ms: u64,
    pub in_bytes_per_s: f64,
    pub out_bytes_per_s: f64,
    pub in_messages_per_s: f64,
    pub out_messages_per_s: f64,
    pub requests_per_s: f64,
    /// p99 of the appends completed in the interval (µs); `None` without appends.
    pub append_p99_us: Option<u64>,
    pub connections: u64,
}

/// The cumulative counters of one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    pub written_at_us: u64,
    pub pid: u32,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub requests: u64,
    pub connections: u64,
    pub append_bounds_us: Vec<u64>,
    pub append_counts: Vec<u64>,
}

pub fn totals(snapshot: &StatsSnapshot) -> Totals {
    let workers = &snapshot.workers;
    let sum = |f: fn(&riptide_config::stats::WorkerSnapshot) -> u64| workers.iter().map(f).sum();
    let mut bounds = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    for shard in &snapshot.shards {
        let histogram = &shard.append_latency;
        if bounds.is_empty() {
            bounds = histogram.bucket_bounds_us.clone();
            counts = vec![0; histogram.bucket_counts.len()];
        }
        // Every shard publishes the same buckets; a mismatch is skipped, not mixed in.
        if histogram.bucket_bounds_us == bounds && histogram.bucket_counts.len() == counts.len() {
            for (total, count) in counts.iter_mut().zip(&histogram.bucket_counts) {
                *total += count;
            }
        }
    }
    Totals {
        written_at_us: snapshot.written_at_us,
        pid: snapshot.pid,
        bytes_in: sum(|w| w.bytes_in),
        bytes_out: sum(|w| w.bytes_out),
        messages_in: sum(|w| w.messages_in),
        messages_out: sum(|w| w.messages_out),
        requests: sum(|w| w.requests),
        connections: sum(|w| w.connections_open),
        append_bounds_us: bounds,
        append_counts: counts,
    }
}

/// The upper bound of the bucket holding the 99th percentile; the last bound for values above
/// every bound (a lower bound then). `None` when the histogram is empty.
pub fn p99_us(bounds_us: &[u64], counts: &[u64]) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = total - total / 100; // the smallest count covering 99 %
    let mut cumulative = 0;
    for (index, count) in counts.iter().enumerate() {
        cumulative += count;
        if cumulative >= rank {
            return bounds_us.get(index).or(bounds_us.last()).copied();
        }
    }
    bounds_us.last().copied()
}

/// The sample between two snapshots; `None` when no time passed, or when the dataplane restarted
/// in between (its counters started over).
pub fn sample(previous: &Totals, current: &Totals) -> Option<Sample> {
    if current.written_at_us <= previous.written_at_us || current.pid != previous.pid {
        return None;
    }
    let seconds = (current.written_at_us - previous.written_at_us) as f64 / 1e6;
    let rate = |now: u64, before: u64| now.checked_sub(before).map(|d| d as f64 / seconds);
    let append_delta: Option<Vec<u64>> =
        (current.append_counts.len() == previous.append_counts.len()).then(|| {
            current
                .append_counts
                .iter()
                .zip(&previous.append_counts)
                .map(|(now, before)| now.saturating_sub(*before))
                .collect()
        });
    Some(Sample {
        t_ms: current.written_at_us / 1000,
        in_bytes_per_s: rate(current.bytes_in, previous.bytes_in)?,
        out_bytes_per_s: rate(current.bytes_out, previous.bytes_out)?,
        in_messages_per_s: rate(current.messages_in, previous.messages_in)?,
        out_messages_per_s: rate(current.messages_out, previous.messages_out)?,
        requests_per_s: rate(current.requests, previous.requests)?,
        append_p99_us: append_delta.and_then(|d| p99_us(&current.append_bounds_us, &d)),
        connections: current.connections,
    })
}

/// The ring of samples.
#[derive(Default)]
pub struct Overview {
    samples: Mutex<VecDeque<Sample>>,
    last: Mutex<Option<Totals>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Overview {
    /// Takes a snapshot into account; adds a sample when there is an earlier one to compare.
    pub fn observe(&self, snapshot: &StatsSnapshot) {
        let current = totals(snapshot);
        let mut last = lock(&self.last);
        if let Some(sample) = last
            .as_ref()
            .and_then(|previous| sample(previous, &current))
        {
            let mut samples = lock(&self.samples);
            if samples.len() == OVERVIEW_SAMPLES_MAX {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
        if last
            .as_ref()
            .is_none_or(|previous| current.written_at_us != previous.written_at_us)
        {
            *last = Some(current);
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.samples).iter().cloned().collect()
    }
}

/// Samples the snapshot file once a second for as long as the overview is in use.
pub async fn run(overview: std::sync::Weak<Overview>, data_dir: PathBuf) {
    let mut tick = tokio::time::interval(Duration::from_millis(OVERVIEW_SAMPLE_INTERVAL_MS));
    loop {
        tick.tick().await;
        let Some(overview) = overview.upgrade() else {
            return;
        };
        if let Ok((snapshot, _)) = crate::api::read_stats(&data_dir) {
            overview.observe(&snapshot);
        }
    }
}

/// Starts the sampler; it stops when the returned overview is dropped.
pub fn start(data_dir: PathBuf) -> Arc<Overview> {
    let overview = Arc::new(Overview::default());
    tokio::spawn(run(Arc::downgrade(&overview), data_dir));
    overview
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_config::stats::{HistogramSnapshot, ShardSnapshot, WorkerSnapshot};

    fn snapshot(at_s: u64, bytes_in: u64, appends: [u64; 4]) -> StatsSnapshot {
        StatsSnapshot {
            pid: 9,
            written_at_us: at_s * 1_000_000,
            workers: vec![
                WorkerSnapshot {
                    bytes_in,
                    messages_in: bytes_in / 100,
                    connections_open: 2,
                    ..WorkerSnapshot::default()
                },
                WorkerSnapshot {
                    bytes_out: at_s * 10,
                    connections_open: 1,
                    ..WorkerSnapshot::default()
                },
            ],
            shards: vec![ShardSnapshot {
                append_latency: HistogramSnapshot {
                    bucket_bounds_us: vec![100, 1000, 10_000],
                    bucket_counts: appends.to_vec(),
                    sum_us: 0,
                    count: appends.iter().sum(),
                },
                ..ShardSnapshot::default()
            }],
            ..StatsSnapshot::default()
        }
    }

    #[test]
    fn p99_is_the_bound_of_the_bucket_holding_it() {
        assert_eq!(p99_us(&[100, 1000], &[0, 0, 0]), None);
        assert_eq!(p99_us(&[100, 1000], &[99, 1, 0]), Some(100));
        assert_eq!(p99_us(&[100, 1000], &[98, 2, 0]), Some(1000));
        assert_eq!(
            p99_us(&[100, 1000], &[0, 0, 5]),
            Some(1000),
            "overflow: the last bound"
        );
        assert_eq!(p99_us(&[100, 1000], &[1, 0, 0]), Some(100));
    }

    #[test]
    fn samples_are_rates_between_snapshots() {
        let overview = Overview::default();
        overview.observe(&snapshot(10, 1_000, [0, 0, 0, 0]));
        assert!(overview.samples().is_empty(), "one snapshot gives no rate");
        overview.observe(&snapshot(10, 1_000, [0, 0, 0, 0]));
        assert!(overview.samples().is_empty(), "the same snapshot again");
        overview.observe(&snapshot(12, 5_000, [10, 90, 0, 0]));
        let samples = overview.samples();
        assert_eq!(samples.len(), 1);
        let s = &samples[0];
        assert_eq!((s.t_ms, s.connections), (12_000, 3));
        assert!((s.in_bytes_per_s - 2_000.0).abs() < 1e-9);
        assert!((s.in_messages_per_s - 20.0).abs() < 1e-9);
        assert!((s.out_bytes_per_s - 10.0).abs() < 1e-9);
        assert_eq!(s.append_p99_us, Some(1000));
    }

    #[test]
    fn a_restart_starts_over_and_the_ring_is_bounded() {
        let overview = Overview::default();
        overview.observe(&snapshot(1, 10_000, [0; 4]));
        let mut restarted = snapshot(2, 0, [0; 4]);
        restarted.pid = 10;
        overview.observe(&restarted);
        assert!(overview.samples().is_empty(), "counters of another process");
        for at in 3..(OVERVIEW_SAMPLES_MAX as u64 + 10) {
            let mut s = snapshot(at, at * 100, [0; 4]);
            s.pid = 10;
            overview.observe(&s);
        }
        assert_eq!(overview.samples().len(), OVERVIEW_SAMPLES_MAX);
    }
}
