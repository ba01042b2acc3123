//! Limits of the metadata store. Every count and length that the catalog accepts or the
//! store reads from disk is bounded by one of these, so a corrupt file or a hostile request
//! can never make the process allocate without bound.

/// Names of streams, topics and consumer groups: Iggy's `WireName`, 1..=255 bytes of UTF-8.
pub const NAME_LENGTH_MIN_BYTES: usize = 1;
/// See [`NAME_LENGTH_MIN_BYTES`].
pub const NAME_LENGTH_MAX_BYTES: usize = 255;
/// Usernames, as Iggy bounds them.
pub const USERNAME_LENGTH_MIN_BYTES: usize = 3;
/// See [`USERNAME_LENGTH_MIN_BYTES`].
pub const USERNAME_LENGTH_MAX_BYTES: usize = 50;
/// Personal access token names, as Iggy bounds them.
pub const TOKEN_NAME_LENGTH_MIN_BYTES: usize = 3;
/// See [`TOKEN_NAME_LENGTH_MIN_BYTES`].
pub const TOKEN_NAME_LENGTH_MAX_BYTES: usize = 30;
/// Stored hashes (argon2id PHC strings, hex SHA-256 digests) are far shorter; the bound only
/// guards against garbage.
pub const HASH_LENGTH_MAX_BYTES: usize = 512;

/// Streams in the catalog.
pub const STREAMS_COUNT_MAX: usize = 100_000;
/// Topics of one stream.
pub const TOPICS_PER_STREAM_COUNT_MAX: usize = 100_000;
/// Partitions of one topic (Iggy caps `partitions_count` of one request at 1000 as well).
pub const PARTITIONS_PER_TOPIC_COUNT_MAX: usize = 10_000;
/// Partitions added or removed by one change.
pub const PARTITIONS_PER_CHANGE_COUNT_MAX: usize = 1_000;
/// Consumer groups of one topic.
pub const CONSUMER_GROUPS_PER_TOPIC_COUNT_MAX: usize = 100_000;
/// Users in the catalog.
pub const USERS_COUNT_MAX: usize = 100_000;
/// Personal access tokens of one user (Iggy's `max_tokens_per_user`).
pub const TOKENS_PER_USER_COUNT_MAX: usize = 100;
/// Stream entries plus topic entries of one user's permissions.
pub const PERMISSION_ENTRIES_COUNT_MAX: usize = 100_000;

/// Largest encoded change in one log record. A `CreateUser` with
/// [`PERMISSION_ENTRIES_COUNT_MAX`] permission entries stays below it.
pub const RECORD_PAYLOAD_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest snapshot the store will read back.
pub const SNAPSHOT_PAYLOAD_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Default size of the log past which it is compacted into a new snapshot.
pub const LOG_COMPACTION_THRESHOLD_BYTES_DEFAULT: u64 = 4 * 1024 * 1024;
/// Smallest allowed compaction threshold (tests use small values to compact often).
pub const LOG_COMPACTION_THRESHOLD_BYTES_MIN: u64 =
    riptide_config::limits::METADATA_LOG_COMPACTION_MIN_BYTES;

/// Id of the root user, created by the dataplane at first boot.
pub const ROOT_USER_ID: u32 = 0;

/// Bytes of randomness in a personal access token.
pub const TOKEN_RANDOM_BYTES: usize = 32;

// A record carrying a maximal permission set must fit: each topic entry costs at most
// 4 bytes of id varint plus 4 flags plus map overhead, well under 16 bytes.
const _: () = assert!(PERMISSION_ENTRIES_COUNT_MAX * 16 < RECORD_PAYLOAD_MAX_BYTES);
const _: () = assert!(LOG_COMPACTION_THRESHOLD_BYTES_MIN <= LOG_COMPACTION_THRESHOLD_BYTES_DEFAULT);
const _: () = assert!(USERNAME_LENGTH_MAX_BYTES <= NAME_LENGTH_MAX_BYTES);
