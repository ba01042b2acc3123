//! One client connection as a sans-I/O state machine, shared by the kernel and DPDK backends.
//!
//! Bytes go in with [`Connection::on_received`]; complete frames are decoded and dispatched;
//! replies come out, in request order, through [`Connection::pending_output`] /
//! [`Connection::consume_output`]. Requests that need a storage shard go over the worker's rings;
//! their replies come back through [`Connection::on_shard_reply`]. When a ring is full the
//! connection stops taking frames (backpressure) and [`Connection::wants_read`] turns false until
//! the backend calls [`Connection::process`] again after replies drained.
//!
//! A large SendMessages frame is received in two parts: its header and metadata section through
//! the input buffer, its batch into a buffer of exactly the batch's size
//! ([`Connection::batch_receive_buffer`]), which becomes the shard's append without a copy.

use crate::mesh::batch_buffers::BatchBufferPool;
use crate::mesh::ring::ShardLink;
use crate::session::dispatch::{self, Continuation, Handled};
use crate::session::shared::{lock, ClientInfo, Shared};
use crate::shard::{ConnectionId, RequestToken, ShardOutcome, ShardReply, ShardRequest};
use bytes::Bytes;
use riptide_protocol::codes::{CommandCode, ErrorCode, EvictionReason};
use riptide_protocol::constants::{
    BATCH_HEADER_SIZE_BYTES, HEADER_SIZE_BYTES, SERVER_PROTOCOL_VERSION,
    SERVER_PROTOCOL_VERSION_MIN,
};
use riptide_protocol::header::{EvictionRepr, ReplyRepr, RequestHeader};
use riptide_protocol::request::{Rejection, Request};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Bytes of consumed input after which the input buffer is compacted.
const INPUT_COMPACT_THRESHOLD_BYTES: usize = 64 * 1024;
/// Smallest SendMessages batch received into a buffer of its own; smaller ones are cheaper to
/// copy out of the input buffer than to receive separately.
const DIRECT_BATCH_MIN_BYTES: usize = 64 * 1024;
/// Longest SendMessages metadata section: two identifiers and a partitioning key of at most 255
/// bytes each, their kind and length bytes and the message count fit well below this.
const SEND_METADATA_MAX_BYTES: usize = 1024;

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
}

/// Per network worker (kernel thread or DPDK lcore): its rings and its view of shared state.
pub struct WorkerContext {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub links: Vec<ShardLink>,
    /// Round-robin counters of balanced partitioning, per (stream, topic), local to the worker.
    pub balanced_next: HashMap<(u32, u32), u32>,
}

impl WorkerContext {
    pub fn new(index: usize, shared: Arc<Shared>, links: Vec<ShardLink>) -> WorkerContext {
        WorkerContext {
            index,
            shared,
            links,
            balanced_next: HashMap::new(),
        }
    }

    /// Whether every shard can take one more request (checked before a frame is dispatched,
    /// so a dispatched request is never refused by a full ring).
    fn every_link_has_room(&self, needed: usize) -> bool {
        self.links.iter().all(|link| {
            link.capacity - link.outstanding >= needed && link.requests.slots() >= needed
        })
    }

    fn send(&mut self, shard: usize, request: ShardRequest) {
        let link = &mut self.links[shard];
        link.outstanding += 1;
        if link.requests.push(request).is_err() {
            // every_link_has_room was checked for this frame before dispatch.
            tracing::error!(shard, "request ring full after a room check");
        }
    }

    /// Wakes the shards that were sent requests since the last call.
    pub fn wake_shards(&mut self, sent: &mut [bool]) {
        for (shard, flag) in sent.iter_mut().enumerate() {
            if std::mem::take(flag) {
                self.links[shard].shard_waker.wake();
            }
        }
    }

    /// Takes every reply waiting in the rings.
    pub fn drain_replies(&mut self, mut deliver: impl FnMut(ShardReply)) {
        for link in &mut self.links {
            while let Ok(reply) = link.replies.pop() {
                link.outstanding = link.outstanding.saturating_sub(1);
                deliver(reply);
            }
        }
    }
}

enum SlotState {
    Ready,
    Waiting {
        remaining: u32,
        continuation: Continuation,
        failure: Option<ErrorCode>,
    },
}

/// A SendMessages frame whose batch is being received into its own buffer. The header and
/// metadata section (`head_len` bytes) wait at the start of the unconsumed input.
struct BatchReceipt {
    head_len: usize,
    batch: Vec<u8>,
    filled_bytes: usize,
}

impl BatchReceipt {
    /// Starts receiving the batch of the frame at the start of `available` (its first
    /// `frame_len` bytes are the whole frame, not all here yet) when it is a SendMessages frame
    /// with a valid header and a large batch; the batch bytes already received move over.
    fn begin(
        available: &[u8],
        frame_len: usize,
        frame_size_max_bytes: usize,
        buffers: &BatchBufferPool,
    ) -> Option<Self> {
        let header = RequestHeader::new_checked(available).ok()?;
        if header.validate(frame_size_max_bytes).is_err()
            || header.resolved_command() != Some(CommandCode::SendMessages)
        {
            return None;
        }
        let metadata_len_bytes = available.get(HEADER_SIZE_BYTES..HEADER_SIZE_BYTES + 4)?;
        let metadata_len = u32::from_le_bytes(metadata_len_bytes.try_into().ok()?) as usize;
        if metadata_len > SEND_METADATA_MAX_BYTES {
            return None;
        }
        let head_len = HEADER_SIZE_BYTES + 4 + metadata_len;
        let early = available.get(head_len..)?;
        let batch_len = frame_len.checked_sub(head_len)?;
        if batch_len < DIRECT_BATCH_MIN_BYTES || early.len() >= batch_len {
            return None;
        }
        let mut batch = buffers.take(batch_len);
        batch[..early.len()].copy_from_slice(early);
        Some(BatchReceipt {
            head_len,
            batch,
            filled_bytes: early.len(),
        })
    }

    /// Copies the start of `bytes` into the batch; returns how many bytes it took.
    fn fill_from(&mut self, bytes: &[u8]) -> usize {
        let taken = bytes.len().min(self.batch.len() - self.filled_bytes);
        self.batch[self.filled_bytes..self.filled_bytes + taken].copy_from_slice(&bytes[..taken]);
        self.filled_bytes += taken;
        taken
    }

    fn is_complete(&self) -> bool {
        self.filled_bytes == self.batch.len()
    }
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
    blocked: bool,
    closing: bool,
    pub last_activity: Instant,
    /// Shards sent a request since the backend last woke them.
    pub shards_to_wake: Vec<bool>,
}

impl Connection {
    pub fn new(id: ConnectionId, address: String, ctx: &WorkerContext) -> Connection {
        let client_id = ctx.shared.next_client_id();
        lock(&ctx.shared.clients).insert(
            client_id,
            ClientInfo {
                client_id,
                address: address.clone(),
                user_id: None,
                transport: "TCP",
            },
        );
        Connection {
            id,
            state: ConnectionState {
                client_id,
                address,
                session: None,
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
            last_activity: Instant::now(),
            shards_to_wake: vec![false; ctx.links.len()],
        }
    }

    /// Takes received bytes (a batch being received gets its share first) and processes every
    /// complete frame it can.
    pub fn on_received(&mut self, bytes: &[u8], ctx: &mut WorkerContext) {
        self.last_activity = Instant::now();
        let taken = self
            .batch_receipt
            .as_mut()
            .map_or(0, |receipt| receipt.fill_from(bytes));
        self.input.extend_from_slice(&bytes[taken..]);
        self.process(ctx);
    }

    /// Where the next received bytes belong while a large batch arrives: the part of its buffer
    /// still to fill (exactly the bytes the batch lacks). A backend that can receive into it
    /// directly does so and then calls [`Connection::on_batch_received`]; the buffer stays put
    /// until then.
    pub fn batch_receive_buffer(&mut self) -> Option<&mut [u8]> {
        let receipt = self.batch_receipt.as_mut()?;
        Some(&mut receipt.batch[receipt.filled_bytes..]).filter(|rest| !rest.is_empty())
    }

    /// `received_bytes` arrived in [`Connection::batch_receive_buffer`].
    pub fn on_batch_received(&mut self, received_bytes: usize, ctx: &mut WorkerContext) {
        self.last_activity = Instant::now();
        if let Some(receipt) = self.batch_receipt.as_mut() {
            receipt.filled_bytes = (receipt.filled_bytes + received_bytes).min(receipt.batch.len());
        }
        self.process(ctx);
    }

    /// Whether the backend should keep reading from the socket.
    pub fn wants_read(&self) -> bool {
        !self.closing && !self.blocked && self.inflight.len() < self.inflight_max
    }

    /// Whether the connection is finished: closing and everything sent.
    pub fn is_closed(&self) -> bool {
        // An eviction queued behind requests still in flight is written after their replies.
        self.closing && self.output.is_empty() && self.inflight.is_empty()
    }

    pub fn is_closing(&self) -> bool {
        self.closing
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
                    self.evict(available, reason, ctx);
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
    /// requests in flight, and every ring has room for what it could send.
    fn may_dispatch(&mut self, frame: &[u8], ctx: &WorkerContext) -> bool {
        if !self.inflight.is_empty() && !dispatch::may_pipeline(frame) {
            return false;
        }
        if !ctx.every_link_has_room(dispatch::SHARD_REQUESTS_PER_LINK_PER_FRAME_MAX) {
            self.blocked = true;
            ctx.shared.worker_counters[ctx.index]
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
        let counters = &ctx.shared.worker_counters[ctx.index];
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let Ok(header) = RequestHeader::new_checked(frame) else {
            self.evict(frame, EvictionReason::InvalidRequestOperation, ctx);
            return;
        };
        if let Err(reason) = header.validate(ctx.shared.config.limits.frame_size_max_bytes as usize)
        {
            self.evict(frame, reason, ctx);
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
        self.accept(handled, reply, frame, ctx);
    }

    fn accept(
        &mut self,
        handled: Handled,
        mut reply: ReplyRepr,
        frame: &[u8],
        ctx: &mut WorkerContext,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let (state, chunks) = match handled {
            Handled::Reply(body) => (SlotState::Ready, vec![body.into()]),
            Handled::Error(code) => {
                ctx.shared.worker_counters[ctx.index]
                    .request_errors
                    .fetch_add(1, Ordering::Relaxed);
                reply.status = code.as_u32();
                (SlotState::Ready, Vec::new())
            }
            Handled::Evict(reason) => {
                self.evict(frame, reason, ctx);
                return;
            }
            Handled::Shard {
                requests,
                continuation,
            } => {
                let remaining = requests.len() as u32;
                for (shard, op) in requests {
                    let token = RequestToken {
                        connection: self.id,
                        seq,
                    };
                    ctx.send(shard, ShardRequest { token, op });
                    self.shards_to_wake[shard] = true;
                }
                (
                    SlotState::Waiting {
                        remaining,
                        continuation,
                        failure: None,
                    },
                    Vec::new(),
                )
            }
        };
        self.inflight.push_back(Inflight {
            seq,
            reply,
            state,
            chunks,
        });
    }

    /// Sends an eviction and closes the connection once it is written.
    fn evict(&mut self, frame: &[u8], reason: EvictionReason, ctx: &WorkerContext) {
        ctx.shared.worker_counters[ctx.index]
            .evictions
            .fetch_add(1, Ordering::Relaxed);
        let client = frame
            .get(128..144)
            .map_or(0, |b| u128::from_le_bytes(b.try_into().unwrap_or([0; 16])));
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
            seq: u64::MAX,
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
        let SlotState::Waiting {
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
                    ctx.shared.worker_counters[ctx.index]
                        .request_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
                None => slot.chunks = continuation.finish(&ctx.shared.worker_counters[ctx.index]),
            }
            slot.state = SlotState::Ready;
        }
        self.flush_ready();
    }

    /// Moves finished replies at the front of the in-flight queue to the output, in order.
    fn flush_ready(&mut self) {
        while matches!(self.inflight.front(), Some(slot) if matches!(slot.state, SlotState::Ready))
        {
            let Some(slot) = self.inflight.pop_front() else {
                break;
            };
            if slot.seq == u64::MAX {
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

    /// The connection is gone: leave consumer groups and the client registry.
    pub fn on_closed(&mut self, ctx: &WorkerContext) {
        lock(&ctx.shared.groups).remove_client(self.state.client_id);
        lock(&ctx.shared.clients).remove(&self.state.client_id);
        self.closing = true;
    }

    /// Requests still waiting for a shard (their replies must be drained before the slot is reused).
    pub fn awaiting_shards(&self) -> bool {
        self.inflight
            .iter()
            .any(|slot| matches!(slot.state, SlotState::Waiting { .. }))
    }
}

/// The frame length announced by a header, checked against the limits.
fn frame_length(header: &[u8], frame_size_max_bytes: u64) -> Result<usize, EvictionReason> {
    let size = u32::from_le_bytes(header[48..52].try_into().unwrap_or([0; 4])) as usize;
    if size < HEADER_SIZE_BYTES || size as u64 > frame_size_max_bytes {
        return Err(EvictionReason::InvalidRequestBodySize);
    }
    Ok(size)
}
