//! The kernel driver: one network thread with its own SO_REUSEPORT listener and io_uring (accept,
//! recv, send, and a poll on its wakeup eventfd), driving the worker core. It maps sockets to the
//! core's connections and moves bytes; everything else is the core's.
//!
//! Every operation's `user_data` is `kind | slot | generation`, so a completion finds its
//! connection even after the slot was reused (the generation no longer matches and it is
//! ignored). A connection's buffers stay alive while any of its operations is in flight: the
//! driver releases a connection to the core only when none is.

use crate::mesh::messages::ConnectionId;
use crate::mesh::ring::Waker;
use crate::session::WorkerCore;
use io_uring::{opcode, squeue, types, IoUring};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Submission queue entries of a thread's ring.
const RING_ENTRIES: u32 = 1024;
/// Receive buffer of a connection (large SendMessages batches are received into their own
/// buffers, see `WorkerCore::receive_buffer`).
const RECV_BUFFER_BYTES: usize = 64 * 1024;
/// Chunks written by one writev.
const SEND_IOVECS_MAX: usize = 64;
/// How often the thread wakes without I/O, so the core's housekeeping runs.
const TICK_INTERVAL: Duration = crate::session::core::HOUSEKEEPING_INTERVAL;

const KIND_ACCEPT: u64 = 1;
const KIND_RECV: u64 = 2;
const KIND_SEND: u64 = 3;
const KIND_WAKE: u64 = 4;
const KIND_TIMEOUT: u64 = 5;

fn user_data(kind: u64, slot: u32, generation: u32) -> u64 {
    (kind << 56) | (u64::from(slot & 0x00ff_ffff) << 32) | u64::from(generation)
}

fn decode_user_data(data: u64) -> (u64, u32, u32) {
    (data >> 56, ((data >> 32) & 0x00ff_ffff) as u32, data as u32)
}

/// Binds `count` listeners on one address with SO_REUSEPORT (port 0 resolves once, then every
/// listener binds the port the first one got).
///
/// # Errors
/// The socket, bind or listen error.
pub fn bind_listeners(address: SocketAddr, count: usize) -> std::io::Result<Vec<TcpListener>> {
    let mut address = address;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = reuseport_listener(address)?;
        address = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

fn reuseport_listener(address: SocketAddr) -> std::io::Result<TcpListener> {
    use nix::sys::socket::{
        bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
        SockaddrStorage,
    };
    let family = if address.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(address))?;
    listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    Ok(TcpListener::from(fd))
}

/// A connection's socket and the I/O in flight on it.
struct Socket {
    id: ConnectionId,
    fd: OwnedFd,
    recv_buffer: Vec<u8>,
    recv_in_flight: bool,
    /// The receive in flight lands in the core's batch buffer, not in `recv_buffer`.
    recv_into_batch: bool,
    send_in_flight: bool,
    send_iovecs: Vec<libc::iovec>,
    /// shutdown(2) was called: the stream is ending.
    shut_down: bool,
    /// The stream ended (the peer closed, an error, or our shutdown completed a receive).
    ended: bool,
}

/// One network thread's state.
pub struct KernelWorker {
    ring: IoUring,
    listener: TcpListener,
    core: WorkerCore,
    waker: Arc<Waker>,
    timeout: Box<types::Timespec>,
    accept_address: Box<(libc::sockaddr_storage, libc::socklen_t)>,
    accepting: bool,
    /// Indexed by the core's slot index (the core reuses a slot only after its release).
    sockets: Vec<Option<Socket>>,
    dirty: Vec<ConnectionId>,
    steering: Option<riptide_ebpf::reuseport::ConnectionCounter>,
    index: usize,
    /// `tcp.keepalive_s`: accepted sockets probe silent peers (0 = they do not).
    keepalive_s: u64,
}

impl KernelWorker {
    /// # Errors
    /// The ring could not be created.
    pub fn new(
        listener: TcpListener,
        core: WorkerCore,
        waker: Arc<Waker>,
        steering: Option<riptide_ebpf::reuseport::ConnectionCounter>,
        index: usize,
    ) -> std::io::Result<KernelWorker> {
        let mut core = core;
        let keepalive_s = core.context().shared.config.tcp.keepalive_s;
        Ok(KernelWorker {
            ring: IoUring::new(RING_ENTRIES)?,
            listener,
            core,
            waker,
            timeout: Box::new(types::Timespec::new().nsec(TICK_INTERVAL.as_nanos() as u32)),
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
            accept_address: Box::new((unsafe { std::mem::zeroed() }, 0)),
            accepting: false,
            sockets: Vec::new(),
            dirty: Vec::new(),
            steering,
            index,
            keepalive_s,
        })
    }

    /// Pushes one submission. The caller guarantees every pointer in `entry` stays valid until
    /// its completion (buffers owned by a socket or the core's connection, a boxed field of the
    /// worker, or the listener).
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: see the function comment: the buffers behind `entry` outlive the operation.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            // The submission queue is full: hand what is queued to the kernel and retry.
            if let Err(error) = self.ring.submit() {
                tracing::error!(%error, "io_uring submit failed");
            }
        }
    }

    /// Runs until shutdown: then stops accepting, lets the core finish what connections have in
    /// flight and close them, and returns once every socket is released.
    pub fn run(mut self) {
        self.arm_wake();
        self.arm_timeout();
        loop {
            let shutting_down = self.core.context().shared.shutting_down();
            if !shutting_down && !self.accepting {
                self.arm_accept();
            }
            if let Err(error) = self.ring.submit_and_wait(1) {
                if error.raw_os_error() != Some(libc::EINTR) {
                    tracing::error!(worker = self.index, %error, "io_uring wait failed");
                }
            }
            let now = Instant::now();
            self.reap(now);
            self.core.poll(now);
            self.service_dirty();
            self.core.end_turn();
            if shutting_down && self.core.live_count() == 0 {
                break;
            }
        }
        tracing::info!(worker = self.index, "network worker stopped");
    }

    fn arm_accept(&mut self) {
        self.accept_address.1 = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let entry = opcode::Accept::new(
            types::Fd(self.listener.as_raw_fd()),
            std::ptr::addr_of_mut!(self.accept_address.0).cast(),
            std::ptr::addr_of_mut!(self.accept_address.1),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(user_data(KIND_ACCEPT, 0, 0));
        self.push(entry);
        self.accepting = true;
    }

    /// A one-shot poll on the wakeup eventfd; on completion it is drained and re-armed.
    fn arm_wake(&mut self) {
        let entry = opcode::PollAdd::new(types::Fd(self.waker.fd()), libc::POLLIN as u32)
            .build()
            .user_data(user_data(KIND_WAKE, 0, 0));
        self.push(entry);
    }

    fn arm_timeout(&mut self) {
        let entry = opcode::Timeout::new(&*self.timeout)
            .build()
            .user_data(user_data(KIND_TIMEOUT, 0, 0));
        self.push(entry);
    }

    fn reap(&mut self, now: Instant) {
        let completions: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|cqe| (cqe.user_data(), cqe.result()))
            .collect();
        for (data, result) in completions {
            let (kind, slot, generation) = decode_user_data(data);
            match kind {
                KIND_ACCEPT => self.on_accept(result, now),
                KIND_WAKE => {
                    self.waker.drain();
                    self.arm_wake();
                }
                KIND_TIMEOUT => self.arm_timeout(),
                KIND_RECV => self.on_recv(slot, generation, result, now),
                KIND_SEND => self.on_send(slot, generation, result),
                _ => tracing::error!(kind, "completion of an unknown operation"),
            }
        }
    }

    fn on_accept(&mut self, result: i32, now: Instant) {
        self.accepting = false;
        if result < 0 {
            let errno = -result;
            // EMFILE/ENFILE/ENOBUFS/ENOMEM: out of resources; the accept is retried next turn.
            if errno != libc::EINTR && errno != libc::EAGAIN && errno != libc::ECONNABORTED {
                tracing::warn!(worker = self.index, error = %std::io::Error::from_raw_os_error(errno), "accept failed");
            }
            return;
        }
        // SAFETY: a successful accept returns a new descriptor that this thread now owns.
        let fd = unsafe { OwnedFd::from_raw_fd(result) };
        let peer = peer_address(&self.accept_address.0)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        // A refused connection is closed by dropping its descriptor; the core counted it.
        let Ok(id) = self.core.accept(peer, now) else {
            return;
        };
        let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::TcpNoDelay, &true);
        if let Err(error) = set_keepalive(&fd, self.keepalive_s) {
            tracing::warn!(worker = self.index, %error, "could not set TCP keep-alive; a peer that vanishes keeps this connection");
        }
        if let Some(steering) = &self.steering {
            let _ = steering.opened(self.index as u32);
        }
        let index = id.slot as usize;
        if self.sockets.len() <= index {
            self.sockets.resize_with(index + 1, || None);
        }
        self.sockets[index] = Some(Socket {
            id,
            fd,
            recv_buffer: vec![0; RECV_BUFFER_BYTES],
            recv_in_flight: false,
            recv_into_batch: false,
            send_in_flight: false,
            send_iovecs: Vec::with_capacity(SEND_IOVECS_MAX),
            shut_down: false,
            ended: false,
        });
        self.dirty.push(id);
    }

    fn socket_mut(&mut self, slot: u32, generation: u32) -> Option<&mut Socket> {
        self.sockets
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .filter(|socket| socket.id.generation == generation)
    }

    fn on_recv(&mut self, slot: u32, generation: u32, result: i32, now: Instant) {
        let Some(socket) = self
            .sockets
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .filter(|socket| socket.id.generation == generation)
        else {
            return;
        };
        socket.recv_in_flight = false;
        let id = socket.id;
        if result <= 0 {
            // 0: the peer closed (or our shutdown); negative: ECONNRESET and friends.
            if result < 0 {
                tracing::debug!(slot, error = %std::io::Error::from_raw_os_error(-result), "receive failed");
            }
            socket.ended = true;
            self.core.on_stream_end(id);
        } else if socket.recv_into_batch {
            self.core.on_batch_received(id, result as usize, now);
        } else {
            let received = &socket.recv_buffer[..result as usize];
            self.core.on_received(id, received, now);
        }
        self.dirty.push(id);
    }

    fn on_send(&mut self, slot: u32, generation: u32, result: i32) {
        let Some(socket) = self.socket_mut(slot, generation) else {
            return;
        };
        socket.send_in_flight = false;
        let id = socket.id;
        if result < 0 {
            tracing::debug!(slot, error = %std::io::Error::from_raw_os_error(-result), "send failed");
            socket.ended = true;
            self.core.on_stream_end(id);
        } else {
            self.core.on_sent(id, result as usize);
        }
        self.dirty.push(id);
    }

    /// Arms sends and receives of connections that changed, closes finished ones and releases
    /// the ones with nothing in flight.
    fn service_dirty(&mut self) {
        self.core.take_dirty(&mut self.dirty);
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &id in &dirty {
            self.service(id);
        }
        dirty.clear();
        self.dirty = dirty;
    }

    fn service(&mut self, id: ConnectionId) {
        let Some(socket) = self
            .sockets
            .get_mut(id.slot as usize)
            .and_then(Option::as_mut)
            .filter(|socket| socket.id == id)
        else {
            return;
        };
        if (socket.ended || self.core.wants_close(id)) && !socket.shut_down {
            // Ends a pending receive (it completes with 0) and sends FIN after what was written.
            // SAFETY: shutdown on a descriptor this socket owns.
            unsafe { libc::shutdown(socket.fd.as_raw_fd(), libc::SHUT_RDWR) };
            socket.shut_down = true;
        }
        if socket.shut_down {
            if !socket.recv_in_flight && !socket.send_in_flight {
                self.release(id);
            }
            return;
        }
        if !socket.recv_in_flight && !socket.send_in_flight && self.core.tls_ready_for_kernel(id) {
            let installed = match self.core.take_tls_secrets(id) {
                Some(Ok(secrets)) => crate::net::ktls::install(&socket.fd, secrets),
                Some(Err(error)) => Err(std::io::Error::other(error)),
                None => Ok(()),
            };
            if let Err(error) = installed {
                tracing::warn!(worker = self.index, %error, "kTLS refused the connection's keys; closing it");
                socket.ended = true;
                self.core.on_stream_end(id);
                self.dirty.push(id);
                return;
            }
        }
        self.arm_send(id);
        self.arm_recv(id);
    }

    fn arm_send(&mut self, id: ConnectionId) {
        let Some(socket) = self.sockets[id.slot as usize].as_mut() else {
            return;
        };
        if socket.send_in_flight || !self.core.has_output(id) {
            return;
        }
        socket.send_iovecs.clear();
        for chunk in self.core.transmit(id).take(SEND_IOVECS_MAX) {
            socket.send_iovecs.push(libc::iovec {
                iov_base: chunk.as_ptr() as *mut _,
                iov_len: chunk.len(),
            });
        }
        let entry = opcode::Writev::new(
            types::Fd(socket.fd.as_raw_fd()),
            socket.send_iovecs.as_ptr(),
            socket.send_iovecs.len() as u32,
        )
        .build()
        .user_data(user_data(KIND_SEND, id.slot, id.generation));
        socket.send_in_flight = true;
        self.push(entry);
    }

    fn arm_recv(&mut self, id: ConnectionId) {
        let Some(socket) = self.sockets[id.slot as usize].as_mut() else {
            return;
        };
        if socket.recv_in_flight || !self.core.wants_read(id) {
            return;
        }
        // A large batch arrives straight into its own buffer in the core; anything else into
        // the socket's. Either stays in place until the completion: the connection outlives the
        // receive (it is released only when nothing is in flight).
        // MSG_WAITALL: the batch completes in one receive (io_uring retries short ones itself),
        // so its arrival costs the thread one wakeup instead of one per segment.
        let (target, into_batch, flags) = match self.core.receive_buffer(id) {
            Some(batch) => (batch, true, libc::MSG_WAITALL),
            None => (&mut socket.recv_buffer[..], false, 0),
        };
        let entry = opcode::Recv::new(
            types::Fd(socket.fd.as_raw_fd()),
            target.as_mut_ptr(),
            u32::try_from(target.len()).unwrap_or(u32::MAX),
        )
        .flags(flags)
        .build()
        .user_data(user_data(KIND_RECV, id.slot, id.generation));
        socket.recv_in_flight = true;
        socket.recv_into_batch = into_batch;
        self.push(entry);
    }

    /// Nothing is in flight on the socket any more: close it and free the connection.
    fn release(&mut self, id: ConnectionId) {
        self.sockets[id.slot as usize] = None;
        self.core.release(id);
        if let Some(steering) = &self.steering {
            let _ = steering.closed(self.index as u32);
        }
    }
}

/// `tcp.keepalive_s` on an accepted socket: after `keepalive_s` of silence the kernel probes every
/// `keepalive_s`, and after TCP_KEEPALIVE_PROBES unanswered probes fails the socket's pending
/// receive with ETIMEDOUT (the ordinary end of stream). TCP_USER_TIMEOUT gives unacknowledged
/// replies to a vanished peer the same bound instead of ~15 minutes of retransmissions. 0: none.
fn set_keepalive(fd: &OwnedFd, keepalive_s: u64) -> nix::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    use riptide_config::TCP_KEEPALIVE_PROBES;
    if keepalive_s == 0 {
        return Ok(());
    }
    // The config bounds keepalive_s to two hours: every value below fits.
    let seconds = u32::try_from(keepalive_s).unwrap_or(u32::MAX);
    let dead_after_ms = seconds
        .saturating_mul(1 + TCP_KEEPALIVE_PROBES)
        .saturating_mul(1000);
    setsockopt(fd, sockopt::TcpKeepIdle, &seconds)?;
    setsockopt(fd, sockopt::TcpKeepInterval, &seconds)?;
    setsockopt(fd, sockopt::TcpKeepCount, &TCP_KEEPALIVE_PROBES)?;
    setsockopt(fd, sockopt::TcpUserTimeout, &dead_after_ms)?;
    setsockopt(fd, sockopt::KeepAlive, &true)
}

fn peer_address(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(v6.sin6_port))))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let data = user_data(KIND_SEND, 0x00ab_cdef, 0xdead_beef);
        assert_eq!(
            decode_user_data(data),
            (KIND_SEND, 0x00ab_cdef, 0xdead_beef)
        );
    }

    #[test]
    fn keepalive_options_reach_the_socket() {
        use nix::sys::socket::{getsockopt, sockopt};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let accepted = OwnedFd::from(listener.accept().unwrap().0);
        assert!(!getsockopt(&accepted, sockopt::KeepAlive).unwrap());
        set_keepalive(&accepted, 0).unwrap();
        assert!(!getsockopt(&accepted, sockopt::KeepAlive).unwrap());
        set_keepalive(&accepted, 7).unwrap();
        assert!(getsockopt(&accepted, sockopt::KeepAlive).unwrap());
        assert_eq!(getsockopt(&accepted, sockopt::TcpKeepIdle).unwrap(), 7);
        assert_eq!(getsockopt(&accepted, sockopt::TcpKeepInterval).unwrap(), 7);
        assert_eq!(getsockopt(&accepted, sockopt::TcpKeepCount).unwrap(), 3);
        assert_eq!(
            getsockopt(&accepted, sockopt::TcpUserTimeout).unwrap(),
            28_000
        );
    }

    #[test]
    fn listeners_share_one_port() {
        let listeners = bind_listeners("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = listeners[0].local_addr().unwrap().port();
        assert!(listeners
            .iter()
            .all(|l| l.local_addr().unwrap().port() == port));
    }
}
