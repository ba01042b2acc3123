//! A disk with a volatile write cache, for power-loss tests: a FUSE filesystem over a backing
//! directory that keeps every write in memory until the file is fsynced, and every created,
//! renamed or removed name until its directory is fsynced (POSIX, not ext4's stronger
//! habits). A power cut drops everything that was not synced — or, as asked, tears the last
//! unsynced write at a sector boundary or lets unsynced sectors land in any order.
//!
//! ```text
//! backing dir (the disk at rest) ──mount──► model: current ─fsync─► durable ──power_cut──► backing dir
//! ```
//!
//! A round of a test: [`LossyDisk::mount`] over the backing directory, run the system under
//! test on [`LossyDisk::path`], then [`LossyDisk::power_cut`] with a closure that SIGKILLs it.
//! The backing directory then holds exactly what was durable, ready for the next mount.
//!
//! Test-only: the whole tree lives in memory while mounted, and inodes are reclaimed only at
//! the cut. O_DIRECT opens are accepted (the kernel serves them without the page cache), and
//! O_DSYNC / RWF_DSYNC writes reach the disk as a write followed by an fsync, as on any Linux
//! filesystem.

mod fs;
pub mod image;
pub mod model;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use model::{CutPolicy, Stats, Tree, SECTOR_BYTES_DEFAULT};

/// A busy unmount (a killed process's io_uring may hold its files for a moment) is retried
/// this often, `UNMOUNT_RETRY_INTERVAL` apart, before the mount is detached and aborted.
const UNMOUNT_ATTEMPTS_MAX: u32 = 100;
const UNMOUNT_RETRY_INTERVAL: Duration = Duration::from_millis(20);
/// Threads serving FUSE requests: the appliance has several storage shards writing at once.
const FUSE_THREADS: usize = 2;

/// How the disk behaves; the default is the strict model with nothing lying.
#[derive(Clone, Debug, Default)]
pub struct DiskOptions {
    /// What the power cut does with unsynced changes.
    pub cut: CutPolicy,
    /// Seed of the cut's random choices (which sectors land, where a write tears).
    pub seed: u64,
    /// Mutation testing: fsync of a file whose name this selects is acknowledged and ignored,
    /// as if the caller had never asked for it.
    pub fsync_ignored: Option<fn(&std::ffi::OsStr) -> bool>,
    /// Sector size for tearing; [`SECTOR_BYTES_DEFAULT`] when 0.
    pub sector_bytes: usize,
}

/// A mounted lossy disk. Dropping it unmounts without writing anything back (the backing
/// directory keeps what it held at mount time).
pub struct LossyDisk {
    model: Arc<Mutex<model::Model>>,
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
    backing: PathBuf,
    /// What the backing directory holds (loaded at mount), to write back only the changes.
    at_rest: Tree,
    options: DiskOptions,
}

impl LossyDisk {
    /// Loads `backing` into memory and mounts it at `mountpoint` (an empty directory).
    ///
    /// # Errors
    /// The backing directory cannot be read, or the mount fails (no /dev/fuse, no permission,
    /// no fusermount3 for a user that is not root).
    pub fn mount(backing: &Path, mountpoint: &Path, options: DiskOptions) -> io::Result<LossyDisk> {
        let tree = image::load(backing)?;
        let model_options = model::Options {
            fsync_ignored: options.fsync_ignored,
            sector_bytes: options.sector_bytes,
        };
        let model = Arc::new(Mutex::new(model::Model::new(tree.clone(), model_options)));
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("lossydisk".to_string()),
            fuser::MountOption::DefaultPermissions,
        ];
        config.n_threads = Some(FUSE_THREADS);
        config.clone_fd = true;
        let session =
            fuser::spawn_mount(fs::LossyFs::new(Arc::clone(&model)), mountpoint, &config)?;
        Ok(LossyDisk {
            model,
            session: Some(session),
            mountpoint: mountpoint.to_path_buf(),
            backing: backing.to_path_buf(),
            at_rest: tree,
            options,
        })
    }

    /// Where the disk is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// What the disk was asked to do so far.
    pub fn stats(&self) -> Stats {
        self.model().stats
    }

    /// From now on (`true`) every directory fsync is acknowledged and does nothing, until set
    /// back: the next power cut falls after the file syncs made meanwhile but before any
    /// directory change made meanwhile (a name created, renamed or removed) became durable.
    pub fn set_dir_syncs_ignored(&self, ignored: bool) {
        self.model().set_dir_syncs_ignored(ignored);
    }

    fn model(&self) -> std::sync::MutexGuard<'_, model::Model> {
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The power cut: from this instant every operation on the disk fails with EIO and only
    /// what was durable survives. `kill` then stops whatever uses the mount (SIGKILL the
    /// appliance and reap it; drop the test's open files); the disk is unmounted and the
    /// backing directory rewritten to hold exactly what survived. Returns the disk's stats.
    ///
    /// # Errors
    /// Unmounting or rewriting the backing directory failed.
    pub fn power_cut(mut self, kill: impl FnOnce()) -> io::Result<Stats> {
        let (survivors, stats) = {
            let mut model = self.model();
            (model.cut(self.options.cut, self.options.seed), model.stats)
        };
        kill();
        self.unmount_now()?;
        image::store(&self.backing, &self.at_rest, &survivors)?;
        Ok(stats)
    }

    /// A clean stop: everything written reaches the disk (as `sync` and `umount` would), and
    /// the backing directory holds the current tree. Close every file on the mount first.
    ///
    /// # Errors
    /// Unmounting or rewriting the backing directory failed.
    pub fn unmount(mut self) -> io::Result<Stats> {
        let (settled, stats) = {
            let mut model = self.model();
            (model.settle(), model.stats)
        };
        self.unmount_now()?;
        image::store(&self.backing, &self.at_rest, &settled)?;
        Ok(stats)
    }

    fn unmount_now(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let connection = connection_id(&self.mountpoint);
        let path = c_path(&self.mountpoint)?;
        let mut unmounted = false;
        for _ in 0..UNMOUNT_ATTEMPTS_MAX {
            // SAFETY: `path` is a NUL-terminated string that outlives the call.
            if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
                unmounted = true;
                break;
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EBUSY) => std::thread::sleep(UNMOUNT_RETRY_INTERVAL),
                _ => return Err(error),
            }
        }
        if !unmounted {
            // Something still holds a file (a killed process's io_uring can take a while to
            // let go): detach the mount and abort the connection, so the holder gets errors and
            // the session threads end. What survived was settled at the cut.
            // SAFETY: as above.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
            if let Some(id) = connection {
                let _ = std::fs::write(format!("/sys/fs/fuse/connections/{id}/abort"), "1");
            }
        }
        // The session threads end on ENODEV, or — one of several threads reading a connection
        // the kernel tore down — on ECONNABORTED: both mean the mount is gone.
        match session.join() {
            Err(error) if error.raw_os_error() == Some(libc::ECONNABORTED) => Ok(()),
            other => other,
        }
    }
}

impl Drop for LossyDisk {
    fn drop(&mut self) {
        if self.session.is_some() {
            self.model().cut(CutPolicy::DropUnsynced, 0);
            let _ = self.unmount_now();
        }
    }
}

fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// The FUSE connection's number under /sys/fs/fuse/connections: the minor of the mount's
/// anonymous device.
fn connection_id(mountpoint: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint).ok()?.dev();
    Some(libc::minor(dev))
}

/// Why a lossy disk cannot be mounted here, or `None` when a probe mount worked.
pub fn unavailable_reason() -> Option<String> {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let probe = || -> io::Result<()> {
                let backing = tempfile_dir("lossydisk-probe-backing")?;
                let mountpoint = tempfile_dir("lossydisk-probe-mount")?;
                let disk = LossyDisk::mount(&backing, &mountpoint, DiskOptions::default())?;
                std::fs::write(disk.path().join("probe"), b"ok")?;
                disk.unmount()?;
                let stored = std::fs::read(backing.join("probe"))?;
                let _ = std::fs::remove_dir_all(&backing);
                let _ = std::fs::remove_dir(&mountpoint);
                if stored == b"ok" {
                    Ok(())
                } else {
                    Err(io::Error::other("the probe file did not reach the backing directory"))
                }
            };
            probe().err().map(|error| {
                format!("cannot mount a FUSE filesystem ({error}); needs /dev/fuse and root, or fusermount3 (Debian package fuse3)")
            })
        })
        .clone()
}

fn tempfile_dir(prefix: &str) -> io::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&path)?;
    Ok(path)
}

/// For tests: true when a lossy disk can be mounted. Otherwise prints why `test` is skipped
/// and returns false — except under `CI=true`, where a missing FUSE fails the test.
///
/// # Panics
/// Under `CI=true` when FUSE is unavailable.
pub fn require_fuse(test: &str) -> bool {
    let Some(reason) = unavailable_reason() else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {test} cannot run: {reason}"
    );
    eprintln!("skipping {test}: {reason}");
    false
}
