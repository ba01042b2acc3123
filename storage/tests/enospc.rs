//! Disk full on a real, small, loop-mounted ext4: the failing appends get `NoSpace`, nothing
//! acknowledged is lost, the log stays consistent, appends work again once space is freed, and
//! a partition on another filesystem is unaffected.
//!
//! And a device that starts failing its writes under a mounted ext4 (the loop device's image on
//! a tmpfs smaller than the image): the append whose fdatasync fails (the journal commit hits the
//! failing device, ext4 aborts the journal) is not acknowledged, and every acknowledged batch is
//! intact once the filesystem is mounted again on a working device.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use riptide_storage::*;

/// A loop-mounted ext4 image, unmounted and removed on drop.
struct LoopFs {
    image: PathBuf,
    mount: PathBuf,
    /// The tmpfs holding the image, when the image may outgrow it (see `on_small_tmpfs`).
    image_tmpfs: Option<PathBuf>,
    _holder: tempfile::TempDir,
}

impl LoopFs {
    fn new(size: &str) -> Result<LoopFs, String> {
        Self::make(size, None, &[])
    }

    /// An ext4 of `size` whose image lives on a tmpfs of `tmpfs_size`: once the tmpfs is full,
    /// the loop device fails every write to a part of the image not written before. mkfs writes
    /// the inode tables and the journal out at once, so no background initialisation of its own
    /// meets the failing device.
    fn on_small_tmpfs(size: &str, tmpfs_size: &str) -> Result<LoopFs, String> {
        Self::make(
            size,
            Some(tmpfs_size),
            &["-E", "lazy_itable_init=0,lazy_journal_init=0"],
        )
    }

    fn make(size: &str, tmpfs_size: Option<&str>, mkfs_extra: &[&str]) -> Result<LoopFs, String> {
        let holder = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mount = holder.path().join("mnt");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        let image_tmpfs = match tmpfs_size {
            Some(tmpfs_size) => {
                let dir = holder.path().join("image-tmpfs");
                std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
                let options = format!("size={tmpfs_size}");
                run(
                    "mount",
                    &["-t", "tmpfs", "-o", &options, "tmpfs", path_str(&dir)],
                )?;
                Some(dir)
            }
            None => None,
        };
        let image = image_tmpfs
            .as_deref()
            .unwrap_or(holder.path())
            .join("fs.img");
        let fs = LoopFs {
            image,
            mount,
            image_tmpfs,
            _holder: holder,
        };
        run("truncate", &["-s", size, path_str(&fs.image)])?;
        let mut mkfs = vec!["-q", "-F", "-m", "0"];
        mkfs.extend_from_slice(mkfs_extra);
        mkfs.push(path_str(&fs.image));
        run("mkfs.ext4", &mkfs)?;
        fs.mount_image()?;
        Ok(fs)
    }

    fn mount_image(&self) -> Result<(), String> {
        run(
            "mount",
            &["-o", "loop", path_str(&self.image), path_str(&self.mount)],
        )?;
        if self.image_tmpfs.is_some() {
            self.limit_requests_to_one_page()?;
        }
        Ok(())
    }

    /// The loop driver completes a write that its backing file took only in part (the tmpfs
    /// filled up in the middle of it) as a success: the tail of an acknowledged write would
    /// silently read back as zeroes, a device that lies rather than fails. Requests of one page
    /// are taken by the tmpfs whole or not at all, so the device fails honestly.
    fn limit_requests_to_one_page(&self) -> Result<(), String> {
        let output = Command::new("losetup")
            .args(["-j", path_str(&self.image)])
            .output()
            .map_err(|e| format!("losetup: {e}"))?;
        let listing = String::from_utf8_lossy(&output.stdout);
        let device = listing
            .split(':')
            .next()
            .and_then(|path| path.trim().strip_prefix("/dev/"))
            .filter(|name| !name.is_empty())
            .ok_or_else(|| format!("no loop device backs {}", self.image.display()))?;
        let limit = format!("/sys/block/{device}/queue/max_sectors_kb");
        std::fs::write(&limit, "4").map_err(|e| format!("{limit}: {e}"))
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = run("umount", &[path_str(&self.mount)]);
        let _ = std::fs::remove_file(&self.image);
        if let Some(tmpfs) = &self.image_tmpfs {
            let _ = run("umount", &[path_str(tmpfs)]);
        }
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
    skip_without(LoopFs::new("12M"))
}

fn skip_without(fs: Result<LoopFs, String>) -> Option<LoopFs> {
    match fs {
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
    assert_log_starts_with(&mut shard, &acked);
}

/// The partition's log begins with `acked`, record by record, byte for byte (stamps aside).
fn assert_log_starts_with(shard: &mut Shard, acked: &[Vec<u8>]) {
    let mut offset = 0;
    let mut index = 0;
    while index < acked.len() {
        let got = read(shard, KEY, ReadStart::Offset(offset), 10_000).unwrap();
        assert!(got.messages_count > 0, "the log ends before batch {index}");
        for r in records(&got.to_vec()) {
            if index < acked.len() {
                assert_eq!(unstamped(&r), unstamped(&acked[index]), "batch {index}");
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

/// Appends durably until the device fails one, then remounts the filesystem on a device that
/// works again and reads every acknowledged batch back. Depending on where the tmpfs fills up,
/// the first operation to fail is an append's O_DIRECT write (about 1050 acknowledged batches
/// of 16 KB in) or its fdatasync (EIO: the journal commit met the full tmpfs and ext4 aborted
/// the journal); both take the same path. Before the loop device's requests were limited to one
/// page, a write the tmpfs took in part was acknowledged by the device with its tail lost.
#[test]
fn a_device_failing_under_fdatasync_fails_the_append_and_keeps_what_was_acknowledged() {
    let Some(fs) = skip_without(LoopFs::on_small_tmpfs("64M", "20M")) else {
        return;
    };
    let config = StorageConfig {
        segment_size_bytes: 4 * 1024 * 1024,
        ..small_config()
    };
    let dir = partition_dir(&fs.mount);
    let mut shard = shard(config.clone());
    shard
        .create_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    let mut acked = Vec::new();
    let error = (0..10_000u64)
        .find_map(|i| {
            let b = batch(i, 4, 4000);
            match append_durable(&mut shard, KEY, b.clone(), i) {
                Ok(_) => {
                    acked.push(b);
                    None
                }
                Err(error) => Some(error),
            }
        })
        .expect("the device never failed a write");
    assert!(
        matches!(error, AppendError::Io(_) | AppendError::NoSpace),
        "{error:?}"
    );
    assert!(!acked.is_empty(), "the device failed before any append");
    assert_eq!(
        shard.partition_info(KEY).unwrap().messages_count,
        acked.len() as u64 * 4,
        "the failed append is not in the log"
    );
    drop(shard);
    // A device that works again: the tmpfs grows, the journal replays at mount.
    run("umount", &[path_str(&fs.mount)]).unwrap();
    let tmpfs = fs.image_tmpfs.as_deref().unwrap();
    run("mount", &["-o", "remount,size=256M", path_str(tmpfs)]).unwrap();
    fs.mount_image().unwrap();
    let mut shard = common::shard(config);
    let info = shard
        .open_partition(KEY, &dir, PartitionSettings::default())
        .unwrap();
    // The failed append may have reached the disk in part or whole; what was acknowledged is
    // there in full, in order, byte for byte.
    assert!(
        info.messages_count >= acked.len() as u64 * 4,
        "{} messages recovered, {} acknowledged",
        info.messages_count,
        acked.len() * 4
    );
    assert_log_starts_with(&mut shard, &acked);
}
