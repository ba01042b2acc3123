//! Where to connect: flags and environment first, then a named context from
//! `$XDG_CONFIG_HOME/riptide/contexts.toml` (or `~/.config/riptide/contexts.toml`), then defaults.
//!
//! ```toml
//! default = "lab"
//! [contexts.lab]
//! address = "10.77.0.1:8090"
//! control = "127.0.0.1:9091"
//! username = "iggy"
//! password = "iggy"
//! ```

use super::{exit, CliError, ConnectionArgs};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const ADDRESS_DEFAULT: &str = "127.0.0.1:8090";
pub const USERNAME_DEFAULT: &str = "iggy";
pub const PASSWORD_DEFAULT: &str = "iggy";

/// The resolved connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub address: String,
    pub username: String,
    pub password: String,
    pub control: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextFile {
    default: Option<String>,
    #[serde(default)]
    contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Context {
    address: Option<String>,
    username: Option<String>,
    password: Option<String>,
    control: Option<String>,
}

/// The contexts file's path.
pub fn contexts_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("riptide").join("contexts.toml"))
}

fn load_context(name: Option<&str>) -> Result<Context, CliError> {
    let Some(path) = contexts_path() else {
        return Ok(Context::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match name {
                Some(name) => Err(CliError::new(
                    exit::USAGE,
                    format!(
                        "context '{name}' asked for but {} does not exist",
                        path.display()
                    ),
                )),
                None => Ok(Context::default()),
            };
        }
        Err(e) => {
            return Err(CliError::new(
                exit::FAILURE,
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    };
    let file: ContextFile = toml::from_str(&text)
        .map_err(|e| CliError::new(exit::CONFIG, format!("{}: {e}", path.display())))?;
    let Some(name) = name.map(str::to_string).or(file.default.clone()) else {
        return Ok(Context::default());
    };
    file.contexts.get(&name).cloned().ok_or_else(|| {
        let known: Vec<&String> = file.contexts.keys().collect();
        CliError::new(
            exit::USAGE,
            format!(
                "no context '{name}' in {} (known: {known:?})",
                path.display()
            ),
        )
    })
}

fn env_fallback(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// Resolves flags (clap already merged the RIPTIDE_* variables) → IGGY_* variables → context →
/// defaults. The control address defaults to the configuration's default.
///
/// # Errors
/// A named context that does not exist, or an unreadable contexts file.
pub fn resolve(args: &ConnectionArgs) -> Result<Target, CliError> {
    let context = load_context(args.context.as_deref())?;
    let pick =
        |flag: &Option<String>, iggy_env: &[&str], from_context: &Option<String>, default: &str| {
            flag.clone()
                .or_else(|| env_fallback(iggy_env))
                .or_else(|| from_context.clone())
                .unwrap_or_else(|| default.to_string())
        };
    Ok(Target {
        address: pick(
            &args.address,
            &["IGGY_TCP_SERVER_ADDRESS"],
            &context.address,
            ADDRESS_DEFAULT,
        ),
        username: pick(
            &args.username,
            &["IGGY_USERNAME"],
            &context.username,
            USERNAME_DEFAULT,
        ),
        password: pick(
            &args.password,
            &["IGGY_PASSWORD"],
            &context.password,
            PASSWORD_DEFAULT,
        ),
        control: pick(
            &args.control,
            &[],
            &context.control,
            crate::constants::CONTROL_ADDRESS_DEFAULT,
        ),
    })
}
