//! The route table of Iggy's REST API (Iggy's paths, methods and statuses).

pub mod messages;
pub mod streams;
pub mod system;
pub mod users;

use super::HttpState;
use axum::routing::{delete, get, post, put};
use axum::Router;
use std::sync::Arc;

pub fn router() -> Router<Arc<HttpState>> {
    let topic = "/streams/{stream_id}/topics/{topic_id}";
    Router::new()
        .route("/ping", get(system::ping))
        .route("/stats", get(system::stats))
        .route("/clients", get(system::clients))
        .route("/clients/{client_id}", get(system::client))
        .route("/cluster/metadata", get(system::cluster_metadata))
        .route("/snapshot", post(system::snapshot))
        .route("/options/{scope}", get(system::options))
        .route("/metrics", get(system::metrics))
        .route("/users/login", post(users::login))
        .route("/users/refresh-token", post(users::refresh_token))
        .route("/users/logout", delete(users::logout))
        .route("/users", get(users::list).post(users::create))
        .route(
            "/users/{user_id}",
            get(users::get).put(users::update).delete(users::delete),
        )
        .route("/users/{user_id}/password", put(users::change_password))
        .route(
            "/users/{user_id}/permissions",
            put(users::update_permissions),
        )
        .route(
            "/personal-access-tokens",
            get(users::list_tokens).post(users::create_token),
        )
        .route(
            "/personal-access-tokens/login",
            post(users::login_with_token),
        )
        .route(
            "/personal-access-tokens/{name}",
            delete(users::delete_token),
        )
        .route("/streams", get(streams::list).post(streams::create))
        .route(
            "/streams/{stream_id}",
            get(streams::get)
                .put(streams::update)
                .delete(streams::delete),
        )
        .route("/streams/{stream_id}/purge", delete(streams::purge))
        .route(
            "/streams/{stream_id}/topics",
            get(streams::list_topics).post(streams::create_topic),
        )
        .route(
            topic,
            get(streams::get_topic)
                .put(streams::update_topic)
                .delete(streams::delete_topic),
        )
        .route(&format!("{topic}/purge"), delete(streams::purge_topic))
        .route(
            &format!("{topic}/partitions"),
            post(streams::create_partitions).delete(streams::delete_partitions),
        )
        .route(
            &format!("{topic}/partitions/{{partition_id}}"),
            delete(streams::delete_segments),
        )
        .route(
            &format!("{topic}/messages"),
            get(messages::poll).post(messages::send),
        )
        .route(
            &format!("{topic}/consumer-offsets"),
            get(messages::get_offset).put(messages::store_offset),
        )
        .route(
            &format!("{topic}/consumer-offsets/{{consumer_id}}"),
            delete(messages::delete_offset),
        )
        .route(
            &format!("{topic}/consumer-groups"),
            get(messages::list_groups).post(messages::create_group),
        )
        .route(
            &format!("{topic}/consumer-groups/{{group_id}}"),
            get(messages::get_group).delete(messages::delete_group),
        )
}
