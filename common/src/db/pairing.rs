//! `pairing_sessions`: browser-approval pairing of an agent (CONTRACT.md "Pairing").

use crate::crypto::Sealed;
use crate::grant::Grant;
use crate::ids::{DeviceId, UserId};
use sqlx::PgConnection;
use time::OffsetDateTime;

#[derive(Clone, Debug)]
pub struct PairingSession {
    pub id: i64,
    pub token: String,
    pub verifier_hash: Vec<u8>,
    pub display_code: String,
    pub device_label: String,
    pub status: String,
    pub approved_user_id: Option<UserId>,
    pub approved_user_email: Option<String>,
    pub device_id: Option<DeviceId>,
    pub pending: Option<Sealed>,
    pub expires_at: OffsetDateTime,
    pub approved_at: Option<OffsetDateTime>,
    pub paired_at: Option<OffsetDateTime>,
    /// The grant the person chose when approving (the default until then).
    pub grant: Grant,
}

impl PairingSession {
    /// The status as the agent sees it: a live session past its expiry is `expired`.
    pub fn effective_status(&self) -> &str {
        let open = matches!(self.status.as_str(), "awaiting_browser" | "ready_for_device" | "awaiting_local_save");
        if open && self.expires_at <= OffsetDateTime::now_utc() { "expired" } else { &self.status }
    }
}

pub async fn create(
    conn: &mut PgConnection,
    token: &str,
    verifier_hash: &[u8],
    display_code: &str,
    device_label: &str,
    expires_at: OffsetDateTime,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "INSERT INTO pairing_sessions (token, verifier_hash, display_code, device_label, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        token,
        verifier_hash,
        display_code,
        device_label,
        expires_at
    )
    .fetch_one(conn)
    .await
}

/// Reads a session by token; `for_update` locks it for the rest of the transaction.
pub async fn get(conn: &mut PgConnection, token: &str) -> sqlx::Result<Option<PairingSession>> {
    // Postgres text cannot hold NUL: no session has such a token, and asking would fail.
    if token.contains('\0') {
        return Ok(None);
    }
    let row = sqlx::query!(
        r#"SELECT p.id, p.token, p.verifier_hash, p.display_code, p.device_label, p.status,
                  p.approved_user_id, u.email AS "approved_user_email?", p.device_id, p.pending_key_id,
                  p.pending_nonce, p.pending_ciphertext, p.expires_at, p.approved_at, p.paired_at,
                  p.grant_apps, p.grant_read_only, p.grant_call_budget, p.grant_expires_at
             FROM pairing_sessions p LEFT JOIN users u ON u.id = p.approved_user_id
            WHERE p.token = $1
            FOR UPDATE OF p"#,
        token
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| PairingSession {
        id: r.id,
        token: r.token,
        verifier_hash: r.verifier_hash,
        display_code: r.display_code,
        device_label: r.device_label,
        status: r.status,
        approved_user_id: r.approved_user_id.map(UserId),
        approved_user_email: r.approved_user_email,
        device_id: r.device_id.map(DeviceId),
        pending: match (r.pending_key_id, r.pending_nonce, r.pending_ciphertext) {
            (Some(key_id), Some(nonce), Some(ciphertext)) => Some(Sealed { key_id, nonce, ciphertext }),
            _ => None,
        },
        expires_at: r.expires_at,
        approved_at: r.approved_at,
        paired_at: r.paired_at,
        grant: Grant {
            apps: Grant::apps_from_json(r.grant_apps.as_ref()),
            read_only: r.grant_read_only,
            call_budget: r.grant_call_budget,
            calls_used: 0,
            expires_at: r.grant_expires_at,
        },
    }))
}

/// Approves (with the grant the device will have) or, with `None`, denies an
/// `awaiting_browser` session that has not expired. Returns the session's id when it
/// changed (`None`: already decided, expired or unknown).
pub async fn decide(
    conn: &mut PgConnection,
    token: &str,
    user: UserId,
    approve: Option<&Grant>,
) -> sqlx::Result<Option<i64>> {
    if token.contains('\0') {
        return Ok(None);
    }
    let status = if approve.is_some() { "ready_for_device" } else { "failed" };
    let grant = approve.cloned().unwrap_or_default();
    sqlx::query_scalar!(
        "UPDATE pairing_sessions SET status = $3, approved_user_id = $2, approved_at = now(),
                grant_apps = $4, grant_read_only = $5, grant_call_budget = $6, grant_expires_at = $7
          WHERE token = $1 AND status = 'awaiting_browser' AND expires_at > now()
          RETURNING id",
        token,
        user.0,
        status,
        grant.apps_json(),
        grant.read_only,
        grant.call_budget,
        grant.expires_at
    )
    .fetch_optional(conn)
    .await
}

/// Records the device created at the first exchange and its sealed credential.
pub async fn record_exchange(conn: &mut PgConnection, id: i64, device: DeviceId, sealed: &Sealed) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE pairing_sessions SET status = 'awaiting_local_save', device_id = $2,
                pending_key_id = $3, pending_nonce = $4, pending_ciphertext = $5
          WHERE id = $1",
        id,
        device.0,
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the session paired and erases the sealed credential.
pub async fn finalize(conn: &mut PgConnection, id: i64) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE pairing_sessions SET status = 'paired', paired_at = now(),
                pending_key_id = NULL, pending_nonce = NULL, pending_ciphertext = NULL
          WHERE id = $1",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}
