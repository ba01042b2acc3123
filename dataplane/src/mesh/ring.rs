//! The rings between network threads and the threads that serve them (storage shards, the
//! metadata service), and the eventfds that wake their loops.
//!
//! One bounded single-producer single-consumer ring (`rtrb`) per (network thread, server thread)
//! pair and direction. A network thread never has more than the ring's capacity of requests
//! outstanding at one server, so the reply ring (same capacity) can never be full when the server
//! pushes a reply.

use super::messages::{MetadataReply, MetadataRequest, ShardReply, ShardRequest};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

/// An eventfd that one thread writes to wake another thread's loop, which keeps a poll armed on
/// it and then drains it. Non-blocking, so a drain after a spurious or repeated poll completion
/// can never block the loop.
///
/// A wake is a `write(2)`, so a reader that is busy tells its writers not to: it clears
/// `reader_may_block` while it runs ([`Waker::reader_running`]) and sets it again just before
/// it blocks ([`Waker::reader_blocking`]), then looks at its rings once more. Writers push,
/// then read the flag (`wake` skips the write while it is clear). Both sides order their store
/// and their load with SeqCst fences, so either the writer sees the flag set and writes, or the
/// reader sees the request in its ring and does not block: no request is left unseen. A reader
/// that never changes the flag is woken by every wake, as before.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    reader_may_block: AtomicBool,
}

impl Waker {
    /// # Errors
    /// The errno of `eventfd(2)`.
    pub fn new() -> std::io::Result<Waker> {
        // SAFETY: eventfd has no memory-safety preconditions; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            reader_may_block: AtomicBool::new(true),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Resets the counter (non-blocking: an empty counter returns at once).
    pub fn drain(&self) {
        let mut value = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live stack buffer from an fd this struct owns.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), value.as_mut_ptr().cast(), value.len()) };
    }

    /// The reader runs and looks at its rings before it blocks again: wakes need no write.
    pub fn reader_running(&self) {
        self.reader_may_block.store(false, Ordering::SeqCst);
    }

    /// The reader is about to block: wakes write again. The caller looks at its rings after
    /// this (and does not block if they hold anything).
    pub fn reader_blocking(&self) {
        self.reader_may_block.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Adds one to the counter, completing the reader's pending poll; nothing when the reader
    /// runs (see the type's docs). Call it after pushing to the reader's ring.
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if !self.reader_may_block.load(Ordering::SeqCst) {
            return;
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live stack buffer to an fd this struct owns.
        let written = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if written != 8 {
            // Only EAGAIN on a counter near 2^64 could get here; the reader is awake anyway.
            tracing::debug!(error = %std::io::Error::last_os_error(), "eventfd wake not written");
        }
    }

    /// Waits until the counter is non-zero or `timeout` passed, then drains it (for loops that
    /// have nothing else to wait on, such as the metadata service).
    pub fn wait(&self, timeout: std::time::Duration) {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: polls one live pollfd on the stack for a descriptor this struct owns.
        let ready = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
        if ready > 0 {
            self.drain();
        }
    }
}

/// The requesting end of a link to one server thread.
pub struct Link<Request, Reply> {
    requests: rtrb::Producer<Request>,
    replies: rtrb::Consumer<Reply>,
    server_waker: Arc<Waker>,
    /// Requests sent and not yet answered; kept at or below the ring capacity (module docs).
    outstanding: usize,
    capacity: usize,
    /// A request was sent since the server was last woken.
    wake_pending: bool,
}

impl<Request, Reply> Link<Request, Reply> {
    /// Whether `needed` more requests may be sent now.
    pub fn has_room(&self, needed: usize) -> bool {
        self.capacity - self.outstanding >= needed && self.requests.slots() >= needed
    }

    /// Sends one request; the caller checked [`Link::has_room`] first, so the ring takes it.
    /// The server is woken by [`Link::wake_if_sent`].
    pub fn send(&mut self, request: Request) {
        if self.requests.push(request).is_err() {
            tracing::error!("request ring full after a room check");
            return;
        }
        self.outstanding += 1;
        self.wake_pending = true;
    }

    /// Wakes the server if requests were sent since the last wake: one eventfd write per turn of
    /// the requesting loop, however many requests it sent.
    pub fn wake_if_sent(&mut self) {
        if std::mem::take(&mut self.wake_pending) {
            self.server_waker.wake();
        }
    }

    /// The next reply, if any.
    pub fn take_reply(&mut self) -> Option<Reply> {
        let reply = self.replies.pop().ok()?;
        self.outstanding = self.outstanding.saturating_sub(1);
        Some(reply)
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

/// The serving end of a link from one requesting thread.
pub struct Endpoint<Request, Reply> {
    requests: rtrb::Consumer<Request>,
    replies: rtrb::Producer<Reply>,
    client_waker: Arc<Waker>,
    /// A reply was pushed since the client was last woken.
    wake_pending: bool,
}

impl<Request, Reply> Endpoint<Request, Reply> {
    pub fn take_request(&mut self) -> Option<Request> {
        self.requests.pop().ok()
    }

    /// Requests waiting in the ring.
    pub fn queued(&self) -> usize {
        self.requests.slots()
    }

    /// Pushes a reply. Cannot find the ring full: a client keeps at most the ring's capacity of
    /// requests outstanding.
    pub fn reply(&mut self, reply: Reply) {
        if self.replies.push(reply).is_err() {
            tracing::error!("reply ring full: a client exceeded its outstanding limit");
        }
        self.wake_pending = true;
    }

    /// Wakes the client if replies were pushed since the last wake.
    pub fn wake_if_replied(&mut self) {
        if std::mem::take(&mut self.wake_pending) {
            self.client_waker.wake();
        }
    }
}

/// A network thread's link to one storage shard.
pub type ShardLink = Link<ShardRequest, ShardReply>;
/// A storage shard's end of its link to one network thread.
pub type ShardEndpoint = Endpoint<ShardRequest, ShardReply>;
/// A network thread's link to the metadata service.
pub type MetadataLink = Link<MetadataRequest, MetadataReply>;
/// The metadata service's end of its link to one network thread.
pub type MetadataEndpoint = Endpoint<MetadataRequest, MetadataReply>;

fn link<Request, Reply>(
    capacity: usize,
    server_waker: &Arc<Waker>,
    client_waker: &Arc<Waker>,
) -> (Link<Request, Reply>, Endpoint<Request, Reply>) {
    let (request_producer, request_consumer) = rtrb::RingBuffer::new(capacity);
    let (reply_producer, reply_consumer) = rtrb::RingBuffer::new(capacity);
    (
        Link {
            requests: request_producer,
            replies: reply_consumer,
            server_waker: Arc::clone(server_waker),
            outstanding: 0,
            capacity,
            wake_pending: false,
        },
        Endpoint {
            requests: request_consumer,
            replies: reply_producer,
            client_waker: Arc::clone(client_waker),
            wake_pending: false,
        },
    )
}

/// One network thread's links: to every shard, and to the metadata service.
pub struct WorkerLinks {
    pub shards: Vec<ShardLink>,
    pub metadata: MetadataLink,
    /// The eventfd the servers write to wake this network thread.
    pub waker: Arc<Waker>,
}

/// A thread that is not a network thread but sends requests to the shards too (the cluster
/// thread applying the replicated log): its links and its wakeup eventfd.
pub struct ShardClientLinks {
    pub shards: Vec<ShardLink>,
    pub waker: Arc<Waker>,
}

/// Every ring and waker between the network threads, the storage shards and the metadata
/// service.
pub struct Mesh {
    /// `workers[w]`: network thread `w`'s links.
    pub workers: Vec<WorkerLinks>,
    /// Other threads' links to the shards; their endpoints follow the workers' in `shards[s]`.
    pub shard_clients: Vec<ShardClientLinks>,
    /// `shards[s][w]`: shard `s`'s end of its link to network thread `w`.
    pub shards: Vec<Vec<ShardEndpoint>>,
    pub shard_wakers: Vec<Arc<Waker>>,
    /// `metadata[w]`: the metadata service's end of its link to network thread `w`.
    pub metadata: Vec<MetadataEndpoint>,
    pub metadata_waker: Arc<Waker>,
}

/// Builds the full mesh between `workers` network threads, `shards` storage shards and the
/// metadata service, plus `shard_clients` other threads that reach the shards, every ring of
/// `capacity` slots.
///
/// # Errors
/// An eventfd could not be created.
pub fn build_mesh(
    workers: usize,
    shards: usize,
    shard_clients: usize,
    capacity: usize,
) -> std::io::Result<Mesh> {
    let wakers = |count: usize| -> std::io::Result<Vec<Arc<Waker>>> {
        (0..count).map(|_| Waker::new().map(Arc::new)).collect()
    };
    let worker_wakers = wakers(workers)?;
    let shard_wakers = wakers(shards)?;
    let metadata_waker = Arc::new(Waker::new()?);
    let mut shard_endpoints: Vec<Vec<ShardEndpoint>> =
        (0..shards).map(|_| Vec::with_capacity(workers)).collect();
    let mut metadata = Vec::with_capacity(workers);
    let mut worker_links = Vec::with_capacity(workers);
    for worker_waker in &worker_wakers {
        let mut links = Vec::with_capacity(shards);
        for (shard, endpoints) in shard_endpoints.iter_mut().enumerate() {
            let (link, endpoint) = link(capacity, &shard_wakers[shard], worker_waker);
            links.push(link);
            endpoints.push(endpoint);
        }
        let (metadata_link, metadata_endpoint) = link(capacity, &metadata_waker, worker_waker);
        metadata.push(metadata_endpoint);
        worker_links.push(WorkerLinks {
            shards: links,
            metadata: metadata_link,
            waker: Arc::clone(worker_waker),
        });
    }
    let mut clients = Vec::with_capacity(shard_clients);
    for _ in 0..shard_clients {
        let waker = Arc::new(Waker::new()?);
        let mut links = Vec::with_capacity(shards);
        for (shard, endpoints) in shard_endpoints.iter_mut().enumerate() {
            let (link, endpoint) = link(capacity, &shard_wakers[shard], &waker);
            links.push(link);
            endpoints.push(endpoint);
        }
        clients.push(ShardClientLinks {
            shards: links,
            waker,
        });
    }
    Ok(Mesh {
        workers: worker_links,
        shard_clients: clients,
        shards: shard_endpoints,
        shard_wakers,
        metadata,
        metadata_waker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_an_empty_waker_does_not_block() {
        let waker = Waker::new().unwrap();
        waker.drain();
        waker.wake();
        waker.drain();
        waker.drain();
    }

    #[test]
    fn a_running_reader_is_not_written_to_until_it_blocks() {
        let waker = Waker::new().unwrap();
        waker.reader_running();
        waker.wake();
        let mut buf = [0u8; 8];
        // SAFETY: reads 8 bytes into a live stack buffer from a non-blocking eventfd.
        let read = unsafe { libc::read(waker.fd(), buf.as_mut_ptr().cast(), 8) };
        assert_eq!(read, -1, "no write while the reader runs");
        waker.reader_blocking();
        waker.wake();
        // SAFETY: as above.
        let read = unsafe { libc::read(waker.fd(), buf.as_mut_ptr().cast(), 8) };
        assert_eq!(read, 8);
    }

    #[test]
    fn waker_counter_is_readable_after_wake() {
        let waker = Waker::new().unwrap();
        waker.wake();
        waker.wake();
        let mut buf = [0u8; 8];
        // SAFETY: reads 8 bytes into a live stack buffer.
        let read = unsafe { libc::read(waker.fd(), buf.as_mut_ptr().cast(), 8) };
        assert_eq!(read, 8);
        assert_eq!(u64::from_ne_bytes(buf), 2);
    }

    #[test]
    fn mesh_links_every_worker_to_every_shard_and_the_metadata_service() {
        let mesh = build_mesh(2, 3, 0, 4).unwrap();
        assert_eq!((mesh.workers.len(), mesh.workers[0].shards.len()), (2, 3));
        assert_eq!((mesh.shards.len(), mesh.shards[0].len()), (3, 2));
        assert_eq!((mesh.metadata.len(), mesh.shard_wakers.len()), (2, 3));
        assert!(mesh.workers[1].shards[2].has_room(4));
        assert!(!mesh.workers[1].shards[2].has_room(5));
    }

    #[test]
    fn outstanding_requests_are_counted_until_their_replies_are_taken() {
        let mut mesh = build_mesh(1, 1, 0, 2).unwrap();
        let token = crate::mesh::messages::RequestToken {
            connection: crate::mesh::messages::ConnectionId {
                slot: 0,
                generation: 0,
            },
            seq: 1,
        };
        let link = &mut mesh.workers[0].shards[0];
        link.send(ShardRequest {
            token,
            op: crate::shard::ShardOp::Purge(Vec::new()),
        });
        assert_eq!(link.outstanding(), 1);
        assert!(link.has_room(1) && !link.has_room(2));
        let endpoint = &mut mesh.shards[0][0];
        let request = endpoint.take_request().unwrap();
        endpoint.reply(ShardReply {
            token: request.token,
            outcome: crate::shard::ShardOutcome::Done,
        });
        assert!(mesh.workers[0].shards[0].take_reply().is_some());
        assert_eq!(mesh.workers[0].shards[0].outstanding(), 0);
    }
}
