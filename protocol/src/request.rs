//! Decoding request bodies: one [`Request`] variant per command of iggy 0.11.
//!
//! Bodies are decoded with `iggy_binary_protocol`'s own types (exact layouts for free), except
//! SendMessages, the hot path, which is a zero-copy [`SendMessages`] view over the body whose
//! batch is validated by [`crate::batch::Batch`].
//!
//! **Addressing** (iggy 0.11 `vsr::encode_request_header`): the SDK sends `NonReplicated` with
//! the command code in header bytes 196..200 for every command without a replicated operation;
//! `Register` for both login shapes (password first, then PAT); `Logout` for logout; and the
//! replicated operation alone (bytes 196..200 zero) for the rest. [`Request::decode`] accepts
//! exactly that: a replicated command sent as NonReplicated is refused as InvalidCommand.

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
    /// NonReplicated with an unknown code, or with a code the SDK sends replicated.
    #[error("unknown command code {0}")]
    UnknownCommand(u32),
    /// Legacy login codes 38/44, refused by a 0.11 server.
    #[error("legacy login command {0}")]
    LegacyLogin(u32),
    /// The Register body did not decode or failed the version gate.
    #[error("login: {0}")]
    Login(#[from] LoginError),
    /// The body is malformed for its command.
    #[error("malformed {command:?} body: {reason}")]
    Body {
        /// The command.
        command: CommandCode,
        /// iggy's decode error.
        reason: WireError,
    },
    /// Bytes left over after the body decoded.
    #[error("{command:?} body has {extra} trailing bytes")]
    TrailingBytes {
        /// The command.
        command: CommandCode,
        /// How many.
        extra: usize,
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
            Self::LegacyLogin(_) => Rejection::Evict(EvictionReason::MalformedLogin),
            Self::Login(error) => error.rejection(),
            Self::Body { reason, .. } => Rejection::Status(wire_error_code(reason)),
            Self::TrailingBytes { .. } => Rejection::Status(ErrorCode::InvalidFormat),
            Self::SendMessages(error) => Rejection::Status(error.error_code()),
        }
    }
}

/// The iggy error code matching a body decode failure.
fn wire_error_code(error: &WireError) -> ErrorCode {
    match error {
        WireError::InvalidBatchChecksum { .. } => ErrorCode::InvalidBatchChecksum,
        WireError::InvalidMessageChecksum { .. } => ErrorCode::InvalidMessageChecksum,
        WireError::InvalidMessageTimestampDelta(_) => ErrorCode::InvalidMessageTimestampDelta,
        WireError::UnknownCommand(_) => ErrorCode::InvalidCommand,
        _ => ErrorCode::InvalidFormat,
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
    /// Truncated metadata section.
    #[error("truncated")]
    Truncated,
    /// `metadata_length` disagrees with the fields.
    #[error("metadata_length mismatch")]
    MetadataLength,
    /// Bad identifier kind, length or UTF-8.
    #[error("invalid identifier")]
    Identifier,
    /// Bad partitioning kind or length.
    #[error("invalid partitioning")]
    Partitioning,
    /// `messages_count` disagrees with the batch header.
    #[error("messages_count mismatch")]
    MessagesCount,
}

impl SendMessagesError {
    /// The iggy error code to reply with.
    pub fn error_code(self) -> ErrorCode {
        match self {
            Self::Truncated | Self::MetadataLength => ErrorCode::InvalidFormat,
            Self::Identifier => ErrorCode::InvalidIdentifier,
            Self::Partitioning => ErrorCode::InvalidFormat,
            Self::MessagesCount => ErrorCode::InvalidMessagesCount,
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
    /// # Errors
    /// [`SendMessagesError`] for a malformed metadata section or a count mismatch.
    pub fn parse(body: &'a [u8]) -> Result<Self, SendMessagesError> {
        let metadata_length = body
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or(SendMessagesError::Truncated)?;
        let metadata = body.get(4..).ok_or(SendMessagesError::Truncated)?;
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
            .ok_or(SendMessagesError::Truncated)?;
        if metadata_length as usize != count_at + 4 {
            return Err(SendMessagesError::MetadataLength);
        }
        let batch = metadata.get(count_at + 4..).unwrap_or_default();
        let header = batch
            .get(..BATCH_HEADER_SIZE_BYTES)
            .ok_or(SendMessagesError::Truncated)?;
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

/// Decodes a whole body as `T`, refusing trailing bytes.
fn whole<T: WireDecode>(command: CommandCode, body: &[u8]) -> Result<T, DecodeError> {
    let (value, consumed) =
        T::decode(body).map_err(|reason| DecodeError::Body { command, reason })?;
    if consumed != body.len() {
        return Err(DecodeError::TrailingBytes {
            command,
            extra: body.len().saturating_sub(consumed),
        });
    }
    Ok(value)
}

/// An empty body, as the body-less commands require.
fn empty(command: CommandCode, body: &[u8]) -> Result<(), DecodeError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes {
            command,
            extra: body.len(),
        })
    }
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

    fn decode_command(command: CommandCode, body: &'a [u8]) -> Result<Self, DecodeError> {
        use CommandCode as C;
        Ok(match command {
            C::Ping => empty(command, body).map(|()| Self::Ping)?,
            C::GetStats => empty(command, body).map(|()| Self::GetStats)?,
            C::GetSnapshotFile => Self::GetSnapshot(whole(command, body)?),
            C::GetClusterMetadata => empty(command, body).map(|()| Self::GetClusterMetadata)?,
            C::DescribeOptions => Self::DescribeOptions(whole(command, body)?),
            C::AttachConsumerSession => Self::AttachConsumerSession(whole(command, body)?),
            C::GetMe => empty(command, body).map(|()| Self::GetMe)?,
            C::GetClient => Self::GetClient(whole(command, body)?),
            C::GetClients => empty(command, body).map(|()| Self::GetClients)?,
            C::GetUser => Self::GetUser(whole(command, body)?),
            C::GetUsers => empty(command, body).map(|()| Self::GetUsers)?,
            C::CreateUser => Self::CreateUser(whole(command, body)?),
            C::DeleteUser => Self::DeleteUser(whole(command, body)?),
            C::UpdateUser => Self::UpdateUser(whole(command, body)?),
            C::UpdatePermissions => Self::UpdatePermissions(whole(command, body)?),
            C::ChangePassword => Self::ChangePassword(whole(command, body)?),
            C::LogoutUser => empty(command, body).map(|()| Self::Logout)?,
            C::GetPersonalAccessTokens => {
                empty(command, body).map(|()| Self::GetPersonalAccessTokens)?
            }
            C::CreatePersonalAccessToken => Self::CreatePersonalAccessToken(whole(command, body)?),
            C::DeletePersonalAccessToken => Self::DeletePersonalAccessToken(whole(command, body)?),
            C::PollMessages => Self::PollMessages(whole(command, body)?),
            C::SendMessages => Self::SendMessages(SendMessages::parse(body)?),
            C::FlushUnsavedBuffer => Self::FlushUnsavedBuffer(whole(command, body)?),
            C::GetPollRouting => Self::GetPollRouting(whole(command, body)?),
            C::PollMessagesOnPrimary => Self::PollMessagesOnPrimary(whole(command, body)?),
            C::GetConsumerOffset => Self::GetConsumerOffset(whole(command, body)?),
            C::StoreConsumerOffset => Self::StoreConsumerOffset(whole(command, body)?),
            C::DeleteConsumerOffset => Self::DeleteConsumerOffset(whole(command, body)?),
            C::GetConsumerOffsetRouting => Self::GetConsumerOffsetRouting(whole(command, body)?),
            _ => Self::decode_resources(command, body)?,
        })
    }

    /// Streams, topics, partitions, segments and consumer groups.
    fn decode_resources(command: CommandCode, body: &'a [u8]) -> Result<Self, DecodeError> {
        use CommandCode as C;
        Ok(match command {
            C::GetStream => Self::GetStream(whole(command, body)?),
            C::GetStreams => empty(command, body).map(|()| Self::GetStreams)?,
            C::CreateStream => Self::CreateStream(whole(command, body)?),
            C::DeleteStream => Self::DeleteStream(whole(command, body)?),
            C::UpdateStream => Self::UpdateStream(whole(command, body)?),
            C::PurgeStream => Self::PurgeStream(whole(command, body)?),
            C::GetTopic => Self::GetTopic(whole(command, body)?),
            C::GetTopics => Self::GetTopics(whole(command, body)?),
            C::CreateTopic => Self::CreateTopic(whole(command, body)?),
            C::DeleteTopic => Self::DeleteTopic(whole(command, body)?),
            C::UpdateTopic => Self::UpdateTopic(whole(command, body)?),
            C::PurgeTopic => Self::PurgeTopic(whole(command, body)?),
            C::CreatePartitions => Self::CreatePartitions(whole(command, body)?),
            C::DeletePartitions => Self::DeletePartitions(whole(command, body)?),
            C::DeleteSegments => Self::DeleteSegments(whole(command, body)?),
            C::GetConsumerGroup => Self::GetConsumerGroup(whole(command, body)?),
            C::GetConsumerGroups => Self::GetConsumerGroups(whole(command, body)?),
            C::CreateConsumerGroup => Self::CreateConsumerGroup(whole(command, body)?),
            C::DeleteConsumerGroup => Self::DeleteConsumerGroup(whole(command, body)?),
            C::JoinConsumerGroup => Self::JoinConsumerGroup(whole(command, body)?),
            C::LeaveConsumerGroup => Self::LeaveConsumerGroup(whole(command, body)?),
            C::SyncConsumerGroup => Self::SyncConsumerGroup(whole(command, body)?),
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
        let mut wrong_kind = body.clone();
        wrong_kind[4] = 3;
        assert_eq!(decode(&wrong_kind), SendMessagesError::Identifier);
        let mut wrong_partitioning = body.clone();
        wrong_partitioning[16] = 9;
        assert_eq!(decode(&wrong_partitioning), SendMessagesError::Partitioning);
        let mut wrong_count = body.clone();
        wrong_count[18] = 2;
        assert_eq!(decode(&wrong_count), SendMessagesError::MessagesCount);
        assert_eq!(decode(&body[..100]), SendMessagesError::Truncated);
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
        assert_eq!(
            Request::decode(2, 1, &[0]).unwrap_err().rejection(),
            Rejection::Status(ErrorCode::InvalidFormat)
        );
        // A replicated command sent as NonReplicated is not what the SDK does.
        assert_eq!(
            Request::decode(2, 202, &[]).unwrap_err(),
            DecodeError::UnknownCommand(202)
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
