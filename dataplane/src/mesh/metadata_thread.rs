//! The loop of the metadata service's thread: requests from every network thread's ring, one at
//! a time (each change is durable before the next starts), replies back. System snapshots, which
//! walk files and compress for as long as they need, go to a short-lived helper thread, one at a
//! time; their replies come back through this loop.

use super::lifecycle::Lifecycle;
use super::messages::{MetadataReply, RequestToken};
use super::ring::{MetadataEndpoint, Waker};
use crate::diagnostics::SnapshotJob;
use crate::metadata::{snapshot_outcome, MetadataOp, MetadataOutcome, MetadataService};
use riptide_protocol::codes::ErrorCode;
use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// Longest the service sleeps when idle: bounds how late a stop is noticed.
const METADATA_IDLE_WAIT_MS: u64 = 100;

/// Serves requests until the servers are told to stop and no request is left.
pub fn run(
    mut service: MetadataService,
    mut endpoints: Vec<MetadataEndpoint>,
    waker: &Arc<Waker>,
    lifecycle: &Lifecycle,
) {
    let mut snapshots = SnapshotHelper::new(Arc::clone(waker));
    loop {
        let mut served = false;
        for (worker, endpoint) in endpoints.iter_mut().enumerate() {
            while let Some(request) = endpoint.take_request() {
                match request.op {
                    MetadataOp::Snapshot(job) => snapshots.submit(worker, request.token, job),
                    op => endpoint.reply(MetadataReply {
                        token: request.token,
                        outcome: service.execute(op),
                    }),
                }
                served = true;
            }
        }
        while let Some((worker, reply)) = snapshots.take_finished() {
            endpoints[worker].reply(reply);
            served = true;
        }
        for endpoint in &mut endpoints {
            endpoint.wake_if_replied();
        }
        if served {
            continue;
        }
        if lifecycle.metadata_stopping() && snapshots.idle() {
            break;
        }
        waker.wait(Duration::from_millis(METADATA_IDLE_WAIT_MS));
    }
    tracing::info!("metadata service stopped");
}

/// Snapshots waiting and the one being built, on a thread of its own that wakes this loop when
/// the archive is ready.
struct SnapshotHelper {
    waiting: VecDeque<(usize, RequestToken, Box<SnapshotJob>)>,
    building: bool,
    finished_sender: Sender<(usize, MetadataReply)>,
    finished: Receiver<(usize, MetadataReply)>,
    waker: Arc<Waker>,
}

impl SnapshotHelper {
    fn new(waker: Arc<Waker>) -> SnapshotHelper {
        let (finished_sender, finished) = channel();
        SnapshotHelper {
            waiting: VecDeque::new(),
            building: false,
            finished_sender,
            finished,
            waker,
        }
    }

    fn submit(&mut self, worker: usize, token: RequestToken, job: Box<SnapshotJob>) {
        self.waiting.push_back((worker, token, job));
        self.start_next();
    }

    /// Starts the next waiting snapshot unless one is being built. One at a time: each holds
    /// up to an archive's worth of memory.
    fn start_next(&mut self) {
        if self.building {
            return;
        }
        let Some((worker, token, job)) = self.waiting.pop_front() else {
            return;
        };
        let sender = self.finished_sender.clone();
        let waker = Arc::clone(&self.waker);
        let spawned = std::thread::Builder::new()
            .name("riptide-snapshot".to_string())
            .spawn(move || {
                let outcome = snapshot_outcome(&job);
                let _ = sender.send((worker, MetadataReply { token, outcome }));
                waker.wake();
            });
        match spawned {
            Ok(_) => self.building = true,
            Err(error) => {
                tracing::error!(%error, "cannot start the snapshot thread");
                let outcome = MetadataOutcome::Failed(ErrorCode::SnapshotFileCompletionFailed);
                let _ = self
                    .finished_sender
                    .send((worker, MetadataReply { token, outcome }));
            }
        }
    }

    /// A finished snapshot's reply, if any; the next waiting one starts.
    fn take_finished(&mut self) -> Option<(usize, MetadataReply)> {
        let finished = self.finished.try_recv().ok()?;
        self.building = false;
        self.start_next();
        Some(finished)
    }

    fn idle(&self) -> bool {
        !self.building && self.waiting.is_empty()
    }
}
