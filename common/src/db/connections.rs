//! `user_integrations` (connections) and `credentials` (their sealed secrets).

use crate::crypto::Sealed;
use crate::ids::{ConnectionId, UserId};
use sqlx::PgConnection;

#[derive(Clone, Debug)]
pub struct Connection {
    pub id: ConnectionId,
    pub user_id: UserId,
    pub integration: String,
    pub connection_label: String,
    pub account_label: String,
    pub is_default: bool,
    pub status: String,
    pub token_expires_at: Option<time::OffsetDateTime>,
    pub created_at: time::OffsetDateTime,
}

pub struct NewConnection<'a> {
    pub user: UserId,
    pub integration: &'a str,
    pub connection_label: &'a str,
    pub account_label: &'a str,
    pub external_account_id: Option<&'a str>,
}

/// Inserts a connection; it becomes the default when the user has no default for the
/// integration yet. Call inside a transaction together with `store_credential`.
pub async fn insert(conn: &mut PgConnection, new: &NewConnection<'_>) -> sqlx::Result<ConnectionId> {
    sqlx::query_scalar!(
        r#"INSERT INTO user_integrations
               (user_id, integration, connection_label, account_label, external_account_id, is_default)
           VALUES ($1, $2, $3, $4, $5,
                   NOT EXISTS (SELECT 1 FROM user_integrations
                               WHERE user_id = $1 AND integration = $2 AND is_default))
           RETURNING id AS "id: ConnectionId""#,
        new.user.0,
        new.integration,
        new.connection_label,
        new.account_label,
        new.external_account_id
    )
    .fetch_one(conn)
    .await
}

pub async fn store_credential(
    conn: &mut PgConnection,
    connection: ConnectionId,
    user: UserId,
    sealed: &Sealed,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"INSERT INTO credentials (connection_id, user_id, key_id, nonce, ciphertext)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (connection_id) DO UPDATE
             SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext,
                 version = credentials.version + 1, updated_at = now()"#,
        connection.0,
        user.0,
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The user's connections to `integration` that can be used (not revoked), default first.
pub async fn list_usable(conn: &mut PgConnection, user: UserId, integration: &str) -> sqlx::Result<Vec<Connection>> {
    sqlx::query_as!(
        Connection,
        r#"SELECT id AS "id: ConnectionId", user_id AS "user_id: UserId", integration, connection_label,
                  account_label, is_default, status, token_expires_at, created_at
           FROM user_integrations
           WHERE user_id = $1 AND integration = $2 AND status <> 'revoked'
           ORDER BY is_default DESC, id"#,
        user.0,
        integration
    )
    .fetch_all(conn)
    .await
}

pub async fn list_for_user(conn: &mut PgConnection, user: UserId) -> sqlx::Result<Vec<Connection>> {
    sqlx::query_as!(
        Connection,
        r#"SELECT id AS "id: ConnectionId", user_id AS "user_id: UserId", integration, connection_label,
                  account_label, is_default, status, token_expires_at, created_at
           FROM user_integrations
           WHERE user_id = $1 AND status <> 'revoked'
           ORDER BY integration, id"#,
        user.0
    )
    .fetch_all(conn)
    .await
}
