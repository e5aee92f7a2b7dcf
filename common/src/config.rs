//! Typed configuration from `CLAWLINK_…` environment variables, validated at start-up.
//!
//! A missing or bad value is an error naming the variable and what was expected; the
//! binaries print it and exit. Every value has a local default except the credential keys.
//! Knows nothing about what the values are used for.

use crate::crypto::Keyring;
use crate::secret::SecretString;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: String,
    pub reason: String,
}

/// Reads variables from a map (the process environment in production, a literal map in
/// tests) so tests never mutate the global environment.
#[derive(Clone, Debug, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().filter(|(k, _)| k.starts_with("CLAWLINK_")).collect())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_string(), value.into());
    }

    pub fn raw(&self, var: &str) -> Option<&str> {
        self.0.get(var).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    pub fn string(&self, var: &str, default: &str) -> String {
        self.raw(var).unwrap_or(default).to_string()
    }

    pub fn parse<T: FromStr>(&self, var: &str, default: T, expected: &str) -> Result<T, ConfigError> {
        match self.raw(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ConfigError { var: var.into(), reason: format!("expected {expected}, got {v:?}") }),
        }
    }

    pub fn millis(&self, var: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.parse(var, default_ms, "a whole number of milliseconds").map(Duration::from_millis)
    }

    pub fn url(&self, var: &str, default: &str, schemes: &[&str]) -> Result<String, ConfigError> {
        let v = self.string(var, default);
        let scheme = v.split("://").next().unwrap_or_default();
        if !v.contains("://") || !schemes.contains(&scheme) {
            return Err(ConfigError {
                var: var.into(),
                reason: format!("expected a URL with scheme {}, got {v:?}", schemes.join(" or ")),
            });
        }
        Ok(v.trim_end_matches('/').to_string())
    }

    /// Every variable starting with `prefix`, with the prefix removed.
    pub fn with_prefix(&self, prefix: &str) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().filter_map(move |(k, v)| k.strip_prefix(prefix).map(|rest| (rest, v.as_str())))
    }
}

/// What every binary needs: where the three services are and the namespace of its
/// queues and keys.
#[derive(Clone, Debug)]
pub struct InfraConfig {
    pub database_url: SecretString,
    pub database_max_connections: u32,
    /// `CLAWLINK_AMQP_URL` as given: one URL, or a comma-separated list (the nodes of a
    /// cluster). Connect through `amqp_addresses`.
    pub amqp_url: SecretString,
    /// The same, parsed: the addresses a broker connection tries in turn.
    pub amqp_addresses: crate::queue::BrokerAddresses,
    pub redis_url: SecretString,
    /// Prefix of every queue name and Redis key, so several deployments (or test runs)
    /// share one broker and one Redis without seeing each other.
    pub namespace: String,
}

impl InfraConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let namespace = env.string("CLAWLINK_NAMESPACE", "clawlink");
        if namespace.is_empty() || !namespace.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ConfigError {
                var: "CLAWLINK_NAMESPACE".into(),
                reason: format!("expected letters, digits, '-' or '_', got {namespace:?}"),
            });
        }
        let amqp_url = env.string("CLAWLINK_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
        let amqp_addresses = crate::queue::BrokerAddresses::parse(&amqp_url).map_err(|reason| ConfigError {
            var: "CLAWLINK_AMQP_URL".into(),
            reason: format!("expected an amqp:// URL or a comma-separated list of them: {reason}"),
        })?;
        Ok(Self {
            database_url: env
                .url(
                    "CLAWLINK_DATABASE_URL",
                    "postgres://postgres@127.0.0.1:5432/clawlink",
                    &["postgres", "postgresql"],
                )?
                .into(),
            database_max_connections: env.parse("CLAWLINK_DATABASE_MAX_CONNECTIONS", 16, "a positive whole number")?,
            amqp_url: amqp_url.into(),
            amqp_addresses,
            redis_url: env.url("CLAWLINK_REDIS_URL", "redis://127.0.0.1:6379/", &["redis", "rediss"])?.into(),
            namespace,
        })
    }
}

/// What every binary reads the same way, once: how long results stay in Redis, the
/// catalog and its per-deployment overrides, the OAuth clients, the credential keys and
/// the trusted proxies.
/// Each binary's config embeds it and reads its fields as its own (`Deref`).
#[derive(Clone, Debug)]
pub struct SharedConfig {
    /// How long results stay in Redis (`CLAWLINK_RESULT_TTL_SECS`): the api reads them, the
    /// worker writes them, and the web front writes one for a discarded dead letter.
    pub result_ttl: Duration,
    /// The provider catalog (`CLAWLINK_CATALOG_DIR`; unset: `catalog::default_dir`).
    pub catalog_dir: Option<String>,
    pub providers: ProviderOverrides,
    /// Provider id → OAuth client, for connect flows and token refreshes.
    pub oauth_clients: BTreeMap<String, OAuthClient>,
    pub keyring: Keyring,
    /// The proxies whose `X-Forwarded-For` / `Forwarded` are believed
    /// (`CLAWLINK_TRUSTED_PROXIES`; see `client_addr`).
    pub trusted_proxies: crate::client_addr::TrustedProxies,
}

/// `CLAWLINK_TRUSTED_PROXIES`: comma-separated IPs or CIDRs; unset, none.
fn trusted_proxies_from_env(env: &Env) -> Result<crate::client_addr::TrustedProxies, ConfigError> {
    const VAR: &str = "CLAWLINK_TRUSTED_PROXIES";
    crate::client_addr::TrustedProxies::parse_list(&env.string(VAR, ""))
        .map_err(|reason| ConfigError { var: VAR.into(), reason })
}

impl SharedConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            result_ttl: Duration::from_secs(env.parse(
                "CLAWLINK_RESULT_TTL_SECS",
                86_400,
                "a whole number of seconds",
            )?),
            catalog_dir: env.raw("CLAWLINK_CATALOG_DIR").map(String::from),
            providers: ProviderOverrides::from_env(env)?,
            oauth_clients: oauth_clients_from_env(env)?,
            keyring: keyring_from_env(env)?,
            trusted_proxies: trusted_proxies_from_env(env)?,
        })
    }
}

/// Provider settings a deployment can override: base URLs (GitHub Enterprise, the
/// emulator in tests) and which private hosts outbound calls may reach.
#[derive(Clone, Debug, Default)]
pub struct ProviderOverrides {
    /// Catalog overrides: provider id (lower case) → base URL, from
    /// `CLAWLINK_PROVIDER_<ID>_BASE_URL`; and `<id>.authorize_url` / `<id>.token_url` → OAuth
    /// endpoints, from `CLAWLINK_PROVIDER_<ID>_AUTHORIZE_URL` / `_TOKEN_URL` (the emulator's
    /// authorization server in tests, a provider's regional endpoint in production).
    pub base_urls: BTreeMap<String, String>,
    /// `host:port` pairs that may be private or loopback (the emulator), from
    /// `CLAWLINK_ALLOW_PRIVATE_PROVIDER_HOSTS`.
    pub allowed_private_hosts: Vec<String>,
}

impl ProviderOverrides {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut base_urls = BTreeMap::new();
        for (rest, _) in env.with_prefix("CLAWLINK_PROVIDER_") {
            for (suffix, key) in [("_BASE_URL", ""), ("_AUTHORIZE_URL", ".authorize_url"), ("_TOKEN_URL", ".token_url")]
            {
                if let Some(id) = rest.strip_suffix(suffix) {
                    let var = format!("CLAWLINK_PROVIDER_{id}{suffix}");
                    let url = env.url(&var, "", &["http", "https"])?;
                    base_urls.insert(format!("{}{key}", id.to_ascii_lowercase()), url);
                }
            }
        }
        let allowed_private_hosts = env
            .string("CLAWLINK_ALLOW_PRIVATE_PROVIDER_HOSTS", "")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect::<Vec<_>>();
        for h in &allowed_private_hosts {
            if h.parse::<SocketAddr>().is_err() && !h.contains(':') {
                return Err(ConfigError {
                    var: "CLAWLINK_ALLOW_PRIVATE_PROVIDER_HOSTS".into(),
                    reason: format!("expected comma-separated host:port pairs, got {h:?}"),
                });
            }
        }
        Ok(Self { base_urls, allowed_private_hosts })
    }
}

/// The credential keys: `CLAWLINK_CREDENTIAL_KEYS=id:base64key[,id:base64key…]` and
/// `CLAWLINK_CREDENTIAL_ACTIVE_KEY=id` (default: the first).
pub fn keyring_from_env(env: &Env) -> Result<Keyring, ConfigError> {
    let var = "CLAWLINK_CREDENTIAL_KEYS";
    let raw = env.raw(var).ok_or_else(|| ConfigError {
        var: var.into(),
        reason:
            "missing: expected id:base64-of-32-bytes[,id:…] (deploy/local/run generates one in .clawlink/secrets.env)"
                .into(),
    })?;
    let mut keys = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, b64) = part.split_once(':').ok_or_else(|| ConfigError {
            var: var.into(),
            reason: "expected entries of the form id:base64key".into(),
        })?;
        keys.push((id.trim().to_string(), SecretString::new(b64.trim())));
    }
    let active = env.raw("CLAWLINK_CREDENTIAL_ACTIVE_KEY").map(str::to_string);
    Keyring::from_encoded(keys, active.as_deref()).map_err(|reason| ConfigError {
        var: if reason.contains("active") { "CLAWLINK_CREDENTIAL_ACTIVE_KEY".into() } else { var.into() },
        reason,
    })
}

/// An OAuth client registered with a provider.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
}

/// The OAuth clients of this deployment, from `CLAWLINK_PROVIDER_<ID>_CLIENT_ID` and
/// `CLAWLINK_PROVIDER_<ID>_CLIENT_SECRET`, by provider id (lower case).
pub fn oauth_clients_from_env(env: &Env) -> Result<BTreeMap<String, OAuthClient>, ConfigError> {
    let mut clients = BTreeMap::new();
    for (rest, value) in env.with_prefix("CLAWLINK_PROVIDER_") {
        if let Some(id) = rest.strip_suffix("_CLIENT_ID") {
            let secret = env.raw(&format!("CLAWLINK_PROVIDER_{id}_CLIENT_SECRET")).map(SecretString::new);
            clients.insert(
                id.to_ascii_lowercase(),
                OAuthClient { client_id: value.trim().to_string(), client_secret: secret },
            );
        }
    }
    Ok(clients)
}

pub fn socket_addr(env: &Env, var: &str, default: &str) -> Result<SocketAddr, ConfigError> {
    let v = env.string(var, default);
    v.parse().map_err(|_| ConfigError { var: var.into(), reason: format!("expected host:port, got {v:?}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_variable() {
        let env = Env::from_pairs([("CLAWLINK_AMQP_URL", "http://nope")]);
        let err = InfraConfig::from_env(&env).unwrap_err();
        assert_eq!(err.var, "CLAWLINK_AMQP_URL");
        let env = Env::from_pairs([("CLAWLINK_DATABASE_MAX_CONNECTIONS", "many")]);
        assert_eq!(InfraConfig::from_env(&env).unwrap_err().var, "CLAWLINK_DATABASE_MAX_CONNECTIONS");
        let env = Env::from_pairs([("CLAWLINK_NAMESPACE", "a b")]);
        assert_eq!(InfraConfig::from_env(&env).unwrap_err().var, "CLAWLINK_NAMESPACE");
    }

    #[test]
    fn the_broker_is_one_url_or_a_list() {
        let one = InfraConfig::from_env(&Env::default()).unwrap();
        assert_eq!(one.amqp_addresses.len(), 1);
        assert_eq!(one.amqp_addresses.shown(0), "127.0.0.1:5672");
        let env = Env::from_pairs([(
            "CLAWLINK_AMQP_URL",
            "amqp://u:pw@r0:5672/%2f,amqp://u:pw@r1:5672/%2f,amqp://u:pw@r2:5672/%2f",
        )]);
        let three = InfraConfig::from_env(&env).unwrap();
        assert_eq!(three.amqp_addresses.len(), 3);
        assert_eq!(three.amqp_addresses.shown(2), "r2:5672");
        let env = Env::from_pairs([("CLAWLINK_AMQP_URL", "amqp://u:pw@r0:5672/%2f,redis://u:pw@r1")]);
        let err = InfraConfig::from_env(&env).unwrap_err();
        assert_eq!(err.var, "CLAWLINK_AMQP_URL");
        assert!(err.reason.contains("address 2") && !err.reason.contains("pw"), "{err}");
    }

    #[test]
    fn defaults_are_local() {
        let cfg = InfraConfig::from_env(&Env::default()).unwrap();
        assert_eq!(cfg.namespace, "clawlink");
        assert!(cfg.redis_url.expose().starts_with("redis://127.0.0.1"));
    }

    #[test]
    fn provider_base_urls_are_read_per_provider() {
        let env = Env::from_pairs([
            ("CLAWLINK_PROVIDER_SANDBOX_BASE_URL", "http://127.0.0.1:9/"),
            ("CLAWLINK_PROVIDER_GITHUB_BASE_URL", "ftp://x"),
        ]);
        assert_eq!(ProviderOverrides::from_env(&env).unwrap_err().var, "CLAWLINK_PROVIDER_GITHUB_BASE_URL");
        let env = Env::from_pairs([("CLAWLINK_PROVIDER_SANDBOX_BASE_URL", "http://127.0.0.1:9/")]);
        let o = ProviderOverrides::from_env(&env).unwrap();
        assert_eq!(o.base_urls["sandbox"], "http://127.0.0.1:9");
    }

    #[test]
    fn keys_are_required_and_checked() {
        assert_eq!(keyring_from_env(&Env::default()).unwrap_err().var, "CLAWLINK_CREDENTIAL_KEYS");
        let env = Env::from_pairs([("CLAWLINK_CREDENTIAL_KEYS", "k1:short")]);
        assert_eq!(keyring_from_env(&env).unwrap_err().var, "CLAWLINK_CREDENTIAL_KEYS");
    }

    #[test]
    fn shared_settings_default_and_name_a_bad_value() {
        let keys = ("CLAWLINK_CREDENTIAL_KEYS", "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let shared = SharedConfig::from_env(&Env::from_pairs([keys])).unwrap();
        assert_eq!(shared.result_ttl, Duration::from_secs(86_400));
        assert_eq!(shared.catalog_dir, None);
        let env = Env::from_pairs([keys, ("CLAWLINK_RESULT_TTL_SECS", "a day")]);
        assert_eq!(SharedConfig::from_env(&env).unwrap_err().var, "CLAWLINK_RESULT_TTL_SECS");
        assert_eq!(SharedConfig::from_env(&Env::default()).unwrap_err().var, "CLAWLINK_CREDENTIAL_KEYS");
        let env = Env::from_pairs([keys, ("CLAWLINK_TRUSTED_PROXIES", "10.0.0.0/8, ingress")]);
        let err = SharedConfig::from_env(&env).unwrap_err();
        assert_eq!(err.var, "CLAWLINK_TRUSTED_PROXIES");
        assert!(err.reason.contains("\"ingress\""), "{}", err.reason);
    }
}
