//! Strategies shared by the property tests: a generator for every request of iggy 0.11.

#![allow(dead_code)] // each test binary uses a different subset

use bytes::BytesMut;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use riptide_protocol::codes::{CommandCode, Operation};
use riptide_protocol::login::{ClientVersion, Login};
use riptide_protocol::request::Request;
use riptide_protocol::wire::primitives::ack_level::AckLevel;
use riptide_protocol::wire::requests::consumer_groups::*;
use riptide_protocol::wire::requests::consumer_offsets::*;
use riptide_protocol::wire::requests::messages::*;
use riptide_protocol::wire::requests::partitions::*;
use riptide_protocol::wire::requests::personal_access_tokens::*;
use riptide_protocol::wire::requests::segments::*;
use riptide_protocol::wire::requests::streams::*;
use riptide_protocol::wire::requests::system::*;
use riptide_protocol::wire::requests::topics::*;
use riptide_protocol::wire::requests::users::*;
use riptide_protocol::wire::{
    encode_user_headers, WireConsumer, WireGlobalPermissions, WireIdentifier, WireName,
    WireOptions, WirePermissions, WirePollingStrategy, WireStreamPermissions, WireTopicPermissions,
};

pub fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9._-]{1,40}", "\\PC{1,30}"]
}

pub fn name() -> impl Strategy<Value = WireName> {
    text().prop_map(|s| WireName::new(s).unwrap())
}

pub fn ident() -> impl Strategy<Value = WireIdentifier> {
    prop_oneof![
        any::<u32>().prop_map(WireIdentifier::numeric),
        text().prop_map(|s| WireIdentifier::named(s).unwrap()),
    ]
}

pub fn consumer() -> impl Strategy<Value = WireConsumer> {
    (any::<bool>(), ident()).prop_map(|(group, id)| {
        if group {
            WireConsumer::consumer_group(id)
        } else {
            WireConsumer::consumer(id)
        }
    })
}

pub fn ack() -> impl Strategy<Value = AckLevel> {
    prop_oneof![Just(AckLevel::NoAck), Just(AckLevel::Quorum)]
}

pub fn options() -> impl Strategy<Value = WireOptions> {
    btree_map("[a-z_]{1,24}", "[a-z0-9]{1,16}", 0..4).prop_map(|map| {
        let entries: Vec<(u8, &[u8], u8, &[u8])> = map
            .iter()
            .map(|(k, v)| (2u8, k.as_bytes(), 2u8, v.as_bytes()))
            .collect();
        let mut buf = BytesMut::new();
        encode_user_headers(&entries, &mut buf);
        WireOptions::from_slice(&buf).unwrap()
    })
}

pub fn permissions() -> impl Strategy<Value = Option<WirePermissions>> {
    let topic = (any::<u32>(), any::<[bool; 4]>()).prop_map(|(topic_id, b)| WireTopicPermissions {
        topic_id,
        manage_topic: b[0],
        read_topic: b[1],
        poll_messages: b[2],
        send_messages: b[3],
    });
    let stream =
        (any::<u32>(), any::<[bool; 6]>(), vec(topic, 0..3)).prop_map(|(id, b, topics)| {
            WireStreamPermissions {
                stream_id: id,
                manage_stream: b[0],
                read_stream: b[1],
                manage_topics: b[2],
                read_topics: b[3],
                poll_messages: b[4],
                send_messages: b[5],
                topics,
            }
        });
    let global = any::<[bool; 10]>().prop_map(|b| WireGlobalPermissions {
        manage_servers: b[0],
        read_servers: b[1],
        manage_users: b[2],
        read_users: b[3],
        manage_streams: b[4],
        read_streams: b[5],
        manage_topics: b[6],
        read_topics: b[7],
        poll_messages: b[8],
        send_messages: b[9],
    });
    option::of(
        (global, vec(stream, 0..3))
            .prop_map(|(global, streams)| WirePermissions { global, streams }),
    )
}

pub fn poll() -> impl Strategy<Value = PollMessagesRequest> {
    (
        consumer(),
        ident(),
        ident(),
        option::of(any::<u32>()),
        (1u8..=5, any::<u64>()),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(
            |(consumer, stream_id, topic_id, partition_id, s, count, auto_commit)| {
                PollMessagesRequest {
                    consumer,
                    stream_id,
                    topic_id,
                    partition_id,
                    strategy: WirePollingStrategy {
                        kind: s.0,
                        value: s.1,
                    },
                    count,
                    auto_commit,
                }
            },
        )
}

pub fn offset_route() -> impl Strategy<Value = GetConsumerOffsetRequest> {
    (consumer(), ident(), ident(), option::of(any::<u32>())).prop_map(|(c, s, t, p)| {
        GetConsumerOffsetRequest {
            consumer: c,
            stream_id: s,
            topic_id: t,
            partition_id: p,
        }
    })
}

pub fn group_ids() -> impl Strategy<Value = (WireIdentifier, WireIdentifier, WireIdentifier)> {
    (ident(), ident(), ident())
}

/// System, user, token, message and offset commands.
pub fn control_requests() -> Vec<BoxedStrategy<Request<'static>>> {
    vec![
        Just(Request::Ping).boxed(),
        Just(Request::GetStats).boxed(),
        Just(Request::GetClusterMetadata).boxed(),
        Just(Request::GetMe).boxed(),
        Just(Request::GetClients).boxed(),
        Just(Request::GetUsers).boxed(),
        Just(Request::Logout).boxed(),
        Just(Request::GetPersonalAccessTokens).boxed(),
        Just(Request::GetStreams).boxed(),
        (any::<u8>(), vec(any::<u8>(), 0..8))
            .prop_map(|(compression, snapshot_types)| {
                Request::GetSnapshot(GetSnapshotRequest {
                    compression,
                    snapshot_types,
                })
            })
            .boxed(),
        proptest::sample::select(vec![
            OPTIONS_SCOPE_STREAM,
            OPTIONS_SCOPE_TOPIC,
            OPTIONS_SCOPE_USER,
        ])
        .prop_map(|scope| Request::DescribeOptions(DescribeOptionsRequest { scope }))
        .boxed(),
        any::<(u128, u64, u64)>()
            .prop_map(|(client_id, session, metadata_watermark)| {
                Request::AttachConsumerSession(AttachConsumerSessionRequest {
                    client_id,
                    session,
                    metadata_watermark,
                })
            })
            .boxed(),
        any::<u32>()
            .prop_map(|client_id| Request::GetClient(GetClientRequest { client_id }))
            .boxed(),
        ident()
            .prop_map(|user_id| Request::GetUser(GetUserRequest { user_id }))
            .boxed(),
        (
            name(),
            "[a-zA-Z0-9]{3,100}",
            any::<u8>(),
            permissions(),
            options(),
        )
            .prop_map(|(username, password, status, permissions, options)| {
                Request::CreateUser(CreateUserRequest {
                    username,
                    password,
                    status,
                    permissions,
                    options,
                })
            })
            .boxed(),
        ident()
            .prop_map(|user_id| Request::DeleteUser(DeleteUserRequest { user_id }))
            .boxed(),
        (
            ident(),
            option::of(name()),
            option::of(any::<u8>()),
            options(),
        )
            .prop_map(|(user_id, username, status, options)| {
                Request::UpdateUser(UpdateUserRequest {
                    user_id,
                    username,
                    status,
                    options,
                })
            })
            .boxed(),
        (ident(), permissions())
            .prop_map(|(user_id, permissions)| {
                Request::UpdatePermissions(UpdatePermissionsRequest {
                    user_id,
                    permissions,
                })
            })
            .boxed(),
        (ident(), "[a-z0-9]{1,100}", "[a-z0-9]{1,100}")
            .prop_map(|(user_id, current_password, new_password)| {
                Request::ChangePassword(ChangePasswordRequest {
                    user_id,
                    current_password,
                    new_password,
                })
            })
            .boxed(),
        (name(), any::<u64>())
            .prop_map(|(name, expiry)| {
                Request::CreatePersonalAccessToken(CreatePersonalAccessTokenRequest {
                    name,
                    expiry,
                })
            })
            .boxed(),
        name()
            .prop_map(|name| {
                Request::DeletePersonalAccessToken(DeletePersonalAccessTokenRequest { name })
            })
            .boxed(),
        poll().prop_map(Request::PollMessages).boxed(),
        poll().prop_map(Request::GetPollRouting).boxed(),
        poll().prop_map(Request::PollMessagesOnPrimary).boxed(),
        (ident(), ident(), any::<u32>(), any::<bool>())
            .prop_map(|(stream_id, topic_id, partition_id, fsync)| {
                Request::FlushUnsavedBuffer(FlushUnsavedBufferRequest {
                    stream_id,
                    topic_id,
                    partition_id,
                    fsync,
                })
            })
            .boxed(),
        offset_route().prop_map(Request::GetConsumerOffset).boxed(),
        offset_route()
            .prop_map(Request::GetConsumerOffsetRouting)
            .boxed(),
        (offset_route(), any::<u64>(), ack())
            .prop_map(|(r, offset, ack)| {
                Request::StoreConsumerOffset(StoreConsumerOffsetRequest {
                    consumer: r.consumer,
                    stream_id: r.stream_id,
                    topic_id: r.topic_id,
                    partition_id: r.partition_id,
                    offset,
                    ack,
                })
            })
            .boxed(),
        (offset_route(), ack())
            .prop_map(|(r, ack)| {
                Request::DeleteConsumerOffset(DeleteConsumerOffsetRequest {
                    consumer: r.consumer,
                    stream_id: r.stream_id,
                    topic_id: r.topic_id,
                    partition_id: r.partition_id,
                    ack,
                })
            })
            .boxed(),
    ]
}

/// Streams, topics, partitions, segments and consumer groups.
pub fn resource_requests() -> Vec<BoxedStrategy<Request<'static>>> {
    vec![
        ident()
            .prop_map(|stream_id| Request::GetStream(GetStreamRequest { stream_id }))
            .boxed(),
        (name(), options())
            .prop_map(|(name, options)| {
                Request::CreateStream(CreateStreamRequest { name, options })
            })
            .boxed(),
        ident()
            .prop_map(|stream_id| Request::DeleteStream(DeleteStreamRequest { stream_id }))
            .boxed(),
        (ident(), name(), options())
            .prop_map(|(stream_id, name, options)| {
                Request::UpdateStream(UpdateStreamRequest {
                    stream_id,
                    name,
                    options,
                })
            })
            .boxed(),
        ident()
            .prop_map(|stream_id| Request::PurgeStream(PurgeStreamRequest { stream_id }))
            .boxed(),
        (ident(), ident())
            .prop_map(|(stream_id, topic_id)| {
                Request::GetTopic(GetTopicRequest {
                    stream_id,
                    topic_id,
                })
            })
            .boxed(),
        ident()
            .prop_map(|stream_id| Request::GetTopics(GetTopicsRequest { stream_id }))
            .boxed(),
        (ident(), any::<u32>(), name(), options())
            .prop_map(|(stream_id, partitions_count, name, options)| {
                Request::CreateTopic(CreateTopicRequest {
                    stream_id,
                    partitions_count,
                    name,
                    options,
                })
            })
            .boxed(),
        (ident(), ident())
            .prop_map(|(stream_id, topic_id)| {
                Request::DeleteTopic(DeleteTopicRequest {
                    stream_id,
                    topic_id,
                })
            })
            .boxed(),
        (ident(), ident(), name(), options())
            .prop_map(|(stream_id, topic_id, name, options)| {
                Request::UpdateTopic(UpdateTopicRequest {
                    stream_id,
                    topic_id,
                    name,
                    options,
                })
            })
            .boxed(),
        (ident(), ident())
            .prop_map(|(stream_id, topic_id)| {
                Request::PurgeTopic(PurgeTopicRequest {
                    stream_id,
                    topic_id,
                })
            })
            .boxed(),
        (ident(), ident(), any::<u32>())
            .prop_map(|(stream_id, topic_id, partitions_count)| {
                Request::CreatePartitions(CreatePartitionsRequest {
                    stream_id,
                    topic_id,
                    partitions_count,
                })
            })
            .boxed(),
        (ident(), ident(), any::<u32>())
            .prop_map(|(stream_id, topic_id, partitions_count)| {
                Request::DeletePartitions(DeletePartitionsRequest {
                    stream_id,
                    topic_id,
                    partitions_count,
                })
            })
            .boxed(),
        (ident(), ident(), any::<u32>(), any::<u32>())
            .prop_map(|(stream_id, topic_id, partition_id, segments_count)| {
                Request::DeleteSegments(DeleteSegmentsRequest {
                    stream_id,
                    topic_id,
                    partition_id,
                    segments_count,
                })
            })
            .boxed(),
        (ident(), ident())
            .prop_map(|(stream_id, topic_id)| {
                Request::GetConsumerGroups(GetConsumerGroupsRequest {
                    stream_id,
                    topic_id,
                })
            })
            .boxed(),
        (ident(), ident(), name())
            .prop_map(|(stream_id, topic_id, name)| {
                Request::CreateConsumerGroup(CreateConsumerGroupRequest {
                    stream_id,
                    topic_id,
                    name,
                })
            })
            .boxed(),
    ]
}

/// Consumer-group commands addressed by `[stream][topic][group]`.
pub fn group_requests() -> Vec<BoxedStrategy<Request<'static>>> {
    vec![
        group_ids()
            .prop_map(|(stream_id, topic_id, group_id)| {
                Request::GetConsumerGroup(GetConsumerGroupRequest {
                    stream_id,
                    topic_id,
                    group_id,
                })
            })
            .boxed(),
        group_ids()
            .prop_map(|(stream_id, topic_id, group_id)| {
                Request::DeleteConsumerGroup(DeleteConsumerGroupRequest {
                    stream_id,
                    topic_id,
                    group_id,
                })
            })
            .boxed(),
        group_ids()
            .prop_map(|(stream_id, topic_id, group_id)| {
                Request::JoinConsumerGroup(JoinConsumerGroupRequest {
                    stream_id,
                    topic_id,
                    group_id,
                })
            })
            .boxed(),
        group_ids()
            .prop_map(|(stream_id, topic_id, group_id)| {
                Request::LeaveConsumerGroup(LeaveConsumerGroupRequest {
                    stream_id,
                    topic_id,
                    group_id,
                })
            })
            .boxed(),
        group_ids()
            .prop_map(|(stream_id, topic_id, group_id)| {
                Request::SyncConsumerGroup(SyncConsumerGroupRequest {
                    stream_id,
                    topic_id,
                    group_id,
                })
            })
            .boxed(),
        login().boxed(),
    ]
}

pub fn login() -> impl Strategy<Value = Request<'static>> {
    let version =
        ("[a-z-]{1,20}", "[0-9.]{1,10}", 0u32..1024).prop_map(|(n, v, patch)| ClientVersion {
            protocol_version: riptide_protocol::constants::SERVER_PROTOCOL_VERSION_MIN + patch,
            sdk_name: n,
            sdk_version: v,
        });
    let context = option::of("\\PC{1,40}");
    prop_oneof![
        (version.clone(), text(), "[!-~]{0,200}", context.clone()).prop_map(
            |(version, username, password, context)| {
                Request::LoginRegister(Login::Password {
                    version,
                    username,
                    password,
                    context,
                })
            }
        ),
        // Tokens longer than a username+password shape can mimic always fall to the PAT shape.
        (version, "[A-Za-z0-9_-]{1,200}", context).prop_map(|(version, token, context)| {
            Request::LoginRegisterWithPat(Login::Token {
                version,
                token,
                context,
            })
        }),
    ]
}

pub fn every_request() -> impl Strategy<Value = Request<'static>> {
    let mut arms = control_requests();
    arms.extend(resource_requests());
    arms.extend(group_requests());
    Union::new(arms)
}

/// What the SDK writes in the header for `command`: (operation byte, code in bytes 196..200).
pub fn addressing(command: CommandCode) -> (u8, u32) {
    let operation = command.operation();
    let code = if operation == Operation::NonReplicated {
        command.as_u32()
    } else {
        0
    };
    (operation as u8, code)
}
