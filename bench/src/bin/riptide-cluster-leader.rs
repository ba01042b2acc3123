//! Waits until a riptide cluster has a leader that takes writes and prints its client address,
//! for scripts/bench-cluster.sh: `leader_tcp_address=<ip:port> leader_id=<id>`. Asks one node
//! over the cluster's admin protocol (its replication port, the cluster's secret).

use anyhow::{bail, Context};
use clap::Parser;
use riptide_config::cluster::{secret_digest, AdminClient, AdminReply, AdminRequest};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "riptide-cluster-leader",
    about = "wait for a cluster leader and print it"
)]
struct Args {
    /// A node's replication address.
    #[arg(long)]
    replication_address: String,
    /// `[cluster] name` of the nodes.
    #[arg(long)]
    cluster_name: String,
    /// `[cluster] secret` of the nodes; read from RIPTIDE_CLUSTER_SECRET when not given (so it
    /// stays out of `ps`).
    #[arg(long)]
    secret: Option<String>,
    /// Longest wait for a leader, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
}

/// Between two status requests while no leader is known.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let secret = match args.secret {
        Some(secret) => secret,
        None => std::env::var("RIPTIDE_CLUSTER_SECRET")
            .context("--secret or RIPTIDE_CLUSTER_SECRET is needed")?,
    };
    let digest = secret_digest(&args.cluster_name, &secret);
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let mut last_error = String::from("no answer yet");
    while Instant::now() < deadline {
        let status = AdminClient::connect(&args.replication_address, digest, REQUEST_TIMEOUT)
            .and_then(|mut client| client.call(&AdminRequest::Status));
        match status {
            Ok(AdminReply::Status(status)) => {
                if let Some(leader) = status.leader_node() {
                    println!(
                        "leader_tcp_address={} leader_id={}",
                        leader.tcp_address, leader.id
                    );
                    return Ok(());
                }
                last_error = format!("no leader in term {}", status.term);
            }
            Ok(other) => bail!("unexpected reply {other:?}"),
            Err(error) => last_error = error.to_string(),
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Err(anyhow::anyhow!(last_error))
        .with_context(|| format!("no cluster leader within {} s", args.timeout_s))
}
