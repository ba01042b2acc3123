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

/// Replaces everything under `dir` with `tree` (a directory).
///
/// # Errors
/// Any failure removing the old content or writing the new one.
pub fn store(dir: &Path, tree: &Tree) -> io::Result<()> {
    let Tree::Dir(entries) = tree else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the root of a disk is a directory",
        ));
    };
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    write_entries(dir, entries)
}

fn write_entries(dir: &Path, entries: &BTreeMap<std::ffi::OsString, Tree>) -> io::Result<()> {
    for (name, tree) in entries {
        let path = dir.join(name);
        match tree {
            Tree::File(bytes) => fs::write(&path, bytes)?,
            Tree::Dir(children) => {
                fs::create_dir(&path)?;
                write_entries(&path, children)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_round_trips_and_replaces_old_content() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("stale"), b"old").unwrap();
        let mut inner = BTreeMap::new();
        inner.insert("b".into(), Tree::File(b"bee".to_vec()));
        inner.insert("empty".into(), Tree::empty_dir());
        let mut root = BTreeMap::new();
        root.insert("a".into(), Tree::File(Vec::new()));
        root.insert("d".into(), Tree::Dir(inner));
        let tree = Tree::Dir(root);
        store(dir.path(), &tree).unwrap();
        assert_eq!(load(dir.path()).unwrap(), tree);
    }
}
