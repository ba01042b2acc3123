//! Streams, topics, partitions and segments. A change is made durable in the metadata store first;
//! the partitions' shards then create, delete or purge their files. A crash between the two is
//! repaired at start-up: shards open every partition the catalog names (creating missing ones).

use super::options;
use super::{
    after_shards, done, encoded, produced_id, replicated, replied_ok, resolve_stream,
    resolve_stream_topic, result_ok, Action, Call, Continuation, Handled, IdRef,
};
// Stamps inside change builders only: those run on the metadata service's thread.
use crate::clock::now_us;
use crate::metadata::{Applied, Produced, ReplicatedWrite};
use crate::session::shared::{lock, Shared};
use crate::session::WorkerContext;
use crate::shard::effects::{keys_of, per_shard};
use crate::shard::ShardOp;
use riptide_protocol::codes::ErrorCode;
use riptide_protocol::reply::types::{
    GetStreamResponse, GetStreamsResponse, GetTopicResponse, GetTopicsResponse, PartitionResponse,
    StreamResponse, TopicHeader,
};
use riptide_protocol::request::Request;
use riptide_protocol::wire::{WireName, WireOptions};
use riptide_storage::metadata::{Catalog, Change, CompressionAlgorithm, Partition, Stream, Topic};
use riptide_storage::PartitionKey;

/// Most partitions one create or delete request may name (iggy's limit).
const PARTITIONS_PER_REQUEST_MAX: u32 = 1000;

pub fn handle(request: Request<'_>, call: Call<'_>) -> Handled {
    done(match request {
        Request::GetStream(r) => get_stream(&call, IdRef::from(&r.stream_id)),
        Request::GetStreams => get_streams(&call),
        Request::CreateStream(r) => create_stream(&call, r.name.as_str(), &r.options),
        Request::UpdateStream(r) => update_stream(
            &call,
            IdRef::from(&r.stream_id),
            r.name.as_str(),
            &r.options,
        ),
        Request::DeleteStream(r) => delete_stream(&call, IdRef::from(&r.stream_id)),
        Request::PurgeStream(r) => purge_stream(&call, IdRef::from(&r.stream_id)),
        Request::GetTopic(r) => get_topic(&call, &r.stream_id, &r.topic_id),
        Request::GetTopics(r) => get_topics(&call, IdRef::from(&r.stream_id)),
        Request::CreateTopic(r) => create_topic(
            &call,
            IdRef::from(&r.stream_id),
            r.partitions_count,
            r.name.as_str(),
            &r.options,
        ),
        Request::UpdateTopic(r) => update_topic(
            &call,
            &r.stream_id,
            &r.topic_id,
            r.name.as_str(),
            &r.options,
        ),
        Request::DeleteTopic(r) => delete_topic(&call, &r.stream_id, &r.topic_id),
        Request::PurgeTopic(r) => purge_topic(&call, &r.stream_id, &r.topic_id),
        Request::CreatePartitions(r) => {
            create_partitions(&call, &r.stream_id, &r.topic_id, r.partitions_count)
        }
        Request::DeletePartitions(r) => {
            delete_partitions(&call, &r.stream_id, &r.topic_id, r.partitions_count)
        }
        Request::DeleteSegments(r) => delete_segments(
            &call,
            &r.stream_id,
            &r.topic_id,
            r.partition_id,
            r.segments_count,
        ),
        _ => Err(ErrorCode::InvalidCommand),
    })
}

fn wire_name(name: &str) -> WireName {
    WireName::new(name).unwrap_or_else(|_| WireName::new("?").expect("one byte is a valid name"))
}

fn stream_response(shared: &Shared, stream: &Stream) -> StreamResponse {
    let (size_bytes, messages_count) =
        stream.topics.values().fold((0, 0), |(size, count), topic| {
            let (topic_size, topic_count) = topic_totals(shared, stream.id, topic);
            (size + topic_size, count + topic_count)
        });
    StreamResponse {
        id: stream.id,
        created_at: stream.created_at_us,
        topics_count: stream.topics.len() as u32,
        size_bytes,
        messages_count,
        name: wire_name(&stream.name),
        options: WireOptions::empty(),
    }
}

fn partition_key(stream_id: u32, topic: &Topic, partition: &Partition) -> PartitionKey {
    PartitionKey {
        stream_id,
        topic_id: topic.id,
        partition_id: partition.id,
    }
}

fn topic_totals(shared: &Shared, stream_id: u32, topic: &Topic) -> (u64, u64) {
    topic
        .partitions
        .iter()
        .fold((0, 0), |(size, count), partition| {
            let info = shared.partition_info(partition_key(stream_id, topic, partition));
            (size + info.size_bytes, count + info.messages_count)
        })
}

fn topic_header(shared: &Shared, stream_id: u32, topic: &Topic) -> TopicHeader {
    let (size_bytes, messages_count) = topic_totals(shared, stream_id, topic);
    let (explicit, derived) = options::reply_blocks(
        &topic.options,
        shared.effective_durability(topic.options.durability),
    );
    TopicHeader {
        id: topic.id,
        created_at: topic.created_at_us,
        partitions_count: topic.partitions.len() as u32,
        message_expiry: topic.options.message_expiry_us,
        compression_algorithm: if topic.options.compression == CompressionAlgorithm::Gzip {
            2
        } else {
            1
        },
        max_topic_size: topic.options.max_topic_size_bytes,
        size_bytes,
        messages_count,
        name: wire_name(&topic.name),
        options: explicit,
        derived_options: derived,
    }
}

fn topic_response(shared: &Shared, stream_id: u32, topic: &Topic) -> GetTopicResponse {
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let info = shared.partition_info(partition_key(stream_id, topic, partition));
            PartitionResponse {
                id: partition.id,
                created_at: partition.created_at_us,
                segments_count: info.segments_count,
                current_offset: info.current_offset.unwrap_or(0),
                size_bytes: info.size_bytes,
                messages_count: info.messages_count,
            }
        })
        .collect();
    GetTopicResponse {
        topic: topic_header(shared, stream_id, topic),
        partitions,
    }
}

fn get_stream(call: &Call<'_>, id: IdRef<'_>) -> Result<Handled, ErrorCode> {
    let Ok(stream) = resolve_stream(call.catalog, id) else {
        return Ok(Handled::Reply(Vec::new()));
    };
    call.require(Action::ReadStream(stream.id))?;
    let shared = &call.ctx.shared;
    let topics = stream
        .topics
        .values()
        .map(|topic| topic_header(shared, stream.id, topic))
        .collect();
    Ok(Handled::Reply(encoded(&GetStreamResponse {
        stream: stream_response(shared, stream),
        topics,
    })))
}

fn get_streams(call: &Call<'_>) -> Result<Handled, ErrorCode> {
    call.require(Action::ReadStreams)?;
    let shared = &call.ctx.shared;
    let streams = call
        .catalog
        .streams()
        .values()
        .map(|stream| stream_response(shared, stream))
        .collect();
    Ok(Handled::Reply(encoded(&GetStreamsResponse { streams })))
}

fn create_stream(call: &Call<'_>, name: &str, options: &WireOptions) -> Result<Handled, ErrorCode> {
    call.require(Action::ManageStreams)?;
    if !options.is_empty() {
        return Err(ErrorCode::UnsupportedOptionKey);
    }
    let name = name.to_string();
    Ok(Handled::change(
        move |catalog| {
            if catalog.stream_by_name(&name).is_some() {
                return Err(ErrorCode::StreamNameAlreadyExists);
            }
            let stream_id = catalog
                .next_stream_id()
                .map_err(|e| crate::metadata::catalog_error_code(&e))?;
            let change = Change::CreateStream {
                stream_id,
                name,
                created_at_us: now_us(),
            };
            Ok((change, Produced::Id(stream_id)))
        },
        |applied, _, ctx| {
            let stream = applied
                .catalog
                .stream(produced_id(&applied.produced)?)
                .ok_or(ErrorCode::Error)?;
            let reply = GetStreamResponse {
                stream: stream_response(&ctx.shared, stream),
                topics: Vec::new(),
            };
            Ok(Handled::Reply(result_ok(&encoded(&reply))))
        },
    ))
}

fn update_stream(
    call: &Call<'_>,
    id: IdRef<'_>,
    name: &str,
    options: &WireOptions,
) -> Result<Handled, ErrorCode> {
    let stream_id = resolve_stream(call.catalog, id)?.id;
    call.require(Action::ManageStream(stream_id))?;
    if !options.is_empty() {
        return Err(ErrorCode::UnsupportedOptionKey);
    }
    let name = name.to_string();
    Ok(Handled::change(
        move |catalog| {
            if catalog
                .stream_by_name(&name)
                .is_some_and(|other| other.id != stream_id)
            {
                return Err(ErrorCode::StreamNameAlreadyExists);
            }
            Ok((Change::UpdateStream { stream_id, name }, Produced::Nothing))
        },
        replied_ok,
    ))
}

fn delete_stream(call: &Call<'_>, id: IdRef<'_>) -> Result<Handled, ErrorCode> {
    let stream_id = resolve_stream(call.catalog, id)?.id;
    call.require(Action::ManageStream(stream_id))?;
    Ok(Handled::change(
        move |_| Ok((Change::DeleteStream { stream_id }, Produced::Nothing)),
        move |applied, state, ctx| {
            lock(&ctx.shared.groups).forget(stream_id, None, None);
            replied_ok(applied, state, ctx)
        },
    ))
}

fn purge_stream(call: &Call<'_>, id: IdRef<'_>) -> Result<Handled, ErrorCode> {
    let stream = resolve_stream(call.catalog, id)?;
    call.require(Action::ManageStream(stream.id))?;
    let keys = stream
        .topics
        .values()
        .flat_map(|topic| keys_of(stream.id, topic));
    Ok(purge(call, keys.collect()))
}

/// Empties partitions: through the cluster's log in cluster mode, else on their shards.
fn purge(call: &Call<'_>, keys: Vec<PartitionKey>) -> Handled {
    if call.ctx.shared.cluster.is_some() {
        let body = Continuation::Body(result_ok(&[]));
        return replicated(ReplicatedWrite::Purge { keys }, body);
    }
    let requests = per_shard(&call.ctx.shared.directory, keys, ShardOp::Purge);
    after_shards(requests, result_ok(&[]))
}

fn get_topic(
    call: &Call<'_>,
    stream: &riptide_protocol::wire::WireIdentifier,
    topic: &riptide_protocol::wire::WireIdentifier,
) -> Result<Handled, ErrorCode> {
    let Ok((stream, topic)) = resolve_stream_topic(call.catalog, stream, topic) else {
        return Ok(Handled::Reply(Vec::new()));
    };
    call.require(Action::ReadTopic(stream.id, topic.id))?;
    Ok(Handled::Reply(encoded(&topic_response(
        &call.ctx.shared,
        stream.id,
        topic,
    ))))
}

fn get_topics(call: &Call<'_>, id: IdRef<'_>) -> Result<Handled, ErrorCode> {
    let stream = resolve_stream(call.catalog, id)?;
    call.require(Action::ReadStream(stream.id))?;
    let shared = &call.ctx.shared;
    let topics = stream
        .topics
        .values()
        .map(|topic| topic_header(shared, stream.id, topic))
        .collect();
    Ok(Handled::Reply(encoded(&GetTopicsResponse { topics })))
}

fn create_topic(
    call: &Call<'_>,
    stream: IdRef<'_>,
    partitions_count: u32,
    name: &str,
    wire_options: &WireOptions,
) -> Result<Handled, ErrorCode> {
    let stream_id = resolve_stream(call.catalog, stream)?.id;
    call.require(Action::CreateTopic(stream_id))?;
    if partitions_count > PARTITIONS_PER_REQUEST_MAX {
        return Err(ErrorCode::TooManyPartitions);
    }
    let topic_options = options::parse_create(
        wire_options,
        call.ctx.shared.config.storage.segment_size_bytes,
    )?;
    let name = name.to_string();
    Ok(Handled::change(
        move |catalog| {
            let stream = catalog
                .stream(stream_id)
                .ok_or(ErrorCode::StreamIdNotFound)?;
            if stream.topics.values().any(|topic| topic.name == name) {
                return Err(ErrorCode::TopicNameAlreadyExists);
            }
            let topic_id = catalog
                .next_topic_id(stream_id)
                .map_err(|e| crate::metadata::catalog_error_code(&e))?;
            let created_at_us = now_us();
            let partitions = (0..partitions_count)
                .map(|id| Partition { id, created_at_us })
                .collect();
            let change = Change::CreateTopic {
                stream_id,
                topic_id,
                name,
                created_at_us,
                partitions,
                options: topic_options,
            };
            Ok((change, Produced::Id(topic_id)))
        },
        move |applied, _, ctx| {
            let topic_id = produced_id(&applied.produced)?;
            let topic = topic_in(&applied.catalog, stream_id, topic_id)?;
            let body = result_ok(&encoded(&topic_response(&ctx.shared, stream_id, topic)));
            Ok(after_shards(applied.effects, body))
        },
    ))
}

fn topic_in(catalog: &Catalog, stream_id: u32, topic_id: u32) -> Result<&Topic, ErrorCode> {
    catalog
        .topic(stream_id, topic_id)
        .ok_or(ErrorCode::TopicIdNotFound)
}

fn update_topic(
    call: &Call<'_>,
    stream: &riptide_protocol::wire::WireIdentifier,
    topic: &riptide_protocol::wire::WireIdentifier,
    name: &str,
    wire_options: &WireOptions,
) -> Result<Handled, ErrorCode> {
    let (stream, topic) = resolve_stream_topic(call.catalog, stream, topic)?;
    call.require(Action::ManageTopic(stream.id, topic.id))?;
    let update = options::parse_update(wire_options)?;
    let (stream_id, topic_id) = (stream.id, topic.id);
    let name = name.to_string();
    Ok(Handled::change(
        move |catalog| {
            let stream = catalog
                .stream(stream_id)
                .ok_or(ErrorCode::StreamIdNotFound)?;
            if stream
                .topics
                .values()
                .any(|other| other.name == name && other.id != topic_id)
            {
                return Err(ErrorCode::TopicNameAlreadyExists);
            }
            let change = Change::UpdateTopic {
                stream_id,
                topic_id,
                name,
                options: update,
            };
            Ok((change, Produced::Nothing))
        },
        replied_ok,
    ))
}

fn delete_topic(
    call: &Call<'_>,
    stream: &riptide_protocol::wire::WireIdentifier,
    topic: &riptide_protocol::wire::WireIdentifier,
) -> Result<Handled, ErrorCode> {
    let (stream, topic) = resolve_stream_topic(call.catalog, stream, topic)?;
    call.require(Action::ManageTopic(stream.id, topic.id))?;
    let (stream_id, topic_id) = (stream.id, topic.id);
    Ok(Handled::change(
        move |_| {
            let change = Change::DeleteTopic {
                stream_id,
                topic_id,
            };
            Ok((change, Produced::Nothing))
        },
        move |applied, state, ctx| {
            lock(&ctx.shared.groups).forget(stream_id, Some(topic_id), None);
            replied_ok(applied, state, ctx)
        },
    ))
}

fn purge_topic(
    call: &Call<'_>,
    stream: &riptide_protocol::wire::WireIdentifier,
    topic: &riptide_protocol::wire::WireIdentifier,
) -> Result<Handled, ErrorCode> {
    let (stream, topic) = resolve_stream_topic(call.catalog, stream, topic)?;
    call.require(Action::ManageTopic(stream.id, topic.id))?;
    Ok(purge(call, keys_of(stream.id, topic).collect()))
}

fn create_partitions(
    call: &Call<'_>,
    stream: &riptide_protocol::wire::WireIdentifier,
    topic: &riptide_protocol::wire::WireIdentifier,
    count: u32,
) -> Result<Handled, ErrorCode> {
    let (stream, topic) = resolve_stream_topic(call.catalog, stream, topic)?;
    call.require(Action::ManageTopic(stream.id, topic.id))?;
    if count == 0 || count > PARTITIONS_PER_REQUEST_MAX {
        return Err(ErrorCode::InvalidPartitionsCount);
    }
    let (stream_id, topic_id) = (stream.id, topic.id);
    Ok(Handled::change(
        move |catalog| {
            let topic = topic_in(catalog, stream_id, topic_id)?;
            let first = topic.partitions.len() as u32;
            let created_at_us = now_us();
            let partitions = (first..first + count)
                .map(|id| Partition { id, created_at_us })
                .collect();
            let change = Change::CreatePartitions {
                stream_id,
                topic_id,
                partitions,
            };
            Ok((change, Produced::Nothing))
        },
        move |applied, state, ctx| {
            partitions_changed(&applied, stream_id, topic_id, ctx)?;
            replied_ok(applied, state, ctx)
        },
    ))
}

fn delete_partitions(
    call: &Call<'_>,
    stream: &riptide_protocol::wire::WireIdentifier,
    topic: &riptide_protocol::wire::WireIdentifier,
    count: u32,
) -> Result<Handled, ErrorCode> {
    let (stream, topic) = resolve_stream_topic(call.catalog, stream, topic)?;
    call.require(Action::ManageTopic(stream.id, topic.id))?;
    if count == 0 || count > PARTITIONS_PER_REQUEST_MAX {
        return Err(ErrorCode::InvalidPartitionsCount);
    }
    let (stream_id, topic_id) = (stream.id, topic.id);
    Ok(Handled::change(
        move |catalog| {
            let topic = topic_in(catalog, stream_id, topic_id)?;
            if topic.partitions.len() < count as usize {
                return Err(ErrorCode::InvalidPartitionsCount);
            }
            let change = Change::DeletePartitions {
                stream_id,
                topic_id,
                count,
            };
            Ok((change, Produced::Nothing))
        },
        move |applied, state, ctx| {
            partitions_changed(&applied, stream_id, topic_id, ctx)?;
            replied_ok(applied, state, ctx)
        },
    ))
}

/// A topic's partition count changed: its group members get their partitions again.
fn partitions_changed(
    applied: &Applied,
    stream_id: u32,
    topic_id: u32,
    ctx: &WorkerContext,
) -> Result<(), ErrorCode> {
    let topic = topic_in(&applied.catalog, stream_id, topic_id)?;
    lock(&ctx.shared.groups).partitions_changed(stream_id, topic_id, topic.partitions.len() as u32);
    Ok(())
}

fn delete_segments(
    call: &Call<'_>,
    stream: &riptide_protocol::wire::WireIdentifier,
    topic: &riptide_protocol::wire::WireIdentifier,
    partition_id: u32,
    segments_count: u32,
) -> Result<Handled, ErrorCode> {
    let (stream, topic) = resolve_stream_topic(call.catalog, stream, topic)?;
    call.require(Action::ManageTopic(stream.id, topic.id))?;
    if partition_id as usize >= topic.partitions.len() {
        return Err(ErrorCode::PartitionNotFound);
    }
    let key = PartitionKey {
        stream_id: stream.id,
        topic_id: topic.id,
        partition_id,
    };
    // Not result-framed (iggy's `Operation::is_result_framed`): success is an empty body.
    if call.ctx.shared.cluster.is_some() {
        let write = ReplicatedWrite::DeleteSegments {
            key,
            count: segments_count,
        };
        return Ok(replicated(write, Continuation::Body(Vec::new())));
    }
    let requests = vec![(
        call.ctx.shared.shard_for(key),
        ShardOp::DeleteSegments {
            key,
            count: segments_count,
        },
    )];
    Ok(after_shards(requests, Vec::new()))
}
