//! The device-credential extractor: a handler that takes `AuthenticatedDevice` runs only
//! for a valid, unrevoked credential.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use clawlink_common::codes::ErrorCode;
use clawlink_common::crypto::token_hash;
use clawlink_common::db::devices::{self, DeviceAuth};
use clawlink_common::tokens::is_well_formed_device_credential;

pub struct AuthenticatedDevice(pub DeviceAuth);

/// The credential from `X-ClawLink-API-Key`, else `Authorization: Bearer` (the first wins
/// when both are sent, as the plugin expects).
fn presented_credential(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get("x-clawlink-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

impl FromRequestParts<AppState> for AuthenticatedDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = presented_credential(parts).ok_or_else(|| {
            ApiError::new(ErrorCode::MissingCredential, "Send your device credential in the X-ClawLink-API-Key header.")
                .hint("Pair this agent with ClawLink to get a credential.")
        })?;
        let invalid = || {
            ApiError::new(ErrorCode::InvalidCredential, "This device credential is not valid or has been revoked.")
                .hint("Pair this agent with ClawLink again to get a new credential.")
        };
        if !is_well_formed_device_credential(token) {
            return Err(invalid());
        }
        let hash = token_hash(token);
        let device = match state.devices.get(&hash) {
            Some(cached) => cached,
            None => {
                let mut conn = state.db.acquire().await?;
                let found = devices::find_by_hash(&mut conn, &hash).await?;
                state.devices.put(hash, found.clone());
                found
            }
        };
        let device = match device {
            Some(d) if !d.revoked => d,
            _ => return Err(invalid()),
        };
        // An expired grant reaches nothing: every agent endpoint refuses it alike.
        if device.grant.expired(time::OffsetDateTime::now_utc()) {
            return Err(crate::grants::expired(state));
        }
        if let Err(wait) = state.device_budget.check(&device.device_id) {
            let mut e =
                ApiError::new(ErrorCode::TooManyRequests, "This device is sending requests too fast; slow down.");
            e.retry_after = Some(wait.as_secs().max(1));
            return Err(e);
        }
        state.last_used.lock().expect("last_used lock").insert(device.device_id, time::OffsetDateTime::now_utc());
        Ok(AuthenticatedDevice(device))
    }
}
