//! Plan and usage, checkout, and the payment provider's webhook.
//!
//! The webhook (`POST /billing/webhook`) is verified before anything else: header
//! `ClawLink-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the
//! shared secret, `t` within the tolerance window (default 300 s), and each event id is
//! processed once. Bad signatures, stale timestamps and replays are refused and logged.
//! Events: `checkout.completed` and `subscription.updated` move the user to
//! `data.plan`; `subscription.canceled` moves them back to the default (free) plan.

use crate::AppState;
use crate::error::{WebError, page};
use crate::session::{CsrfForm, SignedIn};
use askama::Template;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use clawlink_common::db::billing;
use clawlink_common::ids::UserId;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;

pub struct PlanView {
    pub id: String,
    pub name: String,
    pub monthly_calls: i64,
    pub max_connections: i32,
    pub price: String,
}

#[derive(Template)]
#[template(path = "billing.html")]
struct BillingPage {
    signed_in_as: Option<String>,
    csrf: String,
    plan_id: String,
    plan_name: String,
    calls: i64,
    allowance: i64,
    connections: i64,
    max_connections: i32,
    plans: Vec<PlanView>,
    checkout: bool,
    upgraded: bool,
}

#[derive(Debug, Deserialize)]
pub struct BillingQuery {
    #[serde(default)]
    upgraded: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Query(q): Query<BillingQuery>,
) -> Result<Response, WebError> {
    let mut conn = state.db.acquire().await?;
    let standing = billing::standing(&mut conn, user.user_id).await?;
    let plans = billing::plans(&mut conn)
        .await?
        .into_iter()
        .map(|p| PlanView {
            price: if p.price_cents == 0 {
                "free".into()
            } else {
                format!("${}.{:02} a month", p.price_cents / 100, p.price_cents % 100)
            },
            id: p.id,
            name: p.name,
            monthly_calls: p.monthly_calls,
            max_connections: p.max_connections,
        })
        .collect();
    page(&BillingPage {
        signed_in_as: Some(user.email),
        csrf: user.csrf_token,
        plan_id: standing.plan.id,
        plan_name: standing.plan.name,
        calls: standing.calls_this_month,
        allowance: standing.plan.monthly_calls,
        connections: standing.connections,
        max_connections: standing.plan.max_connections,
        plans,
        checkout: state.config.checkout_url.is_some(),
        upgraded: q.upgraded.is_some(),
    })
}

#[derive(Debug, Deserialize)]
pub struct CheckoutForm {
    #[serde(default)]
    plan: String,
}

/// Sends the person to the payment provider's checkout for `plan`.
pub async fn checkout(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    CsrfForm { fields: form, .. }: CsrfForm<CheckoutForm>,
) -> Result<Response, WebError> {
    let Some(base) = &state.config.checkout_url else { return Err(WebError::not_found()) };
    let mut conn = state.db.acquire().await?;
    if !billing::plans(&mut conn).await?.iter().any(|p| p.id == form.plan) {
        return Err(WebError::not_found());
    }
    let web = &state.config.public_web_url;
    let mut url = url::Url::parse(base).map_err(WebError::internal)?;
    url.query_pairs_mut()
        .append_pair("plan", &form.plan)
        .append_pair("client_reference_id", &user.user_id.to_string())
        .append_pair("success_url", &format!("{web}/billing?upgraded=1"))
        .append_pair("cancel_url", &format!("{web}/billing"));
    Ok(Redirect::to(url.as_str()).into_response())
}

/// Checks `ClawLink-Signature` over the raw body. Returns why it is refused.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), &'static str> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let t = timestamp.ok_or("no timestamp")?;
    if (now - t).abs() > tolerance_secs {
        return Err("timestamp outside the tolerance window");
    }
    for sig in signatures {
        let Ok(bytes) = hex::decode(sig) else { continue };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        // verify_slice compares in constant time.
        if mac.verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err("signature does not match")
}

/// Signs a webhook body (for the emulator and tests): the header value.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: EventData,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventData {
    user_id: Option<i64>,
    plan: Option<String>,
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, Json(json!({"ok": false, "error": reason}))).into_response()
}

pub async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, WebError> {
    let Some(secret) = &state.config.webhook_secret else {
        tracing::warn!("billing webhook received but CLAWLINK_BILLING_WEBHOOK_SECRET is not set");
        return Ok(refuse(StatusCode::SERVICE_UNAVAILABLE, "webhooks are not configured"));
    };
    let header = headers.get("clawlink-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if let Err(reason) = verify_signature(
        secret.expose().as_bytes(),
        header,
        &body,
        now,
        state.config.webhook_tolerance.as_secs() as i64,
    ) {
        tracing::warn!(reason, "billing webhook refused");
        return Ok(refuse(StatusCode::BAD_REQUEST, reason));
    }
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        tracing::warn!("billing webhook with an unreadable body refused");
        return Ok(refuse(StatusCode::BAD_REQUEST, "unreadable event"));
    };
    let mut tx = state.db.begin().await?;
    if !billing::record_event(&mut tx, &event.id, &event.kind).await? {
        tracing::warn!(event_id = %event.id, "billing webhook replay refused");
        return Ok((StatusCode::OK, Json(json!({"ok": true, "duplicate": true}))).into_response());
    }
    let plan = match event.kind.as_str() {
        "checkout.completed" | "subscription.updated" => event.data.plan.clone(),
        "subscription.canceled" => Some("free".to_string()),
        other => {
            tracing::info!(event_type = other, "billing event ignored");
            tx.commit().await?;
            return Ok((StatusCode::OK, Json(json!({"ok": true, "ignored": true}))).into_response());
        }
    };
    let (Some(user), Some(plan)) = (event.data.user_id, plan) else {
        return Ok(refuse(StatusCode::UNPROCESSABLE_ENTITY, "the event names no user or plan"));
    };
    if !billing::change_plan(&mut tx, UserId(user), &plan, &format!("webhook:{}", event.id)).await? {
        return Ok(refuse(StatusCode::UNPROCESSABLE_ENTITY, "unknown user or plan"));
    }
    tx.commit().await?;
    tracing::info!(user_id = user, plan = %plan, event_id = %event.id, "plan changed by payment event");
    Ok((StatusCode::OK, Json(json!({"ok": true}))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(b"s3cret", 1_000, body);
        assert_eq!(verify_signature(b"s3cret", &header, body, 1_010, 300), Ok(()));
        assert_eq!(verify_signature(b"other", &header, body, 1_010, 300), Err("signature does not match"));
        assert_eq!(
            verify_signature(b"s3cret", &header, b"{\"id\":\"evt_2\"}", 1_010, 300),
            Err("signature does not match")
        );
        assert_eq!(
            verify_signature(b"s3cret", &header, body, 2_000, 300),
            Err("timestamp outside the tolerance window")
        );
        assert_eq!(verify_signature(b"s3cret", "v1=00", body, 1_000, 300), Err("no timestamp"));
    }
}
