//! The worker core shared by both network drivers: connections as sans-I/O state machines,
//! sessions, command dispatch, consumer-group membership and the worker's counters.

pub mod connection;
pub mod counters;
pub mod dispatch;
pub mod groups;
pub mod shared;

pub use connection::{Connection, ConnectionState, Session, WorkerContext};
