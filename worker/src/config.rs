//! The worker's configuration, read from `CLAWLINK_…` variables and checked at start-up.

use clawlink_common::config::{ConfigError, Env, InfraConfig, SharedConfig};
use clawlink_common::retry::RetryPolicy;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub infra: InfraConfig,
    /// Result TTL, catalog, provider overrides, OAuth clients, keyring.
    pub shared: SharedConfig,
    pub worker_id: String,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub addr: std::net::SocketAddr,
    /// Calls in flight at once from the interactive lane (also its prefetch).
    pub interactive_concurrency: u16,
    /// Calls in flight at once from the bulk lane (also its prefetch).
    pub bulk_concurrency: u16,
    /// Bulk calls in flight at once while interactive calls run (see `priority`); 0 makes
    /// bulk wait for a quiet interactive lane.
    pub bulk_while_interactive: u16,
    /// While interactive calls run, a bulk call starts at most once per this long (zero: no
    /// limit).
    pub bulk_spacing: Duration,
    /// The share (percent) of this worker's call slots, both lanes together, that the calls
    /// of one provider may hold at once (`bulkhead`); 100: no bulkhead.
    pub provider_share: u16,
    /// Waits up to this long happen inside the worker; longer ones go through a delay queue.
    pub max_inline_wait: Duration,
    pub provider_timeout: Duration,
    pub retry: RetryPolicy,
    /// How long in-flight calls may take to finish after a stop signal.
    pub shutdown_grace: Duration,
    /// Fault injection for tests and the chaos runner: wait this long between recording
    /// a result and acking its message, to widen the window a crash can fall into.
    pub ack_delay: Duration,
}

impl std::ops::Deref for WorkerConfig {
    type Target = SharedConfig;
    fn deref(&self) -> &SharedConfig {
        &self.shared
    }
}

impl WorkerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let positive = |var: &str, default: u16| -> Result<u16, ConfigError> {
            let v = env.parse(var, default, "a whole number from 1 to 1000")?;
            if v == 0 || v > 1000 {
                return Err(ConfigError { var: var.into(), reason: format!("expected 1 to 1000, got {v}") });
            }
            Ok(v)
        };
        let retry = RetryPolicy {
            max_attempts: env.parse("CLAWLINK_RETRY_MAX_ATTEMPTS", 5, "a whole number")?,
            base: env.millis("CLAWLINK_RETRY_BASE_MS", 200)?,
            cap: env.millis("CLAWLINK_RETRY_CAP_MS", 60_000)?,
        };
        if retry.max_attempts == 0 {
            return Err(ConfigError {
                var: "CLAWLINK_RETRY_MAX_ATTEMPTS".into(),
                reason: "expected at least 1".into(),
            });
        }
        let bulk_concurrency = positive("CLAWLINK_WORKER_BULK_CONCURRENCY", 32)?;
        let provider_share: u16 =
            env.parse("CLAWLINK_WORKER_PROVIDER_SHARE_PERCENT", 50, "a percentage from 1 to 100")?;
        if !(1..=100).contains(&provider_share) {
            return Err(ConfigError {
                var: "CLAWLINK_WORKER_PROVIDER_SHARE_PERCENT".into(),
                reason: format!("expected 1 to 100, got {provider_share}"),
            });
        }
        Ok(Self {
            infra: InfraConfig::from_env(env)?,
            shared: SharedConfig::from_env(env)?,
            addr: clawlink_common::config::socket_addr(env, "CLAWLINK_WORKER_ADDR", "127.0.0.1:8082")?,
            worker_id: env.string("CLAWLINK_WORKER_ID", &format!("worker-{}", std::process::id())),
            interactive_concurrency: positive("CLAWLINK_WORKER_INTERACTIVE_CONCURRENCY", 64)?,
            bulk_concurrency,
            // No cap of its own by default: the spacing bounds bulk's CPU, and a cap would
            // also bound bulk to one call per provider latency when providers are slow.
            bulk_while_interactive: env.parse(
                "CLAWLINK_WORKER_BULK_WHILE_INTERACTIVE",
                bulk_concurrency,
                "a whole number (0: bulk waits for a quiet interactive lane)",
            )?,
            bulk_spacing: env.millis("CLAWLINK_WORKER_BULK_SPACING_MS", 50)?,
            provider_share,
            max_inline_wait: env.millis("CLAWLINK_WORKER_MAX_INLINE_WAIT_MS", 5_000)?,
            provider_timeout: env.millis("CLAWLINK_PROVIDER_TIMEOUT_MS", 30_000)?,
            retry,
            shutdown_grace: env.millis("CLAWLINK_WORKER_SHUTDOWN_GRACE_MS", 30_000)?,
            ack_delay: env.millis("CLAWLINK_WORKER_ACK_DELAY_MS", 0)?,
        })
    }
}
