//! Iggy's HTTP API and the web console, on `[http] address`, served by riptide-control as a
//! client of the dataplane.
//!
//! Every request that touches data runs on a pooled TCP connection to the dataplane, logged in
//! as the caller's user with the official SDK's client ([`dataplane`], [`pool`]): the dataplane
//! checks the permissions, and an HTTP send is acknowledged exactly when the TCP send it makes is
//! (durable by default). The dataplane itself stays free of HTTP and of an async runtime.
//!
//! Routes, JSON bodies and answers are Iggy 0.11's (its server's `core/server/src/http`), built
//! from the SDK's own request and answer types:
//!
//! | routes | |
//! |---|---|
//! | `GET /ping`, `POST /users/login`, `POST /users/refresh-token`, `POST /personal-access-tokens/login` | no credential |
//! | `/streams[/{s}[/purge]]`, `.../topics[/{t}[/purge]]`, `.../partitions[/{p}]` | [`routes::streams`] |
//! | `.../messages`, `.../consumer-offsets[/{consumer}]`, `.../consumer-groups[/{g}]` | [`routes::messages`] |
//! | `/users[/{id}[/password|/permissions]]`, `DELETE /users/logout`, `/personal-access-tokens[/{name}]` | [`routes::users`] |
//! | `/stats`, `/clients[/{id}]`, `/cluster/metadata`, `/metrics` | [`routes::system`] |
//! | `/ui`, `/ui/api/*` | the console, [`console`] |
//!
//! Credentials: `Authorization: Bearer` with a JWT from a login ([`jwt`], naming a session of
//! [`sessions`]) or a personal access token. Errors: Iggy's codes and JSON shape ([`error`]).

pub mod console;
pub mod dataplane;
pub mod error;
pub mod extract;
pub mod json;
pub mod jwt;
pub mod pool;
pub mod routes;
pub mod sessions;

use crate::api::AppState;
use crate::overview::Overview;
use crate::tls_listener::ApiListener;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CONNECTION};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dataplane::{DataplaneConnector, DataplanePool};
use error::{breaks_connection, ApiError};
use iggy_common::{IdentityInfo, IggyError, TokenInfo};
use jwt::JwtKeys;
use pool::{Lease, PoolLimits};
use sessions::{Credential, Session, Sessions};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name of the file, under `<data>/runtime/`, holding the HTTP API's bound address.
pub const HTTP_ADDRESS_FILE_NAME: &str = "http_address";
/// How often expired sessions and idle connections are cleaned up.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// Everything the HTTP handlers share.
pub struct HttpState {
    /// The control process's state: configuration, live changes, supervisor, statistics.
    pub app: Arc<AppState>,
    pub jwt: JwtKeys,
    pub sessions: Sessions,
    pub pool: Arc<DataplanePool>,
    pub overview: Arc<Overview>,
    pub address: SocketAddr,
    pub request_timeout: Duration,
    pub jwt_expiry_s: u64,
    /// Requests served (Iggy's `http_requests` metric).
    pub requests: AtomicU64,
}

/// Why the HTTP API could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpStartError {
    #[error("`http.address`: cannot listen on {address}: {source}; pick a free port or set http.enabled = false")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Jwt(#[from] jwt::JwtError),
    #[error("configuration refused:\n{0}")]
    Tls(#[from] crate::tls_listener::TlsSetupError),
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Binds the listener and builds the shared state (`None` when `http.enabled` is false).
///
/// # Errors
/// [`HttpStartError`] when the address is taken or the JWT secret cannot be kept.
pub async fn start(
    app: Arc<AppState>,
    overview: Arc<Overview>,
) -> Result<Option<(ApiListener, Arc<HttpState>)>, HttpStartError> {
    let config = app.config_snapshot();
    let http = &config.http;
    if !http.enabled {
        return Ok(None);
    }
    let jwt = JwtKeys::load(http, &app.data_dir)?;
    let tls = match http.tls_files() {
        Some((cert, key)) => Some(crate::tls_listener::server_config(
            cert,
            key,
            crate::tls_listener::HTTP_TLS_KEYS,
        )?),
        None => None,
    };
    let failures = app.counters.http_tls_handshake_failures.clone();
    let listener = ApiListener::bind(&http.address, tls, failures)
        .await
        .map_err(|source| HttpStartError::Bind {
            address: http.address.clone(),
            source,
        })?;
    let address = listener.address;
    let connector = DataplaneConnector::new(
        app.data_dir.clone(),
        Some(app.supervisor.clone()),
        config.dataplane_address(),
        dataplane::DataplaneTls::of(&config),
    );
    let (per_user_max, total_max) =
        riptide_config::http::pool_limits(http, config.tcp.connections_max);
    let pool = pool::Pool::new(
        connector,
        PoolLimits {
            per_user_max: per_user_max as usize,
            total_max: total_max as usize,
            idle_timeout: Duration::from_millis(http.pool_idle_timeout_ms),
        },
    );
    let state = Arc::new(HttpState {
        jwt,
        sessions: Sessions::new(http.sessions_max as usize),
        pool,
        overview,
        address,
        request_timeout: Duration::from_millis(http.request_timeout_ms),
        jwt_expiry_s: http.jwt_access_token_expiry_s,
        requests: AtomicU64::new(0),
        app,
    });
    write_address(&state.app.data_dir, &address.to_string());
    tokio::spawn(housekeeping(Arc::downgrade(&state)));
    Ok(Some((listener, state)))
}

fn write_address(data_dir: &std::path::Path, address: &str) {
    let runtime = data_dir.join("runtime");
    let result = std::fs::create_dir_all(&runtime).and_then(|()| {
        std::fs::write(runtime.join(HTTP_ADDRESS_FILE_NAME), format!("{address}\n"))
    });
    if let Err(e) = result {
        tracing::warn!(
            "cannot record the HTTP address in {}: {e}",
            runtime.display()
        );
    }
}

/// Ends expired sessions (closing the connections of users left without one) and closes idle
/// connections past their timeout.
async fn housekeeping(state: std::sync::Weak<HttpState>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        for user in state.sessions.sweep(now_s()) {
            state.pool.invalidate_user(user);
        }
        state.pool.reap(std::time::Instant::now());
    }
}

/// The caller of a route that needs a credential.
pub struct Caller {
    pub session: Arc<Session>,
}

impl FromRequestParts<Arc<HttpState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<HttpState>,
    ) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Iggy(IggyError::AccessTokenMissing))?;
        let session = state.authenticate(bearer).await?;
        Ok(Caller { session })
    }
}

impl HttpState {
    /// The session a bearer credential stands for: a JWT this API issued whose session is still
    /// open, or a personal access token the dataplane accepts.
    async fn authenticate(&self, bearer: &str) -> Result<Arc<Session>, ApiError> {
        let unauthenticated = || ApiError::Iggy(IggyError::Unauthenticated);
        if jwt::looks_like_jwt(bearer) {
            let claims = self.jwt.verify(bearer).ok_or_else(unauthenticated)?;
            let session = self
                .sessions
                .get(&claims.sid, now_s())
                .ok_or_else(unauthenticated)?;
            if claims.sub != session.user_id.to_string() {
                return Err(unauthenticated());
            }
            return Ok(session);
        }
        let id = sessions::token_session_id(bearer);
        if let Some(session) = self.sessions.get(&id, now_s()) {
            return Ok(session);
        }
        let credential =
            Credential::PersonalAccessToken(secrecy::SecretString::from(bearer.to_string()));
        match self.pool.login(&credential).await {
            Ok(user_id) => {
                let expires = now_s() + self.jwt_expiry_s;
                Ok(self.add_session(id, user_id, credential, expires))
            }
            Err(error) if breaks_connection(&error) => Err(ApiError::from(error)),
            Err(_) => Err(unauthenticated()),
        }
    }

    fn add_session(
        &self,
        id: String,
        user_id: u32,
        credential: Credential,
        expires_at_s: u64,
    ) -> Arc<Session> {
        let (session, ended) = self.sessions.insert(id, user_id, credential, expires_at_s);
        for old in ended {
            if !self.sessions.has_user(old.user_id) {
                self.pool.invalidate_user(old.user_id);
            }
        }
        session
    }

    /// Logs in to the dataplane with a credential from a login request and opens a session; the
    /// answer is Iggy's `IdentityInfo` with a new access token.
    ///
    /// # Errors
    /// The dataplane's refusal (Iggy's codes), or 503 when it cannot be reached.
    pub async fn open_session(&self, credential: Credential) -> Result<IdentityInfo, ApiError> {
        let user_id = self.pool.login(&credential).await.map_err(ApiError::from)?;
        let sid = jwt::random_hex(16).map_err(|e| internal(e.to_string()))?;
        let session = self.add_session(sid, user_id, credential, 0);
        self.identity(&session)
    }

    /// A new access token for a session (login, refresh), which extends it to the token's expiry.
    ///
    /// # Errors
    /// 500 when the token cannot be signed.
    pub fn identity(&self, session: &Session) -> Result<IdentityInfo, ApiError> {
        let (token, expiry) = self
            .jwt
            .issue(session.user_id, &session.id, now_s())
            .map_err(|e| internal(e.to_string()))?;
        session.extend_to(expiry);
        Ok(IdentityInfo {
            user_id: session.user_id,
            access_token: Some(TokenInfo { token, expiry }),
        })
    }

    /// A dataplane connection logged in as the caller. A credential the dataplane no longer
    /// accepts (password changed, token deleted, user gone or inactive) ends the session: 401.
    ///
    /// # Errors
    /// 401 as above, 503 when the dataplane cannot be reached.
    pub async fn lease(&self, caller: &Caller) -> Result<Lease<DataplaneConnector>, ApiError> {
        let session = &caller.session;
        if session.take_recheck() {
            self.recheck(session).await?;
        }
        match self
            .pool
            .lease(session.user_id, &session.credential())
            .await
        {
            Ok(lease) => Ok(lease),
            Err(error) if breaks_connection(&error) => Err(ApiError::from(error)),
            Err(error) => {
                tracing::info!(
                    user = session.user_id,
                    "session ended: the dataplane refused its credential ({error})"
                );
                self.end_session(&session.id, session.user_id);
                Err(ApiError::Iggy(IggyError::Unauthenticated))
            }
        }
    }

    /// Checks a session's credential with a fresh login (its connection joins the pool); a
    /// refused credential ends the session.
    ///
    /// # Errors
    /// 401 when refused, 503 when the dataplane cannot be reached.
    pub async fn recheck(&self, session: &Session) -> Result<(), ApiError> {
        match self.pool.login(&session.credential()).await {
            Ok(user_id) if user_id == session.user_id => Ok(()),
            Err(error) if breaks_connection(&error) => Err(ApiError::from(error)),
            _ => {
                tracing::info!(
                    user = session.user_id,
                    "session ended: the dataplane refused its credential"
                );
                self.end_session(&session.id, session.user_id);
                Err(ApiError::Iggy(IggyError::Unauthenticated))
            }
        }
    }

    /// Ends one session; the user's connections close when it was the user's last.
    pub fn end_session(&self, id: &str, user_id: u32) {
        self.sessions.remove(id);
        if !self.sessions.has_user(user_id) {
            self.pool.invalidate_user(user_id);
        }
    }

    /// Ends a user's sessions (but `keep`) and closes the user's pooled connections, so every
    /// later request logs in afresh.
    pub fn end_user_sessions(&self, user_id: u32, keep: Option<&str>) {
        self.sessions.remove_user(user_id, keep);
        self.pool.invalidate_user(user_id);
    }
}

pub fn internal(reason: String) -> ApiError {
    ApiError::http(StatusCode::INTERNAL_SERVER_ERROR, "error", reason)
}

/// The router with its layers: request counting, the per-request timeout, `Connection: close`
/// on 413, CORS (when configured), the body limit, and Iggy's 404 for unknown routes.
pub fn router(state: Arc<HttpState>) -> Router {
    let config = state.app.config_snapshot();
    let body_limit = usize::try_from(config.http.body_limit_bytes).unwrap_or(usize::MAX);
    let request_timeout = state.request_timeout;
    let router = routes::router()
        .merge(console::router())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async {
            ApiError::http(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(from_fn(close_on_payload_too_large))
        .layer(from_fn(move |request, next| {
            timeout_after(request_timeout, request, next)
        }))
        .with_state(state.clone());
    let router = match cors(&config.http.cors_allowed_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.layer(from_fn_with_state(state, count_request))
}

fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                axum::http::header::CONTENT_TYPE,
                axum::http::header::AUTHORIZATION,
            ])
            .expose_headers([axum::http::HeaderName::from_static(
                routes::messages::DURABILITY_HEADER,
            )]),
    )
}

async fn count_request(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    next.run(request).await
}

/// A request not answered in time gets 504; dropping its future drops any dataplane connection
/// it held unsettled, which closes that connection (its reply would otherwise be read by the
/// next request).
pub async fn timeout_after(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::http(
            StatusCode::GATEWAY_TIMEOUT,
            "request_timeout",
            format!(
                "not answered within {} ms (http.request_timeout_ms); a write may still have been applied",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// A 413 rejects the body unread: the connection is closed so the client does not send its next
/// request after bytes the server never read (Iggy does the same).
async fn close_on_payload_too_large(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn a_slow_request_gets_504_in_iggys_shape_and_others_pass() {
        let limit = Duration::from_millis(100);
        let router = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/fast", get(|| async { "fast" }))
            .layer(from_fn(move |request, next| {
                timeout_after(limit, request, next)
            }));
        let base = serve(router).await;
        let slow = reqwest::get(format!("{base}/slow")).await.unwrap();
        assert_eq!(slow.status(), 504);
        let body: error::ErrorBody = slow.json().await.unwrap();
        assert_eq!((body.id, body.code.as_str()), (504, "request_timeout"));
        let fast = reqwest::get(format!("{base}/fast")).await.unwrap();
        assert_eq!(fast.text().await.unwrap(), "fast");
    }
}
