//! The data plane: send, poll, flush and consumer offsets. Resolution and permission checks run on
//! the network worker; the partition's shard does the storage work.

use super::{
    done, replicated, resolve_stream_topic, result_ok, Action, Call, Continuation, Handled, IdRef,
};
use crate::metadata::ReplicatedWrite;
use crate::session::counters::WorkerCounters;
use crate::shard::{PollFrom, ShardOp};
use bytes::Bytes;
use riptide_protocol::batch::Batch;
use riptide_protocol::codes::{ConsumerKind as WireConsumerKind, ErrorCode, PollingKind};
use riptide_protocol::request::{Partitioning, SendMessages};
use riptide_protocol::wire::requests::consumer_offsets::{
    DeleteConsumerOffsetRequest, GetConsumerOffsetRequest, StoreConsumerOffsetRequest,
};
use riptide_protocol::wire::requests::messages::{FlushUnsavedBufferRequest, PollMessagesRequest};
use riptide_protocol::wire::{WireConsumer, WireIdentifier};
use riptide_storage::metadata::Topic;
use riptide_storage::{ConsumerKind, ConsumerRef, PartitionKey, ReadResult};
use std::sync::atomic::Ordering;

/// `received_batch`, when the session received the batch into its own buffer, replaces
/// `send.batch` (which then holds only the batch header) and is appended without a copy.
pub fn send(send: SendMessages<'_>, received_batch: Option<Vec<u8>>, call: Call<'_>) -> Handled {
    done(send_inner(send, received_batch, call))
}

fn send_inner(
    send: SendMessages<'_>,
    received_batch: Option<Vec<u8>>,
    call: Call<'_>,
) -> Result<Handled, ErrorCode> {
    let batch = received_batch.as_deref().unwrap_or(send.batch);
    let (stream, topic) = super::resolve_refs(
        call.catalog,
        IdRef::from(send.stream),
        IdRef::from(send.topic),
    )?;
    call.require(Action::Send(stream.id, topic.id))?;
    let limits = &call.ctx.shared.config.limits;
    if batch.len() as u64 > limits.batch_size_max_bytes {
        return Err(ErrorCode::InvalidMessagesSize);
    }
    if send.messages_count == 0 || send.messages_count > limits.batch_messages_max {
        return Err(ErrorCode::InvalidMessagesCount);
    }
    Batch::new_checked(batch).map_err(|error| error.error_code())?;
    let partitions_count = topic.partitions.len() as u32;
    if partitions_count == 0 {
        return Err(ErrorCode::NoPartitions);
    }
    let partition_id = match send.partitioning {
        Partitioning::Balanced => {
            let next = call
                .ctx
                .balanced_next
                .entry((stream.id, topic.id))
                .or_insert(0);
            let partition = *next % partitions_count;
            *next = next.wrapping_add(1);
            partition
        }
        Partitioning::PartitionId(id) if id < partitions_count => id,
        Partitioning::PartitionId(_) => return Err(ErrorCode::PartitionNotFound),
        Partitioning::MessagesKey(key) => twox_hash::XxHash32::oneshot(0, key) % partitions_count,
    };
    let key = PartitionKey {
        stream_id: stream.id,
        topic_id: topic.id,
        partition_id,
    };
    let ack = call.ctx.shared.partition_settings(topic).ack_mode;
    let counters = &call.ctx.shared.worker_counters[call.ctx.index];
    counters
        .bytes_in
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let continuation = Continuation::SendConfirmation {
        stream_id: stream.id,
        topic_id: topic.id,
        partition_id,
        base_offset: None,
        messages: u64::from(send.messages_count),
    };
    let batch = received_batch.unwrap_or_else(|| send.batch.to_vec());
    if call.ctx.shared.cluster.is_some() {
        let write = ReplicatedWrite::Append {
            key,
            batch,
            messages: send.messages_count,
        };
        return Ok(replicated(write, continuation));
    }
    Ok(Handled::Shard {
        requests: vec![(
            call.ctx.shared.shard_for(key),
            ShardOp::Append {
                key,
                batch,
                ack,
                stamp_us: None,
            },
        )],
        continuation,
    })
}

pub fn poll(request: PollMessagesRequest, call: Call<'_>) -> Handled {
    done(poll_inner(request, call))
}

fn poll_inner(request: PollMessagesRequest, call: Call<'_>) -> Result<Handled, ErrorCode> {
    let (stream, topic) =
        resolve_stream_topic(call.catalog, &request.stream_id, &request.topic_id)?;
    call.require(Action::Poll(stream.id, topic.id))?;
    let consumer = consumer_ref(topic, &request.consumer)?;
    let Some(partition_id) =
        poll_partition(&call, stream.id, topic, consumer, request.partition_id)?
    else {
        // A group member with no partition assigned (more members than partitions) gets nothing.
        return Ok(Handled::Reply(
            poll_reply(None, 0, &call.ctx.shared.worker_counters[call.ctx.index]).concat(),
        ));
    };
    let from = match PollingKind::from_wire(request.strategy.kind) {
        Some(PollingKind::Offset) => PollFrom::Offset(request.strategy.value),
        Some(PollingKind::Timestamp) => PollFrom::Timestamp(request.strategy.value),
        Some(PollingKind::First) => PollFrom::First,
        Some(PollingKind::Last) => PollFrom::Last,
        Some(PollingKind::Next) => PollFrom::Next(consumer),
        None => return Err(ErrorCode::InvalidFormat),
    };
    let count = request
        .count
        .min(call.ctx.shared.config.limits.poll_messages_max);
    let key = PartitionKey {
        stream_id: stream.id,
        topic_id: topic.id,
        partition_id,
    };
    // In a cluster an auto-commit is a replicated write like any stored offset: the poll's
    // continuation submits it once the messages are read.
    let clustered = call.ctx.shared.cluster.is_some();
    let op = ShardOp::Poll {
        key,
        from,
        count,
        auto_commit: (request.auto_commit && !clustered).then_some(consumer),
    };
    Ok(Handled::Shard {
        requests: vec![(call.ctx.shared.shard_for(key), op)],
        continuation: Continuation::Poll {
            result: None,
            partition_id,
            replicated_commit: (request.auto_commit && clustered).then_some((key, consumer)),
        },
    })
}

/// The partition a poll reads: the one asked for, or for a consumer group the member's next
/// assigned partition (`None`: the member has no partition now).
fn poll_partition(
    call: &Call<'_>,
    stream_id: u32,
    topic: &Topic,
    consumer: ConsumerRef,
    requested: Option<u32>,
) -> Result<Option<u32>, ErrorCode> {
    let partitions_count = topic.partitions.len() as u32;
    if requested.is_some_and(|partition_id| partition_id >= partitions_count) {
        return Err(ErrorCode::PartitionNotFound);
    }
    if consumer.kind == ConsumerKind::Consumer {
        return match requested {
            Some(partition_id) => Ok(Some(partition_id)),
            None if partitions_count > 0 => Ok(Some(0)),
            None => Err(ErrorCode::NoPartitions),
        };
    }
    // A group member reads only the partitions assigned to it (the SDK re-syncs on 5009).
    let mut groups = crate::session::shared::lock(&call.ctx.shared.groups);
    let key = (stream_id, topic.id, consumer.id);
    let assigned = groups
        .group(key)
        .and_then(|group| group.assigned(call.state.group_member()));
    match (assigned, requested) {
        (None, _) => Err(ErrorCode::ConsumerGroupMemberNotFound),
        (Some(assigned), Some(partition_id)) if assigned.contains(&partition_id) => {
            Ok(Some(partition_id))
        }
        (Some(_), Some(_)) => Err(ErrorCode::ConsumerGroupPartitionNotOwned),
        (Some(_), None) => Ok(groups.next_partition(key, call.state.group_member())),
    }
}

/// A consumer's storage identity: numeric ids as they are; a named consumer by the hash of its
/// name (Iggy keys consumer offsets the same way, by identifier); a group by its id.
fn consumer_ref(topic: &Topic, consumer: &WireConsumer) -> Result<ConsumerRef, ErrorCode> {
    match WireConsumerKind::from_wire(consumer.kind) {
        Some(WireConsumerKind::Consumer) => Ok(ConsumerRef {
            kind: ConsumerKind::Consumer,
            id: match &consumer.id {
                WireIdentifier::Numeric(id) => *id,
                WireIdentifier::String(name) => {
                    twox_hash::XxHash32::oneshot(0, name.as_str().as_bytes())
                }
            },
        }),
        Some(WireConsumerKind::ConsumerGroup) => {
            let group = match &consumer.id {
                WireIdentifier::Numeric(id) => topic.consumer_groups.get(id),
                WireIdentifier::String(name) => topic
                    .consumer_groups
                    .values()
                    .find(|g| g.name == name.as_str()),
            };
            let group = group.ok_or(ErrorCode::ConsumerGroupIdNotFound)?;
            Ok(ConsumerRef {
                kind: ConsumerKind::Group,
                id: group.id,
            })
        }
        None => Err(ErrorCode::InvalidFormat),
    }
}

/// The poll reply: `[partition_id][current_offset][messages_count]` then the stored records as
/// their own chunks (sent as they are, never re-encoded; cached ones never copied).
pub fn poll_reply(
    result: Option<ReadResult>,
    partition_id: u32,
    counters: &WorkerCounters,
) -> Vec<Bytes> {
    let result = result.unwrap_or_default();
    let prefix = riptide_protocol::reply::poll_reply_prefix(
        partition_id,
        result.current_offset.unwrap_or(0),
        result.messages_count,
    );
    counters
        .messages_out
        .fetch_add(u64::from(result.messages_count), Ordering::Relaxed);
    counters
        .bytes_out
        .fetch_add(result.len_bytes() as u64, Ordering::Relaxed);
    let mut chunks = Vec::with_capacity(1 + result.chunks.len());
    chunks.push(Bytes::copy_from_slice(&prefix));
    chunks.extend(result.chunks);
    chunks
}

pub fn flush(request: FlushUnsavedBufferRequest, call: Call<'_>) -> Handled {
    done((|| {
        let (stream, topic) =
            resolve_stream_topic(call.catalog, &request.stream_id, &request.topic_id)?;
        call.require(Action::Send(stream.id, topic.id))?;
        let key = partition_key(stream.id, topic, Some(request.partition_id))?;
        Ok(Handled::Shard {
            requests: vec![(
                call.ctx.shared.shard_for(key),
                ShardOp::Flush {
                    key,
                    fsync: request.fsync,
                },
            )],
            continuation: Continuation::Body(Vec::new()),
        })
    })())
}

fn partition_key(
    stream_id: u32,
    topic: &Topic,
    partition_id: Option<u32>,
) -> Result<PartitionKey, ErrorCode> {
    let partition_id = partition_id.unwrap_or(0);
    if partition_id as usize >= topic.partitions.len() {
        return Err(ErrorCode::PartitionNotFound);
    }
    Ok(PartitionKey {
        stream_id,
        topic_id: topic.id,
        partition_id,
    })
}

/// Resolves the common prefix of the three consumer-offset requests.
fn offset_target(
    call: &Call<'_>,
    consumer: &WireConsumer,
    stream: &WireIdentifier,
    topic: &WireIdentifier,
    partition_id: Option<u32>,
) -> Result<(PartitionKey, ConsumerRef), ErrorCode> {
    let (stream, topic) = resolve_stream_topic(call.catalog, stream, topic)?;
    call.require(Action::Poll(stream.id, topic.id))?;
    let consumer = consumer_ref(topic, consumer)?;
    Ok((partition_key(stream.id, topic, partition_id)?, consumer))
}

pub fn get_offset(request: GetConsumerOffsetRequest, call: Call<'_>) -> Handled {
    done((|| {
        let (key, consumer) = offset_target(
            &call,
            &request.consumer,
            &request.stream_id,
            &request.topic_id,
            request.partition_id,
        )?;
        Ok(Handled::Shard {
            requests: vec![(
                call.ctx.shared.shard_for(key),
                ShardOp::GetOffset { key, consumer },
            )],
            continuation: Continuation::ConsumerOffset {
                partition_id: key.partition_id,
                offsets: None,
            },
        })
    })())
}

/// `[partition_id][current_offset][stored_offset]`, or empty when nothing is stored.
pub fn consumer_offset_reply(
    partition_id: u32,
    offsets: Option<(Option<u64>, Option<u64>)>,
) -> Vec<u8> {
    let Some((current, Some(stored))) = offsets else {
        return Vec::new();
    };
    super::encoded(&riptide_protocol::reply::types::ConsumerOffsetResponse {
        partition_id,
        current_offset: current.unwrap_or(0),
        stored_offset: stored,
    })
}

pub fn store_offset(request: StoreConsumerOffsetRequest, call: Call<'_>) -> Handled {
    done((|| {
        let (key, consumer) = offset_target(
            &call,
            &request.consumer,
            &request.stream_id,
            &request.topic_id,
            request.partition_id,
        )?;
        let current = call.ctx.shared.partition_info(key).current_offset;
        if current.is_none_or(|current| request.offset > current) {
            return Err(ErrorCode::InvalidOffset);
        }
        if call.ctx.shared.cluster.is_some() {
            let write = ReplicatedWrite::StoreOffset {
                key,
                consumer,
                offset: request.offset,
            };
            return Ok(replicated(write, Continuation::Body(result_ok(&[]))));
        }
        Ok(Handled::Shard {
            requests: vec![(
                call.ctx.shared.shard_for(key),
                ShardOp::StoreOffset {
                    key,
                    consumer,
                    offset: request.offset,
                },
            )],
            continuation: Continuation::Body(result_ok(&[])),
        })
    })())
}

pub fn delete_offset(request: DeleteConsumerOffsetRequest, call: Call<'_>) -> Handled {
    done((|| {
        let (key, consumer) = offset_target(
            &call,
            &request.consumer,
            &request.stream_id,
            &request.topic_id,
            request.partition_id,
        )?;
        if call.ctx.shared.cluster.is_some() {
            let write = ReplicatedWrite::DeleteOffset { key, consumer };
            return Ok(replicated(write, Continuation::Body(result_ok(&[]))));
        }
        Ok(Handled::Shard {
            requests: vec![(
                call.ctx.shared.shard_for(key),
                ShardOp::DeleteOffset { key, consumer },
            )],
            continuation: Continuation::Body(result_ok(&[])),
        })
    })())
}
