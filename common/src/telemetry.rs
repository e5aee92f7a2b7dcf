//! Tracing set-up shared by the binaries: JSON lines when `CLAWLINK_LOG_FORMAT=json`
//! (what a log pipeline wants), readable text otherwise; `RUST_LOG` filters.
//!
//! Knows nothing about what is logged. Never log a secret: the types that hold secrets
//! print `[redacted]`.

use tracing_subscriber::EnvFilter;

pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("CLAWLINK_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let result = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    // A second init (tests running several services in one process) keeps the first.
    let _ = result;
}
