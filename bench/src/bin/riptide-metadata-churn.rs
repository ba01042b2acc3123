//! Metadata churn for scripts/bench-metadata.sh: creates `--streams` streams and deletes them
//! again, round after round, until `--rounds` are done or SIGTERM/SIGINT arrives, and prints
//! `churn_ops=<n> churn_ops_per_sec=<r> churn_p50_us=<a> churn_p99_us=<b>` (one op = one create
//! or one delete, each durable before its reply). Run next to a producer, it shows what metadata
//! changes cost the data path.

use anyhow::Context;
use clap::Parser;
use riptide_bench::client::Connection;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "riptide-metadata-churn",
    about = "create and delete streams in rounds"
)]
struct Args {
    /// ip:port of the appliance.
    #[arg(long, default_value = "127.0.0.1:8090")]
    server_address: String,
    #[arg(long, default_value = "iggy")]
    username: String,
    #[arg(long, default_value = "iggy")]
    password: String,
    /// Streams created, then deleted, per round.
    #[arg(long, default_value_t = 1000)]
    streams: u32,
    /// Rounds; 0 = until SIGTERM or SIGINT.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut connection = Connection::connect(&args.server_address, &args.username, &args.password)
        .await
        .context("connect")?;
    let mut latencies_us: Vec<u64> = Vec::new();
    let started = Instant::now();
    let stop = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let churn = async {
        let mut round = 0;
        while args.rounds == 0 || round < args.rounds {
            for delete in [false, true] {
                for index in 0..args.streams {
                    let name = format!("churn-{round}-{index}");
                    let at = Instant::now();
                    if delete {
                        connection.delete_stream(&name).await?;
                    } else {
                        connection.create_stream(&name).await?;
                    }
                    latencies_us.push(at.elapsed().as_micros() as u64);
                }
            }
            round += 1;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        result = churn => result?,
        _ = stop => {}
        _ = terminate.recv() => {}
    }
    report(&mut latencies_us, started.elapsed());
    Ok(())
}

fn report(latencies_us: &mut [u64], elapsed: Duration) {
    latencies_us.sort_unstable();
    let quantile = |q: f64| -> u64 {
        if latencies_us.is_empty() {
            return 0;
        }
        let index = ((latencies_us.len() as f64 * q).ceil() as usize).clamp(1, latencies_us.len());
        latencies_us[index - 1]
    };
    println!(
        "churn_ops={} churn_ops_per_sec={:.0} churn_p50_us={} churn_p99_us={}",
        latencies_us.len(),
        latencies_us.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        quantile(0.50),
        quantile(0.99)
    );
}
