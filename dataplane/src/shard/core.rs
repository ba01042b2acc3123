//! One storage shard's executor: it owns a `riptide_storage::Shard` (one io_uring) and its
//! partitions, starts what it is asked ([`ShardOp`]) and hands back outcomes tagged with the
//! origin the caller gave. It knows no rings and no connections: the shard thread in `mesh`
//! moves requests from the rings into [`ShardCore::start`] and outcomes back.

use super::counters::ShardCounters;
use super::directory::{PartitionCounters, PartitionDirectory};
use super::ops::{PollFrom, ShardOp, ShardOutcome};
use riptide_protocol::codes::ErrorCode;
use riptide_storage::{
    AppendError, CompletionResult, ConsumerRef, OffsetError, PartitionKey, PartitionSettings,
    ReadError, ReadOutcome, ReadResult, ReadStart, Shard as StorageShard, StorageConfig,
    StorageError,
};
use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a shard needs from the appliance.
pub struct ShardEnv {
    pub index: usize,
    pub storage: StorageConfig,
    /// Eventfd the storage ring watches, so a request on a ring wakes a waiting shard.
    pub wakeup_fd: RawFd,
    pub directory: Arc<PartitionDirectory>,
    pub counters: Arc<ShardCounters>,
    /// `retention.cleaner_interval_ms`, changeable live.
    pub cleaner_interval_ms: Arc<AtomicU64>,
    /// How often the storage figures (fsync latency, cache) are copied to `counters`.
    pub stats_interval: Duration,
}

/// What a storage token stands for until its completion arrives.
struct PendingOp<O> {
    origin: O,
    auto_commit: Option<ConsumerRef>,
    started: Instant,
}

/// The state of one storage shard; `O` tags each request with where its outcome goes.
pub struct ShardCore<O> {
    env: ShardEnv,
    storage: StorageShard,
    pending: HashMap<u64, PendingOp<O>>,
    next_storage_token: u64,
    /// (partition, consumer) of auto-committing polls whose read is still in flight.
    committing_polls: HashSet<(PartitionKey, ConsumerRef)>,
    counters: HashMap<PartitionKey, Arc<PartitionCounters>>,
    completions: Vec<riptide_storage::Completion>,
    /// Outcomes ready for their origins (taken by [`ShardCore::take_outcomes`]).
    outcomes: Vec<(O, ShardOutcome)>,
    last_retention: Instant,
    last_stats_publish: Instant,
}

impl<O: Copy> ShardCore<O> {
    /// Builds the storage shard (inside the thread that will run it: it is not `Send`) and opens
    /// `partitions`, recovering each.
    ///
    /// # Errors
    /// The storage error of the ring set-up or of a partition's recovery.
    pub fn open(
        env: ShardEnv,
        partitions: Vec<(PartitionKey, PartitionSettings)>,
        now: Instant,
    ) -> Result<ShardCore<O>, StorageError> {
        let storage = StorageShard::new(env.storage.clone(), Some(env.wakeup_fd))?;
        tracing::info!(shard = env.index, backend = ?storage.backend(), "storage shard ready");
        let mut core = ShardCore {
            env,
            storage,
            pending: HashMap::new(),
            next_storage_token: 1,
            committing_polls: HashSet::new(),
            counters: HashMap::new(),
            completions: Vec::new(),
            outcomes: Vec::new(),
            last_retention: now,
            last_stats_publish: now,
        };
        for (key, settings) in partitions {
            core.open_partition(key, settings)?;
        }
        Ok(core)
    }

    pub fn index(&self) -> usize {
        self.env.index
    }

    /// No storage operation is in flight.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    fn open_partition(
        &mut self,
        key: PartitionKey,
        settings: PartitionSettings,
    ) -> Result<(), StorageError> {
        let dir = self.env.directory.partition_dir(key);
        let info = self.storage.open_partition(key, &dir, settings)?;
        let counters = self.env.directory.register(key);
        counters.publish(&info);
        self.counters.insert(key, counters);
        self.publish_partitions_count();
        Ok(())
    }

    fn publish_partitions_count(&self) {
        self.env
            .counters
            .partitions
            .store(self.counters.len() as u64, Ordering::Relaxed);
    }

    /// Starts one request, or gives it back when storage is momentarily full (the caller retries
    /// it before anything newer). An outcome known at once is queued for
    /// [`ShardCore::take_outcomes`].
    pub fn start(&mut self, origin: O, op: ShardOp, now_us: u64) -> Result<(), ShardOp> {
        let storage_token = self.next_storage_token;
        let started = match op {
            ShardOp::Append {
                key,
                batch,
                ack,
                stamp_us,
            } => {
                if !self.storage.has_room(key, batch.len()) {
                    return Err(ShardOp::Append {
                        key,
                        batch,
                        ack,
                        stamp_us,
                    });
                }
                let stamp_us = stamp_us.unwrap_or(now_us);
                self.storage
                    .append(key, batch, ack, storage_token, stamp_us)
                    .map(drop)
                    .map_err(append_error_code)
            }
            ShardOp::Poll {
                key,
                from,
                count,
                auto_commit,
            } => return self.start_poll(origin, key, from, count, auto_commit),
            ShardOp::StoreOffset {
                key,
                consumer,
                offset,
            } => self
                .storage
                .store_offset(key, consumer, offset, storage_token)
                .map_err(offset_error_code),
            ShardOp::Flush { key, fsync } => self
                .storage
                .flush(key, fsync, storage_token)
                .map_err(append_error_code),
            other => {
                let outcome = self.run_control(other);
                self.outcomes.push((origin, outcome));
                return Ok(());
            }
        };
        match started {
            Ok(()) => self.remember(storage_token, origin, None),
            Err(code) => self.outcomes.push((origin, ShardOutcome::Failed(code))),
        }
        Ok(())
    }

    fn start_poll(
        &mut self,
        origin: O,
        key: PartitionKey,
        from: PollFrom,
        count: u32,
        auto_commit: Option<ConsumerRef>,
    ) -> Result<(), ShardOp> {
        let retry = || ShardOp::Poll {
            key,
            from,
            count,
            auto_commit,
        };
        if self.waits_for_commit(key, from, auto_commit) {
            return Err(retry());
        }
        let storage_token = self.next_storage_token;
        match self.read(key, from, count, storage_token) {
            Ok(ReadOutcome::Ready(result)) => {
                let outcome = self.finish_poll(key, result, auto_commit);
                self.outcomes.push((origin, outcome));
            }
            Ok(ReadOutcome::Pending) => {
                if let Some(consumer) = auto_commit {
                    self.committing_polls.insert((key, consumer));
                }
                self.remember(storage_token, origin, auto_commit);
            }
            Err(ReadError::Backpressure) => return Err(retry()),
            Err(error) => {
                let outcome = ShardOutcome::Failed(read_error_code(error));
                self.outcomes.push((origin, outcome));
            }
        }
        Ok(())
    }

    /// Whether a poll must wait: its consumer has an auto-committing poll of this partition
    /// still reading, and this poll would start from (or commit over) the offset that one stores.
    /// Without the wait two group members could both read the batch after the stored offset.
    fn waits_for_commit(
        &self,
        key: PartitionKey,
        from: PollFrom,
        auto_commit: Option<ConsumerRef>,
    ) -> bool {
        let next_of = match from {
            PollFrom::Next(consumer) => Some(consumer),
            _ => None,
        };
        [next_of, auto_commit]
            .into_iter()
            .flatten()
            .any(|consumer| self.committing_polls.contains(&(key, consumer)))
    }

    fn remember(&mut self, storage_token: u64, origin: O, auto_commit: Option<ConsumerRef>) {
        self.pending.insert(
            storage_token,
            PendingOp {
                origin,
                auto_commit,
                started: Instant::now(),
            },
        );
        self.next_storage_token += 1;
    }

    fn read(
        &mut self,
        key: PartitionKey,
        from: PollFrom,
        count: u32,
        storage_token: u64,
    ) -> Result<ReadOutcome, ReadError> {
        let start = match from {
            PollFrom::Offset(offset) => ReadStart::Offset(offset),
            PollFrom::Timestamp(timestamp_us) => ReadStart::Timestamp(timestamp_us),
            PollFrom::First => ReadStart::First,
            PollFrom::Last => ReadStart::Last,
            PollFrom::Next(consumer) => match self.storage.get_offset(key, consumer) {
                Ok(Some(stored)) => ReadStart::Offset(stored.saturating_add(1)),
                Ok(None) => ReadStart::First,
                Err(OffsetError::UnknownPartition(key)) => {
                    return Err(ReadError::UnknownPartition(key))
                }
                Err(_) => ReadStart::First,
            },
        };
        self.env.counters.reads.fetch_add(1, Ordering::Relaxed);
        self.storage.read(key, start, count, storage_token)
    }

    /// Auto-commit stores the last offset returned; the poll reply does not wait for that write
    /// (as in Iggy, an auto-commit is not separately acknowledged). It is written within
    /// `storage.auto_commit_write_delay_ms`: a crash may make the consumer read that much again.
    fn finish_poll(
        &mut self,
        key: PartitionKey,
        result: ReadResult,
        auto_commit: Option<ConsumerRef>,
    ) -> ShardOutcome {
        if let (Some(consumer), Some(last)) = (auto_commit, result.last_offset) {
            if let Err(error) = self.storage.store_offset_deferred(key, consumer, last) {
                tracing::warn!(?key, ?error, "auto-commit of consumer offset failed");
            }
        }
        ShardOutcome::Polled(result)
    }

    /// Operations that finish synchronously on the shard (metadata-plane changes of partitions).
    fn run_control(&mut self, op: ShardOp) -> ShardOutcome {
        let result = match op {
            ShardOp::GetOffset { key, consumer } => return self.offset_outcome(key, consumer),
            ShardOp::DeleteOffset { key, consumer } => self
                .storage
                .delete_offset(key, consumer)
                .map_err(offset_error_code),
            ShardOp::OpenPartitions(partitions) => {
                partitions.into_iter().try_for_each(|(key, settings)| {
                    if self.counters.contains_key(&key) {
                        return self
                            .storage
                            .set_settings(key, settings)
                            .map_err(storage_error_code);
                    }
                    self.open_partition(key, settings)
                        .map_err(storage_error_code)
                })
            }
            ShardOp::DeletePartitions(keys) => keys.into_iter().try_for_each(|key| {
                self.counters.remove(&key);
                self.env.directory.unregister(key);
                match self.storage.delete_partition(key) {
                    Ok(()) | Err(StorageError::UnknownPartition(_)) => Ok(()),
                    Err(error) => Err(storage_error_code(error)),
                }
            }),
            ShardOp::Purge(keys) => keys.into_iter().try_for_each(|key| {
                let info = self.storage.purge(key).map_err(storage_error_code)?;
                self.publish(key, Some(info));
                Ok(())
            }),
            ShardOp::DeleteSegments { key, count } => {
                let deleted = self
                    .storage
                    .delete_segments(key, count as usize)
                    .map_err(storage_error_code);
                self.publish(key, None);
                deleted.map(drop)
            }
            ShardOp::SetSettings(partitions) => {
                partitions.into_iter().try_for_each(|(key, settings)| {
                    self.storage
                        .set_settings(key, settings)
                        .map_err(storage_error_code)
                })
            }
            ShardOp::Append { .. }
            | ShardOp::Poll { .. }
            | ShardOp::StoreOffset { .. }
            | ShardOp::Flush { .. } => Err(ErrorCode::InvalidCommand),
        };
        self.publish_partitions_count();
        match result {
            Ok(()) => ShardOutcome::Done,
            Err(code) => ShardOutcome::Failed(code),
        }
    }

    fn offset_outcome(&self, key: PartitionKey, consumer: ConsumerRef) -> ShardOutcome {
        match self.storage.get_offset(key, consumer) {
            Ok(stored) => ShardOutcome::Offset {
                current: self
                    .storage
                    .partition_info(key)
                    .and_then(|info| info.current_offset),
                stored,
            },
            Err(error) => ShardOutcome::Failed(offset_error_code(error)),
        }
    }

    /// Blocks on the storage ring until a completion, the wakeup eventfd, or `timeout`.
    pub fn wait(&mut self, timeout: Duration) {
        self.storage.wait(timeout);
    }

    /// Turns completions into outcomes, and runs retention and stats publishing when due.
    pub fn poll(&mut self, now: Instant, now_us: u64) {
        self.handle_completions();
        self.run_retention_when_due(now, now_us);
        if now.duration_since(self.last_stats_publish) >= self.env.stats_interval {
            self.last_stats_publish = now;
            self.publish_storage_stats();
        }
    }

    /// Outcomes ready for their origins, in the order they became ready.
    pub fn take_outcomes(&mut self, out: &mut Vec<(O, ShardOutcome)>) {
        out.append(&mut self.outcomes);
    }

    /// Buffers of batches that left storage memory (the network side receives into them again).
    pub fn take_recycled(&mut self, out: &mut Vec<Vec<u8>>) {
        self.storage.take_recycled(out);
    }

    /// Flushes and syncs every partition.
    pub fn shutdown(&mut self) {
        self.storage.shutdown();
        tracing::info!(shard = self.env.index, "storage shard stopped; data synced");
    }

    fn handle_completions(&mut self) {
        self.storage.take_completions(&mut self.completions);
        let mut completions = std::mem::take(&mut self.completions);
        for completion in completions.drain(..) {
            let key = completion.key;
            let Some(pending) = self.pending.remove(&completion.token) else {
                continue;
            };
            if let (CompletionResult::Read(_), Some(consumer)) =
                (&completion.result, pending.auto_commit)
            {
                // The poll's offset is stored by finish_poll below, before any other request runs.
                self.committing_polls.remove(&(key, consumer));
            }
            let outcome = self.completion_outcome(key, completion.result, &pending);
            self.outcomes.push((pending.origin, outcome));
        }
        self.completions = completions;
    }

    fn completion_outcome(
        &mut self,
        key: PartitionKey,
        result: CompletionResult,
        pending: &PendingOp<O>,
    ) -> ShardOutcome {
        match result {
            CompletionResult::Append(Ok(appended)) => {
                self.count_append(
                    appended.last_offset - appended.base_offset + 1,
                    pending.started,
                );
                self.publish(key, None);
                ShardOutcome::Appended {
                    base_offset: appended.base_offset,
                    last_offset: appended.last_offset,
                }
            }
            CompletionResult::Append(Err(error)) => {
                self.env
                    .counters
                    .append_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(?key, %error, "append failed");
                ShardOutcome::Failed(append_error_code(error))
            }
            CompletionResult::Read(Ok(result)) => {
                self.finish_poll(key, result, pending.auto_commit)
            }
            CompletionResult::Read(Err(error)) => ShardOutcome::Failed(read_error_code(error)),
            CompletionResult::OffsetStored(Ok(())) | CompletionResult::Flushed(Ok(())) => {
                ShardOutcome::Done
            }
            CompletionResult::OffsetStored(Err(error)) => {
                ShardOutcome::Failed(offset_error_code(error))
            }
            CompletionResult::Flushed(Err(error)) => ShardOutcome::Failed(append_error_code(error)),
        }
    }

    fn count_append(&self, messages: u64, started: Instant) {
        let counters = &self.env.counters;
        counters.appends.fetch_add(1, Ordering::Relaxed);
        counters
            .messages_appended
            .fetch_add(messages, Ordering::Relaxed);
        counters
            .append_latency
            .record_us(started.elapsed().as_micros() as u64);
    }

    /// Copies a partition's offsets and sizes to the counters the metadata replies read.
    fn publish(&self, key: PartitionKey, info: Option<riptide_storage::PartitionInfo>) {
        let info = info.or_else(|| self.storage.partition_info(key));
        if let (Some(counters), Some(info)) = (self.counters.get(&key), info) {
            counters.publish(&info);
        }
    }

    /// Copies the storage shard's durable-write latency histogram and read-cache figures to
    /// the published counters.
    fn publish_storage_stats(&self) {
        let stats = self.storage.stats();
        let counters = &self.env.counters;
        let fsync = &stats.fsync_latency;
        let published = riptide_config::stats::power_of_two_histogram(
            &fsync.buckets,
            fsync.count,
            fsync.sum_us,
        );
        if let Ok(mut slot) = counters.fsync_latency.lock() {
            *slot = published;
        }
        counters
            .cached_bytes
            .store(stats.cached_bytes, Ordering::Relaxed);
        counters
            .reads_from_memory
            .store(stats.reads_from_memory, Ordering::Relaxed);
    }

    /// Retention runs when the last run is older than the cleaner interval (read each time, so a
    /// live change applies at once).
    fn run_retention_when_due(&mut self, now: Instant, now_us: u64) {
        let interval = Duration::from_millis(self.env.cleaner_interval_ms.load(Ordering::Relaxed));
        if now.duration_since(self.last_retention) < interval {
            return;
        }
        self.last_retention = now;
        match self.storage.apply_retention(now_us) {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(
                    shard = self.env.index,
                    segments = deleted,
                    "retention deleted expired segments"
                );
                for key in self.counters.keys() {
                    self.publish(*key, None);
                }
            }
            Err(error) => tracing::warn!(shard = self.env.index, %error, "retention failed"),
        }
    }
}

fn append_error_code(error: AppendError) -> ErrorCode {
    match error {
        AppendError::UnknownPartition(_) => ErrorCode::PartitionNotFound,
        AppendError::InvalidBatch => ErrorCode::InvalidFormat,
        AppendError::Backpressure | AppendError::NoSpace | AppendError::Io(_) => {
            ErrorCode::CannotAppendMessage
        }
    }
}

fn read_error_code(error: ReadError) -> ErrorCode {
    match error {
        ReadError::UnknownPartition(_) => ErrorCode::PartitionNotFound,
        _ => ErrorCode::CannotReadMessage,
    }
}

fn storage_error_code(error: StorageError) -> ErrorCode {
    match error {
        StorageError::UnknownPartition(_) => ErrorCode::PartitionNotFound,
        _ => ErrorCode::Error,
    }
}

fn offset_error_code(error: OffsetError) -> ErrorCode {
    match error {
        OffsetError::UnknownPartition(_) => ErrorCode::PartitionNotFound,
        OffsetError::NotFound => ErrorCode::ConsumerOffsetNotFound,
        OffsetError::Io(_) => ErrorCode::Error,
    }
}
