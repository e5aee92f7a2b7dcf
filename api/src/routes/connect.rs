//! Connect sessions for agents (CONTRACT.md "Connections"): the agent asks for a link,
//! the person connects the app on the web front, the agent polls the session.

use crate::auth::AuthenticatedDevice;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use clawlink_common::codes::ErrorCode;
use clawlink_common::db::connect_sessions::{self, NewConnectSession};
use clawlink_common::db::connections::{self, Connection};
use clawlink_common::status::ConnectionStatus;
use clawlink_common::tokens;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use time::OffsetDateTime;

pub const CONNECT_TTL: Duration = Duration::from_secs(15 * 60);

fn rfc3339(t: Option<OffsetDateTime>) -> Value {
    t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .map(Value::String)
        .unwrap_or(Value::Null)
}

pub fn connection_view(c: &Connection) -> Value {
    json!({
        "id": c.id,
        "isDefault": c.is_default,
        "authState": c.status,
        "status": c.status,
        "connectionLabel": c.connection_label,
        "accountLabel": c.account_label,
        "expiresAt": rfc3339(c.token_expires_at),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartBody {
    #[serde(default)]
    pub integration: String,
    #[serde(default = "yes")]
    pub reuse_if_connected: bool,
}

fn yes() -> bool {
    true
}

pub async fn start(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<Json<Value>, ApiError> {
    let Some(provider) = state.catalog.provider(&body.integration) else {
        let mut e = ApiError::new(
            ErrorCode::IntegrationNotFound,
            format!("There is no integration named {:?}.", body.integration),
        )
        .hint("GET /api/catalog lists every integration.");
        if body.integration.is_empty() {
            e = ApiError::new(ErrorCode::InvalidArguments, "integration is required.");
            e.missing_fields = vec!["integration".into()];
        }
        return Err(e);
    };
    if !device.grant.allows_app(&provider.id) {
        return Err(ApiError::new(
            ErrorCode::NotGranted,
            format!("This device's grant does not include {}, so it cannot connect it.", provider.name),
        )
        .hint("Ask the person to connect it on the ClawLink dashboard, or to widen this device's grant there.")
        .with("integration", json!(provider.id)));
    }
    let mut conn = state.db.acquire().await?;
    if body.reuse_if_connected {
        let usable =
            crate::grants::visible(&device, connections::list_usable(&mut conn, device.user_id, &provider.id).await?);
        let active: Vec<_> = usable.iter().filter(|c| c.status == ConnectionStatus::Active).collect();
        let chosen = active.iter().find(|c| c.is_default).or(if active.len() == 1 { active.first() } else { None });
        if let Some(c) = chosen {
            return Ok(Json(
                json!({"alreadyConnected": true, "integration": provider.id, "connection": connection_view(c)}),
            ));
        }
    }
    let standing = clawlink_common::db::billing::standing(&mut conn, device.user_id).await?;
    if standing.connections >= i64::from(standing.plan.max_connections) {
        return Err(ApiError::new(
            ErrorCode::ConnectionLimitReached,
            format!(
                "The {} plan allows {} connections and all are in use.",
                standing.plan.name, standing.plan.max_connections
            ),
        )
        .hint("Ask the person to upgrade their plan, or to delete a connection they no longer need.")
        .with("upgradeUrl", json!(format!("{}/billing", state.config.public_web_url))));
    }
    let token = tokens::random_urlsafe(24);
    let code = tokens::display_code();
    let expires_at = OffsetDateTime::now_utc() + CONNECT_TTL;
    let id = connect_sessions::create(
        &mut conn,
        &NewConnectSession {
            token: &token,
            user: device.user_id,
            integration: &provider.id,
            reconnect: None,
            display_code: &code,
            expires_at,
        },
    )
    .await?;
    Ok(Json(json!({
        "sessionId": id,
        "sessionToken": token,
        "displayCode": code,
        "integration": provider.id,
        "status": "awaiting_user_action",
        "expiresAt": rfc3339(Some(expires_at)),
        "pollIntervalMs": 2000,
        "connectUrl": format!("{}/connect/{}", state.config.public_web_url, token),
        "statusUrl": format!("{}/api/connect/sessions/{}", state.config.public_api_url, token),
    })))
}

pub async fn status(
    State(state): State<AppState>,
    AuthenticatedDevice(device): AuthenticatedDevice,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = state.db.acquire().await?;
    let session = connect_sessions::get_for_user(&mut conn, device.user_id, &token).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::ConnectSessionNotFound, "There is no connect session with this token.")
    })?;
    let connection = match (session.effective_status(), session.connection_id) {
        ("connected", Some(id)) => {
            connections::get_for_user(&mut conn, device.user_id, id).await?.map(|c| connection_view(&c))
        }
        _ => None,
    };
    Ok(Json(json!({
        "session": {
            "token": session.token,
            "status": session.effective_status(),
            "integration": session.integration,
            "displayCode": session.display_code,
            "expiresAt": rfc3339(Some(session.expires_at)),
            "completedAt": rfc3339(session.completed_at),
            "errorMessage": session.error_message,
        },
        "connection": connection,
    })))
}
