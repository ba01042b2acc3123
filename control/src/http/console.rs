//! The web console at `/ui`: plain HTML, CSS and JavaScript embedded in the binary (no files to
//! install, no build step, nothing loaded from elsewhere — the Content-Security-Policy allows
//! this origin only). It is a client of Iggy's REST API on the same listener, plus a few routes
//! of its own under `/ui/api` for what Iggy's API does not carry:
//!
//! | route | answer | needs |
//! |---|---|---|
//! | `GET /ui/api/overview` | mode, threads, connections, and the sampled rates and p99 ([`crate::overview`]) | `read_servers` |
//! | `GET /ui/api/config`, `PUT /ui/api/config` | the configuration; a live change (as the control API's `/config`) | `read_servers`; `manage_servers` to change |
//! | `GET /ui/api/steering` | steering policy and state (as the control API's `/steering`) | `read_servers` |
//! | `GET /ui/api/groups/{s}/{t}/{g}` | a consumer group's members and lag per partition | the dataplane's own checks |
//!
//! Permissions are the user's own, asked of the dataplane (root holds them all).

use crate::api::{apply_config_change, config_body, status_body, steering_body};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{identifier, ApiPath};
use crate::http::{Caller, HttpState};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use iggy::prelude::{
    ConsumerGroupClient as _, ConsumerOffsetClient as _, TopicClient as _, UserClient as _,
};
use iggy_common::{Consumer, Identifier, IggyError};
use serde_json::{json, Value};
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("../../console/index.html");
const APP_JS: &str = include_str!("../../console/app.js");
const STYLE_CSS: &str = include_str!("../../console/style.css");

/// Only this origin's scripts, styles and API; no frames, no plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn router() -> Router<Arc<HttpState>> {
    Router::new()
        .route(
            "/ui",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/ui/api/overview", get(overview))
        .route("/ui/api/config", get(config).put(change_config))
        .route("/ui/api/steering", get(steering))
        .route(
            "/ui/api/groups/{stream_id}/{topic_id}/{group_id}",
            get(group_lag),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, CSP),
        ],
        body,
    )
        .into_response()
}

/// Refuses callers without `read_servers` (or `manage_servers` when `manage`), as the dataplane
/// knows the user's permissions.
async fn require_servers(state: &HttpState, caller: &Caller, manage: bool) -> ApiResult<()> {
    let mut lease = state.lease(caller).await?;
    let me = Identifier::numeric(caller.session.user_id).map_err(ApiError::Iggy)?;
    let result = lease.conn().get_user(&me).await;
    let details = lease.settle(result)?.ok_or(ApiError::NotFound)?;
    let global = details.permissions.map(|p| p.global);
    let allowed = match global {
        Some(g) if manage => g.manage_servers,
        Some(g) => g.read_servers || g.manage_servers,
        // The root user (id 0) holds every permission without a permission record.
        None => details.id == 0,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Iggy(IggyError::Unauthorized))
    }
}

async fn overview(State(state): State<Arc<HttpState>>, caller: Caller) -> ApiResult<Json<Value>> {
    require_servers(&state, &caller, false).await?;
    let config = state.app.config_snapshot();
    let lcores = (config.dataplane.backend == riptide_config::Backend::Dpdk)
        .then(|| config.dpdk.lcores.clone());
    Ok(Json(json!({
        "status": status_body(&state.app),
        "lcores": lcores,
        "samples": state.overview.samples(),
        "sample_interval_ms": crate::overview::OVERVIEW_SAMPLE_INTERVAL_MS,
        "http": {
            "sessions": state.sessions.len(),
            "pool": state.pool.counts(),
        },
    })))
}

async fn config(State(state): State<Arc<HttpState>>, caller: Caller) -> ApiResult<Json<Value>> {
    require_servers(&state, &caller, false).await?;
    Ok(Json(config_body(&state.app)))
}

async fn change_config(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    body: String,
) -> ApiResult<Response> {
    require_servers(&state, &caller, true).await?;
    Ok(apply_config_change(&state.app, &body))
}

async fn steering(State(state): State<Arc<HttpState>>, caller: Caller) -> ApiResult<Json<Value>> {
    require_servers(&state, &caller, false).await?;
    Ok(Json(steering_body(&state.app)))
}

/// A group's members and, per partition, its current offset, the group's stored offset, the
/// lag (messages not consumed yet) and the member it is assigned to.
async fn group_lag(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    ApiPath((stream, topic, group)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (stream, topic, group) = (
        identifier(&stream)?,
        identifier(&topic)?,
        identifier(&group)?,
    );
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .get_consumer_group(&stream, &topic, &group)
        .await;
    let details = lease.settle(result)?.ok_or(ApiError::NotFound)?;
    let result = lease.conn().get_topic(&stream, &topic).await;
    let topic_details = lease.settle(result)?.ok_or(ApiError::NotFound)?;
    let consumer = Consumer::group(Identifier::numeric(details.id).map_err(ApiError::Iggy)?);
    let mut partitions = Vec::with_capacity(topic_details.partitions.len());
    for partition in &topic_details.partitions {
        let result = lease
            .conn()
            .get_consumer_offset(&consumer, &stream, &topic, Some(partition.id))
            .await;
        let stored = lease.settle(result)?.map(|info| info.stored_offset);
        let lag = match stored {
            Some(offset) => partition.current_offset.saturating_sub(offset),
            None => partition.messages_count,
        };
        let member = details
            .members
            .iter()
            .find(|m| m.partitions.contains(&partition.id))
            .map(|m| m.id);
        partitions.push(json!({
            "partition_id": partition.id,
            "current_offset": partition.current_offset,
            "messages_count": partition.messages_count,
            "stored_offset": stored,
            "lag": lag,
            "member_id": member,
        }));
    }
    Ok(Json(json!({ "group": details, "partitions": partitions })))
}
