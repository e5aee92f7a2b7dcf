//! `POST /api/mcp`: the Model Context Protocol over its streamable HTTP transport
//! (JSON-RPC 2.0; https://modelcontextprotocol.io/specification/2025-06-18/basic/transports).
//! `initialize`, `tools/list` (paginated) and `tools/call` run over the same catalog,
//! connection resolution, queue and worker as `/api/tools/{name}/execute`, authenticated
//! by the same device credential. The server is stateless: it answers each POST with one
//! JSON response and issues no session id.
//!
//! A tool call through MCP counts as confirmed: MCP hosts ask their person before calling
//! a tool, guided by the `destructiveHint`/`readOnlyHint` annotations set from the tool's
//! mode. Tool failures are MCP tool errors (`isError: true`) carrying the same message as
//! the REST error; protocol mistakes are JSON-RPC errors.

use crate::auth::AuthenticatedDevice;
use crate::call::{CallResult, ToolCall, call_tool};
use crate::error::ApiError;
use crate::state::AppState;
use crate::view;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clawlink_common::catalog::Mode;
use clawlink_common::results::FinalStatus;
use serde_json::{Value, json};

const PROTOCOL_VERSIONS: &[&str] = &["2025-06-18", "2025-03-26", "2024-11-05"];
const PAGE_SIZE: usize = 50;

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub async fn mcp(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
    body: Bytes,
) -> Response {
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return Json(rpc_error(Value::Null, -32700, "Parse error: the body is not JSON")).into_response(),
    };
    if message.is_array() {
        return Json(rpc_error(Value::Null, -32600, "Batches are not supported; send one message per request"))
            .into_response();
    }
    let id = message.get("id").cloned();
    let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
    let Some(id) = id else {
        // A notification (initialized, cancelled …) or a response: accepted, no body.
        return StatusCode::ACCEPTED.into_response();
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") || method.is_empty() {
        return Json(rpc_error(id, -32600, "Invalid request: expected a JSON-RPC 2.0 request")).into_response();
    }
    let params = message.get("params").cloned().unwrap_or(json!({}));
    let answer = match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(PROTOCOL_VERSIONS[0]);
            let version = PROTOCOL_VERSIONS.iter().find(|v| **v == asked).copied().unwrap_or(PROTOCOL_VERSIONS[0]);
            rpc_result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "clawlink", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "Tools act on the person's connected apps. Ask before calling a tool whose destructiveHint is true or readOnlyHint is false.",
                }),
            )
        }
        "ping" => rpc_result(id, json!({})),
        "tools/list" => tools_list(&state, id, &params),
        "tools/call" => tools_call(&state, &device, id, &params).await,
        _ => rpc_error(id, -32601, &format!("Method not found: {method}")),
    };
    Json(answer).into_response()
}

fn tools_list(state: &AppState, id: Value, params: &Value) -> Value {
    let start = match params.get("cursor").and_then(Value::as_str) {
        None => 0,
        Some(c) => match c.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return rpc_error(id, -32602, "Invalid params: unknown cursor"),
        },
    };
    let all: Vec<_> = state.catalog.tools().collect();
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(PAGE_SIZE)
        .map(|t| {
            json!({
                "name": t.name,
                "title": t.tool.title,
                "description": t.tool.description,
                "inputSchema": t.tool.input_schema,
                "annotations": {
                    "title": t.tool.title,
                    "readOnlyHint": t.tool.mode == Mode::Read,
                    "destructiveHint": t.tool.mode == Mode::Destructive,
                    "openWorldHint": true,
                },
            })
        })
        .collect();
    let mut result = json!({"tools": page});
    if start + PAGE_SIZE < all.len() {
        result["nextCursor"] = json!((start + PAGE_SIZE).to_string());
    }
    rpc_result(id, result)
}

fn tool_error(id: Value, message: String, details: Value) -> Value {
    rpc_result(
        id,
        json!({"content": [{"type": "text", "text": message}], "structuredContent": details, "isError": true}),
    )
}

fn api_error_to_tool_error(id: Value, err: ApiError) -> Value {
    let mut text = err.message.clone();
    if !err.missing_fields.is_empty() {
        text.push_str(&format!(" Missing: {}.", err.missing_fields.join(", ")));
    }
    if !err.invalid_fields.is_empty() {
        text.push_str(&format!(" Invalid: {}.", err.invalid_fields.join(", ")));
    }
    if let Some(hint) = &err.hint {
        text.push_str(&format!(" {hint}"));
    }
    let details = json!({"code": err.code, "type": err.code.kind(), "retryable": err.retryable, "missingFields": err.missing_fields, "invalidFields": err.invalid_fields, "details": err.details});
    tool_error(id, text, details)
}

async fn tools_call(
    state: &AppState,
    device: &clawlink_common::db::devices::DeviceAuth,
    id: Value,
    params: &Value,
) -> Value {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return rpc_error(id, -32602, "Invalid params: name is required");
    };
    let Some(tool) = state.catalog.tool(name).cloned() else {
        return rpc_error(id, -32602, &format!("Unknown tool: {name}"));
    };
    let call = ToolCall {
        tool,
        arguments: params.get("arguments").cloned().unwrap_or(json!({})),
        connection_id: params.pointer("/_meta/connectionId").and_then(Value::as_i64),
        confirmed: true,
        is_async: false,
        idempotency_key: None,
    };
    match call_tool(state, device, call).await {
        Ok(CallResult::Finished(ctx, outcome)) => {
            let meta = view::meta(outcome.execution_id, &outcome.meta);
            match (outcome.status, outcome.error) {
                (FinalStatus::Succeeded, _) | (_, None) => {
                    let data = outcome.data.unwrap_or(Value::Null);
                    let structured = json!({"executionId": outcome.execution_id, "connectionId": ctx.connection_id, "data": data, "meta": meta});
                    rpc_result(
                        id,
                        json!({"content": [{"type": "text", "text": data.to_string()}], "structuredContent": structured, "isError": false}),
                    )
                }
                (FinalStatus::Failed, Some(error)) => {
                    let details = json!({"code": error.code, "retryable": error.retryable, "providerStatus": error.provider_status, "executionId": outcome.execution_id, "meta": meta});
                    tool_error(id, error.message, details)
                }
            }
        }
        Ok(CallResult::Accepted { id: execution_id, status }) => tool_error(
            id,
            format!("The call is still {status}; fetch its result with GET /api/executions/{execution_id}."),
            json!({"code": "still_running", "executionId": execution_id, "retryable": true}),
        ),
        Err(err) => api_error_to_tool_error(id, err),
    }
}
