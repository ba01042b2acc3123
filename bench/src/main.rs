//! riptide-bench: `riptide-bench [GLOBAL OPTS] <benchmark> [BENCH OPTS] tcp [--server-address A]
//! [output -o DIR]`. Exit codes: 0 success, 1 the run failed, 2 verification found loss or
//! corruption, 64 bad arguments.

use clap::Parser;
use riptide_bench::args as runner_config;
use riptide_bench::args::Cli;
use riptide_bench::report::{self, table};
use riptide_bench::runner;
use std::process::ExitCode;

const EXIT_RUN_FAILED: u8 = 1;
const EXIT_VERIFY_FAILED: u8 = 2;
const EXIT_USAGE: u8 = 64;

/// Runs the benchmark on a multi-threaded runtime over the kernel's TCP, or over memif on the
/// client's one pinned lcore.
fn run(config: runner_config::BenchConfig) -> Result<riptide_bench::report::BenchReport, String> {
    #[cfg(feature = "dpdk")]
    if let Some(options) = config.memif.clone() {
        return run_over_memif(config, &options);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime
        .block_on(runner::run(config))
        .map_err(|e| e.to_string())
}

/// The memif client: its EAL pins this thread, which then runs the stack's driver and every
/// actor on a current-thread runtime with timers only (no I/O driver: no epoll per turn).
/// Prints the client lcore's own counters apart from the run's figures.
#[cfg(feature = "dpdk")]
fn run_over_memif(
    config: runner_config::BenchConfig,
    options: &riptide_bench::memif::MemifOptions,
) -> Result<riptide_bench::report::BenchReport, String> {
    let transport =
        riptide_bench::memif::MemifTransport::start(options).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let net = transport.net();
    let result = runtime.block_on(async {
        let driver = tokio::spawn(net.clone().drive());
        let result = runner::run_over(config, runner::Connector::Memif(net.clone())).await;
        net.stop();
        let _ = driver.await;
        result
    });
    let counters = net.counters();
    println!(
        "memif client lcore (cpu {}): {} turns, {} busy; port {} rx / {} tx packets, {} tx dropped, {} TCP retransmits",
        options.cpu,
        counters.turns,
        counters.busy_turns,
        counters.device.rx_packets,
        counters.device.tx_packets,
        counters.device.tx_dropped,
        counters.device.tcp_retransmits
    );
    drop(runtime);
    drop(transport);
    result.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("riptide-bench: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some((ca_file, domain)) = &config.tls {
        if let Err(e) = riptide_bench::client::enable_tls(ca_file, domain) {
            eprintln!("riptide-bench: --tls-ca-file: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let output = config.output.clone();
    let result = match run(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("riptide-bench: {e}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    print!("{}", table::render(&result));
    if result.config.verify && result.verify.is_none() {
        println!("verify: nothing read back in this mode; run a consumer benchmark with --verify to check the data");
    }
    if let Some(out) = output {
        match report::write_all(&result, &out.output_dir) {
            Ok(files) => {
                for f in files {
                    println!("wrote {}", f.display());
                }
            }
            Err(e) => {
                eprintln!("riptide-bench: {e}");
                return ExitCode::from(EXIT_RUN_FAILED);
            }
        }
    }
    match &result.verify {
        Some(v) if !v.passed() => {
            eprintln!(
                "riptide-bench: verification FAILED: {} mismatches, {} of {} messages received",
                v.mismatches, v.messages_unique, v.messages_expected
            );
            ExitCode::from(EXIT_VERIFY_FAILED)
        }
        _ => ExitCode::SUCCESS,
    }
}
