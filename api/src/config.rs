//! The api's configuration, read from `CLAWLINK_…` variables and checked at start-up.

use clawlink_common::config::{ConfigError, Env, InfraConfig, SharedConfig, socket_addr};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub infra: InfraConfig,
    /// Result TTL, catalog, provider overrides, OAuth clients, keyring.
    pub shared: SharedConfig,
    pub addr: SocketAddr,
    /// How this api is reached from outside (for `statusUrl`).
    pub public_api_url: String,
    /// How the web front is reached from outside (for `pairUrl`, `connectUrl`).
    pub public_web_url: String,
    /// The name of this replica's result channel; unique per process.
    pub instance_id: String,
    /// How long a sync execute waits before answering 202 with the execution id.
    pub sync_wait: Duration,
    /// The longest `waitMs` a status poll may ask for.
    pub max_poll_wait: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Requests per second one device may make to this replica, and the burst above it.
    pub device_rate_per_sec: u32,
    pub device_burst: u32,
    /// An execution `running` longer than this is failed as stuck by the upkeep job.
    pub stuck_after: Duration,
    /// Arguments and result copies older than this many days are erased.
    pub retention_days: i64,
    /// Pairing and connect sessions are deleted this long after they expired.
    pub session_retention: Duration,
    /// Time between rounds of the token refresh sweep and of upkeep (sessions, reaper,
    /// retention purge).
    pub job_interval: Duration,
    /// A new execution whose job the broker has not confirmed this long after its insert
    /// is published again by the outbox relay of any replica.
    pub outbox_relay_after: Duration,
    /// The web origins (`https://host[:port]`, as browsers send them in `Origin`) whose
    /// pages may call `/api/mcp`: `CLAWLINK_MCP_ALLOWED_ORIGINS` and this api's own
    /// public origin. A request without `Origin` (not from a browser page) is allowed.
    pub mcp_allowed_origins: Vec<String>,
    /// How long a preview's approval token approves its call.
    pub approval_token_ttl: Duration,
    /// How long a call waits for a person's approval (policy `person`) before it expires.
    pub approval_wait: Duration,
}

impl std::ops::Deref for ApiConfig {
    type Target = SharedConfig;
    fn deref(&self) -> &SharedConfig {
        &self.shared
    }
}

impl ApiConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let instance_id = env.string("CLAWLINK_INSTANCE_ID", &format!("api-{}", uuid::Uuid::new_v4().simple()));
        let public_api_url = env.url("CLAWLINK_PUBLIC_API_URL", "http://127.0.0.1:8080", &["http", "https"])?;
        let mut mcp_allowed_origins = vec![web_origin(&public_api_url).ok_or_else(|| ConfigError {
            var: "CLAWLINK_PUBLIC_API_URL".into(),
            reason: format!("expected a URL with a host, got {public_api_url:?}"),
        })?];
        for entry in env.string("CLAWLINK_MCP_ALLOWED_ORIGINS", "").split(',').map(str::trim).filter(|e| !e.is_empty())
        {
            mcp_allowed_origins.push(bare_origin(entry).ok_or_else(|| ConfigError {
                var: "CLAWLINK_MCP_ALLOWED_ORIGINS".into(),
                reason: format!(
                    "expected comma-separated web origins such as https://app.example.com or http://localhost:3000, got {entry:?}"
                ),
            })?);
        }
        Ok(Self {
            infra: InfraConfig::from_env(env)?,
            shared: SharedConfig::from_env(env)?,
            addr: socket_addr(env, "CLAWLINK_API_ADDR", "127.0.0.1:8080")?,
            public_api_url,
            public_web_url: env.url("CLAWLINK_PUBLIC_WEB_URL", "http://127.0.0.1:8081", &["http", "https"])?,
            instance_id,
            sync_wait: env.millis("CLAWLINK_SYNC_WAIT_MS", 25_000)?,
            max_poll_wait: env.millis("CLAWLINK_MAX_POLL_WAIT_MS", 30_000)?,
            max_body_bytes: env.parse("CLAWLINK_MAX_BODY_BYTES", 256 * 1024, "a whole number of bytes")?,
            device_rate_per_sec: positive(env, "CLAWLINK_DEVICE_RATE_PER_SEC", 100)?,
            device_burst: positive(env, "CLAWLINK_DEVICE_BURST", 200)?,
            stuck_after: Duration::from_secs(u64::from(positive(env, "CLAWLINK_STUCK_AFTER_SECS", 1800)?)),
            retention_days: i64::from(positive(env, "CLAWLINK_RETENTION_DAYS", 30)?),
            session_retention: Duration::from_secs(
                3600 * u64::from(positive(env, "CLAWLINK_EXPIRED_SESSION_RETENTION_HOURS", 24)?),
            ),
            job_interval: Duration::from_millis(u64::from(positive(env, "CLAWLINK_JOB_INTERVAL_MS", 60_000)?)),
            outbox_relay_after: Duration::from_millis(u64::from(positive(
                env,
                "CLAWLINK_OUTBOX_RELAY_AFTER_MS",
                10_000,
            )?)),
            mcp_allowed_origins,
            approval_token_ttl: Duration::from_secs(u64::from(positive(env, "CLAWLINK_APPROVAL_TOKEN_TTL_SECS", 600)?)),
            approval_wait: Duration::from_secs(u64::from(positive(env, "CLAWLINK_APPROVAL_WAIT_SECS", 3600)?)),
        })
    }
}

/// The origin of a URL as a browser serialises it in `Origin` (RFC 6454: lower-case scheme
/// and host, no default port); `None` for a URL without one (`null`, `file:`, not a URL).
pub fn web_origin(url: &str) -> Option<String> {
    let origin = url::Url::parse(url).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// An origin as written in a setting: a scheme, a host and a port, nothing more (a path,
/// a query or a user is a mistake).
fn bare_origin(entry: &str) -> Option<String> {
    let url = url::Url::parse(entry).ok()?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none() && url.username().is_empty();
    bare.then(|| web_origin(entry)).flatten()
}

fn positive(env: &Env, var: &str, default: u32) -> Result<u32, ConfigError> {
    let v: u32 = env.parse(var, default, "a positive whole number")?;
    if v == 0 {
        return Err(ConfigError { var: var.into(), reason: "expected a positive whole number, got 0".into() });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: (&str, &str) = ("CLAWLINK_CREDENTIAL_KEYS", "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");

    #[test]
    fn mcp_origins_are_the_apis_own_and_the_configured_ones_as_browsers_spell_them() {
        let config = ApiConfig::from_env(&Env::from_pairs([KEYS])).unwrap();
        assert_eq!(config.mcp_allowed_origins, ["http://127.0.0.1:8080"]);
        let env = Env::from_pairs([
            KEYS,
            ("CLAWLINK_PUBLIC_API_URL", "https://API.example.com:443/clawlink"),
            ("CLAWLINK_MCP_ALLOWED_ORIGINS", " https://App.example.com/ , http://localhost:3000,"),
        ]);
        let config = ApiConfig::from_env(&env).unwrap();
        assert_eq!(
            config.mcp_allowed_origins,
            ["https://api.example.com", "https://app.example.com", "http://localhost:3000"]
        );
        for bad in ["app.example.com", "https://app.example.com/path", "https://a@app.example.com", "null", "file:///x"]
        {
            let env = Env::from_pairs([KEYS, ("CLAWLINK_MCP_ALLOWED_ORIGINS", bad)]);
            assert_eq!(ApiConfig::from_env(&env).unwrap_err().var, "CLAWLINK_MCP_ALLOWED_ORIGINS", "{bad}");
        }
    }
}
