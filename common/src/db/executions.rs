//! `executions`: the audit trail of tool calls, and the claim a worker makes on one.

use crate::audit;
use crate::codes::ErrorCode;
use crate::crypto::Sealed;
use crate::ids::{ConnectionId, DeviceId, ExecutionId, UserId};
use crate::queue::Lane;
use crate::results::{FinalStatus, Outcome, OutcomeError, OutcomeMeta};
use crate::status::{ConnectionStatus, ExecutionStatus};
use sqlx::PgConnection;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Clone, Debug)]
pub struct NewExecution {
    pub id: ExecutionId,
    pub user: UserId,
    pub device: Option<DeviceId>,
    /// The connection the caller named; `None`: the user's default for the integration,
    /// else their only one. Resolved in the insert's own statement (see [`Inserted`]).
    pub connection: Option<ConnectionId>,
    pub integration: String,
    pub tool_name: String,
    pub arguments: serde_json::Value,
    pub lane: Lane,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<Vec<u8>>,
    /// `Some(wait)`: the policy asks a person; the execution is recorded
    /// `awaiting_approval`, approvable for `wait`, with no job (and no outbox row) until a
    /// person approves it.
    pub awaiting_approval: Option<Duration>,
}

/// The columns of [`ExecutionRow`], in one place for every query that reads whole rows.
macro_rules! execution_columns {
    () => {
        "id, user_id, connection_id, integration, tool_name, lane, status, attempts, request_hash, created_at,
         started_at, finished_at, queue_wait_ms, provider_ms, provider_status, provider_request_id, error_code,
         error_message, result_excerpt, approval_expires_at"
    };
}

/// The row as the api shows it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ExecutionRow {
    pub id: ExecutionId,
    pub user_id: UserId,
    pub connection_id: Option<ConnectionId>,
    pub integration: String,
    pub tool_name: String,
    pub lane: Lane,
    pub status: ExecutionStatus,
    pub attempts: i32,
    pub request_hash: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub queue_wait_ms: Option<i32>,
    pub provider_ms: Option<i32>,
    pub provider_status: Option<i32>,
    pub provider_request_id: Option<String>,
    pub error_code: Option<ErrorCode>,
    pub error_message: Option<String>,
    pub result_excerpt: Option<serde_json::Value>,
    /// Until when a person may approve it (a call whose policy asks a person).
    pub approval_expires_at: Option<OffsetDateTime>,
}

impl ExecutionRow {
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    /// The outcome rebuilt from the row, for when the Redis copy has expired. Data is the
    /// stored (possibly truncated) copy.
    pub fn outcome(&self) -> Option<Outcome> {
        let status = match self.status {
            ExecutionStatus::Succeeded => FinalStatus::Succeeded,
            ExecutionStatus::Failed => FinalStatus::Failed,
            ExecutionStatus::AwaitingApproval | ExecutionStatus::Queued | ExecutionStatus::Running => return None,
        };
        let error = (status == FinalStatus::Failed).then(|| {
            OutcomeError::new(
                self.error_code.unwrap_or(ErrorCode::Internal),
                self.error_message.clone().unwrap_or_default(),
                false,
                self.provider_status.map(|s| s as u16),
            )
        });
        let duration_ms = match self.finished_at {
            Some(end) => (end - self.created_at).whole_milliseconds().max(0) as u64,
            None => 0,
        };
        Some(Outcome {
            execution_id: self.id,
            status,
            data: if status == FinalStatus::Succeeded { self.result_excerpt.clone() } else { None },
            error,
            meta: OutcomeMeta {
                started_at: self.started_at,
                ended_at: self.finished_at,
                duration_ms,
                queue_wait_ms: self.queue_wait_ms.unwrap_or(0).max(0) as u64,
                provider_ms: self.provider_ms.unwrap_or(0).max(0) as u64,
                attempts: self.attempts.max(0) as u32,
                provider_request_id: self.provider_request_id.clone(),
                provider_status: self.provider_status.map(|s| s as u16),
            },
        })
    }
}

pub enum Inserted {
    /// Recorded, on this connection.
    New(ConnectionId),
    /// An execution with this idempotency key exists already.
    Existing(Box<ExecutionRow>),
    /// The user's plan allows no more calls this month.
    OverQuota { used: i64, allowed: i64 },
    /// The user is gone (deleted a moment ago).
    UnknownUser,
    /// No usable connection answers the call; nothing was recorded.
    Unresolved(Unresolved),
}

/// Why a call's connection could not be chosen, with what the user has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// The user's connections to the integration (not revoked), the default first.
    pub candidates: Vec<ConnectionId>,
    /// The connection that would be used, when its grant is gone (`needs_reauth`).
    pub needs_reauth: Option<ConnectionId>,
}

/// Records a new execution — unless the key replays an earlier one, the month's allowance
/// is used up, or no usable connection answers it. The connection's resolution and the
/// allowance check ride in the same statement as the insert, so they cost no extra round
/// trip: the connection named, else the default, else the only one (none, several without
/// a default, or one whose grant is gone: [`Inserted::Unresolved`]). Calls still in flight are not yet counted:
/// at most the in-flight calls can pass the allowance at its edge.
pub async fn insert(conn: &mut PgConnection, new: NewExecution, relay_after: Duration) -> sqlx::Result<Inserted> {
    Ok(insert_many(conn, vec![new], relay_after).await?.pop().expect("one answer per execution"))
}

/// What the insert statement answers for each execution, in input order.
#[derive(sqlx::FromRow)]
struct InsertRow {
    inserted: bool,
    /// The month's calls and allowance; `None`: the user is gone.
    used: Option<i64>,
    allowed: Option<i64>,
    /// The connection chosen for the call (none fits: `None`).
    connection_id: Option<i64>,
    connection_status: Option<ConnectionStatus>,
    /// The user's connections to the integration, the default first.
    candidates: Option<Vec<i64>>,
}

/// [`insert`] for many executions in one statement and one commit (the api batches the
/// calls that arrive together); one answer per execution, in order. Each new execution's
/// intent to publish is recorded in the same statement (`execution_outbox`, due for the
/// relay after `relay_after`): the row and the promise to queue it are one durable fact.
pub async fn insert_many(
    conn: &mut PgConnection,
    new: Vec<NewExecution>,
    relay_after: Duration,
) -> sqlx::Result<Vec<Inserted>> {
    let n = new.len();
    let mut ids = Vec::with_capacity(n);
    let mut users = Vec::with_capacity(n);
    let mut devices = Vec::with_capacity(n);
    let mut connections = Vec::with_capacity(n);
    let mut integrations = Vec::with_capacity(n);
    let mut tools = Vec::with_capacity(n);
    let mut arguments = Vec::with_capacity(n);
    let mut lanes = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut hashes = Vec::with_capacity(n);
    let mut awaiting = Vec::with_capacity(n);
    for e in new {
        ids.push(e.id.0);
        users.push(e.user.0);
        devices.push(e.device.map(|d| d.0));
        connections.push(e.connection.map(|c| c.0));
        integrations.push(e.integration);
        tools.push(e.tool_name);
        arguments.push(e.arguments);
        lanes.push(e.lane.as_str());
        keys.push(e.idempotency_key);
        hashes.push(e.request_hash);
        awaiting.push(e.awaiting_approval.map(|wait| wait.as_secs_f64()));
    }
    let rows: Vec<InsertRow> = sqlx::query_as(
        r#"WITH input AS (
               SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                                    $7::jsonb[], $8::text[], $9::text[], $10::bytea[], $12::float8[])
                   WITH ORDINALITY AS t(id, user_id, device_id, requested, integration, tool_name, arguments,
                                        lane, idempotency_key, request_hash, awaiting_secs, n)),
           candidates AS (
               SELECT i.n, array_agg(c.id ORDER BY c.is_default DESC, c.id) AS ids, bool_or(c.is_default) AS has_default
                 FROM input i
                 JOIN user_integrations c
                   ON c.user_id = i.user_id AND c.integration = i.integration AND c.status <> 'revoked'
                GROUP BY i.n),
           picked AS (
               SELECT i.*, k.ids,
                      CASE WHEN i.requested IS NOT NULL THEN (CASE WHEN i.requested = ANY (k.ids) THEN i.requested END)
                           WHEN k.has_default OR cardinality(k.ids) = 1 THEN k.ids[1] END AS connection_id
                 FROM input i LEFT JOIN candidates k ON k.n = i.n),
           chosen AS (
               SELECT p.*, c.status AS connection_status
                 FROM picked p LEFT JOIN user_integrations c ON c.id = p.connection_id),
           quota AS (
               SELECT u.id AS user_id, coalesce(m.calls, 0)::bigint AS used, p.monthly_calls::bigint AS allowed
                 FROM users u
                 JOIN plans p ON p.id = u.plan_id
                 LEFT JOIN usage_monthly m
                        ON m.user_id = u.id AND m.month = (date_trunc('month', now() AT TIME ZONE 'UTC'))::date
                WHERE u.id IN (SELECT user_id FROM input)),
           ins AS (
               INSERT INTO executions
                   (id, user_id, device_id, connection_id, integration, tool_name, arguments, lane,
                    idempotency_key, request_hash, status, approval_expires_at)
               SELECT i.id, i.user_id, i.device_id, i.connection_id, i.integration, i.tool_name, i.arguments,
                      i.lane, i.idempotency_key, i.request_hash,
                      CASE WHEN i.awaiting_secs IS NULL THEN 'queued' ELSE 'awaiting_approval' END,
                      now() + make_interval(secs => i.awaiting_secs)
                 FROM chosen i JOIN quota q ON q.user_id = i.user_id
                WHERE q.used < q.allowed AND i.connection_id IS NOT NULL AND i.connection_status <> 'needs_reauth'
                ORDER BY i.n
               ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
               RETURNING id, lane, status),
           -- A call awaiting a person has no job yet: approving it writes its outbox row.
           outbox AS (
               INSERT INTO execution_outbox (execution_id, lane, due_at)
               SELECT id, lane, now() + make_interval(secs => $11::double precision) FROM ins
                WHERE status = 'queued')
           SELECT EXISTS (SELECT 1 FROM ins WHERE ins.id = i.id) AS inserted, q.used, q.allowed,
                  i.connection_id, i.connection_status, i.ids AS candidates
             FROM chosen i LEFT JOIN quota q ON q.user_id = i.user_id
            ORDER BY i.n"#,
    )
    .bind(&ids)
    .bind(&users)
    .bind(&devices)
    .bind(&connections)
    .bind(&integrations)
    .bind(&tools)
    .bind(&arguments)
    .bind(&lanes)
    .bind(&keys)
    .bind(&hashes)
    .bind(relay_after.as_secs_f64())
    .bind(&awaiting)
    .fetch_all(&mut *conn)
    .await?;
    let mut answers = Vec::with_capacity(n);
    for (i, row) in rows.into_iter().enumerate() {
        let InsertRow { inserted, used, allowed, connection_id: connection, connection_status, candidates } = row;
        let answer = match (inserted, used, allowed, connection) {
            (true, _, _, Some(connection)) => Inserted::New(ConnectionId(connection)),
            (_, None, _, _) | (_, _, None, _) => Inserted::UnknownUser,
            // Not inserted: a replay when the key names an execution (whatever the
            // connections are now), else the allowance or the connection stopped it.
            (_, Some(used), Some(allowed), connection) => {
                let replayed = match &keys[i] {
                    Some(key) => existing(conn, UserId(users[i]), key).await?,
                    None => None,
                };
                match (replayed, connection) {
                    (Some(row), _) => Inserted::Existing(Box::new(row)),
                    (None, Some(_)) if connection_status != Some(ConnectionStatus::NeedsReauth) => {
                        Inserted::OverQuota { used, allowed }
                    }
                    (None, chosen) => Inserted::Unresolved(Unresolved {
                        candidates: candidates.unwrap_or_default().into_iter().map(ConnectionId).collect(),
                        needs_reauth: chosen.map(ConnectionId),
                    }),
                }
            }
        };
        answers.push(answer);
    }
    Ok(answers)
}

/// The user's execution recorded with this Idempotency-Key, if any.
pub async fn find_by_key(conn: &mut PgConnection, user: UserId, key: &str) -> sqlx::Result<Option<ExecutionRow>> {
    existing(conn, user, key).await
}

async fn existing(conn: &mut PgConnection, user: UserId, key: &str) -> sqlx::Result<Option<ExecutionRow>> {
    sqlx::query_as(concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE user_id = $1 AND idempotency_key = $2"
    ))
    .bind(user)
    .bind(key)
    .fetch_optional(conn)
    .await
}

pub async fn get_for_user(
    conn: &mut PgConnection,
    user: UserId,
    id: ExecutionId,
) -> sqlx::Result<Option<ExecutionRow>> {
    sqlx::query_as(concat!("SELECT ", execution_columns!(), " FROM executions WHERE user_id = $1 AND id = $2"))
        .bind(user)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Everything a worker needs for one attempt, read in the same round trip as the claim.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Claim {
    pub id: ExecutionId,
    pub user_id: UserId,
    pub connection_id: Option<ConnectionId>,
    pub tool_name: String,
    pub arguments: serde_json::Value,
    pub lane: Lane,
    pub attempts: i32,
    /// When the call was released to run: its creation, or a person's approval.
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    /// An earlier delivery may have sent the provider request without recording its
    /// answer (see the `unanswered` column).
    pub unanswered: bool,
    /// `None`: the connection was deleted.
    pub connection_status: Option<ConnectionStatus>,
    /// `None`: the credential was deleted with its connection.
    #[sqlx(flatten)]
    pub sealed: SealedColumns,
}

/// The credential's three columns, all present or (deleted) all absent.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SealedColumns {
    key_id: Option<String>,
    nonce: Option<Vec<u8>>,
    ciphertext: Option<Vec<u8>>,
}

impl Claim {
    /// The sealed credential, unless it was deleted.
    pub fn sealed(&self) -> Option<Sealed> {
        match &self.sealed {
            SealedColumns { key_id: Some(key_id), nonce: Some(nonce), ciphertext: Some(ciphertext) } => {
                Some(Sealed { key_id: key_id.clone(), nonce: nonce.clone(), ciphertext: ciphertext.clone() })
            }
            _ => None,
        }
    }
}

/// Marks the execution `running` (attempt n+1) and reads what the call needs. `None`
/// when the execution is already final (or unknown): the delivery must not call the
/// provider.
pub async fn claim(conn: &mut PgConnection, id: ExecutionId) -> sqlx::Result<Option<Claim>> {
    Ok(claim_many(conn, &[id]).await?.pop())
}

/// [`claim`] for many executions in one statement (the worker batches concurrent
/// deliveries); returns the claims made, in no particular order. The update is HOT (no
/// indexed column changes) and commits without waiting for the WAL flush: a claim lost in
/// a Postgres crash is harmless, the redelivered message claims again.
///
/// The same statement records the credential decrypt of each claim in the audit trail.
/// It shares the claim's asynchronous commit; the WAL is flushed in order, so once the
/// call's final record (a synchronous commit) is durable its decrypt event is too, and a
/// claim lost in a crash is claimed, and recorded, again by the redelivery.
pub async fn claim_many(conn: &mut PgConnection, ids: &[ExecutionId]) -> sqlx::Result<Vec<Claim>> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    sqlx::query_as(
        r#"WITH claimed AS (
               UPDATE executions
                  SET status = 'running', attempts = attempts + 1,
                      -- Still `running`: the delivery before this one ended mid-call.
                      unanswered = unanswered OR status = 'running',
                      started_at = coalesce(started_at, now()),
                      queue_wait_ms = coalesce(queue_wait_ms,
                                               (extract(epoch FROM now() - coalesce(approval_decided_at, created_at))
                                                * 1000)::int)
                WHERE id = ANY($1) AND status IN ('queued', 'running')
            -- A call a person approved is timed from the approval, not from the request:
            -- the person's time is not queue wait.
            RETURNING id, user_id, connection_id, tool_name, arguments, lane, attempts,
                      coalesce(approval_decided_at, created_at) AS created_at, started_at, unanswered),
           -- A worker has the job: no relay needs to publish it again.
           published AS (DELETE FROM execution_outbox WHERE execution_id IN (SELECT id FROM claimed)),
           -- The audit trail's credential decrypt, in this statement (no extra round trip):
           -- one event per claim the worker will decrypt a credential for (one exists and
           -- the connection's grant is not gone; see worker/src/execute.rs `prepare`).
           -- Sorted by user, so two batches never wait on each other's chain locks.
           decrypted AS (
               INSERT INTO audit_events (user_id, actor, action, subject, details)
               SELECT c.user_id, $2, $3, 'connection:' || c.connection_id,
                      jsonb_build_object('executionId', c.id, 'tool', c.tool_name, 'attempt', c.attempts)
                 FROM claimed c
                 JOIN credentials cr ON cr.connection_id = c.connection_id AND cr.user_id = c.user_id
                 JOIN user_integrations ui ON ui.id = c.connection_id AND ui.user_id = c.user_id
                WHERE ui.status <> 'needs_reauth'
                ORDER BY c.user_id, c.id)
           SELECT c.id, c.user_id, c.connection_id, c.tool_name, c.arguments, c.lane, c.attempts, c.created_at,
                  c.started_at, c.unanswered, ui.status AS connection_status, cr.key_id, cr.nonce, cr.ciphertext
             FROM claimed c
             LEFT JOIN user_integrations ui ON ui.id = c.connection_id AND ui.user_id = c.user_id
             LEFT JOIN credentials cr ON cr.connection_id = c.connection_id AND cr.user_id = c.user_id
            CROSS JOIN LATERAL (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"#,
    )
    .bind(ids)
    .bind(audit::WORKER)
    .bind(audit::CREDENTIAL_DECRYPTED)
    .fetch_all(conn)
    .await
}

/// Returns a claimed execution to `queued` (its retry waits in a delay queue), recording
/// the attempts made so far, why it waits, and whether a request it sent is still
/// `unanswered` (its outcome unknown until a verification read settles it).
pub async fn requeue(
    conn: &mut PgConnection,
    id: ExecutionId,
    attempts: i32,
    reason: &str,
    unanswered: bool,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE executions SET status = 'queued', attempts = $2, error_message = $3, unanswered = $4
          WHERE id = $1 AND status = 'running'",
        id.0,
        attempts,
        reason,
        unanswered
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Largest result copy kept in Postgres; the full result lives in Redis.
pub const EXCERPT_LIMIT: usize = 16 * 1024;

/// Text Postgres can store: a provider's answer may hold NUL, which `text` and `jsonb`
/// refuse (the full answer still reaches the agent through Redis).
fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') { text.replace('\0', "").into() } else { text.into() }
}

/// `value` with NUL removed from every string (keys included).
fn without_nul(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(storable(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(without_nul).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (storable(k).into_owned(), without_nul(v))).collect())
        }
        other => other.clone(),
    }
}

/// Records the final state. Only a non-final row changes, so a late duplicate cannot
/// overwrite a result. Returns whether the row changed.
pub async fn finish(conn: &mut PgConnection, outcome: &Outcome) -> sqlx::Result<bool> {
    Ok(!finish_many(conn, &[outcome]).await?.is_empty())
}

/// [`finish`] for many executions in one statement and one commit (the worker batches the
/// calls that end at about the same time). Returns the executions whose row changed.
pub async fn finish_many(
    conn: &mut PgConnection,
    outcomes: &[&Outcome],
) -> sqlx::Result<std::collections::HashSet<ExecutionId>> {
    let n = outcomes.len();
    let mut ids = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut ended = Vec::with_capacity(n);
    let mut provider_ms = Vec::with_capacity(n);
    let mut provider_status = Vec::with_capacity(n);
    let mut request_ids = Vec::with_capacity(n);
    let mut codes = Vec::with_capacity(n);
    let mut messages: Vec<Option<std::borrow::Cow<'_, str>>> = Vec::with_capacity(n);
    let mut excerpts = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut billable = Vec::with_capacity(n);
    for outcome in outcomes {
        ids.push(outcome.execution_id.0);
        statuses.push(outcome.status.as_str());
        ended.push(outcome.meta.ended_at);
        provider_ms.push(outcome.meta.provider_ms.min(i32::MAX as u64) as i32);
        provider_status.push(outcome.meta.provider_status.map(i32::from));
        request_ids.push(outcome.meta.provider_request_id.as_deref());
        codes.push(outcome.error.as_ref().map(|e| e.code.as_str()));
        messages.push(outcome.error.as_ref().map(|e| storable(&e.message)));
        excerpts.push(outcome.data.as_ref().map(|d| {
            let text = d.to_string();
            if text.len() > EXCERPT_LIMIT {
                serde_json::json!({"truncated": true, "bytes": text.len()})
            } else if text.contains("\\u0000") {
                without_nul(d)
            } else {
                d.clone()
            }
        }));
        attempts.push(outcome.meta.attempts as i32);
        // Billable: the call reached the provider, or failed for good. Retries and replays
        // never count: only the statement that makes the row final counts, once.
        billable.push(outcome.meta.provider_status.is_some() || outcome.error.as_ref().is_some_and(|e| !e.retryable));
    }
    // One usage row per user per batch, locked in user order so two workers' batches
    // cannot deadlock on them.
    let changed: Vec<uuid::Uuid> = sqlx::query_scalar(
        r#"WITH input AS (
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::int[], $5::int[], $6::text[],
                                    $7::text[], $8::text[], $9::jsonb[], $10::int[], $11::bool[])
                   AS t(id, status, ended_at, provider_ms, provider_status, provider_request_id, error_code,
                        error_message, result_excerpt, attempts, billable)),
           done AS (
               UPDATE executions e
                  SET status = i.status, finished_at = coalesce(i.ended_at, now()), provider_ms = i.provider_ms,
                      provider_status = i.provider_status, provider_request_id = i.provider_request_id,
                      error_code = i.error_code, error_message = i.error_message, result_excerpt = i.result_excerpt,
                      attempts = greatest(e.attempts, i.attempts)
                 FROM input i
                WHERE e.id = i.id AND e.status IN ('queued', 'running')
            RETURNING e.id, e.user_id, i.billable),
           counted AS (
               INSERT INTO usage_monthly (user_id, month, calls)
               SELECT user_id, (date_trunc('month', now() AT TIME ZONE 'UTC'))::date, count(*)
                 FROM done WHERE billable GROUP BY user_id ORDER BY user_id
               ON CONFLICT (user_id, month) DO UPDATE SET calls = usage_monthly.calls + excluded.calls
               RETURNING 1)
           SELECT id FROM done"#,
    )
    .bind(ids)
    .bind(statuses)
    .bind(ended)
    .bind(provider_ms)
    .bind(provider_status)
    .bind(request_ids)
    .bind(codes)
    .bind(messages)
    .bind(excerpts)
    .bind(attempts)
    .bind(billable)
    .fetch_all(conn)
    .await?;
    Ok(changed.into_iter().map(ExecutionId).collect())
}

/// Fails an execution whose job the broker may not have taken (the publish was refused or
/// its confirm was lost), unless a worker took it already: then a late delivery of the
/// message finds it final and does nothing. Returns whether the row was failed here —
/// only then may the caller be told the call was not started. Its Idempotency-Key is
/// released: the caller is told to try again, and a retry with the same key is a new call
/// (it would otherwise get this refusal back, for good).
pub async fn fail_unqueued(conn: &mut PgConnection, id: ExecutionId, message: &str) -> sqlx::Result<bool> {
    let failed = sqlx::query_scalar!(
        r#"WITH failed AS (
               UPDATE executions SET status = 'failed', finished_at = now(), error_code = $3, error_message = $2,
                                     idempotency_key = NULL
                WHERE id = $1 AND status = 'queued' AND attempts = 0
            RETURNING id),
           unqueued AS (DELETE FROM execution_outbox WHERE execution_id IN (SELECT id FROM failed))
           SELECT count(*) AS "failed!" FROM failed"#,
        id.0,
        message,
        ErrorCode::QueueUnavailable.as_str()
    )
    .fetch_one(conn)
    .await?;
    Ok(failed == 1)
}

/// Marks jobs as confirmed by the broker: their outbox rows go. The commit does not wait
/// for the WAL flush: a mark lost in a crash only makes the relay publish a copy, which the
/// worker's lease and final-row check make harmless.
pub async fn mark_published(conn: &mut PgConnection, ids: &[ExecutionId]) -> sqlx::Result<()> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    sqlx::query!(
        r#"WITH gone AS (DELETE FROM execution_outbox WHERE execution_id = ANY($1) RETURNING 1)
           SELECT set_config('synchronous_commit', 'off', true) AS "async_commit""#,
        &ids
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// A job the relay publishes again.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Unpublished {
    pub execution_id: ExecutionId,
    pub lane: Lane,
    /// Times a relay published it before this one.
    pub relayed: i32,
}

/// Takes up to `limit` outbox rows past their due time whose execution is still queued,
/// and pushes their due time `again_after` ahead (so a relay that dies mid-way leaves them
/// for the next); outbox rows of executions that are no longer queued are deleted. Safe
/// on any number of replicas (SKIP LOCKED).
pub async fn take_unpublished(
    conn: &mut PgConnection,
    limit: i64,
    again_after: Duration,
) -> sqlx::Result<Vec<Unpublished>> {
    sqlx::query_as(
        r#"WITH due AS (
               SELECT o.execution_id, e.status
                 FROM execution_outbox o JOIN executions e ON e.id = o.execution_id
                WHERE o.due_at <= now()
                ORDER BY o.due_at
                LIMIT $1
                  FOR UPDATE OF o SKIP LOCKED),
           taken AS (
               UPDATE execution_outbox o
                  SET due_at = now() + make_interval(secs => $2::double precision), relayed = o.relayed + 1
                 FROM due
                WHERE o.execution_id = due.execution_id AND due.status = 'queued'
            RETURNING o.execution_id, o.lane, o.relayed - 1 AS relayed),
           settled AS (
               DELETE FROM execution_outbox o USING due
                WHERE o.execution_id = due.execution_id AND due.status <> 'queued')
           SELECT execution_id, lane, relayed FROM taken"#,
    )
    .bind(limit)
    .bind(again_after.as_secs_f64())
    .fetch_all(conn)
    .await
}

/// The final row of an execution, for a redelivered message that must only re-publish.
pub async fn get_final(conn: &mut PgConnection, id: ExecutionId) -> sqlx::Result<Option<ExecutionRow>> {
    sqlx::query_as(concat!(
        "SELECT ",
        execution_columns!(),
        " FROM executions WHERE id = $1 AND status IN ('succeeded', 'failed')"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// One line of the executions page.
#[derive(Clone, Debug)]
pub struct ExecutionSummary {
    pub id: ExecutionId,
    pub integration: String,
    pub tool_name: String,
    pub status: ExecutionStatus,
    pub attempts: i32,
    pub created_at: OffsetDateTime,
    pub duration_ms: Option<i64>,
    pub error_code: Option<ErrorCode>,
}

#[derive(Clone, Debug, Default)]
pub struct ExecutionFilter {
    pub integration: Option<String>,
    pub tool: Option<String>,
    pub status: Option<ExecutionStatus>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Page by creation time: rows created strictly before this.
    pub before: Option<OffsetDateTime>,
}

/// The user's executions, newest first, filtered; one query.
pub async fn list_for_user(
    conn: &mut PgConnection,
    user: UserId,
    f: &ExecutionFilter,
    limit: i64,
) -> sqlx::Result<Vec<ExecutionSummary>> {
    sqlx::query_as!(
        ExecutionSummary,
        r#"SELECT id AS "id: ExecutionId", integration, tool_name, status AS "status: ExecutionStatus", attempts,
                  created_at, (extract(epoch FROM finished_at - created_at) * 1000)::bigint AS duration_ms,
                  error_code AS "error_code: ErrorCode"
             FROM executions
            WHERE user_id = $1
              AND ($2::text IS NULL OR integration = $2)
              AND ($3::text IS NULL OR tool_name = $3)
              AND ($4::text IS NULL OR status = $4)
              AND ($5::timestamptz IS NULL OR created_at >= $5)
              AND ($6::timestamptz IS NULL OR created_at < $6)
              AND ($7::timestamptz IS NULL OR created_at < $7)
            ORDER BY created_at DESC
            LIMIT $8"#,
        user.0,
        f.integration,
        f.tool,
        f.status.map(ExecutionStatus::as_str),
        f.since,
        f.until,
        f.before,
        limit
    )
    .fetch_all(conn)
    .await
}

/// The arguments of one of the user's executions (shown only to their owner).
pub async fn arguments_for_user(
    conn: &mut PgConnection,
    user: UserId,
    id: ExecutionId,
) -> sqlx::Result<Option<serde_json::Value>> {
    sqlx::query_scalar!("SELECT arguments FROM executions WHERE user_id = $1 AND id = $2", user.0, id.0)
        .fetch_optional(conn)
        .await
}
