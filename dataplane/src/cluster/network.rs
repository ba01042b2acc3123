//! The replication protocol between nodes, over TCP on `cluster.replication_address`: Raft's
//! messages (append entries, vote, snapshot chunks), catch-up reads of a partition's records,
//! and the membership and status requests `riptidectl cluster` sends. Each frame is
//! `[length u32 LE][postcard]`; a connection opens with the cluster's secret (peers without it are
//! refused) and then carries one request and its reply at a time.

use super::types::{NodeId, NodeInfo, TypeConfig, WireKey};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest frame either side accepts: Raft batches entries below this (`max_payload_entries`
/// keeps a batch of large SendMessages entries under it).
pub const FRAME_BYTES_MAX: u32 = 192 << 20;
/// Longest a dial to a peer may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// A request on the replication port.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Opens a connection: the SHA-256 of the cluster's secret, salted with its name.
    Hello {
        secret_digest: [u8; 32],
    },
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Stored records of a partition from `from_offset`, at most `messages_max` messages.
    Fetch {
        key: WireKey,
        from_offset: u64,
        messages_max: u32,
    },
    Admin(Admin),
}

/// What an operator asks a node (`riptidectl cluster ...`); membership changes only the leader
/// takes, through openraft's joint consensus.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Admin {
    Status,
    /// Adds a node as a learner, waits until it caught up, then makes it a voter.
    AddNode {
        id: NodeId,
        node: NodeInfo,
    },
    /// Removes a voter (or learner) from the cluster.
    RemoveNode {
        id: NodeId,
    },
}

/// One node's view of the cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeStatus {
    pub id: NodeId,
    pub name: String,
    pub replication_address: String,
    pub tcp_address: String,
    pub voter: bool,
    /// Leader's view only: how far behind the leader's log this node is (None elsewhere).
    pub lag_entries: Option<u64>,
    pub lag_messages: Option<u64>,
    pub lag_bytes: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Welcome,
    Refused(String),
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Records(Result<serde_bytes::ByteBuf, String>),
    Status(ClusterStatus),
    /// Done, or why not (a follower names the leader to ask instead).
    Admin(Result<(), String>),
}

/// The digest a connection proves the secret with.
pub fn secret_digest(cluster_name: &str, secret: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"riptide-cluster\0");
    hasher.update(cluster_name.as_bytes());
    hasher.update([0]);
    hasher.update(secret.as_bytes());
    hasher.finalize().into()
}

pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> std::io::Result<()> {
    let payload = postcard::to_allocvec(value).map_err(std::io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= FRAME_BYTES_MAX)
        .ok_or_else(|| std::io::Error::other("frame too large"))?;
    stream.write_all(&len.to_le_bytes()).await?;
    stream.write_all(&payload).await?;
    stream.flush().await
}

pub async fn read_frame<T: for<'de> Deserialize<'de>>(
    stream: &mut TcpStream,
) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len);
    if len > FRAME_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).await?;
    postcard::from_bytes(&payload)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A connection to a peer, authenticated; reconnects on the next call after a failure.
pub struct Peer {
    address: String,
    digest: [u8; 32],
    stream: Option<TcpStream>,
}

impl Peer {
    pub fn new(address: String, digest: [u8; 32]) -> Peer {
        Peer {
            address,
            digest,
            stream: None,
        }
    }

    /// Sends one request and reads its reply within `timeout`.
    pub async fn call(&mut self, request: &Request, timeout: Duration) -> std::io::Result<Reply> {
        let outcome = tokio::time::timeout(timeout, self.exchange(request)).await;
        let result = match outcome {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no reply in time",
            )),
        };
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, request: &Request) -> std::io::Result<Reply> {
        if self.stream.is_none() {
            self.stream = Some(self.connect().await?);
        }
        let stream = self.stream.as_mut().expect("connected above");
        write_frame(stream, request).await?;
        read_frame(stream).await
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        write_frame(
            &mut stream,
            &Request::Hello {
                secret_digest: self.digest,
            },
        )
        .await?;
        match read_frame(&mut stream).await? {
            Reply::Welcome => Ok(stream),
            Reply::Refused(reason) => Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{}: {reason}", self.address),
            )),
            other => Err(std::io::Error::other(format!(
                "unexpected hello reply {other:?}"
            ))),
        }
    }
}

/// Makes openraft's per-target clients.
pub struct Network {
    pub digest: [u8; 32],
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = RaftClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> RaftClient {
        RaftClient {
            target,
            peer: Peer::new(node.replication_address.clone(), self.digest),
        }
    }
}

/// openraft's client to one peer.
pub struct RaftClient {
    target: NodeId,
    peer: Peer,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

impl RaftClient {
    async fn send(
        &mut self,
        request: Request,
        option: &RPCOption,
    ) -> Result<Reply, std::io::Error> {
        self.peer.call(&request, option.hard_ttl()).await
    }

    fn failed<E: std::error::Error>(
        &self,
        error: std::io::Error,
    ) -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
        tracing::debug!(target = self.target, %error, "replication RPC failed");
        match error.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::PermissionDenied => {
                RPCError::Unreachable(Unreachable::new(&error))
            }
            _ => RPCError::Network(NetworkError::new(&error)),
        }
    }
}

fn unexpected(reply: &Reply) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("unexpected reply {reply:?}"),
    )
}

impl RaftNetwork<TypeConfig> for RaftClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.send(Request::AppendEntries(rpc), &option).await {
            Ok(Reply::AppendEntries(result)) => result.map_err(|e| {
                RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e))
            }),
            Ok(other) => Err(self.failed(unexpected(&other))),
            Err(error) => Err(self.failed(error)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.send(Request::InstallSnapshot(rpc), &option).await {
            Ok(Reply::InstallSnapshot(result)) => result.map_err(|e| {
                RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e))
            }),
            Ok(other) => Err(self.failed(unexpected(&other))),
            Err(error) => Err(self.failed(error)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.send(Request::Vote(rpc), &option).await {
            Ok(Reply::Vote(result)) => result.map_err(|e| {
                RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e))
            }),
            Ok(other) => Err(self.failed(unexpected(&other))),
            Err(error) => Err(self.failed(error)),
        }
    }
}
