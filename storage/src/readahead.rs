//! Sequential readahead: after a poll served from disk, the shard keeps a window of up to
//! [`READAHEAD_CHUNKS_MAX`] large reads in flight ahead of the consumer, so the disk works
//! while replies are being sent — as the page cache's readahead would for a buffered reader,
//! with several requests queued on the device instead of one.
//!
//! ```text
//!  segment:  ...|rec|rec|rec|rec|rec|rec|rec|rec|rec|rec|rec|...
//!                 ^ next_offset        ^ chunk 2         ^ next_read
//!                 [ chunk 1 (ready)   )[ chunk 2 (in flight)   )
//! ```
//!
//! A chunk covers whole records: it starts where the previous one ends and ends at a sparse
//! index entry (or the segment's end), so no record is split between two buffers. The window
//! serves only a poll that starts exactly where the previous one ended (`next_offset`); any
//! other poll abandons it. Windows never take the last half of the read-buffer pool, which
//! stays for ordinary polls.

//!
//! [`Reads`] is the read side of a shard: the read-buffer pool, the polls' disk reads in flight
//! (`read::ReadJobs`) and every partition's window. `Shard::read` starts a poll through it and
//! the shard hands it the completions of reads (`read_done`, `chunk_done`).

use std::collections::{HashMap, VecDeque};
use std::os::fd::AsRawFd;

use crate::constants::{
    DIRECT_IO_ALIGNMENT_MAX_BYTES as POOL_ALIGNMENT_BYTES, READAHEAD_CHUNKS_MAX,
};
use crate::context::{Context, Purpose};
use crate::io::{round_down, round_up, AlignedBuf, IoBuffer, Request};
use crate::partition::Partition;
use crate::read::{self, Collector, ReadJob, ReadJobs, Target};
use crate::types::{
    Completion, CompletionResult, PartitionKey, ReadError, ReadOutcome, ReadResult, StorageConfig,
    INTERNAL_TOKEN,
};

/// A partition's readahead window (empty when closed).
#[derive(Default)]
struct Readahead {
    /// Offset a sequential poll starts at; it lies in the front chunk.
    next_offset: u64,
    /// Reads in file order, the front one holding `next_offset`.
    chunks: VecDeque<Chunk>,
    /// Where the read after the last chunk starts: segment base, position, record offset.
    next_read: (u64, u64, u64),
    /// A poll waiting for the front chunk's read: its token and collector.
    waiter: Option<(u64, Collector)>,
    /// Identifies chunk reads; a completion whose chunk left the window returns its buffer.
    next_chunk_id: u64,
}

struct Chunk {
    id: u64,
    /// The chunk's positions; its collector is swapped for a poll's while that poll walks it.
    job: ReadJob,
    /// The completed read: buffer and the kernel's result.
    read: Option<(AlignedBuf, i32)>,
}

/// What a window can do for a poll.
enum Served {
    Result(Result<ReadResult, ReadError>),
    /// The poll waits for the front chunk's read.
    Waiting,
}

/// The read buffers, the polls' reads that hold them, and the shard-wide bound on readahead
/// reads.
struct Buffers {
    /// Buffers not in use.
    pool: Vec<AlignedBuf>,
    /// Polls' disk reads in flight.
    jobs: ReadJobs,
    /// Buffers in all: in the pool, or held by a read, a window or its ready chunk.
    pool_size: usize,
    buffer_size_bytes: usize,
    /// Readahead chunk reads submitted and not completed, over every partition.
    readahead_in_flight: usize,
    /// `StorageConfig::readahead_reads_in_flight_max`.
    readahead_in_flight_max: usize,
}

impl Buffers {
    /// The buffer a read's completion hands back (a fresh one should the I/O layer ever not).
    fn returned(&self, buffer: IoBuffer) -> AlignedBuf {
        match buffer {
            IoBuffer::Aligned(buf) => buf,
            _ => AlignedBuf::new(self.buffer_size_bytes, POOL_ALIGNMENT_BYTES),
        }
    }
}

/// The read side of one shard.
pub(crate) struct Reads {
    buffers: Buffers,
    windows: HashMap<PartitionKey, Readahead>,
}

impl Reads {
    /// Allocates the read-buffer pool (`read_buffers_count` buffers) and the table of reads.
    pub fn new(config: &StorageConfig) -> Reads {
        let pool = (0..config.read_buffers_count)
            .map(|_| AlignedBuf::new(config.read_buffer_size_bytes, POOL_ALIGNMENT_BYTES))
            .collect();
        Reads {
            buffers: Buffers {
                pool,
                jobs: ReadJobs::new(config.read_buffers_count),
                pool_size: config.read_buffers_count,
                buffer_size_bytes: config.read_buffer_size_bytes,
                readahead_in_flight: 0,
                readahead_in_flight_max: config.readahead_reads_in_flight_max,
            },
            windows: HashMap::new(),
        }
    }

    /// Serves a poll that memory could not: from the partition's window when it starts where
    /// the previous poll ended, else with a read of its own (`Pending`: a `Read` completion
    /// with `token` follows).
    ///
    /// # Errors
    /// `Backpressure` when every read buffer (or I/O slot) is in use.
    pub fn read(
        &mut self,
        partition: &mut Partition,
        cx: &mut Context,
        token: u64,
        collector: Collector,
    ) -> Result<ReadOutcome, ReadError> {
        let window = self.windows.entry(partition.key).or_default();
        let mut collector = match serve(window, partition, cx, &mut self.buffers, token, collector)
        {
            Ok(outcome) => return outcome,
            Err(collector) => *collector,
        };
        let Some((segment_base, position, expected_offset, end)) =
            read::plan(partition, &collector)
        else {
            return Ok(ReadOutcome::Ready(collector.take_result()));
        };
        let buf = self.buffers.pool.pop().ok_or(ReadError::Backpressure)?;
        let job = ReadJob::new(token, collector, segment_base, position, expected_offset);
        let range = (position, end);
        match read::submit(
            partition,
            cx,
            &mut self.buffers.jobs,
            job,
            buf,
            range,
            false,
        ) {
            Ok(()) => Ok(ReadOutcome::Pending),
            Err((error, buf)) => {
                self.buffers.pool.push(buf);
                Err(error)
            }
        }
    }

    /// Handles the completion of a poll's read (`Purpose::Read(id)`): finishes the poll (a
    /// `Read` completion) or continues it with another read.
    pub fn read_done(
        &mut self,
        partition: &mut Partition,
        cx: &mut Context,
        id: u32,
        result: i32,
        buffer: IoBuffer,
    ) {
        partition.in_flight_ops -= 1;
        let buf = self.buffers.returned(buffer);
        let window = self.windows.entry(partition.key).or_default();
        let job = self.buffers.jobs.take(id);
        let (token, key) = (job.token, partition.key);
        if let Some(outcome) = finish(window, partition, cx, &mut self.buffers, job, result, buf) {
            cx.completions.push(Completion {
                token,
                key,
                result: CompletionResult::Read(outcome),
            });
        }
    }

    /// Handles the completion of a readahead chunk's read (`Purpose::Readahead(chunk_id)`).
    pub fn chunk_done(
        &mut self,
        partition: &mut Partition,
        cx: &mut Context,
        chunk_id: u64,
        result: i32,
        buffer: IoBuffer,
    ) {
        let buf = self.buffers.returned(buffer);
        let window = self.windows.entry(partition.key).or_default();
        chunk_read(
            window,
            partition,
            cx,
            &mut self.buffers,
            chunk_id,
            result,
            buf,
        );
    }

    /// Drops the partition's window (see [`abandon`]); management operations call it once the
    /// partition is idle, since they may remove what the window read.
    pub fn abandon(&mut self, key: PartitionKey) {
        if let Some(window) = self.windows.get_mut(&key) {
            abandon(window, &mut self.buffers);
        }
    }

    /// Forgets a closed partition's window (the partition is idle: nothing of it is in flight).
    pub fn forget(&mut self, key: PartitionKey) {
        if let Some(mut window) = self.windows.remove(&key) {
            abandon(&mut window, &mut self.buffers);
        }
    }
}

/// Opens a window after a poll that ended at `next_offset`, in the record at
/// `(segment_base, position, record_offset)`. An open window (another consumer's) stays.
fn start(
    window: &mut Readahead,
    partition: &mut Partition,
    cx: &mut Context,
    buffers: &mut Buffers,
    next_offset: u64,
    at: (u64, u64, u64),
) {
    if !window.chunks.is_empty() {
        return;
    }
    window.next_offset = next_offset;
    window.next_read = at;
    fill(window, partition, cx, buffers);
}

/// Submits chunk reads until the window is full, the pool is at half, the shard has
/// `readahead_reads_in_flight_max` readahead reads in flight, or the written data ends.
fn fill(
    window: &mut Readahead,
    partition: &mut Partition,
    cx: &mut Context,
    buffers: &mut Buffers,
) {
    while window.chunks.len() < READAHEAD_CHUNKS_MAX
        && buffers.pool.len() > buffers.pool_size / 2
        && buffers.readahead_in_flight < buffers.readahead_in_flight_max
    {
        let Some(buf) = buffers.pool.pop() else {
            return;
        };
        match submit_next_chunk(window, partition, cx, buf) {
            Ok(()) => {
                buffers.readahead_in_flight += 1;
                let peak = &mut cx.stats.readahead_reads_in_flight_peak;
                *peak = (*peak).max(buffers.readahead_in_flight as u64);
            }
            Err(buf) => {
                buffers.pool.push(buf);
                return;
            }
        }
    }
}

/// Plans the chunk at `next_read` to fit `buf` and submits its read; hands the buffer back when
/// there is nothing to read (or no slot).
fn submit_next_chunk(
    window: &mut Readahead,
    partition: &mut Partition,
    cx: &mut Context,
    buf: AlignedBuf,
) -> Result<(), AlignedBuf> {
    let alignment = partition.alignment;
    let (mut segment_base, mut position, mut offset) = window.next_read;
    let Some(mut segment) = partition
        .segments
        .iter()
        .find(|s| s.base_offset == segment_base)
    else {
        return Err(buf);
    };
    if position >= segment.end_bytes {
        let Some(next) = partition
            .segments
            .iter()
            .find(|s| s.base_offset > segment_base && s.end_bytes > 0)
        else {
            return Err(buf);
        };
        segment = next;
        (segment_base, position, offset) = (next.base_offset, 0, next.base_offset);
    }
    let file_position = round_down(position, alignment);
    let fits = |end: u64| round_up((end - file_position) as usize, alignment) <= buf.capacity();
    // End at a record boundary: the segment's end, or the last index entry that fits.
    let (end, end_offset) = if fits(segment.end_bytes) {
        (segment.end_bytes, segment.next_offset())
    } else {
        let after = &segment.index[segment.index.partition_point(|e| e.position <= position)..];
        match after[..after.partition_point(|e| fits(e.position))].last() {
            Some(entry) => (entry.position, entry.offset),
            // A record larger than the buffer: ordinary polls read it.
            None => return Err(buf),
        }
    };
    let capacity = buf.capacity();
    let request = Request::Read {
        fd: segment.log.file.as_raw_fd(),
        offset: file_position,
        len: round_up((end - file_position) as usize, alignment),
    };
    let id = window.next_chunk_id;
    let placeholder = Collector::new(Target::Offset(offset), 0, 0, partition.key.partition_id);
    let mut job = ReadJob::new(INTERNAL_TOKEN, placeholder, segment_base, position, offset);
    job.file_position = file_position;
    job.walk_end = end;
    let purpose = Purpose::Readahead(id);
    match cx.submit(partition.key, purpose, request, IoBuffer::Aligned(buf)) {
        Ok(()) => {
            window.next_chunk_id += 1;
            window.next_read = (segment_base, end, end_offset);
            window.chunks.push_back(Chunk {
                id,
                job,
                read: None,
            });
            partition.in_flight_ops += 1;
            Ok(())
        }
        Err((_, IoBuffer::Aligned(buf))) => Err(buf),
        Err(_) => Err(AlignedBuf::new(capacity, alignment)),
    }
}

/// Serves a poll from the window when it starts where the previous poll ended. Hands the
/// collector back when the poll must read on its own (the window is then abandoned, unless a
/// poll waits for it).
fn serve(
    window: &mut Readahead,
    partition: &mut Partition,
    cx: &mut Context,
    buffers: &mut Buffers,
    token: u64,
    collector: Collector,
) -> Result<Result<ReadOutcome, ReadError>, Box<Collector>> {
    if window.chunks.is_empty() {
        return Err(Box::new(collector));
    }
    let sequential = collector.target == Target::Offset(window.next_offset);
    if !sequential || window.waiter.is_some() {
        abandon(window, buffers);
        return Err(Box::new(collector));
    }
    cx.stats.readahead_hits += 1;
    match consume(window, partition, cx, buffers, token, collector) {
        Served::Result(outcome) => Ok(outcome.map(ReadOutcome::Ready)),
        Served::Waiting => Ok(Ok(ReadOutcome::Pending)),
    }
}

/// Walks the ready chunks at the front of the window for a poll, releasing every chunk it
/// walks to the end, then tops the window up.
fn consume(
    window: &mut Readahead,
    partition: &mut Partition,
    cx: &mut Context,
    buffers: &mut Buffers,
    token: u64,
    mut collector: Collector,
) -> Served {
    while !collector.full() {
        let Some(chunk) = window.chunks.front_mut() else {
            break;
        };
        let Some((buf, result)) = chunk.read.as_ref() else {
            if collector.messages_count() == 0 {
                window.waiter = Some((token, collector));
                return Served::Waiting;
            }
            break;
        };
        let walked = if *result < 0 {
            Err(ReadError::Io(-result))
        } else {
            std::mem::swap(&mut chunk.job.collector, &mut collector);
            let walked = read::walk_buffer(&mut chunk.job, buf);
            std::mem::swap(&mut chunk.job.collector, &mut collector);
            walked
        };
        // Chunks hold whole records: a cut one means the read came back short.
        let walked = walked.and_then(|cut| match cut {
            0 => Ok(()),
            _ => Err(ReadError::Io(libc::EIO)),
        });
        if let Err(error) = walked {
            abandon(window, buffers);
            return Served::Result(Err(error));
        }
        if chunk.job.walk_position < chunk.job.walk_end {
            break;
        }
        if let Some(Chunk {
            read: Some((buf, _)),
            ..
        }) = window.chunks.pop_front()
        {
            buffers.pool.push(buf);
        }
    }
    if let Some(next_offset) = collector.next_offset {
        window.next_offset = next_offset;
    }
    fill(window, partition, cx, buffers);
    Served::Result(Ok(collector.take_result()))
}

/// Drops the window: ready buffers return to the pool now, those of reads in flight when the
/// reads complete. A window a poll waits for stays.
fn abandon(window: &mut Readahead, buffers: &mut Buffers) {
    if window.waiter.is_some() {
        return;
    }
    for chunk in window.chunks.drain(..) {
        if let Some((buf, _)) = chunk.read {
            buffers.pool.push(buf);
        }
    }
}

/// Handles the completion of a chunk read; serves the waiting poll when it was the front one.
fn chunk_read(
    window: &mut Readahead,
    partition: &mut Partition,
    cx: &mut Context,
    buffers: &mut Buffers,
    chunk_id: u64,
    result: i32,
    mut buf: AlignedBuf,
) {
    partition.in_flight_ops -= 1;
    buffers.readahead_in_flight -= 1;
    let Some(chunk) = window.chunks.iter_mut().find(|c| c.id == chunk_id) else {
        buffers.pool.push(buf);
        return;
    };
    buf.set_len(result.max(0) as usize);
    chunk.read = Some((buf, result));
    let front_ready = window.chunks.front().is_some_and(|c| c.read.is_some());
    let waiter = if front_ready {
        window.waiter.take()
    } else {
        None
    };
    let Some((token, collector)) = waiter else {
        // The shard may have held this window back: top it up with the read that just ended.
        fill(window, partition, cx, buffers);
        return;
    };
    if let Served::Result(outcome) = consume(window, partition, cx, buffers, token, collector) {
        cx.completions.push(Completion {
            token,
            key: partition.key,
            result: CompletionResult::Read(outcome),
        });
    }
}

/// Walks a completed read for its poll; returns the outcome, or `None` when the poll went on
/// with another read (its completion follows). Opens a window where a successful poll ended.
fn finish(
    window: &mut Readahead,
    partition: &mut Partition,
    cx: &mut Context,
    buffers: &mut Buffers,
    job: ReadJob,
    result: i32,
    buf: AlignedBuf,
) -> Option<Result<ReadResult, ReadError>> {
    match read::walk(partition, job, result, buf) {
        read::Step::Done(outcome, buf, next) => {
            buffers.pool.push(buf);
            if let Some(job) = next {
                if let Some(next_offset) = job.collector.next_offset {
                    let at = (job.segment_base, job.walk_position, job.expected_offset);
                    start(window, partition, cx, buffers, next_offset, at);
                }
            }
            Some(outcome)
        }
        read::Step::Again(job, buf, range) => {
            match read::submit(partition, cx, &mut buffers.jobs, job, buf, range, true) {
                Ok(()) => None,
                Err((error, buf)) => {
                    buffers.pool.push(buf);
                    Some(Err(error))
                }
            }
        }
    }
}
