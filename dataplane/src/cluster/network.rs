//! The replication protocol between nodes, over TCP on `cluster.replication_address`: Raft's
//! messages (append entries, vote, snapshot chunks) and catch-up reads of a partition's records.
//! The port also serves the admin protocol `riptidectl cluster` speaks; the frames, the greeting
//! that opens every connection (with the cluster's secret; peers without it are refused) and the
//! admin requests are `riptide_config::cluster`'s. A peer connection carries one request and its
//! reply at a time.

use super::types::{NodeId, NodeInfo, TypeConfig, WireKey};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use riptide_config::cluster::{decode_payload, encode_frame, frame_len, Greeting, GreetingReply};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a dial to a peer may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// A request of one node to another, after the greeting.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Stored records of a partition from `from_offset`, at most `messages_max` messages.
    Fetch {
        key: WireKey,
        from_offset: u64,
        messages_max: u32,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Records(Result<serde_bytes::ByteBuf, String>),
}

pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> std::io::Result<()> {
    stream.write_all(&encode_frame(value)?).await?;
    stream.flush().await
}

pub async fn read_frame<T: DeserializeOwned>(stream: &mut TcpStream) -> std::io::Result<T> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let mut payload = vec![0u8; frame_len(prefix)?];
    stream.read_exact(&mut payload).await?;
    decode_payload(&payload)
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
            &Greeting::Peer {
                secret_digest: self.digest,
            },
        )
        .await?;
        match read_frame(&mut stream).await? {
            GreetingReply::Welcome => Ok(stream),
            GreetingReply::Refused(reason) => Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{}: {reason}", self.address),
            )),
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
