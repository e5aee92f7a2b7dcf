//! The device's grant as the api applies it: the refusals an agent reads, and the views
//! of the account (its connections, its tools) narrowed to what the grant reaches. The
//! rules themselves are `clawlink_common::grant`.

use crate::error::ApiError;
use crate::state::AppState;
use clawlink_common::catalog::ToolEntry;
use clawlink_common::codes::ErrorCode;
use clawlink_common::db::connections::Connection;
use clawlink_common::db::devices::DeviceAuth;
use clawlink_common::grant::Refusal;
use clawlink_common::ids::ConnectionId;
use serde_json::json;

/// Where the person widens a grant.
fn devices_url(state: &AppState) -> String {
    format!("{}/devices", state.config.public_web_url)
}

fn widen_hint(state: &AppState) -> String {
    format!("Ask the person to widen this device's grant on the ClawLink devices page ({}).", devices_url(state))
}

/// 403 `not_granted`: the tool is outside the device's grant.
pub fn tool_refused(state: &AppState, tool: &ToolEntry, why: Refusal) -> ApiError {
    let message = match why {
        Refusal::App => {
            format!("This device's grant does not include {}, so {} is not available.", tool.provider.name, tool.name)
        }
        Refusal::ReadOnly => {
            format!("This device's grant is read-only and {} changes data ({}).", tool.name, tool.tool.mode.as_str())
        }
        Refusal::Connection(id) => {
            format!("This device's grant does not include the {} connection {id}.", tool.provider.name)
        }
    };
    let mut e = ApiError::new(ErrorCode::NotGranted, message).hint(widen_hint(state));
    if let Refusal::Connection(id) = why {
        e = e.with("connectionId", json!(id));
    }
    e.with("integration", json!(tool.provider.id))
}

/// Refuses a tool outside the grant.
pub fn check_tool(state: &AppState, device: &DeviceAuth, tool: &ToolEntry) -> Result<(), ApiError> {
    device.grant.check_tool(tool).map_err(|why| tool_refused(state, tool, why))
}

/// Refuses a connection of the tool's app that the grant does not include.
pub fn check_connection(
    state: &AppState,
    device: &DeviceAuth,
    tool: &ToolEntry,
    connection: ConnectionId,
) -> Result<(), ApiError> {
    if device.grant.allows_connection(&tool.provider.id, connection) {
        Ok(())
    } else {
        Err(tool_refused(state, tool, Refusal::Connection(connection)))
    }
}

/// 403 `grant_expired`, for every agent endpoint once the grant's time is up.
pub fn expired(state: &AppState) -> ApiError {
    ApiError::new(ErrorCode::GrantExpired, "This device's grant has expired; it can do nothing until it is extended.")
        .hint(format!(
            "Ask the person to extend this device's grant on the ClawLink devices page ({}).",
            devices_url(state)
        ))
}

/// 403 `grant_budget_exhausted`: every call the budget allowed has been made.
pub fn budget_exhausted(state: &AppState, device: &DeviceAuth) -> ApiError {
    let budget = device.grant.call_budget.unwrap_or_default();
    ApiError::new(
        ErrorCode::GrantBudgetExhausted,
        format!("This device has made all {budget} calls its grant allows; nothing was queued."),
    )
    .hint(format!(
        "Ask the person to raise this device's call budget on the ClawLink devices page ({}).",
        devices_url(state)
    ))
    .with("callBudget", json!(budget))
}

/// The connections the grant lets the device see and use.
pub fn visible(device: &DeviceAuth, connections: Vec<Connection>) -> Vec<Connection> {
    if device.grant.apps.is_none() {
        return connections;
    }
    connections.into_iter().filter(|c| device.grant.allows_connection(&c.integration, c.id)).collect()
}
