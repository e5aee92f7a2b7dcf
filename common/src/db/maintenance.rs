//! Scheduled upkeep: expiring sessions and deleting old ones, reaping stuck executions,
//! purging old bodies.
//! Every statement works on a bounded batch with `FOR UPDATE SKIP LOCKED`, so any number
//! of api replicas can run the jobs at once without blocking or double work.

use sqlx::PgConnection;

/// Marks open pairing and connect sessions past their expiry as `expired`, and deletes
/// expired browser sessions. Returns how many rows changed.
pub async fn expire_sessions(conn: &mut PgConnection, batch: i64) -> sqlx::Result<u64> {
    let pairing = sqlx::query!(
        "UPDATE pairing_sessions SET status = 'expired', pending_key_id = NULL, pending_nonce = NULL, pending_ciphertext = NULL
          WHERE id IN (SELECT id FROM pairing_sessions
                        WHERE status IN ('awaiting_browser', 'ready_for_device', 'awaiting_local_save') AND expires_at < now()
                        LIMIT $1 FOR UPDATE SKIP LOCKED)",
        batch
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let connect = sqlx::query!(
        "UPDATE connect_sessions SET status = 'expired', oauth_state_hash = NULL, pkce_verifier = NULL
          WHERE id IN (SELECT id FROM connect_sessions WHERE status = 'awaiting_user_action' AND expires_at < now()
                        LIMIT $1 FOR UPDATE SKIP LOCKED)",
        batch
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let web = sqlx::query!(
        "DELETE FROM web_sessions WHERE token_hash IN (SELECT token_hash FROM web_sessions WHERE expires_at < now()
                                                        LIMIT $1 FOR UPDATE SKIP LOCKED)",
        batch
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(pairing + connect + web)
}

/// Deletes pairing and connect sessions that expired more than `retention_secs` ago,
/// whatever became of them: pairing starts need no account, so their rows would otherwise
/// pile up without bound. Until then an agent polling an old session reads `expired`
/// rather than "not found". Returns how many rows went.
pub async fn delete_old_sessions(conn: &mut PgConnection, retention_secs: i64, batch: i64) -> sqlx::Result<u64> {
    let pairing = sqlx::query!(
        "DELETE FROM pairing_sessions
          WHERE id IN (SELECT id FROM pairing_sessions
                        WHERE expires_at < now() - make_interval(secs => $1::bigint::double precision)
                        LIMIT $2 FOR UPDATE SKIP LOCKED)",
        retention_secs,
        batch
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let connect = sqlx::query!(
        "DELETE FROM connect_sessions
          WHERE id IN (SELECT id FROM connect_sessions
                        WHERE expires_at < now() - make_interval(secs => $1::bigint::double precision)
                        LIMIT $2 FOR UPDATE SKIP LOCKED)",
        retention_secs,
        batch
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(pairing + connect)
}

/// Fails executions stuck in `running` for longer than `stuck_secs` — no worker will
/// finish them (its delivery was lost with its process and the broker gave up, or the
/// message was dead-lettered). The reason is recorded for the agent and the dashboard.
pub async fn reap_stuck(conn: &mut PgConnection, stuck_secs: i64, batch: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "UPDATE executions SET status = 'failed', finished_at = now(), error_code = 'stuck',
                error_message = 'No worker finished this call in time; it may or may not have reached the app. Check before retrying.'
          WHERE id IN (SELECT id FROM executions
                        WHERE finished_at IS NULL AND status = 'running' AND started_at < now() - make_interval(secs => $1::bigint::double precision)
                        LIMIT $2 FOR UPDATE SKIP LOCKED)",
        stuck_secs,
        batch
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// Erases the arguments and result copies of executions older than `days`; the rows (the
/// audit trail of who called what, when, with which outcome) stay.
pub async fn purge_bodies(conn: &mut PgConnection, days: i64, batch: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "UPDATE executions SET arguments = '{}'::jsonb, result_excerpt = NULL
          WHERE id IN (SELECT id FROM executions
                        WHERE created_at < now() - make_interval(days => $1::int) AND arguments <> '{}'::jsonb
                        LIMIT $2 FOR UPDATE SKIP LOCKED)",
        days as i32,
        batch
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// Seconds the oldest call of `lane` has waited for its first delivery (queued, never
/// claimed), or 0 when none waits: the age of the oldest message in the lane's work
/// queue, which RabbitMQ does not report. Retries parked in a delay queue were claimed
/// before and do not count. Reads the `executions_unfinished_idx` index from its oldest
/// end, so it stays cheap with a deep backlog.
pub async fn oldest_waiting_secs(conn: &mut PgConnection, lane: crate::queue::Lane) -> sqlx::Result<f64> {
    let age = sqlx::query_scalar!(
        r#"SELECT extract(epoch FROM now() - created_at)::float8 AS "age!" FROM executions
            WHERE status = 'queued' AND started_at IS NULL AND lane = $1
            ORDER BY created_at LIMIT 1"#,
        lane.as_str()
    )
    .fetch_optional(conn)
    .await?;
    Ok(age.unwrap_or(0.0).max(0.0))
}
