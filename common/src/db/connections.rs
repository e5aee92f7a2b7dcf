//! `user_integrations` (connections) and `credentials` (their sealed secrets).

use crate::crypto::Sealed;
use crate::ids::{ConnectionId, UserId};
use crate::status::ConnectionStatus;
use sqlx::PgConnection;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Connection {
    pub id: ConnectionId,
    pub user_id: UserId,
    pub integration: String,
    pub connection_label: String,
    pub account_label: String,
    pub is_default: bool,
    pub status: ConnectionStatus,
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
    Ok(list_usable_many(conn, &[(user, integration.to_string())]).await?.pop().unwrap_or_default())
}

/// [`list_usable`] for many (user, integration) pairs in one statement (the api batches
/// the lookups of concurrent calls); one list per pair, in order.
pub async fn list_usable_many(
    conn: &mut PgConnection,
    keys: &[(UserId, String)],
) -> sqlx::Result<Vec<Vec<Connection>>> {
    let users: Vec<i64> = keys.iter().map(|(u, _)| u.0).collect();
    let integrations: Vec<&str> = keys.iter().map(|(_, i)| i.as_str()).collect();
    #[derive(sqlx::FromRow)]
    struct Row {
        n: i64,
        #[sqlx(flatten)]
        connection: Connection,
    }
    let rows: Vec<Row> = sqlx::query_as(
        r#"SELECT k.n, c.id, c.user_id, c.integration, c.connection_label, c.account_label, c.is_default, c.status,
                  c.token_expires_at, c.created_at
             FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS k(user_id, integration, n)
             JOIN user_integrations c
               ON c.user_id = k.user_id AND c.integration = k.integration AND c.status <> 'revoked'
            ORDER BY k.n, c.is_default DESC, c.id"#,
    )
    .bind(users)
    .bind(integrations)
    .fetch_all(conn)
    .await?;
    let mut lists = vec![Vec::new(); keys.len()];
    for r in rows {
        lists[(r.n - 1) as usize].push(r.connection);
    }
    Ok(lists)
}

pub async fn list_for_user(conn: &mut PgConnection, user: UserId) -> sqlx::Result<Vec<Connection>> {
    sqlx::query_as!(
        Connection,
        r#"SELECT id AS "id: ConnectionId", user_id AS "user_id: UserId", integration, connection_label,
                  account_label, is_default, status AS "status: ConnectionStatus", token_expires_at, created_at
           FROM user_integrations
           WHERE user_id = $1 AND status <> 'revoked'
           ORDER BY integration, id"#,
        user.0
    )
    .fetch_all(conn)
    .await
}

pub async fn get_for_user(conn: &mut PgConnection, user: UserId, id: ConnectionId) -> sqlx::Result<Option<Connection>> {
    sqlx::query_as!(
        Connection,
        r#"SELECT id AS "id: ConnectionId", user_id AS "user_id: UserId", integration, connection_label,
                  account_label, is_default, status AS "status: ConnectionStatus", token_expires_at, created_at
           FROM user_integrations WHERE user_id = $1 AND id = $2"#,
        user.0,
        id.0
    )
    .fetch_optional(conn)
    .await
}

/// Where a connect flow's account lands: the reconnected row, else the row of the same
/// external account, else a new row (the default when it is the user's first for the
/// integration). Call in the transaction that stores the credential. Returns the row and
/// whether it is new (`false`: an existing connection got a new credential).
pub async fn upsert_account(
    conn: &mut PgConnection,
    user: UserId,
    integration: &str,
    reconnect: Option<ConnectionId>,
    external_account_id: &str,
    account_label: &str,
    token_expires_at: Option<time::OffsetDateTime>,
) -> sqlx::Result<(ConnectionId, bool)> {
    let existing = match reconnect {
        Some(id) => Some(id),
        None => {
            sqlx::query_scalar!(
                r#"SELECT id AS "id: ConnectionId" FROM user_integrations
                WHERE user_id = $1 AND integration = $2 AND external_account_id = $3"#,
                user.0,
                integration,
                external_account_id
            )
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    if let Some(id) = existing {
        // A reconnect may bring another account than before; the row keeps its id either way.
        let updated = sqlx::query_scalar!(
            r#"UPDATE user_integrations
                  SET account_label = $3, external_account_id = $4, status = 'active', token_expires_at = $5,
                      updated_at = now()
                WHERE id = $1 AND user_id = $2
            RETURNING id AS "id: ConnectionId""#,
            id.0,
            user.0,
            account_label,
            external_account_id,
            token_expires_at
        )
        .fetch_optional(&mut *conn)
        .await;
        match updated {
            Ok(Some(id)) => return Ok((id, false)),
            Ok(None) => {}
            // The reconnect brought an account that another of the user's rows holds.
            Err(e) if super::is_unique_violation(&e, "user_integrations_external_account") => return Err(e),
            Err(e) => return Err(e),
        }
    }
    let label = account_label.to_string();
    let id = insert(
        conn,
        &NewConnection {
            user,
            integration,
            connection_label: &label,
            account_label,
            external_account_id: Some(external_account_id),
        },
    )
    .await?;
    sqlx::query!("UPDATE user_integrations SET token_expires_at = $2 WHERE id = $1", id.0, token_expires_at)
        .execute(conn)
        .await?;
    Ok((id, true))
}

pub async fn rename(conn: &mut PgConnection, user: UserId, id: ConnectionId, label: &str) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE user_integrations SET connection_label = $3, updated_at = now() WHERE user_id = $1 AND id = $2",
        user.0,
        id.0,
        label
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes `id` the default of its integration; the partial unique index guarantees at
/// most one. Call inside a transaction.
pub async fn make_default(conn: &mut PgConnection, user: UserId, id: ConnectionId) -> sqlx::Result<bool> {
    let Some(integration) = sqlx::query_scalar!(
        "SELECT integration FROM user_integrations WHERE user_id = $1 AND id = $2 FOR UPDATE",
        user.0,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(false);
    };
    sqlx::query!(
        "UPDATE user_integrations SET is_default = false WHERE user_id = $1 AND integration = $2 AND is_default",
        user.0,
        integration
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("UPDATE user_integrations SET is_default = true WHERE id = $1", id.0).execute(conn).await?;
    Ok(true)
}

/// Deletes one connection (its credential goes with it, by the foreign key). When it was
/// the default, the most recently used active connection of the integration becomes the
/// default. Call inside a transaction.
pub async fn delete(conn: &mut PgConnection, user: UserId, id: ConnectionId) -> sqlx::Result<bool> {
    let Some(row) = sqlx::query!(
        "DELETE FROM user_integrations WHERE user_id = $1 AND id = $2 RETURNING integration, is_default",
        user.0,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(false);
    };
    if row.is_default {
        sqlx::query!(
            "UPDATE user_integrations SET is_default = true
              WHERE id = (SELECT id FROM user_integrations
                           WHERE user_id = $1 AND integration = $2 AND status = 'active'
                           ORDER BY last_used_at DESC NULLS LAST, created_at DESC LIMIT 1)",
            user.0,
            row.integration
        )
        .execute(conn)
        .await?;
    }
    Ok(true)
}
