//! `devices`: paired agent credentials, stored as SHA-256 hashes.

use crate::ids::{DeviceId, UserId};
use sqlx::PgConnection;

/// What a request authenticated by a device credential may act as.
#[derive(Clone, Debug)]
pub struct DeviceAuth {
    pub device_id: DeviceId,
    pub user_id: UserId,
    pub label: String,
    pub revoked: bool,
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

/// Looks a credential up by its hash. The hash is the index key, so the comparison
/// happens inside Postgres on a digest: timing reveals nothing about the token.
pub async fn find_by_hash(
    conn: &mut PgConnection,
    token_hash: &[u8],
) -> sqlx::Result<Option<DeviceAuth>> {
    sqlx::query_as!(
        DeviceAuth,
        r#"SELECT id AS "device_id: DeviceId", user_id AS "user_id: UserId", label,
                  (revoked_at IS NOT NULL) AS "revoked!"
           FROM devices WHERE token_hash = $1"#,
        token_hash
    )
    .fetch_optional(conn)
    .await
}
