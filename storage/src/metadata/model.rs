//! The records the catalog holds: streams, topics, partitions, consumer groups, users with
//! their permissions, and personal access tokens. Plain data; every field is what the
//! dataplane needs to answer Iggy's metadata commands after a restart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A stream: a named namespace of topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    pub id: u32,
    pub name: String,
    pub created_at_us: u64,
    pub topics: BTreeMap<u32, Topic>,
}

/// A topic: partitions `0..partitions.len()` plus its options and consumer-group definitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub id: u32,
    pub name: String,
    pub created_at_us: u64,
    /// Invariant: `partitions[i].id == i`, as Iggy numbers partitions `0..count`.
    pub partitions: Vec<Partition>,
    pub options: TopicOptions,
    pub consumer_groups: BTreeMap<u32, ConsumerGroup>,
}

/// One partition's identity; its log and consumer offsets live in the storage shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub id: u32,
    pub created_at_us: u64,
}

/// A consumer-group definition. Membership is volatile and lives in the dataplane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroup {
    pub id: u32,
    pub name: String,
}

/// Compression codes of Iggy's protocol (1 none, 2 gzip). Placeholders: nothing compresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompressionAlgorithm {
    #[default]
    None,
    Gzip,
}

/// When a write counts as done: `Persisted` after stable storage, `Replicated` (on one node)
/// from memory. The server's configured floor may strengthen it; the catalog keeps what the
/// topic asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    #[default]
    Replicated,
    Persisted,
}

/// The topic option keys Iggy 0.11 accepts, in catalog order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicOptionKey {
    CompressionAlgorithm,
    MessageExpiry,
    MaxTopicSize,
    SegmentSize,
    Durability,
    ConsumerOffsetDurability,
    MessagesRequiredToSave,
    SizeOfMessagesRequiredToSave,
    PreallocateSegments,
}

impl TopicOptionKey {
    /// Every key, in the order Iggy's catalog lists them.
    pub const ALL: [TopicOptionKey; 9] = [
        TopicOptionKey::CompressionAlgorithm,
        TopicOptionKey::MessageExpiry,
        TopicOptionKey::MaxTopicSize,
        TopicOptionKey::SegmentSize,
        TopicOptionKey::Durability,
        TopicOptionKey::ConsumerOffsetDurability,
        TopicOptionKey::MessagesRequiredToSave,
        TopicOptionKey::SizeOfMessagesRequiredToSave,
        TopicOptionKey::PreallocateSegments,
    ];

    /// The key's name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            TopicOptionKey::CompressionAlgorithm => "compression_algorithm",
            TopicOptionKey::MessageExpiry => "message_expiry",
            TopicOptionKey::MaxTopicSize => "max_topic_size",
            TopicOptionKey::SegmentSize => "segment_size",
            TopicOptionKey::Durability => "durability",
            TopicOptionKey::ConsumerOffsetDurability => "consumer_offset_durability",
            TopicOptionKey::MessagesRequiredToSave => "messages_required_to_save",
            TopicOptionKey::SizeOfMessagesRequiredToSave => "size_of_messages_required_to_save",
            TopicOptionKey::PreallocateSegments => "preallocate_segments",
        }
    }

    /// The key named `name` on the wire, if it is one.
    pub fn from_name(name: &str) -> Option<TopicOptionKey> {
        TopicOptionKey::ALL
            .into_iter()
            .find(|key| key.name() == name)
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Which topic options the client sent explicitly; the others were derived from defaults at
/// admission. GetTopic reports the two groups in separate blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplicitOptions {
    bits: u16,
}

impl ExplicitOptions {
    /// No option set explicitly.
    pub const NONE: ExplicitOptions = ExplicitOptions { bits: 0 };

    /// Whether `key` was sent by the client.
    pub const fn contains(self, key: TopicOptionKey) -> bool {
        self.bits & key.bit() != 0
    }

    /// This set plus `key`.
    #[must_use]
    pub const fn with(self, key: TopicOptionKey) -> ExplicitOptions {
        ExplicitOptions {
            bits: self.bits | key.bit(),
        }
    }

    /// The explicit keys, in catalog order.
    pub fn keys(self) -> impl Iterator<Item = TopicOptionKey> {
        TopicOptionKey::ALL
            .into_iter()
            .filter(move |key| self.contains(*key))
    }

    /// The keys derived from defaults (not sent by the client), in catalog order.
    pub fn derived_keys(self) -> impl Iterator<Item = TopicOptionKey> {
        TopicOptionKey::ALL
            .into_iter()
            .filter(move |key| !self.contains(*key))
    }

    pub(crate) const fn is_known(self) -> bool {
        self.bits >> TopicOptionKey::ALL.len() == 0
    }
}

/// A topic's resolved options (explicit values and derived defaults alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicOptions {
    pub compression: CompressionAlgorithm,
    /// `u64::MAX` = never expire.
    pub message_expiry_us: u64,
    /// `u64::MAX` = unlimited.
    pub max_topic_size_bytes: u64,
    pub segment_size_bytes: u64,
    pub durability: Durability,
    pub consumer_offset_durability: Durability,
    pub messages_required_to_save: u32,
    pub size_of_messages_required_to_save_bytes: u64,
    pub preallocate_segments: bool,
    pub explicit: ExplicitOptions,
}

impl Default for TopicOptions {
    /// Iggy 0.11's catalog defaults, none of them explicit.
    fn default() -> Self {
        TopicOptions {
            compression: CompressionAlgorithm::None,
            message_expiry_us: u64::MAX,
            max_topic_size_bytes: u64::MAX,
            segment_size_bytes: 1024 * 1024 * 1024,
            durability: Durability::Replicated,
            consumer_offset_durability: Durability::Replicated,
            messages_required_to_save: 1024,
            size_of_messages_required_to_save_bytes: 1024 * 1024,
            preallocate_segments: false,
            explicit: ExplicitOptions::NONE,
        }
    }
}

/// The options an UpdateTopic may patch (Iggy's `UPDATABLE_TOPIC_OPTION_KEYS`). A key
/// present here becomes explicit; an absent one keeps its value and provenance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicOptionsUpdate {
    pub compression: Option<CompressionAlgorithm>,
    pub message_expiry_us: Option<u64>,
    pub max_topic_size_bytes: Option<u64>,
}

/// Whether a user may log in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserStatus {
    #[default]
    Active,
    Inactive,
}

/// A user. `password_hash` is an argon2id PHC string (see `hash_password`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: u32,
    pub username: String,
    pub password_hash: String,
    pub status: UserStatus,
    pub permissions: Option<Permissions>,
    pub created_at_us: u64,
    /// Personal access tokens by name.
    pub tokens: BTreeMap<String, PersonalAccessToken>,
}

/// A personal access token: only the hash of the token is kept (see `hash_token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalAccessToken {
    pub name: String,
    pub token_hash: String,
    /// `None` = never expires.
    pub expiry_at_us: Option<u64>,
}

/// Iggy's permission model: global flags, extended per stream and per topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    pub global: GlobalPermissions,
    /// Per-stream permissions by stream id (an empty map is Iggy's `None`).
    pub streams: BTreeMap<u32, StreamPermissions>,
}

impl Permissions {
    /// Everything allowed: the root user's permissions.
    pub fn root() -> Permissions {
        Permissions {
            global: GlobalPermissions {
                manage_servers: true,
                read_servers: true,
                manage_users: true,
                read_users: true,
                manage_streams: true,
                read_streams: true,
                manage_topics: true,
                read_topics: true,
                poll_messages: true,
                send_messages: true,
            },
            streams: BTreeMap::new(),
        }
    }

    /// Stream entries plus topic entries, the size that the catalog bounds.
    pub fn entries_count(&self) -> usize {
        self.streams
            .values()
            .map(|stream| 1 + stream.topics.len())
            .sum()
    }
}

/// The 10 global flags, in Iggy's wire order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalPermissions {
    pub manage_servers: bool,
    pub read_servers: bool,
    pub manage_users: bool,
    pub read_users: bool,
    pub manage_streams: bool,
    pub read_streams: bool,
    pub manage_topics: bool,
    pub read_topics: bool,
    pub poll_messages: bool,
    pub send_messages: bool,
}

/// The 6 per-stream flags, in Iggy's wire order, plus per-topic permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPermissions {
    pub manage_stream: bool,
    pub read_stream: bool,
    pub manage_topics: bool,
    pub read_topics: bool,
    pub poll_messages: bool,
    pub send_messages: bool,
    /// Per-topic permissions by topic id (an empty map is Iggy's `None`).
    pub topics: BTreeMap<u32, TopicPermissions>,
}

/// The 4 per-topic flags, in Iggy's wire order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPermissions {
    pub manage_topic: bool,
    pub read_topic: bool,
    pub poll_messages: bool,
    pub send_messages: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_and_derived_keys_partition_the_catalog() {
        let explicit = ExplicitOptions::NONE
            .with(TopicOptionKey::SegmentSize)
            .with(TopicOptionKey::Durability);
        let names: Vec<_> = explicit.keys().map(TopicOptionKey::name).collect();
        assert_eq!(names, ["segment_size", "durability"]);
        assert_eq!(
            explicit.derived_keys().count(),
            TopicOptionKey::ALL.len() - 2
        );
        assert!(explicit.derived_keys().all(|key| !explicit.contains(key)));
        assert!(explicit.is_known());
        assert!(!ExplicitOptions { bits: 1 << 12 }.is_known());
    }

    #[test]
    fn option_keys_round_trip_by_name() {
        for key in TopicOptionKey::ALL {
            assert_eq!(TopicOptionKey::from_name(key.name()), Some(key));
        }
        assert_eq!(TopicOptionKey::from_name("enforce_fsync"), None);
    }
}
