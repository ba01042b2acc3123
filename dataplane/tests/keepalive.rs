//! Kernel mode, `tcp.keepalive_s`: a client that vanishes without FIN or RST (its host died, its
//! link was cut) loses its connection once keep-alive probes go unanswered, so it stops counting
//! against `tcp.connections_max`; a live client that stays as quiet keeps its own, because its
//! kernel answers the probes. The vanishing is nftables dropping every packet of the one
//! connection, both ways, on the loopback the two ends share.

mod common;

use anyhow::{bail, Context};
use common::raw::RawConnection;
use common::Server;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A silent peer is probed after 1 s, then every second, and closed after 3 unanswered probes
/// (4 s of silence).
const KEEPALIVE_S: u64 = 1;
/// Bound on the vanished client's connection being closed (4 s of keep-alive, plus the stats
/// file's 500 ms and slack for a loaded machine); without keep-alive it is never closed.
const DEAD_PEER_REAPED_WITHIN: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_client_that_vanishes_is_closed_by_keepalive_and_a_quiet_live_one_is_kept() {
    if !prerequisites_met() {
        return;
    }
    let config = format!(
        "[tcp]\nkeepalive_s = {KEEPALIVE_S}\n\n[dataplane]\nnetwork_workers = 1\nstorage_shards = 1\n"
    );
    let server = Server::start_with_config(Some(&config), &[]).expect("server start");
    // A failure panics with the server's log (printed when the unfinished server drops).
    if let Err(error) = vanishing_client_is_closed(&server).await {
        panic!("{error:#}");
    }
    server.finish().expect("the server stops on SIGTERM");
}

async fn vanishing_client_is_closed(server: &Server) -> anyhow::Result<()> {
    let mut quiet = RawConnection::connect(server.address()).await?;
    quiet.login_root().await?;
    let mut vanishing = RawConnection::connect(server.address()).await?;
    vanishing.login_root().await?;
    wait_for_open_connections(server.data_path(), 2, Instant::now()).await?;

    // From here on nothing of the vanishing client's connection reaches either end; both
    // clients stay silent.
    let _cut = CutConnection::new(vanishing.local_addr()?, server.address())?;
    let cut_at = Instant::now();
    let closed_after = wait_for_open_connections(server.data_path(), 1, cut_at).await?;
    eprintln!(
        "keepalive: the vanished client's connection was closed {closed_after:?} after the cut"
    );

    // The quiet client was as silent as the vanished one, and answered the probes: it is still
    // served.
    let pong = quiet.ping().await?;
    if !pong.is_reply() || pong.status() != 0 {
        bail!(
            "the quiet live client lost its connection: {}",
            pong.describe()
        );
    }
    Ok(())
}

/// Waits until the server holds `expected` connections open, at most DEAD_PEER_REAPED_WITHIN
/// from `since`; returns how long after `since` that was.
async fn wait_for_open_connections(
    data_path: &Path,
    expected: u64,
    since: Instant,
) -> anyhow::Result<Duration> {
    loop {
        let open = open_connections(data_path);
        if open == Some(expected) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > DEAD_PEER_REAPED_WITHIN {
            bail!(
                "{open:?} connections open {DEAD_PEER_REAPED_WITHIN:?} on, {expected} expected \
                 (tcp.keepalive_s = {KEEPALIVE_S})"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The network workers' open connections, from `runtime/stats.json` (rewritten every 500 ms).
fn open_connections(data_path: &Path) -> Option<u64> {
    let text = std::fs::read(data_path.join("runtime").join("stats.json")).ok()?;
    let stats: Value = serde_json::from_slice(&text).ok()?;
    stats["workers"]
        .as_array()?
        .iter()
        .map(|worker| worker["connections_open"].as_u64())
        .sum()
}

/// An nftables table dropping every packet of one TCP connection, both directions, in and out
/// (removed on drop).
struct CutConnection {
    table: String,
}

impl CutConnection {
    fn new(client: SocketAddr, server: SocketAddr) -> anyhow::Result<CutConnection> {
        let table = format!("riptide_keepalive_{}", std::process::id());
        let (client_port, server_port) = (client.port(), server.port());
        let both_ways = format!(
            "tcp sport {client_port} tcp dport {server_port} drop; \
             tcp sport {server_port} tcp dport {client_port} drop;"
        );
        let ruleset = format!(
            "table inet {table} {{\n\
             chain input {{ type filter hook input priority 0; policy accept; {both_ways} }}\n\
             chain output {{ type filter hook output priority 0; policy accept; {both_ways} }}\n}}\n"
        );
        nft(&["-f", "-"], Some(&ruleset))?;
        Ok(CutConnection { table })
    }
}

impl Drop for CutConnection {
    fn drop(&mut self) {
        if let Err(error) = nft(&["delete", "table", "inet", &self.table], None) {
            eprintln!(
                "keepalive: could not remove nftables table {}: {error:#}",
                self.table
            );
        }
    }
}

fn nft(args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft")?;
    let mut input = child.stdin.take().context("nft's stdin")?;
    input.write_all(stdin.unwrap_or_default().as_bytes())?;
    drop(input);
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("nft {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// Root and nftables; in CI (`CI=true`) their absence fails the test.
fn prerequisites_met() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let nft = Command::new("nft").arg("--version").output().is_ok();
    if root && nft {
        return true;
    }
    let reason = "root and nftables (to make a client vanish)";
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("keepalive: CI=true but this machine lacks {reason}");
    }
    eprintln!("SKIPPED keepalive: needs {reason}");
    false
}
