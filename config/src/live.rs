//! Live configuration: `<data>/runtime/live.toml`, written by riptide-control (same shape as
//! riptide.toml, only the keys that can change without a restart), watched by modification
//! time and applied while the appliance runs. It is also read at start-up, so overrides survive a
//! dataplane restart under the supervisor.

use crate::SteeringPolicy;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// File name of the live overrides under `<data>/runtime/`.
pub const LIVE_FILE_NAME: &str = "live.toml";

/// Path of the live overrides for a data directory.
pub fn live_path(data_dir: &Path) -> PathBuf {
    data_dir.join("runtime").join(LIVE_FILE_NAME)
}

/// Keys that apply without a restart (the control process refuses the others).
pub const LIVE_KEYS: [&str; 5] = [
    "log.level",
    "retention.cleaner_interval_ms",
    "steering.policy",
    "tls.cert_file",
    "tls.key_file",
];

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct LiveFile {
    log: Option<LiveLog>,
    retention: Option<LiveRetention>,
    steering: Option<LiveSteering>,
    tls: Option<LiveTls>,
}

/// New certificate files: new handshakes use them (the files are also re-read whenever they
/// change on disk, so rotating in place needs no live key).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct LiveTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
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
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

/// Parses the text of a live file.
///
/// # Errors
/// A TOML or schema error (a key that cannot change live is refused by name), or a zero interval.
pub fn parse(text: &str) -> Result<LiveChanges, String> {
    let file: LiveFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let (tls_cert_file, tls_key_file) = file
        .tls
        .map_or((None, None), |tls| (tls.cert_file, tls.key_file));
    let changes = LiveChanges {
        log_level: file.log.and_then(|l| l.level),
        cleaner_interval_ms: file.retention.and_then(|r| r.cleaner_interval_ms),
        steering_policy: file.steering.and_then(|s| s.policy),
        tls_cert_file,
        tls_key_file,
    };
    if changes.cleaner_interval_ms == Some(0) {
        return Err("retention.cleaner_interval_ms must be positive".to_string());
    }
    Ok(changes)
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
        let tls = parse("[tls]\ncert_file = \"/etc/riptide/new.pem\"\n").unwrap();
        assert_eq!(
            tls.tls_cert_file,
            Some(PathBuf::from("/etc/riptide/new.pem"))
        );
        assert!(parse("[tls]\nenabled = false\n").is_err());
        assert!(parse("[retention]\ncleaner_interval_ms = 0\n").is_err());
        assert_eq!(parse("").unwrap(), LiveChanges::default());
    }
}
