//! A payment provider's hosted checkout: `GET /pay/checkout?plan&client_reference_id&
//! success_url&cancel_url` "takes the payment", announces it to the configured webhook
//! with a signed `checkout.completed` event, and sends the browser to `success_url`
//! (`cancel=1` sends it to `cancel_url` with no event). The signature is HMAC-SHA256 over
//! `"<unix seconds>.<body>"`, in `ClawLink-Signature: t=<seconds>,v1=<hex>`.

use crate::state::AppState;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use hmac::{Hmac, Mac};
use serde::Deserialize;

#[derive(Debug, Default)]
pub(crate) struct PaymentsData {
    webhook: Option<(String, String)>,
    next_event: u64,
    /// (event id, HTTP status the webhook answered), in order.
    pub deliveries: Vec<(String, u16)>,
}

impl PaymentsData {
    pub fn configure(&mut self, url: &str, secret: &str) {
        self.webhook = Some((url.to_string(), secret.to_string()));
    }
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/checkout", get(checkout))
}

#[derive(Debug, Deserialize)]
struct Checkout {
    plan: String,
    client_reference_id: i64,
    success_url: String,
    cancel_url: String,
    #[serde(default)]
    cancel: Option<String>,
}

fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn checkout(State(state): State<AppState>, Query(q): Query<Checkout>) -> Response {
    if q.cancel.is_some() {
        return Redirect::to(&q.cancel_url).into_response();
    }
    let (webhook, event_id) = {
        let mut world = state.world();
        let Some(webhook) = world.payments.webhook.clone() else {
            return (StatusCode::SERVICE_UNAVAILABLE, "payments are not configured in this emulator").into_response();
        };
        world.payments.next_event += 1;
        (webhook, format!("evt_emu_{}", world.payments.next_event))
    };
    let body = serde_json::json!({
        "id": event_id,
        "type": "checkout.completed",
        "data": {"userId": q.client_reference_id, "plan": q.plan},
    })
    .to_string();
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let signature = sign(webhook.1.as_bytes(), t, body.as_bytes());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let status = match reqwest::Client::new()
        .post(&webhook.0)
        .header("content-type", "application/json")
        .header("clawlink-signature", signature)
        .body(body)
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    };
    state.world().payments.deliveries.push((event_id, status));
    Redirect::to(&q.success_url).into_response()
}
