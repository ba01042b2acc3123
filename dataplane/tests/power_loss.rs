//! Power loss under the real appliance: `riptide-dataplane` runs as a process on a data
//! directory inside a lossy disk (lossydisk: writes live in a volatile cache until fsynced,
//! names until their directory is), the official `iggy` SDK produces into several streams,
//! topics and partitions, creates new ones a moment before the cut, commits consumer-group
//! offsets by polling and stores offsets explicitly; then the power is cut at a seeded random
//! moment (the disk freezes, the appliance is SIGKILLed, only what was durable survives) and the
//! appliance restarts on what the disk holds. Every acknowledged message must be there byte for
//! byte at its offset, every acknowledged stream, topic, partition, user and token must exist,
//! every explicitly stored offset must be at least what was acknowledged, and auto-committed
//! offsets must be within `storage.auto_commit_write_delay_ms` of the cut.
//!
//! Seeds are printed; `RIPTIDE_POWER_LOSS_SEED` replays one. Which I/O path the appliance took
//! on the FUSE disk (O_DIRECT accepted, or the loud buffered fallback) is asserted and printed.

mod common;

use anyhow::{bail, ensure, Context};
use common::{bounded, id, Endpoint, SdkResult, ROOT_PASSWORD, ROOT_USERNAME};
use iggy::prelude::*;
use lossydisk::{require_fuse, CutPolicy, DiskOptions, LossyDisk};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const SEED_VARIABLE: &str = "RIPTIDE_POWER_LOSS_SEED";
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The SDK's calls time out instead of hanging once the appliance is gone.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const PRODUCERS: u32 = 2;
const MESSAGES_PER_BATCH_MAX: u64 = 8;
/// Between two sends of a producer.
const SEND_PAUSE: Duration = Duration::from_millis(2);
const MAIN_PARTITIONS: u32 = 3;
/// Segment size of the rotation and retention suites: the smallest a topic may ask for.
const SMALL_SEGMENT_BYTES: u64 = 1024 * 1024;
/// Largest payload of the rotation and retention suites: a segment fills every few dozen sends.
const LARGE_PAYLOAD_MAX_BYTES: u64 = 12 * 1024;
const GROUP_NAME: &str = "power-loss";
const EXPLICIT_CONSUMER_ID: u32 = 1;
/// Messages read per poll while reading partitions back.
const READ_CHUNK_MESSAGES: u32 = 1000;
/// On top of `storage.auto_commit_write_delay_ms` (and, in memory mode, of the sync interval):
/// the write and its fdatasync on a loaded 2-core machine.
const WINDOW_SLACK: Duration = Duration::from_millis(500);
const AUTO_COMMIT_DELAY: Duration = Duration::from_millis(100);

/// A tiny xorshift generator: the rounds' random choices, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn seed(default: u64) -> u64 {
    std::env::var(SEED_VARIABLE)
        .map(|text| text.parse().expect("RIPTIDE_POWER_LOSS_SEED is a number"))
        .unwrap_or(default)
}

/// How a suite runs: the appliance's environment, its topics, and where the cut falls.
#[derive(Clone)]
struct Variant {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    /// Per-topic segment size.
    segment_size_bytes: Option<u64>,
    /// Largest payload sent.
    payload_max_bytes: u64,
    /// Per-topic size limit (retention deletes sealed segments all the time).
    max_topic_size_bytes: Option<u64>,
    /// Memory acknowledgements: messages may be lost within this window before the cut.
    memory_window: Option<Duration>,
    /// The cut falls this long (ms, uniformly) after the workload starts.
    cut_after_ms: (u64, u64),
    /// Metadata changes (users, tokens, streams) made per creation step.
    metadata_churn: u32,
    /// Mutation testing: the disk ignores the segment logs' fdatasync.
    lying_log_fsync: bool,
}

impl Variant {
    fn new(name: &'static str) -> Variant {
        Variant {
            name,
            env: vec![(
                "RIPTIDE_STORAGE_AUTO_COMMIT_WRITE_DELAY_MS",
                AUTO_COMMIT_DELAY.as_millis().to_string(),
            )],
            segment_size_bytes: None,
            payload_max_bytes: 600,
            max_topic_size_bytes: None,
            memory_window: None,
            cut_after_ms: (300, 1200),
            metadata_churn: 1,
            lying_log_fsync: false,
        }
    }
}

/// A segment's log file, `{base_offset:020}.log` (not the metadata store's `changes.log`).
fn is_segment_log(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.len() == 24 && name.ends_with(b".log") && name[..20].iter().all(u8::is_ascii_digit)
}

/// The lossy disk and the appliance process on it.
struct Lab {
    backing: TempDir,
    mountpoint: TempDir,
    logs: TempDir,
    disk: Option<LossyDisk>,
    child: Option<Child>,
    env: Vec<(&'static str, String)>,
    starts_count: u32,
    direct_opens: u64,
    passed: bool,
}

impl Lab {
    fn new(variant: &Variant) -> anyhow::Result<Lab> {
        Ok(Lab {
            backing: tempfile::tempdir()?,
            mountpoint: tempfile::tempdir()?,
            logs: tempfile::tempdir()?,
            disk: None,
            child: None,
            env: variant.env.clone(),
            starts_count: 0,
            direct_opens: 0,
            passed: false,
        })
    }

    fn log_path(&self) -> PathBuf {
        self.logs.path().join("riptide-dataplane.log")
    }

    fn data_dir(&self) -> PathBuf {
        self.mountpoint.path().join("data")
    }

    /// Mounts the disk over what the last cut left and starts the appliance on it.
    fn boot(&mut self, options: DiskOptions) -> anyhow::Result<Endpoint> {
        let disk = LossyDisk::mount(self.backing.path(), self.mountpoint.path(), options)
            .context("mounting the lossy disk")?;
        self.disk = Some(disk);
        let runtime_config = self.data_dir().join("runtime/current_config.toml");
        let _ = fs::remove_file(&runtime_config);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_riptide-dataplane"));
        command
            .env("IGGY_SYSTEM_PATH", self.data_dir())
            .env("IGGY_TCP_ADDRESS", "127.0.0.1:0")
            .env("IGGY_ROOT_USERNAME", ROOT_USERNAME)
            .env("IGGY_ROOT_PASSWORD", ROOT_PASSWORD)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        self.child = Some(command.spawn().context("spawning riptide-dataplane")?);
        self.starts_count += 1;
        let address = self.wait_for_address(&runtime_config)?;
        Ok(Endpoint { address, tls: None })
    }

    fn wait_for_address(&mut self, runtime_config: &Path) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = fs::read_to_string(runtime_config).unwrap_or_default();
            let address = toml::from_str::<toml::Value>(&text).ok().and_then(|value| {
                value
                    .get("tcp")?
                    .get("address")?
                    .as_str()?
                    .parse::<SocketAddr>()
                    .ok()
            });
            if let Some(address) = address.filter(|a| a.port() != 0) {
                return Ok(address);
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("riptide-dataplane exited during start-up with {status}");
            }
            ensure!(
                Instant::now() < deadline,
                "the appliance did not start within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(child: &mut Option<Child>) {
        if let Some(mut child) = child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The power cut: the disk freezes, the appliance is SIGKILLed, the backing directory keeps
    /// what was durable.
    fn cut(&mut self) -> anyhow::Result<()> {
        let disk = self.disk.take().context("no disk mounted")?;
        let child = &mut self.child;
        let stats = disk.power_cut(|| Self::kill(child)).context("power cut")?;
        self.direct_opens += stats.direct_opens;
        Ok(())
    }

    /// A clean stop at the end: SIGTERM, then a clean unmount.
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait()?.is_none() {
                ensure!(Instant::now() < deadline, "the appliance ignored SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(disk) = self.disk.take() {
            self.direct_opens += disk.unmount().context("clean unmount")?.direct_opens;
        }
        Ok(())
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        Self::kill(&mut self.child);
        self.disk.take();
        if !self.passed {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(300)..].join("\n");
            eprintln!(
                "===== riptide-dataplane log ({} starts) =====\n{tail}\n===== end of log =====",
                self.starts_count
            );
        }
    }
}

type Location = (u32, u32, u32);

/// Everything acknowledged so far, over every round: what a restart must give back.
#[derive(Default)]
struct Expected {
    /// Acknowledged messages: location -> offset -> payload.
    messages: BTreeMap<Location, BTreeMap<u64, Vec<u8>>>,
    /// When each message was acknowledged (memory mode: its loss window).
    acked_at: BTreeMap<(Location, u64), Instant>,
    /// Acknowledged topics: (stream, topic) -> (stream name, partitions).
    topics: BTreeMap<(u32, u32), (String, u32)>,
    users: BTreeSet<String>,
    tokens: BTreeSet<String>,
    /// Explicit stores: location -> (acknowledged, highest attempted).
    explicit_offsets: BTreeMap<Location, (Option<u64>, u64)>,
    /// Auto-commits: location -> [(last offset delivered, when the poll reply arrived)].
    auto_commits: BTreeMap<Location, Vec<(u64, Instant)>>,
    /// The group on the main topic.
    group_id: Option<u32>,
    /// Where the last cut fell.
    last_cut: Option<Instant>,
    /// Memory mode: messages acknowledged within the sync window before a cut that it took.
    lost_within_window: usize,
    /// Whether a check found a partition whose first messages retention had deleted.
    retention_seen: bool,
    /// Partitions that acknowledged messages since the last check: a round's check reads
    /// these back whole (the last check reads everything).
    touched: BTreeSet<Location>,
    next_tag: u64,
}

type Shared = Arc<Mutex<Expected>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Expected> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A payload nobody else sends: the tag, then pseudo-random bytes of a varied length.
fn payload(tag: u64, index: u64, length_max: u64) -> Vec<u8> {
    let mut rng = Rng::new(tag << 8 | index);
    let length = 16 + rng.between(0, length_max) as usize;
    let mut out = format!("{tag}/{index}/").into_bytes();
    while out.len() < length {
        out.push(rng.next() as u8);
    }
    out
}

async fn timed<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, IggyError>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.sdk(what),
        Err(_) => bail!("{what}: no answer within {CALL_TIMEOUT:?}"),
    }
}

fn topic_options(variant: &Variant, partitions_count: u32) -> TopicCreateOptions {
    TopicCreateOptions {
        partitions_count: Some(partitions_count),
        durability: if variant.memory_window.is_some() {
            Durability::Replicated
        } else {
            Durability::Persisted
        },
        segment_size: variant.segment_size_bytes.map(IggyByteSize::from),
        max_topic_size: variant
            .max_topic_size_bytes
            .map(|bytes| MaxTopicSize::Custom(IggyByteSize::from(bytes))),
        ..Default::default()
    }
}

/// The round-0 topic every round produces into, with its consumer group.
async fn create_main_topic(
    client: &IggyClient,
    variant: &Variant,
    expected: &Shared,
) -> anyhow::Result<()> {
    let stream = timed("create main stream", client.create_stream("main")).await?;
    let options = topic_options(variant, MAIN_PARTITIONS);
    let topic = timed(
        "create main topic",
        client.create_topic(&id(stream.id), "events", &options),
    )
    .await?;
    let group = timed(
        "create group",
        client.create_consumer_group(&id(stream.id), &id(topic.id), GROUP_NAME),
    )
    .await?;
    let mut expected = lock(expected);
    expected
        .topics
        .insert((stream.id, topic.id), ("main".to_string(), MAIN_PARTITIONS));
    expected.group_id = Some(group.id);
    Ok(())
}

fn main_location(expected: &Expected) -> (u32, u32) {
    *expected
        .topics
        .keys()
        .next()
        .expect("the main topic exists")
}

/// Every partition of every acknowledged topic.
fn targets(expected: &Expected) -> Vec<Location> {
    expected
        .topics
        .iter()
        .flat_map(|((s, t), (_, partitions))| (0..*partitions).map(move |p| (*s, *t, p)))
        .collect()
}

/// A client with Nagle's algorithm off (the SDK's default leaves it on, and a send of tens of
/// kilobytes then waits out the peer's delayed acknowledgement: about 50 ms per batch here).
async fn producer_client(endpoint: &Endpoint) -> anyhow::Result<IggyClient> {
    let connection = format!("{}&nodelay=true", endpoint.connection_string());
    let client = IggyClient::from_connection_string(&connection).sdk("connection string")?;
    client.connect().await.sdk("connect")?;
    Ok(client)
}

/// Sends batches to random partitions until the cut; records what is acknowledged.
async fn produce(
    endpoint: Endpoint,
    expected: Shared,
    payload_max_bytes: u64,
    seed: u64,
) -> anyhow::Result<()> {
    let client = producer_client(&endpoint).await?;
    let mut rng = Rng::new(seed);
    loop {
        let (target, tag) = {
            let mut expected = lock(&expected);
            let all = targets(&expected);
            // Half the batches go to the newest partitions, created moments ago.
            let pick = if rng.next().is_multiple_of(2) {
                all.len() - 1 - (rng.next() as usize % all.len().min(2))
            } else {
                rng.next() as usize % all.len()
            };
            expected.next_tag += 1;
            (all[pick], expected.next_tag)
        };
        // A steady load rather than a flood: each round's messages are all read back.
        tokio::time::sleep(SEND_PAUSE).await;
        let count = rng.between(1, MESSAGES_PER_BATCH_MAX);
        let payloads: Vec<Vec<u8>> = (0..count)
            .map(|i| payload(tag, i, payload_max_bytes))
            .collect();
        let mut messages: Vec<IggyMessage> =
            payloads.iter().cloned().map(IggyMessage::from).collect();
        let (s, t, p) = target;
        let partitioning = Partitioning::partition_id(p);
        let Ok(response) = timed(
            "send",
            client.send_messages(&id(s), &id(t), &partitioning, &mut messages),
        )
        .await
        else {
            return Ok(());
        };
        let confirmation = response
            .confirmations
            .first()
            .context("send without confirmation")?;
        ensure!(
            confirmation.partition_id == p,
            "confirmed for partition {}",
            confirmation.partition_id
        );
        let now = Instant::now();
        let mut expected = lock(&expected);
        for (index, payload) in payloads.into_iter().enumerate() {
            let offset = confirmation.base_offset + index as u64;
            expected
                .messages
                .entry(target)
                .or_default()
                .insert(offset, payload);
            expected.acked_at.insert((target, offset), now);
        }
        expected.touched.insert(target);
    }
}

/// Creates streams with topics, users and tokens from `start` on until the cut, which falls
/// soon after: the new topics' directories and first segments are new at the cut.
async fn create(
    endpoint: Endpoint,
    expected: Shared,
    variant: Variant,
    (round, start): (u32, Duration),
    seed: u64,
) -> anyhow::Result<()> {
    let client = endpoint.client().await?;
    let mut rng = Rng::new(seed);
    tokio::time::sleep(start).await;
    for step in 0.. {
        tokio::time::sleep(Duration::from_millis(rng.between(10, 60))).await;
        let name = format!("r{round}-s{step}");
        let Ok(stream) = timed("create stream", client.create_stream(&name)).await else {
            return Ok(());
        };
        let options = topic_options(&variant, 2);
        let Ok(topic) = timed(
            "create topic",
            client.create_topic(&id(stream.id), "t", &options),
        )
        .await
        else {
            return Ok(());
        };
        lock(&expected)
            .topics
            .insert((stream.id, topic.id), (name, 2));
        for churn in 0..variant.metadata_churn {
            let user = format!("u{round}-{step}-{churn}");
            let created = timed(
                "create user",
                client.create_user(&user, "pw-power", UserStatus::Active, None),
            )
            .await;
            if created.is_err() {
                return Ok(());
            }
            lock(&expected).users.insert(user);
            if lock(&expected).tokens.len() >= 60 {
                continue;
            }
            let token = format!("t{round}-{step}-{churn}");
            let created = timed(
                "create token",
                client.create_personal_access_token(&token, PersonalAccessTokenExpiry::NeverExpire),
            )
            .await;
            if created.is_err() {
                return Ok(());
            }
            lock(&expected).tokens.insert(token);
        }
    }
    Ok(())
}

/// A consumer-group member polling with auto-commit until the cut.
async fn poll_group(endpoint: Endpoint, expected: Shared) -> anyhow::Result<()> {
    let client = endpoint.client().await?;
    let ((s, t), group_id) = {
        let expected = lock(&expected);
        (
            main_location(&expected),
            expected.group_id.context("no group")?,
        )
    };
    if timed(
        "join group",
        client.join_consumer_group(&id(s), &id(t), &id(group_id)),
    )
    .await
    .is_err()
    {
        return Ok(());
    }
    let group = Consumer::group(id(group_id));
    loop {
        let Ok(polled) = timed(
            "group poll",
            client.poll_messages(
                &id(s),
                &id(t),
                None,
                &group,
                &PollingStrategy::next(),
                50,
                true,
            ),
        )
        .await
        else {
            return Ok(());
        };
        match polled.messages.last() {
            Some(last) => lock(&expected)
                .auto_commits
                .entry((s, t, polled.partition_id))
                .or_default()
                .push((last.header.offset, Instant::now())),
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// StoreConsumerOffset of acknowledged offsets, ever higher, until the cut.
async fn store_offsets(endpoint: Endpoint, expected: Shared, seed: u64) -> anyhow::Result<()> {
    let client = endpoint.client().await?;
    let mut rng = Rng::new(seed);
    let consumer = Consumer::new(id(EXPLICIT_CONSUMER_ID));
    loop {
        tokio::time::sleep(Duration::from_millis(rng.between(10, 60))).await;
        let p = rng.between(0, MAIN_PARTITIONS as u64 - 1) as u32;
        let (location, offset) = {
            let mut expected = lock(&expected);
            let (s, t) = main_location(&expected);
            let location = (s, t, p);
            let Some(last) = expected
                .messages
                .get(&location)
                .and_then(|m| m.keys().next_back().copied())
            else {
                continue;
            };
            let entry = expected
                .explicit_offsets
                .entry(location)
                .or_insert((None, last));
            entry.1 = entry.1.max(last);
            (location, entry.1)
        };
        let (s, t, p) = location;
        if timed(
            "store offset",
            client.store_consumer_offset(&consumer, &id(s), &id(t), Some(p), offset),
        )
        .await
        .is_err()
        {
            return Ok(());
        }
        let mut expected = lock(&expected);
        let entry = expected
            .explicit_offsets
            .entry(location)
            .or_insert((None, offset));
        entry.0 = Some(entry.0.map_or(offset, |acked| acked.max(offset)));
    }
}

/// A partition's messages as stored, by offset, read with the Offset strategy from 0 (the
/// first message retention left).
async fn read_partition(
    client: &IggyClient,
    (s, t, p): Location,
) -> anyhow::Result<BTreeMap<u64, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut next = 0u64;
    loop {
        let strategy = PollingStrategy::offset(next);
        let polled = timed(
            "read back",
            client.poll_messages(
                &id(s),
                &id(t),
                Some(p),
                &Consumer::default(),
                &strategy,
                READ_CHUNK_MESSAGES,
                false,
            ),
        )
        .await?;
        let Some(last) = polled.messages.last().map(|m| m.header.offset) else {
            return Ok(out);
        };
        for message in polled.messages {
            out.insert(message.header.offset, message.payload.to_vec());
        }
        next = last + 1;
    }
}

/// Whether a message acknowledged at `acked_at` had to survive the last cut.
fn must_survive(expected: &Expected, variant: &Variant, acked_at: Option<Instant>) -> bool {
    match (variant.memory_window, expected.last_cut, acked_at) {
        (Some(window), Some(cut), Some(at)) => at + window + WINDOW_SLACK < cut,
        _ => true,
    }
}

/// Compares one partition with what was acknowledged; in memory mode, forgets the messages the
/// cut was allowed to take (their offsets are handed out again).
fn check_messages(
    expected: &mut Expected,
    variant: &Variant,
    location: Location,
    log: &BTreeMap<u64, Vec<u8>>,
    findings: &mut Vec<String>,
) {
    let first = log.keys().next().copied();
    let retention = variant.max_topic_size_bytes.is_some();
    expected.retention_seen |= first.is_some_and(|first| first > 0);
    if let Some(first) = first {
        let contiguous = log
            .keys()
            .enumerate()
            .all(|(i, offset)| *offset == first + i as u64);
        if !contiguous || (first != 0 && !retention) {
            findings.push(format!(
                "{location:?}: offsets not contiguous from 0 (first {first})"
            ));
        }
    }
    let acked = expected
        .messages
        .get(&location)
        .cloned()
        .unwrap_or_default();
    let mut forgotten = Vec::new();
    for (offset, payload) in &acked {
        if retention && first.is_none_or(|first| *offset < first) {
            continue;
        }
        if log.get(offset) == Some(payload) {
            continue;
        }
        if !must_survive(
            expected,
            variant,
            expected.acked_at.get(&(location, *offset)).copied(),
        ) {
            forgotten.push(*offset);
            continue;
        }
        let what = if log.contains_key(offset) {
            "holds other bytes"
        } else {
            "lost"
        };
        findings.push(format!(
            "{location:?}: acknowledged message at offset {offset} {what}"
        ));
    }
    expected.lost_within_window += forgotten.len();
    if let Some(messages) = expected.messages.get_mut(&location) {
        for offset in forgotten {
            messages.remove(&offset);
        }
    }
}

async fn stored_offset(
    client: &IggyClient,
    consumer: &Consumer,
    (s, t, p): Location,
) -> anyhow::Result<(Option<u64>, u64)> {
    let info = timed(
        "get offset",
        client.get_consumer_offset(consumer, &id(s), &id(t), Some(p)),
    )
    .await?;
    Ok(info.map_or((None, 0), |info| {
        (Some(info.stored_offset), info.current_offset)
    }))
}

/// Explicit stores are at least what was acknowledged (memory mode: clamped into the
/// partition); auto-commits cover every poll answered before the documented window.
async fn check_offsets(
    client: &IggyClient,
    expected: &mut Expected,
    variant: &Variant,
    findings: &mut Vec<String>,
) -> anyhow::Result<()> {
    let explicit = Consumer::new(id(EXPLICIT_CONSUMER_ID));
    for (location, (acked, attempted)) in expected.explicit_offsets.clone() {
        let (stored, current) = stored_offset(client, &explicit, location).await?;
        let low_enough = stored.is_none_or(|s| s <= attempted && s <= current);
        let high_enough =
            variant.memory_window.is_some() || acked.is_none_or(|a| stored.is_some_and(|s| s >= a));
        if !low_enough || !high_enough {
            findings.push(format!("{location:?}: stored offset {stored:?}, acknowledged {acked:?}, attempted {attempted}, partition ends at {current}"));
        }
        expected
            .explicit_offsets
            .insert(location, (stored, attempted.max(stored.unwrap_or(0))));
    }
    let Some(group_id) = expected.group_id else {
        return Ok(());
    };
    let group = Consumer::group(id(group_id));
    let deadline = expected
        .last_cut
        .map(|cut| cut - AUTO_COMMIT_DELAY - WINDOW_SLACK);
    for (location, polls) in std::mem::take(&mut expected.auto_commits) {
        let (stored, current) = stored_offset(client, &group, location).await?;
        let delivered = polls.iter().map(|(offset, _)| *offset).max();
        let committed = polls
            .iter()
            .filter(|(_, at)| deadline.is_some_and(|d| *at < d))
            .map(|(offset, _)| *offset)
            .max();
        let low_enough = stored.is_none_or(|s| delivered.is_some_and(|d| s <= d) && s <= current);
        let high_enough = committed.is_none_or(|c| stored.is_some_and(|s| s >= c));
        if !low_enough || !high_enough {
            findings.push(format!("{location:?}: group offset {stored:?}, committed before the window {committed:?}, delivered up to {delivered:?}, partition ends at {current}"));
        }
    }
    Ok(())
}

/// Everything acknowledged is there after the restart (the messages of the partitions written
/// since the last check, or of every partition with `everything`); returns what is not.
/// Runs while no workload task does (they start after it).
async fn check(
    client: &IggyClient,
    shared: &Shared,
    variant: &Variant,
    everything: bool,
) -> anyhow::Result<Vec<String>> {
    // Out of the lock for the check's awaits; put back below.
    let mut expected = std::mem::take(&mut *lock(shared));
    let findings = check_expected(client, &mut expected, variant, everything).await;
    *lock(shared) = expected;
    findings
}

async fn check_expected(
    client: &IggyClient,
    expected: &mut Expected,
    variant: &Variant,
    everything: bool,
) -> anyhow::Result<Vec<String>> {
    let mut findings = Vec::new();
    for ((s, t), (stream_name, partitions)) in expected.topics.clone() {
        let stream = timed("get stream", client.get_stream(&id(s))).await?;
        let topic = timed("get topic", client.get_topic(&id(s), &id(t))).await?;
        match (stream, topic) {
            (Some(stream), Some(topic)) if stream.name == stream_name && topic.partitions_count >= partitions => {}
            (stream, topic) => findings.push(format!(
                "topic ({s}, {t}) of stream {stream_name} with {partitions} partitions acknowledged, found stream {:?}, topic with {:?} partitions",
                stream.map(|s| s.name),
                topic.map(|t| t.partitions_count)
            )),
        }
    }
    let users: BTreeSet<String> = timed("get users", client.get_users())
        .await?
        .into_iter()
        .map(|u| u.username)
        .collect();
    for user in expected.users.difference(&users) {
        findings.push(format!("user {user} acknowledged, lost"));
    }
    let tokens: BTreeSet<String> = timed("get tokens", client.get_personal_access_tokens())
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    for token in expected.tokens.difference(&tokens) {
        findings.push(format!("token {token} acknowledged, lost"));
    }
    let touched = std::mem::take(&mut expected.touched);
    for location in targets(expected) {
        if everything || touched.contains(&location) {
            let log = read_partition(client, location).await?;
            check_messages(expected, variant, location, &log, &mut findings);
        }
    }
    check_offsets(client, expected, variant, &mut findings).await?;
    Ok(findings)
}

fn policy(round: u32) -> CutPolicy {
    match round % 3 {
        0 => CutPolicy::DropUnsynced,
        1 => CutPolicy::TearLast,
        _ => CutPolicy::Reorder,
    }
}

/// What the rounds of a suite did.
struct Summary {
    findings: Vec<String>,
    messages: usize,
    topics: usize,
    users: usize,
    direct_opens: u64,
    buffered_fallback: bool,
    /// Most segments any partition had at the end (rotation happened).
    segments_max: usize,
    retention_seen: bool,
    lost_within_window: usize,
    /// The metadata log was compacted into a snapshot at least once.
    snapshot_written: bool,
}

/// Segment files of the partition directories under `data`, the most in one partition.
fn segments_max(data: &Path) -> usize {
    let streams = fs::read_dir(data.join("streams"))
        .into_iter()
        .flatten()
        .flatten();
    let partitions = streams.flat_map(|stream| {
        let topics = fs::read_dir(stream.path().join("topics"))
            .into_iter()
            .flatten()
            .flatten();
        topics.flat_map(|topic| {
            fs::read_dir(topic.path().join("partitions"))
                .into_iter()
                .flatten()
                .flatten()
        })
    });
    partitions
        .map(|partition| {
            fs::read_dir(partition.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter(|entry| is_segment_log(&entry.file_name()))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Boots on what the disk holds and checks it; returns the client and the findings.
async fn boot_and_check(
    lab: &mut Lab,
    options: DiskOptions,
    expected: &Shared,
    variant: &Variant,
    everything: bool,
) -> anyhow::Result<(Endpoint, Vec<String>)> {
    let endpoint = lab.boot(options)?;
    let client = endpoint.client().await?;
    let findings = check(&client, expected, variant, everything).await?;
    Ok((endpoint, findings))
}

/// One round after the boot: the workload, then the cut at a seeded moment.
async fn work_then_cut(
    lab: &mut Lab,
    endpoint: Endpoint,
    expected: &Shared,
    variant: &Variant,
    round: u32,
    rng: &mut Rng,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for _ in 0..PRODUCERS {
        tasks.push(tokio::spawn(produce(
            endpoint,
            expected.clone(),
            variant.payload_max_bytes,
            rng.next(),
        )));
    }
    let (low, high) = variant.cut_after_ms;
    let cut_after = Duration::from_millis(rng.between(low, high));
    // Creations right before the cut; with metadata churn, all the round long.
    let create_from = if variant.metadata_churn > 1 {
        Duration::ZERO
    } else {
        cut_after.saturating_sub(Duration::from_millis(rng.between(50, 250)))
    };
    tasks.push(tokio::spawn(create(
        endpoint,
        expected.clone(),
        variant.clone(),
        (round, create_from),
        rng.next(),
    )));
    tasks.push(tokio::spawn(poll_group(endpoint, expected.clone())));
    tasks.push(tokio::spawn(store_offsets(
        endpoint,
        expected.clone(),
        rng.next(),
    )));
    tokio::time::sleep(cut_after).await;
    let cut_at = Instant::now();
    lab.cut()?;
    lock(expected).last_cut = Some(cut_at);
    // Nothing can be acknowledged after the cut, and every task records an acknowledgement in
    // the same step as the reply arrives: the tasks still waiting on a dead server are dropped
    // (a finished one may carry a failed check).
    for task in tasks {
        if task.is_finished() {
            task.await??;
        } else {
            task.abort();
        }
    }
    Ok(())
}

/// Runs `rounds` cuts of `variant` and a last check; stops at the first round with findings.
async fn run(variant: &Variant, rounds: u32, seed: u64) -> anyhow::Result<Summary> {
    println!(
        "{}: seed {seed} ({SEED_VARIABLE}={seed} replays it), {rounds} rounds",
        variant.name
    );
    let mut lab = Lab::new(variant)?;
    let expected: Shared = Arc::default();
    let mut rng = Rng::new(seed);
    let mut findings = Vec::new();
    for round in 0..=rounds {
        let options = DiskOptions {
            cut: policy(round),
            seed: rng.next(),
            fsync_ignored: variant
                .lying_log_fsync
                .then_some(is_segment_log as fn(&std::ffi::OsStr) -> bool),
            ..DiskOptions::default()
        };
        let started = Instant::now();
        let last = round == rounds;
        let (endpoint, round_findings) =
            boot_and_check(&mut lab, options, &expected, variant, last)
                .await
                .with_context(|| format!("boot before round {round}"))?;
        let checked = started.elapsed();
        if !round_findings.is_empty() {
            findings = round_findings
                .into_iter()
                .map(|f| format!("after cut {round}: {f}"))
                .collect();
            break;
        }
        if round == rounds {
            break;
        }
        if round == 0 {
            create_main_topic(&endpoint.client().await?, variant, &expected).await?;
        }
        let acked_before = lock(&expected).acked_at.len();
        let started = Instant::now();
        work_then_cut(&mut lab, endpoint, &expected, variant, round, &mut rng)
            .await
            .with_context(|| format!("round {round}"))?;
        println!(
            "  round {round}: boot and check {:.2} s; {} messages acknowledged, then a cut ({:?}), in {:.2} s",
            checked.as_secs_f64(),
            lock(&expected).acked_at.len() - acked_before,
            policy(round),
            started.elapsed().as_secs_f64()
        );
    }
    lab.stop()?;
    let summary = summarize(&lab, &lock(&expected), findings);
    lab.passed = true;
    Ok(summary)
}

/// What a suite's rounds did, from the expectations and the disk it left.
fn summarize(lab: &Lab, expected: &Expected, findings: Vec<String>) -> Summary {
    let log = lab.log();
    Summary {
        findings,
        messages: expected.messages.values().map(BTreeMap::len).sum(),
        topics: expected.topics.len(),
        users: expected.users.len(),
        direct_opens: lab.direct_opens,
        buffered_fallback: log.contains("refused O_DIRECT"),
        segments_max: segments_max(&lab.backing.path().join("data")),
        retention_seen: expected.retention_seen,
        lost_within_window: expected.lost_within_window,
        snapshot_written: lab
            .backing
            .path()
            .join("data/metadata/catalog.snapshot")
            .exists(),
    }
}

/// Runs a suite that must find nothing lost, and prints what it covered.
async fn expect_no_loss(variant: Variant, rounds: u32, default_seed: u64) -> Option<Summary> {
    if !require_fuse(variant.name) {
        return None;
    }
    let started = Instant::now();
    let summary = bounded(
        Duration::from_secs(600),
        run(&variant, rounds, seed(default_seed)),
    )
    .await
    .expect("power-loss rounds");
    assert!(
        summary.findings.is_empty(),
        "{}: {:#?}",
        variant.name,
        summary.findings
    );
    assert!(
        summary.direct_opens > 0 && !summary.buffered_fallback,
        "the appliance did not take the O_DIRECT path on the lossy disk"
    );
    println!(
        "{}: {rounds} power cuts, {} acknowledged messages in {} topics, {} users, all recovered; up to {} segments per partition, retention seen: {}, metadata snapshot: {}; {} O_DIRECT opens, no buffered fallback ({:.1} s)",
        variant.name,
        summary.messages,
        summary.topics,
        summary.users,
        summary.segments_max,
        summary.retention_seen,
        summary.snapshot_written,
        summary.direct_opens,
        started.elapsed().as_secs_f64()
    );
    Some(summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_data_survives_twenty_power_cuts() {
    expect_no_loss(Variant::new("appliance power cuts"), 20, 0x1414_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_during_segment_rotation() {
    let mut variant = Variant::new("power cuts during segment rotation");
    variant.segment_size_bytes = Some(SMALL_SEGMENT_BYTES);
    variant.payload_max_bytes = LARGE_PAYLOAD_MAX_BYTES;
    if let Some(summary) = expect_no_loss(variant, 8, 0x1414_0002).await {
        assert!(summary.segments_max >= 3, "segments did not rotate");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_during_retention() {
    let mut variant = Variant::new("power cuts during retention");
    variant.segment_size_bytes = Some(SMALL_SEGMENT_BYTES);
    variant.payload_max_bytes = LARGE_PAYLOAD_MAX_BYTES;
    // Two segments per partition of the main topic: the cleaner deletes all the time.
    variant.max_topic_size_bytes = Some(2 * MAIN_PARTITIONS as u64 * SMALL_SEGMENT_BYTES);
    variant
        .env
        .push(("RIPTIDE_RETENTION_CLEANER_INTERVAL_MS", "20".to_string()));
    if let Some(summary) = expect_no_loss(variant, 8, 0x1414_0003).await {
        assert!(summary.retention_seen, "retention never deleted a segment");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_during_metadata_compaction() {
    let mut variant = Variant::new("power cuts during metadata compaction");
    // The smallest threshold: the log is compacted into a snapshot every few changes, and the
    // round makes changes from its start to the cut.
    variant.env.push((
        "RIPTIDE_STORAGE_METADATA_LOG_COMPACTION_BYTES",
        "1024".to_string(),
    ));
    variant.metadata_churn = 3;
    if let Some(summary) = expect_no_loss(variant, 5, 0x1414_0004).await {
        assert!(
            summary.snapshot_written,
            "the metadata log was never compacted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_acknowledgements_survive_outside_the_sync_window() {
    let mut variant = Variant::new("memory acknowledgements under power cuts");
    let interval = Duration::from_millis(100);
    variant.memory_window = Some(interval);
    variant
        .env
        .push(("RIPTIDE_STORAGE_ACK_FLOOR", "memory".to_string()));
    variant.env.push((
        "RIPTIDE_STORAGE_MEMORY_SYNC_INTERVAL_MS",
        interval.as_millis().to_string(),
    ));
    variant.cut_after_ms = (600, 1200);
    if let Some(summary) = expect_no_loss(variant, 4, 0x1414_0005).await {
        println!(
            "memory mode: {} messages acknowledged within the sync window before a cut were lost (allowed)",
            summary.lost_within_window
        );
    }
}

/// The mutation check: the disk ignores the segment logs' fdatasync (what riptide built without
/// it would leave on disk); the suite must report acknowledged messages lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_log_fdatasync_is_reported_as_lost_messages() {
    if !require_fuse("a_missing_log_fdatasync_is_reported_as_lost_messages") {
        return;
    }
    let mut variant = Variant::new("mutation: segment-log fdatasync ignored");
    variant.lying_log_fsync = true;
    let summary = bounded(
        Duration::from_secs(300),
        run(&variant, 2, seed(0x1414_0006)),
    )
    .await
    .expect("rounds run");
    let lost = summary
        .findings
        .iter()
        .filter(|f| f.contains("lost"))
        .count();
    println!(
        "{}: {lost} findings of lost messages, e.g. {:?}",
        variant.name,
        summary.findings.first()
    );
    assert!(
        lost > 0,
        "the suite did not notice a missing fdatasync: {:#?}",
        summary.findings
    );
}

/// Stream 0's only partition, as the appliance lays it out.
const FIRST_PARTITION_DIR: &str = "data/streams/0/topics/0/partitions/0";

/// A stream deleted just before a power cut: the deletion is durable in the metadata, the
/// removal of its directories is not (from the DeleteStream on the disk ignores directory
/// syncs, as if the cut fell right after the metadata's fdatasync). A stream created after the
/// restart gets the same id (the lowest free) and must start empty, not with the deleted
/// stream's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_before_a_cut_does_not_come_back_under_its_id() {
    if !require_fuse("a_stream_deleted_before_a_cut_does_not_come_back_under_its_id") {
        return;
    }
    let variant = Variant::new("deleted stream under a power cut");
    let mut lab = Lab::new(&variant).expect("lab");
    bounded(
        Duration::from_secs(120),
        deleted_stream_stays_deleted(&mut lab),
    )
    .await
    .expect("the deleted stream's messages stay deleted");
    lab.passed = true;
}

async fn deleted_stream_stays_deleted(lab: &mut Lab) -> anyhow::Result<()> {
    let endpoint = lab.boot(DiskOptions::default())?;
    let client = endpoint.client().await?;
    let old = create_stream_with_one_partition(&client, "doomed").await?;
    let mut messages = common::messages("old", 5);
    timed(
        "send old messages",
        client.send_messages(
            &id(old),
            &id(0),
            &Partitioning::partition_id(0),
            &mut messages,
        ),
    )
    .await?;
    lab.disk
        .as_ref()
        .context("mounted")?
        .set_dir_syncs_ignored(true);
    timed("delete the stream", client.delete_stream(&id(old))).await?;
    drop(client);
    lab.cut()?;
    // The cut left the deleted partition's directory and its messages behind: the case at hand.
    let orphan = lab.backing.path().join(FIRST_PARTITION_DIR);
    let log_bytes: u64 = fs::read_dir(&orphan)
        .with_context(|| format!("{} survived the cut", orphan.display()))?
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .filter(|metadata| metadata.is_file())
        .map(|metadata| metadata.len())
        .sum();
    ensure!(log_bytes > 0, "the deleted partition's segment is empty");

    let endpoint = lab.boot(DiskOptions::default())?;
    // Checked last: what matters first is what a client sees.
    let kept_directory = lab.data_dir().join("streams/0").exists();
    let client = endpoint.client().await?;
    let streams = timed("get streams", client.get_streams()).await?;
    ensure!(streams.is_empty(), "streams after the cut: {streams:?}");
    let new = create_stream_with_one_partition(&client, "fresh").await?;
    ensure!(
        new == old,
        "the new stream got id {new}, not the freed {old}"
    );
    let polled = read_partition(&client, (new, 0, 0)).await?;
    ensure!(
        polled.is_empty(),
        "the new stream holds the deleted one's messages: {:?}",
        polled
            .values()
            .map(|p| String::from_utf8_lossy(p))
            .collect::<Vec<_>>()
    );
    let mut messages = common::messages("new", 1);
    timed(
        "send a new message",
        client.send_messages(
            &id(new),
            &id(0),
            &Partitioning::partition_id(0),
            &mut messages,
        ),
    )
    .await?;
    let polled = read_partition(&client, (new, 0, 0)).await?;
    ensure!(
        polled.into_iter().collect::<Vec<_>>() == [(0, b"new-0".to_vec())],
        "the new stream does not hold exactly its own message"
    );
    ensure!(
        !kept_directory,
        "start-up kept the directory of the deleted stream"
    );
    ensure!(
        lab.log()
            .contains("removed a stream, topic or partition directory"),
        "start-up did not report the directory it removed"
    );
    drop(client);
    lab.stop()
}

/// Creates a stream named `name` with one topic of one partition; returns the stream's id.
async fn create_stream_with_one_partition(client: &IggyClient, name: &str) -> anyhow::Result<u32> {
    let stream = timed("create stream", client.create_stream(name)).await?;
    let options = TopicCreateOptions {
        partitions_count: Some(1),
        durability: Durability::Persisted,
        ..Default::default()
    };
    timed(
        "create topic",
        client.create_topic(&id(stream.id), "events", &options),
    )
    .await?;
    Ok(stream.id)
}
