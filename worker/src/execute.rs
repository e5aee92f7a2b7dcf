//! One tool call in the worker: claim → resolve → decrypt → refresh → pace → call → classify →
//! publish the result → record it. The caller (`consumer`) acks only after this returns.
//!
//! Exactly-once is not promised by any queue; what this file promises is:
//! - a delivery whose execution is already final re-publishes the stored result and
//!   never calls the provider;
//! - a delivery whose previous attempt published a result to Redis but died before
//!   recording it finishes the row from Redis, without calling the provider;
//! - the provider sees the execution id in its idempotency header, where it has one.
//! - one delivery at a time works on an execution (a lease in Redis, renewed while the
//!   call runs): a copy the broker hands out while the first delivery still runs (after a
//!   consumer timeout or a broker restart) checks back later instead of calling again.
//! The only window for a second provider call is between the provider's answer and the
//! Redis write of the result, when the worker dies in it (documented in RELIABILITY.md).

use clawlink_common::batch::Batcher;
use clawlink_common::catalog::{Catalog, ToolEntry, render_request};
use clawlink_common::crypto::{Keyring, RowIdentity};
use clawlink_common::db::executions::{self, Claim};
use clawlink_common::ids::ExecutionId;
use clawlink_common::metrics::{
    ExecutionLabels, IntegrationLabels, Metrics, OutcomeLabels, PhaseLabels, ProviderLabels,
};
use clawlink_common::pacing::{PaceError, Pacer};
use clawlink_common::provider::{CredentialBundle, ProviderClient};
use clawlink_common::queue::{Job, Lane, Publisher};
use clawlink_common::refresh::{RedisLock, RefreshError, Refresher};
use clawlink_common::results::{FinalStatus, Outcome, OutcomeError, OutcomeMeta, ResultStore};
use clawlink_common::retry::{Classification, RetryPolicy, classify_status};
use serde_json::Value;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

/// How long a delivery's lease on its execution lasts unless renewed (every third of it).
/// A worker that dies holds its executions up to this long before a redelivery runs them.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// A delivery that finds another one working on its execution checks back after this long
/// (through the shortest delay queue).
const LEASE_RECHECK: Duration = Duration::from_secs(2);

/// Everything a call needs, shared by all in-flight calls of the process.
pub struct Executor {
    pub db: PgPool,
    pub results: ResultStore,
    pub publisher: Publisher,
    pub pacer: Pacer,
    /// Refreshes OAuth tokens about to expire, once per connection across workers.
    pub refresher: Refresher,
    pub client: ProviderClient,
    pub keyring: Keyring,
    pub catalog: Arc<Catalog>,
    pub retry: RetryPolicy,
    pub max_inline_wait: Duration,
    /// See `WorkerConfig::ack_delay`.
    pub ack_delay: Duration,
    pub metrics: Metrics,
    /// Claims and final records, batched with those of concurrent calls (`batch`).
    pub claims: Batcher<ExecutionId, Option<Claim>>,
    pub finishes: Batcher<Outcome, bool>,
    /// Holds bulk calls back while interactive ones run (`priority`).
    pub lanes: Arc<crate::priority::LaneGate>,
}

/// What the consumer does with the delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Done (finished, re-published, or parked in a delay queue).
    Ack,
    /// Not processable: dead-letter it for a person to look at.
    DeadLetter(&'static str),
}

/// Our own infrastructure failed (Postgres, Redis, RabbitMQ); the delivery should be
/// retried later, not failed.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("rabbitmq: {0}")]
    Queue(#[from] clawlink_common::queue::PublishError),
    #[error("postgres: {0}")]
    Batch(#[from] clawlink_common::batch::BatchError),
}

fn failure(
    kind: &str,
    code: &str,
    message: impl Into<String>,
    retryable: bool,
    provider_status: Option<u16>,
) -> OutcomeError {
    OutcomeError { kind: kind.into(), code: code.into(), message: message.into(), retryable, provider_status }
}

/// The connection's grant is gone (refused refresh token, revoked access): the agent is
/// told to have the person reconnect.
fn needs_reauth(provider_name: &str, provider_status: Option<u16>) -> OutcomeError {
    failure(
        "auth",
        "needs_reauth",
        format!("The {provider_name} connection must be reconnected."),
        false,
        provider_status,
    )
}

/// The most useful line of a provider's error body.
fn provider_message(body: &Value) -> Option<String> {
    let candidates = [
        body.pointer("/error/message"),
        body.pointer("/message"),
        body.pointer("/error_description"),
        body.pointer("/errors/0/message"),
        body.get("error").filter(|e| e.is_string()),
    ];
    candidates.into_iter().flatten().find_map(|v| v.as_str()).map(|s| s.chars().take(500).collect())
}

/// The result of the attempts made during this delivery.
enum Attempted {
    Done {
        status: FinalStatus,
        data: Option<Value>,
        error: Option<OutcomeError>,
        provider_status: Option<u16>,
        request_id: Option<String>,
    },
    /// Try again after `wait`, through a delay queue.
    Defer { wait: Duration, reason: String },
}

impl Executor {
    /// Log lines name the execution through the caller's `delivery` span.
    pub async fn process(
        &self,
        execution_id: ExecutionId,
        reply_to: Option<&str>,
        lane: Lane,
        redelivered: bool,
    ) -> Result<Disposition, InfraError> {
        let mut redis = self.results.connection();
        let Some(lease) = RedisLock::try_acquire(&mut redis, &self.results.lease_key(execution_id), LEASE_TTL).await?
        else {
            // Finished meanwhile: answer again.
            if let Some(done) = self.answer_if_final(execution_id, reply_to).await? {
                return Ok(done);
            }
            let job = Job::ExecuteV1 { execution_id, reply_to: reply_to.map(String::from) };
            self.publisher.publish_delayed(lane, &job, LEASE_RECHECK).await?;
            tracing::info!("another delivery of this execution is running; checking back later");
            return Ok(Disposition::Ack);
        };
        let renewing = tokio::spawn({
            let (lease, mut redis) = (lease.clone(), redis.clone());
            async move {
                loop {
                    tokio::time::sleep(LEASE_TTL / 3).await;
                    match lease.renew(&mut redis, LEASE_TTL).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(%execution_id, "lost the execution's lease to another delivery"),
                        Err(err) => tracing::warn!(%execution_id, error = %err, "cannot renew the execution's lease"),
                    }
                }
            }
        });
        let result = self.process_leased(execution_id, reply_to, lane, redelivered).await;
        renewing.abort();
        // If this fails the lease expires by itself.
        let _ = lease.release(&mut redis).await;
        result
    }

    /// When the execution is final, re-publishes its result (from Redis, else from the row)
    /// and returns `Ack`; `None` when it is not final or unknown.
    async fn answer_if_final(
        &self,
        execution_id: ExecutionId,
        reply_to: Option<&str>,
    ) -> Result<Option<Disposition>, InfraError> {
        let row = executions::get_final(&mut *self.db.acquire().await?, execution_id).await?;
        let Some(row) = row else { return Ok(None) };
        let outcome = match self.results.get(execution_id).await? {
            Some(outcome) => outcome,
            None => row.outcome().expect("final row has an outcome"),
        };
        self.results.publish(&outcome, reply_to).await?;
        tracing::info!("execution already final; result re-published");
        Ok(Some(Disposition::Ack))
    }

    /// `process` once this delivery holds the execution's lease.
    async fn process_leased(
        &self,
        execution_id: ExecutionId,
        reply_to: Option<&str>,
        lane: Lane,
        redelivered: bool,
    ) -> Result<Disposition, InfraError> {
        let Some(claim) = self.claims.call(execution_id).await? else {
            // Already final (a duplicate or redelivered message): answer again, call nothing.
            let answered = self.answer_if_final(execution_id, reply_to).await?;
            return Ok(answered.unwrap_or(Disposition::DeadLetter("unknown execution")));
        };

        // A previous delivery may have published the result and died before recording it.
        if redelivered || claim.attempts > 1 {
            if let Some(outcome) = self.results.get(execution_id).await? {
                self.results.publish(&outcome, reply_to).await?;
                self.finishes.call(outcome).await?;
                tracing::info!("result found from an earlier delivery; recorded without calling the provider");
                return Ok(Disposition::Ack);
            }
        }

        let (attempted, attempts, provider_ms) = self.attempt(&claim).await?;
        match attempted {
            Attempted::Defer { wait, reason } => {
                let job = Job::ExecuteV1 { execution_id, reply_to: reply_to.map(String::from) };
                let mut conn = self.db.acquire().await?;
                executions::requeue(&mut conn, execution_id, attempts as i32, &reason).await?;
                self.publisher.publish_delayed(lane, &job, wait).await?;
                tracing::info!(wait_ms = wait.as_millis() as u64, %reason, "retry parked in a delay queue");
                Ok(Disposition::Ack)
            }
            Attempted::Done { status, data, error, provider_status, request_id } => {
                let ended = OffsetDateTime::now_utc();
                let started = claim.started_at.unwrap_or(ended);
                let outcome = Outcome {
                    execution_id,
                    status,
                    data,
                    error,
                    meta: OutcomeMeta {
                        started_at: Some(started),
                        ended_at: Some(ended),
                        duration_ms: (ended - claim.created_at).whole_milliseconds().max(0) as u64,
                        queue_wait_ms: (started - claim.created_at).whole_milliseconds().max(0) as u64,
                        provider_ms,
                        attempts,
                        provider_request_id: request_id,
                        provider_status,
                    },
                };
                // Redis first: the waiting agent gets its answer without waiting for the
                // row. If Redis is down the row alone carries the result.
                if let Err(err) = self.results.publish(&outcome, reply_to).await {
                    tracing::warn!(error = %err, "result store unavailable; recording the result in postgres only");
                }
                let meta = outcome.meta.clone();
                if self.finishes.call(outcome).await? {
                    self.record(&claim, status, &meta);
                }
                tracing::info!(status = status.as_str(), attempts, provider_ms, "execution finished");
                Ok(Disposition::Ack)
            }
        }
    }

    /// Counts a finished execution once (only the delivery that made the row final).
    fn record(&self, claim: &Claim, status: FinalStatus, m: &OutcomeMeta) {
        let integration = claim.tool_name.split('_').next().unwrap_or_default().to_string();
        let integration = self.catalog.tool(&claim.tool_name).map(|t| t.provider.id.clone()).unwrap_or(integration);
        self.metrics
            .executions
            .get_or_create(&ExecutionLabels {
                integration,
                tool: claim.tool_name.clone(),
                outcome: status.as_str().into(),
            })
            .inc();
        for (phase, ms) in [("queue_wait", m.queue_wait_ms), ("provider", m.provider_ms), ("total", m.duration_ms)] {
            self.metrics.execution_duration.get_or_create(&PhaseLabels { phase }).observe(ms as f64 / 1000.0);
        }
    }

    /// Makes the provider call, retrying transient failures while the waits are short.
    /// Returns what happened, the attempt count so far, and the time spent at the provider.
    async fn attempt(&self, claim: &Claim) -> Result<(Attempted, u32, u64), InfraError> {
        let mut attempts = claim.attempts.max(1) as u32;
        let mut provider_ms = 0u64;
        let done_err = |e: OutcomeError| Attempted::Done {
            status: FinalStatus::Failed,
            provider_status: e.provider_status,
            data: None,
            error: Some(e),
            request_id: None,
        };
        let Some(tool) = self.catalog.tool(&claim.tool_name).cloned() else {
            let e = failure(
                "internal",
                "tool_unavailable",
                format!("The tool {} is no longer in the catalog.", claim.tool_name),
                false,
                None,
            );
            return Ok((done_err(e), attempts, 0));
        };
        let (Some(connection), Some(sealed)) = (claim.connection_id, claim.sealed.as_ref()) else {
            let e = failure("auth", "connection_missing", "The connection for this call was deleted.", false, None);
            return Ok((done_err(e), attempts, 0));
        };
        if claim.connection_status.as_deref() == Some("needs_reauth") {
            return Ok((done_err(needs_reauth(&tool.provider.name, None)), attempts, 0));
        }
        // The credential is decrypted only here, only in memory, and zeroed on drop.
        let credential = match self
            .keyring
            .open(RowIdentity::connection(claim.user_id, connection), sealed)
            .ok()
            .and_then(|plain| CredentialBundle::from_plaintext(plain.expose()).ok())
        {
            Some(c) => c,
            None => {
                tracing::error!(connection_id = %connection, "credential does not decrypt");
                let e = failure(
                    "auth",
                    "credential_unreadable",
                    "The stored credential for this connection cannot be read; reconnect it.",
                    false,
                    None,
                );
                return Ok((done_err(e), attempts, 0));
            }
        };
        // An OAuth token about to expire is refreshed first, once per connection across
        // every worker (see `clawlink_common::refresh`).
        let refreshed = self.refresher.ensure_fresh(claim.user_id, connection, &tool.provider, credential).await;
        let refresh_outcome = match &refreshed {
            Ok(fresh) if fresh.refreshed => Some("refreshed"),
            Ok(_) => None,
            Err(RefreshError::NeedsReauth) => Some("invalid_grant"),
            Err(_) => Some("failed"),
        };
        if let Some(outcome) = refresh_outcome {
            self.metrics.token_refreshes.get_or_create(&OutcomeLabels { outcome }).inc();
        }
        let fresh = match refreshed {
            Ok(fresh) => fresh,
            Err(RefreshError::NeedsReauth) => {
                return Ok((done_err(needs_reauth(&tool.provider.name, None)), attempts, 0));
            }
            Err(RefreshError::Db(err)) => return Err(err.into()),
            Err(RefreshError::Redis(err)) => return Err(err.into()),
            Err(err) => {
                let message = format!("The {} token has expired and could not be refreshed: {err}", tool.provider.name);
                return Ok((done_err(failure("provider", "provider_unavailable", message, true, None)), attempts, 0));
            }
        };
        let request = match render_request(&tool, &claim.arguments) {
            Ok(r) => r,
            Err(err) => {
                let e = failure("validation", "invalid_arguments", err.to_string(), false, None);
                return Ok((done_err(e), attempts, 0));
            }
        };
        let idempotency_key = claim.id.to_string();

        loop {
            match self.pacer.acquire(&tool.provider, connection, self.max_inline_wait).await {
                Ok(waited) => self.metrics.pacing_wait.observe(waited.as_secs_f64()),
                Err(PaceError::WaitTooLong(wait)) => {
                    // No attempt was made at this number: the next claim takes it.
                    return Ok((
                        Attempted::Defer { wait, reason: "rate limit: waiting for a permit".into() },
                        attempts - 1,
                        provider_ms,
                    ));
                }
                Err(PaceError::Redis(err)) => return Err(err.into()),
            }
            let result = self.client.call(&tool.provider, &request, &fresh.bundle, Some(&idempotency_key)).await;
            let status_class = Metrics::status_class(result.as_ref().ok().map(|r| r.status));
            self.metrics
                .provider_responses
                .get_or_create(&ProviderLabels { integration: tool.provider.id.clone(), status_class })
                .inc();
            let (classification, status) = match &result {
                Ok(response) => {
                    provider_ms += response.elapsed.as_millis() as u64;
                    (
                        classify_status(
                            response.status,
                            response.retry_after.as_deref(),
                            response.reset.as_deref(),
                            SystemTime::now(),
                        ),
                        Some(response.status),
                    )
                }
                Err(err) if err.is_transient() => (Classification::Transient { not_before: None }, None),
                Err(_) => (Classification::Permanent, None),
            };
            match classification {
                Classification::Success => {
                    let response = result.expect("success has a response");
                    return Ok((
                        Attempted::Done {
                            status: FinalStatus::Succeeded,
                            data: Some(shape(&tool, response.body)),
                            error: None,
                            provider_status: Some(response.status),
                            request_id: response.request_id,
                        },
                        attempts,
                        provider_ms,
                    ));
                }
                Classification::Permanent if status == Some(401) && fresh.refreshed => {
                    // The provider refuses a token it has just issued: access was revoked.
                    return Ok((done_err(needs_reauth(&tool.provider.name, status)), attempts, provider_ms));
                }
                Classification::Permanent => {
                    let e = match (&result, status) {
                        (Ok(response), Some(s)) => {
                            let detail = provider_message(&response.body).unwrap_or_else(|| "no details".into());
                            OutcomeError {
                                kind: "provider".into(),
                                code: "provider_error".into(),
                                message: format!("{} answered {s}: {detail}", tool.provider.name),
                                retryable: false,
                                provider_status: Some(s),
                            }
                        }
                        (Err(err), _) => failure("provider", "provider_error", err.to_string(), false, None),
                        _ => unreachable!("a permanent classification has a response or an error"),
                    };
                    let data = result.ok().map(|r| r.body).filter(|b| !b.is_null());
                    return Ok((
                        Attempted::Done {
                            status: FinalStatus::Failed,
                            data,
                            provider_status: e.provider_status,
                            error: Some(e),
                            request_id: None,
                        },
                        attempts,
                        provider_ms,
                    ));
                }
                Classification::Transient { not_before } => {
                    if status == Some(429) {
                        // Every worker holds off this connection until the provider's time.
                        let pause = not_before.unwrap_or(Duration::from_secs(1));
                        self.pacer.pause(&tool.provider.id, connection, pause).await.map_err(|e| match e {
                            PaceError::Redis(r) => InfraError::Redis(r),
                            PaceError::WaitTooLong(_) => unreachable!("pause does not wait"),
                        })?;
                    }
                    let reason = match (&result, status) {
                        (_, Some(429)) => "rate limited by the provider (429)".to_string(),
                        (_, Some(s)) => format!("the provider answered {s}"),
                        (Err(err), _) => err.to_string(),
                        _ => "transient failure".into(),
                    };
                    if !self.retry.may_retry(attempts) {
                        let (code, kind) = if status == Some(429) {
                            ("rate_limited", "rate_limit")
                        } else {
                            ("provider_unavailable", "provider")
                        };
                        let e = failure(
                            kind,
                            code,
                            format!("{} did not succeed after {attempts} attempts: {reason}", tool.provider.name),
                            true,
                            status,
                        );
                        return Ok((done_err(e), attempts, provider_ms));
                    }
                    let wait = self.retry.next_wait(attempts, not_before);
                    attempts += 1;
                    self.metrics
                        .retries
                        .get_or_create(&IntegrationLabels { integration: tool.provider.id.clone() })
                        .inc();
                    tracing::info!(attempt = attempts, wait_ms = wait.as_millis() as u64, %reason, "retrying");
                    if wait > self.max_inline_wait {
                        return Ok((Attempted::Defer { wait, reason }, attempts - 1, provider_ms));
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// The part of a response worth returning, as the tool declares.
fn shape(tool: &ToolEntry, body: Value) -> Value {
    match &tool.tool.result {
        Some(pointer) => body.pointer(pointer).cloned().unwrap_or(body),
        None => body,
    }
}
