//! Network drivers: each maps its sockets to the worker core's connections and moves bytes.

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod kernel;
pub mod ktls;
