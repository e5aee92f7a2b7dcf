//! `GET /api/agent/whoami`: who the credential belongs to.

use crate::auth::AuthenticatedDevice;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use clawlink_common::codes::ErrorCode;
use clawlink_common::db::users;
use serde_json::{Value, json};

pub async fn whoami(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
) -> Result<Json<Value>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let user = users::get(&mut conn, device.user_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidCredential, "This credential's account no longer exists."))?;
    let standing = clawlink_common::db::billing::standing(&mut conn, device.user_id).await?;
    Ok(Json(json!({
        "ok": true,
        "user": {"id": user.id, "email": user.email, "displayName": user.display_name},
        "device": {"id": device.device_id, "label": device.label, "approvalPolicy": device.approval_policy},
        "plan": {
            "id": standing.plan.id,
            "name": standing.plan.name,
            "limits": {"monthlyCalls": standing.plan.monthly_calls, "connections": standing.plan.max_connections},
            "usage": {"callsThisMonth": standing.calls_this_month, "connections": standing.connections},
        },
    })))
}
