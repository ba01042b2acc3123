//! The statistics snapshot the dataplane publishes for the control process.
//!
//! Counters live in atomics owned by each thread (written by that thread only, read by the
//! publisher); every `STATS_PUBLISH_INTERVAL_MS` the publisher renders a [`StatsSnapshot`] to
//! `<data>/runtime/stats.json` (temp file + rename, so a reader never sees half a file).

use riptide_config::stats::{stats_path, StatsSnapshot};
use std::path::Path;

/// Writes `snapshot` atomically (temp file + rename) to `<data>/runtime/stats.json`.
///
/// # Errors
/// The I/O error of the write or rename.
pub fn write_snapshot(data_dir: &Path, snapshot: &StatsSnapshot) -> std::io::Result<()> {
    let path = stats_path(data_dir);
    let temp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("runtime")).unwrap();
        let snapshot = StatsSnapshot {
            mode: "kernel".into(),
            workers: vec![crate::session::counters::WorkerCounters::default().snapshot(0, Some(1))],
            ..StatsSnapshot::default()
        };
        write_snapshot(dir.path(), &snapshot).unwrap();
        let read: StatsSnapshot =
            serde_json::from_slice(&std::fs::read(stats_path(dir.path())).unwrap()).unwrap();
        assert_eq!(read, snapshot);
    }
}
