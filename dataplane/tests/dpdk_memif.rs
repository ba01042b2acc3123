//! The appliance binary with `backend = "dpdk"` on `net_memif` (the memif server), and userspace
//! clients on the other end of the shared memory, each its own DPDK process: the project's own
//! protocol client runs the conformance suite's core scenarios (`riptide-memif-scenarios`; the
//! SDK cannot speak memif), `riptide-bench --verify` loses nothing, a client killed in the middle
//! of a transfer does not stop the lcore and its connections, never closed by a FIN or RST, are
//! reaped by TCP keep-alive (`tcp.keepalive_s = 1`), the next client is served, and restarts
//! (SIGTERM, then SIGKILL) keep every message.
//!
//! One appliance per test binary (and one #[test]): its phases run in turn, one client at a time
//! (a memif server interface takes one client). Its shards nap (`dpdk.shard_nap_us`), so the lcore
//! pushes requests without waking them: every phase also checks that nothing waits unseen.

#![cfg(feature = "dpdk")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// The memif link's addresses (a private /24 of the lab).
const APPLIANCE_IP: &str = "10.77.0.1";
const CLIENT_ADDRESS: &str = "10.77.0.2/24";
/// riptide-bench volume: 2 producers × 20 batches × 50 messages of 200 bytes, verified.
const BENCH_GLOBAL_ARGS: [&str; 7] = ["-m", "200", "-P", "50", "-b", "20", "--verify"];
const BENCH_MESSAGES: u64 = 2 * 20 * 50;
/// The killed client's run: long enough to be in the middle of it when killed.
const ENDLESS_BENCH_ARGS: [&str; 6] = ["-m", "200", "-P", "50", "-b", "1000000"];
/// How long the client to be killed transfers first.
const KILL_AFTER: Duration = Duration::from_secs(2);
/// Bound on one client run (a hung appliance fails the test).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// `tcp.keepalive_s` of the appliance: a silent peer is probed after 1 s, then every second, and
/// its connection closed after 3 unanswered probes (4 s of silence).
const KEEPALIVE_S: u64 = 1;
/// Bound on a vanished client's connections being closed (4 s of keep-alive, plus the stats
/// file's 500 ms and slack for a loaded machine); without keep-alive they stay 120 s.
const DEAD_PEER_REAPED_WITHIN: Duration = Duration::from_secs(15);

#[test]
fn dpdk_appliance_over_memif_serves_userspace_clients_survives_a_killed_one_and_keeps_data() {
    if !prerequisites_met() {
        return;
    }
    let port = 20_000 + std::process::id() % 10_000;
    let cores = core_affinity::get_core_ids().expect("CPU list");
    let lcores: Vec<String> = cores.iter().take(2).map(|c| c.id.to_string()).collect();
    let config = format!(
        "[tcp]\nkeepalive_s = {KEEPALIVE_S}\n\n[dataplane]\nbackend = \"dpdk\"\n\n[dpdk]\nlcores = [{}]\nno_huge = true\n\
         memory_mb = 256\nvdevs = [\"net_memif0\"]\nip_address = \"{APPLIANCE_IP}\"\n\
         prefix_len = 24\nport = {port}\nidle_backoff_us = 200\nshard_nap_us = 100\n",
        lcores.join(", ")
    );
    let mut server = Server::start_with_config(Some(&config), &[])
        .unwrap_or_else(|error| panic!("the memif appliance did not start: {error:#}"));
    let client = MemifClient {
        socket: server.data_path().join("runtime").join("memif.sock"),
        server_address: format!("{APPLIANCE_IP}:{port}"),
        cpu: cores[0].id.to_string(),
    };
    assert!(
        client.socket.exists(),
        "no memif socket at {}",
        client.socket.display()
    );

    client.run_core_scenarios();
    let both = client.bench(&BENCH_GLOBAL_ARGS, &["ppc", "-p", "2", "-c", "2"]);
    check_bench_counts(&both, BENCH_MESSAGES, BENCH_MESSAGES);

    client.killed_mid_transfer(server.data_path());
    assert!(
        server.is_running(),
        "the appliance died with its memif client"
    );
    // The next client is served: fresh streams written and read back, verified.
    let both = client.bench(&BENCH_GLOBAL_ARGS, &["ppc", "-p", "2", "-c", "2"]);
    check_bench_counts(&both, BENCH_MESSAGES, BENCH_MESSAGES);

    // Restarts keep every message: the pinned consumers read back what was written, verified.
    server.restart().expect("SIGTERM and a start");
    let consumed = client.bench(&BENCH_GLOBAL_ARGS, &["pc", "-c", "2"]);
    check_bench_counts(&consumed, 0, BENCH_MESSAGES);
    server.sigkill().expect("SIGKILL");
    server
        .start_again()
        .expect("start after SIGKILL (a stale memif socket is no obstacle)");
    let consumed = client.bench(&BENCH_GLOBAL_ARGS, &["pc", "-c", "2"]);
    check_bench_counts(&consumed, 0, BENCH_MESSAGES);
    client.run_core_scenarios();

    server
        .finish()
        .expect("the memif appliance stays up and stops on SIGTERM");
}

/// Root (the EAL's runtime files) and two CPUs (main and polling lcore); CI must have both.
fn prerequisites_met() -> bool {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (DPDK's runtime directory)");
    }
    if core_affinity::get_core_ids().map_or(0, |cores| cores.len()) < 2 {
        missing.push("two CPUs (main lcore + polling lcore)");
    }
    if missing.is_empty() {
        return true;
    }
    let reason = missing.join(", ");
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("dpdk_memif: CI=true but this machine lacks: {reason}");
    }
    eprintln!("SKIPPED dpdk_memif: needs {reason}");
    false
}

/// How the userspace clients reach the appliance.
struct MemifClient {
    socket: PathBuf,
    server_address: String,
    cpu: String,
}

impl MemifClient {
    fn memif_args(&self) -> Vec<String> {
        vec![
            "--socket".into(),
            self.socket.display().to_string(),
            "--server-address".into(),
            self.server_address.clone(),
            "--ip-address".into(),
            CLIENT_ADDRESS.into(),
            "--cpu".into(),
            self.cpu.clone(),
        ]
    }

    /// The core scenarios by the project's own protocol client over memif.
    fn run_core_scenarios(&self) {
        let mut command = Command::new(sibling_binary("riptide-memif-scenarios"));
        command.args(self.memif_args());
        let output = run_bounded(command);
        assert!(
            output.status.success(),
            "core scenarios over memif failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs riptide-bench over memif; returns its results.json after checking its exit status.
    fn bench(&self, global_args: &[&str], bench_args: &[&str]) -> Value {
        let output_dir = tempfile::tempdir().expect("bench output dir");
        let mut command = Command::new(sibling_binary("riptide-bench"));
        command
            .args(global_args)
            .args(bench_args)
            .arg("memif")
            .args(self.memif_args())
            .args(["output", "-o"])
            .arg(output_dir.path());
        let output = run_bounded(command);
        assert!(
            output.status.success(),
            "riptide-bench {bench_args:?} over memif failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let json = std::fs::read(output_dir.path().join("results.json")).expect("results.json");
        serde_json::from_slice(&json).expect("results.json parses")
    }

    /// A producer run SIGKILLed in the middle of its transfer: the memif peer vanishes with
    /// frames in flight and TCP connections open, and no FIN or RST ever comes (its TCP stack
    /// died with it). Keep-alive closes them: the appliance's open connections (its worker
    /// cores' and its lcores' counts) fall back to none, as before the client.
    fn killed_mid_transfer(&self, data_path: &Path) {
        // The clients before this one exit without closing their connections either (their
        // TCP stack ends with the process): keep-alive closes those first.
        wait_until_no_connection_open(data_path, Instant::now(), "the previous clients'");
        let mut child = Command::new(sibling_binary("riptide-bench"))
            .args(ENDLESS_BENCH_ARGS)
            .args(["pp", "-p", "2", "memif"])
            .args(self.memif_args())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run riptide-bench");
        std::thread::sleep(KILL_AFTER);
        let still_running = matches!(child.try_wait(), Ok(None));
        let during = open_connections(data_path);
        child.kill().expect("SIGKILL the memif client");
        let killed_at = Instant::now();
        let output = child.wait_with_output().expect("reap the memif client");
        assert!(
            still_running,
            "the client to be killed had already ended ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            during.sessions > 0 && during.sockets > 0,
            "the killed client's connections were never counted: {during:?}"
        );
        let closed_after =
            wait_until_no_connection_open(data_path, killed_at, "the SIGKILLed client's");
        eprintln!(
            "dpdk_memif: the killed client's connections ({during:?}) were closed {closed_after:?} \
             after the kill"
        );
    }
}

/// Waits until the appliance holds no connection open, at most DEAD_PEER_REAPED_WITHIN from
/// `since`; returns how long after `since` that was.
fn wait_until_no_connection_open(data_path: &Path, since: Instant, whose: &str) -> Duration {
    let none = OpenConnections {
        sessions: 0,
        sockets: 0,
    };
    loop {
        let open = open_connections(data_path);
        if open == none {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < DEAD_PEER_REAPED_WITHIN,
            "{whose} connections were still open {DEAD_PEER_REAPED_WITHIN:?} after they went \
             silent (tcp.keepalive_s = {KEEPALIVE_S}): {open:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connections the appliance holds open, from `runtime/stats.json` (rewritten every 500 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenConnections {
    /// The worker cores' connections (what `tcp.connections_max` admits against).
    sessions: u64,
    /// The polling lcores' established TCP sockets.
    sockets: u64,
}

fn open_connections(data_path: &Path) -> OpenConnections {
    let path = data_path.join("runtime").join("stats.json");
    let text =
        std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let stats: Value = serde_json::from_slice(&text).expect("stats.json parses");
    let rows = |list: &str| {
        stats[list]
            .as_array()
            .unwrap_or_else(|| panic!("stats.json has no {list}: {stats}"))
            .clone()
    };
    let count = |row: &Value, field: &str| row[field].as_u64().expect("a count");
    OpenConnections {
        sessions: rows("workers")
            .iter()
            .map(|worker| count(worker, "connections_open"))
            .sum(),
        // The port's row (queue null) totals its queues' rows.
        sockets: rows("ports")
            .iter()
            .filter(|port| port["queue"].is_null())
            .map(|port| count(port, "tcp_connections"))
            .sum(),
    }
}

/// Runs a client to completion within CLIENT_TIMEOUT (killed and reported past it).
fn run_bounded(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a memif client");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
        let output = child.wait_with_output().expect("reap the memif client");
        panic!(
            "a memif client ran past {CLIENT_TIMEOUT:?}:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    child.wait_with_output().expect("memif client output")
}

/// A binary of riptide-bench beside the dataplane binary, built with its `dpdk` feature
/// (scripts/test.sh builds every binary with it before the tests).
fn sibling_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_riptide-dataplane")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p riptide-bench --features dpdk`)",
        path.display()
    );
    path
}

/// Messages sent and received as expected, and --verify found every message once, intact.
fn check_bench_counts(results: &Value, sent: u64, received: u64) {
    assert_eq!(
        results["messages_sent"].as_u64(),
        Some(sent),
        "sent: {results}"
    );
    assert_eq!(
        results["messages_received"].as_u64(),
        Some(received),
        "received: {results}"
    );
    if received > 0 {
        let verify = &results["verify"];
        assert_eq!(verify["mismatches"].as_u64(), Some(0), "{verify}");
        assert_eq!(
            verify["messages_unique"].as_u64(),
            Some(received),
            "{verify}"
        );
    }
}
