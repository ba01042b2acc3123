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

/// Memory handed to the kernel with a request. [`Io`] owns it from `push` until the request's
/// completion is reaped, so no caller can touch or free it while the kernel may use it.
pub enum IoBuffer {
    /// Direct-I/O buffer; requests may use its whole capacity.
    Aligned(AlignedBuf),
    /// Plain bytes (index entries, offset slots); requests may use `len()` bytes.
    Bytes(Vec<u8>),
    None,
}

impl IoBuffer {
    /// Start and usable length of the memory.
    fn region(&mut self) -> (*mut u8, usize) {
        match self {
            IoBuffer::Aligned(buf) => (buf.as_mut_ptr(), buf.capacity()),
            IoBuffer::Bytes(bytes) => (bytes.as_mut_ptr(), bytes.len()),
            IoBuffer::None => (std::ptr::null_mut(), 0),
        }
    }
}

/// One I/O request; the memory comes from the [`IoBuffer`] pushed with it, from byte 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Write {
        fd: RawFd,
        offset: u64,
        len: usize,
        dsync: bool,
    },
    Read {
        fd: RawFd,
        offset: u64,
        len: usize,
    },
    Fdatasync {
        fd: RawFd,
    },
}

impl Request {
    fn fd(&self) -> RawFd {
        match *self {
            Request::Write { fd, .. } | Request::Read { fd, .. } | Request::Fdatasync { fd } => fd,
        }
    }

    /// Bytes the request transfers.
    fn len(&self) -> usize {
        match *self {
            Request::Write { len, .. } | Request::Read { len, .. } => len,
            Request::Fdatasync { .. } => 0,
        }
    }
}

/// Why a request was not queued; the buffer is handed back.
pub enum PushError {
    /// `user_data` out of range or already in flight.
    SlotBusy(IoBuffer),
    /// The request's length exceeds its buffer.
    BufferTooSmall(IoBuffer),
}

/// Which engine carries the I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    IoUring,
    /// Fallback when io_uring is refused: pwritev2/pread/fdatasync executed at submission.
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
    /// Buffers of in-flight requests, indexed by `user_data`.
    buffers: Vec<Option<IoBuffer>>,
    wakeup_fd: Option<RawFd>,
    in_flight: usize,
    unsubmitted: usize,
}

impl Io {
    /// Opens the shard's ring with room for `slots` requests in flight (`user_data` below
    /// `slots`). When the kernel refuses io_uring (seccomp, old kernel) or `force_buffered` is
    /// set, logs one line and uses [`Backend::BufferedSyscalls`].
    pub fn new(slots: usize, wakeup_fd: Option<RawFd>, force_buffered: bool) -> Io {
        let ring = if force_buffered {
            tracing::warn!("storage: io_uring disabled by configuration; using the buffered-syscalls fallback (pwrite + fdatasync)");
            None
        } else {
            match IoUring::new(slots.next_power_of_two() as u32) {
                Ok(ring) => Some(ring),
                Err(error) => {
                    tracing::warn!(%error, "storage: io_uring refused by the kernel; using the buffered-syscalls fallback (pwrite + fdatasync)");
                    None
                }
            }
        };
        let buffers = (0..slots).map(|_| None).collect();
        let mut io = Io {
            ring,
            ready: VecDeque::new(),
            buffers,
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

    /// Requests submitted whose completion has not been reaped yet.
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
        push_entries(ring, &[entry]);
        self.unsubmitted += 1;
    }

    /// Queues `request` over `buffer` as `user_data`. The buffer comes back with the completion.
    pub fn push(
        &mut self,
        user_data: usize,
        request: Request,
        buffer: IoBuffer,
    ) -> Result<(), PushError> {
        let ptr = self.hold(user_data, request, buffer)?;
        self.in_flight += 1;
        let Some(ring) = self.ring.as_mut() else {
            let result = execute_now(request, ptr);
            self.ready.push_back(IoCompletion {
                user_data: user_data as u64,
                result,
            });
            return Ok(());
        };
        push_entries(ring, &[entry(request, ptr, user_data)]);
        self.unsubmitted += 1;
        Ok(())
    }

    /// Queues `request` and, linked behind it, an fdatasync of the same file as
    /// `sync_user_data`: the kernel starts the fdatasync only after `request` transferred its
    /// whole length, and completes it with -ECANCELED otherwise. One submission: no round trip
    /// between the two, and nothing else can slip between them.
    pub fn push_then_fdatasync(
        &mut self,
        user_data: usize,
        request: Request,
        buffer: IoBuffer,
        sync_user_data: usize,
    ) -> Result<(), PushError> {
        if user_data == sync_user_data
            || self.buffers.get(sync_user_data).is_none_or(Option::is_some)
        {
            return Err(PushError::SlotBusy(buffer));
        }
        let ptr = self.hold(user_data, request, buffer)?;
        self.buffers[sync_user_data] = Some(IoBuffer::None);
        let (then, then_user_data) = (Request::Fdatasync { fd: request.fd() }, sync_user_data);
        self.in_flight += 2;
        let Some(ring) = self.ring.as_mut() else {
            let result = execute_now(request, ptr);
            let completed_in_full = usize::try_from(result).is_ok_and(|n| n == request.len());
            let then_result = if completed_in_full {
                execute_now(then, std::ptr::null_mut())
            } else {
                -libc::ECANCELED
            };
            for (user_data, result) in [(user_data, result), (then_user_data, then_result)] {
                self.ready.push_back(IoCompletion {
                    user_data: user_data as u64,
                    result,
                });
            }
            return Ok(());
        };
        let first = entry(request, ptr, user_data).flags(squeue::Flags::IO_LINK);
        let second = entry(then, std::ptr::null_mut(), then_user_data);
        push_entries(ring, &[first, second]);
        self.unsubmitted += 2;
        Ok(())
    }

    /// Stores `buffer` as the memory of request `user_data` after checking that the slot is free
    /// and the buffer covers the request; returns the memory's start.
    fn hold(
        &mut self,
        user_data: usize,
        request: Request,
        buffer: IoBuffer,
    ) -> Result<*mut u8, PushError> {
        if self.buffers.get(user_data).is_none_or(Option::is_some) {
            return Err(PushError::SlotBusy(buffer));
        }
        let len = request.len();
        let slot = &mut self.buffers[user_data];
        let (ptr, available) = slot.insert(buffer).region();
        if len > available || len > u32::MAX as usize {
            let buffer = slot.take().unwrap_or(IoBuffer::None);
            return Err(PushError::BufferTooSmall(buffer));
        }
        Ok(ptr)
    }

    /// Whether completions are waiting to be reaped (cheap: no system call).
    pub fn has_completions(&mut self) -> bool {
        !self.ready.is_empty()
            || self
                .ring
                .as_mut()
                .is_some_and(|ring| !ring.completion().is_empty())
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
            Err(error) if matches!(error.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR)) => {
                self.unsubmitted = 0
            }
            Err(error) => tracing::warn!(%error, "storage: io_uring wait failed"),
        }
    }

    /// Moves completions, with their buffers, into `out`; handles the wakeup poll internally.
    pub fn reap(&mut self, out: &mut Vec<(IoCompletion, IoBuffer)>) {
        let mut done: Vec<IoCompletion> = self.ready.drain(..).collect();
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
                done.push(IoCompletion {
                    user_data: cqe.user_data(),
                    result: cqe.result(),
                });
            }
        }
        for completion in done {
            let buffer = self
                .buffers
                .get_mut(completion.user_data as usize)
                .and_then(Option::take);
            let Some(buffer) = buffer else {
                tracing::error!(
                    user_data = completion.user_data,
                    "storage: completion for an unknown request"
                );
                continue;
            };
            self.in_flight -= 1;
            out.push((completion, buffer));
        }
        if rearm {
            self.arm_wakeup();
        }
    }
}

impl Drop for Io {
    /// The kernel may still use buffers of in-flight requests: wait for them, and leak the
    /// buffers if that takes implausibly long (freeing them could corrupt memory).
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut sink = Vec::new();
        while self.in_flight > 0 && std::time::Instant::now() < deadline {
            self.wait(Duration::from_millis(10));
            self.reap(&mut sink);
            sink.clear();
        }
        if self.in_flight > 0 {
            tracing::error!(
                in_flight = self.in_flight,
                "storage: I/O still in flight at shutdown; leaking its buffers"
            );
            std::mem::forget(std::mem::take(&mut self.buffers));
        }
    }
}

/// The submission entry of `request` over memory starting at `ptr`, as `user_data`.
fn entry(request: Request, ptr: *mut u8, user_data: usize) -> squeue::Entry {
    match request {
        Request::Write {
            fd,
            offset,
            len,
            dsync,
        } => {
            let flags = if dsync { libc::RWF_DSYNC } else { 0 };
            opcode::Write::new(types::Fd(fd), ptr, len as u32)
                .offset(offset)
                .rw_flags(flags)
                .build()
        }
        Request::Read { fd, offset, len } => opcode::Read::new(types::Fd(fd), ptr, len as u32)
            .offset(offset)
            .build(),
        Request::Fdatasync { fd } => opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build(),
    }
    .user_data(user_data as u64)
}

/// Pushes `entries` together, so a linked pair is never split across two submissions (the
/// kernel would run the second on its own).
fn push_entries(ring: &mut IoUring, entries: &[squeue::Entry]) {
    loop {
        // SAFETY: each entry's memory is an `IoBuffer` stored in `Io::buffers` (heap memory that
        // does not move) until the completion is reaped, or none at all (poll, fsync); its fd
        // is kept open by the partition, which drains its requests before closing files.
        if unsafe { ring.submission().push_multiple(entries) }.is_ok() {
            return;
        }
        // The submission queue is full: hand it to the kernel and retry (bounded: the ring has
        // at least as many entries as there are request slots).
        let _ = ring.submit();
    }
}

fn drain_eventfd(fd: RawFd) {
    let mut value = 0u64;
    // SAFETY: reads 8 bytes into a local u64; the eventfd is the caller's and stays open.
    let _ = unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
}

/// The buffered fallback: performs `request` with plain syscalls over `ptr` (checked by
/// `Io::push` to cover the request's length) and returns the kernel-style result.
fn execute_now(request: Request, ptr: *mut u8) -> i32 {
    let result = match request {
        Request::Write {
            fd,
            offset,
            len,
            dsync,
        } => {
            let iov = libc::iovec {
                iov_base: ptr.cast(),
                iov_len: len,
            };
            let flags = if dsync { libc::RWF_DSYNC } else { 0 };
            // SAFETY: ptr..ptr+len lies in the buffer `Io::push` holds for this request.
            unsafe { libc::pwritev2(fd, &iov, 1, offset as i64, flags) as i64 }
        }
        Request::Read { fd, offset, len } => {
            // SAFETY: ptr..ptr+len lies in the buffer `Io::push` holds, used by no one else.
            unsafe { libc::pread(fd, ptr.cast(), len, offset as i64) as i64 }
        }
        // SAFETY: fdatasync takes only a descriptor.
        Request::Fdatasync { fd } => unsafe { libc::fdatasync(fd) as i64 },
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

/// Reserves `len_bytes` for `file` so appends do not allocate blocks on the hot path, and makes
/// the new size durable: O_DSYNC writes into the reserved range then need no inode update to be
/// readable after a crash. Filesystems without fallocate (EOPNOTSUPP) are left as they are.
pub fn preallocate(file: &File, len_bytes: u64) -> io::Result<()> {
    // SAFETY: fallocate takes a descriptor we own and plain integers.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_bytes as i64) };
    if rc == 0 {
        return file.sync_all();
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

/// Removes the directory `dir` with everything in it, and makes the removal durable: once its
/// name is gone from its parent and the parent is fsynced, a power cut cannot bring any of it
/// back (what lies inside need not be synced: nothing reaches it any more).
///
/// # Errors
/// Removing it or syncing its parent failed.
pub fn remove_dir_all_durable(dir: &Path) -> io::Result<()> {
    std::fs::remove_dir_all(dir)?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// Creates `dir` and every missing parent, and makes each new name durable before returning:
/// a directory's name lives in its parent, so after each level is created, top down, its
/// parent is fsynced. Without that, a power cut can take a whole new tree (a partition's
/// `streams/S/topics/T/partitions/P`, a store's `metadata/`) with everything acknowledged in
/// it. Levels that already existed are not synced again. Returns whether anything was created.
///
/// # Errors
/// A level exists but is not a directory, or creating or syncing one failed.
pub fn create_dir_all_durable(dir: &Path) -> io::Result<bool> {
    let mut missing = Vec::new();
    let mut cursor = dir;
    loop {
        match std::fs::metadata(cursor) {
            Ok(metadata) if metadata.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} exists and is not a directory", cursor.display()),
                ))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => missing.push(cursor),
            Err(error) => return Err(error),
        }
        match cursor.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => cursor = parent,
            _ => break,
        }
    }
    for level in missing.iter().rev() {
        match std::fs::create_dir(level) {
            Ok(()) => {}
            // Created meanwhile by someone else: whether its name is durable is unknown, so
            // the parent is synced all the same.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && level.is_dir() => {}
            Err(error) => return Err(error),
        }
        let parent = match level.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(!missing.is_empty())
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
    fn create_dir_all_durable_creates_each_missing_level_once() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("streams/1/topics/2/partitions/3");
        assert!(create_dir_all_durable(&deep).unwrap());
        assert!(deep.is_dir());
        assert!(
            !create_dir_all_durable(&deep).unwrap(),
            "nothing left to create"
        );
        let file = root.path().join("streams/1/file");
        std::fs::write(&file, b"x").unwrap();
        let error = create_dir_all_durable(&file.join("below")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotADirectory);
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

    fn complete(io: &mut Io) -> (IoCompletion, IoBuffer) {
        let mut out = Vec::new();
        while out.is_empty() {
            io.wait(Duration::from_millis(100));
            io.reap(&mut out);
        }
        out.remove(0)
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
        let write = Request::Write {
            fd,
            offset: 0,
            len: 4096,
            dsync: true,
        };
        assert!(io.push(7, write, IoBuffer::Aligned(buf)).is_ok());
        assert!(matches!(
            io.push(7, Request::Fdatasync { fd }, IoBuffer::None),
            Err(PushError::SlotBusy(_))
        ));
        let (done, _) = complete(&mut io);
        assert_eq!(
            done,
            IoCompletion {
                user_data: 7,
                result: 4096
            }
        );
        let too_long = Request::Read {
            fd,
            offset: 0,
            len: 8192,
        };
        assert!(matches!(
            io.push(1, too_long, IoBuffer::Aligned(AlignedBuf::new(4096, 4096))),
            Err(PushError::BufferTooSmall(_))
        ));
        let read = Request::Read {
            fd,
            offset: 0,
            len: 4096,
        };
        assert!(io
            .push(1, read, IoBuffer::Aligned(AlignedBuf::new(4096, 4096)))
            .is_ok());
        let (done, buffer) = complete(&mut io);
        assert_eq!(done.result, 4096);
        let IoBuffer::Aligned(mut back) = buffer else {
            panic!("the read buffer comes back")
        };
        assert_eq!(&back.full_mut()[..5], b"hello");
        assert_eq!(io.in_flight(), 0);
    }

    fn completions(io: &mut Io, count: usize) -> Vec<IoCompletion> {
        let mut out = Vec::new();
        while out.len() < count {
            io.wait(Duration::from_millis(100));
            io.reap(&mut out);
        }
        let mut done: Vec<IoCompletion> = out.into_iter().map(|(c, _)| c).collect();
        done.sort_by_key(|c| c.user_data);
        done
    }

    fn write_then_fdatasync(force_buffered: bool) {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(&dir.path().join("x.log"), true, true).unwrap();
        let mut io = Io::new(8, None, force_buffered);
        let write = |fd| Request::Write {
            fd,
            offset: 0,
            len: 4096,
            dsync: false,
        };
        let buf = || IoBuffer::Aligned(AlignedBuf::new(4096, 4096));
        let fd = log.file.as_raw_fd();
        assert!(matches!(
            io.push_then_fdatasync(2, write(fd), buf(), 2),
            Err(PushError::SlotBusy(_))
        ));
        assert!(io.push_then_fdatasync(2, write(fd), buf(), 3).is_ok());
        let done = completions(&mut io, 2);
        assert_eq!((done[0].user_data, done[0].result), (2, 4096));
        assert_eq!((done[1].user_data, done[1].result), (3, 0));
        // A write that fails cancels the fdatasync behind it.
        let read_only = File::open(dir.path().join("x.log")).unwrap();
        assert!(io
            .push_then_fdatasync(4, write(read_only.as_raw_fd()), buf(), 5)
            .is_ok());
        let done = completions(&mut io, 2);
        assert_eq!(done[0].result, -libc::EBADF);
        assert_eq!(done[1].result, -libc::ECANCELED);
        assert_eq!(io.in_flight(), 0);
    }

    #[test]
    fn uring_write_then_fdatasync_links_the_two() {
        write_then_fdatasync(false);
    }

    #[test]
    fn buffered_write_then_fdatasync_links_the_two() {
        write_then_fdatasync(true);
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
