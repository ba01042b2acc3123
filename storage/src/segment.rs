//! Segment files and their recovery.
//!
//! ```text
//! {base_offset:020}.log    [record][record]...[record][zeroes / torn bytes / preallocated space]
//!                          ^0                         ^end_bytes (logical end, found by walking)
//! {base_offset:020}.index  sparse IndexEntry per record that starts >= interval after the last
//! ```
//!
//! Recovery decision table (`recover`), one test per row:
//!
//! | index state                                   | action                                         |
//! |-----------------------------------------------|------------------------------------------------|
//! | missing or empty                              | walk the log from 0, rebuild the index         |
//! | plausible prefix, last entry names a record   | walk from the last entry, append new entries   |
//! | last entry does not name a valid record there | drop the index, walk from 0, rebuild           |
//! | garbage after a plausible prefix              | keep the prefix (truncate the file), walk on   |
//!
//! | log bytes at the walk position                | action                                         |
//! |-----------------------------------------------|------------------------------------------------|
//! | valid record with the expected base offset    | accept, advance                                |
//! | zeroes, torn header, short record, bad checksum, unexpected offset | logical end here; truncate |

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use riptide_protocol::batch::{Batch, BatchError, BatchHeaderRepr};

use crate::constants::{
    BATCH_HEADER_SIZE_BYTES, INDEX_ENTRY_SIZE_BYTES, RECORD_SIZE_MAX_BYTES, RECOVERY_CHUNK_BYTES,
};
use crate::index::{self, IndexEntry};
use crate::io::{open_log, LogFile};

/// The header of the stored record at the start of `bytes` (a record is a stamped batch, in
/// the protocol's layout), checked against the largest record the engine stores.
///
/// # Errors
/// As `BatchHeaderRepr::parse`: `HeaderTruncated` when fewer than 256 bytes are given.
pub fn record_header(bytes: &[u8]) -> Result<BatchHeaderRepr, BatchError> {
    BatchHeaderRepr::parse(bytes, RECORD_SIZE_MAX_BYTES)
}

pub fn log_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

pub fn index_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}

/// Base offsets of the segments in `dir`, ascending (files named `{20 digits}.log`).
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(base) = stem.parse::<u64>() {
                bases.push(base);
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// One segment of a partition, open for reads (and for writes when active).
pub struct Segment {
    pub base_offset: u64,
    pub log: LogFile,
    pub index_file: File,
    /// Logical end: bytes of valid records, all on disk.
    pub end_bytes: u64,
    /// Offset of the last record's last message; `None` while the segment is empty.
    pub last_offset: Option<u64>,
    pub first_timestamp_us: Option<u64>,
    pub last_timestamp_us: Option<u64>,
    pub messages_count: u64,
    pub index: Vec<IndexEntry>,
    /// Entries of `index` already handed to the index file.
    pub index_written: usize,
}

impl Segment {
    /// Creates an empty segment (files created, preallocated by the caller).
    pub fn create(dir: &Path, base_offset: u64, direct: bool) -> io::Result<Segment> {
        let log = open_log(&log_path(dir, base_offset), true, direct)?;
        let index_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(index_path(dir, base_offset))?;
        Ok(Segment {
            base_offset,
            log,
            index_file,
            end_bytes: 0,
            last_offset: None,
            first_timestamp_us: None,
            last_timestamp_us: None,
            messages_count: 0,
            index: Vec::new(),
            index_written: 0,
        })
    }

    /// Offset the next record of this segment would get.
    pub fn next_offset(&self) -> u64 {
        self.last_offset.map_or(self.base_offset, |last| last + 1)
    }

    /// Accounts a record now on disk at `position`, adding a sparse index entry when the
    /// record starts at least `interval_bytes` after the previous entry.
    pub fn account(&mut self, header: &BatchHeaderRepr, position: u64, interval_bytes: u64) {
        let due = match self.index.last() {
            None => true,
            Some(last) => position >= last.position + interval_bytes,
        };
        if due {
            self.index.push(IndexEntry {
                offset: header.base_offset,
                timestamp_us: header.base_timestamp_us,
                position,
            });
        }
        self.end_bytes = position + header.batch_length_bytes as u64;
        self.last_offset = Some(header.last_offset());
        self.first_timestamp_us
            .get_or_insert(header.base_timestamp_us);
        self.last_timestamp_us = Some(header.base_timestamp_us);
        self.messages_count += header.message_count as u64;
    }
}

/// Reads a file through a chunk buffer, for the sequential recovery walk.
struct ChunkReader<'a> {
    file: &'a File,
    file_len: u64,
    chunk: Vec<u8>,
    chunk_start: u64,
}

impl<'a> ChunkReader<'a> {
    fn new(file: &'a File, file_len: u64) -> ChunkReader<'a> {
        ChunkReader {
            file,
            file_len,
            chunk: Vec::new(),
            chunk_start: 0,
        }
    }

    /// The bytes `position..position + len`, or `None` past the end of the file.
    fn get(&mut self, position: u64, len: usize) -> io::Result<Option<&[u8]>> {
        let end = position
            .checked_add(len as u64)
            .ok_or(io::ErrorKind::InvalidInput)?;
        if end > self.file_len {
            return Ok(None);
        }
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if position < self.chunk_start || end > chunk_end {
            let want =
                (len.max(RECOVERY_CHUNK_BYTES) as u64).min(self.file_len - position) as usize;
            self.chunk.resize(want, 0);
            self.file.read_exact_at(&mut self.chunk, position)?;
            self.chunk_start = position;
        }
        let from = (position - self.chunk_start) as usize;
        Ok(Some(&self.chunk[from..from + len]))
    }
}

/// What a walk found.
pub struct Walk {
    pub end_bytes: u64,
    pub records: Vec<(BatchHeaderRepr, u64)>,
}

/// Walks valid records from `position`, expecting the first to have `expected_offset`, and
/// stops at the first byte that is not a valid continuation (see the decision table).
pub fn walk(file: &File, position: u64, expected_offset: u64) -> io::Result<Walk> {
    let file_len = file.metadata()?.len();
    let mut reader = ChunkReader::new(file, file_len);
    let mut position = position;
    let mut expected = expected_offset;
    let mut records = Vec::new();
    while let Some(head) = reader.get(position, BATCH_HEADER_SIZE_BYTES)? {
        let Ok(header) = record_header(head) else {
            break;
        };
        if header.base_offset != expected {
            break;
        }
        let Some(bytes) = reader.get(position, header.batch_length_bytes)? else {
            break;
        };
        // Recovery trusts nothing on disk: every checksum, and the rules of admission.
        if Batch::new_checked(bytes).is_err() {
            break;
        }
        records.push((header, position));
        position += header.batch_length_bytes as u64;
        expected = header.last_offset() + 1;
    }
    Ok(Walk {
        end_bytes: position,
        records,
    })
}

/// Opens and recovers one segment: finds the logical end, repairs the index, and (when
/// `truncate` is set, for the active segment) cuts torn bytes off the log.
pub fn recover(
    dir: &Path,
    base_offset: u64,
    direct: bool,
    interval_bytes: u64,
) -> io::Result<(Segment, RecoveryReport)> {
    let log = open_log(&log_path(dir, base_offset), false, direct)?;
    // Recovery reads through the page cache with a plain descriptor: start-up only.
    let plain = File::open(log_path(dir, base_offset))?;
    let file_len = plain.metadata()?.len();
    let index_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(index_path(dir, base_offset))?;
    let mut index_bytes = Vec::new();
    std::io::Read::read_to_end(&mut &index_file, &mut index_bytes)?;
    let mut entries = index::decode_prefix(&index_bytes, base_offset, file_len);
    let mut report = RecoveryReport {
        index_rebuilt: false,
        index_entries_dropped: 0,
        log_bytes_cut: 0,
    };
    let mut walked = match entries.last() {
        Some(last) => walk(&plain, last.position, last.offset)?,
        None => walk(&plain, 0, base_offset)?,
    };
    if walked.records.is_empty() && !entries.is_empty() {
        // The last entry names no valid record: the index disagrees with the log.
        report.index_rebuilt = true;
        entries.clear();
        walked = walk(&plain, 0, base_offset)?;
    }
    report.index_entries_dropped = index_bytes.len() / INDEX_ENTRY_SIZE_BYTES
        - entries
            .len()
            .min(index_bytes.len() / INDEX_ENTRY_SIZE_BYTES);
    let mut segment = Segment {
        base_offset,
        log,
        index_file,
        end_bytes: 0,
        last_offset: None,
        first_timestamp_us: None,
        last_timestamp_us: None,
        messages_count: 0,
        index: Vec::new(),
        index_written: 0,
    };
    restore_counters(&mut segment, &entries, &walked, interval_bytes);
    segment.index_written = segment.index.len();
    rewrite_index(&segment)?;
    report.log_bytes_cut = file_len.saturating_sub(segment.end_bytes);
    Ok((segment, report))
}

/// Rebuilds counters: the indexed prefix (kept as is) gives the first timestamp and, since
/// offsets in a segment are contiguous, the messages before the walk; the walk gives the rest.
fn restore_counters(
    segment: &mut Segment,
    entries: &[IndexEntry],
    walked: &Walk,
    interval_bytes: u64,
) {
    segment.index.extend_from_slice(entries);
    segment.first_timestamp_us = entries.first().map(|entry| entry.timestamp_us);
    let walk_start_offset = walked
        .records
        .first()
        .map_or(segment.base_offset, |(header, _)| header.base_offset);
    segment.messages_count = walk_start_offset - segment.base_offset;
    for (header, position) in &walked.records {
        segment.account(header, *position, interval_bytes);
    }
    segment.end_bytes = walked.end_bytes;
}

/// Writes the whole in-memory index over the index file (recovery only).
fn rewrite_index(segment: &Segment) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(segment.index.len() * INDEX_ENTRY_SIZE_BYTES);
    for entry in &segment.index {
        bytes.extend_from_slice(&entry.encode());
    }
    segment.index_file.set_len(0)?;
    segment.index_file.write_all_at(&bytes, 0)?;
    segment.index_file.sync_data()
}

/// What recovery changed, for the log line and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    pub index_rebuilt: bool,
    pub index_entries_dropped: usize,
    /// Bytes of the file past the logical end (preallocated space, zeroes or torn data).
    pub log_bytes_cut: u64,
}

/// Cuts everything after the logical end and preallocates again, so stale bytes past the end
/// can never be mistaken for records later.
pub fn truncate_tail(segment: &Segment, preallocate_bytes: Option<u64>) -> io::Result<()> {
    segment.log.file.set_len(segment.end_bytes)?;
    if let Some(len) = preallocate_bytes {
        crate::io::preallocate(&segment.log.file, len)?;
    }
    segment.log.file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_records(dir: &Path, base: u64, batches: usize) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let mut bytes = Vec::new();
        let mut offset = base;
        for i in 0..batches {
            let payload = vec![i as u8; 100 + i * 7];
            let mut rec = crate::testkit::build_batch(&[&payload, b"x"], 5);
            riptide_protocol::batch::stamp(&mut rec, 0, offset, 1000 + i as u64).unwrap();
            offset += 2;
            bytes.extend_from_slice(&rec);
            records.push(rec);
        }
        std::fs::write(log_path(dir, base), &bytes).unwrap();
        records
    }

    fn total(records: &[Vec<u8>]) -> u64 {
        records.iter().map(|r| r.len() as u64).sum()
    }

    #[test]
    fn missing_index_is_rebuilt_by_walking_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let records = write_records(dir.path(), 100, 10);
        let (segment, _) = recover(dir.path(), 100, false, 1).unwrap();
        assert_eq!(segment.end_bytes, total(&records));
        assert_eq!(segment.last_offset, Some(119));
        assert_eq!(segment.messages_count, 20);
        assert_eq!(segment.index.len(), 10);
        let on_disk = std::fs::read(index_path(dir.path(), 100)).unwrap();
        assert_eq!(on_disk.len(), 10 * INDEX_ENTRY_SIZE_BYTES);
    }

    #[test]
    fn consistent_index_walks_from_its_last_entry() {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), 0, 6);
        let (first, _) = recover(dir.path(), 0, false, 1).unwrap();
        let (again, report) = recover(dir.path(), 0, false, 1).unwrap();
        assert!(!report.index_rebuilt);
        assert_eq!(again.index, first.index);
        assert_eq!(again.messages_count, 12);
        assert_eq!(again.first_timestamp_us, Some(1000));
        assert_eq!(again.last_timestamp_us, Some(1005));
    }

    #[test]
    fn index_pointing_at_nothing_is_dropped_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), 0, 4);
        let bogus = [
            IndexEntry {
                offset: 0,
                timestamp_us: 0,
                position: 0,
            },
            IndexEntry {
                offset: 2,
                timestamp_us: 1,
                position: 7,
            },
        ];
        let bytes: Vec<u8> = bogus.iter().flat_map(|e| e.encode()).collect();
        std::fs::write(index_path(dir.path(), 0), bytes).unwrap();
        let (segment, report) = recover(dir.path(), 0, false, 1).unwrap();
        assert!(report.index_rebuilt);
        assert_eq!(segment.last_offset, Some(7));
        assert_eq!(segment.index.len(), 4);
    }

    #[test]
    fn garbage_after_a_valid_index_prefix_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), 0, 4);
        recover(dir.path(), 0, false, 1).unwrap();
        let mut bytes = std::fs::read(index_path(dir.path(), 0)).unwrap();
        bytes.extend_from_slice(&[0xAB; 30]);
        std::fs::write(index_path(dir.path(), 0), bytes).unwrap();
        let (segment, report) = recover(dir.path(), 0, false, 1).unwrap();
        assert!(!report.index_rebuilt);
        assert_eq!(segment.index.len(), 4);
        assert_eq!(segment.last_offset, Some(7));
    }

    #[test]
    fn torn_zeroed_and_garbled_tails_end_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let records = write_records(dir.path(), 0, 5);
        let good = total(&records[..4]);
        let path = log_path(dir.path(), 0);
        let mut bytes = std::fs::read(&path).unwrap();
        // Torn: the last record half written, followed by preallocated zeroes.
        bytes.truncate(good as usize + 100);
        bytes.extend_from_slice(&[0u8; 8192]);
        std::fs::write(&path, &bytes).unwrap();
        let (segment, report) = recover(dir.path(), 0, false, 1).unwrap();
        assert_eq!(segment.end_bytes, good);
        assert_eq!(report.log_bytes_cut, bytes.len() as u64 - good);
        truncate_tail(&segment, None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        // Garbled: a flipped byte inside record 2 ends the log before it.
        let mut bytes = std::fs::read(&path).unwrap();
        let second_end = total(&records[..2]) as usize;
        bytes[second_end + 300] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        std::fs::remove_file(index_path(dir.path(), 0)).unwrap();
        let (segment, _) = recover(dir.path(), 0, false, 1).unwrap();
        assert_eq!(segment.end_bytes, second_end as u64);
        assert_eq!(segment.last_offset, Some(3));
    }

    #[test]
    fn a_record_with_an_unexpected_offset_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let records = write_records(dir.path(), 0, 3);
        let mut stale = crate::testkit::build_batch(&[b"stale"], 1);
        riptide_protocol::batch::stamp(&mut stale, 0, 3, 1).unwrap();
        let mut bytes = std::fs::read(log_path(dir.path(), 0)).unwrap();
        bytes.extend_from_slice(&stale);
        std::fs::write(log_path(dir.path(), 0), &bytes).unwrap();
        let (segment, _) = recover(dir.path(), 0, false, 1).unwrap();
        assert_eq!(segment.end_bytes, total(&records));
    }

    #[test]
    fn list_segments_sorts_and_ignores_strangers() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "00000000000000000010.log",
            "00000000000000000002.log",
            "x.log",
            "00000000000000000003.index",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(list_segments(dir.path()).unwrap(), vec![2, 10]);
    }
}
