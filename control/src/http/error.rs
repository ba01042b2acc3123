//! Errors of the HTTP API, rendered as Iggy renders them: the JSON body
//! `{"id": code, "code": "snake_case_name", "reason": "text", "field": null | "name"}` with Iggy's
//! numeric error code, and the HTTP status Iggy's server gives that code (404 for the not-found
//! family, 401 for a missing or bad credential, 403 for a refused permission, 503 for a dataplane
//! that cannot be reached, 400 for the rest). Errors born in the HTTP layer itself (bad JSON, an
//! oversized body, a timeout, an unknown route) use the same shape; like Iggy's own hand-built
//! errors they carry the HTTP status as `id` where no Iggy code fits.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use iggy_common::{Identifier, IggyError};
use serde::Serialize;

/// Advisory `Retry-After` of a 503, in seconds (Iggy's value).
const RETRY_AFTER_S: u32 = 1;

/// Iggy's error body.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct ErrorBody {
    pub id: u32,
    pub code: String,
    pub reason: String,
    pub field: Option<String>,
}

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// An error with an Iggy code: from the dataplane, or found here before asking it.
    Iggy(IggyError),
    /// The thing asked for does not exist: Iggy's generic 404 body.
    NotFound,
    /// The dataplane cannot be reached right now (starting, restarting, down): 503.
    Unavailable(String),
    /// An error of the HTTP layer: its status, a snake_case code and a reason.
    Http {
        status: StatusCode,
        code: &'static str,
        reason: String,
    },
}

impl From<IggyError> for ApiError {
    fn from(error: IggyError) -> Self {
        if breaks_connection(&error) {
            return ApiError::Unavailable(error.to_string());
        }
        ApiError::Iggy(error)
    }
}

/// Errors after which a dataplane connection is in an unknown state (no reply, or a reply that
/// could not be read): it is closed, never reused, and the request is answered 503.
pub fn breaks_connection(error: &IggyError) -> bool {
    matches!(
        error,
        IggyError::Disconnected
            | IggyError::CannotEstablishConnection
            | IggyError::StaleClient
            | IggyError::TcpError
            | IggyError::NotConnected
            | IggyError::ClientShutdown
            | IggyError::ConnectionClosed
            | IggyError::EmptyResponse
            | IggyError::InvalidBytesResponse
            | IggyError::TaskTimeout
    )
}

/// The HTTP status Iggy's server answers an error code with. A stream or topic named in the
/// request that does not exist is 404 whether the dataplane names the miss by id or by name
/// (Iggy's server only ever answers the id variants).
pub fn status_of(error: &IggyError) -> StatusCode {
    match error {
        IggyError::StreamIdNotFound(_)
        | IggyError::StreamNameNotFound(_)
        | IggyError::TopicIdNotFound(_, _)
        | IggyError::TopicNameNotFound(_, _)
        | IggyError::PartitionNotFound(_, _, _)
        | IggyError::SegmentNotFound
        | IggyError::ClientNotFound(_)
        | IggyError::ConsumerGroupIdNotFound(_, _)
        | IggyError::ConsumerGroupNameNotFound(_, _)
        | IggyError::ConsumerGroupMemberNotFound(_, _, _)
        | IggyError::ConsumerOffsetNotFound(_)
        | IggyError::ResourceNotFound(_) => StatusCode::NOT_FOUND,
        IggyError::Unauthenticated
        | IggyError::AccessTokenMissing
        | IggyError::InvalidAccessToken
        | IggyError::InvalidPersonalAccessToken => StatusCode::UNAUTHORIZED,
        IggyError::Unauthorized => StatusCode::FORBIDDEN,
        IggyError::TransientNotCommitted | IggyError::TransientNotAccepted => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The request field an error is about, as Iggy names it.
fn field_of(error: &IggyError) -> Option<&'static str> {
    Some(match error {
        IggyError::StreamIdNotFound(_)
        | IggyError::StreamNameNotFound(_)
        | IggyError::InvalidStreamId => "stream_id",
        IggyError::TopicIdNotFound(_, _)
        | IggyError::TopicNameNotFound(_, _)
        | IggyError::InvalidTopicId => "topic_id",
        IggyError::PartitionNotFound(_, _, _) => "partition_id",
        IggyError::SegmentNotFound => "segment_id",
        IggyError::ClientNotFound(_) => "client_id",
        IggyError::InvalidStreamName
        | IggyError::StreamNameAlreadyExists(_)
        | IggyError::InvalidTopicName
        | IggyError::TopicNameAlreadyExists(_, _)
        | IggyError::ConsumerGroupNameAlreadyExists(_, _)
        | IggyError::PersonalAccessTokenAlreadyExists(_, _) => "name",
        IggyError::InvalidOffset(_) => "offset",
        IggyError::InvalidConsumerGroupId => "consumer_group_id",
        IggyError::UserAlreadyExists => "username",
        _ => return None,
    })
}

impl ErrorBody {
    pub fn of(error: &IggyError) -> ErrorBody {
        ErrorBody {
            id: error.as_code(),
            code: error.as_string().to_string(),
            reason: error.to_string(),
            field: field_of(error).map(str::to_string),
        }
    }
}

impl ApiError {
    pub fn http(status: StatusCode, code: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError::Http {
            status,
            code,
            reason: reason.into(),
        }
    }

    /// The status and body this error is answered with.
    pub fn parts(&self) -> (StatusCode, ErrorBody) {
        match self {
            ApiError::Iggy(error) => (status_of(error), ErrorBody::of(error)),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                ErrorBody {
                    id: 404,
                    code: "not_found".to_string(),
                    reason: "Resource not found".to_string(),
                    field: None,
                },
            ),
            ApiError::Unavailable(reason) => {
                let mut body = ErrorBody::of(&IggyError::CannotEstablishConnection);
                body.reason = format!("the dataplane cannot be reached: {reason}");
                (StatusCode::SERVICE_UNAVAILABLE, body)
            }
            ApiError::Http {
                status,
                code,
                reason,
            } => (
                *status,
                ErrorBody {
                    id: u32::from(status.as_u16()),
                    code: (*code).to_string(),
                    reason: reason.clone(),
                    field: None,
                },
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), code = %body.code, "{}", body.reason);
        } else {
            tracing::debug!(status = status.as_u16(), code = %body.code, "{}", body.reason);
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        response
    }
}

/// A malformed body: its JSON syntax or shape (400 and 422, as axum and Iggy answer), a missing
/// `Content-Type: application/json` (415), or a body over `http.body_limit_bytes` (413).
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::http(status, "payload_too_large", rejection.body_text());
        }
        ApiError::Http {
            status,
            code: "invalid_format",
            reason: rejection.body_text(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::http(
            StatusCode::BAD_REQUEST,
            "invalid_format",
            rejection.body_text(),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::http(
            StatusCode::BAD_REQUEST,
            "invalid_format",
            rejection.body_text(),
        )
    }
}

/// Puts the identifiers of the request path into a not-found error the dataplane answered with
/// a bare code (the SDK rebuilds it with default identifiers), so the reason names them.
pub fn with_path(error: IggyError, stream: &Identifier, topic: Option<&Identifier>) -> IggyError {
    match (error, topic) {
        (IggyError::StreamIdNotFound(_), _) => IggyError::StreamIdNotFound(stream.clone()),
        (IggyError::StreamNameNotFound(_), _) => IggyError::StreamNameNotFound(stream.to_string()),
        (IggyError::TopicNameNotFound(_, _), Some(topic)) => {
            IggyError::TopicNameNotFound(topic.to_string(), stream.to_string())
        }
        (IggyError::TopicIdNotFound(_, _), Some(topic)) => {
            IggyError::TopicIdNotFound(topic.clone(), stream.clone())
        }
        (IggyError::PartitionNotFound(partition, _, _), Some(topic)) => {
            IggyError::PartitionNotFound(partition, topic.clone(), stream.clone())
        }
        (other, _) => other,
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_iggys_map() {
        let cases = [
            (IggyError::from_code(1009), 404),
            (IggyError::from_code(2010), 404),
            (IggyError::from_code(1010), 404),
            (IggyError::from_code(2011), 404),
            (IggyError::Unauthenticated, 401),
            (IggyError::InvalidPersonalAccessToken, 401),
            (IggyError::Unauthorized, 403),
            (IggyError::InvalidCredentials, 400),
            (IggyError::StreamNameAlreadyExists(String::new()), 400),
        ];
        for (error, status) in cases {
            assert_eq!(status_of(&error).as_u16(), status, "{error}");
        }
    }

    #[test]
    fn bodies_carry_the_code_its_name_and_the_field() {
        let (status, body) = ApiError::Iggy(IggyError::Unauthorized).parts();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            ErrorBody {
                id: 41,
                code: "unauthorized".to_string(),
                reason: "Unauthorized".to_string(),
                field: None
            }
        );
        let (_, body) = ApiError::Iggy(IggyError::StreamNameAlreadyExists("s".into())).parts();
        assert_eq!((body.id, body.field.as_deref()), (1012, Some("name")));
        let (status, body) = ApiError::NotFound.parts();
        assert_eq!(
            (status.as_u16(), body.id, body.code.as_str()),
            (404, 404, "not_found")
        );
    }

    #[test]
    fn a_lost_connection_is_a_503_with_iggys_connection_code() {
        let error = ApiError::from(IggyError::Disconnected);
        let (status, body) = error.parts();
        assert_eq!((status.as_u16(), body.id), (503, 9));
        let response = ApiError::from(IggyError::NotConnected).into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }

    #[test]
    fn path_identifiers_replace_the_sdks_defaults() {
        let stream = Identifier::named("orders").unwrap();
        let refined = with_path(IggyError::from_code(1009), &stream, None);
        assert!(refined.to_string().contains("orders"), "{refined}");
    }
}
