//! The devices page: every paired agent credential, and revoking one.

use crate::AppState;
use crate::error::{WebError, page};
use crate::routes::grants::{self, Picker};
use crate::session::{CsrfForm, NoFields, SignedIn};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use clawlink_common::audit;
use clawlink_common::db::devices;
use clawlink_common::ids::DeviceId;
use std::collections::HashMap;

pub struct DeviceView {
    pub id: i64,
    pub label: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub revoked: bool,
    /// The device's own approval policy; empty: the account's.
    pub policy: String,
    /// What its grant reaches, in a line.
    pub grant: String,
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    signed_in_as: Option<String>,
    csrf: String,
    devices: Vec<DeviceView>,
    policies: Vec<(&'static str, &'static str)>,
    account_policy: &'static str,
}

fn when(t: Option<time::OffsetDateTime>) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&format).ok()).unwrap_or_else(|| "never".into())
}

pub async fn list(State(state): State<AppState>, SignedIn(user): SignedIn) -> Result<Response, WebError> {
    let mut conn = state.db.acquire().await?;
    let rows = devices::list_for_user(&mut conn, user.user_id).await?;
    let account_policy =
        clawlink_common::db::users::approval_policy(&mut conn, user.user_id).await?.unwrap_or_default();
    let devices = rows
        .into_iter()
        .map(|d| DeviceView {
            id: d.id.0,
            label: d.label,
            prefix: d.token_prefix,
            created: when(Some(d.created_at)),
            last_used: when(d.last_used_at),
            revoked: d.revoked_at.is_some(),
            policy: d.approval_policy.map(|p| p.as_str().to_string()).unwrap_or_default(),
            grant: d.grant.describe(),
        })
        .collect();
    page(&DevicesPage {
        signed_in_as: Some(user.email),
        csrf: user.csrf_token,
        devices,
        policies: crate::routes::approvals::policy_choices(),
        account_policy: account_policy.as_str(),
    })
}

pub async fn revoke(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<i64>,
    _: CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    let mut tx = state.db.begin().await?;
    // Another person's device id is "not found", like an unknown one.
    let Some(device) = devices::get_for_user(&mut tx, user.user_id, DeviceId(id)).await? else {
        return Err(WebError::not_found());
    };
    if devices::revoke(&mut tx, user.user_id, DeviceId(id)).await? {
        let subject = format!("device:{id}");
        let details = serde_json::json!({"label": device.label});
        audit::record(&mut tx, &audit::Event::by_person(user.user_id, audit::DEVICE_REVOKED, &subject, details))
            .await?;
        tx.commit().await?;
        tracing::info!(user_id = %user.user_id, device_id = id, "device revoked");
    }
    Ok(Redirect::to("/devices").into_response())
}

/// Sets the device's own approval policy; an empty choice makes it follow the account's.
pub async fn set_policy(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<i64>,
    CsrfForm { fields, .. }: CsrfForm<crate::routes::approvals::PolicyForm>,
) -> Result<Response, WebError> {
    let policy = match fields.policy.as_str() {
        "" | "account" => None,
        other => Some(crate::routes::approvals::parse_policy(other)?),
    };
    let mut tx = state.db.begin().await?;
    // Another person's device id is "not found", like an unknown one.
    if !devices::set_approval_policy(&mut tx, user.user_id, DeviceId(id), policy).await? {
        return Err(WebError::not_found());
    }
    let subject = format!("device:{id}");
    let details = serde_json::json!({"policy": policy.map(|p| p.as_str())});
    audit::record(&mut tx, &audit::Event::by_person(user.user_id, audit::DEVICE_POLICY_CHANGED, &subject, details))
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, device_id = id, policy = ?policy.map(|p| p.as_str()), "device approval policy set");
    Ok(Redirect::to("/devices").into_response())
}

#[derive(Template)]
#[template(path = "device_grant.html")]
struct GrantPage {
    signed_in_as: Option<String>,
    csrf: String,
    id: i64,
    label: String,
    summary: String,
    picker: Picker,
}

/// The form that changes what a device may reach.
pub async fn grant_form(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let mut conn = state.db.acquire().await?;
    // Another person's device id is "not found", like an unknown one; so is a revoked one.
    let device = devices::get_for_user(&mut conn, user.user_id, DeviceId(id))
        .await?
        .filter(|d| d.revoked_at.is_none())
        .ok_or_else(WebError::not_found)?;
    let connections = grants::connections_of(&mut conn, user.user_id).await?;
    page(&GrantPage {
        signed_in_as: Some(user.email),
        csrf: user.csrf_token,
        id,
        label: device.label,
        summary: device.grant.describe(),
        picker: Picker::new(&state, &connections, &device.grant, true),
    })
}

/// Replaces the device's grant; it applies to the agent's next request (within a second).
pub async fn set_grant(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<i64>,
    CsrfForm { fields, .. }: CsrfForm<HashMap<String, String>>,
) -> Result<Response, WebError> {
    // The grant and its audit event commit together.
    let mut tx = state.db.begin().await?;
    let device = devices::get_for_user(&mut tx, user.user_id, DeviceId(id))
        .await?
        .filter(|d| d.revoked_at.is_none())
        .ok_or_else(WebError::not_found)?;
    let connections = grants::connections_of(&mut tx, user.user_id).await?;
    let grant = grants::parse(&state, &fields, &connections, Some(&device.grant))?;
    if !devices::set_grant(&mut tx, user.user_id, DeviceId(id), &grant).await? {
        return Err(WebError::not_found());
    }
    let subject = format!("device:{id}");
    let details = serde_json::json!({
        "label": device.label,
        "before": grants::audit_details(&device.grant),
        "after": grants::audit_details(&grant),
    });
    audit::record(&mut tx, &audit::Event::by_person(user.user_id, audit::GRANT_CHANGED, &subject, details)).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, device_id = id, "device grant changed");
    Ok(Redirect::to("/devices").into_response())
}
