//! One partition: its segments, the write path with group commit, and the in-memory records
//! (unwritten ones plus a cache of recent written ones, whose size the shard bounds over all its
//! partitions: see `Shard::evict_cache`).
//!
//! Write path: `append` stamps the batch and queues it in `mem`, copying it into the aligned
//! staging buffer (which begins with the segment's partial tail block) while there is room;
//! `start_write` submits ONE write of every queued record of the active segment. When any
//! record needs a durable acknowledgement, an fdatasync is linked behind the write, and those
//! records are acknowledged when it completes. While the write is in flight, new appends only
//! queue — they all go into the next write (group commit). The staging buffer is then swapped
//! with the spare one, which receives a copy of the new partial tail block, so the next write
//! rewrites that block in full.
//!
//! The next write starts as soon as the previous one has transferred its bytes, while that
//! one's fdatasync (journal commit and cache flush) still runs: the device keeps receiving
//! data instead of idling through every flush. Writes never overlap, so a rewritten tail block
//! is always written after the write it completes. Writes settle in order: a write's records
//! count as on disk (index, cache eviction, acknowledgements) only once it and every earlier
//! write are written and synced. A failed write or fdatasync fails every append not yet
//! settled and rewinds the log to the settled end, once nothing of the log is in flight.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use riptide_protocol::batch::{self, BatchHeaderRepr};

use crate::context::{Context, Purpose};
use crate::io::{self, round_down, round_up, AlignedBuf, IoBuffer, Request};
use crate::memory_sync::Window;
use crate::offsets::Offsets;
use crate::segment::{self, Segment};
use crate::types::{
    append_error_from_errno, AckMode, AppendError, Appended, Completion, CompletionResult,
    PartitionInfo, PartitionKey, PartitionSettings, StorageConfig, StorageError,
};

pub(crate) struct MemRecord {
    pub base_offset: u64,
    pub last_offset: u64,
    pub timestamp_us: u64,
    pub segment_base: u64,
    pub position: u64,
    /// Shared with the poll replies that include it (see `read::Collector`).
    pub bytes: Bytes,
    /// The capacity of the batch's buffer: the memory this record holds.
    pub memory_bytes: usize,
    pub durable_ack: bool,
}

struct PendingAck {
    base_offset: u64,
    last_offset: u64,
    token: u64,
    started: Instant,
}

/// How far one step (the transfer, or the linked fdatasync) of a submitted write has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Pending,
    Done,
    Failed,
}

struct WriteInFlight {
    file_position: u64,
    len_bytes: usize,
    end_position: u64,
    last_offset: u64,
    started: Instant,
    written: Progress,
    /// `Done` from the start when no fdatasync is linked.
    synced: Progress,
    /// The memory-acknowledged records whose window this write's fdatasync closes (reopened
    /// if it fails).
    memory_window: Window,
}

/// A standalone fdatasync in flight: the `flush` calls it completes and the memory window it
/// closes.
struct FsyncInFlight {
    tokens: Vec<u64>,
    memory_window: Window,
}

pub(crate) struct Partition {
    pub key: PartitionKey,
    pub dir: PathBuf,
    pub settings: PartitionSettings,
    pub alignment: usize,
    pub direct: bool,
    pub segments: Vec<Segment>,
    pub mem: VecDeque<MemRecord>,
    pub durable_next_offset: u64,
    pub next_offset: u64,
    pub in_flight_ops: usize,
    pub offsets: Offsets,
    config: StorageConfig,
    last_timestamp_us: u64,
    unwritten_bytes: usize,
    unwritten_messages: u64,
    /// Memory held by the written records still in `mem` (their buffers' capacity); the
    /// shard's total is `ShardStats::cached_bytes`.
    written_cached_bytes: usize,
    /// Records below this offset are in a submitted write (or written).
    staged_next_offset: u64,
    /// Records below this offset are in the staging buffer or a submitted write.
    copied_next_offset: u64,
    tail_segment_base: u64,
    tail_position: u64,
    staging: AlignedBuf,
    staging_file_position: u64,
    /// The other write buffer; `None` while it is in flight.
    spare: Option<AlignedBuf>,
    /// Submitted writes not settled yet, oldest first; only the newest may still be
    /// transferring, the others wait for their fdatasync or for an earlier write.
    writes: VecDeque<WriteInFlight>,
    /// The first failure among `writes`, applied once none of them is in flight.
    write_failure: Option<AppendError>,
    /// A failed write's buffer and file position: it holds the tail block to restore.
    failed_write_buffer: Option<(u64, AlignedBuf)>,
    acks: VecDeque<PendingAck>,
    flush_waiters: Vec<(u64, bool)>,
    fsync_in_flight: Option<FsyncInFlight>,
    /// Memory-acknowledged records no fdatasync covers yet (see `memory_sync`).
    memory_window: Window,
    /// Index write in flight: segment base offset, entries, bytes.
    index_in_flight: Option<(u64, usize, usize)>,
    first_unflushed_at: Option<Instant>,
}

fn storage_io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::io(path, source)
}

/// The shard's configuration with this partition's own segment size, if it has one.
fn partition_config(
    config: &StorageConfig,
    settings: &PartitionSettings,
) -> Result<StorageConfig, StorageError> {
    let Some(segment_size_bytes) = settings.segment_size_bytes else {
        return Ok(config.clone());
    };
    let config = StorageConfig {
        segment_size_bytes,
        ..config.clone()
    };
    config.validate()?;
    Ok(config)
}

impl Partition {
    /// Opens (recovering) or creates the partition in `dir`.
    pub fn open(
        key: PartitionKey,
        dir: &Path,
        settings: PartitionSettings,
        config: &StorageConfig,
        create: bool,
    ) -> Result<Partition, StorageError> {
        let config = &partition_config(config, &settings)?;
        // Every new level's name is synced into its parent (`streams/S/topics/T/partitions/P`
        // may all be new): the partition must not vanish with what is acknowledged in it.
        io::create_dir_all_durable(dir).map_err(storage_io(dir))?;
        let alignment = io::probe_direct_alignment(dir);
        let mut bases = segment::list_segments(dir).map_err(storage_io(dir))?;
        if create {
            // A new partition starts empty, whatever an earlier one left in the directory.
            remove_partition_files(dir)?;
            bases.clear();
        }
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for base in &bases {
            let (segment, report) =
                segment::recover(dir, *base, config.direct_io, config.index_interval_bytes)
                    .map_err(storage_io(&segment::log_path(dir, *base)))?;
            if report.index_rebuilt {
                tracing::warn!(
                    ?key,
                    base,
                    "storage: segment index disagreed with the log; rebuilt"
                );
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            let segment = Segment::create(dir, 0, config.direct_io).map_err(storage_io(dir))?;
            segments.push(segment);
            if config.preallocate {
                io::preallocate(&segments[0].log.file, config.segment_size_bytes)
                    .map_err(storage_io(dir))?;
            }
        } else if let Some(active) = segments.last() {
            let prealloc = config.preallocate.then_some(config.segment_size_bytes);
            segment::truncate_tail(active, prealloc).map_err(storage_io(dir))?;
        }
        io::create_dir_all_durable(&dir.join("offsets")).map_err(storage_io(dir))?;
        // The segment files' names (and `offsets/`, however it came to be) are durable before
        // the partition is announced.
        io::sync_dir(dir).map_err(storage_io(dir))?;
        let offsets = Offsets::open(&dir.join("offsets")).map_err(storage_io(dir))?;
        let mut partition =
            Self::assemble(key, dir, settings, config, alignment, segments, offsets);
        partition.reload_tail().map_err(storage_io(dir))?;
        let next_offset = partition.next_offset;
        partition
            .offsets
            .clamp_past_end(key, next_offset)
            .map_err(storage_io(&dir.join("offsets")))?;
        Ok(partition)
    }

    fn assemble(
        key: PartitionKey,
        dir: &Path,
        settings: PartitionSettings,
        config: &StorageConfig,
        alignment: usize,
        segments: Vec<Segment>,
        offsets: Offsets,
    ) -> Partition {
        let active = segments
            .last()
            .expect("a partition always has an active segment");
        let next_offset = active.next_offset();
        let direct = active.log.direct;
        // Filled by `reload_tail` once assembled.
        let staging = AlignedBuf::new(config.write_buffer_size_bytes, alignment);
        let staging_file_position = round_down(active.end_bytes, alignment);
        let last_timestamp_us = segments
            .iter()
            .filter_map(|s| s.last_timestamp_us)
            .max()
            .unwrap_or(0);
        Partition {
            key,
            dir: dir.to_path_buf(),
            settings,
            alignment,
            direct,
            tail_segment_base: active.base_offset,
            tail_position: active.end_bytes,
            staging_file_position,
            segments,
            mem: VecDeque::new(),
            durable_next_offset: next_offset,
            next_offset,
            in_flight_ops: 0,
            offsets,
            config: config.clone(),
            last_timestamp_us,
            unwritten_bytes: 0,
            unwritten_messages: 0,
            written_cached_bytes: 0,
            staged_next_offset: next_offset,
            copied_next_offset: next_offset,
            staging,
            spare: Some(AlignedBuf::new(config.write_buffer_size_bytes, alignment)),
            writes: VecDeque::new(),
            write_failure: None,
            failed_write_buffer: None,
            acks: VecDeque::new(),
            flush_waiters: Vec::new(),
            fsync_in_flight: None,
            memory_window: Window::default(),
            index_in_flight: None,
            first_unflushed_at: None,
        }
    }

    pub fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a partition always has an active segment")
    }

    /// Lowest offset still stored.
    pub fn first_offset(&self) -> u64 {
        self.segments[0].base_offset
    }

    /// Last acknowledged offset: readers never see a record before it is acknowledged.
    pub fn visible_last_offset(&self) -> Option<u64> {
        let end = self
            .acks
            .front()
            .map_or(self.next_offset, |ack| ack.base_offset);
        (end > self.first_offset()).then(|| end - 1)
    }

    pub fn info(&self) -> PartitionInfo {
        let disk_messages: u64 = self.segments.iter().map(|s| s.messages_count).sum();
        let size_bytes: u64 =
            self.segments.iter().map(|s| s.end_bytes).sum::<u64>() + self.unwritten_bytes as u64;
        PartitionInfo {
            current_offset: self.visible_last_offset(),
            messages_count: disk_messages + self.unwritten_messages,
            size_bytes,
            segments_count: self.segments.len() as u32,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.in_flight_ops == 0
            && self
                .mem
                .back()
                .is_none_or(|r| r.base_offset < self.durable_next_offset)
    }

    /// Whether `append` would take a batch of `len` bytes now (the same checks it makes), so a
    /// caller can hold a batch back instead of having it refused with `Backpressure`.
    pub fn has_room(&self, len: usize) -> bool {
        let written = self
            .mem
            .partition_point(|r| r.base_offset < self.durable_next_offset);
        self.unwritten_bytes + len <= self.config.pending_size_max_bytes
            && self.mem.len() - written < crate::constants::PENDING_APPENDS_MAX
    }

    /// Stamps and queues `batch`. Durable appends complete through the shard's completions later; memory
    /// appends complete at once.
    pub fn append(
        &mut self,
        cx: &mut Context,
        mut batch: Vec<u8>,
        ack: AckMode,
        token: u64,
        now_us: u64,
    ) -> Result<Appended, AppendError> {
        let header = self.admit(&batch)?;
        // Broker timestamps never go backwards, so timestamp seeks can use the index.
        let timestamp_us = now_us.max(self.last_timestamp_us);
        let partition_id = u64::from(self.key.partition_id);
        batch::stamp(&mut batch, partition_id, self.next_offset, timestamp_us)
            .map_err(|_| AppendError::InvalidBatch)?;
        let appended = Appended {
            base_offset: self.next_offset,
            last_offset: self.next_offset + u64::from(header.message_count) - 1,
        };
        let length_bytes = header.batch_length_bytes;
        let segment_size = self.config.segment_size_bytes;
        if self.tail_position > 0 && self.tail_position + length_bytes as u64 > segment_size {
            self.tail_segment_base = self.next_offset;
            self.tail_position = 0;
        }
        self.last_timestamp_us = timestamp_us;
        self.next_offset = appended.last_offset + 1;
        self.unwritten_bytes += length_bytes;
        self.unwritten_messages += u64::from(header.message_count);
        let durable_ack = ack == AckMode::Durable;
        self.mem.push_back(MemRecord {
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
            timestamp_us,
            segment_base: self.tail_segment_base,
            position: self.tail_position,
            memory_bytes: batch.capacity(),
            bytes: Bytes::from(batch),
            durable_ack,
        });
        self.tail_position += length_bytes as u64;
        let now = Instant::now();
        self.first_unflushed_at.get_or_insert(now);
        if !durable_ack {
            self.memory_window.record(length_bytes, now);
        }
        self.precopy();
        self.acknowledge_or_queue(cx, appended, durable_ack, token);
        Ok(appended)
    }

    /// Shape and queue limits checked before a batch gets offsets (its frames and checksums
    /// were checked by the protocol crate on admission; `stamp` checks the tiling again).
    fn admit(&self, batch: &[u8]) -> Result<BatchHeaderRepr, AppendError> {
        let header = segment::record_header(batch).map_err(|_| AppendError::InvalidBatch)?;
        if header.batch_length_bytes != batch.len() {
            return Err(AppendError::InvalidBatch);
        }
        if !self.has_room(batch.len()) {
            return Err(AppendError::Backpressure);
        }
        Ok(header)
    }

    /// Durable appends wait for their write; memory appends complete now.
    fn acknowledge_or_queue(
        &mut self,
        cx: &mut Context,
        appended: Appended,
        durable_ack: bool,
        token: u64,
    ) {
        if durable_ack {
            self.acks.push_back(PendingAck {
                base_offset: appended.base_offset,
                last_offset: appended.last_offset,
                token,
                started: Instant::now(),
            });
            self.start_write(cx);
        } else {
            cx.completions.push(Completion {
                token,
                key: self.key,
                result: CompletionResult::Append(Ok(appended)),
            });
            if self.memory_flush_due() || self.memory_sync_due() {
                self.start_write(cx);
            }
        }
    }

    pub fn memory_flush_due(&self) -> bool {
        let policy = self.config.memory_flush;
        self.unwritten_bytes >= policy.size_bytes
            || self.unwritten_messages >= policy.messages_count
            || self
                .first_unflushed_at
                .is_some_and(|at| at.elapsed().as_micros() as u64 >= policy.interval_us)
    }

    /// Whether the memory window calls for an fdatasync now.
    pub fn memory_sync_due(&self) -> bool {
        self.memory_window
            .due(&self.config.memory_sync, Instant::now())
    }

    /// When the memory window falls due by age (the shard wakes up for it).
    pub fn memory_sync_deadline(&self) -> Option<Instant> {
        self.memory_window.deadline(&self.config.memory_sync)
    }

    /// Called on every shard tick: starts overdue memory-mode flushes and syncs, and retries
    /// writes that found no free slot.
    pub fn service(&mut self, cx: &mut Context) {
        let has_unwritten = self
            .mem
            .back()
            .is_some_and(|r| r.base_offset >= self.staged_next_offset);
        let durable_waiting = !self.acks.is_empty() || !self.flush_waiters.is_empty();
        let due = durable_waiting || self.memory_flush_due() || self.memory_sync_due();
        if !self.transferring() && has_unwritten && due {
            self.start_write(cx);
        }
        self.start_memory_sync(cx);
        self.finish_flush_waiters(cx);
    }

    /// When the memory window is due and every record is written and settled, syncs the
    /// active segment on its own (with records still to write, their write carries the sync).
    fn start_memory_sync(&mut self, cx: &mut Context) {
        let all_settled = self.writes.is_empty()
            && self
                .mem
                .back()
                .is_none_or(|r| r.base_offset < self.durable_next_offset);
        if !all_settled || self.fsync_in_flight.is_some() || !self.memory_sync_due() {
            return;
        }
        let request = Request::Fdatasync {
            fd: self.active().log.file.as_raw_fd(),
        };
        if cx
            .submit(self.key, Purpose::LogFsync, request, IoBuffer::None)
            .is_ok()
        {
            self.in_flight_ops += 1;
            self.fsync_in_flight = Some(FsyncInFlight {
                tokens: Vec::new(),
                memory_window: self.memory_window.take(),
            });
        }
    }

    /// Asks for everything queued to be written (and fdatasync'ed when `fsync`); completes
    /// `token` with `Flushed`.
    pub fn flush(&mut self, cx: &mut Context, fsync: bool, token: u64) {
        self.flush_waiters.push((token, fsync));
        self.start_write(cx);
        self.finish_flush_waiters(cx);
    }

    /// Whether a write's transfer is in flight (its buffer is not home).
    fn transferring(&self) -> bool {
        self.writes
            .back()
            .is_some_and(|w| w.written == Progress::Pending)
    }

    /// Submits one write of every queued record of the active segment (group commit).
    pub fn start_write(&mut self, cx: &mut Context) {
        if self.transferring() || self.write_failure.is_some() {
            return;
        }
        let first = self
            .mem
            .partition_point(|r| r.base_offset < self.staged_next_offset);
        let Some(first_record) = self.mem.get(first) else {
            return;
        };
        // Records already copied all belong to the active segment; a record of the next
        // segment is first only when nothing is copied.
        if first_record.segment_base != self.active().base_offset {
            if !self.writes.is_empty() {
                // Rotate once the old segment's writes have settled (which starts this again).
                return;
            }
            if let Err(error) = self.rotate(first_record.segment_base) {
                tracing::warn!(key = ?self.key, ?error, "storage: cannot create the next segment");
                self.fail_unwritten(cx, error);
                return;
            }
        }
        self.precopy();
        if self.copied_next_offset == self.staged_next_offset {
            // The first record does not fit even a fresh buffer: grow both (spare is home).
            let len = self.mem[first].bytes.len();
            self.grow_buffers(len);
            self.precopy();
        }
        if self.copied_next_offset == self.staged_next_offset {
            return;
        }
        let staged = first
            ..self
                .mem
                .partition_point(|r| r.base_offset < self.copied_next_offset);
        // A due memory window rides on this write's fdatasync.
        let durable = self.mem.range(staged).any(|r| r.durable_ack) || self.memory_sync_due();
        self.submit_staging(cx, self.copied_next_offset - 1, durable);
    }

    /// Copies queued records of the active segment into the staging buffer as far as it has
    /// room — also while a write is in flight, so the copy overlaps the disk's work.
    fn precopy(&mut self) {
        let active_base = self.active().base_offset;
        let mut index = self
            .mem
            .partition_point(|r| r.base_offset < self.copied_next_offset);
        while let Some(record) = self.mem.get(index) {
            let fits = self.staging.len() + record.bytes.len() <= self.staging.capacity();
            if record.segment_base != active_base || !fits {
                break;
            }
            self.staging.push(&record.bytes);
            self.copied_next_offset = record.last_offset + 1;
            index += 1;
        }
    }

    fn submit_staging(&mut self, cx: &mut Context, last_offset: u64, durable: bool) {
        let logical_len = self.staging.len();
        let len_bytes = round_up(logical_len, self.alignment);
        // Padding must be zeroes: recovery reads zeroes as the end of the log.
        self.staging.full_mut()[logical_len..len_bytes].fill(0);
        let file_position = self.staging_file_position;
        assert_eq!(
            file_position % self.alignment as u64,
            0,
            "write position must be aligned"
        );
        let Some(mut next) = self.spare.take() else {
            return;
        };
        // The next write starts with this write's partial tail block.
        let end_position = file_position + logical_len as u64;
        let tail_start = round_down(end_position, self.alignment);
        next.set_len(0);
        next.push(&self.staging.as_slice()[(tail_start - file_position) as usize..]);
        let in_flight = std::mem::replace(&mut self.staging, next);
        let fd = self.active().log.file.as_raw_fd();
        let request = Request::Write {
            fd,
            offset: file_position,
            len: len_bytes,
            dsync: false,
        };
        let buffer = IoBuffer::Aligned(in_flight);
        let submitted = if durable {
            let sync = Purpose::LogWriteSync(last_offset);
            cx.submit_then_fdatasync(self.key, Purpose::LogWrite, request, buffer, sync)
        } else {
            cx.submit(self.key, Purpose::LogWrite, request, buffer)
        };
        match submitted {
            Ok(()) => {
                self.in_flight_ops += 1 + usize::from(durable);
                self.staging_file_position = tail_start;
                self.staged_next_offset = last_offset + 1;
                let write = self.write_in_flight(file_position, len_bytes, end_position, durable);
                self.writes.push_back(write);
            }
            Err((_, IoBuffer::Aligned(refused))) => {
                // No free slot: keep everything staged; `service` retries.
                self.spare = Some(std::mem::replace(&mut self.staging, refused));
            }
            Err(_) => {
                // The I/O layer always hands back what it was given; should that ever break,
                // rebuild the tail block from disk rather than write a wrong one.
                tracing::error!(key = ?self.key, "storage: write buffer lost; reloading the tail block");
                self.spare = Some(AlignedBuf::new(self.staging.capacity(), self.alignment));
                if let Err(error) = self.reload_tail() {
                    tracing::error!(key = ?self.key, %error, "storage: cannot reload the tail block");
                }
            }
        }
    }

    /// The record of a write just submitted, which ends with the last staged record.
    fn write_in_flight(
        &mut self,
        file_position: u64,
        len_bytes: usize,
        end_position: u64,
        durable: bool,
    ) -> WriteInFlight {
        // The linked fdatasync covers every record appended so far only when all are in this
        // write; otherwise the window stays open and the next write syncs too.
        let memory_window = if durable && self.staged_next_offset == self.next_offset {
            self.memory_window.take()
        } else {
            Window::default()
        };
        WriteInFlight {
            file_position,
            len_bytes,
            end_position,
            last_offset: self.staged_next_offset - 1,
            started: Instant::now(),
            written: Progress::Pending,
            synced: if durable {
                Progress::Pending
            } else {
                Progress::Done
            },
            memory_window,
        }
    }

    /// Loads the active segment's durable partial tail block into the staging buffer: the next
    /// write rewrites that block in full.
    fn reload_tail(&mut self) -> std::io::Result<()> {
        let (base, end) = (self.active().base_offset, self.active().end_bytes);
        self.staging_file_position = round_down(end, self.alignment);
        let mut block = vec![0u8; (end - self.staging_file_position) as usize];
        let plain = std::fs::File::open(segment::log_path(&self.dir, base))?;
        std::os::unix::fs::FileExt::read_exact_at(&plain, &mut block, self.staging_file_position)?;
        self.staging.set_len(0);
        self.staging.push(&block);
        Ok(())
    }

    fn grow_buffers(&mut self, record_len: usize) {
        let capacity =
            round_up(self.staging.len() + record_len, self.alignment).next_power_of_two();
        let mut bigger = AlignedBuf::new(capacity, self.alignment);
        bigger.push(self.staging.as_slice());
        self.staging = bigger;
        self.spare = Some(AlignedBuf::new(capacity, self.alignment));
    }

    fn rotate(&mut self, base_offset: u64) -> Result<(), AppendError> {
        let errno = |error: std::io::Error| {
            append_error_from_errno(error.raw_os_error().unwrap_or(libc::EIO))
        };
        if self.memory_window.is_open() {
            // The sealed segment's memory-acknowledged tail was written but never synced, and
            // no later fdatasync (of the next segment's file) would cover it. Once per segment.
            self.active().log.file.sync_data().map_err(errno)?;
        }
        let segment =
            Segment::create(&self.dir, base_offset, self.config.direct_io).map_err(errno)?;
        if self.config.preallocate {
            if let Err(error) = io::preallocate(&segment.log.file, self.config.segment_size_bytes) {
                let _ = std::fs::remove_file(segment::log_path(&self.dir, base_offset));
                let _ = std::fs::remove_file(segment::index_path(&self.dir, base_offset));
                return Err(errno(error));
            }
        }
        io::sync_dir(&self.dir).map_err(errno)?;
        self.segments.push(segment);
        self.staging.set_len(0);
        self.staging_file_position = 0;
        Ok(())
    }

    /// Handles the completion of the transfer of the partition's newest write: its buffer is
    /// home, so the next write may start while this one's fdatasync runs.
    pub fn write_done(&mut self, cx: &mut Context, result: i32, buffer: IoBuffer) {
        self.in_flight_ops -= 1;
        let IoBuffer::Aligned(buffer) = buffer else {
            return;
        };
        let Some(write) = self
            .writes
            .iter_mut()
            .find(|w| w.written == Progress::Pending)
        else {
            return;
        };
        if result < 0 || (result as usize) < write.len_bytes {
            // A short write is what a filesystem running out of blocks returns.
            let error = if result < 0 {
                append_error_from_errno(-result)
            } else {
                AppendError::NoSpace
            };
            tracing::warn!(key = ?self.key, ?error, "storage: segment write failed; failing the unsettled appends");
            write.written = Progress::Failed;
            self.failed_write_buffer = Some((write.file_position, buffer));
            self.write_failure.get_or_insert(error);
        } else {
            write.written = Progress::Done;
            self.spare = Some(buffer);
        }
        self.settle_writes(cx);
    }

    /// Handles the completion of the fdatasync linked behind the write ending at `last_offset`.
    pub fn write_sync_done(&mut self, cx: &mut Context, last_offset: u64, result: i32) {
        self.in_flight_ops -= 1;
        let Some(write) = self
            .writes
            .iter_mut()
            .find(|w| w.last_offset == last_offset)
        else {
            return;
        };
        if result == -libc::ECANCELED {
            // The write itself failed; its completion records why.
            write.synced = Progress::Failed;
        } else if result < 0 {
            let error = append_error_from_errno(-result);
            tracing::warn!(key = ?self.key, ?error, "storage: fdatasync failed; failing the unsettled appends");
            write.synced = Progress::Failed;
            self.write_failure.get_or_insert(error);
        } else {
            write.synced = Progress::Done;
            cx.stats
                .fsync_latency
                .record(write.started.elapsed().as_micros() as u64);
        }
        self.settle_writes(cx);
    }

    /// Settles the oldest writes that are written and synced, applies a failure once nothing
    /// of the log is in flight, and starts the next write when one is due.
    fn settle_writes(&mut self, cx: &mut Context) {
        while self
            .writes
            .front()
            .is_some_and(|w| w.written == Progress::Done && w.synced == Progress::Done)
        {
            if let Some(write) = self.writes.pop_front() {
                self.write_succeeded(cx, &write);
            }
        }
        let all_completed = self
            .writes
            .iter()
            .all(|w| w.written != Progress::Pending && w.synced != Progress::Pending);
        if all_completed {
            if let Some(error) = self.write_failure.take() {
                for write in self.writes.drain(..) {
                    self.memory_window.restore(write.memory_window);
                }
                self.fail_unwritten(cx, error);
                self.restore_tail_block();
            }
        }
        let more = self
            .mem
            .back()
            .is_some_and(|r| r.base_offset >= self.staged_next_offset);
        let due = !self.acks.is_empty()
            || !self.flush_waiters.is_empty()
            || self.memory_flush_due()
            || self.memory_sync_due();
        if more && due {
            self.start_write(cx);
        }
        self.start_memory_sync(cx);
        self.finish_flush_waiters(cx);
    }

    fn write_succeeded(&mut self, cx: &mut Context, write: &WriteInFlight) {
        cx.stats.bytes_written += write.end_position - write.file_position;
        self.account_written(cx, write.last_offset);
        while self
            .acks
            .front()
            .is_some_and(|ack| ack.last_offset <= write.last_offset)
        {
            let Some(ack) = self.acks.pop_front() else {
                break;
            };
            cx.stats
                .append_latency
                .record(ack.started.elapsed().as_micros() as u64);
            let appended = Appended {
                base_offset: ack.base_offset,
                last_offset: ack.last_offset,
            };
            cx.completions.push(Completion {
                token: ack.token,
                key: self.key,
                result: CompletionResult::Append(Ok(appended)),
            });
        }
        self.write_index(cx);
    }

    /// After a failure: the staging buffer again holds the settled partial tail block of the
    /// active segment — from the failed write's buffer, which begins with it, when that write
    /// starts at the block; otherwise read back from the file (written and synced bytes).
    fn restore_tail_block(&mut self) {
        let block_start = round_down(self.active().end_bytes, self.alignment);
        match self.failed_write_buffer.take() {
            Some((file_position, mut buffer)) if file_position == block_start => {
                buffer.set_len((self.active().end_bytes - file_position) as usize);
                self.spare = Some(std::mem::replace(&mut self.staging, buffer));
                self.staging_file_position = file_position;
            }
            failed => {
                if let Some((_, buffer)) = failed {
                    self.spare.get_or_insert(buffer);
                }
                if let Err(error) = self.reload_tail() {
                    tracing::error!(key = ?self.key, %error, "storage: cannot reload the tail block");
                }
            }
        }
    }

    fn account_written(&mut self, cx: &mut Context, last_offset: u64) {
        let interval = self.config.index_interval_bytes;
        let from = self
            .mem
            .partition_point(|r| r.base_offset < self.durable_next_offset);
        let mut written_bytes = 0usize;
        let mut cached_bytes = 0usize;
        let mut written_messages = 0u64;
        let segments = &mut self.segments;
        for record in self
            .mem
            .range(from..)
            .take_while(|r| r.last_offset <= last_offset)
        {
            if let Ok(header) = segment::record_header(&record.bytes) {
                if let Some(segment) = segments
                    .iter_mut()
                    .rev()
                    .find(|s| s.base_offset == record.segment_base)
                {
                    segment.account(&header, record.position, interval);
                }
            }
            written_bytes += record.bytes.len();
            cached_bytes += record.memory_bytes;
            written_messages += record.last_offset - record.base_offset + 1;
        }
        self.unwritten_bytes -= written_bytes;
        self.unwritten_messages -= written_messages;
        self.written_cached_bytes += cached_bytes;
        cx.stats.cached_bytes += cached_bytes as u64;
        self.durable_next_offset = last_offset + 1;
        if self.mem.back().is_none_or(|r| r.last_offset <= last_offset) {
            self.first_unflushed_at = None;
        }
    }

    /// Append time of the oldest written record still cached, if any.
    pub fn oldest_cached_timestamp_us(&self) -> Option<u64> {
        self.mem
            .front()
            .filter(|record| record.base_offset < self.durable_next_offset)
            .map(|record| record.timestamp_us)
    }

    /// Drops the oldest written record from memory (reads then go to disk); its buffer goes to
    /// the shard's recycle list (bounded) for the caller to reuse instead of allocating.
    pub fn evict_oldest_cached(&mut self, cx: &mut Context) {
        if self.oldest_cached_timestamp_us().is_none() {
            return;
        }
        if let Some(record) = self.mem.pop_front() {
            self.forget_cached(cx, record.memory_bytes);
            // A poll reply still being sent keeps the buffer until it is done with it.
            if let Ok(buffer) = record.bytes.try_into_mut() {
                cx.recycle(buffer.into());
            }
        }
    }

    /// Takes `bytes` of cached written records off this partition's and the shard's totals.
    fn forget_cached(&mut self, cx: &mut Context, bytes: usize) {
        self.written_cached_bytes -= bytes;
        cx.stats.cached_bytes -= bytes as u64;
    }

    /// Forgets every cached record's memory (the partition is being closed).
    pub fn release_cache(&mut self, cx: &mut Context) {
        self.forget_cached(cx, self.written_cached_bytes);
    }

    /// Drops every record not on disk, fails their pending acknowledgements and rewinds the
    /// offsets: the log stays exactly what is on disk.
    pub fn fail_unwritten(&mut self, cx: &mut Context, error: AppendError) {
        let keep = self
            .mem
            .partition_point(|r| r.base_offset < self.durable_next_offset);
        let lost_memory_acks = self.mem.range(keep..).filter(|r| !r.durable_ack).count();
        if lost_memory_acks > 0 {
            tracing::warn!(key = ?self.key, lost_memory_acks, "storage: memory-acknowledged batches lost to a write failure");
        }
        self.mem.truncate(keep);
        for ack in self.acks.drain(..) {
            cx.stats.appends_failed += 1;
            cx.completions.push(Completion {
                token: ack.token,
                key: self.key,
                result: CompletionResult::Append(Err(error)),
            });
        }
        for (token, _) in self.flush_waiters.drain(..) {
            cx.completions.push(Completion {
                token,
                key: self.key,
                result: CompletionResult::Flushed(Err(error)),
            });
        }
        self.next_offset = self.durable_next_offset;
        self.staged_next_offset = self.durable_next_offset;
        self.copied_next_offset = self.durable_next_offset;
        self.unwritten_bytes = 0;
        self.unwritten_messages = 0;
        self.first_unflushed_at = None;
        let (active_base, active_end) = (self.active().base_offset, self.active().end_bytes);
        self.tail_segment_base = active_base;
        self.tail_position = active_end;
        self.last_timestamp_us = self
            .segments
            .iter()
            .filter_map(|s| s.last_timestamp_us)
            .max()
            .unwrap_or(0);
    }

    fn finish_flush_waiters(&mut self, cx: &mut Context) {
        let all_written = self.writes.is_empty()
            && self
                .mem
                .back()
                .is_none_or(|r| r.base_offset < self.durable_next_offset);
        if self.flush_waiters.is_empty() || !all_written || self.fsync_in_flight.is_some() {
            return;
        }
        let wants_fsync = self.flush_waiters.iter().any(|(_, fsync)| *fsync);
        let tokens: Vec<u64> = self
            .flush_waiters
            .drain(..)
            .map(|(token, _)| token)
            .collect();
        if !wants_fsync {
            for token in tokens {
                cx.completions.push(Completion {
                    token,
                    key: self.key,
                    result: CompletionResult::Flushed(Ok(())),
                });
            }
            return;
        }
        let request = Request::Fdatasync {
            fd: self.active().log.file.as_raw_fd(),
        };
        match cx.submit(self.key, Purpose::LogFsync, request, IoBuffer::None) {
            Ok(()) => {
                self.in_flight_ops += 1;
                // Everything is written, so this fdatasync covers the whole memory window too.
                self.fsync_in_flight = Some(FsyncInFlight {
                    tokens,
                    memory_window: self.memory_window.take(),
                });
            }
            Err(_) => self
                .flush_waiters
                .extend(tokens.into_iter().map(|t| (t, true))),
        }
    }

    pub fn fsync_done(&mut self, cx: &mut Context, result: i32) {
        self.in_flight_ops -= 1;
        let outcome = if result < 0 {
            Err(append_error_from_errno(-result))
        } else {
            Ok(())
        };
        if let Some(done) = self.fsync_in_flight.take() {
            if let Err(error) = outcome {
                if done.memory_window.is_open() {
                    tracing::error!(key = ?self.key, ?error, "storage: fdatasync failed; memory-acknowledged batches may not survive a power cut");
                }
                self.memory_window.restore(done.memory_window);
            }
            for token in done.tokens {
                cx.completions.push(Completion {
                    token,
                    key: self.key,
                    result: CompletionResult::Flushed(outcome),
                });
            }
        }
        self.finish_flush_waiters(cx);
    }

    /// Hands new sparse index entries to the index file (no O_DSYNC: recovery rebuilds it).
    fn write_index(&mut self, cx: &mut Context) {
        if self.index_in_flight.is_some() {
            return;
        }
        let Some(segment) = self
            .segments
            .iter()
            .find(|s| s.index_written < s.index.len())
        else {
            return;
        };
        let bytes: Vec<u8> = segment.index[segment.index_written..]
            .iter()
            .flat_map(|e| e.encode())
            .collect();
        let count = segment.index.len() - segment.index_written;
        let offset = (segment.index_written * crate::constants::INDEX_ENTRY_SIZE_BYTES) as u64;
        let request = Request::Write {
            fd: segment.index_file.as_raw_fd(),
            offset,
            len: bytes.len(),
            dsync: false,
        };
        let base = segment.base_offset;
        let len = bytes.len();
        if cx
            .submit(
                self.key,
                Purpose::IndexWrite,
                request,
                IoBuffer::Bytes(bytes),
            )
            .is_ok()
        {
            self.in_flight_ops += 1;
            self.index_in_flight = Some((base, count, len));
        }
    }

    pub fn index_done(&mut self, cx: &mut Context, result: i32) {
        self.in_flight_ops -= 1;
        let Some((base, count, len)) = self.index_in_flight.take() else {
            return;
        };
        if result >= 0 && result as usize == len {
            if let Some(segment) = self.segments.iter_mut().find(|s| s.base_offset == base) {
                segment.index_written += count;
            }
        } else {
            tracing::warn!(key = ?self.key, result, "storage: index write failed; recovery will rebuild the index");
            if let Some(segment) = self.segments.iter_mut().find(|s| s.base_offset == base) {
                segment.index_written = segment.index.len();
            }
        }
        self.write_index(cx);
    }

    /// Removes the oldest `count` sealed segments (never the active one). Call only when idle.
    pub fn delete_oldest_segments(
        &mut self,
        cx: &mut Context,
        count: usize,
    ) -> Result<usize, StorageError> {
        let sealed = self.segments.len() - 1;
        let count = count.min(sealed);
        for segment in self.segments.drain(..count) {
            let log = segment::log_path(&self.dir, segment.base_offset);
            std::fs::remove_file(&log).map_err(storage_io(&log))?;
            let index = segment::index_path(&self.dir, segment.base_offset);
            let _ = std::fs::remove_file(&index);
        }
        if count > 0 {
            let first = self.first_offset();
            let keep_from = self.mem.partition_point(|r| r.base_offset < first);
            let dropped: usize = self
                .mem
                .drain(..keep_from)
                .map(|record| record.memory_bytes)
                .sum();
            self.forget_cached(cx, dropped);
            io::sync_dir(&self.dir).map_err(storage_io(&self.dir))?;
        }
        Ok(count)
    }
}

/// Removes the segment and consumer-offset files of a partition directory (create, purge).
pub(crate) fn remove_partition_files(dir: &Path) -> Result<(), StorageError> {
    let offsets = dir.join("offsets");
    if offsets.exists() {
        std::fs::remove_dir_all(&offsets).map_err(storage_io(&offsets))?;
    }
    for base in segment::list_segments(dir).map_err(storage_io(dir))? {
        let log = segment::log_path(dir, base);
        std::fs::remove_file(&log).map_err(storage_io(&log))?;
        let _ = std::fs::remove_file(segment::index_path(dir, base));
    }
    io::sync_dir(dir).map_err(storage_io(dir))
}
