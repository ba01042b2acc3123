//! Short real runs of riptide-bench against the real riptide-dataplane binary on a fresh data
//! directory and a free port, with `--verify`. They check that the numbers are present and
//! consistent (messages sent = messages received, verification passed), never how big they are.
//!
//! The dataplane binary must be built first (`.ci/run` builds every binary before the tests):
//! `cargo build -p riptide-dataplane`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to write `runtime/current_config.toml`.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Candidate locations of the dataplane binary: next to this test's own target directory, then
/// `$CARGO_TARGET_DIR/debug`, then `<workspace>/target/debug`.
fn dataplane_binary() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // <target>/debug/deps/against_server-<hash> -> <target>/debug
        if let Some(debug_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(debug_dir.join("riptide-dataplane"));
        }
    }
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug").join("riptide-dataplane"));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    candidates.push(
        workspace
            .join("target")
            .join("debug")
            .join("riptide-dataplane"),
    );
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => p.clone(),
        None => panic!(
            "riptide-dataplane binary not found (looked at {candidates:?}); run `cargo build -p riptide-dataplane` first"
        ),
    }
}

/// The server process, killed when the test ends (also on panic).
struct Server {
    child: Child,
    address: String,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `[tcp] address = "ip:port"` from the server's runtime config.
fn tcp_address(config: &str) -> Option<String> {
    let mut in_tcp = false;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            in_tcp = line == "[tcp]";
        } else if in_tcp && line.starts_with("address") {
            let value = line.split_once('=')?.1.trim().trim_matches('"');
            return Some(value.to_string());
        }
    }
    None
}

fn start_server() -> Server {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(dataplane_binary())
        .env("IGGY_SYSTEM_PATH", data.path())
        .env("IGGY_TCP_ADDRESS", "127.0.0.1:0")
        .env("IGGY_ROOT_USERNAME", "iggy")
        .env("IGGY_ROOT_PASSWORD", "iggy")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start riptide-dataplane");
    let config_path = data.path().join("runtime").join("current_config.toml");
    let deadline = Instant::now() + SERVER_START_TIMEOUT;
    loop {
        if let Some(address) = std::fs::read_to_string(&config_path)
            .ok()
            .as_deref()
            .and_then(tcp_address)
        {
            if std::net::TcpStream::connect(&address).is_ok() {
                return Server {
                    child,
                    address,
                    _data: data,
                };
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("riptide-dataplane exited before it was ready: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "riptide-dataplane did not write {} within {SERVER_START_TIMEOUT:?}",
                config_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs riptide-bench with `global` options, `bench` (mode and its options), then
/// `tcp --server-address A output -o DIR`; returns the process output and the JSON results.
fn bench(server: &Server, global: &[&str], bench: &[&str]) -> (Output, Option<Value>) {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_riptide-bench"))
        .args(global)
        .args(bench)
        .args(["tcp", "--server-address", &server.address, "output", "-o"])
        .arg(out_dir.path())
        .output()
        .expect("run riptide-bench");
    let json = std::fs::read(out_dir.path().join("results.json"))
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("results.json parses"));
    (output, json)
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "riptide-bench failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Figures every group must carry, whatever their size.
fn assert_figures_present(json: &Value) {
    let groups = json["groups"].as_array().expect("groups");
    assert!(!groups.is_empty());
    for g in groups {
        let t = &g["throughput"];
        assert!(t["messages"].as_u64().unwrap() > 0, "{g}");
        assert!(t["mb_per_sec"].as_f64().unwrap() > 0.0, "{g}");
        assert!(t["messages_per_sec"].as_f64().unwrap() > 0.0, "{g}");
        let l = &g["latency"];
        for key in [
            "p50_us", "p90_us", "p95_us", "p99_us", "p999_us", "p9999_us", "min_us", "max_us",
        ] {
            assert!(l[key].as_u64().unwrap() > 0, "{key} in {g}");
        }
        assert!(
            l["min_us"].as_u64() <= l["p50_us"].as_u64()
                && l["p50_us"].as_u64() <= l["max_us"].as_u64()
        );
        assert!(!g["series"]["points"].as_array().unwrap().is_empty());
    }
}

fn assert_verified(json: &Value, expected: u64) {
    let v = &json["verify"];
    assert_eq!(v["mismatches"], 0, "{v}");
    assert_eq!(v["messages_unique"].as_u64(), Some(expected), "{v}");
    assert_eq!(v["messages_expected"].as_u64(), Some(expected), "{v}");
}

const SMALL: [&str; 7] = ["-m", "200", "-P", "50", "-b", "20", "--verify"];

#[test]
fn pinned_producer_and_consumer_verified() {
    let server = start_server();
    let (output, json) = bench(&server, &SMALL, &["ppc", "-p", "2", "-c", "2"]);
    assert_success(&output);
    let json = json.expect("results.json written");
    let expected = 2 * 20 * 50;
    assert_eq!(json["messages_sent"].as_u64(), Some(expected));
    assert_eq!(json["messages_received"].as_u64(), Some(expected));
    assert_verified(&json, expected);
    assert_figures_present(&json);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("verify: PASSED"), "{stdout}");
}

#[test]
fn pinned_producer_then_pinned_consumer_with_memory_acks_and_pipelining() {
    let server = start_server();
    let global = [
        "-m",
        "200",
        "-P",
        "50",
        "-b",
        "20",
        "--verify",
        "--ack",
        "memory",
        "--inflight",
        "4",
    ];
    let (output, json) = bench(&server, &global, &["pp", "-p", "2"]);
    assert_success(&output);
    let produced = json.expect("pp results");
    assert_eq!(produced["messages_sent"].as_u64(), Some(2 * 20 * 50));
    assert_figures_present(&produced);
    let (output, json) = bench(&server, &global, &["pc", "-c", "2"]);
    assert_success(&output);
    let consumed = json.expect("pc results");
    assert_eq!(consumed["messages_received"].as_u64(), Some(2 * 20 * 50));
    assert_verified(&consumed, 2 * 20 * 50);
    assert_figures_present(&consumed);
}

#[test]
fn balanced_producers_and_consumer_group_verified() {
    let server = start_server();
    let (output, json) = bench(
        &server,
        &SMALL,
        &["bpcg", "-p", "2", "-c", "2", "-a", "4", "-g", "1"],
    );
    assert_success(&output);
    let json = json.expect("results.json written");
    let expected = 2 * 20 * 50;
    assert_eq!(json["messages_sent"].as_u64(), Some(expected));
    assert_eq!(json["messages_received"].as_u64(), Some(expected));
    assert_verified(&json, expected);
    assert_figures_present(&json);
}

#[test]
fn end_to_end_records_end_to_end_latency() {
    let server = start_server();
    let (output, json) = bench(&server, &SMALL, &["e2e", "-p", "1"]);
    assert_success(&output);
    let json = json.expect("results.json written");
    assert_eq!(json["messages_sent"].as_u64(), Some(20 * 50));
    assert_verified(&json, 20 * 50);
    assert!(
        json["groups"][0]["end_to_end"]["p99_us"].as_u64().unwrap() > 0,
        "{}",
        json["groups"][0]
    );
}

#[test]
fn consumer_without_streams_and_bad_credentials_fail_cleanly() {
    let server = start_server();
    let (output, _) = bench(&server, &SMALL, &["pc", "-c", "1"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    let (output, _) = bench(&server, &["-p", "wrong-password"], &["pp", "-p", "1"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn runtime_config_address_is_parsed() {
    let text = "[system]\npath = \"/x\"\n[tcp]\nenabled = true\naddress = \"127.0.0.1:45678\"\n[http]\naddress = \"1.2.3.4:1\"\n";
    assert_eq!(tcp_address(text).as_deref(), Some("127.0.0.1:45678"));
    assert_eq!(tcp_address("[http]\naddress = \"1.2.3.4:1\"\n"), None);
}
