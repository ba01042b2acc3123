//! The replicated state: the catalog and the partitions. Every node applies the committed
//! commands in log order: metadata changes to its catalog (and the partition work they imply, as
//! a single node does: `shard::effects`), batches to its shards at the offset and time the leader
//! gave them, consumer offsets, purges.
//!
//! Durability. Batches are appended without a sync of their own: the Raft log is their durable
//! copy. What the state machine knows it applied is a checkpoint, `<data>/raft/state`: the
//! catalog, the membership, the next offset of every partition and the last applied log id,
//! written (after the shards synced every partition) whenever a snapshot is built and right after
//! any command that is not safe to apply twice (metadata changes, purges, segment deletions). On a
//! restart openraft applies again from the checkpoint on: a batch whose offset a partition already
//! holds is skipped, so the replay is exact.
//!
//! Snapshots carry the checkpoint, not the partitions' bytes: a follower installing one fetches
//! the records it lacks from the leader's segments (`Fetcher`), so a follower that only lacks a
//! tail never gets a full copy.

use super::durable;
use super::shard_client::ShardClient;
use super::types::{
    Command, Entry, LogId, Membership, NodeId, NodeInfo, Response, StorageError, TypeConfig,
    WireKey,
};
use crate::metadata::{catalog_error_code, CatalogView};
use crate::shard::effects::{effects_of, keys_of, per_shard};
use crate::shard::{partition_settings, PartitionDirectory, ShardOp, ShardOutcome};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};
use riptide_config::AckFloor;
use riptide_protocol::codes::ErrorCode;
use riptide_storage::metadata::{decode_catalog, encode_catalog, Catalog, Change};
use riptide_storage::{AckMode, ConsumerRef, PartitionKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Records a follower fetches from the leader per round trip while catching up.
pub const CATCH_UP_MESSAGES_PER_FETCH: u32 = 10_000;

/// What a checkpoint holds (also the content of a snapshot).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub last_applied: Option<LogId>,
    pub membership: Membership,
    #[serde(with = "serde_bytes")]
    pub catalog: Vec<u8>,
    pub next_offsets: Vec<(WireKey, u64)>,
}

/// Gets partition records from another node's segments (the leader's, while installing a
/// snapshot): whole stored records, starting at `from_offset`.
pub trait Fetcher: Send + Sync + 'static {
    fn fetch(
        &self,
        from: &NodeInfo,
        key: PartitionKey,
        from_offset: u64,
        messages_max: u32,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, String>> + Send;
}

/// State the cluster thread reads while the state machine runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Index of the last applied entry (0 before any).
    pub applied_index: AtomicU64,
    /// The node that sent the snapshot being received (set by the replication server), whose
    /// segments a follower installing it catches up from.
    pub snapshot_source: Mutex<Option<NodeId>>,
    /// Next offset of every partition as applied.
    next_offsets: Mutex<HashMap<PartitionKey, u64>>,
}

impl Progress {
    pub fn next_offsets(&self) -> MutexGuard<'_, HashMap<PartitionKey, u64>> {
        self.next_offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The writes of the checkpoint file, one at a time and never backwards (the snapshot builder
/// runs beside the applying task).
#[derive(Default)]
struct CheckpointFile {
    path: PathBuf,
    written: Mutex<Option<LogId>>,
}

impl CheckpointFile {
    fn write(&self, checkpoint: &Checkpoint) -> std::io::Result<()> {
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *written > checkpoint.last_applied {
            return Ok(());
        }
        durable::write(&self.path, checkpoint)?;
        *written = checkpoint.last_applied;
        Ok(())
    }
}

/// The partitions and catalog of one node, as openraft drives them.
pub struct StateMachine<F> {
    shards: ShardClient,
    directory: Arc<PartitionDirectory>,
    floor: AckFloor,
    view: Arc<CatalogView>,
    progress: Arc<Progress>,
    checkpoint_file: Arc<CheckpointFile>,
    fetcher: Arc<F>,
    last_applied: Option<LogId>,
    membership: Membership,
    catalog: Arc<Catalog>,
    snapshot_counter: u64,
}

fn storage_error(error: impl std::fmt::Display) -> StorageError {
    StorageError::from(StorageIOError::write_state_machine(&std::io::Error::other(
        error.to_string(),
    )))
}

/// Reads the checkpoint left by the last run (an empty one on a first boot).
///
/// # Errors
/// The checkpoint exists but cannot be read back.
pub fn load_checkpoint(raft_dir: &Path) -> Result<(Checkpoint, Catalog), String> {
    let checkpoint: Checkpoint =
        durable::read(&raft_dir.join("state")).map_err(|e| format!("raft/state: {e}"))?;
    let catalog = if checkpoint.catalog.is_empty() {
        Catalog::new()
    } else {
        decode_catalog(&checkpoint.catalog).map_err(|e| format!("raft/state catalog: {e}"))?
    };
    Ok((checkpoint, catalog))
}

impl<F: Fetcher> StateMachine<F> {
    /// The state machine as the checkpoint left it; the shards have opened the catalog's
    /// partitions already (their next offsets are read from them).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raft_dir: &Path,
        checkpoint: Checkpoint,
        catalog: Catalog,
        shards: ShardClient,
        directory: Arc<PartitionDirectory>,
        floor: AckFloor,
        view: Arc<CatalogView>,
        progress: Arc<Progress>,
        fetcher: Arc<F>,
    ) -> StateMachine<F> {
        {
            let mut next = progress.next_offsets();
            for key in directory.keys() {
                next.insert(key, next_offset(&directory, key));
            }
        }
        if let Some(applied) = checkpoint.last_applied {
            progress
                .applied_index
                .store(applied.index, Ordering::Release);
        }
        StateMachine {
            shards,
            directory,
            floor,
            view,
            progress,
            checkpoint_file: Arc::new(CheckpointFile {
                path: raft_dir.join("state"),
                written: Mutex::new(checkpoint.last_applied),
            }),
            fetcher,
            last_applied: checkpoint.last_applied,
            membership: checkpoint.membership,
            catalog: Arc::new(catalog),
            snapshot_counter: 0,
        }
    }

    async fn apply_command(
        &mut self,
        command: Command,
        index: u64,
    ) -> Result<(Response, bool), StorageError> {
        match command {
            Command::Change(change) => Ok((self.apply_change(&change, index).await, true)),
            Command::Append {
                key,
                base_offset,
                timestamp_us,
                messages,
                batch,
            } => {
                let response = self
                    .apply_append(key.into(), base_offset, timestamp_us, messages, batch)
                    .await?;
                Ok((response, false))
            }
            Command::StoreOffset {
                key,
                consumer,
                offset,
            } => {
                let key = PartitionKey::from(key);
                let op = ShardOp::StoreOffset {
                    key,
                    consumer: ConsumerRef::from(consumer),
                    offset,
                };
                Ok((self.run(key, op).await, false))
            }
            Command::DeleteOffset { key, consumer } => {
                let key = PartitionKey::from(key);
                let op = ShardOp::DeleteOffset {
                    key,
                    consumer: ConsumerRef::from(consumer),
                };
                Ok((self.run(key, op).await, false))
            }
            Command::Purge { keys } => {
                let keys: Vec<PartitionKey> = keys.into_iter().map(PartitionKey::from).collect();
                let requests = per_shard(&self.directory, keys.clone(), ShardOp::Purge);
                let response = self.run_all(requests).await;
                self.refresh_offsets(keys);
                Ok((response, true))
            }
            Command::DeleteSegments { key, count } => {
                let key = PartitionKey::from(key);
                let response = self.run(key, ShardOp::DeleteSegments { key, count }).await;
                Ok((response, true))
            }
        }
    }

    /// A metadata change: applied to the catalog, published, and its partition work done.
    async fn apply_change(&mut self, change: &Change, index: u64) -> Response {
        let mut next = Catalog::clone(&self.catalog);
        if let Err(error) = next.apply(change) {
            return Response::refused(catalog_error_code(&error));
        }
        let next = Arc::new(next);
        let effects = effects_of(change, &self.catalog, &next, &self.directory, self.floor);
        self.catalog = Arc::clone(&next);
        self.view.publish_at(next, index);
        let response = self.run_all(effects).await;
        // Partitions the change created start at their shard's offset; deleted ones go.
        let known = self.directory.keys();
        let mut offsets = self.progress.next_offsets();
        offsets.retain(|key, _| known.contains(key));
        for key in known {
            offsets
                .entry(key)
                .or_insert_with(|| next_offset(&self.directory, key));
        }
        response
    }

    /// A batch at the offset the leader gave it; skipped when the partition holds it already
    /// (a replay after a restart), refused when the partition is gone.
    async fn apply_append(
        &mut self,
        key: PartitionKey,
        base_offset: u64,
        timestamp_us: u64,
        messages: u32,
        batch: Vec<u8>,
    ) -> Result<Response, StorageError> {
        let Some(next) = self.progress.next_offsets().get(&key).copied() else {
            return Ok(Response::refused(ErrorCode::PartitionNotFound));
        };
        let last_offset = base_offset + u64::from(messages.max(1)) - 1;
        if base_offset < next {
            return Ok(Response::Appended {
                base_offset,
                last_offset,
            });
        }
        if base_offset > next {
            return Err(storage_error(format!(
                "partition {key:?} is at offset {next} but the log's next batch starts at \
                 {base_offset}: this node's data does not match the log"
            )));
        }
        let op = ShardOp::Append {
            key,
            batch,
            ack: AckMode::Memory,
            stamp_us: Some(timestamp_us),
        };
        match self.shards.call(self.directory.shard_for(key), op).await {
            ShardOutcome::Appended {
                base_offset: stored,
                last_offset,
            } => {
                if stored != base_offset {
                    return Err(storage_error(format!(
                        "partition {key:?} stored a batch at {stored}, the log said {base_offset}"
                    )));
                }
                self.progress.next_offsets().insert(key, last_offset + 1);
                Ok(Response::Appended {
                    base_offset,
                    last_offset,
                })
            }
            ShardOutcome::Failed(code) => Err(storage_error(format!(
                "partition {key:?} refused a committed batch (error {})",
                code.as_u32()
            ))),
            other => Err(storage_error(format!(
                "unexpected append outcome {other:?}"
            ))),
        }
    }

    async fn run(&self, key: PartitionKey, op: ShardOp) -> Response {
        self.run_all(vec![(self.directory.shard_for(key), op)])
            .await
    }

    /// Runs shard requests; the first refusal is the answer (deterministic: every node's shards
    /// hold the same partitions).
    async fn run_all(&self, requests: Vec<(usize, ShardOp)>) -> Response {
        let mut response = Response::Done;
        for (shard, op) in requests {
            if let ShardOutcome::Failed(code) = self.shards.call(shard, op).await {
                if response == Response::Done {
                    response = Response::refused(code);
                }
            }
        }
        response
    }

    fn refresh_offsets(&self, keys: Vec<PartitionKey>) {
        let mut offsets = self.progress.next_offsets();
        for key in keys {
            offsets.insert(key, next_offset(&self.directory, key));
        }
    }

    fn checkpoint_now(&self) -> Checkpoint {
        Checkpoint {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            catalog: encode_catalog(&self.catalog).unwrap_or_default(),
            next_offsets: self
                .progress
                .next_offsets()
                .iter()
                .map(|(key, offset)| (WireKey::from(*key), *offset))
                .collect(),
        }
    }

    /// Syncs every partition, then writes the checkpoint: after this, nothing up to
    /// `last_applied` is applied again after a restart.
    async fn write_checkpoint(&self) -> Result<Checkpoint, StorageError> {
        let checkpoint = self.checkpoint_now();
        sync_partitions(&self.shards, &self.directory).await?;
        self.checkpoint_file
            .write(&checkpoint)
            .map_err(storage_error)?;
        Ok(checkpoint)
    }

    /// Makes the partitions and catalog those of a snapshot: partitions the catalog does not
    /// name go, the others open, and each fetches what it lacks from the snapshot's sender.
    async fn install(
        &mut self,
        checkpoint: Checkpoint,
        leader: Option<NodeInfo>,
    ) -> Result<(), StorageError> {
        let catalog = decode_catalog(&checkpoint.catalog).map_err(storage_error)?;
        let wanted: HashMap<PartitionKey, u64> = checkpoint
            .next_offsets
            .iter()
            .map(|(key, offset)| (PartitionKey::from(*key), *offset))
            .collect();
        let gone: Vec<PartitionKey> = self
            .directory
            .keys()
            .into_iter()
            .filter(|key| !wanted.contains_key(key))
            .collect();
        let mut requests = per_shard(&self.directory, gone, ShardOp::DeletePartitions);
        for stream in catalog.streams().values() {
            for topic in stream.topics.values() {
                let settings = partition_settings(topic, self.floor);
                requests.extend(per_shard(
                    &self.directory,
                    keys_of(stream.id, topic),
                    |keys| {
                        ShardOp::OpenPartitions(
                            keys.into_iter().map(|key| (key, settings)).collect(),
                        )
                    },
                ));
            }
        }
        if let Response::Refused(code) = self.run_all(requests).await {
            return Err(storage_error(format!(
                "installing a snapshot: error {code}"
            )));
        }
        self.progress.next_offsets().clear();
        self.refresh_offsets(wanted.keys().copied().collect());
        for (key, target) in &wanted {
            self.catch_up(*key, *target, leader.as_ref()).await?;
        }
        let catalog = Arc::new(catalog);
        self.catalog = Arc::clone(&catalog);
        self.view
            .publish_at(catalog, checkpoint.last_applied.map_or(0, |id| id.index));
        self.last_applied = checkpoint.last_applied;
        self.membership = checkpoint.membership;
        self.progress.applied_index.store(
            self.last_applied.map_or(0, |id| id.index),
            Ordering::Release,
        );
        self.write_checkpoint().await.map(drop)
    }

    /// Fetches the records of `key` from `leader` until the partition reaches `target`.
    async fn catch_up(
        &mut self,
        key: PartitionKey,
        target: u64,
        leader: Option<&NodeInfo>,
    ) -> Result<(), StorageError> {
        loop {
            let next = self.progress.next_offsets().get(&key).copied().unwrap_or(0);
            if next >= target {
                if next > target {
                    tracing::warn!(
                        ?key,
                        next,
                        target,
                        "partition is ahead of the snapshot it installs"
                    );
                }
                return Ok(());
            }
            let leader = leader.ok_or_else(|| storage_error("no leader to catch up from"))?;
            let records = self
                .fetcher
                .fetch(leader, key, next, CATCH_UP_MESSAGES_PER_FETCH)
                .await
                .map_err(storage_error)?;
            if records.is_empty() {
                return Err(storage_error(format!(
                    "{} has no records of {key:?} from offset {next} (snapshot says up to {target})",
                    leader.name
                )));
            }
            for record in split_records(&records).map_err(storage_error)? {
                let header = riptide_protocol::batch::BatchHeader::new_checked(record)
                    .map_err(|e| storage_error(format!("fetched record: {e:?}")))?;
                let (base_offset, timestamp_us, messages) = (
                    header.base_offset(),
                    header.base_timestamp_us(),
                    header.message_count(),
                );
                self.apply_append(key, base_offset, timestamp_us, messages, record.to_vec())
                    .await?;
            }
        }
    }
}

/// The stored records in `bytes`, each `[batch header][frames]` with its length in the header.
fn split_records(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut records = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let header = riptide_protocol::batch::BatchHeader::new_checked(rest)
            .map_err(|e| format!("fetched records: {e:?}"))?;
        let len = usize::try_from(header.batch_length_bytes()).map_err(|e| e.to_string())?;
        if len == 0 || len > rest.len() {
            return Err(format!(
                "fetched record of {len} bytes in {} left",
                rest.len()
            ));
        }
        records.push(&rest[..len]);
        rest = &rest[len..];
    }
    Ok(records)
}

/// The offset a partition's next message gets, as its shard published it.
fn next_offset(directory: &PartitionDirectory, key: PartitionKey) -> u64 {
    directory
        .info(key)
        .current_offset
        .map_or(0, |last| last + 1)
}

/// Flushes and syncs every open partition.
async fn sync_partitions(
    shards: &ShardClient,
    directory: &PartitionDirectory,
) -> Result<(), StorageError> {
    for key in directory.keys() {
        let op = ShardOp::Flush { key, fsync: true };
        if let ShardOutcome::Failed(code) = shards.call(directory.shard_for(key), op).await {
            if code != ErrorCode::PartitionNotFound {
                return Err(storage_error(format!(
                    "syncing {key:?}: error {}",
                    code.as_u32()
                )));
            }
        }
    }
    Ok(())
}

impl<F: Fetcher> RaftStateMachine<TypeConfig> for StateMachine<F> {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut barrier = false;
        for entry in entries {
            let response = match entry.payload {
                EntryPayload::Blank => Response::Done,
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Response::Done
                }
                EntryPayload::Normal(command) => {
                    let (response, unsafe_twice) =
                        self.apply_command(command, entry.log_id.index).await?;
                    barrier |= unsafe_twice;
                    response
                }
            };
            self.last_applied = Some(entry.log_id);
            self.progress
                .applied_index
                .store(entry.log_id.index, Ordering::Release);
            responses.push(response);
            if barrier {
                self.write_checkpoint().await?;
                barrier = false;
            }
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.snapshot_counter += 1;
        SnapshotBuilder {
            checkpoint: Some(self.checkpoint_now()),
            shards: self.shards.clone(),
            directory: Arc::clone(&self.directory),
            file: Arc::clone(&self.checkpoint_file),
            counter: self.snapshot_counter,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let checkpoint: Checkpoint =
            postcard::from_bytes(snapshot.get_ref()).map_err(storage_error)?;
        // The sender is a leader: its partitions hold at least what the snapshot says.
        let sender = self
            .progress
            .snapshot_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .or(meta.last_log_id.map(|id| id.leader_id.node_id));
        let leader = sender.and_then(|id| meta.last_membership.membership().get_node(&id).cloned());
        tracing::info!(snapshot = %meta.snapshot_id, "installing a snapshot");
        self.install(checkpoint, leader).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let checkpoint = self.checkpoint_now();
        let Some(last) = checkpoint.last_applied else {
            return Ok(None);
        };
        let data = postcard::to_allocvec(&checkpoint).map_err(storage_error)?;
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                last_log_id: Some(last),
                last_membership: checkpoint.membership.clone(),
                snapshot_id: format!("{}-{}", last.leader_id, last.index),
            },
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Builds a snapshot of the state as it was when the builder was made (it runs beside apply).
pub struct SnapshotBuilder {
    checkpoint: Option<Checkpoint>,
    shards: ShardClient,
    directory: Arc<PartitionDirectory>,
    file: Arc<CheckpointFile>,
    counter: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let checkpoint = self.checkpoint.take().unwrap_or_default();
        // The partitions hold at least what the checkpoint says once synced (they may hold more:
        // a replay skips what they have).
        sync_partitions(&self.shards, &self.directory).await?;
        self.file.write(&checkpoint).map_err(storage_error)?;
        let data = postcard::to_allocvec(&checkpoint).map_err(storage_error)?;
        let snapshot_id = match checkpoint.last_applied {
            Some(last) => format!("{}-{}-{}", last.leader_id, last.index, self.counter),
            None => format!("empty-{}", self.counter),
        };
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: checkpoint.last_applied,
                last_membership: checkpoint.membership,
                snapshot_id,
            },
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
