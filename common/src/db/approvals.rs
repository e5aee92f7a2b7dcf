//! Approvals of tool calls: the calls waiting for a person (`executions` rows in
//! `awaiting_approval`), the person's decision, their expiry, and the used nonces of
//! approval tokens (`approval_nonces`). The policy itself lives on `users` and `devices`.

use crate::audit;
use crate::codes::ErrorCode;
use crate::ids::{DeviceId, ExecutionId, UserId};
use sqlx::PgConnection;
use time::OffsetDateTime;

/// Records a token's nonce as used; false when it was used already (a replay). Kept until
/// the token's own expiry, after which the token is refused for that reason anyway.
pub async fn use_nonce(
    conn: &mut PgConnection,
    nonce: &[u8],
    device: DeviceId,
    expires_at: OffsetDateTime,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "INSERT INTO approval_nonces (nonce, device_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT (nonce) DO NOTHING",
        nonce,
        device.0,
        expires_at
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One call waiting for the person, as the approvals inbox shows it.
#[derive(Clone, Debug)]
pub struct AwaitingCall {
    pub id: ExecutionId,
    pub integration: String,
    pub tool_name: String,
    pub arguments: serde_json::Value,
    /// The device that asked; `None` when it was deleted since.
    pub device_label: Option<String>,
    pub connection_label: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// The user's calls still waiting for their approval (not expired), oldest first.
pub async fn list_awaiting(conn: &mut PgConnection, user: UserId, limit: i64) -> sqlx::Result<Vec<AwaitingCall>> {
    sqlx::query_as!(
        AwaitingCall,
        r#"SELECT e.id AS "id: ExecutionId", e.integration, e.tool_name, e.arguments, d.label AS "device_label?",
                  c.connection_label AS "connection_label?", e.created_at, e.approval_expires_at AS "expires_at!"
             FROM executions e
             LEFT JOIN devices d ON d.id = e.device_id AND d.user_id = e.user_id
             LEFT JOIN user_integrations c ON c.id = e.connection_id AND c.user_id = e.user_id
            WHERE e.user_id = $1 AND e.approval_expires_at IS NOT NULL AND e.finished_at IS NULL
              AND e.status = 'awaiting_approval' AND e.approval_expires_at > now()
            ORDER BY e.created_at
            LIMIT $2"#,
        user.0,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Approves a waiting call of the user: it becomes `queued` and its job is due at once in
/// the outbox, so the relay of any api replica publishes it (the same path as a call whose
/// own publish was not confirmed). False when it is not the user's, or no longer waits
/// (decided already, expired).
/// The decision is recorded in the person's audit trail by the same statement.
pub async fn approve(conn: &mut PgConnection, user: UserId, id: ExecutionId) -> sqlx::Result<bool> {
    let approved = sqlx::query_scalar!(
        r#"WITH approved AS (
               UPDATE executions SET status = 'queued', approval_decided_at = now(), error_message = NULL
                WHERE user_id = $1 AND id = $2 AND status = 'awaiting_approval' AND approval_expires_at > now()
            RETURNING id, lane, tool_name),
           outbox AS (
               INSERT INTO execution_outbox (execution_id, lane, due_at) SELECT id, lane, now() FROM approved),
           audited AS (
               INSERT INTO audit_events (user_id, actor, action, subject, details)
               SELECT $1, $3, $4, 'execution:' || id, jsonb_build_object('tool', tool_name) FROM approved)
           SELECT count(*) AS "approved!" FROM approved"#,
        user.0,
        id.0,
        audit::Actor::Person(user).to_string(),
        audit::APPROVAL_APPROVED
    )
    .fetch_one(conn)
    .await?;
    Ok(approved == 1)
}

/// Denies a waiting call of the user: it is final (`failed`, `approval_denied`) and never
/// runs. False when it is not the user's, or no longer waits.
/// The decision is recorded in the person's audit trail by the same statement.
pub async fn deny(conn: &mut PgConnection, user: UserId, id: ExecutionId) -> sqlx::Result<bool> {
    let denied = sqlx::query_scalar!(
        r#"WITH denied AS (
               UPDATE executions
                  SET status = 'failed', finished_at = now(), approval_decided_at = now(), error_code = $3,
                      error_message = 'The person denied this call on the ClawLink dashboard; it was not run.'
                WHERE user_id = $1 AND id = $2 AND status = 'awaiting_approval'
            RETURNING id, tool_name),
           audited AS (
               INSERT INTO audit_events (user_id, actor, action, subject, details)
               SELECT $1, $4, $5, 'execution:' || id, jsonb_build_object('tool', tool_name) FROM denied)
           SELECT count(*) AS "denied!" FROM denied"#,
        user.0,
        id.0,
        ErrorCode::ApprovalDenied.as_str(),
        audit::Actor::Person(user).to_string(),
        audit::APPROVAL_DENIED
    )
    .fetch_one(conn)
    .await?;
    Ok(denied == 1)
}

/// Fails up to `batch` calls whose approval time ran out (`approval_expired`, with the
/// reason), and forgets the nonces of expired tokens. Safe on any number of replicas
/// (SKIP LOCKED). Returns the calls expired, for their waiters to be woken.
pub async fn expire_due(conn: &mut PgConnection, batch: i64) -> sqlx::Result<Vec<ExecutionId>> {
    // Each expiry is recorded in its account's audit trail by the same statement, sorted
    // by account so two sweeps never wait on each other's chain locks.
    let expired = sqlx::query_scalar!(
        r#"WITH expired AS (
               UPDATE executions
                  SET status = 'failed', finished_at = now(), error_code = $2,
                      error_message = 'No one approved this call before its approval time ran out; it was not run.'
                WHERE id IN (SELECT id FROM executions
                              WHERE approval_expires_at <= now() AND finished_at IS NULL
                                AND status = 'awaiting_approval'
                              LIMIT $1 FOR UPDATE SKIP LOCKED)
            RETURNING id, user_id, tool_name),
           audited AS (
               INSERT INTO audit_events (user_id, actor, action, subject, details)
               SELECT user_id, $3, $4, 'execution:' || id, jsonb_build_object('tool', tool_name)
                 FROM expired ORDER BY user_id, id)
           SELECT id AS "id!: ExecutionId" FROM expired"#,
        batch,
        ErrorCode::ApprovalExpired.as_str(),
        audit::SYSTEM,
        audit::APPROVAL_EXPIRED
    )
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query!(
        "DELETE FROM approval_nonces WHERE nonce IN (SELECT nonce FROM approval_nonces WHERE expires_at < now()
                                                      LIMIT $1 FOR UPDATE SKIP LOCKED)",
        batch
    )
    .execute(conn)
    .await?;
    Ok(expired)
}
