//! `[tls]`: TLS on the binary protocol's TCP listener.
//!
//! TLS 1.3 only: rustls' best-tested path, AEAD suites only (no CBC, no RSA key exchange, nothing
//! to misconfigure), one round trip to the first request, and what the `iggy` SDK's rustls
//! speaks. The files are read and checked by the dataplane at start-up (every error names the
//! key); here only the relations between keys are.

use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Whether the record layer moves into the kernel (kTLS) after the rustls handshake.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum KtlsMode {
    /// kTLS when the kernel offers it, else rustls in userspace (one log line says why).
    #[default]
    Auto,
    /// kTLS or refuse to start.
    On,
    /// rustls in userspace always.
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub enabled: bool,
    /// PEM: the server certificate first, then its intermediates.
    pub cert_file: PathBuf,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM: when set, clients must present a certificate signed by one of these CAs.
    pub client_ca_file: PathBuf,
    pub ktls: KtlsMode,
}

impl TlsConfig {
    pub fn mutual(&self) -> bool {
        !self.client_ca_file.as_os_str().is_empty()
    }
}

/// # Errors
/// [`ConfigError::Invalid`] naming the missing key.
pub fn validate(tls: &TlsConfig) -> Result<(), ConfigError> {
    if !tls.enabled {
        return Ok(());
    }
    for (key, path) in [
        ("tls.cert_file", &tls.cert_file),
        ("tls.key_file", &tls.key_file),
    ] {
        if path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                key,
                "tls.enabled = true needs tls.cert_file and tls.key_file (PEM files; \
                 `riptidectl tls dev-cert --out DIR` writes a development pair)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(enabled: bool, cert: &str, key: &str) -> TlsConfig {
        TlsConfig {
            enabled,
            cert_file: cert.into(),
            key_file: key.into(),
            client_ca_file: PathBuf::new(),
            ktls: KtlsMode::Auto,
        }
    }

    #[test]
    fn enabled_tls_needs_both_files_and_names_the_missing_key() {
        assert!(validate(&tls(false, "", "")).is_ok());
        assert!(validate(&tls(true, "c.pem", "k.pem")).is_ok());
        let error = validate(&tls(true, "", "k.pem")).unwrap_err().to_string();
        assert!(error.contains("tls.cert_file"), "{error}");
        let error = validate(&tls(true, "c.pem", "")).unwrap_err().to_string();
        assert!(error.contains("tls.key_file"), "{error}");
    }
}
