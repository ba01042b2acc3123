//! Test harness: a real appliance (riptide-control starting the real riptide-dataplane) in a
//! scratch data directory on free ports, driven through the real riptidectl binary.
#![allow(dead_code)] // Each suite uses a different part of the harness.

pub mod webdriver;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const START_TIMEOUT: Duration = Duration::from_secs(60);
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (returns false) outside CI with the reason printed; in CI a missing prerequisite fails.
pub fn require(condition: bool, reason: &str) -> bool {
    if condition {
        return true;
    }
    if in_ci() {
        panic!("prerequisite missing in CI (CI=true): {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

pub fn control_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_riptide-control"))
}

pub fn ctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_riptidectl"))
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The dataplane binary: beside riptide-control, in $CARGO_TARGET_DIR/debug, or in
/// <workspace>/target/debug (.ci/run builds every binary first).
pub fn dataplane_bin() -> Option<PathBuf> {
    let mut candidates = vec![control_bin().with_file_name("riptide-dataplane")];
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug/riptide-dataplane"));
    }
    candidates.push(workspace_root().join("target/debug/riptide-dataplane"));
    candidates.into_iter().find(|p| p.is_file())
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A blocking HTTP/1.1 request to the control API (the tests' own client, independent of the
/// CLI's): returns the status code and the body.
pub fn http(address: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    http_with(address, method, path, body, &[])
}

/// [`http`] with extra request headers (e.g. `("Authorization", "Bearer ...")`).
pub fn http_with(
    address: &str,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    // axum answers small bodies with Content-Length; a chunked body is not expected here.
    Ok((code, body.to_string()))
}

/// A running riptide-control with its dataplane.
pub struct Appliance {
    pub dir: TempDir,
    child: Option<Child>,
    pub control: String,
    log_path: PathBuf,
}

impl Appliance {
    /// Starts one; `None` when the dataplane binary is missing outside CI (skip).
    pub fn start() -> Option<Appliance> {
        Self::start_with(&[], None)
    }

    pub fn start_with(extra_env: &[(&str, &str)], config: Option<&str>) -> Option<Appliance> {
        let appliance = Self::spawn(extra_env, config, true)?;
        appliance.wait_healthy();
        Some(appliance)
    }

    /// Starts riptide-control and waits until its control API is bound (not until healthy).
    /// `scratch_addresses` puts every listener on a free loopback port and two threads of each
    /// kind; without it the configuration's addresses and threads are used. The data
    /// directory is always the scratch one.
    pub fn spawn(
        extra_env: &[(&str, &str)],
        config: Option<&str>,
        scratch_addresses: bool,
    ) -> Option<Appliance> {
        let dataplane = dataplane_bin();
        if !require(
            dataplane.is_some(),
            "riptide-dataplane is not built (cargo build -p riptide-dataplane)",
        ) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("riptide-control-test-")
            .tempdir()
            .expect("temp dir");
        let log_path = dir.path().join("control.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(control_bin());
        command
            .arg("--dataplane-bin")
            .arg(dataplane.expect("checked"))
            .env("IGGY_SYSTEM_PATH", dir.path().join("data"))
            .env_remove("RUST_LOG")
            // riptidectl's variables share the RIPTIDE_ prefix with the configuration's
            // overrides: riptide-control must keep them away from the configuration.
            .env("RIPTIDE_ADDRESS", "127.0.0.1:1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if scratch_addresses {
            command
                .env("IGGY_TCP_ADDRESS", "127.0.0.1:0")
                .env("RIPTIDE_CONTROL_ADDRESS", "127.0.0.1:0")
                .env("RIPTIDE_HTTP_ADDRESS", "127.0.0.1:0")
                .env("RIPTIDE_DATAPLANE_NETWORK_WORKERS", "2")
                .env("RIPTIDE_DATAPLANE_STORAGE_SHARDS", "2");
        }
        if let Some(text) = config {
            let path = dir.path().join("riptide.toml");
            std::fs::write(&path, text).expect("config file");
            command.arg("--config").arg(path);
        }
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start riptide-control");
        let mut appliance = Appliance {
            dir,
            child: Some(child),
            control: String::new(),
            log_path,
        };
        let bound = appliance.wait_for_file("runtime/control_address");
        // A control API bound to every address is reached on loopback.
        appliance.control = bound.trim().replace("0.0.0.0:", "127.0.0.1:");
        Some(appliance)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn wait_for_file(&mut self, relative: &str) -> String {
        let path = self.data_dir().join(relative);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                if !text.trim().is_empty() {
                    return text;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "riptide-control exited ({status}) before {relative} appeared:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{relative} did not appear:\n{}",
                self.log()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until /health answers 200.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((200, _)) = http(&self.control, "GET", "/health", "") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not healthy in time:\n{}",
                self.log()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The dataplane's bound Iggy address (re-read: a restarted dataplane on port 0 moves).
    pub fn tcp_address(&self) -> String {
        let text = std::fs::read_to_string(self.data_dir().join("runtime/current_config.toml"))
            .expect("current_config.toml");
        let table: toml::Table = text.parse().expect("current_config.toml is TOML");
        table["tcp"]["address"]
            .as_str()
            .expect("tcp.address")
            .to_string()
    }

    /// The HTTP API's bound address (host:port).
    pub fn http_address(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("runtime/http_address"))
            .expect("runtime/http_address")
            .trim()
            .to_string()
    }

    /// The HTTP API's base URL.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_address())
    }

    /// The dataplane's process id, from the supervisor.
    pub fn dataplane_pid(&self) -> i32 {
        self.status()["supervisor"]["pid"].as_i64().expect("pid") as i32
    }

    /// Runs riptidectl against this appliance.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_with_stdin(args, None)
    }

    pub fn ctl_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut command = Command::new(ctl_bin());
        command
            .args(args)
            .env("RIPTIDE_CONTROL", &self.control)
            .env("RIPTIDE_ADDRESS", self.tcp_address())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .env_remove("RIPTIDE_CONTEXT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("run riptidectl");
        if let Some(bytes) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(bytes)
                .expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("riptidectl output")
    }

    /// Runs riptidectl with --json, asserts success and parses stdout.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.ctl(&all);
        assert!(
            output.status.success(),
            "riptidectl {args:?} failed ({}): {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "riptidectl {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    pub fn status(&self) -> Value {
        let (code, body) = http(&self.control, "GET", "/status", "").expect("GET /status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status JSON")
    }

    /// Waits for riptide-control to exit (after `riptidectl down`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("riptide-control did not exit in time:\n{}", self.log());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM so that the dataplane is stopped too (it would get SIGTERM via
            // PDEATHSIG anyway).
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(POLL_INTERVAL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}
