//! What every layer above the I/O engine shares inside one shard: the engine, whose requests
//! are tagged with the partition and purpose they serve ([`IoTag`]), the completions waiting for
//! the shard's caller, the counters, and record buffers kept for the caller to reuse.
//!
//! A tag is plain data: a disk read in flight is named by the id of its job in the read side's
//! table (`read::ReadJobs`), so this module depends on none of the layers that submit I/O, and
//! the shard's `process` is the one place that routes a completion back to its owner.

use crate::constants::{IO_SLOTS_MAX, RECYCLED_BUFFERS_MAX};
use crate::engine::Engine;
use crate::io::{IoBuffer, Request};
use crate::stats::ShardStats;
use crate::types::{Completion, ConsumerRef, PartitionKey, StorageConfig};

/// What an in-flight request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A write of queued records into the active segment's log.
    LogWrite,
    /// The fdatasync linked behind the log write whose last record has this offset.
    LogWriteSync(u64),
    /// An fdatasync asked for by `flush` (or a memory window falling due).
    LogFsync,
    /// Sparse index entries.
    IndexWrite,
    /// A consumer offset's slot write.
    OffsetWrite(ConsumerRef),
    /// A poll's disk read: the id of its job in the read side's table.
    Read(u32),
    /// A chunk of a readahead window, by chunk id.
    Readahead(u64),
}

/// The tag of every request a shard submits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IoTag {
    pub key: PartitionKey,
    pub purpose: Purpose,
}

pub(crate) struct Context {
    pub engine: Engine<IoTag>,
    /// Finished operations for the caller (`Shard::take_completions`).
    pub completions: Vec<Completion>,
    pub stats: ShardStats,
    /// Buffers of records evicted from memory, for the caller to reuse.
    pub recycled: Vec<Vec<u8>>,
}

impl Context {
    pub fn new(config: &StorageConfig, wakeup_fd: Option<std::os::fd::RawFd>) -> Context {
        Context {
            engine: Engine::new(IO_SLOTS_MAX, wakeup_fd, config.force_buffered_syscalls),
            completions: Vec::new(),
            stats: ShardStats::default(),
            recycled: Vec::new(),
        }
    }

    /// Queues `request` over `buffer` for `key`'s `purpose`; see `Engine::submit`.
    pub fn submit(
        &mut self,
        key: PartitionKey,
        purpose: Purpose,
        request: Request,
        buffer: IoBuffer,
    ) -> Result<(), (Purpose, IoBuffer)> {
        let tag = IoTag { key, purpose };
        self.engine
            .submit(tag, request, buffer)
            .map_err(|(tag, buffer)| (tag.purpose, buffer))
    }

    /// Queues `request` with an fdatasync linked behind it; see `Engine::submit_then_fdatasync`.
    pub fn submit_then_fdatasync(
        &mut self,
        key: PartitionKey,
        purpose: Purpose,
        request: Request,
        buffer: IoBuffer,
        sync_purpose: Purpose,
    ) -> Result<(), (Purpose, IoBuffer)> {
        let tag = IoTag { key, purpose };
        let sync_tag = IoTag {
            key,
            purpose: sync_purpose,
        };
        self.engine
            .submit_then_fdatasync(tag, request, buffer, sync_tag)
            .map_err(|(tag, buffer)| (tag.purpose, buffer))
    }

    /// Keeps a record buffer for reuse, up to [`RECYCLED_BUFFERS_MAX`]; beyond that it is freed.
    /// Its bytes stay as they were: whoever reuses it overwrites them, and keeping the length
    /// spares them zeroing it again.
    pub fn recycle(&mut self, bytes: Vec<u8>) {
        if self.recycled.len() < RECYCLED_BUFFERS_MAX {
            self.recycled.push(bytes);
        }
    }
}
