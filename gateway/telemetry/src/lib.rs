//! Logs and metrics. Logging is set up once here; metrics live in one
//! Prometheus registry; each notable event is a struct in `events` that emits
//! its log line and its metric together, so the two never drift apart.
//!
//! Logs carry control IDs, hashes, counts, routes and statuses only: never
//! names, birth dates, identifiers, addresses, clinical text, query strings
//! or bodies.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod events;
pub mod metrics;

use tracing_subscriber::{fmt, EnvFilter};

use passerelle_config::{LogConfig, LogFormat};

/// Installs the global subscriber writing to stderr. Safe to call twice (the
/// second call is ignored), which tests rely on.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let result = match config.format {
        LogFormat::Human => fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(true)
            .try_init(),
        LogFormat::Json => fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .flatten_event(true)
            .try_init(),
    };
    // Already installed (tests, or a second serve in one process): keep it.
    let _ = result;
}
