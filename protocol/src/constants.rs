//! Limits and fixed sizes of the Iggy 0.11 wire protocol, in one place.
//!
//! Sizes are in bytes, durations in microseconds; every name carries its unit last.

/// Size of every VSR header (request, reply, eviction).
pub const HEADER_SIZE_BYTES: usize = 256;
/// Size of the header that opens every message batch (and every stored record).
pub const BATCH_HEADER_SIZE_BYTES: usize = 256;
/// Size of the fixed header in front of each message inside a batch.
pub const MESSAGE_HEADER_SIZE_BYTES: usize = 48;
/// Default upper bound of a whole frame (header + body); iggy's `message_bus.max_message_size`.
pub const FRAME_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Largest payload of a single message (`iggy_message.rs`).
pub const PAYLOAD_SIZE_MAX_BYTES: usize = 64_000_000;
/// Largest user-headers block of a single message.
pub const USER_HEADERS_SIZE_MAX_BYTES: usize = 100_000;
/// Largest timestamp delta inside one batch: it travels as a `u32` of microseconds.
pub const TIMESTAMP_DELTA_MAX_US: u64 = u32::MAX as u64;
/// Longest name (stream, topic, group, user, PAT, sdk name): one length byte.
pub const NAME_LENGTH_MAX_BYTES: usize = 255;
/// Longest messages key of `Partitioning::MessagesKey`.
pub const MESSAGES_KEY_LENGTH_MAX_BYTES: usize = 255;
/// Username length bounds enforced by the server.
pub const USERNAME_LENGTH_MIN_BYTES: usize = 3;
/// Username length bounds enforced by the server.
pub const USERNAME_LENGTH_MAX_BYTES: usize = 50;
/// Password length bounds enforced by the server.
pub const PASSWORD_LENGTH_MIN_BYTES: usize = 3;
/// Password length bounds enforced by the server.
pub const PASSWORD_LENGTH_MAX_BYTES: usize = 100;
/// Personal access tokens a user may hold.
pub const PERSONAL_ACCESS_TOKENS_PER_USER_MAX: u32 = 100;
/// Partitions created or deleted by one request (`MAX_PARTITIONS_PER_REQUEST`).
pub const PARTITIONS_PER_REQUEST_MAX: u32 = 1000;
/// Size of the poll reply prefix `[partition_id u32][current_offset u64][messages_count u32]`.
pub const POLL_REPLY_PREFIX_SIZE_BYTES: usize = 16;
/// Size of one send confirmation `[stream u32][topic u32][partition u32][base_offset u64]`.
pub const SEND_CONFIRMATION_SIZE_BYTES: usize = 20;
/// Size of an empty (success) result section: `[count u32 = 0]`.
pub const RESULT_SECTION_OK_SIZE_BYTES: usize = 4;
/// Size of one result entry `[index u32][result u32]`.
pub const RESULT_ENTRY_SIZE_BYTES: usize = 8;
/// Packed protocol version of the server we emulate: iggy 0.11.0 (`major<<20 | minor<<10 | patch`).
pub const SERVER_PROTOCOL_VERSION: u32 = 11 << PROTOCOL_VERSION_COMPONENT_BITS;
/// Oldest client protocol version accepted: the current one with the patch zeroed.
pub const SERVER_PROTOCOL_VERSION_MIN: u32 = SERVER_PROTOCOL_VERSION & !PROTOCOL_VERSION_PATCH_MASK;
/// Bits per component of a packed protocol version.
pub const PROTOCOL_VERSION_COMPONENT_BITS: u32 = 10;
/// Mask of the patch component of a packed protocol version.
pub const PROTOCOL_VERSION_PATCH_MASK: u32 = (1 << PROTOCOL_VERSION_COMPONENT_BITS) - 1;
/// Version string the login reply reports for the server.
pub const SERVER_VERSION: &str = "0.11.0";

const _: () = assert!(HEADER_SIZE_BYTES == 256 && BATCH_HEADER_SIZE_BYTES == 256);
const _: () = assert!(FRAME_SIZE_MAX_BYTES <= u32::MAX as usize);
const _: () = assert!(PAYLOAD_SIZE_MAX_BYTES < FRAME_SIZE_MAX_BYTES);
const _: () = assert!(SERVER_PROTOCOL_VERSION == 11264);
const _: () = assert!(
    SERVER_PROTOCOL_VERSION == iggy_binary_protocol::version::IGGY_PROTOCOL_VERSION,
    "the emulated server version must follow the iggy_binary_protocol crate we decode with"
);
