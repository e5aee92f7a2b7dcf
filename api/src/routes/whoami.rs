//! `GET /api/agent/whoami`: who the credential belongs to.

use crate::auth::AuthenticatedDevice;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use clawlink_common::db::users;
use serde_json::{Value, json};

pub async fn whoami(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
) -> Result<Json<Value>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let user = users::get(&mut conn, device.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid_credential", "This credential's account no longer exists."))?;
    Ok(Json(json!({
        "ok": true,
        "user": {"id": user.id, "email": user.email, "displayName": user.display_name},
        "device": {"id": device.device_id, "label": device.label},
        // Plans arrive with billing; a self-hosted deployment has no limits until then.
        "plan": {"id": "self_hosted", "name": "Self-hosted", "limits": null},
    })))
}
