//! Limits and names shared by the C programs and the loader. The C side repeats the numeric limits
//! (`src/bpf/*.c`); the tests load the objects and check the map sizes against these constants.

/// Most listeners (network workers) one sk_reuseport group can steer between (`WORKERS_MAX` in C).
pub const REUSEPORT_WORKERS_MAX: u32 = 64;

/// Most TCP ports the XDP program matches for the appliance address (`XDP_PORTS_MAX` in C).
pub const XDP_PORTS_MAX: usize = 8;

/// Most rx queues the XSKMAP can hold a socket for (`XSKS_QUEUES_MAX` in C).
pub const XSKS_QUEUES_MAX: u32 = 64;

/// Kernel-visible program names (the kernel keeps at most 15 characters). They identify riptide's
/// programs when looking for stale attachments and for `riptide-steering show`.
pub const XDP_PROGRAM_NAME: &str = "riptide_xdp";
/// See [`XDP_PROGRAM_NAME`].
pub const REUSEPORT_PROGRAM_NAME: &str = "riptide_reuse";

/// Map names in `xdp_steer.c`. `xsks_map` is the name DPDK's af_xdp PMD looks up.
pub const XSKS_MAP_NAME: &str = "xsks_map";
/// See [`XSKS_MAP_NAME`].
pub const XDP_CONFIG_MAP_NAME: &str = "xdp_config";
/// See [`XSKS_MAP_NAME`].
pub const XDP_COUNTERS_MAP_NAME: &str = "xdp_counters";

/// Map names in `reuseport_steer.c`.
pub const REUSE_WORKERS_MAP_NAME: &str = "reuse_workers";
/// See [`REUSE_WORKERS_MAP_NAME`].
pub const REUSE_CONFIG_MAP_NAME: &str = "reuse_config";
/// See [`REUSE_WORKERS_MAP_NAME`].
pub const REUSE_CONNS_MAP_NAME: &str = "reuse_conns";
/// See [`REUSE_WORKERS_MAP_NAME`].
pub const REUSE_SELECTED_MAP_NAME: &str = "reuse_selected";
/// See [`REUSE_WORKERS_MAP_NAME`].
pub const REUSE_EVENTS_MAP_NAME: &str = "reuse_events";

/// Most lines of a verifier log kept in an error: the verdict is at the end, and a full log of a
/// large program can run to megabytes.
pub const VERIFIER_LOG_LINES_MAX: usize = 200;

/// Largest netlink reply the loader reads for one interface query.
pub const NETLINK_REPLY_BYTES_MAX: usize = 64 * 1024;

const _: () = assert!(XDP_PORTS_MAX > 0 && REUSEPORT_WORKERS_MAX > 0);
const _: () = assert!(XDP_PROGRAM_NAME.len() <= 15 && REUSEPORT_PROGRAM_NAME.len() <= 15);
