//! Consumer groups: definitions are durable metadata; membership lives in the group registry and
//! follows connections (a disconnect leaves every group).

use super::{done, encoded, produced_id, resolve_stream_topic, result_ok, Action, Call, Handled};
use crate::metadata::Produced;
use crate::session::groups::GroupKey;
use crate::session::shared::{lock, Shared};
use riptide_protocol::codes::ErrorCode;
use riptide_protocol::reply::types::{
    ConsumerGroupDetailsResponse, ConsumerGroupMemberResponse, ConsumerGroupResponse,
    GetConsumerGroupsResponse, SyncConsumerGroupResponse,
};
use riptide_protocol::request::Request;
use riptide_protocol::wire::{WireIdentifier, WireName};
use riptide_storage::metadata::{Change, ConsumerGroup, Topic};

pub fn handle(request: Request<'_>, call: Call<'_>) -> Handled {
    done(match request {
        Request::GetConsumerGroup(r) => get(&call, &r.stream_id, &r.topic_id, &r.group_id),
        Request::GetConsumerGroups(r) => list(&call, &r.stream_id, &r.topic_id),
        Request::CreateConsumerGroup(r) => {
            create(&call, &r.stream_id, &r.topic_id, r.name.as_str())
        }
        Request::DeleteConsumerGroup(r) => delete(&call, &r.stream_id, &r.topic_id, &r.group_id),
        Request::JoinConsumerGroup(r) => join(&call, &r.stream_id, &r.topic_id, &r.group_id),
        Request::LeaveConsumerGroup(r) => leave(&call, &r.stream_id, &r.topic_id, &r.group_id),
        Request::SyncConsumerGroup(r) => sync(&call, &r.stream_id, &r.topic_id, &r.group_id),
        _ => Err(ErrorCode::InvalidCommand),
    })
}

fn find_group<'t>(topic: &'t Topic, id: &WireIdentifier) -> Result<&'t ConsumerGroup, ErrorCode> {
    match id {
        WireIdentifier::Numeric(id) => topic
            .consumer_groups
            .get(id)
            .ok_or(ErrorCode::ConsumerGroupIdNotFound),
        WireIdentifier::String(name) => topic
            .consumer_groups
            .values()
            .find(|group| group.name == name.as_str())
            .ok_or(ErrorCode::ConsumerGroupNameNotFound),
    }
}

/// Resolves stream, topic and group, checking `action` on the topic.
fn target<'c>(
    call: &Call<'c>,
    stream: &WireIdentifier,
    topic: &WireIdentifier,
    group: &WireIdentifier,
    action: fn(u32, u32) -> Action,
) -> Result<(GroupKey, &'c Topic, &'c ConsumerGroup), ErrorCode> {
    let (stream, topic) = resolve_stream_topic(call.catalog, stream, topic)?;
    call.require(action(stream.id, topic.id))?;
    let group = find_group(topic, group)?;
    Ok(((stream.id, topic.id, group.id), topic, group))
}

fn details(
    shared: &Shared,
    key: GroupKey,
    topic: &Topic,
    group: &ConsumerGroup,
) -> ConsumerGroupDetailsResponse {
    let groups = lock(&shared.groups);
    let members: Vec<ConsumerGroupMemberResponse> = groups
        .group(key)
        .map(|state| {
            state
                .members()
                .iter()
                .map(|(client_id, partitions)| ConsumerGroupMemberResponse {
                    id: *client_id,
                    partitions_count: partitions.len() as u32,
                    partitions: partitions.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    ConsumerGroupDetailsResponse {
        group: summary(topic, group, members.len() as u32),
        members,
    }
}

fn summary(topic: &Topic, group: &ConsumerGroup, members_count: u32) -> ConsumerGroupResponse {
    ConsumerGroupResponse {
        id: group.id,
        partitions_count: topic.partitions.len() as u32,
        members_count,
        name: WireName::new(group.name.as_str())
            .unwrap_or_else(|_| WireName::new("?").expect("valid")),
    }
}

fn get(
    call: &Call<'_>,
    stream: &WireIdentifier,
    topic: &WireIdentifier,
    group: &WireIdentifier,
) -> Result<Handled, ErrorCode> {
    match target(call, stream, topic, group, Action::ReadTopic) {
        Ok((key, topic, group)) => Ok(Handled::Reply(encoded(&details(
            &call.ctx.shared,
            key,
            topic,
            group,
        )))),
        Err(ErrorCode::ConsumerGroupIdNotFound | ErrorCode::ConsumerGroupNameNotFound) => {
            Ok(Handled::Reply(Vec::new()))
        }
        Err(error) => Err(error),
    }
}

fn list(
    call: &Call<'_>,
    stream: &WireIdentifier,
    topic: &WireIdentifier,
) -> Result<Handled, ErrorCode> {
    let (stream, topic) = resolve_stream_topic(call.catalog, stream, topic)?;
    call.require(Action::ReadTopic(stream.id, topic.id))?;
    let groups = lock(&call.ctx.shared.groups);
    let summaries = topic
        .consumer_groups
        .values()
        .map(|group| {
            let members = groups
                .group((stream.id, topic.id, group.id))
                .map_or(0, |g| g.members().len() as u32);
            summary(topic, group, members)
        })
        .collect();
    Ok(Handled::Reply(encoded(&GetConsumerGroupsResponse {
        groups: summaries,
    })))
}

fn create(
    call: &Call<'_>,
    stream: &WireIdentifier,
    topic: &WireIdentifier,
    name: &str,
) -> Result<Handled, ErrorCode> {
    let (stream, topic) = resolve_stream_topic(call.catalog, stream, topic)?;
    call.require(Action::ManageTopic(stream.id, topic.id))?;
    let (stream_id, topic_id) = (stream.id, topic.id);
    let name = name.to_string();
    Ok(Handled::change(
        move |catalog| {
            if catalog
                .consumer_group_by_name(stream_id, topic_id, &name)
                .is_some()
            {
                return Err(ErrorCode::ConsumerGroupNameAlreadyExists);
            }
            let group_id = catalog
                .next_consumer_group_id(stream_id, topic_id)
                .map_err(|e| crate::metadata::catalog_error_code(&e))?;
            let change = Change::CreateConsumerGroup {
                stream_id,
                topic_id,
                group_id,
                name,
            };
            Ok((change, Produced::Id(group_id)))
        },
        move |applied, _, ctx| {
            let group_id = produced_id(&applied.produced)?;
            let topic = applied
                .catalog
                .topic(stream_id, topic_id)
                .ok_or(ErrorCode::TopicIdNotFound)?;
            let group = topic
                .consumer_groups
                .get(&group_id)
                .ok_or(ErrorCode::Error)?;
            let reply = details(&ctx.shared, (stream_id, topic_id, group_id), topic, group);
            Ok(Handled::Reply(result_ok(&encoded(&reply))))
        },
    ))
}

fn delete(
    call: &Call<'_>,
    stream: &WireIdentifier,
    topic: &WireIdentifier,
    group: &WireIdentifier,
) -> Result<Handled, ErrorCode> {
    let ((stream_id, topic_id, group_id), _, _) =
        target(call, stream, topic, group, Action::ManageTopic)?;
    Ok(Handled::change(
        move |_| {
            let change = Change::DeleteConsumerGroup {
                stream_id,
                topic_id,
                group_id,
            };
            Ok((change, Produced::Nothing))
        },
        move |_, _, ctx| {
            lock(&ctx.shared.groups).forget(stream_id, Some(topic_id), Some(group_id));
            Ok(Handled::Reply(result_ok(&[])))
        },
    ))
}

fn join(
    call: &Call<'_>,
    stream: &WireIdentifier,
    topic: &WireIdentifier,
    group: &WireIdentifier,
) -> Result<Handled, ErrorCode> {
    let (key, topic, _) = target(call, stream, topic, group, Action::Poll)?;
    lock(&call.ctx.shared.groups).join(key, call.state.client_id, topic.partitions.len() as u32);
    Ok(Handled::Reply(result_ok(&[])))
}

fn leave(
    call: &Call<'_>,
    stream: &WireIdentifier,
    topic: &WireIdentifier,
    group: &WireIdentifier,
) -> Result<Handled, ErrorCode> {
    let (key, _, _) = target(call, stream, topic, group, Action::Poll)?;
    if !lock(&call.ctx.shared.groups).leave(key, call.state.client_id) {
        return Err(ErrorCode::ConsumerGroupMemberNotFound);
    }
    Ok(Handled::Reply(result_ok(&[])))
}

/// The member's assignment and the group's generation; an empty body when not a member.
fn sync(
    call: &Call<'_>,
    stream: &WireIdentifier,
    topic: &WireIdentifier,
    group: &WireIdentifier,
) -> Result<Handled, ErrorCode> {
    let (key, _, _) = target(call, stream, topic, group, Action::Poll)?;
    let groups = lock(&call.ctx.shared.groups);
    let Some(state) = groups.group(key) else {
        return Ok(Handled::Reply(Vec::new()));
    };
    let Some(partitions) = state.assigned(call.state.client_id) else {
        return Ok(Handled::Reply(Vec::new()));
    };
    let reply = SyncConsumerGroupResponse {
        generation: state.generation,
        partitions: partitions.to_vec(),
    };
    Ok(Handled::Reply(encoded(&reply)))
}
