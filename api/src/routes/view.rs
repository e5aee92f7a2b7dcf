//! How a tool call's outcome is shown to the agent (CONTRACT.md field names).

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clawlink_common::catalog::ToolEntry;
use clawlink_common::ids::{ConnectionId, ExecutionId};
use clawlink_common::results::{FinalStatus, Outcome, OutcomeMeta};
use serde_json::{Value, json};
use std::sync::Arc;

pub struct CallContext {
    pub tool: Arc<ToolEntry>,
    /// `None` only for a replay whose connection was deleted since.
    pub connection_id: Option<ConnectionId>,
}

pub struct Accepted(pub Value);

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

/// The HTTP status that tells the agent what a failed call means.
pub fn failure_status(code: &str) -> StatusCode {
    match code {
        // The connection must be made again: the person can fix it, we cannot.
        "needs_reauth" | "credential_unreadable" => StatusCode::UNAUTHORIZED,
        "connection_missing" => StatusCode::CONFLICT,
        "invalid_arguments" => StatusCode::BAD_REQUEST,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "provider_unavailable" | "queue_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "provider_error" => StatusCode::BAD_GATEWAY,
        // A call that may or may not have reached the app (see the upkeep job).
        "stuck" => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
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
            let status = failure_status(&error.code);
            let kind: &'static str = clawlink_common::db::executions::error_kind(&error.code);
            let mut e = ApiError::new(status, kind, error.code.clone(), error.message.clone());
            e.retryable = error.retryable;
            e.retry_after = error.retryable.then_some(5);
            if let Some(s) = error.provider_status {
                e.error_extra.insert("providerStatus".into(), json!(s));
            }
            if error.code == "needs_reauth" || error.code == "credential_unreadable" {
                e = e.hint(crate::routes::connection::reconnect_hint(&tool.provider.name));
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

pub fn accepted(state: &AppState, id: ExecutionId, status: &str) -> Response {
    Accepted(json!({
        "ok": true,
        "executionId": id,
        "status": status,
        "statusUrl": format!("{}/api/executions/{}", state.config.public_api_url, id),
    }))
    .into_response()
}
