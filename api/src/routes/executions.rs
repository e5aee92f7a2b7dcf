//! `GET /api/executions/{id}[?waitMs=…]`: an execution's state and, once final, its result.

use crate::auth::AuthenticatedDevice;
use crate::call::await_outcome;
use crate::error::ApiError;
use crate::state::AppState;
use crate::view;
use axum::Json;
use axum::extract::{Path, Query, State};
use clawlink_common::codes::ErrorCode;
use clawlink_common::db::executions;
use clawlink_common::ids::ExecutionId;
use clawlink_common::results::FinalStatus;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitQuery {
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

pub async fn get_execution(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::new(ErrorCode::ExecutionNotFound, "There is no execution with this id.");
    let id: ExecutionId = id.parse().map_err(|_| not_found())?;
    let mut conn = state.db.acquire().await?;
    let row = executions::get_for_user(&mut conn, device.user_id, id).await?.ok_or_else(not_found)?;
    // A call on an app or connection outside this device's grant is not its to see.
    let granted = match row.connection_id {
        Some(c) => device.grant.allows_connection(&row.integration, c),
        None => device.grant.allows_app(&row.integration),
    };
    if !granted {
        return Err(not_found());
    }
    drop(conn);
    clawlink_common::telemetry::record_execution_id(id);
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(state.config.max_poll_wait);
    // The worker writes the result to Redis before it updates the row, so a row that is
    // not final yet may already have its result: always look at the result store.
    let outcome = await_outcome(&state, id, wait).await?;
    let mut body = json!({
        "executionId": id,
        "status": row.status,
        "toolName": row.tool_name,
        "integration": row.integration,
        "connectionId": row.connection_id,
        "data": Value::Null,
        "error": Value::Null,
        "meta": {"attempts": row.attempts},
    });
    if let Some(until) = row.approval_expires_at {
        body["approvalExpiresAt"] = json!(until.format(&time::format_description::well_known::Rfc3339).ok());
        if row.status == clawlink_common::status::ExecutionStatus::AwaitingApproval {
            body["approvalUrl"] = json!(view::approval_url(&state));
        }
    }
    if let Some(outcome) = outcome {
        body["status"] = json!(outcome.status.as_str());
        body["ok"] = json!(outcome.status == FinalStatus::Succeeded);
        body["data"] = outcome.data.clone().unwrap_or(Value::Null);
        body["error"] = serde_json::to_value(&outcome.error).unwrap_or(Value::Null);
        body["meta"] = view::meta(id, &outcome.meta);
    }
    Ok(Json(body))
}
