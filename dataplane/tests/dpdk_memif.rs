//! The appliance binary with `backend = "dpdk"` on `net_memif` (the memif server), and userspace
//! clients on the other end of the shared memory, each its own DPDK process: the project's own
//! protocol client runs the conformance suite's core scenarios (`riptide-memif-scenarios`; the
//! SDK cannot speak memif), `riptide-bench --verify` loses nothing, a client killed in the middle
//! of a transfer does not stop the lcore (the next client is served), and restarts (SIGTERM, then
//! SIGKILL) keep every message.
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

#[test]
fn dpdk_appliance_over_memif_serves_userspace_clients_survives_a_killed_one_and_keeps_data() {
    if !prerequisites_met() {
        return;
    }
    let port = 20_000 + std::process::id() % 10_000;
    let cores = core_affinity::get_core_ids().expect("CPU list");
    let lcores: Vec<String> = cores.iter().take(2).map(|c| c.id.to_string()).collect();
    let config = format!(
        "[dataplane]\nbackend = \"dpdk\"\n\n[dpdk]\nlcores = [{}]\nno_huge = true\n\
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

    client.killed_mid_transfer();
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
    /// frames in flight and TCP connections open.
    fn killed_mid_transfer(&self) {
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
        child.kill().expect("SIGKILL the memif client");
        let output = child.wait_with_output().expect("reap the memif client");
        assert!(
            still_running,
            "the client to be killed had already ended ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
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
