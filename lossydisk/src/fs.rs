//! The FUSE side: each request is one call on the shared [`Model`], answered with its result.
//! No file handles are kept (every request names its inode), so an open is only counted.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use crate::model::{Attr, Ino, Kind, Model};

/// How long the kernel may cache names and attributes. Every change goes through this mount's
/// kernel, which keeps its caches in step, so only the cut (after which everything fails)
/// changes the model behind its back.
const ATTR_TTL: Duration = Duration::from_secs(1);
/// Largest write the kernel sends in one request.
const WRITE_SIZE_MAX_BYTES: u32 = 1024 * 1024;
/// What statfs reports: plenty of room, so callers never see a full disk they did not ask for.
const STATFS_BLOCKS: u64 = 1 << 30;
const STATFS_BLOCK_BYTES: u32 = 4096;
const NAME_LEN_MAX: u32 = 255;

pub struct LossyFs {
    model: Arc<Mutex<Model>>,
}

impl LossyFs {
    pub fn new(model: Arc<Mutex<Model>>) -> LossyFs {
        LossyFs { model }
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        // A panic while holding the lock leaves a consistent model (each call is atomic).
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn errno(value: i32) -> Errno {
    Errno::from_i32(value)
}

fn file_attr(attr: Attr, req: &Request) -> FileAttr {
    let (kind, nlink) = match attr.kind {
        Kind::File => (FileType::RegularFile, 1),
        Kind::Dir => (FileType::Directory, 2),
    };
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size_bytes,
        blocks: attr.size_bytes.div_ceil(512),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.mtime,
        crtime: SystemTime::UNIX_EPOCH,
        kind,
        perm: attr.mode as u16,
        nlink,
        uid: req.uid(),
        gid: req.gid(),
        rdev: 0,
        blksize: STATFS_BLOCK_BYTES,
        flags: 0,
    }
}

impl LossyFs {
    fn reply_entry(&self, req: &Request, result: Result<Ino, i32>, reply: ReplyEntry) {
        let model = self.model();
        match result.and_then(|ino| model.attr(ino)) {
            Ok(attr) => reply.entry(&ATTR_TTL, &file_attr(attr, req), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn reply_empty(result: Result<(), i32>, reply: ReplyEmpty) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn count_open(&self, flags: i32) {
        let mut model = self.model();
        model.stats.opens += 1;
        if flags & libc::O_DIRECT != 0 {
            model.stats.direct_opens += 1;
        }
    }
}

impl Filesystem for LossyFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Larger writes mean fewer requests; the kernel clamps to what it supports.
        let _ = config.set_max_write(WRITE_SIZE_MAX_BYTES);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self.model().lookup(parent.0, name);
        self.reply_entry(req, result, reply);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model().attr(ino.0) {
            Ok(attr) => reply.attr(&ATTR_TTL, &file_attr(attr, req)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut model = self.model();
        let mut result = Ok(());
        if let Some(len) = size {
            result = result.and_then(|()| model.set_len(ino.0, len));
        }
        if let Some(mode) = mode {
            result = result.and_then(|()| model.set_mode(ino.0, mode));
        }
        match result.and_then(|()| model.attr(ino.0)) {
            Ok(attr) => reply.attr(&ATTR_TTL, &file_attr(attr, req)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self
            .model()
            .create(parent.0, name, Kind::Dir, mode & !umask);
        self.reply_entry(req, result, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::reply_empty(self.model().remove(parent.0, name, Kind::File), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::reply_empty(self.model().remove(parent.0, name, Kind::Dir), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let result = self
            .model()
            .rename(parent.0, name, new_parent.0, new_name, no_replace);
        Self::reply_empty(result, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if let Err(e) = self.model().attr(ino.0) {
            reply.error(errno(e));
            return;
        }
        self.count_open(flags.0);
        // No FOPEN_DIRECT_IO: O_DIRECT opens then take the kernel's direct path, which (like
        // buffered writes) ends an O_DSYNC/RWF_DSYNC write with an fsync request.
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model().read(ino.0, offset, size as usize) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.model().write(ino.0, offset, data) {
            Ok(written) => reply.written(written as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fsync and fdatasync alike make the bytes and the length durable.
        Self::reply_empty(self.model().sync_file(ino.0), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().attr(ino.0) {
            Ok(attr) if attr.kind == Kind::Dir => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.model().entries(ino.0) {
            Ok(entries) => entries,
            Err(e) => {
                reply.error(errno(e));
                return;
            }
        };
        let dots = [
            (".".into(), ino.0, Kind::Dir),
            ("..".into(), ino.0, Kind::Dir),
        ];
        let all = dots.into_iter().chain(entries);
        for (index, (name, child, kind)) in all.enumerate().skip(offset as usize) {
            let kind = match kind {
                Kind::File => FileType::RegularFile,
                Kind::Dir => FileType::Directory,
            };
            // The offset handed back is where the next readdir resumes.
            if reply.add(INodeNo(child), index as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::reply_empty(self.model().sync_dir(ino.0), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        if self.model().is_frozen() {
            reply.error(Errno::EIO);
            return;
        }
        reply.statfs(
            STATFS_BLOCKS,
            STATFS_BLOCKS,
            STATFS_BLOCKS,
            STATFS_BLOCKS,
            STATFS_BLOCKS,
            STATFS_BLOCK_BYTES,
            NAME_LEN_MAX,
            STATFS_BLOCK_BYTES,
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let created = {
            let mut model = self.model();
            model
                .create(parent.0, name, Kind::File, mode & !umask)
                .and_then(|ino| model.attr(ino))
        };
        match created {
            Ok(attr) => {
                self.count_open(flags);
                let attr = file_attr(attr, req);
                reply.created(
                    &ATTR_TTL,
                    &attr,
                    Generation(0),
                    FileHandle(0),
                    FopenFlags::empty(),
                );
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut model = self.model();
        let result = match mode {
            // Plain allocation extends the length; the space itself is not modelled.
            0 => model.attr(ino.0).and_then(|attr| {
                let end = offset.saturating_add(length);
                if end > attr.size_bytes {
                    model.set_len(ino.0, end)
                } else {
                    Ok(())
                }
            }),
            libc::FALLOC_FL_KEEP_SIZE => model.attr(ino.0).map(drop),
            _ => Err(libc::EOPNOTSUPP),
        };
        Self::reply_empty(result, reply);
    }
}
