//! Polls: recent records come straight from memory; older ones through an io_uring read of the
//! segment range the sparse index points at, walked and structure-checked after the read.

use std::ops::Range;
use std::os::fd::AsRawFd;

use bytes::Bytes;

use riptide_protocol::batch::{self, BatchError, BatchHeaderRepr};

use crate::constants::{
    BATCH_HEADER_SIZE_BYTES, READ_STEPS_MAX, RECORD_SIZE_MAX_BYTES, SHARED_CHUNK_MIN_BYTES,
};
use crate::context::{Context, Purpose};
use crate::index;
use crate::io::{round_down, round_up, AlignedBuf, IoBuffer, Request};
use crate::partition::Partition;
use crate::segment::record_header;
use crate::types::{ReadError, ReadResult, ReadStart};

/// What qualifies a record for a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Messages with offset >= this.
    Offset(u64),
    /// Records stamped at or after this time (µs).
    Timestamp(u64),
}

/// Accumulates the reply of one poll.
pub(crate) struct Collector {
    pub target: Target,
    pub count_max: u32,
    pub visible_last: u64,
    result: ReadResult,
    /// Bytes copied into the reply since its last shared chunk.
    copied: Vec<u8>,
    /// Offset after the last message added: where a sequential follow-up poll starts.
    pub next_offset: Option<u64>,
}

impl Collector {
    pub fn new(target: Target, count_max: u32, visible_last: u64, partition_id: u32) -> Collector {
        let result = ReadResult {
            partition_id,
            current_offset: Some(visible_last),
            ..ReadResult::default()
        };
        Collector {
            target,
            count_max,
            visible_last,
            result,
            copied: Vec::new(),
            next_offset: None,
        }
    }

    pub fn full(&self) -> bool {
        self.result.messages_count >= self.count_max
    }

    pub fn messages_count(&self) -> u32 {
        self.result.messages_count
    }

    /// The reply so far; the collector starts over empty.
    pub fn take_result(&mut self) -> ReadResult {
        self.end_copied_chunk();
        self.result.last_offset = self
            .next_offset
            .filter(|_| self.result.messages_count > 0)
            .map(|next| next - 1);
        let empty = ReadResult {
            partition_id: self.result.partition_id,
            current_offset: self.result.current_offset,
            ..ReadResult::default()
        };
        std::mem::replace(&mut self.result, empty)
    }

    fn end_copied_chunk(&mut self) {
        if !self.copied.is_empty() {
            let copied = std::mem::take(&mut self.copied);
            self.result.chunks.push(Bytes::from(copied));
        }
    }

    /// Adds `range` of `record` to the reply: shared with the read cache when the record is
    /// there (`cached`) and the piece is large enough to be worth its own chunk, else copied.
    fn add(&mut self, record: &[u8], cached: Option<&Bytes>, range: Range<usize>) {
        match cached {
            Some(cached) if range.len() >= SHARED_CHUNK_MIN_BYTES => {
                self.end_copied_chunk();
                self.result.chunks.push(cached.slice(range));
            }
            _ => self.copied.extend_from_slice(&record[range]),
        }
    }

    /// Adds the qualifying part of a verified record read from disk. Returns false once the
    /// poll is complete.
    pub fn offer(&mut self, record: &[u8], header: &BatchHeaderRepr) -> bool {
        self.offer_from(record, None, header)
    }

    /// As [`Collector::offer`], for a record of the read cache (shared, not copied).
    pub fn offer_cached(&mut self, record: &Bytes, header: &BatchHeaderRepr) -> bool {
        self.offer_from(record, Some(record), header)
    }

    fn offer_from(
        &mut self,
        record: &[u8],
        cached: Option<&Bytes>,
        header: &BatchHeaderRepr,
    ) -> bool {
        if self.full() || header.base_offset > self.visible_last {
            return false;
        }
        let first_wanted = match self.target {
            Target::Offset(offset) => offset,
            Target::Timestamp(timestamp_us) => {
                if header.base_timestamp_us < timestamp_us {
                    return true;
                }
                header.base_offset
            }
        };
        if header.last_offset() < first_wanted {
            return true;
        }
        let room = self.count_max - self.result.messages_count;
        if header.base_offset >= first_wanted && header.message_count <= room {
            self.add(record, cached, 0..record.len());
            self.result.messages_count += header.message_count;
            self.next_offset = Some(header.last_offset() + 1);
        } else if let Some(slice) = batch::slice_record(record, first_wanted, room) {
            self.copied.extend_from_slice(&slice.header);
            self.add(record, cached, slice.frames.clone());
            self.result.messages_count += slice.message_count;
            // Offsets are contiguous inside a record.
            self.next_offset =
                Some(first_wanted.max(header.base_offset) + slice.message_count as u64);
        }
        if let Target::Timestamp(_) = self.target {
            // Once inside the wanted time range, continue by offset.
            self.target = Target::Offset(header.base_offset);
        }
        !self.full()
    }
}

/// A disk read in flight.
pub(crate) struct ReadJob {
    pub token: u64,
    pub collector: Collector,
    pub segment_base: u64,
    /// File position of `buf[0]` (aligned).
    pub file_position: u64,
    /// Where the next record starts (logical file position) and its expected base offset.
    pub walk_position: u64,
    pub expected_offset: u64,
    /// Logical end of the bytes this read can hold: the segment's end when it was submitted
    /// (later writes are not in the buffer).
    pub walk_end: u64,
    pub steps: u32,
}

impl ReadJob {
    /// A poll's read starting at the record at `position` (base offset `expected_offset`).
    pub fn new(
        token: u64,
        collector: Collector,
        segment_base: u64,
        position: u64,
        expected_offset: u64,
    ) -> ReadJob {
        ReadJob {
            token,
            collector,
            segment_base,
            file_position: 0,
            walk_position: position,
            expected_offset,
            walk_end: 0,
            steps: 0,
        }
    }
}

/// The disk reads of polls in flight, by id: an I/O request names its read by the id
/// (`Purpose::Read`), and the job waits here until the read completes. Sized at start-up to
/// the read-buffer pool, since every read in flight holds one of its buffers.
pub(crate) struct ReadJobs {
    jobs: Vec<Option<ReadJob>>,
    free: Vec<u32>,
}

impl ReadJobs {
    pub fn new(count_max: usize) -> ReadJobs {
        ReadJobs {
            jobs: (0..count_max).map(|_| None).collect(),
            free: (0..count_max as u32).rev().collect(),
        }
    }

    /// Keeps `job` until its read completes and returns its id; `None` (the job dropped) when
    /// the table is full.
    fn insert(&mut self, job: ReadJob) -> Option<u32> {
        let id = self.free.pop()?;
        self.jobs[id as usize] = Some(job);
        Some(id)
    }

    /// The job whose read completed.
    ///
    /// # Panics
    /// When `id` holds no job: every read tag names a job inserted before its submission and
    /// taken once, at its completion.
    pub fn take(&mut self, id: u32) -> ReadJob {
        let job = self.jobs.get_mut(id as usize).and_then(Option::take);
        let job = job.unwrap_or_else(|| panic!("storage: read {id} completed without a job"));
        self.free.push(id);
        job
    }
}

/// Resolves the start of a poll to a target, or `None` when nothing can be returned.
pub(crate) fn resolve(
    partition: &Partition,
    start: ReadStart,
    count_max: u32,
) -> Option<(Target, u64)> {
    let visible_last = partition.visible_last_offset()?;
    let first = partition.first_offset();
    let target = match start {
        ReadStart::Offset(offset) => Target::Offset(offset.max(first)),
        ReadStart::First => Target::Offset(first),
        ReadStart::Last => Target::Offset(
            visible_last
                .saturating_sub(count_max.saturating_sub(1) as u64)
                .max(first),
        ),
        ReadStart::Timestamp(timestamp_us) => Target::Timestamp(timestamp_us),
    };
    if let Target::Offset(offset) = target {
        if offset > visible_last {
            return None;
        }
    }
    Some((target, visible_last))
}

/// Serves the poll from memory when the records it needs are all still there.
pub(crate) fn from_memory(partition: &Partition, collector: &mut Collector) -> bool {
    let Some(front) = partition.mem.front() else {
        return false;
    };
    let starts_in_memory = match collector.target {
        Target::Offset(offset) => front.base_offset <= offset,
        Target::Timestamp(timestamp_us) => {
            front.timestamp_us < timestamp_us || front.base_offset == partition.first_offset()
        }
    };
    if !starts_in_memory {
        return false;
    }
    let from = match collector.target {
        Target::Offset(offset) => partition.mem.partition_point(|r| r.last_offset < offset),
        Target::Timestamp(timestamp_us) => partition
            .mem
            .partition_point(|r| r.timestamp_us < timestamp_us),
    };
    for record in partition.mem.range(from..) {
        let Ok(header) = record_header(&record.bytes) else {
            break;
        };
        if !collector.offer_cached(&record.bytes, &header) {
            break;
        }
    }
    true
}

/// Plans the first disk read of a poll: segment, start position (from the sparse index) and
/// length (up to the index entry past the wanted range, when there is one).
pub(crate) fn plan(partition: &Partition, collector: &Collector) -> Option<(u64, u64, u64, u64)> {
    let segments = &partition.segments;
    let segment_index = match collector.target {
        Target::Offset(offset) => segments
            .partition_point(|s| s.base_offset <= offset)
            .checked_sub(1)?,
        Target::Timestamp(timestamp_us) => segments
            .iter()
            .position(|s| s.last_timestamp_us.is_some_and(|t| t >= timestamp_us))?,
    };
    let segment = &segments[segment_index];
    let floor = match collector.target {
        Target::Offset(offset) => index::floor_by_offset(&segment.index, offset),
        Target::Timestamp(timestamp_us) => index::floor_by_timestamp(&segment.index, timestamp_us),
    };
    let (position, expected_offset, next_entry) = match floor {
        Some((i, entry)) => (entry.position, entry.offset, i + 1),
        None => (0, segment.base_offset, 0),
    };
    // The first entry past the last wanted message starts a record that is not needed: the
    // read can stop there.
    let wanted_last = match collector.target {
        Target::Offset(offset) => {
            offset.saturating_add(collector.count_max.saturating_sub(1) as u64)
        }
        Target::Timestamp(_) => u64::MAX,
    };
    let past = segment
        .index
        .partition_point(|e| e.offset <= wanted_last)
        .max(next_entry);
    let end = segment
        .index
        .get(past)
        .map_or(segment.end_bytes, |e| e.position);
    Some((segment.base_offset, position, expected_offset, end))
}

/// Submits the read of `[position, end)` of the job's segment into `buf`, clamped to the
/// buffer — or, with `grow`, enlarging the buffer to hold the whole range (a record larger than
/// the pooled buffer). On failure the buffer is handed back for the pool.
pub(crate) fn submit(
    partition: &mut Partition,
    cx: &mut Context,
    jobs: &mut ReadJobs,
    mut job: ReadJob,
    mut buf: AlignedBuf,
    (position, end): (u64, u64),
    grow: bool,
) -> Result<(), (ReadError, AlignedBuf)> {
    let segment = partition
        .segments
        .iter()
        .find(|s| s.base_offset == job.segment_base);
    let Some(segment) = segment else {
        return Err((ReadError::Corrupt(job.expected_offset), buf));
    };
    let alignment = partition.alignment;
    let file_position = round_down(position, alignment);
    let end = end
        .min(segment.end_bytes)
        .max(position + BATCH_HEADER_SIZE_BYTES as u64);
    let want = round_up((end - file_position) as usize, alignment);
    if grow && want > buf.capacity() {
        buf = AlignedBuf::new(want, alignment);
    }
    let len = want.min(buf.capacity());
    job.file_position = file_position;
    job.walk_position = position;
    job.walk_end = (file_position + len as u64).min(segment.end_bytes);
    job.steps += 1;
    let request = Request::Read {
        fd: segment.log.file.as_raw_fd(),
        offset: file_position,
        len,
    };
    let Some(id) = jobs.insert(job) else {
        return Err((ReadError::Backpressure, buf));
    };
    match cx.submit(
        partition.key,
        Purpose::Read(id),
        request,
        IoBuffer::Aligned(buf),
    ) {
        Ok(()) => {
            partition.in_flight_ops += 1;
            Ok(())
        }
        Err((_, returned)) => {
            jobs.take(id);
            match returned {
                IoBuffer::Aligned(buf) => Err((ReadError::Backpressure, buf)),
                _ => Err((ReadError::Backpressure, AlignedBuf::new(want, alignment))),
            }
        }
    }
}

/// What to do after a read completed.
pub(crate) enum Step {
    /// Finished. After a successful poll the job comes back too: its walk position is where
    /// the next sequential poll starts, and the buffer may already hold what follows.
    Done(Result<ReadResult, ReadError>, AlignedBuf, Option<ReadJob>),
    /// Read again into the buffer, from this position up to this end.
    Again(ReadJob, AlignedBuf, (u64, u64)),
}

fn done(mut job: ReadJob, buf: AlignedBuf, error: Option<ReadError>) -> Step {
    let result = job.collector.take_result();
    let continues = error.is_none() && result.messages_count > 0;
    Step::Done(error.map_or(Ok(result), Err), buf, continues.then_some(job))
}

/// Walks the records of a completed read (`result` bytes in `buf`).
pub(crate) fn walk(
    partition: &Partition,
    mut job: ReadJob,
    result: i32,
    mut buf: AlignedBuf,
) -> Step {
    if result < 0 {
        return done(job, buf, Some(ReadError::Io(-result)));
    }
    buf.set_len(result as usize);
    let Some(segment) = partition
        .segments
        .iter()
        .find(|s| s.base_offset == job.segment_base)
    else {
        return done(job, buf, None);
    };
    let segment_end = segment.end_bytes;
    let needed = match walk_buffer(&mut job, &buf) {
        Ok(needed) => needed,
        Err(error) => return done(job, buf, Some(error)),
    };
    if job.collector.messages_count() > 0 || job.steps >= READ_STEPS_MAX {
        return done(job, buf, None);
    }
    if job.walk_position < segment_end {
        // The next record did not fit in the buffer: read again from it.
        let position = job.walk_position;
        let span = needed.max((buf.capacity() - partition.alignment) as u64);
        return Step::Again(job, buf, (position, (position + span).min(segment_end)));
    }
    // The wanted messages start in a later segment.
    let next = partition
        .segments
        .iter()
        .find(|s| s.base_offset > job.segment_base);
    let Some(next) = next else {
        return done(job, buf, None);
    };
    job.segment_base = next.base_offset;
    job.expected_offset = next.base_offset;
    let end = next
        .end_bytes
        .min((buf.capacity() - partition.alignment) as u64);
    Step::Again(job, buf, (0, end))
}

/// Offers every whole, checked record in the buffer to the job's collector, from the job's walk
/// position. The walk position moves past each record the poll is done with; it stays on a
/// record the poll took only the first messages of, where a sequential follow-up poll resumes.
/// Returns the length of the record cut off by the end of the buffer (0 if none).
pub(crate) fn walk_buffer(job: &mut ReadJob, buf: &AlignedBuf) -> Result<u64, ReadError> {
    let buf_end = (job.file_position + buf.len() as u64).min(job.walk_end);
    while job.walk_position < buf_end && !job.collector.full() {
        let from = (job.walk_position - job.file_position) as usize;
        let bytes = &buf.as_slice()[from..(buf_end - job.file_position) as usize];
        let header = match record_header(bytes) {
            Ok(header) if header.batch_length_bytes <= bytes.len() => header,
            Ok(header) => return Ok(header.batch_length_bytes as u64),
            Err(BatchError::HeaderTruncated) => return Ok(BATCH_HEADER_SIZE_BYTES as u64),
            Err(_) => return Err(ReadError::Corrupt(job.expected_offset)),
        };
        let record_bytes = &bytes[..header.batch_length_bytes];
        // Checked after every read: a read of the wrong place or of torn bytes is reported,
        // never served.
        if header.base_offset != job.expected_offset
            || batch::verify_structure(record_bytes, RECORD_SIZE_MAX_BYTES).is_err()
        {
            return Err(ReadError::Corrupt(job.expected_offset));
        }
        let more = job.collector.offer(record_bytes, &header);
        let taken_in_part = job
            .collector
            .next_offset
            .is_some_and(|next| next <= header.last_offset());
        if taken_in_part {
            break;
        }
        job.walk_position += header.batch_length_bytes as u64;
        job.expected_offset = header.last_offset() + 1;
        if !more {
            break;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(base: u64, count: usize, timestamp_us: u64) -> Vec<u8> {
        stamped_with(base, count, timestamp_us, &[0; 10])
    }

    /// A stamped record of `count` messages carrying `payload`.
    fn stamped_with(base: u64, count: usize, timestamp_us: u64, payload: &[u8]) -> Vec<u8> {
        let refs = vec![payload; count];
        let mut rec = crate::testkit::build_batch(&refs, 1);
        batch::stamp(&mut rec, 0, base, timestamp_us).unwrap();
        rec
    }

    #[test]
    fn collector_slices_the_first_record_and_respects_count_and_visibility() {
        let a = stamped(0, 4, 10);
        let b = stamped(4, 4, 20);
        let mut c = Collector::new(Target::Offset(2), 5, 7, 0);
        assert!(c.offer(&a, &record_header(&a).unwrap()));
        assert!(!c.offer(&b, &record_header(&b).unwrap()));
        let result = c.take_result();
        assert_eq!((result.messages_count, result.last_offset), (5, Some(6)));
        let first = record_header(&result.to_vec()).unwrap();
        assert_eq!((first.base_offset, first.message_count), (0, 2));
        let mut hidden = Collector::new(Target::Offset(0), 100, 3, 0);
        hidden.offer(&a, &record_header(&a).unwrap());
        assert!(!hidden.offer(&b, &record_header(&b).unwrap()));
        assert_eq!(hidden.result.messages_count, 4);
    }

    #[test]
    fn collector_by_timestamp_skips_older_records() {
        let a = stamped(0, 2, 10);
        let b = stamped(2, 2, 20);
        let mut c = Collector::new(Target::Timestamp(15), 10, 3, 0);
        c.offer(&a, &record_header(&a).unwrap());
        c.offer(&b, &record_header(&b).unwrap());
        assert_eq!(c.take_result().to_vec(), b);
    }

    #[test]
    fn large_cached_records_are_shared_and_small_ones_copied_into_one_chunk() {
        let payload = vec![7u8; SHARED_CHUNK_MIN_BYTES];
        let large = Bytes::from(stamped_with(0, 2, 10, &payload));
        let small_a = Bytes::from(stamped(2, 2, 10));
        let small_b = Bytes::from(stamped(4, 2, 10));
        let mut c = Collector::new(Target::Offset(1), 100, 5, 0);
        for record in [&large, &small_a, &small_b] {
            c.offer_cached(record, &record_header(record).unwrap());
        }
        let result = c.take_result();
        // The sliced large record: its rewritten header copied, its frames shared; then both
        // small records copied together.
        assert_eq!(result.chunks.len(), 3);
        let frames = &result.chunks[1];
        assert!(large.as_ptr_range().contains(&frames.as_ptr()));
        assert_eq!(result.chunks[0].len(), BATCH_HEADER_SIZE_BYTES);
        assert_eq!(result.chunks[2].len(), small_a.len() + small_b.len());
        assert_eq!((result.messages_count, result.last_offset), (5, Some(5)));
        let mut from_disk = Collector::new(Target::Offset(1), 100, 5, 0);
        for record in [&large, &small_a, &small_b] {
            from_disk.offer(record, &record_header(record).unwrap());
        }
        let copied = from_disk.take_result();
        assert_eq!(copied.chunks.len(), 1);
        assert_eq!(copied.to_vec(), result.to_vec());
    }
}
