//! OAuth token refresh: one refresh per connection at a time, across every process.
//!
//! The worker asks [`Refresher::ensure_fresh`] before each call; the api's sweep asks
//! [`Refresher::refresh_if_due`] for tokens that expire soon. Either way:
//! 1. in this process, callers for one connection take turns (a per-connection mutex),
//!    and each re-reads the row first — the one before it may have refreshed already;
//! 2. across processes, a [`RedisLock`] on `<ns>:refresh-lock:<connection>` lets one
//!    holder call the token endpoint (through `oauth::TokenClient`); the holder re-reads
//!    the row after acquiring it, and the others wait for its result by watching the row;
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
use crate::keys::{self, BackoffKey, Json, Keys, RedisKey};
use crate::lock::RedisLock;
use crate::oauth::{TokenClient, TokenError};
use crate::provider::{CredentialBundle, ProviderClient};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
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
    keys: Keys,
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
        let tokens = TokenClient::new(ProviderClient::new(overrides, TOKEN_TIMEOUT)?, TOKEN_TIMEOUT);
        Ok(Self {
            inner: Arc::new(Inner {
                redis,
                keys: Keys::new(namespace),
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
        match RedisLock::try_acquire(&mut redis, &self.inner.keys.refresh_lock(connection), LOCK_TTL).await? {
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
            Ok(tokens) => {
                let bundle = CredentialBundle::Oauth2 {
                    access_token: tokens.access_token,
                    // A provider that rotates refresh tokens returns a new one; the old
                    // one is then spent and must not be kept.
                    refresh_token: tokens.refresh_token.or_else(|| Some(refresh_token.clone())),
                    expires_at: tokens.expires_at,
                };
                let stored = self.store(user, connection, current, bundle).await?;
                tracing::info!("token refreshed");
                Ok(stored)
            }
            Err(TokenError::InvalidGrant) => self.mark_needs_reauth(user, connection, current).await,
            Err(TokenError::Failed(reason)) => {
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
                let subject = format!("connection:{connection}");
                let event = crate::audit::Event {
                    user: Some(user),
                    actor: crate::audit::Actor::System,
                    action: crate::audit::CREDENTIAL_REFRESHED,
                    subject: &subject,
                    details: serde_json::json!({"keyId": sealed.key_id}),
                };
                crate::audit::record(&mut tx, &event).await?;
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
        let key = self.inner.keys.refresh_lock(connection);
        loop {
            tokio::time::sleep(POLL_EVERY).await;
            let current = self.current(user, connection).await?;
            if let Some(bundle) = current.usable(margin, seen)? {
                return Ok(bundle);
            }
            let mut redis = self.inner.redis.clone();
            if !RedisLock::is_held(&mut redis, &key).await? {
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

    async fn read_backoff(&self, connection: ConnectionId) -> Result<Option<Backoff>, RefreshError> {
        let mut redis = self.inner.redis.clone();
        Ok(keys::get_json(&mut redis, &self.inner.keys.refresh_backoff(connection)).await?)
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
        let mut redis = self.inner.redis.clone();
        let mut pipe = redis::pipe();
        keys::set_json(
            &mut pipe,
            &self.inner.keys.refresh_backoff(connection),
            &Json::encode(&value),
            wait + BACKOFF_CAP,
        );
        pipe.query_async::<()>(&mut redis).await?;
        Ok(wait)
    }

    async fn clear_backoff(&self, connection: ConnectionId) {
        let mut redis = self.inner.redis.clone();
        let key = self.inner.keys.refresh_backoff(connection);
        if let Err(err) = redis::cmd("DEL").arg(&key).query_async::<()>(&mut redis).await {
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
pub struct Backoff {
    /// The credential version that failed.
    version: i64,
    failures: u32,
    /// No refresh before this (Unix milliseconds).
    until_ms: u64,
}

impl RedisKey for BackoffKey {
    type Value = Backoff;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;

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
