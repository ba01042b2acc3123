//! Bounds that more than one crate must agree on: what the storage engine supports is what the
//! configuration may ask for. Defined here once; `riptide-storage` uses them for its own checks
//! and this crate validates `riptide.toml` against them.

/// Largest record (one stored batch) the engine accepts: the protocol's default frame limit.
pub const RECORD_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Smallest segment the engine rotates at (a record larger than its segment gets a segment of
/// its own). Tests use small segments to rotate often; production sizes are MiB to GiB. Every
/// segment size the engine is given — `storage.segment_size_bytes`, a topic's `segment_size` —
/// lies within [`SEGMENT_SIZE_MIN_BYTES`]..=[`SEGMENT_SIZE_MAX_BYTES`].
pub const SEGMENT_SIZE_MIN_BYTES: u64 = 64 * 1024;
/// Largest segment: index positions are u64, but a segment is the unit retention deletes.
pub const SEGMENT_SIZE_MAX_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// `storage.segment_size_bytes` is a multiple of this (a direct-I/O block).
pub const SEGMENT_SIZE_MULTIPLE_BYTES: u64 = 4096;
/// A topic's `segment_size` option, as Iggy's catalog accepts it: 1 MiB ..= 1 GiB, a multiple of
/// [`TOPIC_SEGMENT_SIZE_MULTIPLE_BYTES`]; a topic created without it gets
/// `storage.segment_size_bytes` clamped into this range.
pub const TOPIC_SEGMENT_SIZE_MIN_BYTES: u64 = 1024 * 1024;
/// See [`TOPIC_SEGMENT_SIZE_MIN_BYTES`].
pub const TOPIC_SEGMENT_SIZE_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// See [`TOPIC_SEGMENT_SIZE_MIN_BYTES`].
pub const TOPIC_SEGMENT_SIZE_MULTIPLE_BYTES: u64 = 512;

/// Bounds of a partition's disk write and of a disk read: 64 KiB up to two largest records.
pub const IO_BUFFER_MIN_BYTES: u64 = 64 * 1024;
/// See [`IO_BUFFER_MIN_BYTES`].
pub const IO_BUFFER_MAX_BYTES: u64 = 2 * RECORD_SIZE_MAX_BYTES as u64;

/// Largest shard-wide bound of readahead reads in flight (`storage.readahead_reads_in_flight`):
/// windows never take more than half of the default pool of 32 read buffers anyway.
pub const READAHEAD_SHARD_READS_IN_FLIGHT_LIMIT: usize = 16;

/// Longest a deferred consumer-offset store (an auto-commit) may wait for its write: what a
/// crash can make a consumer group read again (`storage.auto_commit_write_delay_ms`).
pub const DEFERRED_OFFSET_WRITE_DELAY_MAX_MS: u64 = 60_000;

/// Bounds of `storage.metadata_log_compaction_bytes`, the metadata log size that makes the
/// next change compact it into a snapshot: the whole log is read into memory at start-up.
pub const METADATA_LOG_COMPACTION_MIN_BYTES: u64 = 1024;
/// See [`METADATA_LOG_COMPACTION_MIN_BYTES`].
pub const METADATA_LOG_COMPACTION_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Longest `storage.memory_sync_interval_ms`: an hour. Beyond that a memory acknowledgement
/// is, in practice, synced only at rotation and at a clean stop.
pub const MEMORY_SYNC_INTERVAL_MAX_MS: u64 = 3_600_000;
/// Bounds of `storage.memory_sync_bytes`: from one smallest I/O buffer to one largest segment
/// (a segment is synced when it is sealed anyway).
pub const MEMORY_SYNC_SIZE_MIN_BYTES: u64 = IO_BUFFER_MIN_BYTES;
/// See [`MEMORY_SYNC_SIZE_MIN_BYTES`].
pub const MEMORY_SYNC_SIZE_MAX_BYTES: u64 = SEGMENT_SIZE_MAX_BYTES;

const _: () = assert!((RECORD_SIZE_MAX_BYTES as u64) < SEGMENT_SIZE_MAX_BYTES);
const _: () = assert!(MEMORY_SYNC_SIZE_MIN_BYTES <= MEMORY_SYNC_SIZE_MAX_BYTES);
const _: () = assert!(SEGMENT_SIZE_MIN_BYTES.is_multiple_of(SEGMENT_SIZE_MULTIPLE_BYTES));
// Whatever a topic may ask for, the engine opens.
const _: () = assert!(
    SEGMENT_SIZE_MIN_BYTES <= TOPIC_SEGMENT_SIZE_MIN_BYTES
        && TOPIC_SEGMENT_SIZE_MIN_BYTES <= TOPIC_SEGMENT_SIZE_MAX_BYTES
        && TOPIC_SEGMENT_SIZE_MAX_BYTES <= SEGMENT_SIZE_MAX_BYTES
);
const _: () =
    assert!(TOPIC_SEGMENT_SIZE_MIN_BYTES.is_multiple_of(TOPIC_SEGMENT_SIZE_MULTIPLE_BYTES));
const _: () = assert!(IO_BUFFER_MIN_BYTES <= IO_BUFFER_MAX_BYTES);
