//! Credential key rotation: re-sealing every credential under the active key, in
//! batches, while the service keeps serving.
//!
//! Each batch is its own transaction: it locks up to `batch` rows not under the active
//! key (`FOR UPDATE SKIP LOCKED`, so a token refresh being written is skipped now and
//! taken by a later batch), opens each with its old key, seals the same secret under the
//! active key and bumps the row's version, so a refresh that read the row before sees its
//! compare-and-set miss and retries on the new version. Stopping at any moment loses at
//! most the open batch (rolled back); running again continues with what is left.
//!
//! Every process must have the new key loaded before rotation starts (they decrypt
//! whatever key a row names), and the old key may be removed only when this reports
//! nothing left. Knows nothing about where keys come from.

use crate::crypto::{Keyring, RowIdentity};
use crate::db::credentials;
use crate::ids::ConnectionId;
use sqlx::PgPool;
use std::time::Duration;

/// How far a rotation got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Credentials re-sealed by this run.
    pub resealed: u64,
    /// Credentials still under another key (after the last batch).
    pub remaining: i64,
    /// Credentials that no loaded key opens; left as they are, so the old key must stay
    /// until someone looks at them.
    pub unreadable: Vec<ConnectionId>,
}

/// Re-seals every credential not under `keyring`'s active key, `batch` at a time.
/// `on_batch` is called after each committed batch.
pub async fn rotate(
    db: &PgPool,
    keyring: &Keyring,
    batch: i64,
    mut on_batch: impl FnMut(&Progress),
) -> sqlx::Result<Progress> {
    let active = keyring.active_key_id().to_string();
    let mut progress = Progress::default();
    let mut skip: Vec<i64> = Vec::new();
    let mut idle_rounds = 0;
    loop {
        let mut tx = db.begin().await?;
        let rows = credentials::lock_batch_not_under(&mut tx, &active, &skip, batch.max(1)).await?;
        let mut resealed = 0;
        for row in &rows {
            let identity = RowIdentity::connection(row.user_id, row.connection_id);
            let sealed = keyring.open(identity, &row.sealed).and_then(|plain| keyring.seal(identity, plain.expose()));
            match sealed {
                Ok(sealed) => {
                    credentials::reseal(&mut tx, row.connection_id, &sealed).await?;
                    let subject = format!("connection:{}", row.connection_id);
                    let event = crate::audit::Event {
                        user: Some(row.user_id),
                        actor: crate::audit::Actor::Operator,
                        action: crate::audit::CREDENTIAL_RESEALED,
                        subject: &subject,
                        details: serde_json::json!({"fromKey": row.sealed.key_id, "toKey": sealed.key_id}),
                    };
                    crate::audit::record(&mut tx, &event).await?;
                    resealed += 1;
                }
                Err(err) => {
                    tracing::error!(connection_id = %row.connection_id, key_id = %row.sealed.key_id, error = %err, "credential left as it is");
                    progress.unreadable.push(row.connection_id);
                    skip.push(row.connection_id.0);
                }
            }
        }
        tx.commit().await?;
        progress.resealed += resealed;
        let mut conn = db.acquire().await?;
        progress.remaining = credentials::count_not_under(&mut conn, &active, &skip).await?;
        drop(conn);
        if !rows.is_empty() {
            on_batch(&progress);
        }
        if progress.remaining == 0 {
            return Ok(progress);
        }
        if rows.is_empty() {
            // Every row left is locked by a refresh being written; they are held for
            // milliseconds. A row held far longer is an anomaly worth stopping on.
            idle_rounds += 1;
            if idle_rounds > 300 {
                return Ok(progress);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else {
            idle_rounds = 0;
        }
    }
}
