//! `devices`: paired agent credentials, stored as SHA-256 hashes.

use crate::approval::ApprovalPolicy;
use crate::grant::Grant;
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
    /// What the device may reach (`grant.rs`); read with the credential, as the policy is.
    pub grant: Grant,
}

/// A new device with the grant its person chose when approving the pairing.
pub async fn create(
    conn: &mut PgConnection,
    user: UserId,
    label: &str,
    token_hash: &[u8],
    token_prefix: &str,
    grant: &Grant,
) -> sqlx::Result<DeviceId> {
    sqlx::query_scalar!(
        r#"INSERT INTO devices (user_id, label, token_hash, token_prefix, grant_apps, grant_read_only,
                                grant_call_budget, grant_expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           RETURNING id AS "id: DeviceId""#,
        user.0,
        label,
        token_hash,
        token_prefix,
        grant.apps_json(),
        grant.read_only,
        grant.call_budget,
        grant.expires_at
    )
    .fetch_one(conn)
    .await
}

/// The grant columns of one row, as read.
struct GrantColumns {
    apps: Option<serde_json::Value>,
    read_only: bool,
    call_budget: Option<i64>,
    calls_used: i64,
    expires_at: Option<time::OffsetDateTime>,
}

/// The grant of a row that `query!` read with the five `grant_*` columns.
macro_rules! grant_of {
    ($r:expr) => {
        Grant::from(GrantColumns {
            apps: $r.grant_apps,
            read_only: $r.grant_read_only,
            call_budget: $r.grant_call_budget,
            calls_used: $r.grant_calls_used,
            expires_at: $r.grant_expires_at,
        })
    };
}

impl From<GrantColumns> for Grant {
    fn from(c: GrantColumns) -> Grant {
        Grant {
            apps: Grant::apps_from_json(c.apps.as_ref()),
            read_only: c.read_only,
            call_budget: c.call_budget,
            calls_used: c.calls_used,
            expires_at: c.expires_at,
        }
    }
}

/// Looks a credential up by its hash, with the approval policy that applies to it. The
/// hash is the index key, so the comparison happens inside Postgres on a digest: timing
/// reveals nothing about the token.
pub async fn find_by_hash(conn: &mut PgConnection, token_hash: &[u8]) -> sqlx::Result<Option<DeviceAuth>> {
    let row = sqlx::query!(
        r#"SELECT d.id AS "device_id: DeviceId", d.user_id AS "user_id: UserId", d.label,
                  (d.revoked_at IS NOT NULL) AS "revoked!",
                  coalesce(d.approval_policy, u.approval_policy) AS "approval_policy!: ApprovalPolicy",
                  d.grant_apps, d.grant_read_only, d.grant_call_budget, d.grant_calls_used, d.grant_expires_at
           FROM devices d JOIN users u ON u.id = d.user_id WHERE d.token_hash = $1"#,
        token_hash
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| DeviceAuth {
        device_id: r.device_id,
        user_id: r.user_id,
        label: r.label,
        revoked: r.revoked,
        approval_policy: r.approval_policy,
        grant: grant_of!(r),
    }))
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
    pub grant: Grant,
}

/// The user's devices (`only`: just that one), live ones first.
async fn rows_for_user(conn: &mut PgConnection, user: UserId, only: Option<DeviceId>) -> sqlx::Result<Vec<DeviceRow>> {
    let rows = sqlx::query!(
        r#"SELECT id AS "id: DeviceId", label, approval_policy AS "approval_policy: ApprovalPolicy", token_prefix,
                  created_at, last_used_at, revoked_at,
                  grant_apps, grant_read_only, grant_call_budget, grant_calls_used, grant_expires_at
             FROM devices WHERE user_id = $1 AND ($2::bigint IS NULL OR id = $2)
            ORDER BY revoked_at IS NOT NULL, created_at DESC"#,
        user.0,
        only.map(|d| d.0)
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DeviceRow {
            id: r.id,
            label: r.label,
            approval_policy: r.approval_policy,
            token_prefix: r.token_prefix,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
            grant: grant_of!(r),
        })
        .collect())
}

pub async fn list_for_user(conn: &mut PgConnection, user: UserId) -> sqlx::Result<Vec<DeviceRow>> {
    rows_for_user(conn, user, None).await
}

pub async fn get_for_user(conn: &mut PgConnection, user: UserId, id: DeviceId) -> sqlx::Result<Option<DeviceRow>> {
    Ok(rows_for_user(conn, user, Some(id)).await?.pop())
}

/// Replaces the device's grant; false when the device is not the user's. A new budget
/// starts from zero calls used; the same budget keeps its count (editing the apps does
/// not hand out fresh calls).
pub async fn set_grant(conn: &mut PgConnection, user: UserId, id: DeviceId, grant: &Grant) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE devices SET grant_apps = $3, grant_read_only = $4, grant_expires_at = $6,
                grant_calls_used = CASE WHEN grant_call_budget IS NOT DISTINCT FROM $5 THEN grant_calls_used ELSE 0 END,
                grant_call_budget = $5
          WHERE user_id = $1 AND id = $2",
        user.0,
        id.0,
        grant.apps_json(),
        grant.read_only,
        grant.call_budget,
        grant.expires_at
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes one call from the device's budget: false when none is left. Only asked for a
/// device whose grant has a budget, so a device without one pays no statement.
pub async fn spend_call(conn: &mut PgConnection, id: DeviceId) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE devices SET grant_calls_used = grant_calls_used + 1
          WHERE id = $1 AND grant_call_budget IS NOT NULL AND grant_calls_used < grant_call_budget",
        id.0
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives back a call [`spend_call`] took for a call that was then not accepted (refused,
/// or a replay of an earlier one).
pub async fn refund_call(conn: &mut PgConnection, id: DeviceId) -> sqlx::Result<()> {
    sqlx::query!("UPDATE devices SET grant_calls_used = greatest(grant_calls_used - 1, 0) WHERE id = $1", id.0)
        .execute(conn)
        .await?;
    Ok(())
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
