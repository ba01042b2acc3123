//! The loop of a storage shard thread: requests from every network thread's ring into the
//! shard's executor, outcomes back onto the reply rings, buffers back to the pool.

use super::batch_buffers::BatchBufferPool;
use super::lifecycle::Lifecycle;
use super::messages::{RequestToken, ShardReply, ShardRequest};
use super::ring::ShardEndpoint;
use crate::shard::{ShardCore, ShardOutcome};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Longest a shard sleeps when idle: bounds how late shutdown and retention are noticed.
const SHARD_IDLE_WAIT_MS: u64 = 100;
/// Requests taken from one network thread's ring per turn, so one busy thread cannot starve
/// the others.
const REQUESTS_PER_RING_TURN_MAX: usize = 256;

/// With `dpdk.shard_nap_us`, a shard naps for this long after its last request; then it blocks
/// until woken.
pub const SHARD_AWAKE_AFTER_REQUEST_MS: u64 = 50;

/// How a shard waits when its rings are empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleWait {
    /// Block until woken (a wake is a write(2) by the network thread).
    Block,
    /// For `awake_for` after its last request, wait at most `nap` at a time without asking to
    /// be woken: the network threads (DPDK polling lcores) push requests without a system call,
    /// and the shard's own timed waits carry the cost, off their hot path. Then block as above.
    Nap { nap: Duration, awake_for: Duration },
}

/// Where an outcome goes: the ring of network thread `worker`, for `token`.
type Origin = (usize, RequestToken);

pub struct ShardThread<'a> {
    core: ShardCore<Origin>,
    /// The eventfd the network threads write to wake this shard.
    waker: std::sync::Arc<super::ring::Waker>,
    idle_wait: IdleWait,
    /// When the last request was taken.
    last_request: Instant,
    endpoints: Vec<ShardEndpoint>,
    lifecycle: &'a Lifecycle,
    pool: &'a BatchBufferPool,
    /// Requests refused with storage backpressure, retried before new ones are taken.
    deferred: VecDeque<(usize, ShardRequest)>,
    outcomes: Vec<(Origin, ShardOutcome)>,
    recycled: Vec<Vec<u8>>,
}

impl<'a> ShardThread<'a> {
    pub fn new(
        core: ShardCore<Origin>,
        waker: std::sync::Arc<super::ring::Waker>,
        idle_wait: IdleWait,
        endpoints: Vec<ShardEndpoint>,
        lifecycle: &'a Lifecycle,
        pool: &'a BatchBufferPool,
    ) -> ShardThread<'a> {
        ShardThread {
            core,
            waker,
            idle_wait,
            last_request: Instant::now(),
            endpoints,
            lifecycle,
            pool,
            deferred: VecDeque::new(),
            outcomes: Vec::new(),
            recycled: Vec::new(),
        }
    }

    /// Runs until the servers are told to stop and every ring is drained; then syncs everything.
    pub fn run(mut self, counters: &crate::shard::counters::ShardCounters) {
        self.waker.reader_running();
        loop {
            let took_work = self.take_requests();
            counters.request_ring_depth.store(
                self.endpoints
                    .iter()
                    .map(ShardEndpoint::queued)
                    .sum::<usize>() as u64,
                Ordering::Relaxed,
            );
            let nap = match self.idle_wait {
                IdleWait::Nap { nap, awake_for } if self.last_request.elapsed() < awake_for => {
                    Some(nap)
                }
                _ => None,
            };
            if took_work {
                self.last_request = Instant::now();
                self.core.wait(Duration::ZERO);
            } else if let Some(nap) = nap {
                self.core.wait(nap);
            } else {
                self.waker.reader_blocking();
                // A request pushed before the flag was set was not woken for: look once more.
                if !self.requests_waiting() {
                    self.core.wait(Duration::from_millis(SHARD_IDLE_WAIT_MS));
                }
                self.waker.reader_running();
            }
            self.core.poll(Instant::now(), crate::clock::now_us());
            self.deliver_outcomes();
            self.return_batch_buffers();
            if self.lifecycle.shards_stopping()
                && !took_work
                && self.core.is_idle()
                && self.deferred.is_empty()
            {
                break;
            }
        }
        self.core.shutdown();
    }

    fn requests_waiting(&self) -> bool {
        self.endpoints.iter().any(|endpoint| endpoint.queued() > 0)
    }

    /// Starts deferred requests first, then new ones; true when anything was started (a request
    /// that has to wait again is not progress, so the loop then sleeps until a completion).
    fn take_requests(&mut self) -> bool {
        let mut took = false;
        while let Some((worker, request)) = self.deferred.pop_front() {
            if let Err(request) = self.start(worker, request) {
                self.deferred.push_front((worker, request));
                return took;
            }
            took = true;
        }
        for worker in 0..self.endpoints.len() {
            for _ in 0..REQUESTS_PER_RING_TURN_MAX {
                let Some(request) = self.endpoints[worker].take_request() else {
                    break;
                };
                took = true;
                if let Err(request) = self.start(worker, request) {
                    self.deferred.push_back((worker, request));
                    return took;
                }
            }
        }
        took
    }

    fn start(&mut self, worker: usize, request: ShardRequest) -> Result<(), ShardRequest> {
        let token = request.token;
        self.core
            .start((worker, token), request.op, crate::clock::now_us())
            .map_err(|op| ShardRequest { token, op })
    }

    fn deliver_outcomes(&mut self) {
        self.core.take_outcomes(&mut self.outcomes);
        for ((worker, token), outcome) in self.outcomes.drain(..) {
            self.endpoints[worker].reply(ShardReply { token, outcome });
        }
        for endpoint in &mut self.endpoints {
            endpoint.wake_if_replied();
        }
    }

    /// Hands the buffers of batches that left storage memory to the network threads, which
    /// receive the next large batches into them.
    fn return_batch_buffers(&mut self) {
        self.core.take_recycled(&mut self.recycled);
        for buffer in self.recycled.drain(..) {
            self.pool.give_back(buffer);
        }
    }
}
