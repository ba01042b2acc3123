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
//!
//! [contexts.east]
//! address = "10.0.0.1:8090"
//! control = "https://appliance-east:9091"   # host:port is http://, or https:// with a CA
//! control_token_file = "~/.config/riptide/east.token"   # or control_token = "..."
//! control_ca_file = "~/.config/riptide/east-ca.pem"     # the CA that signed its certificate
//! tls_ca_file = "~/.config/riptide/east-ca.pem"   # [tls] on the Iggy protocol (implies tls = true)
//! tls_domain = "appliance-east"                   # the name in its certificate (default: host)
//! ```

use super::{exit, CliError, ConnectionArgs};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// The control API's bearer token, if it wants one.
    pub control_token: Option<String>,
    /// The CA certificate(s) to trust for an HTTPS control API (instead of the system's).
    pub control_ca_file: Option<PathBuf>,
    /// TLS on the Iggy protocol (`[tls]` of the appliance).
    pub tls: bool,
    /// The CA that signed the appliance's certificate (else the system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// The name its certificate carries (else the address's host).
    pub tls_domain: Option<String>,
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
    control_token: Option<String>,
    control_token_file: Option<PathBuf>,
    control_ca_file: Option<PathBuf>,
    tls: Option<bool>,
    tls_ca_file: Option<PathBuf>,
    tls_domain: Option<String>,
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

/// `~/` at the start of a path is the home directory (contexts are written by hand).
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// The control token: the flag (or RIPTIDE_CONTROL_TOKEN), else the context's token or the
/// first line of its token file.
fn control_token(args: &ConnectionArgs, context: &Context) -> Result<Option<String>, CliError> {
    if let Some(token) = args.control_token.clone().filter(|t| !t.is_empty()) {
        return Ok(Some(token));
    }
    if let Some(token) = context.control_token.clone() {
        return Ok(Some(token));
    }
    let Some(file) = &context.control_token_file else {
        return Ok(None);
    };
    let path = expand_home(file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::new(
            exit::CONFIG,
            format!("the context's control_token_file {}: {e}", path.display()),
        )
    })?;
    Ok(Some(text.trim().to_string()))
}

/// Resolves flags (clap already merged the RIPTIDE_* variables) → IGGY_* variables → context →
/// defaults. The control address defaults to the configuration's default.
///
/// # Errors
/// A named context that does not exist, an unreadable contexts file or token file.
pub fn resolve(args: &ConnectionArgs) -> Result<Target, CliError> {
    let context = load_context(args.context.as_deref())?;
    let control_token = control_token(args, &context)?;
    let control_ca_file = args
        .control_ca_file
        .clone()
        .or_else(|| context.control_ca_file.as_deref().map(expand_home));
    let tls_ca_file = args
        .tls_ca_file
        .clone()
        .or_else(|| context.tls_ca_file.as_deref().map(expand_home));
    let tls = args.tls || context.tls.unwrap_or(false);
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
        control_token,
        control_ca_file,
        tls: tls || tls_ca_file.is_some(),
        tls_ca_file,
        tls_domain: args.tls_domain.clone().or(context.tls_domain.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_flag_then_the_context_then_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-the-file-0123\n").unwrap();
        let mut args = ConnectionArgs {
            address: None,
            username: None,
            password: None,
            control: None,
            context: None,
            control_token: None,
            control_ca_file: None,
            tls: false,
            tls_ca_file: None,
            tls_domain: None,
        };
        let mut context = Context {
            control_token_file: Some(file),
            ..Context::default()
        };
        assert_eq!(
            control_token(&args, &context).unwrap().as_deref(),
            Some("from-the-file-0123")
        );
        context.control_token = Some("from-the-context-01".into());
        assert_eq!(
            control_token(&args, &context).unwrap().as_deref(),
            Some("from-the-context-01")
        );
        args.control_token = Some("from-the-flag-0123".into());
        assert_eq!(
            control_token(&args, &context).unwrap().as_deref(),
            Some("from-the-flag-0123")
        );
        let missing = Context {
            control_token_file: Some(dir.path().join("absent")),
            ..Context::default()
        };
        args.control_token = None;
        assert!(control_token(&args, &missing).is_err());
        assert_eq!(control_token(&args, &Context::default()).unwrap(), None);
    }
}
