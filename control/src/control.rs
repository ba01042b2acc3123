//! The `riptide-control` process: load and check the configuration, start the control API,
//! supervise the dataplane, and map how supervision ended to an exit code.

use crate::api::{self, AppState};
use crate::constants::{
    CLIENT_ENV_VARIABLES, DATAPLANE_BINARY_NAME, EXIT_CODE_CONFIG, EXIT_CODE_CRASH_LOOP,
};
use crate::host_checks::{self, HostPaths, Severity};
use crate::live;
use crate::supervisor::{self, Launch, Outcome};
use crate::tls_listener::{self, ApiListener};
use riptide_config::Config;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Name of the file, under `<data>/runtime/`, holding the control API's bound address (useful
/// when `control.address` asks for port 0).
pub const CONTROL_ADDRESS_FILE_NAME: &str = "control_address";

/// Command-line options of riptide-control.
#[derive(Debug, clap::Parser)]
#[command(
    name = "riptide-control",
    version,
    about = "Starts, supervises and serves the control API of the riptide dataplane"
)]
pub struct Options {
    /// riptide.toml to use (keys it omits keep the embedded defaults; RIPTIDE_<SECTION>_<KEY> and
    /// IGGY_* environment variables override it).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// The dataplane binary (default: riptide-dataplane next to this executable).
    #[arg(long)]
    pub dataplane_bin: Option<PathBuf>,
    /// Only check the configuration against this host, print the findings and exit (0 or 78).
    #[arg(long)]
    pub check: bool,
}

/// Why riptide-control could not get going.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Environment(String),
}

impl StartError {
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Config(_) => EXIT_CODE_CONFIG,
            StartError::Environment(_) => 1,
        }
    }
}

/// Loads the configuration and runs the host checks; prints warnings, fails on errors.
///
/// # Errors
/// [`StartError::Config`] with every error finding, one per line.
pub fn load_and_check(
    path: Option<&Path>,
) -> Result<(Config, Vec<host_checks::Finding>), StartError> {
    let config = load_config(path).map_err(|e| StartError::Config(e.to_string()))?;
    let findings = host_checks::check_host(&config, &HostPaths::default());
    if host_checks::has_errors(&findings) {
        let lines: Vec<String> = findings.iter().map(ToString::to_string).collect();
        return Err(StartError::Config(lines.join("\n")));
    }
    let warnings = findings
        .into_iter()
        .filter(|f| f.severity == Severity::Warning)
        .collect();
    Ok((config, warnings))
}

/// The dataplane binary: the flag, or `riptide-dataplane` beside this executable.
///
/// # Errors
/// [`StartError::Environment`] naming where it looked.
pub fn locate_dataplane(flag: Option<&Path>) -> Result<PathBuf, StartError> {
    let candidate = match flag {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| StartError::Environment(format!("cannot find this executable: {e}")))?
            .with_file_name(DATAPLANE_BINARY_NAME),
    };
    if !candidate.is_file() {
        return Err(StartError::Environment(format!(
            "dataplane binary {} not found; install it next to riptide-control or pass --dataplane-bin",
            candidate.display()
        )));
    }
    Ok(candidate)
}

/// The environment the configuration sees: the process's, less riptidectl's own variables.
pub fn config_environment() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(name, _)| !CLIENT_ENV_VARIABLES.contains(&name.as_str()))
        .collect()
}

/// [`Config::load`] with [`config_environment`].
///
/// # Errors
/// The [`ConfigError`](riptide_config::ConfigError) of the load.
pub fn load_config(path: Option<&Path>) -> Result<Config, riptide_config::ConfigError> {
    let file = match path {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|source| {
            riptide_config::ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?),
        None => None,
    };
    let file = path.zip(file.as_deref());
    Config::load_from(file, &config_environment())
}

/// The SDK's TCP client logs every connect at info; the HTTP API's pooled connections would fill
/// the log with them. Its warnings still show (unless `log.level` says otherwise about `iggy`).
fn filter_directives(level: &str) -> String {
    if level.contains("iggy") {
        level.to_string()
    } else {
        format!("{level},iggy=warn,iggy_common=warn")
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter_directives(level)))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs riptide-control to the end and returns its exit code.
pub fn run(options: Options) -> i32 {
    let (config, warnings) = match load_and_check(options.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("riptide-control: configuration refused:\n{e}");
            return e.exit_code();
        }
    };
    for warning in &warnings {
        eprintln!("riptide-control: {warning}");
    }
    if options.check {
        println!(
            "riptide-control: configuration OK ({} warning(s))",
            warnings.len()
        );
        return 0;
    }
    init_logging(&config.log.level);
    let dataplane_bin = match locate_dataplane(options.dataplane_bin.as_deref()) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("riptide-control: {e}");
            return e.exit_code();
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("riptide-control: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let launch = Launch {
        dataplane_bin,
        config_path: options.config.clone(),
    };
    runtime.block_on(serve(config, warnings, launch, options.config))
}

async fn serve(
    config: Config,
    warnings: Vec<host_checks::Finding>,
    launch: Launch,
    config_path: Option<PathBuf>,
) -> i32 {
    let data_dir = config.system.path.clone();
    if let Err(e) = live::clear_overrides(&data_dir) {
        tracing::warn!(
            "cannot remove a stale {}: {e}",
            live::live_path(&data_dir).display()
        );
    }
    let (listener, token, counters) = match open_control(&config, &data_dir).await {
        Ok(opened) => opened,
        Err(message) => {
            eprintln!("riptide-control: {message}");
            return EXIT_CODE_CONFIG;
        }
    };

    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    let status = supervisor::new_status(&launch);
    let state = Arc::new(AppState {
        config: Mutex::new(config),
        overrides: Mutex::new(toml::Table::new()),
        config_path,
        data_dir,
        supervisor: status.clone(),
        warnings,
        shutdown: Mutex::new(Some(stop_tx.clone())),
        http_address: Mutex::new(None),
        token,
        counters,
    });
    let http = match start_http(&state).await {
        Ok(http) => http,
        Err(e) => {
            eprintln!("riptide-control: {e}");
            return EXIT_CODE_CONFIG;
        }
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let supervisor_thread =
        std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || {
                let outcome = supervisor::supervise(&launch, &status, &stop_rx);
                let _ = done_tx.send(outcome);
            });
    if let Err(e) = supervisor_thread {
        eprintln!("riptide-control: cannot start the supervisor thread: {e}");
        return 1;
    }
    tokio::spawn(forward_signals(stop_tx));
    let server = listener.serve(api::router(state));
    let http_server = async move {
        match http {
            Some((listener, router)) => listener.serve(router).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        outcome = done_rx => outcome.unwrap_or(Outcome::GaveUp),
        result = server => {
            tracing::error!("control API stopped: {result:?}");
            Outcome::GaveUp
        }
        result = http_server => {
            tracing::error!("HTTP API stopped: {result:?}");
            Outcome::GaveUp
        }
    };
    exit_code(outcome)
}

/// The control API's token and listener, its bound address recorded under `runtime/`.
async fn open_control(
    config: &Config,
    data_dir: &Path,
) -> Result<
    (
        ApiListener,
        Option<crate::auth::ControlToken>,
        api::ControlCounters,
    ),
    String,
> {
    let token =
        crate::auth::load_token(config).map_err(|e| format!("configuration refused:\n{e}"))?;
    let counters = api::ControlCounters::default();
    let listener = bind_control(config, &counters).await?;
    write_control_address(data_dir, &listener.address.to_string());
    tracing::info!(
        "control API on {}://{}{}",
        listener.scheme(),
        listener.address,
        if token.is_some() {
            " (bearer token required)"
        } else {
            ""
        }
    );
    Ok((listener, token, counters))
}

/// Loads the certificate (when configured) before binding, so a bad file refuses the start
/// without a port ever listening.
async fn bind_control(
    config: &Config,
    counters: &api::ControlCounters,
) -> Result<ApiListener, String> {
    let tls = match config.control.tls_files() {
        Some((cert, key)) => Some(
            tls_listener::server_config(cert, key, tls_listener::CONTROL_TLS_KEYS)
                .map_err(|e| format!("configuration refused:\n{e}"))?,
        ),
        None => None,
    };
    let address = &config.control.address;
    ApiListener::bind(
        address,
        tls,
        counters.control_tls_handshake_failures.clone(),
    )
    .await
    .map_err(|e| format!("`control.address`: cannot listen on {address}: {e}; pick a free port"))
}

/// Binds the HTTP API and the console (unless `http.enabled` is false) and starts the overview
/// sampler they show.
async fn start_http(
    state: &Arc<AppState>,
) -> Result<Option<(ApiListener, axum::Router)>, crate::http::HttpStartError> {
    let overview = crate::overview::start(state.data_dir.clone());
    let Some((listener, http_state)) = crate::http::start(state.clone(), overview).await? else {
        tracing::info!("HTTP API disabled (http.enabled = false)");
        return Ok(None);
    };
    state.set_http_address(http_state.address);
    tracing::info!(
        "HTTP API on {0}://{1}, web console on {0}://{1}/ui",
        listener.scheme(),
        http_state.address
    );
    Ok(Some((listener, crate::http::router(http_state))))
}

fn exit_code(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Stopped => 0,
        Outcome::ConfigRefused => EXIT_CODE_CONFIG,
        Outcome::GaveUp | Outcome::SpawnFailed => EXIT_CODE_CRASH_LOOP,
    }
}

fn write_control_address(data_dir: &Path, address: &str) {
    let runtime_dir = data_dir.join("runtime");
    let result = std::fs::create_dir_all(&runtime_dir).and_then(|()| {
        std::fs::write(
            runtime_dir.join(CONTROL_ADDRESS_FILE_NAME),
            format!("{address}\n"),
        )
    });
    if let Err(e) = result {
        tracing::warn!(
            "cannot record the control address in {}: {e}",
            runtime_dir.display()
        );
    }
}

/// SIGTERM and SIGINT stop the dataplane cleanly; riptide-control exits once it has.
async fn forward_signals(stop: std::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop riptide-control with POST /shutdown");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping the dataplane"),
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping the dataplane"),
    }
    let _ = stop.send(());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdks_connect_chatter_stays_out_of_the_log_unless_asked_for() {
        assert_eq!(filter_directives("info"), "info,iggy=warn,iggy_common=warn");
        assert_eq!(filter_directives("debug,iggy=debug"), "debug,iggy=debug");
        assert!(tracing_subscriber::EnvFilter::try_new(filter_directives("warn")).is_ok());
    }
}
