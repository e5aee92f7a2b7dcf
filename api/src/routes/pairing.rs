//! Browser-approval pairing (CONTRACT.md "Pairing"; the flow follows the device
//! authorization grant of RFC 8628): the agent starts a session, a signed-in person
//! approves it on the web front, the agent polls, exchanges its verifier for a device
//! credential (repeatably, until it finalizes), then finalizes.

use crate::client_addr::ClientAddr;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use clawlink_common::audit;
use clawlink_common::codes::ErrorCode;
use clawlink_common::crypto::{RowIdentity, token_hash};
use clawlink_common::db::{devices, pairing};
use clawlink_common::tokens;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::Duration;
use time::OffsetDateTime;

pub const SESSION_TTL: Duration = Duration::from_secs(15 * 60);
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Unknown tokens and wrong verifiers one client address may send per window; past it
/// they are answered 429 (a real token, with its verifier, still works: tokens and
/// verifiers are 256-bit, the cap only bounds the work a guesser costs).
const GUESS_LIMIT: i64 = 30;
const GUESS_WINDOW: Duration = Duration::from_secs(600);
/// Pairing starts one client address may make per window (each writes a row).
const START_LIMIT: i64 = 30;
const START_WINDOW: Duration = Duration::from_secs(600);

fn rfc3339(t: Option<OffsetDateTime>) -> Value {
    t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .map(Value::String)
        .unwrap_or(Value::Null)
}

/// `Ab3…@example.com` → `a***@example.com`: enough for the agent to tell whose account
/// approved, not enough to harvest addresses.
fn user_hint(email: Option<&str>) -> Value {
    match email.and_then(|e| e.split_once('@')) {
        Some((local, domain)) => json!(format!("{}***@{domain}", local.chars().next().unwrap_or('*'))),
        None => Value::Null,
    }
}

fn session_view(s: &pairing::PairingSession) -> Value {
    json!({
        "token": s.token,
        "status": s.effective_status(),
        "displayCode": s.display_code,
        "deviceLabel": s.device_label,
        "approvedUserHint": user_hint(s.approved_user_email.as_deref()),
        "expiresAt": rfc3339(Some(s.expires_at)),
        "approvedAt": rfc3339(s.approved_at),
        "pairedAt": rfc3339(s.paired_at),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartBody {
    #[serde(default)]
    pub device_label: Option<String>,
}

/// Characters that change how the text around them is shown without being seen
/// themselves: bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069, the marks U+200E/U+200F and U+061C), and the other invisible format
/// controls of Unicode's `Cf` category (zero-width space, word joiner, BOM, tags…), and
/// the line and paragraph separators. A device label is shown to the person who approves
/// the pairing; with these it could show a name it is not. The zero-width (non-)joiners
/// stay: scripts and emoji sequences need them.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}'
        | '\u{08E2}' | '\u{180E}' | '\u{200B}' | '\u{200E}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

pub async fn start(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<Json<Value>, ApiError> {
    let label = body.device_label.as_deref().map(str::trim).filter(|l| !l.is_empty()).unwrap_or("OpenClaw agent");
    if label.chars().count() > 100 || label.chars().any(|c| c.is_control() || is_invisible_format(c)) {
        return Err(ApiError::new(
            ErrorCode::InvalidDeviceLabel,
            "deviceLabel must be at most 100 printable characters, without control characters or invisible \
             formatting such as bidirectional overrides.",
        ));
    }
    let (starts, left) = count_in_window(&state, "pair-start", &client, START_WINDOW).await?;
    if starts > START_LIMIT {
        let mut e = ApiError::new(
            ErrorCode::TooManyRequests,
            "Too many pairing sessions started from this address; wait and start again.",
        );
        e.retry_after = Some(left);
        return Err(e);
    }
    let token = tokens::random_urlsafe(32);
    let verifier = tokens::random_urlsafe(32);
    let code = tokens::display_code();
    let expires_at = OffsetDateTime::now_utc() + SESSION_TTL;
    let mut conn = state.db.acquire().await?;
    pairing::create(&mut conn, &token, &token_hash(&verifier), &code, label, expires_at).await?;
    Ok(Json(json!({
        "sessionToken": token,
        "verifier": verifier,
        "displayCode": code,
        "deviceLabel": label,
        "status": "awaiting_browser",
        "expiresAt": rfc3339(Some(expires_at)),
        "pollIntervalMs": POLL_INTERVAL.as_millis() as u64,
        "pairUrl": format!("{}/pair/{}", state.config.public_web_url, token),
    })))
}

/// Counts one event of `kind` for `client` in a fixed window that starts at its first
/// event, across every replica (Redis). Returns the count so far and the whole seconds
/// left in the window (at least 1).
async fn count_in_window(
    state: &AppState,
    kind: &str,
    client: &IpAddr,
    window: Duration,
) -> Result<(i64, u64), ApiError> {
    let key = format!("{}:{kind}:{client}", state.results.namespace());
    let mut redis = state.results.connection();
    let (count, left_ms): (i64, i64) = redis::pipe()
        .cmd("SET")
        .arg(&key)
        .arg(0)
        .arg("PX")
        .arg(window.as_millis() as u64)
        .arg("NX")
        .ignore()
        .incr(&key, 1)
        .pttl(&key)
        .query_async(&mut redis)
        .await?;
    let left_ms = if left_ms > 0 { left_ms as u64 } else { window.as_millis() as u64 };
    Ok((count, left_ms.div_ceil(1000).max(1)))
}

/// Counts a failed guess (an unknown token, a wrong verifier) for `client`: past the cap
/// the guess is answered 429, with the time left in the window, instead of `refusal`.
/// Only failed guesses get here, so a real token or verifier is never refused.
async fn refuse_guess(state: &AppState, client: &IpAddr, refusal: ApiError) -> ApiError {
    match count_in_window(state, "pair-guess", client, GUESS_WINDOW).await {
        Ok((count, left)) if count > GUESS_LIMIT => {
            let mut e = ApiError::new(
                ErrorCode::TooManyAttempts,
                "Too many failed pairing attempts from this address; wait and start again.",
            );
            e.retry_after = Some(left);
            e
        }
        Ok(_) => refusal,
        Err(e) => e,
    }
}

async fn load(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    token: &str,
    client: &IpAddr,
) -> Result<pairing::PairingSession, ApiError> {
    match pairing::get(conn, token).await? {
        Some(s) => Ok(s),
        None => {
            let not_found = ApiError::new(ErrorCode::PairingNotFound, "There is no pairing session with this token.");
            Err(refuse_guess(state, client, not_found).await)
        }
    }
}

/// A session's state. The plugin may ask faster than `pollIntervalMs` (a person who says
/// "done" twice): such a poll is answered, from this replica's copy of the last answer
/// when it is younger than `PAIR_STATUS_TTL`, never refused.
pub async fn status(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Some(answer) = state.pair_statuses.get(token.as_str()) {
        return Ok(Json(answer));
    }
    let mut conn = state.db.acquire().await?;
    let session = load(&state, &mut conn, &token, &client).await?;
    let answer = json!({"session": session_view(&session)});
    state.pair_statuses.put(token, answer.clone());
    Ok(Json(answer))
}

/// RFC 8628 §3.5 `slow_down` on the exchange: while the session waits for the person, one
/// exchange per poll interval per session, across every replica. `Retry-After` is the
/// time left until the next one is answered.
async fn pace_pending_exchange(state: &AppState, token: &str) -> Result<(), ApiError> {
    let key = format!("{}:pair-exchange:{}", state.results.namespace(), hex::encode(Sha256::digest(token.as_bytes())));
    let mut redis = state.results.connection();
    let (first, left_ms): (Option<String>, i64) = redis::pipe()
        .cmd("SET")
        .arg(&key)
        .arg(1)
        .arg("PX")
        .arg(POLL_INTERVAL.as_millis() as u64)
        .arg("NX")
        .pttl(&key)
        .query_async(&mut redis)
        .await?;
    if first.is_none() {
        let mut e = ApiError::new(ErrorCode::SlowDown, "Polling too fast; wait pollIntervalMs between exchanges.");
        e.retry_after = Some((left_ms.max(1) as u64).div_ceil(1000));
        return Err(e);
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct VerifierBody {
    #[serde(default)]
    pub verifier: String,
}

/// Checks the verifier and the state the session must be in; the common part of exchange
/// and finalize.
async fn check(
    state: &AppState,
    client: &IpAddr,
    session: &pairing::PairingSession,
    verifier: &str,
) -> Result<(), ApiError> {
    // Compare digests: equal-length values, so the comparison leaks nothing useful.
    let given = token_hash(verifier);
    let matches = given.len() == session.verifier_hash.len()
        && given.iter().zip(&session.verifier_hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !matches {
        let wrong = ApiError::new(ErrorCode::InvalidVerifier, "The verifier does not match this pairing session.");
        return Err(refuse_guess(state, client, wrong).await);
    }
    match session.effective_status() {
        "expired" => {
            Err(ApiError::new(ErrorCode::PairingExpired, "This pairing session has expired; start a new one."))
        }
        "failed" => Err(ApiError::new(ErrorCode::PairingDenied, "The person denied this pairing.")),
        "awaiting_browser" => Err(ApiError::new(ErrorCode::NotApproved, "Not approved yet; keep polling the session.")
            .hint("Ask the person to open pairUrl and approve.")),
        _ => Ok(()),
    }
}

pub async fn exchange(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(token): Path<String>,
    ApiJson(body): ApiJson<VerifierBody>,
) -> Result<Json<Value>, ApiError> {
    let mut tx = state.db.begin().await?;
    let session = load(&state, &mut tx, &token, &client).await?;
    if let Err(refused) = check(&state, &client, &session, &body.verifier).await {
        if refused.code == ErrorCode::NotApproved {
            pace_pending_exchange(&state, &token).await?;
        }
        return Err(refused);
    }
    let user = session.approved_user_id.ok_or_else(|| ApiError::internal("approved session without a user"))?;
    let row = RowIdentity::pairing(user, session.id);
    let (credential, device_id) = match (session.effective_status(), &session.pending, session.device_id) {
        ("ready_for_device", _, _) => {
            let credential = tokens::new_device_credential();
            let device = devices::create(
                &mut tx,
                user,
                &session.device_label,
                &token_hash(credential.expose()),
                &tokens::display_prefix(credential.expose()),
                &session.grant,
            )
            .await?;
            let sealed = state.keyring.seal(row, credential.expose().as_bytes()).map_err(ApiError::internal)?;
            pairing::record_exchange(&mut tx, session.id, device, &sealed).await?;
            let subject = format!("device:{device}");
            let event = audit::Event {
                user: Some(user),
                actor: audit::Actor::Device(device),
                action: audit::DEVICE_PAIRED,
                subject: &subject,
                // The label and the pairing, never the credential (nor its prefix).
                details: json!({"label": session.device_label, "pairing": session.id}),
            };
            audit::record(&mut tx, &event).await?;
            (credential.expose().to_string(), device)
        }
        // A repeated exchange (the plugin crashed before saving): the same credential.
        ("awaiting_local_save", Some(sealed), Some(device)) => {
            let plain = state.keyring.open(row, sealed).map_err(ApiError::internal)?;
            (String::from_utf8(plain.expose().to_vec()).map_err(ApiError::internal)?, device)
        }
        ("paired", _, _) => {
            return Err(ApiError::new(
                ErrorCode::AlreadyPaired,
                "This pairing session is finalized; its credential is no longer available.",
            ));
        }
        _ => return Err(ApiError::internal("pairing session in an unexpected state")),
    };
    tx.commit().await?;
    state.pair_statuses.forget(token.as_str());
    let session = {
        let mut conn = state.db.acquire().await?;
        pairing::get(&mut conn, &token).await?.ok_or_else(|| ApiError::internal("pairing session vanished"))?
    };
    Ok(Json(json!({"session": session_view(&session), "apiKey": credential, "apiKeyId": device_id})))
}

pub async fn finalize(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(token): Path<String>,
    ApiJson(body): ApiJson<VerifierBody>,
) -> Result<Json<Value>, ApiError> {
    let mut tx = state.db.begin().await?;
    let session = load(&state, &mut tx, &token, &client).await?;
    check(&state, &client, &session, &body.verifier).await?;
    match session.effective_status() {
        "awaiting_local_save" => pairing::finalize(&mut tx, session.id).await?,
        "paired" => {}
        _ => {
            return Err(ApiError::new(
                ErrorCode::NotExchanged,
                "Exchange the verifier for the credential before finalizing.",
            ));
        }
    }
    tx.commit().await?;
    state.pair_statuses.forget(token.as_str());
    let mut conn = state.db.acquire().await?;
    let session =
        pairing::get(&mut conn, &token).await?.ok_or_else(|| ApiError::internal("pairing session vanished"))?;
    Ok(Json(json!({"session": session_view(&session)})))
}
