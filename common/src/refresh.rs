//! OAuth token refresh: one refresh per connection at a time, across every process.
//!
//! The worker asks [`Refresher::ensure_fresh`] before each call; the api's sweep asks
//! [`Refresher::refresh_if_due`] for tokens that expire soon. Either way:
//! 1. in this process, callers for one connection take turns (a per-connection mutex),
//!    and each re-reads the row first — the one before it may have refreshed already;
//! 2. across processes, a Redis lock `<ns>:refresh-lock:<connection>` (`SET NX PX` with a
//!    random owner token; only the owner deletes it, by a compare-and-delete script) lets
//!    one holder call the provider; the holder re-reads the row after acquiring it, and
//!    the others wait for its result by watching the row;
//! 3. the new bundle — with a rotated refresh token when the provider returned one — is
//!    sealed and written in one statement with compare-and-set on `credentials.version`,
//!    in the transaction that also records `token_expires_at`.
//!
//! `invalid_grant` (RFC 6749 §5.2: the refresh token was revoked, expired or already
//! used) marks the connection `needs_reauth`. Other failures back off per connection
//! (`<ns>:refresh-backoff:<connection>`, growing waits) so a dead token endpoint or
//! connection is not hammered. Decrypted tokens live in `SecretString`s: zeroed on drop,
//! never logged. Knows nothing about queues or HTTP serving.

use crate::catalog::{Auth, Provider};
use crate::config::{OAuthClient, ProviderOverrides};
use crate::crypto::{Keyring, RowIdentity};
use crate::db::credentials;
use crate::ids::{ConnectionId, UserId};
use crate::provider::{CredentialBundle, is_public_ip};
use crate::secret::SecretString;
use rand::RngCore;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;
use tracing::Instrument;

/// Refresh a token this long before it expires (the worker's default).
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(120);
/// The token endpoint must answer within this.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The cross-process lock outlives a holder's whole refresh (token call plus write), and
/// frees itself this long after a holder that died.
const LOCK_TTL: Duration = Duration::from_secs(30);
/// How long a caller waits for another process's refresh before giving up on it.
const WAIT_FOR_HOLDER: Duration = Duration::from_secs(15);
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Backoff after a failed refresh: doubling from the first wait up to the cap. The
/// failure count is remembered for `BACKOFF_CAP` after each window.
const BACKOFF_FIRST: Duration = Duration::from_secs(10);
const BACKOFF_CAP: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The provider refused the refresh token (`invalid_grant`), or the connection is
    /// already marked: the person must reconnect.
    #[error("the connection must be reconnected")]
    NeedsReauth,
    #[error("the connection's credential was deleted")]
    Gone,
    #[error("the stored credential does not decrypt")]
    Unreadable,
    #[error("no OAuth client is configured for {0} (CLAWLINK_PROVIDER_<ID>_CLIENT_ID)")]
    NotConfigured(String),
    #[error("refreshing this connection's token failed recently; next attempt in {0}s")]
    BackingOff(u64),
    #[error("token refresh failed: {0}")]
    Failed(String),
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// What the worker calls the provider with.
#[derive(Debug)]
pub struct Fresh {
    pub bundle: CredentialBundle,
    /// The token changed during this call (refreshed here or by another process): a
    /// provider 401 on it means access was revoked, not that it expired.
    pub refreshed: bool,
}

/// Shared by every call of a process. Cheap to clone.
#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
}

struct Inner {
    redis: ConnectionManager,
    namespace: String,
    db: PgPool,
    keyring: Keyring,
    /// Provider id → this deployment's OAuth client (`config::oauth_clients_from_env`).
    clients: BTreeMap<String, OAuthClient>,
    tokens: TokenClient,
    /// Per-connection turns in this process. Entries die with their last holder.
    turns: Mutex<HashMap<ConnectionId, Weak<tokio::sync::Mutex<()>>>>,
}

impl Refresher {
    pub fn new(
        redis: ConnectionManager,
        namespace: &str,
        db: PgPool,
        keyring: Keyring,
        clients: BTreeMap<String, OAuthClient>,
        overrides: &ProviderOverrides,
    ) -> Result<Self, reqwest::Error> {
        let tokens = TokenClient::new(overrides)?;
        Ok(Self {
            inner: Arc::new(Inner {
                redis,
                namespace: namespace.to_string(),
                db,
                keyring,
                clients,
                tokens,
                turns: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Returns the credential to call the provider with: `bundle` itself, unless it is an
    /// OAuth token inside the margin, which is refreshed first. A refresh that fails while
    /// the old token is still valid is logged and the old token used.
    ///
    /// Runs on every call, so the common case stays cheap: no span of its own, and the
    /// refresh (a future of about 10 KB) is boxed, so it is not carried inline in, and
    /// copied with, every call's future.
    pub async fn ensure_fresh(
        &self,
        user: UserId,
        connection: ConnectionId,
        provider: &Provider,
        bundle: CredentialBundle,
    ) -> Result<Fresh, RefreshError> {
        if !matches!(provider.auth, Auth::Oauth2 { .. }) || !is_due(&bundle, DEFAULT_MARGIN) {
            return Ok(Fresh { bundle, refreshed: false });
        }
        let span = tracing::info_span!("refresh", connection_id = %connection, provider = %provider.id);
        let refreshing = self.refresh_if_due_seen(user, connection, provider, DEFAULT_MARGIN, Some(&bundle));
        match Box::pin(refreshing.instrument(span)).await {
            Ok(fresh) => {
                let refreshed = access_token(&fresh) != access_token(&bundle);
                Ok(Fresh { bundle: fresh, refreshed })
            }
            Err(RefreshError::NeedsReauth) => Err(RefreshError::NeedsReauth),
            Err(err) if !is_due(&bundle, Duration::ZERO) => {
                tracing::warn!(error = %err, "token refresh failed; the current token is still valid");
                Ok(Fresh { bundle, refreshed: false })
            }
            Err(err) => Err(err),
        }
    }

    /// Refreshes the connection's token if it expires within `margin` (the sweep), and
    /// returns the credential as stored afterwards.
    #[tracing::instrument(skip_all, fields(connection_id = %connection, provider = %provider.id))]
    pub async fn refresh_if_due(
        &self,
        user: UserId,
        connection: ConnectionId,
        provider: &Provider,
        margin: Duration,
    ) -> Result<CredentialBundle, RefreshError> {
        self.refresh_if_due_seen(user, connection, provider, margin, None).await
    }

    /// `seen`: the bundle the caller read; a stored token that differs from it (and has
    /// not expired) was refreshed by someone else meanwhile and is used as it is, even
    /// when it too is inside the margin (a provider whose tokens live shorter than it).
    async fn refresh_if_due_seen(
        &self,
        user: UserId,
        connection: ConnectionId,
        provider: &Provider,
        margin: Duration,
        seen: Option<&CredentialBundle>,
    ) -> Result<CredentialBundle, RefreshError> {
        let turn = self.turn(connection);
        let _turn = turn.lock().await;
        let current = self.current(user, connection).await?;
        if let Some(bundle) = current.usable(margin, seen)? {
            return Ok(bundle);
        }
        self.check_backoff(connection, current.version).await?;
        let mut redis = self.inner.redis.clone();
        match RedisLock::try_acquire(&mut redis, &self.lock_key(connection), LOCK_TTL).await? {
            Some(lock) => {
                let result = self.refresh_holding_lock(user, connection, provider, margin, seen).await;
                if let Err(err) = lock.release(&mut redis).await {
                    tracing::warn!(error = %err, "could not release the refresh lock; it expires by itself");
                }
                result
            }
            None => self.wait_for_holder(user, connection, margin, seen).await,
        }
    }

    async fn refresh_holding_lock(
        &self,
        user: UserId,
        connection: ConnectionId,
        provider: &Provider,
        margin: Duration,
        seen: Option<&CredentialBundle>,
    ) -> Result<CredentialBundle, RefreshError> {
        // Another process may have refreshed between our read and the lock.
        let current = self.current(user, connection).await?;
        if let Some(bundle) = current.usable(margin, seen)? {
            return Ok(bundle);
        }
        let CredentialBundle::Oauth2 { refresh_token: Some(refresh_token), .. } = &current.bundle else {
            return Ok(current.bundle);
        };
        let Auth::Oauth2 { token_url, extra_token_params, .. } = &provider.auth else {
            return Ok(current.bundle);
        };
        let client =
            self.inner.clients.get(&provider.id).ok_or_else(|| RefreshError::NotConfigured(provider.id.clone()))?;
        match self.inner.tokens.refresh(token_url, client, refresh_token, extra_token_params).await {
            TokenAnswer::Tokens(tokens) => {
                let bundle = CredentialBundle::Oauth2 {
                    access_token: tokens.access_token,
                    // A provider that rotates refresh tokens returns a new one; the old
                    // one is then spent and must not be kept.
                    refresh_token: tokens.refresh_token.or_else(|| Some(refresh_token.clone())),
                    expires_at: tokens.expires_in.map(|secs| now_unix() + secs),
                };
                let stored = self.store(user, connection, current, bundle).await?;
                tracing::info!("token refreshed");
                Ok(stored)
            }
            TokenAnswer::InvalidGrant => self.mark_needs_reauth(user, connection, current).await,
            TokenAnswer::Failed(reason) => {
                let wait = self.record_failure(connection, current.version).await?;
                tracing::warn!(%reason, backoff_secs = wait.as_secs(), "token refresh failed");
                Err(RefreshError::Failed(reason))
            }
        }
    }

    /// Writes the refreshed bundle with compare-and-set. A version that moved because the
    /// rotation re-sealed the same secret under another key is not a conflict: the write
    /// is retried on the new version. Any other change (a reconnect) wins over ours.
    async fn store(
        &self,
        user: UserId,
        connection: ConnectionId,
        read: Current,
        bundle: CredentialBundle,
    ) -> Result<CredentialBundle, RefreshError> {
        let sealed = self
            .inner
            .keyring
            .seal(RowIdentity::connection(user, connection), &bundle.to_plaintext())
            .map_err(|e| RefreshError::Failed(e.to_string()))?;
        let expires_at = match &bundle {
            CredentialBundle::Oauth2 { expires_at: Some(t), .. } => OffsetDateTime::from_unix_timestamp(*t).ok(),
            _ => None,
        };
        let before = read.bundle.to_plaintext();
        let mut expected = read.version;
        for _ in 0..5 {
            let mut tx = self.inner.db.begin().await?;
            if credentials::compare_and_set(&mut tx, connection, expected, &sealed).await?.is_some() {
                credentials::set_token_expiry(&mut tx, connection, expires_at).await?;
                tx.commit().await?;
                self.clear_backoff(connection).await;
                return Ok(bundle);
            }
            tx.rollback().await?;
            let now = self.current(user, connection).await?;
            if *now.bundle.to_plaintext() != *before {
                tracing::warn!("the credential changed while refreshing (reconnected?); keeping the stored one");
                return Ok(now.bundle);
            }
            expected = now.version;
        }
        Err(RefreshError::Failed("the credential kept changing while the refresh was written".into()))
    }

    /// Marks the connection `needs_reauth` after the provider refused its refresh token,
    /// unless the credential was replaced meanwhile (a reconnect: it stands). A version
    /// moved only by the rotation re-sealing the same secret is not a replacement.
    async fn mark_needs_reauth(
        &self,
        user: UserId,
        connection: ConnectionId,
        read: Current,
    ) -> Result<CredentialBundle, RefreshError> {
        let before = read.bundle.to_plaintext();
        let mut version = read.version;
        for _ in 0..5 {
            let mut conn = self.inner.db.acquire().await?;
            if credentials::mark_needs_reauth(&mut conn, connection, version).await? {
                tracing::warn!("the provider refused the refresh token (invalid_grant); the connection needs reauth");
                return Err(RefreshError::NeedsReauth);
            }
            drop(conn);
            let now = self.current(user, connection).await?;
            if *now.bundle.to_plaintext() != *before {
                return now.usable(Duration::ZERO, None)?.ok_or(RefreshError::NeedsReauth);
            }
            if now.status != "active" {
                return Err(RefreshError::NeedsReauth);
            }
            version = now.version;
        }
        Err(RefreshError::NeedsReauth)
    }

    /// Waits for the process holding the lock to finish, watching the row.
    async fn wait_for_holder(
        &self,
        user: UserId,
        connection: ConnectionId,
        margin: Duration,
        seen: Option<&CredentialBundle>,
    ) -> Result<CredentialBundle, RefreshError> {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_HOLDER;
        let key = self.lock_key(connection);
        loop {
            tokio::time::sleep(POLL_EVERY).await;
            let current = self.current(user, connection).await?;
            if let Some(bundle) = current.usable(margin, seen)? {
                return Ok(bundle);
            }
            let mut redis = self.inner.redis.clone();
            let held: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut redis).await?;
            if !held {
                // The holder is done: it wrote before releasing, so one more read tells.
                let current = self.current(user, connection).await?;
                if let Some(bundle) = current.usable(margin, seen)? {
                    return Ok(bundle);
                }
                self.check_backoff(connection, current.version).await?;
                return Err(RefreshError::Failed("another process's refresh of this token did not succeed".into()));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RefreshError::Failed("timed out waiting for another process's refresh".into()));
            }
        }
    }

    async fn current(&self, user: UserId, connection: ConnectionId) -> Result<Current, RefreshError> {
        let mut conn = self.inner.db.acquire().await?;
        let row =
            credentials::get(&mut conn, connection).await?.filter(|r| r.user_id == user).ok_or(RefreshError::Gone)?;
        drop(conn);
        let bundle = self
            .inner
            .keyring
            .open(RowIdentity::connection(user, connection), &row.sealed)
            .ok()
            .and_then(|plain| CredentialBundle::from_plaintext(plain.expose()).ok())
            .ok_or(RefreshError::Unreadable)?;
        Ok(Current { bundle, version: row.version, status: row.status })
    }

    fn turn(&self, connection: ConnectionId) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.inner.turns.lock().expect("refresh turns lock");
        if let Some(turn) = turns.get(&connection).and_then(Weak::upgrade) {
            return turn;
        }
        if turns.len() > 1024 {
            turns.retain(|_, t| t.strong_count() > 0);
        }
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        turns.insert(connection, Arc::downgrade(&turn));
        turn
    }

    fn lock_key(&self, connection: ConnectionId) -> String {
        format!("{}:refresh-lock:{}", self.inner.namespace, connection)
    }

    fn backoff_key(&self, connection: ConnectionId) -> String {
        format!("{}:refresh-backoff:{}", self.inner.namespace, connection)
    }

    async fn read_backoff(&self, connection: ConnectionId) -> Result<Option<Backoff>, RefreshError> {
        let mut redis = self.inner.redis.clone();
        let raw: Option<String> = redis::cmd("GET").arg(self.backoff_key(connection)).query_async(&mut redis).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// Refuses while a failure of this credential version is being waited out. A new
    /// version (a reconnect) starts clean.
    async fn check_backoff(&self, connection: ConnectionId, version: i64) -> Result<(), RefreshError> {
        match self.read_backoff(connection).await? {
            Some(b) if b.version == version && b.until_ms > now_ms() => {
                Err(RefreshError::BackingOff((b.until_ms - now_ms()).div_ceil(1000)))
            }
            _ => Ok(()),
        }
    }

    async fn record_failure(&self, connection: ConnectionId, version: i64) -> Result<Duration, RefreshError> {
        let failures = match self.read_backoff(connection).await? {
            Some(b) if b.version == version => b.failures + 1,
            _ => 1,
        };
        let wait = backoff_wait(failures);
        let value = Backoff { version, failures, until_ms: now_ms() + wait.as_millis() as u64 };
        let ttl = (wait + BACKOFF_CAP).as_millis() as u64;
        let mut redis = self.inner.redis.clone();
        redis::cmd("SET")
            .arg(self.backoff_key(connection))
            .arg(serde_json::to_string(&value).expect("backoff serialises"))
            .arg("PX")
            .arg(ttl)
            .query_async::<()>(&mut redis)
            .await?;
        Ok(wait)
    }

    async fn clear_backoff(&self, connection: ConnectionId) {
        let mut redis = self.inner.redis.clone();
        if let Err(err) = redis::cmd("DEL").arg(self.backoff_key(connection)).query_async::<()>(&mut redis).await {
            tracing::warn!(error = %err, "could not clear the refresh backoff");
        }
    }
}

/// The row as read now, decrypted.
struct Current {
    bundle: CredentialBundle,
    version: i64,
    status: String,
}

impl Current {
    /// The stored credential when it needs no refresh: not due within `margin`, or
    /// different from `seen` and not expired (someone refreshed it since the caller read).
    fn usable(
        &self,
        margin: Duration,
        seen: Option<&CredentialBundle>,
    ) -> Result<Option<CredentialBundle>, RefreshError> {
        if self.status != "active" {
            return Err(RefreshError::NeedsReauth);
        }
        let replaced = seen.is_some_and(|s| access_token(s) != access_token(&self.bundle));
        if !is_due(&self.bundle, margin) || (replaced && !is_due(&self.bundle, Duration::ZERO)) {
            return Ok(Some(self.bundle.clone()));
        }
        Ok(None)
    }
}

/// Per-connection refresh failures: `<ns>:refresh-backoff:<connection>` → this, as JSON.
#[derive(Debug, Serialize, Deserialize)]
struct Backoff {
    /// The credential version that failed.
    version: i64,
    failures: u32,
    /// No refresh before this (Unix milliseconds).
    until_ms: u64,
}

fn backoff_wait(failures: u32) -> Duration {
    BACKOFF_FIRST.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(BACKOFF_CAP)
}

/// An OAuth bundle that can be refreshed and expires within `margin`.
fn is_due(bundle: &CredentialBundle, margin: Duration) -> bool {
    match bundle {
        CredentialBundle::Oauth2 { refresh_token: Some(_), expires_at: Some(t), .. } => {
            *t - now_unix() <= margin.as_secs() as i64
        }
        _ => false,
    }
}

fn access_token(bundle: &CredentialBundle) -> Option<&str> {
    match bundle {
        CredentialBundle::Oauth2 { access_token, .. } => Some(access_token.expose()),
        _ => None,
    }
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Releases the lock only when it still holds our token: after our lock expired and
/// another process took it, a late release must not free theirs.
const COMPARE_AND_DELETE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Extends a lock that is still ours, or takes it again when it vanished (Redis lost its
/// keys); 0 when another holder has it.
const RENEW: &str = r#"
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// A Redis lock with an owner token (`SET key token NX PX ttl`); see `COMPARE_AND_DELETE`.
#[derive(Clone, Debug)]
pub struct RedisLock {
    key: String,
    token: String,
}

impl RedisLock {
    /// Takes the lock if nobody holds it. It frees itself after `ttl`.
    pub async fn try_acquire(
        conn: &mut ConnectionManager,
        key: &str,
        ttl: Duration,
    ) -> redis::RedisResult<Option<Self>> {
        let mut raw = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(conn)
            .await?;
        Ok(set.map(|_| Self { key: key.to_string(), token }))
    }

    /// Keeps the lock for another `ttl` (see `RENEW`). Returns whether it is still ours.
    pub async fn renew(&self, conn: &mut ConnectionManager, ttl: Duration) -> redis::RedisResult<bool> {
        let kept: i64 = redis::Script::new(RENEW)
            .key(&self.key)
            .arg(&self.token)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(conn)
            .await?;
        Ok(kept == 1)
    }

    /// Releases the lock if it is still ours. Returns whether it was.
    pub async fn release(self, conn: &mut ConnectionManager) -> redis::RedisResult<bool> {
        let deleted: i64 =
            redis::Script::new(COMPARE_AND_DELETE).key(&self.key).arg(&self.token).invoke_async(conn).await?;
        Ok(deleted == 1)
    }
}

/// A token endpoint's answer (RFC 6749 §5.1).
struct Tokens {
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    expires_in: Option<i64>,
}

enum TokenAnswer {
    Tokens(Tokens),
    /// RFC 6749 §5.2 `invalid_grant`: the refresh token is revoked, expired or spent.
    InvalidGrant,
    /// Anything else (network, 5xx, a malformed answer, a misconfigured client).
    Failed(String),
}

/// Calls token endpoints. Token URLs come from the catalog or the operator's config, never
/// from a request; a literal private address is still refused unless the deployment
/// allows it (`CLAWLINK_ALLOW_PRIVATE_PROVIDER_HOSTS`), as for provider calls.
struct TokenClient {
    http: reqwest::Client,
    allowed_private_hosts: Vec<String>,
}

impl TokenClient {
    fn new(overrides: &ProviderOverrides) -> Result<Self, reqwest::Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(TOKEN_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("ClawLink/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, allowed_private_hosts: overrides.allowed_private_hosts.clone() })
    }

    fn allows(&self, url: &url::Url) -> bool {
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(_)) => return true,
            None => return false,
        };
        let port = url.port_or_known_default().unwrap_or(0);
        is_public_ip(ip)
            || self.allowed_private_hosts.iter().any(|a| a == &format!("{}:{port}", url.host_str().unwrap_or_default()))
    }

    /// `grant_type=refresh_token` (RFC 6749 §6), the client authenticating with its id
    /// and secret in the body (§2.3.1), plus the catalog's extra parameters.
    async fn refresh(
        &self,
        token_url: &str,
        client: &OAuthClient,
        refresh_token: &SecretString,
        extra: &BTreeMap<String, String>,
    ) -> TokenAnswer {
        let Ok(url) = url::Url::parse(token_url) else {
            return TokenAnswer::Failed("the token URL is not a URL".into());
        };
        if !self.allows(&url) {
            return TokenAnswer::Failed("the token URL is a private address".into());
        }
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", &client.client_id),
        ];
        if let Some(secret) = &client.client_secret {
            form.push(("client_secret", secret.expose()));
        }
        form.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let response = match self.http.post(url).header("accept", "application/json").form(&form).send().await {
            Ok(r) => r,
            Err(err) => {
                return TokenAnswer::Failed(format!("the token endpoint could not be reached: {}", err.without_url()));
            }
        };
        let status = response.status().as_u16();
        let body = match response.bytes().await {
            Ok(b) => zeroize::Zeroizing::new(b.to_vec()),
            Err(err) => {
                return TokenAnswer::Failed(format!("the token endpoint's answer was cut off: {}", err.without_url()));
            }
        };
        parse_token_response(status, &body)
    }
}

fn parse_token_response(status: u16, body: &[u8]) -> TokenAnswer {
    #[derive(Deserialize)]
    struct Answer {
        access_token: Option<SecretString>,
        refresh_token: Option<SecretString>,
        expires_in: Option<serde_json::Value>,
        error: Option<String>,
    }
    let Ok(answer) = serde_json::from_slice::<Answer>(body) else {
        return TokenAnswer::Failed(format!("the token endpoint answered {status} without a JSON body"));
    };
    match (status, answer.access_token, answer.error.as_deref()) {
        (400 | 401, _, Some("invalid_grant")) => TokenAnswer::InvalidGrant,
        (200..=299, Some(access_token), None) => TokenAnswer::Tokens(Tokens {
            access_token,
            refresh_token: answer.refresh_token.filter(|t| !t.expose().is_empty()),
            // A number, or a number in a string (some providers send that).
            expires_in: answer.expires_in.and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok())),
        }),
        // The error code is the spec's vocabulary, never a secret.
        (_, _, Some(error)) => {
            let error: String = error.chars().take(100).collect();
            TokenAnswer::Failed(format!("the token endpoint answered {status}: {error}"))
        }
        (_, _, None) => TokenAnswer::Failed(format!("the token endpoint answered {status} without an access token")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_answers_are_classified() {
        let ok = br#"{"access_token":"a1","refresh_token":"r2","expires_in":3600,"token_type":"bearer"}"#;
        match parse_token_response(200, ok) {
            TokenAnswer::Tokens(t) => {
                assert_eq!(t.access_token.expose(), "a1");
                assert_eq!(t.refresh_token.unwrap().expose(), "r2");
                assert_eq!(t.expires_in, Some(3600));
            }
            _ => panic!("expected tokens"),
        }
        let no_rotation = br#"{"access_token":"a1","expires_in":"60"}"#;
        assert!(
            matches!(parse_token_response(200, no_rotation), TokenAnswer::Tokens(t) if t.refresh_token.is_none() && t.expires_in == Some(60))
        );
        assert!(matches!(parse_token_response(400, br#"{"error":"invalid_grant"}"#), TokenAnswer::InvalidGrant));
        assert!(matches!(parse_token_response(400, br#"{"error":"invalid_client"}"#), TokenAnswer::Failed(_)));
        assert!(matches!(parse_token_response(503, b"down"), TokenAnswer::Failed(_)));
        assert!(matches!(parse_token_response(200, br#"{"token_type":"bearer"}"#), TokenAnswer::Failed(_)));
    }

    #[test]
    fn failed_refresh_reasons_never_carry_tokens() {
        let TokenAnswer::Failed(reason) =
            parse_token_response(500, br#"{"error":"server_error","access_token":"leak"}"#)
        else {
            panic!("expected a failure");
        };
        assert!(!reason.contains("leak"), "{reason}");
    }

    #[test]
    fn backoff_grows_to_a_cap() {
        assert_eq!(backoff_wait(1), BACKOFF_FIRST);
        assert_eq!(backoff_wait(2), BACKOFF_FIRST * 2);
        assert_eq!(backoff_wait(3), BACKOFF_FIRST * 4);
        assert_eq!(backoff_wait(40), BACKOFF_CAP);
    }

    #[test]
    fn only_refreshable_tokens_near_expiry_are_due() {
        let oauth = |refresh: bool, expires_in: Option<i64>| CredentialBundle::Oauth2 {
            access_token: SecretString::new("a"),
            refresh_token: refresh.then(|| SecretString::new("r")),
            expires_at: expires_in.map(|s| now_unix() + s),
        };
        assert!(is_due(&oauth(true, Some(30)), DEFAULT_MARGIN));
        assert!(is_due(&oauth(true, Some(-30)), DEFAULT_MARGIN));
        assert!(!is_due(&oauth(true, Some(3600)), DEFAULT_MARGIN));
        assert!(!is_due(&oauth(false, Some(30)), DEFAULT_MARGIN), "without a refresh token there is nothing to do");
        assert!(!is_due(&oauth(true, None), DEFAULT_MARGIN));
        assert!(!is_due(&CredentialBundle::Bearer { token: SecretString::new("t") }, DEFAULT_MARGIN));
    }
}
