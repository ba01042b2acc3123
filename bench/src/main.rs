//! riptide-bench: `riptide-bench [GLOBAL OPTS] <benchmark> [BENCH OPTS] tcp [--server-address A]
//! [output -o DIR]`. Exit codes: 0 success, 1 the run failed, 2 verification found loss or
//! corruption, 64 bad arguments.

use clap::Parser;
use riptide_bench::args::Cli;
use riptide_bench::report::{self, table};
use riptide_bench::runner;
use std::process::ExitCode;

const EXIT_RUN_FAILED: u8 = 1;
const EXIT_VERIFY_FAILED: u8 = 2;
const EXIT_USAGE: u8 = 64;

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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("riptide-bench: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    let output = config.output.clone();
    let result = match runtime.block_on(runner::run(config)) {
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
