//! Measurement: one [`Recorder`] per actor (no sharing on the hot path), turned at the end into
//! [`ActorStats`] (throughput, HDR latency summary, time series) and merged into group totals.
//!
//! Throughput counts payload bytes (MB = 10^6 bytes), as iggy-bench does, so "1000-byte messages
//! at 1 M msg/s" reads as 1000 MB/s. Latency is the round trip of one request (a batch sent and
//! acknowledged, or a poll answered); end-to-end latency is producer send to consumer receipt of
//! each message.

use crate::constants::{HISTOGRAM_SIGNIFICANT_FIGURES, LATENCY_MAX_US};
use hdrhistogram::Histogram;
use serde::Serialize;

/// One completed request, in microseconds since the start of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub done_us: u64,
    pub messages: u32,
    pub bytes: u64,
    pub latency_us: u64,
}

/// Per-actor measurement state, owned by the actor's task.
#[derive(Debug)]
pub struct Recorder {
    warmup_us: u64,
    latency: Histogram<u64>,
    end_to_end: Histogram<u64>,
    samples: Vec<Sample>,
    first_start_us: Option<u64>,
    /// Every message seen, warm-up included (for sent = received accounting).
    pub messages_total: u64,
}

fn new_histogram() -> Histogram<u64> {
    // The bounds are compile-time constants that hdrhistogram accepts; failure would be a bug.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, HISTOGRAM_SIGNIFICANT_FIGURES)
        .expect("constant histogram bounds are valid")
}

impl Recorder {
    pub fn new(warmup_us: u64) -> Recorder {
        Recorder {
            warmup_us,
            latency: new_histogram(),
            end_to_end: new_histogram(),
            samples: Vec::new(),
            first_start_us: None,
            messages_total: 0,
        }
    }

    /// Records a request that started at `start_us` and completed at `done_us` (run clock).
    /// Requests that start during the warm-up count towards `messages_total` only.
    pub fn record(&mut self, start_us: u64, done_us: u64, messages: u32, bytes: u64) {
        self.messages_total += u64::from(messages);
        if start_us < self.warmup_us {
            return;
        }
        self.first_start_us.get_or_insert(start_us);
        let latency_us = done_us.saturating_sub(start_us).clamp(1, LATENCY_MAX_US);
        self.latency.saturating_record(latency_us);
        self.samples.push(Sample {
            done_us,
            messages,
            bytes,
            latency_us,
        });
    }

    /// Records the end-to-end latency of one message (send time to receipt).
    pub fn record_end_to_end(&mut self, sent_us: u64, received_us: u64) {
        if sent_us < self.warmup_us {
            return;
        }
        let latency_us = received_us.saturating_sub(sent_us).clamp(1, LATENCY_MAX_US);
        self.end_to_end.saturating_record(latency_us);
    }

    /// Moves the end-to-end figures (and message count) of `other` into this recorder.
    pub fn take_end_to_end(&mut self, other: Recorder) {
        // Same bounds on both sides, so adding cannot fail.
        self.end_to_end
            .add(&other.end_to_end)
            .expect("same histogram bounds");
    }

    /// Closes the measurement of one actor.
    pub fn finish(self, actor: ActorKind, id: u32, sampling_us: u64) -> ActorStats {
        let bytes: u64 = self.samples.iter().map(|s| s.bytes).sum();
        let messages: u64 = self.samples.iter().map(|s| u64::from(s.messages)).sum();
        let start_us = self.first_start_us.unwrap_or(0);
        let end_us = self
            .samples
            .iter()
            .map(|s| s.done_us)
            .max()
            .unwrap_or(start_us);
        let throughput = Throughput::new(messages, bytes, end_us.saturating_sub(start_us));
        let series = TimeSeries::from_samples(&self.samples, start_us, sampling_us);
        ActorStats {
            actor,
            id,
            messages_total: self.messages_total,
            throughput,
            latency: LatencySummary::from_histogram(&self.latency),
            end_to_end: (!self.end_to_end.is_empty())
                .then(|| LatencySummary::from_histogram(&self.end_to_end)),
            series,
            latency_histogram: self.latency,
            end_to_end_histogram: self.end_to_end,
            start_us,
            end_us,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Producer,
    Consumer,
    ProducingConsumer,
}

impl ActorKind {
    pub fn label(self) -> &'static str {
        match self {
            ActorKind::Producer => "producer",
            ActorKind::Consumer => "consumer",
            ActorKind::ProducingConsumer => "producing consumer",
        }
    }
}

/// Result of one actor.
#[derive(Debug, Clone, Serialize)]
pub struct ActorStats {
    pub actor: ActorKind,
    pub id: u32,
    pub messages_total: u64,
    pub throughput: Throughput,
    pub latency: LatencySummary,
    pub end_to_end: Option<LatencySummary>,
    pub series: TimeSeries,
    #[serde(skip)]
    pub latency_histogram: Histogram<u64>,
    #[serde(skip)]
    pub end_to_end_histogram: Histogram<u64>,
    #[serde(skip)]
    pub start_us: u64,
    #[serde(skip)]
    pub end_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub duration_us: u64,
    pub mb_per_sec: f64,
    pub messages_per_sec: f64,
}

impl Throughput {
    pub fn new(messages: u64, bytes: u64, duration_us: u64) -> Throughput {
        let (mb_per_sec, messages_per_sec) = if duration_us == 0 {
            (0.0, 0.0)
        } else {
            // bytes per microsecond is exactly MB (10^6 B) per second.
            (
                bytes as f64 / duration_us as f64,
                messages as f64 * 1e6 / duration_us as f64,
            )
        };
        Throughput {
            messages,
            bytes,
            duration_us,
            mb_per_sec,
            messages_per_sec,
        }
    }
}

/// Latency figures in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    pub std_dev_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
}

impl LatencySummary {
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary {
                count: 0,
                min_us: 0,
                max_us: 0,
                mean_us: 0.0,
                std_dev_us: 0.0,
                p50_us: 0,
                p90_us: 0,
                p95_us: 0,
                p99_us: 0,
                p999_us: 0,
                p9999_us: 0,
            };
        }
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            max_us: h.max(),
            mean_us: h.mean(),
            std_dev_us: h.stdev(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            p9999_us: h.value_at_quantile(0.9999),
        }
    }

    /// The percentile ladder used by tables and charts: (label, value in µs).
    pub fn ladder(&self) -> [(&'static str, u64); 6] {
        [
            ("p50", self.p50_us),
            ("p90", self.p90_us),
            ("p95", self.p95_us),
            ("p99", self.p99_us),
            ("p99.9", self.p999_us),
            ("p99.99", self.p9999_us),
        ]
    }
}

/// Throughput and latency per sampling period, `t_s` at the end of each period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimeSeries {
    pub sampling_us: u64,
    pub points: Vec<TimePoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimePoint {
    pub t_s: f64,
    pub mb_per_sec: f64,
    pub messages_per_sec: f64,
    /// Mean request latency of the requests completed in the period (0 when none).
    pub latency_mean_us: f64,
    #[serde(skip)]
    latency_sum_us: f64,
    #[serde(skip)]
    requests: u64,
}

impl TimeSeries {
    /// Buckets `samples` (by completion time) into periods of `sampling_us` from `start_us`.
    pub fn from_samples(samples: &[Sample], start_us: u64, sampling_us: u64) -> TimeSeries {
        let sampling_us = sampling_us.max(1);
        let Some(last_us) = samples.iter().map(|s| s.done_us).max() else {
            return TimeSeries {
                sampling_us,
                points: Vec::new(),
            };
        };
        let buckets = (last_us.saturating_sub(start_us) / sampling_us + 1) as usize;
        let mut acc = vec![(0u64, 0u64, 0u64, 0u64); buckets]; // bytes, messages, latency sum, requests
        for s in samples {
            let i = (s.done_us.saturating_sub(start_us) / sampling_us) as usize;
            let a = &mut acc[i.min(buckets - 1)];
            a.0 += s.bytes;
            a.1 += u64::from(s.messages);
            a.2 += s.latency_us;
            a.3 += 1;
        }
        let period_s = sampling_us as f64 / 1e6;
        let points = acc
            .iter()
            .enumerate()
            .map(|(i, &(bytes, messages, latency_sum, requests))| TimePoint {
                t_s: (i + 1) as f64 * period_s,
                mb_per_sec: bytes as f64 / 1e6 / period_s,
                messages_per_sec: messages as f64 / period_s,
                latency_mean_us: if requests == 0 {
                    0.0
                } else {
                    latency_sum as f64 / requests as f64
                },
                latency_sum_us: latency_sum as f64,
                requests,
            })
            .collect();
        TimeSeries {
            sampling_us,
            points,
        }
    }

    /// Sum of several actors' series (aligned on the run clock): throughputs add, latency is
    /// the request-weighted mean.
    pub fn sum<'a>(
        series: impl IntoIterator<Item = (&'a TimeSeries, u64)>,
        sampling_us: u64,
    ) -> TimeSeries {
        let mut points: Vec<TimePoint> = Vec::new();
        for (s, start_us) in series {
            let offset = (start_us / sampling_us.max(1)) as usize;
            for (i, p) in s.points.iter().enumerate() {
                let j = i + offset;
                while points.len() <= j {
                    let t_s = (points.len() + 1) as f64 * sampling_us as f64 / 1e6;
                    points.push(TimePoint {
                        t_s,
                        mb_per_sec: 0.0,
                        messages_per_sec: 0.0,
                        latency_mean_us: 0.0,
                        latency_sum_us: 0.0,
                        requests: 0,
                    });
                }
                let q = &mut points[j];
                q.mb_per_sec += p.mb_per_sec;
                q.messages_per_sec += p.messages_per_sec;
                q.latency_sum_us += p.latency_sum_us;
                q.requests += p.requests;
            }
        }
        for q in &mut points {
            q.latency_mean_us = if q.requests == 0 {
                0.0
            } else {
                q.latency_sum_us / q.requests as f64
            };
        }
        TimeSeries {
            sampling_us,
            points,
        }
    }
}

/// Moving average over `window` points (the charts' smoothing, iggy-bench `-W`).
pub fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(values.len());
    let mut sum = 0.0;
    for (i, v) in values.iter().enumerate() {
        sum += v;
        if i >= window {
            sum -= values[i - window];
        }
        out.push(sum / (i + 1).min(window) as f64);
    }
    out
}

/// Totals of one group of actors (all producers, all consumers).
#[derive(Debug, Clone, Serialize)]
pub struct GroupStats {
    pub actor: ActorKind,
    pub actors: u32,
    pub messages_total: u64,
    pub throughput: Throughput,
    /// Mean of the actors' own throughputs (iggy-bench's "average throughput").
    pub average_mb_per_sec: f64,
    pub latency: LatencySummary,
    pub end_to_end: Option<LatencySummary>,
    pub series: TimeSeries,
    #[serde(skip)]
    pub latency_histogram: Histogram<u64>,
}

impl GroupStats {
    /// Merges actors of one kind; `None` when there are none.
    pub fn merge(actors: &[&ActorStats], sampling_us: u64) -> Option<GroupStats> {
        let first = actors.first()?;
        let mut latency = new_histogram();
        let mut end_to_end = new_histogram();
        for a in actors {
            // Both histograms have the same bounds, so adding cannot fail.
            latency
                .add(&a.latency_histogram)
                .expect("same histogram bounds");
            end_to_end
                .add(&a.end_to_end_histogram)
                .expect("same histogram bounds");
        }
        let messages: u64 = actors.iter().map(|a| a.throughput.messages).sum();
        let bytes: u64 = actors.iter().map(|a| a.throughput.bytes).sum();
        let start_us = actors.iter().map(|a| a.start_us).min().unwrap_or(0);
        let end_us = actors.iter().map(|a| a.end_us).max().unwrap_or(start_us);
        let average_mb_per_sec =
            actors.iter().map(|a| a.throughput.mb_per_sec).sum::<f64>() / actors.len() as f64;
        Some(GroupStats {
            actor: first.actor,
            actors: actors.len() as u32,
            messages_total: actors.iter().map(|a| a.messages_total).sum(),
            throughput: Throughput::new(messages, bytes, end_us.saturating_sub(start_us)),
            average_mb_per_sec,
            latency: LatencySummary::from_histogram(&latency),
            end_to_end: (!end_to_end.is_empty())
                .then(|| LatencySummary::from_histogram(&end_to_end)),
            series: TimeSeries::sum(actors.iter().map(|a| (&a.series, a.start_us)), sampling_us),
            latency_histogram: latency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut r = Recorder::new(0);
        for i in 1..=10_000u64 {
            r.record(0, i, 1, 1);
        }
        let s = r.finish(ActorKind::Producer, 0, 10_000).latency;
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min_us, 1);
        // 3 significant figures: values within 0.1 %.
        let close = |v: u64, want: u64| (v as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0;
        assert!(close(s.max_us, 10_000), "{}", s.max_us);
        assert!(close(s.p50_us, 5_000), "{}", s.p50_us);
        assert!(close(s.p90_us, 9_000), "{}", s.p90_us);
        assert!(close(s.p99_us, 9_900), "{}", s.p99_us);
        assert!(close(s.p999_us, 9_990), "{}", s.p999_us);
        assert!((s.mean_us - 5000.5).abs() < 5.0, "{}", s.mean_us);
        // Standard deviation of 1..=n is sqrt((n^2 - 1) / 12).
        let expected = ((10_000f64.powi(2) - 1.0) / 12.0).sqrt();
        assert!(
            (s.std_dev_us - expected).abs() / expected < 0.01,
            "{}",
            s.std_dev_us
        );
    }

    #[test]
    fn empty_histogram_gives_zeros() {
        let s = Recorder::new(0).finish(ActorKind::Consumer, 1, 10_000);
        assert_eq!(s.latency.count, 0);
        assert_eq!(s.throughput.mb_per_sec, 0.0);
        assert!(s.end_to_end.is_none());
        assert!(s.series.points.is_empty());
    }

    #[test]
    fn throughput_is_bytes_per_microsecond() {
        let t = Throughput::new(2_000, 2_000_000, 1_000_000);
        assert_eq!(t.mb_per_sec, 2.0);
        assert_eq!(t.messages_per_sec, 2_000.0);
    }

    #[test]
    fn warmup_requests_are_counted_but_not_measured() {
        let mut r = Recorder::new(1_000);
        r.record(500, 900, 10, 100);
        r.record(1_000, 2_000, 10, 100);
        r.record_end_to_end(10, 20);
        let s = r.finish(ActorKind::Producer, 0, 10_000);
        assert_eq!(s.messages_total, 20);
        assert_eq!(s.throughput.messages, 10);
        assert_eq!(s.latency.count, 1);
        assert!(s.end_to_end.is_none());
    }

    #[test]
    fn time_series_buckets_by_completion() {
        let samples = [
            Sample {
                done_us: 5_000,
                messages: 10,
                bytes: 10_000,
                latency_us: 100,
            },
            Sample {
                done_us: 9_999,
                messages: 10,
                bytes: 10_000,
                latency_us: 300,
            },
            Sample {
                done_us: 25_000,
                messages: 5,
                bytes: 5_000,
                latency_us: 50,
            },
        ];
        let ts = TimeSeries::from_samples(&samples, 0, 10_000);
        assert_eq!(ts.points.len(), 3);
        assert!((ts.points[0].mb_per_sec - 2.0).abs() < 1e-9); // 20 kB in 10 ms
        assert_eq!(ts.points[0].latency_mean_us, 200.0);
        assert_eq!(ts.points[1].mb_per_sec, 0.0);
        assert!((ts.points[2].messages_per_sec - 500.0).abs() < 1e-9);
        assert!((ts.points[2].t_s - 0.03).abs() < 1e-12);
    }

    #[test]
    fn group_merge_adds_counts_and_series() {
        let mut a = Recorder::new(0);
        let mut b = Recorder::new(0);
        a.record(0, 1_000, 100, 100_000);
        b.record(0, 3_000, 100, 100_000);
        let a = a.finish(ActorKind::Producer, 0, 10_000);
        let b = b.finish(ActorKind::Producer, 1, 10_000);
        let g = GroupStats::merge(&[&a, &b], 10_000).unwrap();
        assert_eq!(g.actors, 2);
        assert_eq!(g.throughput.messages, 200);
        assert_eq!(g.latency.count, 2);
        assert_eq!(g.latency.min_us, 1_000);
        assert!((g.latency.max_us as f64 - 3_000.0).abs() <= 3.0);
        assert_eq!(g.series.points.len(), 1);
        assert!((g.series.points[0].mb_per_sec - 20.0).abs() < 1e-9);
        assert!((g.series.points[0].latency_mean_us - 2_000.0).abs() < 1e-9);
        assert!(GroupStats::merge(&[], 10_000).is_none());
    }

    #[test]
    fn moving_average_smooths() {
        assert_eq!(
            moving_average(&[2.0, 4.0, 6.0, 8.0], 2),
            vec![2.0, 3.0, 5.0, 7.0]
        );
        assert_eq!(moving_average(&[], 3), Vec::<f64>::new());
    }
}
