//! `POST /api/mcp`: the Model Context Protocol over its streamable HTTP transport
//! (JSON-RPC 2.0; https://modelcontextprotocol.io/specification/2025-11-25/basic/transports,
//! and the revisions before it back to 2024-11-05). `initialize`, `tools/list` (paginated,
//! scoped by the URL's `?connected=true&integration=…`) and `tools/call` run over the same catalog, connection resolution, queue and worker as
//! `/api/tools/{name}/execute`, authenticated by the same device credential. The server is
//! stateless: it answers each POST with one JSON response and issues no session id.
//!
//! Before the credential is looked at, the transport's own rules: a browser page of an
//! origin not allowed (`CLAWLINK_MCP_ALLOWED_ORIGINS`, and the api's own) is refused with
//! 403, so a page that rebinds DNS to a local ClawLink cannot drive it; an
//! `MCP-Protocol-Version` this server does not speak is a 400. A body that is not one
//! JSON-RPC 2.0 message is a 400 with a JSON-RPC error (`id: null`).
//!
//! A tool call through MCP counts as confirmed: MCP hosts ask their person before calling
//! a tool, guided by the `destructiveHint`/`readOnlyHint` annotations set from the tool's
//! mode. Tool failures are MCP tool errors (`isError: true`) carrying the same message as
//! the REST error; protocol mistakes are JSON-RPC errors.

use crate::auth::AuthenticatedDevice;
use crate::call::{CallResult, ToolCall, call_tool};
use crate::error::ApiError;
use crate::listing::{self, ToolFilter};
use crate::routes::tools::connected_integrations;
use crate::state::AppState;
use crate::view;
use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use clawlink_common::catalog::Mode;
use clawlink_common::codes::ErrorCode;
use clawlink_common::results::FinalStatus;
use clawlink_common::status::ExecutionStatus;
use serde_json::{Value, json};

/// The revisions this server speaks, the current first: `initialize` agrees on the one
/// the client asks for when it is here, else offers the first.
const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
const PAGE_SIZE: usize = 50;

/// JSON-RPC 2.0 error codes (https://www.jsonrpc.org/specification#error_object).
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A request refused by the transport, before any method ran: an HTTP error status with a
/// JSON-RPC error whose `id` is null (or the request's, when it could be read) and whose
/// `data.code` is ours (`clawlink_common::codes`).
pub struct Refusal {
    code: ErrorCode,
    rpc_code: i64,
    message: String,
    id: Value,
    data: serde_json::Map<String, Value>,
}

impl Refusal {
    fn new(code: ErrorCode, rpc_code: i64, message: impl Into<String>) -> Self {
        Refusal { code, rpc_code, message: message.into(), id: Value::Null, data: serde_json::Map::new() }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidMessage, INVALID_REQUEST, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut data = self.data;
        data.insert("code".into(), json!(self.code));
        let body = json!({"jsonrpc": "2.0", "id": self.id,
            "error": {"code": self.rpc_code, "message": self.message, "data": data}});
        (self.code.http_status(), Json(body)).into_response()
    }
}

/// The transport's checks of a request's headers, made before its credential's.
pub struct Transport;

impl FromRequestParts<AppState> for Transport {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refusal> {
        // Servers MUST validate Origin and answer 403 to one that is not allowed; no Origin
        // is a client that is not a browser page, which DNS rebinding cannot be.
        if let Some(origin) = parts.headers.get(axum::http::header::ORIGIN) {
            let text = String::from_utf8_lossy(origin.as_bytes());
            let allowed =
                crate::config::web_origin(&text).is_some_and(|o| state.config.mcp_allowed_origins.contains(&o));
            if !allowed {
                return Err(Refusal::new(
                    ErrorCode::ForbiddenOrigin,
                    INVALID_REQUEST,
                    format!("Requests from pages of the origin {:?} are not allowed here.", shown(&text)),
                ));
            }
        }
        // An unsupported MCP-Protocol-Version MUST be a 400; none means 2025-03-26 or the
        // revision agreed at initialize, both fine for a stateless server.
        if let Some(version) = parts.headers.get("mcp-protocol-version") {
            let text = String::from_utf8_lossy(version.as_bytes());
            if !PROTOCOL_VERSIONS.contains(&text.as_ref()) {
                let mut refusal = Refusal::new(
                    ErrorCode::UnsupportedProtocolVersion,
                    INVALID_REQUEST,
                    format!(
                        "Unsupported MCP-Protocol-Version {:?}; this server speaks {}.",
                        shown(&text),
                        PROTOCOL_VERSIONS.join(", ")
                    ),
                );
                refusal.data.insert("supported".into(), json!(PROTOCOL_VERSIONS));
                refusal.data.insert("requested".into(), json!(shown(&text)));
                return Err(refusal);
            }
        }
        Ok(Transport)
    }
}

/// A header's value as an answer repeats it: the first 100 characters.
fn shown(text: &str) -> String {
    text.chars().take(100).collect()
}

/// One JSON-RPC 2.0 message from the client.
pub enum Message {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A notification (`notifications/initialized`, `notifications/cancelled` …) or a
    /// response: accepted, nothing to answer.
    NoReply,
}

impl<S: Send + Sync> FromRequest<S> for Message {
    type Rejection = Refusal;

    async fn from_request(request: Request, state: &S) -> Result<Self, Refusal> {
        let bytes = crate::body::read(request, state).await.map_err(|unread| {
            let (code, message) = unread.refusal();
            Refusal::new(code, INVALID_REQUEST, message)
        })?;
        let message: Value = serde_json::from_slice(&bytes)
            .map_err(|_| Refusal::new(ErrorCode::InvalidBody, PARSE_ERROR, "Parse error: the body is not JSON."))?;
        Message::parse(message)
    }
}

impl Message {
    /// A request has a method and an id (a string or a number: MCP forbids null); a
    /// notification a method and no id; a response an id and a result or an error.
    fn parse(message: Value) -> Result<Message, Refusal> {
        let Value::Object(mut message) = message else {
            return Err(Refusal::invalid(if message.is_array() {
                "Batches are not supported; send one JSON-RPC message per request."
            } else {
                "Invalid request: the body must be one JSON-RPC 2.0 message (an object)."
            }));
        };
        let raw_id = message.remove("id");
        let has_id = raw_id.is_some();
        let id = raw_id.filter(|id| id.is_string() || id.is_number());
        let refuse = |text: &str| {
            let mut refusal = Refusal::invalid(format!("Invalid request: {text}."));
            refusal.id = id.clone().unwrap_or(Value::Null);
            refusal
        };
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(refuse("jsonrpc must be \"2.0\""));
        }
        match (message.remove("method"), &id) {
            (Some(Value::String(method)), Some(id)) if !method.is_empty() => Ok(Message::Request {
                id: id.clone(),
                method,
                params: message.remove("params").filter(|p| !p.is_null()).unwrap_or_else(|| json!({})),
            }),
            (Some(Value::String(method)), None) if !method.is_empty() && !has_id => Ok(Message::NoReply),
            (None, Some(_)) if message.contains_key("result") != message.contains_key("error") => Ok(Message::NoReply),
            (Some(_), _) => Err(refuse("method must be a non-empty string, and id a string or a number")),
            (None, _) => Err(refuse("expected a request (method and id), a notification or a response")),
        }
    }
}

pub async fn mcp(
    State(state): State<AppState>,
    _: Transport,
    AuthenticatedDevice(device): AuthenticatedDevice,
    RawQuery(url_query): RawQuery,
    message: Message,
) -> Response {
    let Message::Request { id, method, params } = message else {
        return StatusCode::ACCEPTED.into_response();
    };
    if !params.is_object() {
        return Json(rpc_error(id, INVALID_PARAMS, "Invalid params: params must be an object")).into_response();
    }
    let answer = match method.as_str() {
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
        "tools/list" => tools_list(&state, &device, url_query.as_deref(), id, &params).await,
        "tools/call" => tools_call(&state, &device, id, &params).await,
        _ => rpc_error(id, METHOD_NOT_FOUND, &format!("Method not found: {method}")),
    };
    Json(answer).into_response()
}

/// A JSON-RPC "invalid params" error carrying our code and message (`data.code`).
fn invalid_params(id: Value, err: &ApiError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": INVALID_PARAMS,
        "message": format!("Invalid params: {}", err.message), "data": {"code": err.code}}})
}

/// `tools/list`, scoped by the MCP URL's query (`/api/mcp?connected=true&integration=a,b`,
/// so an MCP client's configuration chooses what its agent sees) and paged by the
/// opaque cursor of `listing.rs`, and narrowed to the device's grant. `tools/call` is not
/// scoped by the URL: a tool named outside the list still runs, as through
/// `/api/tools/{name}/execute`, if the grant includes it.
async fn tools_list(
    state: &AppState,
    device: &clawlink_common::db::devices::DeviceAuth,
    url_query: Option<&str>,
    id: Value,
    params: &Value,
) -> Value {
    let (mut integration, mut connected) = (None, None);
    for (key, value) in url::form_urlencoded::parse(url_query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "integration" => integration = Some(value.into_owned()),
            "connected" => connected = Some(value.into_owned()),
            _ => {}
        }
    }
    let filter = match ToolFilter::parse(&state.catalog, integration.as_deref(), connected.as_deref()) {
        Ok(filter) => filter,
        Err(err) => return invalid_params(id, &err),
    };
    // A cursor is one this server handed out (`listing::encode_cursor`).
    let after = match params.get("cursor") {
        None | Some(Value::Null) => None,
        Some(cursor) => match cursor.as_str().map(listing::decode_cursor) {
            Some(Ok(name)) => Some(name),
            _ => return rpc_error(id, INVALID_PARAMS, "Invalid params: unknown cursor"),
        },
    };
    let scope = if filter.connected {
        match connected_integrations(state, device).await {
            Ok(apps) => filter.scope(&apps),
            Err(err) => return rpc_error(id, INTERNAL_ERROR, &err.message),
        }
    } else {
        filter.scope(&Default::default())
    };
    // Only what the device's grant reaches is listed.
    let scope = crate::routes::tools::granted_scope(device, scope);
    let page = listing::page(&state.catalog, scope.as_ref(), device.grant.read_only, after.as_deref(), Some(PAGE_SIZE));
    let tools: Vec<Value> = page
        .tools
        .iter()
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
    let mut result = json!({"tools": tools});
    if let Some(next) = page.next_cursor {
        result["nextCursor"] = json!(next);
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
        return rpc_error(id, INVALID_PARAMS, "Invalid params: name is required");
    };
    let Some(tool) = state.catalog.tool(name).cloned() else {
        return rpc_error(id, INVALID_PARAMS, &format!("Unknown tool: {name}"));
    };
    let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
    let connection_id = params.pointer("/_meta/connectionId").and_then(Value::as_i64);
    let call = ToolCall {
        tool: tool.clone(),
        arguments: arguments.clone(),
        connection_id,
        // Under the default policy (agent confirmation) the MCP host's own confirmation,
        // guided by destructiveHint/readOnlyHint, is the agent's: as before policies. The
        // other policies apply to MCP calls as to REST ones (see `call_tool`).
        confirmed: true,
        approval_token: params.pointer("/_meta/approvalToken").and_then(Value::as_str).map(str::to_string),
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
        Ok(CallResult::Accepted { id: execution_id, status: ExecutionStatus::AwaitingApproval }) => tool_error(
            id,
            format!(
                "This call waits for the person to approve it on the ClawLink dashboard ({}); fetch its outcome with GET /api/executions/{execution_id}.",
                view::approval_url(state)
            ),
            json!({"code": "awaiting_approval", "executionId": execution_id, "approvalUrl": view::approval_url(state), "retryable": true}),
        ),
        Ok(CallResult::Accepted { id: execution_id, status }) => tool_error(
            id,
            format!("The call is still {status}; fetch its result with GET /api/executions/{execution_id}."),
            json!({"code": "still_running", "executionId": execution_id, "retryable": true}),
        ),
        // MCP has no preview: the refusal carries the token that approves exactly this
        // call, for the host to show the person and send back in `_meta.approvalToken`.
        Err(err) if err.code == ErrorCode::ApprovalRequired => {
            match crate::call::preview(state, device, name, &arguments, connection_id).await {
                Ok(crate::call::Preview { approval: Some((token, expires)), summary, .. }) => {
                    let mut answer = api_error_to_tool_error(id, err);
                    answer["result"]["structuredContent"]["approvalToken"] = json!(token);
                    answer["result"]["structuredContent"]["approvalExpiresAt"] =
                        json!(expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default());
                    answer["result"]["structuredContent"]["summary"] = json!(summary);
                    answer
                }
                Ok(_) => api_error_to_tool_error(id, err),
                Err(other) => api_error_to_tool_error(id, other),
            }
        }
        Err(err) => api_error_to_tool_error(id, err),
    }
}
