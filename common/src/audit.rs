//! The audit trail (`audit_events`): what happened to a person's credentials,
//! connections, devices and approvals, and what operators did, append-only and
//! hash-chained (one chain per account plus the operator chain; see the migration
//! `20261204200000_audit.sql`, whose trigger computes the hashes).
//!
//! This module names the actions, records an event, reads a person's chain and verifies
//! every chain. It never stores a secret: no token, no credential, no argument of a call.
//! Where an event must ride the very statement of its change (the worker's claim, the
//! approval decisions, the expiry sweep), that statement inserts the row itself with the
//! constants below.

use crate::ids::{DeviceId, UserId};
use sqlx::PgConnection;
use std::fmt;
use time::OffsetDateTime;

/// The worker read a connection's sealed credential to make a call (subject the
/// connection; details the execution, tool and attempt).
pub const CREDENTIAL_DECRYPTED: &str = "credential.decrypted";
/// A credential was decrypted to refresh its access token, and the new one sealed.
pub const CREDENTIAL_REFRESHED: &str = "credential.refreshed";
/// `rotate-keys` decrypted a credential and sealed it under the active key.
pub const CREDENTIAL_RESEALED: &str = "credential.resealed";
pub const CONNECTION_CREATED: &str = "connection.created";
pub const CONNECTION_RENAMED: &str = "connection.renamed";
pub const CONNECTION_DEFAULT_SET: &str = "connection.default_set";
pub const CONNECTION_DELETED: &str = "connection.deleted";
/// A connection's credential was replaced by signing in to the app again.
pub const CONNECTION_REAUTHORIZED: &str = "connection.reauthorized";
pub const PAIRING_APPROVED: &str = "pairing.approved";
pub const PAIRING_DENIED: &str = "pairing.denied";
/// The agent exchanged its approved pairing for a device credential.
pub const DEVICE_PAIRED: &str = "device.paired";
pub const DEVICE_REVOKED: &str = "device.revoked";
/// A device's own approval policy was set or cleared.
pub const DEVICE_POLICY_CHANGED: &str = "device.policy_changed";
/// The account's approval policy was set.
pub const ACCOUNT_POLICY_CHANGED: &str = "account.policy_changed";
/// A device's grant (apps, connections, read-only, budget, expiry) was set.
pub const GRANT_CHANGED: &str = "grant.changed";
pub const APPROVAL_APPROVED: &str = "approval.approved";
pub const APPROVAL_DENIED: &str = "approval.denied";
pub const APPROVAL_EXPIRED: &str = "approval.expired";
/// An operator replayed a dead letter (operator chain).
pub const ADMIN_REPLAYED: &str = "admin.replayed";
/// An operator discarded a dead letter (operator chain).
pub const ADMIN_DISCARDED: &str = "admin.discarded";

/// Who did it, as the `actor` column spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in person on the dashboard.
    Person(UserId),
    /// A paired agent, by its device credential.
    Device(DeviceId),
    /// A worker making a call.
    Worker,
    /// ClawLink itself (a scheduled job, e.g. the approval expiry sweep).
    System,
    /// Someone running a command on the deployment.
    Operator,
}

/// The actor text of a scheduled job; also written by SQL that records in-statement.
pub const SYSTEM: &str = "system";
/// The actor text of a worker; also written by SQL that records in-statement.
pub const WORKER: &str = "worker";

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Person(user) => write!(f, "person:{user}"),
            Actor::Device(device) => write!(f, "device:{device}"),
            Actor::Worker => f.write_str(WORKER),
            Actor::System => f.write_str(SYSTEM),
            Actor::Operator => f.write_str("operator"),
        }
    }
}

/// One event to record.
#[derive(Clone, Debug)]
pub struct Event<'a> {
    /// The account whose chain it goes in; `None`: the operator chain.
    pub user: Option<UserId>,
    pub actor: Actor,
    /// One of the constants of this module.
    pub action: &'a str,
    /// What it was done to, `kind:id` (`connection:12`, `device:3`, `execution:<uuid>`).
    pub subject: &'a str,
    /// Non-secret facts that help a person read the event (labels, tool names, ids).
    pub details: serde_json::Value,
}

impl<'a> Event<'a> {
    /// What a signed-in person did to their own account.
    pub fn by_person(user: UserId, action: &'a str, subject: &'a str, details: serde_json::Value) -> Self {
        Event { user: Some(user), actor: Actor::Person(user), action, subject, details }
    }
}

/// Appends the event to its chain. Call it on the transaction of the change it records,
/// so the two commit (or not) together. Holds the chain's lock until that transaction
/// ends: keep the transaction short.
pub async fn record(conn: &mut PgConnection, event: &Event<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO audit_events (user_id, actor, action, subject, details) VALUES ($1, $2, $3, $4, $5)",
        event.user.map(|u| u.0),
        event.actor.to_string(),
        event.action,
        event.subject,
        event.details
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// One recorded event, as the dashboard and the export show it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub id: i64,
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: serde_json::Value,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Vec<u8>,
}

/// Up to `limit` events of the person's chain, newest first, older than `before` when
/// given (the dashboard's pages).
pub async fn newest_first(
    conn: &mut PgConnection,
    user: UserId,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<Recorded>> {
    sqlx::query_as!(
        Recorded,
        "SELECT id, at, actor, action, subject, details, prev_hash, hash FROM audit_events
          WHERE user_id = $1 AND id < coalesce($2::bigint, 9223372036854775807)
          ORDER BY id DESC LIMIT $3",
        user.0,
        before,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Up to `limit` events of the person's chain, oldest first, newer than `after` when
/// given (the export, read page by page).
pub async fn oldest_first(
    conn: &mut PgConnection,
    user: UserId,
    after: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<Recorded>> {
    sqlx::query_as!(
        Recorded,
        "SELECT id, at, actor, action, subject, details, prev_hash, hash FROM audit_events
          WHERE user_id = $1 AND id > coalesce($2::bigint, 0)
          ORDER BY id LIMIT $3",
        user.0,
        after,
        limit
    )
    .fetch_all(conn)
    .await
}

impl Recorded {
    /// The event as one line of the JSONL export (no trailing newline).
    pub fn to_json_line(&self) -> String {
        let at = self.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        serde_json::json!({
            "id": self.id,
            "at": at,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details,
            "prevHash": self.prev_hash.as_deref().map(hex),
            "hash": hex(&self.hash),
        })
        .to_string()
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What the verifier found in one chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// The account; `None`: the operator chain.
    pub chain: Option<UserId>,
    pub rows: i64,
    /// The first row (in id order) whose hash is not what its content and predecessor
    /// give, or whose `prev_hash` is not its predecessor's hash; `None`: intact.
    pub first_broken: Option<BrokenRow>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenRow {
    pub id: i64,
    pub action: String,
}

impl fmt::Display for ChainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.chain {
            Some(user) => write!(f, "chain user:{user}")?,
            None => f.write_str("chain operator")?,
        }
        write!(f, ": {} rows, ", self.rows)?;
        match &self.first_broken {
            None => f.write_str("ok"),
            Some(b) => write!(f, "BROKEN at row {} ({})", b.id, b.action),
        }
    }
}

/// Walks every chain in id order, recomputing each row's hash from its content and its
/// predecessor's hash (the trigger's own formula, `audit_canonical`), and reports each
/// chain with its first broken row. Catches a changed row, a removed or inserted row
/// (the next row's `prev_hash` no longer matches) and reordered rows; the removal of a
/// chain's newest rows leaves no trace in the table itself (compare with an exported
/// head hash for that). The operator chain comes first, then the accounts by id.
pub async fn verify(conn: &mut PgConnection) -> sqlx::Result<Vec<ChainReport>> {
    let rows = sqlx::query!(
        r#"WITH checked AS (
               SELECT id, user_id, action,
                      hash IS DISTINCT FROM sha256(coalesce(prev_hash, ''::bytea)
                                                   || audit_canonical(id, user_id, at, actor, action, subject, details))
                      OR prev_hash IS DISTINCT FROM lag(hash) OVER (PARTITION BY user_id ORDER BY id) AS broken
                 FROM audit_events)
           SELECT user_id, count(*) AS "rows!",
                  min(id) FILTER (WHERE broken) AS first_broken,
                  (array_agg(action ORDER BY id) FILTER (WHERE broken))[1] AS broken_action
             FROM checked
            GROUP BY user_id
            ORDER BY user_id NULLS FIRST"#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ChainReport {
            chain: r.user_id.map(UserId),
            rows: r.rows,
            first_broken: r.first_broken.map(|id| BrokenRow { id, action: r.broken_action.unwrap_or_default() }),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_spelled_as_the_column_says() {
        assert_eq!(Actor::Person(UserId(7)).to_string(), "person:7");
        assert_eq!(Actor::Device(DeviceId(3)).to_string(), "device:3");
        assert_eq!(Actor::Worker.to_string(), "worker");
        assert_eq!(Actor::System.to_string(), "system");
        assert_eq!(Actor::Operator.to_string(), "operator");
    }

    #[test]
    fn hex_is_lower_case_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn a_json_line_names_every_field_and_the_hashes_in_hex() {
        let row = Recorded {
            id: 4,
            at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            actor: "person:1".into(),
            action: CONNECTION_RENAMED.into(),
            subject: "connection:2".into(),
            details: serde_json::json!({"label": "Work"}),
            prev_hash: None,
            hash: vec![1, 2],
        };
        let line = row.to_json_line();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], 4);
        assert_eq!(v["at"], "2027-01-15T08:00:00Z");
        assert_eq!(v["action"], "connection.renamed");
        assert_eq!(v["details"]["label"], "Work");
        assert_eq!(v["prevHash"], serde_json::Value::Null);
        assert_eq!(v["hash"], "0102");
    }

    #[test]
    fn a_report_names_the_chain_and_the_first_broken_row() {
        let ok = ChainReport { chain: None, rows: 3, first_broken: None };
        assert_eq!(ok.to_string(), "chain operator: 3 rows, ok");
        let broken = ChainReport {
            chain: Some(UserId(9)),
            rows: 5,
            first_broken: Some(BrokenRow { id: 41, action: DEVICE_REVOKED.into() }),
        };
        assert_eq!(broken.to_string(), "chain user:9: 5 rows, BROKEN at row 41 (device.revoked)");
    }
}
