//! The loss window of memory acknowledgements. A memory-mode append is confirmed on receipt
//! and written by the flush thresholds (`MemoryFlush`), but a write without an fdatasync sits
//! in the device's volatile cache and in the page cache: a power cut loses it. This window
//! bounds that loss: once the oldest memory-acknowledged record not yet covered by an fdatasync
//! is `MemorySync::interval_us` old, or `MemorySync::size_bytes` of them have accumulated, the
//! partition's next write carries a linked fdatasync — or, with nothing left to write, a
//! standalone fdatasync is issued.
//!
//! A sync that covers every record appended so far closes the window; its contents are kept
//! with the sync and put back should it fail. A sync that covers only part leaves the window
//! open, so the next write is synced too: conservative, never late.

use std::time::{Duration, Instant};

use crate::types::MemorySync;

/// Memory-acknowledged records not yet covered by an fdatasync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Window {
    /// When the oldest of them was acknowledged.
    pub since: Option<Instant>,
    pub bytes: u64,
}

impl Window {
    /// Counts a memory-acknowledged record of `len_bytes` appended at `now`.
    pub fn record(&mut self, len_bytes: usize, now: Instant) {
        self.since.get_or_insert(now);
        self.bytes += len_bytes as u64;
    }

    pub fn is_open(&self) -> bool {
        self.since.is_some()
    }

    /// Whether an fdatasync is due under `policy` at `now`.
    pub fn due(&self, policy: &MemorySync, now: Instant) -> bool {
        let Some(since) = self.since else {
            return false;
        };
        self.bytes >= policy.size_bytes
            || now.saturating_duration_since(since) >= Duration::from_micros(policy.interval_us)
    }

    /// When the window falls due by age, if it is open.
    pub fn deadline(&self, policy: &MemorySync) -> Option<Instant> {
        self.since
            .map(|since| since + Duration::from_micros(policy.interval_us))
    }

    /// Closes the window for a sync that covers all of it; returns what it held.
    pub fn take(&mut self) -> Window {
        std::mem::take(self)
    }

    /// Reopens what a failed sync was to cover (the oldest record counts from its own time).
    pub fn restore(&mut self, failed: Window) {
        self.since = match (self.since, failed.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.bytes += failed.bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: MemorySync = MemorySync {
        interval_us: 100_000,
        size_bytes: 1000,
    };

    #[test]
    fn due_by_age_or_by_size_never_when_closed() {
        let start = Instant::now();
        let mut window = Window::default();
        assert!(!window.due(&POLICY, start + Duration::from_secs(60)));
        window.record(10, start);
        window.record(10, start + Duration::from_millis(90));
        assert!(!window.due(&POLICY, start + Duration::from_millis(99)));
        assert!(
            window.due(&POLICY, start + Duration::from_millis(100)),
            "by age of the oldest"
        );
        let mut big = Window::default();
        big.record(999, start);
        assert!(!big.due(&POLICY, start));
        big.record(1, start);
        assert!(big.due(&POLICY, start), "by size");
    }

    #[test]
    fn a_failed_sync_puts_its_records_back_with_their_age() {
        let start = Instant::now();
        let mut window = Window::default();
        window.record(500, start);
        let in_flight = window.take();
        assert!(!window.is_open());
        window.record(100, start + Duration::from_millis(50));
        window.restore(in_flight);
        assert_eq!(window.since, Some(start));
        assert_eq!(window.bytes, 600);
    }
}
