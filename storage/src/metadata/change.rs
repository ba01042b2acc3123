//! Every mutation of the catalog. A change carries all of its values (ids, timestamps,
//! hashes) so that applying it is deterministic: the dataplane allocates ids, reads the clock
//! and hashes secrets before building the change, and replay after a restart reproduces the
//! same catalog byte for byte.

use serde::{Deserialize, Serialize};

use super::model::{Partition, Permissions, TopicOptions, TopicOptionsUpdate, UserStatus};

/// One catalog mutation; also the payload of one metadata log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    CreateStream {
        stream_id: u32,
        name: String,
        created_at_us: u64,
    },
    UpdateStream {
        stream_id: u32,
        name: String,
    },
    /// Deletes the stream with its topics, partitions and consumer groups.
    DeleteStream {
        stream_id: u32,
    },
    CreateTopic {
        stream_id: u32,
        topic_id: u32,
        name: String,
        created_at_us: u64,
        /// Ids must be `0..n` in order.
        partitions: Vec<Partition>,
        options: TopicOptions,
    },
    UpdateTopic {
        stream_id: u32,
        topic_id: u32,
        name: String,
        options: TopicOptionsUpdate,
    },
    DeleteTopic {
        stream_id: u32,
        topic_id: u32,
    },
    /// Appends partitions; their ids must continue the topic's `0..n`.
    CreatePartitions {
        stream_id: u32,
        topic_id: u32,
        partitions: Vec<Partition>,
    },
    /// Removes the `count` highest-numbered partitions, as Iggy does.
    DeletePartitions {
        stream_id: u32,
        topic_id: u32,
        count: u32,
    },
    CreateConsumerGroup {
        stream_id: u32,
        topic_id: u32,
        group_id: u32,
        name: String,
    },
    DeleteConsumerGroup {
        stream_id: u32,
        topic_id: u32,
        group_id: u32,
    },
    CreateUser {
        user_id: u32,
        username: String,
        password_hash: String,
        status: UserStatus,
        permissions: Option<Permissions>,
        created_at_us: u64,
    },
    /// `None` fields are left unchanged.
    UpdateUser {
        user_id: u32,
        username: Option<String>,
        status: Option<UserStatus>,
    },
    /// Deletes the user and its personal access tokens. The root user cannot be deleted.
    DeleteUser {
        user_id: u32,
    },
    ChangePassword {
        user_id: u32,
        password_hash: String,
    },
    UpdatePermissions {
        user_id: u32,
        permissions: Option<Permissions>,
    },
    CreatePersonalAccessToken {
        user_id: u32,
        name: String,
        token_hash: String,
        expiry_at_us: Option<u64>,
    },
    DeletePersonalAccessToken {
        user_id: u32,
        name: String,
    },
}
