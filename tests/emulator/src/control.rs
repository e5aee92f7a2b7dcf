//! The control plane under `/_emulator`, unauthenticated: tests and local runs use it
//! to add faults and tokens, read stats and reset, and to steer the OAuth authorization
//! server (`/_emulator/oauth/…`: register clients, deny the next request, choose the next
//! account, set token lifetimes, expire tokens, list issued tokens). It drives the same
//! state as the [`Emulator`](crate::Emulator) handle methods, for callers in another
//! process.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::error_body;
use crate::fault::Fault;
use crate::oauth::{IssuedToken, OauthClient};
use crate::state::{AppState, Stats};

/// Path prefix of the control plane.
pub const CONTROL_PREFIX: &str = "/_emulator";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/faults", post(add_fault))
        .route("/tokens", post(add_token))
        .route("/stats", get(stats))
        .route("/reset", post(reset))
        .route("/oauth/clients", post(oauth_client))
        .route("/oauth/deny-next", post(oauth_deny_next))
        .route("/oauth/next-account", post(oauth_next_account))
        .route("/oauth/expires-in", post(oauth_expires_in))
        .route("/oauth/expire", post(oauth_expire))
        .route("/oauth/tokens", get(oauth_tokens))
        .route("/health", get(health))
}

async fn add_fault(State(state): State<AppState>, body: Bytes) -> Response {
    let fault: Fault = match parse(&body) {
        Ok(fault) => fault,
        Err(message) => return error_body(StatusCode::BAD_REQUEST, &message),
    };
    if let Err(message) = fault.validate() {
        return error_body(StatusCode::BAD_REQUEST, &message);
    }
    state.add_fault(fault);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct NewToken {
    token: String,
}

async fn add_token(State(state): State<AppState>, body: Bytes) -> Response {
    match parse::<NewToken>(&body) {
        Ok(NewToken { token }) => {
            state.add_token(&token);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(message) => error_body(StatusCode::BAD_REQUEST, &message),
    }
}

async fn stats(State(state): State<AppState>) -> Json<Stats> {
    Json(state.stats())
}

async fn reset(State(state): State<AppState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

/// `{"clientId", "clientSecret"?, "redirectUris"?}`.
async fn oauth_client(State(state): State<AppState>, body: Bytes) -> Response {
    match parse::<OauthClient>(&body) {
        Ok(client) if client.client_id.is_empty() => error_body(StatusCode::BAD_REQUEST, "clientId must not be empty"),
        Ok(client) => {
            state.oauth_register_client(client);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(message) => error_body(StatusCode::BAD_REQUEST, &message),
    }
}

async fn oauth_deny_next(State(state): State<AppState>) -> StatusCode {
    state.oauth_deny_next();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct NextAccount {
    login: String,
}

/// `{"login": "ana"}`.
async fn oauth_next_account(State(state): State<AppState>, body: Bytes) -> Response {
    match parse::<NextAccount>(&body) {
        Ok(NextAccount { login }) if login.trim().is_empty() => {
            error_body(StatusCode::BAD_REQUEST, "login must not be empty")
        }
        Ok(NextAccount { login }) => {
            state.oauth_next_account(login.trim());
            StatusCode::NO_CONTENT.into_response()
        }
        Err(message) => error_body(StatusCode::BAD_REQUEST, &message),
    }
}

#[derive(Deserialize)]
struct ExpiresIn {
    seconds: u64,
}

/// `{"seconds": 60}`.
async fn oauth_expires_in(State(state): State<AppState>, body: Bytes) -> Response {
    match parse::<ExpiresIn>(&body) {
        Ok(ExpiresIn { seconds }) => {
            state.oauth_set_expires_in(seconds);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(message) => error_body(StatusCode::BAD_REQUEST, &message),
    }
}

async fn oauth_expire(State(state): State<AppState>) -> StatusCode {
    state.oauth_expire_all();
    StatusCode::NO_CONTENT
}

async fn oauth_tokens(State(state): State<AppState>) -> Json<Vec<IssuedToken>> {
    Json(state.oauth_tokens())
}

async fn health() -> &'static str {
    "ok"
}

/// Parse a JSON body; the error is serde's explanation, sent back as a `400` (axum's own
/// rejection is plain text and hides which field was wrong).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))
}
