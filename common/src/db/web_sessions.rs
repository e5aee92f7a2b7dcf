//! `web_sessions`: signed-in browsers. The cookie's token is stored only as SHA-256.

use crate::ids::UserId;
use sqlx::PgConnection;
use time::OffsetDateTime;

#[derive(Clone)]
pub struct SessionUser {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub is_admin: bool,
    pub csrf_token: String,
}

pub async fn create(
    conn: &mut PgConnection,
    token_hash: &[u8],
    user: UserId,
    csrf_token: &str,
    expires_at: OffsetDateTime,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO web_sessions (token_hash, user_id, csrf_token, expires_at) VALUES ($1, $2, $3, $4)",
        token_hash,
        user.0,
        csrf_token,
        expires_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find(conn: &mut PgConnection, token_hash: &[u8]) -> sqlx::Result<Option<SessionUser>> {
    sqlx::query_as!(
        SessionUser,
        r#"SELECT s.user_id AS "user_id: UserId", u.email, u.display_name, u.is_admin, s.csrf_token
             FROM web_sessions s JOIN users u ON u.id = s.user_id
            WHERE s.token_hash = $1 AND s.expires_at > now()"#,
        token_hash
    )
    .fetch_optional(conn)
    .await
}

pub async fn delete(conn: &mut PgConnection, token_hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM web_sessions WHERE token_hash = $1", token_hash).execute(conn).await?;
    Ok(())
}
