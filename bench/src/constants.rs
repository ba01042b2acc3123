//! Limits and defaults of riptide-bench, in one place. Defaults match iggy-bench
//! (`core/bench/src/args/defaults.rs`) so figures compare across tools.

/// Default payload size of one message (iggy-bench `-m`).
pub const MESSAGE_SIZE_DEFAULT_BYTES: u32 = 1000;
/// Every payload starts with the bench's own header (magic, producer, sequence, send time), so a
/// message cannot be smaller than that header.
pub const MESSAGE_SIZE_MIN_BYTES: u32 = crate::payload::PAYLOAD_HEADER_BYTES as u32;
/// Iggy's maximum payload of one message (`iggy_message.rs`).
pub const MESSAGE_SIZE_MAX_BYTES: u32 = 64_000_000;
/// Default messages per SendMessages batch (iggy-bench `-P`).
pub const MESSAGES_PER_BATCH_DEFAULT: u32 = 1000;
/// A batch larger than the default server frame limit (64 MiB) can never be accepted.
pub const BATCH_SIZE_MAX_BYTES: u64 = 64 * 1024 * 1024 - 4096;
/// Default batches per actor (iggy-bench `-b`).
pub const MESSAGE_BATCHES_DEFAULT: u64 = 1000;
/// Default number of producers and consumers (iggy-bench `-p` / `-c`).
pub const ACTORS_DEFAULT: u32 = 8;
/// Upper bound on actors of one kind, so a typo cannot open thousands of sockets.
pub const ACTORS_MAX: u32 = 1024;
/// Default partitions per topic in the balanced modes (iggy-bench `-a`).
pub const BALANCED_PARTITIONS_DEFAULT: u32 = 24;
/// Upper bound on partitions per topic requested by the bench.
pub const PARTITIONS_MAX: u32 = 1000;
/// Upper bound on streams created by the bench.
pub const STREAMS_MAX: u32 = 1000;
/// Default sampling period of the time series (iggy-bench `-t`).
pub const SAMPLING_TIME_DEFAULT_MS: u64 = 10;
/// Default moving-average window of the charts (iggy-bench `-W`).
pub const MOVING_AVERAGE_WINDOW_DEFAULT: u32 = 20;
/// Default in-flight requests per connection: 1 is the SDK's lockstep behaviour.
pub const INFLIGHT_DEFAULT: u32 = 1;
/// Upper bound on pipelined requests per connection.
pub const INFLIGHT_MAX: u32 = 1024;
/// Default server address (iggy-server's TCP default).
pub const TCP_SERVER_ADDRESS_DEFAULT: &str = "127.0.0.1:8090";
/// The memif client's address on the link unless `--ip-address` (the appliance's is configured).
pub const MEMIF_CLIENT_ADDRESS_DEFAULT: &str = "10.77.0.2/24";
/// The memif client's EAL file prefix: never the appliance's `riptide-<port>`.
pub const MEMIF_CLIENT_FILE_PREFIX_DEFAULT: &str = "riptide-bench";
/// The memif client's EAL memory: its mempool (8191 mbufs of 2 KiB) and DPDK's own.
pub const MEMIF_CLIENT_MEMORY_MB_DEFAULT: u32 = 512;
/// Default root credentials of iggy-server (and riptide) in development.
pub const USERNAME_DEFAULT: &str = "iggy";
pub const PASSWORD_DEFAULT: &str = "iggy";
/// Stream and topic names created by the bench, as iggy-bench names them.
pub const STREAM_NAME_PREFIX: &str = "bench-stream-";
pub const TOPIC_NAME: &str = "topic-1";
/// Largest value tracked by the latency histograms: 1 hour in microseconds.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;
/// Significant figures of the HDR histograms (3 = 0.1 % resolution).
pub const HISTOGRAM_SIGNIFICANT_FIGURES: u8 = 3;
/// A consumer that receives nothing new for this long declares the remaining messages lost.
pub const CONSUMER_IDLE_TIMEOUT_MS: u64 = 10_000;
/// A request without a reply for this long fails the actor (a hung server must not hang the run).
pub const REQUEST_TIMEOUT_MS: u64 = 60_000;
/// Pause between two empty polls, so an idle consumer does not spin a core.
pub const EMPTY_POLL_BACKOFF_MS: u64 = 1;
/// Largest reply frame the client accepts (the server's default frame limit).
pub const REPLY_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Refresh period of the progress bar.
pub const PROGRESS_REFRESH_MS: u64 = 100;
/// Mismatches listed in a verification report; the rest are only counted.
pub const VERIFY_ERRORS_LISTED_MAX: usize = 20;
/// Size of the PNG charts.
pub const CHART_WIDTH_PX: u32 = 1200;
pub const CHART_HEIGHT_PX: u32 = 600;
/// Timeout of connecting and of the setup requests (login, create stream/topic).
pub const SETUP_TIMEOUT_MS: u64 = 10_000;

const _: () = assert!(MESSAGE_SIZE_MIN_BYTES <= MESSAGE_SIZE_DEFAULT_BYTES);
const _: () = assert!(INFLIGHT_DEFAULT >= 1 && INFLIGHT_DEFAULT <= INFLIGHT_MAX);
