//! What an Iggy 0.11 server does with a request body, and riptide's answer beside it.
//!
//! Shared by `tests/differential.rs` (proptest) and the `differential` cargo-fuzz target (which
//! includes this file by path), so it names everything through `riptide_protocol`, whose `wire`
//! module is `iggy_binary_protocol` 0.11.0 itself.
//!
//! [`iggy`] is a model of Iggy's server written from its sources: every body is decoded by the
//! decoder the server calls at that point, with the same handling of leftover bytes, and every
//! failure is answered as the server answers it. Read at apache/iggy cc269ef70 (2026-08-21,
//! server 0.9.0-edge.5, binary_protocol 0.11.0-edge.4, `core/server/src/dispatch.rs`,
//! `responses.rs`, `users.rs`, `pat.rs`, `consumer_group.rs`, `core/metadata/src/stm/mod.rs`,
//! `core/server_common/src/send_messages.rs`) and at the later split of that dispatch
//! (`core/server/src/dispatch/{mod,reads,partition,session_ops}.rs`, `rewrite.rs`), between
//! which the 0.11.0 crates were cut (commit 71f29618, not in either snapshot). Where the two
//! differ (an undecodable poll, consumer-offset read or segment delete: an empty success reply
//! before, InvalidCommand after) the model follows the later code.
//!
//! Only decoding is modelled. What a server checks on a decoded value (option keys, counts,
//! `auto_commit` of a poll-routing request, permissions) is dispatch, outside this comparison.

#![allow(dead_code)] // the fuzz target uses a subset

use riptide_protocol::batch::{Batch, BatchError};
use riptide_protocol::codes::{CommandCode, ErrorCode, EvictionReason, Operation};
use riptide_protocol::request::{Rejection, Request, SendMessages};
use riptide_protocol::wire::batch::decode_batch_slice;
use riptide_protocol::wire::requests::consumer_groups::*;
use riptide_protocol::wire::requests::consumer_offsets::*;
use riptide_protocol::wire::requests::messages::{PollMessagesRequest, SendMessagesHeader};
use riptide_protocol::wire::requests::partitions::*;
use riptide_protocol::wire::requests::personal_access_tokens::*;
use riptide_protocol::wire::requests::segments::*;
use riptide_protocol::wire::requests::streams::*;
use riptide_protocol::wire::requests::system::*;
use riptide_protocol::wire::requests::topics::*;
use riptide_protocol::wire::requests::users::*;
use riptide_protocol::wire::{
    is_protocol_compatible, lookup_command, ClientVersionInfo, WireDecode, WireEncode,
};

/// How a server answered a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The body decoded as `command`; `canonical` is what was decoded, encoded again by iggy's
    /// encoder (so two decoders agree on the value when they agree on these bytes).
    Accept {
        command: CommandCode,
        canonical: Vec<u8>,
    },
    /// A reply with this status and no body.
    Status(ErrorCode),
    /// An eviction with this reason.
    Evict(EvictionReason),
    /// Iggy only: status 0 and an empty body, which the SDK reads as "not found".
    EmptyReply,
    /// Iggy only: committed to the metadata log, whose apply then fails to decode the body and
    /// panics (`apply_committed_prepare`).
    CommitThenPanic,
    /// Iggy only: dropped on the partition's shard without a reply.
    Dropped,
}

/// riptide's answer, with the batch error behind a refused SendMessages batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ours {
    pub answer: Answer,
    pub batch_error: Option<BatchError>,
}

/// The commands whose body Iggy's server never reads (their request types decode any bytes as
/// the empty request).
pub const BODY_IGNORED: &[CommandCode] = &[
    CommandCode::Ping,
    CommandCode::GetStats,
    CommandCode::GetClusterMetadata,
    CommandCode::GetMe,
    CommandCode::GetClients,
    CommandCode::GetUsers,
    CommandCode::LogoutUser,
    CommandCode::GetPersonalAccessTokens,
    CommandCode::GetStreams,
];

/// Metadata operations with no decode before consensus on Iggy's TCP path: only the state
/// machine decodes them, after the commit.
pub const DECODED_ONLY_AT_APPLY: &[CommandCode] = &[
    CommandCode::DeleteStream,
    CommandCode::PurgeStream,
    CommandCode::DeleteTopic,
    CommandCode::PurgeTopic,
    CommandCode::DeleteUser,
    CommandCode::UpdatePermissions,
    CommandCode::CreateConsumerGroup,
    CommandCode::DeleteConsumerGroup,
];

/// The frame addressing the SDK uses for `command`: (operation byte, code in bytes 196..200).
pub fn addressing(command: CommandCode) -> (u8, u32) {
    let operation = command.operation();
    let code = if operation == Operation::NonReplicated {
        command.as_u32()
    } else {
        0
    };
    (operation as u8, code)
}

/// Iggy's server. `operation` must be one a client may send (frame-level checks stay out).
pub fn iggy(operation: u8, code: u32, body: &[u8]) -> Answer {
    let command = match Operation::from_u8(operation) {
        Some(Operation::Register) => return register(body),
        Some(Operation::NonReplicated) => match CommandCode::from_u32(code) {
            Some(CommandCode::LoginUser | CommandCode::LoginWithPersonalAccessToken) => {
                return Answer::Evict(EvictionReason::MalformedLogin);
            }
            // `authorize_default_read`'s last arm: a replicated code in a non-replicated
            // header is FeatureUnavailable, any other code without a read arm InvalidCommand.
            _ if lookup_command(code).is_some_and(|meta| meta.is_replicated()) => {
                return Answer::Status(ErrorCode::FeatureUnavailable);
            }
            Some(command) if command.operation() == Operation::NonReplicated => command,
            _ => return Answer::Status(ErrorCode::InvalidCommand),
        },
        Some(op) => match op.command_code() {
            Some(command) => command,
            None => return Answer::Evict(EvictionReason::InvalidRequestOperation),
        },
        None => return Answer::Evict(EvictionReason::InvalidRequestOperation),
    };
    if BODY_IGNORED.contains(&command) {
        return Answer::Accept {
            command,
            canonical: Vec::new(),
        };
    }
    match command {
        CommandCode::SendMessages => send_messages(body),
        // No flush primitive: `FeatureUnavailable` whatever the body.
        CommandCode::FlushUnsavedBuffer => Answer::Status(ErrorCode::FeatureUnavailable),
        CommandCode::GetPollRouting => poll_routing(body),
        _ => decoded(command, body),
    }
}

/// `T::decode_from(body)` (leftover bytes ignored) and the answer to a failure.
fn decode_from<T: WireDecode + WireEncode>(command: CommandCode, body: &[u8]) -> Answer {
    match T::decode_from(body) {
        Ok(value) => Answer::Accept {
            command,
            canonical: value.to_bytes().to_vec(),
        },
        Err(_)
            if matches!(
                command,
                CommandCode::GetClient | CommandCode::SyncConsumerGroup
            ) =>
        {
            // reads.rs: "The SDK decodes an empty body as `None`".
            Answer::EmptyReply
        }
        Err(_) if DECODED_ONLY_AT_APPLY.contains(&command) => Answer::CommitThenPanic,
        // Every other decode site: `.map_err(|_| IggyError::InvalidCommand)`.
        Err(_) => Answer::Status(ErrorCode::InvalidCommand),
    }
}

fn decoded(command: CommandCode, body: &[u8]) -> Answer {
    use CommandCode as C;
    match command {
        C::GetSnapshotFile => decode_from::<GetSnapshotRequest>(command, body),
        C::DescribeOptions => decode_from::<DescribeOptionsRequest>(command, body),
        C::AttachConsumerSession => decode_from::<AttachConsumerSessionRequest>(command, body),
        C::GetClient => decode_from::<GetClientRequest>(command, body),
        C::GetUser => decode_from::<GetUserRequest>(command, body),
        C::CreateUser => decode_from::<CreateUserRequest>(command, body),
        C::DeleteUser => decode_from::<DeleteUserRequest>(command, body),
        C::UpdateUser => decode_from::<UpdateUserRequest>(command, body),
        C::UpdatePermissions => decode_from::<UpdatePermissionsRequest>(command, body),
        C::ChangePassword => decode_from::<ChangePasswordRequest>(command, body),
        C::CreatePersonalAccessToken => {
            decode_from::<CreatePersonalAccessTokenRequest>(command, body)
        }
        C::DeletePersonalAccessToken => {
            decode_from::<DeletePersonalAccessTokenRequest>(command, body)
        }
        C::PollMessages | C::PollMessagesOnPrimary => {
            decode_from::<PollMessagesRequest>(command, body)
        }
        C::GetConsumerOffset | C::GetConsumerOffsetRouting => {
            decode_from::<GetConsumerOffsetRequest>(command, body)
        }
        C::StoreConsumerOffset => decode_from::<StoreConsumerOffsetRequest>(command, body),
        C::DeleteConsumerOffset => decode_from::<DeleteConsumerOffsetRequest>(command, body),
        _ => decoded_resource(command, body),
    }
}

fn decoded_resource(command: CommandCode, body: &[u8]) -> Answer {
    use CommandCode as C;
    match command {
        C::GetStream => decode_from::<GetStreamRequest>(command, body),
        C::CreateStream => decode_from::<CreateStreamRequest>(command, body),
        C::DeleteStream => decode_from::<DeleteStreamRequest>(command, body),
        C::UpdateStream => decode_from::<UpdateStreamRequest>(command, body),
        C::PurgeStream => decode_from::<PurgeStreamRequest>(command, body),
        C::GetTopic => decode_from::<GetTopicRequest>(command, body),
        C::GetTopics => decode_from::<GetTopicsRequest>(command, body),
        C::CreateTopic => decode_from::<CreateTopicRequest>(command, body),
        C::DeleteTopic => decode_from::<DeleteTopicRequest>(command, body),
        C::UpdateTopic => decode_from::<UpdateTopicRequest>(command, body),
        C::PurgeTopic => decode_from::<PurgeTopicRequest>(command, body),
        C::CreatePartitions => decode_from::<CreatePartitionsRequest>(command, body),
        C::DeletePartitions => decode_from::<DeletePartitionsRequest>(command, body),
        C::DeleteSegments => decode_from::<DeleteSegmentsRequest>(command, body),
        C::GetConsumerGroup => decode_from::<GetConsumerGroupRequest>(command, body),
        C::GetConsumerGroups => decode_from::<GetConsumerGroupsRequest>(command, body),
        C::CreateConsumerGroup => decode_from::<CreateConsumerGroupRequest>(command, body),
        C::DeleteConsumerGroup => decode_from::<DeleteConsumerGroupRequest>(command, body),
        C::JoinConsumerGroup => decode_from::<JoinConsumerGroupRequest>(command, body),
        C::LeaveConsumerGroup => decode_from::<LeaveConsumerGroupRequest>(command, body),
        C::SyncConsumerGroup => decode_from::<SyncConsumerGroupRequest>(command, body),
        other => panic!("no decoder modelled for {other:?}"),
    }
}

/// `consumer_routing`: the body decoded as a poll, then its prefix as a consumer-offset read
/// (`GetConsumerOffsetRequest::decode`); either failing is InvalidCommand.
fn poll_routing(body: &[u8]) -> Answer {
    let answer = decode_from::<PollMessagesRequest>(CommandCode::GetPollRouting, body);
    if matches!(answer, Answer::Accept { .. }) && GetConsumerOffsetRequest::decode(body).is_err() {
        return Answer::Status(ErrorCode::InvalidCommand);
    }
    answer
}

/// `handle_login_register_request`: the version prefix, the gate, the password shape, then the
/// token shape, each ignoring bytes after it.
fn register(body: &[u8]) -> Answer {
    let Ok((version_info, prefix_len)) = ClientVersionInfo::decode(body) else {
        return Answer::Evict(EvictionReason::MalformedLogin);
    };
    if !is_protocol_compatible(version_info.protocol_version) {
        return Answer::Evict(EvictionReason::IncompatibleProtocol);
    }
    let tail = &body[prefix_len..];
    if let Ok((request, _)) = LoginRegisterRequest::decode_after_prefix(version_info.clone(), tail)
    {
        return Answer::Accept {
            command: CommandCode::LoginRegister,
            canonical: request.to_bytes().to_vec(),
        };
    }
    match LoginRegisterWithPatRequest::decode_after_prefix(version_info, tail) {
        Ok((request, _)) => Answer::Accept {
            command: CommandCode::LoginRegisterWithPat,
            canonical: request.to_bytes().to_vec(),
        },
        Err(_) => Answer::Evict(EvictionReason::MalformedLogin),
    }
}

/// `resolve_partition_request_namespace` on the connection's shard (every failure answered
/// ResourceNotFound by `dispatch_partition_request`), then `convert_request_message` on the
/// partition's shard (every failure dropped without a reply).
fn send_messages(body: &[u8]) -> Answer {
    let Some(length) = body.get(..4) else {
        return Answer::Status(ErrorCode::ResourceNotFound);
    };
    let metadata_length = u32::from_le_bytes(length.try_into().unwrap()) as usize;
    let Some(metadata) = body.get(4..4 + metadata_length) else {
        return Answer::Status(ErrorCode::ResourceNotFound);
    };
    let Ok((header, consumed)) = SendMessagesHeader::decode(metadata) else {
        return Answer::Status(ErrorCode::ResourceNotFound);
    };
    if consumed != metadata_length {
        return Answer::Dropped;
    }
    let batch_bytes = &body[4 + metadata_length..];
    let Ok(batch) = decode_batch_slice(batch_bytes) else {
        return Answer::Dropped;
    };
    if batch.message_count() == 0
        || batch.message_count() != header.messages_count
        || batch_bytes.len() != batch.header.total_size()
    {
        return Answer::Dropped;
    }
    let mut canonical = (metadata_length as u32).to_le_bytes().to_vec();
    canonical.extend_from_slice(&header.to_bytes());
    canonical.extend_from_slice(batch_bytes);
    Answer::Accept {
        command: CommandCode::SendMessages,
        canonical,
    }
}

/// riptide: `Request::decode`, and for SendMessages the batch check the dispatcher runs next.
pub fn riptide(operation: u8, code: u32, body: &[u8]) -> Ours {
    let request = match Request::decode(operation, code, body) {
        Ok(request) => request,
        Err(error) => {
            let answer = match error.rejection() {
                Rejection::Status(code) => Answer::Status(code),
                Rejection::Evict(reason) => Answer::Evict(reason),
            };
            return Ours {
                answer,
                batch_error: None,
            };
        }
    };
    if let Request::SendMessages(SendMessages { batch, .. }) = &request {
        if let Err(error) = Batch::new_checked(batch) {
            return Ours {
                answer: Answer::Status(error.error_code()),
                batch_error: Some(error),
            };
        }
    }
    let mut canonical = Vec::new();
    request
        .encode(&mut canonical)
        .expect("a decoded request encodes");
    Ours {
        answer: Answer::Accept {
            command: request.command(),
            canonical,
        },
        batch_error: None,
    }
}

/// A deliberate difference between the two servers, with the reason it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Exception {
    /// GetClient and SyncConsumerGroup: Iggy answers an undecodable body with status 0 and an
    /// empty body, which its SDK reads as "no such client" / "no assignment"; a request no SDK
    /// sends gets a success that hides the error. riptide answers InvalidCommand, the code Iggy
    /// gives every other undecodable body (and, since this session, its poll and offset reads).
    EmptySuccessForMalformedRead,
    /// DeleteStream, PurgeStream, DeleteTopic, PurgeTopic, DeleteUser, UpdatePermissions,
    /// Create/DeleteConsumerGroup: Iggy decodes these bodies only when applying the committed
    /// operation, where a failure panics the metadata shard. riptide answers InvalidCommand
    /// before anything is written.
    PanicAtApply,
    /// FlushUnsavedBuffer: Iggy has no on-demand flush and answers FeatureUnavailable to every
    /// body; riptide flushes (decoding the body as Iggy's other commands do).
    FlushImplemented,
    /// SendMessages whose metadata section decodes but whose length field, batch or counts do
    /// not check out: Iggy drops it on the partition's shard without a reply (the SDK waits for
    /// its timeout); riptide answers with the error.
    AnsweredInsteadOfDropped,
    /// SendMessages batches Iggy stores but riptide refuses on content: an empty payload, a
    /// payload or user headers over the limits, user headers that are not a valid TLV block, an
    /// `offset_delta` that is not the message's index, a timestamp delta that overflows. Iggy's
    /// SDK never encodes those (its encoder enforces them), and riptide serves polls straight
    /// from the stored bytes, so it admits only batches every reader can decode.
    BatchContentChecked,
}

impl Exception {
    /// Every exception, for the coverage check and the documentation.
    pub const ALL: [Exception; 5] = [
        Exception::EmptySuccessForMalformedRead,
        Exception::PanicAtApply,
        Exception::FlushImplemented,
        Exception::AnsweredInsteadOfDropped,
        Exception::BatchContentChecked,
    ];
}

/// The exception that explains why `ours` differs from `iggy` for `command`, if one does.
pub fn exception(command: Option<CommandCode>, iggy: &Answer, ours: &Ours) -> Option<Exception> {
    use Answer as A;
    let command = command?;
    let invalid_command = A::Status(ErrorCode::InvalidCommand);
    match (iggy, &ours.answer) {
        (A::EmptyReply, answer) if *answer == invalid_command => {
            Some(Exception::EmptySuccessForMalformedRead)
        }
        (A::CommitThenPanic, answer) if *answer == invalid_command => Some(Exception::PanicAtApply),
        (A::Status(ErrorCode::FeatureUnavailable), A::Accept { .. })
            if command == CommandCode::FlushUnsavedBuffer =>
        {
            Some(Exception::FlushImplemented)
        }
        (A::Status(ErrorCode::FeatureUnavailable), answer)
            if command == CommandCode::FlushUnsavedBuffer && *answer == invalid_command =>
        {
            Some(Exception::FlushImplemented)
        }
        (A::Dropped, A::Status(_)) if command == CommandCode::SendMessages => {
            Some(Exception::AnsweredInsteadOfDropped)
        }
        (A::Accept { .. }, A::Status(_)) if content_checked(ours.batch_error) => {
            Some(Exception::BatchContentChecked)
        }
        _ => None,
    }
}

fn content_checked(error: Option<BatchError>) -> bool {
    matches!(
        error,
        Some(
            BatchError::EmptyPayload { .. }
                | BatchError::PayloadTooBig { .. }
                | BatchError::UserHeadersTooBig { .. }
                | BatchError::UserHeadersMalformed { .. }
                | BatchError::OffsetDelta { .. }
                | BatchError::TimestampDelta { .. }
        )
    )
}

/// Both servers on one request: `Ok(None)` when they agree, `Ok(Some(exception))` for a
/// documented difference, `Err` (with both answers) for any other.
pub fn compare(operation: u8, code: u32, body: &[u8]) -> Result<Option<Exception>, String> {
    let theirs = iggy(operation, code, body);
    let ours = riptide(operation, code, body);
    if theirs == ours.answer {
        return Ok(None);
    }
    let command = match Operation::from_u8(operation) {
        Some(Operation::NonReplicated) => CommandCode::from_u32(code),
        Some(Operation::Register) => Some(CommandCode::LoginRegister),
        Some(op) => op.command_code(),
        None => None,
    };
    exception(command, &theirs, &ours).map(Some).ok_or_else(|| {
        format!(
            "operation {operation} code {code} body {body:02x?}:\n  iggy:    {theirs:?}\n  riptide: {ours:?}"
        )
    })
}
