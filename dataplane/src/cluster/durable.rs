//! Small files the cluster keeps whole: written to a temporary file, synced, renamed over the
//! old one and the directory synced, so a crash leaves the old or the new content, never half.
//! Content is postcard with an XxHash3-64 checksum in front.

use riptide_storage::io::sync_dir;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Writes `value` to `path` durably.
///
/// # Errors
/// The I/O error of the write, sync or rename.
pub fn write<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let payload = postcard::to_allocvec(value).map_err(invalid)?;
    let temp = path.with_extension("tmp");
    let mut file = File::create(&temp)?;
    file.write_all(&twox_hash::XxHash3_64::oneshot(&payload).to_le_bytes())?;
    file.write_all(&payload)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Reads what [`write`] wrote; `T::default()` when there is no file yet.
///
/// # Errors
/// An I/O error, or content that does not check (a file [`write`] did not finish is never
/// renamed into place, so this means corruption).
pub fn read<T: DeserializeOwned + Default>(path: &Path) -> io::Result<T> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(T::default()),
        Err(error) => return Err(error),
    };
    let (checksum, payload) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| invalid(format!("{}: too short", path.display())))?;
    if u64::from_le_bytes(*checksum) != twox_hash::XxHash3_64::oneshot(payload) {
        return Err(invalid(format!("{}: checksum mismatch", path.display())));
    }
    postcard::from_bytes(payload).map_err(invalid)
}

fn invalid(error: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_and_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a/b/value");
        riptide_storage::io::create_dir_all_durable(path.parent().expect("parent")).expect("dirs");
        assert_eq!(read::<Option<u64>>(&path).expect("absent"), None);
        write(&path, &Some(42u64)).expect("write");
        assert_eq!(read::<Option<u64>>(&path).expect("read"), Some(42));
        let mut bytes = std::fs::read(&path).expect("bytes");
        *bytes.last_mut().expect("payload") ^= 1;
        std::fs::write(&path, bytes).expect("damage");
        assert!(read::<Option<u64>>(&path).is_err());
    }
}
