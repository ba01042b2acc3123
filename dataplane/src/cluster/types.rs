//! What the Raft log carries and what applying it answers. Leadership, terms, membership and the
//! order of these commands come from openraft; the commands are riptide's.

use riptide_protocol::codes::ErrorCode;
use riptide_storage::metadata::Change;
use riptide_storage::{ConsumerKind, ConsumerRef, PartitionKey};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

pub use riptide_config::cluster::NodeInfo;

/// A partition on the wire of the replication protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireKey {
    pub stream_id: u32,
    pub topic_id: u32,
    pub partition_id: u32,
}

impl From<PartitionKey> for WireKey {
    fn from(key: PartitionKey) -> Self {
        WireKey {
            stream_id: key.stream_id,
            topic_id: key.topic_id,
            partition_id: key.partition_id,
        }
    }
}

impl From<WireKey> for PartitionKey {
    fn from(key: WireKey) -> Self {
        PartitionKey {
            stream_id: key.stream_id,
            topic_id: key.topic_id,
            partition_id: key.partition_id,
        }
    }
}

/// A consumer (or group) whose offset is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireConsumer {
    pub group: bool,
    pub id: u32,
}

impl From<ConsumerRef> for WireConsumer {
    fn from(consumer: ConsumerRef) -> Self {
        WireConsumer {
            group: consumer.kind == ConsumerKind::Group,
            id: consumer.id,
        }
    }
}

impl From<WireConsumer> for ConsumerRef {
    fn from(consumer: WireConsumer) -> Self {
        ConsumerRef {
            kind: if consumer.group {
                ConsumerKind::Group
            } else {
                ConsumerKind::Consumer
            },
            id: consumer.id,
        }
    }
}

/// One replicated command. Every node applies the same commands in the same order, so every
/// node's catalog and partitions end up identical: a batch lands at the offset and with the
/// timestamp the leader gave it, byte for byte the same record everywhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// A metadata change, built by the leader against its catalog.
    Change(Change),
    /// A SendMessages batch (validated by the leader) for `key`, whose first message gets
    /// `base_offset`.
    Append {
        key: WireKey,
        base_offset: u64,
        timestamp_us: u64,
        messages: u32,
        #[serde(with = "serde_bytes")]
        batch: Vec<u8>,
    },
    StoreOffset {
        key: WireKey,
        consumer: WireConsumer,
        offset: u64,
    },
    DeleteOffset {
        key: WireKey,
        consumer: WireConsumer,
    },
    Purge {
        keys: Vec<WireKey>,
    },
    DeleteSegments {
        key: WireKey,
        count: u32,
    },
}

impl Command {
    /// Messages and bytes of data the command carries (follower lag is counted in these).
    pub fn data_size(&self) -> (u64, u64) {
        match self {
            Command::Append {
                messages, batch, ..
            } => (u64::from(*messages), batch.len() as u64),
            _ => (0, 0),
        }
    }
}

/// What applying a command answered, the same on every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Blank and membership entries, or a command that answers with success only.
    #[default]
    Done,
    Appended {
        base_offset: u64,
        last_offset: u64,
    },
    /// The command was refused (deterministically, on every node) with this Iggy error code.
    Refused(u32),
}

impl Response {
    pub fn refused(code: ErrorCode) -> Response {
        Response::Refused(code.as_u32())
    }
}

openraft::declare_raft_types!(
    /// riptide's Raft types: commands in, responses out, nodes with their addresses.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = NodeInfo,
);

pub type NodeId = u64;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Membership = openraft::StoredMembership<NodeId, NodeInfo>;
