//! Scheduled jobs of the api, started by `run()`.
//!
//! [`TokenSweep`]: every minute, refreshes the OAuth tokens that expire within ten
//! minutes, so a connection used rarely still has a fresh token when a call comes (the
//! worker also refreshes on demand). Safe on any number of replicas: a Redis lease lets
//! one replica sweep per round, and each refresh takes the per-connection lock and
//! re-reads the row (see `clawlink_common::refresh`), so a connection another replica
//! or a worker refreshed meanwhile is left alone.

use crate::state::AppState;
use clawlink_common::catalog::{Auth, Catalog};
use clawlink_common::db::credentials;
use clawlink_common::ids::ConnectionId;
use clawlink_common::refresh::{RedisLock, RefreshError, Refresher};
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// Connections read per page of a sweep.
const PAGE: i64 = 200;
/// Token calls in flight at once during a sweep.
const CONCURRENCY: usize = 4;

/// The refresh sweep and what it needs.
pub struct TokenSweep {
    pub refresher: Refresher,
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub namespace: String,
    pub catalog: Arc<Catalog>,
    /// Time between rounds.
    pub every: Duration,
    /// Tokens expiring within this are refreshed.
    pub horizon: Duration,
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Connections whose token is fresh now (refreshed here or by someone else), or that
    /// have nothing to refresh (no refresh token).
    pub fresh: u32,
    pub needs_reauth: u32,
    /// Backing off after earlier failures; not called this round.
    pub backing_off: u32,
    pub failed: u32,
}

impl TokenSweep {
    pub fn new(state: &AppState, refresher: Refresher) -> Self {
        Self {
            refresher,
            db: state.db.clone(),
            redis: state.results.connection(),
            namespace: state.config.infra.namespace.clone(),
            catalog: state.catalog.clone(),
            every: Duration::from_secs(60),
            horizon: Duration::from_secs(600),
        }
    }

    /// Sweeps every `every` until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        // The first round one period after start: a replica that restarts does not sweep
        // at once, and neither does a test stack that lives for seconds.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + self.every, self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lease_key = format!("{}:refresh-sweep", self.namespace);
        // Held until it expires, a little before the next round: one replica per round.
        let lease = self.every.saturating_sub(Duration::from_secs(5)).max(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let mut redis = self.redis.clone();
            match RedisLock::try_acquire(&mut redis, &lease_key, lease).await {
                Ok(Some(_lease)) => {}
                Ok(None) => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "refresh sweep skipped: redis unavailable");
                    continue;
                }
            }
            match self.sweep_once().await {
                Ok(report) if report != SweepReport::default() => tracing::info!(?report, "refresh sweep done"),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "refresh sweep stopped early"),
            }
        }
    }

    /// One round: walks every active connection whose token expires within the horizon.
    pub async fn sweep_once(&self) -> Result<SweepReport, sqlx::Error> {
        let before = OffsetDateTime::now_utc() + self.horizon;
        let mut after = ConnectionId(0);
        let mut report = SweepReport::default();
        loop {
            let page = {
                let mut conn = self.db.acquire().await?;
                credentials::list_expiring(&mut conn, before, after, PAGE).await?
            };
            let Some(last) = page.last() else {
                return Ok(report);
            };
            after = last.connection_id;
            let due: Vec<_> = page
                .into_iter()
                .filter_map(|c| {
                    let provider = self.catalog.provider(&c.integration)?.clone();
                    matches!(provider.auth, Auth::Oauth2 { .. }).then_some((c, provider))
                })
                .collect();
            let horizon = self.horizon;
            let results = futures_util::stream::iter(due)
                .map(|(c, provider)| {
                    let refresher = self.refresher.clone();
                    async move { refresher.refresh_if_due(c.user_id, c.connection_id, &provider, horizon).await }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            for result in results {
                match result {
                    Ok(_) => report.fresh += 1,
                    Err(RefreshError::NeedsReauth) => report.needs_reauth += 1,
                    Err(RefreshError::BackingOff(_)) => report.backing_off += 1,
                    Err(RefreshError::Db(err)) => return Err(err),
                    Err(err) => {
                        tracing::debug!(error = %err, "sweep: refresh failed");
                        report.failed += 1;
                    }
                }
            }
        }
    }
}
