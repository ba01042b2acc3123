//! Live configuration changes and the runtime override file `<data>/runtime/live.toml`.
//!
//! Only keys the dataplane can apply without a restart are accepted ([`LIVE_KEYS`]); a request
//! naming any other key is refused as a whole with the list of keys that need a restart, so a
//! change is never half applied. Accepted values are checked by the dataplane's own validation,
//! merged into the overrides already in force and written to `live.toml` atomically (temp file +
//! rename). The dataplane watches that file (its modification time) and applies it; it also reads
//! it when it starts, so overrides survive a dataplane restart. riptide-control removes the file
//! when it starts, so a fresh start always begins from riptide.toml.

pub use riptide_config::live::{live_path, LIVE_KEYS};
use riptide_config::Config;
use std::path::{Path, PathBuf};

/// Why a change was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LiveError {
    #[error("the change is neither TOML nor a JSON object: {0}")]
    Syntax(String),
    #[error("a restart is needed for: {}", .0.join(", "))]
    RestartNeeded(Vec<String>),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// Parses a change: a TOML fragment shaped like riptide.toml (`[log]\nlevel = "debug"`), or the
/// same as a JSON object (`{"log": {"level": "debug"}}`), or flat dotted keys in JSON
/// (`{"log.level": "debug"}`).
///
/// # Errors
/// [`LiveError::Syntax`].
pub fn parse_change(body: &str) -> Result<toml::Table, LiveError> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') {
        let json: serde_json::Value =
            serde_json::from_str(body).map_err(|e| LiveError::Syntax(e.to_string()))?;
        let serde_json::Value::Object(object) = json else {
            return Err(LiveError::Syntax("expected a JSON object".to_string()));
        };
        let mut table = toml::Table::new();
        for (key, value) in object {
            let value: toml::Value = serde_json::from_value(value)
                .map_err(|e| LiveError::Syntax(format!("{key}: {e}")))?;
            insert_dotted(&mut table, &key, value)?;
        }
        return Ok(table);
    }
    body.parse::<toml::Table>()
        .map_err(|e| LiveError::Syntax(e.to_string()))
}

fn insert_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), LiveError> {
    match key.split_once('.') {
        None => {
            table.insert(key.to_string(), value);
            Ok(())
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(inner) = entry else {
                return Err(LiveError::Syntax(format!(
                    "`{section}` is both a value and a section"
                )));
            };
            insert_dotted(inner, rest, value)
        }
    }
}

/// Every leaf key of a table, dotted.
pub fn leaf_keys(table: &toml::Table) -> Vec<String> {
    fn walk(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            let full = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) => walk(inner, &full, out),
                _ => out.push(full),
            }
        }
    }
    let mut out = Vec::new();
    walk(table, "", &mut out);
    out
}

fn merge(base: &mut toml::Table, overlay: &toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(base_inner)), toml::Value::Table(overlay_inner)) => {
                merge(base_inner, overlay_inner);
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The result of applying a change: the new effective configuration and the overrides in force.
#[derive(Debug)]
pub struct Applied {
    pub config: Config,
    pub overrides: toml::Table,
    pub keys: Vec<String>,
}

/// Checks a change against the live keys and the configuration's validation, and computes the
/// new configuration and overrides. Writes nothing.
///
/// # Errors
/// [`LiveError::RestartNeeded`] listing the keys that cannot apply live; [`LiveError::Invalid`]
/// naming a key whose value is refused.
pub fn plan_change(
    current: &Config,
    overrides: &toml::Table,
    change: &toml::Table,
) -> Result<Applied, LiveError> {
    let keys = leaf_keys(change);
    if keys.is_empty() {
        return Err(LiveError::Invalid("the change names no key".to_string()));
    }
    let not_live: Vec<String> = keys
        .iter()
        .filter(|k| !LIVE_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    if !not_live.is_empty() {
        return Err(LiveError::RestartNeeded(not_live));
    }
    let mut effective =
        toml::Table::try_from(current).map_err(|e| LiveError::Invalid(e.to_string()))?;
    merge(&mut effective, change);
    let config: Config = toml::Value::Table(effective)
        .try_into()
        .map_err(|e: toml::de::Error| LiveError::Invalid(e.message().to_string()))?;
    config
        .validate()
        .map_err(|e| LiveError::Invalid(e.to_string()))?;
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        return Err(LiveError::Invalid(format!(
            "configuration key `log.level`: '{}' is not a tracing filter: {e}",
            config.log.level
        )));
    }
    let mut new_overrides = overrides.clone();
    merge(&mut new_overrides, change);
    Ok(Applied {
        config,
        overrides: new_overrides,
        keys,
    })
}

/// Writes the overrides to `<data>/runtime/live.toml` (temp file + rename).
///
/// # Errors
/// [`LiveError::Write`].
pub fn write_overrides(data_dir: &Path, overrides: &toml::Table) -> Result<PathBuf, LiveError> {
    let path = live_path(data_dir);
    let write_error = |e: std::io::Error| LiveError::Write {
        path: path.clone(),
        message: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let text = format!(
        "# Runtime overrides written by riptide-control (PUT /config); the dataplane applies them\n\
         # live. Removed when riptide-control starts. Keys: {}\n{}",
        LIVE_KEYS.join(", "),
        toml::to_string(overrides).map_err(|e| LiveError::Invalid(e.to_string()))?
    );
    let temp = path.with_extension("toml.tmp");
    std::fs::write(&temp, text).map_err(write_error)?;
    std::fs::rename(&temp, &path).map_err(write_error)?;
    Ok(path)
}

/// Removes a stale override file (riptide-control start-up).
///
/// # Errors
/// The I/O error, unless the file was simply absent.
pub fn clear_overrides(data_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(live_path(data_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_config() -> Config {
        Config::load_from(None, &[]).unwrap()
    }

    #[test]
    fn toml_json_and_dotted_json_parse_to_the_same_change() {
        let a = parse_change("[log]\nlevel = \"debug\"\n").unwrap();
        let b = parse_change(r#"{"log": {"level": "debug"}}"#).unwrap();
        let c = parse_change(r#"{"log.level": "debug"}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(matches!(parse_change("[log"), Err(LiveError::Syntax(_))));
        assert!(matches!(parse_change("[1, 2]"), Err(LiveError::Syntax(_))));
    }

    #[test]
    fn live_keys_apply_and_merge_with_earlier_overrides() {
        let config = default_config();
        let first = plan_change(
            &config,
            &toml::Table::new(),
            &parse_change("[log]\nlevel = \"debug\"").unwrap(),
        )
        .unwrap();
        assert_eq!(first.config.log.level, "debug");
        let second = plan_change(
            &first.config,
            &first.overrides,
            &parse_change(r#"{"steering.policy": "hash"}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(
            leaf_keys(&second.overrides),
            vec!["log.level", "steering.policy"]
        );
        assert_eq!(second.config.log.level, "debug");
    }

    #[test]
    fn other_keys_need_a_restart_and_nothing_applies() {
        let change =
            parse_change("[log]\nlevel = \"warn\"\n[tcp]\naddress = \"0.0.0.0:1\"\n").unwrap();
        let error = plan_change(&default_config(), &toml::Table::new(), &change).unwrap_err();
        assert_eq!(
            error,
            LiveError::RestartNeeded(vec!["tcp.address".to_string()])
        );
    }

    #[test]
    fn invalid_values_are_refused_with_the_key() {
        let config = default_config();
        let bad_policy = parse_change("[steering]\npolicy = \"random\"").unwrap();
        let error = plan_change(&config, &toml::Table::new(), &bad_policy).unwrap_err();
        assert!(error.to_string().contains("random"), "{error}");
        let bad_interval = parse_change("[retention]\ncleaner_interval_ms = 0").unwrap();
        let error = plan_change(&config, &toml::Table::new(), &bad_interval).unwrap_err();
        assert!(
            error.to_string().contains("retention.cleaner_interval_ms"),
            "{error}"
        );
        let bad_level = parse_change("[log]\nlevel = \"=[\"").unwrap();
        let error = plan_change(&config, &toml::Table::new(), &bad_level).unwrap_err();
        assert!(error.to_string().contains("log.level"), "{error}");
    }

    #[test]
    fn overrides_are_written_atomically_and_read_back_as_toml() {
        let dir = tempfile::tempdir().unwrap();
        let applied = plan_change(
            &default_config(),
            &toml::Table::new(),
            &parse_change("[retention]\ncleaner_interval_ms = 1000").unwrap(),
        )
        .unwrap();
        let path = write_overrides(dir.path(), &applied.overrides).unwrap();
        let back: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        assert_eq!(
            back["retention"]["cleaner_interval_ms"].as_integer(),
            Some(1000)
        );
        clear_overrides(dir.path()).unwrap();
        assert!(!path.exists());
        clear_overrides(dir.path()).unwrap();
    }
}
