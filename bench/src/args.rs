//! Command line, shaped like iggy-bench's so users can switch tools without relearning:
//! `riptide-bench [GLOBAL OPTS] <benchmark> [BENCH OPTS] tcp [--server-address A] [output -o DIR]`.
//!
//! Parsing (clap) and validation are separate: [`Cli::into_config`] checks every value against
//! the limits in `constants.rs` and resolves defaults that depend on the mode (e.g. pinned streams
//! default to the number of actors), producing the [`BenchConfig`] the runner uses.

use crate::constants::*;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "riptide-bench",
    version,
    about = "Load generator for riptide (iggy-bench compatible)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub benchmark: BenchmarkCommand,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Payload size of one message, in bytes.
    #[arg(short = 'm', long, default_value_t = MESSAGE_SIZE_DEFAULT_BYTES)]
    pub message_size: u32,
    /// Messages in one SendMessages batch (and polled per request).
    #[arg(short = 'P', long, default_value_t = MESSAGES_PER_BATCH_DEFAULT)]
    pub messages_per_batch: u32,
    /// Batches sent (or polled) by each actor.
    #[arg(short = 'b', long, conflicts_with = "total_data")]
    pub message_batches: Option<u64>,
    /// Total payload over all producers (e.g. 10GB, 512MiB); replaces --message-batches.
    #[arg(short = 'T', long, value_parser = parse_size_bytes)]
    pub total_data: Option<u64>,
    /// Rate limit of the whole run in bytes per second (e.g. 100MB), shared evenly by the actors.
    #[arg(short = 'r', long, value_parser = parse_size_bytes)]
    pub rate_limit: Option<u64>,
    /// Warm-up time excluded from the statistics (e.g. 2s, 500ms).
    #[arg(short = 'w', long, default_value = "0s", value_parser = parse_duration)]
    pub warmup_time: Duration,
    /// Period of the time series.
    #[arg(short = 't', long, default_value = "10ms", value_parser = parse_duration)]
    pub sampling_time: Duration,
    /// Window of the moving average drawn in the charts, in samples.
    #[arg(short = 'W', long, default_value_t = MOVING_AVERAGE_WINDOW_DEFAULT)]
    pub moving_average_window: u32,
    /// Use existing streams instead of deleting and recreating them.
    #[arg(long)]
    pub reuse_streams: bool,
    /// Acknowledgement requested through the topic's `durability` option.
    #[arg(long, value_enum, default_value_t = AckArg::Durable)]
    pub ack: AckArg,
    /// Requests in flight per connection (1 = lockstep, like the SDK).
    #[arg(long, default_value_t = INFLIGHT_DEFAULT)]
    pub inflight: u32,
    /// Consumers check every message (checksum, payload, contiguous offsets); loss fails the run.
    #[arg(long)]
    pub verify: bool,
    #[arg(short = 'u', long, default_value = USERNAME_DEFAULT)]
    pub username: String,
    #[arg(short = 'p', long, default_value = PASSWORD_DEFAULT)]
    pub password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckArg {
    /// Acknowledged after stable storage (`durability = persisted`).
    Durable,
    /// Acknowledged from memory (`durability = replicated` on one node).
    Memory,
    /// Acknowledged once a majority of a cluster's nodes hold it on stable storage
    /// (`durability = replicated` in a cluster; the same request as `memory`).
    Replicated,
}

impl AckArg {
    /// The topic option value that requests this acknowledgement.
    pub fn durability_option(self) -> &'static str {
        match self {
            AckArg::Durable => "persisted",
            AckArg::Memory | AckArg::Replicated => "replicated",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchmarkCommand {
    /// Each producer sends to its own stream (one partition).
    #[command(visible_alias = "pp")]
    PinnedProducer(PinnedProducerArgs),
    /// Each consumer polls its own stream by offset (run pinned-producer first).
    #[command(visible_alias = "pc")]
    PinnedConsumer(PinnedConsumerArgs),
    /// Pinned producers and consumers at the same time.
    #[command(visible_alias = "ppc")]
    PinnedProducerAndConsumer(PinnedBothArgs),
    /// Producers spread batches over the partitions (balanced partitioning).
    #[command(visible_alias = "bp")]
    BalancedProducer(BalancedProducerArgs),
    /// Consumers in consumer groups (run balanced-producer first).
    #[command(visible_alias = "bcg")]
    BalancedConsumerGroup(BalancedConsumerArgs),
    /// Balanced producers and consumer groups at the same time.
    #[command(visible_alias = "bpcg")]
    BalancedProducerAndConsumerGroup(BalancedBothArgs),
    /// Each actor sends a batch and polls it back; measures end-to-end latency.
    #[command(visible_alias = "e2e")]
    EndToEndProducingConsumer(EndToEndArgs),
}

#[derive(Debug, Args)]
pub struct PinnedProducerArgs {
    /// Streams (default: one per producer).
    #[arg(short = 's', long)]
    pub streams: Option<u32>,
    #[arg(short = 'p', long, default_value_t = ACTORS_DEFAULT)]
    pub producers: u32,
    #[command(subcommand)]
    pub transport: Transport,
}

#[derive(Debug, Args)]
pub struct PinnedConsumerArgs {
    /// Streams (default: one per consumer).
    #[arg(short = 's', long)]
    pub streams: Option<u32>,
    #[arg(short = 'c', long, default_value_t = ACTORS_DEFAULT)]
    pub consumers: u32,
    #[command(subcommand)]
    pub transport: Transport,
}

#[derive(Debug, Args)]
pub struct PinnedBothArgs {
    /// Streams (default: one per producer).
    #[arg(short = 's', long)]
    pub streams: Option<u32>,
    #[arg(short = 'p', long, default_value_t = ACTORS_DEFAULT)]
    pub producers: u32,
    #[arg(short = 'c', long, default_value_t = ACTORS_DEFAULT)]
    pub consumers: u32,
    #[command(subcommand)]
    pub transport: Transport,
}

#[derive(Debug, Args)]
pub struct BalancedProducerArgs {
    #[arg(short = 's', long, default_value_t = 1)]
    pub streams: u32,
    #[arg(short = 'a', long, default_value_t = BALANCED_PARTITIONS_DEFAULT)]
    pub partitions: u32,
    #[arg(short = 'p', long, default_value_t = ACTORS_DEFAULT)]
    pub producers: u32,
    #[command(subcommand)]
    pub transport: Transport,
}

#[derive(Debug, Args)]
pub struct BalancedConsumerArgs {
    #[arg(short = 's', long, default_value_t = 1)]
    pub streams: u32,
    #[arg(short = 'c', long, default_value_t = ACTORS_DEFAULT)]
    pub consumers: u32,
    #[arg(short = 'g', long, default_value_t = 1)]
    pub consumer_groups: u32,
    #[command(subcommand)]
    pub transport: Transport,
}

#[derive(Debug, Args)]
pub struct BalancedBothArgs {
    #[arg(short = 's', long, default_value_t = 1)]
    pub streams: u32,
    #[arg(short = 'a', long, default_value_t = BALANCED_PARTITIONS_DEFAULT)]
    pub partitions: u32,
    #[arg(short = 'p', long, default_value_t = ACTORS_DEFAULT)]
    pub producers: u32,
    #[arg(short = 'c', long, default_value_t = ACTORS_DEFAULT)]
    pub consumers: u32,
    #[arg(short = 'g', long, default_value_t = 1)]
    pub consumer_groups: u32,
    #[command(subcommand)]
    pub transport: Transport,
}

#[derive(Debug, Args)]
pub struct EndToEndArgs {
    /// Streams (default: one per actor).
    #[arg(short = 's', long)]
    pub streams: Option<u32>,
    /// Producing consumers.
    #[arg(short = 'p', long, default_value_t = ACTORS_DEFAULT)]
    pub producers: u32,
    #[command(subcommand)]
    pub transport: Transport,
}

#[derive(Debug, Subcommand)]
pub enum Transport {
    /// Iggy binary protocol over TCP.
    Tcp(TcpArgs),
    /// Iggy binary protocol over smoltcp's TCP on a DPDK memif client port: the appliance must
    /// serve `net_memif` (its lcore polls the other end of the shared memory).
    #[cfg(feature = "dpdk")]
    Memif(MemifArgs),
}

/// `memif`: the client's own EAL, memif port and address (see `riptide_bench::memif`).
#[cfg(feature = "dpdk")]
#[derive(Debug, Args)]
pub struct MemifArgs {
    /// The appliance's address on the memif link (its [dpdk] ip_address and port).
    #[arg(long)]
    pub server_address: String,
    /// The appliance's memif socket (`<data>/runtime/memif.sock` unless configured).
    #[arg(long)]
    pub socket: PathBuf,
    /// This client's address and prefix on the memif link.
    #[arg(long, default_value = MEMIF_CLIENT_ADDRESS_DEFAULT)]
    pub ip_address: String,
    /// The CPU the client's lcore (its stack and every actor) is pinned to.
    #[arg(long, default_value_t = 0)]
    pub cpu: u32,
    /// The EAL file prefix (distinct from the appliance's riptide-<port>).
    #[arg(long, default_value = MEMIF_CLIENT_FILE_PREFIX_DEFAULT)]
    pub file_prefix: String,
    /// The client's EAL memory (no hugepages), in MiB.
    #[arg(long, default_value_t = MEMIF_CLIENT_MEMORY_MB_DEFAULT)]
    pub memory_mb: u32,
    #[command(subcommand)]
    pub output: Option<OutputCommand>,
}

#[derive(Debug, Args)]
pub struct TcpArgs {
    #[arg(long, default_value = TCP_SERVER_ADDRESS_DEFAULT)]
    pub server_address: String,
    /// Speak TLS 1.3, trusting the CA certificate(s) in this PEM file.
    #[arg(long)]
    pub tls_ca_file: Option<PathBuf>,
    /// The name the server's certificate carries.
    #[arg(long, default_value = "localhost")]
    pub tls_domain: String,
    #[command(subcommand)]
    pub output: Option<OutputCommand>,
}

#[derive(Debug, Subcommand)]
pub enum OutputCommand {
    /// Write JSON, HTML and PNG results to a folder.
    Output(OutputArgs),
}

#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    #[arg(short = 'o', long, default_value = "performance_results")]
    pub output_dir: PathBuf,
    /// Name of this run in the report.
    #[arg(long)]
    pub identifier: Option<String>,
    /// Free text shown in the report.
    #[arg(long)]
    pub remark: Option<String>,
    #[arg(long)]
    pub gitref: Option<String>,
    #[arg(long)]
    pub gitref_date: Option<String>,
}

/// The benchmark kinds, with iggy-bench's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    PinnedProducer,
    PinnedConsumer,
    PinnedProducerAndConsumer,
    BalancedProducer,
    BalancedConsumerGroup,
    BalancedProducerAndConsumerGroup,
    EndToEndProducingConsumer,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::PinnedProducer => "pinned-producer",
            Mode::PinnedConsumer => "pinned-consumer",
            Mode::PinnedProducerAndConsumer => "pinned-producer-and-consumer",
            Mode::BalancedProducer => "balanced-producer",
            Mode::BalancedConsumerGroup => "balanced-consumer-group",
            Mode::BalancedProducerAndConsumerGroup => "balanced-producer-and-consumer-group",
            Mode::EndToEndProducingConsumer => "end-to-end-producing-consumer",
        }
    }

    /// Modes whose producers create (and by default recreate) the streams.
    pub fn creates_streams(self) -> bool {
        !matches!(self, Mode::PinnedConsumer | Mode::BalancedConsumerGroup)
    }
}

/// Validated configuration of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchConfig {
    pub mode: Mode,
    pub message_size_bytes: u32,
    pub messages_per_batch: u32,
    pub message_batches: u64,
    pub producers: u32,
    pub consumers: u32,
    pub streams: u32,
    pub partitions: u32,
    pub consumer_groups: u32,
    pub rate_limit_bytes_per_sec: Option<u64>,
    pub warmup_us: u64,
    pub sampling_us: u64,
    pub moving_average_window: u32,
    pub reuse_streams: bool,
    pub ack: AckArg,
    pub inflight: u32,
    pub verify: bool,
    #[serde(skip)]
    pub username: String,
    #[serde(skip)]
    pub password: String,
    pub server_address: String,
    /// (CA file, domain) when the run speaks TLS.
    #[serde(skip)]
    pub tls: Option<(PathBuf, String)>,
    #[serde(skip)]
    pub output: Option<OutputArgs>,
    /// Set when the run goes over memif instead of the kernel's TCP.
    #[cfg(feature = "dpdk")]
    pub memif: Option<crate::memif::MemifOptions>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} = {value} is outside {min}..={max}")]
    OutOfRange {
        name: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("a batch of {messages} messages of {size} bytes exceeds the {max}-byte frame limit")]
    BatchTooLarge { messages: u32, size: u32, max: u64 },
    #[error("{0}")]
    Invalid(String),
}

/// Mode-specific numbers before the shared ones are applied.
struct Shape {
    mode: Mode,
    producers: u32,
    consumers: u32,
    streams: u32,
    partitions: u32,
    consumer_groups: u32,
    transport: TransportShape,
}

/// Where the run connects, whatever the transport.
struct TransportShape {
    server_address: String,
    /// (CA file, domain) for TLS over TCP.
    tls: Option<(PathBuf, String)>,
    output: Option<OutputCommand>,
    #[cfg(feature = "dpdk")]
    memif: Option<MemifArgs>,
}

impl Cli {
    /// Checks every value and resolves mode-dependent defaults.
    ///
    /// # Errors
    /// [`ConfigError`] when a value is out of its range or the combination is impossible.
    pub fn into_config(self) -> Result<BenchConfig, ConfigError> {
        let shape = shape_of(self.benchmark);
        let g = self.global;
        check_range(
            "message-size",
            g.message_size.into(),
            MESSAGE_SIZE_MIN_BYTES.into(),
            MESSAGE_SIZE_MAX_BYTES.into(),
        )?;
        check_range(
            "messages-per-batch",
            g.messages_per_batch.into(),
            1,
            u32::MAX.into(),
        )?;
        let batch_bytes = batch_size_bytes(g.message_size, g.messages_per_batch);
        if batch_bytes > BATCH_SIZE_MAX_BYTES {
            return Err(ConfigError::BatchTooLarge {
                messages: g.messages_per_batch,
                size: g.message_size,
                max: BATCH_SIZE_MAX_BYTES,
            });
        }
        check_range("producers", shape.producers.into(), 0, ACTORS_MAX.into())?;
        check_range("consumers", shape.consumers.into(), 0, ACTORS_MAX.into())?;
        check_range("streams", shape.streams.into(), 1, STREAMS_MAX.into())?;
        check_range(
            "partitions",
            shape.partitions.into(),
            1,
            PARTITIONS_MAX.into(),
        )?;
        check_range("inflight", g.inflight.into(), 1, INFLIGHT_MAX.into())?;
        check_range(
            "moving-average-window",
            g.moving_average_window.into(),
            1,
            10_000,
        )?;
        let sampling_us = u64::try_from(g.sampling_time.as_micros()).unwrap_or(u64::MAX);
        check_range("sampling-time (us)", sampling_us, 1_000, 60_000_000)?;
        if shape.producers + shape.consumers == 0 {
            return Err(ConfigError::Invalid(
                "the run needs at least one actor".into(),
            ));
        }
        if shape.consumer_groups > 0
            && shape.consumers > 0
            && shape.consumer_groups > shape.consumers
        {
            return Err(ConfigError::Invalid(
                "more consumer groups than consumers".into(),
            ));
        }
        let actors_sending = shape.producers.max(shape.consumers).max(1);
        let message_batches = match (g.message_batches, g.total_data) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "--message-batches and --total-data exclude each other".into(),
                ))
            }
            (Some(b), None) => b,
            (None, Some(total)) => (total
                / (batch_bytes_payload(g.message_size, g.messages_per_batch)
                    * u64::from(actors_sending)))
            .max(1),
            (None, None) => MESSAGE_BATCHES_DEFAULT,
        };
        check_range("message-batches", message_batches, 1, u64::from(u32::MAX))?;
        if g.rate_limit == Some(0) {
            return Err(ConfigError::Invalid("--rate-limit must be positive".into()));
        }
        Ok(BenchConfig {
            mode: shape.mode,
            message_size_bytes: g.message_size,
            messages_per_batch: g.messages_per_batch,
            message_batches,
            producers: shape.producers,
            consumers: shape.consumers,
            streams: shape.streams,
            partitions: shape.partitions,
            consumer_groups: shape.consumer_groups,
            rate_limit_bytes_per_sec: g.rate_limit,
            warmup_us: u64::try_from(g.warmup_time.as_micros()).unwrap_or(u64::MAX),
            sampling_us,
            moving_average_window: g.moving_average_window,
            reuse_streams: g.reuse_streams,
            ack: g.ack,
            inflight: g.inflight,
            verify: g.verify,
            username: g.username,
            password: g.password,
            server_address: shape.transport.server_address.clone(),
            tls: shape.transport.tls,
            #[cfg(feature = "dpdk")]
            memif: shape.transport.memif.map(memif_options).transpose()?,
            output: shape.transport.output.map(|OutputCommand::Output(o)| o),
        })
    }
}

fn shape_of(command: BenchmarkCommand) -> Shape {
    let transport = |t: Transport| match t {
        Transport::Tcp(tcp) => TransportShape {
            server_address: tcp.server_address,
            tls: tcp.tls_ca_file.map(|ca_file| (ca_file, tcp.tls_domain)),
            output: tcp.output,
            #[cfg(feature = "dpdk")]
            memif: None,
        },
        #[cfg(feature = "dpdk")]
        Transport::Memif(mut memif) => TransportShape {
            server_address: memif.server_address.clone(),
            tls: None,
            output: memif.output.take(),
            memif: Some(memif),
        },
    };
    match command {
        BenchmarkCommand::PinnedProducer(a) => Shape {
            mode: Mode::PinnedProducer,
            producers: a.producers,
            consumers: 0,
            streams: a.streams.unwrap_or(a.producers),
            partitions: 1,
            consumer_groups: 0,
            transport: transport(a.transport),
        },
        BenchmarkCommand::PinnedConsumer(a) => Shape {
            mode: Mode::PinnedConsumer,
            producers: 0,
            consumers: a.consumers,
            streams: a.streams.unwrap_or(a.consumers),
            partitions: 1,
            consumer_groups: 0,
            transport: transport(a.transport),
        },
        BenchmarkCommand::PinnedProducerAndConsumer(a) => Shape {
            mode: Mode::PinnedProducerAndConsumer,
            producers: a.producers,
            consumers: a.consumers,
            streams: a.streams.unwrap_or(a.producers),
            partitions: 1,
            consumer_groups: 0,
            transport: transport(a.transport),
        },
        BenchmarkCommand::BalancedProducer(a) => Shape {
            mode: Mode::BalancedProducer,
            producers: a.producers,
            consumers: 0,
            streams: a.streams,
            partitions: a.partitions,
            consumer_groups: 0,
            transport: transport(a.transport),
        },
        BenchmarkCommand::BalancedConsumerGroup(a) => Shape {
            mode: Mode::BalancedConsumerGroup,
            producers: 0,
            consumers: a.consumers,
            streams: a.streams,
            partitions: 1,
            consumer_groups: a.consumer_groups,
            transport: transport(a.transport),
        },
        BenchmarkCommand::BalancedProducerAndConsumerGroup(a) => Shape {
            mode: Mode::BalancedProducerAndConsumerGroup,
            producers: a.producers,
            consumers: a.consumers,
            streams: a.streams,
            partitions: a.partitions,
            consumer_groups: a.consumer_groups,
            transport: transport(a.transport),
        },
        BenchmarkCommand::EndToEndProducingConsumer(a) => Shape {
            mode: Mode::EndToEndProducingConsumer,
            producers: a.producers,
            consumers: 0,
            streams: a.streams.unwrap_or(a.producers),
            partitions: 1,
            consumer_groups: 0,
            transport: transport(a.transport),
        },
    }
}

/// The memif client's options, its address checked.
#[cfg(feature = "dpdk")]
fn memif_options(args: MemifArgs) -> Result<crate::memif::MemifOptions, ConfigError> {
    let invalid = || {
        ConfigError::Invalid(format!(
            "memif --ip-address '{}' is not an IPv4 address/prefix such as {MEMIF_CLIENT_ADDRESS_DEFAULT}",
            args.ip_address
        ))
    };
    let (address, prefix) = args.ip_address.split_once('/').ok_or_else(invalid)?;
    let ip_address = address.parse().map_err(|_| invalid())?;
    let prefix_len = prefix
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(invalid)?;
    if args
        .server_address
        .parse::<std::net::SocketAddrV4>()
        .is_err()
    {
        return Err(ConfigError::Invalid(format!(
            "memif --server-address '{}' is not an IPv4 address:port",
            args.server_address
        )));
    }
    Ok(crate::memif::MemifOptions {
        socket: args.socket,
        ip_address,
        prefix_len,
        cpu: args.cpu,
        file_prefix: args.file_prefix,
        memory_mb: args.memory_mb,
    })
}

fn check_range(name: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            value,
            min,
            max,
        })
    }
}

/// Payload bytes of one batch (what throughput counts).
pub fn batch_bytes_payload(message_size: u32, messages_per_batch: u32) -> u64 {
    u64::from(message_size) * u64::from(messages_per_batch)
}

/// Bytes of one batch on the wire: batch header plus a 48-byte frame header per message.
pub fn batch_size_bytes(message_size: u32, messages_per_batch: u32) -> u64 {
    let frame = u64::from(message_size) + crate::wire::MESSAGE_HEADER_SIZE_BYTES as u64;
    crate::wire::BATCH_HEADER_SIZE_BYTES as u64 + frame * u64::from(messages_per_batch)
}

/// Parses sizes such as `1000`, `10KB`, `512MiB`, `10GB` (decimal KB/MB/GB, binary KiB/MiB/GiB).
///
/// # Errors
/// A message naming the bad value.
pub fn parse_size_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 10GB, 512MiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("unknown size unit '{other}' in '{text}'")),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("size '{text}' is out of range"));
    }
    Ok(bytes as u64)
}

/// Parses durations such as `0`, `10ms`, `2s`, `1m`, `500us`.
///
/// # Errors
/// A message naming the bad value.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 10ms, 2s)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        other => return Err(format!("unknown duration unit '{other}' in '{text}'")),
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BenchConfig, String> {
        let mut all = vec!["riptide-bench"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).map_err(|e| e.to_string())?;
        cli.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_iggy_bench() {
        let c = parse(&["pinned-producer", "tcp"]).unwrap();
        assert_eq!(c.mode, Mode::PinnedProducer);
        assert_eq!(c.message_size_bytes, 1000);
        assert_eq!(c.messages_per_batch, 1000);
        assert_eq!(c.message_batches, 1000);
        assert_eq!(c.producers, 8);
        assert_eq!(c.streams, 8, "pinned streams default to one per producer");
        assert_eq!(c.partitions, 1);
        assert_eq!(c.server_address, "127.0.0.1:8090");
        assert_eq!(c.username, "iggy");
        assert_eq!(c.password, "iggy");
        assert_eq!(c.ack, AckArg::Durable);
        assert_eq!(c.inflight, 1);
        assert_eq!(c.sampling_us, 10_000);
        assert!(!c.verify && !c.reuse_streams);
        assert!(c.output.is_none());
    }

    #[test]
    fn aliases_select_the_same_modes() {
        let cases = [
            ("pp", Mode::PinnedProducer),
            ("pc", Mode::PinnedConsumer),
            ("ppc", Mode::PinnedProducerAndConsumer),
            ("bp", Mode::BalancedProducer),
            ("bcg", Mode::BalancedConsumerGroup),
            ("bpcg", Mode::BalancedProducerAndConsumerGroup),
            ("e2e", Mode::EndToEndProducingConsumer),
        ];
        for (alias, mode) in cases {
            let by_alias = parse(&[alias, "tcp"]).unwrap();
            let by_name = parse(&[mode.name(), "tcp"]).unwrap();
            assert_eq!(by_alias.mode, mode, "{alias}");
            assert_eq!(by_name.mode, mode, "{}", mode.name());
        }
    }

    #[test]
    fn balanced_defaults() {
        let c = parse(&["bpcg", "tcp"]).unwrap();
        assert_eq!(
            (
                c.streams,
                c.partitions,
                c.producers,
                c.consumers,
                c.consumer_groups
            ),
            (1, 24, 8, 8, 1)
        );
        let c = parse(&["bcg", "tcp"]).unwrap();
        assert_eq!((c.producers, c.consumers, c.consumer_groups), (0, 8, 1));
    }

    #[test]
    fn global_and_bench_options_and_output() {
        let c = parse(&[
            "-m",
            "200",
            "-P",
            "10",
            "-b",
            "5",
            "--ack",
            "memory",
            "--inflight",
            "4",
            "--verify",
            "-u",
            "alice",
            "-p",
            "secret",
            "ppc",
            "-p",
            "2",
            "-c",
            "3",
            "-s",
            "4",
            "tcp",
            "--server-address",
            "10.0.0.1:9000",
            "output",
            "-o",
            "/tmp/x",
            "--identifier",
            "run1",
        ])
        .unwrap();
        assert_eq!(
            (
                c.message_size_bytes,
                c.messages_per_batch,
                c.message_batches
            ),
            (200, 10, 5)
        );
        assert_eq!((c.producers, c.consumers, c.streams), (2, 3, 4));
        assert_eq!(c.ack, AckArg::Memory);
        assert_eq!(c.ack.durability_option(), "replicated");
        assert_eq!(c.inflight, 4);
        assert!(c.verify);
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "secret")
        );
        assert_eq!(c.server_address, "10.0.0.1:9000");
        let out = c.output.unwrap();
        assert_eq!(out.output_dir, PathBuf::from("/tmp/x"));
        assert_eq!(out.identifier.as_deref(), Some("run1"));
    }

    #[test]
    fn batches_and_total_data_exclude_each_other() {
        let err = parse(&["-b", "10", "-T", "1GB", "pp", "tcp"]).unwrap_err();
        assert!(err.contains("cannot be used with"), "{err}");
    }

    #[test]
    fn total_data_is_split_over_the_actors() {
        // 8 producers x 1000 x 1000 B per batch: 8 GB = 1000 batches each.
        let c = parse(&["-T", "8GB", "pp", "tcp"]).unwrap();
        assert_eq!(c.message_batches, 1000);
        let c = parse(&["-T", "1KB", "pp", "-p", "1", "tcp"]).unwrap();
        assert_eq!(c.message_batches, 1, "at least one batch");
    }

    #[test]
    fn out_of_range_values_are_errors() {
        assert!(parse(&["-m", "10", "pp", "tcp"])
            .unwrap_err()
            .contains("message-size"));
        assert!(parse(&["--inflight", "0", "pp", "tcp"])
            .unwrap_err()
            .contains("inflight"));
        assert!(parse(&["pp", "-p", "0", "tcp"]).is_err());
        assert!(parse(&["-m", "1000000", "-P", "1000", "pp", "tcp"])
            .unwrap_err()
            .contains("frame limit"));
        assert!(parse(&["bcg", "-c", "1", "-g", "2", "tcp"])
            .unwrap_err()
            .contains("groups"));
        assert!(parse(&["pp"]).is_err(), "the transport is required");
        assert!(parse(&["--ack", "sometimes", "pp", "tcp"]).is_err());
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size_bytes("1000"), Ok(1000));
        assert_eq!(parse_size_bytes("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size_bytes("1.5kb"), Ok(1500));
        assert!(parse_size_bytes("ten").is_err());
        assert!(parse_size_bytes("5XB").is_err());
        assert!(parse_size_bytes("0").is_err());
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("2h").is_err());
    }

    #[cfg(feature = "dpdk")]
    #[test]
    fn memif_transport_takes_its_socket_and_addresses() {
        let c = parse(&[
            "pp",
            "memif",
            "--socket",
            "/run/riptide/memif.sock",
            "--server-address",
            "10.77.0.1:8090",
            "--cpu",
            "1",
            "output",
            "-o",
            "out",
        ])
        .unwrap();
        let memif = c.memif.expect("memif options");
        assert_eq!(c.server_address, "10.77.0.1:8090");
        assert_eq!(memif.socket, PathBuf::from("/run/riptide/memif.sock"));
        assert_eq!(memif.ip_address, std::net::Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!((memif.prefix_len, memif.cpu), (24, 1));
        assert_eq!(memif.file_prefix, MEMIF_CLIENT_FILE_PREFIX_DEFAULT);
        assert!(c.output.is_some());
        assert!(parse(&["pp", "tcp"]).unwrap().memif.is_none());

        let memif = |extra: &[&str]| {
            let mut args = vec!["pp", "memif", "--socket", "/s"];
            args.extend_from_slice(extra);
            parse(&args)
        };
        let error = memif(&[
            "--server-address",
            "10.77.0.1:8090",
            "--ip-address",
            "10.77.0.2",
        ]);
        assert!(error.unwrap_err().contains("--ip-address"));
        let error = memif(&["--server-address", "localhost:8090"]);
        assert!(error.unwrap_err().contains("--server-address"));
        assert!(memif(&[]).is_err(), "the server address is required");
    }
}
