//! The cluster's administration protocol: what `riptide-control` (for `riptidectl cluster`) and
//! the test labs ask a node on its replication port, the greeting every connection to that port
//! opens with, and the view of the cluster a node publishes (also in `stats.json`).
//!
//! Every frame is `[length u32 LE][postcard]`. A connection opens with a [`Greeting`] carrying
//! the SHA-256 of the cluster's secret salted with its name; a node answers [`Welcome`] or
//! [`Refused`] and closes. After the greeting a peer connection carries the replication
//! protocol (the dataplane's), an admin connection [`AdminRequest`]s, one at a time, each
//! answered by an [`AdminReply`].
//!
//! [`Welcome`]: GreetingReply::Welcome
//! [`Refused`]: GreetingReply::Refused

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub type NodeId = u64;

/// Largest frame either side accepts: Raft batches entries below this.
pub const FRAME_BYTES_MAX: u32 = 192 << 20;

/// A node as the cluster knows it: where its peers reach it and where clients do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub replication_address: String,
    pub tcp_address: String,
    /// Where riptide-control serves Iggy's HTTP API on that node; empty when it does not.
    pub http_address: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.replication_address)
    }
}

/// The first frame of every connection to the replication port.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Greeting {
    /// Another node: Raft's messages and catch-up reads follow.
    Peer { secret_digest: [u8; 32] },
    /// An operator's tool: [`AdminRequest`]s follow.
    Admin { secret_digest: [u8; 32] },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum GreetingReply {
    Welcome,
    Refused(String),
}

/// What an operator asks a node. Membership changes only the leader takes (through openraft's
/// joint consensus); a follower answers [`AdminReply::NotLeader`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminRequest {
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminReply {
    Status(ClusterStatus),
    Done,
    /// Only the leader changes the membership; this is where it is, when known.
    NotLeader {
        leader: Option<NodeId>,
        replication_address: Option<String>,
    },
    Failed(String),
}

/// One node's view of the cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub term: u64,
    /// The node that leads with a quorum behind it (none mid-election).
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub nodes: Vec<NodeStatus>,
    /// Every partition with its leader. One Raft group orders every write, so every partition's
    /// leader is the cluster's.
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeStatus {
    pub id: NodeId,
    pub name: String,
    pub replication_address: String,
    pub tcp_address: String,
    pub http_address: String,
    pub voter: bool,
    /// The leader's view only: how far behind the leader's log this node is (None elsewhere).
    pub lag_entries: Option<u64>,
    pub lag_messages: Option<u64>,
    pub lag_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PartitionStatus {
    pub stream_id: u32,
    pub topic_id: u32,
    pub partition_id: u32,
    pub leader: Option<NodeId>,
    /// The offset the partition's next message gets on this node (what it applied).
    pub next_offset: u64,
}

impl ClusterStatus {
    /// The leader's entry in the roster, when one leads.
    pub fn leader_node(&self) -> Option<&NodeStatus> {
        self.nodes.iter().find(|node| Some(node.id) == self.leader)
    }
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

/// Encodes one frame (`[length u32 LE][postcard]`).
///
/// # Errors
/// A value postcard cannot encode, or one larger than [`FRAME_BYTES_MAX`].
pub fn encode_frame<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let payload = postcard::to_allocvec(value).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= FRAME_BYTES_MAX)
        .ok_or_else(|| io::Error::other("frame too large"))?;
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// A frame's length from its 4-byte prefix, refused when above [`FRAME_BYTES_MAX`].
///
/// # Errors
/// `InvalidData` for a length above the limit.
pub fn frame_len(prefix: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_le_bytes(prefix);
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    Ok(len as usize)
}

/// Decodes a frame's payload.
///
/// # Errors
/// `InvalidData` when the payload is not a `T`.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> io::Result<T> {
    postcard::from_bytes(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A blocking admin client of one node (riptidectl's control process, the test labs).
pub struct AdminClient {
    stream: TcpStream,
}

impl AdminClient {
    /// Connects to `address` (a node's replication address) and greets it as an admin.
    ///
    /// # Errors
    /// Connection and I/O errors (each step within `timeout`), `PermissionDenied` when the node
    /// refuses the secret.
    pub fn connect(address: &str, digest: [u8; 32], timeout: Duration) -> io::Result<AdminClient> {
        let target = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{address} resolves to nothing")))?;
        let stream = TcpStream::connect_timeout(&target, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut client = AdminClient { stream };
        client.send(&Greeting::Admin {
            secret_digest: digest,
        })?;
        match client.receive::<GreetingReply>()? {
            GreetingReply::Welcome => Ok(client),
            GreetingReply::Refused(reason) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{address}: {reason}"),
            )),
        }
    }

    /// One request and its reply.
    ///
    /// # Errors
    /// I/O errors and undecodable replies.
    pub fn call(&mut self, request: &AdminRequest) -> io::Result<AdminReply> {
        self.send(request)?;
        self.receive()
    }

    /// Sets how long a reply may take (membership changes wait for a new node to catch up).
    ///
    /// # Errors
    /// As `TcpStream::set_read_timeout`.
    pub fn set_reply_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))
    }

    fn send<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        self.stream.write_all(&encode_frame(value)?)
    }

    fn receive<T: DeserializeOwned>(&mut self) -> io::Result<T> {
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix)?;
        let mut payload = vec![0u8; frame_len(prefix)?];
        self.stream.read_exact(&mut payload)?;
        decode_payload(&payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_lengths_are_refused() {
        let request = AdminRequest::AddNode {
            id: 4,
            node: NodeInfo {
                name: "n4".into(),
                replication_address: "10.0.0.4:8091".into(),
                tcp_address: "10.0.0.4:8090".into(),
                http_address: String::new(),
            },
        };
        let frame = encode_frame(&request).unwrap();
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        let back: AdminRequest = decode_payload(&frame[4..]).unwrap();
        assert!(matches!(back, AdminRequest::AddNode { id: 4, node } if node.name == "n4"));
        assert!(frame_len((FRAME_BYTES_MAX + 1).to_le_bytes()).is_err());
        assert!(decode_payload::<AdminRequest>(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn the_digest_depends_on_name_and_secret() {
        let digest = secret_digest("lab", "0123456789abcdef");
        assert_eq!(digest, secret_digest("lab", "0123456789abcdef"));
        assert_ne!(digest, secret_digest("lab2", "0123456789abcdef"));
        assert_ne!(digest, secret_digest("lab", "0123456789abcdeF"));
        // The separator keeps ("ab", "c...") and ("a", "bc...") apart.
        assert_ne!(
            secret_digest("ab", "cdefghijklmnopqr"),
            secret_digest("a", "bcdefghijklmnopqr")
        );
    }
}
