//! riptide-control: configuration checks against the host, supervision of the dataplane, the
//! control API with Prometheus metrics (bearer token and HTTPS when it leaves loopback), live
//! configuration changes, the cluster's status and membership, Iggy's HTTP API with the web
//! console, and the `riptidectl` CLI.

pub mod api;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod constants;
pub mod control;
pub mod host_checks;
pub mod http;
pub mod live;
pub mod metrics;
pub mod overview;
pub mod steering;
pub mod supervisor;
pub mod tls_listener;
