//! Buffers that large SendMessages batches are received into. A storage shard hands a batch's
//! buffer back once the batch has left its memory (written and evicted from the tail cache), and
//! the network workers receive the next large batches into it: a 1 MB batch then costs neither an
//! allocation, nor zeroing a fresh megabyte, nor the page faults of fresh memory (together about a
//! tenth of the server's CPU per batch before this pool existed).

use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Buffers held at most.
pub const POOLED_BUFFERS_MAX: usize = 128;
/// Bytes (buffer capacities) held at most, so an idle server does not keep a burst's buffers.
pub const POOLED_BYTES_MAX: usize = 128 * 1024 * 1024;
/// Smaller buffers are not kept: small batches are copied out of the input buffer instead.
pub const POOLED_BUFFER_MIN_BYTES: usize = 64 * 1024;

pub struct BatchBufferPool {
    buffers: ArrayQueue<Vec<u8>>,
    pooled_bytes: AtomicUsize,
}

impl Default for BatchBufferPool {
    fn default() -> Self {
        BatchBufferPool {
            buffers: ArrayQueue::new(POOLED_BUFFERS_MAX),
            pooled_bytes: AtomicUsize::new(0),
        }
    }
}

impl BatchBufferPool {
    /// A buffer of exactly `len` bytes for the caller to overwrite completely: a pooled buffer's
    /// old contents are left in place (only growth past its old length is zeroed).
    pub fn take(&self, len: usize) -> Vec<u8> {
        if let Some(mut buffer) = self.buffers.pop() {
            self.pooled_bytes
                .fetch_sub(buffer.capacity(), Ordering::Relaxed);
            if buffer.capacity() >= len {
                buffer.resize(len, 0);
                return buffer;
            }
        }
        vec![0; len]
    }

    /// Keeps `buffer` for a later batch while the pool has room; frees it otherwise.
    pub fn give_back(&self, buffer: Vec<u8>) {
        let bytes = buffer.capacity();
        if bytes < POOLED_BUFFER_MIN_BYTES {
            return;
        }
        let reserved =
            self.pooled_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |pooled| {
                    (pooled + bytes <= POOLED_BYTES_MAX).then_some(pooled + bytes)
                });
        if reserved.is_ok() && self.buffers.push(buffer).is_err() {
            self.pooled_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    impl BatchBufferPool {
        fn pooled_bytes(&self) -> usize {
            self.pooled_bytes.load(Ordering::Relaxed)
        }
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
