//! Limits of the partition-log engine. Every buffer, pool, queue and retry loop is bounded by a
//! constant here or by a configuration value validated against these.

/// Bounds the configuration is validated against.
pub use riptide_config::limits::{
    DEFERRED_OFFSET_WRITE_DELAY_MAX_MS, MEMORY_SYNC_INTERVAL_MAX_MS, MEMORY_SYNC_SIZE_MAX_BYTES,
    MEMORY_SYNC_SIZE_MIN_BYTES, READAHEAD_SHARD_READS_IN_FLIGHT_LIMIT, RECORD_SIZE_MAX_BYTES,
    SEGMENT_SIZE_MAX_BYTES, SEGMENT_SIZE_MIN_BYTES,
};
/// A stored record is a batch as it arrived: its layout is the protocol's.
pub use riptide_protocol::constants::{BATCH_HEADER_SIZE_BYTES, MESSAGE_HEADER_SIZE_BYTES};
/// Messages in one record; the wire field is a u32 but frames are at least 48 bytes.
pub const RECORD_MESSAGES_MAX: u32 = (RECORD_SIZE_MAX_BYTES / MESSAGE_HEADER_SIZE_BYTES) as u32;

/// Direct-I/O alignment used when the kernel cannot tell us (statx STATX_DIOALIGN missing).
pub const DIRECT_IO_ALIGNMENT_DEFAULT_BYTES: usize = 4096;
/// Largest alignment we accept from a probe; anything larger is treated as a broken answer.
pub const DIRECT_IO_ALIGNMENT_MAX_BYTES: usize = 64 * 1024;

/// One sparse index entry: `[offset u64][timestamp u64][position u64]`.
pub const INDEX_ENTRY_SIZE_BYTES: usize = 24;

/// Submission-queue depth of a shard's io_uring; also the number of I/O slots.
pub const RING_ENTRIES: u32 = 1024;
/// I/O operations one shard may have in flight (user_data is a slot index below this).
pub const IO_SLOTS_MAX: usize = RING_ENTRIES as usize;

/// Appends queued in one partition (not yet written) before `append` pushes back.
pub const PENDING_APPENDS_MAX: usize = 65_536;
/// Evicted record buffers a shard keeps for its caller to reuse (`Shard::take_recycled`).
pub const RECYCLED_BUFFERS_MAX: usize = 256;
/// A poll shares a cached record (or the frames of a sliced one) with the read cache from this
/// size on; smaller pieces are copied into one chunk, so a reply of many small records does not
/// become one chunk per record for the network worker's writev.
pub const SHARED_CHUNK_MIN_BYTES: usize = 16 * 1024;
/// A shard over its cache budget evicts down to budget - budget / this, so the scan over its
/// partitions that finds the oldest records runs once per budget / this bytes written.
pub const CACHE_EVICTION_SLACK_DIVISOR: u64 = 16;
/// Chunk size of the synchronous recovery walk.
pub const RECOVERY_CHUNK_BYTES: usize = 1024 * 1024;
/// Reads a partition's sequential readahead keeps in flight (or read) ahead of its consumer:
/// enough to keep a device's queue busy while replies are sent.
pub const READAHEAD_CHUNKS_MAX: usize = 4;
/// Re-reads a single poll may issue while walking to its start record.
pub const READ_STEPS_MAX: u32 = 8;

/// Consumer-offset file: two slots, each `[offset u64][sequence u64][checksum u64]`, so a torn
/// write of one slot leaves the other intact.
pub const OFFSET_SLOT_SIZE_BYTES: usize = 24;
/// Distance between the two slots: a different sector for each.
pub const OFFSET_SLOT_STRIDE_BYTES: u64 = 4096;

/// Buckets of the latency histogram (powers of two of microseconds: <1 µs .. >= 2^30 µs).
pub const LATENCY_BUCKETS: usize = 32;

const _: () = assert!(SEGMENT_SIZE_MIN_BYTES.is_multiple_of(DIRECT_IO_ALIGNMENT_MAX_BYTES as u64));
const _: () = assert!(OFFSET_SLOT_SIZE_BYTES as u64 <= OFFSET_SLOT_STRIDE_BYTES);
