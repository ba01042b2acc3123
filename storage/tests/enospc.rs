//! Disk full on a real, small, loop-mounted ext4: the failing appends get `NoSpace`, nothing
//! acknowledged is lost, the log stays consistent, appends work again once space is freed, and
//! a partition on another filesystem is unaffected.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use riptide_storage::*;

/// A loop-mounted ext4 image, unmounted and removed on drop.
struct LoopFs {
    image: PathBuf,
    mount: PathBuf,
    _holder: tempfile::TempDir,
}

impl LoopFs {
    fn new(size: &str) -> Result<LoopFs, String> {
        let holder = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = holder.path().join("fs.img");
        let mount = holder.path().join("mnt");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        run("truncate", &["-s", size, path_str(&image)])?;
        run("mkfs.ext4", &["-q", "-F", "-m", "0", path_str(&image)])?;
        run("mount", &["-o", "loop", path_str(&image), path_str(&mount)])?;
        Ok(LoopFs {
            image,
            mount,
            _holder: holder,
        })
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = run("umount", &[path_str(&self.mount)]);
        let _ = std::fs::remove_file(&self.image);
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("{program}: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("{program} {args:?} failed: {status}"))
}

fn loop_fs_or_skip() -> Option<LoopFs> {
    match LoopFs::new("12M") {
        Ok(fs) => Some(fs),
        Err(reason) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but no loop-mounted ext4: {reason}"
            );
            eprintln!(
                "skipped: cannot loop-mount ext4 here ({reason}); run as root with mkfs.ext4"
            );
            None
        }
    }
}

/// Appends until the disk is full; returns the acknowledged batches and the first error.
fn fill(shard: &mut Shard, key: PartitionKey) -> (Vec<Vec<u8>>, AppendError) {
    let mut acked = Vec::new();
    for i in 0..10_000u64 {
        let b = batch(i, 4, 4000);
        match append_durable(shard, key, b.clone(), i) {
            Ok(_) => acked.push(b),
            Err(error) => return (acked, error),
        }
    }
    panic!("a 12 MiB filesystem never filled up");
}

/// Like `fill`, but keeps up to 16 appends outstanding, so writes are submitted while earlier
/// ones still wait for their fdatasync.
fn fill_pipelined(shard: &mut Shard, key: PartitionKey) -> (Vec<Vec<u8>>, AppendError) {
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut results: Vec<Option<Result<(), AppendError>>> = Vec::new();
    let mut completions = Vec::new();
    let mut failed = false;
    loop {
        let outstanding = results.iter().filter(|r| r.is_none()).count();
        if !failed && outstanding < 16 && sent.len() < 10_000 {
            let b = batch(sent.len() as u64, 4, 4000);
            if shard.has_room(key, b.len()) {
                shard
                    .append(
                        key,
                        b.clone(),
                        AckMode::Durable,
                        sent.len() as u64,
                        now_us(),
                    )
                    .unwrap();
                sent.push(b);
                results.push(None);
                continue;
            }
        }
        if outstanding == 0 {
            break;
        }
        shard.wait(std::time::Duration::from_millis(100));
        shard.take_completions(&mut completions);
        for completion in completions.drain(..) {
            let CompletionResult::Append(result) = completion.result else {
                panic!("unexpected completion {completion:?}");
            };
            failed |= result.is_err();
            results[completion.token as usize] = Some(result.map(drop));
        }
    }
    // Appends settle in order, and a failure fails every append not settled yet. An append made
    // after the shard took the failure in (an append also reaps finished I/O) starts afresh on the
    // rewound log and may succeed: the log then holds exactly the acknowledged appends, in order,
    // which the caller reads back byte for byte.
    let error = results
        .iter()
        .find_map(|r| match r {
            Some(Err(error)) => Some(*error),
            _ => None,
        })
        .expect("a 12 MiB filesystem never filled up");
    let acked = sent
        .into_iter()
        .zip(&results)
        .filter(|(_, result)| matches!(result, Some(Ok(()))))
        .map(|(batch, _)| batch)
        .collect();
    (acked, error)
}

/// A way of filling the disk: returns the acknowledged batches and the first error.
type Fill = fn(&mut Shard, PartitionKey) -> (Vec<Vec<u8>>, AppendError);

fn check_disk_full(preallocate: bool, fill: Fill) {
    let Some(fs) = loop_fs_or_skip() else { return };
    let other_root = tempfile::tempdir().unwrap();
    let other = PartitionKey {
        partition_id: 1,
        ..KEY
    };
    let config = StorageConfig {
        preallocate,
        segment_size_bytes: 1024 * 1024,
        ..small_config()
    };
    let dir = partition_dir(&fs.mount);
    let mut shard = shard(config.clone());
    shard
        .create_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    shard
        .create_partition(
            other,
            &partition_dir(other_root.path()),
            PartitionSettings::default(),
        )
        .unwrap();
    let filler = fs.mount.join("filler");
    std::fs::write(&filler, vec![7u8; 2 * 1024 * 1024]).unwrap();
    let (acked, error) = fill(&mut shard, KEY);
    assert_eq!(error, AppendError::NoSpace);
    assert!(!acked.is_empty());
    let info = shard.partition_info(KEY).unwrap();
    assert_eq!(
        info.messages_count,
        acked.len() as u64 * 4,
        "failed appends leave no trace"
    );
    // The other partition keeps working.
    append_durable(&mut shard, other, batch(1, 1, 10), 1).unwrap();
    // Space freed: appends work again and continue the offsets.
    std::fs::remove_file(&filler).unwrap();
    let resumed = append_durable(&mut shard, KEY, batch(5000, 4, 4000), 5000).unwrap();
    assert_eq!(resumed.base_offset, acked.len() as u64 * 4);
    drop(shard);
    // Every acknowledged batch survives a reopen, byte for byte.
    let mut shard = common::shard(config);
    let info = shard
        .open_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    assert_eq!(info.messages_count, acked.len() as u64 * 4 + 4);
    let mut offset = 0;
    let mut index = 0;
    while index < acked.len() {
        let got = read(&mut shard, KEY, ReadStart::Offset(offset), 10_000).unwrap();
        assert!(got.messages_count > 0);
        for r in records(&got.to_vec()) {
            if index < acked.len() {
                assert_eq!(unstamped(&r), unstamped(&acked[index]));
            }
            index += 1;
        }
        offset += got.messages_count as u64;
    }
}

#[test]
fn disk_full_while_writing_fails_appends_and_recovers() {
    check_disk_full(false, fill);
}

#[test]
fn disk_full_under_pipelined_writes_fails_only_unacknowledged_appends() {
    check_disk_full(false, fill_pipelined);
}

#[test]
fn disk_full_at_segment_creation_fails_appends_and_recovers() {
    check_disk_full(true, fill);
}
