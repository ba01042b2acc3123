//! The kernel backend: one network worker per thread, each with its own SO_REUSEPORT listener
//! and io_uring (accept, recv, send, and a read on its wakeup eventfd), and no async runtime.
//!
//! Every operation's `user_data` is `kind | slot | generation`, so a completion finds its
//! connection even after the slot was reused (the generation no longer matches and it is
//! ignored). A connection's buffers stay alive while any of its operations is in flight.

use crate::mesh::ring::Waker;
use crate::session::{Connection, WorkerContext};
use crate::shard::ConnectionId;
use io_uring::{opcode, squeue, types, IoUring};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Submission queue entries of a worker's ring.
const RING_ENTRIES: u32 = 1024;
/// Receive buffer of a connection (large SendMessages batches are received into their own
/// buffers, see `Connection::batch_receive_buffer`).
const RECV_BUFFER_BYTES: usize = 64 * 1024;
/// Chunks written by one writev.
const SEND_IOVECS_MAX: usize = 64;
/// How often the worker wakes without I/O (shutdown, heartbeat checks).
const HOUSEKEEPING_INTERVAL_MS: u64 = 100;

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

struct Slot {
    generation: u32,
    socket: Option<OwnedFd>,
    connection: Option<Connection>,
    recv_buffer: Vec<u8>,
    recv_in_flight: bool,
    /// The receive in flight lands in the connection's batch buffer, not in `recv_buffer`.
    recv_into_batch: bool,
    send_in_flight: bool,
    send_iovecs: Vec<libc::iovec>,
    shut_down: bool,
}

/// One network worker thread's state.
pub struct KernelWorker {
    ring: IoUring,
    listener: TcpListener,
    ctx: WorkerContext,
    waker: Arc<Waker>,
    timeout: Box<types::Timespec>,
    accept_address: Box<(libc::sockaddr_storage, libc::socklen_t)>,
    accepting: bool,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    dirty: Vec<u32>,
    steering: Option<riptide_ebpf::reuseport::ConnectionCounter>,
    heartbeat_timeout: Duration,
}

impl KernelWorker {
    /// # Errors
    /// The ring could not be created.
    pub fn new(
        listener: TcpListener,
        ctx: WorkerContext,
        waker: Arc<Waker>,
        steering: Option<riptide_ebpf::reuseport::ConnectionCounter>,
    ) -> std::io::Result<KernelWorker> {
        let heartbeat_timeout =
            Duration::from_millis(ctx.shared.config.heartbeat.interval_ms * 12 / 10);
        Ok(KernelWorker {
            ring: IoUring::new(RING_ENTRIES)?,
            listener,
            ctx,
            waker,
            timeout: Box::new(
                types::Timespec::new().nsec(HOUSEKEEPING_INTERVAL_MS as u32 * 1_000_000),
            ),
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
            accept_address: Box::new((unsafe { std::mem::zeroed() }, 0)),
            accepting: false,
            slots: Vec::new(),
            free_slots: Vec::new(),
            dirty: Vec::new(),
            steering,
            heartbeat_timeout,
        })
    }

    /// Pushes one submission. The caller guarantees every pointer in `entry` stays valid until
    /// its completion (buffers owned by a slot, a boxed field of the worker, or the listener).
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

    /// Runs until shutdown: then stops accepting, finishes what connections have in flight,
    /// and closes them.
    pub fn run(mut self) {
        self.arm_wake();
        self.arm_timeout();
        let mut last_housekeeping = Instant::now();
        loop {
            let shutting_down = self.ctx.shared.shutting_down();
            if !shutting_down && !self.accepting {
                self.arm_accept();
            }
            if let Err(error) = self.ring.submit_and_wait(1) {
                if error.raw_os_error() != Some(libc::EINTR) {
                    tracing::error!(worker = self.ctx.index, %error, "io_uring wait failed");
                }
            }
            self.reap();
            self.deliver_shard_replies();
            self.service_dirty();
            if last_housekeeping.elapsed() >= Duration::from_millis(HOUSEKEEPING_INTERVAL_MS) {
                last_housekeeping = Instant::now();
                self.housekeeping(shutting_down);
            }
            if shutting_down && self.slots.iter().all(|slot| slot.socket.is_none()) {
                break;
            }
        }
        tracing::info!(worker = self.ctx.index, "network worker stopped");
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

    fn reap(&mut self) {
        let completions: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|cqe| (cqe.user_data(), cqe.result()))
            .collect();
        for (data, result) in completions {
            let (kind, slot, generation) = decode_user_data(data);
            match kind {
                KIND_ACCEPT => self.on_accept(result),
                KIND_WAKE => {
                    self.waker.drain();
                    self.arm_wake();
                }
                KIND_TIMEOUT => self.arm_timeout(),
                KIND_RECV => self.on_recv(slot, generation, result),
                KIND_SEND => self.on_send(slot, generation, result),
                _ => tracing::error!(kind, "completion of an unknown operation"),
            }
        }
    }

    fn on_accept(&mut self, result: i32) {
        self.accepting = false;
        if result < 0 {
            let errno = -result;
            // EMFILE/ENFILE/ENOBUFS/ENOMEM: out of resources; the accept is retried next turn.
            if errno != libc::EINTR && errno != libc::EAGAIN && errno != libc::ECONNABORTED {
                tracing::warn!(worker = self.ctx.index, error = %std::io::Error::from_raw_os_error(errno), "accept failed");
            }
            return;
        }
        // SAFETY: a successful accept returns a new descriptor that this worker now owns.
        let socket = unsafe { OwnedFd::from_raw_fd(result) };
        let counters = &self.ctx.shared.worker_counters[self.ctx.index];
        if !self.ctx.shared.admit_connection() {
            counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                worker = self.ctx.index,
                "connection refused: tcp.connections_max reached"
            );
            return;
        }
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::TcpNoDelay, &true);
        let peer = peer_address(&self.accept_address.0)
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        if let Some(steering) = &self.steering {
            let _ = steering.opened(self.ctx.index as u32);
        }
        let index = self.allocate_slot();
        let slot = &mut self.slots[index as usize];
        let id = ConnectionId {
            slot: index,
            generation: slot.generation,
        };
        slot.connection = Some(Connection::new(id, peer, &self.ctx));
        slot.socket = Some(socket);
        self.dirty.push(index);
    }

    fn allocate_slot(&mut self) -> u32 {
        if let Some(index) = self.free_slots.pop() {
            let slot = &mut self.slots[index as usize];
            slot.generation = slot.generation.wrapping_add(1);
            slot.shut_down = false;
            return index;
        }
        self.slots.push(Slot {
            generation: 0,
            socket: None,
            connection: None,
            recv_buffer: vec![0; RECV_BUFFER_BYTES],
            recv_in_flight: false,
            recv_into_batch: false,
            send_in_flight: false,
            send_iovecs: Vec::with_capacity(SEND_IOVECS_MAX),
            shut_down: false,
        });
        (self.slots.len() - 1) as u32
    }

    fn on_recv(&mut self, index: u32, generation: u32, result: i32) {
        let Some(slot) = self
            .slots
            .get_mut(index as usize)
            .filter(|slot| slot.generation == generation)
        else {
            return;
        };
        slot.recv_in_flight = false;
        let Some(connection) = slot.connection.as_mut() else {
            return;
        };
        if result <= 0 {
            // 0: the peer closed; negative: ECONNRESET and friends. Either way the stream ends.
            if result < 0 {
                tracing::debug!(slot = index, error = %std::io::Error::from_raw_os_error(-result), "receive failed");
            }
            slot.shut_down = true;
            connection.on_closed(&self.ctx);
        } else if slot.recv_into_batch {
            connection.on_batch_received(result as usize, &mut self.ctx);
        } else {
            connection.on_received(&slot.recv_buffer[..result as usize], &mut self.ctx);
        }
        self.dirty.push(index);
    }

    fn on_send(&mut self, index: u32, generation: u32, result: i32) {
        let Some(slot) = self
            .slots
            .get_mut(index as usize)
            .filter(|slot| slot.generation == generation)
        else {
            return;
        };
        slot.send_in_flight = false;
        let Some(connection) = slot.connection.as_mut() else {
            return;
        };
        if result < 0 {
            tracing::debug!(slot = index, error = %std::io::Error::from_raw_os_error(-result), "send failed");
            slot.shut_down = true;
            connection.on_closed(&self.ctx);
        } else {
            connection.consume_output(result as usize);
        }
        self.dirty.push(index);
    }

    fn deliver_shard_replies(&mut self) {
        let mut replies = Vec::new();
        self.ctx.drain_replies(|reply| replies.push(reply));
        for reply in replies {
            let id = reply.token.connection;
            let Some(slot) = self
                .slots
                .get_mut(id.slot as usize)
                .filter(|s| s.generation == id.generation)
            else {
                continue;
            };
            if let Some(connection) = slot.connection.as_mut() {
                connection.on_shard_reply(reply.token.seq, reply.outcome, &mut self.ctx);
                // Replies may have freed ring room or in-flight slots: take more frames.
                connection.process(&mut self.ctx);
                self.dirty.push(id.slot);
            }
        }
        // Connections stalled on full rings get another chance now that replies drained.
        for index in 0..self.slots.len() {
            if let Some(connection) = self.slots[index].connection.as_mut() {
                if !connection.is_closing() && !connection.wants_read() {
                    connection.process(&mut self.ctx);
                    self.dirty.push(index as u32);
                }
            }
        }
    }

    /// Arms sends and receives of connections that changed, wakes shards that got requests, and
    /// frees slots of finished connections.
    fn service_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        let mut shards_to_wake = vec![false; self.ctx.links.len()];
        for &index in &dirty {
            if let Some(connection) = self.slots[index as usize].connection.as_mut() {
                for (shard, wake) in connection.shards_to_wake.iter_mut().enumerate() {
                    shards_to_wake[shard] |= std::mem::take(wake);
                }
            }
            self.service_slot(index);
        }
        self.ctx.wake_shards(&mut shards_to_wake);
        self.dirty = dirty;
        self.dirty.clear();
    }

    fn service_slot(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        let (Some(connection), Some(socket)) = (slot.connection.as_ref(), slot.socket.as_ref())
        else {
            return;
        };
        let fd = socket.as_raw_fd();
        let generation = slot.generation;
        let finished = slot.shut_down || connection.is_closed();
        if finished {
            if !slot.shut_down {
                slot.shut_down = true;
            }
            // Ends a pending receive; the slot is freed once nothing is in flight.
            // SAFETY: shutdown on a descriptor this slot owns.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            if !slot.recv_in_flight && !slot.send_in_flight {
                self.free_slot(index);
            }
            return;
        }
        if !slot.send_in_flight && connection.has_output() {
            slot.send_iovecs.clear();
            for chunk in connection.pending_output().take(SEND_IOVECS_MAX) {
                slot.send_iovecs.push(libc::iovec {
                    iov_base: chunk.as_ptr() as *mut _,
                    iov_len: chunk.len(),
                });
            }
            let entry = opcode::Writev::new(
                types::Fd(fd),
                slot.send_iovecs.as_ptr(),
                slot.send_iovecs.len() as u32,
            )
            .build()
            .user_data(user_data(KIND_SEND, index, generation));
            slot.send_in_flight = true;
            self.push(entry);
        }
        let slot = &mut self.slots[index as usize];
        let Some(connection) = slot.connection.as_mut() else {
            return;
        };
        if !slot.recv_in_flight && connection.wants_read() {
            // A large batch arrives straight into its own buffer; anything else into the slot's.
            // Either buffer stays in place until the completion: the connection and its batch
            // outlive the receive (a slot is freed only when nothing is in flight).
            // MSG_WAITALL: the batch completes in one receive (io_uring retries short ones
            // itself), so its arrival costs the worker one wakeup instead of one per segment.
            let (target, into_batch, flags) = match connection.batch_receive_buffer() {
                Some(batch) => (batch, true, libc::MSG_WAITALL),
                None => (&mut slot.recv_buffer[..], false, 0),
            };
            let entry = opcode::Recv::new(
                types::Fd(fd),
                target.as_mut_ptr(),
                u32::try_from(target.len()).unwrap_or(u32::MAX),
            )
            .flags(flags)
            .build()
            .user_data(user_data(KIND_RECV, index, generation));
            slot.recv_in_flight = true;
            slot.recv_into_batch = into_batch;
            self.push(entry);
        }
    }

    fn free_slot(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if let Some(mut connection) = slot.connection.take() {
            connection.on_closed(&self.ctx);
        }
        slot.socket = None;
        self.free_slots.push(index);
        let counters = &self.ctx.shared.worker_counters[self.ctx.index];
        counters.connections_open.fetch_sub(1, Ordering::Relaxed);
        self.ctx.shared.release_connection();
        if let Some(steering) = &self.steering {
            let _ = steering.closed(self.ctx.index as u32);
        }
    }

    /// Evicts silent consumer-group members (as Iggy's heartbeat does) and, at shutdown, closes
    /// connections that have nothing left in flight.
    fn housekeeping(&mut self, shutting_down: bool) {
        for index in 0..self.slots.len() {
            let Some(connection) = self.slots[index].connection.as_mut() else {
                continue;
            };
            let silent = connection.last_activity.elapsed() > self.heartbeat_timeout;
            let idle = !connection.awaiting_shards() && !connection.has_output();
            if (shutting_down && idle) || (silent && self.is_group_member(index)) {
                self.slots[index].shut_down = true;
                self.dirty.push(index as u32);
            }
        }
        self.service_dirty();
    }

    fn is_group_member(&self, index: usize) -> bool {
        let Some(connection) = self.slots[index].connection.as_ref() else {
            return false;
        };
        crate::session::shared::lock(&self.ctx.shared.groups).has_member(connection.state.client_id)
    }
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
    fn listeners_share_one_port() {
        let listeners = bind_listeners("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = listeners[0].local_addr().unwrap().port();
        assert!(listeners
            .iter()
            .all(|l| l.local_addr().unwrap().port() == port));
    }
}
