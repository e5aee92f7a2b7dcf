//! The web front's pages, one module per page family.

pub mod account;
pub mod billing;
pub mod connect;
pub mod connections;
pub mod devices;
pub mod executions;
pub mod pairing;

use crate::AppState;
use crate::error::{WebError, page};
use crate::session::MaybeUser;
use askama::Template;
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    signed_in_as: Option<String>,
    csrf: String,
}

async fn home(MaybeUser(user): MaybeUser) -> Result<Response, WebError> {
    let csrf = user.as_ref().map(|u| u.csrf_token.clone()).unwrap_or_default();
    page(&Home { signed_in_as: user.map(|u| u.email), csrf })
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/style.css"),
    )
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, clawlink_common::metrics::CONTENT_TYPE)], state.metrics.encode())
}

/// Counts every request by route template and status.
async fn record(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use clawlink_common::metrics::{HttpLabels, RouteLabels};
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.metrics.http_requests.get_or_create(&HttpLabels { service: "web", route: route.clone(), status }).inc();
    state
        .metrics
        .http_duration
        .get_or_create(&RouteLabels { service: "web", route })
        .observe(started.elapsed().as_secs_f64());
    response
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/static/style.css", get(stylesheet))
        .route("/signup", get(account::sign_up_form).post(account::sign_up))
        .route("/signin", get(account::sign_in_form).post(account::sign_in))
        .route("/signout", post(account::sign_out))
        .route("/pair/{token}", get(pairing::show).post(pairing::decide))
        .route("/connections", get(connections::list))
        .route("/connections/new", get(connections::new_form).post(connections::start))
        .route("/connections/{id}/rename", post(connections::rename))
        .route("/connections/{id}/default", post(connections::make_default))
        .route("/connections/{id}/reconnect", post(connections::reconnect))
        .route("/connections/{id}/delete", get(connections::confirm_delete).post(connections::delete))
        .route("/connect/{token}", get(connect::show).post(connect::submit_key))
        .route("/oauth/callback", get(connect::callback))
        .route("/billing", get(billing::show))
        .route("/billing/checkout", post(billing::checkout))
        .route("/billing/webhook", post(billing::webhook))
        .route("/executions", get(executions::list))
        .route("/executions/{id}", get(executions::detail))
        .route("/devices", get(devices::list))
        .route("/devices/{id}/revoke", post(devices::revoke))
        .route("/metrics", get(metrics))
        .fallback(|| async { WebError::not_found() })
        .layer(axum::middleware::from_fn(crate::nul::refuse_nul))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}
