//! The DPDK backend: our own bindings (`ffi`), EAL start-up (`eal`), ports and mempools (`port`),
//! smoltcp over mbuf bursts (`net`) with TCP checksums done by the device (`checksum`), counting
//! its retransmissions (`retransmit`),
//! flow steering between the lcores of a port (`steer`) — the three read frames with smoltcp's
//! wire views (`wire`) —, the per-lcore polling loop that drives the worker core (`lcore`) and
//! the backend the server starts from riptide.toml (`backend`).

pub mod backend;
pub mod checksum;
pub mod constants;
pub mod eal;
pub mod ffi;
pub mod lcore;
pub mod net;
pub mod port;
pub mod retransmit;
pub mod steer;
pub mod wire;
