//! riptide's dataplane: configuration, sessions and command dispatch, storage shards, the rings
//! between them, and the network backends (kernel sockets on io_uring; DPDK behind a feature).

pub mod batch_buffers;
pub mod config;
pub mod dispatch;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod groups;
pub mod host;
pub mod kernel;
pub mod live;
pub mod logging;
pub mod ring;
pub mod server;
pub mod session;
pub mod shard;
pub mod shared;
pub mod stats;
