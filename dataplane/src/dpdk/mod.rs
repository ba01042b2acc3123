//! The DPDK backend: our own bindings (`ffi`), EAL start-up (`eal`), ports and mempools (`port`),
//! smoltcp over mbuf bursts (`net`) and the per-lcore polling loop (`lcore`).

pub mod constants;
pub mod eal;
pub mod ffi;
pub mod lcore;
pub mod net;
pub mod port;
pub mod session_worker;
