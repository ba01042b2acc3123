//! The metadata store on a real full file system: a size-limited tmpfs. Needs root (to
//! mount); without it the test says so and skips, except under `CI=true`, where it fails.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use riptide_storage::metadata::{
    Catalog, Change, MetadataError, MetadataStore, StoreConfig, SNAPSHOT_FILE_NAME,
};

/// Small enough to fill in a few hundred records, large enough for the log header.
const TMPFS_SIZE: &str = "size=64k";
const TMPFS_SIZE_GROWN: &str = "size=4m";
const FILL_ATTEMPTS_MAX: u32 = 10_000;

/// A mounted tmpfs, unmounted on drop (also when an assertion fails).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS_SIZE, "riptide-metadata-enospc"])
            .arg(path)
            .status()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !status.success() {
            return Err(format!("mount -t tmpfs failed: {status}"));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    fn grow(&self) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{TMPFS_SIZE_GROWN}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount failed: {status}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn long_stream(stream_id: u32) -> Change {
    let name = format!("{stream_id:08}-{}", "n".repeat(240));
    Change::CreateStream {
        stream_id,
        name,
        created_at_us: u64::from(stream_id),
    }
}

fn is_enospc(error: &MetadataError) -> bool {
    matches!(error, MetadataError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
}

/// Applies long records until the file system is full; returns the acknowledged catalog.
fn fill(dir: &Path) -> (Catalog, u32) {
    let (mut store, mut acknowledged) = MetadataStore::open(dir).expect("open");
    let mut next_id = 0;
    let mut failures = 0;
    for _ in 0..FILL_ATTEMPTS_MAX {
        let change = long_stream(next_id);
        match store.apply(&change) {
            Ok(()) => {
                acknowledged.apply(&change).expect("model");
                next_id += 1;
            }
            Err(error) => {
                assert!(is_enospc(&error), "expected ENOSPC, got {error}");
                failures += 1;
                if failures == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(failures, 3, "the file system never filled up");
    assert_eq!(*store.catalog(), acknowledged);
    (acknowledged, next_id)
}

#[test]
fn full_disk_fails_the_change_and_keeps_every_acknowledged_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount_point = tmp.path().join("mnt");
    let tmpfs = match Tmpfs::mount(&mount_point) {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must be able to mount a tmpfs: {reason}"
            );
            eprintln!("SKIPPED full_disk test: needs root to mount a tmpfs ({reason})");
            return;
        }
    };
    let dir = mount_point.join("metadata");
    let (acknowledged, next_id) = fill(&dir);
    assert!(next_id > 10, "only {next_id} records fit");

    // Reopening on the full file system recovers exactly the acknowledged changes.
    let compact_often = StoreConfig {
        log_compaction_threshold_bytes: 1024,
    };
    let (mut store, catalog) = MetadataStore::open_with(&dir, compact_often).expect("reopen");
    assert_eq!(catalog, acknowledged);

    // The next apply must compact first; the snapshot cannot be written, so the change
    // fails, nothing is lost and no half-written snapshot is left behind.
    let error = store
        .apply(&long_stream(next_id))
        .expect_err("disk is full");
    assert!(is_enospc(&error), "expected ENOSPC, got {error}");
    assert!(!dir.join(format!("{SNAPSHOT_FILE_NAME}.tmp")).exists());
    assert_eq!(*store.catalog(), acknowledged);

    // With room again the same store carries on: compaction, then the change.
    tmpfs.grow();
    store
        .apply(&long_stream(next_id))
        .expect("apply after growing");
    assert!(dir.join(SNAPSHOT_FILE_NAME).exists());
    let expected = store.catalog().clone();
    drop(store);
    let (_, catalog) = MetadataStore::open_with(&dir, compact_often).expect("reopen");
    assert_eq!(catalog, expected);
    assert_eq!(catalog.streams().len() as u32, next_id + 1);
}
