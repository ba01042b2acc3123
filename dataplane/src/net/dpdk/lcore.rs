//! One polling loop per lcore: rx burst -> smoltcp -> connection handlers -> smoltcp -> tx burst.
//!
//! The loop knows nothing of the Iggy protocol: it drives a [`Worker`] (the per-lcore context,
//! e.g. the session layer's worker) and its [`ConnectionHandler`]s (one per TCP connection),
//! which take received bytes and offer bytes to send. The kernel backend drives the same sans-I/O
//! handlers over io_uring sockets.
//!
//! smoltcp needs one listening socket per connection being accepted, so the loop keeps a pool of
//! `listen_backlog` listening sockets on the appliance port and replenishes it as they become
//! connections. Sockets (and their buffers) are allocated once, `connections_max` of them.
//!
//! An idle lcore (no packet, no handler progress) sleeps after `idle_turns_before_sleep` empty
//! turns, at most `sleep_us` and never past smoltcp's next timer; a busy lcore never sleeps.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use smoltcp::iface::{Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::IpAddress;

use super::constants::{
    BURST_PACKETS_MAX, CONNECTIONS_PER_LCORE_MAX, EGRESS_PASSES_PER_TURN_MAX,
    IDLE_SLEEP_DEFAULT_US, IDLE_SLEEP_MAX_US, IDLE_TURNS_BEFORE_SLEEP_DEFAULT,
    LCORE_TIMER_SLACK_NS, LISTEN_BACKLOG_DEFAULT, SOCKET_BUFFER_MAX_BYTES,
    SOCKET_RX_BUFFER_DEFAULT_BYTES, SOCKET_TIMEOUT_S, SOCKET_TX_BUFFER_DEFAULT_BYTES,
    STOP_DRAIN_TIMEOUT_MS,
};
use super::net::{build_interface, InterfaceConfig, MbufDevice, NetError};
use super::port::{PortError, QueueHandle};
use super::steer::LcoreSteering;

/// One TCP connection's protocol state, sans I/O. `C` is the per-lcore context ([`Worker`]).
pub trait ConnectionHandler<C> {
    /// Bytes received from the peer, in order.
    fn on_received(&mut self, bytes: &[u8], context: &mut C);
    /// Bytes waiting to be sent to the peer, in order, as chunks (none when nothing is waiting;
    /// the first chunk may be the rest of a partly sent one).
    fn pending_output(&self) -> impl Iterator<Item = &[u8]>;
    /// The first `written_bytes` of `pending_output` (across chunks) were accepted by the socket.
    fn consume_output(&mut self, written_bytes: usize);
    /// False while the handler cannot take more input (backpressure: a full ring to storage).
    fn wants_read(&self) -> bool;
    /// The handler is done (eviction, protocol error): the connection closes once output drains.
    fn is_closed(&self) -> bool;
    /// Requests read from the peer still wait for their replies (a stop lets them finish).
    fn has_requests_in_flight(&self) -> bool {
        false
    }
}

/// Index of a connection on its lcore (its socket slot), stable while the connection lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u32);

/// The per-lcore context the loop drives: creates handlers and moves work that does not come
/// from the network (replies from storage shards) into them.
pub trait Worker: Sized {
    type Connection: ConnectionHandler<Self>;
    /// A connection was accepted.
    fn open_connection(&mut self, id: ConnectionId, peer: SocketAddrV4) -> Self::Connection;
    /// A connection is gone (closed by either side or reset); its handler is handed back.
    fn connection_closed(&mut self, _id: ConnectionId, _connection: Self::Connection) {}
    /// Called once per turn before connections are served; returns true if it made progress.
    fn poll(&mut self, _connections: &mut Connections<Self::Connection>) -> bool {
        false
    }
    /// Called once per turn after connections were served (e.g. to wake the storage shards
    /// that were sent requests during the turn).
    fn end_turn(&mut self, _connections: &mut Connections<Self::Connection>) {}
}

/// Live connection handlers of one lcore, indexed by [`ConnectionId`].
#[derive(Debug)]
pub struct Connections<H> {
    slots: Vec<Option<H>>,
    live_count: usize,
    /// One past the highest live slot: iterations stop there rather than walking every slot
    /// (connections take the lowest free slots, so live ones stay packed at the front).
    live_end: usize,
    /// Connections the worker wants reset (e.g. silent consumer-group members).
    close_requests: Vec<ConnectionId>,
}

impl<H> Connections<H> {
    fn with_capacity(capacity: usize) -> Connections<H> {
        Connections {
            slots: (0..capacity).map(|_| None).collect(),
            live_count: 0,
            live_end: 0,
            close_requests: Vec::new(),
        }
    }

    /// Asks the loop to reset connection `id` (RST) and retire its handler at its next turn.
    pub fn request_close(&mut self, id: ConnectionId) {
        let live = self.slots.get(id.0 as usize).is_some_and(Option::is_some);
        if live && !self.close_requests.contains(&id) {
            self.close_requests.push(id);
        }
    }

    pub fn get(&self, id: ConnectionId) -> Option<&H> {
        self.slots.get(id.0 as usize).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, id: ConnectionId) -> Option<&mut H> {
        self.slots.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ConnectionId, &mut H)> {
        self.slots[..self.live_end]
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| {
                slot.as_mut()
                    .map(|handler| (ConnectionId(index as u32), handler))
            })
    }

    pub fn len(&self) -> usize {
        self.live_count
    }

    pub fn is_empty(&self) -> bool {
        self.live_count == 0
    }

    fn insert(&mut self, id: ConnectionId, handler: H) {
        let slot = &mut self.slots[id.0 as usize];
        debug_assert!(slot.is_none(), "connection slot {id:?} reused while live");
        if slot.replace(handler).is_none() {
            self.live_count += 1;
        }
        self.live_end = self.live_end.max(id.0 as usize + 1);
    }

    fn remove(&mut self, id: ConnectionId) -> Option<H> {
        let handler = self.slots.get_mut(id.0 as usize)?.take();
        if handler.is_some() {
            self.live_count -= 1;
        }
        while self.live_end > 0 && self.slots[self.live_end - 1].is_none() {
            self.live_end -= 1;
        }
        handler
    }
}

/// When an idle lcore sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleBackoff {
    /// Empty turns in a row before the first sleep.
    pub idle_turns_before_sleep: u32,
    /// Sleep per empty turn after that; 0 = pure busy polling (dedicated cores).
    pub sleep_us: u64,
}

impl Default for IdleBackoff {
    fn default() -> Self {
        IdleBackoff {
            idle_turns_before_sleep: IDLE_TURNS_BEFORE_SLEEP_DEFAULT,
            sleep_us: IDLE_SLEEP_DEFAULT_US,
        }
    }
}

impl IdleBackoff {
    /// How long to sleep after `idle_turns` empty turns, given smoltcp's next timer; None = spin.
    pub fn sleep_for(&self, idle_turns: u32, next_timer: Option<Duration>) -> Option<Duration> {
        if self.sleep_us == 0 || idle_turns < self.idle_turns_before_sleep {
            return None;
        }
        let mut sleep = Duration::from_micros(self.sleep_us.min(IDLE_SLEEP_MAX_US));
        if let Some(timer) = next_timer {
            sleep = sleep.min(timer);
        }
        (!sleep.is_zero()).then_some(sleep)
    }
}

/// What one lcore serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LcoreConfig {
    pub ip_address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// The appliance's TCP port (Iggy's binary protocol).
    pub tcp_port: u16,
    pub connections_max: usize,
    /// Listening sockets kept ready: SYNs that can be in progress at once.
    pub listen_backlog: usize,
    pub socket_rx_buffer_bytes: usize,
    pub socket_tx_buffer_bytes: usize,
    pub idle: IdleBackoff,
}

impl LcoreConfig {
    pub fn new(ip_address: Ipv4Addr, prefix_len: u8, tcp_port: u16) -> LcoreConfig {
        LcoreConfig {
            ip_address,
            prefix_len,
            gateway: None,
            tcp_port,
            connections_max: 256,
            listen_backlog: LISTEN_BACKLOG_DEFAULT,
            socket_rx_buffer_bytes: SOCKET_RX_BUFFER_DEFAULT_BYTES,
            socket_tx_buffer_bytes: SOCKET_TX_BUFFER_DEFAULT_BYTES,
            idle: IdleBackoff::default(),
        }
    }

    fn validate(&self) -> Result<(), LcoreError> {
        let invalid = |reason: String| Err(LcoreError::InvalidConfig(reason));
        if self.connections_max == 0 || self.connections_max > CONNECTIONS_PER_LCORE_MAX {
            return invalid(format!(
                "connections_max must be 1..={CONNECTIONS_PER_LCORE_MAX}"
            ));
        }
        if self.listen_backlog == 0 || self.listen_backlog > self.connections_max {
            return invalid("listen_backlog must be 1..=connections_max".to_string());
        }
        if self.tcp_port == 0 {
            return invalid("tcp_port must not be 0".to_string());
        }
        let buffers = [self.socket_rx_buffer_bytes, self.socket_tx_buffer_bytes];
        if buffers
            .iter()
            .any(|&bytes| bytes == 0 || bytes > SOCKET_BUFFER_MAX_BYTES)
        {
            return invalid(format!(
                "socket_rx_buffer_bytes and socket_tx_buffer_bytes must be 1..={SOCKET_BUFFER_MAX_BYTES}"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LcoreError {
    #[error("invalid lcore configuration: {0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Net(#[from] NetError),
}

/// Declares the lcore counters once: [`LcoreStats`] (the atomics an lcore publishes to),
/// [`LcoreStatsSnapshot`] (a plain copy) and [`LcoreStats::snapshot`].
macro_rules! lcore_counters {
    ($($field:ident),+ $(,)?) => {
        /// Counters of one lcore, readable from any thread (the stats writer) while the lcore runs.
        #[derive(Debug, Default)]
        pub struct LcoreStats {
            $(pub $field: AtomicU64,)+
        }

        /// A plain copy of [`LcoreStats`].
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct LcoreStatsSnapshot {
            $(pub $field: u64,)+
        }

        impl LcoreStats {
            pub fn snapshot(&self) -> LcoreStatsSnapshot {
                LcoreStatsSnapshot {
                    $($field: self.$field.load(Ordering::Relaxed),)+
                }
            }
        }
    };
}

lcore_counters!(
    rx_packets,
    rx_bytes,
    tx_packets,
    tx_bytes,
    tx_dropped,
    tx_no_mbuf,
    rx_dropped_segmented,
    rx_dropped_checksum,
    steered_out,
    steered_in,
    arp_copies,
    steer_dropped,
    tcp_retransmits,
    connections_accepted,
    connections_closed,
    connections_active,
    turns,
    idle_sleeps,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// No socket: its socket waits in the spare pool, outside smoltcp's socket set.
    Free,
    /// Listening, or past a SYN and not yet established.
    Listening(SocketHandle),
    Connected(SocketHandle),
    /// Handler gone; the socket finishes its close (FIN exchange, TIME-WAIT) before reuse.
    Draining(SocketHandle),
}

impl SlotState {
    fn handle(self) -> Option<SocketHandle> {
        match self {
            SlotState::Free => None,
            SlotState::Listening(handle)
            | SlotState::Connected(handle)
            | SlotState::Draining(handle) => Some(handle),
        }
    }
}

/// Loop-local counters, published to [`LcoreStats`] with relaxed stores.
#[derive(Debug, Default)]
struct LoopCounters {
    connections_accepted: u64,
    connections_closed: u64,
    turns: u64,
    idle_sleeps: u64,
}

/// The polling loop of one lcore over one port queue.
pub struct Lcore<W: Worker> {
    device: MbufDevice,
    interface: Interface,
    /// The sockets of listening, connected and draining slots only: smoltcp walks every socket
    /// of the set on each egress, so free sockets stay out of it.
    sockets: SocketSet<'static>,
    /// Sockets of the free slots, allocated once, reset (listen) when a slot takes one.
    spare_sockets: Vec<tcp::Socket<'static>>,
    slots: Vec<SlotState>,
    /// Slots from this index on are all free. Listeners take the lowest free slots, so the
    /// slots in use stay packed at the front and a turn looks at those only, not at all
    /// `connections_max` (walking 512 slots per turn took a tenth of a busy lcore).
    slots_end: usize,
    connections: Connections<W::Connection>,
    worker: W,
    config: LcoreConfig,
    epoch: std::time::Instant,
    idle_turns: u32,
    /// Stopping: no more reads or new connections, only replies to what was read.
    draining: bool,
    counters: LoopCounters,
    stats: Arc<LcoreStats>,
}

impl<W: Worker> Lcore<W> {
    /// Sets up smoltcp on `queue` with the port's MAC and `connections_max` TCP sockets; the
    /// lcore is the only one polling its port.
    ///
    /// Errors: [`LcoreError::InvalidConfig`], [`LcoreError::Port`] (MAC unreadable),
    /// [`LcoreError::Net`] (bad address).
    pub fn new(queue: QueueHandle, config: LcoreConfig, worker: W) -> Result<Lcore<W>, LcoreError> {
        Lcore::sharing_port(queue, None, config, worker)
    }

    /// As [`Lcore::new`], for one of several lcores polling the queues of one port: `steering`
    /// (its end of [`LcoreSteering::mesh`]) hands frames to the lcore owning their flow.
    ///
    /// Errors: as [`Lcore::new`].
    pub fn sharing_port(
        queue: QueueHandle,
        steering: Option<LcoreSteering>,
        config: LcoreConfig,
        worker: W,
    ) -> Result<Lcore<W>, LcoreError> {
        config.validate()?;
        let mac = queue.port().mac()?;
        let mut device = MbufDevice::new(queue, steering);
        let epoch = std::time::Instant::now();
        let interface_config = InterfaceConfig {
            mac,
            ip_address: config.ip_address,
            prefix_len: config.prefix_len,
            gateway: config.gateway,
        };
        let interface = build_interface(&interface_config, &mut device, Instant::from_micros(0))?;
        let sockets = SocketSet::new(Vec::with_capacity(config.connections_max));
        let spare_sockets = (0..config.connections_max)
            .map(|_| {
                let rx = tcp::SocketBuffer::new(vec![0; config.socket_rx_buffer_bytes]);
                let tx = tcp::SocketBuffer::new(vec![0; config.socket_tx_buffer_bytes]);
                let mut socket = tcp::Socket::new(rx, tx);
                // Request/response traffic: a reply must not wait for the ack of the previous one.
                socket.set_nagle_enabled(false);
                socket.set_timeout(Some(smoltcp::time::Duration::from_secs(SOCKET_TIMEOUT_S)));
                socket
            })
            .collect();
        let slots = vec![SlotState::Free; config.connections_max];
        let connections = Connections::with_capacity(config.connections_max);
        let stats = Arc::new(LcoreStats::default());
        let mut lcore = Lcore {
            device,
            interface,
            sockets,
            spare_sockets,
            slots,
            slots_end: 0,
            connections,
            worker,
            config,
            epoch,
            idle_turns: 0,
            draining: false,
            counters: LoopCounters::default(),
            stats,
        };
        lcore.replenish_listeners();
        Ok(lcore)
    }

    /// Counters shared with other threads.
    pub fn stats(&self) -> Arc<LcoreStats> {
        Arc::clone(&self.stats)
    }

    pub fn worker(&mut self) -> &mut W {
        &mut self.worker
    }

    pub fn connections(&mut self) -> &mut Connections<W::Connection> {
        &mut self.connections
    }

    /// Runs turns until `stop` is set, backing off while idle. Publishes stats on exit.
    pub fn run(&mut self, stop: &AtomicBool) {
        tighten_timer_slack();
        while !stop.load(Ordering::Relaxed) {
            if self.turn() {
                self.idle_turns = 0;
                continue;
            }
            self.idle_turns = self.idle_turns.saturating_add(1);
            let now = self.now();
            let next_timer = self
                .interface
                .poll_delay(now, &self.sockets)
                .map(|delay| Duration::from_micros(delay.total_micros()));
            if let Some(sleep) = self.config.idle.sleep_for(self.idle_turns, next_timer) {
                self.counters.idle_sleeps += 1;
                self.publish_stats();
                std::thread::sleep(sleep);
            }
        }
        self.finish_in_flight();
        self.close_all();
        self.publish_stats();
    }

    /// A stop answers the requests already read, as the kernel backend does: turns go on, reading
    /// nothing new, until no connection waits for a reply or has reply bytes its peer has not
    /// acknowledged; at most STOP_DRAIN_TIMEOUT_MS (a peer that stopped reading cannot hold it).
    fn finish_in_flight(&mut self) {
        self.draining = true;
        let deadline = std::time::Instant::now() + Duration::from_millis(STOP_DRAIN_TIMEOUT_MS);
        while self.replies_outstanding() && std::time::Instant::now() < deadline {
            if !self.turn() {
                std::thread::sleep(Duration::from_micros(self.config.idle.sleep_us));
            }
        }
    }

    fn replies_outstanding(&self) -> bool {
        self.slots[..self.slots_end]
            .iter()
            .enumerate()
            .any(|(index, slot)| {
                let Some(handler) = self.connections.get(ConnectionId(index as u32)) else {
                    return false;
                };
                handler.has_requests_in_flight()
                    || handler.pending_output().any(|chunk| !chunk.is_empty())
                    || slot.handle().is_some_and(|handle| {
                        self.sockets.get::<tcp::Socket>(handle).send_queue() > 0
                    })
            })
    }

    /// The loop is stopping: reset every connection and hand every handler back to the worker,
    /// so shared state (client registry, group memberships) forgets them.
    fn close_all(&mut self) {
        for index in 0..self.slots_end {
            let id = ConnectionId(index as u32);
            let SlotState::Connected(handle) = self.slots[index] else {
                continue;
            };
            if let Some(handler) = self.connections.remove(id) {
                self.sockets.get_mut::<tcp::Socket>(handle).abort();
                self.worker.connection_closed(id, handler);
                self.counters.connections_closed += 1;
                self.slots[index] = SlotState::Draining(handle);
            }
        }
        // Emit the resets.
        let now = self.now();
        self.interface
            .poll(now, &mut self.device, &mut self.sockets);
        self.device.flush_tx();
    }

    /// One pass of the loop; returns whether anything happened (packets, bytes, state changes).
    pub fn turn(&mut self) -> bool {
        let now = self.now();
        self.counters.turns += 1;
        let received = self.device.rx_burst();
        let polled = self
            .interface
            .poll(now, &mut self.device, &mut self.sockets);
        let mut busy = received > 0 || polled == PollResult::SocketStateChanged;
        busy |= self.worker.poll(&mut self.connections);
        busy |= self.serve_sockets();
        self.worker.end_turn(&mut self.connections);
        if busy {
            // Send what the handlers just wrote without waiting for the next turn.
            self.interface
                .poll(now, &mut self.device, &mut self.sockets);
        }
        busy |= self.egress(now);
        busy |= self.device.flush_tx() > 0 || self.device.tx_pending() > 0;
        if !self.draining {
            self.replenish_listeners();
        }
        if busy {
            self.publish_stats();
        }
        busy
    }

    /// Lets the sockets send what their windows allow. smoltcp's egress emits at most one segment
    /// per socket per pass, so a 1 MB reply would take hundreds of turns (and as many tx bursts
    /// of a frame or two, each a PMD kick): passes repeat until nothing is left to send, the
    /// driver stops taking frames, or EGRESS_PASSES_PER_TURN_MAX (received frames wait).
    fn egress(&mut self, now: Instant) -> bool {
        let mut sent = false;
        for _ in 0..EGRESS_PASSES_PER_TURN_MAX {
            let result = self
                .interface
                .poll_egress(now, &mut self.device, &mut self.sockets);
            if result == PollResult::None {
                break;
            }
            sent = true;
            // The device flushes a full burst itself; a backlog left after that means the
            // driver's ring is full, and more frames would be dropped.
            if self.device.tx_pending() >= BURST_PACKETS_MAX / 2 {
                self.device.flush_tx();
                if self.device.tx_pending() >= BURST_PACKETS_MAX / 2 {
                    break;
                }
            }
        }
        sent
    }

    fn now(&self) -> Instant {
        let elapsed_us = self.epoch.elapsed().as_micros();
        Instant::from_micros(i64::try_from(elapsed_us).unwrap_or(i64::MAX))
    }

    /// Accepts established sockets, moves bytes between sockets and handlers, retires closed ones.
    fn serve_sockets(&mut self) -> bool {
        let mut busy = false;
        for id in std::mem::take(&mut self.connections.close_requests) {
            if let SlotState::Connected(handle) = self.slots[id.0 as usize] {
                // The retirement below sees the socket closed and hands the handler back.
                self.sockets.get_mut::<tcp::Socket>(handle).abort();
            }
        }
        // Freeing a slot may lower slots_end; the slots past it are free and skipped anyway.
        for index in 0..self.slots_end {
            let id = ConnectionId(index as u32);
            let state = self.slots[index];
            let Some(handle) = state.handle() else {
                continue;
            };
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            match state {
                SlotState::Free => {}
                SlotState::Listening(_) => match socket.state() {
                    tcp::State::Listen | tcp::State::SynReceived => {}
                    tcp::State::Closed => self.free_slot(index, handle),
                    _ => {
                        let peer = peer_address(socket.remote_endpoint());
                        let handler = self.worker.open_connection(id, peer);
                        self.connections.insert(id, handler);
                        self.slots[index] = SlotState::Connected(handle);
                        self.counters.connections_accepted += 1;
                        busy = true;
                    }
                },
                SlotState::Connected(_) => {
                    let Some(handler) = self.connections.get_mut(id) else {
                        self.slots[index] = SlotState::Draining(handle);
                        continue;
                    };
                    let read = !self.draining;
                    busy |= serve_connection(socket, handler, &mut self.worker, read);
                    if !socket.is_open() || socket.state() == tcp::State::TimeWait {
                        if let Some(handler) = self.connections.remove(id) {
                            self.worker.connection_closed(id, handler);
                        }
                        self.counters.connections_closed += 1;
                        self.slots[index] = SlotState::Draining(handle);
                        busy = true;
                    }
                }
                SlotState::Draining(_) => {
                    if socket.state() == tcp::State::Closed {
                        self.free_slot(index, handle);
                    }
                }
            }
        }
        busy
    }

    /// Takes a closed socket out of smoltcp's set back into the spare pool.
    fn free_slot(&mut self, index: usize, handle: SocketHandle) {
        self.slots[index] = SlotState::Free;
        while self.slots_end > 0 && self.slots[self.slots_end - 1] == SlotState::Free {
            self.slots_end -= 1;
        }
        match self.sockets.remove(handle) {
            smoltcp::socket::Socket::Tcp(socket) => self.spare_sockets.push(socket),
            // The set holds TCP sockets only (other kinds exist if another crate enables them).
            #[allow(unreachable_patterns)]
            _ => tracing::warn!("a non-TCP socket in the lcore's socket set"),
        }
    }

    /// Keeps `listen_backlog` sockets in LISTEN, taking free slots (and spare sockets).
    fn replenish_listeners(&mut self) {
        let sockets = &self.sockets;
        let mut listening = self.slots[..self.slots_end]
            .iter()
            .filter(|slot| match slot {
                SlotState::Listening(handle) => {
                    sockets.get::<tcp::Socket>(*handle).state() == tcp::State::Listen
                }
                _ => false,
            })
            .count();
        for index in 0..self.slots.len() {
            if listening >= self.config.listen_backlog {
                break;
            }
            if self.slots[index] != SlotState::Free {
                continue;
            }
            // A free slot's socket is in the pool: there are as many spare sockets as free slots.
            let Some(mut socket) = self.spare_sockets.pop() else {
                break;
            };
            match socket.listen(self.config.tcp_port) {
                Ok(()) => {
                    self.slots[index] = SlotState::Listening(self.sockets.add(socket));
                    self.slots_end = self.slots_end.max(index + 1);
                    listening += 1;
                }
                // Spare sockets are Closed and the port is non-zero, so this cannot happen; keep
                // the slot free rather than panic if smoltcp ever disagrees.
                Err(error) => {
                    tracing::warn!(?error, "smoltcp refused to listen");
                    self.spare_sockets.push(socket);
                }
            }
        }
    }

    fn publish_stats(&self) {
        let device = self.device.counters();
        let store = |counter: &AtomicU64, value: u64| counter.store(value, Ordering::Relaxed);
        let stats = &self.stats;
        store(&stats.rx_packets, device.rx_packets);
        store(&stats.rx_bytes, device.rx_bytes);
        store(&stats.tx_packets, device.tx_packets);
        store(&stats.tx_bytes, device.tx_bytes);
        store(&stats.tx_dropped, device.tx_dropped);
        store(&stats.tx_no_mbuf, device.tx_no_mbuf);
        store(&stats.rx_dropped_segmented, device.rx_dropped_segmented);
        store(&stats.rx_dropped_checksum, device.rx_dropped_checksum);
        store(&stats.steered_out, device.steered_out);
        store(&stats.steered_in, device.steered_in);
        store(&stats.arp_copies, device.arp_copies);
        store(&stats.steer_dropped, device.steer_dropped);
        store(&stats.tcp_retransmits, device.tcp_retransmits);
        store(
            &stats.connections_accepted,
            self.counters.connections_accepted,
        );
        store(&stats.connections_closed, self.counters.connections_closed);
        store(&stats.connections_active, self.connections.len() as u64);
        store(&stats.turns, self.counters.turns);
        store(&stats.idle_sleeps, self.counters.idle_sleeps);
    }
}

/// Moves received bytes into the handler and its output into the socket; closes the socket when
/// the handler is done or the peer has finished sending, once the output has drained.
fn serve_connection<W: Worker>(
    socket: &mut tcp::Socket<'_>,
    handler: &mut W::Connection,
    worker: &mut W,
    read: bool,
) -> bool {
    let mut busy = false;
    // Two reads at most: the socket's ring buffer may wrap once.
    for _ in 0..2 {
        if !read || !handler.wants_read() || !socket.can_recv() {
            break;
        }
        let received = socket.recv(|bytes| {
            handler.on_received(bytes, worker);
            (bytes.len(), bytes.len())
        });
        match received {
            Ok(0) | Err(_) => break,
            Ok(_) => busy = true,
        }
    }
    let mut written_bytes = 0;
    for chunk in handler.pending_output() {
        if !socket.can_send() {
            break;
        }
        match socket.send_slice(chunk) {
            Ok(written) => {
                written_bytes += written;
                if written < chunk.len() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    if written_bytes > 0 {
        handler.consume_output(written_bytes);
        busy = true;
    }
    let drained = handler.pending_output().all(<[u8]>::is_empty);
    let peer_done = !socket.may_recv() && socket.state() == tcp::State::CloseWait;
    let open = matches!(
        socket.state(),
        tcp::State::Established | tcp::State::CloseWait
    );
    if drained && open && (handler.is_closed() || peer_done) {
        socket.close();
        busy = true;
    }
    busy
}

/// Lets this thread's idle sleeps end when asked rather than up to 50 us later.
fn tighten_timer_slack() {
    if let Err(error) = nix::sys::prctl::set_timerslack(LCORE_TIMER_SLACK_NS) {
        tracing::warn!(%error, "could not set the lcore's timer slack; idle sleeps may overrun");
    }
}

fn peer_address(endpoint: Option<smoltcp::wire::IpEndpoint>) -> SocketAddrV4 {
    match endpoint {
        Some(endpoint) => {
            let IpAddress::Ipv4(address) = endpoint.addr;
            SocketAddrV4::new(address, endpoint.port)
        }
        None => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
    }
}

/// A diagnostic service: every connection sends back what it receives. Used by the tests and
/// as a smoke test of a DPDK port before the real sessions are wired in.
pub mod echo {
    use super::{ConnectionHandler, ConnectionId, Worker};
    use std::net::SocketAddrV4;

    /// Bytes an echo connection holds before it stops reading (backpressure).
    pub const ECHO_BUFFER_MAX_BYTES: usize = 256 * 1024;

    #[derive(Debug, Default)]
    pub struct EchoWorker {
        pub bytes_echoed: u64,
        pub connections_opened: u64,
        pub connections_closed: u64,
    }

    #[derive(Debug, Default)]
    pub struct EchoConnection {
        output: Vec<u8>,
        sent_bytes: usize,
    }

    impl ConnectionHandler<EchoWorker> for EchoConnection {
        fn on_received(&mut self, bytes: &[u8], worker: &mut EchoWorker) {
            self.output.extend_from_slice(bytes);
            worker.bytes_echoed += bytes.len() as u64;
        }

        fn pending_output(&self) -> impl Iterator<Item = &[u8]> {
            let rest = &self.output[self.sent_bytes..];
            (!rest.is_empty()).then_some(rest).into_iter()
        }

        fn consume_output(&mut self, written_bytes: usize) {
            self.sent_bytes = (self.sent_bytes + written_bytes).min(self.output.len());
            if self.sent_bytes == self.output.len() {
                self.output.clear();
                self.sent_bytes = 0;
            }
        }

        fn wants_read(&self) -> bool {
            self.output.len() < ECHO_BUFFER_MAX_BYTES
        }

        fn is_closed(&self) -> bool {
            false
        }
    }

    impl Worker for EchoWorker {
        type Connection = EchoConnection;

        fn open_connection(&mut self, _id: ConnectionId, _peer: SocketAddrV4) -> EchoConnection {
            self.connections_opened += 1;
            EchoConnection::default()
        }

        fn connection_closed(&mut self, _id: ConnectionId, _connection: EchoConnection) {
            self.connections_closed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::echo::{EchoConnection, EchoWorker, ECHO_BUFFER_MAX_BYTES};
    use super::*;

    #[test]
    fn idle_backoff_spins_first_then_sleeps_bounded_by_timers() {
        let backoff = IdleBackoff {
            idle_turns_before_sleep: 3,
            sleep_us: 200,
        };
        assert_eq!(backoff.sleep_for(2, None), None);
        assert_eq!(backoff.sleep_for(3, None), Some(Duration::from_micros(200)));
        let timer = Some(Duration::from_micros(50));
        assert_eq!(
            backoff.sleep_for(10, timer),
            Some(Duration::from_micros(50))
        );
        assert_eq!(backoff.sleep_for(10, Some(Duration::ZERO)), None);
        let busy_poll = IdleBackoff {
            idle_turns_before_sleep: 0,
            sleep_us: 0,
        };
        assert_eq!(busy_poll.sleep_for(u32::MAX, None), None);
        let huge = IdleBackoff {
            idle_turns_before_sleep: 0,
            sleep_us: u64::MAX,
        };
        assert_eq!(
            huge.sleep_for(1, None),
            Some(Duration::from_micros(IDLE_SLEEP_MAX_US))
        );
    }

    #[test]
    fn an_lcore_thread_sleeps_with_a_tight_timer_slack() {
        let slack = std::thread::spawn(|| {
            tighten_timer_slack();
            nix::sys::prctl::get_timerslack().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(slack as u64, LCORE_TIMER_SLACK_NS);
    }

    #[test]
    fn connections_table_tracks_live_handlers() {
        let mut connections: Connections<u32> = Connections::with_capacity(4);
        assert!(connections.is_empty());
        connections.insert(ConnectionId(1), 10);
        connections.insert(ConnectionId(3), 30);
        assert_eq!(connections.len(), 2);
        connections.request_close(ConnectionId(3));
        connections.request_close(ConnectionId(3));
        connections.request_close(ConnectionId(2));
        connections.request_close(ConnectionId(99));
        assert_eq!(connections.close_requests, vec![ConnectionId(3)]);
        assert_eq!(connections.get_mut(ConnectionId(3)), Some(&mut 30));
        assert_eq!(connections.get_mut(ConnectionId(0)), None);
        assert_eq!(connections.get_mut(ConnectionId(99)), None);
        let ids: Vec<u32> = connections.iter_mut().map(|(id, _)| id.0).collect();
        assert_eq!(ids, vec![1, 3]);
        assert_eq!(connections.remove(ConnectionId(1)), Some(10));
        assert_eq!(connections.remove(ConnectionId(1)), None);
        assert_eq!(connections.remove(ConnectionId(99)), None);
        assert_eq!(connections.len(), 1);
        // Iterations stop after the highest live slot, which moves down as slots empty.
        connections.insert(ConnectionId(0), 0);
        assert_eq!(connections.remove(ConnectionId(3)), Some(30));
        assert_eq!(connections.live_end, 1);
        let ids: Vec<u32> = connections.iter_mut().map(|(id, _)| id.0).collect();
        assert_eq!(ids, vec![0]);
        connections.insert(ConnectionId(2), 20);
        let ids: Vec<u32> = connections.iter_mut().map(|(id, _)| id.0).collect();
        assert_eq!(ids, vec![0, 2]);
    }

    #[test]
    fn config_validation_names_the_field() {
        let mut config = LcoreConfig::new(Ipv4Addr::new(10, 0, 0, 2), 24, 8090);
        config.validate().unwrap();
        config.listen_backlog = config.connections_max + 1;
        assert!(
            matches!(config.validate(), Err(LcoreError::InvalidConfig(text)) if text.contains("listen_backlog"))
        );
        let mut config = LcoreConfig::new(Ipv4Addr::new(10, 0, 0, 2), 24, 0);
        assert!(config.validate().is_err());
        config.tcp_port = 1;
        config.connections_max = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn echo_handler_returns_bytes_and_applies_backpressure() {
        let mut worker = EchoWorker::default();
        let mut connection = EchoConnection::default();
        let pending =
            |connection: &EchoConnection| connection.pending_output().collect::<Vec<_>>().concat();
        connection.on_received(b"hello", &mut worker);
        assert_eq!(pending(&connection), b"hello");
        connection.consume_output(2);
        assert_eq!(pending(&connection), b"llo");
        connection.consume_output(3);
        assert_eq!(connection.pending_output().count(), 0);
        assert_eq!(worker.bytes_echoed, 5);
        assert!(connection.wants_read());
        connection.on_received(&vec![7; ECHO_BUFFER_MAX_BYTES], &mut worker);
        assert!(!connection.wants_read());
        assert!(!connection.is_closed());
    }
}
