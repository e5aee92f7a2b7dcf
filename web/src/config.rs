//! The web front's configuration, read from `CLAWLINK_…` variables and checked at start-up.

use clawlink_common::config::{ConfigError, Env, InfraConfig, SharedConfig, socket_addr};
use std::net::SocketAddr;
use std::time::Duration;

/// Everything the web front reads from its environment.
#[derive(Clone, Debug)]
pub struct WebConfig {
    pub infra: InfraConfig,
    /// Result TTL (a dead letter discarded from the admin view stores its failure in Redis,
    /// as a worker would), catalog, provider overrides, OAuth clients, keyring.
    pub shared: SharedConfig,
    /// The payment provider's checkout page; unset: plans cannot be bought here.
    pub checkout_url: Option<String>,
    /// The secret the payment provider signs webhooks with (HMAC-SHA256).
    pub webhook_secret: Option<clawlink_common::secret::SecretString>,
    /// How old a webhook's signed timestamp may be.
    pub webhook_tolerance: Duration,
    pub addr: SocketAddr,
    /// How the web front is reached from outside; an `https` URL turns on Secure cookies
    /// and is the only Origin accepted on forms.
    pub public_web_url: String,
    pub session_ttl: Duration,
}

impl std::ops::Deref for WebConfig {
    type Target = SharedConfig;
    fn deref(&self) -> &SharedConfig {
        &self.shared
    }
}

impl WebConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            infra: InfraConfig::from_env(env)?,
            shared: SharedConfig::from_env(env)?,
            checkout_url: match env.raw("CLAWLINK_BILLING_CHECKOUT_URL") {
                Some(_) => Some(env.url("CLAWLINK_BILLING_CHECKOUT_URL", "", &["http", "https"])?),
                None => None,
            },
            webhook_secret: env.raw("CLAWLINK_BILLING_WEBHOOK_SECRET").map(clawlink_common::secret::SecretString::new),
            webhook_tolerance: Duration::from_secs(env.parse(
                "CLAWLINK_BILLING_WEBHOOK_TOLERANCE_SECS",
                300,
                "a whole number of seconds",
            )?),
            addr: socket_addr(env, "CLAWLINK_WEB_ADDR", "127.0.0.1:8081")?,
            public_web_url: env.url("CLAWLINK_PUBLIC_WEB_URL", "http://127.0.0.1:8081", &["http", "https"])?,
            session_ttl: Duration::from_secs(env.parse(
                "CLAWLINK_SESSION_TTL_SECS",
                14 * 86_400,
                "a whole number of seconds",
            )?),
        })
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_web_url.starts_with("https://")
    }
}
