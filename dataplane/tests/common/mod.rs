//! Test harness shared by the integration suites: starts the real `riptide-dataplane` binary on a
//! free port with a fresh data directory, connects the official `iggy` 0.11 SDK to it, restarts or
//! SIGKILLs it, and prints the server's log when a test fails.
#![allow(dead_code)] // Each suite uses a different part of the harness.

pub mod pki;
pub mod raw;
pub mod scenarios;
pub mod xxh3;
pub mod xxh32;

use anyhow::{anyhow, bail, Context};
use iggy::prelude::*;
use std::fs::{self, File};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a server may take to bind and write `runtime/current_config.toml`.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERM may take to drain and sync before the harness SIGKILLs.
pub const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Restarts on the same port retry this often when the port is briefly unavailable.
const RESTART_BIND_ATTEMPTS_MAX: u32 = 5;
const POLL_INTERVAL: Duration = Duration::from_millis(25);

pub const ROOT_USERNAME: &str = "iggy";
pub const ROOT_PASSWORD: &str = "iggy";

/// A running `riptide-dataplane` process with its own data directory.
pub struct Server {
    data_dir: TempDir,
    child: Option<Child>,
    address: SocketAddr,
    /// Every start appends to this one log so a failure shows the whole history.
    log_path: PathBuf,
    starts_count: u32,
    extra_env: Vec<(String, String)>,
    /// A `riptide.toml` in the data directory, passed with `--config`.
    config_path: Option<PathBuf>,
    finished: bool,
}

impl Server {
    /// Starts a server on 127.0.0.1:0 with a fresh data directory.
    pub fn start() -> anyhow::Result<Server> {
        Self::start_with_env(&[])
    }

    /// Starts a server with extra environment variables (e.g. `RIPTIDE_LIMITS_*`).
    pub fn start_with_env(extra_env: &[(&str, &str)]) -> anyhow::Result<Server> {
        Self::start_with_config(None, extra_env)
    }

    /// Starts a server with a `riptide.toml` (keys the environment cannot carry, such as
    /// `[dpdk] vdevs` whose values hold commas) and extra environment variables.
    pub fn start_with_config(
        config_toml: Option<&str>,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let data_dir = tempfile::Builder::new()
            .prefix("riptide-conformance-")
            .tempdir()
            .context("creating the data directory")?;
        let log_path = data_dir.path().join("server-stderr.log");
        let config_path = match config_toml {
            Some(text) => {
                let path = data_dir.path().join("riptide.toml");
                fs::write(&path, text).context("writing riptide.toml")?;
                Some(path)
            }
            None => None,
        };
        let mut server = Server {
            data_dir,
            child: None,
            address: "127.0.0.1:0".parse().expect("literal address"),
            log_path,
            starts_count: 0,
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            config_path,
            finished: false,
        };
        server.spawn_and_wait("127.0.0.1:0")?;
        Ok(server)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    /// Where the server serves the protocol, for the SDK.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            address: self.address,
            tls: None,
        }
    }

    pub fn connection_string(&self) -> String {
        self.endpoint().connection_string()
    }

    /// A connected SDK client signed in as root.
    pub async fn client(&self) -> anyhow::Result<IggyClient> {
        self.endpoint().client().await
    }

    /// A connected SDK client signed in with the given credentials.
    pub async fn client_for(&self, username: &str, password: &str) -> anyhow::Result<IggyClient> {
        self.endpoint().client_for(username, password).await
    }

    /// A connected SDK client that is not signed in.
    pub async fn anonymous_client(&self) -> anyhow::Result<IggyClient> {
        self.endpoint().anonymous_client().await
    }

    /// Graceful stop (SIGTERM, bounded wait), then a start on the same data directory and port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop_gracefully()?;
        self.start_again()
    }

    /// SIGKILL: no chance to flush anything that was not already durable.
    pub fn sigkill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("SIGKILL")?;
            child.wait().context("reaping the killed server")?;
        }
        Ok(())
    }

    /// Starts the server again on the same data directory, preferring the same port so clients
    /// that reconnect find it.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let mut last_error = None;
        for _ in 0..RESTART_BIND_ATTEMPTS_MAX {
            match self.start_again_once() {
                Ok(()) => return Ok(()),
                Err(error) => {
                    last_error = Some(error);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("restart failed")))
    }

    /// One start on the same data directory and address, without retrying.
    pub fn start_again_once(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("start_again while the server is running");
        }
        let same_address = self.address.to_string();
        self.spawn_and_wait(&same_address)
    }

    /// Whether the process is still alive (it must never die on bad input).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Marks the test as passed (no log dump) and stops the server gracefully; the server must
    /// still be alive at the end of every test.
    pub fn finish(mut self) -> anyhow::Result<()> {
        if self.child.is_some() && !self.is_running() {
            bail!("the server died during the test");
        }
        self.stop_gracefully()?;
        self.finished = true;
        Ok(())
    }

    /// SIGTERM and a bounded wait for the exit (then SIGKILL and an error).
    pub fn stop_gracefully(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + SERVER_STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        child.kill()?;
        child.wait()?;
        bail!("the server did not exit within {SERVER_STOP_TIMEOUT:?} of SIGTERM")
    }

    fn spawn_and_wait(&mut self, tcp_address: &str) -> anyhow::Result<()> {
        let runtime_config = self.data_path().join("runtime").join("current_config.toml");
        // A stale file from the previous run would hand out the old address.
        let _ = fs::remove_file(&runtime_config);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        self.starts_count += 1;
        let mut command = Command::new(env!("CARGO_BIN_EXE_riptide-dataplane"));
        command
            .env("IGGY_SYSTEM_PATH", self.data_path())
            .env("IGGY_TCP_ADDRESS", tcp_address)
            .env("IGGY_ROOT_USERNAME", ROOT_USERNAME)
            .env("IGGY_ROOT_PASSWORD", ROOT_PASSWORD)
            .env("RUST_LOG", server_log_filter())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(path) = &self.config_path {
            command.arg("--config").arg(path);
        }
        for (key, value) in self.extra_env.iter().cloned().chain(debug_env()) {
            command.env(key, value);
        }
        let child = command.spawn().context("spawning riptide-dataplane")?;
        self.child = Some(child);
        match self.wait_for_address(&runtime_config) {
            Ok(address) => {
                self.address = address;
                Ok(())
            }
            Err(error) => {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                Err(error)
            }
        }
    }

    fn wait_for_address(&mut self, runtime_config: &Path) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        loop {
            if let Some(address) = read_tcp_address(runtime_config) {
                return Ok(address);
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("riptide-dataplane exited during start-up with {status}");
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "no [tcp] address in {} after {SERVER_START_TIMEOUT:?}",
                    runtime_config.display()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Where an appliance serves the Iggy protocol: the kernel-mode server's bound address, or the
/// DPDK appliance's own address (reached from the lab's namespace).
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub address: SocketAddr,
    /// `[tls]` servers: how the SDK verifies the server (leaked once per test: endpoints are
    /// copied into every scenario).
    pub tls: Option<&'static ClientTls>,
}

/// The SDK's TLS options: the name the server's certificate carries and the CA that signed it.
#[derive(Debug)]
pub struct ClientTls {
    pub domain: String,
    pub ca_file: PathBuf,
}

impl ClientTls {
    pub fn leak(domain: &str, ca_file: &Path) -> &'static ClientTls {
        Box::leak(Box::new(ClientTls {
            domain: domain.to_string(),
            ca_file: ca_file.to_path_buf(),
        }))
    }
}

impl Endpoint {
    pub fn connection_string(&self) -> String {
        self.connection_string_for(ROOT_USERNAME, ROOT_PASSWORD)
    }

    /// Reconnection is bounded so a dead server fails a test instead of hanging it, and long
    /// enough (10 x 200 ms) for a restart on a loaded 2-core CI machine: with 2 retries a
    /// client that survived a restart gave up once (`Not connected`) while the suite ran.
    ///
    /// `reestablish_after` (the SDK's default 5 s) makes a reconnect within 5 s of the last
    /// connect sleep out the rest first, in state `Connecting`. When the SDK's heartbeat task
    /// starts that reconnect, a request made meanwhile fails at once with `Not connected` (iggy
    /// 0.11's `connect()` returns Ok while another task connects, and the replay meets the same
    /// state): a client that survived a DPDK appliance's restart failed so, once. 100 ms leaves
    /// that window to a reconnect, not to a timer.
    pub fn connection_string_for(&self, username: &str, password: &str) -> String {
        let tls = self.tls.map_or_else(String::new, |tls| {
            format!(
                "&tls=true&tls_domain={}&tls_ca_file={}",
                tls.domain,
                tls.ca_file.display()
            )
        });
        format!(
            "iggy://{username}:{password}@{}?reconnection_retries=10&reconnection_interval=200ms\
             &reestablish_after=100ms{tls}",
            self.address
        )
    }

    /// A connected SDK client signed in as root.
    pub async fn client(&self) -> anyhow::Result<IggyClient> {
        self.client_for(ROOT_USERNAME, ROOT_PASSWORD).await
    }

    /// A connected SDK client signed in with the given credentials (auto-login of the
    /// connection string: `connect` signs in).
    pub async fn client_for(&self, username: &str, password: &str) -> anyhow::Result<IggyClient> {
        let client =
            IggyClient::from_connection_string(&self.connection_string_for(username, password))
                .map_err(|e| anyhow!("connection string: {e}"))?;
        client
            .connect()
            .await
            .map_err(|e| anyhow!("connect+login as {username}: {e}"))?;
        Ok(client)
    }

    /// A connected SDK client that is not signed in.
    pub async fn anonymous_client(&self) -> anyhow::Result<IggyClient> {
        let mut builder = TcpClientConfigBuilder::new()
            .with_server_address(self.address.to_string())
            .with_reconnection_max_retries(Some(2));
        if let Some(tls) = self.tls {
            builder = builder
                .with_tls_enabled(true)
                .with_tls_domain(tls.domain.clone())
                .with_tls_ca_file(tls.ca_file.display().to_string())
                .with_tls_validate_certificate(true);
        }
        let config = builder.build().map_err(|e| anyhow!("tcp config: {e}"))?;
        let tcp = TcpClient::create(std::sync::Arc::new(config))
            .map_err(|e| anyhow!("tcp client: {e}"))?;
        let client = IggyClient::new(ClientWrapper::Tcp(tcp));
        client
            .connect()
            .await
            .map_err(|e| anyhow!("connect: {e}"))?;
        Ok(client)
    }
}

/// The server's log filter: `info`, or `CONFORMANCE_SERVER_LOG` when set (e.g. `debug` while
/// chasing a failure).
fn server_log_filter() -> String {
    std::env::var("CONFORMANCE_SERVER_LOG").unwrap_or_else(|_| "info".to_string())
}

/// Extra server environment for chasing a failure, from `CONFORMANCE_SERVER_ENV`
/// (`KEY=value,KEY=value`, e.g. `RIPTIDE_DATAPLANE_NETWORK_WORKERS=1`).
fn debug_env() -> Vec<(String, String)> {
    std::env::var("CONFORMANCE_SERVER_ENV")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// Reads `[tcp] address = "ip:port"` once the file is complete enough to parse.
fn read_tcp_address(path: &Path) -> Option<SocketAddr> {
    let text = fs::read_to_string(path).ok()?;
    let value: toml::Value = toml::from_str(&text).ok()?;
    let address = value.get("tcp")?.get("address")?.as_str()?;
    let address: SocketAddr = address.parse().ok()?;
    (address.port() != 0).then_some(address)
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.finished {
            eprintln!(
                "===== riptide-dataplane log ({} start(s), data dir {}) =====\n{}\n===== end of log =====",
                self.starts_count,
                self.data_path().display(),
                tail(&self.log(), 400)
            );
        }
    }
}

fn tail(text: &str, lines_max: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(lines_max);
    lines[start..].join("\n")
}

/// Runs a test body with a hard time limit so a hung server fails the test instead of CI.
pub async fn bounded<T>(
    limit: Duration,
    body: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, body).await {
        Ok(result) => result,
        Err(_) => bail!("test body did not finish within {limit:?}"),
    }
}

/// Turns an SDK result into anyhow with the operation named.
pub trait SdkResult<T> {
    fn sdk(self, what: &str) -> anyhow::Result<T>;
}

impl<T> SdkResult<T> for Result<T, IggyError> {
    fn sdk(self, what: &str) -> anyhow::Result<T> {
        self.map_err(|e| anyhow!("{what}: {e} (code {})", e.as_code()))
    }
}

/// Asserts that an SDK call failed with the given Iggy error code.
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<T, IggyError>,
    code: u32,
    what: &str,
) -> anyhow::Result<()> {
    match result {
        Ok(value) => bail!("{what}: expected error code {code}, got Ok({value:?})"),
        Err(error) if error.as_code() == code => Ok(()),
        Err(error) => bail!(
            "{what}: expected error code {code}, got {error} (code {})",
            error.as_code()
        ),
    }
}

pub fn id(value: u32) -> Identifier {
    Identifier::numeric(value).expect("numeric identifiers are always valid")
}

pub fn name(value: &str) -> Identifier {
    Identifier::named(value).expect("test names are valid identifiers")
}

/// Messages with distinct, checkable payloads: `"{tag}-{index}"`.
pub fn messages(tag: &str, count: u32) -> Vec<IggyMessage> {
    (0..count)
        .map(|index| IggyMessage::from(format!("{tag}-{index}")))
        .collect()
}

pub fn payloads(polled: &PolledMessages) -> Vec<String> {
    polled
        .messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

/// Collects independent check failures so one test reports every mismatch at once.
#[derive(Default)]
pub struct Findings(Vec<String>);

impl Findings {
    pub fn check(&mut self, result: anyhow::Result<()>) {
        if let Err(error) = result {
            self.0.push(format!("{error:#}"));
        }
    }

    pub fn finish(self) -> anyhow::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        bail!(
            "{} check(s) failed:\n  - {}",
            self.0.len(),
            self.0.join("\n  - ")
        )
    }
}

/// A one-line digest of `runtime/stats.json` (worker requests, shard appends/reads and ring
/// depths) for failure messages; the file is rewritten every 500 ms by the server.
pub fn stats_digest(data_path: &Path) -> String {
    let Ok(text) = fs::read_to_string(data_path.join("runtime").join("stats.json")) else {
        return "no runtime/stats.json".to_string();
    };
    let values = |key: &str| -> Vec<String> {
        let pattern = format!("\"{key}\":");
        text.match_indices(&pattern)
            .map(|(at, _)| {
                text[at + pattern.len()..]
                    .trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect()
            })
            .collect()
    };
    format!(
        "stats.json: worker requests {:?}, shard appends {:?}, shard reads {:?}, request ring depths {:?}",
        values("requests"),
        values("appends"),
        values("reads"),
        values("request_ring_depth")
    )
}
