//! `users`: accounts.

use crate::ids::UserId;
use sqlx::PgConnection;

pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub is_admin: bool,
}

/// Creates the account, or updates its password when the email already exists (used by
/// the demo seed; sign-up checks for an existing account first).
pub async fn upsert(
    conn: &mut PgConnection,
    email: &str,
    password_hash: &str,
    display_name: &str,
) -> sqlx::Result<UserId> {
    sqlx::query_scalar!(
        r#"INSERT INTO users (email, password_hash, display_name) VALUES ($1, $2, $3)
           ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash
           RETURNING id AS "id: UserId""#,
        email,
        password_hash,
        display_name
    )
    .fetch_one(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: UserId) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"SELECT id AS "id: UserId", email, display_name, is_admin FROM users WHERE id = $1"#,
        id.0
    )
    .fetch_optional(conn)
    .await
}
