//! The durable metadata store: a write-ahead log of changes plus a snapshot the log is
//! compacted into. `apply` returns only once its record is on stable storage.
//!
//! Recovery on open, as a decision table (one test per row in `tests`):
//!
//! | log content at the point being read            | action                                  |
//! |------------------------------------------------|-----------------------------------------|
//! | end of file                                    | done                                    |
//! | short header / short payload / oversized length| torn tail: truncate here, done          |
//! | checksum mismatch                              | torn or garbled tail: truncate, done    |
//! | valid record, sequence <= snapshot's           | already in the snapshot: skip           |
//! | valid record, sequence not previous + 1        | corrupt log: refuse to open             |
//! | valid record that does not decode or apply     | corrupt log: refuse to open             |
//! | valid record, next sequence                    | apply to the catalog                    |
//!
//! A record that is not whole was never acknowledged (the acknowledgement waits for its
//! fdatasync), so truncating the tail loses nothing that was promised. A record that is whole
//! but cannot be used is a different matter: it was acknowledged, so the store refuses to
//! open rather than silently drop it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::catalog::{Catalog, CatalogError};
use super::change::Change;
use super::constants::{
    LOG_COMPACTION_THRESHOLD_BYTES_DEFAULT, LOG_COMPACTION_THRESHOLD_BYTES_MIN,
    RECORD_PAYLOAD_MAX_BYTES, SNAPSHOT_PAYLOAD_MAX_BYTES,
};
use super::format::{self, FormatError, LOG_HEADER_BYTES, RECORD_HEADER_BYTES};

/// File names inside the metadata directory.
pub const LOG_FILE_NAME: &str = "changes.log";
pub const SNAPSHOT_FILE_NAME: &str = "catalog.snapshot";
const LOG_TEMP_FILE_NAME: &str = "changes.log.tmp";
const SNAPSHOT_TEMP_FILE_NAME: &str = "catalog.snapshot.tmp";

/// Largest compaction threshold: the whole log is read into memory on open.
pub const LOG_COMPACTION_THRESHOLD_BYTES_MAX: u64 =
    riptide_config::limits::METADATA_LOG_COMPACTION_MAX_BYTES;
/// Largest log file the store will read: the threshold plus one maximal record.
const LOG_SIZE_MAX_BYTES: u64 =
    LOG_COMPACTION_THRESHOLD_BYTES_MAX + (RECORD_HEADER_BYTES + RECORD_PAYLOAD_MAX_BYTES) as u64;

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("change cannot be encoded: {0}")]
    Encode(FormatError),
    #[error("snapshot {path} is unreadable: {reason}")]
    CorruptSnapshot { path: PathBuf, reason: FormatError },
    #[error("log {path} is corrupt at byte {position_bytes}: {reason}")]
    CorruptLog {
        path: PathBuf,
        position_bytes: u64,
        reason: String,
    },
    #[error("metadata directory {0} is in use by another store")]
    Locked(PathBuf),
    #[error("an earlier I/O failure left the log in an unknown state; reopen the store")]
    Poisoned,
    #[error("invalid store configuration: {0}")]
    InvalidConfig(&'static str),
}

/// Tunables of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Once the log is this large, the next `apply` first compacts it into a snapshot.
    pub log_compaction_threshold_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            log_compaction_threshold_bytes: LOG_COMPACTION_THRESHOLD_BYTES_DEFAULT,
        }
    }
}

impl StoreConfig {
    fn validate(&self) -> Result<(), MetadataError> {
        let threshold = self.log_compaction_threshold_bytes;
        if !(LOG_COMPACTION_THRESHOLD_BYTES_MIN..=LOG_COMPACTION_THRESHOLD_BYTES_MAX)
            .contains(&threshold)
        {
            return Err(MetadataError::InvalidConfig(
                "log_compaction_threshold_bytes out of range",
            ));
        }
        Ok(())
    }
}

/// The durable metadata store. Owns the log file (locked against a second opener) and a copy
/// of the catalog, from which it writes snapshots.
///
/// `apply` blocks for one write plus fdatasync (milliseconds on most disks): call it from a
/// thread that may block, not from a hot-path event loop. The directory lock is an `flock`
/// on the log; a child forked by the owning process shares it until the child execs.
#[derive(Debug)]
pub struct MetadataStore {
    dir: PathBuf,
    log: File,
    log_end_bytes: u64,
    next_sequence: u64,
    catalog: Catalog,
    config: StoreConfig,
    poisoned: bool,
    record_buf: Vec<u8>,
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MetadataError {
    let path = path.to_path_buf();
    move |source| MetadataError::Io {
        operation,
        path,
        source,
    }
}

impl MetadataStore {
    /// Opens (or creates) the store in `dir` with the default configuration and returns it
    /// with the recovered catalog.
    ///
    /// # Errors
    /// See [`MetadataStore::open_with`].
    pub fn open(dir: &Path) -> Result<(MetadataStore, Catalog), MetadataError> {
        MetadataStore::open_with(dir, StoreConfig::default())
    }

    /// Opens (or creates) the store in `dir`: loads the snapshot, replays the log, truncates a
    /// torn tail (see the decision table in the module docs).
    ///
    /// # Errors
    /// `Io` on a file-system failure, `Locked` when another store has `dir` open,
    /// `CorruptSnapshot` / `CorruptLog` when acknowledged data cannot be read back,
    /// `InvalidConfig` for a threshold outside the allowed range.
    pub fn open_with(
        dir: &Path,
        config: StoreConfig,
    ) -> Result<(MetadataStore, Catalog), MetadataError> {
        config.validate()?;
        create_dir_durably(dir)?;
        remove_if_present(&dir.join(SNAPSHOT_TEMP_FILE_NAME))?;
        remove_if_present(&dir.join(LOG_TEMP_FILE_NAME))?;
        let (mut catalog, snapshot_sequence) = load_snapshot(dir)?;
        let log_path = dir.join(LOG_FILE_NAME);
        let mut log = open_or_create_log(dir)?;
        let bytes = read_log(&mut log, &log_path)?;
        let replayed = replay(&bytes, snapshot_sequence, &mut catalog, &log_path)?;
        if replayed.end_bytes < bytes.len() as u64 {
            tracing::warn!(
                path = %log_path.display(),
                kept_bytes = replayed.end_bytes,
                dropped_bytes = bytes.len() as u64 - replayed.end_bytes,
                "metadata log had a torn tail (a change that was never acknowledged); truncated"
            );
            log.set_len(replayed.end_bytes)
                .map_err(io_error("truncate", &log_path))?;
            log.sync_all().map_err(io_error("fsync", &log_path))?;
        }
        let store = MetadataStore {
            dir: dir.to_path_buf(),
            log,
            log_end_bytes: replayed.end_bytes,
            next_sequence: replayed.last_sequence + 1,
            catalog: catalog.clone(),
            config,
            poisoned: false,
            record_buf: Vec::new(),
        };
        Ok((store, catalog))
    }

    /// Validates `change`, writes it to the log and waits for fdatasync, then applies it to
    /// the store's catalog. When it returns `Ok` the change survives any crash. Compacts the
    /// log first when it has grown past the threshold.
    ///
    /// # Errors
    /// `Catalog` when the change does not apply (nothing is written); `Io` when writing or
    /// syncing fails; `Poisoned` after an fdatasync failure, since the kernel may then have
    /// dropped the written pages and only a reopen tells what is on disk. After an `Io`
    /// error from fdatasync the change may or may not survive a restart.
    pub fn apply(&mut self, change: &Change) -> Result<(), MetadataError> {
        if self.poisoned {
            return Err(MetadataError::Poisoned);
        }
        self.catalog.validate(change)?;
        if self.log_end_bytes >= self.config.log_compaction_threshold_bytes {
            self.compact()?;
        }
        format::encode_record(self.next_sequence, change, &mut self.record_buf)
            .map_err(MetadataError::Encode)?;
        self.append_durably()?;
        self.catalog.apply(change)?;
        self.next_sequence += 1;
        Ok(())
    }

    /// Writes the encoded record at the end of the log and syncs it.
    fn append_durably(&mut self) -> Result<(), MetadataError> {
        let log_path = self.dir.join(LOG_FILE_NAME);
        if let Err(source) = self.log.write_all_at(&self.record_buf, self.log_end_bytes) {
            // A partial write leaves garbage past the end; cut it so the next record follows
            // the last good one directly. If even that fails, the tail is unknown.
            if self.log.set_len(self.log_end_bytes).is_err() {
                self.poisoned = true;
            }
            return Err(MetadataError::Io {
                operation: "write",
                path: log_path,
                source,
            });
        }
        if let Err(source) = self.log.sync_data() {
            self.poisoned = true;
            return Err(MetadataError::Io {
                operation: "fdatasync",
                path: log_path,
                source,
            });
        }
        self.log_end_bytes += self.record_buf.len() as u64;
        Ok(())
    }

    /// Writes the catalog into a new snapshot (temp file, fsync, rename, directory fsync) and
    /// empties the log. A crash at any point leaves either the old snapshot with the full log
    /// or the new snapshot, whose sequence number makes replay skip the old records.
    ///
    /// # Errors
    /// `Io` on a file-system failure; `Poisoned` when the log could not be emptied.
    pub fn compact(&mut self) -> Result<(), MetadataError> {
        if self.poisoned {
            return Err(MetadataError::Poisoned);
        }
        let last_sequence = self.next_sequence - 1;
        let bytes =
            format::encode_snapshot(&self.catalog, last_sequence).map_err(MetadataError::Encode)?;
        write_file_durably(
            &self.dir,
            SNAPSHOT_TEMP_FILE_NAME,
            SNAPSHOT_FILE_NAME,
            &bytes,
        )?;
        let log_path = self.dir.join(LOG_FILE_NAME);
        let emptied = self
            .log
            .set_len(LOG_HEADER_BYTES as u64)
            .and_then(|()| self.log.sync_all());
        if let Err(source) = emptied {
            self.poisoned = true;
            return Err(MetadataError::Io {
                operation: "truncate",
                path: log_path,
                source,
            });
        }
        self.log_end_bytes = LOG_HEADER_BYTES as u64;
        Ok(())
    }

    /// The store's copy of the catalog, identical to one kept in step by the caller.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Current size of the log file, header included.
    pub fn log_size_bytes(&self) -> u64 {
        self.log_end_bytes
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Creates the store's directory and any missing parent, each new name synced into its
/// parent: otherwise a power cut could take the whole store, and with it every change
/// acknowledged since.
fn create_dir_durably(dir: &Path) -> Result<(), MetadataError> {
    crate::io::create_dir_all_durable(dir)
        .map(drop)
        .map_err(io_error("create directory", dir))
}

fn sync_dir(dir: &Path) -> Result<(), MetadataError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync directory", dir))
}

fn remove_if_present(path: &Path) -> Result<(), MetadataError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path)(e)),
    }
}

/// Writes `bytes` to `temp_name`, syncs it, renames it over `final_name` and syncs the
/// directory, so readers see either the old file or the whole new one.
fn write_file_durably(
    dir: &Path,
    temp_name: &str,
    final_name: &str,
    bytes: &[u8],
) -> Result<(), MetadataError> {
    let temp_path = dir.join(temp_name);
    let result = write_temp_and_rename(dir, &temp_path, &dir.join(final_name), bytes);
    if result.is_err() {
        // On a full disk the half-written temp file holds the very space the next attempt
        // needs; open() would remove it anyway.
        let _ = fs::remove_file(&temp_path);
    }
    result
}

fn write_temp_and_rename(
    dir: &Path,
    temp_path: &Path,
    final_path: &Path,
    bytes: &[u8],
) -> Result<(), MetadataError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp_path)
        .map_err(io_error("create", temp_path))?;
    file.write_all_at(bytes, 0)
        .map_err(io_error("write", temp_path))?;
    file.sync_all().map_err(io_error("fsync", temp_path))?;
    drop(file);
    fs::rename(temp_path, final_path).map_err(io_error("rename", final_path))?;
    sync_dir(dir)
}

fn load_snapshot(dir: &Path) -> Result<(Catalog, u64), MetadataError> {
    let path = dir.join(SNAPSHOT_FILE_NAME);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Catalog::new(), 0)),
        Err(e) => return Err(io_error("open", &path)(e)),
    };
    let mut bytes = Vec::new();
    let cap = SNAPSHOT_PAYLOAD_MAX_BYTES + format::SNAPSHOT_HEADER_BYTES as u64;
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(io_error("read", &path))?;
    format::decode_snapshot(&bytes)
        .map_err(|reason| MetadataError::CorruptSnapshot { path, reason })
}

fn open_or_create_log(dir: &Path) -> Result<File, MetadataError> {
    let path = dir.join(LOG_FILE_NAME);
    if !path.exists() {
        // Created whole under a temporary name, so a log file never has a torn header.
        write_file_durably(
            dir,
            LOG_TEMP_FILE_NAME,
            LOG_FILE_NAME,
            &format::log_header(),
        )?;
    }
    let log = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_error("open", &path))?;
    match log.try_lock() {
        Ok(()) => Ok(log),
        Err(fs::TryLockError::WouldBlock) => Err(MetadataError::Locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(io_error("lock", &path)(e)),
    }
}

fn read_log(log: &mut File, path: &Path) -> Result<Vec<u8>, MetadataError> {
    let mut bytes = Vec::new();
    let read = log
        .take(LOG_SIZE_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error("read", path))?;
    if read as u64 > LOG_SIZE_MAX_BYTES {
        return Err(MetadataError::CorruptLog {
            path: path.to_path_buf(),
            position_bytes: LOG_SIZE_MAX_BYTES,
            reason: "log larger than the maximum".to_string(),
        });
    }
    format::check_log_header(&bytes).map_err(|e| MetadataError::CorruptLog {
        path: path.to_path_buf(),
        position_bytes: 0,
        reason: e.to_string(),
    })?;
    Ok(bytes)
}

/// Where replay stopped.
struct Replayed {
    end_bytes: u64,
    last_sequence: u64,
}

/// Applies the log's records after the snapshot to `catalog` (see the decision table).
fn replay(
    bytes: &[u8],
    snapshot_sequence: u64,
    catalog: &mut Catalog,
    path: &Path,
) -> Result<Replayed, MetadataError> {
    let mut position = LOG_HEADER_BYTES;
    let mut expected: Option<u64> = None;
    let mut last_sequence = snapshot_sequence;
    let corrupt = |position: usize, reason: String| MetadataError::CorruptLog {
        path: path.to_path_buf(),
        position_bytes: position as u64,
        reason,
    };
    while let Some(rest) = bytes.get(position..).filter(|rest| !rest.is_empty()) {
        let Ok(record) = format::parse_record(rest) else {
            break; // torn tail
        };
        let sequence = record.sequence;
        let in_order = expected.is_none_or(|e| e == sequence);
        let fits = sequence <= snapshot_sequence || sequence == last_sequence + 1;
        if !in_order || !fits {
            return Err(corrupt(
                position,
                format!("record sequence {sequence} out of order"),
            ));
        }
        if sequence > snapshot_sequence {
            let change = format::decode_change(record.payload)
                .map_err(|e| corrupt(position, e.to_string()))?;
            catalog
                .apply(&change)
                .map_err(|e| corrupt(position, format!("record does not apply: {e}")))?;
            last_sequence = sequence;
        }
        expected = Some(sequence + 1);
        position += record.size_bytes;
    }
    Ok(Replayed {
        end_bytes: position as u64,
        last_sequence,
    })
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
