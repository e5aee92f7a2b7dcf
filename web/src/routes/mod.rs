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
        .fallback(|| async { WebError::not_found() })
        .with_state(state)
}
