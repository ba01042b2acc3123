//! The worker core alone, on virtual time, with an in-memory fake shard and metadata service at
//! the far ends of its real rings. Each scenario runs twice, once with a driver that moves bytes
//! as the kernel driver does (64 KiB receives, large batches received straight into the core's
//! buffer, big writes) and once as the DPDK lcore does (socket-window-sized receives and sends,
//! never the direct batch buffer): the core both drivers share must behave the same under both.

mod common;

use bytes::Bytes;
use common::raw::{
    batch, code, command, login_body, numeric_identifier, operation, operation_for_code, poll_body,
    send_messages_body, u32_at, Partitioning, RequestHeader,
};
use riptide_config::Config;
use riptide_dataplane::mesh::messages::{ConnectionId, MetadataReply, ShardReply};
use riptide_dataplane::mesh::ring::{build_mesh, MetadataEndpoint, ShardEndpoint};
use riptide_dataplane::metadata::{CatalogView, MetadataOp, MetadataOutcome};
use riptide_dataplane::session::shared::{lock, Shared};
use riptide_dataplane::session::{Refused, WorkerContext, WorkerCore};
use riptide_dataplane::shard::{PartitionDirectory, ShardOp, ShardOutcome};
use riptide_protocol::constants::{HEADER_SIZE_BYTES, SERVER_PROTOCOL_VERSION};
use riptide_storage::metadata::{
    Catalog, Change, Partition, Permissions, TopicOptions, UserStatus,
};
use riptide_storage::ReadResult;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STREAM: u32 = 0;
const TOPIC: u32 = 0;
const GROUP: u32 = 0;
const PARTITIONS: u32 = 2;
const JOIN_CONSUMER_GROUP: u32 = 604;
const GET_SNAPSHOT_FILE: u32 = 11;
/// Marks an eviction among the replies.
const EVICTED: u32 = 0xE000_0000;
/// Turns a scenario may take before it is considered stuck.
const TURNS_MAX: usize = 10_000;

/// How a driver moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// The kernel driver: 64 KiB receives, the direct batch buffer, 64 iovecs per write.
    Kernel,
    /// The DPDK lcore: smoltcp socket windows both ways, no direct batch buffer.
    Smoltcp,
}

impl Style {
    fn receive_chunk_bytes(self) -> usize {
        match self {
            Style::Kernel => 64 * 1024,
            Style::Smoltcp => 16 * 1024,
        }
    }

    fn send_window_bytes(self) -> usize {
        match self {
            Style::Kernel => 4 * 1024 * 1024,
            Style::Smoltcp => 64 * 1024,
        }
    }
}

/// A catalog with the root user, one stream, a topic of two partitions and a consumer group.
fn catalog() -> Catalog {
    let mut catalog = Catalog::new();
    let changes = [
        Change::CreateUser {
            user_id: 0,
            username: "iggy".into(),
            // The fake metadata service checks passwords itself; no argon2 here.
            password_hash: "unused".into(),
            status: UserStatus::Active,
            permissions: Some(Permissions::root()),
            created_at_us: 1,
        },
        Change::CreateStream {
            stream_id: STREAM,
            name: "stream".into(),
            created_at_us: 1,
        },
        Change::CreateTopic {
            stream_id: STREAM,
            topic_id: TOPIC,
            name: "topic".into(),
            created_at_us: 1,
            partitions: (0..PARTITIONS)
                .map(|id| Partition {
                    id,
                    created_at_us: 1,
                })
                .collect(),
            options: TopicOptions::default(),
        },
        Change::CreateConsumerGroup {
            stream_id: STREAM,
            topic_id: TOPIC,
            group_id: GROUP,
            name: "group".into(),
        },
    ];
    for change in &changes {
        catalog.apply(change).expect("catalog change");
    }
    catalog
}

/// The fake shard: appends get increasing offsets, polls get `poll_reply_bytes` of chunks.
struct FakeShard {
    endpoint: ShardEndpoint,
    stalled: bool,
    next_offset: u64,
    poll_reply: Vec<Bytes>,
}

impl FakeShard {
    fn serve(&mut self) -> bool {
        let mut served = false;
        while !self.stalled {
            let Some(request) = self.endpoint.take_request() else {
                break;
            };
            let outcome = match request.op {
                ShardOp::Append { .. } => {
                    let base_offset = self.next_offset;
                    self.next_offset += 1;
                    ShardOutcome::Appended {
                        base_offset,
                        last_offset: base_offset,
                    }
                }
                ShardOp::Poll { .. } => ShardOutcome::Polled(ReadResult {
                    partition_id: 0,
                    current_offset: Some(self.next_offset),
                    messages_count: 1,
                    last_offset: Some(0),
                    chunks: self.poll_reply.clone(),
                }),
                _ => ShardOutcome::Done,
            };
            self.endpoint.reply(ShardReply {
                token: request.token,
                outcome,
            });
            served = true;
        }
        self.endpoint.wake_if_replied();
        served
    }
}

/// The fake metadata service: the password of user `iggy` is `iggy`.
struct FakeMetadata {
    endpoint: MetadataEndpoint,
}

impl FakeMetadata {
    fn serve(&mut self) -> bool {
        let mut served = false;
        while let Some(request) = self.endpoint.take_request() {
            let outcome = match request.op {
                MetadataOp::PasswordLogin { username, password }
                    if username == "iggy" && password == "iggy" =>
                {
                    MetadataOutcome::LoggedIn { user_id: 0 }
                }
                MetadataOp::PasswordLogin { .. } => {
                    MetadataOutcome::Failed(riptide_protocol::codes::ErrorCode::InvalidCredentials)
                }
                MetadataOp::Change(_) | MetadataOp::Replicate(_) => {
                    MetadataOutcome::Failed(riptide_protocol::codes::ErrorCode::FeatureUnavailable)
                }
                // Names what it was asked, so a test sees the request crossed the ring.
                MetadataOp::Snapshot(job) => MetadataOutcome::Snapshot(
                    format!("fake archive of {:?}", job.spec).into_bytes(),
                ),
            };
            self.endpoint.reply(MetadataReply {
                token: request.token,
                outcome,
            });
            served = true;
        }
        self.endpoint.wake_if_replied();
        served
    }
}

/// A client on the far side of the fake driver: the bytes it sent and received.
struct Peer {
    id: ConnectionId,
    inbound: Vec<u8>,
    /// Bytes queued for the core, delivered by the driver in its style.
    outbound: Vec<u8>,
    closed_by_server: bool,
    client: u128,
    request: u64,
    session: u64,
}

impl Peer {
    fn header(&mut self, code: u32) -> RequestHeader {
        let operation = operation_for_code(code);
        let request = match operation {
            operation::REGISTER => 0,
            operation::NON_REPLICATED => self.request,
            _ => {
                self.request += 1;
                self.request
            }
        };
        RequestHeader {
            command: command::REQUEST,
            client: self.client,
            request,
            operation,
            session: if operation == operation::REGISTER {
                0
            } else {
                self.session
            },
            code: if operation == operation::NON_REPLICATED {
                code
            } else {
                0
            },
            request_checksum: 0,
            size_override: None,
        }
    }

    fn frame(&mut self, code: u32, body: &[u8]) -> Vec<u8> {
        self.header(code).emit(body)
    }

    /// Complete frames received so far: (status, body); an eviction reads as
    /// `EVICTED | reason`.
    fn replies(&self) -> Vec<(u32, Vec<u8>)> {
        let mut frames = Vec::new();
        let mut at = 0;
        while self.inbound.len() >= at + HEADER_SIZE_BYTES {
            let size = u32_at(&self.inbound, at + 48) as usize;
            if self.inbound.len() < at + size {
                break;
            }
            let status = match self.inbound[at + 60] {
                command::EVICTION => EVICTED | u32::from(self.inbound[at + 255]),
                _ => u32_at(&self.inbound, at + 216),
            };
            frames.push((
                status,
                self.inbound[at + HEADER_SIZE_BYTES..at + size].to_vec(),
            ));
            at += size;
        }
        frames
    }
}

struct Harness {
    style: Style,
    core: WorkerCore,
    shared: Arc<Shared>,
    shard: FakeShard,
    metadata: FakeMetadata,
    now: Instant,
    next_client: u128,
}

impl Harness {
    fn new(style: Style, configure: impl FnOnce(&mut Config)) -> Harness {
        let mut config = Config::load_from(None, &[]).expect("default config");
        config.dataplane.storage_shards = 1;
        configure(&mut config);
        let shared = Arc::new(Shared::new(
            config.clone(),
            Arc::new(CatalogView::new(catalog())),
            Arc::new(PartitionDirectory::new(&config.system.path, 1)),
            1,
            1,
        ));
        let mut mesh = build_mesh(1, 1, 0, config.dataplane.ring_capacity).expect("mesh");
        let now = Instant::now();
        let links = mesh.workers.remove(0);
        let core = WorkerCore::new(WorkerContext::new(
            0,
            Arc::clone(&shared),
            links,
            (now, 1_700_000_000_000_000),
        ));
        Harness {
            style,
            core,
            shared,
            shard: FakeShard {
                endpoint: mesh.shards.remove(0).remove(0),
                stalled: false,
                next_offset: 0,
                poll_reply: vec![Bytes::from_static(b"stored-record")],
            },
            metadata: FakeMetadata {
                endpoint: mesh.metadata.remove(0),
            },
            now,
            next_client: 1,
        }
    }

    fn connect(&mut self) -> Result<Peer, Refused> {
        let peer_address = SocketAddr::from(([10, 0, 0, 1], 40_000 + self.next_client as u16));
        let id = self.core.accept(peer_address, self.now)?;
        self.next_client += 1;
        Ok(Peer {
            id,
            inbound: Vec::new(),
            outbound: Vec::new(),
            closed_by_server: false,
            client: self.next_client,
            request: 1,
            session: 0,
        })
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Delivers what the peer queued, in the driver's receive chunks (the kernel style fills the
    /// core's batch buffer directly when it offers one).
    fn deliver(&mut self, peer: &mut Peer) {
        while !peer.outbound.is_empty() && self.core.wants_read(peer.id) {
            if self.style == Style::Kernel {
                if let Some(buffer) = self.core.receive_buffer(peer.id) {
                    let taken = buffer.len().min(peer.outbound.len());
                    buffer[..taken].copy_from_slice(&peer.outbound[..taken]);
                    peer.outbound.drain(..taken);
                    self.core.on_batch_received(peer.id, taken, self.now);
                    continue;
                }
            }
            let taken = self.style.receive_chunk_bytes().min(peer.outbound.len());
            let chunk: Vec<u8> = peer.outbound.drain(..taken).collect();
            self.core.on_received(peer.id, &chunk, self.now);
        }
    }

    /// Moves up to one send window of output to the peer, as one write.
    fn transmit(&mut self, peer: &mut Peer) -> usize {
        let mut window = self.style.send_window_bytes();
        let mut sent = 0;
        for chunk in self.core.transmit(peer.id) {
            let taken = chunk.len().min(window);
            peer.inbound.extend_from_slice(&chunk[..taken]);
            sent += taken;
            window -= taken;
            if window == 0 {
                break;
            }
        }
        if sent > 0 {
            self.core.on_sent(peer.id, sent);
        }
        if self.core.wants_close(peer.id) {
            peer.closed_by_server = true;
        }
        sent
    }

    /// One turn of the driver's loop for `peers`; returns whether anything moved.
    fn turn(&mut self, peers: &mut [&mut Peer]) -> bool {
        let mut moved = false;
        for peer in peers.iter_mut() {
            let before = peer.outbound.len();
            self.deliver(peer);
            moved |= peer.outbound.len() != before;
        }
        self.core.end_turn();
        moved |= self.shard.serve();
        moved |= self.metadata.serve();
        moved |= self.core.poll(self.now);
        for peer in peers.iter_mut() {
            moved |= self.transmit(peer) > 0;
        }
        moved
    }

    fn run_until_idle(&mut self, peers: &mut [&mut Peer]) {
        for _ in 0..TURNS_MAX {
            if !self.turn(peers) {
                return;
            }
        }
        panic!("{:?}: the core kept busy for {TURNS_MAX} turns", self.style);
    }

    fn login(&mut self, peer: &mut Peer) {
        let frame = peer.frame(
            code::LOGIN_REGISTER,
            &login_body(SERVER_PROTOCOL_VERSION, "iggy", "iggy"),
        );
        peer.outbound.extend(frame);
        self.run_until_idle(&mut [&mut *peer]);
        let replies = peer.replies();
        let (status, body) = replies.last().expect("a login reply");
        assert_eq!(*status, 0, "{:?}: login refused", self.style);
        // [result count][user id][session id]...
        peer.session = u64::from_le_bytes(body[8..16].try_into().expect("session id"));
        peer.inbound.clear();
    }
}

fn send_frame(peer: &mut Peer, payload: &[u8]) -> Vec<u8> {
    let batch = batch(&[payload], 1).expect("batch");
    let body = send_messages_body(STREAM, TOPIC, &Partitioning::PartitionId(0), 1, &batch);
    peer.frame(code::SEND_MESSAGES, &body)
}

fn join_frame(peer: &mut Peer) -> Vec<u8> {
    let mut body = numeric_identifier(STREAM);
    body.extend(numeric_identifier(TOPIC));
    body.extend(numeric_identifier(GROUP));
    peer.frame(JOIN_CONSUMER_GROUP, &body)
}

fn both_styles(scenario: impl Fn(Style)) {
    for style in [Style::Kernel, Style::Smoltcp] {
        scenario(style);
    }
}

#[test]
fn admission_stops_at_the_connection_limit_and_resumes_after_a_close() {
    both_styles(|style| {
        let mut harness = Harness::new(style, |config| config.tcp.connections_max = 2);
        let first = harness.connect().expect("first");
        let _second = harness.connect().expect("second");
        assert_eq!(harness.connect().err(), Some(Refused::ConnectionsMax));
        let shared = Arc::clone(&harness.shared);
        let counters = &shared.worker_counters[0];
        assert_eq!(counters.connections_refused.load(Ordering::Relaxed), 1);
        harness.core.on_closed(first.id);
        let third = harness.connect().expect("a slot freed by the close");
        assert_eq!(third.id.slot, first.id.slot, "the slot is reused");
        assert_ne!(third.id.generation, first.id.generation);
        assert_eq!(counters.connections_open.load(Ordering::Relaxed), 2);
        assert_eq!(harness.core.live_count(), 2);
    });
}

/// After the login: a ping, a send, a poll and a create-stream (which the fake metadata service
/// refuses), as one byte stream. Replicated operations carry the session, so the stream is built
/// for a logged-in peer.
fn session_bytes(peer: &mut Peer) -> Vec<u8> {
    let mut bytes = peer.frame(code::PING, &[]);
    bytes.extend(send_frame(peer, b"split anywhere"));
    bytes.extend(peer.frame(code::POLL_MESSAGES, &poll_body(STREAM, TOPIC, 0, 0, 10)));
    bytes.extend(peer.frame(code::CREATE_STREAM, &common::raw::wire_name("new")));
    bytes
}

#[test]
fn frames_split_at_every_byte_get_the_same_replies() {
    both_styles(|style| {
        let logged_in = || {
            let mut harness = Harness::new(style, |_| {});
            let mut peer = harness.connect().expect("connect");
            harness.login(&mut peer);
            (harness, peer)
        };
        let (mut reference_harness, mut reference) = logged_in();
        let bytes = session_bytes(&mut reference);
        reference.outbound = bytes.clone();
        reference_harness.run_until_idle(&mut [&mut reference]);
        let expected = reference.replies();
        let statuses: Vec<u32> = expected.iter().map(|(status, _)| *status).collect();
        let refused = riptide_protocol::codes::ErrorCode::FeatureUnavailable.as_u32();
        assert_eq!(statuses, vec![0, 0, 0, refused], "{style:?}: {expected:?}");
        for split in 1..bytes.len() {
            let (mut harness, mut peer) = logged_in();
            let stream = session_bytes(&mut peer);
            peer.outbound = stream[..split].to_vec();
            harness.run_until_idle(&mut [&mut peer]);
            peer.outbound = stream[split..].to_vec();
            harness.run_until_idle(&mut [&mut peer]);
            assert_eq!(peer.replies(), expected, "{style:?}, split at {split}");
        }
        let (mut harness, mut peer) = logged_in();
        for byte in session_bytes(&mut peer) {
            peer.outbound.push(byte);
            harness.run_until_idle(&mut [&mut peer]);
        }
        assert_eq!(peer.replies(), expected, "{style:?}, byte by byte");
    });
}

/// The network thread only validates a snapshot request; the archive comes from the metadata
/// service's side of the ring (here the fake, which names what it was asked).
#[test]
fn a_snapshot_is_built_across_the_metadata_ring_after_validation() {
    let mut harness = Harness::new(Style::Kernel, |_| {});
    let mut peer = harness.connect().expect("connect");
    harness.login(&mut peer);
    // [compression][count][types]: Deflated, All; Bzip2 (not built in); an unknown type; All
    // next to another type.
    for body in [&[2u8, 1, 100][..], &[3, 1, 4], &[2, 1, 7], &[1, 2, 100, 4]] {
        let frame = peer.frame(GET_SNAPSHOT_FILE, body);
        peer.outbound.extend(frame);
    }
    harness.run_until_idle(&mut [&mut peer]);
    let replies = peer.replies();
    let statuses: Vec<u32> = replies.iter().map(|(status, _)| *status).collect();
    use riptide_protocol::codes::ErrorCode;
    let invalid = ErrorCode::InvalidCommand.as_u32();
    assert_eq!(
        statuses,
        [0, ErrorCode::FeatureUnavailable.as_u32(), invalid, invalid]
    );
    let archive = String::from_utf8(replies[0].1.clone()).expect("the fake's text");
    assert!(
        archive.starts_with("fake archive of SnapshotSpec { compression: Deflated"),
        "{archive}"
    );
    assert!(archive.contains("ServerConfig"), "{archive}");
}

#[test]
fn a_reply_larger_than_the_send_window_arrives_whole_and_in_order() {
    both_styles(|style| {
        let mut harness = Harness::new(style, |_| {});
        let record: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
        harness.shard.poll_reply = (0..4).map(|_| Bytes::from(record.clone())).collect();
        let mut peer = harness.connect().expect("connect");
        harness.login(&mut peer);
        let poll = peer.frame(code::POLL_MESSAGES, &poll_body(STREAM, TOPIC, 0, 0, 10));
        peer.outbound.extend(poll);
        let ping = peer.frame(code::PING, &[]);
        peer.outbound.extend(ping);
        let mut writes = 0;
        for _ in 0..TURNS_MAX {
            let before = peer.inbound.len();
            if !harness.turn(&mut [&mut peer]) {
                break;
            }
            writes += usize::from(peer.inbound.len() > before);
        }
        let replies = peer.replies();
        assert_eq!(replies.len(), 2, "{style:?}: poll and ping replies");
        let (status, body) = &replies[0];
        assert_eq!(*status, 0);
        assert_eq!(body.len(), 16 + 4 * record.len(), "{style:?}");
        assert!(body[16..].chunks(record.len()).all(|chunk| chunk == record));
        if style == Style::Smoltcp {
            assert!(
                writes >= (4 * record.len()) / style.send_window_bytes(),
                "{writes}"
            );
        }
    });
}

#[test]
fn a_full_ring_stalls_the_connection_until_replies_drain() {
    both_styles(|style| {
        let mut harness = Harness::new(style, |config| {
            config.dataplane.ring_capacity = 4;
            config.dataplane.connection_inflight_max = 64;
        });
        let mut peer = harness.connect().expect("connect");
        harness.login(&mut peer);
        harness.shard.stalled = true;
        for index in 0..20u8 {
            let frame = send_frame(&mut peer, &[b'a' + index]);
            peer.outbound.extend(frame);
        }
        harness.run_until_idle(&mut [&mut peer]);
        assert!(
            peer.replies().is_empty(),
            "nothing answered while the shard stalls"
        );
        assert!(
            !harness.core.wants_read(peer.id),
            "{style:?}: reading stopped"
        );
        let stalls = harness.shared.worker_counters[0]
            .ring_full_stalls
            .load(Ordering::Relaxed);
        assert!(stalls >= 1, "{style:?}: the stall was counted");
        assert!(harness.core.requests_outstanding());
        harness.shard.stalled = false;
        harness.run_until_idle(&mut [&mut peer]);
        let replies = peer.replies();
        assert_eq!(replies.len(), 20, "{style:?}: every send answered");
        let offsets: Vec<u64> = replies
            .iter()
            .map(|(status, body)| {
                assert_eq!(*status, 0);
                u64::from_le_bytes(body[16..24].try_into().expect("base offset"))
            })
            .collect();
        assert_eq!(offsets, (0..20).collect::<Vec<_>>(), "{style:?}: in order");
        assert!(harness.core.wants_read(peer.id));
    });
}

#[test]
fn a_silent_group_member_is_closed_after_the_heartbeat_and_a_talking_one_is_not() {
    both_styles(|style| {
        let mut harness = Harness::new(style, |config| config.heartbeat.interval_ms = 1000);
        let mut silent = harness.connect().expect("connect");
        let mut talking = harness.connect().expect("connect");
        let mut bystander = harness.connect().expect("connect");
        for peer in [&mut silent, &mut talking, &mut bystander] {
            harness.login(peer);
        }
        for peer in [&mut silent, &mut talking] {
            let join = join_frame(peer);
            peer.outbound.extend(join);
            harness.run_until_idle(&mut [&mut *peer]);
            assert_eq!(peer.replies().last().map(|r| r.0), Some(0), "joined");
        }
        for _ in 0..6 {
            harness.advance(Duration::from_millis(250));
            let ping = talking.frame(code::PING, &[]);
            talking.outbound.extend(ping);
            harness.run_until_idle(&mut [&mut silent, &mut talking, &mut bystander]);
        }
        assert!(silent.closed_by_server, "{style:?}: silent member closed");
        assert!(!talking.closed_by_server, "{style:?}: talking member kept");
        assert!(
            !bystander.closed_by_server,
            "{style:?}: silent non-member kept"
        );
        // The driver sees the close through and releases the connection: it leaves the group.
        harness.core.on_closed(silent.id);
        let groups = lock(&harness.shared.groups);
        let group = groups.group((STREAM, TOPIC, GROUP)).expect("group state");
        let talking_client = 2;
        assert_eq!(
            group.assigned(talking_client).map(<[u32]>::len),
            Some(PARTITIONS as usize),
            "{style:?}: the live member took every partition: {:?}",
            group.members()
        );
        assert_eq!(group.members().len(), 1);
    });
}

#[test]
fn a_client_that_vanishes_mid_reply_leaves_no_trace_and_its_late_replies_are_dropped() {
    both_styles(|style| {
        let mut harness = Harness::new(style, |_| {});
        harness.shard.poll_reply = vec![Bytes::from(vec![7u8; 2 * 1024 * 1024])];
        let mut peer = harness.connect().expect("connect");
        harness.login(&mut peer);
        let poll = peer.frame(code::POLL_MESSAGES, &poll_body(STREAM, TOPIC, 0, 0, 10));
        peer.outbound.extend(poll);
        harness.deliver(&mut peer);
        harness.core.end_turn();
        harness.shard.serve();
        harness.core.poll(harness.now);
        // Part of the reply goes out, then the peer vanishes with a send stalled at the shard.
        let first_write = harness.core.transmit(peer.id).next().map_or(0, <[u8]>::len);
        harness.core.on_sent(peer.id, first_write.min(1000));
        harness.shard.stalled = true;
        let send = send_frame(&mut peer, b"never confirmed");
        peer.outbound.extend(send);
        harness.deliver(&mut peer);
        harness.core.end_turn();
        assert!(harness.core.awaiting_replies(peer.id));
        harness.core.on_stream_end(peer.id);
        harness.core.release(peer.id);
        assert_eq!(harness.core.live_count(), 0);
        assert!(lock(&harness.shared.clients).is_empty(), "{style:?}");
        let counters = &harness.shared.worker_counters[0];
        assert_eq!(counters.connections_open.load(Ordering::Relaxed), 0);
        // A new connection takes the slot; the dead one's reply must not reach it.
        let mut next = harness.connect().expect("connect");
        assert_eq!(next.id.slot, peer.id.slot);
        harness.shard.stalled = false;
        harness.run_until_idle(&mut [&mut next]);
        assert!(next.inbound.is_empty(), "{style:?}: a stale reply leaked");
        assert!(!harness.core.requests_outstanding());
        harness.login(&mut next);
        assert_eq!(lock(&harness.shared.clients).len(), 1);
    });
}
