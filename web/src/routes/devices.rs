//! The devices page: every paired agent credential, and revoking one.

use crate::AppState;
use crate::error::{WebError, page};
use crate::session::{CsrfForm, NoFields, SignedIn};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use clawlink_common::db::devices;
use clawlink_common::ids::DeviceId;

pub struct DeviceView {
    pub id: i64,
    pub label: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub revoked: bool,
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    signed_in_as: Option<String>,
    csrf: String,
    devices: Vec<DeviceView>,
}

fn when(t: Option<time::OffsetDateTime>) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&format).ok()).unwrap_or_else(|| "never".into())
}

pub async fn list(State(state): State<AppState>, SignedIn(user): SignedIn) -> Result<Response, WebError> {
    let mut conn = state.db.acquire().await?;
    let rows = devices::list_for_user(&mut conn, user.user_id).await?;
    let devices = rows
        .into_iter()
        .map(|d| DeviceView {
            id: d.id.0,
            label: d.label,
            prefix: d.token_prefix,
            created: when(Some(d.created_at)),
            last_used: when(d.last_used_at),
            revoked: d.revoked_at.is_some(),
        })
        .collect();
    page(&DevicesPage { signed_in_as: Some(user.email), csrf: user.csrf_token, devices })
}

pub async fn revoke(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<i64>,
    _: CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    let mut conn = state.db.acquire().await?;
    // Another person's device id is "not found", like an unknown one.
    if devices::get_for_user(&mut conn, user.user_id, DeviceId(id)).await?.is_none() {
        return Err(WebError::not_found());
    }
    if devices::revoke(&mut conn, user.user_id, DeviceId(id)).await? {
        tracing::info!(user_id = %user.user_id, device_id = id, "device revoked");
    }
    Ok(Redirect::to("/devices").into_response())
}
