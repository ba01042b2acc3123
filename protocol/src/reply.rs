//! Reply bodies: result sections, the login reply, the poll-reply prefix, send confirmations,
//! and the typed response encoders of `iggy_binary_protocol` (re-exported in [`types`]).
//!
//! Which bodies carry a result section: every metadata operation and the consumer-offset
//! writes ([`crate::codes::Operation::is_result_framed`]) plus a non-empty Register reply.
//! Reads, SendMessages and Logout carry the typed payload directly.

use crate::codes::ErrorCode;
use crate::constants::{SEND_CONFIRMATION_SIZE_BYTES, SERVER_PROTOCOL_VERSION, SERVER_VERSION};
use bytes::BytesMut;
use iggy_binary_protocol::WireEncode;

/// Typed response bodies of iggy 0.11, encoded with `WireEncode::encode`.
pub mod types {
    pub use iggy_binary_protocol::responses::clients::*;
    pub use iggy_binary_protocol::responses::consumer_groups::*;
    pub use iggy_binary_protocol::responses::consumer_offsets::*;
    pub use iggy_binary_protocol::responses::messages::*;
    pub use iggy_binary_protocol::responses::personal_access_tokens::*;
    pub use iggy_binary_protocol::responses::streams::*;
    pub use iggy_binary_protocol::responses::system::*;
    pub use iggy_binary_protocol::responses::topics::*;
    pub use iggy_binary_protocol::responses::users::*;
    pub use iggy_binary_protocol::{WireEncode, WireName, WireOptions};
}

/// Appends the success result section `[count u32 = 0]`; the typed payload follows it.
pub fn result_ok(out: &mut Vec<u8>) {
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// Appends a failed result section `[count u32 = 1][index u32 = 0][result u32 = code]`; nothing
/// may follow it.
pub fn result_err(code: ErrorCode, out: &mut Vec<u8>) {
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&code.as_u32().to_le_bytes());
}

/// Reads a result section at the start of `body`: `Some(Ok(payload))` for count 0,
/// `Some(Err(code))` for a failure (the first entry's code), `None` when malformed.
pub fn parse_result(body: &[u8]) -> Option<Result<&[u8], u32>> {
    let count = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
    if count == 0 {
        return Some(Ok(body.get(4..)?));
    }
    let result = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?);
    let entries_len = (count as usize).checked_mul(8)?.checked_add(4)?;
    if entries_len > body.len() {
        return None;
    }
    Some(Err(result))
}

/// Appends any typed response.
pub fn encode<T: WireEncode>(response: &T, out: &mut Vec<u8>) {
    let mut buf = BytesMut::with_capacity(response.encoded_size());
    response.encode(&mut buf);
    out.extend_from_slice(&buf);
}

/// Appends a successful Register reply body:
/// `[count 0][user_id u32][session u64][server_protocol_version u32][server_version WireName]`.
pub fn login_reply(user_id: u32, session: u64, out: &mut Vec<u8>) {
    result_ok(out);
    out.extend_from_slice(&user_id.to_le_bytes());
    out.extend_from_slice(&session.to_le_bytes());
    out.extend_from_slice(&SERVER_PROTOCOL_VERSION.to_le_bytes());
    out.push(SERVER_VERSION.len() as u8);
    out.extend_from_slice(SERVER_VERSION.as_bytes());
}

/// The 16-byte prefix of a poll reply: `[partition_id u32][current_offset u64][messages_count u32]`,
/// followed by the (possibly sliced) stored records.
pub fn poll_reply_prefix(partition_id: u32, current_offset: u64, messages_count: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0..4].copy_from_slice(&partition_id.to_le_bytes());
    out[4..12].copy_from_slice(&current_offset.to_le_bytes());
    out[12..16].copy_from_slice(&messages_count.to_le_bytes());
    out
}

/// One SendMessages confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendConfirmation {
    /// Stream id.
    pub stream_id: u32,
    /// Topic id.
    pub topic_id: u32,
    /// Partition the batch went to.
    pub partition_id: u32,
    /// Offset of the batch's first message.
    pub base_offset: u64,
}

impl SendConfirmation {
    /// The 20 wire bytes.
    pub fn to_bytes(&self) -> [u8; SEND_CONFIRMATION_SIZE_BYTES] {
        let mut out = [0u8; SEND_CONFIRMATION_SIZE_BYTES];
        out[0..4].copy_from_slice(&self.stream_id.to_le_bytes());
        out[4..8].copy_from_slice(&self.topic_id.to_le_bytes());
        out[8..12].copy_from_slice(&self.partition_id.to_le_bytes());
        out[12..20].copy_from_slice(&self.base_offset.to_le_bytes());
        out
    }
}

/// Appends a SendMessages reply body: `[count u32]` + the confirmations (no result section).
pub fn send_confirmations(confirmations: &[SendConfirmation], out: &mut Vec<u8>) {
    let count = u32::try_from(confirmations.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_le_bytes());
    for confirmation in confirmations.iter().take(count as usize) {
        out.extend_from_slice(&confirmation.to_bytes());
    }
}
