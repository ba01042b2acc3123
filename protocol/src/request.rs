//! Decoding request bodies: one [`Request`] variant per command of iggy 0.11.
//!
//! Bodies are decoded with `iggy_binary_protocol`'s own types (exact layouts for free), except
//! SendMessages, the hot path, which is a zero-copy [`SendMessages`] view over the body whose
//! batch is validated by [`crate::batch::Batch`].
//!
//! **What is accepted** is what an Iggy 0.11 server accepts (`docs/internals.md`, "Request
//! bodies"; proven by `tests/differential.rs`). Iggy decodes command bodies with
//! `WireDecode::decode_from`, which reads the fields it needs and ignores whatever follows, and
//! never reads the body of a body-less command; SDKs rely on it (the Node.js SDK's DeleteTopic
//! carries a legacy `partitions_count` after the two identifiers). So riptide ignores trailing
//! bytes too, except in SendMessages, where Iggy also insists that the metadata section and the
//! batch fill the body exactly. A body that does not decode is refused with the code Iggy's
//! server answers it with: InvalidCommand for every command but SendMessages (ResourceNotFound
//! for an undecodable metadata section) and Register (a MalformedLogin eviction).
//!
//! **Addressing** (iggy 0.11 `vsr::encode_request_header`): the SDK sends `NonReplicated` with
//! the command code in header bytes 196..200 for every command without a replicated operation;
//! `Register` for both login shapes (password first, then PAT); `Logout` for logout; and the
//! replicated operation alone (bytes 196..200 zero) for the rest. [`Request::decode`] accepts
//! exactly that, and refuses the rest as Iggy's server does: a replicated command sent as
//! NonReplicated with FeatureUnavailable, an unknown code with InvalidCommand.

use crate::codes::{CommandCode, ErrorCode, EvictionReason, Operation};
use crate::constants::BATCH_HEADER_SIZE_BYTES;
use crate::login::{self, Login, LoginError};
use bytes::BytesMut;
use iggy_binary_protocol::requests::consumer_groups::*;
use iggy_binary_protocol::requests::consumer_offsets::*;
use iggy_binary_protocol::requests::messages::{FlushUnsavedBufferRequest, PollMessagesRequest};
use iggy_binary_protocol::requests::partitions::{
    CreatePartitionsRequest, DeletePartitionsRequest,
};
use iggy_binary_protocol::requests::personal_access_tokens::{
    CreatePersonalAccessTokenRequest, DeletePersonalAccessTokenRequest,
};
use iggy_binary_protocol::requests::segments::DeleteSegmentsRequest;
use iggy_binary_protocol::requests::streams::*;
use iggy_binary_protocol::requests::system::{
    AttachConsumerSessionRequest, DescribeOptionsRequest, GetClientRequest, GetSnapshotRequest,
};
use iggy_binary_protocol::requests::topics::*;
use iggy_binary_protocol::requests::users::*;
use iggy_binary_protocol::{WireDecode, WireEncode, WireError};

/// What a server does with a request it cannot accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Reply with this status and an empty body; the connection stays usable.
    Status(ErrorCode),
    /// Send an eviction with this reason; the session is over.
    Evict(EvictionReason),
}

/// Why a request body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The operation byte is unknown, reserved or server-internal.
    #[error("operation {0} not allowed")]
    Operation(u8),
    /// NonReplicated with an unknown code, or with a login or logout code (those travel as
    /// Register and Logout).
    #[error("unknown command code {0}")]
    UnknownCommand(u32),
    /// NonReplicated with the code of a replicated command (iggy answers FeatureUnavailable).
    #[error("replicated command code {0} sent as non-replicated")]
    ReplicatedAsNonReplicated(u32),
    /// Legacy login codes 38/44, refused by a 0.11 server.
    #[error("legacy login command {0}")]
    LegacyLogin(u32),
    /// The Register body did not decode or failed the version gate.
    #[error("login: {0}")]
    Login(#[from] LoginError),
    /// The body does not decode for its command.
    #[error("malformed {command:?} body: {reason}")]
    Body {
        /// The command.
        command: CommandCode,
        /// iggy's decode error.
        reason: WireError,
    },
    /// The SendMessages prefix is malformed.
    #[error("malformed send_messages: {0}")]
    SendMessages(#[from] SendMessagesError),
}

impl DecodeError {
    /// The status or eviction the server answers with.
    pub fn rejection(&self) -> Rejection {
        match self {
            Self::Operation(_) => Rejection::Evict(EvictionReason::InvalidRequestOperation),
            Self::UnknownCommand(_) => Rejection::Status(ErrorCode::InvalidCommand),
            Self::ReplicatedAsNonReplicated(_) => Rejection::Status(ErrorCode::FeatureUnavailable),
            Self::LegacyLogin(_) => Rejection::Evict(EvictionReason::MalformedLogin),
            Self::Login(error) => error.rejection(),
            // Every decode site of Iggy's server maps a body that does not decode to
            // InvalidCommand (`map_err(|_| IggyError::InvalidCommand)`).
            Self::Body { .. } => Rejection::Status(ErrorCode::InvalidCommand),
            Self::SendMessages(error) => Rejection::Status(error.error_code()),
        }
    }
}

/// A zero-copy identifier: `[kind u8][len u8][value]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identifier<'a> {
    /// kind 1, 4-byte LE value.
    Numeric(u32),
    /// kind 2, 1..255 bytes of UTF-8.
    Name(&'a str),
}

/// A zero-copy partitioning: `[kind u8][len u8][value]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partitioning<'a> {
    /// kind 1: the server round-robins.
    Balanced,
    /// kind 2: this partition.
    PartitionId(u32),
    /// kind 3: `XxHash32(seed 0, key) % partitions_count`.
    MessagesKey(&'a [u8]),
}

/// Why a SendMessages body was refused before its batch was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendMessagesError {
    /// Shorter than `metadata_length`, or than the `metadata_length` field itself.
    #[error("truncated")]
    Truncated,
    /// Bad identifier kind, length or UTF-8 in the metadata section.
    #[error("invalid identifier")]
    Identifier,
    /// Bad partitioning kind or length in the metadata section.
    #[error("invalid partitioning")]
    Partitioning,
    /// The metadata section ends before `messages_count`.
    #[error("metadata section ends before messages_count")]
    MessagesCountTruncated,
    /// `metadata_length` is longer than the fields it announces.
    #[error("metadata_length mismatch")]
    MetadataLength,
    /// Fewer than 256 bytes of batch header after the metadata section.
    #[error("batch header truncated")]
    BatchTruncated,
    /// `messages_count` disagrees with the batch header.
    #[error("messages_count mismatch")]
    MessagesCount,
}

impl SendMessagesError {
    /// The iggy error code to reply with.
    ///
    /// Iggy 0.11's server resolves the partition from the metadata section before anything else
    /// and answers every failure of that step with ResourceNotFound, so an undecodable section
    /// gets that code here too. What follows it (the length check, the batch) Iggy checks on the
    /// owning shard, computing InvalidCommand; it then drops the request without an answer,
    /// which riptide does not copy (`docs/internals.md`, exceptions): it answers that code.
    pub fn error_code(self) -> ErrorCode {
        match self {
            Self::Truncated
            | Self::Identifier
            | Self::Partitioning
            | Self::MessagesCountTruncated => ErrorCode::ResourceNotFound,
            Self::MetadataLength | Self::BatchTruncated | Self::MessagesCount => {
                ErrorCode::InvalidCommand
            }
        }
    }
}

/// Reads `[kind][len][value]` at `pos`, returning (kind, value, next position).
fn tlv(body: &[u8], pos: usize) -> Option<(u8, &[u8], usize)> {
    let kind = *body.get(pos)?;
    let len = usize::from(*body.get(pos + 1)?);
    let value = body.get(pos + 2..pos + 2 + len)?;
    Some((kind, value, pos + 2 + len))
}

impl<'a> Identifier<'a> {
    /// Decodes an identifier at the start of `bytes`; returns it and its encoded length.
    pub fn parse(bytes: &'a [u8]) -> Option<(Self, usize)> {
        let (kind, value, end) = tlv(bytes, 0)?;
        let id = match kind {
            1 if value.len() == 4 => Self::Numeric(u32::from_le_bytes(value.try_into().ok()?)),
            2 if !value.is_empty() => Self::Name(core::str::from_utf8(value).ok()?),
            _ => return None,
        };
        Some((id, end))
    }

    /// Appends the encoding.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Self::Numeric(id) => {
                out.extend_from_slice(&[1, 4]);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Self::Name(name) => {
                let bytes = &name.as_bytes()[..name.len().min(255)];
                out.extend_from_slice(&[2, bytes.len() as u8]);
                out.extend_from_slice(bytes);
            }
        }
    }
}

impl<'a> Partitioning<'a> {
    /// Decodes a partitioning at the start of `bytes`; returns it and its encoded length.
    pub fn parse(bytes: &'a [u8]) -> Option<(Self, usize)> {
        let (kind, value, end) = tlv(bytes, 0)?;
        let partitioning = match kind {
            1 if value.is_empty() => Self::Balanced,
            2 if value.len() == 4 => Self::PartitionId(u32::from_le_bytes(value.try_into().ok()?)),
            3 if !value.is_empty() => Self::MessagesKey(value),
            _ => return None,
        };
        Some((partitioning, end))
    }

    /// The 0-based partition a messages key maps to, as iggy computes it:
    /// `XxHash32(seed 0, key) % partitions_count`. `None` when the topic has no partitions.
    pub fn messages_key_partition(key: &[u8], partitions_count: u32) -> Option<u32> {
        let hash = twox_hash::XxHash32::oneshot(0, key);
        hash.checked_rem(partitions_count)
    }

    /// Appends the encoding.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Self::Balanced => out.extend_from_slice(&[1, 0]),
            Self::PartitionId(id) => {
                out.extend_from_slice(&[2, 4]);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Self::MessagesKey(key) => {
                let key = &key[..key.len().min(255)];
                out.extend_from_slice(&[3, key.len() as u8]);
                out.extend_from_slice(key);
            }
        }
    }
}

/// Zero-copy view of a SendMessages body:
/// `[metadata_length u32][stream][topic][partitioning][messages_count u32][batch]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendMessages<'a> {
    /// Target stream.
    pub stream: Identifier<'a>,
    /// Target topic.
    pub topic: Identifier<'a>,
    /// How to pick the partition.
    pub partitioning: Partitioning<'a>,
    /// Declared message count (checked equal to the batch header's).
    pub messages_count: u32,
    /// The batch (header + frames), not yet validated: pass it to [`crate::batch::Batch`].
    pub batch: &'a [u8],
}

impl<'a> SendMessages<'a> {
    /// Parses the metadata section; the batch is only located, not validated.
    ///
    /// As in Iggy: the fields are read inside the `metadata_length` bytes announced, which they
    /// must fill exactly, and the batch is everything after them (its own length is checked by
    /// [`crate::batch::Batch`], so no byte of the body goes unchecked).
    ///
    /// # Errors
    /// [`SendMessagesError`] for a malformed metadata section or a count mismatch.
    pub fn parse(body: &'a [u8]) -> Result<Self, SendMessagesError> {
        let metadata_length = body
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or(SendMessagesError::Truncated)?;
        let batch_at = usize::try_from(metadata_length)
            .ok()
            .and_then(|length| length.checked_add(4))
            .ok_or(SendMessagesError::Truncated)?;
        let metadata = body.get(4..batch_at).ok_or(SendMessagesError::Truncated)?;
        let (stream, a) = Identifier::parse(metadata).ok_or(SendMessagesError::Identifier)?;
        let rest = metadata.get(a..).unwrap_or_default();
        let (topic, b) = Identifier::parse(rest).ok_or(SendMessagesError::Identifier)?;
        let rest = rest.get(b..).unwrap_or_default();
        let (partitioning, c) = Partitioning::parse(rest).ok_or(SendMessagesError::Partitioning)?;
        let count_at = a + b + c;
        let messages_count = metadata
            .get(count_at..count_at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or(SendMessagesError::MessagesCountTruncated)?;
        if metadata.len() != count_at + 4 {
            return Err(SendMessagesError::MetadataLength);
        }
        let batch = body.get(batch_at..).unwrap_or_default();
        let header = batch
            .get(..BATCH_HEADER_SIZE_BYTES)
            .ok_or(SendMessagesError::BatchTruncated)?;
        if crate::batch::BatchHeader::new_checked(header)
            .map(|h| h.message_count())
            .ok()
            != Some(messages_count)
        {
            return Err(SendMessagesError::MessagesCount);
        }
        Ok(Self {
            stream,
            topic,
            partitioning,
            messages_count,
            batch,
        })
    }

    /// Client side: appends the metadata section of a SendMessages body (everything before the
    /// batch) for `messages_count` messages.
    pub fn emit_prefix(
        stream: Identifier<'_>,
        topic: Identifier<'_>,
        partitioning: Partitioning<'_>,
        messages_count: u32,
        out: &mut Vec<u8>,
    ) {
        let length_at = out.len();
        out.extend_from_slice(&[0; 4]);
        stream.emit(out);
        topic.emit(out);
        partitioning.emit(out);
        out.extend_from_slice(&messages_count.to_le_bytes());
        let metadata_length = (out.len() - length_at - 4) as u32;
        out[length_at..length_at + 4].copy_from_slice(&metadata_length.to_le_bytes());
    }
}

/// Every request a client can send, decoded.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Request<'a> {
    Ping,
    GetStats,
    GetSnapshot(GetSnapshotRequest),
    GetClusterMetadata,
    DescribeOptions(DescribeOptionsRequest),
    AttachConsumerSession(AttachConsumerSessionRequest),
    GetMe,
    GetClient(GetClientRequest),
    GetClients,
    GetUser(GetUserRequest),
    GetUsers,
    CreateUser(CreateUserRequest),
    DeleteUser(DeleteUserRequest),
    UpdateUser(UpdateUserRequest),
    UpdatePermissions(UpdatePermissionsRequest),
    ChangePassword(ChangePasswordRequest),
    /// Register with username and password (code 40).
    LoginRegister(Login),
    /// Register with a personal access token (code 45).
    LoginRegisterWithPat(Login),
    Logout,
    GetPersonalAccessTokens,
    CreatePersonalAccessToken(CreatePersonalAccessTokenRequest),
    DeletePersonalAccessToken(DeletePersonalAccessTokenRequest),
    PollMessages(PollMessagesRequest),
    SendMessages(SendMessages<'a>),
    FlushUnsavedBuffer(FlushUnsavedBufferRequest),
    /// Cluster routing (103): the poll request the SDK wants a route for.
    GetPollRouting(PollMessagesRequest),
    /// Cluster routing (104): a poll sent to the partition primary.
    PollMessagesOnPrimary(PollMessagesRequest),
    GetConsumerOffset(GetConsumerOffsetRequest),
    StoreConsumerOffset(StoreConsumerOffsetRequest),
    DeleteConsumerOffset(DeleteConsumerOffsetRequest),
    /// Cluster routing (123): the consumer offset the SDK wants a route for.
    GetConsumerOffsetRouting(GetConsumerOffsetRequest),
    GetStream(GetStreamRequest),
    GetStreams,
    CreateStream(CreateStreamRequest),
    DeleteStream(DeleteStreamRequest),
    UpdateStream(UpdateStreamRequest),
    PurgeStream(PurgeStreamRequest),
    GetTopic(GetTopicRequest),
    GetTopics(GetTopicsRequest),
    CreateTopic(CreateTopicRequest),
    DeleteTopic(DeleteTopicRequest),
    UpdateTopic(UpdateTopicRequest),
    PurgeTopic(PurgeTopicRequest),
    CreatePartitions(CreatePartitionsRequest),
    DeletePartitions(DeletePartitionsRequest),
    DeleteSegments(DeleteSegmentsRequest),
    GetConsumerGroup(GetConsumerGroupRequest),
    GetConsumerGroups(GetConsumerGroupsRequest),
    CreateConsumerGroup(CreateConsumerGroupRequest),
    DeleteConsumerGroup(DeleteConsumerGroupRequest),
    JoinConsumerGroup(JoinConsumerGroupRequest),
    LeaveConsumerGroup(LeaveConsumerGroupRequest),
    SyncConsumerGroup(SyncConsumerGroupRequest),
}

/// Whether iggy's command table lists `code` as replicated (it has an operation of its own).
fn is_replicated_code(code: u32) -> bool {
    iggy_binary_protocol::dispatch::lookup_command(code).is_some_and(|meta| meta.is_replicated())
}

/// Decodes `T` from the start of a body and ignores what follows it, as Iggy's server does
/// (`WireDecode::decode_from`): a client may send fields after the ones it needs (the Node.js
/// SDK's DeleteTopic carries a legacy `partitions_count`).
fn leading<T: WireDecode>(command: CommandCode, body: &[u8]) -> Result<T, DecodeError> {
    T::decode_from(body).map_err(|reason| DecodeError::Body { command, reason })
}

impl<'a> Request<'a> {
    /// Decodes the body of a request whose header carried `operation` and `command_code`.
    ///
    /// # Errors
    /// [`DecodeError`]; [`DecodeError::rejection`] says how to answer.
    pub fn decode(operation: u8, command_code: u32, body: &'a [u8]) -> Result<Self, DecodeError> {
        let op = Operation::from_u8(operation)
            .filter(|op| op.is_client_allowed())
            .ok_or(DecodeError::Operation(operation))?;
        let command = match op {
            Operation::Register => return Self::decode_register(body),
            Operation::NonReplicated => match CommandCode::from_u32(command_code) {
                Some(CommandCode::LoginUser | CommandCode::LoginWithPersonalAccessToken) => {
                    return Err(DecodeError::LegacyLogin(command_code));
                }
                Some(code) if code.operation() == Operation::NonReplicated => code,
                _ if is_replicated_code(command_code) => {
                    return Err(DecodeError::ReplicatedAsNonReplicated(command_code));
                }
                _ => return Err(DecodeError::UnknownCommand(command_code)),
            },
            _ => op.command_code().ok_or(DecodeError::Operation(operation))?,
        };
        Self::decode_command(command, body)
    }

    /// Register: the password shape first, then the PAT shape (as the iggy server does).
    fn decode_register(body: &'a [u8]) -> Result<Self, DecodeError> {
        match login::parse_register(body)? {
            login @ Login::Password { .. } => Ok(Self::LoginRegister(login)),
            login @ Login::Token { .. } => Ok(Self::LoginRegisterWithPat(login)),
        }
    }

    /// The command this request is.
    pub fn command(&self) -> CommandCode {
        request_command(self)
    }

    /// Body-less commands never look at their body (Iggy's server does not read it either).
    fn decode_command(command: CommandCode, body: &'a [u8]) -> Result<Self, DecodeError> {
        use CommandCode as C;
        Ok(match command {
            C::Ping => Self::Ping,
            C::GetStats => Self::GetStats,
            C::GetSnapshotFile => Self::GetSnapshot(leading(command, body)?),
            C::GetClusterMetadata => Self::GetClusterMetadata,
            C::DescribeOptions => Self::DescribeOptions(leading(command, body)?),
            C::AttachConsumerSession => Self::AttachConsumerSession(leading(command, body)?),
            C::GetMe => Self::GetMe,
            C::GetClient => Self::GetClient(leading(command, body)?),
            C::GetClients => Self::GetClients,
            C::GetUser => Self::GetUser(leading(command, body)?),
            C::GetUsers => Self::GetUsers,
            C::CreateUser => Self::CreateUser(leading(command, body)?),
            C::DeleteUser => Self::DeleteUser(leading(command, body)?),
            C::UpdateUser => Self::UpdateUser(leading(command, body)?),
            C::UpdatePermissions => Self::UpdatePermissions(leading(command, body)?),
            C::ChangePassword => Self::ChangePassword(leading(command, body)?),
            C::LogoutUser => Self::Logout,
            C::GetPersonalAccessTokens => Self::GetPersonalAccessTokens,
            C::CreatePersonalAccessToken => {
                Self::CreatePersonalAccessToken(leading(command, body)?)
            }
            C::DeletePersonalAccessToken => {
                Self::DeletePersonalAccessToken(leading(command, body)?)
            }
            C::PollMessages => Self::PollMessages(leading(command, body)?),
            C::SendMessages => Self::SendMessages(SendMessages::parse(body)?),
            C::FlushUnsavedBuffer => Self::FlushUnsavedBuffer(leading(command, body)?),
            C::GetPollRouting => Self::GetPollRouting(leading(command, body)?),
            C::PollMessagesOnPrimary => Self::PollMessagesOnPrimary(leading(command, body)?),
            C::GetConsumerOffset => Self::GetConsumerOffset(leading(command, body)?),
            C::StoreConsumerOffset => Self::StoreConsumerOffset(leading(command, body)?),
            C::DeleteConsumerOffset => Self::DeleteConsumerOffset(leading(command, body)?),
            C::GetConsumerOffsetRouting => Self::GetConsumerOffsetRouting(leading(command, body)?),
            _ => Self::decode_resources(command, body)?,
        })
    }

    /// Streams, topics, partitions, segments and consumer groups.
    fn decode_resources(command: CommandCode, body: &'a [u8]) -> Result<Self, DecodeError> {
        use CommandCode as C;
        Ok(match command {
            C::GetStream => Self::GetStream(leading(command, body)?),
            C::GetStreams => Self::GetStreams,
            C::CreateStream => Self::CreateStream(leading(command, body)?),
            C::DeleteStream => Self::DeleteStream(leading(command, body)?),
            C::UpdateStream => Self::UpdateStream(leading(command, body)?),
            C::PurgeStream => Self::PurgeStream(leading(command, body)?),
            C::GetTopic => Self::GetTopic(leading(command, body)?),
            C::GetTopics => Self::GetTopics(leading(command, body)?),
            C::CreateTopic => Self::CreateTopic(leading(command, body)?),
            C::DeleteTopic => Self::DeleteTopic(leading(command, body)?),
            C::UpdateTopic => Self::UpdateTopic(leading(command, body)?),
            C::PurgeTopic => Self::PurgeTopic(leading(command, body)?),
            C::CreatePartitions => Self::CreatePartitions(leading(command, body)?),
            C::DeletePartitions => Self::DeletePartitions(leading(command, body)?),
            C::DeleteSegments => Self::DeleteSegments(leading(command, body)?),
            C::GetConsumerGroup => Self::GetConsumerGroup(leading(command, body)?),
            C::GetConsumerGroups => Self::GetConsumerGroups(leading(command, body)?),
            C::CreateConsumerGroup => Self::CreateConsumerGroup(leading(command, body)?),
            C::DeleteConsumerGroup => Self::DeleteConsumerGroup(leading(command, body)?),
            C::JoinConsumerGroup => Self::JoinConsumerGroup(leading(command, body)?),
            C::LeaveConsumerGroup => Self::LeaveConsumerGroup(leading(command, body)?),
            C::SyncConsumerGroup => Self::SyncConsumerGroup(leading(command, body)?),
            // Logins only arrive as operation Register (`decode` routes those before here).
            other => return Err(DecodeError::UnknownCommand(other.as_u32())),
        })
    }
}

impl Request<'_> {
    /// The operation byte the iggy SDK puts in the header for this request.
    pub fn operation(&self) -> Operation {
        self.command().operation()
    }

    /// Client side: appends the body exactly as the iggy 0.11 SDK encodes it.
    ///
    /// # Errors
    /// [`WireError::Validation`] when a login carries an empty or over-long SDK name/version.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let mut buf = BytesMut::new();
        match self {
            Self::SendMessages(send) => {
                SendMessages::emit_prefix(
                    send.stream,
                    send.topic,
                    send.partitioning,
                    send.messages_count,
                    out,
                );
                out.extend_from_slice(send.batch);
                return Ok(());
            }
            Self::LoginRegister(login) | Self::LoginRegisterWithPat(login) => {
                login::encode_register(login, &mut buf)?;
            }
            _ => self.encode_typed(&mut buf),
        }
        out.extend_from_slice(&buf);
        Ok(())
    }

    fn encode_typed(&self, buf: &mut BytesMut) {
        let typed: &dyn WireEncodeDyn = match self {
            Self::GetSnapshot(r) => r,
            Self::DescribeOptions(r) => r,
            Self::AttachConsumerSession(r) => r,
            Self::GetClient(r) => r,
            Self::GetUser(r) => r,
            Self::CreateUser(r) => r,
            Self::DeleteUser(r) => r,
            Self::UpdateUser(r) => r,
            Self::UpdatePermissions(r) => r,
            Self::ChangePassword(r) => r,
            Self::CreatePersonalAccessToken(r) => r,
            Self::DeletePersonalAccessToken(r) => r,
            Self::PollMessages(r) | Self::GetPollRouting(r) | Self::PollMessagesOnPrimary(r) => r,
            Self::FlushUnsavedBuffer(r) => r,
            Self::GetConsumerOffset(r) | Self::GetConsumerOffsetRouting(r) => r,
            Self::StoreConsumerOffset(r) => r,
            Self::DeleteConsumerOffset(r) => r,
            Self::GetStream(r) => r,
            Self::CreateStream(r) => r,
            Self::DeleteStream(r) => r,
            Self::UpdateStream(r) => r,
            Self::PurgeStream(r) => r,
            Self::GetTopic(r) => r,
            Self::GetTopics(r) => r,
            Self::CreateTopic(r) => r,
            Self::DeleteTopic(r) => r,
            Self::UpdateTopic(r) => r,
            Self::PurgeTopic(r) => r,
            Self::CreatePartitions(r) => r,
            Self::DeletePartitions(r) => r,
            Self::DeleteSegments(r) => r,
            Self::GetConsumerGroup(r) => r,
            Self::GetConsumerGroups(r) => r,
            Self::CreateConsumerGroup(r) => r,
            Self::DeleteConsumerGroup(r) => r,
            Self::JoinConsumerGroup(r) => r,
            Self::LeaveConsumerGroup(r) => r,
            Self::SyncConsumerGroup(r) => r,
            // Body-less commands; logins and sends are encoded by `encode`.
            _ => return,
        };
        typed.encode_into(buf);
    }
}

/// Object-safe view of `WireEncode` so one match can pick the body to encode.
trait WireEncodeDyn {
    fn encode_into(&self, buf: &mut BytesMut);
}

impl<T: WireEncode> WireEncodeDyn for T {
    fn encode_into(&self, buf: &mut BytesMut) {
        self.encode(buf);
    }
}

fn request_command(request: &Request<'_>) -> CommandCode {
    use CommandCode as C;
    use Request as R;
    match request {
        R::Ping => C::Ping,
        R::GetStats => C::GetStats,
        R::GetSnapshot(_) => C::GetSnapshotFile,
        R::GetClusterMetadata => C::GetClusterMetadata,
        R::DescribeOptions(_) => C::DescribeOptions,
        R::AttachConsumerSession(_) => C::AttachConsumerSession,
        R::GetMe => C::GetMe,
        R::GetClient(_) => C::GetClient,
        R::GetClients => C::GetClients,
        R::GetUser(_) => C::GetUser,
        R::GetUsers => C::GetUsers,
        R::CreateUser(_) => C::CreateUser,
        R::DeleteUser(_) => C::DeleteUser,
        R::UpdateUser(_) => C::UpdateUser,
        R::UpdatePermissions(_) => C::UpdatePermissions,
        R::ChangePassword(_) => C::ChangePassword,
        R::LoginRegister(_) => C::LoginRegister,
        R::LoginRegisterWithPat(_) => C::LoginRegisterWithPat,
        R::Logout => C::LogoutUser,
        R::GetPersonalAccessTokens => C::GetPersonalAccessTokens,
        R::CreatePersonalAccessToken(_) => C::CreatePersonalAccessToken,
        R::DeletePersonalAccessToken(_) => C::DeletePersonalAccessToken,
        R::PollMessages(_) => C::PollMessages,
        R::SendMessages(_) => C::SendMessages,
        R::FlushUnsavedBuffer(_) => C::FlushUnsavedBuffer,
        R::GetPollRouting(_) => C::GetPollRouting,
        R::PollMessagesOnPrimary(_) => C::PollMessagesOnPrimary,
        R::GetConsumerOffset(_) => C::GetConsumerOffset,
        R::StoreConsumerOffset(_) => C::StoreConsumerOffset,
        R::DeleteConsumerOffset(_) => C::DeleteConsumerOffset,
        R::GetConsumerOffsetRouting(_) => C::GetConsumerOffsetRouting,
        R::GetStream(_) => C::GetStream,
        R::GetStreams => C::GetStreams,
        R::CreateStream(_) => C::CreateStream,
        R::DeleteStream(_) => C::DeleteStream,
        R::UpdateStream(_) => C::UpdateStream,
        R::PurgeStream(_) => C::PurgeStream,
        R::GetTopic(_) => C::GetTopic,
        R::GetTopics(_) => C::GetTopics,
        R::CreateTopic(_) => C::CreateTopic,
        R::DeleteTopic(_) => C::DeleteTopic,
        R::UpdateTopic(_) => C::UpdateTopic,
        R::PurgeTopic(_) => C::PurgeTopic,
        R::CreatePartitions(_) => C::CreatePartitions,
        R::DeletePartitions(_) => C::DeletePartitions,
        R::DeleteSegments(_) => C::DeleteSegments,
        R::GetConsumerGroup(_) => C::GetConsumerGroup,
        R::GetConsumerGroups(_) => C::GetConsumerGroups,
        R::CreateConsumerGroup(_) => C::CreateConsumerGroup,
        R::DeleteConsumerGroup(_) => C::DeleteConsumerGroup,
        R::JoinConsumerGroup(_) => C::JoinConsumerGroup,
        R::LeaveConsumerGroup(_) => C::LeaveConsumerGroup,
        R::SyncConsumerGroup(_) => C::SyncConsumerGroup,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batch, BatchBuilder};
    use bytes::BytesMut;
    use iggy_binary_protocol::requests::messages::{RawMessage, SendMessagesEncoder};
    use iggy_binary_protocol::{WireIdentifier, WirePartitioning};

    fn iggy_send(partitioning: &WirePartitioning, stream: &WireIdentifier) -> Vec<u8> {
        let raw = [RawMessage {
            id: 5,
            origin_timestamp: 10,
            headers: None,
            payload: b"hello",
        }];
        let mut buf = BytesMut::new();
        let topic = WireIdentifier::numeric(0);
        SendMessagesEncoder::encode(&mut buf, stream, &topic, partitioning, &raw).unwrap();
        buf.to_vec()
    }

    #[test]
    fn send_messages_view_over_iggys_encoding() {
        let key = WirePartitioning::MessagesKey(b"user-1".to_vec());
        let stream = WireIdentifier::named("orders").unwrap();
        let body = iggy_send(&key, &stream);
        let Request::SendMessages(view) = Request::decode(160, 0, &body).unwrap() else {
            panic!("expected SendMessages");
        };
        assert_eq!(view.stream, Identifier::Name("orders"));
        assert_eq!(view.topic, Identifier::Numeric(0));
        assert_eq!(view.partitioning, Partitioning::MessagesKey(b"user-1"));
        assert_eq!(view.messages_count, 1);
        let batch = Batch::new_checked(view.batch).unwrap();
        assert_eq!(batch.messages().next().unwrap().payload, b"hello");
    }

    #[test]
    fn send_messages_prefix_plus_builder_equals_iggys_body() {
        for partitioning in [
            (WirePartitioning::Balanced, Partitioning::Balanced),
            (
                WirePartitioning::PartitionId(3),
                Partitioning::PartitionId(3),
            ),
        ] {
            let expected = iggy_send(&partitioning.0, &WireIdentifier::numeric(1));
            let mut body = Vec::new();
            let (stream, topic) = (Identifier::Numeric(1), Identifier::Numeric(0));
            SendMessages::emit_prefix(stream, topic, partitioning.1, 1, &mut body);
            let mut builder = BatchBuilder::new();
            builder.push(5, b"hello", b"", 10).unwrap();
            body.extend_from_slice(builder.finish().unwrap());
            assert_eq!(body, expected);
        }
    }

    #[test]
    fn send_messages_refusals() {
        let body = iggy_send(&WirePartitioning::Balanced, &WireIdentifier::numeric(1));
        let decode = |body: &[u8]| SendMessages::parse(body).unwrap_err();
        assert_eq!(decode(&body[..3]), SendMessagesError::Truncated);
        let mut wrong_length = body.clone();
        wrong_length[0] += 1;
        assert_eq!(decode(&wrong_length), SendMessagesError::MetadataLength);
        let mut short_length = body.clone();
        short_length[0] -= 1;
        assert_eq!(
            decode(&short_length),
            SendMessagesError::MessagesCountTruncated
        );
        let mut past_the_body = body.clone();
        past_the_body[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&past_the_body), SendMessagesError::Truncated);
        let mut wrong_kind = body.clone();
        wrong_kind[4] = 3;
        assert_eq!(decode(&wrong_kind), SendMessagesError::Identifier);
        let mut wrong_partitioning = body.clone();
        wrong_partitioning[16] = 9;
        assert_eq!(decode(&wrong_partitioning), SendMessagesError::Partitioning);
        let mut wrong_count = body.clone();
        wrong_count[18] = 2;
        assert_eq!(decode(&wrong_count), SendMessagesError::MessagesCount);
        assert_eq!(decode(&body[..100]), SendMessagesError::BatchTruncated);
        // Iggy's codes: its partition resolution answers ResourceNotFound for a metadata section
        // that does not decode; the rest is InvalidCommand.
        assert_eq!(
            decode(&wrong_kind).error_code(),
            ErrorCode::ResourceNotFound
        );
        assert_eq!(decode(&wrong_count).error_code(), ErrorCode::InvalidCommand);
    }

    /// The exact bytes of Apache Iggy's Node.js SDK DeleteTopic (`delete-topic.command.ts`):
    /// stream and topic identifiers, then a legacy `partitions_count` the server ignores.
    #[test]
    fn node_sdk_delete_topic_carries_a_trailing_partitions_count() {
        let body = [
            1, 4, 3, 0, 0, 0, 2, 5, b't', b'o', b'p', b'i', b'c', 7, 0, 0, 0,
        ];
        let request = Request::decode(Operation::DeleteTopic as u8, 0, &body).unwrap();
        let Request::DeleteTopic(delete) = request else {
            panic!("expected DeleteTopic, got {request:?}");
        };
        assert_eq!(delete.stream_id, WireIdentifier::numeric(3));
        assert_eq!(delete.topic_id, WireIdentifier::named("topic").unwrap());
    }

    #[test]
    fn trailing_bytes_are_ignored_and_body_less_commands_ignore_their_body() {
        assert_eq!(Request::decode(2, 1, &[9, 9, 9]), Ok(Request::Ping));
        assert_eq!(Request::decode(2, 10, &[0]), Ok(Request::GetStats));
        assert_eq!(Request::decode(3, 0, &[1, 2]), Ok(Request::Logout));
        let get_stream = [1, 4, 0, 0, 0, 0, 0xff];
        assert!(matches!(
            Request::decode(2, 200, &get_stream),
            Ok(Request::GetStream(_))
        ));
        // A body that does not decode gets InvalidCommand, as from Iggy's server.
        assert_eq!(
            Request::decode(2, 200, &get_stream[..5])
                .unwrap_err()
                .rejection(),
            Rejection::Status(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn messages_key_partition_is_xxhash32_seed_0_modulo_partitions() {
        // XxHash32 of the empty input with seed 0 is the published test vector 0x02CC5D05.
        assert_eq!(twox_hash::XxHash32::oneshot(0, b""), 0x02CC_5D05);
        assert_eq!(
            Partitioning::messages_key_partition(b"", 7),
            Some(0x02CC_5D05 % 7)
        );
        let key = b"user-1";
        let expected = twox_hash::XxHash32::oneshot(0, key) % 24;
        assert_eq!(
            Partitioning::messages_key_partition(key, 24),
            Some(expected)
        );
        assert_eq!(Partitioning::messages_key_partition(key, 0), None);
    }

    #[test]
    fn addressing_follows_the_sdk() {
        assert!(matches!(Request::decode(2, 1, &[]), Ok(Request::Ping)));
        // A replicated command sent as NonReplicated is not what the SDK does; Iggy's server
        // answers it FeatureUnavailable.
        assert_eq!(
            Request::decode(2, 202, &[]).unwrap_err(),
            DecodeError::ReplicatedAsNonReplicated(202)
        );
        assert_eq!(
            Request::decode(2, 202, &[]).unwrap_err().rejection(),
            Rejection::Status(ErrorCode::FeatureUnavailable)
        );
        // Login and logout codes are not replicated in iggy's table, but travel as Register
        // and Logout: unknown as non-replicated commands.
        assert_eq!(
            Request::decode(2, 39, &[]).unwrap_err(),
            DecodeError::UnknownCommand(39)
        );
        assert_eq!(
            Request::decode(2, 9999, &[]).unwrap_err().rejection(),
            Rejection::Status(ErrorCode::InvalidCommand)
        );
        assert_eq!(
            Request::decode(2, 38, &[]).unwrap_err().rejection(),
            Rejection::Evict(EvictionReason::MalformedLogin)
        );
        assert_eq!(
            Request::decode(0, 1, &[]).unwrap_err().rejection(),
            Rejection::Evict(EvictionReason::InvalidRequestOperation)
        );
        assert_eq!(
            Request::decode(64, 0, &[]).unwrap_err(),
            DecodeError::Operation(64)
        );
        assert!(matches!(Request::decode(3, 0, &[]), Ok(Request::Logout)));
    }
}
