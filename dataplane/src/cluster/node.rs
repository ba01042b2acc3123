//! A cluster node's thread: the tokio runtime with the Raft node, the replication server, and the
//! loop that takes the network threads' requests (the metadata service's rings) and answers them
//! once Raft committed and applied what they asked.
//!
//! Writes go through the leader only. A follower answers them TransientNotAccepted (58), which the
//! Iggy SDK takes as "find the leader and ask again"; the leader answers TransientNotCommitted
//! (57) when it cannot take writes yet (just elected, still applying its predecessor's entries) or
//! a write is not committed within `cluster.write_timeout_ms`, which the SDK replays.

use super::log_store::LogStore;
use super::network::{read_frame, write_frame, Network, Peer, Reply, Request};
use super::shard_client::ShardClient;
use super::state_machine::{Checkpoint, Fetcher, Progress, StateMachine};
use super::types::{Command, NodeId, NodeInfo, Raft, Response, WireConsumer, WireKey};
use super::ClusterView;
use crate::mesh::lifecycle::Lifecycle;
use crate::mesh::messages::{MetadataReply, MetadataRequest};
use crate::mesh::ring::{MetadataEndpoint, ShardLink, Waker};
use crate::metadata::{
    Applied, CatalogView, ClusterAck, MetadataOp, MetadataOutcome, Produced, ReplicatedWrite,
};
use crate::shard::{PartitionDirectory, PollFrom, ShardOp, ShardOutcome};
use openraft::error::{ClientWriteError, RaftError};
use riptide_config::cluster::{
    secret_digest, AdminReply, AdminRequest, ClusterStatus, Greeting, GreetingReply, NodeStatus,
    PartitionStatus,
};
use riptide_config::Config;
use riptide_protocol::codes::ErrorCode;
use riptide_storage::metadata::{
    hash_password, Catalog, Change, Permissions, UserStatus, VerifiedLogins,
};
use riptide_storage::PartitionKey;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};

/// What a submitted write resolves to once committed and applied.
type Committed = <openraft::impls::OneshotResponder<super::types::TypeConfig> as openraft::raft::responder::Responder<super::types::TypeConfig>>::Receiver;

/// How often the roster, roles and follower lag are published.
const STATUS_INTERVAL: Duration = Duration::from_millis(250);
/// Entries per AppendEntries: with batches of up to a few MiB this stays below the frame limit.
const APPEND_ENTRIES_MAX: u64 = 32;
/// Longest an RPC to a peer may take (openraft's own timeouts are shorter for heartbeats).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the cluster thread is given at start-up.
pub struct NodeParts {
    pub config: Config,
    pub directory: Arc<PartitionDirectory>,
    pub catalog_view: Arc<CatalogView>,
    pub cluster_view: Arc<ClusterView>,
    pub lifecycle: Arc<Lifecycle>,
    /// The metadata rings from the network threads, and the eventfd they wake this thread on.
    pub endpoints: Vec<MetadataEndpoint>,
    pub requests_waker: Arc<Waker>,
    /// This thread's links to the shards and the eventfd the shards wake it on.
    pub shard_links: Vec<ShardLink>,
    pub replies_waker: Arc<Waker>,
    pub checkpoint: Checkpoint,
    pub catalog: Catalog,
}

/// Leader-side state of the write path: taken in order under one lock, so the offsets given to
/// batches follow the order they enter the log.
#[derive(Default)]
struct Leadership {
    term: u64,
    /// The index of the last entry when leadership began: everything up to it must be applied
    /// before this node gives out offsets.
    start_index: u64,
    ready: bool,
    /// Next offset to give per partition, past what is applied (batches in flight).
    assigned: HashMap<PartitionKey, u64>,
}

/// Shared by the tasks of the node.
struct Node {
    raft: Raft,
    id: NodeId,
    config: Config,
    catalog_view: Arc<CatalogView>,
    cluster_view: Arc<ClusterView>,
    progress: Arc<Progress>,
    log: LogStore,
    shards: ShardClient,
    directory: Arc<PartitionDirectory>,
    leadership: Mutex<Leadership>,
    logins: Arc<VerifiedLogins>,
    digest: [u8; 32],
    /// System snapshots are built one at a time (each holds up to an archive in memory).
    snapshot_turn: Mutex<()>,
}

/// Runs the node until the servers are told to stop.
pub fn run(parts: NodeParts) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot build the cluster thread's runtime");
            return;
        }
    };
    if let Err(error) = runtime.block_on(serve(parts)) {
        tracing::error!(%error, "cluster node stopped");
    }
}

async fn serve(parts: NodeParts) -> Result<(), String> {
    let NodeParts {
        config,
        directory,
        catalog_view,
        cluster_view,
        lifecycle,
        endpoints,
        requests_waker,
        shard_links,
        replies_waker,
        checkpoint,
        catalog,
    } = parts;
    let cluster = &config.cluster;
    let raft_dir = config.system.path.join("raft");
    let log = LogStore::open(&raft_dir).map_err(|e| format!("raft log: {e}"))?;
    let shards = ShardClient::new(shard_links);
    tokio::spawn(shards.clone().pump(replies_waker));
    let digest = secret_digest(&cluster.name, &cluster.secret);
    let progress = Arc::new(Progress::default());
    let state_machine = StateMachine::new(
        &raft_dir,
        checkpoint,
        catalog,
        shards.clone(),
        Arc::clone(&directory),
        config.storage.ack_floor,
        Arc::clone(&catalog_view),
        Arc::clone(&progress),
        Arc::new(SegmentFetcher { digest }),
    );
    let raft_config = openraft::Config {
        cluster_name: cluster.name.clone(),
        heartbeat_interval: cluster.heartbeat_interval_ms,
        election_timeout_min: cluster.election_timeout_min_ms,
        election_timeout_max: cluster.election_timeout_max_ms,
        max_payload_entries: APPEND_ENTRIES_MAX,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cluster.snapshot_every_entries),
        max_in_snapshot_log_to_keep: cluster.snapshot_every_entries,
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("raft configuration: {e}"))?;
    let raft = Raft::new(
        cluster.node_id,
        Arc::new(raft_config),
        Network { digest },
        log.clone(),
        state_machine,
    )
    .await
    .map_err(|e| format!("raft: {e}"))?;
    let logins = VerifiedLogins::new(Duration::from_secs(config.auth.verified_login_ttl_s))
        .map_err(|e| format!("login cache: {e}"))?;
    let node = Arc::new(Node {
        raft,
        id: cluster.node_id,
        config: config.clone(),
        catalog_view,
        cluster_view,
        progress,
        log,
        shards,
        directory,
        leadership: Mutex::new(Leadership::default()),
        logins: Arc::new(logins),
        digest,
        snapshot_turn: Mutex::new(()),
    });
    node.initialize_if_first().await?;
    let listener = TcpListener::bind(&cluster.replication_address)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} (cluster.replication_address): {e}",
                cluster.replication_address
            )
        })?;
    tokio::spawn(Arc::clone(&node).accept_peers(listener));
    tokio::spawn(Arc::clone(&node).watch());
    tracing::info!(node = node.id, address = %cluster.replication_address, "cluster node ready");
    node.serve_workers(endpoints, requests_waker, lifecycle)
        .await;
    if let Err(error) = node.raft.shutdown().await {
        tracing::warn!(%error, "raft did not shut down cleanly");
    }
    tracing::info!("cluster node stopped");
    Ok(())
}

/// The members the configuration names, as openraft's initial membership.
fn configured_members(config: &Config) -> BTreeMap<NodeId, NodeInfo> {
    config
        .cluster
        .members
        .iter()
        .map(|member| {
            (
                member.id,
                NodeInfo {
                    name: member.name.clone(),
                    replication_address: member.replication_address.clone(),
                    tcp_address: member.tcp_address.clone(),
                    http_address: member.http_address.clone(),
                },
            )
        })
        .collect()
}

impl Node {
    /// On a cluster's very first boot the member with the lowest id initialises it.
    async fn initialize_if_first(&self) -> Result<(), String> {
        let members = configured_members(&self.config);
        let lowest = members.keys().next().copied();
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| e.to_string())?;
        if initialized || lowest != Some(self.id) {
            return Ok(());
        }
        tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "initialising the cluster (first boot)");
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {
                Ok(())
            }
            Err(error) => Err(format!("initialising the cluster: {error}")),
        }
    }

    /// Takes the network threads' requests, one task each, and pushes the replies back.
    async fn serve_workers(
        self: &Arc<Self>,
        mut endpoints: Vec<MetadataEndpoint>,
        waker: Arc<Waker>,
        lifecycle: Arc<Lifecycle>,
    ) {
        let fd = match super::WatchedWaker::watch(waker) {
            Ok(fd) => fd,
            Err(error) => {
                tracing::error!(%error, "cannot watch the metadata rings' eventfd");
                return;
            }
        };
        let (reply_sender, mut replies) = mpsc::unbounded_channel::<(usize, MetadataReply)>();
        let mut in_flight = 0usize;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            for (worker, endpoint) in endpoints.iter_mut().enumerate() {
                while let Some(request) = endpoint.take_request() {
                    in_flight += 1;
                    let (node, sender) = (Arc::clone(self), reply_sender.clone());
                    tokio::spawn(async move {
                        let MetadataRequest { token, op } = request;
                        let outcome = node.execute(op).await;
                        let _ = sender.send((worker, MetadataReply { token, outcome }));
                    });
                }
            }
            if lifecycle.metadata_stopping() && in_flight == 0 {
                return;
            }
            tokio::select! {
                ready = fd.readable() => match ready {
                    Ok(mut guard) => {
                        guard.get_inner().drain();
                        guard.clear_ready();
                    }
                    Err(error) => {
                        tracing::error!(%error, "metadata eventfd failed");
                        return;
                    }
                },
                Some((worker, reply)) = replies.recv() => {
                    in_flight -= 1;
                    endpoints[worker].reply(reply);
                    endpoints[worker].wake_if_replied();
                }
                _ = tick.tick() => {}
            }
        }
    }

    async fn execute(self: &Arc<Self>, op: MetadataOp) -> MetadataOutcome {
        match op {
            MetadataOp::PasswordLogin { username, password } => {
                self.password_login(username, password).await
            }
            MetadataOp::Change(build) => self.change(build).await,
            MetadataOp::Replicate(write) => self.replicate(write).await,
            MetadataOp::Snapshot(job) => self.snapshot(job).await,
        }
    }

    /// File walks and compression run on a blocking thread: this thread keeps the heartbeats
    /// going meanwhile.
    async fn snapshot(&self, job: Box<crate::diagnostics::SnapshotJob>) -> MetadataOutcome {
        let _turn = self.snapshot_turn.lock().await;
        tokio::task::spawn_blocking(move || crate::metadata::snapshot_outcome(&job))
            .await
            .unwrap_or(MetadataOutcome::Failed(
                ErrorCode::SnapshotFileCompletionFailed,
            ))
    }

    /// argon2 runs on a blocking thread: this thread keeps the heartbeats going meanwhile.
    async fn password_login(&self, username: String, password: String) -> MetadataOutcome {
        let catalog = self.catalog_view.load();
        let Some(user) = catalog.user_by_username(&username).cloned() else {
            return MetadataOutcome::Failed(ErrorCode::InvalidCredentials);
        };
        let logins = Arc::clone(&self.logins);
        let verified = tokio::task::spawn_blocking(move || {
            logins.verify(user.id, &password, &user.password_hash)
        })
        .await
        .unwrap_or(false);
        if !verified {
            MetadataOutcome::Failed(ErrorCode::InvalidCredentials)
        } else if user.status != UserStatus::Active {
            MetadataOutcome::Failed(ErrorCode::UserInactive)
        } else {
            MetadataOutcome::LoggedIn { user_id: user.id }
        }
    }

    /// A metadata change: built against the applied catalog and proposed while holding the write
    /// lock, so two changes never allocate the same id.
    async fn change(self: &Arc<Self>, build: crate::metadata::ChangeBuilder) -> MetadataOutcome {
        let mut leadership = self.leadership.lock().await;
        if !leadership.ready {
            return not_writable(&self.cluster_view);
        }
        let catalog = self.catalog_view.load();
        let (change, produced) = match build(&catalog) {
            Ok(built) => built,
            Err(code) => return MetadataOutcome::Failed(code),
        };
        let receiver = match self.raft.client_write_ff(Command::Change(change)).await {
            Ok(receiver) => receiver,
            Err(_) => return MetadataOutcome::Failed(ErrorCode::TransientNotAccepted),
        };
        // Later changes are built against this one's result: wait for it under the lock.
        let response = self.await_commit(receiver, &mut leadership).await;
        match response {
            Ok(Response::Refused(code)) => MetadataOutcome::Failed(error_code(code)),
            Ok(_) => MetadataOutcome::Applied(Applied {
                produced,
                catalog: self.catalog_view.load(),
                // The state machine did the partition work, on every node.
                effects: Vec::new(),
            }),
            Err(code) => MetadataOutcome::Failed(code),
        }
    }

    async fn replicate(self: &Arc<Self>, write: ReplicatedWrite) -> MetadataOutcome {
        let mut leadership = self.leadership.lock().await;
        if !leadership.ready {
            return not_writable(&self.cluster_view);
        }
        let leader_ack = matches!(
            write,
            ReplicatedWrite::Append {
                ack: ClusterAck::Leader,
                ..
            }
        );
        let command = match self.command_for(write, &mut leadership) {
            Ok(command) => command,
            Err(code) => return MetadataOutcome::Failed(code),
        };
        let purges = matches!(command, Command::Purge { .. });
        let flushed_here = match &command {
            Command::Append {
                key,
                base_offset,
                messages,
                ..
            } if leader_ack => Some((
                *key,
                *base_offset,
                *messages,
                self.log.notify_when_flushed(*key, *base_offset),
            )),
            _ => None,
        };
        let receiver = match self.raft.client_write_ff(command).await {
            Ok(receiver) => receiver,
            Err(_) => {
                if let Some((key, base_offset, ..)) = flushed_here {
                    self.log.forget(key, base_offset);
                }
                return MetadataOutcome::Failed(ErrorCode::TransientNotAccepted);
            }
        };
        if purges {
            // A purge restarts its partitions at offset 0: later batches wait for it.
            return replicated_outcome(self.await_commit(receiver, &mut leadership).await);
        }
        // Submitted in order: the lock may go while the entry commits.
        drop(leadership);
        if let Some((key, base_offset, messages, flushed)) = flushed_here {
            // `persisted`: acknowledged once this node's log holds it on stable storage.
            let timeout = Duration::from_millis(self.config.cluster.write_timeout_ms);
            if let Ok(Ok(())) = tokio::time::timeout(timeout, flushed).await {
                return MetadataOutcome::Replicated(ShardOutcome::Appended {
                    base_offset,
                    last_offset: base_offset + u64::from(messages) - 1,
                });
            }
            // Not flushed here in time (or the leadership went first): the commit decides.
            self.log.forget(key, base_offset);
        }
        replicated_outcome(self.await_commit_unlocked(receiver).await)
    }

    /// The command a write becomes; a batch gets the next offsets of its partition.
    fn command_for(
        &self,
        write: ReplicatedWrite,
        leadership: &mut Leadership,
    ) -> Result<Command, ErrorCode> {
        Ok(match write {
            ReplicatedWrite::Append {
                key,
                batch,
                messages,
                ack: _,
            } => {
                let next = match leadership.assigned.get(&key) {
                    Some(next) => *next,
                    None => *self
                        .progress
                        .next_offsets()
                        .get(&key)
                        .ok_or(ErrorCode::PartitionNotFound)?,
                };
                leadership.assigned.insert(key, next + u64::from(messages));
                Command::Append {
                    key: WireKey::from(key),
                    base_offset: next,
                    timestamp_us: crate::clock::now_us(),
                    messages,
                    batch,
                }
            }
            ReplicatedWrite::StoreOffset {
                key,
                consumer,
                offset,
            } => Command::StoreOffset {
                key: key.into(),
                consumer: WireConsumer::from(consumer),
                offset,
            },
            ReplicatedWrite::DeleteOffset { key, consumer } => Command::DeleteOffset {
                key: key.into(),
                consumer: WireConsumer::from(consumer),
            },
            ReplicatedWrite::Purge { keys } => Command::Purge {
                keys: keys.into_iter().map(WireKey::from).collect(),
            },
            ReplicatedWrite::DeleteSegments { key, count } => Command::DeleteSegments {
                key: key.into(),
                count,
            },
        })
    }

    /// Waits for a submitted entry, with the write lock held (metadata changes).
    async fn await_commit(
        &self,
        receiver: Committed,
        leadership: &mut Leadership,
    ) -> Result<Response, ErrorCode> {
        let result = self.await_commit_unlocked(receiver).await;
        match result {
            // Applied in order: everything before this entry is applied too, so the state
            // machine's offsets are current again, and a partition this entry deleted,
            // recreated or purged must not keep the offsets given out before it.
            Ok(_) => leadership.assigned.clear(),
            // Not known to be applied: no offsets until the log up to here is.
            Err(_) => {
                leadership.ready = false;
                leadership.start_index = self.raft.metrics().borrow().last_log_index.unwrap_or(0);
            }
        }
        result
    }

    async fn await_commit_unlocked(&self, receiver: Committed) -> Result<Response, ErrorCode> {
        let timeout = Duration::from_millis(self.config.cluster.write_timeout_ms);
        match tokio::time::timeout(timeout, receiver).await {
            Err(_) => Err(ErrorCode::TransientNotCommitted),
            Ok(Err(_)) => Err(ErrorCode::TransientNotCommitted),
            Ok(Ok(Ok(response))) => Ok(response.data),
            Ok(Ok(Err(ClientWriteError::ForwardToLeader(_)))) => {
                Err(ErrorCode::TransientNotAccepted)
            }
            Ok(Ok(Err(ClientWriteError::ChangeMembershipError(_)))) => Err(ErrorCode::Error),
        }
    }

    /// Follows openraft's metrics: publishes who leads and the roster, and makes this node
    /// writable once, as leader, it applied everything before its term.
    async fn watch(self: Arc<Self>) {
        let mut metrics = self.raft.metrics();
        let mut tick = tokio::time::interval(STATUS_INTERVAL);
        loop {
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return; },
                _ = tick.tick() => {}
            }
            let snapshot = metrics.borrow().clone();
            let writable = self.update_leadership(&snapshot).await;
            let status = self.status_of(&snapshot);
            self.cluster_view.publish(status, writable);
        }
    }

    async fn update_leadership(
        self: &Arc<Self>,
        metrics: &openraft::RaftMetrics<NodeId, NodeInfo>,
    ) -> bool {
        let mut leadership = self.leadership.lock().await;
        if !self.leads(metrics) {
            leadership.ready = false;
            leadership.term = 0;
            return false;
        }
        if leadership.term != metrics.current_term {
            *leadership = Leadership {
                term: metrics.current_term,
                start_index: metrics.last_log_index.unwrap_or(0),
                ready: false,
                assigned: HashMap::new(),
            };
            tracing::info!(term = metrics.current_term, "this node leads the cluster");
        }
        if !leadership.ready
            && self.progress.applied_index.load(Ordering::Acquire) >= leadership.start_index
        {
            leadership.ready = true;
            leadership.assigned.clear();
            drop(leadership);
            self.create_root_user_if_missing().await;
            return true;
        }
        leadership.ready
    }

    /// Whether this node leads with a quorum behind it now: a restarted node that voted for
    /// itself, or a leader cut off from the majority, believes it leads for a while; neither
    /// takes writes nor is named leader.
    fn leads(&self, metrics: &openraft::RaftMetrics<NodeId, NodeInfo>) -> bool {
        metrics.current_leader == Some(self.id)
            && metrics.state == openraft::ServerState::Leader
            && metrics
                .millis_since_quorum_ack
                .is_some_and(|ms| ms < self.config.cluster.election_timeout_max_ms)
    }

    /// The root user is created through the log, by the first leader, on every node alike.
    async fn create_root_user_if_missing(self: &Arc<Self>) {
        if !self.catalog_view.load().users().is_empty() {
            return;
        }
        let root = self.config.root.clone();
        let hashed = tokio::task::spawn_blocking(move || hash_password(&root.password)).await;
        let Ok(Ok(password_hash)) = hashed else {
            tracing::error!("cannot hash the root password");
            return;
        };
        let username = self.config.root.username.clone();
        let outcome = self
            .change(Box::new(move |catalog: &Catalog| {
                if !catalog.users().is_empty() {
                    return Err(ErrorCode::UserAlreadyExists);
                }
                let change = Change::CreateUser {
                    user_id: 0,
                    username,
                    password_hash,
                    status: UserStatus::Active,
                    permissions: Some(Permissions::root()),
                    created_at_us: crate::clock::now_us(),
                };
                Ok((change, Produced::Nothing))
            }))
            .await;
        if let MetadataOutcome::Applied(_) = outcome {
            tracing::info!(username = %self.config.root.username, "created the root user (first boot of the cluster)");
        }
    }

    fn status_of(&self, metrics: &openraft::RaftMetrics<NodeId, NodeInfo>) -> ClusterStatus {
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last_index = metrics.last_log_index.unwrap_or(0);
        let nodes = membership
            .nodes()
            .map(|(id, node)| {
                let matched = metrics.replication.as_ref().map(|replication| {
                    replication
                        .get(id)
                        .copied()
                        .flatten()
                        .map_or(0, |l| l.index)
                });
                let (lag_messages, lag_bytes) = match matched {
                    Some(index) => {
                        let (messages, bytes) = self.log.data_after(index);
                        (Some(messages), Some(bytes))
                    }
                    None => (None, None),
                };
                NodeStatus {
                    id: *id,
                    name: node.name.clone(),
                    replication_address: node.replication_address.clone(),
                    tcp_address: node.tcp_address.clone(),
                    http_address: node.http_address.clone(),
                    voter: voters.contains(id),
                    lag_entries: matched.map(|index| last_index.saturating_sub(index)),
                    lag_messages,
                    lag_bytes,
                }
            })
            .collect();
        // A leader without a quorum behind it does not name itself (clients go elsewhere).
        let leader = metrics
            .current_leader
            .filter(|leader| *leader != self.id || self.leads(metrics));
        let mut partitions: Vec<PartitionStatus> = self
            .progress
            .next_offsets()
            .iter()
            .map(|(key, next_offset)| PartitionStatus {
                stream_id: key.stream_id,
                topic_id: key.topic_id,
                partition_id: key.partition_id,
                leader,
                next_offset: *next_offset,
            })
            .collect();
        partitions.sort_by_key(|p| (p.stream_id, p.topic_id, p.partition_id));
        ClusterStatus {
            node_id: self.id,
            term: metrics.current_term,
            leader,
            last_log_index: last_index,
            applied_index: metrics.last_applied.map_or(0, |id| id.index),
            nodes,
            partitions,
        }
    }

    async fn accept_peers(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let node = Arc::clone(&self);
                    tokio::spawn(async move {
                        if let Err(error) = node.serve_peer(stream).await {
                            tracing::debug!(%peer, %error, "replication connection closed");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "replication accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn serve_peer(self: Arc<Self>, mut stream: TcpStream) -> std::io::Result<()> {
        let admin = match read_frame::<Greeting>(&mut stream).await? {
            Greeting::Peer { secret_digest } if secret_digest == self.digest => false,
            Greeting::Admin { secret_digest } if secret_digest == self.digest => true,
            _ => {
                let refused = GreetingReply::Refused("wrong cluster secret".into());
                return write_frame(&mut stream, &refused).await;
            }
        };
        write_frame(&mut stream, &GreetingReply::Welcome).await?;
        loop {
            if admin {
                let request: AdminRequest = read_frame(&mut stream).await?;
                let reply = self.admin(request).await;
                write_frame(&mut stream, &reply).await?;
            } else {
                let request: Request = read_frame(&mut stream).await?;
                let reply = self.answer_peer(request).await;
                write_frame(&mut stream, &reply).await?;
            }
        }
    }

    async fn answer_peer(self: &Arc<Self>, request: Request) -> Reply {
        match request {
            Request::AppendEntries(rpc) => {
                Reply::AppendEntries(self.raft.append_entries(rpc).await)
            }
            Request::Vote(rpc) => Reply::Vote(self.raft.vote(rpc).await),
            Request::InstallSnapshot(rpc) => {
                *self
                    .progress
                    .snapshot_source
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(rpc.vote.leader_id.node_id);
                Reply::InstallSnapshot(self.raft.install_snapshot(rpc).await)
            }
            Request::Fetch {
                key,
                from_offset,
                messages_max,
            } => Reply::Records(self.records(key.into(), from_offset, messages_max).await),
        }
    }

    /// Stored records of a partition, for a follower catching up.
    async fn records(
        &self,
        key: PartitionKey,
        from_offset: u64,
        messages_max: u32,
    ) -> Result<serde_bytes::ByteBuf, String> {
        let op = ShardOp::Poll {
            key,
            from: PollFrom::Offset(from_offset),
            count: messages_max,
            auto_commit: None,
        };
        match self.shards.call(self.directory.shard_for(key), op).await {
            ShardOutcome::Polled(result) => Ok(serde_bytes::ByteBuf::from(
                result
                    .chunks
                    .iter()
                    .flat_map(|chunk| chunk.iter().copied())
                    .collect::<Vec<u8>>(),
            )),
            ShardOutcome::Failed(code) => Err(format!("error {}", code.as_u32())),
            other => Err(format!("unexpected outcome {other:?}")),
        }
    }

    /// The operator's requests: the status anywhere, membership changes on the leader only,
    /// through openraft's joint consensus.
    async fn admin(&self, request: AdminRequest) -> AdminReply {
        let change = match request {
            AdminRequest::Status => {
                return AdminReply::Status(self.cluster_view.status().as_ref().clone())
            }
            AdminRequest::AddNode { .. } | AdminRequest::RemoveNode { .. }
                if !self.cluster_view.is_leader() =>
            {
                let status = self.cluster_view.status();
                return AdminReply::NotLeader {
                    leader: status.leader,
                    replication_address: status
                        .leader_node()
                        .map(|node| node.replication_address.clone()),
                };
            }
            change => change,
        };
        let metrics = self.raft.metrics().borrow().clone();
        let mut voters: BTreeSet<NodeId> =
            metrics.membership_config.membership().voter_ids().collect();
        match change {
            AdminRequest::AddNode { id, node } => {
                tracing::info!(id, %node, "adding a node: learner first, voter once caught up");
                if let Err(error) = self.raft.add_learner(id, node, true).await {
                    return AdminReply::Failed(format!("adding node {id} as a learner: {error}"));
                }
                voters.insert(id);
            }
            AdminRequest::RemoveNode { id } => {
                tracing::info!(id, "removing a node");
                if !voters.remove(&id)
                    && !metrics
                        .membership_config
                        .membership()
                        .nodes()
                        .any(|(n, _)| *n == id)
                {
                    return AdminReply::Failed(format!("node {id} is not a member"));
                }
            }
            AdminRequest::Status => unreachable!("answered above"),
        }
        match self.raft.change_membership(voters, false).await {
            Ok(_) => AdminReply::Done,
            Err(error) => AdminReply::Failed(format!("changing the membership: {error}")),
        }
    }
}

/// What a committed (or failed) data write answers.
fn replicated_outcome(response: Result<Response, ErrorCode>) -> MetadataOutcome {
    match response {
        Ok(Response::Appended {
            base_offset,
            last_offset,
        }) => MetadataOutcome::Replicated(ShardOutcome::Appended {
            base_offset,
            last_offset,
        }),
        Ok(Response::Done) => MetadataOutcome::Replicated(ShardOutcome::Done),
        Ok(Response::Refused(code)) => MetadataOutcome::Failed(error_code(code)),
        Err(code) => MetadataOutcome::Failed(code),
    }
}

fn not_writable(view: &ClusterView) -> MetadataOutcome {
    if view.is_leader() {
        // Elected, still applying what the previous leader committed: the SDK replays.
        MetadataOutcome::Failed(ErrorCode::TransientNotCommitted)
    } else {
        // The SDK asks for the leader and goes there.
        MetadataOutcome::Failed(ErrorCode::TransientNotAccepted)
    }
}

fn error_code(code: u32) -> ErrorCode {
    ErrorCode::from_u32(code).unwrap_or(ErrorCode::Error)
}

/// Catch-up reads from a peer's segments over the replication protocol.
struct SegmentFetcher {
    digest: [u8; 32],
}

impl Fetcher for SegmentFetcher {
    async fn fetch(
        &self,
        from: &NodeInfo,
        key: PartitionKey,
        from_offset: u64,
        messages_max: u32,
    ) -> Result<Vec<u8>, String> {
        let mut peer = Peer::new(from.replication_address.clone(), self.digest);
        let request = Request::Fetch {
            key: WireKey::from(key),
            from_offset,
            messages_max,
        };
        match peer.call(&request, ADMIN_TIMEOUT).await {
            Ok(Reply::Records(records)) => records.map(serde_bytes::ByteBuf::into_vec),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(error) => Err(format!("fetching from {}: {error}", from.name)),
        }
    }
}
