//! The shard's I/O context: the ring, the slot table that maps a completion's `user_data` back
//! to its purpose, the completion queue handed to the caller, and the counters.

use std::time::Instant;

use crate::constants::IO_SLOTS_MAX;
use crate::io::{Io, IoCompletion, Op};
use crate::read::ReadJob;
use crate::stats::ShardStats;
use crate::types::{Completion, ConsumerRef, PartitionKey};

/// What an in-flight operation is for.
pub(crate) enum SlotKind {
    LogWrite,
    LogFsync,
    IndexWrite,
    Read(Box<ReadJob>),
    OffsetWrite(ConsumerRef),
}

pub(crate) struct Slot {
    pub key: PartitionKey,
    pub kind: SlotKind,
    pub started: Instant,
}

pub(crate) struct Engine {
    pub io: Io,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    pub completions: Vec<Completion>,
    pub stats: ShardStats,
}

/// No free I/O slot: the operation is retried when completions free one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotsExhausted;

impl Engine {
    pub fn new(io: Io) -> Engine {
        Engine {
            io,
            slots: (0..IO_SLOTS_MAX).map(|_| None).collect(),
            free: (0..IO_SLOTS_MAX).rev().collect(),
            completions: Vec::new(),
            stats: ShardStats::default(),
        }
    }

    /// Queues `op` for `key`.
    ///
    /// # Safety
    /// As [`Io::push`]: the memory behind the op stays valid and untouched until the slot's
    /// completion is returned by [`Engine::reap`].
    pub unsafe fn submit(
        &mut self,
        key: PartitionKey,
        kind: SlotKind,
        op: Op,
    ) -> Result<(), SlotsExhausted> {
        let Some(index) = self.free.pop() else {
            return Err(SlotsExhausted);
        };
        self.slots[index] = Some(Slot {
            key,
            kind,
            started: Instant::now(),
        });
        // SAFETY: forwarded from this function's contract.
        unsafe { self.io.push(index as u64, op) };
        Ok(())
    }

    /// Returns the completed operations with their slots.
    pub fn reap(&mut self, out: &mut Vec<(Slot, i32)>) {
        let mut raw: Vec<IoCompletion> = Vec::new();
        self.io.reap(&mut raw);
        for done in raw {
            let index = done.user_data as usize;
            let Some(slot) = self.slots.get_mut(index).and_then(Option::take) else {
                tracing::error!(
                    user_data = done.user_data,
                    "storage: completion for an unknown slot"
                );
                continue;
            };
            self.free.push(index);
            out.push((slot, done.result));
        }
    }
}
