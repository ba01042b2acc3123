//! The Raft log on disk: `<data>/raft/log/{first_index:020}.log` segments of records, the vote
//! and the last purged log id. A record is
//!
//! ```text
//! [payload_len u32][checksum u64][index u64][term u64][leader u64][messages u32][data_bytes u32]
//! [payload: postcard(Entry)]
//! ```
//!
//! (little endian, 44-byte header; `checksum` is XxHash3-64 of the rest of the header and the
//! payload). The header repeats the log id and the data size so opening reads headers only, except
//! in the newest segment, where every record is checked: a torn or zeroed tail is cut there, as
//! recovery of a partition cuts it. Appends are written at once (the page cache) and made durable
//! by a syncer thread that fdatasyncs every file written since its last round and then reports
//! each append flushed, in order (group commit). The vote is written to a temporary file, synced
//! and renamed over the old one.
//!
//! A send on a `persisted` topic is acknowledged once the leader's own log holds it on stable
//! storage, before the majority does: the node registers the batch (`notify_when_flushed`) before
//! submitting it, and the syncer tells it when the round that made it durable finished.

use super::types::{Command, Entry, LogId, StorageError, TypeConfig, Vote, WireKey};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{CommittedLeaderId, EntryPayload, OptionalSend, RaftLogReader, StorageIOError};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

const RECORD_HEADER_BYTES: usize = 44;
/// A new segment starts once the current one holds this much.
const SEGMENT_BYTES_MAX: u64 = 64 << 20;
/// Largest payload accepted back from disk (a corrupt length must not allocate gigabytes).
const PAYLOAD_BYTES_MAX: u32 = 256 << 20;
const SEGMENT_SUFFIX: &str = ".log";

/// Where one entry lives and what it carries.
#[derive(Debug, Clone, Copy)]
struct Location {
    log_id: LogId,
    segment: u64,
    position: u64,
    payload_len: u32,
    messages: u32,
    data_bytes: u64,
}

struct Segment {
    file: Arc<File>,
    len_bytes: u64,
}

struct Files {
    dir: PathBuf,
    /// By first index.
    segments: BTreeMap<u64, Segment>,
    /// Contiguous entries, the first at `entries[0].log_id.index`.
    entries: VecDeque<Location>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
}

/// A batch a `persisted` send waits for: its partition and first offset.
type FlushWaiterKey = (WireKey, u64);
type FlushWaiters = Arc<Mutex<HashMap<FlushWaiterKey, tokio::sync::oneshot::Sender<()>>>>;

/// The log store handed to openraft; clones share the files (the log reader is one).
#[derive(Clone)]
pub struct LogStore {
    files: Arc<Mutex<Files>>,
    syncer: mpsc::Sender<SyncJob>,
    flush_waiters: FlushWaiters,
}

enum SyncJob {
    Flush {
        files: Vec<Arc<File>>,
        dir: Option<PathBuf>,
        callback: LogFlushed<TypeConfig>,
        /// Sends waiting for these entries to be durable here.
        waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    },
}

fn io_error(error: impl std::error::Error + 'static) -> StorageError {
    StorageError::from(StorageIOError::write_logs(&error))
}

impl LogStore {
    /// Opens (or creates) the log under `dir`, cutting a torn tail.
    ///
    /// # Errors
    /// The I/O error of a directory or file operation, or a record that cannot be read back
    /// where it must be whole (before the newest segment).
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        let log_dir = dir.join("log");
        riptide_storage::io::create_dir_all_durable(&log_dir)?;
        let mut files = Files {
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
            entries: VecDeque::new(),
            last_purged: super::durable::read(&dir.join("purged"))?,
            vote: super::durable::read(&dir.join("vote"))?,
        };
        let mut firsts: Vec<u64> = std::fs::read_dir(&log_dir)?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok()
            })
            .collect();
        firsts.sort_unstable();
        let newest = firsts.last().copied();
        for first in firsts {
            files.load_segment(first, Some(first) == newest)?;
        }
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("riptide-raftlog".to_string())
            .spawn(move || sync_loop(receiver))?;
        Ok(LogStore {
            files: Arc::new(Mutex::new(files)),
            syncer: sender,
            flush_waiters: Arc::default(),
        })
    }

    /// Resolves once the batch for `key` at `base_offset`, submitted after this call, is on
    /// stable storage in this node's log. Dropped unresolved if the batch never reaches this
    /// log; [`LogStore::forget`] the registration then.
    pub fn notify_when_flushed(
        &self,
        key: WireKey,
        base_offset: u64,
    ) -> tokio::sync::oneshot::Receiver<()> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.waiters().insert((key, base_offset), sender);
        receiver
    }

    pub fn forget(&self, key: WireKey, base_offset: u64) {
        self.waiters().remove(&(key, base_offset));
    }

    fn waiters(&self) -> MutexGuard<'_, HashMap<FlushWaiterKey, tokio::sync::oneshot::Sender<()>>> {
        self.flush_waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The waiters of the appends among `entries`.
    fn take_waiters<'e>(
        &self,
        entries: impl Iterator<Item = &'e Entry>,
    ) -> Vec<tokio::sync::oneshot::Sender<()>> {
        let mut registered = self.waiters();
        if registered.is_empty() {
            return Vec::new();
        }
        entries
            .filter_map(|entry| match &entry.payload {
                EntryPayload::Normal(Command::Append {
                    key, base_offset, ..
                }) => registered.remove(&(*key, *base_offset)),
                _ => None,
            })
            .collect()
    }

    fn locked(&self) -> MutexGuard<'_, Files> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Messages and bytes of data in the entries after `index` up to the last.
    pub fn data_after(&self, index: u64) -> (u64, u64) {
        let files = self.locked();
        files
            .entries
            .iter()
            .filter(|location| location.log_id.index > index)
            .fold((0, 0), |(messages, bytes), location| {
                (
                    messages + u64::from(location.messages),
                    bytes + location.data_bytes,
                )
            })
    }
}

impl Files {
    fn segment_path(&self, first: u64) -> PathBuf {
        self.dir
            .join("log")
            .join(format!("{first:020}{SEGMENT_SUFFIX}"))
    }

    /// Reads a segment's record headers (and, for the newest, checks every record and cuts what
    /// does not check).
    fn load_segment(&mut self, first: u64, newest: bool) -> io::Result<()> {
        let path = self.segment_path(first);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let file_len = file.metadata()?.len();
        let mut position = 0u64;
        let mut header = [0u8; RECORD_HEADER_BYTES];
        while position + RECORD_HEADER_BYTES as u64 <= file_len {
            file.read_exact_at(&mut header, position)?;
            let Some(location) = decode_header(&header, first, position) else {
                break;
            };
            let end = position + RECORD_HEADER_BYTES as u64 + u64::from(location.payload_len);
            if end > file_len || (newest && !record_checks(&file, &header, &location)?) {
                break;
            }
            if self
                .last_purged
                .is_some_and(|purged| location.log_id.index <= purged.index)
            {
                position = end;
                continue;
            }
            let expected = self
                .entries
                .back()
                .map_or(location.log_id.index, |last| last.log_id.index + 1);
            if location.log_id.index != expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: entry {} where {expected} was expected",
                        path.display(),
                        location.log_id.index
                    ),
                ));
            }
            self.entries.push_back(location);
            position = end;
        }
        if position < file_len {
            if !newest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: unreadable record at byte {position}", path.display()),
                ));
            }
            tracing::warn!(path = %path.display(), kept_bytes = position, dropped_bytes = file_len - position, "raft log had a torn tail (never acknowledged); cut");
            file.set_len(position)?;
            file.sync_all()?;
        }
        self.segments.insert(
            first,
            Segment {
                file: Arc::new(file),
                len_bytes: position,
            },
        );
        Ok(())
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .back()
            .map(|location| location.log_id)
            .or(self.last_purged)
    }

    fn location(&self, index: u64) -> Option<Location> {
        let first = self.entries.front()?.log_id.index;
        self.entries
            .get(usize::try_from(index.checked_sub(first)?).ok()?)
            .copied()
    }

    fn read_entry(&self, location: &Location) -> io::Result<Entry> {
        let segment = self.segments.get(&location.segment).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "segment of a live entry is gone")
        })?;
        let mut payload = vec![0u8; location.payload_len as usize];
        segment
            .file
            .read_exact_at(&mut payload, location.position + RECORD_HEADER_BYTES as u64)?;
        postcard::from_bytes(&payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Writes `entry` at the end of the log; returns the file written and whether a new segment
    /// was created (its directory entry then needs a sync).
    fn write_entry(&mut self, entry: &Entry) -> io::Result<(Arc<File>, bool)> {
        let payload = postcard::to_allocvec(entry)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let (messages, data_bytes) = match &entry.payload {
            openraft::EntryPayload::Normal(command) => command.data_size(),
            _ => (0, 0),
        };
        let messages = u32::try_from(messages).unwrap_or(u32::MAX);
        let record_len = (RECORD_HEADER_BYTES + payload.len()) as u64;
        let current = self
            .segments
            .iter()
            .next_back()
            .map(|(first, s)| (*first, s.len_bytes));
        let (first, created) = match current {
            Some((first, len)) if len + record_len <= SEGMENT_BYTES_MAX || len == 0 => {
                (first, false)
            }
            _ => {
                let first = entry.log_id.index;
                let path = self.segment_path(first);
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                self.segments.insert(
                    first,
                    Segment {
                        file: Arc::new(file),
                        len_bytes: 0,
                    },
                );
                (first, true)
            }
        };
        let segment = self.segments.get_mut(&first).expect("segment chosen above");
        let location = Location {
            log_id: entry.log_id,
            segment: first,
            position: segment.len_bytes,
            payload_len: payload.len() as u32,
            messages,
            data_bytes,
        };
        let mut record = encode_header(&location, &payload).to_vec();
        record.extend_from_slice(&payload);
        segment.file.write_all_at(&record, segment.len_bytes)?;
        segment.len_bytes += record_len;
        self.entries.push_back(location);
        Ok((Arc::clone(&segment.file), created))
    }

    /// Deletes the entries from `index` on.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(location) = self.location(index) else {
            return Ok(());
        };
        while self.entries.back().is_some_and(|l| l.log_id.index >= index) {
            self.entries.pop_back();
        }
        let later: Vec<u64> = self
            .segments
            .range((Bound::Excluded(location.segment), Bound::Unbounded))
            .map(|(first, _)| *first)
            .collect();
        for first in later {
            self.segments.remove(&first);
            std::fs::remove_file(self.segment_path(first))?;
        }
        if location.position == 0 {
            self.segments.remove(&location.segment);
            std::fs::remove_file(self.segment_path(location.segment))?;
        } else if let Some(segment) = self.segments.get_mut(&location.segment) {
            segment.file.set_len(location.position)?;
            segment.file.sync_all()?;
            segment.len_bytes = location.position;
        }
        riptide_storage::io::sync_dir(&self.dir.join("log"))
    }

    /// Forgets the entries up to `log_id` and deletes the segments that held only those.
    fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        super::durable::write(&self.dir.join("purged"), &Some(log_id))?;
        self.last_purged = Some(log_id);
        while self
            .entries
            .front()
            .is_some_and(|l| l.log_id.index <= log_id.index)
        {
            self.entries.pop_front();
        }
        // Segments before the one holding the first live entry (or, with none live, before the
        // newest, which the next append continues) hold only purged entries.
        let keep_from = self
            .entries
            .front()
            .map(|l| l.segment)
            .or_else(|| self.segments.keys().next_back().copied());
        let dead: Vec<u64> = self
            .segments
            .keys()
            .copied()
            .filter(|first| keep_from.is_some_and(|keep| *first < keep))
            .collect();
        for first in dead {
            self.segments.remove(&first);
            std::fs::remove_file(self.segment_path(first))?;
        }
        Ok(())
    }
}

fn encode_header(location: &Location, payload: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
    let mut header = [0u8; RECORD_HEADER_BYTES];
    header[0..4].copy_from_slice(&location.payload_len.to_le_bytes());
    header[12..20].copy_from_slice(&location.log_id.index.to_le_bytes());
    header[20..28].copy_from_slice(&location.log_id.leader_id.term.to_le_bytes());
    header[28..36].copy_from_slice(&location.log_id.leader_id.node_id.to_le_bytes());
    header[36..40].copy_from_slice(&location.messages.to_le_bytes());
    header[40..44].copy_from_slice(&(location.data_bytes as u32).to_le_bytes());
    let checksum = record_checksum(&header, payload);
    header[4..12].copy_from_slice(&checksum.to_le_bytes());
    header
}

fn record_checksum(header: &[u8; RECORD_HEADER_BYTES], payload: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = twox_hash::XxHash3_64::new();
    hasher.write(&header[0..4]);
    hasher.write(&header[12..]);
    hasher.write(payload);
    hasher.finish()
}

fn decode_header(
    header: &[u8; RECORD_HEADER_BYTES],
    segment: u64,
    position: u64,
) -> Option<Location> {
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let payload_len = u32_at(0);
    if payload_len == 0 || payload_len > PAYLOAD_BYTES_MAX {
        return None;
    }
    Some(Location {
        log_id: LogId {
            leader_id: CommittedLeaderId::new(u64_at(20), u64_at(28)),
            index: u64_at(12),
        },
        segment,
        position,
        payload_len,
        messages: u32_at(36),
        data_bytes: u64::from(u32_at(40)),
    })
}

fn record_checks(
    file: &File,
    header: &[u8; RECORD_HEADER_BYTES],
    location: &Location,
) -> io::Result<bool> {
    let mut payload = vec![0u8; location.payload_len as usize];
    file.read_exact_at(&mut payload, location.position + RECORD_HEADER_BYTES as u64)?;
    let stored = u64::from_le_bytes(header[4..12].try_into().expect("8 bytes"));
    Ok(stored == record_checksum(header, &payload))
}

/// The syncer: fdatasyncs what appends wrote and reports them flushed, in order; jobs queued
/// while a round runs share the next round's syncs.
fn sync_loop(jobs: mpsc::Receiver<SyncJob>) {
    while let Ok(first) = jobs.recv() {
        let mut round = vec![first];
        round.extend(jobs.try_iter());
        let mut files: Vec<Arc<File>> = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for SyncJob::Flush {
            files: written,
            dir,
            ..
        } in &round
        {
            for file in written {
                if !files.iter().any(|f| Arc::ptr_eq(f, file)) {
                    files.push(Arc::clone(file));
                }
            }
            dirs.extend(dir.iter().cloned());
        }
        let result = files
            .iter()
            .try_for_each(|file| file.sync_data())
            .and_then(|()| {
                dirs.iter()
                    .try_for_each(|dir| riptide_storage::io::sync_dir(dir))
            });
        for SyncJob::Flush {
            callback, waiters, ..
        } in round
        {
            let outcome = match &result {
                Ok(()) => {
                    waiters.into_iter().for_each(|waiter| {
                        let _ = waiter.send(());
                    });
                    Ok(())
                }
                Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
            };
            callback.log_io_completed(outcome);
        }
        if let Err(error) = result {
            tracing::error!(%error, "raft log fdatasync failed; the node cannot acknowledge entries");
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let files = self.locked();
        let (Some(first), Some(last)) = (files.entries.front(), files.entries.back()) else {
            return Ok(Vec::new());
        };
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x + 1,
            Bound::Unbounded => first.log_id.index,
        }
        .max(first.log_id.index);
        let end = match range.end_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_sub(1),
            Bound::Unbounded => last.log_id.index,
        }
        .min(last.log_id.index);
        let mut entries = Vec::new();
        for index in start..=end {
            if !range.contains(&index) {
                continue;
            }
            let location = files.location(index).expect("index within the live range");
            entries.push(
                files.read_entry(&location).map_err(|e| {
                    StorageError::from(StorageIOError::read_log_at_index(index, &e))
                })?,
            );
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let files = self.locked();
        Ok(LogState {
            last_purged_log_id: files.last_purged,
            last_log_id: files.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut files = self.locked();
        super::durable::write(&files.dir.join("vote"), &Some(*vote))
            .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
        files.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.locked().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let waiters = self.take_waiters(entries.iter());
        let mut written: Vec<Arc<File>> = Vec::new();
        let mut created = false;
        {
            let mut files = self.locked();
            for entry in &entries {
                let (file, new_segment) = files.write_entry(entry).map_err(io_error)?;
                created |= new_segment;
                if !written.iter().any(|f| Arc::ptr_eq(f, &file)) {
                    written.push(file);
                }
            }
        }
        let dir = created.then(|| self.locked().dir.join("log"));
        self.syncer
            .send(SyncJob::Flush {
                files: written,
                dir,
                callback,
                waiters,
            })
            .map_err(|_| io_error(io::Error::other("the raft log syncer stopped")))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.locked().truncate(log_id.index).map_err(io_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.locked().purge(log_id).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::super::types::Command;
    use super::*;
    use openraft::EntryPayload;

    fn entry(index: u64, term: u64, batch: &[u8]) -> Entry {
        Entry {
            log_id: LogId {
                leader_id: CommittedLeaderId::new(term, 1),
                index,
            },
            payload: EntryPayload::Normal(Command::Append {
                key: super::super::types::WireKey {
                    stream_id: 0,
                    topic_id: 0,
                    partition_id: 0,
                },
                base_offset: index,
                timestamp_us: 1,
                messages: 1,
                batch: batch.to_vec(),
            }),
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    async fn append_flushed(store: &mut LogStore, entries: Vec<Entry>) {
        use openraft::storage::RaftLogStorageExt;
        store
            .blocking_append(entries)
            .await
            .expect("appended and flushed");
    }

    #[test]
    fn entries_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("dir");
        block_on(async {
            let mut store = LogStore::open(dir.path()).expect("open");
            append_flushed(&mut store, (1..=5).map(|i| entry(i, 1, b"batch")).collect()).await;
            store.save_vote(&Vote::new(3, 2)).await.expect("vote");
        });
        // A torn record at the end: a header without its payload.
        let segment = dir.path().join("log").join(format!("{:020}.log", 1));
        let len = std::fs::metadata(&segment).expect("segment").len();
        let file = OpenOptions::new()
            .append(true)
            .open(&segment)
            .expect("open");
        file.write_all_at(&[7u8; 30], len).expect("garbage");
        block_on(async {
            let mut store = LogStore::open(dir.path()).expect("reopen");
            let state = store.get_log_state().await.expect("state");
            assert_eq!(state.last_log_id.map(|id| id.index), Some(5));
            assert_eq!(
                store.read_vote().await.expect("vote"),
                Some(Vote::new(3, 2))
            );
            let entries = store.try_get_log_entries(2..4).await.expect("read");
            assert_eq!(
                entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
                vec![2, 3]
            );
            assert_eq!(store.data_after(3), (2, 10));
        });
        assert_eq!(std::fs::metadata(&segment).expect("segment").len(), len);
    }

    #[test]
    fn truncate_and_purge_keep_the_log_contiguous() {
        let dir = tempfile::tempdir().expect("dir");
        block_on(async {
            let mut store = LogStore::open(dir.path()).expect("open");
            append_flushed(&mut store, (1..=10).map(|i| entry(i, 1, b"x")).collect()).await;
            store
                .truncate(entry(7, 1, b"").log_id)
                .await
                .expect("truncate");
            append_flushed(&mut store, vec![entry(7, 2, b"new")]).await;
            store.purge(entry(3, 1, b"").log_id).await.expect("purge");
            let state = store.get_log_state().await.expect("state");
            assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(3));
            assert_eq!(
                state.last_log_id.map(|id| (id.index, id.leader_id.term)),
                Some((7, 2))
            );
            let read = store.try_get_log_entries(..).await.expect("read");
            assert_eq!(
                read.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
                (4..=7).collect::<Vec<_>>()
            );
        });
        block_on(async {
            let mut store = LogStore::open(dir.path()).expect("reopen");
            let read = store.try_get_log_entries(..).await.expect("read");
            assert_eq!(read.len(), 4);
            assert_eq!(read.last().map(|e| e.log_id.leader_id.term), Some(2));
        });
    }
}
