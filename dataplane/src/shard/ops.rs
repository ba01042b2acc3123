//! What a storage shard is asked to do and what it answers: the vocabulary of the rings between
//! the network side and the shards.

use riptide_protocol::codes::ErrorCode;
use riptide_storage::{AckMode, ConsumerRef, PartitionKey, PartitionSettings, ReadResult};

/// Where a poll starts; `Next` is resolved by the shard from the consumer's stored offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollFrom {
    Offset(u64),
    Timestamp(u64),
    First,
    Last,
    Next(ConsumerRef),
}

#[derive(Debug)]
pub enum ShardOp {
    Append {
        key: PartitionKey,
        batch: Vec<u8>,
        ack: AckMode,
        /// The batch's server timestamp; `None` = the shard's clock at the append. A cluster gives
        /// the leader's, so every node stores the same record.
        stamp_us: Option<u64>,
    },
    Poll {
        key: PartitionKey,
        from: PollFrom,
        count: u32,
        auto_commit: Option<ConsumerRef>,
    },
    GetOffset {
        key: PartitionKey,
        consumer: ConsumerRef,
    },
    StoreOffset {
        key: PartitionKey,
        consumer: ConsumerRef,
        offset: u64,
    },
    DeleteOffset {
        key: PartitionKey,
        consumer: ConsumerRef,
    },
    Flush {
        key: PartitionKey,
        fsync: bool,
    },
    OpenPartitions(Vec<(PartitionKey, PartitionSettings)>),
    DeletePartitions(Vec<PartitionKey>),
    Purge(Vec<PartitionKey>),
    DeleteSegments {
        key: PartitionKey,
        count: u32,
    },
    SetSettings(Vec<(PartitionKey, PartitionSettings)>),
}

#[derive(Debug)]
pub enum ShardOutcome {
    Appended {
        base_offset: u64,
        last_offset: u64,
    },
    Polled(ReadResult),
    Offset {
        current: Option<u64>,
        stored: Option<u64>,
    },
    Done,
    Failed(ErrorCode),
}
