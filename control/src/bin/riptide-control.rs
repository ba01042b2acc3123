//! riptide-control: checks riptide.toml against the host, starts and supervises the dataplane,
//! and serves the control API. Exit codes: 0 clean stop, 78 configuration refused, 70 the
//! dataplane kept crashing, 1 anything else.

fn main() {
    let options = <riptide_control::control::Options as clap::Parser>::parse();
    std::process::exit(riptide_control::control::run(options));
}
