//! The I/O engine: the ring (`io::Io`) and the slot table that maps a completion's `user_data`
//! (a slot index) back to the tag its submitter gave the request. It is generic over that tag:
//! it does not know what the requests are for, so the layers that submit I/O sit above it and
//! it names none of them.

use crate::io::{Backend, Io, IoBuffer, IoCompletion, PushError, Request};

pub(crate) struct Engine<T> {
    io: Io,
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    /// Completions taken from the ring, before their slots are looked up (kept for its capacity).
    reaped: Vec<(IoCompletion, IoBuffer)>,
}

impl<T> Engine<T> {
    /// An engine with `slots_count` requests in flight at most (see `Io::new` for the rest).
    pub fn new(
        slots_count: usize,
        wakeup_fd: Option<std::os::fd::RawFd>,
        force_buffered: bool,
    ) -> Self {
        Engine {
            io: Io::new(slots_count, wakeup_fd, force_buffered),
            slots: (0..slots_count).map(|_| None).collect(),
            free: (0..slots_count).rev().collect(),
            reaped: Vec::new(),
        }
    }

    /// Which kernel interface carries the I/O (io_uring, or the loud fallback).
    pub fn backend(&self) -> Backend {
        self.io.backend()
    }

    /// Requests submitted whose completion has not been reaped yet.
    pub fn in_flight(&self) -> usize {
        self.io.in_flight()
    }

    /// Whether completions are waiting to be reaped (no system call).
    pub fn has_completions(&mut self) -> bool {
        self.io.has_completions()
    }

    /// Hands the queued requests to the kernel without waiting.
    pub fn submit_queued(&mut self) {
        self.io.submit();
    }

    /// Blocks until a completion (or a wakeup) or `timeout`.
    pub fn wait(&mut self, timeout: std::time::Duration) {
        self.io.wait(timeout);
    }

    /// Queues `request` over `buffer`, tagged `tag`. When every slot is taken (or the request
    /// does not fit its buffer) the tag and buffer are handed back; the caller retries later.
    pub fn submit(
        &mut self,
        tag: T,
        request: Request,
        buffer: IoBuffer,
    ) -> Result<(), (T, IoBuffer)> {
        let Some(index) = self.free.pop() else {
            return Err((tag, buffer));
        };
        match self.io.push(index, request, buffer) {
            Ok(()) => {
                self.slots[index] = Some(tag);
                Ok(())
            }
            Err(PushError::SlotBusy(buffer)) | Err(PushError::BufferTooSmall(buffer)) => {
                tracing::error!(?request, "storage: request refused by the I/O layer");
                self.free.push(index);
                Err((tag, buffer))
            }
        }
    }

    /// Queues `request` with an fdatasync linked behind it (see `Io::push_then_fdatasync`),
    /// taking two slots: `tag` completes the request, `sync_tag` the fdatasync. Hands the tag
    /// and buffer back when two slots are not free.
    pub fn submit_then_fdatasync(
        &mut self,
        tag: T,
        request: Request,
        buffer: IoBuffer,
        sync_tag: T,
    ) -> Result<(), (T, IoBuffer)> {
        if self.free.len() < 2 {
            return Err((tag, buffer));
        }
        let (Some(index), Some(sync_index)) = (self.free.pop(), self.free.pop()) else {
            return Err((tag, buffer));
        };
        match self
            .io
            .push_then_fdatasync(index, request, buffer, sync_index)
        {
            Ok(()) => {
                self.slots[index] = Some(tag);
                self.slots[sync_index] = Some(sync_tag);
                Ok(())
            }
            Err(PushError::SlotBusy(buffer)) | Err(PushError::BufferTooSmall(buffer)) => {
                tracing::error!(?request, "storage: request refused by the I/O layer");
                self.free.extend([sync_index, index]);
                Err((tag, buffer))
            }
        }
    }

    /// Moves the completed requests into `out`: each one's tag, the kernel's result (bytes or
    /// -errno) and its buffer.
    ///
    /// # Panics
    /// When the ring completes a slot that holds no request: the I/O layer hands back only the
    /// `user_data` this table gave it, and a request whose slot is lost would never complete.
    pub fn reap(&mut self, out: &mut Vec<(T, i32, IoBuffer)>) {
        let mut reaped = std::mem::take(&mut self.reaped);
        self.io.reap(&mut reaped);
        for (done, buffer) in reaped.drain(..) {
            let index = done.user_data as usize;
            let tag = self.slots.get_mut(index).and_then(Option::take);
            let tag = tag.unwrap_or_else(|| {
                panic!("storage: completion for slot {index}, which holds no request")
            });
            self.free.push(index);
            out.push((tag, done.result, buffer));
        }
        self.reaped = reaped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::AlignedBuf;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    /// Reaps until `count` completions arrived (or a few seconds passed).
    fn reap_all<T>(engine: &mut Engine<T>, count: usize) -> Vec<(T, i32, IoBuffer)> {
        let mut out = Vec::new();
        for _ in 0..1000 {
            engine.submit_queued();
            engine.reap(&mut out);
            if out.len() >= count {
                break;
            }
            engine.wait(Duration::from_millis(10));
        }
        out
    }

    fn round_trip(force_buffered: bool) {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let fd = file.as_raw_fd();
        // Any tag type: the engine hands back exactly what it was given.
        let mut engine: Engine<&'static str> = Engine::new(2, None, force_buffered);
        let mut buf = AlignedBuf::new(4096, 4096);
        buf.push(&[7u8; 4096]);
        let write = Request::Write {
            fd,
            offset: 0,
            len: 4096,
            dsync: false,
        };
        engine
            .submit_then_fdatasync("write", write, IoBuffer::Aligned(buf), "sync")
            .unwrap_or_else(|_| panic!("two free slots"));
        // Both slots are taken: a third request comes back with its tag.
        let refused = engine.submit("extra", Request::Fdatasync { fd }, IoBuffer::None);
        assert!(matches!(refused, Err(("extra", IoBuffer::None))));
        let mut done = reap_all(&mut engine, 2);
        done.sort_by_key(|(tag, _, _)| *tag);
        let tags: Vec<(&str, i32)> = done
            .iter()
            .map(|(tag, result, _)| (*tag, *result))
            .collect();
        assert_eq!(tags, [("sync", 0), ("write", 4096)]);
        // The slots are free again.
        engine
            .submit("sync again", Request::Fdatasync { fd }, IoBuffer::None)
            .unwrap_or_else(|_| panic!("a free slot"));
        assert_eq!(reap_all(&mut engine, 1)[0].0, "sync again");
        assert_eq!(engine.in_flight(), 0);
    }

    #[test]
    fn uring_engine_hands_each_completion_back_with_its_tag() {
        round_trip(false);
    }

    #[test]
    fn buffered_engine_hands_each_completion_back_with_its_tag() {
        round_trip(true);
    }
}
