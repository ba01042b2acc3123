//! The partition work a metadata change implies: once a change is durable, the shards owning
//! the partitions it names open, re-configure or delete them. One definition, used by the
//! metadata service in both modes (a single node hands the work to the network thread that asked;
//! a cluster's state machine does it on every node).

use super::directory::{partition_settings, PartitionDirectory};
use super::ops::ShardOp;
use riptide_config::AckFloor;
use riptide_storage::metadata::{Catalog, Change, Topic};
use riptide_storage::PartitionKey;

/// The shard requests `change` implies, at most one per shard and kind; `before` and `after` are
/// the catalogs on either side of it.
pub fn effects_of(
    change: &Change,
    before: &Catalog,
    after: &Catalog,
    directory: &PartitionDirectory,
    floor: AckFloor,
) -> Vec<(usize, ShardOp)> {
    let topic_keys = |catalog: &Catalog, stream_id: u32, topic_id: u32| -> Vec<PartitionKey> {
        catalog
            .topic(stream_id, topic_id)
            .map(|topic| keys_of(stream_id, topic).collect())
            .unwrap_or_default()
    };
    let with_settings = |stream_id: u32, topic_id: u32, op: fn(Settings) -> ShardOp| {
        let Some(topic) = after.topic(stream_id, topic_id) else {
            return Vec::new();
        };
        let settings = partition_settings(topic, floor);
        per_shard(directory, keys_of(stream_id, topic), |keys| {
            op(keys.into_iter().map(|key| (key, settings)).collect())
        })
    };
    match change {
        Change::CreateTopic {
            stream_id,
            topic_id,
            ..
        }
        | Change::CreatePartitions {
            stream_id,
            topic_id,
            ..
        } => {
            // Every partition gets the new settings: the topic's size limit is shared by them.
            with_settings(*stream_id, *topic_id, ShardOp::OpenPartitions)
        }
        Change::UpdateTopic {
            stream_id,
            topic_id,
            ..
        } => with_settings(*stream_id, *topic_id, ShardOp::SetSettings),
        Change::DeleteTopic {
            stream_id,
            topic_id,
        } => per_shard(
            directory,
            topic_keys(before, *stream_id, *topic_id),
            ShardOp::DeletePartitions,
        ),
        Change::DeleteStream { stream_id } => {
            let keys = before.stream(*stream_id).into_iter().flat_map(|stream| {
                stream
                    .topics
                    .values()
                    .flat_map(|topic| keys_of(stream.id, topic))
            });
            per_shard(directory, keys, ShardOp::DeletePartitions)
        }
        Change::DeletePartitions {
            stream_id,
            topic_id,
            ..
        } => {
            let kept = topic_keys(after, *stream_id, *topic_id);
            let removed = topic_keys(before, *stream_id, *topic_id)
                .into_iter()
                .filter(|key| !kept.contains(key));
            let mut requests = per_shard(directory, removed, ShardOp::DeletePartitions);
            requests.extend(with_settings(*stream_id, *topic_id, ShardOp::SetSettings));
            requests
        }
        _ => Vec::new(),
    }
}

type Settings = Vec<(PartitionKey, riptide_storage::PartitionSettings)>;

/// Every partition of a topic.
pub fn keys_of(stream_id: u32, topic: &Topic) -> impl Iterator<Item = PartitionKey> + '_ {
    topic.partitions.iter().map(move |partition| PartitionKey {
        stream_id,
        topic_id: topic.id,
        partition_id: partition.id,
    })
}

/// One request per shard owning any of `keys`.
pub fn per_shard(
    directory: &PartitionDirectory,
    keys: impl IntoIterator<Item = PartitionKey>,
    op: impl Fn(Vec<PartitionKey>) -> ShardOp,
) -> Vec<(usize, ShardOp)> {
    let mut by_shard: Vec<Vec<PartitionKey>> = vec![Vec::new(); directory.shards()];
    for key in keys {
        by_shard[directory.shard_for(key)].push(key);
    }
    by_shard
        .into_iter()
        .enumerate()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(shard, keys)| (shard, op(keys)))
        .collect()
}
