//! The glue between the lcore loop and the dataplane's sans-I/O sessions: the same
//! `session::Connection` state machine and shard rings the kernel backend drives, here driven by
//! smoltcp sockets on a DPDK lcore.

use std::net::SocketAddrV4;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::lcore::{self, ConnectionHandler, Connections, Worker};
use crate::session::{Connection, WorkerContext};
use crate::shard::{ConnectionId, ShardReply};

/// One lcore's session context: its rings to the storage shards and its view of shared state.
pub struct SessionWorker {
    ctx: WorkerContext,
    /// Generation per connection slot, so a late shard reply never reaches a newer connection
    /// that reuses the slot.
    generations: Vec<u32>,
    /// Closed connections whose requests are still at a shard: their replies must be drained
    /// (the ring accounting counts them) before they are dropped.
    retired: Vec<Connection>,
    replies: Vec<ShardReply>,
    shards_to_wake: Vec<bool>,
    /// A consumer-group member silent this long is evicted (1.2 x the heartbeat interval, as
    /// in the kernel backend).
    heartbeat_timeout: Duration,
    last_housekeeping: Instant,
}

/// How often silent group members are looked for.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(500);

impl SessionWorker {
    pub fn new(ctx: WorkerContext) -> SessionWorker {
        let shards = ctx.links.len();
        let interval_ms = ctx.shared.config.heartbeat.interval_ms;
        SessionWorker {
            ctx,
            generations: Vec::new(),
            retired: Vec::new(),
            replies: Vec::new(),
            shards_to_wake: vec![false; shards],
            heartbeat_timeout: Duration::from_millis(interval_ms.saturating_mul(12) / 10),
            last_housekeeping: Instant::now(),
        }
    }

    /// Resets consumer-group members that stopped talking, so their partitions are reassigned.
    fn evict_silent_members(&mut self, connections: &mut Connections<Connection>) {
        if self.last_housekeeping.elapsed() < HOUSEKEEPING_INTERVAL {
            return;
        }
        self.last_housekeeping = Instant::now();
        let mut silent = Vec::new();
        for (id, connection) in connections.iter_mut() {
            if connection.last_activity.elapsed() > self.heartbeat_timeout {
                silent.push((id, connection.state.client_id));
            }
        }
        if silent.is_empty() {
            return;
        }
        let groups = crate::session::shared::lock(&self.ctx.shared.groups);
        let members: Vec<lcore::ConnectionId> = silent
            .into_iter()
            .filter(|&(_, client_id)| groups.has_member(client_id))
            .map(|(id, _)| id)
            .collect();
        drop(groups);
        for id in members {
            tracing::info!(
                lcore_connection = id.0,
                "evicting a silent consumer-group member"
            );
            connections.request_close(id);
        }
    }

    pub fn context(&mut self) -> &mut WorkerContext {
        &mut self.ctx
    }

    fn counters(&self) -> &crate::session::counters::WorkerCounters {
        &self.ctx.shared.worker_counters[self.ctx.index]
    }
}

impl Worker for SessionWorker {
    type Connection = Connection;

    fn open_connection(&mut self, id: lcore::ConnectionId, peer: SocketAddrV4) -> Connection {
        let slot = id.0 as usize;
        if slot >= self.generations.len() {
            self.generations.resize(slot + 1, 0);
        }
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        let session_id = ConnectionId {
            slot: id.0,
            generation: self.generations[slot],
        };
        let counters = self.counters();
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        Connection::new(session_id, peer.to_string(), &self.ctx)
    }

    fn connection_closed(&mut self, _id: lcore::ConnectionId, mut connection: Connection) {
        connection.on_closed(&self.ctx);
        self.counters()
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        if connection.awaiting_shards() {
            self.retired.push(connection);
        }
    }

    /// Delivers shard replies to their connections and lets connections stalled on full rings
    /// take more frames.
    fn poll(&mut self, connections: &mut Connections<Connection>) -> bool {
        let mut replies = std::mem::take(&mut self.replies);
        self.ctx.drain_replies(|reply| replies.push(reply));
        let busy = !replies.is_empty();
        for reply in replies.drain(..) {
            let id = reply.token.connection;
            let live = connections
                .get_mut(lcore::ConnectionId(id.slot))
                .filter(|connection| connection.id == id);
            if let Some(connection) = live {
                connection.on_shard_reply(reply.token.seq, reply.outcome, &mut self.ctx);
                connection.process(&mut self.ctx);
            } else if let Some(connection) = self.retired.iter_mut().find(|c| c.id == id) {
                connection.on_shard_reply(reply.token.seq, reply.outcome, &mut self.ctx);
            }
        }
        self.replies = replies;
        self.retired.retain(Connection::awaiting_shards);
        for (_, connection) in connections.iter_mut() {
            if !connection.is_closing() && !connection.wants_read() {
                connection.process(&mut self.ctx);
            }
        }
        self.evict_silent_members(connections);
        busy
    }

    /// Wakes the shards that were sent requests during the turn.
    fn end_turn(&mut self, connections: &mut Connections<Connection>) {
        let mut any = false;
        for (_, connection) in connections.iter_mut() {
            for (shard, wake) in connection.shards_to_wake.iter_mut().enumerate() {
                if std::mem::take(wake) {
                    self.shards_to_wake[shard] = true;
                    any = true;
                }
            }
        }
        if any {
            self.ctx.wake_shards(&mut self.shards_to_wake);
        }
    }
}

impl ConnectionHandler<SessionWorker> for Connection {
    fn on_received(&mut self, bytes: &[u8], worker: &mut SessionWorker) {
        Connection::on_received(self, bytes, &mut worker.ctx);
    }

    fn pending_output(&self) -> impl Iterator<Item = &[u8]> {
        Connection::pending_output(self)
    }

    fn consume_output(&mut self, written_bytes: usize) {
        Connection::consume_output(self, written_bytes);
    }

    fn wants_read(&self) -> bool {
        Connection::wants_read(self)
    }

    fn is_closed(&self) -> bool {
        Connection::is_closed(self)
    }

    fn has_requests_in_flight(&self) -> bool {
        self.awaiting_shards()
    }
}
