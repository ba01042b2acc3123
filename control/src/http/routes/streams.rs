//! Streams, topics, partitions and segments: Iggy's routes over the SDK's TCP calls. Creates
//! answer 200 with the created entity, updates and deletes 204, reads of a missing entity
//! Iggy's generic 404 (as Iggy's server).

use crate::http::error::{with_path, ApiError, ApiResult};
use crate::http::extract::{identifier, ApiJson, ApiPath, ApiQuery};
use crate::http::{Caller, HttpState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use iggy::prelude::{
    PartitionClient as _, SegmentClient as _, StreamClient as _, TopicClient as _,
};
use iggy_common::create_partitions::CreatePartitions;
use iggy_common::create_stream::CreateStream;
use iggy_common::create_topic::CreateTopic;
use iggy_common::delete_partitions::DeletePartitions;
use iggy_common::delete_segments::DeleteSegments;
use iggy_common::update_stream::UpdateStream;
use iggy_common::update_topic::UpdateTopic;
use iggy_common::{
    CompressionAlgorithm, IggyExpiry, MaxTopicSize, Stream, StreamDetails, StreamUpdateOptions,
    Topic, TopicCreateOptions, TopicDetails, TopicUpdateOptions, Validatable as _,
};
use std::sync::Arc;

type AppState = State<Arc<HttpState>>;

pub async fn list(State(state): AppState, caller: Caller) -> ApiResult<Json<Vec<Stream>>> {
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_streams().await;
    Ok(Json(lease.settle(result)?))
}

pub async fn create(
    State(state): AppState,
    caller: Caller,
    ApiJson(command): ApiJson<CreateStream>,
) -> ApiResult<Json<StreamDetails>> {
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().create_stream(&command.name).await;
    Ok(Json(lease.settle(result)?))
}

pub async fn get(
    State(state): AppState,
    caller: Caller,
    ApiPath(stream): ApiPath<String>,
) -> ApiResult<Json<StreamDetails>> {
    let stream = identifier(&stream)?;
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_stream(&stream).await;
    lease.settle(result)?.map(Json).ok_or(ApiError::NotFound)
}

pub async fn update(
    State(state): AppState,
    caller: Caller,
    ApiPath(stream): ApiPath<String>,
    ApiJson(command): ApiJson<UpdateStream>,
) -> ApiResult<StatusCode> {
    let stream = identifier(&stream)?;
    let options = StreamUpdateOptions {
        raw: command.options,
    };
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .update_stream(&stream, &command.name, &options)
        .await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, None))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(
    State(state): AppState,
    caller: Caller,
    ApiPath(stream): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let stream = identifier(&stream)?;
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().delete_stream(&stream).await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, None))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn purge(
    State(state): AppState,
    caller: Caller,
    ApiPath(stream): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let stream = identifier(&stream)?;
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().purge_stream(&stream).await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, None))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_topics(
    State(state): AppState,
    caller: Caller,
    ApiPath(stream): ApiPath<String>,
) -> ApiResult<Json<Vec<Topic>>> {
    let stream = identifier(&stream)?;
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_topics(&stream).await;
    let topics = lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, None))?;
    Ok(Json(topics))
}

pub async fn create_topic(
    State(state): AppState,
    caller: Caller,
    ApiPath(stream): ApiPath<String>,
    ApiJson(command): ApiJson<CreateTopic>,
) -> ApiResult<Json<TopicDetails>> {
    let stream = identifier(&stream)?;
    command.validate().map_err(ApiError::Iggy)?;
    // Iggy's mapping: a field left at its default is not an explicit option.
    let options = TopicCreateOptions {
        partitions_count: Some(command.partitions_count),
        compression_algorithm: (command.compression_algorithm != CompressionAlgorithm::default())
            .then_some(command.compression_algorithm),
        message_expiry: (command.message_expiry != IggyExpiry::ServerDefault)
            .then_some(command.message_expiry),
        max_topic_size: (command.max_topic_size != MaxTopicSize::ServerDefault)
            .then_some(command.max_topic_size),
        raw: command.options,
        ..TopicCreateOptions::default()
    };
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .create_topic(&stream, &command.name, &options)
        .await;
    let topic = lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, None))?;
    Ok(Json(topic))
}

pub async fn get_topic(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
) -> ApiResult<Json<TopicDetails>> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_topic(&stream, &topic).await;
    lease.settle(result)?.map(Json).ok_or(ApiError::NotFound)
}

pub async fn update_topic(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
    ApiJson(command): ApiJson<UpdateTopic>,
) -> ApiResult<StatusCode> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    command.validate().map_err(ApiError::Iggy)?;
    let options = TopicUpdateOptions {
        compression_algorithm: command.compression_algorithm,
        message_expiry: command.message_expiry,
        max_topic_size: command.max_topic_size,
        raw: command.options,
    };
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .update_topic(&stream, &topic, &command.name, &options)
        .await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_topic(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().delete_topic(&stream, &topic).await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn purge_topic(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().purge_topic(&stream, &topic).await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST .../partitions`: 200 with no body, as Iggy's server.
pub async fn create_partitions(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
    ApiJson(command): ApiJson<CreatePartitions>,
) -> ApiResult<StatusCode> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    command.validate().map_err(ApiError::Iggy)?;
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .create_partitions(&stream, &topic, command.partitions_count)
        .await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    Ok(StatusCode::OK)
}

/// `DELETE .../partitions?partitions_count=N`.
pub async fn delete_partitions(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<DeletePartitions>,
) -> ApiResult<StatusCode> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    query.validate().map_err(ApiError::Iggy)?;
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .delete_partitions(&stream, &topic, query.partitions_count)
        .await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE .../partitions/{p}?segments_count=N`: deletes a partition's oldest segments.
pub async fn delete_segments(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic, partition)): ApiPath<(String, String, u32)>,
    ApiQuery(query): ApiQuery<DeleteSegments>,
) -> ApiResult<StatusCode> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .delete_segments(&stream, &topic, partition, query.segments_count)
        .await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    Ok(StatusCode::NO_CONTENT)
}
