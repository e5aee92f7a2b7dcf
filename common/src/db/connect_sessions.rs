//! `connect_sessions`: hosted connect flows (OAuth and API key).

use crate::ids::{ConnectionId, UserId};
use sqlx::PgConnection;
use time::OffsetDateTime;

#[derive(Clone, Debug)]
pub struct ConnectSession {
    pub id: i64,
    pub token: String,
    pub user_id: UserId,
    pub integration: String,
    pub connection_id: Option<ConnectionId>,
    pub reconnect: bool,
    pub display_code: String,
    pub status: String,
    pub pkce_verifier: Option<String>,
    pub error_message: Option<String>,
    pub expires_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
}

impl ConnectSession {
    /// The status as shown: an open session past its expiry is `expired`.
    pub fn effective_status(&self) -> &str {
        if self.status == "awaiting_user_action" && self.expires_at <= OffsetDateTime::now_utc() {
            "expired"
        } else {
            &self.status
        }
    }
}

pub struct NewConnectSession<'a> {
    pub token: &'a str,
    pub user: UserId,
    pub integration: &'a str,
    pub reconnect: Option<ConnectionId>,
    pub display_code: &'a str,
    pub expires_at: OffsetDateTime,
}

pub async fn create(conn: &mut PgConnection, new: &NewConnectSession<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "INSERT INTO connect_sessions (token, user_id, integration, connection_id, reconnect, display_code, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        new.token,
        new.user.0,
        new.integration,
        new.reconnect.map(|c| c.0),
        new.reconnect.is_some(),
        new.display_code,
        new.expires_at
    )
    .fetch_one(conn)
    .await
}

/// A session by token, for its owner only (another user's token is not found).
pub async fn get_for_user(conn: &mut PgConnection, user: UserId, token: &str) -> sqlx::Result<Option<ConnectSession>> {
    // Postgres text cannot hold NUL: no session has such a token, and asking would fail.
    if token.contains('\0') {
        return Ok(None);
    }
    sqlx::query_as!(
        ConnectSession,
        r#"SELECT id, token, user_id AS "user_id: UserId", integration,
                  connection_id AS "connection_id: ConnectionId", reconnect, display_code, status,
                  pkce_verifier, error_message, expires_at, completed_at
             FROM connect_sessions WHERE token = $1 AND user_id = $2"#,
        token,
        user.0
    )
    .fetch_optional(conn)
    .await
}

/// Records the OAuth `state` (as a hash) and the PKCE verifier for the redirect.
pub async fn begin_oauth(conn: &mut PgConnection, id: i64, state_hash: &[u8], pkce_verifier: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE connect_sessions SET oauth_state_hash = $2, pkce_verifier = $3
          WHERE id = $1 AND status = 'awaiting_user_action'",
        id,
        state_hash,
        pkce_verifier
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes the session an OAuth callback's `state` belongs to, once: the state and the
/// verifier are cleared in the same statement, so a replayed callback finds nothing.
pub async fn take_by_state(conn: &mut PgConnection, state_hash: &[u8]) -> sqlx::Result<Option<ConnectSession>> {
    sqlx::query_as!(
        ConnectSession,
        r#"UPDATE connect_sessions s SET oauth_state_hash = NULL, pkce_verifier = NULL
             FROM connect_sessions old
            WHERE s.id = old.id AND s.oauth_state_hash = $1
        RETURNING s.id, s.token, s.user_id AS "user_id: UserId", s.integration,
                  s.connection_id AS "connection_id: ConnectionId", s.reconnect, s.display_code, s.status,
                  old.pkce_verifier, s.error_message, s.expires_at, s.completed_at"#,
        state_hash
    )
    .fetch_optional(conn)
    .await
}

pub async fn complete(conn: &mut PgConnection, id: i64, connection: ConnectionId) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE connect_sessions SET status = 'connected', connection_id = $2, completed_at = now(),
                oauth_state_hash = NULL, pkce_verifier = NULL
          WHERE id = $1 AND status = 'awaiting_user_action'",
        id,
        connection.0
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn fail(conn: &mut PgConnection, id: i64, message: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE connect_sessions SET status = 'failed', error_message = $2, completed_at = now(),
                oauth_state_hash = NULL, pkce_verifier = NULL
          WHERE id = $1 AND status = 'awaiting_user_action'",
        id,
        message
    )
    .execute(conn)
    .await?;
    Ok(())
}
