//! `POST /api/tools/{name}/execute`: reads the request into a [`ToolCall`] and answers
//! with its outcome (`crate::call` does the call).

use crate::auth::AuthenticatedDevice;
use crate::call::{CallResult, ToolCall, call_tool, find_tool};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::view;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use clawlink_common::codes::ErrorCode;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteBody {
    #[serde(default = "empty_object")]
    pub arguments: Value,
    #[serde(default)]
    pub connection_id: Option<i64>,
    #[serde(default)]
    pub confirmed: bool,
    /// The `approvalToken` of a preview of this exact call.
    #[serde(default)]
    pub approval_token: Option<String>,
    #[serde(default, rename = "async")]
    pub is_async: bool,
}

pub fn empty_object() -> Value {
    json!({})
}

fn wants_async(headers: &HeaderMap, body: &ExecuteBody) -> bool {
    body.is_async
        || headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("respond-async")))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw.to_str().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key must be 1 to 255 visible characters.",
        ));
    }
    Ok(Some(key.to_string()))
}

pub async fn execute(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ExecuteBody>,
) -> Result<Response, ApiError> {
    let call = ToolCall {
        tool: find_tool(&state, &name)?,
        is_async: wants_async(&headers, &body),
        idempotency_key: idempotency_key(&headers)?,
        arguments: body.arguments,
        connection_id: body.connection_id,
        confirmed: body.confirmed,
        approval_token: body.approval_token,
    };
    Ok(match call_tool(&state, &device, call).await? {
        CallResult::Finished(ctx, outcome) => view::outcome_response(&ctx, &outcome),
        CallResult::Accepted { id, status } => view::accepted(&state, id, status),
    })
}
