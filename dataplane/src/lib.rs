//! riptide's dataplane. Folders follow the data path, and imports run one way (down):
//!
//! - `app` — start-up and shutdown, live configuration, logging, the stats snapshot;
//! - `net` — the network drivers: kernel sockets on io_uring, DPDK ports with smoltcp;
//! - `session` — the worker core both drivers run: connections, sessions, command dispatch;
//! - `cluster` — replication: the Raft node that serves the metadata rings in cluster mode;
//! - `mesh` — the rings and wakers between network threads, storage shards and the metadata
//!   service, and the buffers that travel over them;
//! - `shard` — storage shards, each owning its partitions through `riptide_storage`;
//! - `metadata` — the metadata service, the one owner of the metadata store;
//! - `diagnostics` — system snapshots (GetSnapshotFile): the zip of configuration, stats, files,
//!   threads and logs, built off the network threads;
//! - `clock` — the wall clock, for the threads that stamp what they store.

pub mod app;
pub mod clock;
pub mod cluster;
pub mod diagnostics;
pub mod mesh;
pub mod metadata;
pub mod net;
pub mod session;
pub mod shard;
