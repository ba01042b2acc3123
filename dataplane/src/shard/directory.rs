//! Where partitions live: which shard owns one, where its files are, which storage settings its
//! topic gives it, and the offsets and sizes its shard last published (read by metadata replies
//! and stats without asking the shard).

use riptide_config::AckFloor;
use riptide_storage::io::remove_dir_all_durable;
use riptide_storage::metadata::{Catalog, Durability, Topic};
use riptide_storage::{AckMode, PartitionInfo, PartitionKey, PartitionSettings};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A partition's offsets and sizes as its shard last published them.
#[derive(Debug, Default)]
pub struct PartitionCounters {
    /// Offset of the last message plus one; 0 while the partition is empty.
    next_offset: AtomicU64,
    messages_count: AtomicU64,
    size_bytes: AtomicU64,
    segments_count: AtomicU64,
}

impl PartitionCounters {
    pub fn publish(&self, info: &PartitionInfo) {
        self.next_offset
            .store(info.current_offset.map_or(0, |o| o + 1), Ordering::Relaxed);
        self.messages_count
            .store(info.messages_count, Ordering::Relaxed);
        self.size_bytes.store(info.size_bytes, Ordering::Relaxed);
        self.segments_count
            .store(u64::from(info.segments_count), Ordering::Relaxed);
    }

    pub fn read(&self) -> PartitionInfo {
        let next_offset = self.next_offset.load(Ordering::Relaxed);
        PartitionInfo {
            current_offset: next_offset.checked_sub(1),
            messages_count: self.messages_count.load(Ordering::Relaxed),
            size_bytes: self.size_bytes.load(Ordering::Relaxed),
            segments_count: self.segments_count.load(Ordering::Relaxed) as u32,
        }
    }
}

/// Every open partition's published counters, and where partitions are placed.
#[derive(Debug)]
pub struct PartitionDirectory {
    data_dir: PathBuf,
    shards: usize,
    counters: Mutex<HashMap<PartitionKey, Arc<PartitionCounters>>>,
}

impl PartitionDirectory {
    pub fn new(data_dir: &Path, shards: usize) -> PartitionDirectory {
        PartitionDirectory {
            data_dir: data_dir.to_path_buf(),
            shards: shards.max(1),
            counters: Mutex::new(HashMap::new()),
        }
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The shard that owns a partition.
    pub fn shard_for(&self, key: PartitionKey) -> usize {
        shard_of(key, self.shards)
    }

    /// `<data>/streams/S/topics/T/partitions/P`.
    pub fn partition_dir(&self, key: PartitionKey) -> PathBuf {
        self.data_dir
            .join("streams")
            .join(key.stream_id.to_string())
            .join("topics")
            .join(key.topic_id.to_string())
            .join("partitions")
            .join(key.partition_id.to_string())
    }

    pub fn register(&self, key: PartitionKey) -> Arc<PartitionCounters> {
        Arc::clone(self.locked().entry(key).or_default())
    }

    pub fn unregister(&self, key: PartitionKey) {
        self.locked().remove(&key);
    }

    /// The published counters of a partition (zeros until its shard opened it).
    pub fn info(&self, key: PartitionKey) -> PartitionInfo {
        self.locked()
            .get(&key)
            .map(|c| c.read())
            .unwrap_or_default()
    }

    /// Every partition a shard opened and has not deleted.
    pub fn keys(&self) -> Vec<PartitionKey> {
        self.locked().keys().copied().collect()
    }

    /// Every partition in `catalog` that `shard` owns, with its settings.
    pub fn owned_partitions(
        &self,
        catalog: &Catalog,
        shard: usize,
        floor: AckFloor,
    ) -> Vec<(PartitionKey, PartitionSettings)> {
        let mut owned = Vec::new();
        for stream in catalog.streams().values() {
            for topic in stream.topics.values() {
                let settings = partition_settings(topic, floor);
                for partition in &topic.partitions {
                    let key = PartitionKey {
                        stream_id: stream.id,
                        topic_id: topic.id,
                        partition_id: partition.id,
                    };
                    if self.shard_for(key) == shard {
                        owned.push((key, settings));
                    }
                }
            }
        }
        owned
    }

    /// Removes, durably, every stream, topic and partition directory under `<data>/streams`
    /// that `catalog` does not name, and returns what it removed. A deletion is made durable in
    /// the metadata first and its directory removed after, so a crash or power cut between the
    /// two leaves the directory behind; ids are reused (lowest free), and a stream, topic or
    /// partition created later with the same id would open that directory and recover the
    /// deleted messages. Run at start-up, before any shard opens a partition. Names that are
    /// not riptide's (not an id as `partition_dir` spells it) are left alone.
    ///
    /// # Errors
    /// The directory that could not be listed or removed, and why.
    pub fn remove_unnamed(&self, catalog: &Catalog) -> Result<Vec<PathBuf>, (PathBuf, io::Error)> {
        let mut removed = Vec::new();
        for (stream_id, stream_dir) in numbered_entries(&self.data_dir.join("streams"))? {
            let Some(stream) = catalog.stream(stream_id) else {
                remove_durable(stream_dir, &mut removed)?;
                continue;
            };
            for (topic_id, topic_dir) in numbered_entries(&stream_dir.join("topics"))? {
                let Some(topic) = stream.topics.get(&topic_id) else {
                    remove_durable(topic_dir, &mut removed)?;
                    continue;
                };
                for (partition_id, dir) in numbered_entries(&topic_dir.join("partitions"))? {
                    if !topic.partitions.iter().any(|p| p.id == partition_id) {
                        remove_durable(dir, &mut removed)?;
                    }
                }
            }
        }
        Ok(removed)
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<PartitionKey, Arc<PartitionCounters>>> {
        // The map is plain data whose invariants hold between statements; a panic elsewhere
        // cannot leave it half changed.
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The subdirectories of `dir` named by an id, as `partition_dir` spells one (none when `dir`
/// does not exist).
fn numbered_entries(dir: &Path) -> Result<Vec<(u32, PathBuf)>, (PathBuf, io::Error)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err((dir.to_path_buf(), error)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| (dir.to_path_buf(), error))?;
        let name = entry.file_name();
        let id = name.to_str().and_then(|name| {
            let id = name.parse::<u32>().ok()?;
            (id.to_string() == name).then_some(id)
        });
        if let Some(id) = id.filter(|_| entry.path().is_dir()) {
            found.push((id, entry.path()));
        }
    }
    Ok(found)
}

/// Removes `dir` durably (see `riptide_storage::io::remove_dir_all_durable`), noting it.
fn remove_durable(dir: PathBuf, removed: &mut Vec<PathBuf>) -> Result<(), (PathBuf, io::Error)> {
    remove_dir_all_durable(&dir).map_err(|error| (dir.clone(), error))?;
    removed.push(dir);
    Ok(())
}

/// The durability a topic gets: its `durability` option, never below the floor. On one node
/// `replicated` is the weaker of the two (acknowledged from memory); in a cluster it is the
/// stronger (a majority holds the send on stable storage, where `persisted` waits for the leader
/// only).
pub fn effective_durability(requested: Durability, floor: AckFloor, clustered: bool) -> Durability {
    match (floor, clustered) {
        // Valid in a cluster only (the configuration refuses it on one node).
        (AckFloor::Replicated, _) => Durability::Replicated,
        (AckFloor::Persisted, false) => Durability::Persisted,
        (AckFloor::Persisted | AckFloor::Memory, _) => requested,
    }
}

/// Storage settings of a topic's partitions. The topic's size limit is shared evenly by its
/// partitions, since each partition's retention runs on its own shard. The acknowledgement mode
/// is a single node's (a cluster's state machine appends without syncs of its own: its log is
/// the durable copy).
pub fn partition_settings(topic: &Topic, floor: AckFloor) -> PartitionSettings {
    let ack_mode = match effective_durability(topic.options.durability, floor, false) {
        Durability::Persisted => AckMode::Durable,
        Durability::Replicated => AckMode::Memory,
    };
    let partitions = topic.partitions.len().max(1) as u64;
    PartitionSettings {
        ack_mode,
        message_expiry_us: (topic.options.message_expiry_us != u64::MAX
            && topic.options.message_expiry_us != 0)
            .then_some(topic.options.message_expiry_us),
        max_size_bytes: (topic.options.max_topic_size_bytes != u64::MAX
            && topic.options.max_topic_size_bytes != 0)
            .then(|| topic.options.max_topic_size_bytes / partitions),
        segment_size_bytes: Some(topic.options.segment_size_bytes),
    }
}

/// A partition's shard: a function of its ids alone, so ownership survives restarts. Ids are
/// handed out in sequence, so their sum spreads a topic's partitions, and streams or topics of
/// one partition each, evenly over the shards (an XxHash32 of the ids put streams 0..3 all on
/// shard 0 of 2, and on only 2 of 4 shards).
fn shard_of(key: PartitionKey, shards: usize) -> usize {
    let ids_sum = u64::from(key.stream_id) + u64::from(key.topic_id) + u64::from(key.partition_id);
    (ids_sum % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_storage::metadata::{Change, Partition, TopicOptions};

    fn key(stream_id: u32, topic_id: u32, partition_id: u32) -> PartitionKey {
        PartitionKey {
            stream_id,
            topic_id,
            partition_id,
        }
    }

    #[test]
    fn partitions_of_a_topic_and_single_partition_streams_spread_evenly() {
        for shards in 1..=4 {
            let mut per_shard = vec![0; shards];
            for partition_id in 0..8 * shards as u32 {
                per_shard[shard_of(key(3, 1, partition_id), shards)] += 1;
            }
            assert!(per_shard.iter().all(|&count| count == 8), "{per_shard:?}");
            let streams: Vec<usize> = (0..shards as u32)
                .map(|stream_id| shard_of(key(stream_id, 0, 0), shards))
                .collect();
            assert_eq!(streams, (0..shards).collect::<Vec<_>>());
        }
    }

    fn catalog_with_stream_0_topic_0_partition_0() -> Catalog {
        let mut catalog = Catalog::new();
        let changes = [
            Change::CreateStream {
                stream_id: 0,
                name: "kept".to_string(),
                created_at_us: 1,
            },
            Change::CreateTopic {
                stream_id: 0,
                topic_id: 0,
                name: "kept".to_string(),
                created_at_us: 1,
                partitions: vec![Partition {
                    id: 0,
                    created_at_us: 1,
                }],
                options: TopicOptions::default(),
            },
        ];
        for change in &changes {
            catalog.apply(change).expect("a valid change");
        }
        catalog
    }

    #[test]
    fn directories_the_catalog_does_not_name_are_removed_and_the_others_kept() {
        let data = tempfile::tempdir().expect("temp dir");
        let directory = PartitionDirectory::new(data.path(), 2);
        let named = directory.partition_dir(key(0, 0, 0));
        let orphans = [
            directory.partition_dir(key(0, 0, 1)),
            directory.partition_dir(key(0, 1, 0)),
            directory.partition_dir(key(1, 0, 0)),
        ];
        for dir in orphans.iter().chain([&named]) {
            std::fs::create_dir_all(dir.join("offsets")).expect("mkdir");
            std::fs::write(dir.join("00000000000000000000.log"), b"old").expect("write");
        }
        // Not riptide's names: left alone.
        let foreign = [
            data.path().join("streams/notes"),
            data.path().join("streams/007"),
        ];
        for dir in &foreign {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        let catalog = catalog_with_stream_0_topic_0_partition_0();
        let mut removed = directory.remove_unnamed(&catalog).expect("sweep");
        removed.sort();
        let topic_dir = |s: u32, t: u32| data.path().join(format!("streams/{s}/topics/{t}"));
        assert_eq!(
            removed,
            [
                orphans[0].clone(),
                topic_dir(0, 1),
                data.path().join("streams/1")
            ]
        );
        assert!(orphans.iter().all(|dir| !dir.exists()));
        assert!(named.join("00000000000000000000.log").exists());
        assert!(foreign.iter().all(|dir| dir.is_dir()));
        assert_eq!(
            directory.remove_unnamed(&catalog).expect("again"),
            Vec::<PathBuf>::new()
        );
        // A data directory without streams yet.
        let empty = tempfile::tempdir().expect("temp dir");
        let fresh = PartitionDirectory::new(empty.path(), 1);
        assert!(fresh.remove_unnamed(&catalog).expect("sweep").is_empty());
    }
}
