//! Unit tests of `MetadataStore`: one per row of the recovery decision table, plus locking,
//! compaction and configuration.

use std::fs;
use std::io::Write;

use super::*;
use crate::metadata::format::encode_raw_record;

fn stream(stream_id: u32) -> Change {
    Change::CreateStream {
        stream_id,
        name: format!("stream-{stream_id}"),
        created_at_us: 100 + u64::from(stream_id),
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE_NAME)
}

fn append_bytes(dir: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .open(log_path(dir))
        .expect("open log");
    file.write_all(bytes).expect("append");
}

/// A store holding streams 0..count, closed again; returns its catalog and log size.
fn store_with_streams(dir: &Path, count: u32) -> (Catalog, u64) {
    let (mut store, _) = MetadataStore::open(dir).expect("open");
    for id in 0..count {
        store.apply(&stream(id)).expect("apply");
    }
    (store.catalog().clone(), store.log_size_bytes())
}

fn encoded(sequence: u64, change: &Change) -> Vec<u8> {
    let mut buf = Vec::new();
    format::encode_record(sequence, change, &mut buf).expect("encode");
    buf
}

#[test]
fn open_creates_directory_and_empty_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("nested/metadata");
    let (store, catalog) = MetadataStore::open(&dir).expect("open");
    assert_eq!(catalog, Catalog::new());
    assert_eq!(store.log_size_bytes(), LOG_HEADER_BYTES as u64);
    assert_eq!(fs::read(log_path(&dir)).expect("log"), format::log_header());
    drop(store);
    let (_, again) = MetadataStore::open(&dir).expect("reopen");
    assert_eq!(again, Catalog::new());
}

#[test]
fn row_end_of_file_replays_every_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (catalog, size_bytes) = store_with_streams(tmp.path(), 3);
    let (store, reopened) = MetadataStore::open(tmp.path()).expect("reopen");
    assert_eq!(reopened, catalog);
    assert_eq!(store.log_size_bytes(), size_bytes);
    assert_eq!(reopened.streams().len(), 3);
}

/// Appends `tail` after two good records; reopening must keep exactly those two and cut the
/// file back to their end, and the store must keep working.
fn assert_tail_is_cut(tail: &[u8]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (catalog, size_bytes) = store_with_streams(tmp.path(), 2);
    append_bytes(tmp.path(), tail);
    let (mut store, reopened) = MetadataStore::open(tmp.path()).expect("reopen");
    assert_eq!(reopened, catalog);
    assert_eq!(
        fs::metadata(log_path(tmp.path())).expect("stat").len(),
        size_bytes
    );
    store.apply(&stream(2)).expect("apply after recovery");
    drop(store);
    let (_, after) = MetadataStore::open(tmp.path()).expect("reopen again");
    assert_eq!(after.streams().len(), 3);
}

#[test]
fn row_short_header_is_a_torn_tail() {
    assert_tail_is_cut(&[1, 2, 3, 4, 5]);
}

#[test]
fn row_short_payload_is_a_torn_tail() {
    let record = encoded(3, &stream(2));
    assert_tail_is_cut(&record[..record.len() - 1]);
}

#[test]
fn row_oversized_length_is_a_torn_tail() {
    let mut header = vec![0u8; RECORD_HEADER_BYTES];
    header[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_tail_is_cut(&header);
}

#[test]
fn row_checksum_mismatch_is_a_torn_tail() {
    let mut record = encoded(3, &stream(2));
    let last = record.len() - 1;
    record[last] ^= 0xFF;
    assert_tail_is_cut(&record);
}

#[test]
fn row_zero_filled_tail_is_a_torn_tail() {
    // A zero length with a zero checksum does not match XxHash3 of the sequence bytes.
    assert_tail_is_cut(&[0u8; 4096]);
}

#[test]
fn row_records_already_in_the_snapshot_are_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = MetadataStore::open(tmp.path()).expect("open");
    for id in 0..4 {
        store.apply(&stream(id)).expect("apply");
    }
    let old_log = fs::read(log_path(tmp.path())).expect("read log");
    store.compact().expect("compact");
    let catalog = store.catalog().clone();
    drop(store);
    // A crash between the snapshot's rename and the log's truncation leaves both.
    fs::write(log_path(tmp.path()), &old_log).expect("restore old log");
    let (mut store, reopened) = MetadataStore::open(tmp.path()).expect("reopen");
    assert_eq!(reopened, catalog);
    store
        .apply(&stream(4))
        .expect("apply continues the sequence");
    drop(store);
    let (_, after) = MetadataStore::open(tmp.path()).expect("reopen again");
    assert_eq!(after.streams().len(), 5);
}

fn assert_corrupt_log(records: &[Vec<u8>]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    drop(MetadataStore::open(tmp.path()).expect("create"));
    for record in records {
        append_bytes(tmp.path(), record);
    }
    let size_before = fs::metadata(log_path(tmp.path())).expect("stat").len();
    let result = MetadataStore::open(tmp.path());
    assert!(
        matches!(result, Err(MetadataError::CorruptLog { .. })),
        "{result:?}"
    );
    // Acknowledged records are never cut away.
    assert_eq!(
        fs::metadata(log_path(tmp.path())).expect("stat").len(),
        size_before
    );
}

#[test]
fn row_sequence_gap_refuses_to_open() {
    assert_corrupt_log(&[encoded(1, &stream(0)), encoded(3, &stream(1))]);
}

#[test]
fn row_first_sequence_after_snapshot_gap_refuses_to_open() {
    assert_corrupt_log(&[encoded(2, &stream(0))]);
}

#[test]
fn row_record_that_does_not_decode_refuses_to_open() {
    assert_corrupt_log(&[encode_raw_record(1, &[0xFF; 12])]);
}

#[test]
fn row_record_that_does_not_apply_refuses_to_open() {
    assert_corrupt_log(&[encoded(1, &Change::DeleteStream { stream_id: 5 })]);
}

#[test]
fn bad_log_header_refuses_to_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::write(log_path(tmp.path()), b"not a log").expect("write");
    let result = MetadataStore::open(tmp.path());
    assert!(
        matches!(
            result,
            Err(MetadataError::CorruptLog {
                position_bytes: 0,
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn corrupt_snapshot_refuses_to_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = MetadataStore::open(tmp.path()).expect("open");
    store.apply(&stream(0)).expect("apply");
    store.compact().expect("compact");
    drop(store);
    let path = tmp.path().join(SNAPSHOT_FILE_NAME);
    let mut bytes = fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, bytes).expect("write");
    let result = MetadataStore::open(tmp.path());
    assert!(
        matches!(result, Err(MetadataError::CorruptSnapshot { .. })),
        "{result:?}"
    );
}

#[test]
fn leftover_temp_files_are_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    store_with_streams(tmp.path(), 1);
    fs::write(tmp.path().join(SNAPSHOT_TEMP_FILE_NAME), b"half a snapshot").expect("write");
    let (_, catalog) = MetadataStore::open(tmp.path()).expect("reopen");
    assert_eq!(catalog.streams().len(), 1);
    assert!(!tmp.path().join(SNAPSHOT_TEMP_FILE_NAME).exists());
}

#[test]
fn second_store_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, _) = MetadataStore::open(tmp.path()).expect("open");
    let second = MetadataStore::open(tmp.path());
    assert!(
        matches!(second, Err(MetadataError::Locked(_))),
        "{second:?}"
    );
    drop(store);
    MetadataStore::open(tmp.path()).expect("free again after close");
}

#[test]
fn rejected_change_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut store, _) = MetadataStore::open(tmp.path()).expect("open");
    store.apply(&stream(0)).expect("apply");
    let size_bytes = store.log_size_bytes();
    let result = store.apply(&stream(0));
    assert!(
        matches!(
            result,
            Err(MetadataError::Catalog(CatalogError::StreamIdExists(0)))
        ),
        "{result:?}"
    );
    assert_eq!(store.log_size_bytes(), size_bytes);
    assert_eq!(
        fs::metadata(log_path(tmp.path())).expect("stat").len(),
        size_bytes
    );
}

#[test]
fn log_past_threshold_is_compacted_on_next_apply() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        log_compaction_threshold_bytes: LOG_COMPACTION_THRESHOLD_BYTES_MIN,
    };
    let (mut store, _) = MetadataStore::open_with(tmp.path(), config).expect("open");
    for id in 0..200 {
        store.apply(&stream(id)).expect("apply");
        assert!(store.log_size_bytes() < LOG_COMPACTION_THRESHOLD_BYTES_MIN + 64);
    }
    assert!(tmp.path().join(SNAPSHOT_FILE_NAME).exists());
    let catalog = store.catalog().clone();
    drop(store);
    let (_, reopened) = MetadataStore::open_with(tmp.path(), config).expect("reopen");
    assert_eq!(reopened, catalog);
    assert_eq!(reopened.streams().len(), 200);
}

#[test]
fn out_of_range_threshold_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for threshold in [0, LOG_COMPACTION_THRESHOLD_BYTES_MAX + 1] {
        let config = StoreConfig {
            log_compaction_threshold_bytes: threshold,
        };
        let result = MetadataStore::open_with(tmp.path(), config);
        assert!(
            matches!(result, Err(MetadataError::InvalidConfig(_))),
            "{result:?}"
        );
    }
}
