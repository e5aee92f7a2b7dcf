//! Which connection a tool call uses: the explicit `connectionId`, else the user's
//! default for the integration, else the only one; otherwise a clear 409.

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::StatusCode;
use clawlink_common::catalog::ToolEntry;
use clawlink_common::db::connections::Connection;
use clawlink_common::ids::UserId;
use serde_json::json;

pub async fn resolve_connection(
    state: &AppState,
    user: UserId,
    tool: &ToolEntry,
    requested: Option<i64>,
) -> Result<Connection, ApiError> {
    let integration = &tool.provider.id;
    // Batched with the lookups of concurrent calls (one statement per batch).
    let candidates = state.connection_lookups.call((user, integration.clone())).await?;
    let chosen = match requested {
        Some(id) => candidates.iter().find(|c| c.id.0 == id).cloned().ok_or_else(|| {
            // Another user's id and a made-up id look the same: 404.
            ApiError::not_found("connection_not_found", format!("You have no {integration} connection with id {id}."))
                .details(candidates.iter().map(|c| json!(c.id)))
                .hint("GET /api/integrations lists your connections.")
        })?,
        None => match candidates.iter().find(|c| c.is_default) {
            Some(c) => c.clone(),
            None if candidates.len() == 1 => candidates[0].clone(),
            None if candidates.is_empty() => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "connection",
                    "needs_connection",
                    format!("Connect {} in ClawLink before using {}.", tool.provider.name, tool.name),
                )
                .hint("POST /api/connect/start with this integration gives the person a link to connect it.")
                .with("integration", json!(integration)));
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "connection",
                    "ambiguous_connection",
                    format!(
                        "You have several {} connections and none is the default; say which with connectionId.",
                        tool.provider.name
                    ),
                )
                .details(candidates.iter().map(|c| json!(c.id)))
                .with("integration", json!(integration)));
            }
        },
    };
    if chosen.status == "needs_reauth" {
        return Err(ApiError::unauthorized(
            "needs_reauth",
            format!("The {} connection {} must be reconnected before it can be used.", tool.provider.name, chosen.id),
        )
        .hint("Ask the person to reconnect it in the ClawLink dashboard.")
        .with("connectionId", json!(chosen.id)));
    }
    Ok(chosen)
}
