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

/// Where an outcome goes: the ring of network thread `worker`, for `token`.
type Origin = (usize, RequestToken);

pub struct ShardThread<'a> {
    core: ShardCore<Origin>,
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
        endpoints: Vec<ShardEndpoint>,
        lifecycle: &'a Lifecycle,
        pool: &'a BatchBufferPool,
    ) -> ShardThread<'a> {
        ShardThread {
            core,
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
        loop {
            let took_work = self.take_requests();
            counters.request_ring_depth.store(
                self.endpoints
                    .iter()
                    .map(ShardEndpoint::queued)
                    .sum::<usize>() as u64,
                Ordering::Relaxed,
            );
            let timeout = if took_work {
                Duration::ZERO
            } else {
                Duration::from_millis(SHARD_IDLE_WAIT_MS)
            };
            self.core.wait(timeout);
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
