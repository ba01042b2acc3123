//! Byte layouts of the metadata log and snapshot. Pure functions over byte slices; the file
//! handling lives in `store`.
//!
//! Payloads are `postcard` encodings of [`Change`] and of the catalog data: a compact varint
//! format, deterministic for the same value, whose serde decoder allocates only as far as the
//! input bytes go, so a damaged payload yields an error and never a huge allocation.
//!
//! Log file (`changes.log`):
//! ```text
//!  0          8            12           16
//!  +----------+------------+------------+
//!  | RIPTMLOG | version u32| reserved 0 |   file header, written once (temp file + rename)
//!  +----------+------------+------------+
//!  then records, back to back:
//!  0              4                 12               20
//!  +--------------+-----------------+----------------+======================+
//!  | length u32   | checksum u64    | sequence u64   | payload (length B)   |
//!  +--------------+-----------------+----------------+======================+
//!  checksum = XxHash3-64 of bytes [0..4) ++ [12..20) ++ payload
//! ```
//! Sequence numbers start at 1 and grow by one per record; a snapshot says up to which one it
//! includes, so records it already covers are skipped on replay.
//!
//! Snapshot file (`catalog.snapshot`):
//! ```text
//!  0          8            12           16              24                32             40
//!  +----------+------------+------------+---------------+-----------------+--------------+====
//!  | RIPTMSNP | version u32| reserved 0 | last_seq u64  | length u64      | checksum u64 | payload
//!  +----------+------------+------------+---------------+-----------------+--------------+====
//!  checksum = XxHash3-64 of bytes [16..32) ++ payload
//! ```
//! All integers little-endian.

use std::hash::Hasher;

use twox_hash::XxHash3_64;

use super::catalog::{Catalog, CatalogData};
use super::change::Change;
use super::constants::{RECORD_PAYLOAD_MAX_BYTES, SNAPSHOT_PAYLOAD_MAX_BYTES};

/// Version of both layouts; bumped on any incompatible change.
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const LOG_MAGIC: [u8; 8] = *b"RIPTMLOG";
pub(crate) const SNAPSHOT_MAGIC: [u8; 8] = *b"RIPTMSNP";
pub(crate) const LOG_HEADER_BYTES: usize = 16;
pub(crate) const RECORD_HEADER_BYTES: usize = 20;
pub(crate) const SNAPSHOT_HEADER_BYTES: usize = 40;

/// Why bytes are not a valid record or snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("bad magic or version in the file header")]
    BadHeader,
    #[error("record or snapshot truncated")]
    Truncated,
    #[error("payload length {length} exceeds the maximum {max}")]
    TooLarge { length: u64, max: u64 },
    #[error("checksum mismatch")]
    Checksum,
    #[error("payload does not decode: {0}")]
    Decode(String),
    #[error("payload does not encode: {0}")]
    Encode(String),
}

/// The 16-byte header that opens every log file.
pub(crate) fn log_header() -> [u8; LOG_HEADER_BYTES] {
    let mut header = [0u8; LOG_HEADER_BYTES];
    header[0..8].copy_from_slice(&LOG_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// Checks the log file header.
pub(crate) fn check_log_header(bytes: &[u8]) -> Result<(), FormatError> {
    match bytes.get(..LOG_HEADER_BYTES) {
        Some(header) if header == log_header() => Ok(()),
        _ => Err(FormatError::BadHeader),
    }
}

/// Encodes `change` as the record `sequence` into `out` (cleared first).
pub(crate) fn encode_record(
    sequence: u64,
    change: &Change,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    let mut buf = std::mem::take(out);
    buf.clear();
    buf.resize(RECORD_HEADER_BYTES, 0);
    let mut buf =
        postcard::to_extend(change, buf).map_err(|e| FormatError::Encode(e.to_string()))?;
    let length = buf.len() - RECORD_HEADER_BYTES;
    if length > RECORD_PAYLOAD_MAX_BYTES {
        return Err(FormatError::TooLarge {
            length: length as u64,
            max: RECORD_PAYLOAD_MAX_BYTES as u64,
        });
    }
    buf[0..4].copy_from_slice(&(length as u32).to_le_bytes());
    buf[12..20].copy_from_slice(&sequence.to_le_bytes());
    let checksum = record_checksum(&buf[0..4], &buf[12..20], &buf[RECORD_HEADER_BYTES..]);
    buf[4..12].copy_from_slice(&checksum.to_le_bytes());
    *out = buf;
    Ok(())
}

/// Frames an arbitrary payload as record `sequence`, for tests that need records whose
/// checksum holds but whose content is wrong.
#[cfg(test)]
pub(crate) fn encode_raw_record(sequence: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; RECORD_HEADER_BYTES];
    buf[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    buf[12..20].copy_from_slice(&sequence.to_le_bytes());
    buf.extend_from_slice(payload);
    let checksum = record_checksum(&buf[0..4], &buf[12..20], payload);
    buf[4..12].copy_from_slice(&checksum.to_le_bytes());
    buf
}

/// A record whose checksum holds; its payload is not decoded yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawRecord<'a> {
    pub sequence: u64,
    pub payload: &'a [u8],
    /// Header plus payload.
    pub size_bytes: usize,
}

/// Parses the record at the start of `bytes`. An error means the record is torn or garbled:
/// short, oversized or failing its checksum.
pub(crate) fn parse_record(bytes: &[u8]) -> Result<RawRecord<'_>, FormatError> {
    let header = bytes
        .get(..RECORD_HEADER_BYTES)
        .ok_or(FormatError::Truncated)?;
    let length = u32::from_le_bytes(le_array(&header[0..4])) as usize;
    if length > RECORD_PAYLOAD_MAX_BYTES {
        return Err(FormatError::TooLarge {
            length: length as u64,
            max: RECORD_PAYLOAD_MAX_BYTES as u64,
        });
    }
    let checksum = u64::from_le_bytes(le_array(&header[4..12]));
    let sequence = u64::from_le_bytes(le_array(&header[12..20]));
    let end = RECORD_HEADER_BYTES + length;
    let payload = bytes
        .get(RECORD_HEADER_BYTES..end)
        .ok_or(FormatError::Truncated)?;
    if record_checksum(&header[0..4], &header[12..20], payload) != checksum {
        return Err(FormatError::Checksum);
    }
    Ok(RawRecord {
        sequence,
        payload,
        size_bytes: end,
    })
}

/// Decodes a record payload whose checksum held.
pub(crate) fn decode_change(payload: &[u8]) -> Result<Change, FormatError> {
    postcard::from_bytes(payload).map_err(|e| FormatError::Decode(e.to_string()))
}

fn record_checksum(length: &[u8], sequence: &[u8], payload: &[u8]) -> u64 {
    let mut hasher = XxHash3_64::new();
    hasher.write(length);
    hasher.write(sequence);
    hasher.write(payload);
    hasher.finish()
}

/// A catalog as bytes, checksummed, in the snapshot format (what a cluster's state machine keeps
/// and sends to a follower that needs a snapshot).
///
/// # Errors
/// [`FormatError`] when the catalog cannot be encoded or is too large.
pub fn encode_catalog(catalog: &Catalog) -> Result<Vec<u8>, FormatError> {
    encode_snapshot(catalog, 0)
}

/// The catalog [`encode_catalog`] encoded.
///
/// # Errors
/// [`FormatError`] for bytes that do not check.
pub fn decode_catalog(bytes: &[u8]) -> Result<Catalog, FormatError> {
    decode_snapshot(bytes).map(|(catalog, _)| catalog)
}

/// Encodes a whole snapshot file: the catalog as of record `last_sequence`.
pub(crate) fn encode_snapshot(
    catalog: &Catalog,
    last_sequence: u64,
) -> Result<Vec<u8>, FormatError> {
    let mut buf = vec![0u8; SNAPSHOT_HEADER_BYTES];
    buf = postcard::to_extend(&catalog.data(), buf)
        .map_err(|e| FormatError::Encode(e.to_string()))?;
    let length = (buf.len() - SNAPSHOT_HEADER_BYTES) as u64;
    if length > SNAPSHOT_PAYLOAD_MAX_BYTES {
        return Err(FormatError::TooLarge {
            length,
            max: SNAPSHOT_PAYLOAD_MAX_BYTES,
        });
    }
    buf[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    buf[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf[16..24].copy_from_slice(&last_sequence.to_le_bytes());
    buf[24..32].copy_from_slice(&length.to_le_bytes());
    let checksum = snapshot_checksum(&buf[16..32], &buf[SNAPSHOT_HEADER_BYTES..]);
    buf[32..40].copy_from_slice(&checksum.to_le_bytes());
    Ok(buf)
}

/// Decodes a snapshot file into the catalog and the last record sequence it includes.
pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<(Catalog, u64), FormatError> {
    let header = bytes
        .get(..SNAPSHOT_HEADER_BYTES)
        .ok_or(FormatError::Truncated)?;
    let version = u32::from_le_bytes(le_array(&header[8..12]));
    let reserved_clear = header[12..16] == [0u8; 4];
    if header[0..8] != SNAPSHOT_MAGIC || version != FORMAT_VERSION || !reserved_clear {
        return Err(FormatError::BadHeader);
    }
    let last_sequence = u64::from_le_bytes(le_array(&header[16..24]));
    let length = u64::from_le_bytes(le_array(&header[24..32]));
    let checksum = u64::from_le_bytes(le_array(&header[32..40]));
    if length > SNAPSHOT_PAYLOAD_MAX_BYTES {
        return Err(FormatError::TooLarge {
            length,
            max: SNAPSHOT_PAYLOAD_MAX_BYTES,
        });
    }
    let payload = usize::try_from(length)
        .ok()
        .and_then(|length| bytes.get(SNAPSHOT_HEADER_BYTES..SNAPSHOT_HEADER_BYTES + length))
        .ok_or(FormatError::Truncated)?;
    if snapshot_checksum(&header[16..32], payload) != checksum {
        return Err(FormatError::Checksum);
    }
    let data: CatalogData =
        postcard::from_bytes(payload).map_err(|e| FormatError::Decode(e.to_string()))?;
    let catalog = Catalog::from_data(data).map_err(|e| FormatError::Decode(e.to_string()))?;
    Ok((catalog, last_sequence))
}

fn snapshot_checksum(fields: &[u8], payload: &[u8]) -> u64 {
    let mut hasher = XxHash3_64::new();
    hasher.write(fields);
    hasher.write(payload);
    hasher.finish()
}

/// Copies a slice whose length the caller has fixed into an array, without a panic path.
fn le_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0u8; N];
    let n = bytes.len().min(N);
    array[..n].copy_from_slice(&bytes[..n]);
    array
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::model::UserStatus;

    fn sample_change() -> Change {
        Change::CreateUser {
            user_id: 3,
            username: "erin".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$abc$def".into(),
            status: UserStatus::Inactive,
            permissions: None,
            created_at_us: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn log_header_golden_bytes() {
        assert_eq!(
            log_header(),
            [b'R', b'I', b'P', b'T', b'M', b'L', b'O', b'G', 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(check_log_header(&log_header()), Ok(()));
        let mut wrong_version = log_header();
        wrong_version[8] = 2;
        assert_eq!(
            check_log_header(&wrong_version),
            Err(FormatError::BadHeader)
        );
        assert_eq!(
            check_log_header(&log_header()[..15]),
            Err(FormatError::BadHeader)
        );
    }

    #[test]
    fn record_round_trip_and_layout() {
        let mut buf = Vec::new();
        encode_record(7, &sample_change(), &mut buf).expect("encode");
        let length = u32::from_le_bytes(le_array(&buf[0..4])) as usize;
        assert_eq!(buf.len(), RECORD_HEADER_BYTES + length);
        assert_eq!(&buf[12..20], &7u64.to_le_bytes());
        let record = parse_record(&buf).expect("parse");
        assert_eq!(record.sequence, 7);
        assert_eq!(record.size_bytes, buf.len());
        assert_eq!(decode_change(record.payload), Ok(sample_change()));
        // Trailing bytes belong to the next record, not this one.
        buf.extend_from_slice(&[0xAA; 5]);
        assert_eq!(parse_record(&buf).map(|r| r.size_bytes), Ok(buf.len() - 5));
    }

    #[test]
    fn every_truncation_of_a_record_is_detected() {
        let mut buf = Vec::new();
        encode_record(1, &sample_change(), &mut buf).expect("encode");
        for cut in 0..buf.len() {
            assert_eq!(
                parse_record(&buf[..cut]),
                Err(FormatError::Truncated),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_of_a_record_is_detected() {
        let mut buf = Vec::new();
        encode_record(1, &sample_change(), &mut buf).expect("encode");
        for position in 0..buf.len() {
            let mut garbled = buf.clone();
            garbled[position] ^= 0x5A;
            assert!(parse_record(&garbled).is_err(), "flip at {position}");
        }
    }

    #[test]
    fn oversized_length_is_refused_before_reading() {
        let mut buf = vec![0u8; RECORD_HEADER_BYTES];
        buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_record(&buf),
            Err(FormatError::TooLarge {
                length: u64::from(u32::MAX),
                max: RECORD_PAYLOAD_MAX_BYTES as u64
            })
        );
    }

    #[test]
    fn garbage_payload_with_valid_checksum_is_a_decode_error() {
        assert!(matches!(
            decode_change(&[0xFF; 9]),
            Err(FormatError::Decode(_))
        ));
        assert!(matches!(decode_change(&[]), Err(FormatError::Decode(_))));
    }

    #[test]
    fn snapshot_round_trip_and_corruption() {
        let mut catalog = Catalog::new();
        catalog.apply(&sample_change()).expect("apply");
        let bytes = encode_snapshot(&catalog, 41).expect("encode");
        assert_eq!(&bytes[0..8], &SNAPSHOT_MAGIC);
        let (decoded, last_sequence) = decode_snapshot(&bytes).expect("decode");
        assert_eq!((decoded, last_sequence), (catalog, 41));
        for position in 0..bytes.len() {
            let mut garbled = bytes.clone();
            garbled[position] ^= 0x01;
            assert!(decode_snapshot(&garbled).is_err(), "flip at {position}");
        }
        for cut in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
