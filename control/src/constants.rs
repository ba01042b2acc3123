//! Limits and fixed values of the control process and the CLI, in one place.

/// Where the control API listens when the configuration does not say (`[control] address`).
pub const CONTROL_ADDRESS_DEFAULT: &str = "127.0.0.1:9091";

/// The dataplane's binary name, looked up next to `riptide-control` unless `--dataplane-bin`.
pub const DATAPLANE_BINARY_NAME: &str = "riptide-dataplane";
/// The control process's binary name, which `riptidectl up` starts.
pub const CONTROL_BINARY_NAME: &str = "riptide-control";

/// First delay before restarting a crashed dataplane; doubled after each crash in a row.
pub const RESTART_BACKOFF_INITIAL_MS: u64 = 250;
/// Largest delay between restarts.
pub const RESTART_BACKOFF_MAX_MS: u64 = 30_000;
/// A dataplane that ran at least this long before crashing counts as healthy again: the backoff
/// and the crash count start over.
pub const RUN_STABLE_MS: u64 = 30_000;
/// Crashes in a row (each before `RUN_STABLE_MS`) after which riptide-control gives up and exits
/// non-zero, so that the service manager and the operator see a persistent failure.
pub const CONSECUTIVE_CRASHES_MAX: u32 = 20;
/// How long a stopping dataplane may take to flush and sync after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT_MS: u64 = 30_000;

/// Exit code of the dataplane and of riptide-control on a configuration error (sysexits'
/// EX_CONFIG); never restarted.
pub const EXIT_CODE_CONFIG: i32 = riptide_config::EXIT_CODE_CONFIG;
/// Exit code of riptide-control when the dataplane keeps crashing (sysexits' EX_SOFTWARE).
pub const EXIT_CODE_CRASH_LOOP: i32 = 70;

/// A stats snapshot older than this means the dataplane stopped publishing (it writes every
/// 500 ms): /status and /health say so.
pub const STATS_STALE_MS: u64 = 5_000;
/// Largest body accepted by PUT/POST /config.
pub const CONFIG_BODY_SIZE_MAX_BYTES: usize = 64 * 1024;

/// Largest payload `riptidectl message send` reads from stdin or a file, per message.
pub const MESSAGE_PAYLOAD_SIZE_MAX_BYTES: usize = 10 * 1024 * 1024;
/// Most messages one `riptidectl message send` sends (one per line of input).
pub const SEND_MESSAGES_MAX: usize = 100_000;
/// How long `riptidectl up` waits for the control API to answer.
pub const UP_TIMEOUT_MS: u64 = 30_000;
/// How long `riptidectl down` waits for the control process to go away.
pub const DOWN_TIMEOUT_MS: u64 = 60_000;
/// Timeout of one request to the control API.
pub const CONTROL_REQUEST_TIMEOUT_MS: u64 = 10_000;

/// Longest a client may take to complete its TLS handshake with the control API.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// TLS handshakes with the control API in progress at once; further connections wait in the
/// kernel's accept queue.
pub const TLS_HANDSHAKES_IN_FLIGHT_MAX: usize = 64;

/// Connecting to a node's replication port for an admin request (cluster status and membership).
pub const CLUSTER_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Longest a node may take to answer a status request.
pub const CLUSTER_STATUS_TIMEOUT_MS: u64 = 3_000;
/// Longest a membership change may take: adding a node waits until it caught up with the log.
pub const CLUSTER_MEMBERSHIP_TIMEOUT_MS: u64 = 120_000;
/// How many times a membership change follows "not the leader, ask that node" before giving up
/// (the leadership moved under it each time).
pub const CLUSTER_LEADER_REDIRECTS_MAX: usize = 3;

/// riptidectl's own environment variables. They share the `RIPTIDE_` prefix with the
/// configuration's `RIPTIDE_<SECTION>_<KEY>` overrides, which refuse unknown names, so they are
/// removed from the environment the configuration is loaded from and the processes started.
///
/// `RIPTIDE_CONTROL_TOKEN` is not among them on purpose: it is the configuration's
/// `control.token` too, so `RIPTIDE_CONTROL_TOKEN=... riptidectl up` starts riptide-control with
/// the token riptidectl then sends.
pub const CLIENT_ENV_VARIABLES: [&str; 6] = [
    "RIPTIDE_ADDRESS",
    "RIPTIDE_USERNAME",
    "RIPTIDE_PASSWORD",
    "RIPTIDE_CONTROL",
    "RIPTIDE_CONTEXT",
    "RIPTIDE_CONTROL_CA_FILE",
];
