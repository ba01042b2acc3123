//! The memif transport: the load generator as a userspace peer of the DPDK appliance, so nothing
//! between them is the kernel. The process runs its own EAL (its own file prefix, no hugepages:
//! memif's shared memory is a memfd either way) with one lcore, the main thread, pinned to its
//! CPU; a memif client port connects to the appliance's memif server socket, and smoltcp runs TCP
//! over it with the dataplane's own mbuf device ([`riptide_dataplane::net::dpdk::net::MbufDevice`]).
//!
//! Everything runs on that one thread: a current-thread tokio runtime (timers only, no I/O
//! driver, so no `epoll_wait`) drives the bench's actors and [`MemifNet::drive`], a task that
//! polls the port and the TCP stack every time it is scheduled and wakes the connections whose
//! sockets moved. [`MemifStream`] is the actors' `AsyncRead + AsyncWrite` over a smoltcp socket.

use std::future::poll_fn;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use riptide_dataplane::net::dpdk::eal::{Eal, EalConfig};
use riptide_dataplane::net::dpdk::net::{
    build_interface, DeviceCounters, InterfaceConfig, MbufDevice,
};
use riptide_dataplane::net::dpdk::port::{Port, PortConfig};
use smoltcp::iface::{Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client port's name (one per process).
const MEMIF_CLIENT_DEVICE: &str = "net_memif0";
/// The client allocates memif's shared memory, so its rings decide: 4096 slots (log2 12) hold a
/// consumer's 1 MB reply in flight, as the appliance's default rx descriptors do.
const MEMIF_CLIENT_LOG2_RING_SIZE: u32 = 12;
/// How long the memif handshake with the appliance may take.
const LINK_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// Socket buffers of one connection: a consumer's reply of a few batches fits the receive side.
const SOCKET_RX_BUFFER_BYTES: usize = 4 * 1024 * 1024;
const SOCKET_TX_BUFFER_BYTES: usize = 2 * 1024 * 1024;
/// Ephemeral TCP ports of the client's connections start here.
const LOCAL_PORT_FIRST: u16 = 49_152;
/// Egress passes per turn (smoltcp emits one segment per socket per pass), as the appliance's lcore.
const EGRESS_PASSES_PER_TURN_MAX: usize = 64;

/// Each names its cause in its message (no separate source, so a report shows it once).
#[derive(Debug, thiserror::Error)]
pub enum MemifError {
    #[error("the client's EAL: {0}")]
    Eal(riptide_dataplane::net::dpdk::eal::EalError),
    #[error(
        "the memif client port: {0} (is the appliance running with vdevs = [\"net_memif0\"] and \
         this --socket?)"
    )]
    Port(riptide_dataplane::net::dpdk::port::PortError),
    #[error(
        "the memif link to {socket} did not come up within {timeout_ms} ms: is the appliance \
         serving net_memif on that socket, and no other client connected to it?"
    )]
    LinkDown { socket: String, timeout_ms: u128 },
    #[error("the client interface: {0}")]
    Net(riptide_dataplane::net::dpdk::net::NetError),
}

/// How the client attaches to the appliance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemifOptions {
    /// The appliance's memif server socket (`<data>/runtime/memif.sock` unless configured).
    pub socket: PathBuf,
    /// The client's own address on the memif link, and the link's prefix.
    pub ip_address: Ipv4Addr,
    pub prefix_len: u8,
    /// The CPU the client's one lcore (the main thread: stack and actors) is pinned to.
    pub cpu: u32,
    /// The EAL file prefix: distinct from the appliance's (`riptide-<port>`).
    pub file_prefix: String,
    /// EAL memory (`--no-huge -m`): the mempool and memif's rings.
    pub memory_mb: u32,
}

/// The client's EAL and port; dropped last (after every connection).
pub struct MemifTransport {
    net: MemifNet,
    port: Option<Port>,
    eal: Option<Eal>,
}

impl MemifTransport {
    /// Starts the EAL on `options.cpu` (this thread becomes its main lcore, pinned there), opens
    /// the memif client port and waits for the appliance to accept it.
    ///
    /// Errors: [`MemifError`] naming the fix.
    pub fn start(options: &MemifOptions) -> Result<MemifTransport, MemifError> {
        let mut eal_config =
            EalConfig::no_huge(vec![options.cpu], options.memory_mb, &options.file_prefix);
        eal_config.vdevs = vec![format!(
            "{MEMIF_CLIENT_DEVICE},role=client,socket={},socket-abstract=no,rsize={MEMIF_CLIENT_LOG2_RING_SIZE}",
            options.socket.display()
        )];
        eal_config.log_level = Some("notice".to_string());
        let eal = Eal::init(&eal_config).map_err(MemifError::Eal)?;
        let port = Port::open(&eal, MEMIF_CLIENT_DEVICE, &PortConfig::default())
            .map_err(MemifError::Port)?;
        let link = port
            .wait_link_up(LINK_UP_TIMEOUT)
            .map_err(MemifError::Port)?;
        if !link.up {
            return Err(MemifError::LinkDown {
                socket: options.socket.display().to_string(),
                timeout_ms: LINK_UP_TIMEOUT.as_millis(),
            });
        }
        let mut device = MbufDevice::new(port.queue(0).map_err(MemifError::Port)?, None);
        let interface_config = InterfaceConfig {
            mac: port.mac().map_err(MemifError::Port)?,
            ip_address: options.ip_address,
            prefix_len: options.prefix_len,
            gateway: None,
        };
        let interface = build_interface(&interface_config, &mut device, Instant::from_micros(0))
            .map_err(MemifError::Net)?;
        let stack = Stack {
            device,
            interface,
            sockets: SocketSet::new(Vec::new()),
            wakers: Vec::new(),
            closing: Vec::new(),
            next_local_port: first_local_port(),
            epoch: std::time::Instant::now(),
            counters: DriverCounters::default(),
        };
        Ok(MemifTransport {
            net: MemifNet {
                stack: Arc::new(Mutex::new(Some(stack))),
                stop: Arc::new(AtomicBool::new(false)),
            },
            port: Some(port),
            eal: Some(eal),
        })
    }

    /// The handle connections and the driver task use.
    pub fn net(&self) -> MemifNet {
        self.net.clone()
    }
}

impl Drop for MemifTransport {
    fn drop(&mut self) {
        self.net.stop.store(true, Ordering::Relaxed);
        // The stack (its queue handle and mbufs) goes before the port and the EAL close, even
        // while handles on it remain.
        if let Ok(mut stack) = self.net.stack.lock() {
            *stack = None;
        }
        self.port = None;
        self.eal = None;
    }
}

/// The client's polling counters, reported apart from the bench's figures.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DriverCounters {
    /// Times the driver polled the port and the stack.
    pub turns: u64,
    /// Turns that received frames or changed a socket's state.
    pub busy_turns: u64,
    pub device: DeviceSnapshot,
}

/// The port queue's counters (see [`DeviceCounters`]).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DeviceSnapshot {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub tcp_retransmits: u64,
}

impl From<DeviceCounters> for DeviceSnapshot {
    fn from(counters: DeviceCounters) -> DeviceSnapshot {
        DeviceSnapshot {
            rx_packets: counters.rx_packets,
            tx_packets: counters.tx_packets,
            rx_bytes: counters.rx_bytes,
            tx_bytes: counters.tx_bytes,
            tx_dropped: counters.tx_dropped,
            tcp_retransmits: counters.tcp_retransmits,
        }
    }
}

/// Where this process's ephemeral ports start: anywhere in the range, so a client that follows
/// one that vanished does not reuse its ports while the appliance still holds those connections
/// (their 4-tuples would collide).
fn first_local_port() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let spread = u32::from(u16::MAX - LOCAL_PORT_FIRST);
    let offset = (nanos ^ std::process::id().rotate_left(16)) % spread;
    LOCAL_PORT_FIRST + offset as u16
}

/// smoltcp over the memif port, and who waits on which socket.
struct Stack {
    device: MbufDevice,
    interface: Interface,
    sockets: SocketSet<'static>,
    /// Tasks waiting for their socket to move; woken after a turn that received or changed state.
    wakers: Vec<Waker>,
    /// Sockets of dropped streams, removed once closed.
    closing: Vec<SocketHandle>,
    next_local_port: u16,
    epoch: std::time::Instant,
    counters: DriverCounters,
}

// SAFETY: the stack's raw pointers are mbufs of the port's mempool and the port's queue, usable
// from any thread; the mutex gives one thread at a time (in practice the EAL main lcore only).
unsafe impl Send for Stack {}

impl Stack {
    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// One poll of the port and the stack; wakes the waiting tasks when something moved.
    fn turn(&mut self) {
        let now = self.now();
        self.counters.turns += 1;
        let received = self.device.rx_burst();
        let polled = self
            .interface
            .poll(now, &mut self.device, &mut self.sockets);
        for _ in 0..EGRESS_PASSES_PER_TURN_MAX {
            let sent = self
                .interface
                .poll_egress(now, &mut self.device, &mut self.sockets);
            if sent == PollResult::None {
                break;
            }
        }
        self.device.flush_tx();
        if received > 0 || polled == PollResult::SocketStateChanged {
            self.counters.busy_turns += 1;
            for waker in self.wakers.drain(..) {
                waker.wake();
            }
        }
        self.remove_closed();
    }

    fn remove_closed(&mut self) {
        let sockets = &mut self.sockets;
        self.closing.retain(|&handle| {
            let closed = matches!(
                sockets.get::<tcp::Socket>(handle).state(),
                tcp::State::Closed | tcp::State::TimeWait
            );
            if closed {
                sockets.remove(handle);
            }
            !closed
        });
    }

    fn wait(&mut self, cx: &Context<'_>) {
        if !self.wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
            self.wakers.push(cx.waker().clone());
        }
    }
}

/// A handle on the client's stack: connections and the driver task.
#[derive(Clone)]
pub struct MemifNet {
    /// None once the transport closed.
    stack: Arc<Mutex<Option<Stack>>>,
    stop: Arc<AtomicBool>,
}

impl MemifNet {
    /// Runs `f` on the stack; `NotConnected` once the transport closed.
    fn with_stack<R>(&self, f: impl FnOnce(&mut Stack) -> R) -> io::Result<R> {
        // A panic while holding the lock leaves a stack nobody can trust: stop there too.
        let mut guard: MutexGuard<'_, Option<Stack>> =
            self.stack.lock().expect("the memif stack's lock");
        match guard.as_mut() {
            Some(stack) => Ok(f(stack)),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the memif transport is closed",
            )),
        }
    }

    /// Polls the port and the stack each time the runtime schedules it, until the transport is
    /// dropped or [`MemifNet::stop`]: spawn it on the runtime that runs the connections.
    pub async fn drive(self) {
        while !self.stop.load(Ordering::Relaxed) {
            if self.with_stack(Stack::turn).is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// Ends [`MemifNet::drive`].
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The driver's and the port queue's counters now.
    pub fn counters(&self) -> DriverCounters {
        self.with_stack(|stack| DriverCounters {
            device: stack.device.counters().into(),
            ..stack.counters
        })
        .unwrap_or_default()
    }

    /// Opens a TCP connection to `remote` over memif and waits until it is established.
    ///
    /// Errors: `ConnectionRefused` when the appliance resets it, `TimedOut` from smoltcp.
    pub async fn connect(&self, remote: SocketAddrV4) -> io::Result<MemifStream> {
        let handle = self.with_stack(|stack| {
            let rx = tcp::SocketBuffer::new(vec![0; SOCKET_RX_BUFFER_BYTES]);
            let tx = tcp::SocketBuffer::new(vec![0; SOCKET_TX_BUFFER_BYTES]);
            let mut socket = tcp::Socket::new(rx, tx);
            socket.set_nagle_enabled(false);
            let local_port = stack.next_local_port;
            stack.next_local_port = local_port.checked_add(1).unwrap_or(LOCAL_PORT_FIRST);
            socket
                .connect(stack.interface.context(), remote, local_port)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error.to_string()))?;
            Ok::<_, io::Error>(stack.sockets.add(socket))
        })??;
        let stream = MemifStream {
            net: self.clone(),
            handle,
        };
        poll_fn(|cx| {
            let state = self.with_stack(|stack| {
                let state = stack.sockets.get::<tcp::Socket>(handle).state();
                if matches!(state, tcp::State::SynSent | tcp::State::SynReceived) {
                    stack.wait(cx);
                }
                state
            });
            match state {
                Err(error) => Poll::Ready(Err(error)),
                Ok(tcp::State::Established) => Poll::Ready(Ok(())),
                Ok(tcp::State::SynSent | tcp::State::SynReceived) => Poll::Pending,
                Ok(state) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("connection to {remote} over memif: {state}"),
                ))),
            }
        })
        .await?;
        Ok(stream)
    }
}

/// One TCP connection over memif, for the bench's client.
pub struct MemifStream {
    net: MemifNet,
    handle: SocketHandle,
}

impl std::fmt::Debug for MemifStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemifStream")
            .field("handle", &self.handle)
            .finish()
    }
}

impl AsyncRead for MemifStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let handle = self.handle;
        let read = self.net.with_stack(|stack| {
            let socket = stack.sockets.get_mut::<tcp::Socket>(handle);
            if socket.can_recv() {
                let read = socket
                    .recv_slice(buf.initialize_unfilled())
                    .map_err(|error| {
                        io::Error::new(io::ErrorKind::ConnectionReset, error.to_string())
                    })?;
                buf.advance(read);
                return Ok(true);
            }
            if !socket.may_recv() {
                // The peer closed (or reset): end of stream.
                return Ok(true);
            }
            stack.wait(cx);
            Ok(false)
        });
        match read {
            Ok(Ok(true)) => Poll::Ready(Ok(())),
            Ok(Ok(false)) => Poll::Pending,
            Ok(Err(error)) | Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncWrite for MemifStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let handle = self.handle;
        let written = self.net.with_stack(|stack| {
            let socket = stack.sockets.get_mut::<tcp::Socket>(handle);
            if !socket.may_send() {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            if socket.can_send() {
                let written = socket.send_slice(buf).map_err(|error| {
                    io::Error::new(io::ErrorKind::BrokenPipe, error.to_string())
                })?;
                if written > 0 {
                    return Ok(Some(written));
                }
            }
            stack.wait(cx);
            Ok(None)
        });
        match written {
            Ok(Ok(Some(written))) => Poll::Ready(Ok(written)),
            Ok(Ok(None)) => Poll::Pending,
            Ok(Err(error)) | Err(error) => Poll::Ready(Err(error)),
        }
    }

    /// The driver sends what the socket holds at its next turn.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let handle = self.handle;
        let closed = self
            .net
            .with_stack(|stack| stack.sockets.get_mut::<tcp::Socket>(handle).close());
        Poll::Ready(closed)
    }
}

impl Drop for MemifStream {
    fn drop(&mut self) {
        let handle = self.handle;
        let _closed_already = self.net.with_stack(|stack| {
            stack.sockets.get_mut::<tcp::Socket>(handle).close();
            stack.closing.push(handle);
        });
    }
}
