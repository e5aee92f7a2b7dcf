//! The tool catalog as an agent sees it: list, search, describe and preview
//! (`/api/tools…`) and the list of integrations (`/api/catalog`).

use crate::auth::AuthenticatedDevice;
use crate::call::{self, find_tool};
use crate::error::{ApiError, ApiJson};
use crate::grants;
use crate::listing::{self, ToolFilter};
use crate::routes::execute::empty_object;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use clawlink_common::catalog::ToolEntry;
use clawlink_common::catalog::search::{self, Scope};
use clawlink_common::codes::ErrorCode;
use clawlink_common::db::connections::{self, Connection};
use clawlink_common::db::devices::DeviceAuth;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The caller's usable connections that its grant includes, grouped by integration.
async fn connections_by_integration(
    state: &AppState,
    device: &DeviceAuth,
) -> Result<BTreeMap<String, Vec<Connection>>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let mut grouped: BTreeMap<String, Vec<Connection>> = BTreeMap::new();
    for c in grants::visible(device, connections::list_for_user(&mut conn, device.user_id).await?) {
        grouped.entry(c.integration.clone()).or_default().push(c);
    }
    Ok(grouped)
}

/// The descriptor of CONTRACT.md.
fn descriptor(tool: &ToolEntry, connections: Option<&Vec<Connection>>) -> Value {
    let empty = Vec::new();
    let connections = connections.unwrap_or(&empty);
    let default =
        connections.iter().find(|c| c.is_default).or(if connections.len() == 1 { connections.first() } else { None });
    json!({
        "integration": tool.provider.id,
        "integrationName": tool.provider.name,
        "name": tool.name,
        "title": tool.tool.title,
        "description": tool.tool.description,
        "inputSchema": tool.tool.input_schema,
        "mode": tool.tool.mode.as_str(),
        "accessLevel": tool.tool.mode.as_str(),
        "risk": tool.tool.risk.as_str(),
        "guidanceAvailable": !tool.tool.guidance.when_to_use.is_empty(),
        "requiresConfirmation": tool.requires_confirmation,
        "previewAvailable": true,
        "defaultConnectionId": default.map(|c| c.id),
        "connectionCount": connections.len(),
    })
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// One integration or a comma list.
    #[serde(default)]
    pub integration: Option<String>,
    /// `true`: only integrations the caller has connected.
    #[serde(default)]
    pub connected: Option<String>,
    /// At most this many tools (1–500); every tool when absent, as the plugin expects.
    #[serde(default)]
    pub limit: Option<String>,
    /// `nextCursor` of the page before.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// The most tools one page of `GET /api/tools` may hold when a limit is asked for.
const MAX_LIST_LIMIT: usize = 500;

fn parse_limit(raw: Option<&str>, max: usize) -> Result<Option<usize>, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::new(ErrorCode::InvalidLimit, format!("limit must be a whole number from 1 to {max}."))),
        },
    }
}

fn connected_apps(connections: &BTreeMap<String, Vec<Connection>>) -> BTreeSet<String> {
    connections.iter().filter(|(_, c)| !c.is_empty()).map(|(i, _)| i.clone()).collect()
}

/// The integrations the caller has a usable connection to (MCP's `connected=true`).
pub(crate) async fn connected_integrations(
    state: &AppState,
    device: &DeviceAuth,
) -> Result<BTreeSet<String>, ApiError> {
    Ok(connected_apps(&connections_by_integration(state, device).await?))
}

/// The integrations a list keeps: the filter's, narrowed to the device's granted apps.
pub(crate) fn granted_scope(device: &DeviceAuth, scope: Option<BTreeSet<String>>) -> Option<BTreeSet<String>> {
    let Some(granted) = device.grant.apps.as_ref() else { return scope };
    Some(match scope {
        None => granted.keys().cloned().collect(),
        Some(named) => named.into_iter().filter(|app| granted.contains_key(app)).collect(),
    })
}

/// `GET /api/tools`: every tool without parameters (CONTRACT.md); with `integration`,
/// `connected`, `limit` and `cursor`, one filtered page (`listing.rs`).
pub async fn list(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = ToolFilter::parse(&state.catalog, query.integration.as_deref(), query.connected.as_deref())?;
    let limit = parse_limit(query.limit.as_deref(), MAX_LIST_LIMIT)?;
    let after = match query.cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(cursor) => Some(listing::decode_cursor(cursor)?),
        None => None,
    };
    let connections = connections_by_integration(&state, &device).await?;
    let scope = granted_scope(&device, filter.scope(&connected_apps(&connections)));
    let page = listing::page(&state.catalog, scope.as_ref(), device.grant.read_only, after.as_deref(), limit);
    let tools: Vec<Value> = page.tools.iter().map(|t| descriptor(t, connections.get(&t.provider.id))).collect();
    Ok(Json(json!({
        "tools": tools,
        "count": tools.len(),
        "integration": filter.echo(),
        "total": page.total,
        "nextCursor": page.next_cursor,
    })))
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default, alias = "q")]
    pub query: Option<String>,
    #[serde(default)]
    pub integration: Option<String>,
    #[serde(default)]
    pub connected: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
}

pub async fn search_tools(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
    Query(query): Query<SearchQuery>,
) -> Result<Json<Value>, ApiError> {
    let text = query.query.as_deref().map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::new(ErrorCode::MissingQuery, "Give a query: /api/tools/search?query=send+an+email")
            .hint("Describe what you want to do in a few words."));
    }
    let limit = parse_limit(query.limit.as_deref(), 25)?.unwrap_or(10);
    let filter = ToolFilter::parse(&state.catalog, query.integration.as_deref(), query.connected.as_deref())?;
    let connections = connections_by_integration(&state, &device).await?;
    let scope = granted_scope(&device, filter.scope(&connected_apps(&connections)));
    let within = Scope { integrations: scope.as_ref(), prefer: None, reads_only: device.grant.read_only };
    let tools: Vec<Value> = search::search_scoped(&state.catalog, text, within, limit)
        .into_iter()
        .map(|(t, score)| {
            let mut d = descriptor(t, connections.get(&t.provider.id));
            d["score"] = json!((score * 1000.0).round() / 1000.0);
            d
        })
        .collect();
    Ok(Json(json!({"tools": tools, "count": tools.len(), "query": text, "integration": filter.echo()})))
}

pub async fn describe(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tool = find_tool(&state, &name)?;
    grants::check_tool(&state, &device, &tool)?;
    let mut conn = state.db.acquire().await?;
    let connections =
        grants::visible(&device, connections::list_usable(&mut conn, device.user_id, &tool.provider.id).await?);
    drop(conn);
    let mut d = descriptor(&tool, Some(&connections));
    let g = &tool.tool.guidance;
    d["whenToUse"] = json!(g.when_to_use);
    d["askBefore"] = json!(g.ask_before);
    d["safeDefaults"] = json!(g.safe_defaults);
    d["examples"] = json!(
        g.examples.iter().map(|e| json!({"description": e.description, "arguments": e.arguments})).collect::<Vec<_>>()
    );
    d["synonyms"] = json!(tool.tool.synonyms);
    d["connections"] = json!(connections.iter().map(connection_view).collect::<Vec<_>>());
    Ok(Json(json!({"tool": d})))
}

pub fn connection_view(c: &Connection) -> Value {
    json!({
        "id": c.id,
        "connectionLabel": c.connection_label,
        "accountLabel": c.account_label,
        "isDefault": c.is_default,
        "status": c.status,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewBody {
    #[serde(default = "empty_object")]
    pub arguments: Value,
    #[serde(default)]
    pub connection_id: Option<i64>,
}

/// The same checks as execute, and nothing else: no row, no message, no provider call.
pub async fn preview(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PreviewBody>,
) -> Result<Json<Value>, ApiError> {
    let call::Preview { tool, connection, summary, approval } =
        call::preview(&state, &device, &name, &body.arguments, body.connection_id).await?;
    let mut answer = json!({
        "ok": true,
        "mode": "preview",
        "toolName": tool.name,
        "integration": tool.provider.id,
        "connectionId": connection.id,
        "data": {
            "preview": true,
            "willExecute": false,
            "confirmationRequired": tool.requires_confirmation,
            "summary": summary,
            "toolMode": tool.tool.mode.as_str(),
            "risk": tool.tool.risk.as_str(),
            "connection": connection_view(&connection),
            "approvalPolicy": device.approval_policy,
        },
    });
    // For a tool that needs confirmation: the token that approves exactly this call
    // (execute's `approvalToken`); what the policy asks of the agent is in approvalPolicy.
    if let Some((token, expires)) = approval {
        answer["data"]["approvalToken"] = json!(token);
        answer["data"]["approvalExpiresAt"] =
            json!(expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default());
    }
    Ok(Json(answer))
}

/// `GET /api/catalog`: every integration, with whether the caller has connected it.
pub async fn catalog(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
) -> Result<Json<Value>, ApiError> {
    let connections = connections_by_integration(&state, &device).await?;
    let integrations: Vec<Value> = state
        .catalog
        .providers()
        .filter(|p| device.grant.allows_app(&p.id))
        .map(|p| {
            json!({
                "integration": p.id,
                "integrationName": p.name,
                "categories": p.categories,
                "authTypes": [p.auth.kind()],
                "toolCount": p.tools.len(),
                "connected": connections.get(&p.id).is_some_and(|c| !c.is_empty()),
            })
        })
        .collect();
    Ok(Json(json!({"integrations": integrations})))
}

/// `GET /api/integrations`: one entry per connection row of the caller.
pub async fn integrations(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
) -> Result<Json<Value>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let rows = grants::visible(&device, connections::list_for_user(&mut conn, device.user_id).await?);
    let fmt =
        |t: Option<time::OffsetDateTime>| t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
    let list: Vec<Value> = rows
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "integration": c.integration,
                "integrationName": state.catalog.provider(&c.integration).map(|p| p.name.clone()).unwrap_or_else(|| c.integration.clone()),
                "connectionLabel": c.connection_label,
                "accountLabel": c.account_label,
                "isDefault": c.is_default,
                "status": c.status,
                "expiresAt": fmt(c.token_expires_at),
                "createdAt": fmt(Some(c.created_at)),
            })
        })
        .collect();
    Ok(Json(json!({"integrations": list})))
}
