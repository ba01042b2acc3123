//! `/ping`, `/stats`, `/clients`, `/cluster/metadata`, `/snapshot` and `/metrics`.

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::{Caller, HttpState};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use iggy::prelude::{ClusterClient as _, OptionSpec, OptionsScope, SystemClient as _};
use iggy_common::get_snapshot::GetSnapshot;
use iggy_common::{ClientInfo, ClientInfoDetails, ClusterMetadata, Stats};
use std::fmt::Write as _;
use std::str::FromStr as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

type AppState = State<Arc<HttpState>>;

/// Iggy's health probe: `pong`, no credential.
pub async fn ping() -> &'static str {
    "pong"
}

pub async fn stats(State(state): AppState, caller: Caller) -> ApiResult<Json<Stats>> {
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_stats().await;
    Ok(Json(lease.settle(result)?))
}

pub async fn clients(State(state): AppState, caller: Caller) -> ApiResult<Json<Vec<ClientInfo>>> {
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_clients().await;
    Ok(Json(lease.settle(result)?))
}

pub async fn client(
    State(state): AppState,
    caller: Caller,
    ApiPath(client_id): ApiPath<u32>,
) -> ApiResult<Json<ClientInfoDetails>> {
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_client(client_id).await;
    lease.settle(result)?.map(Json).ok_or(ApiError::NotFound)
}

/// Iggy's `GET /options/{scope}` (`topic`, `stream` or `user`): the option keys a create
/// command of that scope accepts, with their kinds, defaults and descriptions, from the
/// dataplane. An unknown scope is 400 with InvalidCommand, as in Iggy.
pub async fn options(
    State(state): AppState,
    caller: Caller,
    ApiPath(scope): ApiPath<String>,
) -> ApiResult<Json<Vec<OptionSpec>>> {
    let scope = OptionsScope::from_str(&scope)?;
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().describe_options(scope).await;
    Ok(Json(lease.settle(result)?))
}

/// The dataplane's metadata, with this listener's port as this node's HTTP endpoint when the
/// dataplane does not name one (other nodes' HTTP ports are theirs to advertise).
pub async fn cluster_metadata(
    State(state): AppState,
    caller: Caller,
) -> ApiResult<Json<ClusterMetadata>> {
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_cluster_metadata().await;
    let mut metadata = lease.settle(result)?;
    let this_node = state.app.config_snapshot().cluster.node_name;
    for node in &mut metadata.nodes {
        if node.name == this_node && node.endpoints.http == 0 {
            node.endpoints.http = state.address.port();
        }
    }
    Ok(Json(metadata))
}

/// Iggy's `POST /snapshot`: `{"compression": "Deflated", "snapshot_types": ["All"]}` (the names
/// of iggy's enums) answered with the dataplane's zip as an attachment named as Iggy names it
/// (UTC time where Iggy uses the server's local time). The dataplane validates the request and
/// checks the caller's permission; its refusals map to statuses like every route's.
pub async fn snapshot(
    State(state): AppState,
    caller: Caller,
    ApiJson(command): ApiJson<GetSnapshot>,
) -> ApiResult<Response> {
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .snapshot(command.compression, command.snapshot_types)
        .await;
    let archive = lease.settle(result)?;
    let now = time::OffsetDateTime::now_utc();
    let disposition = format!(
        "attachment; filename=\"iggy_snapshot_{:04}{:02}{:02}_{:02}{:02}{:02}.zip\"",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        archive.0,
    )
        .into_response())
}

/// Prometheus text: the control API's page (supervisor and the dataplane's statistics) plus the
/// HTTP API's own counters. Like Iggy's, it needs a credential.
pub async fn metrics(State(state): AppState, _caller: Caller) -> Response {
    let mut text = crate::api::metrics_text(&state.app);
    let counts = state.pool.counts();
    for (name, kind, help, value) in [
        (
            "http_requests_total",
            "counter",
            "Requests served by the HTTP API (Iggy's metric).",
            state.requests.load(Ordering::Relaxed),
        ),
        (
            "riptide_http_sessions",
            "gauge",
            "Open login sessions of the HTTP API.",
            state.sessions.len() as u64,
        ),
        (
            "riptide_http_pool_connections_idle",
            "gauge",
            "Pooled dataplane connections of the HTTP API waiting for a request.",
            counts.idle as u64,
        ),
        (
            "riptide_http_pool_connections_in_use",
            "gauge",
            "Pooled dataplane connections of the HTTP API serving a request.",
            counts.in_use as u64,
        ),
    ] {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}
