//! Human tables and JSON output.

use super::{exit, CliError, CliResult};
use comfy_table::Table;
use serde::Serialize;
use std::io::Write;

/// A table with the given header, in the style every command shares.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.set_header(header.to_vec());
    table
}

/// Prints a value as pretty JSON.
///
/// # Errors
/// Serialisation or a closed stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::new(exit::FAILURE, format!("cannot render JSON: {e}")))?;
    println_checked(&text)
}

/// Prints a line; a closed pipe (e.g. `| head`) is not an error worth a panic.
///
/// # Errors
/// Any write error other than a broken pipe.
pub fn println_checked(text: &str) -> CliResult {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::new(
            exit::FAILURE,
            format!("cannot write to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}

/// Prints either the JSON of `value` or the human text produced by `human`.
///
/// # Errors
/// As [`print_json`].
pub fn emit<T: Serialize + ?Sized>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> String,
) -> CliResult {
    if json {
        print_json(value)
    } else {
        println_checked(&human())
    }
}
