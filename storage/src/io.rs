//! Everything that talks to the kernel: aligned buffers, the shard's io_uring (or the loudly
//! named buffered fallback), O_DIRECT opens, the direct-I/O alignment probe, fallocate and
//! directory syncs. The only module with `unsafe`.

use std::alloc::Layout;
use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

use crate::constants::{DIRECT_IO_ALIGNMENT_DEFAULT_BYTES, DIRECT_IO_ALIGNMENT_MAX_BYTES};

/// A heap buffer whose start and capacity are multiples of a direct-I/O alignment. Its memory
/// never moves while the value lives, so the kernel may hold its address across a submission.
pub struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
    len: usize,
}

impl AlignedBuf {
    /// Allocates `capacity` zeroed bytes (rounded up to `alignment`).
    pub fn new(capacity: usize, alignment: usize) -> AlignedBuf {
        let capacity = round_up(capacity.max(alignment), alignment);
        let layout =
            Layout::from_size_align(capacity, alignment).expect("alignment is a power of two");
        // SAFETY: the layout has a non-zero size; a null result is handled as allocation failure.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf {
            ptr,
            layout,
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the logical length; bytes past the old length keep whatever they held.
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.capacity(),
            "aligned buffer length past capacity"
        );
        self.len = len;
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        assert!(end <= self.capacity(), "aligned buffer overflow");
        let start = self.len;
        self.full_mut()[start..end].copy_from_slice(bytes);
        self.len = end;
    }

    /// The whole capacity, including bytes past `len`.
    pub fn full_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is a live allocation of layout.size() bytes owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is a live allocation of at least len initialised (zeroed at start) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: ptr was allocated with exactly this layout and is freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

pub fn round_up(value: usize, alignment: usize) -> usize {
    value.div_ceil(alignment) * alignment
}

pub fn round_down(value: u64, alignment: usize) -> u64 {
    value - value % alignment as u64
}

/// One I/O request. The caller owns the memory behind `ptr` until the completion is reaped.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Write {
        fd: RawFd,
        ptr: *const u8,
        len: usize,
        offset: u64,
        dsync: bool,
    },
    Read {
        fd: RawFd,
        ptr: *mut u8,
        len: usize,
        offset: u64,
    },
    Fdatasync {
        fd: RawFd,
    },
}

/// Which engine carries the I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    IoUring,
    /// Fallback when io_uring is refused: pwritev2/preadv/fdatasync executed at submission.
    BufferedSyscalls,
}

/// A completion: the `user_data` given at submission and the kernel's result (bytes or -errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoCompletion {
    pub user_data: u64,
    pub result: i32,
}

/// `user_data` of the wakeup-eventfd poll; slot indices stay far below it.
pub const WAKEUP_USER_DATA: u64 = u64::MAX;

pub struct Io {
    ring: Option<IoUring>,
    ready: VecDeque<IoCompletion>,
    wakeup_fd: Option<RawFd>,
    in_flight: usize,
    unsubmitted: usize,
}

impl Io {
    /// Opens the shard's ring. When the kernel refuses io_uring (seccomp, old kernel) or
    /// `force_buffered` is set, logs one line and uses [`Backend::BufferedSyscalls`].
    pub fn new(entries: u32, wakeup_fd: Option<RawFd>, force_buffered: bool) -> Io {
        let ring = if force_buffered {
            tracing::warn!("storage: io_uring disabled by configuration; using the buffered-syscalls fallback (pwrite + fdatasync)");
            None
        } else {
            match IoUring::new(entries) {
                Ok(ring) => Some(ring),
                Err(error) => {
                    tracing::warn!(%error, "storage: io_uring refused by the kernel; using the buffered-syscalls fallback (pwrite + fdatasync)");
                    None
                }
            }
        };
        let mut io = Io {
            ring,
            ready: VecDeque::new(),
            wakeup_fd,
            in_flight: 0,
            unsubmitted: 0,
        };
        io.arm_wakeup();
        io
    }

    pub fn backend(&self) -> Backend {
        if self.ring.is_some() {
            Backend::IoUring
        } else {
            Backend::BufferedSyscalls
        }
    }

    /// Operations submitted whose completion has not been reaped yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn arm_wakeup(&mut self) {
        let (Some(fd), Some(ring)) = (self.wakeup_fd, self.ring.as_mut()) else {
            return;
        };
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(WAKEUP_USER_DATA);
        // SAFETY: a poll entry references no memory of ours; only the fd, which the caller keeps open.
        if unsafe { ring.submission().push(&entry) }.is_err() {
            let _ = ring.submit();
            // SAFETY: as above.
            let _ = unsafe { ring.submission().push(&entry) };
        }
        self.unsubmitted += 1;
    }

    /// Queues `op` with `user_data`.
    ///
    /// # Safety
    /// The memory behind the op's pointer must stay valid, and unused by anyone else, until the
    /// completion carrying `user_data` has been returned by [`Io::reap`].
    pub unsafe fn push(&mut self, user_data: u64, op: Op) {
        self.in_flight += 1;
        let Some(ring) = self.ring.as_mut() else {
            let result = execute_now(op);
            self.ready.push_back(IoCompletion { user_data, result });
            return;
        };
        let entry = match op {
            Op::Write {
                fd,
                ptr,
                len,
                offset,
                dsync,
            } => {
                let flags = if dsync { libc::RWF_DSYNC } else { 0 };
                opcode::Write::new(types::Fd(fd), ptr, len as u32)
                    .offset(offset)
                    .rw_flags(flags)
                    .build()
            }
            Op::Read {
                fd,
                ptr,
                len,
                offset,
            } => opcode::Read::new(types::Fd(fd), ptr, len as u32)
                .offset(offset)
                .build(),
            Op::Fdatasync { fd } => opcode::Fsync::new(types::Fd(fd))
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        }
        .user_data(user_data);
        push_entry(ring, &entry);
        self.unsubmitted += 1;
    }

    /// Hands queued entries to the kernel without waiting.
    pub fn submit(&mut self) {
        if let Some(ring) = self.ring.as_mut() {
            if self.unsubmitted > 0 {
                match ring.submit() {
                    Ok(_) => self.unsubmitted = 0,
                    Err(error) => {
                        tracing::warn!(%error, "storage: io_uring submit failed; retrying on the next call")
                    }
                }
            }
        }
    }

    /// Submits and blocks until at least one completion (I/O or wakeup) or `timeout`.
    pub fn wait(&mut self, timeout: Duration) {
        if !self.ready.is_empty() {
            return;
        }
        let Some(ring) = self.ring.as_mut() else {
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
            return;
        };
        if !ring.completion().is_empty() {
            self.submit();
            return;
        }
        let timespec = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&timespec);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => self.unsubmitted = 0,
            Err(error)
                if error.raw_os_error() == Some(libc::ETIME)
                    || error.raw_os_error() == Some(libc::EINTR) =>
            {
                self.unsubmitted = 0
            }
            Err(error) => tracing::warn!(%error, "storage: io_uring wait failed"),
        }
    }

    /// Moves completions into `out`, handling the wakeup poll internally.
    pub fn reap(&mut self, out: &mut Vec<IoCompletion>) {
        while let Some(done) = self.ready.pop_front() {
            self.in_flight -= 1;
            out.push(done);
        }
        let mut rearm = false;
        if let Some(ring) = self.ring.as_mut() {
            for cqe in ring.completion() {
                if cqe.user_data() == WAKEUP_USER_DATA {
                    if let Some(fd) = self.wakeup_fd {
                        drain_eventfd(fd);
                    }
                    rearm |= !io_uring::cqueue::more(cqe.flags());
                    continue;
                }
                self.in_flight -= 1;
                out.push(IoCompletion {
                    user_data: cqe.user_data(),
                    result: cqe.result(),
                });
            }
        }
        if rearm {
            self.arm_wakeup();
        }
    }
}

fn push_entry(ring: &mut IoUring, entry: &squeue::Entry) {
    loop {
        // SAFETY: the entry's buffers are guaranteed alive by the contract of `Io::push`.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return;
        }
        // The submission queue is full: hand it to the kernel and retry (bounded by the ring size
        // because the slot pool never exceeds the ring's entries).
        let _ = ring.submit();
    }
}

fn drain_eventfd(fd: RawFd) {
    let mut value = 0u64;
    // SAFETY: reads 8 bytes into a local u64; the eventfd is the caller's and stays open.
    let _ = unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
}

/// The buffered fallback: performs `op` with plain syscalls and returns the kernel-style result.
fn execute_now(op: Op) -> i32 {
    let result = match op {
        Op::Write {
            fd,
            ptr,
            len,
            offset,
            dsync,
        } => {
            let iov = libc::iovec {
                iov_base: ptr as *mut libc::c_void,
                iov_len: len,
            };
            let flags = if dsync { libc::RWF_DSYNC } else { 0 };
            // SAFETY: the caller of `Io::push` guarantees ptr..ptr+len is readable.
            unsafe { libc::pwritev2(fd, &iov, 1, offset as i64, flags) as i64 }
        }
        Op::Read {
            fd,
            ptr,
            len,
            offset,
        } => {
            // SAFETY: the caller of `Io::push` guarantees ptr..ptr+len is writable and unshared.
            unsafe { libc::pread(fd, ptr.cast(), len, offset as i64) as i64 }
        }
        // SAFETY: fdatasync takes only a descriptor.
        Op::Fdatasync { fd } => unsafe { libc::fdatasync(fd) as i64 },
    };
    if result < 0 {
        -io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        result as i32
    }
}

/// How a log file was opened.
pub struct LogFile {
    pub file: File,
    pub direct: bool,
}

/// Opens (creating if asked) a segment log for O_DIRECT writes; when the filesystem refuses
/// O_DIRECT (tmpfs), reopens it buffered — the caller logs the fallback once per shard.
pub fn open_log(path: &Path, create: bool, want_direct: bool) -> io::Result<LogFile> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(create);
    if want_direct {
        match options.clone().custom_flags(libc::O_DIRECT).open(path) {
            Ok(file) => return Ok(LogFile { file, direct: true }),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(LogFile {
        file: options.open(path)?,
        direct: false,
    })
}

/// Direct-I/O alignment of files in `dir`: statx STATX_DIOALIGN when the kernel reports it,
/// else the safe default. Returns the larger of the memory and offset alignments.
pub fn probe_direct_alignment(dir: &Path) -> usize {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return DIRECT_IO_ALIGNMENT_DEFAULT_BYTES;
    };
    // SAFETY: statx is plain data; zeroed is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated and stx is a valid out-pointer for the call.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            0,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return DIRECT_IO_ALIGNMENT_DEFAULT_BYTES;
    }
    let alignment = (stx.stx_dio_mem_align.max(stx.stx_dio_offset_align)) as usize;
    if alignment == 0 || !alignment.is_power_of_two() || alignment > DIRECT_IO_ALIGNMENT_MAX_BYTES {
        return DIRECT_IO_ALIGNMENT_DEFAULT_BYTES;
    }
    // Directories may report 0 (no direct I/O on them); files on the same fs share the value.
    alignment.max(512)
}

/// Reserves `len_bytes` for `file` so appends do not allocate blocks on the hot path.
/// Filesystems without fallocate (EOPNOTSUPP) are left as they are.
pub fn preallocate(file: &File, len_bytes: u64) -> io::Result<()> {
    // SAFETY: fallocate takes a descriptor we own and plain integers.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_bytes as i64) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP) => Ok(()),
        _ => Err(error),
    }
}

/// Makes a created, renamed or removed directory entry durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffer_is_aligned_and_zeroed() {
        let mut buf = AlignedBuf::new(10_000, 4096);
        assert_eq!(buf.capacity(), 12_288);
        assert_eq!(buf.as_mut_ptr() as usize % 4096, 0);
        assert!(buf.full_mut().iter().all(|b| *b == 0));
        buf.push(b"abc");
        assert_eq!(buf.as_slice(), b"abc");
    }

    #[test]
    fn probe_returns_a_power_of_two() {
        let dir = tempfile::tempdir().unwrap();
        let alignment = probe_direct_alignment(dir.path());
        assert!(
            alignment.is_power_of_two()
                && (512..=DIRECT_IO_ALIGNMENT_MAX_BYTES).contains(&alignment)
        );
    }

    fn write_and_read_back(force_buffered: bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(&dir.path().join("x.log"), true, true).unwrap();
        let mut io = Io::new(8, None, force_buffered);
        if std::env::var("CI").as_deref() == Ok("true") && !force_buffered {
            assert_eq!(io.backend(), Backend::IoUring, "CI must have io_uring");
        }
        let mut buf = AlignedBuf::new(4096, 4096);
        buf.full_mut()[..5].copy_from_slice(b"hello");
        let fd = log.file.as_raw_fd();
        // SAFETY: buf lives until the completion is reaped below.
        unsafe {
            io.push(
                7,
                Op::Write {
                    fd,
                    ptr: buf.as_mut_ptr(),
                    len: 4096,
                    offset: 0,
                    dsync: true,
                },
            )
        };
        let mut out = Vec::new();
        while out.is_empty() {
            io.wait(Duration::from_millis(100));
            io.reap(&mut out);
        }
        assert_eq!(
            out[0],
            IoCompletion {
                user_data: 7,
                result: 4096
            }
        );
        let mut back = AlignedBuf::new(4096, 4096);
        // SAFETY: back lives until the completion is reaped below.
        unsafe {
            io.push(
                8,
                Op::Read {
                    fd,
                    ptr: back.as_mut_ptr(),
                    len: 4096,
                    offset: 0,
                },
            )
        };
        out.clear();
        while out.is_empty() {
            io.wait(Duration::from_millis(100));
            io.reap(&mut out);
        }
        assert_eq!(out[0].result, 4096);
        assert_eq!(&back.full_mut()[..5], b"hello");
        assert_eq!(io.in_flight(), 0);
    }

    #[test]
    fn uring_write_and_read_round_trip() {
        write_and_read_back(false);
    }

    #[test]
    fn buffered_fallback_round_trip() {
        write_and_read_back(true);
    }
}
