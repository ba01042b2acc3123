//! The schema of `riptide.toml`: the embedded defaults, the operator's file on top, the environment on top of both.
//!
//! Loading works on TOML values first (so a partial file only changes the keys it names and an
//! environment variable is typed by the default it replaces), then deserialises into [`Config`] with
//! unknown keys refused, then validates the relations between values. Every error names the key.

pub use crate::control::ControlConfig;
pub use crate::http::HttpConfig;
use crate::limits::{
    DEFERRED_OFFSET_WRITE_DELAY_MAX_MS, IO_BUFFER_MAX_BYTES, IO_BUFFER_MIN_BYTES,
    MEMORY_SYNC_INTERVAL_MAX_MS, MEMORY_SYNC_SIZE_MAX_BYTES, MEMORY_SYNC_SIZE_MIN_BYTES,
    METADATA_LOG_COMPACTION_MAX_BYTES, METADATA_LOG_COMPACTION_MIN_BYTES,
    READAHEAD_SHARD_READS_IN_FLIGHT_LIMIT, SEGMENT_SIZE_MAX_BYTES, SEGMENT_SIZE_MIN_BYTES,
    SEGMENT_SIZE_MULTIPLE_BYTES,
};
pub use crate::tls::{KtlsMode, TlsConfig};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The embedded default configuration, with every key documented.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../riptide.toml");

/// Exit code of the dataplane on a configuration error (sysexits' EX_CONFIG); the supervisor treats
/// it as fatal instead of restarting into the same error.
pub const EXIT_CODE_CONFIG: i32 = 78;

/// What [`Config::masked`] shows instead of a secret.
pub const SECRET_MASK: &str = "********";

/// Environment prefix of the general override scheme `RIPTIDE_<SECTION>_<KEY>`.
pub const ENV_PREFIX: &str = "RIPTIDE_";

/// iggy-server's drop-in variables and the keys they set.
pub const IGGY_DROP_IN_VARIABLES: [(&str, &str, &str); 5] = [
    ("IGGY_TCP_ADDRESS", "tcp", "address"),
    ("IGGY_HTTP_ADDRESS", "http", "address"),
    ("IGGY_SYSTEM_PATH", "system", "path"),
    ("IGGY_ROOT_USERNAME", "root", "username"),
    ("IGGY_ROOT_PASSWORD", "root", "password"),
];

/// Most threads of each kind that `0 = auto` picks.
pub const AUTO_THREADS_MAX: usize = 4;
/// Most threads of each kind that may be configured.
pub const THREADS_MAX: usize = 64;
/// IP MTU bounds of `[dpdk] mtu` before the port is asked: below 576 (the datagram every IPv4
/// host must take) TCP segments become tiny; 9600 covers the jumbo frames NICs and switches take.
pub const DPDK_MTU_MIN: u16 = 576;
pub const DPDK_MTU_MAX: u16 = 9600;
/// The longest nap of a storage shard fed by polling lcores (`dpdk.shard_nap_us`).
pub const DPDK_SHARD_NAP_MAX_US: u64 = 10_000;
/// Smallest frame limit: a header plus a small body.
pub const FRAME_SIZE_MIN_BYTES: u64 = 4096;
/// Largest frame limit: the size field is a u32.
pub const FRAME_SIZE_MAX_BYTES: u64 = u32::MAX as u64;
/// Longest cluster or node name: what an Iggy name field (`WireName`) may carry.
pub const CLUSTER_NAME_LENGTH_MAX_BYTES: usize = 255;

/// Why a configuration was refused. Each variant names the key and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("configuration: {message}")]
    Schema { message: String },
    #[error("environment variable {variable}: {message}")]
    Environment { variable: String, message: String },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub system: SystemConfig,
    pub tcp: TcpConfig,
    pub root: RootConfig,
    pub auth: AuthConfig,
    pub dataplane: DataplaneConfig,
    pub limits: LimitsConfig,
    pub storage: StorageConfig,
    pub retention: RetentionConfig,
    pub heartbeat: HeartbeatConfig,
    pub steering: SteeringConfig,
    pub dpdk: DpdkConfig,
    pub cluster: ClusterConfig,
    pub control: ControlConfig,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    pub address: String,
    pub connections_max: u32,
    /// Seconds of silence before a connection's peer is probed, and between probes; a peer that
    /// answers none of [`TCP_KEEPALIVE_PROBES`] probes is closed. 0 = no probes.
    pub keepalive_s: u64,
}

/// Unanswered keep-alive probes after which a peer is taken for dead (TCP_KEEPCNT).
pub const TCP_KEEPALIVE_PROBES: u32 = 3;
/// Longest `tcp.keepalive_s`: two hours, Linux's default keep-alive idle time.
pub const TCP_KEEPALIVE_MAX_S: u64 = 7_200;

impl TcpConfig {
    /// How long a silent peer keeps its connection: the idle time plus every unanswered probe
    /// (`keepalive_s` × (1 + [`TCP_KEEPALIVE_PROBES`])); None when keep-alive is off.
    pub fn keepalive_dead_after(&self) -> Option<std::time::Duration> {
        (self.keepalive_s > 0).then(|| {
            std::time::Duration::from_secs(self.keepalive_s * (1 + u64::from(TCP_KEEPALIVE_PROBES)))
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RootConfig {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a password login that passed argon2 is remembered; 0 = hash every login.
    pub verified_login_ttl_s: u64,
    /// Wrong passwords from one peer address before its logins back off; 0 = never.
    pub login_backoff_after_failures: u32,
    /// Longest refusal window of the back-off.
    pub login_backoff_max_ms: u64,
}

/// Longest `auth.verified_login_ttl_s`: a day.
pub const VERIFIED_LOGIN_TTL_MAX_S: u64 = 86_400;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Kernel,
    Dpdk,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    pub backend: Backend,
    pub network_workers: usize,
    pub storage_shards: usize,
    pub cores: Vec<usize>,
    pub ring_capacity: usize,
    pub connection_inflight_max: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub frame_size_max_bytes: u64,
    pub batch_size_max_bytes: u64,
    pub batch_messages_max: u32,
    pub poll_messages_max: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AckFloor {
    Persisted,
    Memory,
    /// Cluster mode only: every topic is acknowledged once a majority of the nodes hold a send
    /// on stable storage, whatever its `durability` option asks.
    Replicated,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DirectIo {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub ack_floor: AckFloor,
    pub segment_size_bytes: u64,
    pub preallocate_segments: bool,
    pub direct_io: DirectIo,
    pub memory_flush_messages: u64,
    pub memory_flush_bytes: u64,
    pub memory_flush_interval_ms: u64,
    pub memory_sync_interval_ms: u64,
    pub memory_sync_bytes: u64,
    pub auto_commit_write_delay_ms: u64,
    pub read_cache_bytes: u64,
    pub write_buffer_bytes: u64,
    pub read_buffer_bytes: u64,
    pub readahead_reads_in_flight: u64,
    pub io_uring_entries: u32,
    pub metadata_log_compaction_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub cleaner_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    pub interval_ms: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SteeringPolicy {
    Hash,
    LeastConnections,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SteeringConfig {
    pub policy: SteeringPolicy,
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DpdkConfig {
    pub lcores: Vec<usize>,
    pub cpus: Vec<usize>,
    pub memory_channels: u32,
    pub no_huge: bool,
    pub memory_mb: u32,
    pub allow_pci: Vec<String>,
    pub vdevs: Vec<String>,
    pub ip_address: String,
    pub prefix_len: u8,
    pub gateway: String,
    pub port: u16,
    pub idle_backoff_us: u64,
    /// 0: a storage shard with empty rings blocks until a polling lcore wakes it (an eventfd
    /// write on the lcore per request that finds it asleep). N: for a while after its last
    /// request a shard waits at most N us at a time without asking to be woken, so the lcores
    /// push requests with no system call; the shard's timed waits carry the cost instead.
    pub shard_nap_us: u64,
    pub socket_rx_buffer_bytes: usize,
    pub socket_tx_buffer_bytes: usize,
    pub mtu: u16,
}

/// `[cluster]`: the names this node gives itself and its cluster (GetClusterMetadata) and, when
/// enabled, replication.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub enabled: bool,
    pub name: String,
    pub node_name: String,
    pub node_id: u64,
    pub replication_address: String,
    pub members: Vec<ClusterMember>,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub write_timeout_ms: u64,
    pub snapshot_every_entries: u64,
    pub secret: String,
}

/// One node of the cluster as the configuration names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterMember {
    pub id: u64,
    pub name: String,
    pub replication_address: String,
    pub tcp_address: String,
    /// Where riptide-control serves the HTTP API on that node (advertised in
    /// GetClusterMetadata); empty when it does not.
    #[serde(default)]
    pub http_address: String,
}

/// Shortest `cluster.secret` accepted.
pub const CLUSTER_SECRET_MIN_BYTES: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
}

impl Config {
    /// The embedded defaults, the file at `path` (if any) and the process environment.
    ///
    /// # Errors
    /// Any [`ConfigError`]: unreadable file, bad TOML, unknown key, wrong type, invalid value.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let file_text = match path {
            Some(path) => Some((
                path.to_path_buf(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?,
            )),
            None => None,
        };
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(
            file_text.as_ref().map(|(p, t)| (p.as_path(), t.as_str())),
            &env,
        )
    }

    /// Like [`Config::load`] with the file text and environment given (tests, the control process).
    ///
    /// # Errors
    /// Any [`ConfigError`].
    pub fn load_from(
        file: Option<(&Path, &str)>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut merged = parse_toml(Path::new("<embedded default>"), DEFAULT_CONFIG_TOML)?;
        if let Some((path, text)) = file {
            let overlay = parse_toml(path, text)?;
            merge_tables(&mut merged, overlay, "")?;
        }
        apply_environment(&mut merged, env)?;
        let config: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Schema {
                    message: e.message().to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the relations between values that types cannot express.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tcp_address()?;
        if self.tcp.connections_max == 0 {
            return Err(ConfigError::invalid(
                "tcp.connections_max",
                "must be at least 1",
            ));
        }
        if self.tcp.keepalive_s > TCP_KEEPALIVE_MAX_S {
            return Err(ConfigError::invalid(
                "tcp.keepalive_s",
                format!("must be at most {TCP_KEEPALIVE_MAX_S} (two hours); 0 turns probes off"),
            ));
        }
        validate_display_name("cluster.name", &self.cluster.name)?;
        validate_display_name("cluster.node_name", &self.cluster.node_name)?;
        validate_name("root.username", &self.root.username, 3, 50)?;
        validate_name("root.password", &self.root.password, 3, 100)?;
        if self.dataplane.network_workers > THREADS_MAX {
            return Err(ConfigError::invalid(
                "dataplane.network_workers",
                format!("at most {THREADS_MAX} (0 = one per core)"),
            ));
        }
        if self.dataplane.storage_shards > THREADS_MAX {
            return Err(ConfigError::invalid(
                "dataplane.storage_shards",
                format!("at most {THREADS_MAX} (0 = one per core)"),
            ));
        }
        // A frame may need two slots of one ring (see dispatch::SHARD_REQUESTS_PER_LINK_PER_FRAME_MAX).
        if !(2..=1 << 20).contains(&self.dataplane.ring_capacity) {
            return Err(ConfigError::invalid(
                "dataplane.ring_capacity",
                "must be between 2 and 1048576 slots",
            ));
        }
        if !(1..=4096).contains(&self.dataplane.connection_inflight_max) {
            return Err(ConfigError::invalid(
                "dataplane.connection_inflight_max",
                "must be between 1 and 4096",
            ));
        }
        self.validate_limits()?;
        self.validate_storage()?;
        crate::http::validate(&self.http, self.tcp.connections_max)?;
        crate::control::validate(&self.control)?;
        crate::tls::validate(&self.tls)?;
        if self.tls.enabled && self.http.enabled {
            crate::http::validate_dataplane_tls(&self.http, &self.dataplane_address())?;
        }
        if self.tls.enabled && self.tls.mutual() && self.http.enabled {
            return Err(ConfigError::invalid(
                "http.enabled",
                "Iggy's HTTP API reaches the dataplane over the binary protocol, and with \
                 tls.client_ca_file set the dataplane wants a client certificate its pool cannot \
                 present: set http.enabled = false, or leave tls.client_ca_file empty",
            ));
        }
        if self.auth.verified_login_ttl_s > VERIFIED_LOGIN_TTL_MAX_S {
            return Err(ConfigError::invalid(
                "auth.verified_login_ttl_s",
                format!(
                    "must be at most {VERIFIED_LOGIN_TTL_MAX_S} (a day); 0 turns the cache off"
                ),
            ));
        }
        if self.auth.login_backoff_after_failures > 0
            && !(1..=3_600_000).contains(&self.auth.login_backoff_max_ms)
        {
            return Err(ConfigError::invalid(
                "auth.login_backoff_max_ms",
                "must be between 1 and 3600000 (an hour)",
            ));
        }
        if self.heartbeat.interval_ms == 0 {
            return Err(ConfigError::invalid(
                "heartbeat.interval_ms",
                "must be positive",
            ));
        }
        if self.retention.cleaner_interval_ms == 0 {
            return Err(ConfigError::invalid(
                "retention.cleaner_interval_ms",
                "must be positive",
            ));
        }
        if self.dataplane.backend == Backend::Dpdk {
            self.validate_dpdk()?;
        }
        self.validate_cluster()?;
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        if !cluster.enabled {
            if self.storage.ack_floor == AckFloor::Replicated {
                return Err(ConfigError::invalid(
                    "storage.ack_floor",
                    "\"replicated\" needs [cluster] enabled = true (one node has nothing to replicate to)",
                ));
            }
            return Ok(());
        }
        let address = |key: &str, text: &str| {
            text.parse::<SocketAddr>().map(drop).map_err(|_| {
                ConfigError::invalid(key, format!("'{text}' is not an ip:port address"))
            })
        };
        address("cluster.replication_address", &cluster.replication_address)?;
        let mut ids = std::collections::BTreeSet::new();
        for member in &cluster.members {
            if member.id == 0 || !ids.insert(member.id) {
                return Err(ConfigError::invalid(
                    "cluster.members",
                    format!(
                        "ids must be unique and positive (id {} repeats or is 0)",
                        member.id
                    ),
                ));
            }
            validate_name("cluster.members.name", &member.name, 1, 255)?;
            address(
                "cluster.members.replication_address",
                &member.replication_address,
            )?;
            address("cluster.members.tcp_address", &member.tcp_address)?;
            if !member.http_address.is_empty() {
                address("cluster.members.http_address", &member.http_address)?;
            }
        }
        if !ids.contains(&cluster.node_id) {
            return Err(ConfigError::invalid(
                "cluster.node_id",
                format!("{} is not among cluster.members", cluster.node_id),
            ));
        }
        if cluster.heartbeat_interval_ms == 0
            || cluster.heartbeat_interval_ms >= cluster.election_timeout_min_ms
            || cluster.election_timeout_min_ms >= cluster.election_timeout_max_ms
        {
            return Err(ConfigError::invalid(
                "cluster.heartbeat_interval_ms / election_timeout_min_ms / election_timeout_max_ms",
                "need 0 < heartbeat interval < election timeout min < election timeout max",
            ));
        }
        if cluster.write_timeout_ms == 0 || cluster.snapshot_every_entries == 0 {
            return Err(ConfigError::invalid(
                "cluster.write_timeout_ms / cluster.snapshot_every_entries",
                "must be positive",
            ));
        }
        if cluster.secret.len() < CLUSTER_SECRET_MIN_BYTES {
            return Err(ConfigError::invalid(
                "cluster.secret",
                format!("set a secret of at least {CLUSTER_SECRET_MIN_BYTES} bytes, the same on every member (RIPTIDE_CLUSTER_SECRET)"),
            ));
        }
        Ok(())
    }

    /// This node's entry among `cluster.members` (cluster mode).
    pub fn cluster_self(&self) -> Option<&ClusterMember> {
        self.cluster
            .members
            .iter()
            .find(|member| member.id == self.cluster.node_id)
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        if !(FRAME_SIZE_MIN_BYTES..=FRAME_SIZE_MAX_BYTES).contains(&limits.frame_size_max_bytes) {
            return Err(ConfigError::invalid(
                "limits.frame_size_max_bytes",
                format!("must be between {FRAME_SIZE_MIN_BYTES} and {FRAME_SIZE_MAX_BYTES}"),
            ));
        }
        if limits.batch_size_max_bytes > limits.frame_size_max_bytes {
            return Err(ConfigError::invalid(
                "limits.batch_size_max_bytes",
                "cannot exceed limits.frame_size_max_bytes (a batch travels in one frame)",
            ));
        }
        if limits.batch_messages_max == 0 || limits.poll_messages_max == 0 {
            return Err(ConfigError::invalid(
                "limits.batch_messages_max / limits.poll_messages_max",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        let storage = &self.storage;
        if !(SEGMENT_SIZE_MIN_BYTES..=SEGMENT_SIZE_MAX_BYTES).contains(&storage.segment_size_bytes)
        {
            return Err(ConfigError::invalid(
                "storage.segment_size_bytes",
                format!("must be between {SEGMENT_SIZE_MIN_BYTES} and {SEGMENT_SIZE_MAX_BYTES}"),
            ));
        }
        if !storage
            .segment_size_bytes
            .is_multiple_of(SEGMENT_SIZE_MULTIPLE_BYTES)
        {
            return Err(ConfigError::invalid(
                "storage.segment_size_bytes",
                format!("must be a multiple of {SEGMENT_SIZE_MULTIPLE_BYTES} (a direct I/O block)"),
            ));
        }
        if storage.memory_flush_interval_ms == 0 {
            return Err(ConfigError::invalid(
                "storage.memory_flush_interval_ms",
                "must be positive",
            ));
        }
        if !(1..=MEMORY_SYNC_INTERVAL_MAX_MS).contains(&storage.memory_sync_interval_ms) {
            return Err(ConfigError::invalid(
                "storage.memory_sync_interval_ms",
                format!("must be between 1 and {MEMORY_SYNC_INTERVAL_MAX_MS} (the longest a memory acknowledgement waits for its fdatasync)"),
            ));
        }
        if !(MEMORY_SYNC_SIZE_MIN_BYTES..=MEMORY_SYNC_SIZE_MAX_BYTES)
            .contains(&storage.memory_sync_bytes)
        {
            return Err(ConfigError::invalid(
                "storage.memory_sync_bytes",
                format!(
                    "must be between {MEMORY_SYNC_SIZE_MIN_BYTES} and {MEMORY_SYNC_SIZE_MAX_BYTES}"
                ),
            ));
        }
        if storage.auto_commit_write_delay_ms > DEFERRED_OFFSET_WRITE_DELAY_MAX_MS {
            return Err(ConfigError::invalid(
                "storage.auto_commit_write_delay_ms",
                format!("must be at most {DEFERRED_OFFSET_WRITE_DELAY_MAX_MS} (0 = sync every auto-commit)"),
            ));
        }
        let buffer_range = IO_BUFFER_MIN_BYTES..=IO_BUFFER_MAX_BYTES;
        for (key, bytes) in [
            ("storage.write_buffer_bytes", storage.write_buffer_bytes),
            ("storage.read_buffer_bytes", storage.read_buffer_bytes),
        ] {
            if !buffer_range.contains(&bytes) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be between {IO_BUFFER_MIN_BYTES} and {IO_BUFFER_MAX_BYTES}"),
                ));
            }
        }
        let memory_total = crate::host::memory_total_bytes();
        if memory_total > 0 && storage.read_cache_bytes > memory_total / 2 {
            return Err(ConfigError::invalid(
                "storage.read_cache_bytes",
                format!(
                    "{} bytes is more than half of this machine's memory ({memory_total} bytes); \
                     lower it",
                    storage.read_cache_bytes
                ),
            ));
        }
        let readahead_limit = READAHEAD_SHARD_READS_IN_FLIGHT_LIMIT;
        if !(1..=readahead_limit as u64).contains(&storage.readahead_reads_in_flight) {
            return Err(ConfigError::invalid(
                "storage.readahead_reads_in_flight",
                format!("must be between 1 and {readahead_limit}"),
            ));
        }
        let compaction = METADATA_LOG_COMPACTION_MIN_BYTES..=METADATA_LOG_COMPACTION_MAX_BYTES;
        if !compaction.contains(&storage.metadata_log_compaction_bytes) {
            return Err(ConfigError::invalid(
                "storage.metadata_log_compaction_bytes",
                format!("must be between {METADATA_LOG_COMPACTION_MIN_BYTES} and {METADATA_LOG_COMPACTION_MAX_BYTES}"),
            ));
        }
        if !(8..=32768).contains(&storage.io_uring_entries)
            || !storage.io_uring_entries.is_power_of_two()
        {
            return Err(ConfigError::invalid(
                "storage.io_uring_entries",
                "must be a power of two between 8 and 32768",
            ));
        }
        Ok(())
    }

    fn validate_dpdk(&self) -> Result<(), ConfigError> {
        let dpdk = &self.dpdk;
        if dpdk.lcores.is_empty() {
            return Err(ConfigError::invalid(
                "dpdk.lcores",
                "name at least one lcore",
            ));
        }
        if !dpdk.cpus.is_empty() && dpdk.cpus.len() != dpdk.lcores.len() {
            return Err(ConfigError::invalid(
                "dpdk.cpus",
                "give one CPU per lcore, or none (lcore N runs on CPU N)",
            ));
        }
        if dpdk.allow_pci.is_empty() && dpdk.vdevs.is_empty() {
            return Err(ConfigError::invalid(
                "dpdk.allow_pci / dpdk.vdevs",
                "name a PCI device (scripts/bind-nic.sh) or a virtual device such as \
                 net_af_packet0,iface=eth1",
            ));
        }
        dpdk.ip_address.parse::<Ipv4Addr>().map_err(|_| {
            ConfigError::invalid(
                "dpdk.ip_address",
                format!("'{}' is not an IPv4 address", dpdk.ip_address),
            )
        })?;
        if dpdk.prefix_len == 0 || dpdk.prefix_len > 32 {
            return Err(ConfigError::invalid(
                "dpdk.prefix_len",
                "must be between 1 and 32",
            ));
        }
        if !dpdk.gateway.is_empty() && dpdk.gateway.parse::<Ipv4Addr>().is_err() {
            return Err(ConfigError::invalid(
                "dpdk.gateway",
                format!("'{}' is not an IPv4 address (\"\" for none)", dpdk.gateway),
            ));
        }
        if dpdk.shard_nap_us > DPDK_SHARD_NAP_MAX_US {
            return Err(ConfigError::invalid(
                "dpdk.shard_nap_us",
                format!("must be at most {DPDK_SHARD_NAP_MAX_US} (0 = shards block until woken)"),
            ));
        }
        if !(DPDK_MTU_MIN..=DPDK_MTU_MAX).contains(&dpdk.mtu) {
            return Err(ConfigError::invalid(
                "dpdk.mtu",
                format!(
                    "must be between {DPDK_MTU_MIN} and {DPDK_MTU_MAX} (the port's own limit is \
                     checked when it opens)"
                ),
            ));
        }
        Ok(())
    }

    /// Where clients reach the binary protocol: `tcp.address`, or in DPDK mode the port's
    /// `dpdk.ip_address:dpdk.port`.
    pub fn dataplane_address(&self) -> String {
        match self.dataplane.backend {
            Backend::Kernel => self.tcp.address.clone(),
            Backend::Dpdk => format!("{}:{}", self.dpdk.ip_address, self.dpdk.port),
        }
    }

    /// The TCP listener address, parsed.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for `tcp.address`.
    pub fn tcp_address(&self) -> Result<SocketAddr, ConfigError> {
        self.tcp.address.parse().map_err(|_| {
            ConfigError::invalid(
                "tcp.address",
                format!("'{}' is not an ip:port address", self.tcp.address),
            )
        })
    }

    /// Network workers after resolving `0 = auto` against the available cores.
    pub fn network_workers(&self) -> usize {
        resolve_thread_count(self.dataplane.network_workers)
    }

    /// Storage shards after resolving `0 = auto` against the available cores.
    pub fn storage_shards(&self) -> usize {
        resolve_thread_count(self.dataplane.storage_shards)
    }

    /// A copy with the secrets (root password, JWT signing secret, cluster secret, control token)
    /// replaced by a mask, for showing.
    pub fn masked(&self) -> Config {
        let mut shown = self.clone();
        shown.root.password = SECRET_MASK.to_string();
        if !shown.http.jwt_secret.is_empty() {
            shown.http.jwt_secret = SECRET_MASK.to_string();
        }
        if !shown.cluster.secret.is_empty() {
            shown.cluster.secret = SECRET_MASK.to_string();
        }
        if !shown.control.token.is_empty() {
            shown.control.token = SECRET_MASK.to_string();
        }
        shown
    }

    /// The effective configuration as TOML (secrets masked).
    pub fn to_toml_masked(&self) -> String {
        toml::to_string_pretty(&self.masked()).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn resolve_thread_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.clamp(1, AUTO_THREADS_MAX)
}

fn validate_name(key: &str, value: &str, min: usize, max: usize) -> Result<(), ConfigError> {
    if !(min..=max).contains(&value.len()) {
        return Err(ConfigError::invalid(
            key,
            format!("must be {min} to {max} bytes long"),
        ));
    }
    Ok(())
}

/// A name shown to clients: 1 to [`CLUSTER_NAME_LENGTH_MAX_BYTES`] bytes, not blank (Iggy
/// refuses a blank cluster or node name too), no control characters (it ends up in logs).
fn validate_display_name(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::invalid(key, "must not be empty or blank"));
    }
    if value.len() > CLUSTER_NAME_LENGTH_MAX_BYTES {
        return Err(ConfigError::invalid(
            key,
            format!(
                "is {} bytes long; at most {CLUSTER_NAME_LENGTH_MAX_BYTES}",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            key,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn parse_toml(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Lays `overlay` over `base`; a key the defaults do not know is refused here so the error can
/// name it with its section.
fn merge_tables(
    base: &mut toml::Table,
    overlay: toml::Table,
    prefix: &str,
) -> Result<(), ConfigError> {
    for (key, value) in overlay {
        let full_key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge_tables(base_table, overlay_table, &full_key)?;
            }
            (Some(existing), value) => {
                if std::mem::discriminant(existing) != std::mem::discriminant(&value) {
                    return Err(ConfigError::invalid(
                        &full_key,
                        format!(
                            "expected {}, found {}",
                            existing.type_str(),
                            value.type_str()
                        ),
                    ));
                }
                *existing = value;
            }
            (None, _) => {
                return Err(ConfigError::invalid(
                    &full_key,
                    "unknown key (see the documented defaults: riptide-dataplane --print-default-config)",
                ));
            }
        }
    }
    Ok(())
}

fn apply_environment(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (variable, value) in env {
        if let Some((_, section, key)) = IGGY_DROP_IN_VARIABLES
            .iter()
            .find(|(name, _, _)| name == variable)
        {
            set_from_env(table, variable, section, key, value)?;
            continue;
        }
        let Some(rest) = variable.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        // Only variables naming a configuration section are overrides: other RIPTIDE_* variables
        // (scripts', tests') are not ours to refuse. A wrong key inside a section is refused.
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        if !table.contains_key(section) {
            continue;
        }
        set_from_env(table, variable, section, key, value)?;
    }
    Ok(())
}

fn set_from_env(
    table: &mut toml::Table,
    variable: &str,
    section: &str,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let env_error = |message: String| ConfigError::Environment {
        variable: variable.to_string(),
        message,
    };
    let slot = table
        .get_mut(section)
        .and_then(toml::Value::as_table_mut)
        .and_then(|section_table| section_table.get_mut(key))
        .ok_or_else(|| env_error(format!("no key `{section}.{key}` in the configuration")))?;
    *slot = typed_like(slot, value).map_err(env_error)?;
    Ok(())
}

/// Parses an environment string as the type of the default it replaces.
fn typed_like(default: &toml::Value, text: &str) -> Result<toml::Value, String> {
    let parsed = match default {
        toml::Value::String(_) => toml::Value::String(text.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(
            text.trim()
                .parse()
                .map_err(|_| format!("'{text}' is not an integer"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(match text.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(format!("'{text}' is not a boolean (true/false)")),
        }),
        toml::Value::Float(_) => toml::Value::Float(
            text.trim()
                .parse()
                .map_err(|_| format!("'{text}' is not a number"))?,
        ),
        toml::Value::Array(items) => {
            let parts = text.split(',').map(str::trim).filter(|p| !p.is_empty());
            let typed = parts.map(|part| match items.first() {
                Some(element) => typed_like(element, part),
                // An empty default gives no type: a number is a number, anything else a string.
                None => Ok(part.parse::<i64>().map_or_else(
                    |_| toml::Value::String(part.to_string()),
                    toml::Value::Integer,
                )),
            });
            toml::Value::Array(typed.collect::<Result<_, _>>()?)
        }
        other => {
            return Err(format!(
                "cannot set a {} from the environment",
                other.type_str()
            ))
        }
    };
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mutual_tls_needs_the_http_api_off() {
        let tls = "[tls]\nenabled = true\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"\n";
        let error = Config::load_from(Some((Path::new("t.toml"), tls)), &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("http.enabled"), "{error}");
        let off = format!("{tls}[http]\nenabled = false\n");
        Config::load_from(Some((Path::new("t.toml"), &off)), &[]).unwrap();
    }

    /// The HTTP API's pool sends passwords to the dataplane: off loopback it must verify the
    /// dataplane's certificate.
    #[test]
    fn the_http_pool_verifies_a_tls_dataplane_off_loopback() {
        let tls = "[tls]\nenabled = true\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n";
        let load = |extra: &str| {
            let text = format!("{tls}{extra}");
            Config::load_from(Some((Path::new("t.toml"), &text)), &[]).map_err(|e| e.to_string())
        };
        for local in ["127.0.0.1:8090", "0.0.0.0:8090", "[::1]:8090", "[::]:0"] {
            load(&format!("[tcp]\naddress = \"{local}\"\n")).unwrap();
        }
        let remote = "[tcp]\naddress = \"10.1.2.3:8090\"\n";
        let error = load(remote).unwrap_err();
        assert!(error.contains("http.dataplane_tls_ca_file"), "{error}");
        assert!(error.contains("10.1.2.3:8090"), "{error}");
        let verified = load(&format!(
            "{remote}[http]\ndataplane_tls_ca_file = \"ca.pem\"\ndataplane_tls_domain = \"riptide.example\"\n"
        ))
        .unwrap();
        assert_eq!(verified.http.dataplane_tls_domain, "riptide.example");
        let nameless = load(&format!(
            "{remote}[http]\ndataplane_tls_ca_file = \"ca.pem\"\ndataplane_tls_domain = \"\"\n"
        ))
        .unwrap_err();
        assert!(nameless.contains("http.dataplane_tls_domain"), "{nameless}");
        load(&format!("{remote}[http]\nenabled = false\n")).unwrap();
        // In DPDK mode clients (and the pool) reach the port's address, whatever tcp.address is.
        let dpdk = "[dataplane]\nbackend = \"dpdk\"\n[dpdk]\nvdevs = [\"net_memif0\"]\nip_address = \"10.9.8.7\"\n";
        let error = load(dpdk).unwrap_err();
        assert!(error.contains("10.9.8.7:8090"), "{error}");
        load(&format!(
            "{dpdk}[http]\ndataplane_tls_ca_file = \"ca.pem\"\n"
        ))
        .unwrap();
    }

    use super::*;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_default_is_valid_and_matches_the_documented_values() {
        let config = Config::load_from(None, &[]).unwrap();
        assert_eq!(config.tcp.address, "127.0.0.1:8090");
        assert_eq!(config.system.path, PathBuf::from("data"));
        assert_eq!(
            (config.root.username.as_str(), config.root.password.as_str()),
            ("iggy", "iggy")
        );
        assert_eq!(config.dataplane.backend, Backend::Kernel);
        assert_eq!(config.storage.ack_floor, AckFloor::Persisted);
        // What an Iggy 0.11 server with clustering off reports (`cluster_meta.rs`).
        assert_eq!(config.cluster.name, "single-node");
        assert_eq!(config.cluster.node_name, "iggy-node");
    }

    #[test]
    fn tcp_keepalive_defaults_to_30_s_is_bounded_and_0_turns_it_off() {
        let load = |text: &str| Config::load_from(Some((Path::new("x.toml"), text)), &[]);
        let default = Config::load_from(None, &[]).unwrap().tcp;
        assert_eq!(default.keepalive_s, 30);
        // 30 s idle + 3 unanswered probes 30 s apart: DPDK mode's former fixed 120 s timeout.
        assert_eq!(
            default.keepalive_dead_after(),
            Some(Duration::from_secs(120))
        );
        let off = load("[tcp]\nkeepalive_s = 0\n").unwrap().tcp;
        assert_eq!(off.keepalive_dead_after(), None);
        let fast = Config::load_from(None, &env(&[("RIPTIDE_TCP_KEEPALIVE_S", "1")])).unwrap();
        assert_eq!(
            fast.tcp.keepalive_dead_after(),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            load("[tcp]\nkeepalive_s = 7200\n").unwrap().tcp.keepalive_s,
            TCP_KEEPALIVE_MAX_S
        );
        let error = load("[tcp]\nkeepalive_s = 7201\n").unwrap_err().to_string();
        assert!(
            error.contains("tcp.keepalive_s") && error.contains("7200"),
            "{error}"
        );
        assert!(load("[tcp]\nkeepalive_s = -1\n").is_err());
    }

    /// A valid three-node cluster section for node 1, with `extra` appended to `[cluster]` (a
    /// key given twice makes the TOML invalid, so callers replace keys with `replace`).
    fn cluster_toml(extra: &str) -> String {
        format!(
            "[cluster]\nenabled = true\nnode_id = 1\nreplication_address = \"10.0.0.1:8091\"\n\
             secret = \"0123456789abcdef\"\n{extra}members = [\n\
             {{ id = 1, name = \"a\", replication_address = \"10.0.0.1:8091\", tcp_address = \"10.0.0.1:8090\" }},\n\
             {{ id = 2, name = \"b\", replication_address = \"10.0.0.2:8091\", tcp_address = \"10.0.0.2:8090\", http_address = \"10.0.0.2:3000\" }},\n\
             {{ id = 3, name = \"c\", replication_address = \"10.0.0.3:8091\", tcp_address = \"10.0.0.3:8090\" }},\n]\n"
        )
    }

    fn load_toml(text: &str) -> Result<Config, ConfigError> {
        Config::load_from(Some((Path::new("x.toml"), text)), &[])
    }

    #[test]
    fn a_cluster_configuration_is_validated_key_by_key() {
        let config = load_toml(&cluster_toml("")).unwrap();
        assert_eq!(config.cluster_self().map(|m| m.name.as_str()), Some("a"));
        assert_eq!(config.cluster.members[1].http_address, "10.0.0.2:3000");
        let refused = |text: String, key: &str| {
            let error = load_toml(&text).unwrap_err().to_string();
            assert!(error.contains(key), "{key} not named in: {error}");
        };
        refused(
            cluster_toml("").replace("secret = \"0123456789abcdef\"", "secret = \"short\""),
            "cluster.secret",
        );
        refused(
            cluster_toml("").replace("node_id = 1", "node_id = 9"),
            "cluster.node_id",
        );
        refused(
            cluster_toml("").replace("id = 3,", "id = 2,"),
            "cluster.members",
        );
        refused(
            cluster_toml("").replace("id = 3,", "id = 0,"),
            "cluster.members",
        );
        refused(
            cluster_toml("").replace("10.0.0.3:8090", "node-3"),
            "cluster.members.tcp_address",
        );
        refused(
            cluster_toml("").replace("10.0.0.2:3000", "anywhere"),
            "cluster.members.http_address",
        );
        refused(
            cluster_toml("").replace(
                "replication_address = \"10.0.0.1:8091\"\n",
                "replication_address = \"x\"\n",
            ),
            "cluster.replication_address",
        );
        refused(
            cluster_toml("heartbeat_interval_ms = 900\nelection_timeout_min_ms = 800\n"),
            "election_timeout_min_ms",
        );
        refused(
            cluster_toml("write_timeout_ms = 0\n"),
            "cluster.write_timeout_ms",
        );
    }

    #[test]
    fn a_replicated_floor_needs_a_cluster() {
        let error = load_toml("[storage]\nack_floor = \"replicated\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("storage.ack_floor"), "{error}");
        let config = load_toml(&format!(
            "[storage]\nack_floor = \"replicated\"\n{}",
            cluster_toml("")
        ))
        .unwrap();
        assert_eq!(config.storage.ack_floor, AckFloor::Replicated);
    }

    #[test]
    fn cluster_names_are_configurable_and_validated() {
        let file = "[cluster]\nname = \"prod-east\"\n";
        let vars = env(&[("RIPTIDE_CLUSTER_NODE_NAME", "broker-7")]);
        let config = Config::load_from(Some((Path::new("x.toml"), file)), &vars).unwrap();
        assert_eq!(config.cluster.name, "prod-east");
        assert_eq!(config.cluster.node_name, "broker-7");
        let longest = "n".repeat(CLUSTER_NAME_LENGTH_MAX_BYTES);
        let at_bound = env(&[("RIPTIDE_CLUSTER_NAME", longest.as_str())]);
        assert!(Config::load_from(None, &at_bound).is_ok());
        let too_long = "n".repeat(CLUSTER_NAME_LENGTH_MAX_BYTES + 1);
        for (variable, value, key) in [
            ("RIPTIDE_CLUSTER_NAME", "", "cluster.name"),
            ("RIPTIDE_CLUSTER_NAME", "   ", "cluster.name"),
            ("RIPTIDE_CLUSTER_NAME", too_long.as_str(), "cluster.name"),
            ("RIPTIDE_CLUSTER_NODE_NAME", "a\tb", "cluster.node_name"),
            ("RIPTIDE_CLUSTER_NODE_NAME", "", "cluster.node_name"),
        ] {
            let error = Config::load_from(None, &env(&[(variable, value)])).unwrap_err();
            assert!(
                error.to_string().contains(key),
                "{variable}={value:?}: {error}"
            );
        }
        let unknown = Config::load_from(Some((Path::new("x.toml"), "[cluster]\nnodes = 3\n")), &[]);
        assert!(unknown.unwrap_err().to_string().contains("cluster.nodes"));
    }

    #[test]
    fn file_overrides_only_the_keys_it_names() {
        let file = "[storage]\nack_floor = \"memory\"\n";
        let config = Config::load_from(Some((Path::new("x.toml"), file)), &[]).unwrap();
        assert_eq!(config.storage.ack_floor, AckFloor::Memory);
        assert_eq!(config.storage.segment_size_bytes, 1 << 30);
    }

    #[test]
    fn iggy_drop_in_variables_and_riptide_overrides_apply() {
        let vars = env(&[
            ("IGGY_TCP_ADDRESS", "127.0.0.1:0"),
            ("IGGY_SYSTEM_PATH", "/tmp/x"),
            ("IGGY_ROOT_PASSWORD", "secret"),
            ("RIPTIDE_DATAPLANE_NETWORK_WORKERS", "3"),
            ("RIPTIDE_DATAPLANE_CORES", "0, 1"),
            ("RIPTIDE_STEERING_ENABLED", "false"),
        ]);
        let config = Config::load_from(None, &vars).unwrap();
        assert_eq!(config.tcp.address, "127.0.0.1:0");
        assert_eq!(config.system.path, PathBuf::from("/tmp/x"));
        assert_eq!(config.root.password, "secret");
        assert_eq!(config.dataplane.network_workers, 3);
        assert_eq!(config.dataplane.cores, vec![0, 1]);
        assert!(!config.steering.enabled);
    }

    #[test]
    fn dpdk_shard_nap_defaults_to_blocking_and_is_bounded() {
        let dpdk = "[dataplane]\nbackend = \"dpdk\"\n[dpdk]\nvdevs = [\"net_memif0\"]\n";
        let load = |extra: &str| {
            let text = format!("{dpdk}{extra}");
            Config::load_from(Some((Path::new("x.toml"), &text)), &[])
        };
        assert_eq!(load("").unwrap().dpdk.shard_nap_us, 0);
        assert_eq!(load("shard_nap_us = 100\n").unwrap().dpdk.shard_nap_us, 100);
        let error = load("shard_nap_us = 10001\n").unwrap_err().to_string();
        assert!(error.contains("dpdk.shard_nap_us"), "{error}");
    }

    #[test]
    fn dpdk_mtu_defaults_to_1500_and_is_bounded() {
        let dpdk =
            "[dataplane]\nbackend = \"dpdk\"\n[dpdk]\nvdevs = [\"net_af_packet0,iface=lo\"]\n";
        let load = |extra: &str| {
            let text = format!("{dpdk}{extra}");
            Config::load_from(Some((Path::new("x.toml"), &text)), &[])
        };
        assert_eq!(load("").unwrap().dpdk.mtu, 1500);
        assert_eq!(load("mtu = 9000\n").unwrap().dpdk.mtu, 9000);
        for mtu in [DPDK_MTU_MIN - 1, DPDK_MTU_MAX + 1] {
            let error = load(&format!("mtu = {mtu}\n")).unwrap_err().to_string();
            assert!(
                error.contains("dpdk.mtu") && error.contains("9600"),
                "{error}"
            );
        }
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = Config::load_from(
            Some((Path::new("x.toml"), "[storage]\nsegment_sise = 1\n")),
            &[],
        );
        assert!(unknown
            .unwrap_err()
            .to_string()
            .contains("storage.segment_sise"));
        let wrong_type =
            Config::load_from(Some((Path::new("x.toml"), "[tcp]\naddress = 5\n")), &[]);
        assert!(wrong_type.unwrap_err().to_string().contains("tcp.address"));
        let bad_value =
            Config::load_from(None, &env(&[("RIPTIDE_STORAGE_SEGMENT_SIZE_BYTES", "12")]));
        assert!(bad_value
            .unwrap_err()
            .to_string()
            .contains("storage.segment_size_bytes"));
        let tiny_write_buffer = Config::load_from(
            None,
            &env(&[("RIPTIDE_STORAGE_WRITE_BUFFER_BYTES", "4096")]),
        );
        assert!(tiny_write_buffer
            .unwrap_err()
            .to_string()
            .contains("storage.write_buffer_bytes"));
        for (variable, key) in [
            (
                "RIPTIDE_STORAGE_READAHEAD_READS_IN_FLIGHT",
                "storage.readahead_reads_in_flight",
            ),
            (
                "RIPTIDE_AUTH_VERIFIED_LOGIN_TTL_S",
                "auth.verified_login_ttl_s",
            ),
            (
                "RIPTIDE_STORAGE_AUTO_COMMIT_WRITE_DELAY_MS",
                "storage.auto_commit_write_delay_ms",
            ),
        ] {
            let out_of_range = Config::load_from(None, &env(&[(variable, "100000")]));
            assert!(out_of_range.unwrap_err().to_string().contains(key), "{key}");
        }
        for (variable, key, value) in [
            (
                "RIPTIDE_STORAGE_MEMORY_SYNC_INTERVAL_MS",
                "storage.memory_sync_interval_ms",
                "0",
            ),
            (
                "RIPTIDE_STORAGE_MEMORY_SYNC_INTERVAL_MS",
                "storage.memory_sync_interval_ms",
                "3600001",
            ),
            (
                "RIPTIDE_STORAGE_MEMORY_SYNC_BYTES",
                "storage.memory_sync_bytes",
                "4096",
            ),
            (
                "RIPTIDE_STORAGE_METADATA_LOG_COMPACTION_BYTES",
                "storage.metadata_log_compaction_bytes",
                "100",
            ),
        ] {
            let refused = Config::load_from(None, &env(&[(variable, value)]));
            assert!(
                refused.unwrap_err().to_string().contains(key),
                "{key} = {value}"
            );
        }
        let synced_often = env(&[
            ("RIPTIDE_STORAGE_MEMORY_SYNC_INTERVAL_MS", "10"),
            ("RIPTIDE_STORAGE_MEMORY_SYNC_BYTES", "65536"),
        ]);
        let config = Config::load_from(None, &synced_often).unwrap();
        assert_eq!(
            (
                config.storage.memory_sync_interval_ms,
                config.storage.memory_sync_bytes
            ),
            (10, 65536)
        );
        let no_readahead = Config::load_from(
            None,
            &env(&[("RIPTIDE_STORAGE_READAHEAD_READS_IN_FLIGHT", "0")]),
        );
        assert!(no_readahead.is_err());
        let memory = crate::host::memory_total_bytes();
        let cache_of_all_memory = Config::load_from(
            None,
            &env(&[("RIPTIDE_STORAGE_READ_CACHE_BYTES", &memory.to_string())]),
        );
        let refusal = cache_of_all_memory.unwrap_err().to_string();
        assert!(refusal.contains("storage.read_cache_bytes") && refusal.contains("half"));
        let half = (memory / 2).to_string();
        let cache_of_half = env(&[("RIPTIDE_STORAGE_READ_CACHE_BYTES", &half)]);
        assert!(Config::load_from(None, &cache_of_half).is_ok());
        let bad_env = Config::load_from(None, &env(&[("RIPTIDE_TCP_NOPE", "1")]));
        assert!(bad_env
            .unwrap_err()
            .to_string()
            .contains("RIPTIDE_TCP_NOPE"));
        let bad_enum = Config::load_from(None, &env(&[("RIPTIDE_STORAGE_ACK_FLOOR", "sometimes")]));
        assert!(bad_enum.unwrap_err().to_string().contains("sometimes"));
    }

    #[test]
    fn masked_rendering_hides_the_password_and_parses_back() {
        let config = Config::load_from(None, &[]).unwrap();
        let text = config.to_toml_masked();
        assert!(!text.contains("password = \"iggy\""));
        let reparsed = Config::load_from(Some((Path::new("shown.toml"), &text)), &[]).unwrap();
        assert_eq!(reparsed.tcp, config.tcp);
    }
}
