//! The public vocabulary of a shard: keys, settings, results and errors.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::constants::{
    DEFERRED_OFFSET_WRITE_DELAY_MAX_MS, MEMORY_SYNC_INTERVAL_MAX_MS, MEMORY_SYNC_SIZE_MAX_BYTES,
    MEMORY_SYNC_SIZE_MIN_BYTES, READAHEAD_SHARD_READS_IN_FLIGHT_LIMIT, RECORD_SIZE_MAX_BYTES,
    SEGMENT_SIZE_MAX_BYTES, SEGMENT_SIZE_MIN_BYTES,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub stream_id: u32,
    pub topic_id: u32,
    pub partition_id: u32,
}

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// After the batch is on stable storage (its write and the fdatasync linked behind it).
    #[default]
    Durable,
    /// On receipt; flushed by size, count or interval.
    Memory,
}

/// Where a poll starts. `Next` is resolved by the caller from the stored consumer offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStart {
    Offset(u64),
    Timestamp(u64),
    First,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConsumerKind {
    Consumer,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerRef {
    pub kind: ConsumerKind,
    pub id: u32,
}

/// Per-partition settings (resolved by the dataplane from the topic and the server floor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSettings {
    /// Default acknowledgement of this topic; also selects the flush policy of memory mode.
    pub ack_mode: AckMode,
    /// Sealed segments whose newest record is older than this are deleted; `None` = never.
    pub message_expiry_us: Option<u64>,
    /// Oldest sealed segments are deleted while the partition is larger; `None` = unlimited.
    pub max_size_bytes: Option<u64>,
    /// Segment size of this partition (a topic's `segment_size` option), fixed when the
    /// partition opens; `None` = the shard's `StorageConfig::segment_size_bytes`.
    pub segment_size_bytes: Option<u64>,
}

impl Default for PartitionSettings {
    fn default() -> Self {
        PartitionSettings {
            ack_mode: AckMode::Durable,
            message_expiry_us: None,
            segment_size_bytes: None,
            max_size_bytes: None,
        }
    }
}

/// Flush policy of memory-mode partitions: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFlush {
    pub size_bytes: usize,
    pub messages_count: u64,
    pub interval_us: u64,
}

/// Sync policy of memory acknowledgements (see `memory_sync`): a memory-acknowledged record is
/// fdatasynced once the oldest unsynced one is `interval_us` old or `size_bytes` of them have
/// accumulated, whichever comes first — the most a power cut can take from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySync {
    pub interval_us: u64,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub segment_size_bytes: u64,
    /// Capacity of each of a partition's two write buffers (grown for a larger record).
    pub write_buffer_size_bytes: usize,
    /// Capacity of each pooled read buffer.
    pub read_buffer_size_bytes: usize,
    pub read_buffers_count: usize,
    /// Readahead reads a shard keeps in flight over all its windows. Every window filling up
    /// to [`crate::constants::READAHEAD_CHUNKS_MAX`] put 16 reads of 2 MiB in the queue of this
    /// VM's disk with 4 consumers on 2 shards: it ran no faster, and a poll whose chunk sat at
    /// the queue's end waited 20-100 ms (p99 60-110 ms against 10 ms with 2 per shard).
    pub readahead_reads_in_flight_max: usize,
    /// A sparse index entry is added when a record starts this far after the previous entry.
    pub index_interval_bytes: u64,
    /// Memory for recent written records kept for reads, over all the shard's partitions
    /// (the oldest go first, whichever partition they belong to).
    pub cache_size_bytes: usize,
    /// Unwritten bytes a partition may queue before `append` pushes back.
    pub pending_size_max_bytes: usize,
    pub preallocate: bool,
    /// Open segments with O_DIRECT (falls back loudly where refused).
    pub direct_io: bool,
    /// Skip io_uring and use the buffered-syscalls path (tests of the fallback).
    pub force_buffered_syscalls: bool,
    pub memory_flush: MemoryFlush,
    pub memory_sync: MemorySync,
    /// How long a deferred consumer-offset store (a poll's auto-commit) may wait for its write.
    pub deferred_offset_write_delay: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            segment_size_bytes: 1024 * 1024 * 1024,
            write_buffer_size_bytes: 4 * 1024 * 1024,
            read_buffer_size_bytes: 2 * 1024 * 1024,
            read_buffers_count: 32,
            readahead_reads_in_flight_max: 2,
            index_interval_bytes: 64 * 1024,
            cache_size_bytes: 4 * 1024 * 1024,
            pending_size_max_bytes: 64 * 1024 * 1024,
            preallocate: true,
            direct_io: true,
            force_buffered_syscalls: false,
            memory_flush: MemoryFlush {
                size_bytes: 1024 * 1024,
                messages_count: 1024,
                interval_us: 1000 * 1000,
            },
            memory_sync: MemorySync {
                interval_us: 1000 * 1000,
                size_bytes: 16 * 1024 * 1024,
            },
            deferred_offset_write_delay: Duration::from_millis(100),
        }
    }
}

impl StorageConfig {
    /// Checks the values against the crate's limits.
    pub fn validate(&self) -> Result<(), StorageError> {
        let bad = |what: &'static str| Err(StorageError::InvalidConfig(what));
        if !(SEGMENT_SIZE_MIN_BYTES..=SEGMENT_SIZE_MAX_BYTES).contains(&self.segment_size_bytes) {
            return bad("segment_size_bytes out of range");
        }
        if self.write_buffer_size_bytes < 64 * 1024
            || self.write_buffer_size_bytes > RECORD_SIZE_MAX_BYTES * 2
        {
            return bad("write_buffer_size_bytes out of range");
        }
        if self.read_buffer_size_bytes < 64 * 1024
            || self.read_buffer_size_bytes > RECORD_SIZE_MAX_BYTES * 2
        {
            return bad("read_buffer_size_bytes out of range");
        }
        if self.read_buffers_count == 0
            || self.read_buffers_count > crate::constants::IO_SLOTS_MAX / 2
        {
            return bad("read_buffers_count out of range");
        }
        if !(1..=READAHEAD_SHARD_READS_IN_FLIGHT_LIMIT)
            .contains(&self.readahead_reads_in_flight_max)
        {
            return bad("readahead_reads_in_flight_max out of range");
        }
        if self.index_interval_bytes == 0 || self.index_interval_bytes > self.segment_size_bytes {
            return bad("index_interval_bytes out of range");
        }
        if self.pending_size_max_bytes < RECORD_SIZE_MAX_BYTES {
            return bad("pending_size_max_bytes below the largest record");
        }
        let sync = &self.memory_sync;
        if !(1..=MEMORY_SYNC_INTERVAL_MAX_MS * 1000).contains(&sync.interval_us) {
            return bad("memory_sync.interval_us out of range");
        }
        if !(MEMORY_SYNC_SIZE_MIN_BYTES..=MEMORY_SYNC_SIZE_MAX_BYTES).contains(&sync.size_bytes) {
            return bad("memory_sync.size_bytes out of range");
        }
        if self.deferred_offset_write_delay
            > Duration::from_millis(DEFERRED_OFFSET_WRITE_DELAY_MAX_MS)
        {
            return bad("deferred_offset_write_delay above its maximum");
        }
        Ok(())
    }
}

/// Confirmation of an append: offsets assigned to the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub last_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadResult {
    pub partition_id: u32,
    /// Last offset of the partition (what the poll reply calls current_offset); `None` if empty.
    pub current_offset: Option<u64>,
    /// Messages in `chunks`.
    pub messages_count: u32,
    /// Offset of the last message returned; `None` when none is.
    pub last_offset: Option<u64>,
    /// Stored records (possibly one sliced record with a rewritten header), ready to send in
    /// order. Large records still in the read cache are shared with it rather than copied.
    pub chunks: Vec<Bytes>,
}

impl ReadResult {
    pub fn len_bytes(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// The records as one contiguous buffer (a copy: for tools and tests).
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

#[derive(Debug)]
pub enum ReadOutcome {
    Ready(ReadResult),
    /// Completes later with the token.
    Pending,
}

/// Counters the dataplane reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionInfo {
    pub current_offset: Option<u64>,
    pub messages_count: u64,
    pub size_bytes: u64,
    pub segments_count: u32,
}

/// Token the shard uses for its own flushes (drain, shutdown); callers must not use it.
pub const INTERNAL_TOKEN: u64 = u64::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub token: u64,
    pub key: PartitionKey,
    pub result: CompletionResult,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionResult {
    Append(Result<Appended, AppendError>),
    Read(Result<ReadResult, ReadError>),
    OffsetStored(Result<(), OffsetError>),
    Flushed(Result<(), AppendError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("no partition {0:?} on this shard")]
    UnknownPartition(PartitionKey),
    #[error("batch is not a valid record")]
    InvalidBatch,
    #[error("partition queue is full; retry after completions")]
    Backpressure,
    #[error("no space left on the device")]
    NoSpace,
    #[error("I/O error (errno {0})")]
    Io(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("no partition {0:?} on this shard")]
    UnknownPartition(PartitionKey),
    #[error("all read buffers are busy; retry after completions")]
    Backpressure,
    #[error("stored record failed verification at offset {0}")]
    Corrupt(u64),
    #[error("I/O error (errno {0})")]
    Io(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffsetError {
    #[error("no partition {0:?} on this shard")]
    UnknownPartition(PartitionKey),
    #[error("no stored offset for this consumer")]
    NotFound,
    #[error("I/O error (errno {0})")]
    Io(i32),
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("partition {0:?} already open on this shard")]
    PartitionExists(PartitionKey),
    #[error("no partition {0:?} on this shard")]
    UnknownPartition(PartitionKey),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StorageError {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Maps a negative completion result or an io::Error errno to an append error.
pub fn append_error_from_errno(errno: i32) -> AppendError {
    match errno {
        libc::ENOSPC | libc::EDQUOT => AppendError::NoSpace,
        other => AppendError::Io(other),
    }
}
