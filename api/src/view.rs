//! How a tool call's outcome is shown to the agent (CONTRACT.md field names).

use crate::call::CallContext;
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use clawlink_common::ids::ExecutionId;
use clawlink_common::results::{FinalStatus, Outcome, OutcomeMeta};
use clawlink_common::status::ExecutionStatus;
use serde_json::{Value, json};

fn rfc3339(t: Option<time::OffsetDateTime>) -> Value {
    t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .map(Value::String)
        .unwrap_or(Value::Null)
}

pub fn meta(id: ExecutionId, m: &OutcomeMeta) -> Value {
    json!({
        "startedAt": rfc3339(m.started_at),
        "endedAt": rfc3339(m.ended_at),
        "durationMs": m.duration_ms,
        "queueWaitMs": m.queue_wait_ms,
        "providerMs": m.provider_ms,
        "requestId": id,
        "providerRequestId": m.provider_request_id,
        "providerStatus": m.provider_status,
        "attempts": m.attempts,
    })
}

pub fn outcome_response(ctx: &CallContext, outcome: &Outcome) -> Response {
    let tool = &ctx.tool;
    match (outcome.status, &outcome.error) {
        (FinalStatus::Succeeded, _) | (FinalStatus::Failed, None) => axum::Json(json!({
            "ok": outcome.status == FinalStatus::Succeeded,
            "toolName": tool.name,
            "integration": tool.provider.id,
            "connectionId": ctx.connection_id,
            "mode": tool.tool.mode.as_str(),
            "executionId": outcome.execution_id,
            "data": outcome.data,
            "meta": meta(outcome.execution_id, &outcome.meta),
        }))
        .into_response(),
        (FinalStatus::Failed, Some(error)) => {
            let mut e = ApiError::new(error.code, error.message.clone());
            e.retryable = error.retryable;
            e.retry_after = error.retryable.then_some(5);
            if let Some(s) = error.provider_status {
                e.error_extra.insert("providerStatus".into(), json!(s));
            }
            if error.code.needs_reconnect() {
                e = e.hint(crate::call::reconnect_hint(&tool.provider.name));
            }
            e.with("executionId", json!(outcome.execution_id))
                .with("toolName", json!(tool.name))
                .with("integration", json!(tool.provider.id))
                .with("connectionId", json!(ctx.connection_id))
                .with("data", outcome.data.clone().unwrap_or(Value::Null))
                .with("meta", meta(outcome.execution_id, &outcome.meta))
                .into_response()
        }
    }
}

/// `202`: the call is queued or running, or awaits a person's approval (then
/// `approvalUrl` is the dashboard's inbox); its result will be at `statusUrl`.
pub fn accepted(state: &AppState, id: ExecutionId, status: ExecutionStatus) -> Response {
    let mut body = json!({
        "ok": true,
        "executionId": id,
        "status": status,
        "statusUrl": format!("{}/api/executions/{}", state.config.public_api_url, id),
    });
    if status == ExecutionStatus::AwaitingApproval {
        body["approvalUrl"] = json!(approval_url(state));
        body["message"] = json!(
            "The person approves each call of this device on the ClawLink dashboard; poll statusUrl (with waitMs) for the outcome."
        );
    }
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

/// Where a person approves or denies the calls waiting for them.
pub fn approval_url(state: &AppState) -> String {
    format!("{}/approvals", state.config.public_web_url)
}
