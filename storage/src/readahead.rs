//! Sequential readahead: after a poll served from disk, the shard reads what follows it, so a
//! consumer reading through old data finds its next poll already in memory or in flight — the
//! disk works while the reply is being sent, as the page cache's readahead would do for a
//! buffered reader.
//!
//! One readahead per partition. It is used only by a poll that starts exactly where the
//! previous one ended; any other poll abandons it. It never holds more than one pooled buffer
//! and leaves at least half the pool to ordinary polls.

use crate::engine::Engine;
use crate::io::AlignedBuf;
use crate::partition::Partition;
use crate::read::{self, Collector, ReadJob, Step, Target};
use crate::types::{
    Completion, CompletionResult, ReadError, ReadOutcome, ReadResult, INTERNAL_TOKEN,
};

pub(crate) struct Readahead {
    /// Base offset of the first record the read covers.
    start_offset: u64,
    /// The read has not completed yet.
    in_flight: bool,
    /// A poll is waiting for the read (token, its collector).
    waiter: Option<(u64, Collector)>,
    /// No poll will use it: the buffer goes back to the pool when the read completes.
    abandoned: bool,
    /// The completed read: the job (for its positions), the buffer and the kernel's result.
    ready: Option<(Box<ReadJob>, AlignedBuf, i32)>,
}

/// Starts a readahead at `(segment_base, position, offset)` when none is active and the pool
/// can spare a buffer.
pub(crate) fn start(
    partition: &mut Partition,
    engine: &mut Engine,
    pool: &mut Vec<AlignedBuf>,
    pool_size: usize,
    at: (u64, u64, u64),
) {
    if partition.readahead.is_some() || pool.len() <= pool_size / 2 {
        return;
    }
    let (mut segment_base, mut position, mut offset) = at;
    let Some(segment) = partition
        .segments
        .iter()
        .find(|s| s.base_offset == segment_base)
    else {
        return;
    };
    if position >= segment.end_bytes {
        let Some(next) = partition
            .segments
            .iter()
            .find(|s| s.base_offset > segment_base)
        else {
            return;
        };
        (segment_base, position, offset) = (next.base_offset, 0, next.base_offset);
    }
    let Some(visible_last) = partition.visible_last_offset() else {
        return;
    };
    let Some(buf) = pool.pop() else { return };
    let end = position + (buf.capacity() - partition.alignment) as u64;
    let collector = Collector::new(
        Target::Offset(offset),
        0,
        visible_last,
        partition.key.partition_id,
    );
    let job = ReadJob::new(INTERNAL_TOKEN, collector, segment_base, position, offset);
    match read::submit(partition, engine, job, buf, (position, end), false, true) {
        Ok(()) => {
            partition.readahead = Some(Readahead {
                start_offset: offset,
                in_flight: true,
                waiter: None,
                abandoned: false,
                ready: None,
            });
        }
        Err((_, buf)) => pool.push(buf),
    }
}

/// Serves a poll from the readahead when it starts where the readahead does. `None` when the
/// poll must read on its own (the readahead is then abandoned).
pub(crate) fn serve(
    partition: &mut Partition,
    engine: &mut Engine,
    pool: &mut Vec<AlignedBuf>,
    pool_size: usize,
    token: u64,
    collector: Collector,
) -> Result<Result<ReadOutcome, ReadError>, Collector> {
    let Some(readahead) = partition.readahead.as_mut() else {
        return Err(collector);
    };
    let sequential =
        collector.target == Target::Offset(readahead.start_offset) && !readahead.abandoned;
    if !sequential {
        // A readahead some poll already waits for stays; this poll reads on its own.
        if readahead.waiter.is_none() {
            abandon(partition, pool);
        }
        return Err(collector);
    }
    if readahead.in_flight {
        if readahead.waiter.is_some() {
            return Err(collector);
        }
        readahead.waiter = Some((token, collector));
        engine.stats.readahead_hits += 1;
        return Ok(Ok(ReadOutcome::Pending));
    }
    let Some((mut job, buf, result)) = readahead.ready.take() else {
        return Err(collector);
    };
    partition.readahead = None;
    engine.stats.readahead_hits += 1;
    (job.token, job.collector) = (token, collector);
    match finish(partition, engine, pool, pool_size, job, result, buf) {
        Some(Ok(result)) => Ok(Ok(ReadOutcome::Ready(result))),
        Some(Err(error)) => Ok(Err(error)),
        None => Ok(Ok(ReadOutcome::Pending)),
    }
}

/// Drops the readahead: its buffer returns to the pool now, or when its read completes.
pub(crate) fn abandon(partition: &mut Partition, pool: &mut Vec<AlignedBuf>) {
    let Some(readahead) = partition.readahead.as_mut() else {
        return;
    };
    if readahead.in_flight {
        // A waiting poll keeps it alive; otherwise the completion returns the buffer.
        readahead.abandoned = readahead.waiter.is_none();
        return;
    }
    if let Some((_, buf, _)) = readahead.ready.take() {
        pool.push(buf);
    }
    partition.readahead = None;
}

/// Handles the completion of a readahead read.
pub(crate) fn completed(
    partition: &mut Partition,
    engine: &mut Engine,
    pool: &mut Vec<AlignedBuf>,
    pool_size: usize,
    mut job: Box<ReadJob>,
    result: i32,
    buf: AlignedBuf,
) {
    partition.in_flight_ops -= 1;
    let Some(readahead) = partition.readahead.as_mut() else {
        pool.push(buf);
        return;
    };
    if readahead.abandoned {
        pool.push(buf);
        partition.readahead = None;
        return;
    }
    readahead.in_flight = false;
    let Some((token, collector)) = readahead.waiter.take() else {
        readahead.ready = Some((job, buf, result));
        return;
    };
    partition.readahead = None;
    (job.token, job.collector) = (token, collector);
    let key = partition.key;
    if let Some(outcome) = finish(partition, engine, pool, pool_size, job, result, buf) {
        engine.completions.push(Completion {
            token,
            key,
            result: CompletionResult::Read(outcome),
        });
    }
}

/// After a poll: keep the rest of its buffer as the readahead when it holds the next record,
/// otherwise read ahead from where the poll ended.
fn continue_after(
    partition: &mut Partition,
    engine: &mut Engine,
    pool: &mut Vec<AlignedBuf>,
    pool_size: usize,
    mut job: Box<ReadJob>,
    buf: AlignedBuf,
) {
    if partition.readahead.is_some() {
        pool.push(buf);
        return;
    }
    if read::holds_next_record(&job, &buf) {
        job.steps = 0;
        let len = buf.len() as i32;
        let start_offset = job.expected_offset;
        partition.readahead = Some(Readahead {
            start_offset,
            in_flight: false,
            waiter: None,
            abandoned: false,
            ready: Some((job, buf, len)),
        });
        return;
    }
    pool.push(buf);
    start(
        partition,
        engine,
        pool,
        pool_size,
        (job.segment_base, job.walk_position, job.expected_offset),
    );
}

/// Walks a completed read for its poll; returns the outcome, or `None` when the poll went on
/// with another read (its completion follows). Chains the next readahead.
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
        Step::Done(outcome, buf, next) => {
            match next {
                Some(job) => continue_after(partition, engine, pool, pool_size, job, buf),
                None => pool.push(buf),
            }
            Some(outcome)
        }
        Step::Again(job, buf, range) => {
            match read::submit(partition, engine, job, buf, range, true, false) {
                Ok(()) => None,
                Err((error, buf)) => {
                    pool.push(buf);
                    Some(Err(error))
                }
            }
        }
    }
}
