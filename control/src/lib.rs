//! riptide-control: configuration checks against the host, supervision of the dataplane, the
//! control API with Prometheus metrics, live configuration changes, Iggy's HTTP API with the web
//! console, and the `riptidectl` CLI.

pub mod api;
pub mod cli;
pub mod constants;
pub mod control;
pub mod host_checks;
pub mod http;
pub mod live;
pub mod metrics;
pub mod overview;
pub mod steering;
pub mod supervisor;
