//! One run: set up streams, topics and groups on an admin connection, start every actor on its
//! own connection, show progress, gather the results into a [`BenchReport`].
//!
//! Placement follows iggy-bench: stream `bench-stream-{i}` with topic `topic-1`; producer `i` and
//! pinned consumer `i` use stream `i % streams`; consumer group `j` lives on stream `j % streams`
//! and consumer `i` joins group `i % groups`.

use crate::actors::{
    run_consumer, run_producer, run_producing_consumer, ActorContext, ActorError, ConsumerMode,
    ConsumerPlan, GroupShared, ProducerPlan, RunClock,
};
use crate::args::{BenchConfig, Mode};
use crate::client::{ClientError, Connection, CODE_CONSUMER_GROUP_NAME_ALREADY_EXISTS};
use crate::constants::{PROGRESS_REFRESH_MS, STREAM_NAME_PREFIX, TOPIC_NAME};
use crate::payload::{Verifier, VerifyReport};
use crate::report::BenchReport;
use crate::stats::ActorStats;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("setup: {0}")]
    Setup(#[from] ClientError),
    #[error(
        "stream '{0}' or its topic '{TOPIC_NAME}' does not exist; run a producer benchmark first"
    )]
    MissingStream(String),
    #[error("{actor}: {source}")]
    Actor { actor: String, source: ActorError },
    #[error("actor task failed: {0}")]
    Join(String),
}

/// A stream of the run as set up on the server.
#[derive(Debug, Clone, Copy)]
struct StreamSetup {
    stream_id: u32,
    topic_id: u32,
    /// Messages already in the topic when the run started (consumer-only modes use it).
    messages_count: u64,
}

fn stream_name(i: u32) -> String {
    format!("{STREAM_NAME_PREFIX}{i}")
}

/// Creates (or, for consumer-only modes and `--reuse-streams`, finds) the streams.
async fn setup_streams(
    admin: &mut Connection,
    config: &BenchConfig,
) -> Result<Vec<StreamSetup>, RunError> {
    let mut out = Vec::with_capacity(config.streams as usize);
    for i in 0..config.streams {
        let name = stream_name(i);
        let creates = config.mode.creates_streams();
        if !creates || config.reuse_streams {
            if let Some(t) = admin.find_topic(&name, TOPIC_NAME).await? {
                out.push(StreamSetup {
                    stream_id: t.stream_id,
                    topic_id: t.topic_id,
                    messages_count: t.messages_count,
                });
                continue;
            }
            if !creates {
                return Err(RunError::MissingStream(name));
            }
        } else {
            admin.delete_stream(&name).await?;
        }
        let stream_id = admin.create_stream(&name).await?;
        let topic_id = admin
            .create_topic(
                stream_id,
                TOPIC_NAME,
                config.partitions,
                config.ack.durability_option(),
            )
            .await?;
        out.push(StreamSetup {
            stream_id,
            topic_id,
            messages_count: 0,
        });
    }
    Ok(out)
}

/// Creates (or finds) consumer group `j` on stream `j % streams`; returns the group ids.
async fn setup_groups(
    admin: &mut Connection,
    config: &BenchConfig,
    streams: &[StreamSetup],
) -> Result<Vec<u32>, RunError> {
    let mut ids = Vec::new();
    for j in 0..config.consumer_groups {
        let s = streams[(j % config.streams) as usize];
        let name = format!("cg-{j}");
        let id = match admin
            .create_consumer_group(s.stream_id, s.topic_id, &name)
            .await
        {
            Ok(id) => id,
            Err(e) if e.code() == Some(CODE_CONSUMER_GROUP_NAME_ALREADY_EXISTS) => admin
                .find_consumer_group(s.stream_id, s.topic_id, &name)
                .await?
                .ok_or(RunError::Setup(e))?,
            Err(e) => return Err(e.into()),
        };
        ids.push(id);
    }
    Ok(ids)
}

fn count_where(n: u32, modulo: u32, value: u32) -> u64 {
    (0..n).filter(|i| i % modulo == value).count() as u64
}

type ActorTask = tokio::task::JoinHandle<Result<ActorStats, (String, ActorError)>>;

/// Everything needed to start the actors, and what they leave behind for the report.
struct Launch {
    config: BenchConfig,
    ctx: ActorContext,
    streams: Vec<StreamSetup>,
    group_ids: Vec<u32>,
    /// Messages each producer sends (and a pinned consumer reads by default).
    per_actor: u64,
    /// The largest sequence a producer can have written (bounds the verifier's bitmaps).
    sequence_bound: u64,
    /// Producers of this run send while consumers read (end-to-end latency is meaningful).
    concurrent_producers: bool,
    tasks: Vec<ActorTask>,
    /// Set once every actor is connected and logged in: they all start together, so no
    /// actor's figures hold the logins of the actors after it (a login's password hash runs on
    /// the server's network worker that other actors' requests share).
    start: tokio::sync::watch::Sender<bool>,
    verifiers: Vec<Arc<Mutex<Verifier>>>,
    groups: Vec<Arc<GroupShared>>,
    progress_total: u64,
    connector: Connector,
}

impl Launch {
    /// Spawns an actor that waits for the common start.
    fn spawn_actor(
        &mut self,
        name: String,
        actor: impl std::future::Future<Output = Result<ActorStats, ActorError>> + Send + 'static,
    ) {
        let mut start = self.start.subscribe();
        self.tasks.push(tokio::spawn(async move {
            // An Err means the sender is gone, which happens only once everything started.
            let _ = start.wait_for(|started| *started).await;
            actor.await.map_err(|e| (name, e))
        }));
    }

    async fn connect(&self) -> Result<Connection, RunError> {
        Ok(self.connector.connect(&self.config).await?)
    }

    fn stream_of(&self, index: u32) -> StreamSetup {
        self.streams[(index % self.config.streams) as usize]
    }

    fn new_verifier(&self, expected: u64) -> Option<Verifier> {
        self.config.verify.then(|| {
            Verifier::new(
                self.config.message_size_bytes,
                self.sequence_bound,
                expected,
            )
        })
    }

    async fn spawn_producing_consumers(&mut self) -> Result<(), RunError> {
        for id in 0..self.config.producers {
            let plan = producer_plan(&self.config, id, self.stream_of(id), Some(0));
            let verifier = self
                .new_verifier(self.per_actor)
                .map(|v| Arc::new(Mutex::new(v)));
            self.verifiers.extend(verifier.clone());
            let conn = self.connect().await?;
            let actor = run_producing_consumer(conn, plan, verifier, self.ctx.clone());
            self.spawn_actor(format!("producing consumer {id}"), actor);
            self.progress_total += 2 * self.per_actor;
        }
        Ok(())
    }

    async fn spawn_producers(&mut self) -> Result<(), RunError> {
        let pinned = matches!(
            self.config.mode,
            Mode::PinnedProducer | Mode::PinnedProducerAndConsumer
        );
        for id in 0..self.config.producers {
            let plan = producer_plan(&self.config, id, self.stream_of(id), pinned.then_some(0));
            let conn = self.connect().await?;
            let actor = run_producer(conn, plan, self.ctx.clone());
            self.spawn_actor(format!("producer {id}"), actor);
            self.progress_total += self.per_actor;
        }
        Ok(())
    }

    /// Messages the producers of this run send to stream `index`.
    fn produced_to(&self, index: u32) -> u64 {
        count_where(self.config.producers, self.config.streams, index) * self.per_actor
    }

    /// A pinned consumer reads its stream from offset 0.
    fn pinned_consumer(&mut self, id: u32) -> (ConsumerPlan, u64) {
        let s = self.stream_of(id);
        let expected = if self.concurrent_producers {
            self.produced_to(id % self.config.streams)
        } else {
            self.per_actor
        };
        let verifier = self.new_verifier(expected).map(|v| Arc::new(Mutex::new(v)));
        self.verifiers.extend(verifier.clone());
        let mode = ConsumerMode::Pinned {
            expected_messages: expected,
            verifier,
        };
        (
            ConsumerPlan {
                id,
                stream_id: s.stream_id,
                topic_id: s.topic_id,
                mode,
                end_to_end: self.concurrent_producers,
            },
            expected,
        )
    }

    /// A group member; the group's target is everything produced to its stream in this run, or
    /// (consumer-only run) `--message-batches` per member, as iggy-bench counts it.
    fn group_consumer(&mut self, id: u32) -> (ConsumerPlan, u64) {
        let c = &self.config;
        let group = id % c.consumer_groups;
        let stream_index = group % c.streams;
        let s = self.stream_of(stream_index);
        if self.groups.len() <= group as usize {
            let target = if self.concurrent_producers {
                self.produced_to(stream_index)
            } else {
                count_where(c.consumers, c.consumer_groups, group) * self.per_actor
            };
            let verifier = self.new_verifier(target).map(Mutex::new);
            self.groups.push(Arc::new(GroupShared {
                received: AtomicU64::new(0),
                target_messages: target,
                verifier,
            }));
        }
        let shared = self.groups[group as usize].clone();
        // The first member of each group carries the group's share of the progress bar.
        let expected = if id < c.consumer_groups {
            shared.target_messages
        } else {
            0
        };
        let mode = ConsumerMode::Group {
            group_id: self.group_ids[group as usize],
            shared,
        };
        (
            ConsumerPlan {
                id,
                stream_id: s.stream_id,
                topic_id: s.topic_id,
                mode,
                end_to_end: self.concurrent_producers,
            },
            expected,
        )
    }

    async fn spawn_consumers(&mut self) -> Result<(), RunError> {
        for id in 0..self.config.consumers {
            let (plan, expected) = if self.config.consumer_groups == 0 {
                self.pinned_consumer(id)
            } else {
                self.group_consumer(id)
            };
            let mut conn = self.connect().await?;
            if let ConsumerMode::Group { group_id, .. } = &plan.mode {
                conn.join_consumer_group(plan.stream_id, plan.topic_id, *group_id)
                    .await?;
            }
            let actor = run_consumer(conn, plan, self.ctx.clone());
            self.spawn_actor(format!("consumer {id}"), actor);
            self.progress_total += expected;
        }
        Ok(())
    }

    /// `None` without `--verify`, and in producer-only runs where nothing is read back.
    fn verify_report(&self) -> Option<VerifyReport> {
        let anything_read = !self.verifiers.is_empty() || !self.groups.is_empty();
        (self.config.verify && anything_read).then(|| {
            let mut total = VerifyReport::default();
            for v in &self.verifiers {
                total.merge(&v.lock().unwrap_or_else(|p| p.into_inner()).report());
            }
            for v in self.groups.iter().filter_map(|g| g.verifier.as_ref()) {
                total.merge(&v.lock().unwrap_or_else(|p| p.into_inner()).report());
            }
            total
        })
    }
}

/// Runs the benchmark described by `config` against the server.
///
/// # Errors
/// [`RunError`] when setup fails or any actor fails.
pub async fn run(config: BenchConfig) -> Result<BenchReport, RunError> {
    run_over(config, Connector::Tcp).await
}

/// How the run's connections are made.
#[derive(Clone)]
pub enum Connector {
    /// The kernel's TCP.
    Tcp,
    /// smoltcp over the memif client port (the actors run on its polling thread).
    #[cfg(feature = "dpdk")]
    Memif(crate::memif::MemifNet),
}

impl Connector {
    async fn connect(&self, config: &BenchConfig) -> Result<Connection, ClientError> {
        let (address, user, password) =
            (&config.server_address, &config.username, &config.password);
        match self {
            Connector::Tcp => Connection::connect(address, user, password).await,
            #[cfg(feature = "dpdk")]
            Connector::Memif(net) => Connection::connect_memif(net, address, user, password).await,
        }
    }
}

/// [`run`] over the given transport.
///
/// # Errors
/// As [`run`].
pub async fn run_over(config: BenchConfig, connector: Connector) -> Result<BenchReport, RunError> {
    let started_at_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut admin = connector.connect(&config).await?;
    let streams = setup_streams(&mut admin, &config).await?;
    let group_ids = setup_groups(&mut admin, &config, &streams).await?;
    let per_actor = config.message_batches * u64::from(config.messages_per_batch);
    let producing = matches!(
        config.mode,
        Mode::PinnedProducer
            | Mode::PinnedProducerAndConsumer
            | Mode::BalancedProducer
            | Mode::BalancedProducerAndConsumerGroup
    );
    let mut launch = Launch {
        ctx: ActorContext {
            clock: RunClock::new(),
            progress_messages: Arc::new(AtomicU64::new(0)),
            warmup_us: config.warmup_us,
            sampling_us: config.sampling_us,
            message_size_bytes: config.message_size_bytes,
            messages_per_batch: config.messages_per_batch,
            inflight: config.inflight,
        },
        sequence_bound: per_actor.max(streams.iter().map(|s| s.messages_count).max().unwrap_or(0)),
        concurrent_producers: producing && config.consumers > 0,
        streams,
        group_ids,
        per_actor,
        tasks: Vec::new(),
        start: tokio::sync::watch::channel(false).0,
        verifiers: Vec::new(),
        groups: Vec::new(),
        progress_total: 0,
        config,
        connector,
    };
    // Every actor connects and logs in first; then they all start at once.
    if launch.config.mode == Mode::EndToEndProducingConsumer {
        launch.spawn_producing_consumers().await?;
    }
    if producing {
        launch.spawn_producers().await?;
    }
    launch.spawn_consumers().await?;
    launch.start.send_replace(true);
    let tasks = std::mem::take(&mut launch.tasks);
    let actors = gather(tasks, &launch.ctx, launch.progress_total).await?;
    let verify = launch.verify_report();
    Ok(BenchReport::new(
        launch.config,
        started_at_unix_s,
        actors,
        verify,
    ))
}

fn producer_plan(
    config: &BenchConfig,
    id: u32,
    s: StreamSetup,
    partition_id: Option<u32>,
) -> ProducerPlan {
    let senders = u64::from(config.producers.max(1));
    ProducerPlan {
        id,
        stream_id: s.stream_id,
        topic_id: s.topic_id,
        partition_id,
        batches: config.message_batches,
        rate_bytes_per_sec: config
            .rate_limit_bytes_per_sec
            .map(|r| (r / senders).max(1)),
    }
}

/// Waits for every actor while a progress bar (on a terminal) follows the message count.
async fn gather(
    tasks: Vec<ActorTask>,
    ctx: &ActorContext,
    progress_total: u64,
) -> Result<Vec<ActorStats>, RunError> {
    let bar = indicatif::ProgressBar::new(progress_total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} messages ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let progress = ctx.progress_messages.clone();
    let ticker_bar = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            ticker_bar.set_position(progress.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(PROGRESS_REFRESH_MS)).await;
        }
    });
    let mut actors = Vec::with_capacity(tasks.len());
    let mut failure = None;
    for t in tasks {
        match t.await {
            Ok(Ok(stats)) => actors.push(stats),
            Ok(Err((actor, source))) => {
                failure.get_or_insert(RunError::Actor { actor, source });
            }
            Err(e) => {
                failure.get_or_insert(RunError::Join(e.to_string()));
            }
        }
    }
    ticker.abort();
    bar.set_position(ctx.progress_messages.load(Ordering::Relaxed));
    bar.finish_and_clear();
    match failure {
        Some(e) => Err(e),
        None => Ok(actors),
    }
}
