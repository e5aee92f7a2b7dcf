//! Scheduled jobs of the api, started by `run()`.
//!
//! [`TokenSweep`]: every minute, refreshes the OAuth tokens that expire within ten
//! minutes, so a connection used rarely still has a fresh token when a call comes (the
//! worker also refreshes on demand). Safe on any number of replicas: a Redis lease lets
//! one replica sweep per round, and each refresh takes the per-connection lock and
//! re-reads the row (see `clawlink_common::refresh`), so a connection another replica
//! or a worker refreshed meanwhile is left alone.
//!
//! [`outbox_relay`] publishes the jobs of new executions that no broker confirmed in time
//! (an api that died between its insert and its publish), and in the same loop fails the
//! calls no person approved in time (`expire_approvals`). [`queue_stats`] and [`upkeep`]
//! (session expiry and deletion, stuck-execution reaper, retention purge) are the rest. Every job counts each run in `clawlink_job_runs_total{name,
//! outcome}` under one of the [`JOBS`] names. Usage needs no roll-up job: the statement
//! that finishes an execution adds it to `usage_monthly`, so the monthly count is exact
//! at all times.

use crate::state::AppState;
use clawlink_common::catalog::{Auth, Catalog};
use clawlink_common::db::credentials;
use clawlink_common::ids::ConnectionId;
use clawlink_common::keys::Keys;
use clawlink_common::lock::RedisLock;
use clawlink_common::metrics::Metrics;
use clawlink_common::refresh::{RefreshError, Refresher};
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

/// The `name` of every scheduled job in `clawlink_job_runs_total` (deploy/check knows
/// this list too).
pub const JOBS: [&str; 7] = [
    "token_refresh_sweep",
    "expire_sessions",
    "reap_stuck_executions",
    "purge_execution_bodies",
    "queue_stats",
    "outbox_relay",
    "expire_approvals",
];

/// Creates every job's series at zero, so a job that never ran shows as 0, not as missing.
pub fn declare(metrics: &Metrics) {
    for name in JOBS {
        for outcome in ["ok", "failed"] {
            let _ = metrics.job_runs.get_or_create(&clawlink_common::metrics::JobLabels { name, outcome });
        }
    }
}

/// The refresh sweep and what it needs.
pub struct TokenSweep {
    pub refresher: Refresher,
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub namespace: String,
    pub catalog: Arc<Catalog>,
    pub metrics: Metrics,
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
            metrics: state.metrics.clone(),
            every: state.config.job_interval,
            horizon: Duration::from_secs(600),
        }
    }

    /// Sweeps every `every` until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        // The first round one period after start: a replica that restarts does not sweep
        // at once, and neither does a test stack that lives for seconds.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + self.every, self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lease_key = Keys::new(&self.namespace).refresh_sweep();
        // Held until it expires, a little before the next round: one replica per round.
        let lease = self.every.saturating_sub(Duration::from_secs(5)).max(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let mut redis = self.redis.clone();
            // A round another replica holds the lease for is not a run here; a round that
            // cannot even ask for the lease is a failed one.
            match RedisLock::try_acquire(&mut redis, &lease_key, lease).await {
                Ok(Some(_lease)) => {}
                Ok(None) => continue,
                Err(err) => {
                    self.metrics.job("token_refresh_sweep", false);
                    tracing::warn!(job = "token_refresh_sweep", error = %err, "refresh sweep skipped: redis unavailable");
                    continue;
                }
            }
            let result = self.sweep_once().await;
            self.metrics.job("token_refresh_sweep", result.is_ok());
            match result {
                Ok(report) if report != SweepReport::default() => tracing::info!(?report, "refresh sweep done"),
                Ok(_) => {}
                Err(err) => tracing::warn!(job = "token_refresh_sweep", error = %err, "refresh sweep stopped early"),
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
                    Ok(bundle) => {
                        // Listed as expiring, now valid past the horizon: its token was
                        // refreshed (here, or by a worker in the meantime).
                        if let clawlink_common::provider::CredentialBundle::Oauth2 { expires_at: Some(at), .. } = bundle
                            && at > before.unix_timestamp()
                        {
                            self.refresh_counted("refreshed");
                        }
                        report.fresh += 1
                    }
                    Err(RefreshError::NeedsReauth) => {
                        self.refresh_counted("invalid_grant");
                        report.needs_reauth += 1
                    }
                    Err(RefreshError::BackingOff(_)) => report.backing_off += 1,
                    Err(RefreshError::Db(err)) => return Err(err),
                    Err(err) => {
                        tracing::debug!(error = %err, "sweep: refresh failed");
                        self.refresh_counted("failed");
                        report.failed += 1;
                    }
                }
            }
        }
    }
}

impl TokenSweep {
    fn refresh_counted(&self, outcome: &'static str) {
        self.metrics.token_refreshes.get_or_create(&clawlink_common::metrics::OutcomeLabels { outcome }).inc();
    }
}

/// Every `every`, reads the depth and consumers of each queue from the broker into the
/// `clawlink_queue_*` gauges (delay queues summed), and from Postgres the age of each
/// lane's oldest call not yet delivered (the broker does not report it). Every replica
/// reports the same numbers; dashboards take `max` across replicas.
pub async fn queue_stats(state: AppState, every: Duration, stop: CancellationToken) {
    use clawlink_common::metrics::QueueLabels;
    use clawlink_common::queue::{DELAY_TIERS_SECS, Lane, Topology};
    let topology = Topology::new(&state.config.infra.namespace);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // The broker and Postgres are read side by side, each bounded by the period, so a
        // slow broker neither stalls the ages nor piles rounds up.
        let broker = async {
            let channel = state.amqp.current().1.create_channel().await?;
            let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
            let read = |name: String| {
                let channel = channel.clone();
                async move {
                    let q = channel.queue_declare(name.as_str().into(), passive, Default::default()).await?;
                    Ok::<_, lapin::Error>((i64::from(q.message_count()), i64::from(q.consumer_count())))
                }
            };
            let mut delay = 0;
            for lane in Lane::ALL {
                let (ready, consumers) = read(topology.work_queue(lane)).await?;
                state.metrics.queue_messages.get_or_create(&QueueLabels { queue: lane.as_str() }).set(ready);
                state.metrics.queue_consumers.get_or_create(&QueueLabels { queue: lane.as_str() }).set(consumers);
                for secs in DELAY_TIERS_SECS {
                    delay += read(topology.delay_queue(lane, secs)).await?.0;
                }
            }
            state.metrics.queue_messages.get_or_create(&QueueLabels { queue: "delay" }).set(delay);
            let (dead, _) = read(topology.dead_letter_queue()).await?;
            state.metrics.queue_messages.get_or_create(&QueueLabels { queue: "dead" }).set(dead);
            let _ = channel.close(200, "stats read".into()).await;
            Ok::<_, lapin::Error>(())
        };
        let ages = async {
            let mut conn = state.db.acquire().await?;
            for lane in Lane::ALL {
                let age = clawlink_common::db::maintenance::oldest_waiting_secs(&mut conn, lane).await?;
                state.metrics.queue_oldest_age.get_or_create(&QueueLabels { queue: lane.as_str() }).set(age);
            }
            Ok::<_, sqlx::Error>(())
        };
        let (result, ages) = tokio::join!(tokio::time::timeout(every, broker), tokio::time::timeout(every, ages));
        let result = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {every:?}")),
        };
        let ages = match ages {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {every:?}")),
        };
        if let Err(err) = &result {
            tracing::warn!(job = "queue_stats", error = %err, "reading queue depths from the broker failed");
        }
        if let Err(err) = &ages {
            tracing::warn!(job = "queue_stats", error = %err, "reading the oldest waiting calls failed");
        }
        state.metrics.job("queue_stats", result.is_ok() && ages.is_ok());
    }
}

/// Upkeep every `every`: expire sessions (and delete those expired past their retention),
/// reap stuck executions, purge old bodies. Each
/// step runs in bounded batches (SKIP LOCKED), so every replica may run it.
pub async fn upkeep(state: AppState, every: Duration, stop: CancellationToken) {
    use clawlink_common::db::maintenance;
    const BATCH: i64 = 500;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let steps: [(&'static str, _); 3] =
            [("expire_sessions", 0u8), ("reap_stuck_executions", 1), ("purge_execution_bodies", 2)];
        for (job, step) in steps {
            let result = async {
                let mut conn = state.db.acquire().await?;
                match step {
                    0 => {
                        let retention = state.config.session_retention.as_secs() as i64;
                        let expired = maintenance::expire_sessions(&mut conn, BATCH).await?;
                        Ok(expired + maintenance::delete_old_sessions(&mut conn, retention, BATCH).await?)
                    }
                    1 => maintenance::reap_stuck(&mut conn, state.config.stuck_after.as_secs() as i64, BATCH).await,
                    _ => maintenance::purge_bodies(&mut conn, state.config.retention_days, BATCH).await,
                }
            }
            .await;
            state.metrics.job(job, result.is_ok());
            match result {
                Ok(0) => {}
                Ok(n) => tracing::info!(job, rows = n, "upkeep"),
                Err(err) => tracing::warn!(job, error = %err, "upkeep step failed"),
            }
        }
    }
}

/// How often each replica looks for executions whose job no broker confirmed in time.
pub const RELAY_EVERY: Duration = Duration::from_secs(2);

/// Publishes again the jobs of new executions still in the outbox past their due time
/// (`CLAWLINK_OUTBOX_RELAY_AFTER_MS` after the insert): the api that inserted them died or
/// lost its broker before the confirm. Without a reply channel: a caller still waiting on
/// a replay of the call is woken through the namespace's done channel. Every replica runs
/// it; rows are taken with SKIP LOCKED and pushed ahead, so each is relayed once per round.
pub async fn outbox_relay(state: AppState, every: Duration, stop: CancellationToken) {
    const BATCH: i64 = 200;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let result = relay_round(&state, BATCH).await;
        state.metrics.job("outbox_relay", result.is_ok());
        match result {
            Ok(0) => {}
            // Approved calls are published here on purpose; only strays are news.
            Ok(n) => tracing::info!(job = "outbox_relay", executions = n, "published jobs from the outbox"),
            Err(err) => tracing::warn!(job = "outbox_relay", error = %err, "outbox relay failed"),
        }
        // Calls awaiting a person past their approval time become final here, so an
        // agent polling one reads `approval_expired` within a round of the deadline.
        let expired = expire_approvals(&state, BATCH).await;
        state.metrics.job("expire_approvals", expired.is_ok());
        match expired {
            Ok(0) => {}
            Ok(n) => tracing::info!(job = "expire_approvals", executions = n, "calls expired unapproved"),
            Err(err) => tracing::warn!(job = "expire_approvals", error = %err, "approval expiry failed"),
        }
    }
}

/// Fails the calls no person approved in time, and wakes whoever polls them (the row is
/// final either way; the wake-up only saves a poll its next look). How many expired.
pub async fn expire_approvals(state: &AppState, limit: i64) -> anyhow::Result<usize> {
    use clawlink_common::db::{approvals, executions};
    let mut conn = state.db.acquire().await?;
    let expired = approvals::expire_due(&mut conn, limit).await?;
    for id in &expired {
        if let Some(outcome) = executions::get_final(&mut conn, *id).await?.and_then(|row| row.outcome())
            && let Err(err) = state.results.publish(&outcome, None).await
        {
            tracing::warn!(execution_id = %id, error = %err, "expired; the result could not be stored in redis");
        }
    }
    Ok(expired.len())
}

/// One round of [`outbox_relay`]: how many jobs it published.
pub async fn relay_round(state: &AppState, limit: i64) -> anyhow::Result<usize> {
    use clawlink_common::db::executions;
    use clawlink_common::queue::Job;
    let due = {
        let mut conn = state.db.acquire().await?;
        executions::take_unpublished(&mut conn, limit, state.config.outbox_relay_after).await?
    };
    let mut published = 0;
    for row in due {
        let job = Job::ExecuteV1 { execution_id: row.execution_id, reply_to: None };
        state.publisher.publish(row.lane, &job).await?;
        state.published.submit(row.execution_id);
        tracing::info!(execution_id = %row.execution_id, relayed_before = row.relayed, "job published by the outbox relay");
        published += 1;
    }
    Ok(published)
}
