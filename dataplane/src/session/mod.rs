//! The worker core shared by both network drivers: connection slots and admission, connections
//! as sans-I/O state machines, sessions and command dispatch, reply delivery, consumer-group
//! membership, heartbeat eviction and the thread's counters.

mod batch_receipt;
pub mod connection;
pub mod context;
pub mod core;
pub mod counters;
pub mod dispatch;
pub mod groups;
pub mod login_throttle;
pub mod shared;
pub mod tls;

pub use self::core::{Refused, WorkerCore};
pub use connection::{Connection, ConnectionState, Session};
pub use context::WorkerContext;
