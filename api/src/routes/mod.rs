//! The api's routes, one module per resource.

pub mod connection;
pub mod execute;
pub mod executions;
pub mod health;
pub mod mcp;
pub mod pairing;
pub mod tools;
pub mod view;
pub mod whoami;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/openclaw/pair/start", post(pairing::start))
        .route("/api/openclaw/pair/sessions/{token}", get(pairing::status))
        .route("/api/openclaw/pair/sessions/{token}/exchange", post(pairing::exchange))
        .route("/api/openclaw/pair/sessions/{token}/finalize", post(pairing::finalize))
        .route("/api/agent/whoami", get(whoami::whoami))
        .route("/api/mcp", post(mcp::mcp))
        .route("/api/catalog", get(tools::catalog))
        .route("/api/integrations", get(tools::integrations))
        .route("/api/tools", get(tools::list))
        .route("/api/tools/search", get(tools::search_tools))
        .route("/api/tools/{name}", get(tools::describe))
        .route("/api/tools/{name}/preview", post(tools::preview))
        .route("/api/tools/{name}/execute", post(execute::execute))
        .route("/api/executions/{id}", get(executions::get_execution))
        .fallback(|| async { ApiError::not_found("route_not_found", "There is no such endpoint.") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "validation",
                "method_not_allowed",
                "This endpoint does not accept that method.",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
