//! The lossy disk through a real FUSE mount and the kernel's own paths: fsync and fdatasync,
//! O_DSYNC and RWF_DSYNC writes, O_DIRECT opens, directory durability, torn writes, the freeze
//! at the cut, and rounds over one backing directory. Skips with a reason where FUSE is
//! missing, fails under CI=true.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use lossydisk::{require_fuse, CutPolicy, DiskOptions, LossyDisk};
use tempfile::TempDir;

struct Fixture {
    backing: TempDir,
    mountpoint: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            backing: tempfile::tempdir().expect("backing dir"),
            mountpoint: tempfile::tempdir().expect("mountpoint"),
        }
    }

    fn mount(&self, options: DiskOptions) -> LossyDisk {
        LossyDisk::mount(self.backing.path(), self.mountpoint.path(), options).expect("mount")
    }

    fn backing(&self, relative: &str) -> std::path::PathBuf {
        self.backing.path().join(relative)
    }
}

fn sync_dir(path: &Path) {
    File::open(path)
        .expect("open dir")
        .sync_all()
        .expect("fsync dir");
}

#[test]
fn only_synced_bytes_survive_a_cut() {
    if !require_fuse("only_synced_bytes_survive_a_cut") {
        return;
    }
    let fixture = Fixture::new();
    let disk = fixture.mount(DiskOptions::default());
    let root = disk.path().to_path_buf();
    let mut synced = File::create(root.join("synced")).unwrap();
    synced.write_all(b"fsynced").unwrap();
    synced.sync_all().unwrap();
    synced.write_all(b" and then lost").unwrap();
    let mut datasynced = File::create(root.join("datasynced")).unwrap();
    datasynced.write_all(b"fdatasynced").unwrap();
    datasynced.sync_data().unwrap();
    fs::write(root.join("unsynced"), b"never synced").unwrap();
    sync_dir(&root);
    assert_eq!(
        fs::read(root.join("synced")).unwrap(),
        b"fsynced and then lost",
        "reads see the cache"
    );
    drop((synced, datasynced));
    let stats = disk.power_cut(|| {}).unwrap();
    assert_eq!(fs::read(fixture.backing("synced")).unwrap(), b"fsynced");
    assert_eq!(
        fs::read(fixture.backing("datasynced")).unwrap(),
        b"fdatasynced"
    );
    assert_eq!(fs::read(fixture.backing("unsynced")).unwrap(), b"");
    assert!(stats.file_syncs >= 2 && stats.dir_syncs >= 1, "{stats:?}");
}

#[test]
fn dsync_writes_are_durable_without_an_explicit_fsync() {
    if !require_fuse("dsync_writes_are_durable_without_an_explicit_fsync") {
        return;
    }
    let fixture = Fixture::new();
    let disk = fixture.mount(DiskOptions::default());
    let root = disk.path().to_path_buf();
    let o_dsync = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DSYNC)
        .open(root.join("o_dsync"))
        .unwrap();
    o_dsync.write_all_at(b"O_DSYNC", 0).unwrap();
    let plain = File::create(root.join("rwf_dsync")).unwrap();
    let bytes = b"RWF_DSYNC";
    let iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: the iovec points at a live local array for the duration of the call.
    let written = unsafe { libc::pwritev2(plain.as_raw_fd(), &iov, 1, 0, libc::RWF_DSYNC) };
    assert_eq!(written, bytes.len() as isize);
    sync_dir(&root);
    drop((o_dsync, plain));
    disk.power_cut(|| {}).unwrap();
    assert_eq!(fs::read(fixture.backing("o_dsync")).unwrap(), b"O_DSYNC");
    assert_eq!(
        fs::read(fixture.backing("rwf_dsync")).unwrap(),
        b"RWF_DSYNC"
    );
}

/// A 4096-aligned buffer for O_DIRECT.
struct Aligned(Vec<u8>, usize);

impl Aligned {
    fn filled(len: usize, byte: u8) -> Aligned {
        let mut raw = vec![0u8; len + 4096];
        let start = raw.as_ptr().align_offset(4096);
        raw[start..start + len].fill(byte);
        Aligned(raw, start)
    }

    fn bytes(&self, len: usize) -> &[u8] {
        &self.0[self.1..self.1 + len]
    }
}

#[test]
fn o_direct_opens_are_accepted_and_follow_the_same_rules() {
    if !require_fuse("o_direct_opens_are_accepted_and_follow_the_same_rules") {
        return;
    }
    let fixture = Fixture::new();
    let disk = fixture.mount(DiskOptions::default());
    let root = disk.path().to_path_buf();
    let open_direct = |name: &str| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(root.join(name))
            .expect("the lossy disk accepts O_DIRECT")
    };
    let synced = open_direct("direct_synced");
    let block = Aligned::filled(8192, b'd');
    synced.write_all_at(block.bytes(8192), 0).unwrap();
    synced.sync_data().unwrap();
    let unsynced = open_direct("direct_unsynced");
    unsynced.write_all_at(block.bytes(4096), 0).unwrap();
    let mut back = Aligned::filled(4096, 0);
    let read = {
        let start = back.1;
        unsynced
            .read_at(&mut back.0[start..start + 4096], 0)
            .unwrap()
    };
    assert_eq!(read, 4096);
    assert!(
        back.bytes(4096).iter().all(|b| *b == b'd'),
        "direct reads see the cache"
    );
    sync_dir(&root);
    assert_eq!(disk.stats().direct_opens, 2);
    drop((synced, unsynced));
    disk.power_cut(|| {}).unwrap();
    assert_eq!(
        fs::read(fixture.backing("direct_synced")).unwrap(),
        vec![b'd'; 8192]
    );
    assert_eq!(fs::read(fixture.backing("direct_unsynced")).unwrap(), b"");
}

#[test]
fn names_are_durable_only_once_each_parent_is_synced() {
    if !require_fuse("names_are_durable_only_once_each_parent_is_synced") {
        return;
    }
    let fixture = Fixture::new();
    let disk = fixture.mount(DiskOptions::default());
    let root = disk.path().to_path_buf();
    for tree in ["leaf_only", "all_levels"] {
        let leaf = root.join(tree).join("a").join("b");
        fs::create_dir_all(&leaf).unwrap();
        let mut file = File::create(leaf.join("f")).unwrap();
        file.write_all(b"payload").unwrap();
        file.sync_all().unwrap();
        sync_dir(&leaf);
        if tree == "all_levels" {
            sync_dir(&root.join(tree).join("a"));
            sync_dir(&root.join(tree));
        }
    }
    // The root names both trees; only one has every level synced.
    sync_dir(&root);
    // A rename whose directory is never synced, and a removal that is.
    fs::write(root.join("tmp"), b"renamed").unwrap();
    fs::rename(root.join("tmp"), root.join("final")).unwrap();
    disk.power_cut(|| {}).unwrap();
    assert!(fixture.backing("leaf_only").is_dir());
    assert!(
        !fixture.backing("leaf_only/a").exists(),
        "a was never synced into leaf_only"
    );
    assert_eq!(
        fs::read(fixture.backing("all_levels/a/b/f")).unwrap(),
        b"payload"
    );
    assert!(!fixture.backing("tmp").exists() && !fixture.backing("final").exists());

    let disk = fixture.mount(DiskOptions::default());
    let root = disk.path().to_path_buf();
    fs::remove_dir_all(root.join("all_levels")).unwrap();
    fs::remove_dir(root.join("leaf_only")).unwrap();
    sync_dir(&root);
    disk.power_cut(|| {}).unwrap();
    assert!(!fixture.backing("all_levels").exists() && !fixture.backing("leaf_only").exists());
}

#[test]
fn a_torn_last_write_keeps_whole_sectors_only() {
    if !require_fuse("a_torn_last_write_keeps_whole_sectors_only") {
        return;
    }
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..8 {
        let fixture = Fixture::new();
        let disk = fixture.mount(DiskOptions {
            cut: CutPolicy::TearLast,
            seed,
            ..DiskOptions::default()
        });
        let root = disk.path().to_path_buf();
        let file = File::create(root.join("f")).unwrap();
        file.write_all_at(&[b's'; 700], 0).unwrap();
        file.sync_data().unwrap();
        sync_dir(&root);
        file.write_all_at(&[b't'; 4000], 700).unwrap();
        drop(file);
        disk.power_cut(|| {}).unwrap();
        let bytes = fs::read(fixture.backing("f")).unwrap();
        assert_eq!(
            &bytes[..700],
            &[b's'; 700][..],
            "seed {seed}: synced bytes intact"
        );
        assert!(bytes[700..].iter().all(|b| *b == b't'));
        assert!(bytes.len() < 4700, "seed {seed}: the last write is torn");
        assert!(
            bytes.len() == 700 || bytes.len().is_multiple_of(512),
            "seed {seed}: torn at {}",
            bytes.len()
        );
        lengths.insert(bytes.len());
    }
    assert!(
        lengths.len() > 1,
        "eight seeds tore at one place only: {lengths:?}"
    );
}

#[test]
fn the_disk_fails_every_operation_from_the_cut_and_rounds_continue() {
    if !require_fuse("the_disk_fails_every_operation_from_the_cut_and_rounds_continue") {
        return;
    }
    let fixture = Fixture::new();
    let mut expected = Vec::new();
    for round in 0..3u8 {
        let disk = fixture.mount(DiskOptions::default());
        let path = disk.path().join("log");
        assert_eq!(
            fs::read(&path).unwrap_or_default(),
            expected,
            "round {round} starts from the survivors"
        );
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        (&file).write_all(&[round; 10]).unwrap();
        file.sync_data().unwrap();
        sync_dir(disk.path());
        expected.extend_from_slice(&[round; 10]);
        let late = disk.path().join("late");
        disk.power_cut(|| {
            let error = (&file)
                .write_all(b"after the cut")
                .and_then(|()| file.sync_data());
            assert_eq!(error.unwrap_err().raw_os_error(), Some(libc::EIO));
            assert!(fs::write(&late, b"x").is_err());
            drop(file);
        })
        .unwrap();
        assert_eq!(fs::read(fixture.backing("log")).unwrap(), expected);
    }
}

#[test]
fn an_ignored_fsync_makes_the_disk_lie_for_the_selected_files() {
    if !require_fuse("an_ignored_fsync_makes_the_disk_lie_for_the_selected_files") {
        return;
    }
    let fixture = Fixture::new();
    let disk = fixture.mount(DiskOptions {
        fsync_ignored: Some(|name| name.as_encoded_bytes().ends_with(b".log")),
        ..DiskOptions::default()
    });
    for name in ["0.log", "0.index"] {
        let mut file = File::create(disk.path().join(name)).unwrap();
        file.write_all(b"bytes").unwrap();
        file.sync_data().unwrap();
    }
    sync_dir(disk.path());
    let stats = disk.power_cut(|| {}).unwrap();
    assert_eq!(stats.file_syncs_ignored, 1);
    assert_eq!(fs::read(fixture.backing("0.log")).unwrap(), b"");
    assert_eq!(fs::read(fixture.backing("0.index")).unwrap(), b"bytes");
}
