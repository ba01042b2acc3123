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

use std::collections::VecDeque;
use std::os::fd::AsRawFd;

use crate::constants::READAHEAD_CHUNKS_MAX;
use crate::engine::{Engine, SlotKind};
use crate::io::{round_down, round_up, AlignedBuf, IoBuffer, Request};
use crate::partition::Partition;
use crate::read::{self, Collector, ReadJob, Target};
use crate::types::{
    Completion, CompletionResult, ReadError, ReadOutcome, ReadResult, INTERNAL_TOKEN,
};

/// A partition's readahead window (empty when closed).
#[derive(Default)]
pub(crate) struct Readahead {
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
    job: Box<ReadJob>,
    /// The completed read: buffer and the kernel's result.
    read: Option<(AlignedBuf, i32)>,
}

/// What a window can do for a poll.
enum Served {
    Result(Result<ReadResult, ReadError>),
    /// The poll waits for the front chunk's read.
    Waiting,
}

/// Opens a window after a poll that ended at `next_offset`, in the record at
/// `(segment_base, position, record_offset)`. An open window (another consumer's) stays.
pub(crate) fn start(
    partition: &mut Partition,
    engine: &mut Engine,
    pool: &mut Vec<AlignedBuf>,
    pool_size: usize,
    next_offset: u64,
    at: (u64, u64, u64),
) {
    if !partition.readahead.chunks.is_empty() {
        return;
    }
    partition.readahead.next_offset = next_offset;
    partition.readahead.next_read = at;
    fill(partition, engine, pool, pool_size);
}

/// Submits chunk reads until the window is full, the pool is at half, the shard has
/// `readahead_reads_in_flight_max` readahead reads in flight, or the written data ends.
fn fill(
    partition: &mut Partition,
    engine: &mut Engine,
    pool: &mut Vec<AlignedBuf>,
    pool_size: usize,
) {
    while partition.readahead.chunks.len() < READAHEAD_CHUNKS_MAX
        && pool.len() > pool_size / 2
        && engine.readahead_reads_in_flight < engine.readahead_reads_in_flight_max
    {
        let Some(buf) = pool.pop() else { return };
        if let Err(buf) = submit_next_chunk(partition, engine, buf) {
            pool.push(buf);
            return;
        }
    }
}

/// Plans the chunk at `next_read` to fit `buf` and submits its read; hands the buffer back when
/// there is nothing to read (or no slot).
fn submit_next_chunk(
    partition: &mut Partition,
    engine: &mut Engine,
    buf: AlignedBuf,
) -> Result<(), AlignedBuf> {
    let alignment = partition.alignment;
    let (mut segment_base, mut position, mut offset) = partition.readahead.next_read;
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
    let readahead = &mut partition.readahead;
    let id = readahead.next_chunk_id;
    let placeholder = Collector::new(Target::Offset(offset), 0, 0, partition.key.partition_id);
    let mut job = ReadJob::new(INTERNAL_TOKEN, placeholder, segment_base, position, offset);
    job.file_position = file_position;
    job.walk_end = end;
    match engine.submit(
        partition.key,
        SlotKind::Readahead(id),
        request,
        IoBuffer::Aligned(buf),
    ) {
        Ok(()) => {
            readahead.next_chunk_id += 1;
            readahead.next_read = (segment_base, end, end_offset);
            readahead.chunks.push_back(Chunk {
                id,
                job,
                read: None,
            });
            partition.in_flight_ops += 1;
            engine.readahead_reads_in_flight += 1;
            let peak = &mut engine.stats.readahead_reads_in_flight_peak;
            *peak = (*peak).max(engine.readahead_reads_in_flight as u64);
            Ok(())
        }
        Err((_, IoBuffer::Aligned(buf))) => Err(buf),
        Err(_) => Err(AlignedBuf::new(capacity, alignment)),
    }
}

/// Serves a poll from the window when it starts where the previous poll ended. Hands the
/// collector back when the poll must read on its own (the window is then abandoned, unless a
/// poll waits for it).
pub(crate) fn serve(
    partition: &mut Partition,
    engine: &mut Engine,
    pool: &mut Vec<AlignedBuf>,
    pool_size: usize,
    token: u64,
    collector: Collector,
) -> Result<Result<ReadOutcome, ReadError>, Box<Collector>> {
    let readahead = &partition.readahead;
    if readahead.chunks.is_empty() {
        return Err(Box::new(collector));
    }
    let sequential = collector.target == Target::Offset(readahead.next_offset);
    if !sequential || readahead.waiter.is_some() {
        abandon(partition, pool);
        return Err(Box::new(collector));
    }
    engine.stats.readahead_hits += 1;
    match consume(partition, engine, pool, pool_size, token, collector) {
        Served::Result(outcome) => Ok(outcome.map(ReadOutcome::Ready)),
        Served::Waiting => Ok(Ok(ReadOutcome::Pending)),
    }
}

/// Walks the ready chunks at the front of the window for a poll, releasing every chunk it
/// walks to the end, then tops the window up.
fn consume(
    partition: &mut Partition,
    engine: &mut Engine,
    pool: &mut Vec<AlignedBuf>,
    pool_size: usize,
    token: u64,
    mut collector: Collector,
) -> Served {
    let readahead = &mut partition.readahead;
    while !collector.full() {
        let Some(chunk) = readahead.chunks.front_mut() else {
            break;
        };
        let Some((buf, result)) = chunk.read.as_ref() else {
            if collector.messages_count() == 0 {
                readahead.waiter = Some((token, collector));
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
            abandon(partition, pool);
            return Served::Result(Err(error));
        }
        if chunk.job.walk_position < chunk.job.walk_end {
            break;
        }
        if let Some(Chunk {
            read: Some((buf, _)),
            ..
        }) = readahead.chunks.pop_front()
        {
            pool.push(buf);
        }
    }
    if let Some(next_offset) = collector.next_offset {
        partition.readahead.next_offset = next_offset;
    }
    fill(partition, engine, pool, pool_size);
    Served::Result(Ok(collector.take_result()))
}

/// Drops the window: ready buffers return to the pool now, those of reads in flight when the
/// reads complete. A window a poll waits for stays.
pub(crate) fn abandon(partition: &mut Partition, pool: &mut Vec<AlignedBuf>) {
    let readahead = &mut partition.readahead;
    if readahead.waiter.is_some() {
        return;
    }
    for chunk in readahead.chunks.drain(..) {
        if let Some((buf, _)) = chunk.read {
            pool.push(buf);
        }
    }
}

/// Handles the completion of a chunk read; serves the waiting poll when it was the front one.
pub(crate) fn completed(
    partition: &mut Partition,
    engine: &mut Engine,
    pool: &mut Vec<AlignedBuf>,
    pool_size: usize,
    chunk_id: u64,
    result: i32,
    mut buf: AlignedBuf,
) {
    partition.in_flight_ops -= 1;
    engine.readahead_reads_in_flight -= 1;
    let readahead = &mut partition.readahead;
    let Some(chunk) = readahead.chunks.iter_mut().find(|c| c.id == chunk_id) else {
        pool.push(buf);
        return;
    };
    buf.set_len(result.max(0) as usize);
    chunk.read = Some((buf, result));
    let front_ready = readahead.chunks.front().is_some_and(|c| c.read.is_some());
    let waiter = if front_ready {
        readahead.waiter.take()
    } else {
        None
    };
    let Some((token, collector)) = waiter else {
        // The shard may have held this window back: top it up with the read that just ended.
        fill(partition, engine, pool, pool_size);
        return;
    };
    if let Served::Result(outcome) = consume(partition, engine, pool, pool_size, token, collector) {
        engine.completions.push(Completion {
            token,
            key: partition.key,
            result: CompletionResult::Read(outcome),
        });
    }
}

/// Walks a completed read for its poll; returns the outcome, or `None` when the poll went on
/// with another read (its completion follows). Opens a window where a successful poll ended.
pub(crate) fn finish(
    partition: &mut Partition,
    engine: &mut Engine,
    pool: &mut Vec<AlignedBuf>,
    pool_size: usize,
    job: Box<ReadJob>,
    result: i32,
    buf: AlignedBuf,
) -> Option<Result<ReadResult, ReadError>> {
    match read::walk(partition, job, result, buf) {
        read::Step::Done(outcome, buf, next) => {
            pool.push(buf);
            if let Some(job) = next {
                if let Some(next_offset) = job.collector.next_offset {
                    let at = (job.segment_base, job.walk_position, job.expected_offset);
                    start(partition, engine, pool, pool_size, next_offset, at);
                }
            }
            Some(outcome)
        }
        read::Step::Again(job, buf, range) => {
            match read::submit(partition, engine, job, buf, range, true) {
                Ok(()) => None,
                Err((error, buf)) => {
                    pool.push(buf);
                    Some(Err(error))
                }
            }
        }
    }
}
