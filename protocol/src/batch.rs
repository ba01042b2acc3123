//! Message batches: the one layout shared by a SendMessages body, a stored segment record and a
//! poll reply (`iggy_binary_protocol/src/batch.rs`).
//!
//! ```text
//! batch header (256 B)
//!   0 partition_id u64 (server)   8 base_offset u64 (server)   16 base_timestamp u64 (server, µs)
//!  24 origin_timestamp u64 (min of the messages', µs)          32 batch_length u64 (= 256 + frames)
//!  40 batch_checksum u64          48 message_count u32         52..256 zero
//! message frame = 48 B header + payload + user headers
//!   0 checksum u64 = XxHash3-64(frame[8..end])   8 id u128   24 offset_delta u32 (= index)
//!  28 timestamp_delta u32 (origin − batch origin, µs)   32 user_headers_length u32
//!  36 payload_length u32   40 reserved u64 = 0
//! batch_checksum = XxHash3-64 stream of partition_id, base_offset, base_timestamp,
//!                  origin_timestamp, batch_length, message_count (LE) and each frame's checksum.
//! ```
//!
//! **Slices.** A poll that starts inside a stored record, or wants fewer of its messages, is
//! served by [`slice_record`]: a rewritten header (length, count, checksum) followed by a
//! contiguous run of the record's frames, untouched. `base_offset`, `base_timestamp` and
//! `origin_timestamp` are kept and the frames keep their `offset_delta`s, so the first frame of a
//! slice may have a non-zero delta. The SDK computes `offset = base_offset + offset_delta` and
//! `origin = origin_timestamp + timestamp_delta` (`PolledBatchesIterator`), which stays exact;
//! rebasing would instead force rewriting every frame and its checksum.

use crate::codes::ErrorCode;
use crate::constants::{
    BATCH_HEADER_SIZE_BYTES, MESSAGE_HEADER_SIZE_BYTES, PAYLOAD_SIZE_MAX_BYTES,
    TIMESTAMP_DELTA_MAX_US, USER_HEADERS_SIZE_MAX_BYTES,
};
use core::ops::Range;
use std::hash::Hasher;
use twox_hash::XxHash3_64;

type Field = Range<usize>;

mod field {
    use super::Field;
    pub const PARTITION_ID: Field = 0..8;
    pub const BASE_OFFSET: Field = 8..16;
    pub const BASE_TIMESTAMP: Field = 16..24;
    pub const ORIGIN_TIMESTAMP: Field = 24..32;
    pub const BATCH_LENGTH: Field = 32..40;
    pub const BATCH_CHECKSUM: Field = 40..48;
    pub const MESSAGE_COUNT: Field = 48..52;
    pub const RESERVED: Field = 52..256;

    pub const MSG_CHECKSUM: Field = 0..8;
    pub const MSG_ID: Field = 8..24;
    pub const MSG_OFFSET_DELTA: Field = 24..28;
    pub const MSG_TIMESTAMP_DELTA: Field = 28..32;
    pub const MSG_USER_HEADERS_LENGTH: Field = 32..36;
    pub const MSG_PAYLOAD_LENGTH: Field = 36..40;
    pub const MSG_RESERVED: Field = 40..48;
}

/// Why a batch was refused. [`BatchError::error_code`] gives the status to reply with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer than 256 bytes.
    #[error("batch header truncated")]
    HeaderTruncated,
    /// Bytes 52..256 of the header are not zero.
    #[error("batch header reserved bytes are not zero")]
    HeaderReservedNotZero,
    /// `batch_length` disagrees with the bytes given.
    #[error("batch_length {declared} but {actual} bytes")]
    LengthMismatch {
        /// `batch_length` field.
        declared: u64,
        /// Bytes available.
        actual: usize,
    },
    /// `message_count` is 0.
    #[error("batch has no messages")]
    Empty,
    /// The frames do not tile `message_count` exactly.
    #[error("frames do not tile message_count")]
    CountMismatch,
    /// A frame runs past the end of the batch.
    #[error("message frame {index} truncated")]
    FrameTruncated {
        /// Index of the frame in the batch.
        index: u32,
    },
    /// A frame's reserved bytes are not zero.
    #[error("message frame {index} reserved bytes are not zero")]
    FrameReservedNotZero {
        /// Index of the frame.
        index: u32,
    },
    /// A frame's `offset_delta` is not its index.
    #[error("message frame {index} has offset_delta {offset_delta}")]
    OffsetDelta {
        /// Index of the frame.
        index: u32,
        /// The value found.
        offset_delta: u32,
    },
    /// Empty payload.
    #[error("message {index} has an empty payload")]
    EmptyPayload {
        /// Index of the frame.
        index: u32,
    },
    /// Payload above [`PAYLOAD_SIZE_MAX_BYTES`].
    #[error("message {index} payload too big")]
    PayloadTooBig {
        /// Index of the frame.
        index: u32,
    },
    /// User headers above [`USER_HEADERS_SIZE_MAX_BYTES`].
    #[error("message {index} user headers too big")]
    UserHeadersTooBig {
        /// Index of the frame.
        index: u32,
    },
    /// User headers are not a valid TLV block.
    #[error("message {index} user headers malformed")]
    UserHeadersMalformed {
        /// Index of the frame.
        index: u32,
    },
    /// A message checksum does not match its bytes.
    #[error("message {index} checksum mismatch")]
    MessageChecksum {
        /// Index of the frame.
        index: u32,
    },
    /// The batch checksum does not match.
    #[error("batch checksum mismatch")]
    BatchChecksum,
    /// `origin_timestamp + timestamp_delta` overflows, or a delta exceeds the maximum.
    #[error("message {index} timestamp delta out of range")]
    TimestampDelta {
        /// Index of the frame.
        index: u32,
    },
    /// Client side: more messages than a `u32` count or a `u32` batch length can hold.
    #[error("batch too large")]
    TooLarge,
    /// `batch_length` is above the reader's limit, or too short for `message_count` frames.
    #[error("batch_length {declared} out of range")]
    LengthOutOfRange {
        /// `batch_length` field.
        declared: u64,
    },
}

impl BatchError {
    /// The iggy error code a server replies with for this failure.
    pub fn error_code(self) -> ErrorCode {
        match self {
            Self::HeaderTruncated
            | Self::LengthMismatch { .. }
            | Self::LengthOutOfRange { .. }
            | Self::FrameTruncated { .. } => ErrorCode::InvalidMessagesSize,
            Self::HeaderReservedNotZero
            | Self::FrameReservedNotZero { .. }
            | Self::OffsetDelta { .. } => ErrorCode::InvalidFormat,
            Self::Empty | Self::CountMismatch => ErrorCode::InvalidMessagesCount,
            Self::EmptyPayload { .. } => ErrorCode::EmptyMessagePayload,
            Self::PayloadTooBig { .. } => ErrorCode::TooBigMessagePayload,
            Self::UserHeadersTooBig { .. } => ErrorCode::TooBigUserHeaders,
            Self::UserHeadersMalformed { .. } => ErrorCode::InvalidHeaderValue,
            Self::MessageChecksum { .. } => ErrorCode::InvalidMessageChecksum,
            Self::BatchChecksum => ErrorCode::InvalidBatchChecksum,
            Self::TimestampDelta { .. } => ErrorCode::InvalidMessageTimestampDelta,
            Self::TooLarge => ErrorCode::TooManyMessages,
        }
    }
}

fn read<const N: usize>(buf: &[u8], range: Field) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(range) {
        if src.len() == N {
            out.copy_from_slice(src);
        }
    }
    out
}
fn read_u32(buf: &[u8], range: Field) -> u32 {
    u32::from_le_bytes(read(buf, range))
}
fn read_u64(buf: &[u8], range: Field) -> u64 {
    u64::from_le_bytes(read(buf, range))
}
fn write(buf: &mut [u8], range: Field, value: &[u8]) {
    if let Some(dst) = buf.get_mut(range) {
        if dst.len() == value.len() {
            dst.copy_from_slice(value);
        }
    }
}

/// A checked view of a 256-byte batch header.
#[derive(Debug, Clone, Copy)]
pub struct BatchHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> BatchHeader<T> {
    /// Views the first 256 bytes of `buffer`.
    ///
    /// # Errors
    /// [`BatchError::HeaderTruncated`] below 256 bytes.
    pub fn new_checked(buffer: T) -> Result<Self, BatchError> {
        if buffer.as_ref().len() < BATCH_HEADER_SIZE_BYTES {
            return Err(BatchError::HeaderTruncated);
        }
        Ok(Self { buffer })
    }
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Partition id stamped by the server.
    pub fn partition_id(&self) -> u64 {
        read_u64(self.bytes(), field::PARTITION_ID)
    }
    /// Offset of the message with `offset_delta` 0.
    pub fn base_offset(&self) -> u64 {
        read_u64(self.bytes(), field::BASE_OFFSET)
    }
    /// Server append time, µs since the epoch.
    pub fn base_timestamp_us(&self) -> u64 {
        read_u64(self.bytes(), field::BASE_TIMESTAMP)
    }
    /// Smallest origin timestamp of the messages, µs.
    pub fn origin_timestamp_us(&self) -> u64 {
        read_u64(self.bytes(), field::ORIGIN_TIMESTAMP)
    }
    /// Header + frames, bytes.
    pub fn batch_length_bytes(&self) -> u64 {
        read_u64(self.bytes(), field::BATCH_LENGTH)
    }
    /// Batch checksum.
    pub fn batch_checksum(&self) -> u64 {
        read_u64(self.bytes(), field::BATCH_CHECKSUM)
    }
    /// Messages in the batch.
    pub fn message_count(&self) -> u32 {
        read_u32(self.bytes(), field::MESSAGE_COUNT)
    }
    /// Whether bytes 52..256 are all zero.
    pub fn reserved_is_zero(&self) -> bool {
        self.bytes()
            .get(field::RESERVED)
            .is_some_and(|r| r.iter().all(|b| *b == 0))
    }
    /// The hasher over the header fields, ready for the frame checksums.
    fn checksum_hasher(&self) -> XxHash3_64 {
        let mut hasher = XxHash3_64::new();
        let bytes = self.bytes();
        for range in [
            field::PARTITION_ID,
            field::BASE_OFFSET,
            field::BASE_TIMESTAMP,
            field::ORIGIN_TIMESTAMP,
            field::BATCH_LENGTH,
            field::MESSAGE_COUNT,
        ] {
            hasher.write(bytes.get(range).unwrap_or_default());
        }
        hasher
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> BatchHeader<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets the partition id.
    pub fn set_partition_id(&mut self, value: u64) {
        write(self.bytes_mut(), field::PARTITION_ID, &value.to_le_bytes());
    }
    /// Sets the base offset.
    pub fn set_base_offset(&mut self, value: u64) {
        write(self.bytes_mut(), field::BASE_OFFSET, &value.to_le_bytes());
    }
    /// Sets the server append time.
    pub fn set_base_timestamp_us(&mut self, value: u64) {
        write(
            self.bytes_mut(),
            field::BASE_TIMESTAMP,
            &value.to_le_bytes(),
        );
    }
    /// Sets the batch origin timestamp.
    pub fn set_origin_timestamp_us(&mut self, value: u64) {
        write(
            self.bytes_mut(),
            field::ORIGIN_TIMESTAMP,
            &value.to_le_bytes(),
        );
    }
    /// Sets the batch length.
    pub fn set_batch_length_bytes(&mut self, value: u64) {
        write(self.bytes_mut(), field::BATCH_LENGTH, &value.to_le_bytes());
    }
    /// Sets the batch checksum.
    pub fn set_batch_checksum(&mut self, value: u64) {
        write(
            self.bytes_mut(),
            field::BATCH_CHECKSUM,
            &value.to_le_bytes(),
        );
    }
    /// Sets the message count.
    pub fn set_message_count(&mut self, value: u32) {
        write(self.bytes_mut(), field::MESSAGE_COUNT, &value.to_le_bytes());
    }
}

/// A checked view of one message frame (header, payload, user headers).
#[derive(Debug, Clone, Copy)]
pub struct MessageFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MessageFrame<T> {
    /// Views the frame at the start of `buffer`; trailing bytes after the frame are ignored.
    ///
    /// # Errors
    /// [`BatchError::FrameTruncated`] (index 0) when the 48-byte header or the payload and user
    /// headers it declares do not fit.
    pub fn new_checked(buffer: T) -> Result<Self, BatchError> {
        let frame = Self { buffer };
        match frame.frame_len_declared() {
            Some(len) if len <= frame.bytes().len() => Ok(frame),
            _ => Err(BatchError::FrameTruncated { index: 0 }),
        }
    }
    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Declared frame length, `None` when the header is incomplete.
    fn frame_len_declared(&self) -> Option<usize> {
        if self.bytes().len() < MESSAGE_HEADER_SIZE_BYTES {
            return None;
        }
        let payload = self.payload_length() as usize;
        let headers = self.user_headers_length() as usize;
        MESSAGE_HEADER_SIZE_BYTES
            .checked_add(payload)?
            .checked_add(headers)
    }
    /// Frame length in bytes: 48 + payload + user headers.
    pub fn frame_len(&self) -> usize {
        self.frame_len_declared()
            .unwrap_or(MESSAGE_HEADER_SIZE_BYTES)
    }
    /// Stored checksum.
    pub fn checksum(&self) -> u64 {
        read_u64(self.bytes(), field::MSG_CHECKSUM)
    }
    /// XxHash3-64 of `frame[8..end]`, what [`Self::checksum`] must equal.
    pub fn computed_checksum(&self) -> u64 {
        let end = self.frame_len();
        XxHash3_64::oneshot(self.bytes().get(8..end).unwrap_or_default())
    }
    /// Message id.
    pub fn id(&self) -> u128 {
        u128::from_le_bytes(read(self.bytes(), field::MSG_ID))
    }
    /// Offset relative to the batch's base offset.
    pub fn offset_delta(&self) -> u32 {
        read_u32(self.bytes(), field::MSG_OFFSET_DELTA)
    }
    /// Origin timestamp relative to the batch's origin timestamp, µs.
    pub fn timestamp_delta_us(&self) -> u32 {
        read_u32(self.bytes(), field::MSG_TIMESTAMP_DELTA)
    }
    /// User headers length.
    pub fn user_headers_length(&self) -> u32 {
        read_u32(self.bytes(), field::MSG_USER_HEADERS_LENGTH)
    }
    /// Payload length.
    pub fn payload_length(&self) -> u32 {
        read_u32(self.bytes(), field::MSG_PAYLOAD_LENGTH)
    }
    /// Reserved field (must be 0).
    pub fn reserved(&self) -> u64 {
        read_u64(self.bytes(), field::MSG_RESERVED)
    }
    fn payload_range(&self) -> Field {
        let start = MESSAGE_HEADER_SIZE_BYTES;
        start..start.saturating_add(self.payload_length() as usize)
    }
    fn user_headers_range(&self) -> Field {
        let start = self.payload_range().end;
        start..start.saturating_add(self.user_headers_length() as usize)
    }
    /// Payload bytes.
    pub fn payload(&self) -> &[u8] {
        self.bytes().get(self.payload_range()).unwrap_or_default()
    }
    /// User headers (TLV) bytes.
    pub fn user_headers(&self) -> &[u8] {
        self.bytes()
            .get(self.user_headers_range())
            .unwrap_or_default()
    }
    /// The frame's bytes (header, payload, user headers).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes().get(..self.frame_len()).unwrap_or_default()
    }
}

impl<'a> MessageFrame<&'a [u8]> {
    /// Payload bytes, borrowed for the buffer's lifetime.
    pub fn payload_ref(&self) -> &'a [u8] {
        self.buffer.get(self.payload_range()).unwrap_or_default()
    }
    /// User headers bytes, borrowed for the buffer's lifetime.
    pub fn user_headers_ref(&self) -> &'a [u8] {
        self.buffer
            .get(self.user_headers_range())
            .unwrap_or_default()
    }
}

/// A validated batch: exactly one header and `message_count` frames, every checksum verified.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    bytes: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Validates `bytes` as exactly one batch (`batch_length == bytes.len()`): header length,
    /// reserved bytes zero, message_count > 0, frames that tile exactly with sane lengths,
    /// `offset_delta` = index, timestamp deltas, every message checksum and the batch checksum.
    ///
    /// # Errors
    /// The first [`BatchError`] found.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let batch = Self::check_layout(bytes)?;
        let header = batch.header();
        let mut hasher = header.checksum_hasher();
        for (index, frame) in (0u32..).zip(batch.frames()) {
            if frame.checksum() != frame.computed_checksum() {
                return Err(BatchError::MessageChecksum { index });
            }
            hasher.write(&frame.checksum().to_le_bytes());
        }
        if hasher.finish() != header.batch_checksum() {
            return Err(BatchError::BatchChecksum);
        }
        Ok(batch)
    }

    /// Validates the first batch of `bytes` (by its `batch_length`) and returns it with the rest:
    /// the way to walk concatenated records in a segment or a poll reply.
    ///
    /// # Errors
    /// As [`Self::new_checked`].
    pub fn parse_prefix(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), BatchError> {
        let header = BatchHeader::new_checked(bytes)?;
        let declared = header.batch_length_bytes();
        let len = usize::try_from(declared)
            .ok()
            .filter(|len| *len <= bytes.len())
            .ok_or(BatchError::LengthMismatch {
                declared,
                actual: bytes.len(),
            })?;
        let (this, rest) = bytes.split_at(len);
        Ok((Self::new_checked(this)?, rest))
    }

    /// Everything except the checksums.
    fn check_layout(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let header = BatchHeader::new_checked(bytes)?;
        if !header.reserved_is_zero() {
            return Err(BatchError::HeaderReservedNotZero);
        }
        if header.batch_length_bytes() != bytes.len() as u64 {
            return Err(BatchError::LengthMismatch {
                declared: header.batch_length_bytes(),
                actual: bytes.len(),
            });
        }
        let count = header.message_count();
        if count == 0 {
            return Err(BatchError::Empty);
        }
        let origin_us = header.origin_timestamp_us();
        let mut position = BATCH_HEADER_SIZE_BYTES;
        let mut index = 0u32;
        while position < bytes.len() {
            if index == count {
                return Err(BatchError::CountMismatch);
            }
            let rest = bytes.get(position..).unwrap_or_default();
            let frame = MessageFrame::new_checked(rest)
                .map_err(|_| BatchError::FrameTruncated { index })?;
            check_frame(&frame, index, origin_us)?;
            position += frame.frame_len();
            index += 1;
        }
        if index != count {
            return Err(BatchError::CountMismatch);
        }
        Ok(Self { bytes })
    }

    /// The header.
    pub fn header(&self) -> BatchHeader<&'a [u8]> {
        BatchHeader { buffer: self.bytes }
    }
    /// All bytes of the batch.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Messages in the batch.
    pub fn message_count(&self) -> u32 {
        self.header().message_count()
    }
    /// The frames in order.
    pub fn frames(&self) -> Frames<'a> {
        Frames {
            bytes: self.bytes,
            position: BATCH_HEADER_SIZE_BYTES,
        }
    }
    /// The messages in order, with absolute offsets and timestamps.
    pub fn messages(&self) -> impl Iterator<Item = Message<'a>> + 'a {
        let header = self.header();
        let base_offset = header.base_offset();
        let base_timestamp_us = header.base_timestamp_us();
        let origin_us = header.origin_timestamp_us();
        self.frames().map(move |frame| Message {
            offset: base_offset.saturating_add(u64::from(frame.offset_delta())),
            id: frame.id(),
            timestamp_us: base_timestamp_us,
            origin_timestamp_us: origin_us.saturating_add(u64::from(frame.timestamp_delta_us())),
            checksum: frame.checksum(),
            payload: frame.payload_ref(),
            user_headers: frame.user_headers_ref(),
        })
    }
}

/// One frame's semantic checks (the layout walk proved it fits).
fn check_frame(frame: &MessageFrame<&[u8]>, index: u32, origin_us: u64) -> Result<(), BatchError> {
    if frame.reserved() != 0 {
        return Err(BatchError::FrameReservedNotZero { index });
    }
    if frame.offset_delta() != index {
        return Err(BatchError::OffsetDelta {
            index,
            offset_delta: frame.offset_delta(),
        });
    }
    let payload_len = frame.payload_length() as usize;
    if payload_len == 0 {
        return Err(BatchError::EmptyPayload { index });
    }
    if payload_len > PAYLOAD_SIZE_MAX_BYTES {
        return Err(BatchError::PayloadTooBig { index });
    }
    if frame.user_headers_length() as usize > USER_HEADERS_SIZE_MAX_BYTES {
        return Err(BatchError::UserHeadersTooBig { index });
    }
    if iggy_binary_protocol::validate_user_headers(frame.user_headers()).is_err() {
        return Err(BatchError::UserHeadersMalformed { index });
    }
    let delta = u64::from(frame.timestamp_delta_us());
    if delta > TIMESTAMP_DELTA_MAX_US || origin_us.checked_add(delta).is_none() {
        return Err(BatchError::TimestampDelta { index });
    }
    Ok(())
}

/// Iterator over the frames of a validated batch (or of a slice's frame bytes).
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Frames<'a> {
    /// Frames laid end to end in `bytes` (no batch header). Iteration stops at the first frame
    /// that does not fit.
    pub fn over(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = MessageFrame<&'a [u8]>;
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.position..)?;
        if rest.is_empty() {
            return None;
        }
        let frame = MessageFrame::new_checked(rest).ok()?;
        let len = frame.frame_len();
        self.position = self.position.saturating_add(len);
        Some(MessageFrame {
            buffer: rest.get(..len)?,
        })
    }
}

/// One message of a batch, as a consumer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Absolute offset: `base_offset + offset_delta`.
    pub offset: u64,
    /// Message id.
    pub id: u128,
    /// Server append time (the batch's `base_timestamp`), µs.
    pub timestamp_us: u64,
    /// Producer time, µs.
    pub origin_timestamp_us: u64,
    /// Stored message checksum.
    pub checksum: u64,
    /// Payload.
    pub payload: &'a [u8],
    /// User headers (TLV).
    pub user_headers: &'a [u8],
}

/// What the header of a batch says, checked as far as the header alone can be: what a reader
/// walking stored records (a segment, a poll reply) needs of each record before it reads or
/// verifies the rest. Nothing is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeaderRepr {
    /// Partition id stamped by the server.
    pub partition_id: u64,
    /// Offset of the message with `offset_delta` 0.
    pub base_offset: u64,
    /// Server append time, µs since the epoch.
    pub base_timestamp_us: u64,
    /// Smallest origin timestamp of the messages, µs.
    pub origin_timestamp_us: u64,
    /// Header + frames, bytes (at most the limit given to [`BatchHeaderRepr::parse`]).
    pub batch_length_bytes: usize,
    /// Batch checksum.
    pub batch_checksum: u64,
    /// Messages in the batch (at least 1).
    pub message_count: u32,
}

impl BatchHeaderRepr {
    /// Parses the header at the start of `bytes`; what follows it is not looked at.
    ///
    /// # Errors
    /// [`BatchError::HeaderTruncated`] below 256 bytes, [`BatchError::HeaderReservedNotZero`],
    /// [`BatchError::Empty`] for no messages (zeroed bytes, the end of what a segment holds,
    /// fail here), [`BatchError::LengthOutOfRange`] when `batch_length` is above
    /// `batch_length_max_bytes` or too short for `message_count` frame headers.
    pub fn parse(bytes: &[u8], batch_length_max_bytes: usize) -> Result<Self, BatchError> {
        let header = BatchHeader::new_checked(bytes)?;
        if !header.reserved_is_zero() {
            return Err(BatchError::HeaderReservedNotZero);
        }
        let message_count = header.message_count();
        if message_count == 0 {
            return Err(BatchError::Empty);
        }
        let declared = header.batch_length_bytes();
        let frames_min = u64::from(message_count) * MESSAGE_HEADER_SIZE_BYTES as u64;
        let batch_length_bytes = usize::try_from(declared)
            .ok()
            .filter(|len| *len <= batch_length_max_bytes)
            .filter(|len| *len as u64 >= BATCH_HEADER_SIZE_BYTES as u64 + frames_min)
            .ok_or(BatchError::LengthOutOfRange { declared })?;
        Ok(Self {
            partition_id: header.partition_id(),
            base_offset: header.base_offset(),
            base_timestamp_us: header.base_timestamp_us(),
            origin_timestamp_us: header.origin_timestamp_us(),
            batch_length_bytes,
            batch_checksum: header.batch_checksum(),
            message_count,
        })
    }

    /// Offset of the last message: `base_offset + message_count - 1` (offsets are contiguous).
    pub fn last_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(u64::from(self.message_count.saturating_sub(1)))
    }
}

/// Checks a stored record read back, without hashing its payloads: the header (as
/// [`BatchHeaderRepr::parse`]), that `record` is exactly one batch, that the frames tile it,
/// and the batch checksum — which covers the header fields and every message's checksum field,
/// so a torn, misplaced or zeroed read fails. Payloads were verified on admission; hashing them
/// on every read would cost a pass over all the data.
///
/// # Errors
/// As [`BatchHeaderRepr::parse`]; [`BatchError::LengthMismatch`] when `record` is not
/// `batch_length` long; [`BatchError::CountMismatch`] when the frames do not tile it;
/// [`BatchError::BatchChecksum`].
pub fn verify_structure(
    record: &[u8],
    batch_length_max_bytes: usize,
) -> Result<BatchHeaderRepr, BatchError> {
    let repr = BatchHeaderRepr::parse(record, batch_length_max_bytes)?;
    if repr.batch_length_bytes != record.len() {
        return Err(BatchError::LengthMismatch {
            declared: repr.batch_length_bytes as u64,
            actual: record.len(),
        });
    }
    let header = BatchHeader::new_checked(record)?;
    let frames = record.get(BATCH_HEADER_SIZE_BYTES..).unwrap_or_default();
    let checksum =
        recompute_checksum(&header, frames, repr.message_count).ok_or(BatchError::CountMismatch)?;
    if checksum != repr.batch_checksum {
        return Err(BatchError::BatchChecksum);
    }
    Ok(repr)
}

/// Verifies a batch as a poll returns it — possibly a slice of a stored record, whose frames
/// keep their `offset_delta`, so the admission rules of [`Batch::new_checked`] do not apply:
/// [`verify_structure`] plus every message checksum. What a client checks a poll reply with.
///
/// # Errors
/// As [`verify_structure`]; [`BatchError::MessageChecksum`].
pub fn verify_polled(
    record: &[u8],
    batch_length_max_bytes: usize,
) -> Result<BatchHeaderRepr, BatchError> {
    let repr = verify_structure(record, batch_length_max_bytes)?;
    let frames = Frames::over(record.get(BATCH_HEADER_SIZE_BYTES..).unwrap_or_default());
    for (index, frame) in (0u32..).zip(frames) {
        if frame.checksum() != frame.computed_checksum() {
            return Err(BatchError::MessageChecksum { index });
        }
    }
    Ok(repr)
}

/// Recomputes the batch checksum of a record whose frames tile exactly, `None` otherwise.
fn recompute_checksum(header: &BatchHeader<&[u8]>, frames: &[u8], count: u32) -> Option<u64> {
    let mut hasher = header.checksum_hasher();
    let mut seen = 0u32;
    let mut covered = 0usize;
    for frame in Frames::over(frames) {
        hasher.write(frame.bytes().get(field::MSG_CHECKSUM)?);
        seen += 1;
        covered += frame.frame_len();
    }
    (seen == count && covered == frames.len()).then(|| hasher.finish())
}

/// Writes the server fields of an admitted batch and recomputes its batch checksum (message
/// checksums do not cover these fields, so they stay valid).
///
/// # Errors
/// [`BatchError::HeaderTruncated`], [`BatchError::LengthMismatch`] or
/// [`BatchError::CountMismatch`] when `record` is not one whole batch; nothing is written then.
pub fn stamp(
    record: &mut [u8],
    partition_id: u64,
    base_offset: u64,
    base_timestamp_us: u64,
) -> Result<(), BatchError> {
    let declared = BatchHeader::new_checked(&*record)?.batch_length_bytes();
    if declared != record.len() as u64 {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: record.len(),
        });
    }
    let mut probe = [0u8; BATCH_HEADER_SIZE_BYTES];
    probe.copy_from_slice(record.get(..BATCH_HEADER_SIZE_BYTES).unwrap_or(&[0; 256]));
    let mut header = BatchHeader { buffer: &mut probe };
    header.set_partition_id(partition_id);
    header.set_base_offset(base_offset);
    header.set_base_timestamp_us(base_timestamp_us);
    let count = header.message_count();
    let frames = record.get(BATCH_HEADER_SIZE_BYTES..).unwrap_or_default();
    let view = BatchHeader { buffer: &probe[..] };
    let checksum = recompute_checksum(&view, frames, count).ok_or(BatchError::CountMismatch)?;
    BatchHeader { buffer: &mut probe }.set_batch_checksum(checksum);
    if let Some(dst) = record.get_mut(..BATCH_HEADER_SIZE_BYTES) {
        dst.copy_from_slice(&probe);
    }
    Ok(())
}

/// The part of a stored record a poll returns: a rewritten header and a run of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSlice {
    /// Header to send instead of the record's: same base offset and timestamps, clamped
    /// `batch_length` and `message_count`, recomputed `batch_checksum`.
    pub header: [u8; BATCH_HEADER_SIZE_BYTES],
    /// Byte range of the selected frames inside the record.
    pub frames: Range<usize>,
    /// Messages selected.
    pub message_count: u32,
    /// Offset of the first message selected.
    pub first_offset: u64,
}

/// Selects the messages of a stamped `record` with offset ≥ `first_offset`, at most
/// `count_max` of them (see the module docs for why offsets are not rebased).
///
/// Returns `None` when nothing qualifies (`count_max == 0`, or every message is below
/// `first_offset`) or when `record` is not a well-formed batch.
pub fn slice_record(record: &[u8], first_offset: u64, count_max: u32) -> Option<RecordSlice> {
    let header = BatchHeader::new_checked(record).ok()?;
    if header.batch_length_bytes() != record.len() as u64 || count_max == 0 {
        return None;
    }
    let base_offset = header.base_offset();
    let mut start = None;
    let mut end = BATCH_HEADER_SIZE_BYTES;
    let mut selected = 0u32;
    let mut first = 0u64;
    let mut position = BATCH_HEADER_SIZE_BYTES;
    for frame in Frames::over(record.get(BATCH_HEADER_SIZE_BYTES..)?) {
        let offset = base_offset.saturating_add(u64::from(frame.offset_delta()));
        let len = frame.frame_len();
        if offset >= first_offset && selected < count_max {
            if start.is_none() {
                start = Some(position);
                first = offset;
            }
            selected += 1;
            end = position + len;
        }
        position += len;
    }
    let start = start?;
    let frames = record.get(start..end)?;
    let mut out = [0u8; BATCH_HEADER_SIZE_BYTES];
    out.copy_from_slice(record.get(..BATCH_HEADER_SIZE_BYTES)?);
    let mut rewritten = BatchHeader { buffer: &mut out };
    rewritten.set_batch_length_bytes((BATCH_HEADER_SIZE_BYTES + frames.len()) as u64);
    rewritten.set_message_count(selected);
    let checksum = recompute_checksum(&BatchHeader { buffer: &out[..] }, frames, selected)?;
    BatchHeader { buffer: &mut out }.set_batch_checksum(checksum);
    Some(RecordSlice {
        header: out,
        frames: start..end,
        message_count: selected,
        first_offset: first,
    })
}

/// Client side: encodes messages into one batch with every checksum, exactly like
/// `iggy_binary_protocol::requests::messages::SendMessagesEncoder` encodes its batch.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    bytes: Vec<u8>,
    origins_us: Vec<u64>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// An empty builder with room for `messages` messages and `bytes` bytes of frames.
    pub fn with_capacity(messages: usize, bytes: usize) -> Self {
        let mut out = Vec::with_capacity(BATCH_HEADER_SIZE_BYTES.saturating_add(bytes));
        out.resize(BATCH_HEADER_SIZE_BYTES, 0);
        Self {
            bytes: out,
            origins_us: Vec::with_capacity(messages),
        }
    }

    /// Forgets every message, keeping the allocations.
    pub fn clear(&mut self) {
        self.bytes.truncate(BATCH_HEADER_SIZE_BYTES);
        self.bytes.fill(0);
        self.origins_us.clear();
    }

    /// Messages pushed so far.
    pub fn len(&self) -> usize {
        self.origins_us.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.origins_us.is_empty()
    }

    /// Appends a message. Its timestamp delta and checksum are written by [`Self::finish`].
    ///
    /// # Errors
    /// [`BatchError::EmptyPayload`], [`BatchError::PayloadTooBig`],
    /// [`BatchError::UserHeadersTooBig`], [`BatchError::TooLarge`] (count or length past u32).
    pub fn push(
        &mut self,
        id: u128,
        payload: &[u8],
        user_headers: &[u8],
        origin_timestamp_us: u64,
    ) -> Result<(), BatchError> {
        let index = u32::try_from(self.origins_us.len()).map_err(|_| BatchError::TooLarge)?;
        if payload.is_empty() {
            return Err(BatchError::EmptyPayload { index });
        }
        if payload.len() > PAYLOAD_SIZE_MAX_BYTES {
            return Err(BatchError::PayloadTooBig { index });
        }
        if user_headers.len() > USER_HEADERS_SIZE_MAX_BYTES {
            return Err(BatchError::UserHeadersTooBig { index });
        }
        let frame_len = MESSAGE_HEADER_SIZE_BYTES + payload.len() + user_headers.len();
        if self.bytes.len().saturating_add(frame_len) > u32::MAX as usize {
            return Err(BatchError::TooLarge);
        }
        let mut header = [0u8; MESSAGE_HEADER_SIZE_BYTES];
        header[field::MSG_ID].copy_from_slice(&id.to_le_bytes());
        header[field::MSG_OFFSET_DELTA].copy_from_slice(&index.to_le_bytes());
        let headers_len = user_headers.len() as u32;
        header[field::MSG_USER_HEADERS_LENGTH].copy_from_slice(&headers_len.to_le_bytes());
        let payload_len = payload.len() as u32;
        header[field::MSG_PAYLOAD_LENGTH].copy_from_slice(&payload_len.to_le_bytes());
        self.bytes.extend_from_slice(&header);
        self.bytes.extend_from_slice(payload);
        self.bytes.extend_from_slice(user_headers);
        self.origins_us.push(origin_timestamp_us);
        Ok(())
    }

    /// The batch as the last [`Self::finish`] returned it (pushes since then are not in it
    /// until the next `finish`).
    pub fn finished_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Writes timestamp deltas, message checksums and the header; returns the whole batch.
    /// Server fields (partition, base offset, base timestamp) are 0, as the SDK sends them.
    ///
    /// # Errors
    /// [`BatchError::Empty`] with no messages; [`BatchError::TimestampDelta`] when a message's
    /// origin runs more than `u32::MAX` µs ahead of the earliest.
    pub fn finish(&mut self) -> Result<&[u8], BatchError> {
        let origin_us = *self.origins_us.iter().min().ok_or(BatchError::Empty)?;
        let mut hasher_frames = Vec::with_capacity(self.origins_us.len());
        let mut position = BATCH_HEADER_SIZE_BYTES;
        for (index, origin) in (0u32..).zip(self.origins_us.iter()) {
            let delta = origin - origin_us;
            let delta = u32::try_from(delta).map_err(|_| BatchError::TimestampDelta { index })?;
            let frame_bytes = self.bytes.get_mut(position..).unwrap_or_default();
            write(
                frame_bytes,
                field::MSG_TIMESTAMP_DELTA,
                &delta.to_le_bytes(),
            );
            let len = MessageFrame::new_checked(&*frame_bytes)
                .map(|f| f.frame_len())
                .map_err(|_| BatchError::FrameTruncated { index })?;
            let checksum = XxHash3_64::oneshot(frame_bytes.get(8..len).unwrap_or_default());
            write(frame_bytes, field::MSG_CHECKSUM, &checksum.to_le_bytes());
            hasher_frames.push(checksum);
            position += len;
        }
        let count = u32::try_from(self.origins_us.len()).map_err(|_| BatchError::TooLarge)?;
        let length = self.bytes.len() as u64;
        let mut header = BatchHeader {
            buffer: &mut self.bytes[..],
        };
        header.set_origin_timestamp_us(origin_us);
        header.set_batch_length_bytes(length);
        header.set_message_count(count);
        let mut hasher = BatchHeader {
            buffer: &self.bytes[..],
        }
        .checksum_hasher();
        for checksum in hasher_frames {
            hasher.write(&checksum.to_le_bytes());
        }
        let checksum = hasher.finish();
        BatchHeader {
            buffer: &mut self.bytes[..],
        }
        .set_batch_checksum(checksum);
        Ok(&self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use iggy_binary_protocol::batch::decode_batch_slice;
    use iggy_binary_protocol::requests::messages::{RawMessage, SendMessagesEncoder};
    use iggy_binary_protocol::responses::messages::PollMessagesResponse;
    use iggy_binary_protocol::{WireIdentifier, WirePartitioning};

    /// One TLV pair: String key "k" → String value "v".
    const HEADERS: &[u8] = &[2, 1, 0, 0, 0, b'k', 2, 1, 0, 0, 0, b'v'];

    fn sample() -> Vec<(u128, &'static [u8], &'static [u8], u64)> {
        vec![
            (1, b"first", b"", 1_000),
            (2, b"second", HEADERS, 900),
            (u128::MAX, b"third!", b"", 5_000_000),
        ]
    }

    fn ours(messages: &[(u128, &[u8], &[u8], u64)]) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        for (id, payload, headers, origin) in messages {
            builder.push(*id, payload, headers, *origin).unwrap();
        }
        builder.finish().unwrap().to_vec()
    }

    /// The batch part of iggy's own SendMessages encoding.
    fn iggy_batch(messages: &[(u128, &[u8], &[u8], u64)]) -> Vec<u8> {
        let raw: Vec<RawMessage<'_>> = messages
            .iter()
            .map(|(id, payload, headers, origin)| RawMessage {
                id: *id,
                origin_timestamp: *origin,
                headers: (!headers.is_empty()).then_some(*headers),
                payload,
            })
            .collect();
        let (stream, topic) = (WireIdentifier::numeric(1), WireIdentifier::numeric(2));
        let mut buf = BytesMut::new();
        SendMessagesEncoder::encode(&mut buf, &stream, &topic, &WirePartitioning::Balanced, &raw)
            .unwrap();
        let prefix = 4 + 6 + 6 + 2 + 4;
        buf[prefix..].to_vec()
    }

    #[test]
    fn builder_output_is_byte_identical_to_iggys_encoder() {
        let messages = sample();
        let bytes = ours(&messages);
        assert_eq!(bytes, iggy_batch(&messages));
        let batch = Batch::new_checked(&bytes).unwrap();
        assert_eq!(batch.message_count(), 3);
        assert_eq!(batch.header().origin_timestamp_us(), 900);
        let decoded: Vec<Message<'_>> = batch.messages().collect();
        assert_eq!(decoded[1].payload, b"second");
        assert_eq!(decoded[1].user_headers, HEADERS);
        assert_eq!(decoded[1].origin_timestamp_us, 900);
        assert_eq!(decoded[2].origin_timestamp_us, 5_000_000);
        assert_eq!(decoded[2].id, u128::MAX);
        assert_eq!(
            decoded.iter().map(|m| m.offset).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn builder_reuse_after_clear_gives_the_same_bytes() {
        let mut builder = BatchBuilder::with_capacity(4, 1024);
        builder.push(9, b"x", b"", 1).unwrap();
        builder.finish().unwrap();
        builder.clear();
        assert!(builder.is_empty());
        for (id, payload, headers, origin) in sample() {
            builder.push(id, payload, headers, origin).unwrap();
        }
        assert_eq!(builder.len(), 3);
        assert_eq!(builder.finish().unwrap(), &ours(&sample())[..]);
        assert_eq!(builder.finished_bytes(), &ours(&sample())[..]);
    }

    #[test]
    fn builder_refuses_what_a_server_would_refuse() {
        let mut builder = BatchBuilder::new();
        assert_eq!(builder.finish().unwrap_err(), BatchError::Empty);
        assert_eq!(
            builder.push(1, b"", b"", 0).unwrap_err(),
            BatchError::EmptyPayload { index: 0 }
        );
        builder.push(1, b"a", b"", 0).unwrap();
        builder.push(2, b"b", b"", u64::from(u32::MAX) + 1).unwrap();
        assert_eq!(
            builder.finish().unwrap_err(),
            BatchError::TimestampDelta { index: 1 }
        );
    }

    #[test]
    fn stamp_writes_server_fields_and_iggy_verifies_the_checksum() {
        let mut record = ours(&sample());
        stamp(&mut record, 3, 1_000, 77_000).unwrap();
        let header = BatchHeader::new_checked(&record[..]).unwrap();
        assert_eq!(header.partition_id(), 3);
        assert_eq!(header.base_offset(), 1_000);
        assert_eq!(header.base_timestamp_us(), 77_000);
        let iggy = decode_batch_slice(&record).unwrap();
        assert_eq!(iggy.header.base_offset, 1_000);
        let batch = Batch::new_checked(&record).unwrap();
        let offsets: Vec<u64> = batch.messages().map(|m| m.offset).collect();
        assert_eq!(offsets, [1_000, 1_001, 1_002]);
        assert!(batch.messages().all(|m| m.timestamp_us == 77_000));
        let mut short = record.clone();
        short.pop();
        assert!(stamp(&mut short, 0, 0, 0).is_err());
        assert_eq!(&short[..], &record[..record.len() - 1]);
    }

    fn stamped() -> Vec<u8> {
        let mut record = ours(&sample());
        stamp(&mut record, 0, 10, 5).unwrap();
        record
    }

    fn served(record: &[u8], slice: &RecordSlice) -> Vec<u8> {
        let mut out = slice.header.to_vec();
        out.extend_from_slice(&record[slice.frames.clone()]);
        out
    }

    #[test]
    fn slice_from_inside_a_record_keeps_offsets_exact_for_the_sdk() {
        let record = stamped();
        let slice = slice_record(&record, 11, 1).unwrap();
        assert_eq!((slice.message_count, slice.first_offset), (1, 11));
        let bytes = served(&record, &slice);
        decode_batch_slice(&bytes).expect("iggy verifies the rewritten checksum");
        let mut reply = crate::reply::poll_reply_prefix(0, 12, 1).to_vec();
        reply.extend_from_slice(&bytes);
        let response = PollMessagesResponse::decode(&reply).unwrap();
        let polled: Vec<_> = response.messages.map(Result::unwrap).collect();
        assert_eq!(polled.len(), 1);
        assert_eq!(polled[0].offset, 11);
        assert_eq!(polled[0].payload, b"second");
        assert_eq!(polled[0].origin_timestamp, 900);
        assert_eq!(polled[0].user_headers, HEADERS);
    }

    #[test]
    fn slice_edges() {
        let record = stamped();
        let whole = slice_record(&record, 0, 100).unwrap();
        assert_eq!(served(&record, &whole), record);
        let tail = slice_record(&record, 12, 100).unwrap();
        assert_eq!((tail.message_count, tail.first_offset), (1, 12));
        assert_eq!(slice_record(&record, 13, 100), None);
        assert_eq!(slice_record(&record, 10, 0), None);
        assert_eq!(slice_record(&record[..300], 10, 1), None);
        let two = slice_record(&record, 10, 2).unwrap();
        let bytes = served(&record, &two);
        let batch = Batch::parse_prefix(&bytes).map(|(b, _)| b);
        // Slices keep offset deltas, so a slice passes iggy's checksum verification...
        decode_batch_slice(&bytes).unwrap();
        // ...and ours too when it starts at the first message.
        assert_eq!(batch.unwrap().message_count(), 2);
    }

    fn corrupt(edit: impl Fn(&mut Vec<u8>)) -> BatchError {
        let mut bytes = ours(&sample());
        edit(&mut bytes);
        Batch::new_checked(&bytes).unwrap_err()
    }

    #[test]
    fn every_corruption_gets_its_error_and_code() {
        let first_frame = BATCH_HEADER_SIZE_BYTES;
        let cases: Vec<(BatchError, ErrorCode)> = vec![
            (corrupt(|b| b.truncate(255)), ErrorCode::InvalidMessagesSize),
            (corrupt(|b| b[100] = 1), ErrorCode::InvalidFormat),
            (corrupt(|b| b.push(0)), ErrorCode::InvalidMessagesSize),
            (corrupt(|b| b[48] = 0), ErrorCode::InvalidMessagesCount),
            (corrupt(|b| b[48] = 2), ErrorCode::InvalidMessagesCount),
            (
                corrupt(|b| b[first_frame + 40] = 1),
                ErrorCode::InvalidFormat,
            ),
            (
                corrupt(|b| b[first_frame + 24] = 5),
                ErrorCode::InvalidFormat,
            ),
            (
                corrupt(|b| b[first_frame + 48] ^= 1),
                ErrorCode::InvalidMessageChecksum,
            ),
            (corrupt(|b| b[40] ^= 1), ErrorCode::InvalidBatchChecksum),
            (corrupt(|b| b[16] = 1), ErrorCode::InvalidBatchChecksum),
        ];
        for (error, code) in cases {
            assert_eq!(error.error_code(), code, "{error:?}");
        }
        let mut bytes = ours(&sample());
        let len = bytes.len() as u64 - 1;
        bytes.pop();
        bytes[32..40].copy_from_slice(&len.to_le_bytes());
        assert_eq!(
            Batch::new_checked(&bytes).unwrap_err(),
            BatchError::FrameTruncated { index: 2 }
        );
    }

    #[test]
    fn malformed_user_headers_and_overflowing_timestamps_are_refused() {
        let mut builder = BatchBuilder::new();
        builder.push(1, b"p", &[2, 1, 0, 0, 0, b'k'], 0).unwrap();
        let bytes = builder.finish().unwrap().to_vec();
        assert_eq!(
            Batch::new_checked(&bytes).unwrap_err(),
            BatchError::UserHeadersMalformed { index: 0 }
        );
        let mut builder = BatchBuilder::new();
        builder.push(1, b"p", b"", 0).unwrap();
        builder.push(2, b"q", b"", 5).unwrap();
        let mut bytes = builder.finish().unwrap().to_vec();
        // An origin so late that origin + delta overflows (layout is checked before checksums).
        bytes[24..32].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
        assert_eq!(
            Batch::new_checked(&bytes).unwrap_err(),
            BatchError::TimestampDelta { index: 1 }
        );
    }

    #[test]
    fn parse_prefix_walks_concatenated_records() {
        let one = stamped();
        let mut two = ours(&sample()[..1]);
        stamp(&mut two, 0, 13, 6).unwrap();
        let mut log = one.clone();
        log.extend_from_slice(&two);
        let (first, rest) = Batch::parse_prefix(&log).unwrap();
        assert_eq!(first.bytes(), &one[..]);
        let (second, rest) = Batch::parse_prefix(rest).unwrap();
        assert_eq!(second.messages().next().unwrap().offset, 13);
        assert!(rest.is_empty());
        assert!(Batch::parse_prefix(&log[..one.len() - 1]).is_err());
    }

    #[test]
    fn header_repr_reads_every_field_of_a_golden_header() {
        let mut header = [0u8; BATCH_HEADER_SIZE_BYTES];
        header[0..8].copy_from_slice(&7u64.to_le_bytes());
        header[8..16].copy_from_slice(&1_000u64.to_le_bytes());
        header[16..24].copy_from_slice(&2_000u64.to_le_bytes());
        header[24..32].copy_from_slice(&3_000u64.to_le_bytes());
        header[32..40].copy_from_slice(&400u64.to_le_bytes());
        header[40..48].copy_from_slice(&0xfeed_u64.to_le_bytes());
        header[48..52].copy_from_slice(&3u32.to_le_bytes());
        let repr = BatchHeaderRepr::parse(&header, 1 << 20).unwrap();
        assert_eq!(
            repr,
            BatchHeaderRepr {
                partition_id: 7,
                base_offset: 1_000,
                base_timestamp_us: 2_000,
                origin_timestamp_us: 3_000,
                batch_length_bytes: 400,
                batch_checksum: 0xfeed,
                message_count: 3,
            }
        );
        assert_eq!(repr.last_offset(), 1_002);
        // Only the header is read: the frames need not be there.
        let stored = stamped();
        assert_eq!(
            BatchHeaderRepr::parse(&stored[..256], 1 << 20)
                .unwrap()
                .batch_length_bytes,
            stored.len()
        );
    }

    #[test]
    fn header_repr_refuses_what_the_header_alone_disproves() {
        let parse = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = stamped();
            edit(&mut bytes);
            BatchHeaderRepr::parse(&bytes, 1 << 20).unwrap_err()
        };
        assert_eq!(parse(&|b| b.truncate(255)), BatchError::HeaderTruncated);
        assert_eq!(parse(&|b| b[60] = 1), BatchError::HeaderReservedNotZero);
        assert_eq!(parse(&|b| b[48..52].fill(0)), BatchError::Empty);
        assert_eq!(parse(&|b| b.fill(0)), BatchError::Empty);
        // Three frames need at least 256 + 3 * 48 bytes.
        let short = (256 + 3 * 48 - 1) as u64;
        assert_eq!(
            parse(&|b| b[32..40].copy_from_slice(&short.to_le_bytes())),
            BatchError::LengthOutOfRange { declared: short }
        );
        let long = (1u64 << 20) + 1;
        assert_eq!(
            parse(&|b| b[32..40].copy_from_slice(&long.to_le_bytes())),
            BatchError::LengthOutOfRange { declared: long }
        );
        assert_eq!(
            BatchError::LengthOutOfRange { declared: long }.error_code(),
            ErrorCode::InvalidMessagesSize
        );
    }

    #[test]
    fn structure_check_catches_torn_and_misplaced_records_but_not_payload_bytes() {
        let record = stamped();
        assert_eq!(verify_structure(&record, 1 << 20).unwrap().base_offset, 10);
        let flip = |at: usize| {
            let mut bytes = record.clone();
            bytes[at] ^= 1;
            bytes
        };
        let last = record.len() - 1;
        // Payloads are not hashed: the structure check passes, the poll check does not.
        assert!(verify_structure(&flip(last), 1 << 20).is_ok());
        assert_eq!(
            verify_polled(&flip(last), 1 << 20).unwrap_err(),
            BatchError::MessageChecksum { index: 2 }
        );
        // A header field or a message checksum field is covered by the batch checksum.
        for at in [8, BATCH_HEADER_SIZE_BYTES] {
            assert_eq!(
                verify_structure(&flip(at), 1 << 20).unwrap_err(),
                BatchError::BatchChecksum,
                "byte {at}"
            );
        }
        // A payload length that breaks the tiling.
        assert_eq!(
            verify_structure(&flip(BATCH_HEADER_SIZE_BYTES + 36), 1 << 20).unwrap_err(),
            BatchError::CountMismatch
        );
        assert!(matches!(
            verify_structure(&record[..last], 1 << 20),
            Err(BatchError::LengthMismatch { .. })
        ));
        assert_eq!(
            verify_structure(&[0u8; 300], 1 << 20),
            Err(BatchError::Empty)
        );
    }

    #[test]
    fn a_slice_from_inside_a_record_passes_the_poll_check_but_not_admission() {
        let record = stamped();
        let slice = slice_record(&record, 11, 2).unwrap();
        let bytes = served(&record, &slice);
        let repr = verify_polled(&bytes, 1 << 20).unwrap();
        assert_eq!((repr.base_offset, repr.message_count), (10, 2));
        assert_eq!(
            Batch::new_checked(&bytes).unwrap_err(),
            BatchError::OffsetDelta {
                index: 0,
                offset_delta: 1
            }
        );
    }

    #[test]
    fn frame_view_accessors() {
        let bytes = ours(&sample());
        let frame = MessageFrame::new_checked(&bytes[BATCH_HEADER_SIZE_BYTES..]).unwrap();
        assert_eq!(frame.payload(), b"first");
        assert_eq!(frame.id(), 1);
        assert_eq!(frame.timestamp_delta_us(), 100);
        assert_eq!(frame.checksum(), frame.computed_checksum());
        assert_eq!(frame.as_bytes().len(), 48 + 5);
        assert!(MessageFrame::new_checked(&bytes[BATCH_HEADER_SIZE_BYTES..300]).is_err());
    }
}
