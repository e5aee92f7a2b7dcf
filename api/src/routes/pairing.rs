//! Browser-approval pairing (CONTRACT.md "Pairing"; the flow follows the device
//! authorization grant of RFC 8628): the agent starts a session, a signed-in person
//! approves it on the web front, the agent polls, exchanges its verifier for a device
//! credential (repeatably, until it finalizes), then finalizes.

use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use clawlink_common::codes::ErrorCode;
use clawlink_common::crypto::{RowIdentity, token_hash};
use clawlink_common::db::{devices, pairing};
use clawlink_common::tokens;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;
use time::OffsetDateTime;

pub const SESSION_TTL: Duration = Duration::from_secs(15 * 60);
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Failed lookups and wrong verifiers one client address may make per window.
const GUESS_LIMIT: i64 = 30;
const GUESS_WINDOW_SECS: u64 = 600;

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

pub async fn start(State(state): State<AppState>, ApiJson(body): ApiJson<StartBody>) -> Result<Json<Value>, ApiError> {
    let label = body.device_label.as_deref().map(str::trim).filter(|l| !l.is_empty()).unwrap_or("OpenClaw agent");
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidDeviceLabel,
            "deviceLabel must be at most 100 printable characters.",
        ));
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

/// Counts a failed guess for `addr`; refuses with 429 once the address is over its cap.
async fn guard_guessing(state: &AppState, addr: &SocketAddr, failed: bool) -> Result<(), ApiError> {
    let key = format!("{}:pair-guess:{}", state.results.namespace(), addr.ip());
    let mut redis = state.results.connection();
    let count: i64 = if failed {
        let (count,): (i64,) =
            redis::pipe().incr(&key, 1).expire(&key, GUESS_WINDOW_SECS as i64).ignore().query_async(&mut redis).await?;
        count
    } else {
        redis::cmd("GET").arg(&key).query_async::<Option<i64>>(&mut redis).await?.unwrap_or(0)
    };
    if count > GUESS_LIMIT {
        let mut e = ApiError::new(
            ErrorCode::TooManyAttempts,
            "Too many failed pairing attempts from this address; wait and start again.",
        );
        e.retry_after = Some(GUESS_WINDOW_SECS);
        return Err(e);
    }
    Ok(())
}

async fn load(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    token: &str,
    addr: &SocketAddr,
) -> Result<pairing::PairingSession, ApiError> {
    guard_guessing(state, addr, false).await?;
    match pairing::get(conn, token).await? {
        Some(s) => Ok(s),
        None => {
            guard_guessing(state, addr, true).await?;
            Err(ApiError::new(ErrorCode::PairingNotFound, "There is no pairing session with this token."))
        }
    }
}

pub async fn status(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let session = load(&state, &mut conn, &token, &addr).await?;
    // RFC 8628 §3.5 slow_down: one poll per interval per session, across every replica.
    let key = format!("{}:pair-poll:{}", state.results.namespace(), hex::encode(Sha256::digest(token.as_bytes())));
    let mut redis = state.results.connection();
    let first: bool = redis::cmd("SET")
        .arg(&key)
        .arg(1)
        .arg("PX")
        .arg(POLL_INTERVAL.as_millis() as u64 - 100)
        .arg("NX")
        .query_async::<Option<String>>(&mut redis)
        .await?
        .is_some();
    if !first {
        let mut e = ApiError::new(ErrorCode::SlowDown, "Polling too fast; wait pollIntervalMs between polls.");
        e.retry_after = Some(POLL_INTERVAL.as_secs());
        return Err(e);
    }
    Ok(Json(json!({"session": session_view(&session)})))
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
    addr: &SocketAddr,
    session: &pairing::PairingSession,
    verifier: &str,
) -> Result<(), ApiError> {
    // Compare digests: equal-length values, so the comparison leaks nothing useful.
    let given = token_hash(verifier);
    let matches = given.len() == session.verifier_hash.len()
        && given.iter().zip(&session.verifier_hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !matches {
        guard_guessing(state, addr, true).await?;
        return Err(ApiError::new(ErrorCode::InvalidVerifier, "The verifier does not match this pairing session."));
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
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    ApiJson(body): ApiJson<VerifierBody>,
) -> Result<Json<Value>, ApiError> {
    let mut tx = state.db.begin().await?;
    let session = load(&state, &mut tx, &token, &addr).await?;
    check(&state, &addr, &session, &body.verifier).await?;
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
            )
            .await?;
            let sealed = state.keyring.seal(row, credential.expose().as_bytes()).map_err(ApiError::internal)?;
            pairing::record_exchange(&mut tx, session.id, device, &sealed).await?;
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
    let session = {
        let mut conn = state.db.acquire().await?;
        pairing::get(&mut conn, &token).await?.ok_or_else(|| ApiError::internal("pairing session vanished"))?
    };
    Ok(Json(json!({"session": session_view(&session), "apiKey": credential, "apiKeyId": device_id})))
}

pub async fn finalize(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    ApiJson(body): ApiJson<VerifierBody>,
) -> Result<Json<Value>, ApiError> {
    let mut tx = state.db.begin().await?;
    let session = load(&state, &mut tx, &token, &addr).await?;
    check(&state, &addr, &session, &body.verifier).await?;
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
    let mut conn = state.db.acquire().await?;
    let session =
        pairing::get(&mut conn, &token).await?.ok_or_else(|| ApiError::internal("pairing session vanished"))?;
    Ok(Json(json!({"session": session_view(&session)})))
}
