//! The disk as plain data, without FUSE: what the running system sees (`current`) and what
//! would survive a power cut (`durable`), for every file and directory.
//!
//! ```text
//! file:       current bytes ── fsync/fdatasync ──► durable bytes
//!             unsynced changes (writes, length changes) in the order they were made
//! directory:  current entries ── fsync of the directory ──► durable entries
//! ```
//!
//! POSIX, not ext4: a created, renamed or removed name is durable only once its directory is
//! fsynced, and a directory's own name only once its parent is. A file's fsync makes its
//! bytes and length durable, never its name. A power cut ([`Model::cut`]) freezes the model
//! (every later operation fails with EIO) and returns the durable tree reachable from the root,
//! with the unsynced changes treated as the [`CutPolicy`] says.
//!
//! Inodes are never reclaimed within one mount (an unlinked file may still be named by its
//! directory's durable entries); a mount lives for one round of a test, so that is bounded.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

pub type Ino = u64;
/// An errno value, as FUSE replies carry it.
pub type Errno = i32;

pub const ROOT_INO: Ino = 1;
/// Sector size of the modelled device: a write is torn only at these boundaries of the file.
pub const SECTOR_BYTES_DEFAULT: usize = 512;
/// Deepest directory nesting the durable tree is walked to (a guard against a rename cycle).
const TREE_DEPTH_MAX: usize = 64;

/// What a power cut does with changes that were not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CutPolicy {
    /// Every unsynced byte and every unsynced directory change is lost (the strict model).
    #[default]
    DropUnsynced,
    /// The unsynced changes reached the disk in the order they were made and the cut fell
    /// inside the last write: only its first sectors landed (a torn write).
    TearLast,
    /// The volatile cache destaged in any order: every sector of every unsynced write, every
    /// unsynced length change, and each directory's unsynced entries landed or not, at random.
    Reorder,
}

/// A directory tree as stored at rest (what the backing directory holds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tree {
    File(Vec<u8>),
    Dir(BTreeMap<OsString, Tree>),
}

impl Tree {
    pub fn empty_dir() -> Tree {
        Tree::Dir(BTreeMap::new())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// One unsynced change of a file, numbered in the order changes were made over the disk.
#[derive(Clone, Debug)]
enum Change {
    Write {
        sequence: u64,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        len: u64,
    },
}

#[derive(Debug)]
struct FileNode {
    current: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Change>,
    /// The name it was created or last renamed under (for [`Options::fsync_ignored`]).
    name: OsString,
}

#[derive(Debug)]
struct DirNode {
    current: BTreeMap<OsString, Ino>,
    durable: BTreeMap<OsString, Ino>,
}

#[derive(Debug)]
enum Body {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Debug)]
struct Node {
    body: Body,
    mode: u32,
    mtime: SystemTime,
}

/// Attributes of a node, for FUSE replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size_bytes: u64,
    pub mode: u32,
    pub mtime: SystemTime,
}

/// What the disk was asked to do, for tests to report which paths they exercised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub opens: u64,
    /// Opens that asked for O_DIRECT (accepted: FUSE serves them without the page cache).
    pub direct_opens: u64,
    pub writes: u64,
    pub bytes_written: u64,
    pub file_syncs: u64,
    /// File syncs acknowledged without effect ([`Options::fsync_ignored`]).
    pub file_syncs_ignored: u64,
    pub dir_syncs: u64,
    /// Directory syncs acknowledged without effect ([`Model::set_dir_syncs_ignored`]).
    pub dir_syncs_ignored: u64,
}

/// Behaviour of the model that tests choose.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A lying disk for mutation tests: fsync of a file whose name this selects is
    /// acknowledged and does nothing — what a build without that fsync would leave on disk.
    pub fsync_ignored: Option<fn(&OsStr) -> bool>,
    /// Tear boundary; [`SECTOR_BYTES_DEFAULT`] when 0.
    pub sector_bytes: usize,
}

/// A small deterministic generator (SplitMix64) for the cut's random choices.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

pub struct Model {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    next_sequence: u64,
    frozen: bool,
    options: Options,
    /// Directory syncs do nothing from the moment this is set (see `set_dir_syncs_ignored`).
    dir_syncs_ignored: bool,
    pub stats: Stats,
}

impl Model {
    /// A model whose current and durable states are both `root` (a disk at rest).
    ///
    /// # Panics
    /// When `root` is a file: a disk's root is a directory.
    pub fn new(root: Tree, options: Options) -> Model {
        let mut model = Model {
            nodes: HashMap::new(),
            next_ino: ROOT_INO + 1,
            next_sequence: 0,
            frozen: false,
            options,
            dir_syncs_ignored: false,
            stats: Stats::default(),
        };
        let Tree::Dir(entries) = root else {
            panic!("the root of a disk is a directory");
        };
        model.load_dir(ROOT_INO, entries);
        model
    }

    fn load_dir(&mut self, ino: Ino, entries: BTreeMap<OsString, Tree>) {
        let mut names = BTreeMap::new();
        for (name, tree) in entries {
            let child = self.next_ino;
            self.next_ino += 1;
            match tree {
                Tree::File(bytes) => {
                    let file = FileNode {
                        current: bytes.clone(),
                        durable: bytes,
                        unsynced: Vec::new(),
                        name: name.clone(),
                    };
                    self.insert(child, Body::File(file), 0o644);
                }
                Tree::Dir(grandchildren) => self.load_dir(child, grandchildren),
            }
            names.insert(name, child);
        }
        let dir = DirNode {
            current: names.clone(),
            durable: names,
        };
        self.insert(ino, Body::Dir(dir), 0o755);
    }

    fn insert(&mut self, ino: Ino, body: Body, mode: u32) {
        let node = Node {
            body,
            mode,
            mtime: SystemTime::now(),
        };
        self.nodes.insert(ino, node);
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    fn live(&self) -> Result<(), Errno> {
        if self.frozen {
            Err(libc::EIO)
        } else {
            Ok(())
        }
    }

    fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.live()?;
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.live()?;
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn dir(&self, ino: Ino) -> Result<&DirNode, Errno> {
        match &self.node(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            Body::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirNode, Errno> {
        let node = self.node_mut(ino)?;
        node.mtime = SystemTime::now();
        match &mut node.body {
            Body::Dir(dir) => Ok(dir),
            Body::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut FileNode, Errno> {
        let node = self.node_mut(ino)?;
        node.mtime = SystemTime::now();
        match &mut node.body {
            Body::File(file) => Ok(file),
            Body::Dir(_) => Err(libc::EISDIR),
        }
    }

    pub fn attr(&self, ino: Ino) -> Result<Attr, Errno> {
        let node = self.node(ino)?;
        let (kind, size_bytes) = match &node.body {
            Body::File(file) => (Kind::File, file.current.len() as u64),
            Body::Dir(dir) => (Kind::Dir, dir.current.len() as u64),
        };
        Ok(Attr {
            ino,
            kind,
            size_bytes,
            mode: node.mode,
            mtime: node.mtime,
        })
    }

    pub fn set_mode(&mut self, ino: Ino, mode: u32) -> Result<(), Errno> {
        self.node_mut(ino)?.mode = mode & 0o7777;
        Ok(())
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, Errno> {
        self.dir(parent)?
            .current
            .get(name)
            .copied()
            .ok_or(libc::ENOENT)
    }

    /// Creates an empty file or directory; its name is durable once `parent` is synced.
    pub fn create(
        &mut self,
        parent: Ino,
        name: &OsStr,
        kind: Kind,
        mode: u32,
    ) -> Result<Ino, Errno> {
        if self.dir(parent)?.current.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let body = match kind {
            Kind::File => Body::File(FileNode {
                current: Vec::new(),
                durable: Vec::new(),
                unsynced: Vec::new(),
                name: name.to_os_string(),
            }),
            Kind::Dir => Body::Dir(DirNode {
                current: BTreeMap::new(),
                durable: BTreeMap::new(),
            }),
        };
        self.insert(ino, body, mode & 0o7777);
        self.dir_mut(parent)?
            .current
            .insert(name.to_os_string(), ino);
        Ok(ino)
    }

    /// Removes a name (`unlink` for files, `rmdir` for empty directories).
    pub fn remove(&mut self, parent: Ino, name: &OsStr, kind: Kind) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.node(ino)?.body, kind) {
            (Body::File(_), Kind::File) => {}
            (Body::Dir(dir), Kind::Dir) if dir.current.is_empty() => {}
            (Body::Dir(_), Kind::Dir) => return Err(libc::ENOTEMPTY),
            (Body::Dir(_), Kind::File) => return Err(libc::EISDIR),
            (Body::File(_), Kind::Dir) => return Err(libc::ENOTDIR),
        }
        self.dir_mut(parent)?.current.remove(name);
        Ok(())
    }

    /// Moves a name; each directory's side of it is durable once that directory is synced.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        let moving_dir = matches!(self.node(ino)?.body, Body::Dir(_));
        match self.dir(new_parent)?.current.get(new_name).copied() {
            Some(target) if target == ino => return Ok(()),
            Some(_) if no_replace => return Err(libc::EEXIST),
            Some(target) => match &self.node(target)?.body {
                Body::Dir(dir) if !moving_dir => {
                    return Err(if dir.current.is_empty() {
                        libc::EISDIR
                    } else {
                        libc::ENOTEMPTY
                    })
                }
                Body::Dir(dir) if !dir.current.is_empty() => return Err(libc::ENOTEMPTY),
                Body::File(_) if moving_dir => return Err(libc::ENOTDIR),
                _ => {}
            },
            None => {}
        }
        self.dir_mut(parent)?.current.remove(name);
        self.dir_mut(new_parent)?
            .current
            .insert(new_name.to_os_string(), ino);
        if let Ok(file) = self.file_mut(ino) {
            file.name = new_name.to_os_string();
        }
        Ok(())
    }

    pub fn read(&self, ino: Ino, offset: u64, size: usize) -> Result<Vec<u8>, Errno> {
        let Body::File(file) = &self.node(ino)?.body else {
            return Err(libc::EISDIR);
        };
        let start = (offset as usize).min(file.current.len());
        let end = start.saturating_add(size).min(file.current.len());
        Ok(file.current[start..end].to_vec())
    }

    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize, Errno> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let file = self.file_mut(ino)?;
        apply_write(&mut file.current, offset, data);
        file.unsynced.push(Change::Write {
            sequence,
            offset,
            data: data.to_vec(),
        });
        self.stats.writes += 1;
        self.stats.bytes_written += data.len() as u64;
        Ok(data.len())
    }

    /// Truncates or extends (with zeroes) the file.
    pub fn set_len(&mut self, ino: Ino, len: u64) -> Result<(), Errno> {
        let file = self.file_mut(ino)?;
        file.current.resize(len as usize, 0);
        file.unsynced.push(Change::SetLen { len });
        Ok(())
    }

    /// fsync/fdatasync of a file: its bytes and length become durable (its name does not).
    pub fn sync_file(&mut self, ino: Ino) -> Result<(), Errno> {
        let selects = self.options.fsync_ignored;
        let file = self.file_mut(ino)?;
        let ignored = selects.is_some_and(|selects| selects(&file.name));
        if ignored {
            self.stats.file_syncs_ignored += 1;
            return Ok(());
        }
        for change in std::mem::take(&mut file.unsynced) {
            match change {
                Change::Write { offset, data, .. } => apply_write(&mut file.durable, offset, &data),
                Change::SetLen { len } => file.durable.resize(len as usize, 0),
            }
        }
        self.stats.file_syncs += 1;
        Ok(())
    }

    /// From now on (`true`), every directory sync is acknowledged and does nothing, until set
    /// back: a cut then falls between a change made durable by a file sync and the directory
    /// changes that follow it, whenever they happen (a test sets it just before the operation
    /// whose second half must not survive).
    pub fn set_dir_syncs_ignored(&mut self, ignored: bool) {
        self.dir_syncs_ignored = ignored;
    }

    /// fsync of a directory: its entries (names created, renamed, removed) become durable.
    pub fn sync_dir(&mut self, ino: Ino) -> Result<(), Errno> {
        if self.dir_syncs_ignored {
            self.dir(ino)?;
            self.stats.dir_syncs_ignored += 1;
            return Ok(());
        }
        let dir = self.dir_mut(ino)?;
        dir.durable = dir.current.clone();
        self.stats.dir_syncs += 1;
        Ok(())
    }

    /// The current entries of a directory, in name order.
    pub fn entries(&self, ino: Ino) -> Result<Vec<(OsString, Ino, Kind)>, Errno> {
        let dir = self.dir(ino)?;
        let mut out = Vec::with_capacity(dir.current.len());
        for (name, child) in &dir.current {
            let kind = match self.node(*child)?.body {
                Body::File(_) => Kind::File,
                Body::Dir(_) => Kind::Dir,
            };
            out.push((name.clone(), *child, kind));
        }
        Ok(out)
    }

    /// The power cut: freezes the model and returns what the disk holds afterwards.
    pub fn cut(&mut self, policy: CutPolicy, seed: u64) -> Tree {
        self.frozen = true;
        let mut cut = Cut {
            policy,
            rng: Rng::new(seed),
            sector_bytes: self.sector_bytes(),
            last_write: self.last_unsynced_write(),
        };
        self.durable_tree(ROOT_INO, &mut cut, 0)
    }

    /// A clean stop (sync, unmount): everything written is on the disk.
    pub fn settle(&mut self) -> Tree {
        self.frozen = true;
        self.current_tree(ROOT_INO, 0)
    }

    fn sector_bytes(&self) -> usize {
        match self.options.sector_bytes {
            0 => SECTOR_BYTES_DEFAULT,
            bytes => bytes,
        }
    }

    fn last_unsynced_write(&self) -> Option<u64> {
        let files = self.nodes.values().filter_map(|node| match &node.body {
            Body::File(file) => Some(file),
            Body::Dir(_) => None,
        });
        files
            .flat_map(|file| file.unsynced.iter())
            .filter_map(|change| match change {
                Change::Write { sequence, .. } => Some(*sequence),
                Change::SetLen { .. } => None,
            })
            .max()
    }

    fn durable_tree(&self, ino: Ino, cut: &mut Cut, depth: usize) -> Tree {
        match self.nodes.get(&ino).map(|node| &node.body) {
            Some(Body::File(file)) => Tree::File(cut.file(file)),
            Some(Body::Dir(dir)) if depth < TREE_DEPTH_MAX => {
                let entries = if cut.dir_landed() {
                    &dir.current
                } else {
                    &dir.durable
                };
                let children = entries
                    .iter()
                    .map(|(name, child)| (name.clone(), self.durable_tree(*child, cut, depth + 1)))
                    .collect();
                Tree::Dir(children)
            }
            Some(Body::Dir(_)) | None => Tree::empty_dir(),
        }
    }

    fn current_tree(&self, ino: Ino, depth: usize) -> Tree {
        match self.nodes.get(&ino).map(|node| &node.body) {
            Some(Body::File(file)) => Tree::File(file.current.clone()),
            Some(Body::Dir(dir)) if depth < TREE_DEPTH_MAX => Tree::Dir(
                dir.current
                    .iter()
                    .map(|(name, child)| (name.clone(), self.current_tree(*child, depth + 1)))
                    .collect(),
            ),
            Some(Body::Dir(_)) | None => Tree::empty_dir(),
        }
    }
}

/// The random choices of one power cut.
struct Cut {
    policy: CutPolicy,
    rng: Rng,
    sector_bytes: usize,
    last_write: Option<u64>,
}

impl Cut {
    /// Whether a directory's unsynced entries reached the disk.
    fn dir_landed(&mut self) -> bool {
        match self.policy {
            CutPolicy::DropUnsynced => false,
            CutPolicy::TearLast => true,
            CutPolicy::Reorder => self.rng.coin(),
        }
    }

    /// A file's bytes after the cut: the durable ones, plus what of the unsynced changes landed.
    fn file(&mut self, file: &FileNode) -> Vec<u8> {
        let mut bytes = file.durable.clone();
        for change in &file.unsynced {
            let sectors = match change {
                Change::Write { offset, data, .. } => {
                    sector_count(*offset, data.len(), self.sector_bytes)
                }
                Change::SetLen { .. } => 1,
            };
            match self.policy {
                CutPolicy::DropUnsynced => return bytes,
                CutPolicy::TearLast => {
                    let torn = matches!(change, Change::Write { sequence, .. } if Some(*sequence) == self.last_write);
                    // A torn write misses at least its last sector.
                    let kept = if torn {
                        self.rng.below(sectors as u64) as usize
                    } else {
                        sectors
                    };
                    apply_change(&mut bytes, change, self.sector_bytes, |sector| {
                        sector < kept
                    });
                }
                CutPolicy::Reorder => {
                    let landed: Vec<bool> = (0..sectors).map(|_| self.rng.coin()).collect();
                    apply_change(&mut bytes, change, self.sector_bytes, |sector| {
                        landed[sector]
                    });
                }
            }
        }
        bytes
    }
}

/// Sectors (of the file's own sector grid) that a write of `len` bytes at `offset` touches.
fn sector_count(offset: u64, len: usize, sector_bytes: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let first = offset / sector_bytes as u64;
    let last = (offset + len as u64 - 1) / sector_bytes as u64;
    (last - first + 1) as usize
}

fn apply_write(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[offset as usize..end].copy_from_slice(data);
}

/// Applies the sectors of `change` (on a grid of `sector_bytes` over the file) for which
/// `landed(sector index)` is true; a length change counts as one sector. A sector that lands
/// past the end extends the file, with zeroes in any gap.
fn apply_change(
    bytes: &mut Vec<u8>,
    change: &Change,
    sector_bytes: usize,
    landed: impl Fn(usize) -> bool,
) {
    match change {
        Change::SetLen { len } => {
            if landed(0) {
                bytes.resize(*len as usize, 0);
            }
        }
        Change::Write { offset, data, .. } => {
            let mut position = *offset;
            let mut rest = data.as_slice();
            let mut sector = 0;
            while !rest.is_empty() {
                let to_boundary = sector_bytes - (position % sector_bytes as u64) as usize;
                let (piece, tail) = rest.split_at(to_boundary.min(rest.len()));
                if landed(sector) {
                    apply_write(bytes, position, piece);
                }
                position += piece.len() as u64;
                rest = tail;
                sector += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Model {
        Model::new(Tree::empty_dir(), Options::default())
    }

    fn name(text: &str) -> &OsStr {
        OsStr::new(text)
    }

    /// The bytes of `path` (names separated by '/') in a tree, if it is a file there.
    fn file_in(tree: &Tree, path: &str) -> Option<Vec<u8>> {
        let mut node = tree;
        for part in path.split('/') {
            let Tree::Dir(entries) = node else {
                return None;
            };
            node = entries.get(OsStr::new(part))?;
        }
        match node {
            Tree::File(bytes) => Some(bytes.clone()),
            Tree::Dir(_) => None,
        }
    }

    /// A model holding a durable file `f` with `synced` bytes.
    fn with_durable_file(synced: &[u8]) -> (Model, Ino) {
        let mut model = empty();
        let ino = model
            .create(ROOT_INO, name("f"), Kind::File, 0o644)
            .unwrap();
        model.write(ino, 0, synced).unwrap();
        model.sync_file(ino).unwrap();
        model.sync_dir(ROOT_INO).unwrap();
        (model, ino)
    }

    #[test]
    fn unsynced_writes_are_lost_and_synced_ones_kept() {
        let (mut model, ino) = with_durable_file(b"durable");
        model.write(ino, 7, b"+volatile").unwrap();
        model.set_len(ino, 3).unwrap();
        assert_eq!(model.read(ino, 0, 100).unwrap(), b"dur");
        let tree = model.cut(CutPolicy::DropUnsynced, 1);
        assert_eq!(file_in(&tree, "f").unwrap(), b"durable");
        assert_eq!(
            model.read(ino, 0, 1),
            Err(libc::EIO),
            "frozen after the cut"
        );
    }

    #[test]
    fn a_length_change_is_durable_with_the_next_sync() {
        let (mut model, ino) = with_durable_file(b"0123456789");
        model.set_len(ino, 4).unwrap();
        model.write(ino, 6, b"x").unwrap();
        model.sync_file(ino).unwrap();
        let tree = model.cut(CutPolicy::DropUnsynced, 1);
        assert_eq!(file_in(&tree, "f").unwrap(), b"0123\0\0x");
    }

    #[test]
    fn a_new_name_needs_its_directory_synced() {
        let mut model = empty();
        let ino = model
            .create(ROOT_INO, name("f"), Kind::File, 0o644)
            .unwrap();
        model.write(ino, 0, b"data").unwrap();
        model.sync_file(ino).unwrap();
        assert_eq!(file_in(&model.cut(CutPolicy::DropUnsynced, 1), "f"), None);

        let mut model = empty();
        let ino = model
            .create(ROOT_INO, name("f"), Kind::File, 0o644)
            .unwrap();
        model.write(ino, 0, b"data").unwrap();
        model.sync_dir(ROOT_INO).unwrap();
        let tree = model.cut(CutPolicy::DropUnsynced, 1);
        assert_eq!(
            file_in(&tree, "f").unwrap(),
            b"",
            "named, but its bytes were never synced"
        );
    }

    #[test]
    fn new_directories_need_every_parent_synced_level_by_level() {
        let build = |sync_levels: &[&str]| {
            let mut model = empty();
            let a = model.create(ROOT_INO, name("a"), Kind::Dir, 0o755).unwrap();
            let b = model.create(a, name("b"), Kind::Dir, 0o755).unwrap();
            let f = model.create(b, name("f"), Kind::File, 0o644).unwrap();
            model.write(f, 0, b"x").unwrap();
            model.sync_file(f).unwrap();
            for level in sync_levels {
                let ino = match *level {
                    "root" => ROOT_INO,
                    "a" => a,
                    _ => b,
                };
                model.sync_dir(ino).unwrap();
            }
            file_in(&model.cut(CutPolicy::DropUnsynced, 1), "a/b/f")
        };
        assert_eq!(build(&["b"]), None, "only the leaf synced");
        assert_eq!(build(&["b", "a"]), None, "the root never learned of a");
        assert_eq!(build(&["b", "a", "root"]).unwrap(), b"x");
    }

    #[test]
    fn a_removal_needs_its_directory_synced() {
        let (mut model, _) = with_durable_file(b"kept");
        model.remove(ROOT_INO, name("f"), Kind::File).unwrap();
        assert_eq!(model.lookup(ROOT_INO, name("f")), Err(libc::ENOENT));
        assert_eq!(
            file_in(&model.cut(CutPolicy::DropUnsynced, 1), "f").unwrap(),
            b"kept"
        );

        let (mut model, _) = with_durable_file(b"gone");
        model.remove(ROOT_INO, name("f"), Kind::File).unwrap();
        model.sync_dir(ROOT_INO).unwrap();
        assert_eq!(file_in(&model.cut(CutPolicy::DropUnsynced, 1), "f"), None);
    }

    #[test]
    fn ignored_directory_syncs_leave_a_removal_unsynced_but_not_a_file_sync() {
        let (mut model, ino) = with_durable_file(b"old");
        model.set_dir_syncs_ignored(true);
        model.write(ino, 0, b"new").unwrap();
        model.sync_file(ino).unwrap();
        model.remove(ROOT_INO, name("f"), Kind::File).unwrap();
        model.sync_dir(ROOT_INO).unwrap();
        assert_eq!(model.stats.dir_syncs_ignored, 1);
        // The removal is lost with the cut; the file's synced bytes are not.
        assert_eq!(
            file_in(&model.cut(CutPolicy::DropUnsynced, 1), "f").unwrap(),
            b"new"
        );
    }

    #[test]
    fn a_rename_is_durable_per_directory() {
        let (mut model, ino) = with_durable_file(b"v1");
        let tmp = model
            .create(ROOT_INO, name("f.tmp"), Kind::File, 0o644)
            .unwrap();
        model.write(tmp, 0, b"v2").unwrap();
        model.sync_file(tmp).unwrap();
        model
            .rename(ROOT_INO, name("f.tmp"), ROOT_INO, name("f"), false)
            .unwrap();
        assert_eq!(model.lookup(ROOT_INO, name("f")).unwrap(), tmp);
        assert_ne!(tmp, ino);
        let tree = model.cut(CutPolicy::DropUnsynced, 1);
        assert_eq!(
            file_in(&tree, "f").unwrap(),
            b"v1",
            "rename not synced: old file"
        );

        let (mut model, _) = with_durable_file(b"v1");
        let tmp = model
            .create(ROOT_INO, name("f.tmp"), Kind::File, 0o644)
            .unwrap();
        model.write(tmp, 0, b"v2").unwrap();
        model.sync_file(tmp).unwrap();
        model
            .rename(ROOT_INO, name("f.tmp"), ROOT_INO, name("f"), false)
            .unwrap();
        model.sync_dir(ROOT_INO).unwrap();
        let tree = model.cut(CutPolicy::DropUnsynced, 1);
        assert_eq!(file_in(&tree, "f").unwrap(), b"v2");
        assert_eq!(file_in(&tree, "f.tmp"), None);
    }

    #[test]
    fn rename_follows_posix_errors() {
        let mut model = empty();
        let d = model.create(ROOT_INO, name("d"), Kind::Dir, 0o755).unwrap();
        model.create(d, name("inner"), Kind::File, 0o644).unwrap();
        model
            .create(ROOT_INO, name("f"), Kind::File, 0o644)
            .unwrap();
        model
            .create(ROOT_INO, name("g"), Kind::File, 0o644)
            .unwrap();
        assert_eq!(
            model.rename(ROOT_INO, name("f"), ROOT_INO, name("g"), true),
            Err(libc::EEXIST)
        );
        assert_eq!(
            model.rename(ROOT_INO, name("f"), ROOT_INO, name("d"), false),
            Err(libc::ENOTEMPTY)
        );
        assert_eq!(
            model.rename(ROOT_INO, name("d"), ROOT_INO, name("f"), false),
            Err(libc::ENOTDIR)
        );
        assert_eq!(
            model.remove(ROOT_INO, name("d"), Kind::Dir),
            Err(libc::ENOTEMPTY)
        );
        assert_eq!(
            model.create(ROOT_INO, name("f"), Kind::File, 0o644),
            Err(libc::EEXIST)
        );
        model
            .rename(ROOT_INO, name("f"), ROOT_INO, name("g"), false)
            .unwrap();
        assert_eq!(model.entries(ROOT_INO).unwrap().len(), 2);
    }

    #[test]
    fn tear_last_keeps_earlier_unsynced_writes_and_a_sector_prefix_of_the_last() {
        let synced = vec![b's'; 1000];
        for seed in 0..64 {
            let (mut model, ino) = with_durable_file(&synced);
            model.write(ino, 1000, &[b'a'; 100]).unwrap();
            // 3000 bytes at 1100: pieces end at 1536, 2048, 2560, 3072, 3584, 4096 and 4100.
            model.write(ino, 1100, &[b'b'; 3000]).unwrap();
            let bytes = file_in(&model.cut(CutPolicy::TearLast, seed), "f").unwrap();
            assert_eq!(&bytes[..1000], &synced[..]);
            assert_eq!(
                &bytes[1000..1100],
                &[b'a'; 100][..],
                "earlier write landed whole"
            );
            let landed = bytes.len() - 1100;
            let boundaries = [0, 436, 948, 1460, 1972, 2484, 2996];
            assert!(
                boundaries.contains(&landed),
                "seed {seed}: torn at {landed}, not a sector boundary"
            );
            assert!(bytes[1100..].iter().all(|b| *b == b'b'));
        }
    }

    #[test]
    fn reorder_lands_any_subset_of_unsynced_sectors_and_never_touches_synced_bytes() {
        let mut seen_partial = false;
        for seed in 0..64 {
            let (mut model, ino) = with_durable_file(&[b's'; 512]);
            model.write(ino, 1024, &[b'x'; 2048]).unwrap();
            let bytes = file_in(&model.cut(CutPolicy::Reorder, seed), "f").unwrap();
            assert_eq!(&bytes[..512], &[b's'; 512][..]);
            let sectors: Vec<bool> = (2..6)
                .map(|sector| bytes.get(sector * 512).is_some_and(|b| *b == b'x'))
                .collect();
            seen_partial |= sectors.contains(&true) && sectors.contains(&false);
            for (index, landed) in sectors.iter().enumerate() {
                let range = (2 + index) * 512..(3 + index) * 512;
                if *landed {
                    assert!(bytes[range].iter().all(|b| *b == b'x'));
                } else if let Some(piece) = bytes.get(range) {
                    assert!(
                        piece.iter().all(|b| *b == 0),
                        "seed {seed}: a hole reads as zeroes"
                    );
                }
            }
        }
        assert!(
            seen_partial,
            "64 seeds never landed a strict subset of the sectors"
        );
    }

    #[test]
    fn an_ignored_file_acknowledges_fsync_without_effect() {
        let options = Options {
            fsync_ignored: Some(|name| name.as_encoded_bytes().ends_with(b".log")),
            ..Options::default()
        };
        let mut model = Model::new(Tree::empty_dir(), options);
        let log = model
            .create(ROOT_INO, name("0.log"), Kind::File, 0o644)
            .unwrap();
        let index = model
            .create(ROOT_INO, name("0.index"), Kind::File, 0o644)
            .unwrap();
        for ino in [log, index] {
            model.write(ino, 0, b"bytes").unwrap();
            model.sync_file(ino).unwrap();
        }
        model.sync_dir(ROOT_INO).unwrap();
        assert_eq!(
            (model.stats.file_syncs, model.stats.file_syncs_ignored),
            (1, 1)
        );
        let tree = model.cut(CutPolicy::DropUnsynced, 1);
        assert_eq!(file_in(&tree, "0.log").unwrap(), b"");
        assert_eq!(file_in(&tree, "0.index").unwrap(), b"bytes");
    }

    #[test]
    fn a_loaded_tree_is_durable_and_settle_returns_the_current_state() {
        let (mut model, ino) = with_durable_file(b"one");
        let tree = model.cut(CutPolicy::DropUnsynced, 1);
        let mut again = Model::new(tree.clone(), Options::default());
        let f = again.lookup(ROOT_INO, name("f")).unwrap();
        assert_eq!(again.cut(CutPolicy::DropUnsynced, 1), tree);
        let mut third = Model::new(tree, Options::default());
        third.write(f, 3, b"+two").unwrap();
        assert_eq!(file_in(&third.settle(), "f").unwrap(), b"one+two");
        let _ = ino;
    }
}
