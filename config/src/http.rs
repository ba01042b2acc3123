//! The `[http]` section: Iggy's HTTP API and the web console, served by riptide-control as a
//! client of the dataplane (the dataplane never reads this section). Bounds and validation live
//! here; the documented defaults are in `riptide.toml`.

use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Smallest request body limit: a login or a small send still fits.
pub const HTTP_BODY_LIMIT_MIN_BYTES: u64 = 4096;
/// Largest request body limit: a 64 MiB batch as base64 JSON is about 90 MB; a gigabyte is
/// beyond anything one request should hold in the control process's memory.
pub const HTTP_BODY_LIMIT_MAX_BYTES: u64 = 1 << 30;
/// Bounds of the per-request timeout.
pub const HTTP_REQUEST_TIMEOUT_MIN_MS: u64 = 100;
pub const HTTP_REQUEST_TIMEOUT_MAX_MS: u64 = 600_000;
/// Shortest JWT signing secret accepted from the configuration: HS256 keys shorter than the
/// hash output (32 bytes) weaken it.
pub const HTTP_JWT_SECRET_MIN_BYTES: usize = 32;
/// Longest access-token lifetime: a week.
pub const HTTP_JWT_EXPIRY_MAX_S: u64 = 7 * 86_400;
/// Largest tolerated clock difference when checking a token's times.
pub const HTTP_JWT_CLOCK_SKEW_MAX_S: u64 = 300;
/// Most HTTP login sessions held at once.
pub const HTTP_SESSIONS_MAX_LIMIT: u32 = 1_000_000;
/// Most pooled dataplane connections one user may hold.
pub const HTTP_POOL_PER_USER_LIMIT: u32 = 1024;
/// Bounds of the idle time after which a pooled connection is closed.
pub const HTTP_POOL_IDLE_TIMEOUT_MIN_MS: u64 = 1_000;
pub const HTTP_POOL_IDLE_TIMEOUT_MAX_MS: u64 = 3_600_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub enabled: bool,
    pub address: String,
    pub body_limit_bytes: u64,
    pub request_timeout_ms: u64,
    pub cors_allowed_origins: Vec<String>,
    pub jwt_secret: String,
    pub jwt_access_token_expiry_s: u64,
    pub jwt_clock_skew_s: u64,
    pub sessions_max: u32,
    pub pool_connections_per_user_max: u32,
    pub pool_connections_max: u32,
    pub pool_idle_timeout_ms: u64,
    /// PEM certificate chain and key: the API serves HTTPS. Both or neither.
    pub tls_cert_file: std::path::PathBuf,
    pub tls_key_file: std::path::PathBuf,
    /// With `[tls]` on: the CA that signed the dataplane's certificate, so the pool verifies the
    /// dataplane it sends passwords to. Empty: not verified, allowed only for a dataplane on a
    /// loopback or unspecified address (see [`validate_dataplane_tls`]).
    pub dataplane_tls_ca_file: std::path::PathBuf,
    /// The name the dataplane's certificate must carry when it is verified.
    pub dataplane_tls_domain: String,
}

impl HttpConfig {
    /// The certificate and key files when TLS is configured.
    pub fn tls_files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        (!self.tls_cert_file.as_os_str().is_empty())
            .then_some((self.tls_cert_file.as_path(), self.tls_key_file.as_path()))
    }

    /// The listener address, parsed.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for `http.address`.
    pub fn socket_address(&self) -> Result<SocketAddr, ConfigError> {
        self.address.parse().map_err(|_| {
            ConfigError::invalid(
                "http.address",
                format!("'{}' is not an ip:port address", self.address),
            )
        })
    }
}

fn check_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key,
        format!("must be between {min} and {max}"),
    ))
}

/// The pool's bounds, (per user, in total), for a dataplane taking `tcp_connections_max`
/// connections: `pool_connections_max = 0` is half of them, at most [`HTTP_POOL_AUTO_MAX`]; a user
/// never gets more than the total.
pub fn pool_limits(http: &HttpConfig, tcp_connections_max: u32) -> (u32, u32) {
    let total = match http.pool_connections_max {
        0 => (tcp_connections_max / 2).clamp(1, HTTP_POOL_AUTO_MAX),
        explicit => explicit,
    };
    (http.pool_connections_per_user_max.min(total), total)
}

/// The automatic pool bound's ceiling (`pool_connections_max = 0`).
pub const HTTP_POOL_AUTO_MAX: u32 = 256;

/// Checks the `[http]` section; `tcp_connections_max` bounds the pool (its connections count
/// against the dataplane's limit like any client's).
///
/// # Errors
/// [`ConfigError::Invalid`] naming the key.
pub fn validate(http: &HttpConfig, tcp_connections_max: u32) -> Result<(), ConfigError> {
    http.socket_address()?;
    check_range(
        "http.body_limit_bytes",
        http.body_limit_bytes,
        HTTP_BODY_LIMIT_MIN_BYTES,
        HTTP_BODY_LIMIT_MAX_BYTES,
    )?;
    check_range(
        "http.request_timeout_ms",
        http.request_timeout_ms,
        HTTP_REQUEST_TIMEOUT_MIN_MS,
        HTTP_REQUEST_TIMEOUT_MAX_MS,
    )?;
    validate_origins(&http.cors_allowed_origins)?;
    if !http.jwt_secret.is_empty() && http.jwt_secret.len() < HTTP_JWT_SECRET_MIN_BYTES {
        return Err(ConfigError::invalid(
            "http.jwt_secret",
            format!(
                "must be empty (a secret is generated and kept in <path>/http/) or at least \
                 {HTTP_JWT_SECRET_MIN_BYTES} bytes"
            ),
        ));
    }
    check_range(
        "http.jwt_access_token_expiry_s",
        http.jwt_access_token_expiry_s,
        60,
        HTTP_JWT_EXPIRY_MAX_S,
    )?;
    check_range(
        "http.jwt_clock_skew_s",
        http.jwt_clock_skew_s,
        0,
        HTTP_JWT_CLOCK_SKEW_MAX_S,
    )?;
    check_range(
        "http.sessions_max",
        u64::from(http.sessions_max),
        1,
        u64::from(HTTP_SESSIONS_MAX_LIMIT),
    )?;
    check_range(
        "http.pool_connections_per_user_max",
        u64::from(http.pool_connections_per_user_max),
        1,
        u64::from(HTTP_POOL_PER_USER_LIMIT),
    )?;
    // Leave at least half of the dataplane's connections to the other clients; 0 = that bound
    // (at most the default pool), so a small tcp.connections_max needs no second key.
    let pool_limit = u64::from(tcp_connections_max / 2).max(1);
    if http.pool_connections_max != 0
        && !(1..=pool_limit).contains(&u64::from(http.pool_connections_max))
    {
        return Err(ConfigError::invalid(
            "http.pool_connections_max",
            format!("must be between 1 and {pool_limit} (half of tcp.connections_max)"),
        ));
    }
    let cert = !http.tls_cert_file.as_os_str().is_empty();
    let key = !http.tls_key_file.as_os_str().is_empty();
    if cert != key {
        return Err(ConfigError::invalid(
            if cert {
                "http.tls_key_file"
            } else {
                "http.tls_cert_file"
            },
            "http.tls_cert_file and http.tls_key_file go together (PEM files; both or neither)",
        ));
    }
    if http.pool_connections_max != 0
        && http.pool_connections_per_user_max > http.pool_connections_max
    {
        return Err(ConfigError::invalid(
            "http.pool_connections_per_user_max",
            "cannot exceed http.pool_connections_max",
        ));
    }
    check_range(
        "http.pool_idle_timeout_ms",
        http.pool_idle_timeout_ms,
        HTTP_POOL_IDLE_TIMEOUT_MIN_MS,
        HTTP_POOL_IDLE_TIMEOUT_MAX_MS,
    )
}

/// With `[tls]` on, the pool logs in to the dataplane over TLS, sending the caller's password. An
/// unverified certificate is safe only when the connection cannot leave this host: the dataplane
/// at `tcp_address` must be on a loopback or unspecified address (reached over loopback) unless
/// `http.dataplane_tls_ca_file` names the CA to verify it with.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `http.dataplane_tls_ca_file` or `http.dataplane_tls_domain`.
pub fn validate_dataplane_tls(http: &HttpConfig, tcp_address: &str) -> Result<(), ConfigError> {
    if !http.dataplane_tls_ca_file.as_os_str().is_empty() {
        if http.dataplane_tls_domain.is_empty() {
            return Err(ConfigError::invalid(
                "http.dataplane_tls_domain",
                "must name the dataplane's certificate (a DNS name or an IP address) when \
                 http.dataplane_tls_ca_file is set",
            ));
        }
        return Ok(());
    }
    let stays_on_this_host = tcp_address
        .parse::<SocketAddr>()
        .is_ok_and(|address| address.ip().is_loopback() || address.ip().is_unspecified());
    if stays_on_this_host {
        return Ok(());
    }
    Err(ConfigError::invalid(
        "http.dataplane_tls_ca_file",
        format!(
            "the HTTP API logs in to the dataplane at {tcp_address} with its callers' passwords; \
             off loopback it must verify the dataplane's certificate: name the CA that signed \
             tls.cert_file (or set http.enabled = false)"
        ),
    ))
}

/// `["*"]` (any origin), or a list of `scheme://host[:port]` origins; `[]` = same origin only.
fn validate_origins(origins: &[String]) -> Result<(), ConfigError> {
    let key = "http.cors_allowed_origins";
    if origins.iter().any(|o| o == "*") {
        if origins.len() > 1 {
            return Err(ConfigError::invalid(
                key,
                "\"*\" allows any origin and must be the only entry",
            ));
        }
        return Ok(());
    }
    for origin in origins {
        let rest = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let valid = rest.is_some_and(|host| {
            !host.is_empty()
                && !host.contains('/')
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
        if !valid {
            return Err(ConfigError::invalid(
                key,
                format!("'{origin}' is not an origin such as https://console.example.com:8443"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{pool_limits, HTTP_POOL_AUTO_MAX};
    use crate::Config;
    use std::path::Path;

    fn load(section: &str) -> Result<Config, crate::ConfigError> {
        let text = format!("[http]\n{section}");
        Config::load_from(Some((Path::new("x.toml"), &text)), &[])
    }

    fn refusal(section: &str) -> String {
        load(section).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_iggys_address_and_limits() {
        let config = Config::load_from(None, &[]).unwrap();
        assert!(config.http.enabled);
        assert_eq!(config.http.address, "127.0.0.1:3000");
        assert_eq!(config.http.body_limit_bytes, 2_000_000);
        assert_eq!(config.http.jwt_access_token_expiry_s, 3600);
        assert!(config.http.cors_allowed_origins.is_empty());
        assert!(config.http.jwt_secret.is_empty());
    }

    #[test]
    fn the_automatic_pool_bound_follows_tcp_connections_max() {
        let config = Config::load_from(None, &[]).unwrap();
        assert_eq!(pool_limits(&config.http, 10_000), (8, HTTP_POOL_AUTO_MAX));
        assert_eq!(pool_limits(&config.http, 4), (2, 2));
        assert_eq!(pool_limits(&config.http, 1), (1, 1));
        let small = Config::load_from(None, &[("RIPTIDE_TCP_CONNECTIONS_MAX".into(), "4".into())]);
        assert!(small.is_ok(), "{small:?}");
    }

    #[test]
    fn every_bound_names_its_key() {
        for (section, key) in [
            ("address = \"nowhere\"", "http.address"),
            ("body_limit_bytes = 10", "http.body_limit_bytes"),
            ("request_timeout_ms = 1", "http.request_timeout_ms"),
            ("jwt_secret = \"short\"", "http.jwt_secret"),
            (
                "jwt_access_token_expiry_s = 1",
                "http.jwt_access_token_expiry_s",
            ),
            ("jwt_clock_skew_s = 100000", "http.jwt_clock_skew_s"),
            ("sessions_max = 0", "http.sessions_max"),
            (
                "pool_connections_per_user_max = 0",
                "http.pool_connections_per_user_max",
            ),
            ("pool_connections_max = 100000", "http.pool_connections_max"),
            ("pool_idle_timeout_ms = 5", "http.pool_idle_timeout_ms"),
            (
                "pool_connections_max = 4\npool_connections_per_user_max = 8",
                "http.pool_connections_per_user_max",
            ),
        ] {
            let error = refusal(section);
            assert!(error.contains(key), "{section}: {error}");
        }
    }

    #[test]
    fn origins_are_a_wildcard_alone_or_real_origins() {
        assert!(load("cors_allowed_origins = [\"*\"]").is_ok());
        assert!(
            load("cors_allowed_origins = [\"https://a.example:8443\", \"http://[::1]:3000\"]")
                .is_ok()
        );
        for bad in [
            "[\"*\", \"https://a.example\"]",
            "[\"a.example\"]",
            "[\"https://a.example/path\"]",
            "[\"https://\"]",
        ] {
            let error = refusal(&format!("cors_allowed_origins = {bad}"));
            assert!(
                error.contains("http.cors_allowed_origins"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn environment_and_iggy_variable_set_the_address() {
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let config = Config::load_from(None, &env("RIPTIDE_HTTP_ADDRESS", "127.0.0.1:0")).unwrap();
        assert_eq!(config.http.address, "127.0.0.1:0");
        let config = Config::load_from(None, &env("IGGY_HTTP_ADDRESS", "0.0.0.0:3001")).unwrap();
        assert_eq!(config.http.address, "0.0.0.0:3001");
        let config = Config::load_from(None, &env("RIPTIDE_HTTP_ENABLED", "false")).unwrap();
        assert!(!config.http.enabled);
    }

    #[test]
    fn the_secret_is_masked() {
        let secret = "0123456789abcdef0123456789abcdef";
        let config = load(&format!("jwt_secret = \"{secret}\"")).unwrap();
        assert!(!config.to_toml_masked().contains(secret));
        assert_eq!(config.masked().http.jwt_secret, "********");
    }
}
