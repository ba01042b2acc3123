//! Live configuration: `<data>/runtime/live.toml`, written by riptide-control (same shape as
//! riptide.toml, only the keys that can change without a restart), watched by modification
//! time and applied while the appliance runs. It is also read at start-up, so overrides survive a
//! dataplane restart under the supervisor.

use crate::config::SteeringPolicy;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// File name of the live overrides under `<data>/runtime/`.
pub const LIVE_FILE_NAME: &str = "live.toml";

/// Keys that apply without a restart (the control process refuses the others).
pub const LIVE_KEYS: [&str; 3] = [
    "log.level",
    "retention.cleaner_interval_ms",
    "steering.policy",
];

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct LiveFile {
    log: Option<LiveLog>,
    retention: Option<LiveRetention>,
    steering: Option<LiveSteering>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct LiveLog {
    level: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct LiveRetention {
    cleaner_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct LiveSteering {
    policy: Option<SteeringPolicy>,
}

/// The overrides a live file holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LiveChanges {
    pub log_level: Option<String>,
    pub cleaner_interval_ms: Option<u64>,
    pub steering_policy: Option<SteeringPolicy>,
}

/// Parses the text of a live file.
///
/// # Errors
/// A TOML or schema error (a key that cannot change live is refused by name), or a zero interval.
pub fn parse(text: &str) -> Result<LiveChanges, String> {
    let file: LiveFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let changes = LiveChanges {
        log_level: file.log.and_then(|l| l.level),
        cleaner_interval_ms: file.retention.and_then(|r| r.cleaner_interval_ms),
        steering_policy: file.steering.and_then(|s| s.policy),
    };
    if changes.cleaner_interval_ms == Some(0) {
        return Err("retention.cleaner_interval_ms must be positive".to_string());
    }
    Ok(changes)
}

/// Notices new versions of the live file.
pub struct LiveWatcher {
    path: PathBuf,
    seen: Option<SystemTime>,
}

impl LiveWatcher {
    pub fn new(data_dir: &Path) -> LiveWatcher {
        LiveWatcher {
            path: data_dir.join("runtime").join(LIVE_FILE_NAME),
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
    fn parses_the_live_keys_and_refuses_the_rest() {
        let changes = parse("[log]\nlevel = \"debug\"\n[retention]\ncleaner_interval_ms = 500\n[steering]\npolicy = \"least_connections\"\n").unwrap();
        assert_eq!(changes.log_level.as_deref(), Some("debug"));
        assert_eq!(changes.cleaner_interval_ms, Some(500));
        assert_eq!(
            changes.steering_policy,
            Some(SteeringPolicy::LeastConnections)
        );
        assert!(parse("[tcp]\naddress = \"0.0.0.0:1\"\n").is_err());
        assert!(parse("[retention]\ncleaner_interval_ms = 0\n").is_err());
        assert_eq!(parse("").unwrap(), LiveChanges::default());
    }

    #[test]
    fn the_watcher_reports_each_version_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("runtime")).unwrap();
        let mut watcher = LiveWatcher::new(dir.path());
        assert!(watcher.poll().is_none());
        std::fs::write(
            dir.path().join("runtime").join(LIVE_FILE_NAME),
            "[log]\nlevel = \"warn\"\n",
        )
        .unwrap();
        assert_eq!(
            watcher.poll().unwrap().unwrap().log_level.as_deref(),
            Some("warn")
        );
        assert!(watcher.poll().is_none());
    }
}
