//! `filesystem_overview.txt`: the data directory walked in Rust (iggy's server runs `ls -la`),
//! depth first in name order, symlinks listed and not followed, bounded in entries.

use std::fmt::Write as _;
use std::path::Path;
use std::time::UNIX_EPOCH;

/// Most entries listed; a data directory with more partitions and segments is cut there.
const LISTED_ENTRIES_MAX: usize = 20_000;
/// Deepest directory level walked below the data directory (partitions sit at level 6).
const DEPTH_MAX: usize = 16;

/// One line per file: kind (`d`, `f`, `l`, `?`), size in bytes, modification time (seconds since
/// the Unix epoch), path relative to the data directory.
pub fn overview(data_dir: &Path) -> String {
    overview_bounded(data_dir, LISTED_ENTRIES_MAX)
}

fn overview_bounded(data_dir: &Path, max_entries: usize) -> String {
    let mut text = format!(
        "data directory: {}\nkind  bytes  modified_unix_s  path\n",
        data_dir.display()
    );
    let mut walk = Walk {
        root: data_dir,
        max_entries,
        listed: 0,
        text: &mut text,
    };
    let complete = walk.dir(data_dir, 0);
    let listed = walk.listed;
    if !complete {
        let _ = writeln!(text, "... listing cut at {max_entries} entries");
    }
    let _ = writeln!(text, "{listed} entries");
    text
}

/// A bounded depth-first listing in progress.
struct Walk<'a> {
    root: &'a Path,
    max_entries: usize,
    listed: usize,
    text: &'a mut String,
}

impl Walk<'_> {
    /// Lists `dir`'s entries and recurses into its directories; `false` once the bound is reached.
    fn dir(&mut self, dir: &Path, depth: usize) -> bool {
        let mut entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(Result::ok).collect::<Vec<_>>(),
            Err(error) => {
                let _ = writeln!(self.text, "!  cannot read {}: {error}", dir.display());
                return true;
            }
        };
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            if self.listed >= self.max_entries {
                return false;
            }
            self.listed += 1;
            let path = entry.path();
            let relative = path.strip_prefix(self.root).unwrap_or(&path);
            // `DirEntry::metadata` does not follow symlinks.
            let metadata = entry.metadata().ok();
            let kind = match &metadata {
                Some(m) if m.is_dir() => 'd',
                Some(m) if m.is_file() => 'f',
                Some(m) if m.file_type().is_symlink() => 'l',
                _ => '?',
            };
            let size = metadata.as_ref().map_or(0, std::fs::Metadata::len);
            let modified = metadata
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let _ = writeln!(
                self.text,
                "{kind} {size:>12} {modified:>11} {}",
                relative.display()
            );
            if kind == 'd' && depth < DEPTH_MAX && !self.dir(&path, depth + 1) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_nested_files_in_order_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let partition = dir.path().join("streams/1/topics/2/partitions/3");
        std::fs::create_dir_all(&partition).unwrap();
        std::fs::write(partition.join("00000000000000000000.log"), b"12345").unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("loop")).unwrap();
        let text = overview(dir.path());
        let partition_line = text
            .lines()
            .position(|l| l.ends_with(" streams/1/topics/2/partitions/3"))
            .unwrap();
        let segment = text
            .lines()
            .position(|l| l.ends_with("partitions/3/00000000000000000000.log"))
            .unwrap();
        assert!(partition_line < segment);
        assert!(text
            .lines()
            .nth(segment)
            .unwrap()
            .starts_with("f            5 "));
        assert!(text
            .lines()
            .any(|l| l.starts_with('l') && l.ends_with(" loop")));
        // `loop` points at `/`: nothing below it is listed.
        assert!(!text.contains("loop/"));
        assert!(text.ends_with("8 entries\n"), "{text}");
    }

    #[test]
    fn the_listing_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        for index in 0..15 {
            std::fs::File::create(dir.path().join(index.to_string())).unwrap();
        }
        let text = overview_bounded(dir.path(), 10);
        assert!(text.contains("listing cut at 10 entries"), "{text}");
        assert!(text.ends_with("\n10 entries\n"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("f ")).count(), 10);
    }
}
