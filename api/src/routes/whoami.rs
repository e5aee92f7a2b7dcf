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
    // Read afresh: the credential's cached copy may be a second old, and callsLeft counts.
    let grant = clawlink_common::db::devices::get_for_user(&mut conn, device.user_id, device.device_id)
        .await?
        .map_or(device.grant.clone(), |d| d.grant);
    Ok(Json(json!({
        "ok": true,
        "user": {"id": user.id, "email": user.email, "displayName": user.display_name},
        "device": {
            "id": device.device_id,
            "label": device.label,
            "approvalPolicy": device.approval_policy,
            "grant": grant_view(&grant),
        },
        "plan": {
            "id": standing.plan.id,
            "name": standing.plan.name,
            "limits": {"monthlyCalls": standing.plan.monthly_calls, "connections": standing.plan.max_connections},
            "usage": {"callsThisMonth": standing.calls_this_month, "connections": standing.connections},
        },
    })))
}

/// What the device's grant reaches, as the agent reads it (`null` apps: every app).
fn grant_view(grant: &clawlink_common::grant::Grant) -> Value {
    use clawlink_common::grant::Connections;
    let apps = grant.apps.as_ref().map(|apps| {
        apps.iter()
            .map(|(app, c)| match c {
                Connections::All => json!({"integration": app, "connectionIds": Value::Null}),
                Connections::Only(ids) => json!({"integration": app, "connectionIds": ids}),
            })
            .collect::<Vec<_>>()
    });
    json!({
        "apps": apps,
        "readOnly": grant.read_only,
        "callBudget": grant.call_budget,
        "callsLeft": grant.calls_left(),
        "expiresAt": grant.expires_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        "summary": grant.describe(),
    })
}
