//! The audit page: the signed-in person's own audit chain (credential decrypts,
//! connection changes, pairings, device and policy changes, approvals), newest first, a
//! page at a time; and `/audit.jsonl`, the whole chain oldest first with its hashes, for
//! keeping or checking elsewhere. Only the person's own chain: every read filters by them.

use crate::AppState;
use crate::error::{WebError, page};
use crate::session::SignedIn;
use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use clawlink_common::audit::{self, Recorded};
use clawlink_common::ids::UserId;
use serde::Deserialize;
use sqlx::PgPool;

/// Events a page shows.
const PAGE: i64 = 50;
/// Events the export reads from the database at a time.
const EXPORT_BATCH: i64 = 500;

pub struct Row {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// The details as `key: value` pairs, for reading at a glance.
    pub details: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    signed_in_as: Option<String>,
    csrf: String,
    rows: Vec<Row>,
    next_page: Option<String>,
    /// Showing an older page (a `before` link was followed).
    older: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    before: String,
}

/// The `before` of a page link: empty for the newest page, else a positive event id.
fn parse_before(text: &str) -> Result<Option<i64>, WebError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<i64>() {
        Ok(id) if id > 0 => Ok(Some(id)),
        _ => Err(WebError::new(
            StatusCode::BAD_REQUEST,
            "Page not found",
            "The link's `before` must be an event number (a positive whole number). Start again from the audit page.",
        )),
    }
}

/// Who did it, as the person reads it: themselves as "You".
fn actor_label(actor: &str, me: UserId) -> String {
    match actor.split_once(':') {
        Some(("person", id)) if id == me.to_string() => "You".into(),
        Some(("person", id)) => format!("Person {id}"),
        Some(("device", id)) => format!("Device {id}"),
        _ => {
            let mut chars = actor.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
        }
    }
}

/// `{"a": 1, "b": "x"}` as `a: 1, b: x`.
fn details_text(details: &serde_json::Value) -> String {
    match details {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn when(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.to_offset(time::UtcOffset::UTC).format(&f).unwrap_or_default()
}

pub async fn list(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Query(q): Query<PageQuery>,
) -> Result<Response, WebError> {
    let before = parse_before(&q.before)?;
    let mut conn = state.db.acquire().await?;
    let found = audit::newest_first(&mut conn, user.user_id, before, PAGE).await?;
    let next_page = match found.last() {
        Some(last) if found.len() as i64 == PAGE => Some(format!("/audit?before={}", last.id)),
        _ => None,
    };
    let rows = found
        .into_iter()
        .map(|e| Row {
            when: when(e.at),
            actor: actor_label(&e.actor, user.user_id),
            details: details_text(&e.details),
            action: e.action,
            subject: e.subject,
        })
        .collect();
    page(&AuditPage { signed_in_as: Some(user.email), csrf: user.csrf_token, rows, next_page, older: before.is_some() })
}

/// `GET /audit.jsonl`: the person's whole chain, oldest first, one JSON object a line
/// (id, at, actor, action, subject, details, prevHash, hash), streamed a batch at a time.
pub async fn export(State(state): State<AppState>, SignedIn(user): SignedIn) -> Result<Response, WebError> {
    // The first batch is read before answering, so a database that is down is an error
    // page rather than an empty download.
    let first = audit::oldest_first(&mut *state.db.acquire().await?, user.user_id, None, EXPORT_BATCH).await?;
    let stream = futures_util::stream::unfold(
        Some(Export { db: state.db.clone(), user: user.user_id, batch: first }),
        |next| async move {
            let mut export = next?;
            if export.batch.is_empty() {
                return None;
            }
            let body = lines(&export.batch);
            let more = export.batch.len() as i64 == EXPORT_BATCH;
            let after = export.batch.last().map(|e| e.id);
            if !more {
                return Some((Ok(body), None));
            }
            export.batch = match read_after(&export.db, export.user, after).await {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(user_id = %export.user, error = %err, "audit export stopped: database error");
                    return Some((Err(std::io::Error::other("the audit export could not be read")), None));
                }
            };
            Some((Ok(body), Some(export)))
        },
    );
    let filename = format!("attachment; filename=\"clawlink-audit-{}.jsonl\"", user.user_id);
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson".to_string()), (header::CONTENT_DISPOSITION, filename)],
        Body::from_stream(stream),
    )
        .into_response())
}

struct Export {
    db: PgPool,
    user: UserId,
    /// The batch to send next.
    batch: Vec<Recorded>,
}

async fn read_after(db: &PgPool, user: UserId, after: Option<i64>) -> sqlx::Result<Vec<Recorded>> {
    audit::oldest_first(&mut *db.acquire().await?, user, after, EXPORT_BATCH).await
}

fn lines(batch: &[Recorded]) -> Bytes {
    let mut out = String::new();
    for event in batch {
        out.push_str(&event.to_json_line());
        out.push('\n');
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_is_empty_or_a_positive_id() {
        assert_eq!(parse_before("").unwrap(), None);
        assert_eq!(parse_before(" 42 ").unwrap(), Some(42));
        for bad in ["0", "-3", "abc", "1.5", "99999999999999999999"] {
            assert_eq!(parse_before(bad).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn the_person_reads_themselves_as_you() {
        let me = UserId(7);
        assert_eq!(actor_label("person:7", me), "You");
        assert_eq!(actor_label("person:70", me), "Person 70");
        assert_eq!(actor_label("device:3", me), "Device 3");
        assert_eq!(actor_label("worker", me), "Worker");
        assert_eq!(actor_label("", me), "");
    }

    #[test]
    fn details_read_as_pairs() {
        let d = serde_json::json!({"tool": "sandbox_list", "attempt": 2});
        assert_eq!(details_text(&d), "attempt: 2, tool: sandbox_list");
        assert_eq!(details_text(&serde_json::json!({})), "");
    }
}
