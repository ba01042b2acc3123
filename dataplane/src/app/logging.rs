//! Logging to stderr with a filter that can change while the appliance runs (`log.level` is a
//! live configuration key). `RUST_LOG`, when set, wins over the configured level at start-up.

use std::sync::OnceLock;
use tracing_subscriber::{
    layer::SubscriberExt, reload, util::SubscriberInitExt, EnvFilter, Registry,
};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber with `level` (a tracing filter such as `info` or
/// `riptide_storage=debug,info`); an invalid level falls back to `info`.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (layer, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init();
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Replaces the filter of the running subscriber.
///
/// # Errors
/// The level does not parse, or logging was not initialised through [`init`].
pub fn set_level(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level '{level}': {e}"))?;
    let handle = FILTER.get().ok_or("logging is not initialised")?;
    handle.reload(filter).map_err(|e| e.to_string())
}
