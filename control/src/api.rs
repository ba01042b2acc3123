//! The control API: a small HTTP/JSON server, on loopback unless a token guards it
//! ([`crate::auth`]), over HTTPS when `control.tls_cert_file` is set ([`crate::tls_listener`]).
//!
//! | route            | answer                                                                |
//! |------------------|-----------------------------------------------------------------------|
//! | GET /health      | 200 when the dataplane runs and publishes fresh stats, else 503 (no token needed) |
//! | GET /status      | supervision, mode, cores, queues, rings, connections, partitions/shard, cluster |
//! | GET /config      | the effective configuration (JSON; `?format=toml` for TOML)           |
//! | PUT/POST /config | a live change (TOML or JSON); 409 lists keys that need a restart      |
//! | GET /steering    | steering policy, state, per-worker connections; XDP program counters  |
//! | GET /cluster     | nodes, roles, term, partitions' leaders, follower lag ([`crate::cluster`]) |
//! | POST /cluster/nodes | adds a node (JSON [`AddNodeBody`]) through the leader            |
//! | DELETE /cluster/nodes/{id} | removes a node through the leader                         |
//! | GET /metrics     | Prometheus text                                                       |
//! | POST /shutdown   | stops the dataplane cleanly, then riptide-control exits               |

use crate::auth::{self, Authorized, ControlToken};
use crate::cluster::{AddNodeBody, ClusterError, ClusterReport, ClusterTarget};
use crate::constants::{CONFIG_BODY_SIZE_MAX_BYTES, STATS_STALE_MS};
use crate::host_checks::Finding;
use crate::live::{self, LiveError};
use crate::metrics;
use crate::supervisor::{SharedStatus, State, SupervisorStatus};
use axum::extract::{DefaultBodyLimit, Path as AxumPath, Query, State as AxumState};
use axum::http::{header, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use riptide_config::cluster::{AdminRequest, NodeId};
use riptide_config::stats::{stats_path, StatsSnapshot};
use riptide_config::Config;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Counters of the control API itself, for /metrics.
#[derive(Default)]
pub struct ControlCounters {
    /// Requests refused for a missing or wrong token.
    pub unauthorized: AtomicU64,
    /// TLS handshakes that failed or timed out (plain-HTTP clients on an HTTPS port included),
    /// on the control API and on the HTTP API.
    pub control_tls_handshake_failures: Arc<AtomicU64>,
    pub http_tls_handshake_failures: Arc<AtomicU64>,
}

/// Everything the handlers share.
pub struct AppState {
    /// The effective configuration: riptide.toml, the environment, then live changes.
    pub config: Mutex<Config>,
    /// The live overrides in force (what `live.toml` holds).
    pub overrides: Mutex<toml::Table>,
    pub config_path: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub supervisor: SharedStatus,
    /// Host-check warnings found at start-up, shown in /status.
    pub warnings: Vec<Finding>,
    /// Stops supervision (POST /shutdown); taken by the first request.
    pub shutdown: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    /// The HTTP API's bound address, once it listens.
    pub http_address: Mutex<Option<std::net::SocketAddr>>,
    /// The bearer token requests must carry (`control.token`), if any.
    pub token: Option<ControlToken>,
    pub counters: ControlCounters,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl AppState {
    /// A copy of the effective configuration.
    pub fn config_snapshot(&self) -> Config {
        lock(&self.config).clone()
    }

    /// What the HTTP API tells operators about itself in /status (set once it listens).
    pub fn set_http_address(&self, address: std::net::SocketAddr) {
        *lock(&self.http_address) = Some(address);
    }

    pub fn http_address(&self) -> Option<std::net::SocketAddr> {
        *lock(&self.http_address)
    }
}

/// The router over the shared state.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/config", get(get_config).put(put_config).post(put_config))
        .route("/steering", get(steering))
        .route("/metrics", get(metrics_page))
        .route("/shutdown", post(shutdown))
        .route("/cluster", get(cluster_status))
        .route("/cluster/nodes", post(cluster_add))
        .route("/cluster/nodes/{id}", delete(cluster_remove))
        .layer(DefaultBodyLimit::max(CONFIG_BODY_SIZE_MAX_BYTES))
        .layer(from_fn_with_state(state.clone(), auth::require_token))
        .with_state(state)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The latest snapshot and its age, or why there is none.
pub fn read_stats(data_dir: &Path) -> Result<(StatsSnapshot, u64), String> {
    let path = stats_path(data_dir);
    let bytes =
        std::fs::read(&path).map_err(|e| format!("no statistics at {}: {e}", path.display()))?;
    let snapshot: StatsSnapshot = serde_json::from_slice(&bytes)
        .map_err(|e| format!("unreadable statistics at {}: {e}", path.display()))?;
    let age_ms = now_us().saturating_sub(snapshot.written_at_us) / 1000;
    Ok((snapshot, age_ms))
}

fn supervisor_copy(state: &AppState) -> SupervisorStatus {
    lock(&state.supervisor).clone()
}

fn error_json(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// Without the token (when one is configured) only the verdict is shown: the details name
/// files and processes.
async fn health(
    AxumState(state): AxumState<Arc<AppState>>,
    Extension(Authorized(authorized)): Extension<Authorized>,
) -> Response {
    let supervisor = supervisor_copy(&state);
    let stats = read_stats(&state.data_dir);
    let problem = match (&supervisor.state, &stats) {
        (State::Running, Ok((_, age_ms))) if *age_ms <= STATS_STALE_MS => None,
        (State::Running, Ok((_, age_ms))) => Some(format!("statistics are {age_ms} ms old")),
        (State::Running, Err(reason)) => Some(reason.clone()),
        (other, _) => Some(format!("dataplane is {other:?}")),
    };
    let verdict = if problem.is_none() {
        "ok"
    } else {
        "unavailable"
    };
    let body = if authorized {
        json!({ "status": verdict, "dataplane": supervisor.state, "problem": problem })
    } else {
        json!({ "status": verdict })
    };
    let code = if problem.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Per-shard ring occupancy as a fraction of the ring's capacity.
fn ring_occupancy(snapshot: &StatsSnapshot) -> Vec<Value> {
    snapshot
        .shards
        .iter()
        .map(|shard| {
            let fraction = if snapshot.ring_capacity == 0 {
                0.0
            } else {
                shard.request_ring_depth as f64 / snapshot.ring_capacity as f64
            };
            json!({ "shard": shard.index, "depth": shard.request_ring_depth, "capacity": snapshot.ring_capacity, "occupancy": fraction })
        })
        .collect()
}

/// The /status document (also the console's overview).
pub fn status_body(state: &AppState) -> Value {
    let supervisor = supervisor_copy(state);
    let config = lock(&state.config).clone();
    let warnings: Vec<String> = state.warnings.iter().map(ToString::to_string).collect();
    let mut body = json!({
        "supervisor": supervisor,
        "config_path": state.config_path,
        "data_dir": state.data_dir,
        "mode": config.dataplane.backend,
        "configured": {
            "network_workers": config.network_workers(),
            "storage_shards": config.storage_shards(),
            "cores": config.dataplane.cores,
            "ring_capacity": config.dataplane.ring_capacity,
        },
        "warnings": warnings,
        "http": http_body(state, &config),
    });
    let stats = read_stats(&state.data_dir);
    body["cluster"] = json!(cluster_from_stats(&config, stats.as_ref().ok()));
    match stats {
        Ok((snapshot, age_ms)) => {
            let connections: u64 = snapshot.workers.iter().map(|w| w.connections_open).sum();
            body["stats"] = json!({
                "age_ms": age_ms,
                "stale": age_ms > STATS_STALE_MS,
                "mode": snapshot.mode,
                "version": snapshot.version,
                "pid": snapshot.pid,
                "tcp_address": snapshot.tcp_address,
                "steering": snapshot.steering,
                "connections": connections,
                "streams": snapshot.streams,
                "topics": snapshot.topics,
                "partitions": snapshot.partitions,
                "workers": snapshot.workers.iter().map(|w| json!({
                    "worker": w.index, "core": w.core, "connections": w.connections_open,
                    "requests": w.requests, "ring_full_stalls": w.ring_full_stalls,
                })).collect::<Vec<_>>(),
                "shards": snapshot.shards.iter().map(|s| json!({
                    "shard": s.index, "core": s.core, "partitions": s.partitions,
                    "appends": s.appends, "ring_depth": s.request_ring_depth,
                })).collect::<Vec<_>>(),
                "rings": ring_occupancy(&snapshot),
                "ports": snapshot.ports,
            });
        }
        Err(reason) => body["stats"] = json!({ "unavailable": reason }),
    }
    body
}

/// The cluster section of /status: this node's view as the dataplane last published it (the
/// follower lag when this node leads; `GET /cluster` asks the leader for it).
fn cluster_from_stats(config: &Config, stats: Option<&(StatsSnapshot, u64)>) -> ClusterReport {
    let cluster = &config.cluster;
    if !cluster.enabled {
        return ClusterReport::off();
    }
    match stats.and_then(|(snapshot, _)| snapshot.cluster.as_ref()) {
        Some(view) => {
            let mut report = ClusterReport::from_views(&cluster.name, view, None);
            if report.lag_from.is_none() && report.leader.is_some() {
                report.lag_unavailable = Some(
                    "only the leader knows the lag: GET /cluster (riptidectl cluster status) asks it"
                        .to_string(),
                );
            }
            report
        }
        None => ClusterReport::unavailable(
            &cluster.name,
            cluster.node_id,
            "the dataplane has not published its view of the cluster yet",
        ),
    }
}

/// Where the HTTP API and the console are, for /status and `riptidectl http`.
fn http_body(state: &AppState, config: &Config) -> Value {
    if !config.http.enabled {
        return json!({ "enabled": false });
    }
    match state.http_address() {
        Some(address) => {
            let host = if address.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                address.ip().to_string()
            };
            let scheme = if config.http.tls_files().is_some() {
                "https"
            } else {
                "http"
            };
            let base = if address.is_ipv6() {
                format!("{scheme}://[{host}]:{}", address.port())
            } else {
                format!("{scheme}://{host}:{}", address.port())
            };
            json!({
                "enabled": true,
                "address": address.to_string(),
                "api_url": base,
                "console_url": format!("{base}/ui"),
            })
        }
        None => json!({ "enabled": true, "address": null, "configured": config.http.address }),
    }
}

async fn status(AxumState(state): AxumState<Arc<AppState>>) -> Response {
    Json(status_body(&state)).into_response()
}

#[derive(serde::Deserialize)]
struct ConfigQuery {
    format: Option<String>,
}

async fn get_config(
    AxumState(state): AxumState<Arc<AppState>>,
    Query(query): Query<ConfigQuery>,
) -> Response {
    let config = lock(&state.config).clone();
    match query.format.as_deref() {
        Some("toml") => (
            [(header::CONTENT_TYPE, "application/toml")],
            config.to_toml_masked(),
        )
            .into_response(),
        None | Some("json") => Json(config_body(&state)).into_response(),
        Some(other) => error_json(
            StatusCode::BAD_REQUEST,
            format!("unknown format '{other}' (json or toml)"),
        ),
    }
}

/// The /config document: the effective configuration (secrets masked), the live overrides and
/// the keys that change live.
pub fn config_body(state: &AppState) -> Value {
    let config = lock(&state.config).masked();
    let overrides = lock(&state.overrides).clone();
    json!({
        "config": config,
        "live_overrides": overrides,
        "live_keys": live::LIVE_KEYS,
        "config_path": state.config_path,
    })
}

async fn put_config(AxumState(state): AxumState<Arc<AppState>>, body: String) -> Response {
    apply_config_change(&state, &body)
}

/// Applies a live change (PUT /config of the control API and of the console): 200 with the
/// applied keys, 409 when a key needs a restart, 400 for an invalid change.
pub fn apply_config_change(state: &AppState, body: &str) -> Response {
    let change = match live::parse_change(body) {
        Ok(change) => change,
        Err(e) => return error_json(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // Holding the config lock across plan+write keeps concurrent changes from losing each other.
    let mut config = lock(&state.config);
    let mut overrides = lock(&state.overrides);
    match live::plan_change(&config, &overrides, &change) {
        Ok(applied) => match live::write_overrides(&state.data_dir, &applied.overrides) {
            Ok(path) => {
                *config = applied.config;
                *overrides = applied.overrides;
                tracing::info!(keys = ?applied.keys, "live configuration change written to {}", path.display());
                Json(json!({
                    "applied": applied.keys,
                    "live_file": path,
                    "restart_needed": [],
                    "note": "the dataplane applies the live file when it sees it change",
                }))
                .into_response()
            }
            Err(e) => error_json(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        Err(LiveError::RestartNeeded(keys)) => (
            StatusCode::CONFLICT,
            Json(json!({
                "error": format!("a restart is needed for: {}; change riptide.toml and restart riptide-control", keys.join(", ")),
                "restart_needed": keys,
                "live_keys": live::LIVE_KEYS,
            })),
        )
            .into_response(),
        Err(e) => error_json(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn steering(AxumState(state): AxumState<Arc<AppState>>) -> Response {
    Json(steering_body(&state)).into_response()
}

/// The /steering document.
pub fn steering_body(state: &AppState) -> Value {
    let config = lock(&state.config).clone();
    let mut body = json!({
        "policy": config.steering.policy,
        "enabled": config.steering.enabled,
        "source": "stats snapshot",
    });
    match read_stats(&state.data_dir) {
        Ok((snapshot, age_ms)) => {
            body["state"] = json!(snapshot.steering);
            if let Some(counters) = &snapshot.steering_counters {
                body["reuseport"] = json!(counters);
            }
            if let Some(xdp) = &snapshot.xdp_counters {
                body["xdp_counters"] = json!(xdp);
            }
            body["age_ms"] = json!(age_ms);
            body["workers"] = snapshot
                .workers
                .iter()
                .map(|w| json!({ "worker": w.index, "connections_open": w.connections_open, "connections_accepted": w.connections_accepted }))
                .collect();
        }
        Err(reason) => body["unavailable"] = json!(reason),
    }
    let interfaces = crate::steering::xdp_interfaces(&config);
    if !interfaces.is_empty() {
        body["xdp_interfaces"] = json!(interfaces);
    }
    body
}

/// The Prometheus page: the supervisor's state, the latest statistics snapshot and the control
/// API's own counters.
pub fn metrics_text(state: &AppState) -> String {
    let supervisor = supervisor_copy(state);
    let stats = read_stats(&state.data_dir).ok();
    let mut text = metrics::render(
        &supervisor,
        stats.as_ref().map(|(s, _)| s),
        stats.as_ref().map(|(_, age)| *age),
    );
    let counters = &state.counters;
    metrics::render_control(
        &mut text,
        counters.unauthorized.load(Ordering::Relaxed),
        [
            (
                "control",
                counters
                    .control_tls_handshake_failures
                    .load(Ordering::Relaxed),
            ),
            (
                "http",
                counters.http_tls_handshake_failures.load(Ordering::Relaxed),
            ),
        ],
    );
    text
}

async fn metrics_page(AxumState(state): AxumState<Arc<AppState>>) -> Response {
    let text = metrics_text(&state);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

async fn shutdown(AxumState(state): AxumState<Arc<AppState>>) -> Response {
    match lock(&state.shutdown).take() {
        Some(sender) => {
            let _ = sender.send(());
            (StatusCode::ACCEPTED, Json(json!({ "status": "stopping" }))).into_response()
        }
        None => (
            StatusCode::ACCEPTED,
            Json(json!({ "status": "already stopping" })),
        )
            .into_response(),
    }
}

/// The cluster's target, or the answer that cluster mode is off.
fn cluster_target(state: &AppState) -> Result<ClusterTarget, ClusterError> {
    ClusterTarget::from_config(&lock(&state.config)).ok_or(ClusterError::Off)
}

/// Runs a blocking admin exchange off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClusterError> + Send + 'static,
) -> Result<T, ClusterError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ClusterError::Refused(format!(
            "the request's task failed: {e}"
        )))
    })
}

fn cluster_error(error: &ClusterError) -> Response {
    let code = match error {
        ClusterError::Off | ClusterError::Refused(_) => StatusCode::CONFLICT,
        ClusterError::NoLeader | ClusterError::LeaderMoving => StatusCode::SERVICE_UNAVAILABLE,
        ClusterError::Unreachable { .. }
        | ClusterError::SecretRefused { .. }
        | ClusterError::Unexpected { .. } => StatusCode::BAD_GATEWAY,
    };
    error_json(code, error.to_string())
}

/// GET /cluster: this node's view with the leader's lag; cluster mode off is an answer (200).
async fn cluster_status(AxumState(state): AxumState<Arc<AppState>>) -> Response {
    let target = match cluster_target(&state) {
        Ok(target) => target,
        Err(ClusterError::Off) => return Json(ClusterReport::off()).into_response(),
        Err(e) => return cluster_error(&e),
    };
    match blocking(move || target.report()).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => cluster_error(&e),
    }
}

async fn change_membership(state: &AppState, request: AdminRequest) -> Response {
    let target = match cluster_target(state) {
        Ok(target) => target,
        Err(e) => return cluster_error(&e),
    };
    tracing::info!(?request, "membership change asked through the control API");
    let what = format!("{request:?}");
    match blocking(move || target.change_membership(&request)).await {
        Ok(leader) => {
            Json(json!({ "done": true, "leader_replication_address": leader })).into_response()
        }
        Err(e) => {
            tracing::warn!("membership change {what} failed: {e}");
            cluster_error(&e)
        }
    }
}

/// POST /cluster/nodes: adds a node (a learner first, a voter once it caught up).
async fn cluster_add(AxumState(state): AxumState<Arc<AppState>>, body: String) -> Response {
    let request = serde_json::from_str::<AddNodeBody>(&body)
        .map_err(|e| e.to_string())
        .and_then(AddNodeBody::into_request);
    match request {
        Ok(request) => change_membership(&state, request).await,
        Err(e) => error_json(StatusCode::BAD_REQUEST, format!("adding a node: {e}")),
    }
}

/// DELETE /cluster/nodes/{id}: removes a node from the cluster.
async fn cluster_remove(
    AxumState(state): AxumState<Arc<AppState>>,
    AxumPath(id): AxumPath<NodeId>,
) -> Response {
    change_membership(&state, AdminRequest::RemoveNode { id }).await
}
