//! The control API's bearer token: `Authorization: Bearer <token>` on every request but
//! `GET /health` when `control.token` (or `control.token_file`) is set.
//!
//! `/health` stays open because what probes it — `riptidectl up` waiting for the appliance,
//! systemd, a load balancer's or Kubernetes' liveness check — usually holds no secret; an
//! unauthenticated caller only learns "ok" or "unavailable" (the details are for callers with
//! the token). Everything else (status, configuration, live changes, shutdown, the cluster's
//! membership, `/metrics`) needs the token.

use crate::api::AppState;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ring::hmac;
use riptide_config::{control, Config, ConfigError};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The route that answers without the token.
pub const OPEN_PATH: &str = "/health";

/// The expected token, kept as its HMAC under a key drawn at start-up.
///
/// Comparing the presented token's HMAC with the expected one (ring's `hmac::verify`, constant
/// time) takes the same time wherever the two differ and whatever their lengths, so timing the
/// answers reveals nothing of the token.
pub struct ControlToken {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl ControlToken {
    /// # Errors
    /// The system's random source failed.
    pub fn new(token: &str) -> Result<ControlToken, ring::error::Unspecified> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())?;
        let tag = hmac::sign(&key, token.as_bytes());
        Ok(ControlToken { key, tag })
    }

    /// Whether `presented` is the token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        hmac::verify(&self.key, presented, self.tag.as_ref()).is_ok()
    }

    /// Whether the headers carry `Authorization: Bearer <the token>` (the scheme's case is free,
    /// RFC 7235).
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|presented| self.matches(presented))
    }
}

/// The credentials of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let scheme = b"bearer ";
    if value.len() <= scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
        return None;
    }
    Some(value[scheme.len()..].trim_ascii())
}

/// The token riptide-control enforces: `control.token`, the contents of `control.token_file`,
/// or none.
///
/// # Errors
/// [`ConfigError`] naming `control.token_file` (unreadable, malformed token) or `control.token`
/// (no randomness to key the comparison).
pub fn load_token(config: &Config) -> Result<Option<ControlToken>, ConfigError> {
    let token = if !config.control.token.is_empty() {
        config.control.token.clone()
    } else if !config.control.token_file.as_os_str().is_empty() {
        control::read_token_file(&config.control.token_file)?
    } else {
        return Ok(None);
    };
    ControlToken::new(&token)
        .map(Some)
        .map_err(|_| ConfigError::Invalid {
            key: "control.token".into(),
            message: "cannot draw a random key to compare tokens with".into(),
        })
}

/// Whether the request carried the token (always true when none is configured): set by
/// [`require_token`] for the handlers of open routes.
#[derive(Debug, Clone, Copy)]
pub struct Authorized(pub bool);

/// Middleware: refuses requests without the token (401 with `WWW-Authenticate: Bearer`), except
/// on [`OPEN_PATH`].
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let authorized = state
        .token
        .as_ref()
        .is_none_or(|token| token.authorizes(request.headers()));
    if authorized || request.uri().path() == OPEN_PATH {
        request.extensions_mut().insert(Authorized(authorized));
        return next.run(request).await;
    }
    state.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, "Bearer realm=\"riptide-control\"")],
        Json(serde_json::json!({
            "error": "this control API needs its token: send `Authorization: Bearer <control.token>` \
                      (riptidectl: --control-token, RIPTIDE_CONTROL_TOKEN or the context's control_token)"
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_exact_token_as_a_bearer_credential_passes() {
        let token = ControlToken::new("0123456789abcdef").unwrap();
        assert!(token.authorizes(&headers("Bearer 0123456789abcdef")));
        assert!(token.authorizes(&headers("bearer 0123456789abcdef")));
        assert!(token.authorizes(&headers("BEARER  0123456789abcdef ")));
        for wrong in [
            "Bearer 0123456789abcdeF",
            "Bearer 0123456789abcde",
            "Bearer 0123456789abcdef0",
            "Bearer ",
            "Basic 0123456789abcdef",
            "0123456789abcdef",
            "Bearer0123456789abcdef",
        ] {
            assert!(!token.authorizes(&headers(wrong)), "{wrong}");
        }
        assert!(!token.authorizes(&HeaderMap::new()));
    }

    #[test]
    fn the_token_comes_from_the_key_or_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "fedcba9876543210fedc\n").unwrap();
        let text = format!("[control]\ntoken_file = \"{}\"\n", file.display());
        let config = Config::load_from(Some((std::path::Path::new("x.toml"), &text)), &[]).unwrap();
        let token = load_token(&config).unwrap().expect("a token");
        assert!(token.matches(b"fedcba9876543210fedc"));
        let none = Config::load_from(None, &[]).unwrap();
        assert!(load_token(&none).unwrap().is_none());
        std::fs::remove_file(&file).unwrap();
        let error = load_token(&config).err().expect("refused").to_string();
        assert!(error.contains("control.token_file"), "{error}");
    }
}
