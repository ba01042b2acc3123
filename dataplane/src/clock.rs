//! The wall clock, in the protocol's unit. Read by the threads that stamp what they store
//! (shards, the metadata service, start-up); the worker core never reads a clock: its drivers
//! pass `now` in.

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
