//! The three kinds of actor, one tokio task and one connection each: producer, consumer (pinned
//! by offset or member of a consumer group) and producing consumer (end-to-end mode).
//!
//! Each actor measures into its own [`Recorder`]; only the progress counter and, for consumer
//! groups, the group's received count and verifier are shared.

use crate::client::{poll_body, ClientError, Connection};
use crate::constants::{CONSUMER_IDLE_TIMEOUT_MS, EMPTY_POLL_BACKOFF_MS, REQUEST_TIMEOUT_MS};
use crate::payload::{self, Received, Verifier};
use crate::stats::{ActorKind, ActorStats, Recorder};
use riptide_protocol::batch::{BatchBuilder, BatchHeader, Frames};
use riptide_protocol::codes::CommandCode;
use riptide_protocol::constants::{BATCH_HEADER_SIZE_BYTES, POLL_REPLY_PREFIX_SIZE_BYTES};
use riptide_protocol::request::{Identifier, Partitioning, SendMessages};
use riptide_protocol::wire::{WireConsumer, WireIdentifier, WirePollingStrategy};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The run's clock: microseconds since the run started, shared by every actor so that send times
/// embedded in payloads can be compared with receipt times.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    start: Instant,
}

impl RunClock {
    pub fn new() -> RunClock {
        RunClock {
            start: Instant::now(),
        }
    }

    pub fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

impl Default for RunClock {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0} timed out waiting for a reply after {1} ms")]
    Timeout(&'static str, u64),
    #[error("malformed poll reply: {0}")]
    PollReply(&'static str),
    #[error("cannot build a batch: {0}")]
    Batch(String),
    #[error("{source} ({done} of {total} {unit} done)")]
    Progress {
        source: Box<ActorError>,
        done: u64,
        total: u64,
        unit: &'static str,
    },
}

impl ActorError {
    /// Adds how far the actor got, so a stall can be located in the server's statistics.
    fn at(self, done: u64, total: u64, unit: &'static str) -> ActorError {
        ActorError::Progress {
            source: Box::new(self),
            done,
            total,
            unit,
        }
    }
}

/// What every actor shares with the runner.
#[derive(Debug, Clone)]
pub struct ActorContext {
    pub clock: RunClock,
    pub progress_messages: Arc<AtomicU64>,
    pub warmup_us: u64,
    pub sampling_us: u64,
    pub message_size_bytes: u32,
    pub messages_per_batch: u32,
    pub inflight: u32,
}

async fn with_timeout<T>(
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ActorError> {
    tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), f)
        .await
        .map_err(|_| ActorError::Timeout(what, REQUEST_TIMEOUT_MS))?
        .map_err(ActorError::from)
}

/// Spaces requests so an actor stays under its share of `--rate-limit`.
#[derive(Debug)]
pub struct Pacer {
    bytes_per_sec: Option<u64>,
    start: Instant,
    bytes: u64,
}

impl Pacer {
    pub fn new(bytes_per_sec: Option<u64>) -> Pacer {
        Pacer {
            bytes_per_sec,
            start: Instant::now(),
            bytes: 0,
        }
    }

    /// How long to wait before sending `next_bytes` more (zero when under the rate).
    pub fn delay(&mut self, next_bytes: u64) -> Duration {
        let Some(rate) = self.bytes_per_sec else {
            return Duration::ZERO;
        };
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        self.bytes += next_bytes;
        due.saturating_sub(self.start.elapsed())
    }
}

/// Where and how much a producer sends.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    pub id: u32,
    pub stream_id: u32,
    pub topic_id: u32,
    /// `None` = balanced partitioning, `Some(p)` = partition p.
    pub partition_id: Option<u32>,
    pub batches: u64,
    pub rate_bytes_per_sec: Option<u64>,
}

/// Builds batch `batch` of a producer: message `m` carries sequence `batch * per_batch + m`.
pub fn build_batch<'a>(
    builder: &'a mut BatchBuilder,
    scratch: &mut [u8],
    producer: u32,
    batch: u64,
    per_batch: u32,
    send_time_us: u64,
) -> Result<&'a [u8], ActorError> {
    builder.clear();
    let origin_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    for m in 0..u64::from(per_batch) {
        let sequence = batch * u64::from(per_batch) + m;
        payload::fill(scratch, producer, sequence, send_time_us);
        let id = (u128::from(producer) + 1) << 64 | u128::from(sequence);
        builder
            .push(id, scratch, &[], origin_us)
            .map_err(|e| ActorError::Batch(format!("{e:?}")))?;
    }
    builder
        .finish()
        .map_err(|e| ActorError::Batch(format!("{e:?}")))
}

/// Sends `plan.batches` batches, keeping up to `inflight` unacknowledged.
///
/// # Errors
/// [`ActorError`] when a send is refused or the connection fails.
pub async fn run_producer(
    mut conn: Connection,
    plan: ProducerPlan,
    ctx: ActorContext,
) -> Result<ActorStats, ActorError> {
    let per_batch = ctx.messages_per_batch;
    let payload_bytes = u64::from(ctx.message_size_bytes) * u64::from(per_batch);
    let mut builder = BatchBuilder::with_capacity(
        per_batch as usize,
        (payload_bytes + 48 * u64::from(per_batch)) as usize,
    );
    let mut scratch = vec![0u8; ctx.message_size_bytes as usize];
    let mut prefix = Vec::new();
    let partitioning = plan
        .partition_id
        .map_or(Partitioning::Balanced, Partitioning::PartitionId);
    SendMessages::emit_prefix(
        Identifier::Numeric(plan.stream_id),
        Identifier::Numeric(plan.topic_id),
        partitioning,
        per_batch,
        &mut prefix,
    );
    let mut recorder = Recorder::new(ctx.warmup_us);
    let mut pacer = Pacer::new(plan.rate_bytes_per_sec);
    let mut pending: VecDeque<u64> = VecDeque::with_capacity(ctx.inflight as usize);
    if plan.batches > 0 {
        build_batch(
            &mut builder,
            &mut scratch,
            plan.id,
            0,
            per_batch,
            ctx.clock.now_us(),
        )?;
    }
    for batch in 0..plan.batches {
        let delay = pacer.delay(payload_bytes);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // A request's latency runs from its send to its reply, as iggy-bench measures it: the
        // batch was built beforehand.
        let start_us = ctx.clock.now_us();
        let bytes = builder.finished_bytes();
        with_timeout(
            "send",
            conn.send_request(CommandCode::SendMessages, &prefix, bytes),
        )
        .await?;
        pending.push_back(start_us);
        if batch + 1 < plan.batches {
            // Build the next batch while the server works on this one (it stays unsent, so
            // requests in flight stay at most `inflight`).
            let build_us = ctx.clock.now_us();
            build_batch(
                &mut builder,
                &mut scratch,
                plan.id,
                batch + 1,
                per_batch,
                build_us,
            )?;
        }
        if pending.len() >= ctx.inflight as usize {
            let started = pending.pop_front().unwrap_or(start_us);
            let acked = batch + 1 - ctx.inflight as u64;
            with_timeout("send", conn.read_reply(CommandCode::SendMessages))
                .await
                .map_err(|e| e.at(acked, plan.batches, "batches acknowledged"))?;
            recorder.record(started, ctx.clock.now_us(), per_batch, payload_bytes);
            ctx.progress_messages
                .fetch_add(u64::from(per_batch), Ordering::Relaxed);
        }
    }
    while let Some(started) = pending.pop_front() {
        let acked = plan.batches - pending.len() as u64 - 1;
        with_timeout("send", conn.read_reply(CommandCode::SendMessages))
            .await
            .map_err(|e| e.at(acked, plan.batches, "batches acknowledged"))?;
        recorder.record(started, ctx.clock.now_us(), per_batch, payload_bytes);
        ctx.progress_messages
            .fetch_add(u64::from(per_batch), Ordering::Relaxed);
    }
    Ok(recorder.finish(ActorKind::Producer, plan.id, ctx.sampling_us))
}

/// What one poll reply held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOutcome {
    pub messages: u32,
    pub payload_bytes: u64,
    pub last_offset: Option<u64>,
}

/// Walks a poll reply (`[partition u32][current_offset u64][count u32]` + stored records),
/// verifying each message when a verifier is given and recording end-to-end latency when asked.
///
/// # Errors
/// [`ActorError::PollReply`] when the records do not tile the reply.
pub fn process_poll_reply(
    body: &[u8],
    stream_id: u32,
    mut verifier: Option<&mut Verifier>,
    e2e: Option<(&mut Recorder, u64)>,
) -> Result<PollOutcome, ActorError> {
    if let Some(v) = verifier.as_deref_mut() {
        v.begin_reply();
    }
    let prefix = body
        .get(..POLL_REPLY_PREFIX_SIZE_BYTES)
        .ok_or(ActorError::PollReply("shorter than its prefix"))?;
    let partition_id = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let mut rest = &body[POLL_REPLY_PREFIX_SIZE_BYTES..];
    let mut out = PollOutcome::default();
    let (mut e2e_recorder, now_us) = match e2e {
        Some((r, now)) => (Some(r), now),
        None => (None, 0),
    };
    while !rest.is_empty() {
        let header = BatchHeader::new_checked(rest)
            .map_err(|_| ActorError::PollReply("bad batch header"))?;
        let len = usize::try_from(header.batch_length_bytes())
            .ok()
            .filter(|l| (BATCH_HEADER_SIZE_BYTES..=rest.len()).contains(l))
            .ok_or(ActorError::PollReply("batch length out of range"))?;
        let (record, tail) = rest.split_at(len);
        rest = tail;
        let base_offset = header.base_offset();
        let mut count = 0u32;
        for frame in Frames::over(&record[BATCH_HEADER_SIZE_BYTES..]) {
            count += 1;
            let payload = frame.payload_ref();
            out.payload_bytes += payload.len() as u64;
            let offset = base_offset + u64::from(frame.offset_delta());
            out.last_offset = Some(offset);
            if let Some(v) = verifier.as_deref_mut() {
                let checksum_ok = frame.checksum() == frame.computed_checksum();
                v.check(Received {
                    stream_id,
                    partition_id,
                    offset,
                    checksum_ok,
                    payload,
                });
            }
            if let (Some(r), Some(h)) = (e2e_recorder.as_deref_mut(), payload::read_header(payload))
            {
                r.record_end_to_end(h.send_time_us, now_us);
            }
        }
        if count != header.message_count() {
            return Err(ActorError::PollReply(
                "frames do not match the batch's message count",
            ));
        }
        out.messages += count;
    }
    Ok(out)
}

/// How a consumer reads.
#[derive(Debug, Clone)]
pub enum ConsumerMode {
    /// Its own consumer id, partition 0, explicit offsets from 0.
    Pinned {
        expected_messages: u64,
        verifier: Option<Arc<Mutex<Verifier>>>,
    },
    /// A member of a consumer group, `Next` with auto-commit; stops when the group has received
    /// its target.
    Group {
        group_id: u32,
        shared: Arc<GroupShared>,
    },
}

/// State shared by the members of one consumer group.
#[derive(Debug)]
pub struct GroupShared {
    pub received: AtomicU64,
    pub target_messages: u64,
    pub verifier: Option<Mutex<Verifier>>,
}

#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    pub id: u32,
    pub stream_id: u32,
    pub topic_id: u32,
    pub mode: ConsumerMode,
    /// Record end-to-end latency (only meaningful while producers of this run are sending).
    pub end_to_end: bool,
}

/// Polls until the plan's messages are in (or nothing new arrives for the idle timeout).
///
/// # Errors
/// [`ActorError`] when a poll is refused, a reply is malformed or the connection fails.
pub async fn run_consumer(
    mut conn: Connection,
    plan: ConsumerPlan,
    ctx: ActorContext,
) -> Result<ActorStats, ActorError> {
    let mut recorder = Recorder::new(ctx.warmup_us);
    match plan.mode.clone() {
        ConsumerMode::Pinned {
            expected_messages,
            verifier,
        } => {
            consume_pinned(
                &mut conn,
                &plan,
                &ctx,
                &mut recorder,
                expected_messages,
                verifier,
            )
            .await?;
        }
        ConsumerMode::Group { group_id, shared } => {
            consume_group(&mut conn, &plan, &ctx, &mut recorder, group_id, &shared).await?;
        }
    }
    Ok(recorder.finish(ActorKind::Consumer, plan.id, ctx.sampling_us))
}

/// Handles one reply: verification, end-to-end latency, recording, progress.
fn take_reply(
    body: &[u8],
    plan: &ConsumerPlan,
    ctx: &ActorContext,
    recorder: &mut Recorder,
    verifier: Option<&Mutex<Verifier>>,
    started_us: u64,
) -> Result<PollOutcome, ActorError> {
    let now_us = ctx.clock.now_us();
    let mut guard = verifier.map(|v| v.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let e2e = plan.end_to_end.then_some((&mut *recorder, now_us));
    let outcome = process_poll_reply(body, plan.stream_id, guard.as_deref_mut(), e2e)?;
    drop(guard);
    if outcome.messages > 0 {
        recorder.record(started_us, now_us, outcome.messages, outcome.payload_bytes);
        ctx.progress_messages
            .fetch_add(u64::from(outcome.messages), Ordering::Relaxed);
    }
    Ok(outcome)
}

async fn consume_pinned(
    conn: &mut Connection,
    plan: &ConsumerPlan,
    ctx: &ActorContext,
    recorder: &mut Recorder,
    expected: u64,
    verifier: Option<Arc<Mutex<Verifier>>>,
) -> Result<(), ActorError> {
    let consumer = WireConsumer::consumer(WireIdentifier::numeric(plan.id + 1));
    let per_poll = u64::from(ctx.messages_per_batch);
    let (mut received, mut requested) = (0u64, 0u64);
    let mut pending: VecDeque<(u64, u64)> = VecDeque::new(); // (start_us, count requested)
    let mut last_progress = Instant::now();
    while received < expected {
        while pending.len() < ctx.inflight as usize && requested < expected {
            let count = per_poll.min(expected - requested);
            let body = poll_body(
                consumer.clone(),
                plan.stream_id,
                plan.topic_id,
                Some(0),
                WirePollingStrategy::offset(requested),
                count as u32,
                false,
            );
            with_timeout(
                "poll",
                conn.send_request(CommandCode::PollMessages, &body, &[]),
            )
            .await?;
            pending.push_back((ctx.clock.now_us(), count));
            requested += count;
        }
        let Some((started_us, count)) = pending.pop_front() else {
            break;
        };
        let body = with_timeout("poll", conn.read_reply(CommandCode::PollMessages))
            .await
            .map_err(|e| e.at(received, expected, "messages received"))?;
        let outcome = take_reply(body, plan, ctx, recorder, verifier.as_deref(), started_us)?;
        received += u64::from(outcome.messages);
        if outcome.messages > 0 {
            last_progress = Instant::now();
        }
        if u64::from(outcome.messages) < count {
            // A short read (the producers are behind): the polls behind it asked for offsets that
            // may not exist yet. Discard them and ask again from where this one stopped.
            while pending.pop_front().is_some() {
                with_timeout("poll", conn.read_reply(CommandCode::PollMessages)).await?;
            }
            requested = outcome
                .last_offset
                .map_or(received, |o| o + 1)
                .max(received);
            if outcome.messages == 0 {
                if last_progress.elapsed() > Duration::from_millis(CONSUMER_IDLE_TIMEOUT_MS) {
                    break; // the missing messages are reported as lost
                }
                tokio::time::sleep(Duration::from_millis(EMPTY_POLL_BACKOFF_MS)).await;
            }
        }
    }
    Ok(())
}

async fn consume_group(
    conn: &mut Connection,
    plan: &ConsumerPlan,
    ctx: &ActorContext,
    recorder: &mut Recorder,
    group_id: u32,
    shared: &GroupShared,
) -> Result<(), ActorError> {
    let consumer = WireConsumer::consumer_group(WireIdentifier::numeric(group_id));
    let body = poll_body(
        consumer,
        plan.stream_id,
        plan.topic_id,
        None,
        WirePollingStrategy::next(),
        ctx.messages_per_batch,
        true,
    );
    let mut pending: VecDeque<u64> = VecDeque::new();
    let mut last_progress = Instant::now();
    let done = |s: &GroupShared| s.received.load(Ordering::Relaxed) >= s.target_messages;
    while !done(shared) || !pending.is_empty() {
        while !done(shared) && pending.len() < ctx.inflight as usize {
            with_timeout(
                "poll",
                conn.send_request(CommandCode::PollMessages, &body, &[]),
            )
            .await?;
            pending.push_back(ctx.clock.now_us());
        }
        let Some(started_us) = pending.pop_front() else {
            break;
        };
        let reply = with_timeout("poll", conn.read_reply(CommandCode::PollMessages)).await?;
        let outcome = take_reply(
            reply,
            plan,
            ctx,
            recorder,
            shared.verifier.as_ref(),
            started_us,
        )?;
        shared
            .received
            .fetch_add(u64::from(outcome.messages), Ordering::Relaxed);
        if outcome.messages > 0 {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_millis(CONSUMER_IDLE_TIMEOUT_MS) {
            // Drain what is in flight, then give up: the shortfall is reported as lost.
            while pending.pop_front().is_some() {
                with_timeout("poll", conn.read_reply(CommandCode::PollMessages)).await?;
            }
            break;
        } else {
            tokio::time::sleep(Duration::from_millis(EMPTY_POLL_BACKOFF_MS)).await;
        }
    }
    Ok(())
}

/// End-to-end mode: send a batch to partition 0 of its own stream, then poll it back; the
/// request latency is the whole cycle, and every message's send-to-receipt time is recorded.
///
/// # Errors
/// [`ActorError`] as for producers and consumers.
pub async fn run_producing_consumer(
    mut conn: Connection,
    plan: ProducerPlan,
    verifier: Option<Arc<Mutex<Verifier>>>,
    ctx: ActorContext,
) -> Result<ActorStats, ActorError> {
    let per_batch = ctx.messages_per_batch;
    let payload_bytes = u64::from(ctx.message_size_bytes) * u64::from(per_batch);
    let mut builder = BatchBuilder::with_capacity(
        per_batch as usize,
        (payload_bytes + 48 * u64::from(per_batch)) as usize,
    );
    let mut scratch = vec![0u8; ctx.message_size_bytes as usize];
    let mut prefix = Vec::new();
    let partition = plan.partition_id.unwrap_or(0);
    SendMessages::emit_prefix(
        Identifier::Numeric(plan.stream_id),
        Identifier::Numeric(plan.topic_id),
        Partitioning::PartitionId(partition),
        per_batch,
        &mut prefix,
    );
    let consumer = WireConsumer::consumer(WireIdentifier::numeric(plan.id + 1));
    let mut recorder = Recorder::new(ctx.warmup_us);
    let mut pacer = Pacer::new(plan.rate_bytes_per_sec);
    let mut next_offset = 0u64;
    let consumer_plan = ConsumerPlan {
        id: plan.id,
        stream_id: plan.stream_id,
        topic_id: plan.topic_id,
        mode: ConsumerMode::Pinned {
            expected_messages: 0,
            verifier: None,
        },
        end_to_end: true,
    };
    // The cycle is recorded as one request; per-message end-to-end goes to the same recorder.
    let mut cycle = Recorder::new(ctx.warmup_us);
    'batches: for batch in 0..plan.batches {
        let delay = pacer.delay(payload_bytes);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let start_us = ctx.clock.now_us();
        let bytes = build_batch(
            &mut builder,
            &mut scratch,
            plan.id,
            batch,
            per_batch,
            start_us,
        )?;
        with_timeout(
            "send",
            conn.send_request(CommandCode::SendMessages, &prefix, bytes),
        )
        .await?;
        with_timeout("send", conn.read_reply(CommandCode::SendMessages)).await?;
        ctx.progress_messages
            .fetch_add(u64::from(per_batch), Ordering::Relaxed);
        let mut got = 0u32;
        let mut idle_since = Instant::now();
        while got < per_batch {
            let body = poll_body(
                consumer.clone(),
                plan.stream_id,
                plan.topic_id,
                Some(partition),
                WirePollingStrategy::offset(next_offset),
                per_batch - got,
                false,
            );
            with_timeout(
                "poll",
                conn.send_request(CommandCode::PollMessages, &body, &[]),
            )
            .await?;
            let reply = with_timeout("poll", conn.read_reply(CommandCode::PollMessages)).await?;
            let outcome = take_reply(
                reply,
                &consumer_plan,
                &ctx,
                &mut recorder,
                verifier.as_deref(),
                start_us,
            )?;
            got += outcome.messages;
            next_offset = outcome.last_offset.map_or(next_offset, |o| o + 1);
            if outcome.messages == 0 {
                if idle_since.elapsed() > Duration::from_millis(CONSUMER_IDLE_TIMEOUT_MS) {
                    break 'batches; // the missing messages are reported as lost
                }
                tokio::time::sleep(Duration::from_millis(EMPTY_POLL_BACKOFF_MS)).await;
            } else {
                idle_since = Instant::now();
            }
        }
        cycle.record(start_us, ctx.clock.now_us(), per_batch, payload_bytes);
    }
    Ok(merge_end_to_end(cycle, recorder).finish(
        ActorKind::ProducingConsumer,
        plan.id,
        ctx.sampling_us,
    ))
}

/// Keeps the cycle measurements of `cycle` and the per-message end-to-end figures of `e2e`.
fn merge_end_to_end(mut cycle: Recorder, e2e: Recorder) -> Recorder {
    cycle.take_end_to_end(e2e);
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_protocol::batch::{stamp, Batch};

    fn stamped_batch(
        producer: u32,
        batch: u64,
        per_batch: u32,
        size: usize,
        base_offset: u64,
    ) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        let mut scratch = vec![0u8; size];
        let mut bytes = build_batch(&mut builder, &mut scratch, producer, batch, per_batch, 10)
            .unwrap()
            .to_vec();
        stamp(&mut bytes, 0, base_offset, 1_000).unwrap();
        bytes
    }

    fn poll_reply(records: &[Vec<u8>]) -> Vec<u8> {
        let count: u32 = records
            .iter()
            .map(|r| BatchHeader::new_checked(&r[..]).unwrap().message_count())
            .sum();
        let mut body = riptide_protocol::reply::poll_reply_prefix(0, 99, count).to_vec();
        for r in records {
            body.extend_from_slice(r);
        }
        body
    }

    #[test]
    fn built_batches_are_valid_and_verifiable() {
        let mut builder = BatchBuilder::new();
        let mut scratch = vec![0u8; 100];
        let bytes = build_batch(&mut builder, &mut scratch, 2, 3, 5, 77)
            .unwrap()
            .to_vec();
        let batch = Batch::new_checked(&bytes).expect("the protocol crate accepts the batch");
        assert_eq!(batch.message_count(), 5);
        let first = batch.messages().next().unwrap();
        let h = payload::read_header(first.payload).unwrap();
        assert_eq!((h.producer, h.sequence, h.send_time_us), (2, 15, 77));
    }

    #[test]
    fn poll_reply_walk_verifies_and_counts() {
        let body = poll_reply(&[
            stamped_batch(0, 0, 10, 64, 0),
            stamped_batch(0, 1, 10, 64, 10),
        ]);
        let mut v = Verifier::new(64, 20, 20);
        let mut r = Recorder::new(0);
        let out = process_poll_reply(&body, 0, Some(&mut v), Some((&mut r, 500))).unwrap();
        assert_eq!(
            out,
            PollOutcome {
                messages: 20,
                payload_bytes: 20 * 64,
                last_offset: Some(19)
            }
        );
        assert!(v.report().passed(), "{:?}", v.report());
        let stats = r.finish(ActorKind::Consumer, 0, 10_000);
        assert_eq!(stats.end_to_end.unwrap().count, 20);
    }

    #[test]
    fn corrupted_poll_reply_is_caught() {
        let mut record = stamped_batch(0, 0, 10, 64, 0);
        let at = BATCH_HEADER_SIZE_BYTES + 48 + 40; // inside the first payload's filler
        record[at] ^= 0xff;
        let body = poll_reply(&[record]);
        let mut v = Verifier::new(64, 10, 10);
        process_poll_reply(&body, 0, Some(&mut v), None).unwrap();
        assert!(v.report().mismatches >= 1, "{:?}", v.report());
        assert!(v.report().examples.iter().any(|e| e.contains("Checksum")));
        // Truncation and garbage are errors, not panics.
        let mut cut = poll_reply(&[stamped_batch(0, 0, 10, 64, 0)]);
        cut.truncate(cut.len() - 5);
        assert!(process_poll_reply(&cut, 0, None, None).is_err());
        assert!(process_poll_reply(&[1, 2, 3], 0, None, None).is_err());
        let empty = riptide_protocol::reply::poll_reply_prefix(0, 0, 0);
        assert_eq!(
            process_poll_reply(&empty, 0, None, None).unwrap().messages,
            0
        );
    }

    #[test]
    fn pacer_spreads_bytes_over_time() {
        let mut p = Pacer::new(Some(1_000_000));
        assert_eq!(p.delay(500_000), Duration::ZERO);
        let d = p.delay(500_000);
        assert!(
            d > Duration::from_millis(400) && d <= Duration::from_millis(500),
            "{d:?}"
        );
        assert_eq!(Pacer::new(None).delay(u64::MAX), Duration::ZERO);
    }
}
