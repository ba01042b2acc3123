//! The shard: one per storage thread, created inside it. Owns one io_uring and its partitions;
//! no locks. Calls return at once; I/O completes through `wait` + `take_completions`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::os::fd::RawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::constants::CACHE_EVICTION_SLACK_DIVISOR;
use crate::context::{Context, IoTag, Purpose};
use crate::io::{Backend, IoBuffer};
use crate::partition::Partition;
use crate::read::{self, Collector};
use crate::readahead::Reads;
use crate::retention::{segments_to_delete, SegmentSummary};
use crate::stats::ShardStats;
use crate::types::{
    AckMode, AppendError, Appended, Completion, CompletionResult, ConsumerRef, OffsetError,
    PartitionInfo, PartitionKey, PartitionSettings, ReadError, ReadOutcome, ReadStart,
    StorageConfig, StorageError, INTERNAL_TOKEN,
};

pub struct Shard {
    config: StorageConfig,
    /// Declared before `partitions`: dropped first, so the ring finishes with the files open.
    cx: Context,
    partitions: HashMap<PartitionKey, Partition>,
    reads: Reads,
    reaped: Vec<(IoTag, i32, IoBuffer)>,
    warned_buffered_io: bool,
}

impl Shard {
    /// Creates the shard's ring and buffer pools. `wakeup_fd` (an eventfd) is kept armed in the
    /// ring so a write to it ends `wait` early.
    ///
    /// # Errors
    /// `InvalidConfig` when a value is outside the crate's limits.
    pub fn new(config: StorageConfig, wakeup_fd: Option<RawFd>) -> Result<Shard, StorageError> {
        config.validate()?;
        let reads = Reads::new(&config);
        let cx = Context::new(&config, wakeup_fd);
        Ok(Shard {
            config,
            cx,
            partitions: HashMap::new(),
            reads,
            reaped: Vec::new(),
            warned_buffered_io: false,
        })
    }

    /// Which I/O engine this shard runs on (io_uring, or the loud fallback).
    pub fn backend(&self) -> Backend {
        self.cx.engine.backend()
    }

    pub fn stats(&self) -> &ShardStats {
        &self.cx.stats
    }

    /// Creates an empty partition in `dir` (removing any segments already there).
    pub fn create_partition(
        &mut self,
        key: PartitionKey,
        dir: &Path,
        settings: PartitionSettings,
    ) -> Result<PartitionInfo, StorageError> {
        self.insert_partition(key, dir, settings, true)
    }

    /// Opens an existing partition, recovering its segments (creates it when `dir` is empty).
    pub fn open_partition(
        &mut self,
        key: PartitionKey,
        dir: &Path,
        settings: PartitionSettings,
    ) -> Result<PartitionInfo, StorageError> {
        self.insert_partition(key, dir, settings, false)
    }

    fn insert_partition(
        &mut self,
        key: PartitionKey,
        dir: &Path,
        settings: PartitionSettings,
        create: bool,
    ) -> Result<PartitionInfo, StorageError> {
        if self.partitions.contains_key(&key) {
            return Err(StorageError::PartitionExists(key));
        }
        let partition = Partition::open(key, dir, settings, &self.config, create)?;
        if !partition.direct && self.config.direct_io && !self.warned_buffered_io {
            self.warned_buffered_io = true;
            tracing::warn!(dir = %dir.display(), "storage: the filesystem refused O_DIRECT; using buffered writes with O_DSYNC/fdatasync (durability unchanged)");
        }
        let info = partition.info();
        self.partitions.insert(key, partition);
        Ok(info)
    }

    /// Changes a partition's settings (expiry, size limit, acknowledgement mode).
    pub fn set_settings(
        &mut self,
        key: PartitionKey,
        settings: PartitionSettings,
    ) -> Result<(), StorageError> {
        let partition = self
            .partitions
            .get_mut(&key)
            .ok_or(StorageError::UnknownPartition(key))?;
        partition.settings = settings;
        Ok(())
    }

    /// Appends a batch already validated by the protocol crate. Returns the assigned offsets at
    /// once; exactly one `Append` completion with `token` follows (immediately for
    /// `AckMode::Memory`, once on stable storage for `AckMode::Durable`).
    ///
    /// # Errors
    /// `UnknownPartition`, `InvalidBatch` (not a record), `Backpressure` (queue full: retry after
    /// taking completions). Write failures (`NoSpace`, `Io`) arrive as completions.
    pub fn append(
        &mut self,
        key: PartitionKey,
        batch: Vec<u8>,
        ack: AckMode,
        token: u64,
        now_us: u64,
    ) -> Result<Appended, AppendError> {
        let partition = self
            .partitions
            .get_mut(&key)
            .ok_or(AppendError::UnknownPartition(key))?;
        let appended = partition.append(&mut self.cx, batch, ack, token, now_us)?;
        self.cx.engine.submit_queued();
        // A caller appending a burst reacts to a finished write at once (the next write is
        // submitted now, not when the burst ends), so the disk does not wait for the loop.
        if self.cx.engine.has_completions() {
            self.process();
        }
        Ok(appended)
    }

    /// Whether `append` would accept a batch of `len` bytes for `key` now (unknown partitions
    /// answer true: `append` then reports `UnknownPartition`).
    pub fn has_room(&self, key: PartitionKey, len: usize) -> bool {
        self.partitions
            .get(&key)
            .is_none_or(|partition| partition.has_room(len))
    }

    /// Polls a partition. `Ready` when served from memory (or nothing to return), otherwise
    /// `Pending` and a `Read` completion with `token` follows.
    ///
    /// # Errors
    /// `UnknownPartition`; `Backpressure` when every read buffer is in use.
    pub fn read(
        &mut self,
        key: PartitionKey,
        start: ReadStart,
        count_max: u32,
        token: u64,
    ) -> Result<ReadOutcome, ReadError> {
        let partition = self
            .partitions
            .get_mut(&key)
            .ok_or(ReadError::UnknownPartition(key))?;
        let Some((target, visible_last)) = read::resolve(partition, start, count_max) else {
            let current_offset = partition.visible_last_offset();
            return Ok(ReadOutcome::Ready(crate::types::ReadResult {
                partition_id: key.partition_id,
                current_offset,
                ..Default::default()
            }));
        };
        let mut collector = Collector::new(target, count_max, visible_last, key.partition_id);
        if count_max == 0 {
            return Ok(ReadOutcome::Ready(collector.take_result()));
        }
        if read::from_memory(partition, &mut collector) {
            self.cx.stats.reads_from_memory += 1;
            return Ok(ReadOutcome::Ready(collector.take_result()));
        }
        let outcome = self.reads.read(partition, &mut self.cx, token, collector);
        self.cx.engine.submit_queued();
        outcome
    }

    /// Stores a consumer offset durably; an `OffsetStored` completion with `token` follows.
    pub fn store_offset(
        &mut self,
        key: PartitionKey,
        consumer: ConsumerRef,
        offset: u64,
        token: u64,
    ) -> Result<(), OffsetError> {
        let partition = self
            .partitions
            .get_mut(&key)
            .ok_or(OffsetError::UnknownPartition(key))?;
        partition.in_flight_ops +=
            partition
                .offsets
                .store(&mut self.cx, key, consumer, offset, token)?;
        self.cx.engine.submit_queued();
        Ok(())
    }

    /// Records a consumer offset that needs no acknowledgement (a poll's auto-commit): `get_offset`
    /// returns it at once; it is written and synced within `deferred_offset_write_delay`, by
    /// `shutdown`, or before its partition closes.
    pub fn store_offset_deferred(
        &mut self,
        key: PartitionKey,
        consumer: ConsumerRef,
        offset: u64,
    ) -> Result<(), OffsetError> {
        let partition = self
            .partitions
            .get_mut(&key)
            .ok_or(OffsetError::UnknownPartition(key))?;
        partition.in_flight_ops += partition.offsets.store_deferred(
            &mut self.cx,
            key,
            consumer,
            offset,
            Instant::now(),
            self.config.deferred_offset_write_delay,
        )?;
        self.cx.engine.submit_queued();
        Ok(())
    }

    /// The stored offset of `consumer` (as acknowledged or pending acknowledgement).
    pub fn get_offset(
        &self,
        key: PartitionKey,
        consumer: ConsumerRef,
    ) -> Result<Option<u64>, OffsetError> {
        let partition = self
            .partitions
            .get(&key)
            .ok_or(OffsetError::UnknownPartition(key))?;
        Ok(partition.offsets.get(consumer))
    }

    /// Deletes a stored offset (synchronously: waits for the partition's I/O first).
    pub fn delete_offset(
        &mut self,
        key: PartitionKey,
        consumer: ConsumerRef,
    ) -> Result<(), OffsetError> {
        if !self.partitions.contains_key(&key) {
            return Err(OffsetError::UnknownPartition(key));
        }
        self.drain(key);
        let partition = self
            .partitions
            .get_mut(&key)
            .ok_or(OffsetError::UnknownPartition(key))?;
        partition.offsets.delete(consumer)
    }

    /// Writes everything queued (and fdatasyncs when `fsync`); a `Flushed` completion follows.
    pub fn flush(&mut self, key: PartitionKey, fsync: bool, token: u64) -> Result<(), AppendError> {
        let partition = self
            .partitions
            .get_mut(&key)
            .ok_or(AppendError::UnknownPartition(key))?;
        partition.flush(&mut self.cx, fsync, token);
        self.cx.engine.submit_queued();
        Ok(())
    }

    /// Moves buffers of records no longer needed into `out` (empty, capacity kept), so the
    /// caller can receive the next batches into them instead of allocating.
    pub fn take_recycled(&mut self, out: &mut Vec<Vec<u8>>) {
        out.append(&mut self.cx.recycled);
    }

    pub fn partition_info(&self, key: PartitionKey) -> Option<PartitionInfo> {
        self.partitions.get(&key).map(Partition::info)
    }

    pub fn partition_keys(&self) -> Vec<PartitionKey> {
        self.partitions.keys().copied().collect()
    }

    /// Blocks until a completion, a wakeup, a due memory-mode flush or deferred offset write, or
    /// `timeout`.
    pub fn wait(&mut self, timeout: Duration) {
        self.service();
        if self.cx.completions.is_empty() {
            let deferred_writes = self
                .config
                .deferred_offset_write_delay
                .max(Duration::from_millis(1));
            // A memory window falling due ends the wait, so its sync starts on time (one
            // already due waits for the I/O in its way, whose completion ends the wait).
            let now = Instant::now();
            let memory_sync = self
                .partitions
                .values()
                .filter_map(Partition::memory_sync_deadline)
                .filter(|deadline| *deadline > now)
                .min()
                .map_or(Duration::MAX, |deadline| {
                    deadline.saturating_duration_since(now)
                });
            self.cx.engine.wait(
                timeout
                    .min(self.flush_interval())
                    .min(deferred_writes)
                    .min(memory_sync),
            );
        }
        self.process();
        self.service();
    }

    fn flush_interval(&self) -> Duration {
        Duration::from_micros(self.config.memory_flush.interval_us.max(1000))
    }

    /// Moves every finished operation's completion into `out`.
    pub fn take_completions(&mut self, out: &mut Vec<Completion>) {
        self.process();
        out.append(&mut self.cx.completions);
    }

    /// Starts writes that are due (memory-mode intervals, deferred offsets, retries after slot
    /// exhaustion).
    fn service(&mut self) {
        let offsets_due_from = Instant::now().checked_sub(self.config.deferred_offset_write_delay);
        for partition in self.partitions.values_mut() {
            partition.service(&mut self.cx);
            let submitted =
                partition
                    .offsets
                    .service(&mut self.cx, partition.key, offsets_due_from);
            partition.in_flight_ops += submitted;
        }
        self.cx.engine.submit_queued();
    }

    /// Dispatches reaped I/O completions to their partitions.
    fn process(&mut self) {
        let mut reaped = std::mem::take(&mut self.reaped);
        self.cx.engine.reap(&mut reaped);
        for (IoTag { key, purpose }, result, buffer) in reaped.drain(..) {
            // A partition closes only once idle (`drain`), so its I/O never outlives it.
            let partition = self
                .partitions
                .get_mut(&key)
                .unwrap_or_else(|| panic!("storage: I/O completed for {key:?}, which is closed"));
            let cx = &mut self.cx;
            match purpose {
                Purpose::LogWrite => partition.write_done(cx, result, buffer),
                Purpose::LogWriteSync(last_offset) => {
                    partition.write_sync_done(cx, last_offset, result)
                }
                Purpose::LogFsync => partition.fsync_done(cx, result),
                Purpose::IndexWrite => partition.index_done(cx, result),
                Purpose::OffsetWrite(consumer) => {
                    partition.in_flight_ops -= 1;
                    partition.in_flight_ops += partition
                        .offsets
                        .write_done(cx, key, consumer, result, buffer);
                }
                Purpose::Read(id) => self.reads.read_done(partition, cx, id, result, buffer),
                Purpose::Readahead(chunk_id) => self
                    .reads
                    .chunk_done(partition, cx, chunk_id, result, buffer),
            }
        }
        self.reaped = reaped;
        self.evict_cache();
        self.cx.engine.submit_queued();
    }

    /// Keeps the written records cached for reads within `cache_size_bytes` over all
    /// partitions: drops the oldest by append time, whichever partition holds them, down to
    /// 15/16 of the budget so the scan over partitions is paid once per budget/16 written.
    fn evict_cache(&mut self) {
        let budget = self.config.cache_size_bytes as u64;
        if self.cx.stats.cached_bytes <= budget {
            return;
        }
        let target = budget - budget / CACHE_EVICTION_SLACK_DIVISOR;
        let mut oldest_first: BinaryHeap<Reverse<(u64, PartitionKey)>> = self
            .partitions
            .iter()
            .filter_map(|(key, partition)| {
                let timestamp_us = partition.oldest_cached_timestamp_us()?;
                Some(Reverse((timestamp_us, *key)))
            })
            .collect();
        while self.cx.stats.cached_bytes > target {
            let Some(Reverse((_, key))) = oldest_first.pop() else {
                break;
            };
            let Some(partition) = self.partitions.get_mut(&key) else {
                continue;
            };
            partition.evict_oldest_cached(&mut self.cx);
            if let Some(timestamp_us) = partition.oldest_cached_timestamp_us() {
                oldest_first.push(Reverse((timestamp_us, key)));
            }
        }
    }

    /// Applies every partition's expiry and size limit (oldest sealed segments first).
    /// Returns the number of segments deleted.
    pub fn apply_retention(&mut self, now_us: u64) -> Result<usize, StorageError> {
        let mut deleted = 0;
        for key in self.partition_keys() {
            let Some(partition) = self.partitions.get(&key) else {
                continue;
            };
            let summaries: Vec<SegmentSummary> = partition
                .segments
                .iter()
                .map(|s| SegmentSummary {
                    size_bytes: s.end_bytes,
                    last_timestamp_us: s.last_timestamp_us,
                })
                .collect();
            let settings = partition.settings;
            let count = segments_to_delete(
                &summaries,
                now_us,
                settings.message_expiry_us,
                settings.max_size_bytes,
            );
            if count > 0 {
                deleted += self.delete_segments(key, count)?;
            }
        }
        Ok(deleted)
    }

    /// Deletes the partition's oldest `count` sealed segments (never the active one); returns
    /// how many were deleted.
    pub fn delete_segments(
        &mut self,
        key: PartitionKey,
        count: usize,
    ) -> Result<usize, StorageError> {
        if !self.partitions.contains_key(&key) {
            return Err(StorageError::UnknownPartition(key));
        }
        self.drain(key);
        let partition = self
            .partitions
            .get_mut(&key)
            .ok_or(StorageError::UnknownPartition(key))?;
        partition.delete_oldest_segments(&mut self.cx, count)
    }

    /// Removes every message and consumer offset of the partition; it restarts empty at
    /// offset 0, as Iggy's purge does.
    pub fn purge(&mut self, key: PartitionKey) -> Result<PartitionInfo, StorageError> {
        let (dir, settings) = self.close_partition(key)?;
        self.create_partition(key, &dir, settings)
    }

    /// Closes the partition and removes its directory.
    pub fn delete_partition(&mut self, key: PartitionKey) -> Result<(), StorageError> {
        let (dir, _) = self.close_partition(key)?;
        crate::io::remove_dir_all_durable(&dir).map_err(|e| StorageError::io(&dir, e))
    }

    /// Waits for the partition's I/O, then forgets it (files stay).
    pub fn close_partition(
        &mut self,
        key: PartitionKey,
    ) -> Result<(std::path::PathBuf, PartitionSettings), StorageError> {
        if !self.partitions.contains_key(&key) {
            return Err(StorageError::UnknownPartition(key));
        }
        self.drain(key);
        let mut partition = self
            .partitions
            .remove(&key)
            .ok_or(StorageError::UnknownPartition(key))?;
        partition.release_cache(&mut self.cx);
        self.reads.forget(key);
        Ok((partition.dir.clone(), partition.settings))
    }

    /// Writes and syncs everything, waiting for all I/O (the shard stays usable).
    pub fn shutdown(&mut self) {
        for key in self.partition_keys() {
            if let Some(partition) = self.partitions.get_mut(&key) {
                partition.flush(&mut self.cx, true, INTERNAL_TOKEN);
            }
            self.drain(key);
        }
        self.process();
    }

    /// Writes the partition's deferred offsets and blocks until it has no I/O in flight
    /// (management operations only). A completed readahead is dropped too: the operation may
    /// remove what it read.
    fn drain(&mut self, key: PartitionKey) {
        loop {
            if let Some(partition) = self.partitions.get_mut(&key) {
                partition.in_flight_ops +=
                    partition
                        .offsets
                        .service(&mut self.cx, key, Some(Instant::now()));
                self.cx.engine.submit_queued();
            }
            let busy = self
                .partitions
                .get(&key)
                .is_some_and(|p| !p.is_idle() || p.offsets.has_unwritten());
            if !busy {
                self.reads.abandon(key);
                return;
            }
            if let Some(partition) = self.partitions.get_mut(&key) {
                partition.flush(&mut self.cx, false, INTERNAL_TOKEN);
            }
            self.cx.engine.wait(Duration::from_millis(10));
            self.process();
            self.cx.completions.retain(|c| {
                !(c.token == INTERNAL_TOKEN
                    && matches!(c.result, CompletionResult::Flushed(_))
                    && c.key == key)
            });
        }
    }
}

impl Drop for Shard {
    /// Lets in-flight writes finish while the files are open (the ring itself also waits for
    /// its buffers when dropped, and `cx` is dropped before `partitions` closes the files).
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.cx.engine.in_flight() > 0 && Instant::now() < deadline {
            self.cx.engine.wait(Duration::from_millis(10));
            self.process();
        }
    }
}
