//! The web front's pages, one module per page family.

pub mod account;
pub mod admin;
pub mod approvals;
pub mod audit;
pub mod billing;
pub mod connect;
pub mod connections;
pub mod devices;
pub mod executions;
pub mod grants;
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
    is_admin: bool,
}

async fn home(MaybeUser(user): MaybeUser) -> Result<Response, WebError> {
    let csrf = user.as_ref().map(|u| u.csrf_token.clone()).unwrap_or_default();
    let is_admin = user.as_ref().is_some_and(|u| u.is_admin);
    page(&Home { signed_in_as: user.map(|u| u.email), csrf, is_admin })
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/style.css"),
    )
}

async fn admin_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/admin.js"),
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

/// Gives every request an id (the caller's sane `x-request-id`, or a new one) and a span
/// that carries it; see `clawlink_common::telemetry::traced`.
async fn request_id(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    clawlink_common::telemetry::traced("web", &route, request, |r| next.run(r)).await
}

/// Ready when Postgres answers (the web front needs nothing else).
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let db = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.db).await.is_ok();
    let status = if db { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(serde_json::json!({"ok": db, "postgres": db}))).into_response()
}

/// On every answer, pages, errors and refusals from any layer alike: no other site may
/// frame these pages (clickjacking the approve button; `frame-ancestors` for current
/// browsers, `X-Frame-Options` for old ones), a file is never sniffed into another type,
/// and a link followed to another site does not carry the page's address (pairing and
/// connect URLs hold their session token).
async fn security_headers(mut response: Response) -> Response {
    use axum::http::HeaderValue;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/static/style.css", get(stylesheet))
        .route("/static/admin.js", get(admin_script))
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
        .route("/devices/{id}/policy", post(devices::set_policy))
        .route("/devices/{id}/grant", get(devices::grant_form).post(devices::set_grant))
        .route("/audit", get(audit::list))
        .route("/audit.jsonl", get(audit::export))
        .route("/approvals", get(approvals::inbox))
        .route("/approvals/policy", post(approvals::set_policy))
        .route("/approvals/{id}/approve", post(approvals::approve))
        .route("/approvals/{id}/deny", post(approvals::deny))
        .route("/admin/queues", get(admin::queues))
        .route("/admin/queues.json", get(admin::stats))
        .route("/admin/dead-letters/{id}/replay", post(admin::replay))
        .route("/admin/dead-letters/{id}/discard", post(admin::discard))
        .route("/metrics", get(metrics))
        .fallback(|| async { WebError::not_found() })
        .layer(axum::middleware::from_fn(crate::text::refuse_unstorable))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record))
        .layer(axum::middleware::from_fn(request_id))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}
