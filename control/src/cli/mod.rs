//! `riptidectl`: the operator's command line. Data-plane commands go through the official Iggy
//! SDK; status, configuration, steering and metrics go through riptide-control's API.
//!
//! Exit codes (stable, for scripts): see [`exit`].

pub mod cluster;
pub mod context;
pub mod control_client;
pub mod data;
pub mod output;
pub mod tls;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Exit codes of riptidectl.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Any other failure (I/O, bad input data).
    pub const FAILURE: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// The appliance (data plane or control API) cannot be reached.
    pub const UNREACHABLE: i32 = 3;
    /// The server refused the request (already exists, invalid, unauthorized...).
    pub const REFUSED: i32 = 4;
    /// The thing asked for does not exist.
    pub const NOT_FOUND: i32 = 5;
    /// The configuration change needs a restart of the appliance.
    pub const RESTART_NEEDED: i32 = 6;
    /// The configuration is invalid (sysexits' EX_CONFIG, as riptide-control).
    pub const CONFIG: i32 = 78;
}

const EXIT_CODES_HELP: &str = "\
Exit codes: 0 ok, 1 failure, 2 usage, 3 appliance unreachable, 4 request refused by the server,
5 not found, 6 configuration change needs a restart, 78 invalid configuration.
Connection: flags, then RIPTIDE_ADDRESS / IGGY_TCP_SERVER_ADDRESS, RIPTIDE_USERNAME / IGGY_USERNAME,
RIPTIDE_PASSWORD / IGGY_PASSWORD, RIPTIDE_CONTROL, RIPTIDE_CONTROL_TOKEN, RIPTIDE_CONTROL_CA_FILE, then
the context (--context, RIPTIDE_CONTEXT or the file's `default`) in $XDG_CONFIG_HOME/riptide/contexts.toml
(~/.config/riptide/contexts.toml).";

/// A failure with its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }
}

pub type CliResult = Result<(), CliError>;

#[derive(Debug, Parser)]
#[command(name = "riptidectl", version, about = "Operate a riptide appliance", after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Iggy protocol address of the appliance (host:port).
    #[arg(long, global = true, env = "RIPTIDE_ADDRESS")]
    pub address: Option<String>,
    #[arg(long, global = true, env = "RIPTIDE_USERNAME")]
    pub username: Option<String>,
    #[arg(long, global = true, env = "RIPTIDE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Control API address of riptide-control: host:port (HTTP, or HTTPS with --control-ca-file),
    /// http://host:port or https://host:port.
    #[arg(long, global = true, env = "RIPTIDE_CONTROL")]
    pub control: Option<String>,
    /// The control API's bearer token (`control.token` of the appliance).
    #[arg(
        long,
        global = true,
        env = "RIPTIDE_CONTROL_TOKEN",
        hide_env_values = true
    )]
    pub control_token: Option<String>,
    /// PEM CA certificate(s) that signed the control API's certificate (HTTPS).
    #[arg(long, global = true, env = "RIPTIDE_CONTROL_CA_FILE")]
    pub control_ca_file: Option<PathBuf>,
    /// A named context from the contexts file.
    #[arg(long, global = true, env = "RIPTIDE_CONTEXT")]
    pub context: Option<String>,
    /// Speak TLS to the Iggy protocol address (on with --tls-ca-file too).
    #[arg(long, global = true, env = "RIPTIDE_TLS")]
    pub tls: bool,
    /// PEM CA certificate(s) that signed the appliance's `tls.cert_file` (implies --tls).
    #[arg(long, global = true, env = "RIPTIDE_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// The name the appliance's certificate carries (default: the address's host).
    #[arg(long, global = true, env = "RIPTIDE_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start riptide-control (which starts the dataplane) in the background and wait until healthy.
    Up(UpArgs),
    /// Stop the dataplane cleanly and riptide-control with it.
    Down,
    /// Supervision, mode, cores, rings, connections and partitions per shard.
    Status,
    /// Where Iggy's HTTP API and the web console listen (open the console URL in a browser).
    #[command(alias = "console")]
    Http,
    /// Show, validate or change the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    #[command(subcommand)]
    Stream(StreamCommand),
    #[command(subcommand)]
    Topic(TopicCommand),
    #[command(subcommand)]
    Partition(PartitionCommand),
    #[command(subcommand)]
    Message(MessageCommand),
    #[command(subcommand, name = "consumer-group")]
    ConsumerGroup(GroupCommand),
    #[command(subcommand)]
    User(UserCommand),
    /// Connection steering state and counters.
    #[command(subcommand)]
    Steering(SteeringCommand),
    /// The Prometheus metrics page (parsed into JSON with --json).
    Metrics,
    /// The cluster: status (nodes, roles, term, leaders, lag), adding and removing nodes.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Development certificates for `[tls]`.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write a development CA, a server certificate for this appliance's names and addresses
    /// (localhost, 127.0.0.1, ::1, the hostname, the configured addresses, --name) and a client
    /// certificate (mutual TLS), as PEM files. Not for production: the CA's key is in DIR.
    DevCert(DevCertArgs),
}

#[derive(Debug, Args)]
pub struct DevCertArgs {
    /// Directory to write ca.pem, ca-key.pem, server.pem, server-key.pem, client.pem,
    /// client-key.pem into (created; existing files are not overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// riptide.toml whose tcp.address and dpdk.ip_address the server certificate should name.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Further DNS names or IP addresses for the server certificate.
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// riptide.toml for riptide-control.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// The riptide-control binary (default: next to riptidectl).
    #[arg(long)]
    pub control_bin: Option<PathBuf>,
    /// The dataplane binary for riptide-control (default: next to riptide-control).
    #[arg(long)]
    pub dataplane_bin: Option<PathBuf>,
    /// riptide-control's log file.
    #[arg(long, default_value = "riptide-control.log")]
    pub log: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// The effective configuration of the running appliance.
    Show {
        /// TOML instead of a JSON document (with --json) or the table.
        #[arg(long)]
        toml: bool,
    },
    /// Check a configuration file (or the defaults and environment) against this host.
    Validate { file: Option<PathBuf> },
    /// Change keys live (log.level, retention.cleaner_interval_ms, steering.policy).
    Set {
        /// KEY=VALUE pairs, e.g. log.level=debug
        #[arg(required = true)]
        pairs: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    Create { name: String },
    List,
    Get { stream: String },
    Update { stream: String, name: String },
    Delete { stream: String },
    Purge { stream: String },
}

#[derive(Debug, Clone, Args)]
pub struct TopicOptions {
    /// Message expiry: a duration such as "1h 30m", "none" (never) or "server_default".
    #[arg(long)]
    pub message_expiry: Option<String>,
    /// Maximum topic size, e.g. "10 GB" or "unlimited".
    #[arg(long)]
    pub max_size: Option<String>,
    /// Compression algorithm: none or gzip.
    #[arg(long)]
    pub compression: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    Create {
        stream: String,
        name: String,
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: u32,
        #[command(flatten)]
        options: TopicOptions,
    },
    List {
        stream: String,
    },
    Get {
        stream: String,
        topic: String,
    },
    Update {
        stream: String,
        topic: String,
        /// New name (default: keep).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        options: TopicOptions,
    },
    Delete {
        stream: String,
        topic: String,
    },
    Purge {
        stream: String,
        topic: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PartitionCommand {
    /// Add partitions to a topic.
    Create {
        stream: String,
        topic: String,
        #[arg(long, short = 'n', default_value_t = 1)]
        count: u32,
    },
    List {
        stream: String,
        topic: String,
    },
    Get {
        stream: String,
        topic: String,
        partition: u32,
    },
    /// Remove the last partitions of a topic.
    Delete {
        stream: String,
        topic: String,
        #[arg(long, short = 'n', default_value_t = 1)]
        count: u32,
    },
    /// Delete the segments of one partition (DeleteSegments with its segment count), keeping
    /// the partition; the server decides whether the open segment goes too.
    Purge {
        stream: String,
        topic: String,
        partition: u32,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
    Raw,
}

#[derive(Debug, Subcommand)]
pub enum MessageCommand {
    /// Send messages: each argument is one message; without arguments each line of --file or
    /// stdin is one (or the whole input with --whole).
    Send(SendArgs),
    /// Poll messages from a partition.
    Poll(PollArgs),
}

#[derive(Debug, Args)]
pub struct SendArgs {
    pub stream: String,
    pub topic: String,
    pub messages: Vec<String>,
    #[arg(long, conflicts_with = "key")]
    pub partition: Option<u32>,
    /// Partition by this key (same key, same partition).
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Send the whole input as one message (binary safe).
    #[arg(long)]
    pub whole: bool,
}

#[derive(Debug, Args)]
pub struct PollArgs {
    pub stream: String,
    pub topic: String,
    #[arg(long, default_value_t = 0)]
    pub partition: u32,
    #[arg(long, conflicts_with_all = ["first", "last", "next"])]
    pub offset: Option<u64>,
    #[arg(long)]
    pub first: bool,
    #[arg(long)]
    pub last: bool,
    /// From the consumer's stored offset.
    #[arg(long)]
    pub next: bool,
    #[arg(long, short = 'n', default_value_t = 10)]
    pub count: u32,
    /// Consumer id (numeric or name).
    #[arg(long, default_value = "1")]
    pub consumer: String,
    /// Store the consumer offset after the poll.
    #[arg(long)]
    pub auto_commit: bool,
    /// text (table), json, or raw (payloads only, one per line).
    #[arg(long, short = 'o', value_enum)]
    pub output: Option<OutputFormat>,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    Create {
        stream: String,
        topic: String,
        name: String,
    },
    List {
        stream: String,
        topic: String,
    },
    Get {
        stream: String,
        topic: String,
        group: String,
    },
    Delete {
        stream: String,
        topic: String,
        group: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    // Field names differ from the global --username/--password (clap ids are shared).
    Create {
        #[arg(value_name = "USERNAME")]
        name: String,
        #[arg(value_name = "PASSWORD")]
        secret: String,
        #[arg(long)]
        inactive: bool,
    },
    List,
    Get {
        user: String,
    },
    Update {
        user: String,
        /// New username.
        #[arg(long = "rename", value_name = "USERNAME")]
        new_name: Option<String>,
        /// active or inactive
        #[arg(long)]
        status: Option<String>,
    },
    Delete {
        user: String,
    },
    /// Change a user's password.
    Password {
        user: String,
        current: String,
        new: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SteeringCommand {
    Show,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Nodes and their roles, the term, each partition's leader, the followers' lag in log
    /// entries, messages and bytes (as the leader sees it).
    Status,
    /// Add a node: start it first with a configuration listing the members and itself; it joins
    /// as a learner, catches up, then votes.
    #[command(alias = "add-node")]
    Add(AddNodeArgs),
    /// Remove a node from the cluster (it stops receiving the log; stop it afterwards).
    #[command(alias = "remove-node")]
    Remove {
        /// The node's id (`cluster.node_id` in its configuration).
        id: u64,
    },
}

#[derive(Debug, Args)]
pub struct AddNodeArgs {
    /// The new node's id (`cluster.node_id` in its configuration).
    pub id: u64,
    /// Where its peers reach it (its `cluster.replication_address`).
    #[arg(long)]
    pub replication_address: String,
    /// Where clients reach it (its Iggy TCP address).
    #[arg(long)]
    pub tcp_address: String,
    /// Its name in the roster (default: node-<id>).
    #[arg(long)]
    pub name: Option<String>,
    /// Where its riptide-control serves the HTTP API, if it does.
    #[arg(long)]
    pub http_address: Option<String>,
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    if let Command::Completions { shell } = &cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut command, "riptidectl", &mut std::io::stdout());
        return exit::OK;
    }
    if let Command::Tls(TlsCommand::DevCert(args)) = &cli.command {
        return match tls::dev_cert(args) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("riptidectl: {}", e.message);
                e.code
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("riptidectl: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("riptidectl: {}", e.message);
            e.code
        }
    }
}

async fn dispatch(cli: Cli) -> CliResult {
    let target = context::resolve(&cli.connection)?;
    let json = cli.json;
    match cli.command {
        Command::Up(args) => control_client::up(&target, args, json).await,
        Command::Down => control_client::down(&target, json).await,
        Command::Status => control_client::status(&target, json).await,
        Command::Http => control_client::http(&target, json).await,
        Command::Config(command) => control_client::config(&target, command, json).await,
        Command::Steering(SteeringCommand::Show) => control_client::steering(&target, json).await,
        Command::Metrics => control_client::metrics(&target, json).await,
        Command::Cluster(command) => cluster::run(&target, command, json).await,
        Command::Stream(command) => data::stream(&target, command, json).await,
        Command::Topic(command) => data::topic(&target, command, json).await,
        Command::Partition(command) => data::partition(&target, command, json).await,
        Command::Message(command) => data::message(&target, command, json).await,
        Command::ConsumerGroup(command) => data::group(&target, command, json).await,
        Command::User(command) => data::user(&target, command, json).await,
        Command::Completions { .. } | Command::Tls(_) => Ok(()),
    }
}
