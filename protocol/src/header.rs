//! The 256-byte VSR headers: request (client → server), reply and eviction (server → client).
//!
//! Zero-copy views in the smoltcp style: `new_checked` proves the length once, after which no
//! accessor can panic. `*Repr` types `emit` whole headers into a caller-owned `[u8; 256]`.
//!
//! ```text
//! 0    checksum u128 | 16 checksum_body u128 | 32 cluster u128 | 48 size u32 | 52 view u32
//! 56   release u32 | 60 command u8 | 61 replica u8 | 62..128 reserved
//! request  128 client u128 | 144 request_checksum u128 | 160 timestamp u64 | 168 request u64
//!          176 operation u8 | 184 session u64 | 192 user_id u32 | 196 command code u32 (NR only)
//! reply    128 request_checksum | 144 context | 160 client | 176 op (= session) | 184 commit
//!          192 timestamp | 200 request | 208 operation | 216 status u32
//! eviction 128 client | 144 server_protocol_version u32 | 148 ..._min u32 | 255 reason u8
//! ```

use crate::codes::{CommandCode, EvictionReason, Operation};
use crate::constants::HEADER_SIZE_BYTES;
use core::ops::Range;

type Field = Range<usize>;

mod field {
    use super::Field;
    pub const CLUSTER: Field = 32..48;
    pub const SIZE: Field = 48..52;
    pub const COMMAND: usize = 60;

    pub const REQ_CLIENT: Field = 128..144;
    pub const REQ_CHECKSUM: Field = 144..160;
    pub const REQ_TIMESTAMP: Field = 160..168;
    pub const REQ_REQUEST: Field = 168..176;
    pub const REQ_OPERATION: usize = 176;
    pub const REQ_SESSION: Field = 184..192;
    pub const REQ_COMMAND_CODE: Field = 196..200;

    pub const REPLY_REQUEST_CHECKSUM: Field = 128..144;
    pub const REPLY_CLIENT: Field = 160..176;
    pub const REPLY_OP: Field = 176..184;
    pub const REPLY_COMMIT: Field = 184..192;
    pub const REPLY_TIMESTAMP: Field = 192..200;
    pub const REPLY_REQUEST: Field = 200..208;
    pub const REPLY_OPERATION: usize = 208;
    pub const REPLY_STATUS: Field = 216..220;

    pub const EVICT_CLIENT: Field = 128..144;
    pub const EVICT_VERSION: Field = 144..148;
    pub const EVICT_VERSION_MIN: Field = 148..152;
    pub const EVICT_REASON: usize = 255;
}

/// The `command` byte of the common header prefix.
pub mod command {
    /// Client request.
    pub const REQUEST: u8 = 5;
    /// Server reply.
    pub const REPLY: u8 = 8;
    /// Session-terminal eviction.
    pub const EVICTION: u8 = 13;
}

/// Why a header could not be viewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than 256 bytes.
    #[error("header truncated: {0} bytes")]
    Truncated(usize),
    /// The command byte is not the one this view expects.
    #[error("unexpected command byte {0}")]
    WrongCommand(u8),
    /// `size` below 256 or above the frame limit.
    #[error("frame size {0} out of range")]
    BadSize(u32),
}

/// Reads `N` bytes at `range`; callers have proven the buffer holds the whole header.
fn bytes_at<const N: usize>(buf: &[u8], range: Field) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(range) {
        if src.len() == N {
            out.copy_from_slice(src);
        }
    }
    out
}

fn u32_at(buf: &[u8], range: Field) -> u32 {
    u32::from_le_bytes(bytes_at(buf, range))
}
fn u64_at(buf: &[u8], range: Field) -> u64 {
    u64::from_le_bytes(bytes_at(buf, range))
}
fn u128_at(buf: &[u8], range: Field) -> u128 {
    u128::from_le_bytes(bytes_at(buf, range))
}
fn byte_at(buf: &[u8], index: usize) -> u8 {
    buf.get(index).copied().unwrap_or(0)
}

/// Peeks the total frame size (header + body) from the first bytes of a frame, before the
/// whole header has arrived. Returns `Ok(None)` while fewer than 52 bytes are available.
///
/// # Errors
/// [`HeaderError::BadSize`] when `size < 256` or `size > frame_size_max_bytes`: the stream can no
/// longer be framed and the connection must be closed.
pub fn frame_size_bytes(
    prefix: &[u8],
    frame_size_max_bytes: usize,
) -> Result<Option<usize>, HeaderError> {
    if prefix.len() < field::SIZE.end {
        return Ok(None);
    }
    let size = u32_at(prefix, field::SIZE);
    let size_bytes = size as usize;
    if size_bytes < HEADER_SIZE_BYTES || size_bytes > frame_size_max_bytes {
        return Err(HeaderError::BadSize(size));
    }
    Ok(Some(size_bytes))
}

/// A checked view of a client request header.
#[derive(Debug, Clone, Copy)]
pub struct RequestHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RequestHeader<T> {
    /// Views `buffer` (at least 256 bytes; only the first 256 are read) as a request header.
    ///
    /// # Errors
    /// [`HeaderError::Truncated`] below 256 bytes, [`HeaderError::WrongCommand`] unless the
    /// command byte is Request (5).
    pub fn new_checked(buffer: T) -> Result<Self, HeaderError> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_SIZE_BYTES {
            return Err(HeaderError::Truncated(bytes.len()));
        }
        if bytes[field::COMMAND] != command::REQUEST {
            return Err(HeaderError::WrongCommand(bytes[field::COMMAND]));
        }
        Ok(Self { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Cluster id (a single node echoes it).
    pub fn cluster(&self) -> u128 {
        u128_at(self.bytes(), field::CLUSTER)
    }
    /// Total frame size, header included.
    pub fn size_bytes(&self) -> u32 {
        u32_at(self.bytes(), field::SIZE)
    }
    /// Random per-SDK-session client id; never 0 in a valid request.
    pub fn client(&self) -> u128 {
        u128_at(self.bytes(), field::REQ_CLIENT)
    }
    /// XxHash3-64 of the body for metadata ops, 0 = unstamped.
    pub fn request_checksum(&self) -> u128 {
        u128_at(self.bytes(), field::REQ_CHECKSUM)
    }
    /// Client timestamp (the SDK sends 0); echoed in the reply.
    pub fn timestamp(&self) -> u64 {
        u64_at(self.bytes(), field::REQ_TIMESTAMP)
    }
    /// Request number.
    pub fn request(&self) -> u64 {
        u64_at(self.bytes(), field::REQ_REQUEST)
    }
    /// Raw operation byte (see [`Operation::from_u8`]).
    pub fn operation(&self) -> u8 {
        byte_at(self.bytes(), field::REQ_OPERATION)
    }
    /// Session from the login reply; 0 before login.
    pub fn session(&self) -> u64 {
        u64_at(self.bytes(), field::REQ_SESSION)
    }
    /// Command code in bytes 196..200; meaningful only when the operation is NonReplicated.
    pub fn command_code(&self) -> u32 {
        u32_at(self.bytes(), field::REQ_COMMAND_CODE)
    }
    /// Body length, `size - 256` (0 when `size` is too small; [`Self::validate`] rejects that).
    pub fn body_len(&self) -> usize {
        (self.size_bytes() as usize).saturating_sub(HEADER_SIZE_BYTES)
    }

    /// The request-field rules of `validate_request_fields` (§1A.1), plus the size rule.
    ///
    /// # Errors
    /// The eviction reason to send: `InvalidRequestBodySize` for `size < 256` or above
    /// `frame_size_max_bytes`; `InvalidRequestOperation` for an unknown, reserved or internal
    /// operation; `NoSession` for client 0 or a non-Register op without session/request;
    /// `SessionError` for a Register carrying a session or request number.
    pub fn validate(&self, frame_size_max_bytes: usize) -> Result<Operation, EvictionReason> {
        let size_bytes = self.size_bytes() as usize;
        if size_bytes < HEADER_SIZE_BYTES || size_bytes > frame_size_max_bytes {
            return Err(EvictionReason::InvalidRequestBodySize);
        }
        let operation = Operation::from_u8(self.operation())
            .filter(|op| op.is_client_allowed())
            .ok_or(EvictionReason::InvalidRequestOperation)?;
        if self.client() == 0 {
            return Err(EvictionReason::NoSession);
        }
        match operation {
            Operation::Register if self.session() != 0 || self.request() != 0 => {
                Err(EvictionReason::SessionError)
            }
            Operation::Register | Operation::NonReplicated => Ok(operation),
            _ if self.session() == 0 || self.request() == 0 => Err(EvictionReason::NoSession),
            _ => Ok(operation),
        }
    }

    /// The command this request carries, resolved the way the SDK encodes it: the code field
    /// for NonReplicated, the operation otherwise. `None` for Register (two body shapes, see
    /// [`crate::login`]) and for unknown codes or operations.
    pub fn resolved_command(&self) -> Option<CommandCode> {
        match Operation::from_u8(self.operation())? {
            Operation::NonReplicated => CommandCode::from_u32(self.command_code()),
            op => op.command_code(),
        }
    }
}

/// Client side: the fields of a request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestRepr {
    /// Client id, non-zero.
    pub client: u128,
    /// Request number.
    pub request: u64,
    /// Operation byte.
    pub operation: u8,
    /// Session (0 before login).
    pub session: u64,
    /// Command code, written to bytes 196..200 only for NonReplicated.
    pub command_code: u32,
    /// Echoed timestamp.
    pub timestamp: u64,
    /// XxHash3-64 of the body or 0.
    pub request_checksum: u128,
}

impl RequestRepr {
    /// Parses the fields out of a checked view.
    pub fn parse<T: AsRef<[u8]>>(header: &RequestHeader<T>) -> Self {
        Self {
            client: header.client(),
            request: header.request(),
            operation: header.operation(),
            session: header.session(),
            command_code: header.command_code(),
            timestamp: header.timestamp(),
            request_checksum: header.request_checksum(),
        }
    }

    /// Writes a complete request header for a body of `body_len` bytes. Cannot fail.
    pub fn emit(&self, body_len: u32, out: &mut [u8; HEADER_SIZE_BYTES]) {
        out.fill(0);
        put(out, field::SIZE, &frame_size(body_len).to_le_bytes());
        out[field::COMMAND] = command::REQUEST;
        put(out, field::REQ_CLIENT, &self.client.to_le_bytes());
        put(
            out,
            field::REQ_CHECKSUM,
            &self.request_checksum.to_le_bytes(),
        );
        put(out, field::REQ_TIMESTAMP, &self.timestamp.to_le_bytes());
        put(out, field::REQ_REQUEST, &self.request.to_le_bytes());
        out[field::REQ_OPERATION] = self.operation;
        put(out, field::REQ_SESSION, &self.session.to_le_bytes());
        if self.operation == Operation::NonReplicated as u8 {
            put(
                out,
                field::REQ_COMMAND_CODE,
                &self.command_code.to_le_bytes(),
            );
        }
    }
}

/// `256 + body_len`, saturating: a body that cannot fit a u32 frame is a caller bug that the
/// peer will reject by size rather than a panic here.
fn frame_size(body_len: u32) -> u32 {
    body_len.saturating_add(HEADER_SIZE_BYTES as u32)
}

fn put(out: &mut [u8; HEADER_SIZE_BYTES], range: Field, value: &[u8]) {
    out[range].copy_from_slice(value);
}

/// Server side: the fields of a reply header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyRepr {
    /// Echo of the request's cluster.
    pub cluster: u128,
    /// Echo of the request checksum.
    pub request_checksum: u128,
    /// Echo of the request's client id.
    pub client: u128,
    /// Session; iggy carries it in the `op` field.
    pub session: u64,
    /// Commit number (the SDK tracks it as a metadata watermark).
    pub commit: u64,
    /// Echo of the request timestamp.
    pub timestamp: u64,
    /// Echo of the request number.
    pub request: u64,
    /// Echo of the operation byte; the SDK uses it to decide whether a result section follows.
    pub operation: u8,
    /// 0 = ok; otherwise an [`crate::codes::ErrorCode`] value, and the body must be empty.
    pub status: u32,
}

impl ReplyRepr {
    /// A reply echoing `header`, with commit 0 and the given status.
    pub fn echo<T: AsRef<[u8]>>(header: &RequestHeader<T>, session: u64, status: u32) -> Self {
        Self {
            cluster: header.cluster(),
            request_checksum: header.request_checksum(),
            client: header.client(),
            session,
            commit: 0,
            timestamp: header.timestamp(),
            request: header.request(),
            operation: header.operation(),
            status,
        }
    }

    /// Writes a complete reply header for a body of `body_len` bytes. Cannot fail.
    pub fn emit(&self, body_len: u32, out: &mut [u8; HEADER_SIZE_BYTES]) {
        out.fill(0);
        put(out, field::CLUSTER, &self.cluster.to_le_bytes());
        put(out, field::SIZE, &frame_size(body_len).to_le_bytes());
        out[field::COMMAND] = command::REPLY;
        put(
            out,
            field::REPLY_REQUEST_CHECKSUM,
            &self.request_checksum.to_le_bytes(),
        );
        put(out, field::REPLY_CLIENT, &self.client.to_le_bytes());
        put(out, field::REPLY_OP, &self.session.to_le_bytes());
        put(out, field::REPLY_COMMIT, &self.commit.to_le_bytes());
        put(out, field::REPLY_TIMESTAMP, &self.timestamp.to_le_bytes());
        put(out, field::REPLY_REQUEST, &self.request.to_le_bytes());
        out[field::REPLY_OPERATION] = self.operation;
        put(out, field::REPLY_STATUS, &self.status.to_le_bytes());
    }
}

/// Server side: the fields of an eviction header (always header-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictionRepr {
    /// Echo of the cluster.
    pub cluster: u128,
    /// The evicted client; must be non-zero for the SDK to route it.
    pub client: u128,
    /// Why.
    pub reason: EvictionReason,
    /// Accepted protocol window, sent only with `IncompatibleProtocol` (zero otherwise).
    pub server_protocol_version: u32,
    /// Lower end of the accepted window, sent only with `IncompatibleProtocol`.
    pub server_protocol_version_min: u32,
}

impl EvictionRepr {
    /// Writes a complete eviction header. Cannot fail. The version window is written only for
    /// `IncompatibleProtocol`, since iggy's validator treats it anywhere else as smuggling.
    pub fn emit(&self, out: &mut [u8; HEADER_SIZE_BYTES]) {
        out.fill(0);
        put(out, field::CLUSTER, &self.cluster.to_le_bytes());
        put(out, field::SIZE, &(HEADER_SIZE_BYTES as u32).to_le_bytes());
        out[field::COMMAND] = command::EVICTION;
        put(out, field::EVICT_CLIENT, &self.client.to_le_bytes());
        if self.reason == EvictionReason::IncompatibleProtocol {
            put(
                out,
                field::EVICT_VERSION,
                &self.server_protocol_version.to_le_bytes(),
            );
            let min = self.server_protocol_version_min.to_le_bytes();
            put(out, field::EVICT_VERSION_MIN, &min);
        }
        out[field::EVICT_REASON] = self.reason as u8;
    }
}

/// Client side: a checked view of a reply header.
#[derive(Debug, Clone, Copy)]
pub struct ReplyHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ReplyHeader<T> {
    /// Views `buffer` as a reply header.
    ///
    /// # Errors
    /// [`HeaderError::Truncated`] below 256 bytes, [`HeaderError::WrongCommand`] unless the
    /// command byte is Reply (8).
    pub fn new_checked(buffer: T) -> Result<Self, HeaderError> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_SIZE_BYTES {
            return Err(HeaderError::Truncated(bytes.len()));
        }
        if bytes[field::COMMAND] != command::REPLY {
            return Err(HeaderError::WrongCommand(bytes[field::COMMAND]));
        }
        Ok(Self { buffer })
    }
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// The command byte (always Reply for a checked view).
    pub fn command(&self) -> u8 {
        byte_at(self.bytes(), field::COMMAND)
    }
    /// Total frame size.
    pub fn size_bytes(&self) -> u32 {
        u32_at(self.bytes(), field::SIZE)
    }
    /// 0 or an error code.
    pub fn status(&self) -> u32 {
        u32_at(self.bytes(), field::REPLY_STATUS)
    }
    /// Echoed request number.
    pub fn request(&self) -> u64 {
        u64_at(self.bytes(), field::REPLY_REQUEST)
    }
    /// Echoed client id.
    pub fn client(&self) -> u128 {
        u128_at(self.bytes(), field::REPLY_CLIENT)
    }
    /// Echoed operation byte.
    pub fn operation(&self) -> u8 {
        byte_at(self.bytes(), field::REPLY_OPERATION)
    }
    /// Session (iggy's `op` field).
    pub fn session(&self) -> u64 {
        u64_at(self.bytes(), field::REPLY_OP)
    }
    /// Commit number.
    pub fn commit(&self) -> u64 {
        u64_at(self.bytes(), field::REPLY_COMMIT)
    }
    /// Echoed timestamp.
    pub fn timestamp(&self) -> u64 {
        u64_at(self.bytes(), field::REPLY_TIMESTAMP)
    }
    /// Echoed request checksum.
    pub fn request_checksum(&self) -> u128 {
        u128_at(self.bytes(), field::REPLY_REQUEST_CHECKSUM)
    }
    /// Echoed cluster.
    pub fn cluster(&self) -> u128 {
        u128_at(self.bytes(), field::CLUSTER)
    }
}

/// Client side: a checked view of an eviction header.
#[derive(Debug, Clone, Copy)]
pub struct EvictionHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EvictionHeader<T> {
    /// Views `buffer` as an eviction header.
    ///
    /// # Errors
    /// [`HeaderError::Truncated`] below 256 bytes, [`HeaderError::WrongCommand`] unless the
    /// command byte is Eviction (13).
    pub fn new_checked(buffer: T) -> Result<Self, HeaderError> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_SIZE_BYTES {
            return Err(HeaderError::Truncated(bytes.len()));
        }
        if bytes[field::COMMAND] != command::EVICTION {
            return Err(HeaderError::WrongCommand(bytes[field::COMMAND]));
        }
        Ok(Self { buffer })
    }
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// The reason, `None` for 0 or an unknown byte.
    pub fn reason(&self) -> Option<EvictionReason> {
        EvictionReason::from_u8(byte_at(self.bytes(), field::EVICT_REASON))
    }
    /// The evicted client.
    pub fn client(&self) -> u128 {
        u128_at(self.bytes(), field::EVICT_CLIENT)
    }
    /// Server protocol version (IncompatibleProtocol only).
    pub fn server_protocol_version(&self) -> u32 {
        u32_at(self.bytes(), field::EVICT_VERSION)
    }
    /// Oldest accepted protocol version (IncompatibleProtocol only).
    pub fn server_protocol_version_min(&self) -> u32 {
        u32_at(self.bytes(), field::EVICT_VERSION_MIN)
    }
}

/// The command byte of any header (request, reply, eviction), or `None` if too short.
pub fn peek_command(bytes: &[u8]) -> Option<u8> {
    bytes.get(field::COMMAND).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ErrorCode;
    use crate::constants::FRAME_SIZE_MAX_BYTES;
    use iggy_binary_protocol::consensus::{
        Command as IggyCommand, ConsensusHeader, EvictionHeader as IggyEviction,
        Operation as IggyOperation, ReplyHeader as IggyReply, RequestHeader as IggyRequest,
    };

    /// The unauthenticated PING of iggy-protocol.md §1A.3, byte by byte.
    fn golden_ping() -> [u8; 256] {
        let mut bytes = [0u8; 256];
        bytes[48..52].copy_from_slice(&[0x00, 0x01, 0x00, 0x00]);
        bytes[60] = 0x05;
        bytes[128] = 0x2a; // client 42
        bytes[168] = 0x01; // request 1
        bytes[176] = 0x02; // NonReplicated
        bytes[196..200].copy_from_slice(&[0x01, 0x00, 0x00, 0x00]);
        bytes
    }

    #[test]
    fn golden_ping_parses_validates_and_re_emits_identically() {
        let bytes = golden_ping();
        let header = RequestHeader::new_checked(&bytes[..]).unwrap();
        assert_eq!(header.size_bytes(), 256);
        assert_eq!(header.client(), 42);
        assert_eq!(header.request(), 1);
        assert_eq!(header.session(), 0);
        assert_eq!(header.command_code(), 1);
        assert_eq!(
            header.validate(FRAME_SIZE_MAX_BYTES),
            Ok(Operation::NonReplicated)
        );
        assert_eq!(header.resolved_command(), Some(CommandCode::Ping));
        let mut out = [0xffu8; 256];
        RequestRepr::parse(&header).emit(0, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn golden_ping_reply_matches_spec_and_iggy_decodes_it() {
        let bytes = golden_ping();
        let header = RequestHeader::new_checked(&bytes[..]).unwrap();
        let mut out = [0u8; 256];
        ReplyRepr::echo(&header, 0, 0).emit(0, &mut out);
        assert_eq!(out[60], 8);
        assert_eq!(&out[48..52], &256u32.to_le_bytes());
        assert_eq!(&out[216..220], &[0, 0, 0, 0]);
        let iggy: IggyReply = bytemuck::checked::try_pod_read_unaligned(&out).unwrap();
        assert!(iggy.validate().is_ok());
        assert_eq!(iggy.client, 42);
        assert_eq!(iggy.request, 1);
        assert_eq!(iggy.operation, IggyOperation::NonReplicated);
    }

    #[test]
    fn request_emit_matches_iggy_request_header_layout() {
        let repr = RequestRepr {
            client: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
            request: 7,
            operation: Operation::CreateStream as u8,
            session: 99,
            command_code: 202, // not written: replicated ops carry no code
            timestamp: 5,
            request_checksum: 0xdead_beef,
        };
        let mut out = [0u8; 256];
        repr.emit(10, &mut out);
        let iggy = IggyRequest {
            command: IggyCommand::Request,
            operation: IggyOperation::CreateStream,
            size: 266,
            client: repr.client,
            request: 7,
            session: 99,
            request_checksum: 0xdead_beef,
            timestamp: 5,
            ..Default::default()
        };
        assert_eq!(&out[..], bytemuck::bytes_of(&iggy));
        let view = RequestHeader::new_checked(&out).unwrap();
        assert_eq!(RequestRepr::parse(&view).command_code, 0);
        assert_eq!(view.resolved_command(), Some(CommandCode::CreateStream));
    }

    #[test]
    fn reply_emit_matches_iggy_reply_header_layout() {
        let repr = ReplyRepr {
            cluster: 3,
            request_checksum: 4,
            client: 5,
            session: 6,
            commit: 7,
            timestamp: 8,
            request: 9,
            operation: Operation::CreateTopic as u8,
            status: ErrorCode::TopicNameAlreadyExists.as_u32(),
        };
        let mut out = [0u8; 256];
        repr.emit(0, &mut out);
        let iggy = IggyReply {
            cluster: 3,
            size: 256,
            command: IggyCommand::Reply,
            request_checksum: 4,
            client: 5,
            op: 6,
            commit: 7,
            timestamp: 8,
            request: 9,
            operation: IggyOperation::CreateTopic,
            status: 2013,
            ..Default::default()
        };
        assert_eq!(&out[..], bytemuck::bytes_of(&iggy));
        let view = ReplyHeader::new_checked(&out).unwrap();
        assert_eq!(
            (view.status(), view.request(), view.client(), view.session()),
            (2013, 9, 5, 6)
        );
        assert_eq!(
            (view.commit(), view.timestamp(), view.operation()),
            (7, 8, 132)
        );
        assert_eq!(
            (view.request_checksum(), view.cluster(), view.command()),
            (4, 3, 8)
        );
    }

    #[test]
    fn eviction_emit_passes_iggy_validation() {
        for reason in EvictionReason::ALL {
            let repr = EvictionRepr {
                cluster: 0,
                client: 77,
                reason: *reason,
                server_protocol_version: 11264,
                server_protocol_version_min: 11264,
            };
            let mut out = [0u8; 256];
            repr.emit(&mut out);
            let iggy: IggyEviction = bytemuck::checked::try_pod_read_unaligned(&out).unwrap();
            assert!(iggy.validate().is_ok(), "{reason:?}");
            assert_eq!(iggy.reason as u8, *reason as u8);
            let view = EvictionHeader::new_checked(&out).unwrap();
            assert_eq!(view.reason(), Some(*reason));
            assert_eq!(view.client(), 77);
            let window = *reason == EvictionReason::IncompatibleProtocol;
            assert_eq!(view.server_protocol_version() == 11264, window);
            assert_eq!(view.server_protocol_version_min() == 11264, window);
        }
    }

    #[test]
    fn validate_applies_the_request_field_rules() {
        let check = |operation: u8, client: u128, session: u64, request: u64, size: u32| {
            let mut out = [0u8; 256];
            RequestRepr {
                client,
                request,
                operation,
                session,
                ..Default::default()
            }
            .emit(0, &mut out);
            out[48..52].copy_from_slice(&size.to_le_bytes());
            RequestHeader::new_checked(&out).unwrap().validate(1 << 20)
        };
        use EvictionReason as E;
        assert_eq!(check(1, 1, 0, 0, 300), Ok(Operation::Register));
        assert_eq!(check(1, 1, 1, 0, 300), Err(E::SessionError));
        assert_eq!(check(1, 1, 0, 1, 300), Err(E::SessionError));
        assert_eq!(check(2, 1, 0, 0, 256), Ok(Operation::NonReplicated));
        assert_eq!(check(3, 1, 1, 1, 256), Ok(Operation::Logout));
        assert_eq!(check(3, 1, 0, 1, 256), Err(E::NoSession));
        assert_eq!(check(128, 1, 1, 0, 256), Err(E::NoSession));
        assert_eq!(check(160, 1, 4, 4, 256), Ok(Operation::SendMessages));
        assert_eq!(check(2, 0, 0, 0, 256), Err(E::NoSession));
        assert_eq!(check(0, 1, 1, 1, 256), Err(E::InvalidRequestOperation));
        assert_eq!(check(64, 1, 1, 1, 256), Err(E::InvalidRequestOperation));
        assert_eq!(check(99, 1, 1, 1, 256), Err(E::InvalidRequestOperation));
        assert_eq!(check(2, 1, 0, 0, 255), Err(E::InvalidRequestBodySize));
        assert_eq!(
            check(2, 1, 0, 0, (1 << 20) + 1),
            Err(E::InvalidRequestBodySize)
        );
    }

    #[test]
    fn views_refuse_short_buffers_and_wrong_commands() {
        let bytes = golden_ping();
        assert_eq!(
            RequestHeader::new_checked(&bytes[..255]).unwrap_err(),
            HeaderError::Truncated(255)
        );
        assert!(ReplyHeader::new_checked(&bytes[..]).is_err());
        assert!(EvictionHeader::new_checked(&bytes[..]).is_err());
        let mut other = bytes;
        other[60] = 8;
        assert_eq!(
            RequestHeader::new_checked(&other[..]).unwrap_err(),
            HeaderError::WrongCommand(8)
        );
        assert_eq!(peek_command(&other), Some(8));
        assert_eq!(peek_command(&other[..60]), None);
    }

    #[test]
    fn frame_size_peeks_and_bounds_the_size_field() {
        let bytes = golden_ping();
        assert_eq!(frame_size_bytes(&bytes[..51], 1024), Ok(None));
        assert_eq!(frame_size_bytes(&bytes[..52], 1024), Ok(Some(256)));
        let mut small = bytes;
        small[48..52].copy_from_slice(&255u32.to_le_bytes());
        assert_eq!(
            frame_size_bytes(&small, 1024),
            Err(HeaderError::BadSize(255))
        );
        let mut big = bytes;
        big[48..52].copy_from_slice(&1025u32.to_le_bytes());
        assert_eq!(
            frame_size_bytes(&big, 1024),
            Err(HeaderError::BadSize(1025))
        );
    }
}
