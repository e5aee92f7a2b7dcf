//! The sandbox integration, served at the emulator's root: an echo, a notes resource
//! whose creations are counted as side effects, a messages resource (a provider that has
//! no idempotency keys at all: the catalog marks its tool `retry = "verify"`), and an
//! account identity. Bearer-token auth against the emulator's accepted tokens.
//!
//! Writes are never deduplicated by `Idempotency-Key`: a retried write creates a second
//! note and counts twice, so tests can see exactly what a client replayed.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::error_body;
use crate::gate;
use crate::record::idempotency_key;
use crate::state::AppState;

/// Sandbox data kept in the shared world. A reset replaces it, so ids start again at
/// `note_1`.
#[derive(Debug, Default)]
pub(crate) struct SandboxData {
    notes: Vec<Note>,
    created: u64,
    messages: Vec<Message>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    id: String,
    text: String,
    created_at: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Note {
    id: String,
    text: String,
    created_at: String,
}

/// The sandbox routes, gated by bearer auth. Merged at the root, not nested.
pub(crate) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/echo", get(echo))
        .route("/notes", get(list_notes).post(create_note))
        .route("/notes/{id}", delete(delete_note))
        .route("/messages", get(list_messages).post(post_message))
        .route("/me", get(me))
        .route_layer(from_fn_with_state((state, Arc::new(gate::Gate::bearer())), gate::check))
}

#[derive(Deserialize)]
struct EchoQuery {
    /// A missing message echoes as `""`: the echo exists to exercise the plumbing, not
    /// validation.
    #[serde(default)]
    message: String,
}

async fn echo(Query(query): Query<EchoQuery>) -> Json<serde_json::Value> {
    Json(json!({"message": query.message}))
}

async fn create_note(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    // Parsed by hand so a bad body gets the provider-style error, not axum's rejection.
    let text = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut fields)) => match fields.remove("text") {
            Some(serde_json::Value::String(text)) => text,
            _ => return error_body(StatusCode::BAD_REQUEST, "text is required"),
        },
        _ => return error_body(StatusCode::BAD_REQUEST, "text is required"),
    };
    let created_at = rfc3339(SystemTime::now());
    let note = {
        let mut world = state.world();
        world.perform(idempotency_key(&headers));
        let sandbox = &mut world.sandbox;
        sandbox.created += 1;
        let note = Note { id: format!("note_{}", sandbox.created), text, created_at };
        sandbox.notes.push(note.clone());
        note
    };
    (StatusCode::CREATED, Json(note)).into_response()
}

async fn list_notes(State(state): State<AppState>) -> Json<serde_json::Value> {
    let notes = state.world().sandbox.notes.clone();
    Json(json!({"notes": notes}))
}

/// Deleting is a write too: a performed delete counts under its idempotency key.
async fn delete_note(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut world = state.world();
    let Some(index) = world.sandbox.notes.iter().position(|n| n.id == id) else {
        drop(world);
        return error_body(StatusCode::NOT_FOUND, "note not found");
    };
    world.sandbox.notes.remove(index);
    world.perform(idempotency_key(&headers));
    drop(world);
    StatusCode::NO_CONTENT.into_response()
}

async fn post_message(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let text = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut fields)) => match fields.remove("text") {
            Some(serde_json::Value::String(text)) => text,
            _ => return error_body(StatusCode::BAD_REQUEST, "text is required"),
        },
        _ => return error_body(StatusCode::BAD_REQUEST, "text is required"),
    };
    let mut world = state.world();
    // Counted under the execution id ClawLink sends, which this provider otherwise ignores.
    world.perform(idempotency_key(&headers));
    let n = world.sandbox.messages.len() + 1;
    let message = Message { id: format!("msg_{n}"), text, created_at: rfc3339(SystemTime::now()) };
    world.sandbox.messages.push(message.clone());
    drop(world);
    (StatusCode::CREATED, Json(message)).into_response()
}

#[derive(Deserialize)]
struct MessagesQuery {
    #[serde(default)]
    text: Option<String>,
}

/// Messages, oldest first; `?text=` keeps those with exactly this text.
async fn list_messages(State(state): State<AppState>, Query(query): Query<MessagesQuery>) -> Json<serde_json::Value> {
    let messages: Vec<Message> = state
        .world()
        .sandbox
        .messages
        .iter()
        .filter(|m| query.text.as_ref().is_none_or(|t| *t == m.text))
        .cloned()
        .collect();
    Json(json!({"messages": messages}))
}

async fn me() -> Json<serde_json::Value> {
    Json(json!({
        "id": "sandbox-user-1",
        "name": "Sandbox User",
        "email": "sandbox@example.test",
    }))
}

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2024-05-01T12:00:00.000Z`.
fn rfc3339(at: SystemTime) -> String {
    let since_epoch = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date, after Howard Hinnant's
/// `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(rfc3339(at), "2024-02-29T12:34:56.789Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
