//! The JSON of the two bulk routes, written and read without the detours of the generic path.
//!
//! A poll answer is Iggy's `PolledMessages` JSON byte for byte (the tests compare it with
//! serde_json's rendering of the SDK's type), but each payload is base64-encoded straight into the
//! output: the generic path builds a `String` per payload and then scans it for characters to
//! escape, which base64 never contains (measured: that scan was a quarter of the control
//! process's CPU on 1000-message polls). A send body is read with its payloads borrowed from the
//! request bytes instead of copied into a `String` each.

use crate::http::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use base64::Engine as _;
use iggy_common::{HeaderEntry, IggyMessage, PolledMessages};
use std::io::Write as _;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Room per message for its header's JSON and the keys around the payload.
const MESSAGE_JSON_OVERHEAD_BYTES: usize = 320;

/// Iggy's JSON for a poll answer.
///
/// # Errors
/// A header that serde_json cannot render (not expected: plain numbers).
pub fn polled_messages(polled: &PolledMessages) -> Result<Vec<u8>, serde_json::Error> {
    let payload_bytes: usize = polled.messages.iter().map(|m| m.payload.len()).sum();
    let mut out = Vec::with_capacity(
        payload_bytes / 3 * 4 + polled.messages.len() * MESSAGE_JSON_OVERHEAD_BYTES + 128,
    );
    let _ = write!(
        out,
        "{{\"partition_id\":{},\"current_offset\":{},\"count\":{},\"messages\":[",
        polled.partition_id, polled.current_offset, polled.count
    );
    for (index, message) in polled.messages.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        message_json(message, &mut out)?;
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// One message as `IggyMessage`'s own `Serialize` renders it: header, payload, user headers (a
/// list of entries, base64 of raw bytes that do not parse as headers, or `[]`).
fn message_json(message: &IggyMessage, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    out.extend_from_slice(b"{\"header\":");
    serde_json::to_writer(&mut *out, &message.header)?;
    out.extend_from_slice(b",\"payload\":\"");
    base64_into(&message.payload, out);
    out.extend_from_slice(b"\",\"user_headers\":");
    match message.user_headers.as_ref() {
        None => out.extend_from_slice(b"[]"),
        Some(raw) => match message.user_headers_map() {
            Ok(Some(map)) => {
                let entries: Vec<HeaderEntry> = map
                    .into_iter()
                    .map(|(key, value)| HeaderEntry { key, value })
                    .collect();
                serde_json::to_writer(&mut *out, &entries)?;
            }
            _ => {
                out.push(b'"');
                base64_into(raw, out);
                out.push(b'"');
            }
        },
    }
    out.push(b'}');
    Ok(())
}

fn base64_into(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let length = base64::encoded_len(bytes.len(), true).expect("a payload's base64 fits memory");
    out.resize(start + length, 0);
    let written = BASE64
        .encode_slice(bytes, &mut out[start..])
        .expect("the buffer was sized by encoded_len");
    out.truncate(start + written);
}

/// A JSON request body as bytes, for a route that parses it itself: `Content-Type` must be JSON
/// (415 otherwise) and the body within `http.body_limit_bytes` (413), as axum's `Json` checks.
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(str::trim)
            .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"));
        if !json {
            return Err(ApiError::http(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_format",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "payload_too_large"
                } else {
                    "invalid_format"
                };
                ApiError::http(status, code, rejection.body_text())
            })?;
        Ok(JsonBytes(bytes))
    }
}

/// Parses a JSON body borrowing from it; syntax errors are 400, a wrong shape 422 (axum's and
/// Iggy's split).
///
/// # Errors
/// [`ApiError`] with that status.
pub fn parse<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let status = match e.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::http(
            status,
            "invalid_format",
            format!("Failed to deserialize the JSON body: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iggy_common::{HeaderKey, HeaderValue};

    fn message(payload: &[u8], id: u128) -> IggyMessage {
        let mut message = IggyMessage::builder()
            .id(id)
            .payload(payload.to_vec().into())
            .build()
            .unwrap();
        message.header.offset = id as u64;
        message.header.timestamp = 1_796_000_000_000_000 + id as u64;
        message
    }

    #[test]
    fn poll_answers_are_byte_identical_to_iggys_rendering() {
        let mut with_headers = IggyMessage::builder()
            .id(u128::MAX)
            .payload("h\"\\é".into())
            .user_headers(
                [
                    (
                        HeaderKey::try_from("k").unwrap(),
                        HeaderValue::try_from("v").unwrap(),
                    ),
                    (HeaderKey::try_from("n").unwrap(), HeaderValue::from(7u64)),
                ]
                .into_iter()
                .collect(),
            )
            .build()
            .unwrap();
        with_headers.header.checksum = u64::MAX;
        let mut raw_headers = message(b"r", 3);
        raw_headers.user_headers = Some(vec![0xff, 0, 1].into());
        raw_headers.header.user_headers_length = 3;
        for messages in [
            vec![],
            vec![message(b"a", 1)],
            vec![
                message(&[0u8; 1024], 2),
                with_headers,
                raw_headers,
                message(b"xy", 4),
            ],
        ] {
            let polled = PolledMessages {
                partition_id: 2,
                current_offset: 99,
                count: messages.len() as u32,
                messages,
            };
            let ours = polled_messages(&polled).unwrap();
            let theirs = serde_json::to_vec(&polled).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(theirs).unwrap()
            );
        }
    }

    #[test]
    fn parse_errors_split_into_syntax_and_shape() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Named<'a> {
            name: &'a str,
        }
        assert_eq!(parse::<Named>(br#"{"name":"x"}"#).unwrap().name, "x");
        let (status, body) = parse::<Named>(b"{\"name\":").unwrap_err().parts();
        assert_eq!(
            (status.as_u16(), body.code.as_str()),
            (400, "invalid_format")
        );
        let (status, _) = parse::<Named>(br#"{"nom":1}"#).unwrap_err().parts();
        assert_eq!(status.as_u16(), 422);
    }
}
