//! `runtime/live.toml` (written by riptide-control) changes the running appliance: the
//! sk_reuseport steering policy switches and the change shows in `runtime/stats.json`.

mod common;

use common::Server;
use std::time::{Duration, Instant};

/// The steering policy the running server reports in its stats snapshot.
fn reported_policy(data: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(data.join("runtime").join("stats.json")).ok()?;
    let stats: serde_json::Value = serde_json::from_str(&text).ok()?;
    stats["steering_counters"]["policy"]
        .as_str()
        .map(str::to_string)
}

fn wait_for_policy(data: &std::path::Path, wanted: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if reported_policy(data).as_deref() == Some(wanted) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("policy still {:?}, wanted {wanted}", reported_policy(data))
}

#[test]
fn live_file_switches_the_steering_policy_without_a_restart() {
    let server = Server::start_with_env(&[("RIPTIDE_DATAPLANE_NETWORK_WORKERS", "2")])
        .expect("server starts");
    let data = server.data_path().to_path_buf();
    wait_for_policy(&data, "least_connections").expect("the program reports the default policy");
    let live = data.join("runtime").join("live.toml");
    let temp = live.with_extension("tmp");
    std::fs::write(
        &temp,
        "[steering]\npolicy = \"hash\"\n[retention]\ncleaner_interval_ms = 1000\n",
    )
    .expect("write live file");
    std::fs::rename(&temp, &live).expect("publish live file");
    wait_for_policy(&data, "hash").expect("the live change applies");
    server.finish().expect("clean stop");
}
