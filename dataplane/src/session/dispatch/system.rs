//! Server and client information: stats, me, clients, cluster metadata (this node, named by
//! `[cluster] name` and `node_name`, or the cluster's roster), system snapshots, and the
//! cluster-routing commands of iggy 0.11: the node that leads is the primary of every partition.

use super::options::{catalog, OptionsScope};
use super::{done, encoded, resolve_stream_topic, Action, Call, Handled};
use crate::diagnostics::{self, SnapshotJob};
use crate::metadata::{MetadataOp, MetadataOutcome};
use crate::session::shared::lock;
use riptide_protocol::codes::{ClusterNodeRole, ClusterNodeStatus, ErrorCode, TransportProtocol};
use riptide_protocol::reply::types::{
    ClientDetailsResponse, ClientResponse, ClusterMetadataResponse, ClusterNodeResponse,
    ConsumerGroupInfoResponse, DescribeOptionsResponse, GetClientsResponse, PollRoutingResponse,
    StatsResponse,
};
use riptide_protocol::request::Request;
use riptide_protocol::snapshot::SnapshotSpec;
use riptide_protocol::wire::requests::system::{AttachConsumerSessionRequest, GetSnapshotRequest};
use riptide_protocol::wire::WireIdentifier;
use std::net::SocketAddr;

pub fn handle(request: Request<'_>, call: Call<'_>) -> Handled {
    done(match request {
        Request::GetStats => stats(&call),
        Request::GetMe => Ok(Handled::Reply(
            client_details(&call, call.state.client_id).unwrap_or_default(),
        )),
        Request::GetClient(r) => call
            .require(Action::ReadServers)
            .map(|()| Handled::Reply(client_details(&call, r.client_id).unwrap_or_default())),
        Request::GetClients => clients(&call),
        Request::GetClusterMetadata => Ok(Handled::Reply(encoded(&cluster_metadata(&call)))),
        Request::GetSnapshot(r) => snapshot(&call, &r),
        Request::DescribeOptions(r) => describe_options(&call, r.scope),
        Request::AttachConsumerSession(r) => attach_consumer_session(call, &r),
        Request::GetPollRouting(r) => routing(call, &r.stream_id, &r.topic_id, |stream, topic| {
            Action::Poll(stream, topic)
        }),
        Request::GetConsumerOffsetRouting(r) => {
            routing(call, &r.stream_id, &r.topic_id, |stream, topic| {
                Action::Poll(stream, topic)
            })
        }
        _ => Err(ErrorCode::InvalidCommand),
    })
}

/// A system snapshot (`iggy snapshot`): the archive is built off this thread (the metadata
/// service's helper, `mesh::metadata_thread`) and comes back as the reply. iggy's server asks
/// only for a signed-in user; riptide asks for read_servers too, as for the stats and client
/// lists: the archive names every stream's directory and shows the configuration.
fn snapshot(call: &Call<'_>, request: &GetSnapshotRequest) -> Result<Handled, ErrorCode> {
    call.require(Action::ReadServers)?;
    let spec = SnapshotSpec::parse(request)?;
    if !diagnostics::supported(spec.compression) {
        return Err(ErrorCode::FeatureUnavailable);
    }
    let mut config = call.ctx.shared.config.clone();
    if let Some(bound) = call.ctx.shared.bound_address() {
        config.tcp.address = bound.to_string();
    }
    Ok(Handled::Metadata {
        op: MetadataOp::Snapshot(Box::new(SnapshotJob { spec, config })),
        then: Box::new(|outcome, _, _| match outcome {
            MetadataOutcome::Snapshot(archive) => Handled::Reply(archive),
            MetadataOutcome::Failed(code) => Handled::Error(code),
            _ => Handled::Error(ErrorCode::Error),
        }),
    })
}

/// The option keys a create command of `scope` accepts (`describe_options`): any signed-in user
/// may ask, as in iggy.
fn describe_options(call: &Call<'_>, scope: u8) -> Result<Handled, ErrorCode> {
    let scope = OptionsScope::from_code(scope).ok_or(ErrorCode::InvalidCommand)?;
    let shared = &call.ctx.shared;
    let entries = catalog(
        scope,
        shared.config.storage.segment_size_bytes,
        |requested| shared.effective_durability(requested),
    );
    Ok(Handled::Reply(encoded(&DescribeOptionsResponse {
        entries,
    })))
}

/// Where a cluster-aware SDK sends polls that auto-commit and consumer-offset writes: every
/// partition's primary is the node that leads (one Raft group orders all writes), which is this
/// node, since a follower answers routing TransientNotAccepted like any write. The consumer
/// session the SDK attaches its poll connection with names this connection's session.
fn routing(
    call: Call<'_>,
    stream: &WireIdentifier,
    topic: &WireIdentifier,
    action: impl FnOnce(u32, u32) -> Action,
) -> Result<Handled, ErrorCode> {
    let (stream, topic) = resolve_stream_topic(call.catalog, stream, topic)?;
    call.require(action(stream.id, topic.id))?;
    let session = call.state.session.ok_or(ErrorCode::Unauthenticated)?;
    let primary = cluster_metadata(&call)
        .nodes
        .into_iter()
        .find(|node| node.role == ClusterNodeRole::Leader.wire())
        .ok_or(ErrorCode::TransientNotAccepted)?;
    Ok(Handled::Reply(encoded(&PollRoutingResponse {
        consumer_session: AttachConsumerSessionRequest {
            client_id: u128::from(call.state.client_id),
            session: session.session_id,
            metadata_watermark: call.ctx.shared.metadata_commit(),
        },
        primary,
    })))
}

/// A poll connection takes on the consumer-group membership of the coordinator connection whose
/// session routing named: same user, session still signed in on this node.
fn attach_consumer_session(
    call: Call<'_>,
    request: &AttachConsumerSessionRequest,
) -> Result<Handled, ErrorCode> {
    let session = call.state.session.ok_or(ErrorCode::Unauthenticated)?;
    let coordinator =
        u32::try_from(request.client_id).map_err(|_| ErrorCode::TransientNotAccepted)?;
    let attachable = lock(&call.ctx.shared.clients)
        .get(&coordinator)
        .is_some_and(|client| {
            client.session_id == Some(request.session) && client.user_id == Some(session.user_id)
        });
    if !attachable {
        // Gone (disconnected, signed out) or not this user's: the SDK routes again.
        return Err(ErrorCode::TransientNotAccepted);
    }
    call.state.attached_to = (coordinator != call.state.client_id).then_some(coordinator);
    Ok(Handled::Reply(Vec::new()))
}

fn client_response(call: &Call<'_>, client: &crate::session::shared::ClientInfo) -> ClientResponse {
    ClientResponse {
        client_id: client.client_id,
        user_id: client.user_id.unwrap_or(u32::MAX),
        transport: TransportProtocol::Tcp.wire(),
        address: client.address.clone(),
        consumer_groups_count: group_memberships(call, client.client_id).len() as u32,
    }
}

fn group_memberships(call: &Call<'_>, client_id: u32) -> Vec<ConsumerGroupInfoResponse> {
    let groups = lock(&call.ctx.shared.groups);
    let mut memberships = Vec::new();
    for stream in call.catalog.streams().values() {
        for topic in stream.topics.values() {
            for group in topic.consumer_groups.values() {
                let member = groups
                    .group((stream.id, topic.id, group.id))
                    .is_some_and(|g| g.assigned(client_id).is_some());
                if member {
                    memberships.push(ConsumerGroupInfoResponse {
                        stream_id: stream.id,
                        topic_id: topic.id,
                        group_id: group.id,
                    });
                }
            }
        }
    }
    memberships
}

/// The client's details, or `None` (an empty reply) when no such client is connected.
fn client_details(call: &Call<'_>, client_id: u32) -> Option<Vec<u8>> {
    let client = lock(&call.ctx.shared.clients).get(&client_id).cloned()?;
    let details = ClientDetailsResponse {
        client: client_response(call, &client),
        consumer_groups: group_memberships(call, client_id),
    };
    Some(encoded(&details))
}

fn clients(call: &Call<'_>) -> Result<Handled, ErrorCode> {
    call.require(Action::ReadServers)?;
    let connected: Vec<_> = lock(&call.ctx.shared.clients).values().cloned().collect();
    let clients = connected
        .iter()
        .map(|client| client_response(call, client))
        .collect();
    Ok(Handled::Reply(encoded(&GetClientsResponse { clients })))
}

/// The cluster's roster: on a single node one node, the leader, at the address its listener
/// really bound (port 0 resolved).
fn cluster_metadata(call: &Call<'_>) -> ClusterMetadataResponse {
    let shared = &call.ctx.shared;
    let name = shared.config.cluster.name.clone();
    let Some(cluster) = &shared.cluster else {
        let address = shared
            .bound_address()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        // riptide-control serves the HTTP API next to this node when `[http]` is enabled.
        let http = &shared.config.http;
        let http_port = http
            .enabled
            .then(|| http.socket_address().ok())
            .flatten()
            .map_or(0, |address| address.port());
        return ClusterMetadataResponse {
            name,
            nodes: vec![node_response(
                &shared.config.cluster.node_name,
                address,
                http_port,
                ClusterNodeRole::Leader,
            )],
        };
    };
    // The roster as this node knows it (the membership it applied) and who leads now; no node
    // is Leader mid-election, and the SDK then waits for one.
    let status = cluster.status();
    let nodes = status
        .nodes
        .iter()
        .filter_map(|node| {
            let address = node.tcp_address.parse::<SocketAddr>().ok()?;
            let http_port = node
                .http_address
                .parse::<SocketAddr>()
                .map_or(0, |address| address.port());
            let role = if status.leader == Some(node.id) {
                ClusterNodeRole::Leader
            } else {
                ClusterNodeRole::Follower
            };
            Some(node_response(&node.name, address, http_port, role))
        })
        .collect();
    ClusterMetadataResponse { name, nodes }
}

fn node_response(
    name: &str,
    address: SocketAddr,
    http_port: u16,
    role: ClusterNodeRole,
) -> ClusterNodeResponse {
    ClusterNodeResponse {
        name: name.to_string(),
        ip: address.ip().to_string(),
        tcp_port: address.port(),
        quic_port: 0,
        http_port,
        websocket_port: 0,
        role: role.wire(),
        status: ClusterNodeStatus::Healthy.wire(),
    }
}

fn stats(call: &Call<'_>) -> Result<Handled, ErrorCode> {
    call.require(Action::ReadServers)?;
    let shared = &call.ctx.shared;
    let catalog = call.catalog;
    let (mut topics, mut partitions, mut groups, mut messages, mut size, mut segments) =
        (0u32, 0u32, 0u32, 0u64, 0u64, 0u32);
    for stream in catalog.streams().values() {
        for topic in stream.topics.values() {
            topics += 1;
            groups += topic.consumer_groups.len() as u32;
            for partition in &topic.partitions {
                partitions += 1;
                let key = riptide_storage::PartitionKey {
                    stream_id: stream.id,
                    topic_id: topic.id,
                    partition_id: partition.id,
                };
                let info = shared.partition_info(key);
                messages += info.messages_count;
                size += info.size_bytes;
                segments += info.segments_count;
            }
        }
    }
    let host = riptide_config::host::HostFacts::read(&shared.config.system.path);
    let now = call.ctx.now_us();
    let response = StatsResponse {
        process_id: std::process::id(),
        cpu_usage: 0.0,
        total_cpu_usage: 0.0,
        memory_usage: host.process_rss_bytes,
        total_memory: host.memory_total_bytes,
        available_memory: host.memory_available_bytes,
        run_time: now.saturating_sub(shared.started_at_us),
        start_time: shared.started_at_us,
        read_bytes: host.process_read_bytes,
        written_bytes: host.process_written_bytes,
        messages_size_bytes: size,
        streams_count: catalog.streams().len() as u32,
        topics_count: topics,
        partitions_count: partitions,
        segments_count: segments,
        messages_count: messages,
        clients_count: lock(&shared.clients).len() as u32,
        consumer_groups_count: groups,
        hostname: host.hostname,
        os_name: host.os_name,
        os_version: host.os_version,
        kernel_version: host.kernel_version,
        iggy_server_version: env!("CARGO_PKG_VERSION").to_string(),
        iggy_server_semver: None,
        cache_metrics: Vec::new(),
        threads_count: (shared.shard_counters.len() + shared.worker_counters.len() + 1) as u32,
        free_disk_space: host.disk_free_bytes,
        total_disk_space: host.disk_total_bytes,
    };
    Ok(Handled::Reply(encoded(&response)))
}
