//! Storage shards: one pinned thread each, owning a share of the partitions through a
//! `riptide_storage::Shard` (one io_uring). Network workers reach a shard only through its rings.
//!
//! A shard loop drains its request rings, starts storage operations, waits on its io_uring (which
//! also watches the shard's wakeup eventfd), and turns completions into replies on the ring back
//! to the worker that asked. Replies never overflow: a worker keeps at most `ring_capacity`
//! requests outstanding per shard, and the reply ring has that capacity.

pub mod counters;

use crate::mesh::ring::{Waker, WorkerShardRings};
use crate::session::shared::{PartitionCounters, Shared};
use riptide_protocol::codes::ErrorCode;
use riptide_storage::{
    AckMode, AppendError, CompletionResult, ConsumerRef, OffsetError, PartitionKey,
    PartitionSettings, ReadError, ReadOutcome, ReadResult, ReadStart, Shard as StorageShard,
    StorageError,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a shard sleeps when idle: bounds how late shutdown and retention are noticed.
const SHARD_IDLE_WAIT_MS: u64 = 100;
/// Requests taken from one worker's ring per loop turn, so one busy worker cannot starve others.
const REQUESTS_PER_RING_TURN_MAX: usize = 256;

/// Identifies a connection across its worker's slot reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId {
    pub slot: u32,
    pub generation: u32,
}

/// Where a shard reply goes: the connection and its request sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestToken {
    pub connection: ConnectionId,
    pub seq: u64,
}

/// Where a poll starts; `Next` is resolved by the shard from the consumer's stored offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollFrom {
    Offset(u64),
    Timestamp(u64),
    First,
    Last,
    Next(ConsumerRef),
}

#[derive(Debug)]
pub enum ShardOp {
    Append {
        key: PartitionKey,
        batch: Vec<u8>,
        ack: AckMode,
    },
    Poll {
        key: PartitionKey,
        from: PollFrom,
        count: u32,
        auto_commit: Option<ConsumerRef>,
    },
    GetOffset {
        key: PartitionKey,
        consumer: ConsumerRef,
    },
    StoreOffset {
        key: PartitionKey,
        consumer: ConsumerRef,
        offset: u64,
    },
    DeleteOffset {
        key: PartitionKey,
        consumer: ConsumerRef,
    },
    Flush {
        key: PartitionKey,
        fsync: bool,
    },
    OpenPartitions(Vec<(PartitionKey, PartitionSettings)>),
    DeletePartitions(Vec<PartitionKey>),
    Purge(Vec<PartitionKey>),
    DeleteSegments {
        key: PartitionKey,
        count: u32,
    },
    SetSettings(Vec<(PartitionKey, PartitionSettings)>),
}

#[derive(Debug)]
pub struct ShardRequest {
    pub token: RequestToken,
    pub op: ShardOp,
}

#[derive(Debug)]
pub enum ShardOutcome {
    Appended {
        base_offset: u64,
        last_offset: u64,
    },
    Polled(ReadResult),
    Offset {
        current: Option<u64>,
        stored: Option<u64>,
    },
    Done,
    Failed(ErrorCode),
}

#[derive(Debug)]
pub struct ShardReply {
    pub token: RequestToken,
    pub outcome: ShardOutcome,
}

/// What a storage token stands for until its completion arrives.
struct PendingOp {
    worker: usize,
    token: RequestToken,
    auto_commit: Option<ConsumerRef>,
    started: Instant,
}

/// The state of one storage shard thread.
pub struct ShardLoop {
    index: usize,
    shared: Arc<Shared>,
    storage: StorageShard,
    rings: Vec<WorkerShardRings>,
    /// Keeps the eventfd registered in the storage ring open for the shard's lifetime.
    _wakeup: Arc<Waker>,
    pending: HashMap<u64, PendingOp>,
    next_storage_token: u64,
    /// Requests refused with storage backpressure, retried before new ones are taken.
    deferred: VecDeque<(usize, ShardRequest)>,
    /// (partition, consumer) of auto-committing polls whose read is still in flight.
    committing_polls: HashSet<(PartitionKey, ConsumerRef)>,
    counters: HashMap<PartitionKey, Arc<PartitionCounters>>,
    completions: Vec<riptide_storage::Completion>,
    /// Buffers of batches the storage shard is done with, on their way to the network workers.
    recycled: Vec<Vec<u8>>,
    workers_to_wake: Vec<bool>,
    last_retention: Instant,
    last_stats_publish: Instant,
}

impl ShardLoop {
    /// Builds the shard inside its own thread (the storage shard is not `Send`) and opens the
    /// partitions this shard owns.
    ///
    /// # Errors
    /// The storage error of the ring set-up or of a partition's recovery.
    pub fn new(
        index: usize,
        shared: Arc<Shared>,
        rings: Vec<WorkerShardRings>,
        waker: Arc<Waker>,
    ) -> Result<ShardLoop, StorageError> {
        let storage = StorageShard::new(shared.storage_config(), Some(waker.fd()))?;
        tracing::info!(shard = index, backend = ?storage.backend(), "storage shard ready");
        let workers = rings.len();
        let mut shard = ShardLoop {
            index,
            shared,
            storage,
            rings,
            _wakeup: waker,
            pending: HashMap::new(),
            next_storage_token: 1,
            deferred: VecDeque::new(),
            committing_polls: HashSet::new(),
            counters: HashMap::new(),
            completions: Vec::new(),
            recycled: Vec::new(),
            workers_to_wake: vec![false; workers],
            last_retention: Instant::now(),
            last_stats_publish: Instant::now(),
        };
        for (key, settings) in shard.shared.owned_partitions(index) {
            shard.open_partition(key, settings)?;
        }
        Ok(shard)
    }

    fn open_partition(
        &mut self,
        key: PartitionKey,
        settings: PartitionSettings,
    ) -> Result<(), StorageError> {
        let dir = self.shared.partition_dir(key);
        let info = self.storage.open_partition(key, &dir, settings)?;
        let counters = self.shared.register_partition(key);
        counters.publish(&info);
        self.counters.insert(key, counters);
        self.shared.shard_counters[self.index]
            .partitions
            .store(self.counters.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Runs until shutdown is requested and every ring is drained; then syncs everything.
    pub fn run(mut self) {
        loop {
            let took_work = self.take_requests();
            let timeout = if took_work {
                Duration::ZERO
            } else {
                Duration::from_millis(SHARD_IDLE_WAIT_MS)
            };
            self.storage.wait(timeout);
            self.handle_completions();
            self.return_batch_buffers();
            self.run_retention_when_due();
            self.wake_workers();
            if self.last_stats_publish.elapsed()
                >= Duration::from_millis(riptide_config::stats::STATS_PUBLISH_INTERVAL_MS)
            {
                self.last_stats_publish = Instant::now();
                self.publish_storage_stats();
            }
            if self.shared.storage_stopping()
                && !took_work
                && self.pending.is_empty()
                && self.deferred.is_empty()
            {
                break;
            }
        }
        self.storage.shutdown();
        tracing::info!(shard = self.index, "storage shard stopped; data synced");
    }

    /// Starts deferred requests first, then new ones; true when anything was started (a request
    /// that has to wait again is not progress, so the loop then sleeps until a completion).
    fn take_requests(&mut self) -> bool {
        let mut took = false;
        while let Some((worker, request)) = self.deferred.pop_front() {
            if let Err(request) = self.start(worker, request) {
                self.deferred.push_front((worker, request));
                return took;
            }
            took = true;
        }
        for worker in 0..self.rings.len() {
            for _ in 0..REQUESTS_PER_RING_TURN_MAX {
                let Ok(request) = self.rings[worker].requests.pop() else {
                    break;
                };
                took = true;
                if let Err(request) = self.start(worker, request) {
                    self.deferred.push_back((worker, request));
                    return took;
                }
            }
        }
        let depth: usize = self.rings.iter().map(|r| r.requests.slots()).sum();
        self.shared.shard_counters[self.index]
            .request_ring_depth
            .store(depth as u64, Ordering::Relaxed);
        took
    }

    /// Starts one request, or gives it back when storage is momentarily full (retried later).
    fn start(&mut self, worker: usize, request: ShardRequest) -> Result<(), ShardRequest> {
        let storage_token = self.next_storage_token;
        let token = request.token;
        let started = match request.op {
            ShardOp::Append { key, batch, ack } => {
                if !self.storage.has_room(key, batch.len()) {
                    return Err(ShardRequest {
                        token,
                        op: ShardOp::Append { key, batch, ack },
                    });
                }
                self.storage
                    .append(key, batch, ack, storage_token, now_us())
                    .map(drop)
                    .map_err(append_error_code)
            }
            ShardOp::Poll {
                key,
                from,
                count,
                auto_commit,
            } if self.waits_for_commit(key, from, auto_commit) => {
                return Err(ShardRequest {
                    token,
                    op: ShardOp::Poll {
                        key,
                        from,
                        count,
                        auto_commit,
                    },
                });
            }
            ShardOp::Poll {
                key,
                from,
                count,
                auto_commit,
            } => match self.start_poll(key, from, count, storage_token) {
                Ok(ReadOutcome::Ready(result)) => {
                    let outcome = self.finish_poll(key, result, auto_commit);
                    self.reply(worker, token, outcome);
                    return Ok(());
                }
                Ok(ReadOutcome::Pending) => {
                    if let Some(consumer) = auto_commit {
                        self.committing_polls.insert((key, consumer));
                    }
                    self.remember(storage_token, worker, token, auto_commit);
                    return Ok(());
                }
                Err(ReadError::Backpressure) => {
                    return Err(ShardRequest {
                        token,
                        op: ShardOp::Poll {
                            key,
                            from,
                            count,
                            auto_commit,
                        },
                    });
                }
                Err(error) => Err(read_error_code(error)),
            },
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
                self.reply(worker, token, outcome);
                return Ok(());
            }
        };
        match started {
            Ok(()) => self.remember(storage_token, worker, token, None),
            Err(code) => self.reply(worker, token, ShardOutcome::Failed(code)),
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

    fn remember(
        &mut self,
        storage_token: u64,
        worker: usize,
        token: RequestToken,
        auto_commit: Option<ConsumerRef>,
    ) {
        self.pending.insert(
            storage_token,
            PendingOp {
                worker,
                token,
                auto_commit,
                started: Instant::now(),
            },
        );
        self.next_storage_token += 1;
    }

    fn start_poll(
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
        self.shared.shard_counters[self.index]
            .reads
            .fetch_add(1, Ordering::Relaxed);
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
            ShardOp::GetOffset { key, consumer } => {
                return match self.storage.get_offset(key, consumer) {
                    Ok(stored) => ShardOutcome::Offset {
                        current: self
                            .storage
                            .partition_info(key)
                            .and_then(|info| info.current_offset),
                        stored,
                    },
                    Err(error) => ShardOutcome::Failed(offset_error_code(error)),
                };
            }
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
                self.shared.unregister_partition(key);
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
        self.shared.shard_counters[self.index]
            .partitions
            .store(self.counters.len() as u64, Ordering::Relaxed);
        match result {
            Ok(()) => ShardOutcome::Done,
            Err(code) => ShardOutcome::Failed(code),
        }
    }

    /// Hands the buffers of batches that left storage memory to the network workers, which
    /// receive the next large batches into them.
    fn return_batch_buffers(&mut self) {
        self.storage.take_recycled(&mut self.recycled);
        for buffer in self.recycled.drain(..) {
            self.shared.batch_buffers.give_back(buffer);
        }
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
            let outcome = match completion.result {
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
                    self.shared.shard_counters[self.index]
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
                CompletionResult::Flushed(Err(error)) => {
                    ShardOutcome::Failed(append_error_code(error))
                }
            };
            self.reply(pending.worker, pending.token, outcome);
        }
        self.completions = completions;
    }

    fn count_append(&self, messages: u64, started: Instant) {
        let counters = &self.shared.shard_counters[self.index];
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

    fn reply(&mut self, worker: usize, token: RequestToken, outcome: ShardOutcome) {
        let reply = ShardReply { token, outcome };
        // Cannot fail: a worker keeps at most ring capacity requests outstanding per shard.
        if self.rings[worker].replies.push(reply).is_err() {
            tracing::error!(
                shard = self.index,
                worker,
                "reply ring full: worker exceeded its outstanding limit"
            );
        }
        self.workers_to_wake[worker] = true;
    }

    fn wake_workers(&mut self) {
        for (worker, wake) in self.workers_to_wake.iter_mut().enumerate() {
            if std::mem::take(wake) {
                self.rings[worker].worker_waker.wake();
            }
        }
    }

    /// Copies the storage shard's durable-write latency histogram and read-cache figures to
    /// the published counters.
    fn publish_storage_stats(&self) {
        let stats = self.storage.stats();
        let counters = &self.shared.shard_counters[self.index];
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
    fn run_retention_when_due(&mut self) {
        let interval = Duration::from_millis(self.shared.cleaner_interval_ms());
        if self.last_retention.elapsed() < interval {
            return;
        }
        self.last_retention = Instant::now();
        match self.storage.apply_retention(now_us()) {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(
                    shard = self.index,
                    segments = deleted,
                    "retention deleted expired segments"
                );
                for key in self.counters.keys() {
                    self.publish(*key, None);
                }
            }
            Err(error) => tracing::warn!(shard = self.index, %error, "retention failed"),
        }
    }
}

fn now_us() -> u64 {
    crate::session::shared::now_us()
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
