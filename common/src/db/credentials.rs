//! `credentials` as the token refresher and the key rotation see them: the sealed row with
//! its `version` (compare-and-set), the connection's status and token expiry.
//!
//! These queries serve background work that acts on behalf of a connection's owner (a
//! worker's call, the refresh sweep, rotation), so they are keyed by connection; the
//! owner travels with each row and is bound into the ciphertext's associated data.

use crate::crypto::Sealed;
use crate::ids::{ConnectionId, UserId};
use sqlx::PgConnection;
use time::OffsetDateTime;

/// A connection's sealed credential as stored now.
#[derive(Debug)]
pub struct StoredCredential {
    pub connection_id: ConnectionId,
    pub user_id: UserId,
    /// The connection's status: `active`, `needs_reauth` or `revoked`.
    pub status: String,
    pub sealed: Sealed,
    /// Bumped by every write; writers compare-and-set on it.
    pub version: i64,
}

/// Reads the credential of `connection` with its version and the connection's status.
pub async fn get(conn: &mut PgConnection, connection: ConnectionId) -> sqlx::Result<Option<StoredCredential>> {
    let row = sqlx::query!(
        r#"SELECT cr.connection_id, cr.user_id, ui.status, cr.key_id, cr.nonce, cr.ciphertext, cr.version
             FROM credentials cr
             JOIN user_integrations ui ON ui.id = cr.connection_id AND ui.user_id = cr.user_id
            WHERE cr.connection_id = $1"#,
        connection.0
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| StoredCredential {
        connection_id: ConnectionId(r.connection_id),
        user_id: UserId(r.user_id),
        status: r.status,
        sealed: Sealed { key_id: r.key_id, nonce: r.nonce, ciphertext: r.ciphertext },
        version: r.version,
    }))
}

/// Replaces the credential only if it is still at `expected_version`. Returns the new
/// version, or `None` when someone else wrote it first.
pub async fn compare_and_set(
    conn: &mut PgConnection,
    connection: ConnectionId,
    expected_version: i64,
    sealed: &Sealed,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        r#"UPDATE credentials
              SET key_id = $3, nonce = $4, ciphertext = $5, version = version + 1, updated_at = now()
            WHERE connection_id = $1 AND version = $2
        RETURNING version"#,
        connection.0,
        expected_version,
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext
    )
    .fetch_optional(conn)
    .await
}

/// Records when the connection's access token expires (the refresh sweep reads it).
pub async fn set_token_expiry(
    conn: &mut PgConnection,
    connection: ConnectionId,
    expires_at: Option<OffsetDateTime>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE user_integrations SET token_expires_at = $2, updated_at = now() WHERE id = $1",
        connection.0,
        expires_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks an active connection `needs_reauth`, but only while its credential is still at
/// `version`: a reconnect that stored a new credential meanwhile is not undone.
/// Returns whether the connection changed.
pub async fn mark_needs_reauth(conn: &mut PgConnection, connection: ConnectionId, version: i64) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        r#"UPDATE user_integrations ui
              SET status = 'needs_reauth', updated_at = now()
            WHERE ui.id = $1 AND ui.status = 'active'
              AND EXISTS (SELECT 1 FROM credentials cr WHERE cr.connection_id = $1 AND cr.version = $2)"#,
        connection.0,
        version
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An active connection whose token expires soon.
#[derive(Clone, Debug)]
pub struct Expiring {
    pub connection_id: ConnectionId,
    pub user_id: UserId,
    pub integration: String,
}

/// Active connections with a credential whose token expires before `before`, in id
/// order after `after` (a cursor, so a sweep walks every one without starving any).
pub async fn list_expiring(
    conn: &mut PgConnection,
    before: OffsetDateTime,
    after: ConnectionId,
    limit: i64,
) -> sqlx::Result<Vec<Expiring>> {
    sqlx::query_as!(
        Expiring,
        r#"SELECT ui.id AS "connection_id: ConnectionId", ui.user_id AS "user_id: UserId", ui.integration
             FROM user_integrations ui
             JOIN credentials cr ON cr.connection_id = ui.id AND cr.user_id = ui.user_id
            WHERE ui.status = 'active' AND ui.token_expires_at < $1 AND ui.id > $2
            ORDER BY ui.id
            LIMIT $3"#,
        before,
        after.0,
        limit
    )
    .fetch_all(conn)
    .await
}

/// A credential sealed under a key other than the active one, locked for re-sealing.
#[derive(Debug)]
pub struct ToReseal {
    pub connection_id: ConnectionId,
    pub user_id: UserId,
    pub sealed: Sealed,
}

/// Locks up to `limit` credentials not sealed under `active_key` (skipping `exclude` and
/// rows another transaction holds, such as a token refresh being written). Call inside
/// the transaction that re-seals them.
pub async fn lock_batch_not_under(
    conn: &mut PgConnection,
    active_key: &str,
    exclude: &[i64],
    limit: i64,
) -> sqlx::Result<Vec<ToReseal>> {
    let rows = sqlx::query!(
        r#"SELECT connection_id, user_id, key_id, nonce, ciphertext
             FROM credentials
            WHERE key_id <> $1 AND NOT (connection_id = ANY($2))
            ORDER BY connection_id
            LIMIT $3
              FOR UPDATE SKIP LOCKED"#,
        active_key,
        exclude,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ToReseal {
            connection_id: ConnectionId(r.connection_id),
            user_id: UserId(r.user_id),
            sealed: Sealed { key_id: r.key_id, nonce: r.nonce, ciphertext: r.ciphertext },
        })
        .collect())
}

/// Stores a re-sealed credential (same secret, new key) on a row locked by
/// `lock_batch_not_under`. The version moves on, so a concurrent compare-and-set notices.
pub async fn reseal(conn: &mut PgConnection, connection: ConnectionId, sealed: &Sealed) -> sqlx::Result<()> {
    sqlx::query!(
        r#"UPDATE credentials
              SET key_id = $2, nonce = $3, ciphertext = $4, version = version + 1, updated_at = now()
            WHERE connection_id = $1"#,
        connection.0,
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How many credentials are not sealed under `active_key`, leaving out `exclude`.
pub async fn count_not_under(conn: &mut PgConnection, active_key: &str, exclude: &[i64]) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM credentials WHERE key_id <> $1 AND NOT (connection_id = ANY($2))"#,
        active_key,
        exclude
    )
    .fetch_one(conn)
    .await
}
