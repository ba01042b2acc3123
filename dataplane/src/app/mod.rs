//! The appliance as a process: start-up and shutdown, live configuration, logging and the
//! stats snapshot.

pub mod live;
pub mod logging;
pub mod server;
pub mod stats;
