//! Stored records: a stamped SendMessages batch, byte for byte (iggy-protocol.md §1A.4).
//!
//! ```text
//! record = [batch header 256 B][frame]*            frame = [48 B header][payload][user headers]
//! header:  0 partition_id u64 | 8 base_offset u64 | 16 base_timestamp u64 | 24 origin_timestamp u64
//!         32 batch_length u64 (= 256 + frames)     | 40 batch_checksum u64 | 48 message_count u32
//!         52..256 zero
//! frame:   0 checksum u64 | 8 id u128 | 24 offset_delta u32 | 28 timestamp_delta u32
//!         32 user_headers_length u32 | 36 payload_length u32 | 40 reserved u64
//! ```
//!
//! Message checksum = XxHash3-64 of `frame[8..]`; batch checksum = streaming XxHash3-64 over the
//! LE header fields (partition_id, base_offset, base_timestamp, origin_timestamp, batch_length,
//! message_count) followed by each frame's 8-byte checksum field.
//!
//! Admission validation, stamping, full verification and slicing come from
//! `riptide_protocol::batch` (the crate that owns the layout); this module adds the cheap header
//! parse the engine needs on its hot paths, and test/benchmark batch building.

use std::hash::Hasher;
use std::ops::Range;

use riptide_protocol::batch::{self, Batch, BatchError};
use twox_hash::XxHash3_64;

use crate::constants::{BATCH_HEADER_SIZE_BYTES, MESSAGE_HEADER_SIZE_BYTES, RECORD_SIZE_MAX_BYTES};

mod field {
    use std::ops::Range;
    pub const PARTITION_ID: Range<usize> = 0..8;
    pub const BASE_OFFSET: Range<usize> = 8..16;
    pub const BASE_TIMESTAMP: Range<usize> = 16..24;
    pub const ORIGIN_TIMESTAMP: Range<usize> = 24..32;
    pub const BATCH_LENGTH: Range<usize> = 32..40;
    pub const BATCH_CHECKSUM: Range<usize> = 40..48;
    pub const MESSAGE_COUNT: Range<usize> = 48..52;
    pub const RESERVED: Range<usize> = 52..256;
    pub const FRAME_CHECKSUM: Range<usize> = 0..8;
    pub const FRAME_OFFSET_DELTA: Range<usize> = 24..28;
    pub const FRAME_USER_HEADERS_LENGTH: Range<usize> = 32..36;
    pub const FRAME_PAYLOAD_LENGTH: Range<usize> = 36..40;
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record shorter than its header or its declared length")]
    Truncated,
    #[error("record header is malformed (length, count or reserved bytes)")]
    BadHeader,
    #[error("message frames do not tile the record")]
    BadFrames,
    #[error("message checksum mismatch")]
    MessageChecksum,
    #[error("batch checksum mismatch")]
    BatchChecksum,
}

fn u64_at(bytes: &[u8], range: Range<usize>) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[range]);
    u64::from_le_bytes(raw)
}

fn u32_at(bytes: &[u8], range: Range<usize>) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[range]);
    u32::from_le_bytes(raw)
}

/// The header fields the engine needs, read from a header whose shape was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub partition_id: u64,
    pub base_offset: u64,
    pub base_timestamp_us: u64,
    pub origin_timestamp_us: u64,
    pub length_bytes: usize,
    pub checksum: u64,
    pub message_count: u32,
}

impl RecordHeader {
    /// Parses and shape-checks a header (no checksums). Zeroed bytes — the normal end of a
    /// segment — fail with `BadHeader`.
    pub fn parse(bytes: &[u8]) -> Result<RecordHeader, RecordError> {
        if bytes.len() < BATCH_HEADER_SIZE_BYTES {
            return Err(RecordError::Truncated);
        }
        let length = u64_at(bytes, field::BATCH_LENGTH);
        let count = u32_at(bytes, field::MESSAGE_COUNT);
        let frames_min = (count as u64).saturating_mul(MESSAGE_HEADER_SIZE_BYTES as u64);
        let reserved_zero = bytes[field::RESERVED].iter().all(|b| *b == 0);
        if count == 0
            || !reserved_zero
            || length > RECORD_SIZE_MAX_BYTES as u64
            || length < BATCH_HEADER_SIZE_BYTES as u64 + frames_min
        {
            return Err(RecordError::BadHeader);
        }
        Ok(RecordHeader {
            partition_id: u64_at(bytes, field::PARTITION_ID),
            base_offset: u64_at(bytes, field::BASE_OFFSET),
            base_timestamp_us: u64_at(bytes, field::BASE_TIMESTAMP),
            origin_timestamp_us: u64_at(bytes, field::ORIGIN_TIMESTAMP),
            length_bytes: length as usize,
            checksum: u64_at(bytes, field::BATCH_CHECKSUM),
            message_count: count,
        })
    }

    /// Offset of the last message of the record.
    pub fn last_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(self.message_count as u64 - 1)
    }
}

/// Walks the frames of `frames` (the bytes after the header), returning each frame's range.
/// Fails if a frame runs past the end.
fn frame_ranges(
    frames: &[u8],
    count: u32,
    mut visit: impl FnMut(Range<usize>),
) -> Result<usize, RecordError> {
    let mut position = 0usize;
    for _ in 0..count {
        let header_end = position + MESSAGE_HEADER_SIZE_BYTES;
        if header_end > frames.len() {
            return Err(RecordError::BadFrames);
        }
        let frame = &frames[position..header_end];
        let body = u32_at(frame, field::FRAME_PAYLOAD_LENGTH) as usize
            + u32_at(frame, field::FRAME_USER_HEADERS_LENGTH) as usize;
        let end = header_end.checked_add(body).ok_or(RecordError::BadFrames)?;
        if end > frames.len() {
            return Err(RecordError::BadFrames);
        }
        visit(position..end);
        position = end;
    }
    Ok(position)
}

fn hash_header_fields(hasher: &mut XxHash3_64, header: &[u8]) {
    for range in [
        field::PARTITION_ID,
        field::BASE_OFFSET,
        field::BASE_TIMESTAMP,
        field::ORIGIN_TIMESTAMP,
        field::BATCH_LENGTH,
        field::MESSAGE_COUNT,
    ] {
        hasher.write(&header[range]);
    }
}

/// Computes the batch checksum of a record whose frames tile it.
fn batch_checksum(record: &[u8], count: u32) -> Result<u64, RecordError> {
    let (header, frames) = record.split_at(BATCH_HEADER_SIZE_BYTES);
    let mut hasher = XxHash3_64::new();
    hash_header_fields(&mut hasher, header);
    let covered = frame_ranges(frames, count, |range| {
        hasher.write(&frames[range.start..range.start + 8])
    })?;
    if covered != frames.len() {
        return Err(RecordError::BadFrames);
    }
    Ok(hasher.finish())
}

fn from_batch_error(error: BatchError) -> RecordError {
    match error {
        BatchError::HeaderTruncated => RecordError::Truncated,
        BatchError::LengthMismatch { declared, actual } if declared > actual as u64 => {
            RecordError::Truncated
        }
        BatchError::MessageChecksum { .. } => RecordError::MessageChecksum,
        BatchError::BatchChecksum => RecordError::BatchChecksum,
        BatchError::HeaderReservedNotZero
        | BatchError::LengthMismatch { .. }
        | BatchError::Empty => RecordError::BadHeader,
        _ => RecordError::BadFrames,
    }
}

/// Fully verifies `record` (exactly one record) with the protocol's batch validation: shape,
/// tiling, every message checksum and the batch checksum. Used by recovery, which trusts
/// nothing on disk.
pub fn verify(record: &[u8]) -> Result<RecordHeader, RecordError> {
    let header = RecordHeader::parse(record)?;
    if record.len() != header.length_bytes {
        return Err(RecordError::Truncated);
    }
    Batch::new_checked(record).map_err(from_batch_error)?;
    Ok(header)
}

/// Checks a record read back from disk without hashing its payloads: shape, frame tiling and
/// the batch checksum, which covers the header fields and every message's checksum field. A
/// torn, misplaced or zeroed read fails it. Payloads were verified on admission and are
/// verified again by recovery; hashing them on every poll would cost a full pass over the data.
pub fn verify_structure(record: &[u8]) -> Result<RecordHeader, RecordError> {
    let header = RecordHeader::parse(record)?;
    if record.len() != header.length_bytes {
        return Err(RecordError::Truncated);
    }
    if batch_checksum(record, header.message_count)? != header.checksum {
        return Err(RecordError::BatchChecksum);
    }
    Ok(header)
}

/// Verifies the checksums of a record that may be a poll slice (whose frames keep their
/// original `offset_delta`, so the protocol's admission rules do not apply): shape, tiling,
/// every message checksum and the batch checksum. Used by tests and clients of poll replies.
pub fn verify_checksums(record: &[u8]) -> Result<RecordHeader, RecordError> {
    let header = RecordHeader::parse(record)?;
    if record.len() != header.length_bytes {
        return Err(RecordError::Truncated);
    }
    let frames = &record[BATCH_HEADER_SIZE_BYTES..];
    let mut message_ok = true;
    frame_ranges(frames, header.message_count, |range| {
        let stored = u64_at(&frames[range.clone()], field::FRAME_CHECKSUM);
        if XxHash3_64::oneshot(&frames[range.start + 8..range.end]) != stored {
            message_ok = false;
        }
    })?;
    if !message_ok {
        return Err(RecordError::MessageChecksum);
    }
    if batch_checksum(record, header.message_count)? != header.checksum {
        return Err(RecordError::BatchChecksum);
    }
    Ok(header)
}

/// Writes the server fields into a validated batch and recomputes its batch checksum (the
/// protocol's `stamp`).
pub fn stamp(
    record: &mut [u8],
    partition_id: u64,
    base_offset: u64,
    base_timestamp_us: u64,
) -> Result<RecordHeader, RecordError> {
    let header = RecordHeader::parse(record)?;
    if record.len() != header.length_bytes {
        return Err(RecordError::Truncated);
    }
    batch::stamp(record, partition_id, base_offset, base_timestamp_us).map_err(from_batch_error)?;
    RecordHeader::parse(record)
}

/// A poll that starts inside a record, or is cut by its count limit: a rewritten header and the
/// byte range (within the record) of the frames that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub header: [u8; BATCH_HEADER_SIZE_BYTES],
    pub frames: Range<usize>,
    pub message_count: u32,
}

/// Slices `record` (a verified stored record) to the messages with offset >= `first_offset`,
/// at most `count_max` of them, with the protocol's `slice_record`. `None` when no message
/// qualifies. The rewritten header keeps base offset and timestamps (frames keep their deltas)
/// and clamps length, count and checksum, as Iggy's server does.
pub fn slice(record: &[u8], first_offset: u64, count_max: u32) -> Option<Slice> {
    let sliced = batch::slice_record(record, first_offset, count_max)?;
    Some(Slice {
        header: sliced.header,
        frames: sliced.frames,
        message_count: sliced.message_count,
    })
}

/// Builds a valid unstamped batch of `payloads` — used by tests, the crash helper and the
/// benchmark (clients use the protocol crate's builder).
pub fn build_batch(payloads: &[&[u8]], origin_timestamp_us: u64) -> Vec<u8> {
    let frames_len: usize = payloads
        .iter()
        .map(|p| MESSAGE_HEADER_SIZE_BYTES + p.len())
        .sum();
    let mut record = vec![0u8; BATCH_HEADER_SIZE_BYTES + frames_len];
    let mut position = BATCH_HEADER_SIZE_BYTES;
    for (index, payload) in payloads.iter().enumerate() {
        let frame = &mut record[position..position + MESSAGE_HEADER_SIZE_BYTES + payload.len()];
        frame[8..24].copy_from_slice(&(index as u128 + 1).to_le_bytes());
        frame[field::FRAME_OFFSET_DELTA].copy_from_slice(&(index as u32).to_le_bytes());
        frame[field::FRAME_PAYLOAD_LENGTH].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        frame[MESSAGE_HEADER_SIZE_BYTES..].copy_from_slice(payload);
        let checksum = XxHash3_64::oneshot(&frame[8..]);
        frame[field::FRAME_CHECKSUM].copy_from_slice(&checksum.to_le_bytes());
        position += MESSAGE_HEADER_SIZE_BYTES + payload.len();
    }
    record[field::ORIGIN_TIMESTAMP].copy_from_slice(&origin_timestamp_us.to_le_bytes());
    let length = record.len() as u64;
    record[field::BATCH_LENGTH].copy_from_slice(&length.to_le_bytes());
    record[field::MESSAGE_COUNT].copy_from_slice(&(payloads.len() as u32).to_le_bytes());
    let checksum = batch_checksum(&record, payloads.len() as u32).unwrap_or(0);
    record[field::BATCH_CHECKSUM].copy_from_slice(&checksum.to_le_bytes());
    record
}

/// Iterates over the payloads of a record (tests and the crash checker).
pub fn payloads(record: &[u8]) -> Vec<Vec<u8>> {
    let Ok(header) = RecordHeader::parse(record) else {
        return Vec::new();
    };
    let Some(frames) = record.get(BATCH_HEADER_SIZE_BYTES..header.length_bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let _ = frame_ranges(frames, header.message_count, |range| {
        let payload_length = u32_at(&frames[range.clone()], field::FRAME_PAYLOAD_LENGTH) as usize;
        let start = range.start + MESSAGE_HEADER_SIZE_BYTES;
        out.push(frames[start..start + payload_length].to_vec());
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batch_verifies_and_stamp_keeps_it_valid() {
        let mut record = build_batch(&[b"alpha", b"b", b"gamma-gamma"], 77);
        let header = verify(&record).unwrap();
        assert_eq!(header.message_count, 3);
        assert_eq!(header.length_bytes, record.len());
        let stamped = stamp(&mut record, 5, 1000, 123_456).unwrap();
        assert_eq!(
            (
                stamped.partition_id,
                stamped.base_offset,
                stamped.base_timestamp_us
            ),
            (5, 1000, 123_456)
        );
        assert_eq!(verify(&record).unwrap().last_offset(), 1002);
    }

    #[test]
    fn verify_catches_a_flipped_payload_byte_and_a_flipped_header_field() {
        let record = build_batch(&[b"hello", b"world"], 1);
        let mut payload_flip = record.clone();
        let last = payload_flip.len() - 1;
        payload_flip[last] ^= 1;
        assert_eq!(verify(&payload_flip), Err(RecordError::MessageChecksum));
        let mut offset_flip = record.clone();
        offset_flip[8] ^= 1;
        assert_eq!(verify(&offset_flip), Err(RecordError::BatchChecksum));
        assert_eq!(
            verify(&record[..record.len() - 1]),
            Err(RecordError::Truncated)
        );
        assert_eq!(verify(&[0u8; 300]), Err(RecordError::BadHeader));
    }

    #[test]
    fn structure_check_catches_torn_and_misplaced_records_but_not_payload_bytes() {
        let mut record = build_batch(&[b"hello", b"world"], 1);
        stamp(&mut record, 0, 40, 7).unwrap();
        assert_eq!(verify_structure(&record).unwrap().base_offset, 40);
        let mut payload_flip = record.clone();
        let last = payload_flip.len() - 1;
        payload_flip[last] ^= 1;
        assert!(verify_structure(&payload_flip).is_ok());
        let mut offset_flip = record.clone();
        offset_flip[8] ^= 1;
        assert_eq!(
            verify_structure(&offset_flip),
            Err(RecordError::BatchChecksum)
        );
        let mut message_checksum_flip = record.clone();
        message_checksum_flip[BATCH_HEADER_SIZE_BYTES] ^= 1;
        assert_eq!(
            verify_structure(&message_checksum_flip),
            Err(RecordError::BatchChecksum)
        );
        let mut length_flip = record.clone();
        length_flip[BATCH_HEADER_SIZE_BYTES + 36] ^= 1;
        assert!(verify_structure(&length_flip).is_err());
        assert_eq!(
            verify_structure(&record[..record.len() - 1]),
            Err(RecordError::Truncated)
        );
        assert_eq!(verify_structure(&[0u8; 300]), Err(RecordError::BadHeader));
    }

    #[test]
    fn slice_rewrites_a_header_that_verifies() {
        let mut record = build_batch(&[b"m0", b"m1", b"m2", b"m3"], 9);
        stamp(&mut record, 1, 10, 99).unwrap();
        let sliced = slice(&record, 11, 2).unwrap();
        assert_eq!(sliced.message_count, 2);
        let mut rebuilt = sliced.header.to_vec();
        rebuilt.extend_from_slice(&record[sliced.frames.clone()]);
        let header = verify_checksums(&rebuilt).unwrap();
        assert_eq!(header.base_offset, 10);
        assert_eq!(payloads(&rebuilt), vec![b"m1".to_vec(), b"m2".to_vec()]);
        assert!(slice(&record, 14, 5).is_none());
        assert_eq!(
            slice(&record, 0, 100).unwrap().frames,
            BATCH_HEADER_SIZE_BYTES..record.len()
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut bytes = vec![0xffu8; 600];
        bytes[52..256].fill(0);
        for cut in 0..bytes.len() {
            let _ = verify(&bytes[..cut]);
            let _ = slice(&bytes[..cut], 0, 10);
            let _ = payloads(&bytes[..cut]);
        }
    }
}
