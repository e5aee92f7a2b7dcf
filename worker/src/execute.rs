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

use crate::decide::{self, Step, needs_reauth};
use clawlink_common::batch::Batcher;
use clawlink_common::catalog::{Catalog, RenderedRequest, RetryClass, ToolEntry, render_request};
use clawlink_common::codes::ErrorCode;
use clawlink_common::crypto::{Keyring, RowIdentity};
use clawlink_common::db::executions::{self, Claim};
use clawlink_common::ids::{ConnectionId, ExecutionId};
use clawlink_common::lock::RedisLock;
use clawlink_common::metrics::{
    ExecutionLabels, IntegrationLabels, Metrics, OutcomeLabels, PhaseLabels, ProviderLabels,
};
use clawlink_common::pacing::{PaceError, Pacer};
use clawlink_common::provider::{CallError, CredentialBundle, ProviderClient, ProviderResponse};
use clawlink_common::queue::{Job, Lane, Publisher};
use clawlink_common::refresh::{Fresh, RefreshError, Refresher};
use clawlink_common::results::{FinalStatus, Outcome, OutcomeError, OutcomeMeta, ResultStore};
use clawlink_common::retry::RetryPolicy;
use clawlink_common::status::ConnectionStatus;
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
    /// Bounds the slots one provider's calls hold (`bulkhead`).
    pub bulkhead: Arc<crate::bulkhead::Bulkhead>,
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

/// The result of the attempts made during this delivery.
enum Attempted {
    Done {
        status: FinalStatus,
        data: Option<Value>,
        error: Option<OutcomeError>,
        provider_status: Option<u16>,
        request_id: Option<String>,
    },
    /// Try again after `wait`, through a delay queue. `unanswered`: a request sent in
    /// this delivery may have been acted on (its outcome is still to be verified).
    Defer { wait: Duration, reason: String, unanswered: bool },
}

impl Attempted {
    fn failed(error: OutcomeError) -> Self {
        Attempted::Done {
            status: FinalStatus::Failed,
            data: None,
            provider_status: error.provider_status,
            error: Some(error),
            request_id: None,
        }
    }
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
        let Some(lease) =
            RedisLock::try_acquire(&mut redis, &self.results.keys().lease(execution_id), LEASE_TTL).await?
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
            Attempted::Defer { wait, reason, unanswered } => {
                let job = Job::ExecuteV1 { execution_id, reply_to: reply_to.map(String::from) };
                let mut conn = self.db.acquire().await?;
                executions::requeue(&mut conn, execution_id, attempts as i32, &reason, unanswered).await?;
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
        let attempts = claim.attempts.max(1) as u32;
        match self.prepare(claim).await? {
            Ok(ready) => self.call_provider(claim, ready, attempts).await,
            Err(e) => Ok((Attempted::failed(e), attempts, 0)),
        }
    }

    /// Everything before the first provider call: the tool, the connection, its credential
    /// (decrypted, refreshed when about to expire) and the rendered request. An error here
    /// fails the call without reaching the provider.
    async fn prepare(&self, claim: &Claim) -> Result<Result<Ready, OutcomeError>, InfraError> {
        let Some(tool) = self.catalog.tool(&claim.tool_name).cloned() else {
            let message = format!("The tool {} is no longer in the catalog.", claim.tool_name);
            return Ok(Err(OutcomeError::new(ErrorCode::ToolUnavailable, message, false, None)));
        };
        let (Some(connection), Some(sealed)) = (claim.connection_id, claim.sealed()) else {
            let message = "The connection for this call was deleted.";
            return Ok(Err(OutcomeError::new(ErrorCode::ConnectionMissing, message, false, None)));
        };
        if claim.connection_status == Some(ConnectionStatus::NeedsReauth) {
            return Ok(Err(needs_reauth(&tool.provider.name, None)));
        }
        // The credential is decrypted only here, only in memory, and zeroed on drop.
        let Some(credential) = self
            .keyring
            .open(RowIdentity::connection(claim.user_id, connection), &sealed)
            .ok()
            .and_then(|plain| CredentialBundle::from_plaintext(plain.expose()).ok())
        else {
            tracing::error!(connection_id = %connection, "credential does not decrypt");
            let message = "The stored credential for this connection cannot be read; reconnect it.";
            return Ok(Err(OutcomeError::new(ErrorCode::CredentialUnreadable, message, false, None)));
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
            Err(RefreshError::NeedsReauth) => return Ok(Err(needs_reauth(&tool.provider.name, None))),
            Err(RefreshError::Db(err)) => return Err(err.into()),
            Err(RefreshError::Redis(err)) => return Err(err.into()),
            Err(err) => {
                let message = format!("The {} token has expired and could not be refreshed: {err}", tool.provider.name);
                return Ok(Err(OutcomeError::new(ErrorCode::ProviderUnavailable, message, true, None)));
            }
        };
        let request = match render_request(&tool, &claim.arguments) {
            Ok(r) => r,
            Err(err) => return Ok(Err(OutcomeError::new(ErrorCode::InvalidArguments, err.to_string(), false, None))),
        };
        Ok(Ok(Ready { tool, connection, fresh, request }))
    }

    /// Paces and calls the provider, then does what [`decide::next_step`] says: finish,
    /// retry here after a short wait, park the call in a delay queue, or — for a write that
    /// may have happened and may not be sent again blindly — verify or fail it as unknown.
    async fn call_provider(
        &self,
        claim: &Claim,
        ready: Ready,
        mut attempts: u32,
    ) -> Result<(Attempted, u32, u64), InfraError> {
        let Ready { tool, connection, fresh, request } = ready;
        let idempotency_key = claim.id.to_string();
        let guarded = tool.retry != RetryClass::Safe;
        let mut provider_ms = 0u64;
        // An earlier delivery sent this write and died before it had an answer: Redis'
        // marker says so, or — when Redis lost its keys meanwhile — the row does. Without
        // the marker a verification read still costs little; a `never` write is failed as
        // unknown only on the marker's word (a delivery killed before it sent is common).
        if guarded && claim.attempts > 1 {
            let reason = match self.results.sent_unanswered(claim.id).await? {
                Some(sent) => Some(format!("attempt {sent} was sent and no answer was recorded")),
                None if claim.unanswered && tool.retry == RetryClass::Verify => {
                    Some("an earlier delivery may have sent it and recorded no answer".to_string())
                }
                None => None,
            };
            if let Some(reason) = reason {
                match self.settle_unknown(claim, &tool, &fresh, attempts - 1, &reason, None, &mut provider_ms).await? {
                    Settled::Done(done) => return Ok((done, attempts - 1, provider_ms)),
                    // Not there: this attempt sends it.
                    Settled::NotDone => {}
                    Settled::Later(step) => return Ok((Self::carry_later(step), attempts - 1, provider_ms)),
                }
            }
        }
        // Held until the call is done (its inline retries included).
        let _slot = match self.bulkhead.enter(&tool.provider.id) {
            Ok(slot) => slot,
            Err(wait) => {
                let reason = format!("{} already holds this worker's share of call slots", tool.provider.name);
                return Ok((Attempted::Defer { wait, reason, unanswered: false }, attempts - 1, provider_ms));
            }
        };
        loop {
            match self.pacer.acquire(&tool.provider, connection, self.max_inline_wait).await {
                Ok(waited) => self.metrics.pacing_wait.observe(waited.as_secs_f64()),
                Err(PaceError::WaitTooLong(wait)) => {
                    // No attempt was made at this number: the next claim takes it.
                    let reason = "rate limit: waiting for a permit".into();
                    return Ok((Attempted::Defer { wait, reason, unanswered: false }, attempts - 1, provider_ms));
                }
                Err(PaceError::Redis(err)) => return Err(err.into()),
            }
            if guarded {
                self.results.mark_sent(claim.id, attempts).await?;
            }
            let answer = self.client.call(&tool.provider, &request, &fresh.bundle, Some(&idempotency_key)).await;
            self.count_answer(&tool, &answer);
            if let Ok(response) = &answer {
                provider_ms += response.elapsed.as_millis() as u64;
            }
            let call = self.call_state(&tool, attempts, fresh.refreshed);
            let decision = decide::next_step(&answer, &call, SystemTime::now());
            if let Some(pause) = decision.pause {
                // Every worker holds off this connection until the provider's time.
                self.pacer.pause(&tool.provider.id, connection, pause).await.map_err(|e| match e {
                    PaceError::Redis(r) => InfraError::Redis(r),
                    PaceError::WaitTooLong(_) => unreachable!("pause does not wait"),
                })?;
            }
            let status = answer.as_ref().ok().map(|r| r.status);
            let step = match decision.step {
                Step::Succeed => {
                    let response = answer.expect("a success has a response");
                    let done = Attempted::Done {
                        status: FinalStatus::Succeeded,
                        data: Some(shape(&tool, response.body)),
                        error: None,
                        provider_status: Some(response.status),
                        request_id: response.request_id,
                    };
                    return Ok((done, attempts, provider_ms));
                }
                Step::Fail { error, keep_body } => {
                    let data = if keep_body { answer.ok().map(|r| r.body).filter(|b| !b.is_null()) } else { None };
                    let done = Attempted::Done {
                        status: FinalStatus::Failed,
                        data,
                        provider_status: error.provider_status,
                        error: Some(error),
                        request_id: None,
                    };
                    return Ok((done, attempts, provider_ms));
                }
                Step::Unknown { reason } => {
                    match self.settle_unknown(claim, &tool, &fresh, attempts, &reason, status, &mut provider_ms).await?
                    {
                        Settled::Done(done) => return Ok((done, attempts, provider_ms)),
                        Settled::NotDone => decide::again(&call, None, reason, status),
                        // Still unknown: check back later, the marker kept.
                        Settled::Later(step) => return Ok((Self::carry_later(step), attempts, provider_ms)),
                    }
                }
                other => other,
            };
            match step {
                Step::Defer { wait, reason } => {
                    if guarded {
                        // The answer said it was not done: a later delivery may send it.
                        self.results.clear_sent(claim.id).await?;
                    }
                    self.count_retry(&tool, attempts + 1, wait, &reason);
                    return Ok((Attempted::Defer { wait, reason, unanswered: false }, attempts, provider_ms));
                }
                Step::Retry { wait, reason } => {
                    if guarded {
                        self.results.clear_sent(claim.id).await?;
                    }
                    attempts += 1;
                    self.count_retry(&tool, attempts, wait, &reason);
                    tokio::time::sleep(wait).await;
                }
                Step::Fail { error, .. } => return Ok((Attempted::failed(error), attempts, provider_ms)),
                Step::Succeed | Step::Unknown { .. } => unreachable!("settled above"),
            }
        }
    }

    /// A verification that must wait for a permit: the call checks back through a delay
    /// queue, still unknown (the marker stays, and the row says so too).
    fn carry_later(step: Step) -> Attempted {
        match step {
            Step::Defer { wait, reason } | Step::Retry { wait, reason } => {
                Attempted::Defer { wait, reason, unanswered: true }
            }
            Step::Fail { error, .. } => Attempted::failed(error),
            Step::Succeed | Step::Unknown { .. } => unreachable!("not a later step"),
        }
    }

    fn call_state<'a>(&'a self, tool: &'a ToolEntry, attempts: u32, refreshed: bool) -> decide::CallState<'a> {
        decide::CallState {
            provider_name: &tool.provider.name,
            attempts,
            refreshed,
            retry: &self.retry,
            max_inline_wait: self.max_inline_wait,
            class: tool.retry,
        }
    }

    fn count_answer(&self, tool: &ToolEntry, answer: &Result<ProviderResponse, CallError>) {
        let status_class = Metrics::status_class(answer.as_ref().ok().map(|r| r.status));
        self.metrics
            .provider_responses
            .get_or_create(&ProviderLabels { integration: tool.provider.id.clone(), status_class })
            .inc();
    }

    /// A write that may have happened: with a verification read, look for its result —
    /// there: done; not there: the caller may send it (again); the read failed: unknown.
    /// Without one (`retry = "never"`): unknown. `attempts` is the attempt whose answer was
    /// lost.
    #[allow(clippy::too_many_arguments)]
    async fn settle_unknown(
        &self,
        claim: &Claim,
        tool: &ToolEntry,
        fresh: &Fresh,
        attempts: u32,
        reason: &str,
        status: Option<u16>,
        provider_ms: &mut u64,
    ) -> Result<Settled, InfraError> {
        let unknown =
            |why: &str| Settled::Done(Attempted::failed(decide::outcome_unknown(&tool.provider.name, why, status)));
        let Some(verify) = tool.tool.verify.as_ref().filter(|_| tool.retry == RetryClass::Verify) else {
            tracing::warn!(%reason, "the outcome of a write that may not be sent again is unknown");
            return Ok(unknown(reason));
        };
        let read = self.catalog.tool(&format!("{}_{}", tool.provider.id, verify.action)).cloned();
        let request = read
            .as_ref()
            .zip(verify.read_arguments(&claim.arguments))
            .and_then(|(read, arguments)| render_request(read, &arguments).ok().map(|request| (read.clone(), request)));
        let Some((read, request)) = request else {
            return Ok(unknown(&format!("{reason}; the verification read could not be built")));
        };
        match self.pacer.acquire(&tool.provider, claim.connection_id.expect("prepared"), self.max_inline_wait).await {
            Ok(waited) => self.metrics.pacing_wait.observe(waited.as_secs_f64()),
            Err(PaceError::WaitTooLong(wait)) => {
                return Ok(Settled::Later(Step::Defer { wait, reason: "rate limit: waiting to verify".into() }));
            }
            Err(PaceError::Redis(err)) => return Err(err.into()),
        }
        let answer = self.client.call(&tool.provider, &request, &fresh.bundle, None).await;
        self.count_answer(tool, &answer);
        let since = claim.started_at.unwrap_or(claim.created_at);
        match answer {
            Ok(response) if (200..300).contains(&response.status) => {
                *provider_ms += response.elapsed.as_millis() as u64;
                let shaped = shape(&read, response.body);
                match verify.find(&claim.arguments, &shaped, since) {
                    Some(found) => {
                        tracing::info!(%reason, "verified: the write happened; its result is the one found");
                        Ok(Settled::Done(Attempted::Done {
                            status: FinalStatus::Succeeded,
                            data: Some(found),
                            error: None,
                            provider_status: status,
                            request_id: response.request_id,
                        }))
                    }
                    None => {
                        tracing::info!(%reason, attempt = attempts, "verified: the write did not happen");
                        Ok(Settled::NotDone)
                    }
                }
            }
            Ok(response) => Ok(unknown(&format!("{reason}; the verification read answered {}", response.status))),
            Err(err) => Ok(unknown(&format!("{reason}; the verification read failed: {err}"))),
        }
    }

    fn count_retry(&self, tool: &ToolEntry, attempt: u32, wait: Duration, reason: &str) {
        self.metrics.retries.get_or_create(&IntegrationLabels { integration: tool.provider.id.clone() }).inc();
        tracing::info!(attempt, wait_ms = wait.as_millis() as u64, %reason, "retrying");
    }
}

/// What a verification found (see [`Executor::settle_unknown`]).
enum Settled {
    /// Finished: succeeded with the result found, or failed as unknown.
    Done(Attempted),
    /// The write did not happen: it may be sent.
    NotDone,
    /// Decide later (no permit to verify yet).
    Later(Step),
}

/// A call ready for the provider (see [`Executor::prepare`]).
struct Ready {
    tool: Arc<ToolEntry>,
    connection: ConnectionId,
    fresh: Fresh,
    request: RenderedRequest,
}

/// The part of a response worth returning, as the tool declares.
fn shape(tool: &ToolEntry, body: Value) -> Value {
    match &tool.tool.result {
        Some(pointer) => body.pointer(pointer).cloned().unwrap_or(body),
        None => body,
    }
}
