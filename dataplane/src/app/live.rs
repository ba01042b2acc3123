//! Watches `<data>/runtime/live.toml` (see `riptide_config::live`) by modification time, so
//! live keys apply while the appliance runs.

use riptide_config::live::{live_path, parse, LiveChanges};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Notices new versions of the live file.
pub struct LiveWatcher {
    path: PathBuf,
    seen: Option<SystemTime>,
}

impl LiveWatcher {
    pub fn new(data_dir: &Path) -> LiveWatcher {
        LiveWatcher {
            path: live_path(data_dir),
            seen: None,
        }
    }

    /// The file's overrides when it is new or changed since the last call; `None` otherwise
    /// (also when there is no file).
    pub fn poll(&mut self) -> Option<Result<LiveChanges, String>> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()?;
        if self.seen == Some(modified) {
            return None;
        }
        self.seen = Some(modified);
        Some(
            std::fs::read_to_string(&self.path)
                .map_err(|e| e.to_string())
                .and_then(|text| parse(&text)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watcher_reports_each_version_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("runtime")).unwrap();
        let mut watcher = LiveWatcher::new(dir.path());
        assert!(watcher.poll().is_none());
        std::fs::write(live_path(dir.path()), "[log]\nlevel = \"warn\"\n").unwrap();
        assert_eq!(
            watcher.poll().unwrap().unwrap().log_level.as_deref(),
            Some("warn")
        );
        assert!(watcher.poll().is_none());
    }
}
