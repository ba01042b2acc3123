//! Messages, consumer offsets and consumer groups.
//!
//! A send is one SendMessages over the caller's TCP connection: it is answered 201 once the
//! dataplane acknowledged it, which by default means on stable storage — the same durability as a
//! TCP send. The `iggy-durability` header says which (`persisted`, or `replicated` for a topic
//! acknowledged from memory under `storage.ack_floor = "memory"`), as Iggy's server does.

use crate::http::error::{with_path, ApiError, ApiResult};
use crate::http::extract::{identifier, ApiJson, ApiPath, ApiQuery};
use crate::http::json::{self, JsonBytes};
use crate::http::{Caller, HttpState};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use iggy::prelude::{
    ConsumerGroupClient as _, ConsumerOffsetClient as _, MessageClient as _, TopicClient as _,
};
use iggy_common::create_consumer_group::CreateConsumerGroup;
use iggy_common::delete_consumer_offset::DeleteConsumerOffset;
use iggy_common::get_consumer_offset::GetConsumerOffset;
use iggy_common::store_consumer_offset::StoreConsumerOffset;
use iggy_common::{
    Consumer, ConsumerGroup, ConsumerGroupDetails, ConsumerOffsetInfo, Durability, HeaderEntry,
    Identifier, IggyError, IggyMessage, Partitioning, PollMessages, SendMessagesConfirmations,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

type AppState = State<Arc<HttpState>>;

/// Response header of a send naming the durability of its acknowledgement.
pub const DURABILITY_HEADER: &str = "iggy-durability";

/// The body of `POST .../messages`, as Iggy's server reads it: `partitioning` and `messages`, each
/// message `{"id": number | "decimal" | "uuid-hex", "payload": base64, "user_headers": null |
/// base64 | [{"key": .., "value": ..}]}`. Decoded straight into the SDK's messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody<'a> {
    pub partitioning: Partitioning,
    #[serde(borrow)]
    pub messages: Vec<JsonMessage<'a>>,
}

/// A message of a send body; its payload is borrowed from the request bytes.
#[derive(Deserialize)]
pub struct JsonMessage<'a> {
    #[serde(default)]
    id: Option<MessageId>,
    #[serde(borrow)]
    payload: std::borrow::Cow<'a, str>,
    #[serde(default)]
    user_headers: Option<JsonHeaders>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MessageId {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonHeaders {
    Raw(String),
    Entries(Vec<HeaderEntry>),
}

fn invalid(reason: String) -> ApiError {
    ApiError::http(StatusCode::UNPROCESSABLE_ENTITY, "invalid_format", reason)
}

fn message_id(id: Option<MessageId>) -> Result<u128, ApiError> {
    match id {
        None => Ok(0),
        Some(MessageId::Number(id)) => Ok(u128::from(id)),
        Some(MessageId::Text(text)) => {
            if let Ok(id) = text.parse::<u128>() {
                return Ok(id);
            }
            let hex = text.replace('-', "");
            if hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return u128::from_str_radix(&hex, 16).map_err(|e| invalid(e.to_string()));
            }
            Err(invalid(format!(
                "message id '{text}' is neither a decimal number nor a UUID"
            )))
        }
    }
}

impl JsonMessage<'_> {
    fn into_message(self) -> Result<IggyMessage, ApiError> {
        let engine = base64::engine::general_purpose::STANDARD;
        let id = message_id(self.id)?;
        let payload = engine
            .decode(self.payload.as_bytes())
            .map_err(|e| invalid(format!("payload is not base64: {e}")))?;
        let builder = IggyMessage::builder().id(id).payload(payload.into());
        match self.user_headers {
            None => builder.build().map_err(ApiError::Iggy),
            Some(JsonHeaders::Entries(entries)) => {
                let map: BTreeMap<_, _> = entries.into_iter().map(|e| (e.key, e.value)).collect();
                builder.user_headers(map).build().map_err(ApiError::Iggy)
            }
            // Raw header bytes (e.g. encrypted by the client), kept as they are.
            Some(JsonHeaders::Raw(text)) => {
                let raw = engine
                    .decode(&text)
                    .map_err(|e| invalid(format!("user_headers are not base64: {e}")))?;
                let mut message = builder.build().map_err(ApiError::Iggy)?;
                message.header.user_headers_length = raw.len() as u32;
                message.user_headers = Some(raw.into());
                Ok(message)
            }
        }
    }
}

/// Decodes the messages of a send body.
///
/// # Errors
/// 422 for a payload or header that does not decode, Iggy's codes for invalid messages.
pub fn decode_messages(body: SendBody<'_>) -> Result<(Partitioning, Vec<IggyMessage>), ApiError> {
    if body.messages.is_empty() {
        return Err(ApiError::Iggy(IggyError::InvalidMessagesCount));
    }
    let mut partitioning = body.partitioning;
    let length = partitioning.value.len();
    let valid = match partitioning.kind {
        iggy_common::PartitioningKind::Balanced => length == 0,
        iggy_common::PartitioningKind::PartitionId => length == 4,
        iggy_common::PartitioningKind::MessagesKey => (1..=255).contains(&length),
    };
    if !valid {
        return Err(ApiError::Iggy(IggyError::InvalidKeyValueLength));
    }
    // The JSON form carries no length (Iggy's type skips it); the binary form needs it.
    partitioning.length = length as u8;
    let messages = body
        .messages
        .into_iter()
        .map(JsonMessage::into_message)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((partitioning, messages))
}

pub async fn send(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Response> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    let (partitioning, mut messages) = decode_messages(json::parse(&body)?)?;
    drop(body);
    let mut lease = state.lease(&caller).await?;
    let asked = durability(&state, &mut lease, &stream, &topic).await;
    let durability = lease
        .settle(asked)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    let result = lease
        .conn()
        .send_messages(&stream, &topic, &partitioning, &mut messages)
        .await;
    let response = lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    let header = (
        HeaderName::from_static(DURABILITY_HEADER),
        HeaderValue::from_static(if durability.is_persisted() {
            "persisted"
        } else {
            "replicated"
        }),
    );
    let confirmations = SendMessagesConfirmations::from(response);
    Ok((StatusCode::CREATED, [header], Json(confirmations)).into_response())
}

/// The durability a send to this topic is acknowledged with: persisted under the default
/// acknowledgement floor; under `storage.ack_floor = "memory"`, the topic's own option.
async fn durability(
    state: &HttpState,
    lease: &mut crate::http::pool::Lease<crate::http::dataplane::DataplaneConnector>,
    stream: &Identifier,
    topic: &Identifier,
) -> Result<Durability, IggyError> {
    if state.app.config_snapshot().storage.ack_floor == riptide_config::AckFloor::Persisted {
        return Ok(Durability::Persisted);
    }
    let details = lease.conn().get_topic(stream, topic).await?;
    let asked = details.and_then(|details| {
        details
            .options
            .iter()
            .find(|(key, _)| key.to_string() == iggy_common::topic_option_keys::DURABILITY)
            .and_then(|(_, option)| option.value.to_string_value().parse::<Durability>().ok())
    });
    Ok(asked.unwrap_or(Durability::Replicated))
}

/// Polls of a stream or topic that does not exist answer Iggy's generic 404.
fn poll_error(error: IggyError, stream: &Identifier, topic: &Identifier) -> ApiError {
    match error {
        IggyError::StreamIdNotFound(_)
        | IggyError::StreamNameNotFound(_)
        | IggyError::TopicIdNotFound(_, _)
        | IggyError::TopicNameNotFound(_, _) => ApiError::NotFound,
        other => with_path(other, stream, Some(topic)).into(),
    }
}

/// `GET .../messages?consumer_id=&partition_id=&kind=&value=&count=&auto_commit=`.
pub async fn poll(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<PollMessages>,
) -> ApiResult<Response> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .poll_messages(
            &stream,
            &topic,
            query.partition_id,
            &query.consumer,
            &query.strategy,
            query.count,
            query.auto_commit,
        )
        .await;
    let polled = lease
        .settle(result)
        .map_err(|e| poll_error(e, &stream, &topic))?;
    drop(lease);
    let body = json::polled_messages(&polled).map_err(|e| crate::http::internal(e.to_string()))?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET .../consumer-offsets?consumer_id=&partition_id=` (partition 0 when omitted, as Iggy).
pub async fn get_offset(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<GetConsumerOffset>,
) -> ApiResult<Json<ConsumerOffsetInfo>> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    let partition = Some(query.partition_id.unwrap_or(0));
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .get_consumer_offset(&query.consumer, &stream, &topic, partition)
        .await;
    lease
        .settle(result)
        .map_err(|e| poll_error(e, &stream, &topic))?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

pub async fn store_offset(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
    ApiJson(command): ApiJson<StoreConsumerOffset>,
) -> ApiResult<StatusCode> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .store_consumer_offset(
            &command.consumer,
            &stream,
            &topic,
            command.partition_id,
            command.offset,
        )
        .await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE .../consumer-offsets/{consumer_id}?partition_id=`.
pub async fn delete_offset(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic, consumer)): ApiPath<(String, String, String)>,
    ApiQuery(query): ApiQuery<DeleteConsumerOffset>,
) -> ApiResult<StatusCode> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    let consumer = Consumer::new(identifier(&consumer)?);
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .delete_consumer_offset(&consumer, &stream, &topic, query.partition_id)
        .await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_groups(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
) -> ApiResult<Json<Vec<ConsumerGroup>>> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_consumer_groups(&stream, &topic).await;
    let groups = lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    Ok(Json(groups))
}

pub async fn create_group(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic)): ApiPath<(String, String)>,
    ApiJson(command): ApiJson<CreateConsumerGroup>,
) -> ApiResult<Json<ConsumerGroupDetails>> {
    let (stream, topic) = (identifier(&stream)?, identifier(&topic)?);
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .create_consumer_group(&stream, &topic, &command.name)
        .await;
    let group = lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    Ok(Json(group))
}

pub async fn get_group(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic, group)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<ConsumerGroupDetails>> {
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
    lease.settle(result)?.map(Json).ok_or(ApiError::NotFound)
}

pub async fn delete_group(
    State(state): AppState,
    caller: Caller,
    ApiPath((stream, topic, group)): ApiPath<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (stream, topic, group) = (
        identifier(&stream)?,
        identifier(&topic)?,
        identifier(&group)?,
    );
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .delete_consumer_group(&stream, &topic, &group)
        .await;
    lease
        .settle(result)
        .map_err(|e| with_path(e, &stream, Some(&topic)))?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(body: serde_json::Value) -> Result<(Partitioning, Vec<IggyMessage>), ApiError> {
        let bytes = serde_json::to_vec(&body).unwrap();
        decode_messages(json::parse(&bytes).expect("the body's shape"))
    }

    #[test]
    fn ids_payloads_and_headers_decode_as_iggys_server_reads_them() {
        let engine = base64::engine::general_purpose::STANDARD;
        let (partitioning, messages) = decode(json!({
            "partitioning": {"kind": "partition_id", "value": engine.encode(3u32.to_le_bytes())},
            "messages": [
                {"id": 5, "payload": engine.encode("a")},
                {"id": "340282366920938463463374607431768211455", "payload": engine.encode("b")},
                {"id": "0000000000000000000000000000002a", "payload": engine.encode("c"),
                 "user_headers": [{"key": {"kind": "string", "value": engine.encode("k")},
                                   "value": {"kind": "uint32", "value": engine.encode(7u32.to_le_bytes())}}]},
                {"payload": engine.encode("d"), "user_headers": engine.encode([1u8, 2, 3])},
                {"payload": engine.encode("e"), "user_headers": null},
            ]
        }))
        .unwrap();
        assert_eq!(partitioning, Partitioning::partition_id(3));
        let ids: Vec<u128> = messages.iter().map(|m| m.header.id).collect();
        assert_eq!(&ids[..3], &[5, u128::MAX, 42]);
        assert_eq!(messages[0].payload.as_ref(), b"a");
        let headers = messages[2].user_headers_map().unwrap().unwrap();
        assert_eq!(headers.len(), 1);
        assert_eq!(messages[3].user_headers.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(messages[3].header.user_headers_length, 3);
        assert!(messages[4].user_headers.is_none());
    }

    #[test]
    fn bad_messages_get_iggys_codes_or_422() {
        let balanced = json!({"kind": "balanced", "value": ""});
        let cases = [
            (json!({"partitioning": balanced, "messages": []}), 400, 4009),
            (
                json!({"partitioning": balanced, "messages": [{"payload": "@@"}]}),
                422,
                422,
            ),
            (
                json!({"partitioning": balanced, "messages": [{"id": "nope", "payload": "eA=="}]}),
                422,
                422,
            ),
            (
                json!({"partitioning": balanced, "messages": [{"payload": ""}]}),
                400,
                IggyError::InvalidMessagePayloadLength.as_code(),
            ),
            (
                json!({"partitioning": {"kind": "messages_key", "value": ""}, "messages": [{"payload": "eA=="}]}),
                400,
                4028,
            ),
            (
                json!({"partitioning": {"kind": "partition_id", "value": "AAA="}, "messages": [{"payload": "eA=="}]}),
                400,
                4028,
            ),
        ];
        for (body, status, id) in cases {
            let (got_status, got) = decode(body.clone()).unwrap_err().parts();
            assert_eq!((got_status.as_u16(), got.id), (status, id), "{body}");
        }
        let unknown =
            serde_json::to_vec(&json!({"partitioning": balanced, "messages": [], "extra": 1}))
                .unwrap();
        assert!(
            json::parse::<SendBody>(&unknown).is_err(),
            "unknown fields are refused, as Iggy's server does"
        );
    }
}
