//! One client connection as a sans-I/O state machine.
//!
//! Bytes go in with [`Connection::on_received`]; complete frames are decoded and dispatched;
//! replies come out, in request order, through [`Connection::pending_output`] /
//! [`Connection::consume_output`]. Requests that need a storage shard or the metadata service go
//! over the network thread's rings; their replies come back through
//! [`Connection::on_shard_reply`] and [`Connection::on_metadata_reply`]. When a ring is full the
//! connection stops taking frames (backpressure) and [`Connection::wants_read`] turns false until
//! the worker core calls [`Connection::process`] again after replies drained.
//!
//! A large SendMessages frame is received in two parts: its header and metadata section through
//! the input buffer, its batch into a buffer of exactly the batch's size
//! ([`Connection::batch_receive_buffer`]), which becomes the shard's append without a copy.

use super::batch_receipt::BatchReceipt;
use super::context::WorkerContext;
use super::dispatch::{self, Continuation, Handled, Then};
use crate::mesh::messages::{ConnectionId, MetadataRequest, RequestToken, ShardRequest};
use crate::metadata::MetadataOutcome;
use crate::session::shared::{lock, ClientInfo};
use crate::shard::ShardOutcome;
use bytes::Bytes;
use riptide_protocol::codes::{ErrorCode, EvictionReason};
use riptide_protocol::constants::{
    BATCH_HEADER_SIZE_BYTES, HEADER_SIZE_BYTES, SERVER_PROTOCOL_VERSION,
    SERVER_PROTOCOL_VERSION_MIN,
};
use riptide_protocol::header::{EvictionRepr, ReplyRepr, RequestHeader};
use riptide_protocol::request::{Rejection, Request};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Bytes of consumed input after which the input buffer is compacted.
const INPUT_COMPACT_THRESHOLD_BYTES: usize = 64 * 1024;
/// Sequence number of the eviction slot: written after every reply owed, and last.
const EVICTION_SEQ: u64 = u64::MAX;

/// What a logged-in connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub user_id: u32,
    pub session_id: u64,
}

/// The per-connection facts handlers need.
#[derive(Debug)]
pub struct ConnectionState {
    pub client_id: u32,
    pub address: String,
    pub session: Option<Session>,
    /// The client whose consumer-group membership this connection polls for: itself, or the
    /// coordinator connection a cluster-aware SDK attached this poll connection to
    /// (AttachConsumerSession).
    pub attached_to: Option<u32>,
}

impl ConnectionState {
    /// The client id consumer-group membership is looked up by.
    pub fn group_member(&self) -> u32 {
        self.attached_to.unwrap_or(self.client_id)
    }
}

enum SlotState {
    Ready,
    /// Shard requests in flight; the reply is built once all answered.
    Shards {
        remaining: u32,
        continuation: Continuation,
        failure: Option<ErrorCode>,
    },
    /// A metadata request in flight; `Then` turns its outcome into the next step.
    Metadata(Then),
}

/// A request in flight: its reply header and the reply once known.
struct Inflight {
    seq: u64,
    reply: ReplyRepr,
    state: SlotState,
    chunks: Vec<Bytes>,
}

pub struct Connection {
    pub id: ConnectionId,
    pub state: ConnectionState,
    input: Vec<u8>,
    input_start: usize,
    batch_receipt: Option<BatchReceipt>,
    output: VecDeque<Bytes>,
    output_sent_bytes: usize,
    inflight: VecDeque<Inflight>,
    next_seq: u64,
    inflight_max: usize,
    /// A frame waits for ring room.
    blocked: bool,
    /// No more frames are read: an eviction, a close the core asked for, or the stream ended.
    closing: bool,
    last_activity: Instant,
}

impl Connection {
    /// A new connection, registered as a connected client.
    pub fn new(id: ConnectionId, address: String, ctx: &WorkerContext, now: Instant) -> Connection {
        let client_id = ctx.shared.next_client_id();
        lock(&ctx.shared.clients).insert(
            client_id,
            ClientInfo {
                client_id,
                address: address.clone(),
                user_id: None,
                session_id: None,
                transport: "TCP",
            },
        );
        Connection {
            id,
            state: ConnectionState {
                client_id,
                address,
                session: None,
                attached_to: None,
            },
            input: Vec::new(),
            input_start: 0,
            batch_receipt: None,
            output: VecDeque::new(),
            output_sent_bytes: 0,
            inflight: VecDeque::new(),
            next_seq: 1,
            inflight_max: ctx.shared.config.dataplane.connection_inflight_max,
            blocked: false,
            closing: false,
            last_activity: now,
        }
    }

    /// When the peer last sent anything.
    pub fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// Takes received bytes (a batch being received gets its share first) and processes every
    /// complete frame it can.
    pub fn on_received(&mut self, bytes: &[u8], now: Instant, ctx: &mut WorkerContext) {
        self.last_activity = now;
        if self.closing {
            return;
        }
        let taken = self
            .batch_receipt
            .as_mut()
            .map_or(0, |receipt| receipt.fill_from(bytes));
        self.input.extend_from_slice(&bytes[taken..]);
        self.process(ctx);
    }

    /// Where the next received bytes belong while a large batch arrives: the part of its buffer
    /// still to fill (exactly the bytes the batch lacks). A driver that can receive into it
    /// directly does so and then calls [`Connection::on_batch_received`]; the buffer stays put
    /// until then.
    pub fn batch_receive_buffer(&mut self) -> Option<&mut [u8]> {
        let receipt = self.batch_receipt.as_mut()?;
        Some(&mut receipt.batch[receipt.filled_bytes..]).filter(|rest| !rest.is_empty())
    }

    /// `received_bytes` arrived in [`Connection::batch_receive_buffer`].
    pub fn on_batch_received(
        &mut self,
        received_bytes: usize,
        now: Instant,
        ctx: &mut WorkerContext,
    ) {
        self.last_activity = now;
        if let Some(receipt) = self.batch_receipt.as_mut() {
            receipt.filled_bytes = (receipt.filled_bytes + received_bytes).min(receipt.batch.len());
        }
        if !self.closing {
            self.process(ctx);
        }
    }

    /// Whether the driver should keep reading from the socket.
    pub fn wants_read(&self) -> bool {
        !self.closing && !self.blocked && self.inflight.len() < self.inflight_max
    }

    /// Closing, and every reply owed is written: the transport may close.
    pub fn is_finished(&self) -> bool {
        self.closing && self.output.is_empty() && self.inflight.is_empty()
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Stalled on full rings: worth another [`Connection::process`] once replies drained.
    pub fn is_blocked(&self) -> bool {
        !self.closing && self.blocked
    }

    /// Bytes ready to send, as chunks (the first may be partly sent already).
    pub fn pending_output(&self) -> impl Iterator<Item = &[u8]> {
        let first_offset = self.output_sent_bytes;
        self.output.iter().enumerate().map(move |(i, chunk)| {
            if i == 0 {
                &chunk[first_offset..]
            } else {
                &chunk[..]
            }
        })
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Marks `sent` bytes of the pending output as written.
    pub fn consume_output(&mut self, mut sent: usize) {
        while sent > 0 {
            let Some(front) = self.output.front() else {
                return;
            };
            let left = front.len() - self.output_sent_bytes;
            if sent < left {
                self.output_sent_bytes += sent;
                return;
            }
            sent -= left;
            self.output.pop_front();
            self.output_sent_bytes = 0;
        }
    }

    /// Requests still waiting for a shard or the metadata service.
    pub fn awaiting_replies(&self) -> bool {
        self.inflight
            .iter()
            .any(|slot| !matches!(slot.state, SlotState::Ready))
    }

    fn awaiting_metadata(&self) -> bool {
        self.inflight
            .iter()
            .any(|slot| matches!(slot.state, SlotState::Metadata(_)))
    }

    /// Sends `bytes` (not an Iggy frame: a TLS alert to a TLS client on a plaintext listener)
    /// and closes.
    pub fn refuse(&mut self, bytes: &'static [u8]) {
        self.output.push_back(Bytes::from_static(bytes));
        self.closing = true;
    }

    /// Stops reading: the replies owed are still written, then the connection is finished.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// The stream is gone: leave consumer groups and the client registry, read nothing more.
    /// The output stays allocated: a driver may still have a send in flight from it.
    pub fn on_stream_end(&mut self, ctx: &WorkerContext) {
        lock(&ctx.shared.groups).remove_client(self.state.client_id);
        lock(&ctx.shared.clients).remove(&self.state.client_id);
        self.closing = true;
    }

    /// Decodes and dispatches complete frames while the connection may take more.
    pub fn process(&mut self, ctx: &mut WorkerContext) {
        self.blocked = false;
        // The input buffer is taken out while frames borrow it, so handlers can use `self`.
        let mut input = std::mem::take(&mut self.input);
        let frame_size_max_bytes = ctx.shared.config.limits.frame_size_max_bytes;
        while !self.closing && self.inflight.len() < self.inflight_max {
            let receipt = self.batch_receipt.as_ref();
            if let Some((head_len, complete)) = receipt.map(|r| (r.head_len, r.is_complete())) {
                let head = &input[self.input_start..self.input_start + head_len];
                if !complete || !self.may_dispatch(head, ctx) {
                    break;
                }
                let batch = self.batch_receipt.take().map(|receipt| receipt.batch);
                self.input_start += head.len();
                self.handle_frame(head, batch, ctx);
                continue;
            }
            let available = &input[self.input_start..];
            if available.len() < HEADER_SIZE_BYTES {
                break;
            }
            let frame_len = match frame_length(available, frame_size_max_bytes) {
                Ok(len) => len,
                Err(reason) => {
                    self.evict(client_of(available), reason, ctx);
                    break;
                }
            };
            if available.len() < frame_len {
                let Some(receipt) = BatchReceipt::begin(
                    available,
                    frame_len,
                    frame_size_max_bytes as usize,
                    &ctx.shared.batch_buffers,
                ) else {
                    break;
                };
                input.truncate(self.input_start + receipt.head_len);
                self.batch_receipt = Some(receipt);
                continue;
            }
            let frame = &available[..frame_len];
            if !self.may_dispatch(frame, ctx) {
                break;
            }
            self.input_start += frame_len;
            self.handle_frame(frame, None, ctx);
        }
        self.input = input;
        self.compact_input();
        self.flush_ready();
    }

    /// Whether the complete frame (or frame head) may be dispatched now: it may overtake the
    /// requests in flight (none of which waits for a metadata change it could depend on), and
    /// every ring has room for what it could send.
    fn may_dispatch(&mut self, frame: &[u8], ctx: &WorkerContext) -> bool {
        if !self.inflight.is_empty() && (self.awaiting_metadata() || !dispatch::may_pipeline(frame))
        {
            return false;
        }
        if !ctx.may_send_a_frame() {
            self.blocked = true;
            ctx.counters()
                .ring_full_stalls
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn compact_input(&mut self) {
        if self.input_start == self.input.len() {
            self.input.clear();
            self.input_start = 0;
        } else if self.input_start > INPUT_COMPACT_THRESHOLD_BYTES {
            self.input.drain(..self.input_start);
            self.input_start = 0;
        }
    }

    /// Handles one frame; `batch` is the SendMessages batch received into its own buffer, and
    /// `frame` then holds only the header and metadata section.
    fn handle_frame(&mut self, frame: &[u8], batch: Option<Vec<u8>>, ctx: &mut WorkerContext) {
        ctx.counters().requests.fetch_add(1, Ordering::Relaxed);
        let client = client_of(frame);
        let Ok(header) = RequestHeader::new_checked(frame) else {
            self.evict(client, EvictionReason::InvalidRequestOperation, ctx);
            return;
        };
        if let Err(reason) = header.validate(ctx.shared.config.limits.frame_size_max_bytes as usize)
        {
            self.evict(client, reason, ctx);
            return;
        }
        // The metadata section is decoded with the batch header behind it, as one body.
        let head_and_batch_header;
        let body = match &batch {
            Some(batch) => {
                let batch_header = &batch[..BATCH_HEADER_SIZE_BYTES.min(batch.len())];
                head_and_batch_header = [&frame[HEADER_SIZE_BYTES..], batch_header].concat();
                &head_and_batch_header[..]
            }
            None => &frame[HEADER_SIZE_BYTES..],
        };
        let session_id = self.state.session.map_or(0, |s| s.session_id);
        let mut reply = ReplyRepr::echo(&header, session_id, 0);
        let handled = match Request::decode(header.operation(), header.command_code(), body) {
            Ok(request) => {
                let command = request.command();
                let handled = dispatch::handle(request, batch, &header, &mut self.state, ctx);
                if let Handled::Error(code) = &handled {
                    tracing::debug!(
                        client = self.state.client_id,
                        ?command,
                        ?code,
                        "request refused"
                    );
                }
                handled
            }
            Err(error) => {
                tracing::debug!(client = self.state.client_id, %error, "request not decoded");
                match error.rejection() {
                    Rejection::Status(code) => Handled::Error(code),
                    Rejection::Evict(reason) => Handled::Evict(reason),
                }
            }
        };
        reply.session = self.state.session.map_or(session_id, |s| s.session_id);
        reply.commit = ctx.shared.metadata_commit();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight.push_back(Inflight {
            seq,
            reply,
            state: SlotState::Ready,
            chunks: Vec::new(),
        });
        self.settle(seq, client, handled, ctx);
    }

    /// Puts what a request resolved to into its in-flight slot `seq`: a reply, an error status,
    /// requests to servers to wait for, or an eviction.
    fn settle(&mut self, seq: u64, client: u128, handled: Handled, ctx: &mut WorkerContext) {
        let token = RequestToken {
            connection: self.id,
            seq,
        };
        let (state, chunks, status) = match handled {
            Handled::Reply(body) => (SlotState::Ready, vec![body.into()], None),
            Handled::Error(code) => {
                ctx.counters()
                    .request_errors
                    .fetch_add(1, Ordering::Relaxed);
                (SlotState::Ready, Vec::new(), Some(code))
            }
            Handled::Evict(reason) => {
                self.inflight.retain(|slot| slot.seq != seq);
                self.evict(client, reason, ctx);
                return;
            }
            Handled::Shard {
                requests,
                continuation,
            } => {
                let remaining = requests.len() as u32;
                for (shard, op) in requests {
                    ctx.send_to_shard(shard, ShardRequest { token, op });
                }
                let state = SlotState::Shards {
                    remaining,
                    continuation,
                    failure: None,
                };
                (state, Vec::new(), None)
            }
            Handled::Metadata { op, then } => {
                ctx.send_to_metadata(MetadataRequest { token, op });
                (SlotState::Metadata(then), Vec::new(), None)
            }
        };
        if let Some(slot) = self.inflight.iter_mut().find(|slot| slot.seq == seq) {
            slot.state = state;
            slot.chunks = chunks;
            if let Some(code) = status {
                slot.reply.status = code.as_u32();
            }
        }
        self.flush_ready();
    }

    /// Sends an eviction and closes the connection once it is written.
    fn evict(&mut self, client: u128, reason: EvictionReason, ctx: &WorkerContext) {
        ctx.counters().evictions.fetch_add(1, Ordering::Relaxed);
        let eviction = EvictionRepr {
            cluster: 0,
            client,
            reason,
            server_protocol_version: SERVER_PROTOCOL_VERSION,
            server_protocol_version_min: SERVER_PROTOCOL_VERSION_MIN,
        };
        let mut header = [0u8; HEADER_SIZE_BYTES];
        eviction.emit(&mut header);
        // Replies already owed go first, then the eviction; nothing after it is read.
        self.inflight.push_back(Inflight {
            seq: EVICTION_SEQ,
            reply: ReplyRepr::default(),
            state: SlotState::Ready,
            chunks: vec![Bytes::copy_from_slice(&header)],
        });
        self.closing = true;
        self.flush_ready();
    }

    /// A shard answered one of this connection's requests.
    pub fn on_shard_reply(&mut self, seq: u64, outcome: ShardOutcome, ctx: &mut WorkerContext) {
        let Some(slot) = self.inflight.iter_mut().find(|slot| slot.seq == seq) else {
            return;
        };
        let SlotState::Shards {
            remaining,
            continuation,
            failure,
        } = &mut slot.state
        else {
            return;
        };
        *remaining -= 1;
        match outcome {
            ShardOutcome::Failed(code) => *failure = failure.or(Some(code)),
            outcome => continuation.absorb(outcome),
        }
        if *remaining == 0 {
            match failure.take() {
                Some(code) => {
                    slot.reply.status = code.as_u32();
                    ctx.counters()
                        .request_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    if let Some(next) = continuation.next_step(ctx.counters()) {
                        slot.state = SlotState::Ready;
                        self.settle(seq, 0, next, ctx);
                        return;
                    }
                    slot.chunks = continuation.finish(ctx.counters());
                }
            }
            slot.state = SlotState::Ready;
        }
        self.flush_ready();
    }

    /// The metadata service answered one of this connection's requests: its continuation
    /// decides the next step (a reply, an error, shard work).
    pub fn on_metadata_reply(
        &mut self,
        seq: u64,
        outcome: MetadataOutcome,
        ctx: &mut WorkerContext,
    ) {
        let Some(slot) = self.inflight.iter_mut().find(|slot| slot.seq == seq) else {
            return;
        };
        let SlotState::Metadata(_) = slot.state else {
            return;
        };
        let SlotState::Metadata(then) = std::mem::replace(&mut slot.state, SlotState::Ready) else {
            return;
        };
        let handled = then(outcome, &mut self.state, ctx);
        // The session may have changed (a login): the reply carries the one in force.
        if let Some(slot) = self.inflight.iter_mut().find(|slot| slot.seq == seq) {
            slot.reply.session = self.state.session.map_or(0, |s| s.session_id);
            slot.reply.commit = ctx.shared.metadata_commit();
        }
        self.settle(seq, 0, handled, ctx);
    }

    /// Moves finished replies at the front of the in-flight queue to the output, in order.
    fn flush_ready(&mut self) {
        while matches!(self.inflight.front(), Some(slot) if matches!(slot.state, SlotState::Ready))
        {
            let Some(slot) = self.inflight.pop_front() else {
                break;
            };
            if slot.seq == EVICTION_SEQ {
                self.output.extend(slot.chunks);
                continue;
            }
            let body_len: usize = slot.chunks.iter().map(Bytes::len).sum();
            let mut header = [0u8; HEADER_SIZE_BYTES];
            slot.reply.emit(body_len as u32, &mut header);
            self.output.push_back(Bytes::copy_from_slice(&header));
            self.output
                .extend(slot.chunks.into_iter().filter(|chunk| !chunk.is_empty()));
        }
    }
}

/// The client id a request header carries (echoed in an eviction); 0 when it is too short.
fn client_of(frame: &[u8]) -> u128 {
    frame
        .get(128..144)
        .map_or(0, |b| u128::from_le_bytes(b.try_into().unwrap_or([0; 16])))
}

/// The frame length announced by a header, checked against the limits.
fn frame_length(header: &[u8], frame_size_max_bytes: u64) -> Result<usize, EvictionReason> {
    let size = u32::from_le_bytes(header[48..52].try_into().unwrap_or([0; 4])) as usize;
    if size < HEADER_SIZE_BYTES || size as u64 > frame_size_max_bytes {
        return Err(EvictionReason::InvalidRequestBodySize);
    }
    Ok(size)
}
