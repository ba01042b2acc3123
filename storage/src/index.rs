//! Sparse segment index, one file per segment (`{base_offset:020}.index`).
//!
//! ```text
//! entry (24 B, little endian): [offset u64][timestamp_us u64][position u64]
//! ```
//! `offset` is the base offset of the record that starts at byte `position` of the log, and
//! `timestamp_us` its base timestamp. Entries are strictly increasing in offset and position.
//! The index is an accelerator: recovery checks it against the log and rebuilds it when it
//! disagrees, so it is written without O_DSYNC.

use crate::constants::INDEX_ENTRY_SIZE_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: u64,
    pub timestamp_us: u64,
    pub position: u64,
}

impl IndexEntry {
    pub fn encode(&self) -> [u8; INDEX_ENTRY_SIZE_BYTES] {
        let mut out = [0u8; INDEX_ENTRY_SIZE_BYTES];
        out[0..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..16].copy_from_slice(&self.timestamp_us.to_le_bytes());
        out[16..24].copy_from_slice(&self.position.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; INDEX_ENTRY_SIZE_BYTES]) -> IndexEntry {
        let word = |i: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(raw)
        };
        IndexEntry {
            offset: word(0),
            timestamp_us: word(1),
            position: word(2),
        }
    }
}

/// Decodes the longest plausible prefix of an index file: entries inside the segment's offset
/// range, strictly increasing, below `log_len_bytes`. The first entry must point at position 0.
pub fn decode_prefix(bytes: &[u8], base_offset: u64, log_len_bytes: u64) -> Vec<IndexEntry> {
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(bytes.len() / INDEX_ENTRY_SIZE_BYTES);
    for chunk in bytes.chunks_exact(INDEX_ENTRY_SIZE_BYTES) {
        let mut raw = [0u8; INDEX_ENTRY_SIZE_BYTES];
        raw.copy_from_slice(chunk);
        let entry = IndexEntry::decode(&raw);
        let plausible = match entries.last() {
            None => entry.position == 0 && entry.offset == base_offset,
            Some(last) => {
                entry.offset > last.offset
                    && entry.position > last.position
                    && entry.timestamp_us >= last.timestamp_us
            }
        };
        if !plausible || entry.position >= log_len_bytes {
            break;
        }
        entries.push(entry);
    }
    entries
}

/// The last entry at or before `offset` (entries sorted by offset).
pub fn floor_by_offset(entries: &[IndexEntry], offset: u64) -> Option<(usize, IndexEntry)> {
    let after = entries.partition_point(|entry| entry.offset <= offset);
    after.checked_sub(1).map(|i| (i, entries[i]))
}

/// The last entry whose timestamp is before `timestamp_us`: records at or after the wanted time
/// start at or after it.
pub fn floor_by_timestamp(
    entries: &[IndexEntry],
    timestamp_us: u64,
) -> Option<(usize, IndexEntry)> {
    let after = entries.partition_point(|entry| entry.timestamp_us < timestamp_us);
    after.checked_sub(1).map(|i| (i, entries[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64, timestamp_us: u64, position: u64) -> IndexEntry {
        IndexEntry {
            offset,
            timestamp_us,
            position,
        }
    }

    #[test]
    fn encode_decode_round_trip_golden() {
        let e = entry(0x0102, 3, 4);
        let bytes = e.encode();
        assert_eq!(&bytes[0..8], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(IndexEntry::decode(&bytes), e);
    }

    #[test]
    fn decode_prefix_stops_at_garbage_zeroes_and_positions_past_the_log() {
        let mut bytes = Vec::new();
        for e in [
            entry(10, 1, 0),
            entry(20, 2, 500),
            entry(30, 3, 900),
            entry(25, 4, 1000),
        ] {
            bytes.extend_from_slice(&e.encode());
        }
        assert_eq!(decode_prefix(&bytes, 10, 10_000).len(), 3);
        assert_eq!(decode_prefix(&bytes, 10, 600).len(), 2);
        assert_eq!(decode_prefix(&bytes, 11, 10_000).len(), 0);
        assert_eq!(decode_prefix(&[0u8; 48], 10, 10_000).len(), 0);
        assert_eq!(decode_prefix(&bytes[..30], 10, 10_000).len(), 1);
    }

    #[test]
    fn floors() {
        let entries = [entry(10, 100, 0), entry(20, 200, 500), entry(30, 300, 900)];
        assert_eq!(floor_by_offset(&entries, 25).unwrap().1.offset, 20);
        assert_eq!(floor_by_offset(&entries, 9), None);
        assert_eq!(floor_by_timestamp(&entries, 200).unwrap().1.offset, 10);
        assert_eq!(floor_by_timestamp(&entries, 100), None);
    }
}
