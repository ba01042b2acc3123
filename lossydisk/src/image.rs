//! The backing directory: the disk at rest. A mount loads it whole; a power cut or a clean
//! unmount writes back exactly the tree the model says survived.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use crate::model::Tree;

/// Reads the tree under `dir` (regular files and directories only).
///
/// # Errors
/// An unreadable entry, or one that is neither a file nor a directory (`InvalidData`).
pub fn load(dir: &Path) -> io::Result<Tree> {
    let mut entries = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let tree = if kind.is_dir() {
            load(&entry.path())?
        } else if kind.is_file() {
            Tree::File(fs::read(entry.path())?)
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: only files and directories can be stored",
                    entry.path().display()
                ),
            ));
        };
        entries.insert(entry.file_name(), tree);
    }
    Ok(Tree::Dir(entries))
}

/// Makes `dir`, which holds `old` (as loaded at mount), hold `new`: only what differs is
/// written or removed, so a round costs what it changed, not the size of the disk.
///
/// # Errors
/// Any failure removing the old content or writing the new one.
pub fn store(dir: &Path, old: &Tree, new: &Tree) -> io::Result<()> {
    let (Tree::Dir(old), Tree::Dir(new)) = (old, new) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the root of a disk is a directory",
        ));
    };
    store_entries(dir, old, new)
}

fn store_entries(
    dir: &Path,
    old: &BTreeMap<std::ffi::OsString, Tree>,
    new: &BTreeMap<std::ffi::OsString, Tree>,
) -> io::Result<()> {
    for (name, before) in old {
        if !new.contains_key(name) {
            remove(&dir.join(name), before)?;
        }
    }
    for (name, after) in new {
        let path = dir.join(name);
        match (old.get(name), after) {
            (Some(Tree::File(before)), Tree::File(bytes)) if before == bytes => {}
            (Some(Tree::Dir(before)), Tree::Dir(children)) => {
                store_entries(&path, before, children)?
            }
            (before, after) => {
                if let Some(before) = before {
                    remove(&path, before)?;
                }
                match after {
                    Tree::File(bytes) => fs::write(&path, bytes)?,
                    Tree::Dir(children) => {
                        fs::create_dir(&path)?;
                        store_entries(&path, &BTreeMap::new(), children)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn remove(path: &Path, tree: &Tree) -> io::Result<()> {
    match tree {
        Tree::File(_) => fs::remove_file(path),
        Tree::Dir(_) => fs::remove_dir_all(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_round_trips_and_replaces_old_content() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("stale"), b"old").unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/b"), b"b").unwrap();
        fs::write(dir.path().join("a"), b"was a file").unwrap();
        let old = load(dir.path()).unwrap();
        let mut inner = BTreeMap::new();
        inner.insert("b".into(), Tree::File(b"bee".to_vec()));
        inner.insert("empty".into(), Tree::empty_dir());
        let mut root = BTreeMap::new();
        root.insert("a".into(), Tree::File(Vec::new()));
        root.insert("d".into(), Tree::Dir(inner));
        let tree = Tree::Dir(root);
        store(dir.path(), &old, &tree).unwrap();
        assert_eq!(load(dir.path()).unwrap(), tree);
        store(dir.path(), &tree, &Tree::empty_dir()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Tree::empty_dir());
    }
}
