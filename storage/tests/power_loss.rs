//! Power loss under the storage engine alone: a shard and a metadata store run on a lossy disk
//! (lossydisk: writes stay in a volatile cache until fsynced, names until their directory is)
//! and the power is cut at random points, with I/O in flight. After every cut the disk holds
//! only what was durable; the engine reopens it and must still hold every acknowledged batch
//! (byte for byte, at its offset), every acknowledged consumer offset (at least), every
//! partition whose creation returned and every acknowledged metadata change.
//!
//! Rounds continue on one backing directory, so recovery also runs on what earlier recoveries
//! left. Seeds are printed; `RIPTIDE_POWER_LOSS_SEED` replays one.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use lossydisk::{require_fuse, CutPolicy, DiskOptions, LossyDisk};
use proptest::prelude::*;
use riptide_storage::metadata::{Change, MetadataStore, StoreConfig};
use riptide_storage::testkit::{tagged_batch, unstamped, XorShift};
use riptide_storage::*;

/// Rounds of the seeded multi-round test (each: mount, recover and check, work, cut).
const ROUNDS: u32 = 40;
/// Workload steps of a round at most (the cut lands after a random number of them).
const STEPS_MAX: u64 = 160;
/// Partitions the workload creates at most (each round reopens and checks all of them).
const PARTITIONS_MAX: usize = 12;
/// Metadata log size that triggers compaction: small, so snapshots are written at cuts.
const COMPACTION_THRESHOLD_BYTES: u64 = 2048;

fn engine_config() -> StorageConfig {
    StorageConfig {
        // The smallest segment: rotations happen every few dozen batches.
        segment_size_bytes: 64 * 1024,
        index_interval_bytes: 8 * 1024,
        ..small_config()
    }
}

fn seed_from_env(default: u64) -> u64 {
    match std::env::var("RIPTIDE_POWER_LOSS_SEED") {
        Ok(text) => text.parse().expect("RIPTIDE_POWER_LOSS_SEED is a number"),
        Err(_) => default,
    }
}

fn partition_path(data: &Path, key: PartitionKey) -> PathBuf {
    data.join(format!(
        "streams/{}/topics/{}/partitions/{}",
        key.stream_id, key.topic_id, key.partition_id
    ))
}

/// What was acknowledged so far, over every round: what recovery must give back.
#[derive(Default)]
struct Expected {
    /// Acknowledged batches by partition and base offset.
    batches: BTreeMap<PartitionKey, BTreeMap<u64, Vec<u8>>>,
    /// Partitions whose creation returned.
    partitions: BTreeSet<PartitionKey>,
    /// Offsets below this were deleted by acknowledged retention.
    retained_from: BTreeMap<PartitionKey, u64>,
    /// Explicit offset stores: (acknowledged, highest attempted) per partition and consumer.
    offsets: BTreeMap<(PartitionKey, u32), (Option<u64>, u64)>,
    /// Streams whose creation the metadata store acknowledged.
    streams: BTreeMap<u32, String>,
    next_stream_id: u32,
    next_tag: u64,
}

/// One mounted round: the disk, the engine on it, and what is in flight.
struct Round<'a> {
    data: PathBuf,
    shard: Shard,
    store: MetadataStore,
    expected: &'a mut Expected,
    /// token -> (partition, batch) of appends not yet acknowledged.
    appends: BTreeMap<u64, (PartitionKey, Vec<u8>)>,
    /// token -> (partition, consumer, offset) of explicit stores not yet acknowledged.
    stores: BTreeMap<u64, (PartitionKey, u32, u64)>,
    next_token: u64,
    completions: Vec<Completion>,
}

/// Reopens everything on the mounted disk and lists what recovery lost.
fn recover<'a>(
    data: &Path,
    expected: &'a mut Expected,
    config: &StorageConfig,
) -> (Round<'a>, Vec<String>) {
    let mut findings = Vec::new();
    let (store, catalog) = MetadataStore::open_with(
        &data.join("metadata"),
        StoreConfig {
            log_compaction_threshold_bytes: COMPACTION_THRESHOLD_BYTES,
        },
    )
    .expect("metadata store reopens");
    for (id, name) in &expected.streams {
        match catalog.stream(*id) {
            Some(stream) if &stream.name == name => {}
            other => findings.push(format!(
                "stream {id} ({name}) acknowledged, found {:?}",
                other.map(|s| &s.name)
            )),
        }
    }
    let mut shard = common::shard(config.clone());
    for key in expected.partitions.clone() {
        let dir = partition_path(data, key);
        if !dir.is_dir() {
            findings.push(format!("{key:?}: partition directory lost"));
            continue;
        }
        shard
            .open_partition(key, &dir, PartitionSettings::default())
            .expect("partition reopens");
        check_partition(&mut shard, key, expected, &mut findings);
    }
    let round = Round {
        data: data.to_path_buf(),
        shard,
        store,
        expected,
        appends: BTreeMap::new(),
        stores: BTreeMap::new(),
        next_token: 1,
        completions: Vec::new(),
    };
    (round, findings)
}

fn check_partition(
    shard: &mut Shard,
    key: PartitionKey,
    expected: &Expected,
    findings: &mut Vec<String>,
) {
    let retained_from = expected.retained_from.get(&key).copied().unwrap_or(0);
    let batches = expected.batches.get(&key).cloned().unwrap_or_default();
    for (base, batch) in batches.range(retained_from..) {
        // The whole batch (a shorter read would slice it).
        let messages = record_header(batch).expect("a batch").message_count;
        let got = read(shard, key, ReadStart::Offset(*base), messages).expect("read back");
        let first = records(&got.to_vec()).into_iter().next();
        match first {
            Some(record) if unstamped(&record) == unstamped(batch) => {}
            Some(_) => findings.push(format!(
                "{key:?}: acknowledged offset {base} holds other bytes"
            )),
            None => findings.push(format!(
                "{key:?}: acknowledged batch at offset {base} lost (partition ends at {:?})",
                got.current_offset
            )),
        }
    }
    let current = shard
        .partition_info(key)
        .and_then(|info| info.current_offset);
    for ((offset_key, consumer), (acked, attempted)) in &expected.offsets {
        if *offset_key != key {
            continue;
        }
        let stored = shard
            .get_offset(
                key,
                ConsumerRef {
                    kind: ConsumerKind::Consumer,
                    id: *consumer,
                },
            )
            .expect("offsets readable");
        let low_enough = stored.is_none_or(|s| s <= *attempted && current.is_some_and(|c| s <= c));
        let high_enough = match (acked, stored) {
            (Some(acked), Some(stored)) => stored >= *acked,
            (Some(_), None) => false,
            (None, _) => true,
        };
        if !low_enough || !high_enough {
            findings.push(format!(
                "{key:?} consumer {consumer}: stored offset {stored:?}, acknowledged {acked:?}, attempted up to {attempted}, partition ends at {current:?}"
            ));
        }
    }
}

impl Round<'_> {
    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Takes completions without waiting (or waiting up to `wait`) and records what they acknowledge.
    fn settle(&mut self, wait: Duration) {
        self.shard.wait(wait);
        self.shard.take_completions(&mut self.completions);
        for completion in std::mem::take(&mut self.completions) {
            match completion.result {
                CompletionResult::Append(Ok(appended)) => {
                    if let Some((key, batch)) = self.appends.remove(&completion.token) {
                        self.expected
                            .batches
                            .entry(key)
                            .or_default()
                            .insert(appended.base_offset, batch);
                    }
                }
                CompletionResult::OffsetStored(Ok(())) => {
                    if let Some((key, consumer, offset)) = self.stores.remove(&completion.token) {
                        let entry = self
                            .expected
                            .offsets
                            .entry((key, consumer))
                            .or_insert((None, offset));
                        entry.0 = Some(entry.0.map_or(offset, |acked| acked.max(offset)));
                    }
                }
                _ => {
                    self.appends.remove(&completion.token);
                    self.stores.remove(&completion.token);
                }
            }
        }
    }

    fn append(&mut self, key: PartitionKey, ack: AckMode) {
        let tag = self.expected.next_tag;
        self.expected.next_tag += 1;
        let batch = tagged_batch(tag, 6, 3000);
        if !self.shard.has_room(key, batch.len()) {
            return;
        }
        let token = self.token();
        self.appends.insert(token, (key, batch.clone()));
        if self.shard.append(key, batch, ack, token, now_us()).is_err() {
            self.appends.remove(&token);
        }
    }

    /// An explicit store of the consumer's next position: at most the last acknowledged offset.
    fn store_offset(&mut self, key: PartitionKey, consumer: u32, deferred: bool) {
        let Some(last) = self
            .expected
            .batches
            .get(&key)
            .and_then(|b| b.keys().next_back().copied())
        else {
            return;
        };
        let previous = self
            .expected
            .offsets
            .get(&(key, consumer))
            .map_or(0, |(_, attempted)| *attempted);
        let offset = last.max(previous);
        let consumer_ref = ConsumerRef {
            kind: ConsumerKind::Consumer,
            id: consumer,
        };
        let entry = self
            .expected
            .offsets
            .entry((key, consumer))
            .or_insert((None, offset));
        entry.1 = entry.1.max(offset);
        if deferred {
            let _ = self.shard.store_offset_deferred(key, consumer_ref, offset);
            return;
        }
        let token = self.token();
        self.stores.insert(token, (key, consumer, offset));
        if self
            .shard
            .store_offset(key, consumer_ref, offset, token)
            .is_err()
        {
            self.stores.remove(&token);
        }
    }

    /// A new stream in the metadata store and a new partition tree for it on disk.
    fn create_partition(&mut self) {
        let stream_id = self.expected.next_stream_id;
        self.expected.next_stream_id += 1;
        let name = format!("s{stream_id}");
        let change = Change::CreateStream {
            stream_id,
            name: name.clone(),
            created_at_us: now_us(),
        };
        if self.store.apply(&change).is_ok() {
            self.expected.streams.insert(stream_id, name);
        }
        let key = PartitionKey {
            stream_id,
            topic_id: 0,
            partition_id: 0,
        };
        let dir = partition_path(&self.data, key);
        if self
            .shard
            .open_partition(key, &dir, PartitionSettings::default())
            .is_ok()
        {
            self.expected.partitions.insert(key);
        }
    }

    /// Retention: the oldest sealed segment goes.
    fn delete_oldest_segment(&mut self, key: PartitionKey) {
        if let Ok(1) = self.shard.delete_segments(key, 1) {
            let first = read(&mut self.shard, key, ReadStart::First, 1)
                .ok()
                .and_then(|result| {
                    records(&result.to_vec())
                        .first()
                        .map(|r| record_header(r).unwrap().base_offset)
                });
            if let Some(first) = first {
                self.expected.retained_from.insert(key, first);
            }
        }
    }

    /// One random step of the workload.
    fn step(&mut self, rng: &mut XorShift) {
        let keys: Vec<PartitionKey> = self.expected.partitions.iter().copied().collect();
        let key = keys[rng.between(0, keys.len() as u64 - 1) as usize];
        match rng.between(0, 99) {
            0..=54 => self.append(key, AckMode::Durable),
            55..=64 => self.store_offset(key, rng.between(0, 2) as u32, false),
            65..=72 => self.store_offset(key, 3, true),
            73..=75 if keys.len() < PARTITIONS_MAX => self.create_partition(),
            76..=79 => self.delete_oldest_segment(key),
            _ => self.settle(Duration::from_micros(rng.between(0, 2000))),
        }
        self.settle(Duration::ZERO);
    }
}

/// One round: mount, recover and check, run `steps` steps, cut the power. Returns the findings
/// of the recovery check.
fn run_round(
    backing: &Path,
    mountpoint: &Path,
    expected: &mut Expected,
    options: DiskOptions,
    steps: u64,
    rng: &mut XorShift,
) -> Vec<String> {
    let disk = LossyDisk::mount(backing, mountpoint, options).expect("mount the lossy disk");
    let data = disk.path().join("data");
    let (mut round, findings) = recover(&data, expected, &engine_config());
    if round.expected.partitions.is_empty() {
        round.create_partition();
    }
    for _ in 0..steps {
        round.step(rng);
    }
    let Round { shard, store, .. } = round;
    disk.power_cut(move || {
        drop(shard);
        drop(store);
    })
    .expect("power cut");
    findings
}

/// Mounts once more and checks what the last cut left.
fn final_check(backing: &Path, mountpoint: &Path, expected: &mut Expected) -> Vec<String> {
    let disk = LossyDisk::mount(backing, mountpoint, DiskOptions::default()).expect("mount");
    let data = disk.path().join("data");
    let (round, findings) = recover(&data, expected, &engine_config());
    drop(round);
    disk.unmount().expect("unmount");
    findings
}

fn policy_of(index: u64) -> CutPolicy {
    match index % 3 {
        0 => CutPolicy::DropUnsynced,
        1 => CutPolicy::TearLast,
        _ => CutPolicy::Reorder,
    }
}

#[test]
fn acknowledged_writes_survive_forty_power_cuts() {
    if !require_fuse("acknowledged_writes_survive_forty_power_cuts") {
        return;
    }
    let seed = seed_from_env(0x5EED_0014);
    println!("storage power-loss rounds: seed {seed} (RIPTIDE_POWER_LOSS_SEED={seed} replays it)");
    let backing = tempfile::tempdir().unwrap();
    let mountpoint = tempfile::tempdir().unwrap();
    let mut expected = Expected::default();
    let mut rng = XorShift::new(seed);
    let started = Instant::now();
    for round in 0..ROUNDS {
        let options = DiskOptions {
            cut: policy_of(round as u64),
            seed: rng.next_u64(),
            ..DiskOptions::default()
        };
        let steps = rng.between(1, STEPS_MAX);
        let findings = run_round(
            backing.path(),
            mountpoint.path(),
            &mut expected,
            options.clone(),
            steps,
            &mut rng,
        );
        assert!(
            findings.is_empty(),
            "seed {seed}, before round {round} ({options:?}): {findings:#?}"
        );
    }
    let findings = final_check(backing.path(), mountpoint.path(), &mut expected);
    assert!(
        findings.is_empty(),
        "seed {seed}, after the last cut: {findings:#?}"
    );
    let batches: usize = expected.batches.values().map(BTreeMap::len).sum();
    println!(
        "storage power-loss rounds: {ROUNDS} cuts, {batches} acknowledged batches in {} partitions, {} streams, all recovered ({:.1} s)",
        expected.partitions.len(),
        expected.streams.len(),
        started.elapsed().as_secs_f64()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A fresh disk, a random workload cut after a random number of steps, with a random
    /// treatment of the unsynced writes (dropped, torn last write, reordered sectors of 512 to
    /// 4096 bytes): the first recovery keeps everything acknowledged.
    #[test]
    fn any_cut_point_keeps_every_acknowledged_write(
        steps in 1u64..=STEPS_MAX,
        policy in 0u64..3,
        cut_seed in any::<u64>(),
        workload_seed in any::<u64>(),
        sector_shift in 9u32..=12,
    ) {
        if !require_fuse("any_cut_point_keeps_every_acknowledged_write") {
            return Ok(());
        }
        let backing = tempfile::tempdir().unwrap();
        let mountpoint = tempfile::tempdir().unwrap();
        let mut expected = Expected::default();
        let mut rng = XorShift::new(workload_seed);
        let options = DiskOptions {
            cut: policy_of(policy),
            seed: cut_seed,
            sector_bytes: 1 << sector_shift,
            ..DiskOptions::default()
        };
        run_round(backing.path(), mountpoint.path(), &mut expected, options, steps, &mut rng);
        let findings = final_check(backing.path(), mountpoint.path(), &mut expected);
        prop_assert!(findings.is_empty(), "{findings:#?}");
    }
}

/// A segment's log file, `{base_offset:020}.log` (not the metadata store's `changes.log`).
fn is_segment_log(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.len() == 24 && name.ends_with(b".log") && name[..20].iter().all(u8::is_ascii_digit)
}

/// The mutation check: a disk that acknowledges the segment logs' fdatasync without doing it
/// (what riptide built without that fdatasync would leave on disk) must make these checks
/// report lost batches — they can fail.
#[test]
fn a_disk_ignoring_the_log_fdatasync_is_caught_losing_acknowledged_batches() {
    if !require_fuse("a_disk_ignoring_the_log_fdatasync_is_caught_losing_acknowledged_batches") {
        return;
    }
    let backing = tempfile::tempdir().unwrap();
    let mountpoint = tempfile::tempdir().unwrap();
    let mut expected = Expected::default();
    let mut rng = XorShift::new(seed_from_env(0x00BA_DF5C));
    let options = DiskOptions {
        fsync_ignored: Some(is_segment_log),
        ..DiskOptions::default()
    };
    run_round(
        backing.path(),
        mountpoint.path(),
        &mut expected,
        options,
        80,
        &mut rng,
    );
    let findings = final_check(backing.path(), mountpoint.path(), &mut expected);
    let lost = findings.iter().filter(|f| f.contains("lost")).count();
    println!(
        "mutation check: {lost} findings of lost batches, e.g. {:?}",
        findings.first()
    );
    assert!(
        lost > 0,
        "the checks did not notice a missing fdatasync: {findings:#?}"
    );
}

fn memory_config(sync_interval: Duration, sync_size_bytes: u64) -> StorageConfig {
    let mut config = engine_config();
    // Written soon after the acknowledgement, synced only by the policy under test.
    config.memory_flush = MemoryFlush {
        size_bytes: 16 * 1024,
        messages_count: 1_000_000,
        interval_us: 10_000,
    };
    config.memory_sync = MemorySync {
        interval_us: sync_interval.as_micros() as u64,
        size_bytes: sync_size_bytes,
    };
    config
}

/// Memory-acknowledged batches of one partition, with when and after how many bytes each was
/// acknowledged; a consumer stores the newest offset durably as it goes.
struct MemoryRun {
    acked: Vec<(Instant, u64, u64, Vec<u8>)>,
    stored_offset: Option<u64>,
    cut_at: Instant,
}

fn memory_round(
    backing: &Path,
    mountpoint: &Path,
    config: &StorageConfig,
    duration: Duration,
    seed: u64,
) -> MemoryRun {
    let disk = LossyDisk::mount(backing, mountpoint, DiskOptions::default()).expect("mount");
    let dir = partition_path(&disk.path().join("data"), KEY);
    let mut shard = common::shard(config.clone());
    let settings = PartitionSettings {
        ack_mode: AckMode::Memory,
        ..PartitionSettings::default()
    };
    shard
        .open_partition(KEY, &dir, settings)
        .expect("partition");
    let mut rng = XorShift::new(seed);
    let (mut acked, mut acked_bytes, mut stored_offset) = (Vec::new(), 0u64, None);
    let mut parked = Vec::new();
    let consumer = ConsumerRef {
        kind: ConsumerKind::Consumer,
        id: 7,
    };
    let started = Instant::now();
    while started.elapsed() < duration {
        let batch = tagged_batch(rng.next_u64(), 4, 2000);
        let len = batch.len() as u64;
        if !shard.has_room(KEY, batch.len()) {
            shard.wait(Duration::from_millis(1));
            continue;
        }
        let appended = shard
            .append(KEY, batch.clone(), AckMode::Memory, 0, now_us())
            .expect("memory append");
        acked_bytes += len;
        acked.push((Instant::now(), acked_bytes, appended.base_offset, batch));
        if rng.between(0, 9) == 0 {
            // Durable before it returns: the offset may outlive the messages it names.
            let token = 1_000_000 + acked.len() as u64;
            shard
                .store_offset(KEY, consumer, appended.last_offset, token)
                .expect("store");
            if let CompletionResult::OffsetStored(Ok(())) =
                wait_for(&mut shard, token, &mut parked).result
            {
                stored_offset = Some(appended.last_offset);
            }
        }
        shard.wait(Duration::from_millis(rng.between(0, 3)));
        shard.take_completions(&mut parked);
        parked.clear();
    }
    let mut cut_at = Instant::now();
    disk.power_cut(|| {
        cut_at = Instant::now();
        drop(shard);
    })
    .expect("power cut");
    MemoryRun {
        acked,
        stored_offset,
        cut_at,
    }
}

/// Reopens the partition and returns which acknowledged batches are missing (by index), with
/// the consumer's stored offset and the partition's last offset.
fn memory_survivors(
    backing: &Path,
    mountpoint: &Path,
    run: &MemoryRun,
) -> (Vec<usize>, Option<u64>, Option<u64>) {
    let disk = LossyDisk::mount(backing, mountpoint, DiskOptions::default()).expect("mount");
    let dir = partition_path(&disk.path().join("data"), KEY);
    let mut shard = common::shard(engine_config());
    let info = shard
        .open_partition(KEY, &dir, PartitionSettings::default())
        .expect("reopen");
    let mut missing = Vec::new();
    for (index, (_, _, base, batch)) in run.acked.iter().enumerate() {
        let messages = record_header(batch).unwrap().message_count;
        let got = read(&mut shard, KEY, ReadStart::Offset(*base), messages).expect("read");
        let same = records(&got.to_vec())
            .first()
            .is_some_and(|r| unstamped(r) == unstamped(batch));
        if !same {
            missing.push(index);
        }
    }
    let stored = shard
        .get_offset(
            KEY,
            ConsumerRef {
                kind: ConsumerKind::Consumer,
                id: 7,
            },
        )
        .unwrap();
    drop(shard);
    disk.unmount().expect("unmount");
    (missing, stored, info.current_offset)
}

/// Slack on top of the sync interval for the write and fdatasync to complete on a loaded
/// machine (the FUSE disk answers in milliseconds).
const MEMORY_SYNC_SLACK: Duration = Duration::from_millis(300);

#[test]
fn memory_acknowledgements_are_lost_only_within_the_sync_interval() {
    if !require_fuse("memory_acknowledgements_are_lost_only_within_the_sync_interval") {
        return;
    }
    let interval = Duration::from_millis(100);
    let config = memory_config(interval, 1 << 30);
    let backing = tempfile::tempdir().unwrap();
    let mountpoint = tempfile::tempdir().unwrap();
    let run = memory_round(
        backing.path(),
        mountpoint.path(),
        &config,
        Duration::from_millis(1200),
        11,
    );
    let (missing, stored, current) = memory_survivors(backing.path(), mountpoint.path(), &run);
    let window_start = run.cut_at - interval - MEMORY_SYNC_SLACK;
    let late: Vec<usize> = missing
        .iter()
        .copied()
        .filter(|i| run.acked[*i].0 < window_start)
        .collect();
    println!(
        "memory window by time: {} batches acknowledged, {} lost, all within {interval:?} + {MEMORY_SYNC_SLACK:?} of the cut",
        run.acked.len(),
        missing.len()
    );
    assert!(
        late.is_empty(),
        "batches acknowledged more than the sync interval before the cut were lost: {late:?}"
    );
    assert_offset_clamped(run.stored_offset, stored, current);
}

#[test]
fn memory_acknowledgements_are_lost_only_within_the_sync_size() {
    if !require_fuse("memory_acknowledgements_are_lost_only_within_the_sync_size") {
        return;
    }
    let size_bytes = 256 * 1024;
    let config = memory_config(Duration::from_secs(3600), size_bytes);
    let backing = tempfile::tempdir().unwrap();
    let mountpoint = tempfile::tempdir().unwrap();
    let run = memory_round(
        backing.path(),
        mountpoint.path(),
        &config,
        Duration::from_millis(800),
        12,
    );
    let (missing, stored, current) = memory_survivors(backing.path(), mountpoint.path(), &run);
    let total = run.acked.last().map_or(0, |(_, bytes, _, _)| *bytes);
    // One window may be open and the previous one's sync still in flight.
    let late: Vec<usize> = missing
        .iter()
        .copied()
        .filter(|i| run.acked[*i].1 + 2 * size_bytes < total)
        .collect();
    println!(
        "memory window by size: {} batches ({total} bytes) acknowledged, {} lost, all within 2 x {size_bytes} bytes of the end",
        run.acked.len(),
        missing.len()
    );
    assert!(
        late.is_empty(),
        "batches older than two sync windows were lost: {late:?}"
    );
    assert_offset_clamped(run.stored_offset, stored, current);
}

/// A stored offset never points past the recovered partition's end.
fn assert_offset_clamped(
    stored_before: Option<u64>,
    stored_after: Option<u64>,
    current: Option<u64>,
) {
    match (stored_after, current) {
        (Some(stored), Some(current)) => assert!(
            stored <= current,
            "stored offset {stored} past the last offset {current}"
        ),
        (Some(stored), None) => panic!("stored offset {stored} kept on an empty partition"),
        (None, _) => assert!(
            stored_before.is_none() || current.is_none(),
            "an offset within the partition was forgotten"
        ),
    }
}
