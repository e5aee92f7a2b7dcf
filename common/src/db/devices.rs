//! `devices`: paired agent credentials, stored as SHA-256 hashes.

use crate::approval::ApprovalPolicy;
use crate::ids::{DeviceId, UserId};
use sqlx::PgConnection;

/// What a request authenticated by a device credential may act as.
#[derive(Clone, Debug)]
pub struct DeviceAuth {
    pub device_id: DeviceId,
    pub user_id: UserId,
    pub label: String,
    pub revoked: bool,
    /// Who approves this device's calls that change data: its own policy, else its
    /// account's. Read with the credential (same row, same round trip), so the execute
    /// path pays nothing for it.
    pub approval_policy: ApprovalPolicy,
}

pub async fn create(
    conn: &mut PgConnection,
    user: UserId,
    label: &str,
    token_hash: &[u8],
    token_prefix: &str,
) -> sqlx::Result<DeviceId> {
    sqlx::query_scalar!(
        r#"INSERT INTO devices (user_id, label, token_hash, token_prefix) VALUES ($1, $2, $3, $4)
           RETURNING id AS "id: DeviceId""#,
        user.0,
        label,
        token_hash,
        token_prefix
    )
    .fetch_one(conn)
    .await
}

/// Looks a credential up by its hash, with the approval policy that applies to it. The
/// hash is the index key, so the comparison happens inside Postgres on a digest: timing
/// reveals nothing about the token.
pub async fn find_by_hash(conn: &mut PgConnection, token_hash: &[u8]) -> sqlx::Result<Option<DeviceAuth>> {
    sqlx::query_as!(
        DeviceAuth,
        r#"SELECT d.id AS "device_id: DeviceId", d.user_id AS "user_id: UserId", d.label,
                  (d.revoked_at IS NOT NULL) AS "revoked!",
                  coalesce(d.approval_policy, u.approval_policy) AS "approval_policy!: ApprovalPolicy"
           FROM devices d JOIN users u ON u.id = d.user_id WHERE d.token_hash = $1"#,
        token_hash
    )
    .fetch_optional(conn)
    .await
}

#[derive(Clone, Debug)]
pub struct DeviceRow {
    pub id: DeviceId,
    pub label: String,
    /// The device's own approval policy; `None`: its account's.
    pub approval_policy: Option<ApprovalPolicy>,
    pub token_prefix: String,
    pub created_at: time::OffsetDateTime,
    pub last_used_at: Option<time::OffsetDateTime>,
    pub revoked_at: Option<time::OffsetDateTime>,
}

pub async fn list_for_user(conn: &mut PgConnection, user: UserId) -> sqlx::Result<Vec<DeviceRow>> {
    sqlx::query_as!(
        DeviceRow,
        r#"SELECT id AS "id: DeviceId", label, approval_policy AS "approval_policy: ApprovalPolicy", token_prefix,
                  created_at, last_used_at, revoked_at
             FROM devices WHERE user_id = $1 ORDER BY revoked_at IS NOT NULL, created_at DESC"#,
        user.0
    )
    .fetch_all(conn)
    .await
}

pub async fn get_for_user(conn: &mut PgConnection, user: UserId, id: DeviceId) -> sqlx::Result<Option<DeviceRow>> {
    sqlx::query_as!(
        DeviceRow,
        r#"SELECT id AS "id: DeviceId", label, approval_policy AS "approval_policy: ApprovalPolicy", token_prefix,
                  created_at, last_used_at, revoked_at
             FROM devices WHERE user_id = $1 AND id = $2"#,
        user.0,
        id.0
    )
    .fetch_optional(conn)
    .await
}

/// Revokes the user's device; false when it is not theirs (or already revoked).
pub async fn revoke(conn: &mut PgConnection, user: UserId, id: DeviceId) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE devices SET revoked_at = now() WHERE user_id = $1 AND id = $2 AND revoked_at IS NULL",
        user.0,
        id.0
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets (or, with `None`, clears) the device's own approval policy; false when the device
/// is not the user's.
pub async fn set_approval_policy(
    conn: &mut PgConnection,
    user: UserId,
    id: DeviceId,
    policy: Option<ApprovalPolicy>,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE devices SET approval_policy = $3 WHERE user_id = $1 AND id = $2",
        user.0,
        id.0,
        policy.map(ApprovalPolicy::as_str)
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records last use for many devices in one statement (the api batches these).
pub async fn touch_many(conn: &mut PgConnection, ids: &[i64], at: &[time::OffsetDateTime]) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE devices d SET last_used_at = greatest(coalesce(d.last_used_at, u.at), u.at)
           FROM UNNEST($1::bigint[], $2::timestamptz[]) AS u(id, at) WHERE d.id = u.id",
        ids,
        at
    )
    .execute(conn)
    .await?;
    Ok(())
}
