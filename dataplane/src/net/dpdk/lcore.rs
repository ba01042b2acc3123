//! One polling loop per lcore: rx burst -> smoltcp -> connection handlers -> smoltcp -> tx burst.
//!
//! The loop knows nothing of the Iggy protocol: it drives a [`Service`] (the worker core in the
//! appliance, which the kernel driver drives over io_uring sockets too), mapping each smoltcp
//! socket to the service's connection and moving bytes between them.
//!
//! smoltcp needs one listening socket per connection being accepted, so the loop keeps a pool of
//! `listen_backlog` listening sockets on the appliance port and replenishes it as they become
//! connections. Sockets (and their buffers) are allocated once, `connections_max` of them.
//!
//! An idle lcore (no packet, no handler progress) sleeps after `idle_turns_before_sleep` empty
//! turns, at most `sleep_us` and never past smoltcp's next timer; a busy lcore never sleeps.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::mesh::messages::ConnectionId;

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
use riptide_config::{TCP_KEEPALIVE_MAX_S, TCP_KEEPALIVE_PROBES};

/// The sans-I/O service an lcore drives: the worker core (`session::WorkerCore`) in the
/// appliance, an echo in tests and the lab's wire ceiling. Its surface is the worker core's, so
/// the loop maps smoltcp sockets to the service's connections and moves bytes, nothing else.
pub trait Service {
    /// A connection was established; `None` refuses it (the socket is reset).
    fn accept(&mut self, peer: SocketAddr, now: std::time::Instant) -> Option<ConnectionId>;
    /// Bytes received from the peer, in order.
    fn on_received(&mut self, id: ConnectionId, bytes: &[u8], now: std::time::Instant);
    /// Bytes waiting to be sent, in order, as chunks (the first may be partly sent already).
    fn transmit(&self, id: ConnectionId) -> impl Iterator<Item = &[u8]>;
    /// The first `sent_bytes` of `transmit` (across chunks) were accepted by the socket.
    fn on_sent(&mut self, id: ConnectionId, sent_bytes: usize);
    /// False while the service cannot take more input (backpressure: a full ring to storage).
    fn wants_read(&self, id: ConnectionId) -> bool;
    /// The service is done with the connection: close it gracefully once output drained.
    fn wants_close(&self, id: ConnectionId) -> bool;
    /// Requests read from the peer still wait for their replies (a stop lets them finish).
    fn awaiting_replies(&self, _id: ConnectionId) -> bool {
        false
    }
    /// The connection is gone (closed by either side or reset).
    fn on_closed(&mut self, id: ConnectionId);
    /// Once per turn before sockets are served; returns whether it made progress.
    fn poll(&mut self, _now: std::time::Instant) -> bool {
        false
    }
    /// Once per turn after sockets were served (e.g. to wake the servers sent requests).
    fn end_turn(&mut self) {}
}

impl Service for crate::session::WorkerCore {
    fn accept(&mut self, peer: SocketAddr, now: std::time::Instant) -> Option<ConnectionId> {
        crate::session::WorkerCore::accept(self, peer, now).ok()
    }

    fn on_received(&mut self, id: ConnectionId, bytes: &[u8], now: std::time::Instant) {
        crate::session::WorkerCore::on_received(self, id, bytes, now);
    }

    fn transmit(&self, id: ConnectionId) -> impl Iterator<Item = &[u8]> {
        crate::session::WorkerCore::transmit(self, id)
    }

    fn on_sent(&mut self, id: ConnectionId, sent_bytes: usize) {
        crate::session::WorkerCore::on_sent(self, id, sent_bytes);
    }

    fn wants_read(&self, id: ConnectionId) -> bool {
        crate::session::WorkerCore::wants_read(self, id)
    }

    fn wants_close(&self, id: ConnectionId) -> bool {
        crate::session::WorkerCore::wants_close(self, id)
    }

    fn awaiting_replies(&self, id: ConnectionId) -> bool {
        crate::session::WorkerCore::awaiting_replies(self, id)
    }

    fn on_closed(&mut self, id: ConnectionId) {
        crate::session::WorkerCore::on_closed(self, id);
    }

    fn poll(&mut self, now: std::time::Instant) -> bool {
        crate::session::WorkerCore::poll(self, now)
    }

    fn end_turn(&mut self) {
        crate::session::WorkerCore::end_turn(self);
        // The loop serves every socket each turn: it needs no list of changed connections.
        self.forget_dirty();
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
    /// `tcp.keepalive_s`: sockets probe a peer silent this long, every this long, and abort the
    /// connection once TCP_KEEPALIVE_PROBES probes went unanswered. 0: no probes, and a socket
    /// whose peer sent nothing for SOCKET_TIMEOUT_S is aborted.
    pub keepalive_s: u64,
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
            keepalive_s: 0,
            idle: IdleBackoff::default(),
        }
    }

    /// smoltcp's keep-alive interval, and the silence of the peer after which it aborts the
    /// connection: the idle time plus every unanswered probe (kernel mode's TCP_KEEPIDLE +
    /// TCP_KEEPCNT × TCP_KEEPINTVL), or SOCKET_TIMEOUT_S without keep-alive.
    fn socket_timers(&self) -> (Option<smoltcp::time::Duration>, smoltcp::time::Duration) {
        use smoltcp::time::Duration;
        match self.keepalive_s {
            0 => (None, Duration::from_secs(SOCKET_TIMEOUT_S)),
            seconds => (
                Some(Duration::from_secs(seconds)),
                Duration::from_secs(seconds * (1 + u64::from(TCP_KEEPALIVE_PROBES))),
            ),
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
        if self.keepalive_s > TCP_KEEPALIVE_MAX_S {
            return invalid(format!("keepalive_s must be 0..={TCP_KEEPALIVE_MAX_S}"));
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
    /// Established, serving the service's connection `ConnectionId`.
    Connected(SocketHandle, ConnectionId),
    /// The service's connection is gone; the socket finishes its close (FIN exchange,
    /// TIME-WAIT) before reuse.
    Draining(SocketHandle),
}

impl SlotState {
    fn handle(self) -> Option<SocketHandle> {
        match self {
            SlotState::Free => None,
            SlotState::Listening(handle)
            | SlotState::Connected(handle, _)
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
pub struct Lcore<S: Service> {
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
    /// Slots in `Connected` state.
    connections_live: usize,
    service: S,
    config: LcoreConfig,
    epoch: std::time::Instant,
    idle_turns: u32,
    /// Stopping: no more reads or new connections, only replies to what was read.
    draining: bool,
    counters: LoopCounters,
    stats: Arc<LcoreStats>,
}

impl<S: Service> Lcore<S> {
    /// Sets up smoltcp on `queue` with the port's MAC and `connections_max` TCP sockets; the
    /// lcore is the only one polling its port.
    ///
    /// Errors: [`LcoreError::InvalidConfig`], [`LcoreError::Port`] (MAC unreadable),
    /// [`LcoreError::Net`] (bad address).
    pub fn new(
        queue: QueueHandle,
        config: LcoreConfig,
        service: S,
    ) -> Result<Lcore<S>, LcoreError> {
        Lcore::sharing_port(queue, None, config, service)
    }

    /// As [`Lcore::new`], for one of several lcores polling the queues of one port: `steering`
    /// (its end of [`LcoreSteering::mesh`]) hands frames to the lcore owning their flow.
    ///
    /// Errors: as [`Lcore::new`].
    pub fn sharing_port(
        queue: QueueHandle,
        steering: Option<LcoreSteering>,
        config: LcoreConfig,
        service: S,
    ) -> Result<Lcore<S>, LcoreError> {
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
            .map(|_| connection_socket(&config))
            .collect();
        let slots = vec![SlotState::Free; config.connections_max];
        let stats = Arc::new(LcoreStats::default());
        let mut lcore = Lcore {
            device,
            interface,
            sockets,
            spare_sockets,
            slots,
            slots_end: 0,
            connections_live: 0,
            service,
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

    pub fn service(&mut self) -> &mut S {
        &mut self.service
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
        self.slots[..self.slots_end].iter().any(|slot| {
            let SlotState::Connected(handle, id) = *slot else {
                return false;
            };
            self.service.awaiting_replies(id)
                || self.service.transmit(id).any(|chunk| !chunk.is_empty())
                || self.sockets.get::<tcp::Socket>(handle).send_queue() > 0
        })
    }

    /// The loop is stopping: reset every connection and tell the service, so shared state
    /// (client registry, group memberships) forgets them.
    fn close_all(&mut self) {
        for index in 0..self.slots_end {
            let SlotState::Connected(handle, id) = self.slots[index] else {
                continue;
            };
            self.sockets.get_mut::<tcp::Socket>(handle).abort();
            self.retire(index, handle, id);
        }
        // Emit the resets.
        let now = self.now();
        self.interface
            .poll(now, &mut self.device, &mut self.sockets);
        self.device.flush_tx();
    }

    /// The service's connection in slot `index` is gone; its socket drains.
    fn retire(&mut self, index: usize, handle: SocketHandle, id: ConnectionId) {
        self.service.on_closed(id);
        self.connections_live -= 1;
        self.counters.connections_closed += 1;
        self.slots[index] = SlotState::Draining(handle);
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
        busy |= self.service.poll(std::time::Instant::now());
        busy |= self.serve_sockets();
        self.service.end_turn();
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

    /// Accepts established sockets, moves bytes between sockets and the service, retires
    /// closed ones.
    fn serve_sockets(&mut self) -> bool {
        let mut busy = false;
        let now = std::time::Instant::now();
        // Freeing a slot may lower slots_end; the slots past it are free and skipped anyway.
        for index in 0..self.slots_end {
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
                        let peer = SocketAddr::V4(peer_address(socket.remote_endpoint()));
                        match self.service.accept(peer, now) {
                            Some(id) => {
                                self.slots[index] = SlotState::Connected(handle, id);
                                self.connections_live += 1;
                                self.counters.connections_accepted += 1;
                            }
                            None => {
                                socket.abort();
                                self.slots[index] = SlotState::Draining(handle);
                            }
                        }
                        busy = true;
                    }
                },
                SlotState::Connected(_, id) => {
                    let read = !self.draining;
                    busy |= serve_connection(socket, &mut self.service, id, read, now);
                    if !socket.is_open() || socket.state() == tcp::State::TimeWait {
                        self.retire(index, handle, id);
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
        store(&stats.connections_active, self.connections_live as u64);
        store(&stats.turns, self.counters.turns);
        store(&stats.idle_sleeps, self.counters.idle_sleeps);
    }
}

/// One of the lcore's TCP sockets, with its buffers.
fn connection_socket(config: &LcoreConfig) -> tcp::Socket<'static> {
    let rx = tcp::SocketBuffer::new(vec![0; config.socket_rx_buffer_bytes]);
    let tx = tcp::SocketBuffer::new(vec![0; config.socket_tx_buffer_bytes]);
    let mut socket = tcp::Socket::new(rx, tx);
    // Request/response traffic: a reply must not wait for the ack of the previous one.
    socket.set_nagle_enabled(false);
    // A peer that vanished without FIN or RST: smoltcp aborts the socket, and serve_sockets
    // retires it as any closed connection.
    let (keep_alive, timeout) = config.socket_timers();
    socket.set_keep_alive(keep_alive);
    socket.set_timeout(Some(timeout));
    socket
}

/// Moves received bytes into the service and its output into the socket; closes the socket
/// when the service is done or the peer has finished sending, once the output has drained.
fn serve_connection<S: Service>(
    socket: &mut tcp::Socket<'_>,
    service: &mut S,
    id: ConnectionId,
    read: bool,
    now: std::time::Instant,
) -> bool {
    let mut busy = false;
    // Two reads at most: the socket's ring buffer may wrap once.
    for _ in 0..2 {
        if !read || !service.wants_read(id) || !socket.can_recv() {
            break;
        }
        let received = socket.recv(|bytes| {
            service.on_received(id, bytes, now);
            (bytes.len(), bytes.len())
        });
        match received {
            Ok(0) | Err(_) => break,
            Ok(_) => busy = true,
        }
    }
    let mut written_bytes = 0;
    for chunk in service.transmit(id) {
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
        service.on_sent(id, written_bytes);
        busy = true;
    }
    let drained = service.transmit(id).all(<[u8]>::is_empty);
    let peer_done = !socket.may_recv() && socket.state() == tcp::State::CloseWait;
    let open = matches!(
        socket.state(),
        tcp::State::Established | tcp::State::CloseWait
    );
    if drained && open && (service.wants_close(id) || peer_done) {
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
    use super::{ConnectionId, Service};
    use std::net::SocketAddr;
    use std::time::Instant;

    /// Bytes an echo connection holds before it stops reading (backpressure).
    pub const ECHO_BUFFER_MAX_BYTES: usize = 256 * 1024;

    #[derive(Debug, Default)]
    struct EchoConnection {
        generation: u32,
        output: Vec<u8>,
        sent_bytes: usize,
        open: bool,
    }

    /// Every connection sends back what it receives.
    #[derive(Debug, Default)]
    pub struct EchoService {
        connections: Vec<EchoConnection>,
        pub bytes_echoed: u64,
        pub connections_opened: u64,
        pub connections_closed: u64,
    }

    impl EchoService {
        fn connection(&self, id: ConnectionId) -> Option<&EchoConnection> {
            self.connections
                .get(id.slot as usize)
                .filter(|c| c.open && c.generation == id.generation)
        }

        fn connection_mut(&mut self, id: ConnectionId) -> Option<&mut EchoConnection> {
            self.connections
                .get_mut(id.slot as usize)
                .filter(|c| c.open && c.generation == id.generation)
        }
    }

    impl Service for EchoService {
        fn accept(&mut self, _peer: SocketAddr, _now: Instant) -> Option<ConnectionId> {
            let slot = match self.connections.iter().position(|c| !c.open) {
                Some(slot) => slot,
                None => {
                    self.connections.push(EchoConnection::default());
                    self.connections.len() - 1
                }
            };
            let connection = &mut self.connections[slot];
            connection.generation = connection.generation.wrapping_add(1);
            connection.open = true;
            self.connections_opened += 1;
            Some(ConnectionId {
                slot: slot as u32,
                generation: connection.generation,
            })
        }

        fn on_received(&mut self, id: ConnectionId, bytes: &[u8], _now: Instant) {
            if let Some(connection) = self.connection_mut(id) {
                connection.output.extend_from_slice(bytes);
                self.bytes_echoed += bytes.len() as u64;
            }
        }

        fn transmit(&self, id: ConnectionId) -> impl Iterator<Item = &[u8]> {
            self.connection(id)
                .map(|c| &c.output[c.sent_bytes..])
                .filter(|rest| !rest.is_empty())
                .into_iter()
        }

        fn on_sent(&mut self, id: ConnectionId, sent_bytes: usize) {
            if let Some(c) = self.connection_mut(id) {
                c.sent_bytes = (c.sent_bytes + sent_bytes).min(c.output.len());
                if c.sent_bytes == c.output.len() {
                    c.output.clear();
                    c.sent_bytes = 0;
                }
            }
        }

        fn wants_read(&self, id: ConnectionId) -> bool {
            self.connection(id)
                .is_some_and(|c| c.output.len() < ECHO_BUFFER_MAX_BYTES)
        }

        fn wants_close(&self, _id: ConnectionId) -> bool {
            false
        }

        fn on_closed(&mut self, id: ConnectionId) {
            if let Some(connection) = self.connection_mut(id) {
                connection.open = false;
                connection.output = Vec::new();
                connection.sent_bytes = 0;
                self.connections_closed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::echo::{EchoService, ECHO_BUFFER_MAX_BYTES};
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;
    use std::rc::Rc;

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
        let mut config = LcoreConfig::new(Ipv4Addr::new(10, 0, 0, 2), 24, 8090);
        config.keepalive_s = TCP_KEEPALIVE_MAX_S + 1;
        assert!(
            matches!(config.validate(), Err(LcoreError::InvalidConfig(text)) if text.contains("keepalive_s"))
        );
    }

    /// One end of a virtual Ethernet cable between two smoltcp interfaces; a cut cable loses
    /// every frame sent on it.
    struct CableEnd {
        inbox: Rc<RefCell<VecDeque<Vec<u8>>>>,
        outbox: Rc<RefCell<VecDeque<Vec<u8>>>>,
        cut: Rc<Cell<bool>>,
    }

    struct Frame(Vec<u8>);

    impl smoltcp::phy::RxToken for Frame {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(&self.0)
        }
    }

    struct Send {
        outbox: Rc<RefCell<VecDeque<Vec<u8>>>>,
        cut: Rc<Cell<bool>>,
    }

    impl smoltcp::phy::TxToken for Send {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut frame = vec![0; len];
            let result = f(&mut frame);
            if !self.cut.get() {
                self.outbox.borrow_mut().push_back(frame);
            }
            result
        }
    }

    impl smoltcp::phy::Device for CableEnd {
        type RxToken<'a> = Frame;
        type TxToken<'a> = Send;

        fn receive(&mut self, now: Instant) -> Option<(Frame, Send)> {
            let frame = self.inbox.borrow_mut().pop_front()?;
            let send = self.transmit(now)?;
            Some((Frame(frame), send))
        }

        fn transmit(&mut self, _now: Instant) -> Option<Send> {
            Some(Send {
                outbox: Rc::clone(&self.outbox),
                cut: Rc::clone(&self.cut),
            })
        }

        fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
            let mut capabilities = smoltcp::phy::DeviceCapabilities::default();
            capabilities.medium = smoltcp::phy::Medium::Ethernet;
            capabilities.max_transmission_unit = 1514;
            capabilities
        }
    }

    /// An appliance socket (as the lcore makes them, from `config`) and a client socket on two
    /// smoltcp interfaces joined by a cable, on virtual time.
    struct Link {
        now: Instant,
        cut: Rc<Cell<bool>>,
        ends: [(CableEnd, Interface); 2],
        sockets: [SocketSet<'static>; 2],
        appliance: SocketHandle,
        client: SocketHandle,
    }

    impl Link {
        const STEP: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(100);

        /// Connects the client and exchanges a request and a reply.
        fn established(config: &LcoreConfig) -> Link {
            use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};
            let (a_to_b, b_to_a) = (Rc::default(), Rc::default());
            let cut = Rc::new(Cell::new(false));
            let now = Instant::from_secs(1);
            let end = |inbox: &Rc<_>, outbox: &Rc<_>, host: u8| {
                let mut device = CableEnd {
                    inbox: Rc::clone(inbox),
                    outbox: Rc::clone(outbox),
                    cut: Rc::clone(&cut),
                };
                let mac = HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, host]));
                let mut interface =
                    Interface::new(smoltcp::iface::Config::new(mac), &mut device, now);
                interface.update_ip_addrs(|addresses| {
                    addresses
                        .push(IpCidr::new(IpAddress::v4(10, 0, 0, host), 24))
                        .unwrap();
                });
                (device, interface)
            };
            let ends = [end(&b_to_a, &a_to_b, 1), end(&a_to_b, &b_to_a, 2)];
            let mut appliance_socket = connection_socket(config);
            appliance_socket.listen(config.tcp_port).unwrap();
            let client_socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 4096]),
                tcp::SocketBuffer::new(vec![0; 4096]),
            );
            let mut sockets = [SocketSet::new(Vec::new()), SocketSet::new(Vec::new())];
            let appliance = sockets[0].add(appliance_socket);
            let client = sockets[1].add(client_socket);
            let mut link = Link {
                now,
                cut,
                ends,
                sockets,
                appliance,
                client,
            };
            let server = (IpAddress::v4(10, 0, 0, 1), config.tcp_port);
            let context = link.ends[1].1.context();
            link.sockets[1]
                .get_mut::<tcp::Socket>(client)
                .connect(context, server, 40_000)
                .unwrap();
            link.run(smoltcp::time::Duration::from_secs(1));
            link.client().send_slice(b"ping").unwrap();
            link.run(smoltcp::time::Duration::from_secs(1));
            let mut request = [0; 4];
            assert_eq!(link.appliance().recv_slice(&mut request), Ok(4));
            link.appliance().send_slice(b"pong").unwrap();
            link.run(smoltcp::time::Duration::from_secs(1));
            assert_eq!(link.client().recv_slice(&mut request), Ok(4));
            assert_eq!(link.appliance().state(), tcp::State::Established);
            link
        }

        fn appliance(&mut self) -> &mut tcp::Socket<'static> {
            self.sockets[0].get_mut(self.appliance)
        }

        fn client(&mut self) -> &mut tcp::Socket<'static> {
            self.sockets[1].get_mut(self.client)
        }

        /// Polls both ends for `duration` of virtual time.
        fn run(&mut self, duration: smoltcp::time::Duration) {
            let end = self.now + duration;
            while self.now < end {
                self.now += Self::STEP;
                for (side, sockets) in self.sockets.iter_mut().enumerate() {
                    let (device, interface) = &mut self.ends[side];
                    interface.poll(self.now, device, sockets);
                }
            }
        }

        /// Polls until the appliance's socket is closed; returns how long that took (at most
        /// `limit`).
        fn appliance_closed_within(
            &mut self,
            limit: smoltcp::time::Duration,
        ) -> Option<smoltcp::time::Duration> {
            let start = self.now;
            while self.now - start <= limit {
                if !self.appliance().is_open() {
                    return Some(self.now - start);
                }
                self.run(Self::STEP);
            }
            None
        }
    }

    #[test]
    fn keepalive_keeps_a_quiet_live_peer_and_aborts_a_vanished_one_after_the_probes() {
        use smoltcp::time::Duration;
        let mut config = LcoreConfig::new(Ipv4Addr::new(10, 0, 0, 1), 24, 8090);
        config.keepalive_s = 1;
        let mut link = Link::established(&config);
        // A live client saying nothing for a minute answers the probes and keeps its connection.
        link.run(Duration::from_secs(60));
        assert_eq!(link.appliance().state(), tcp::State::Established);
        // The client vanishes (no FIN, no RST: its frames and the probes are lost). The socket
        // is aborted once the peer has been silent for the idle time and 3 probe intervals.
        link.cut.set(true);
        let closed = link
            .appliance_closed_within(Duration::from_secs(10))
            .expect("the vanished peer's socket was never aborted");
        assert!(
            (Duration::from_secs(3)..=Duration::from_secs(5)).contains(&closed),
            "aborted after {closed}"
        );
        assert_eq!(link.appliance().state(), tcp::State::Closed);
    }

    #[test]
    fn without_keepalive_a_quiet_peer_is_aborted_after_the_socket_timeout() {
        use smoltcp::time::Duration;
        let config = LcoreConfig::new(Ipv4Addr::new(10, 0, 0, 1), 24, 8090);
        assert_eq!(config.keepalive_s, 0);
        let mut link = Link::established(&config);
        // smoltcp's timeout counts the peer's silence whether or not anything is outstanding:
        // without probes to answer, even a live peer that stays quiet is cut off.
        let closed = link
            .appliance_closed_within(Duration::from_secs(SOCKET_TIMEOUT_S + 5))
            .expect("the quiet peer's socket was never aborted");
        assert!(
            closed >= Duration::from_secs(SOCKET_TIMEOUT_S - 5),
            "aborted after {closed}"
        );
    }

    #[test]
    fn sockets_probe_silent_peers_and_give_up_after_the_probes() {
        use smoltcp::time::Duration;
        let mut config = LcoreConfig::new(Ipv4Addr::new(10, 0, 0, 2), 24, 8090);
        assert_eq!(
            config.socket_timers(),
            (None, Duration::from_secs(SOCKET_TIMEOUT_S))
        );
        config.keepalive_s = 30;
        assert_eq!(
            config.socket_timers(),
            (Some(Duration::from_secs(30)), Duration::from_secs(120))
        );
        config.keepalive_s = 1;
        assert_eq!(
            config.socket_timers(),
            (Some(Duration::from_secs(1)), Duration::from_secs(4))
        );
    }

    #[test]
    fn echo_service_returns_bytes_and_applies_backpressure() {
        let mut echo = EchoService::default();
        let now = std::time::Instant::now();
        let peer = SocketAddr::from(([10, 0, 0, 1], 1));
        let id = echo.accept(peer, now).unwrap();
        let pending = |echo: &EchoService| echo.transmit(id).collect::<Vec<_>>().concat();
        echo.on_received(id, b"hello", now);
        assert_eq!(pending(&echo), b"hello");
        echo.on_sent(id, 2);
        assert_eq!(pending(&echo), b"llo");
        echo.on_sent(id, 3);
        assert_eq!(echo.transmit(id).count(), 0);
        assert_eq!(echo.bytes_echoed, 5);
        assert!(echo.wants_read(id));
        echo.on_received(id, &vec![7; ECHO_BUFFER_MAX_BYTES], now);
        assert!(!echo.wants_read(id));
        assert!(!echo.wants_close(id));
        echo.on_closed(id);
        let reused = echo.accept(peer, now).unwrap();
        assert_eq!(reused.slot, id.slot);
        assert!(
            !echo.wants_read(id),
            "a closed id is dead after its slot is reused"
        );
        assert!(echo.wants_read(reused));
        assert_eq!((echo.connections_opened, echo.connections_closed), (2, 1));
    }
}
