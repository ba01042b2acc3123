//! The worker core: everything a network thread does besides moving bytes, shared by the kernel
//! and DPDK drivers. It owns the connection slots (with generations, so a late reply never
//! reaches a newer connection in the same slot), admission against `tcp.connections_max`,
//! sessions and dispatch, reply delivery from the shards and the metadata service, re-processing
//! of connections stalled on full rings, silent group-member eviction, the stop sequence and the
//! thread's counters. It performs no I/O and reads no clock: drivers pass `now` in.
//!
//! A driver's life with it, per connection: [`WorkerCore::accept`] → bytes in with
//! [`WorkerCore::on_received`] (or straight into [`WorkerCore::receive_buffer`] and then
//! [`WorkerCore::on_batch_received`]) → bytes out from [`WorkerCore::transmit`], acknowledged
//! with [`WorkerCore::on_sent`] → when [`WorkerCore::wants_close`] says so, the driver closes the
//! socket gracefully → when the stream has ended and the driver holds nothing of the
//! connection's memory any more, [`WorkerCore::release`] (or [`WorkerCore::on_closed`] for both
//! at once). Per turn: [`WorkerCore::poll`] delivers replies and runs housekeeping,
//! [`WorkerCore::end_turn`] wakes the servers sent requests during the turn, and
//! [`WorkerCore::take_dirty`] names the connections whose interest may have changed.

use super::connection::Connection;
use super::context::WorkerContext;
use super::tls::{TlsEnd, TlsSession};
use crate::mesh::messages::ConnectionId;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often silent group members and, when stopping, finished connections are looked for.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);
/// A consumer-group member silent for this many heartbeat intervals is closed, so its
/// partitions go to the members that are alive (Iggy's heartbeat rule: 1.2 intervals).
const HEARTBEAT_GRACE_NUMERATOR: u32 = 12;
const HEARTBEAT_GRACE_DENOMINATOR: u32 = 10;
/// Most connection slots of one network thread (slot indexes travel in 24 bits of io_uring
/// user data in the kernel driver).
pub const SLOTS_MAX: usize = 1 << 24;

/// Plaintext read out of rustls at a time (one record's worth).
const TLS_PLAINTEXT_CHUNK_BYTES: usize = 16 * 1024;
/// A TLS handshake record (content type 22, legacy version 3.x).
const TLS_HANDSHAKE_RECORD_PREFIX: [u8; 2] = [0x16, 0x03];
/// A fatal TLS alert, protocol_version (70), in a TLS 1.2-framed record: what a TLS client gets
/// from a plaintext listener.
const TLS_ALERT_PROTOCOL_VERSION: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70];

/// Why a connection was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("tcp.connections_max connections are open")]
    ConnectionsMax,
    #[error("every connection slot of this network thread is in use")]
    SlotsFull,
    #[error("rustls refused to start a TLS session")]
    Tls,
}

struct Slot {
    generation: u32,
    connection: Option<Connection>,
    /// The stream ended; the slot waits for the driver's release.
    ended: bool,
    /// `[tls]` enabled: the record layer between the driver's bytes and the session.
    tls: Option<TlsSession>,
    /// Bytes arrived on the connection (its first bytes say whether it speaks TLS).
    received_any: bool,
}

pub struct WorkerCore {
    ctx: WorkerContext,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    heartbeat_timeout: Duration,
    next_housekeeping: Option<Instant>,
    dirty: Vec<ConnectionId>,
    /// Plaintext a TLS connection's records carried, on its way to the session's input.
    plaintext: Vec<u8>,
}

impl WorkerCore {
    pub fn new(ctx: WorkerContext) -> WorkerCore {
        let interval = Duration::from_millis(ctx.shared.config.heartbeat.interval_ms);
        let heartbeat_timeout = interval
            .checked_mul(HEARTBEAT_GRACE_NUMERATOR)
            .map_or(Duration::MAX, |d| d / HEARTBEAT_GRACE_DENOMINATOR);
        WorkerCore {
            ctx,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            heartbeat_timeout,
            next_housekeeping: None,
            dirty: Vec::new(),
            plaintext: vec![0; TLS_PLAINTEXT_CHUNK_BYTES],
        }
    }

    pub fn context(&mut self) -> &mut WorkerContext {
        &mut self.ctx
    }

    /// Connections accepted and not yet released.
    pub fn live_count(&self) -> usize {
        self.live
    }

    /// Admits a new connection from `peer`, or refuses it (counted; the driver closes the
    /// socket).
    ///
    /// # Errors
    /// [`Refused`] when `tcp.connections_max` is reached or the thread has no slot left.
    pub fn accept(&mut self, peer: SocketAddr, now: Instant) -> Result<ConnectionId, Refused> {
        let counters = self.ctx.counters();
        if self.free.is_empty() && self.slots.len() >= SLOTS_MAX {
            counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::SlotsFull);
        }
        if !self.ctx.shared.admit_connection() {
            counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                worker = self.ctx.index,
                "connection refused: tcp.connections_max reached"
            );
            return Err(Refused::ConnectionsMax);
        }
        let tls = match &self.ctx.shared.tls {
            Some(server) => match TlsSession::new(server.config(), server.ktls()) {
                Ok(session) => Some(session),
                Err(error) => {
                    tracing::error!(%error, "TLS session refused by rustls");
                    self.ctx.shared.release_connection();
                    counters.connections_refused.fetch_add(1, Ordering::Relaxed);
                    return Err(Refused::Tls);
                }
            },
            None => None,
        };
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    connection: None,
                    ended: false,
                    tls: None,
                    received_any: false,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.ended = false;
        slot.tls = tls;
        slot.received_any = false;
        let id = ConnectionId {
            slot: index,
            generation: slot.generation,
        };
        slot.connection = Some(Connection::new(id, peer.to_string(), &self.ctx, now));
        self.live += 1;
        Ok(id)
    }

    fn connection(&self, id: ConnectionId) -> Option<&Connection> {
        self.slots
            .get(id.slot as usize)
            .filter(|slot| slot.generation == id.generation)
            .and_then(|slot| slot.connection.as_ref())
    }

    /// Bytes arrived from the peer.
    pub fn on_received(&mut self, id: ConnectionId, bytes: &[u8], now: Instant) {
        self.ctx.set_now(now);
        let Some(slot) = self.slots.get_mut(id.slot as usize) else {
            return;
        };
        if slot.generation != id.generation {
            return;
        }
        let Some(connection) = slot.connection.as_mut() else {
            return;
        };
        self.dirty.push(id);
        let first_bytes = !std::mem::replace(&mut slot.received_any, true);
        let Some(tls) = slot.tls.as_mut() else {
            // An Iggy header starts with a zero checksum; a TLS client starts with a handshake
            // record. Told so at once, it fails with an alert instead of waiting for an answer.
            if first_bytes && bytes.starts_with(&TLS_HANDSHAKE_RECORD_PREFIX) {
                self.ctx
                    .counters()
                    .tls_clients_on_plaintext
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %connection.state.address, "TLS client on the plaintext listener refused");
                connection.refuse(&TLS_ALERT_PROTOCOL_VERSION);
                return;
            }
            connection.on_received(bytes, now, &mut self.ctx);
            return;
        };
        let ctx = &mut self.ctx;
        let chunk = &mut self.plaintext;
        // The plaintext goes straight into a large batch's own buffer when one is being filled,
        // else through a chunk into the session's input.
        let received = tls.receive(bytes, |plaintext| loop {
            if let Some(batch) = connection.batch_receive_buffer() {
                match plaintext.read(batch) {
                    Ok(n) if n > 0 => {
                        connection.on_batch_received(n, now, ctx);
                        continue;
                    }
                    _ => return,
                }
            }
            match plaintext.read(chunk) {
                Ok(n) if n > 0 => connection.on_received(&chunk[..n], now, ctx),
                _ => return,
            }
        });
        let counters = self.ctx.counters();
        if received.handshake_completed {
            counters.tls_handshakes.fetch_add(1, Ordering::Relaxed);
        }
        match received.end {
            Some(TlsEnd::Plaintext) => {
                counters
                    .tls_plaintext_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %connection.state.address, "plaintext client on the TLS listener closed");
            }
            Some(TlsEnd::Failed) => {
                counters
                    .tls_handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
            Some(TlsEnd::PeerClosed) | None => {}
        }
        if received.end.is_some() {
            connection.close();
        }
        tls.seal(connection);
    }

    /// kTLS: the connection's handshake completed and everything rustls sealed was sent, so its
    /// record layer may move to the kernel ([`WorkerCore::take_tls_secrets`]).
    pub fn tls_ready_for_kernel(&self, id: ConnectionId) -> bool {
        self.tls(id).is_some_and(TlsSession::ready_for_kernel)
    }

    /// kTLS: takes the connection's negotiated keys; from here its bytes are plaintext to the
    /// core (the kernel encrypts and decrypts).
    pub fn take_tls_secrets(
        &mut self,
        id: ConnectionId,
    ) -> Option<Result<rustls::ExtractedSecrets, rustls::Error>> {
        let slot = self
            .slots
            .get_mut(id.slot as usize)
            .filter(|slot| slot.generation == id.generation)?;
        let secrets = slot.tls.take()?.into_secrets();
        self.dirty.push(id);
        Some(secrets)
    }

    /// Seals what the TLS connections named in `dirty[from..]` have to send.
    fn seal_touched(&mut self, from: usize) {
        for index in from..self.dirty.len() {
            let id = self.dirty[index];
            let Some(slot) = self.slots.get_mut(id.slot as usize) else {
                continue;
            };
            if slot.generation != id.generation {
                continue;
            }
            if let (Some(tls), Some(connection)) = (slot.tls.as_mut(), slot.connection.as_mut()) {
                tls.seal(connection);
            }
        }
    }

    /// Where the driver may receive the rest of a large SendMessages batch directly (it stays in
    /// place until [`WorkerCore::on_batch_received`] or the release of the connection).
    pub fn receive_buffer(&mut self, id: ConnectionId) -> Option<&mut [u8]> {
        let slot = self
            .slots
            .get_mut(id.slot as usize)
            .filter(|slot| slot.generation == id.generation && slot.tls.is_none())?;
        slot.connection.as_mut()?.batch_receive_buffer()
    }

    fn tls(&self, id: ConnectionId) -> Option<&TlsSession> {
        self.slots
            .get(id.slot as usize)
            .filter(|slot| slot.generation == id.generation)
            .and_then(|slot| slot.tls.as_ref())
    }

    /// `received_bytes` arrived in [`WorkerCore::receive_buffer`].
    pub fn on_batch_received(&mut self, id: ConnectionId, received_bytes: usize, now: Instant) {
        self.ctx.set_now(now);
        let Some(slot) = self.slots.get_mut(id.slot as usize) else {
            return;
        };
        if slot.generation != id.generation {
            return;
        }
        if let Some(connection) = slot.connection.as_mut() {
            connection.on_batch_received(received_bytes, now, &mut self.ctx);
            self.dirty.push(id);
        }
    }

    /// Bytes waiting to be sent, as chunks (the first may be partly sent already).
    /// (On a TLS connection: sealed records.)
    pub fn transmit(&self, id: ConnectionId) -> impl Iterator<Item = &[u8]> {
        let tls = self.tls(id);
        let plaintext = match tls {
            Some(_) => None,
            None => self.connection(id),
        };
        tls.into_iter()
            .flat_map(TlsSession::transmit)
            .chain(plaintext.into_iter().flat_map(Connection::pending_output))
    }

    pub fn has_output(&self, id: ConnectionId) -> bool {
        match self.tls(id) {
            Some(tls) => tls.has_output(),
            None => self.connection(id).is_some_and(Connection::has_output),
        }
    }

    /// The first `sent_bytes` of [`WorkerCore::transmit`] were written to the peer.
    pub fn on_sent(&mut self, id: ConnectionId, sent_bytes: usize) {
        let Some(slot) = self
            .slots
            .get_mut(id.slot as usize)
            .filter(|slot| slot.generation == id.generation)
        else {
            return;
        };
        let Some(connection) = slot.connection.as_mut() else {
            return;
        };
        match slot.tls.as_mut() {
            Some(tls) => {
                tls.on_sent(sent_bytes);
                tls.seal(connection);
            }
            None => connection.consume_output(sent_bytes),
        }
        self.dirty.push(id);
    }

    /// Whether the driver should keep reading from the socket.
    pub fn wants_read(&self, id: ConnectionId) -> bool {
        self.connection(id).is_some_and(Connection::wants_read)
            && self.tls(id).is_none_or(TlsSession::wants_read)
    }

    /// The connection is done (evicted, closed for silence or for the stop, or its TLS ended)
    /// and every reply owed is written: the driver closes the socket gracefully.
    pub fn wants_close(&self, id: ConnectionId) -> bool {
        match self.tls(id) {
            Some(tls) => tls.wants_close(),
            None => self.connection(id).is_some_and(Connection::is_finished),
        }
    }

    /// Requests read from the peer still wait for a shard or the metadata service.
    pub fn awaiting_replies(&self, id: ConnectionId) -> bool {
        self.connection(id)
            .is_some_and(Connection::awaiting_replies)
    }

    /// The stream ended (the peer closed it, it was reset, or the driver closed it): the
    /// connection leaves its consumer groups and the client registry at once. The driver calls
    /// [`WorkerCore::release`] once it holds none of the connection's buffers.
    pub fn on_stream_end(&mut self, id: ConnectionId) {
        let Some(slot) = self.slots.get_mut(id.slot as usize) else {
            return;
        };
        if slot.generation != id.generation || slot.ended {
            return;
        }
        if let Some(connection) = slot.connection.as_mut() {
            connection.on_stream_end(&self.ctx);
            slot.ended = true;
        }
    }

    /// Frees the connection's slot. Replies still on their way for it are dropped on arrival.
    pub fn release(&mut self, id: ConnectionId) {
        self.on_stream_end(id);
        let Some(slot) = self.slots.get_mut(id.slot as usize) else {
            return;
        };
        if slot.generation != id.generation || slot.connection.take().is_none() {
            return;
        }
        self.free.push(id.slot);
        self.live -= 1;
        self.ctx
            .counters()
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        self.ctx.shared.release_connection();
    }

    /// The stream ended and the driver holds nothing of the connection: both steps at once.
    pub fn on_closed(&mut self, id: ConnectionId) {
        self.release(id);
    }

    /// Delivers replies from the shards and the metadata service, lets connections stalled on
    /// full rings take more frames, and runs housekeeping when due. Returns whether anything
    /// happened.
    pub fn poll(&mut self, now: Instant) -> bool {
        self.ctx.set_now(now);
        let touched_from = self.dirty.len();
        let progress = self.deliver_and_housekeep(now);
        self.seal_touched(touched_from);
        progress
    }

    fn deliver_and_housekeep(&mut self, now: Instant) -> bool {
        let mut progress = false;
        while let Some(reply) = self.ctx.take_shard_reply() {
            progress = true;
            let id = reply.token.connection;
            let Some(slot) = self.slots.get_mut(id.slot as usize) else {
                continue;
            };
            if let (true, Some(connection)) =
                (slot.generation == id.generation, slot.connection.as_mut())
            {
                connection.on_shard_reply(reply.token.seq, reply.outcome, &mut self.ctx);
                // The reply may have freed an in-flight slot: take the frames waiting for one.
                connection.process(&mut self.ctx);
                self.dirty.push(id);
            }
        }
        while let Some(reply) = self.ctx.take_metadata_reply() {
            progress = true;
            let id = reply.token.connection;
            let Some(slot) = self.slots.get_mut(id.slot as usize) else {
                continue;
            };
            if let (true, Some(connection)) =
                (slot.generation == id.generation, slot.connection.as_mut())
            {
                connection.on_metadata_reply(reply.token.seq, reply.outcome, &mut self.ctx);
                // Frames behind a metadata request wait for it: take them now.
                connection.process(&mut self.ctx);
                self.dirty.push(id);
            }
        }
        if progress {
            self.reprocess_stalled();
        }
        if self.next_housekeeping.is_none_or(|due| now >= due) {
            self.next_housekeeping = Some(now + HOUSEKEEPING_INTERVAL);
            self.housekeeping(now);
        }
        progress
    }

    /// When [`WorkerCore::poll`] next has housekeeping to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_housekeeping
    }

    /// Connections whose replies freed ring room or in-flight slots take more frames; so do
    /// connections stalled on full rings.
    fn reprocess_stalled(&mut self) {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(connection) = slot.connection.as_mut() else {
                continue;
            };
            if slot.ended || connection.is_closing() || connection.wants_read() {
                continue;
            }
            connection.process(&mut self.ctx);
            self.dirty.push(ConnectionId {
                slot: index as u32,
                generation: slot.generation,
            });
        }
    }

    /// Closes consumer-group members silent for longer than the heartbeat allows (their
    /// partitions go to live members) and, once the appliance stops, every connection: each
    /// finishes the requests it read, writes their replies, then closes.
    fn housekeeping(&mut self, now: Instant) {
        let stopping = self.ctx.shared.shutting_down();
        let groups = crate::session::shared::lock(&self.ctx.shared.groups);
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(connection) = slot.connection.as_mut() else {
                continue;
            };
            if slot.ended || connection.is_closing() {
                continue;
            }
            let silent =
                now.saturating_duration_since(connection.last_activity()) > self.heartbeat_timeout;
            let silent_member = silent && groups.has_member(connection.state.client_id);
            if silent_member {
                tracing::info!(
                    worker = self.ctx.index,
                    client = connection.state.client_id,
                    "closing a silent consumer-group member"
                );
            }
            if stopping || silent_member {
                connection.close();
                self.dirty.push(ConnectionId {
                    slot: index as u32,
                    generation: slot.generation,
                });
            }
        }
    }

    /// Wakes every shard and the metadata service if they were sent requests this turn.
    pub fn end_turn(&mut self) {
        self.ctx.wake_servers();
    }

    /// Connections whose interest (read, write, close) may have changed since the last call.
    pub fn take_dirty(&mut self, out: &mut Vec<ConnectionId>) {
        self.dirty.sort_unstable();
        self.dirty.dedup();
        out.append(&mut self.dirty);
    }

    /// Forgets which connections changed, for a driver that serves every connection each turn
    /// (the DPDK lcore) and so never asks: the list would otherwise grow with every request.
    pub fn forget_dirty(&mut self) {
        self.dirty.clear();
    }

    /// Every connection accepted and not yet released.
    pub fn connections(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            slot.connection.as_ref().map(|_| ConnectionId {
                slot: index as u32,
                generation: slot.generation,
            })
        })
    }

    /// Whether any request of this thread is still at a server.
    pub fn requests_outstanding(&self) -> bool {
        self.ctx.requests_outstanding() > 0
    }
}
