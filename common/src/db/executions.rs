//! `executions`: the audit trail of tool calls, and the claim a worker makes on one.

use crate::crypto::Sealed;
use crate::ids::{ConnectionId, DeviceId, ExecutionId, UserId};
use crate::queue::Lane;
use crate::results::{FinalStatus, Outcome, OutcomeError, OutcomeMeta};
use sqlx::PgConnection;
use time::OffsetDateTime;

pub struct NewExecution<'a> {
    pub id: ExecutionId,
    pub user: UserId,
    pub device: Option<DeviceId>,
    pub connection: ConnectionId,
    pub integration: &'a str,
    pub tool_name: &'a str,
    pub arguments: &'a serde_json::Value,
    pub lane: Lane,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: Option<&'a [u8]>,
}

/// The row as the api shows it.
#[derive(Clone, Debug)]
pub struct ExecutionRow {
    pub id: ExecutionId,
    pub user_id: UserId,
    pub connection_id: Option<ConnectionId>,
    pub integration: String,
    pub tool_name: String,
    pub lane: String,
    pub status: String,
    pub attempts: i32,
    pub request_hash: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub queue_wait_ms: Option<i32>,
    pub provider_ms: Option<i32>,
    pub provider_status: Option<i32>,
    pub provider_request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub result_excerpt: Option<serde_json::Value>,
}

impl ExecutionRow {
    pub fn is_final(&self) -> bool {
        self.status == "succeeded" || self.status == "failed"
    }

    /// The outcome rebuilt from the row, for when the Redis copy has expired. Data is the
    /// stored (possibly truncated) copy.
    pub fn outcome(&self) -> Option<Outcome> {
        let status = match self.status.as_str() {
            "succeeded" => FinalStatus::Succeeded,
            "failed" => FinalStatus::Failed,
            _ => return None,
        };
        let error = (status == FinalStatus::Failed).then(|| OutcomeError {
            kind: error_kind(self.error_code.as_deref().unwrap_or("internal")).into(),
            code: self.error_code.clone().unwrap_or_else(|| "internal".into()),
            message: self.error_message.clone().unwrap_or_default(),
            retryable: false,
            provider_status: self.provider_status.map(|s| s as u16),
        });
        let duration_ms = match (self.finished_at, Some(self.created_at)) {
            (Some(end), Some(start)) => (end - start).whole_milliseconds().max(0) as u64,
            _ => 0,
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

/// The error type an error code belongs to, for the agent's envelope.
pub fn error_kind(code: &str) -> &'static str {
    match code {
        "provider_error" | "provider_unavailable" => "provider",
        "rate_limited" => "rate_limit",
        "needs_reauth" | "credential_unreadable" => "auth",
        "queue_unavailable" => "unavailable",
        _ => "internal",
    }
}

pub enum Inserted {
    New,
    /// An execution with this idempotency key exists already.
    Existing(ExecutionRow),
}

pub async fn insert(conn: &mut PgConnection, new: &NewExecution<'_>) -> sqlx::Result<Inserted> {
    let inserted = sqlx::query_scalar!(
        r#"INSERT INTO executions
               (id, user_id, device_id, connection_id, integration, tool_name, arguments, lane,
                idempotency_key, request_hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
           RETURNING id"#,
        new.id.0,
        new.user.0,
        new.device.map(|d| d.0),
        new.connection.0,
        new.integration,
        new.tool_name,
        new.arguments,
        new.lane.as_str(),
        new.idempotency_key,
        new.request_hash
    )
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_some() {
        return Ok(Inserted::New);
    }
    let key = new.idempotency_key.expect("only an idempotency key can conflict");
    let existing = sqlx::query_as!(
        ExecutionRow,
        r#"SELECT id AS "id: ExecutionId", user_id AS "user_id: UserId", connection_id AS "connection_id: ConnectionId",
                  integration, tool_name, lane, status, attempts, request_hash, created_at, started_at, finished_at,
                  queue_wait_ms, provider_ms, provider_status, provider_request_id, error_code, error_message,
                  result_excerpt
           FROM executions WHERE user_id = $1 AND idempotency_key = $2"#,
        new.user.0,
        key
    )
    .fetch_one(conn)
    .await?;
    Ok(Inserted::Existing(existing))
}

pub async fn get_for_user(
    conn: &mut PgConnection,
    user: UserId,
    id: ExecutionId,
) -> sqlx::Result<Option<ExecutionRow>> {
    sqlx::query_as!(
        ExecutionRow,
        r#"SELECT id AS "id: ExecutionId", user_id AS "user_id: UserId", connection_id AS "connection_id: ConnectionId",
                  integration, tool_name, lane, status, attempts, request_hash, created_at, started_at, finished_at,
                  queue_wait_ms, provider_ms, provider_status, provider_request_id, error_code, error_message,
                  result_excerpt
           FROM executions WHERE user_id = $1 AND id = $2"#,
        user.0,
        id.0
    )
    .fetch_optional(conn)
    .await
}

/// Everything a worker needs for one attempt, read in the same round trip as the claim.
#[derive(Debug)]
pub struct Claim {
    pub id: ExecutionId,
    pub user_id: UserId,
    pub connection_id: Option<ConnectionId>,
    pub tool_name: String,
    pub arguments: serde_json::Value,
    pub lane: String,
    pub attempts: i32,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub connection_status: Option<String>,
    pub sealed: Option<Sealed>,
}

/// Marks the execution `running` (attempt n+1) and reads what the call needs. `None`
/// when the execution is already final (or unknown): the delivery must not call the
/// provider.
pub async fn claim(conn: &mut PgConnection, id: ExecutionId) -> sqlx::Result<Option<Claim>> {
    let row = sqlx::query!(
        r#"WITH claimed AS (
               UPDATE executions
                  SET status = 'running', attempts = attempts + 1,
                      started_at = coalesce(started_at, now()),
                      queue_wait_ms = coalesce(queue_wait_ms,
                                               (extract(epoch FROM now() - created_at) * 1000)::int)
                WHERE id = $1 AND status IN ('queued', 'running')
            RETURNING id, user_id, connection_id, tool_name, arguments, lane, attempts, created_at, started_at)
           SELECT c.id AS "id!", c.user_id AS "user_id!", c.connection_id, c.tool_name AS "tool_name!",
                  c.arguments AS "arguments!", c.lane AS "lane!", c.attempts AS "attempts!",
                  c.created_at AS "created_at!", c.started_at,
                  ui.status AS "connection_status?", cr.key_id AS "key_id?", cr.nonce AS "nonce?",
                  cr.ciphertext AS "ciphertext?"
             FROM claimed c
             LEFT JOIN user_integrations ui ON ui.id = c.connection_id AND ui.user_id = c.user_id
             LEFT JOIN credentials cr ON cr.connection_id = c.connection_id AND cr.user_id = c.user_id"#,
        id.0
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| Claim {
        id: ExecutionId(r.id),
        user_id: UserId(r.user_id),
        connection_id: r.connection_id.map(ConnectionId),
        tool_name: r.tool_name,
        arguments: r.arguments,
        lane: r.lane,
        attempts: r.attempts,
        created_at: r.created_at,
        started_at: r.started_at,
        connection_status: r.connection_status,
        sealed: match (r.key_id, r.nonce, r.ciphertext) {
            (Some(key_id), Some(nonce), Some(ciphertext)) => Some(Sealed { key_id, nonce, ciphertext }),
            _ => None,
        },
    }))
}

/// Returns a claimed execution to `queued` (its retry waits in a delay queue), recording
/// the attempts made so far and why it waits.
pub async fn requeue(conn: &mut PgConnection, id: ExecutionId, attempts: i32, reason: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE executions SET status = 'queued', attempts = $2, error_message = $3
          WHERE id = $1 AND status = 'running'",
        id.0,
        attempts,
        reason
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Largest result copy kept in Postgres; the full result lives in Redis.
pub const EXCERPT_LIMIT: usize = 16 * 1024;

/// Records the final state. Only a non-final row changes, so a late duplicate cannot
/// overwrite a result. Returns whether the row changed.
pub async fn finish(conn: &mut PgConnection, outcome: &Outcome) -> sqlx::Result<bool> {
    let excerpt = outcome.data.as_ref().map(|d| {
        let text = d.to_string();
        if text.len() <= EXCERPT_LIMIT {
            d.clone()
        } else {
            serde_json::json!({"truncated": true, "bytes": text.len()})
        }
    });
    let (code, message) = match &outcome.error {
        Some(e) => (Some(e.code.as_str()), Some(e.message.as_str())),
        None => (None, None),
    };
    let done = sqlx::query!(
        r#"UPDATE executions
              SET status = $2, finished_at = coalesce($3, now()), provider_ms = $4, provider_status = $5,
                  provider_request_id = $6, error_code = $7, error_message = $8, result_excerpt = $9,
                  attempts = greatest(attempts, $10)
            WHERE id = $1 AND status IN ('queued', 'running')"#,
        outcome.execution_id.0,
        outcome.status.as_str(),
        outcome.meta.ended_at,
        outcome.meta.provider_ms.min(i32::MAX as u64) as i32,
        outcome.meta.provider_status.map(i32::from),
        outcome.meta.provider_request_id,
        code,
        message,
        excerpt,
        outcome.meta.attempts as i32
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Fails an execution that could not be queued (the publish was refused or its confirm
/// was lost), so a late delivery of the message finds it final and does nothing.
pub async fn fail_unqueued(conn: &mut PgConnection, id: ExecutionId, message: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE executions SET status = 'failed', finished_at = now(), error_code = 'queue_unavailable',
                error_message = $2
          WHERE id = $1 AND status = 'queued'",
        id.0,
        message
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The final row of an execution, for a redelivered message that must only re-publish.
pub async fn get_final(conn: &mut PgConnection, id: ExecutionId) -> sqlx::Result<Option<ExecutionRow>> {
    sqlx::query_as!(
        ExecutionRow,
        r#"SELECT id AS "id: ExecutionId", user_id AS "user_id: UserId", connection_id AS "connection_id: ConnectionId",
                  integration, tool_name, lane, status, attempts, request_hash, created_at, started_at, finished_at,
                  queue_wait_ms, provider_ms, provider_status, provider_request_id, error_code, error_message,
                  result_excerpt
           FROM executions WHERE id = $1 AND status IN ('succeeded', 'failed')"#,
        id.0
    )
    .fetch_optional(conn)
    .await
}
