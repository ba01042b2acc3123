//! The rings between network workers and storage shards, and the eventfds that wake their loops.
//!
//! One bounded single-producer single-consumer ring (`rtrb`) per (worker, shard) pair and
//! direction. A worker never has more than the ring's capacity of requests outstanding at one
//! shard, so the reply ring (same capacity) can never be full when a shard pushes a reply.

use crate::shard::{ShardReply, ShardRequest};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// An eventfd that one thread writes to wake another thread's io_uring loop, which keeps a poll
/// armed on it and then drains it. Non-blocking, so a drain after a spurious or repeated poll
/// completion can never block the loop.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
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

    /// Adds one to the counter, completing the reader's pending poll.
    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live stack buffer to an fd this struct owns.
        let written = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if written != 8 {
            // Only EAGAIN on a counter near 2^64 could get here; the reader is awake anyway.
            tracing::debug!(error = %std::io::Error::last_os_error(), "eventfd wake not written");
        }
    }
}

/// The worker's end of its link to one shard.
pub struct ShardLink {
    pub requests: rtrb::Producer<ShardRequest>,
    pub replies: rtrb::Consumer<ShardReply>,
    pub shard_waker: Arc<Waker>,
    /// Requests sent and not yet answered; kept below the ring capacity (see module docs).
    pub outstanding: usize,
    pub capacity: usize,
}

impl ShardLink {
    /// Whether one more request may be sent now.
    pub fn has_room(&self) -> bool {
        self.outstanding < self.capacity && self.requests.slots() > 0
    }
}

/// The shard's end of its link to one worker.
pub struct WorkerShardRings {
    pub requests: rtrb::Consumer<ShardRequest>,
    pub replies: rtrb::Producer<ShardReply>,
    pub worker_waker: Arc<Waker>,
}

/// Every ring and waker between the network workers and the storage shards.
pub struct Mesh {
    /// `links[w][s]`: worker `w`'s end of its link to shard `s`.
    pub links: Vec<Vec<ShardLink>>,
    /// `rings[s][w]`: shard `s`'s end of its link to worker `w`.
    pub rings: Vec<Vec<WorkerShardRings>>,
    pub worker_wakers: Vec<Arc<Waker>>,
    pub shard_wakers: Vec<Arc<Waker>>,
}

/// Builds the full mesh of rings between `workers` and `shards`.
///
/// # Errors
/// An eventfd could not be created.
pub fn build_mesh(workers: usize, shards: usize, capacity: usize) -> std::io::Result<Mesh> {
    let worker_wakers: Vec<Arc<Waker>> = (0..workers)
        .map(|_| Waker::new().map(Arc::new))
        .collect::<Result<_, _>>()?;
    let shard_wakers: Vec<Arc<Waker>> = (0..shards)
        .map(|_| Waker::new().map(Arc::new))
        .collect::<Result<_, _>>()?;
    let mut links: Vec<Vec<ShardLink>> = (0..workers).map(|_| Vec::with_capacity(shards)).collect();
    let mut rings: Vec<Vec<WorkerShardRings>> =
        (0..shards).map(|_| Vec::with_capacity(workers)).collect();
    for (worker, worker_links) in links.iter_mut().enumerate() {
        for (shard, shard_rings) in rings.iter_mut().enumerate() {
            let (request_producer, request_consumer) = rtrb::RingBuffer::new(capacity);
            let (reply_producer, reply_consumer) = rtrb::RingBuffer::new(capacity);
            worker_links.push(ShardLink {
                requests: request_producer,
                replies: reply_consumer,
                shard_waker: Arc::clone(&shard_wakers[shard]),
                outstanding: 0,
                capacity,
            });
            shard_rings.push(WorkerShardRings {
                requests: request_consumer,
                replies: reply_producer,
                worker_waker: Arc::clone(&worker_wakers[worker]),
            });
        }
    }
    Ok(Mesh {
        links,
        rings,
        worker_wakers,
        shard_wakers,
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
    fn mesh_links_every_worker_to_every_shard() {
        let mesh = build_mesh(2, 3, 4).unwrap();
        assert_eq!((mesh.links.len(), mesh.links[0].len()), (2, 3));
        assert_eq!((mesh.rings.len(), mesh.rings[0].len()), (3, 2));
        assert_eq!((mesh.worker_wakers.len(), mesh.shard_wakers.len()), (2, 3));
        assert!(mesh.links[1][2].has_room());
    }
}
