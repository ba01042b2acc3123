//! The `[control]` section: riptide-control's control API (health, status, configuration,
//! steering, cluster, `/metrics`). The dataplane never serves it, but it loads the same file, so
//! a control API left open to the network is refused by both.
//!
//! An address that is not a loopback address needs a bearer token (`token` or `token_file`):
//! anyone who reaches the port could otherwise change the configuration, stop the appliance or
//! change the cluster's membership. TLS (`tls_cert_file` + `tls_key_file`) keeps the token and
//! the answers off the wire in plaintext.

use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Shortest bearer token accepted (from `control.token` or the token file): 16 bytes of a
/// random token are out of reach of guessing over the network.
pub const CONTROL_TOKEN_MIN_BYTES: usize = 16;
/// Longest token accepted: it travels in every request's `Authorization` header.
pub const CONTROL_TOKEN_MAX_BYTES: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    pub address: String,
    /// The bearer token every request but `/health` must carry; "" = none.
    pub token: String,
    /// A file holding the token (surrounding whitespace ignored); "" = none. Read by
    /// riptide-control at start-up.
    pub token_file: PathBuf,
    /// PEM certificate chain and private key: the control API serves HTTPS (TLS 1.3) instead of
    /// plain HTTP. Both or neither.
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
}

impl ControlConfig {
    /// The listener address, parsed.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for `control.address`.
    pub fn socket_address(&self) -> Result<SocketAddr, ConfigError> {
        self.address.parse().map_err(|_| {
            ConfigError::invalid(
                "control.address",
                format!(
                    "'{}' is not an ip:port address (e.g. 127.0.0.1:9091)",
                    self.address
                ),
            )
        })
    }

    /// Whether a token is configured (inline or in a file).
    pub fn has_token(&self) -> bool {
        !self.token.is_empty() || !self.token_file.as_os_str().is_empty()
    }

    /// The certificate and key files when TLS is configured.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        (!self.tls_cert_file.as_os_str().is_empty())
            .then_some((self.tls_cert_file.as_path(), self.tls_key_file.as_path()))
    }
}

/// Checks a token's shape, naming `key` (`control.token` or `control.token_file`).
///
/// # Errors
/// [`ConfigError::Invalid`] for a token that is too short, too long, or holds bytes a header
/// cannot carry (anything but visible ASCII).
pub fn validate_token(key: &str, token: &str) -> Result<(), ConfigError> {
    if !(CONTROL_TOKEN_MIN_BYTES..=CONTROL_TOKEN_MAX_BYTES).contains(&token.len()) {
        return Err(ConfigError::invalid(
            key,
            format!(
                "the token must be {CONTROL_TOKEN_MIN_BYTES} to {CONTROL_TOKEN_MAX_BYTES} bytes \
                 long (e.g. `openssl rand -hex 32`)"
            ),
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::invalid(
            key,
            "the token must be visible ASCII without spaces (it travels in an HTTP header)",
        ));
    }
    Ok(())
}

/// Reads and checks the token of `control.token_file`.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `control.token_file` when the file cannot be read or its
/// token is not acceptable.
pub fn read_token_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::invalid(
            "control.token_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let token = text.trim().to_string();
    validate_token("control.token_file", &token)?;
    Ok(token)
}

/// Checks the `[control]` section.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the key: an address that is not ip:port, both token keys set,
/// a malformed token, a non-loopback address without a token, one TLS file without the other.
pub fn validate(control: &ControlConfig) -> Result<(), ConfigError> {
    let address = control.socket_address()?;
    if !control.token.is_empty() && !control.token_file.as_os_str().is_empty() {
        return Err(ConfigError::invalid(
            "control.token_file",
            "set control.token or control.token_file, not both",
        ));
    }
    if !control.token.is_empty() {
        validate_token("control.token", &control.token)?;
    }
    if !address.ip().is_loopback() && !control.has_token() {
        return Err(ConfigError::invalid(
            "control.token",
            format!(
                "control.address {address} is not a loopback address, so the control API needs a \
                 bearer token: set control.token (RIPTIDE_CONTROL_TOKEN) or control.token_file, \
                 or bind control.address to 127.0.0.1"
            ),
        ));
    }
    let cert = !control.tls_cert_file.as_os_str().is_empty();
    let key = !control.tls_key_file.as_os_str().is_empty();
    if cert != key {
        let missing = if cert {
            "control.tls_key_file"
        } else {
            "control.tls_cert_file"
        };
        return Err(ConfigError::invalid(
            missing,
            "control.tls_cert_file and control.tls_key_file go together (PEM files; both or neither)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(address: &str) -> ControlConfig {
        ControlConfig {
            address: address.to_string(),
            token: String::new(),
            token_file: PathBuf::new(),
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
        }
    }

    fn refused_key(config: &ControlConfig) -> String {
        match validate(config) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn loopback_needs_no_token_and_anything_else_does() {
        assert!(validate(&control("127.0.0.1:9091")).is_ok());
        assert!(validate(&control("[::1]:9091")).is_ok());
        for open in ["0.0.0.0:9091", "10.1.2.3:9091", "[::]:9091"] {
            assert_eq!(refused_key(&control(open)), "control.token", "{open}");
        }
        let mut with_token = control("0.0.0.0:9091");
        with_token.token = "0123456789abcdef".into();
        assert!(validate(&with_token).is_ok());
        let mut with_file = control("0.0.0.0:9091");
        with_file.token_file = "/etc/riptide/control.token".into();
        assert!(validate(&with_file).is_ok());
        assert_eq!(refused_key(&control("localhost:9091")), "control.address");
    }

    #[test]
    fn tokens_are_bounded_and_header_safe() {
        let mut config = control("127.0.0.1:9091");
        config.token = "0123456789abcde".into(); // one byte short
        assert_eq!(refused_key(&config), "control.token");
        config.token = "0123456789abcdef".into();
        assert!(validate(&config).is_ok());
        config.token = "0123456789 abcdef".into();
        assert_eq!(refused_key(&config), "control.token");
        config.token = "x".repeat(CONTROL_TOKEN_MAX_BYTES + 1);
        assert_eq!(refused_key(&config), "control.token");
        config.token = "0123456789abcdef".into();
        config.token_file = "/x".into();
        assert_eq!(refused_key(&config), "control.token_file");
    }

    #[test]
    fn tls_files_go_together() {
        let mut config = control("127.0.0.1:9091");
        config.tls_cert_file = "cert.pem".into();
        assert_eq!(refused_key(&config), "control.tls_key_file");
        config.tls_key_file = "key.pem".into();
        assert!(validate(&config).is_ok());
        assert!(config.tls_files().is_some());
        config.tls_cert_file = PathBuf::new();
        assert_eq!(refused_key(&config), "control.tls_cert_file");
    }

    #[test]
    fn a_token_file_is_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "0123456789abcdef0123");
        std::fs::write(&path, "short\n").unwrap();
        assert!(read_token_file(&path)
            .unwrap_err()
            .to_string()
            .contains("control.token_file"));
        let missing = read_token_file(&dir.path().join("absent")).unwrap_err();
        assert!(
            missing.to_string().contains("control.token_file"),
            "{missing}"
        );
    }
}
