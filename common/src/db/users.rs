//! `users`: accounts.

use crate::approval::ApprovalPolicy;
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
    sqlx::query_as!(User, r#"SELECT id AS "id: UserId", email, display_name, is_admin FROM users WHERE id = $1"#, id.0)
        .fetch_optional(conn)
        .await
}

pub struct Credentials {
    pub id: UserId,
    pub password_hash: String,
}

/// The account and password hash for a sign-in. Emails compare case-insensitively.
pub async fn find_for_sign_in(conn: &mut PgConnection, email: &str) -> sqlx::Result<Option<Credentials>> {
    sqlx::query_as!(
        Credentials,
        r#"SELECT id AS "id: UserId", password_hash FROM users WHERE lower(email) = lower($1)"#,
        email
    )
    .fetch_optional(conn)
    .await
}

/// Creates an account; `None` when the email is taken.
pub async fn create(
    conn: &mut PgConnection,
    email: &str,
    password_hash: &str,
    display_name: &str,
) -> sqlx::Result<Option<UserId>> {
    sqlx::query_scalar!(
        r#"INSERT INTO users (email, password_hash, display_name)
           SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1))
           ON CONFLICT (email) DO NOTHING
           RETURNING id AS "id: UserId""#,
        email,
        password_hash,
        display_name
    )
    .fetch_optional(conn)
    .await
}

/// Grants (or takes back) the admin role; `false` when no account has this email.
pub async fn set_admin(conn: &mut PgConnection, email: &str, is_admin: bool) -> sqlx::Result<bool> {
    let changed = sqlx::query!("UPDATE users SET is_admin = $2 WHERE lower(email) = lower($1)", email, is_admin)
        .execute(conn)
        .await?;
    Ok(changed.rows_affected() > 0)
}

/// The account's approval policy (the default for each of its devices).
pub async fn approval_policy(conn: &mut PgConnection, id: UserId) -> sqlx::Result<Option<ApprovalPolicy>> {
    sqlx::query_scalar!(r#"SELECT approval_policy AS "policy: ApprovalPolicy" FROM users WHERE id = $1"#, id.0)
        .fetch_optional(conn)
        .await
}

pub async fn set_approval_policy(conn: &mut PgConnection, id: UserId, policy: ApprovalPolicy) -> sqlx::Result<()> {
    sqlx::query!("UPDATE users SET approval_policy = $2 WHERE id = $1", id.0, policy.as_str()).execute(conn).await?;
    Ok(())
}
