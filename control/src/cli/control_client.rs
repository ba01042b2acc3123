//! Commands that talk to riptide-control's API, and `up`/`down`.

use super::context::Target;
use super::output::{emit, print_json, println_checked, table};
use super::{exit, CliError, CliResult, ConfigCommand, UpArgs};
use crate::constants::{
    CONTROL_BINARY_NAME, CONTROL_REQUEST_TIMEOUT_MS, DOWN_TIMEOUT_MS, UP_TIMEOUT_MS,
};
use crate::control::load_and_check;
use crate::metrics::parse_exposition;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A client of the control API.
pub(crate) struct Control {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

/// The control API's base URL: an address with a scheme as given; host:port over HTTPS when a
/// CA is given to trust (or the appliance's configuration serves TLS), else plain HTTP.
fn base_url(address: &str, tls: bool) -> String {
    if address.starts_with("http://") || address.starts_with("https://") {
        return address.trim_end_matches('/').to_string();
    }
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{address}")
}

/// An error with the causes reqwest keeps in its source chain (a certificate the CA did not
/// sign, a refused connection).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl Control {
    /// A client of the control API at the target's address.
    pub(crate) fn new(target: &Target) -> Result<Control, CliError> {
        Self::at(&target.control, target, false)
    }

    /// A client of the control API at `address`, with the target's token and CA; `tls` picks
    /// HTTPS for an address without a scheme.
    fn at(address: &str, target: &Target, tls: bool) -> Result<Control, CliError> {
        let failure = |what: String| CliError::new(exit::FAILURE, what);
        let mut builder =
            reqwest::Client::builder().timeout(Duration::from_millis(CONTROL_REQUEST_TIMEOUT_MS));
        if let Some(token) = &target.control_token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    CliError::new(exit::USAGE, "the control token must be visible ASCII")
                })?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        if let Some(path) = &target.control_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                CliError::new(
                    exit::CONFIG,
                    format!("control CA file {}: {e}", path.display()),
                )
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                CliError::new(
                    exit::CONFIG,
                    format!("control CA file {}: {}", path.display(), with_causes(&e)),
                )
            })?;
            builder = builder.tls_certs_only(certificates);
        }
        let http = builder
            .build()
            .map_err(|e| failure(format!("HTTP client: {}", with_causes(&e))))?;
        let tls = tls || target.control_ca_file.is_some();
        Ok(Control {
            http,
            base: base_url(address, tls),
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        CliError::new(
            exit::UNREACHABLE,
            format!(
                "cannot reach riptide-control at {}: {} (is it running? riptidectl up)",
                self.base,
                with_causes(e)
            ),
        )
    }

    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, String), CliError> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let code = response.status().as_u16();
        let body = response.text().await.map_err(|e| self.unreachable(&e))?;
        if code == 401 {
            return Err(CliError::new(
                exit::REFUSED,
                format!(
                    "riptide-control at {} refused the request without its token (401): pass \
                     --control-token, set RIPTIDE_CONTROL_TOKEN, or control_token / \
                     control_token_file in the context",
                    self.base
                ),
            ));
        }
        Ok((code, body))
    }

    pub(crate) async fn get(&self, path: &str) -> Result<(u16, String), CliError> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub(crate) async fn get_json(&self, path: &str) -> Result<Value, CliError> {
        let (code, body) = self.get(path).await?;
        let value: Value = serde_json::from_str(&body).map_err(|e| {
            CliError::new(
                exit::FAILURE,
                format!("GET {path}: answer is not JSON ({e})"),
            )
        })?;
        if code >= 400 {
            return Err(CliError::new(
                exit::REFUSED,
                format!("GET {path}: {code}: {}", value["error"]),
            ));
        }
        Ok(value)
    }
}

/// The control address `riptidectl up` should wait on and whether it serves HTTPS: the
/// configuration's, else the target's.
fn control_address_for(
    config: Option<&std::path::Path>,
    target: &Target,
) -> Result<(String, bool), CliError> {
    match config {
        Some(path) => {
            let loaded = crate::control::load_config(Some(path))
                .map_err(|e| CliError::new(exit::CONFIG, e.to_string()))?;
            let tls = loaded.control.tls_files().is_some();
            Ok((loaded.control.address, tls))
        }
        None => Ok((target.control.clone(), false)),
    }
}

fn locate_control_binary(flag: Option<PathBuf>) -> Result<PathBuf, CliError> {
    let path = match flag {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| CliError::new(exit::FAILURE, format!("cannot find this executable: {e}")))?
            .with_file_name(CONTROL_BINARY_NAME),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(CliError::new(
            exit::FAILURE,
            format!("{} not found; pass --control-bin", path.display()),
        ))
    }
}

fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

pub async fn up(target: &Target, args: UpArgs, json: bool) -> CliResult {
    let (address, tls) = control_address_for(args.config.as_deref(), target)?;
    let control = Control::at(&address, target, tls)?;
    if let Ok((200, _)) = control.get("/health").await {
        let already = json!({"status": "already up", "control": address});
        return emit(json, &already, || {
            format!("riptide is already up (control API {address})")
        });
    }
    let mut child = spawn_control(&args)?;
    wait_healthy(&control, &mut child, &args.log).await?;
    let pid = child.id();
    let log = args.log.display();
    emit(
        json,
        &json!({"status": "up", "control": address, "pid": pid, "log": args.log}),
        || format!("riptide is up: riptide-control pid {pid} (control API {address}, log {log})"),
    )
}

/// Starts riptide-control detached from this terminal, its output appended to the log.
fn spawn_control(args: &UpArgs) -> Result<std::process::Child, CliError> {
    let binary = locate_control_binary(args.control_bin.clone())?;
    let failure = |what: String| CliError::new(exit::FAILURE, what);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .map_err(|e| failure(format!("cannot open the log {}: {e}", args.log.display())))?;
    let log_err = log.try_clone().map_err(|e| failure(e.to_string()))?;
    let mut command = std::process::Command::new(&binary);
    if let Some(config) = &args.config {
        command.arg("--config").arg(config);
    }
    if let Some(dataplane) = &args.dataplane_bin {
        command.arg("--dataplane-bin").arg(dataplane);
    }
    for name in crate::constants::CLIENT_ENV_VARIABLES {
        command.env_remove(name);
    }
    // Its own process group: a Ctrl-C in this terminal later must not reach the appliance.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| failure(format!("cannot start {}: {e}", binary.display())))
}

/// Waits for /health; a riptide-control that exits meanwhile fails with its exit code's meaning.
async fn wait_healthy(
    control: &Control,
    child: &mut std::process::Child,
    log: &std::path::Path,
) -> CliResult {
    let deadline = Instant::now() + Duration::from_millis(UP_TIMEOUT_MS);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let code = if status.code() == Some(exit::CONFIG) {
                exit::CONFIG
            } else {
                exit::FAILURE
            };
            return Err(CliError::new(
                code,
                format!("riptide-control exited ({status}):\n{}", log_tail(log)),
            ));
        }
        if let Ok((200, _)) = control.get("/health").await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let message = format!(
                "not healthy after {UP_TIMEOUT_MS} ms; see {}",
                log.display()
            );
            return Err(CliError::new(exit::UNREACHABLE, message));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

pub async fn down(target: &Target, json: bool) -> CliResult {
    let control = Control::new(target)?;
    let (code, body) = control
        .send(control.http.post(format!("{}/shutdown", control.base)))
        .await?;
    if code != 202 {
        return Err(CliError::new(
            exit::REFUSED,
            format!("shutdown refused: {code}: {body}"),
        ));
    }
    let deadline = Instant::now() + Duration::from_millis(DOWN_TIMEOUT_MS);
    while control.get("/health").await.is_ok() {
        if Instant::now() >= deadline {
            return Err(CliError::new(
                exit::FAILURE,
                format!("still running after {DOWN_TIMEOUT_MS} ms"),
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    emit(json, &json!({"status": "down"}), || {
        "riptide is down".to_string()
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn status_text(status: &Value) -> String {
    let supervisor = &status["supervisor"];
    let stats = &status["stats"];
    let mut out = format!(
        "dataplane: {} (pid {}, starts {}, restarts {})\nmode: {}\n",
        text(&supervisor["state"]),
        text(&supervisor["pid"]),
        text(&supervisor["starts"]),
        text(&supervisor["restarts"]),
        text(&status["mode"]),
    );
    if let Some(reason) = stats.get("unavailable") {
        out.push_str(&format!("statistics: unavailable: {}\n", text(reason)));
    } else {
        out.push_str(&format!(
            "listening: {}  connections: {}  streams: {}  topics: {}  partitions: {}  steering: {}  (stats {} ms old)\n",
            text(&stats["tcp_address"]), text(&stats["connections"]), text(&stats["streams"]), text(&stats["topics"]),
            text(&stats["partitions"]), text(&stats["steering"]), text(&stats["age_ms"]),
        ));
        let mut workers = table(&[
            "worker",
            "core",
            "connections",
            "requests",
            "ring-full stalls",
        ]);
        for w in stats["workers"].as_array().into_iter().flatten() {
            workers.add_row(vec![
                text(&w["worker"]),
                text(&w["core"]),
                text(&w["connections"]),
                text(&w["requests"]),
                text(&w["ring_full_stalls"]),
            ]);
        }
        let mut shards = table(&[
            "shard",
            "core",
            "partitions",
            "appends",
            "ring depth",
            "ring occupancy",
        ]);
        let rings = stats["rings"].as_array().cloned().unwrap_or_default();
        for (s, ring) in stats["shards"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(rings.iter().chain(std::iter::repeat(&Value::Null)))
        {
            let occupancy = ring["occupancy"]
                .as_f64()
                .map_or("-".to_string(), |f| format!("{:.1}%", f * 100.0));
            shards.add_row(vec![
                text(&s["shard"]),
                text(&s["core"]),
                text(&s["partitions"]),
                text(&s["appends"]),
                text(&s["ring_depth"]),
                occupancy,
            ]);
        }
        out.push_str(&format!("{workers}\n{shards}\n"));
    }
    out.push_str(&http_text(&status["http"]));
    out.push('\n');
    for warning in status["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!("{}\n", text(warning)));
    }
    out.trim_end().to_string()
}

/// The HTTP API and console line(s) of `status` and `http`.
fn http_text(http: &Value) -> String {
    match (http["enabled"].as_bool(), http["console_url"].as_str()) {
        (Some(false), _) => "HTTP API: disabled (http.enabled = false)".to_string(),
        (_, Some(console)) => format!(
            "HTTP API: {}  web console: {console} (log in with riptide's users)",
            text(&http["api_url"])
        ),
        _ => format!(
            "HTTP API: not listening yet (configured {})",
            text(&http["configured"])
        ),
    }
}

/// `riptidectl http`: where the HTTP API and the web console are.
pub async fn http(target: &Target, json: bool) -> CliResult {
    let control = Control::new(target)?;
    let status = control.get_json("/status").await?;
    let http = status["http"].clone();
    emit(json, &http, || http_text(&http))
}

pub async fn status(target: &Target, json: bool) -> CliResult {
    let control = Control::new(target)?;
    let status = control.get_json("/status").await?;
    emit(json, &status, || status_text(&status))
}

pub async fn config(target: &Target, command: ConfigCommand, json: bool) -> CliResult {
    match command {
        ConfigCommand::Validate { file } => validate(file, json),
        ConfigCommand::Show { toml } => {
            let control = Control::new(target)?;
            if toml {
                let (code, body) = control.get("/config?format=toml").await?;
                if code != 200 {
                    return Err(CliError::new(
                        exit::REFUSED,
                        format!("GET /config: {code}: {body}"),
                    ));
                }
                return println_checked(body.trim_end());
            }
            let value = control.get_json("/config").await?;
            emit(json, &value, || {
                let mut out = serde_json::to_string_pretty(&value["config"]).unwrap_or_default();
                out.push_str(&format!("\nlive overrides: {}", value["live_overrides"]));
                out
            })
        }
        ConfigCommand::Set { pairs } => set(target, pairs, json).await,
    }
}

fn validate(file: Option<PathBuf>, json: bool) -> CliResult {
    match load_and_check(file.as_deref()) {
        Ok((_, warnings)) => {
            let lines: Vec<String> = warnings.iter().map(ToString::to_string).collect();
            emit(json, &json!({"valid": true, "warnings": lines}), || {
                let mut out = "configuration OK".to_string();
                for line in &lines {
                    out.push_str(&format!("\n{line}"));
                }
                out
            })
        }
        Err(e) => {
            if json {
                print_json(
                    &json!({"valid": false, "errors": e.to_string().lines().collect::<Vec<_>>()}),
                )?;
            }
            Err(CliError::new(
                exit::CONFIG,
                format!("configuration refused:\n{e}"),
            ))
        }
    }
}

/// `KEY=VALUE` to a JSON change; the value is read as TOML (numbers, booleans) or else a string.
fn pairs_to_change(pairs: &[String]) -> Result<Value, CliError> {
    let mut change = serde_json::Map::new();
    for pair in pairs {
        let (key, raw) = pair
            .split_once('=')
            .ok_or_else(|| CliError::new(exit::USAGE, format!("'{pair}' is not KEY=VALUE")))?;
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("v").cloned())
            .and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or_else(|| Value::String(raw.to_string()));
        change.insert(key.trim().to_string(), value);
    }
    Ok(Value::Object(change))
}

async fn set(target: &Target, pairs: Vec<String>, json: bool) -> CliResult {
    let change = pairs_to_change(&pairs)?;
    let control = Control::new(target)?;
    let (code, body) = control
        .send(
            control
                .http
                .put(format!("{}/config", control.base))
                .body(change.to_string()),
        )
        .await?;
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|_| json!({"error": body}));
    match code {
        200 => emit(json, &answer, || {
            format!("applied live: {}", text(&answer["applied"]))
        }),
        409 => {
            if json {
                print_json(&answer)?;
            }
            Err(CliError::new(exit::RESTART_NEEDED, text(&answer["error"])))
        }
        400 => Err(CliError::new(exit::CONFIG, text(&answer["error"]))),
        _ => Err(CliError::new(
            exit::REFUSED,
            format!("PUT /config: {code}: {}", text(&answer["error"])),
        )),
    }
}

pub async fn steering(target: &Target, json: bool) -> CliResult {
    let control = Control::new(target)?;
    let value = control.get_json("/steering").await?;
    emit(json, &value, || {
        let mut t = table(&["worker", "open connections", "accepted"]);
        for w in value["workers"].as_array().into_iter().flatten() {
            t.add_row(vec![
                text(&w["worker"]),
                text(&w["connections_open"]),
                text(&w["connections_accepted"]),
            ]);
        }
        format!(
            "policy: {}  enabled: {}  state: {}\n{t}",
            text(&value["policy"]),
            text(&value["enabled"]),
            text(&value["state"])
        )
    })
}

pub async fn metrics(target: &Target, json: bool) -> CliResult {
    let control = Control::new(target)?;
    let (code, body) = control.get("/metrics").await?;
    if code != 200 {
        return Err(CliError::new(
            exit::REFUSED,
            format!("GET /metrics: {code}"),
        ));
    }
    if json {
        let samples =
            parse_exposition(&body).map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
        return print_json(&samples);
    }
    println_checked(body.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_become_typed_json() {
        let change = pairs_to_change(&[
            "log.level=debug".into(),
            "retention.cleaner_interval_ms=500".into(),
        ])
        .unwrap();
        assert_eq!(
            change,
            json!({"log.level": "debug", "retention.cleaner_interval_ms": 500})
        );
        assert!(pairs_to_change(&["nonsense".into()]).is_err());
    }

    #[test]
    fn status_text_survives_missing_statistics() {
        let status = json!({"supervisor": {"state": "running", "pid": 7, "starts": 1, "restarts": 0}, "mode": "kernel", "stats": {"unavailable": "no file"}, "warnings": ["warning: x"]});
        let text = status_text(&status);
        assert!(
            text.contains("running") && text.contains("no file") && text.contains("warning: x"),
            "{text}"
        );
        assert!(text.contains("HTTP API: not listening yet"), "{text}");
        let on = json!({"enabled": true, "api_url": "http://127.0.0.1:3000", "console_url": "http://127.0.0.1:3000/ui"});
        assert!(http_text(&on).contains("web console: http://127.0.0.1:3000/ui"));
        assert!(http_text(&json!({"enabled": false})).contains("disabled"));
    }
}
