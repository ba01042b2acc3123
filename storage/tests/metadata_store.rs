//! Integration tests of the metadata store on real files: restart, torn tails at every byte,
//! compaction, and a child process SIGKILLed while it applies changes.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::RwLock;

use riptide_storage::metadata::{
    hash_password, hash_token, verify_password, Catalog, Change, CompressionAlgorithm, Durability,
    ExplicitOptions, MetadataStore, Partition, Permissions, StoreConfig, StreamPermissions,
    TopicOptionKey, TopicOptions, TopicOptionsUpdate, TopicPermissions, UserStatus, LOG_FILE_NAME,
    SNAPSHOT_FILE_NAME,
};

/// The store's directory lock (flock) is shared with a forked child until the child execs, so
/// a test that reopens a store at the moment the crash test spawns its child would find its
/// own directory locked. Tests that reopen stores hold this for reading; the crash test holds
/// it for writing while it spawns.
static FORK_GUARD: RwLock<()> = RwLock::new(());

fn no_fork_while_reopening() -> std::sync::RwLockReadGuard<'static, ()> {
    FORK_GUARD
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fixed argon2id hash, so that a parent and a child process generate the same workload.
const FIXED_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$fixedfixedfixed";

/// Small deterministic generator (xorshift64*), so a workload is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.below(items.len())])
    }
}

/// A valid sequence of `count` changes of every kind, starting with the root user.
fn workload(seed: u64, count: usize, root_password_hash: &str) -> Vec<Change> {
    let mut rng = Rng(seed | 1);
    let mut model = Catalog::new();
    let mut changes = Vec::with_capacity(count);
    let root = Change::CreateUser {
        user_id: 0,
        username: "iggy".into(),
        password_hash: root_password_hash.into(),
        status: UserStatus::Active,
        permissions: Some(Permissions::root()),
        created_at_us: 1,
    };
    model.apply(&root).expect("root user");
    changes.push(root);
    while changes.len() < count {
        let step = changes.len() as u64;
        let candidate = propose(&mut rng, &model, step);
        let change = match candidate {
            Some(change) if model.validate(&change).is_ok() => change,
            _ => create_stream(&model, step),
        };
        model.apply(&change).expect("generated change applies");
        changes.push(change);
    }
    changes
}

fn create_stream(model: &Catalog, step: u64) -> Change {
    Change::CreateStream {
        stream_id: model.next_stream_id().expect("stream id"),
        name: format!("stream-{step}"),
        created_at_us: 1_000_000 + step,
    }
}

fn topic_options(rng: &mut Rng) -> TopicOptions {
    let mut options = TopicOptions::default();
    if rng.below(2) == 0 {
        options.message_expiry_us = 1_000 * (rng.next() % 1_000_000_000);
        options.explicit = options.explicit.with(TopicOptionKey::MessageExpiry);
    }
    if rng.below(2) == 0 {
        options.durability = Durability::Persisted;
        options.consumer_offset_durability = Durability::Persisted;
        options.explicit = ExplicitOptions::NONE
            .with(TopicOptionKey::Durability)
            .with(TopicOptionKey::ConsumerOffsetDurability);
    }
    options.segment_size_bytes = (1 + rng.below(64) as u64) << 20;
    options
}

fn permissions(rng: &mut Rng) -> Option<Permissions> {
    if rng.below(3) == 0 {
        return None;
    }
    let mut permissions = Permissions::default();
    permissions.global.read_streams = rng.below(2) == 0;
    let mut stream = StreamPermissions {
        poll_messages: true,
        ..StreamPermissions::default()
    };
    let topic = TopicPermissions {
        send_messages: true,
        ..TopicPermissions::default()
    };
    stream.topics.insert(rng.below(5) as u32, topic);
    permissions.streams.insert(rng.below(5) as u32, stream);
    Some(permissions)
}

fn partitions(first: u32, count: u32, step: u64) -> Vec<Partition> {
    (first..first + count)
        .map(|id| Partition {
            id,
            created_at_us: 2_000_000 + step,
        })
        .collect()
}

/// A random change that is usually valid against `model` (the caller falls back otherwise).
fn propose(rng: &mut Rng, model: &Catalog, step: u64) -> Option<Change> {
    let streams: Vec<u32> = model.streams().keys().copied().collect();
    let stream_id = rng.pick(&streams);
    let topics: Vec<u32> = stream_id
        .and_then(|id| model.stream(id))
        .map(|s| s.topics.keys().copied().collect())
        .unwrap_or_default();
    let topic_id = rng.pick(&topics);
    let users: Vec<u32> = model.users().keys().copied().collect();
    let user_id = rng.pick(&users)?;
    let kind = rng.below(17);
    if kind < 10 {
        propose_stream_side(rng, model, step, kind, stream_id?, topic_id)
    } else {
        propose_user_side(rng, model, step, kind, user_id)
    }
}

fn propose_stream_side(
    rng: &mut Rng,
    model: &Catalog,
    step: u64,
    kind: usize,
    stream_id: u32,
    topic_id: Option<u32>,
) -> Option<Change> {
    let topic_count = topic_id
        .and_then(|t| model.topic(stream_id, t))
        .map_or(0, |t| t.partitions.len() as u32);
    let change = match kind {
        0 => create_stream(model, step),
        1 => Change::UpdateStream {
            stream_id,
            name: format!("renamed-{step}"),
        },
        2 if model.streams().len() > 3 => Change::DeleteStream { stream_id },
        3 => Change::CreateTopic {
            stream_id,
            topic_id: model.next_topic_id(stream_id).ok()?,
            name: format!("topic-{step}"),
            created_at_us: 3_000_000 + step,
            partitions: partitions(0, 1 + rng.below(4) as u32, step),
            options: topic_options(rng),
        },
        4 => Change::UpdateTopic {
            stream_id,
            topic_id: topic_id?,
            name: format!("topic-renamed-{step}"),
            options: TopicOptionsUpdate {
                compression: Some(CompressionAlgorithm::Gzip),
                message_expiry_us: None,
                max_topic_size_bytes: Some(1 << 30),
            },
        },
        5 if rng.below(3) == 0 => Change::DeleteTopic {
            stream_id,
            topic_id: topic_id?,
        },
        6 => Change::CreatePartitions {
            stream_id,
            topic_id: topic_id?,
            partitions: partitions(topic_count, 1 + rng.below(3) as u32, step),
        },
        7 => Change::DeletePartitions {
            stream_id,
            topic_id: topic_id?,
            count: 1,
        },
        8 => Change::CreateConsumerGroup {
            stream_id,
            topic_id: topic_id?,
            group_id: model.next_consumer_group_id(stream_id, topic_id?).ok()?,
            name: format!("group-{step}"),
        },
        9 => delete_some_group(model)?,
        _ => return None,
    };
    Some(change)
}

/// Groups are sparse: deletes the first group of any topic.
fn delete_some_group(model: &Catalog) -> Option<Change> {
    let (stream_id, topic_id, group_id) = model.streams().values().find_map(|s| {
        s.topics.values().find_map(|t| {
            let group_id = t.consumer_groups.keys().next()?;
            Some((s.id, t.id, *group_id))
        })
    })?;
    Some(Change::DeleteConsumerGroup {
        stream_id,
        topic_id,
        group_id,
    })
}

fn propose_user_side(
    rng: &mut Rng,
    model: &Catalog,
    step: u64,
    kind: usize,
    user_id: u32,
) -> Option<Change> {
    let change = match kind {
        10 => Change::CreateUser {
            user_id: model.next_user_id().ok()?,
            username: format!("user-{step}"),
            password_hash: FIXED_PASSWORD_HASH.into(),
            status: UserStatus::Active,
            permissions: permissions(rng),
            created_at_us: 4_000_000 + step,
        },
        11 => Change::UpdateUser {
            user_id,
            username: (user_id != 0).then(|| format!("user-renamed-{step}")),
            status: Some(UserStatus::Inactive),
        },
        12 if user_id != 0 && rng.below(2) == 0 => Change::DeleteUser { user_id },
        // The root keeps its real hash, which the restart test verifies.
        13 if user_id != 0 => Change::ChangePassword {
            user_id,
            password_hash: format!("{FIXED_PASSWORD_HASH}{step}"),
        },
        14 => Change::UpdatePermissions {
            user_id,
            permissions: permissions(rng),
        },
        15 => Change::CreatePersonalAccessToken {
            user_id,
            name: format!("pat-{step}"),
            token_hash: hash_token(&format!("token-{step}")),
            expiry_at_us: (rng.below(2) == 0).then_some(5_000_000 + step),
        },
        16 => {
            let user = model.user(user_id)?;
            let names: Vec<&String> = user.tokens.keys().collect();
            Change::DeletePersonalAccessToken {
                user_id,
                name: rng.pick(&names)?.clone(),
            }
        }
        _ => return None,
    };
    Some(change)
}

fn catalog_after(changes: &[Change]) -> Catalog {
    let mut catalog = Catalog::new();
    for change in changes {
        catalog.apply(change).expect("workload applies");
    }
    catalog
}

fn variant_name(change: &Change) -> String {
    // Debug output starts with the variant name.
    let debug = format!("{change:?}");
    debug
        .split([' ', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn restart_reproduces_the_catalog_after_every_kind_of_change() {
    let _guard = no_fork_while_reopening();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root_hash = hash_password("iggy-secret").expect("hash");
    let changes = workload(11, 600, &root_hash);
    let mut kinds: Vec<String> = changes.iter().map(variant_name).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(
        kinds.len(),
        17,
        "workload covers every change kind: {kinds:?}"
    );

    let (mut store, _) = MetadataStore::open(tmp.path()).expect("open");
    for (i, change) in changes.iter().enumerate() {
        store.apply(change).expect("apply");
        if i == changes.len() / 2 {
            drop(store);
            let (reopened, catalog) = MetadataStore::open(tmp.path()).expect("reopen halfway");
            assert_eq!(catalog, catalog_after(&changes[..=i]));
            store = reopened;
        }
    }
    let expected = catalog_after(&changes);
    assert_eq!(*store.catalog(), expected);
    drop(store);
    let (_, catalog) = MetadataStore::open(tmp.path()).expect("reopen");
    assert_eq!(catalog, expected);
    let root = catalog.user_by_username("iggy").expect("root survives");
    assert!(verify_password("iggy-secret", &root.password_hash));
    assert!(!verify_password("wrong", &root.password_hash));
}

/// Applies `changes` and returns the log size before and after the last one.
fn apply_all(dir: &Path, changes: &[Change], config: StoreConfig) -> (u64, u64) {
    let (mut store, _) = MetadataStore::open_with(dir, config).expect("open");
    let mut before_last = 0;
    for change in changes {
        before_last = store.log_size_bytes();
        store.apply(change).expect("apply");
    }
    (before_last, store.log_size_bytes())
}

/// Cuts and garbles the log at every byte of its last record; each reopen must give exactly
/// the catalog before that record, and the store must accept the record again afterwards.
fn check_every_byte_of_last_record(dir: &Path, changes: &[Change], config: StoreConfig) {
    let (record_start, record_end) = apply_all(dir, changes, config);
    let log_path = dir.join(LOG_FILE_NAME);
    let full_log = fs::read(&log_path).expect("read log");
    assert_eq!(full_log.len() as u64, record_end);
    let (prefix, last) = changes.split_at(changes.len() - 1);
    let acknowledged = catalog_after(prefix);
    for position in record_start..record_end {
        let position = position as usize;
        let mut garbled = full_log.clone();
        garbled[position] ^= 0xA5;
        for (what, bytes) in [("cut", &full_log[..position]), ("garble", &garbled[..])] {
            fs::write(&log_path, bytes).expect("write log");
            let (mut store, catalog) =
                MetadataStore::open_with(dir, config).expect("reopen after damage");
            assert_eq!(catalog, acknowledged, "{what} at byte {position}");
            assert_eq!(fs::metadata(&log_path).expect("stat").len(), record_start);
            if position.is_multiple_of(16) {
                store.apply(&last[0]).expect("re-apply the lost change");
                drop(store);
                let (_, again) = MetadataStore::open_with(dir, config).expect("reopen");
                assert_eq!(again, catalog_after(changes), "{what} at byte {position}");
            }
        }
    }
}

#[test]
fn torn_or_garbled_last_record_leaves_exactly_the_acknowledged_prefix() {
    let _guard = no_fork_while_reopening();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut changes = workload(23, 40, FIXED_PASSWORD_HASH);
    // End on a large record: a user with stream and topic permissions.
    let mut model = catalog_after(&changes);
    let mut rng = Rng(99);
    let last = Change::CreateUser {
        user_id: model.next_user_id().expect("id"),
        username: "last-user".into(),
        password_hash: FIXED_PASSWORD_HASH.into(),
        status: UserStatus::Inactive,
        permissions: permissions(&mut rng).or_else(|| Some(Permissions::root())),
        created_at_us: 9,
    };
    model.apply(&last).expect("valid");
    changes.push(last);
    check_every_byte_of_last_record(tmp.path(), &changes, StoreConfig::default());
}

#[test]
fn restart_after_compaction_and_more_records() {
    let _guard = no_fork_while_reopening();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        log_compaction_threshold_bytes: 2048,
    };
    let changes = workload(37, 500, FIXED_PASSWORD_HASH);
    let (mut store, _) = MetadataStore::open_with(tmp.path(), config).expect("open");
    let mut compactions = 0;
    for (i, change) in changes.iter().enumerate() {
        let size_before = store.log_size_bytes();
        store.apply(change).expect("apply");
        if store.log_size_bytes() < size_before {
            compactions += 1;
        }
        if i % 97 == 0 {
            drop(store);
            let (reopened, catalog) = MetadataStore::open_with(tmp.path(), config).expect("reopen");
            assert_eq!(catalog, catalog_after(&changes[..=i]), "after change {i}");
            store = reopened;
        }
    }
    assert!(compactions >= 5, "only {compactions} compactions");
    assert!(tmp.path().join(SNAPSHOT_FILE_NAME).exists());
    drop(store);
    let (_, catalog) = MetadataStore::open_with(tmp.path(), config).expect("reopen");
    assert_eq!(catalog, catalog_after(&changes));
}

#[test]
fn torn_last_record_after_a_snapshot_leaves_the_acknowledged_prefix() {
    let _guard = no_fork_while_reopening();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        log_compaction_threshold_bytes: 1024,
    };
    let changes = workload(41, 120, FIXED_PASSWORD_HASH);
    check_every_byte_of_last_record(tmp.path(), &changes, config);
    assert!(tmp.path().join(SNAPSHOT_FILE_NAME).exists());
}

/// Record boundaries of a log written from `changes`: `ends[k]` is the log size once k
/// changes are on disk.
fn record_ends(dir: &Path, changes: &[Change]) -> Vec<u64> {
    let (mut store, _) = MetadataStore::open(dir).expect("open");
    let mut ends = vec![store.log_size_bytes()];
    for change in changes {
        store.apply(change).expect("apply");
        ends.push(store.log_size_bytes());
    }
    ends
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Cutting the log anywhere (not only in its last record) keeps exactly the records that
    /// lie wholly before the cut.
    #[test]
    fn cut_anywhere_keeps_the_whole_records_before_it(
        seed in 1u64..u64::MAX,
        count in 2usize..80,
        cut_fraction in 0.0f64..1.0,
    ) {
        let _guard = no_fork_while_reopening();
        let tmp = tempfile::tempdir().expect("tempdir");
        let changes = workload(seed, count, FIXED_PASSWORD_HASH);
        let ends = record_ends(tmp.path(), &changes);
        let header_bytes = ends[0];
        let total_bytes = *ends.last().expect("ends");
        let cut = header_bytes + ((total_bytes - header_bytes) as f64 * cut_fraction) as u64;
        let log_path = tmp.path().join(LOG_FILE_NAME);
        let log = fs::read(&log_path).expect("read log");
        fs::write(&log_path, &log[..cut as usize]).expect("cut log");
        let whole = ends.iter().rposition(|end| *end <= cut).expect("header survives");
        let (_, catalog) = MetadataStore::open(tmp.path()).expect("reopen");
        proptest::prop_assert_eq!(catalog, catalog_after(&changes[..whole]));
        proptest::prop_assert_eq!(fs::metadata(&log_path).expect("stat").len(), ends[whole]);
    }
}

// ----- crash test --------------------------------------------------------------------------

const CRASH_CHILD_DIR_ENV: &str = "RIPTIDE_METADATA_CRASH_CHILD_DIR";
const CRASH_CHILD_START_ENV: &str = "RIPTIDE_METADATA_CRASH_CHILD_START";
const CRASH_TEST_NAME: &str = "sigkill_while_applying_loses_no_acknowledged_change";
const CRASH_WORKLOAD_SEED: u64 = 53;
const CRASH_WORKLOAD_COUNT: usize = 3_000;
const CRASH_ROUNDS: usize = 6;
const CRASH_CONFIG: StoreConfig = StoreConfig {
    log_compaction_threshold_bytes: 4096,
};

/// Child side: applies the workload from `start`, printing `ack N` once change N-1 is
/// durable, until it is killed.
fn crash_child(dir: &str, start: usize) {
    use std::io::Write;
    let changes = workload(
        CRASH_WORKLOAD_SEED,
        CRASH_WORKLOAD_COUNT,
        FIXED_PASSWORD_HASH,
    );
    let (mut store, _) = MetadataStore::open_with(Path::new(dir), CRASH_CONFIG).expect("open");
    let mut stdout = std::io::stdout();
    for (i, change) in changes.iter().enumerate().skip(start) {
        store.apply(change).expect("apply");
        writeln!(stdout, "ack {}", i + 1).expect("stdout");
        stdout.flush().expect("flush");
    }
}

/// Runs one child from `start` and kills it after `kill_after` acknowledgements; returns the
/// number of changes acknowledged in total.
fn run_and_kill_child(dir: &Path, start: usize, kill_after: usize) -> usize {
    let spawn_guard = FORK_GUARD
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            CRASH_TEST_NAME,
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DIR_ENV, dir)
        .env(CRASH_CHILD_START_ENV, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    // `spawn` returns once the child has exec'd, so it holds no inherited descriptor now.
    drop(spawn_guard);
    let stdout = child.stdout.take().expect("child stdout");
    let mut acknowledged = start;
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        if let Some(n) = line.strip_prefix("ack ") {
            acknowledged = n.trim().parse().expect("ack number");
        }
        if !killed && acknowledged >= start + kill_after {
            child.kill().expect("SIGKILL child");
            killed = true;
        }
    }
    // Lines read after the kill were printed before it: they count as acknowledged too.
    child.wait().expect("reap child");
    assert!(
        killed,
        "child finished before the kill; raise CRASH_WORKLOAD_COUNT"
    );
    acknowledged
}

#[test]
fn sigkill_while_applying_loses_no_acknowledged_change() {
    if let Ok(dir) = std::env::var(CRASH_CHILD_DIR_ENV) {
        let start = std::env::var(CRASH_CHILD_START_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        crash_child(&dir, start);
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let changes = workload(
        CRASH_WORKLOAD_SEED,
        CRASH_WORKLOAD_COUNT,
        FIXED_PASSWORD_HASH,
    );
    let mut rng = Rng(0xC0FFEE);
    let mut model = Catalog::new();
    let mut applied = 0;
    for round in 0..CRASH_ROUNDS {
        let kill_after = 20 + rng.below(120);
        let acknowledged = run_and_kill_child(tmp.path(), applied, kill_after);
        let (_, catalog) = MetadataStore::open_with(tmp.path(), CRASH_CONFIG).expect("reopen");
        while applied < acknowledged {
            model.apply(&changes[applied]).expect("model");
            applied += 1;
        }
        if catalog != model {
            // The change in flight at the kill may have reached the disk before its ack.
            model.apply(&changes[applied]).expect("model");
            applied += 1;
            assert_eq!(catalog, model, "round {round}: acknowledged {acknowledged}");
        }
        eprintln!("round {round}: {acknowledged} acknowledged, {applied} on disk");
    }
}
