//! riptidectl: the operator CLI of a riptide appliance. `riptidectl --help` lists the exit codes.

fn main() {
    let cli = <riptide_control::cli::Cli as clap::Parser>::parse();
    std::process::exit(riptide_control::cli::run(cli));
}
