//! The loader's error type. Every failure that makes the dataplane fall back (to plain SO_REUSEPORT
//! hashing, or to running without XDP steering) says why in one line; a verifier rejection carries
//! the verifier's log, indented under that line.

use std::fmt;
use std::io;

use aya::programs::ProgramError;

use crate::constants::VERIFIER_LOG_LINES_MAX;

/// Errors of the eBPF loader.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The embedded ELF object could not be parsed or its maps could not be created (e.g. no
    /// CAP_BPF, or the kernel lacks a map type).
    #[error("eBPF object {object}: {source}")]
    Object {
        /// Which object (`xdp_steer`, `reuseport_steer`, ...).
        object: &'static str,
        /// aya's error.
        #[source]
        source: aya::EbpfError,
    },
    /// The kernel verifier rejected a program.
    #[error("{0}")]
    Verifier(VerifierError),
    /// A program operation (load without verifier log, attach, detach, info) failed.
    #[error("eBPF program {program}: {action} failed: {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// What was being done.
        action: &'static str,
        /// aya's error.
        #[source]
        source: ProgramError,
    },
    /// The object lacks a program or map the loader needs (a build mismatch).
    #[error("eBPF object {object} has no {kind} named {name}")]
    Missing {
        /// Object name.
        object: &'static str,
        /// "program" or "map".
        kind: &'static str,
        /// The missing name.
        name: String,
    },
    /// Reading or writing a map failed.
    #[error("eBPF map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// aya's error.
        #[source]
        source: aya::maps::MapError,
    },
    /// A caller passed a value outside the limits in `constants.rs`.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A network interface does not exist.
    #[error("network interface {0:?} not found")]
    InterfaceNotFound(String),
    /// A netlink request about an interface's XDP attachment failed.
    #[error("netlink {action} on {interface}: {source}")]
    Netlink {
        /// Interface name.
        interface: String,
        /// What was being done.
        action: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Another (non-riptide) XDP program is attached; riptide never replaces it.
    #[error(
        "interface {interface} already runs XDP program {program_id} ({name:?}), not riptide's"
    )]
    ForeignXdpProgram {
        /// Interface name.
        interface: String,
        /// Program id.
        program_id: u32,
        /// Program name as the kernel reports it.
        name: String,
    },
    /// riptide's XDP program is attached through a bpf_link that a live process holds.
    #[error("interface {interface} already has riptide's XDP program {program_id} attached by a running process")]
    XdpInUse {
        /// Interface name.
        interface: String,
        /// Program id.
        program_id: u32,
    },
    /// No XDP program is attached to the interface (when looking for the one DPDK's PMD attached).
    #[error("no XDP program attached to {0}")]
    NoXdpProgram(String),
    /// A system call outside aya failed (mmap, dup, bpf info).
    #[error("{call}: {source}")]
    Os {
        /// The call.
        call: &'static str,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// The steering program is not attached (detach or counters without attach).
    #[error("the sk_reuseport program is not attached")]
    NotAttached,
}

impl EbpfError {
    /// The error on one line, for the dataplane's single fallback log line. A verifier rejection
    /// keeps its first line and the verifier's verdict (the last line that is not statistics).
    pub fn summary(&self) -> String {
        match self {
            EbpfError::Verifier(verifier) => {
                let verdict = verifier
                    .log_lines
                    .iter()
                    .rev()
                    .find(|line| !is_statistics_line(line))
                    .map_or("no verifier log", String::as_str);
                format!(
                    "the kernel verifier rejected eBPF program {} ({}): {}",
                    verifier.program,
                    verifier.errno,
                    verdict.trim()
                )
            }
            other => other.to_string().replace('\n', " "),
        }
    }
}

/// The verifier ends its log with statistics lines that say nothing about the failure.
fn is_statistics_line(line: &str) -> bool {
    ["verification time", "stack depth", "processed "]
        .iter()
        .any(|prefix| line.trim_start().starts_with(prefix))
}

/// A verifier rejection: program name, errno and the log, trimmed to its last
/// [`VERIFIER_LOG_LINES_MAX`] lines (the verdict is at the end).
#[derive(Debug)]
pub struct VerifierError {
    /// Program name.
    pub program: &'static str,
    /// The errno of BPF_PROG_LOAD.
    pub errno: io::Error,
    /// The verifier log lines (trimmed).
    pub log_lines: Vec<String>,
    /// Lines dropped from the start of the log.
    pub lines_omitted: usize,
}

impl VerifierError {
    fn new(program: &'static str, errno: io::Error, log: &str) -> VerifierError {
        let all: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
        let lines_omitted = all.len().saturating_sub(VERIFIER_LOG_LINES_MAX);
        let log_lines = all[lines_omitted..]
            .iter()
            .map(|line| line.to_string())
            .collect();
        VerifierError {
            program,
            errno,
            log_lines,
            lines_omitted,
        }
    }
}

impl fmt::Display for VerifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the kernel verifier rejected eBPF program {} ({})",
            self.program, self.errno
        )?;
        if self.log_lines.is_empty() {
            return write!(f, "; the kernel gave no verifier log");
        }
        write!(f, "; verifier log:")?;
        if self.lines_omitted > 0 {
            write!(
                f,
                "\n    ... ({} earlier lines omitted)",
                self.lines_omitted
            )?;
        }
        for line in &self.log_lines {
            write!(f, "\n    {line}")?;
        }
        Ok(())
    }
}

/// Turns a failed `program.load()` into [`EbpfError::Verifier`] when the kernel rejected it, so the
/// log is shown line by line rather than as one escaped string.
pub(crate) fn load_error(program: &'static str, error: ProgramError) -> EbpfError {
    match error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => EbpfError::Verifier(VerifierError::new(
            program,
            io_error,
            &verifier_log.to_string(),
        )),
        other => EbpfError::Program {
            program,
            action: "load",
            source: other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_error_keeps_the_end_of_a_long_log() {
        let log: String = (0..VERIFIER_LOG_LINES_MAX + 5)
            .map(|i| format!("{i}: insn\n\n"))
            .collect();
        let error = VerifierError::new("p", io::Error::from_raw_os_error(libc::EACCES), &log);
        assert_eq!(error.lines_omitted, 5);
        assert_eq!(error.log_lines.len(), VERIFIER_LOG_LINES_MAX);
        let last = format!("{}: insn", VERIFIER_LOG_LINES_MAX + 4);
        assert_eq!(error.log_lines.last(), Some(&last));
        let text = error.to_string();
        assert!(text.starts_with("the kernel verifier rejected eBPF program p ("));
        assert!(text.contains("(5 earlier lines omitted)"));
        assert!(text.ends_with(&format!("\n    {last}")));
    }

    #[test]
    fn summary_is_one_line_with_the_verdict() {
        let log = "0: R1=ctx()\ninvalid access to packet, off=12\nverification time 5 usec\nstack depth 0\n";
        let error = EbpfError::Verifier(VerifierError::new(
            "p",
            io::Error::from_raw_os_error(libc::EACCES),
            log,
        ));
        let summary = error.summary();
        assert!(!summary.contains('\n'), "{summary}");
        assert!(
            summary.ends_with(": invalid access to packet, off=12"),
            "{summary}"
        );
        assert_eq!(
            EbpfError::NotAttached.summary(),
            "the sk_reuseport program is not attached"
        );
    }

    #[test]
    fn verifier_error_without_log_says_so() {
        let error = VerifierError::new("p", io::Error::from_raw_os_error(libc::EPERM), "\n");
        assert!(error
            .to_string()
            .ends_with("the kernel gave no verifier log"));
    }
}
