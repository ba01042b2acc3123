//! riptide's dataplane: configuration, sessions and command dispatch, storage shards, the rings
//! between them, and the network backends (kernel sockets on io_uring; DPDK behind a feature).

pub mod config;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod stats;
