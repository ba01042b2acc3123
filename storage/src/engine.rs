//! The shard's I/O context: the ring, the slot table that maps a completion's `user_data` back
//! to its purpose, the completion queue handed to the caller, and the counters.

use crate::constants::{IO_SLOTS_MAX, RECYCLED_BUFFERS_MAX};
use crate::io::{Io, IoBuffer, PushError, Request};
use crate::read::ReadJob;
use crate::stats::ShardStats;
use crate::types::{Completion, ConsumerRef, PartitionKey, StorageConfig};

/// What an in-flight request is for.
pub(crate) enum SlotKind {
    LogWrite,
    /// The fdatasync linked behind the log write whose last record has this offset.
    LogWriteSync(u64),
    /// An fdatasync asked for by `flush`.
    LogFsync,
    /// Index entries of the segment with this base offset.
    IndexWrite,
    Read(Box<ReadJob>),
    /// A chunk of a readahead window, by chunk id (see `readahead`).
    Readahead(u64),
    OffsetWrite(ConsumerRef),
}

pub(crate) struct Slot {
    pub key: PartitionKey,
    pub kind: SlotKind,
}

pub(crate) struct Engine {
    pub io: Io,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    pub completions: Vec<Completion>,
    pub stats: ShardStats,
    /// Buffers of records evicted from memory, for the caller to reuse.
    pub recycled: Vec<Vec<u8>>,
    /// Readahead chunk reads submitted and not completed, over every partition.
    pub readahead_reads_in_flight: usize,
    /// `StorageConfig::readahead_reads_in_flight_max`.
    pub readahead_reads_in_flight_max: usize,
}

impl Engine {
    pub fn new(config: &StorageConfig, wakeup_fd: Option<std::os::fd::RawFd>) -> Engine {
        Engine {
            io: Io::new(IO_SLOTS_MAX, wakeup_fd, config.force_buffered_syscalls),
            slots: (0..IO_SLOTS_MAX).map(|_| None).collect(),
            free: (0..IO_SLOTS_MAX).rev().collect(),
            completions: Vec::new(),
            stats: ShardStats::default(),
            recycled: Vec::new(),
            readahead_reads_in_flight: 0,
            readahead_reads_in_flight_max: config.readahead_reads_in_flight_max,
        }
    }

    /// Queues `request` over `buffer` for `key`. When every slot is taken (or the request does
    /// not fit its buffer) the kind and buffer are handed back; the caller retries later.
    pub fn submit(
        &mut self,
        key: PartitionKey,
        kind: SlotKind,
        request: Request,
        buffer: IoBuffer,
    ) -> Result<(), (SlotKind, IoBuffer)> {
        let Some(index) = self.free.pop() else {
            return Err((kind, buffer));
        };
        match self.io.push(index, request, buffer) {
            Ok(()) => {
                self.slots[index] = Some(Slot { key, kind });
                Ok(())
            }
            Err(PushError::SlotBusy(buffer)) | Err(PushError::BufferTooSmall(buffer)) => {
                tracing::error!(?request, "storage: request refused by the I/O layer");
                self.free.push(index);
                Err((kind, buffer))
            }
        }
    }

    /// Queues `request` with an fdatasync linked behind it (see `Io::push_then_fdatasync`),
    /// taking two slots. Hands the kind and buffer back when two slots are not free.
    pub fn submit_then_fdatasync(
        &mut self,
        key: PartitionKey,
        kind: SlotKind,
        request: Request,
        buffer: IoBuffer,
        sync_kind: SlotKind,
    ) -> Result<(), (SlotKind, IoBuffer)> {
        if self.free.len() < 2 {
            return Err((kind, buffer));
        }
        let (Some(index), Some(sync_index)) = (self.free.pop(), self.free.pop()) else {
            return Err((kind, buffer));
        };
        match self
            .io
            .push_then_fdatasync(index, request, buffer, sync_index)
        {
            Ok(()) => {
                self.slots[index] = Some(Slot { key, kind });
                self.slots[sync_index] = Some(Slot {
                    key,
                    kind: sync_kind,
                });
                Ok(())
            }
            Err(PushError::SlotBusy(buffer)) | Err(PushError::BufferTooSmall(buffer)) => {
                tracing::error!(?request, "storage: request refused by the I/O layer");
                self.free.extend([sync_index, index]);
                Err((kind, buffer))
            }
        }
    }

    /// Keeps a record buffer for reuse, up to [`RECYCLED_BUFFERS_MAX`]; beyond that it is freed.
    /// Its bytes stay as they were: whoever reuses it overwrites them, and keeping the length
    /// spares them zeroing it again.
    pub fn recycle(&mut self, bytes: Vec<u8>) {
        if self.recycled.len() < RECYCLED_BUFFERS_MAX {
            self.recycled.push(bytes);
        }
    }

    /// Returns the completed requests with their slots and buffers.
    pub fn reap(&mut self, out: &mut Vec<(Slot, i32, IoBuffer)>) {
        let mut raw = Vec::new();
        self.io.reap(&mut raw);
        for (done, buffer) in raw {
            let index = done.user_data as usize;
            let Some(slot) = self.slots.get_mut(index).and_then(Option::take) else {
                tracing::error!(
                    user_data = done.user_data,
                    "storage: completion for an unknown slot"
                );
                continue;
            };
            self.free.push(index);
            out.push((slot, done.result, buffer));
        }
    }
}
