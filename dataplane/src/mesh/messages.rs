//! What travels over the rings: requests tagged with where their reply goes.

use crate::metadata::{MetadataOp, MetadataOutcome};
use crate::shard::{ShardOp, ShardOutcome};

/// Identifies a connection of one network thread across the reuse of its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId {
    pub slot: u32,
    pub generation: u32,
}

/// Where a reply goes: the connection and its request's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestToken {
    pub connection: ConnectionId,
    pub seq: u64,
}

#[derive(Debug)]
pub struct ShardRequest {
    pub token: RequestToken,
    pub op: ShardOp,
}

#[derive(Debug)]
pub struct ShardReply {
    pub token: RequestToken,
    pub outcome: ShardOutcome,
}

#[derive(Debug)]
pub struct MetadataRequest {
    pub token: RequestToken,
    pub op: MetadataOp,
}

#[derive(Debug)]
pub struct MetadataReply {
    pub token: RequestToken,
    pub outcome: MetadataOutcome,
}
