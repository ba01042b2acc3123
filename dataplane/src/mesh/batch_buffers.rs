//! Buffers that large SendMessages batches are received into. A storage shard hands a batch's
//! buffer back once the batch has left its memory (written and evicted from the read cache), and
//! the network workers receive the next large batches into it: a 1 MB batch then costs neither an
//! allocation, nor zeroing a fresh megabyte, nor the page faults of fresh memory (together about a
//! tenth of the server's CPU per batch before this pool existed).
//!
//! While the read cache is still filling nothing is evicted, so nothing comes back: then the
//! refill thread (`run_refill`, at the lowest scheduling priority) keeps a few buffers ready
//! whose pages it has already touched, so the page faults of fresh memory (12 % of all samples
//! while 4 producers filled the cache) fall on idle CPU instead of a network worker's hot path.

use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

/// Buffers held at most.
pub const POOLED_BUFFERS_MAX: usize = 128;
/// Bytes (buffer capacities) held at most, so an idle server does not keep a burst's buffers.
pub const POOLED_BYTES_MAX: usize = 128 * 1024 * 1024;
/// Smaller buffers are not kept: small batches are copied out of the input buffer instead.
pub const POOLED_BUFFER_MIN_BYTES: usize = 64 * 1024;
/// Bytes of ready buffers the refill thread keeps in the pool.
pub const PREFAULTED_BYTES_TARGET: usize = 32 * 1024 * 1024;
/// Largest buffer the refill thread prepares; larger batches get a fresh buffer of their own.
pub const PREFAULTED_BUFFER_MAX_BYTES: usize = 8 * 1024 * 1024;
/// How often a parked refill thread looks at the pool (and for shutdown) unwoken.
const REFILL_CHECK_INTERVAL: Duration = Duration::from_millis(100);

pub struct BatchBufferPool {
    buffers: ArrayQueue<Vec<u8>>,
    pooled_bytes: AtomicUsize,
    /// The largest batch a buffer was taken for (at most `PREFAULTED_BUFFER_MAX_BYTES`): the
    /// size the refill thread prepares.
    largest_batch_bytes: AtomicUsize,
    refill_thread: OnceLock<Thread>,
}

impl Default for BatchBufferPool {
    fn default() -> Self {
        BatchBufferPool {
            buffers: ArrayQueue::new(POOLED_BUFFERS_MAX),
            pooled_bytes: AtomicUsize::new(0),
            largest_batch_bytes: AtomicUsize::new(0),
            refill_thread: OnceLock::new(),
        }
    }
}

impl BatchBufferPool {
    /// A buffer of exactly `len` bytes for the caller to overwrite completely: a pooled buffer's
    /// old contents are left in place (only growth past its old length is zeroed).
    pub fn take(&self, len: usize) -> Vec<u8> {
        self.largest_batch_bytes
            .fetch_max(len.min(PREFAULTED_BUFFER_MAX_BYTES), Ordering::Relaxed);
        let pooled = self.buffers.pop();
        if let Some(buffer) = &pooled {
            self.pooled_bytes
                .fetch_sub(buffer.capacity(), Ordering::Relaxed);
        }
        if self.pooled_bytes.load(Ordering::Relaxed) < PREFAULTED_BYTES_TARGET / 2 {
            if let Some(refill) = self.refill_thread.get() {
                refill.unpark();
            }
        }
        match pooled {
            Some(mut buffer) if buffer.capacity() >= len => {
                buffer.resize(len, 0);
                buffer
            }
            _ => vec![0; len],
        }
    }

    /// Keeps `buffer` for a later batch while the pool has room (true); frees it otherwise.
    pub fn give_back(&self, buffer: Vec<u8>) -> bool {
        let bytes = buffer.capacity();
        if bytes < POOLED_BUFFER_MIN_BYTES {
            return false;
        }
        let reserved =
            self.pooled_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |pooled| {
                    (pooled + bytes <= POOLED_BYTES_MAX).then_some(pooled + bytes)
                });
        if reserved.is_err() {
            return false;
        }
        if self.buffers.push(buffer).is_err() {
            self.pooled_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The refill thread's loop: keeps [`PREFAULTED_BYTES_TARGET`] of buffers of the largest
    /// batch size seen in the pool, with every page already touched, until `stop()`. Sleeps
    /// while the pool is full enough; `take` wakes it when the pool runs low.
    pub fn run_refill(&self, stop: impl Fn() -> bool) {
        let _ = self.refill_thread.set(std::thread::current());
        while !stop() {
            self.refill_once();
            std::thread::park_timeout(REFILL_CHECK_INTERVAL);
        }
    }

    /// Adds touched buffers until the pool holds the target or refuses one.
    fn refill_once(&self) {
        let size = self.largest_batch_bytes.load(Ordering::Relaxed);
        if size < POOLED_BUFFER_MIN_BYTES {
            return;
        }
        while self.pooled_bytes.load(Ordering::Relaxed) + size <= PREFAULTED_BYTES_TARGET {
            // Writing every byte maps every page now, on this thread. Not `vec![0; size]`: calloc
            // hands out untouched pages, whose faults would then hit the network worker.
            #[allow(clippy::slow_vector_initialization)]
            let buffer = {
                let mut buffer = Vec::with_capacity(size);
                buffer.resize(size, 0);
                buffer
            };
            if !self.give_back(buffer) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Instant;

    const MIB: usize = 1024 * 1024;

    impl BatchBufferPool {
        fn pooled_bytes(&self) -> usize {
            self.pooled_bytes.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn the_refill_thread_keeps_touched_buffers_of_the_largest_batch_size_ready() {
        let pool = Arc::new(BatchBufferPool::default());
        let stop = Arc::new(AtomicBool::new(false));
        let refill = {
            let (pool, stop) = (Arc::clone(&pool), Arc::clone(&stop));
            std::thread::spawn(move || pool.run_refill(|| stop.load(Ordering::Relaxed)))
        };
        assert_eq!(
            pool.pooled_bytes(),
            0,
            "nothing to prepare before a batch was seen"
        );
        drop(pool.take(MIB));
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.pooled_bytes() < PREFAULTED_BYTES_TARGET {
            assert!(
                Instant::now() < deadline,
                "{} bytes ready",
                pool.pooled_bytes()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            pool.pooled_bytes(),
            PREFAULTED_BYTES_TARGET,
            "no more than the target"
        );
        let ready = pool.take(MIB);
        assert_eq!((ready.len(), ready.capacity()), (MIB, MIB));
        stop.store(true, Ordering::Relaxed);
        refill.join().expect("refill thread");
    }

    #[test]
    fn a_returned_buffer_is_reused_without_reallocating() {
        let pool = BatchBufferPool::default();
        let mut first = pool.take(MIB);
        first.fill(7);
        let address = first.as_ptr();
        pool.give_back(first);
        assert_eq!(pool.pooled_bytes(), MIB);
        let again = pool.take(MIB - 10);
        assert_eq!(again.as_ptr(), address, "the same allocation comes back");
        assert_eq!(again.len(), MIB - 10);
        assert_eq!(pool.pooled_bytes(), 0);
    }

    #[test]
    fn growth_within_capacity_is_zeroed_and_a_too_small_buffer_is_replaced() {
        let pool = BatchBufferPool::default();
        let mut buffer = Vec::with_capacity(2 * MIB);
        buffer.resize(MIB, 9);
        pool.give_back(buffer);
        let grown = pool.take(MIB + 100);
        assert!(grown[MIB..].iter().all(|b| *b == 0));
        assert!(grown[..MIB].iter().all(|b| *b == 9));
        pool.give_back(grown);
        let bigger = pool.take(3 * MIB);
        assert_eq!(bigger.len(), 3 * MIB);
        assert_eq!(
            pool.pooled_bytes(),
            0,
            "the small buffer was dropped, not kept"
        );
    }

    #[test]
    fn the_pool_keeps_neither_small_buffers_nor_more_than_its_byte_limit() {
        let pool = BatchBufferPool::default();
        pool.give_back(vec![0; POOLED_BUFFER_MIN_BYTES - 1]);
        assert_eq!(pool.pooled_bytes(), 0);
        let per_buffer = 16 * MIB;
        for _ in 0..POOLED_BYTES_MAX / per_buffer + 3 {
            pool.give_back(vec![0; per_buffer]);
        }
        assert_eq!(pool.pooled_bytes(), POOLED_BYTES_MAX);
        for _ in 0..POOLED_BUFFERS_MAX + 5 {
            pool.take(0);
        }
        assert_eq!(pool.pooled_bytes(), 0);
        for _ in 0..POOLED_BUFFERS_MAX + 5 {
            pool.give_back(vec![0; POOLED_BUFFER_MIN_BYTES]);
        }
        assert_eq!(
            pool.pooled_bytes(),
            POOLED_BUFFERS_MAX * POOLED_BUFFER_MIN_BYTES
        );
    }
}
