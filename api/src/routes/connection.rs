//! Which connection a tool call uses: the explicit `connectionId`, else the user's
//! default for the integration, else the only one; otherwise a clear 409.
//!
//! Execute makes this choice inside its insert statement (`executions::insert_many`);
//! preview and an unconfirmed call make it here, from the batched lookup. Both answer a
//! call that no connection fits with [`unresolved`].

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::StatusCode;
use clawlink_common::catalog::ToolEntry;
use clawlink_common::db::connections::Connection;
use clawlink_common::db::executions::Unresolved;
use clawlink_common::ids::UserId;
use serde_json::json;

pub async fn resolve_connection(
    state: &AppState,
    user: UserId,
    tool: &ToolEntry,
    requested: Option<i64>,
) -> Result<Connection, ApiError> {
    // Batched with the lookups of concurrent calls (one statement per batch); the list
    // comes default first.
    let candidates = state.connection_lookups.call((user, tool.provider.id.clone())).await?;
    let chosen = match requested {
        Some(id) => candidates.iter().find(|c| c.id.0 == id),
        None => candidates.iter().find(|c| c.is_default).or(match candidates.as_slice() {
            [only] => Some(only),
            _ => None,
        }),
    };
    match chosen {
        Some(c) if c.status != "needs_reauth" => Ok(c.clone()),
        chosen => Err(unresolved(
            tool,
            requested,
            &Unresolved { candidates: candidates.iter().map(|c| c.id).collect(), needs_reauth: chosen.map(|c| c.id) },
        )),
    }
}

/// What to do about a connection that must be reconnected: one text whether the api saw it
/// before queueing the call or the worker found out while running it.
pub fn reconnect_hint(provider_name: &str) -> String {
    format!("Reconnect {provider_name} in the ClawLink dashboard (ask the person to), then try again.")
}

/// The error for a call no usable connection answers: the one chosen must be reconnected
/// (401), the one named is not the user's (404), there is none (409) or several and no
/// default (409).
pub fn unresolved(tool: &ToolEntry, requested: Option<i64>, why: &Unresolved) -> ApiError {
    let integration = &tool.provider.id;
    let ids = || why.candidates.iter().map(|c| json!(c));
    if let Some(id) = why.needs_reauth {
        return ApiError::unauthorized(
            "needs_reauth",
            format!("The {} connection {id} must be reconnected before it can be used.", tool.provider.name),
        )
        .hint(reconnect_hint(&tool.provider.name))
        .with("connectionId", json!(id));
    }
    match requested {
        // Another user's id and a made-up id look the same: 404.
        Some(id) => {
            ApiError::not_found("connection_not_found", format!("You have no {integration} connection with id {id}."))
                .details(ids())
                .hint("GET /api/integrations lists your connections.")
        }
        None if why.candidates.is_empty() => ApiError::new(
            StatusCode::CONFLICT,
            "connection",
            "needs_connection",
            format!("Connect {} in ClawLink before using {}.", tool.provider.name, tool.name),
        )
        .hint("POST /api/connect/start with this integration gives the person a link to connect it.")
        .with("integration", json!(integration)),
        None => ApiError::new(
            StatusCode::CONFLICT,
            "connection",
            "ambiguous_connection",
            format!(
                "You have several {} connections and none is the default; say which with connectionId.",
                tool.provider.name
            ),
        )
        .details(ids())
        .with("integration", json!(integration)),
    }
}
