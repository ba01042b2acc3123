//! riptide's configuration and the contract between the dataplane and the control process:
//! `riptide.toml` (schema, embedded defaults, loader, validation), the live keys of
//! `runtime/live.toml`, the stats snapshot of `runtime/stats.json`, the bounds the crates share,
//! and the host facts validation needs. No I/O engine, no storage, no eBPF: riptide-control links
//! this crate instead of the data plane.

pub mod cluster;
pub mod control;
pub mod host;
pub mod http;
pub mod limits;
pub mod live;
mod schema;
pub mod stats;
pub mod tls;

pub use schema::*;
