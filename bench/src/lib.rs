//! riptide-bench: load generator and reports for riptide, with iggy-bench's modes and options.
//! See `args` for the command line, `runner` for how a run is organised, `stats` for what is
//! measured, `payload` for verification and `report` for the outputs.

pub mod actors;
pub mod args;
pub mod client;
pub mod constants;
#[cfg(feature = "dpdk")]
pub mod memif;
pub mod payload;
pub mod report;
pub mod runner;
pub mod stats;
pub mod wire;
