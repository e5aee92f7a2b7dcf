//! `POST /api/tools/{name}/execute`: validate, resolve the connection, record the
//! execution, publish the job, and (sync) wait for the result.
//!
//! Read with `common/src/queue.rs`, `worker/src/execute.rs` and `common/src/results.rs`:
//! those four files are the whole path of one tool call.

use crate::auth::AuthenticatedDevice;
use crate::error::{ApiError, ApiJson};
use crate::routes::connection::{resolve_connection, unresolved};
use crate::routes::view;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use clawlink_common::catalog::{ToolEntry, render_request, validate_arguments};
use clawlink_common::db::devices::DeviceAuth;
use clawlink_common::db::executions::{self, Inserted, NewExecution};
use clawlink_common::ids::{ConnectionId, ExecutionId};
use clawlink_common::queue::{Job, Lane};
use clawlink_common::results::{Outcome, WaitGuard, Wake};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteBody {
    #[serde(default = "empty_object")]
    pub arguments: Value,
    #[serde(default)]
    pub connection_id: Option<i64>,
    #[serde(default)]
    pub confirmed: bool,
    #[serde(default, rename = "async")]
    pub is_async: bool,
}

fn empty_object() -> Value {
    json!({})
}

/// Looks a tool up, or answers 404 with the closest names.
pub fn find_tool(state: &AppState, name: &str) -> Result<Arc<ToolEntry>, ApiError> {
    state.catalog.tool(name).cloned().ok_or_else(|| {
        ApiError::not_found("tool_not_found", format!("There is no tool named {name:?}."))
            .details(state.catalog.closest_names(name, 5).into_iter().map(Value::String))
            .hint("Use GET /api/tools/search?query=… to find the right tool.")
    })
}

/// Validates arguments against the tool's schema and its request template.
pub fn check_arguments(tool: &ToolEntry, arguments: &Value) -> Result<(), ApiError> {
    let invalid = |message: String| {
        let mut e = ApiError::bad_request("invalid_arguments", message);
        e.input_schema = Some(tool.tool.input_schema.clone());
        e
    };
    if let Err(errors) = validate_arguments(tool, arguments) {
        let mut e = invalid(format!("The arguments for {} are not valid.", tool.name));
        e.missing_fields = errors.missing_fields;
        e.invalid_fields = errors.invalid_fields;
        e.details = errors.details.into_iter().map(Value::String).collect();
        return Err(e.hint("Fix the listed fields; inputSchema describes every argument."));
    }
    render_request(tool, arguments).map_err(|e| invalid(e.to_string()))?;
    Ok(())
}

/// What makes two calls with one Idempotency-Key the same call: the tool, the connection
/// asked for (`None`: the default, whichever that is when the first call ran) and the
/// arguments.
/// `arguments` is their JSON text: serde_json's map is ordered (BTreeMap), so equal
/// arguments serialise equally.
fn request_hash(tool: &str, connection: Option<ConnectionId>, arguments: &str) -> Vec<u8> {
    // A version first, so no hash of this kind equals a legacy one. A named connection is
    // tagged 1, the default 0.
    let mut h = Sha256::new();
    h.update(b"v2\0");
    h.update(tool.as_bytes());
    h.update([0]);
    match connection {
        Some(c) => {
            h.update([1]);
            h.update(c.0.to_be_bytes());
        }
        None => h.update([0]),
    }
    h.update(arguments.as_bytes());
    h.finalize().to_vec()
}

/// The hash before the connection was resolved inside the insert: over the connection the
/// call ran on. Rows written then still carry it.
fn legacy_request_hash(tool: &str, connection: ConnectionId, arguments: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(tool.as_bytes());
    h.update([0]);
    h.update(connection.0.to_be_bytes());
    h.update(arguments.as_bytes());
    h.finalize().to_vec()
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
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
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
    };
    Ok(match call_tool(&state, &device, call).await? {
        CallResult::Finished(ctx, outcome) => view::outcome_response(&ctx, &outcome),
        CallResult::Accepted { id, status } => view::accepted(&state, id, status),
    })
}

/// 402: the month's allowance is used up; nothing was queued.
pub fn over_quota(state: &AppState, used: i64, allowed: i64) -> ApiError {
    ApiError::new(
        StatusCode::PAYMENT_REQUIRED,
        "plan_limit",
        "plan_limit_reached",
        format!("This account has used {used} of its {allowed} tool calls this month; upgrade the plan or wait for next month."),
    )
    .hint("Ask the person to upgrade their ClawLink plan at upgradeUrl.")
    .with("upgradeUrl", json!(format!("{}/billing", state.config.public_web_url)))
}

/// One tool call as the api receives it, from the REST route or from MCP.
pub struct ToolCall {
    pub tool: Arc<ToolEntry>,
    pub arguments: Value,
    pub connection_id: Option<i64>,
    pub confirmed: bool,
    pub is_async: bool,
    pub idempotency_key: Option<String>,
}

pub enum CallResult {
    /// The call finished (succeeded or failed) within the wait.
    Finished(view::CallContext, Outcome),
    /// Still queued or running: poll the execution.
    Accepted { id: ExecutionId, status: &'static str },
}

/// Validates, resolves the connection, records the execution, publishes the job and —
/// for a sync call — waits for the outcome up to the sync bound.
pub async fn call_tool(state: &AppState, device: &DeviceAuth, call: ToolCall) -> Result<CallResult, ApiError> {
    let ToolCall { tool, arguments, connection_id, confirmed, is_async, idempotency_key } = call;
    check_arguments(&tool, &arguments)?;

    if tool.requires_confirmation && !confirmed {
        // A missing connection is reported before the confirmation it would need.
        resolve_connection(state, device.user_id, &tool, connection_id).await?;
        let summary = clawlink_common::catalog::render_preview(&tool.tool.preview, &arguments);
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "confirmation",
            "confirmation_required",
            format!(
                "{} changes data ({}); confirm with the person, then call again with \"confirmed\": true.",
                tool.name,
                tool.tool.mode.as_str()
            ),
        )
        .hint(format!("Will do: {summary}"))
        .with("summary", json!(summary)));
    }

    let lane = if is_async { Lane::Bulk } else { Lane::Interactive };
    let id = ExecutionId::new();
    clawlink_common::telemetry::record_execution_id(id);
    let requested = connection_id.map(ConnectionId);
    let arguments_text = arguments.to_string();
    let hash = request_hash(&tool.name, requested, &arguments_text);
    // One statement (batched with concurrent calls) resolves the connection, checks the
    // allowance and the key, and records the execution.
    let inserted = state
        .inserts
        .call(NewExecution {
            id,
            user: device.user_id,
            device: Some(device.device_id),
            connection: requested,
            integration: tool.provider.id.clone(),
            tool_name: tool.name.clone(),
            arguments,
            lane,
            idempotency_key,
            request_hash: Some(hash.clone()),
        })
        .await?;

    let connection = match inserted {
        Inserted::New(connection) => connection,
        Inserted::Unresolved(why) => return Err(unresolved(&tool, connection_id, &why)),
        Inserted::OverQuota { used, allowed } => return Err(over_quota(state, used, allowed)),
        Inserted::UnknownUser => {
            return Err(ApiError::unauthorized(
                "invalid_credential",
                "This device credential is not valid or has been revoked.",
            ));
        }
        Inserted::Existing(existing) => {
            let same = existing.request_hash.as_deref() == Some(hash.as_slice())
                || existing.connection_id.is_some_and(|c| {
                    existing.request_hash.as_deref()
                        == Some(legacy_request_hash(&tool.name, c, &arguments_text).as_slice())
                        && requested.is_none_or(|r| r == c)
                });
            if !same {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "idempotency_conflict",
                    "This Idempotency-Key was already used with a different tool call.",
                )
                .hint("Use a new Idempotency-Key for a different call.")
                .with("executionId", json!(existing.id)));
            }
            // A replay: the first execution answers, whatever state it is in.
            clawlink_common::telemetry::record_execution_id(existing.id);
            let ctx = view::CallContext { tool: tool.clone(), connection_id: existing.connection_id };
            let wait = if is_async { Duration::ZERO } else { state.config.sync_wait };
            return Ok(match crate::routes::executions::await_outcome(state, existing.id, wait).await? {
                Some(outcome) => CallResult::Finished(ctx, outcome),
                None => CallResult::Accepted {
                    id: existing.id,
                    status: if existing.status == "running" { "running" } else { "queued" },
                },
            });
        }
    };
    let ctx = view::CallContext { tool: tool.clone(), connection_id: Some(connection) };

    let job = Job::ExecuteV1 { execution_id: id, reply_to: (!is_async).then(|| state.config.instance_id.clone()) };
    // Register before publishing so a fast result cannot slip past.
    let waiter = (!is_async).then(|| state.waiters.register(id));
    if let Err(err) = state.publisher.publish(lane, &job).await {
        tracing::error!(execution_id = %id, error = %err, "publish failed");
        let mut conn = state.db.acquire().await?;
        executions::fail_unqueued(&mut conn, id, "The work queue did not accept the call.").await?;
        return Err(ApiError::unavailable(
            "The work queue is unavailable; the call was not started. Try again shortly.",
        )
        .with("executionId", json!(id)));
    }
    let Some(waiter) = waiter else {
        return Ok(CallResult::Accepted { id, status: "queued" });
    };
    Ok(match wait_for_outcome(state, waiter, Instant::now() + state.config.sync_wait).await? {
        Some(outcome) => CallResult::Finished(ctx, outcome),
        None => CallResult::Accepted { id, status: "running" },
    })
}

/// Waits for a registered execution's outcome until `deadline`; `None` if it is not final
/// by then. The notification normally arrives; if Redis restarted meanwhile it may not, so
/// the result store (then the row) is checked now and then as well.
pub async fn wait_for_outcome(
    state: &AppState,
    mut waiter: WaitGuard,
    deadline: Instant,
) -> Result<Option<Outcome>, ApiError> {
    let id = waiter.id();
    let mut recheck = Duration::from_millis(500);
    loop {
        let until = deadline.min(Instant::now() + recheck);
        match tokio::time::timeout_at(until, &mut waiter.receiver).await {
            Ok(Ok(Wake::Outcome(outcome))) => return Ok(Some(outcome)),
            Ok(Ok(Wake::Stored)) | Ok(Err(_)) | Err(_) => {
                if let Some(outcome) = stored_outcome(state, id).await? {
                    return Ok(Some(outcome));
                }
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                if waiter.receiver.is_terminated() {
                    // Woken but not stored (yet): listen again.
                    waiter = state.waiters.register(id);
                }
                recheck = (recheck * 2).min(Duration::from_secs(4));
            }
        }
    }
}

/// The outcome from Redis, or from the row when Redis has lost it. `None` while running.
pub async fn stored_outcome(state: &AppState, id: ExecutionId) -> Result<Option<Outcome>, ApiError> {
    match state.results.get(id).await {
        Ok(Some(outcome)) => return Ok(Some(outcome)),
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "result store unavailable; reading the row"),
    }
    let mut conn = state.db.acquire().await?;
    Ok(executions::get_final(&mut conn, id).await?.and_then(|row| row.outcome()))
}

impl IntoResponse for view::Accepted {
    fn into_response(self) -> Response {
        (StatusCode::ACCEPTED, axum::Json(self.0)).into_response()
    }
}
