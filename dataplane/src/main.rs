//! `riptide-dataplane`: the appliance's data path (kernel mode by default).
//!
//! Usage: riptide-dataplane [--config FILE] [--print-config] [--print-default-config]

use riptide_config::{Backend, Config, DEFAULT_CONFIG_TOML, EXIT_CODE_CONFIG};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: riptide-dataplane [--config FILE] [--print-config] [--print-default-config]

Starts riptide's dataplane. The configuration is the embedded default (see
--print-default-config), the optional FILE on top, and the environment on top of both
(RIPTIDE_<SECTION>_<KEY>, IGGY_TCP_ADDRESS, IGGY_SYSTEM_PATH, IGGY_ROOT_USERNAME, IGGY_ROOT_PASSWORD).
  --config FILE           riptide.toml to use
  --print-config          print the effective configuration (password masked) and exit
  --print-default-config  print the documented defaults and exit";

enum Action {
    Run,
    PrintConfig,
    PrintDefault,
}

fn parse_args() -> Result<(Option<PathBuf>, Action), String> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    let mut action = Action::Run;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?))
            }
            "--print-config" => action = Action::PrintConfig,
            "--print-default-config" => action = Action::PrintDefault,
            "--help" | "-h" => return Err(String::new()),
            "--version" | "-V" => {
                println!("riptide-dataplane {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok((config, action))
}

fn main() -> ExitCode {
    let (config_path, action) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("riptide-dataplane: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if message.is_empty() { 0 } else { 2 });
        }
    };
    if let Action::PrintDefault = action {
        print!("{DEFAULT_CONFIG_TOML}");
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(config_path.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("riptide-dataplane: {error}");
            return ExitCode::from(EXIT_CODE_CONFIG as u8);
        }
    };
    if let Action::PrintConfig = action {
        print!("{}", config.to_toml_masked());
        return ExitCode::SUCCESS;
    }
    riptide_dataplane::app::logging::init(&config.log.level);
    if config.dataplane.backend == Backend::Dpdk && !cfg!(feature = "dpdk") {
        eprintln!(
            "riptide-dataplane: dataplane.backend = \"dpdk\" but this binary was built without the \
             `dpdk` feature; rebuild with `cargo build --release -p riptide-dataplane --features dpdk` \
             (after scripts/install-deps.sh), or set dataplane.backend = \"kernel\""
        );
        return ExitCode::from(EXIT_CODE_CONFIG as u8);
    }
    match riptide_dataplane::app::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("riptide-dataplane: {error}");
            match error {
                riptide_dataplane::app::server::StartError::Config(_) => {
                    ExitCode::from(EXIT_CODE_CONFIG as u8)
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}
