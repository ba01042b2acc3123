//! SIGKILL the writer at random moments, many times: every batch it reported as acknowledged
//! must be readable afterwards, byte for byte, at the offset it was given.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use riptide_storage::testkit::{tagged_batch, unstamped, XorShift};
use riptide_storage::*;

const ROUNDS: u64 = 20;

/// Runs one writer until a random moment, kills it, and returns its acknowledgements.
fn run_and_kill(dir: &std::path::Path, first_tag: u64, kill_after: Duration) -> Vec<(u64, u64)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage-crash-writer"))
        .arg(dir)
        .arg(first_tag.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the crash writer");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut ready = String::new();
    stdout.read_line(&mut ready).expect("writer starts");
    assert_eq!(ready.trim(), "ready", "writer failed to open the partition");
    std::thread::sleep(kill_after);
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("reap the writer");
    let mut rest = String::new();
    stdout
        .read_to_string(&mut rest)
        .expect("read the acknowledgements");
    // Only complete lines count: a line cut by the kill was never fully reported.
    let complete = rest.rfind('\n').map_or("", |end| &rest[..end]);
    complete
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next() == Some("ack")).then_some(())?;
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect()
}

fn check_all_acknowledged(dir: &std::path::Path, acked: &BTreeMap<u64, u64>) {
    let mut shard = common::shard(StorageConfig {
        segment_size_bytes: 256 * 1024,
        ..small_config()
    });
    shard
        .open_partition(KEY, dir, PartitionSettings::default())
        .unwrap();
    for (offset, tag) in acked {
        let got = read(&mut shard, KEY, ReadStart::Offset(*offset), 1).unwrap();
        let stored = records(&got.to_vec());
        assert_eq!(
            stored.len(),
            1,
            "acknowledged offset {offset} (tag {tag}) is missing"
        );
        let header = riptide_storage::segment::record_header(&stored[0]).unwrap();
        assert_eq!(header.base_offset, *offset);
        // A poll of one message slices the record; compare the whole record instead.
        let whole = read(&mut shard, KEY, ReadStart::Offset(*offset), u32::MAX).unwrap();
        let first = records(&whole.to_vec()).remove(0);
        assert_eq!(
            unstamped(&first),
            unstamped(&tagged_batch(*tag, 20, 3000)),
            "offset {offset} differs"
        );
    }
}

#[test]
fn every_acknowledged_batch_survives_sigkill() {
    let root = tempfile::tempdir().unwrap();
    let dir = partition_dir(root.path());
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut rng = XorShift::new(0xC0FFEE);
    let mut tag = 0u64;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(rng.between(30, 250));
        let acks = run_and_kill(&dir, tag, kill_after);
        for (offset, batch_tag) in &acks {
            // An offset may be reused only by a batch that was never acknowledged before.
            assert!(
                acked.insert(*offset, *batch_tag).is_none(),
                "round {round}: offset {offset} acknowledged twice"
            );
        }
        tag += 1_000_000;
        eprintln!(
            "round {round}: killed after {kill_after:?}, {} acknowledged",
            acks.len()
        );
    }
    assert!(
        acked.len() > 20,
        "the writer acknowledged too little to test anything"
    );
    check_all_acknowledged(&dir, &acked);
    eprintln!(
        "{} acknowledged batches verified in {:?}",
        acked.len(),
        started.elapsed()
    );
}
