//! The api's routes, one module per resource.

pub mod connect;
pub mod execute;
pub mod executions;
pub mod health;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod pairing;
pub mod tools;
pub mod whoami;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use clawlink_common::codes::ErrorCode;

/// Declares every route once: the router is built from this table and so is the OpenAPI
/// document (`/api/openapi.json`), so the two cannot drift apart.
macro_rules! api_routes {
    ($( $method:ident $path:literal => $handler:path, auth: $auth:literal, $summary:literal; )*) => {
        fn with_routes(router: Router<AppState>) -> Router<AppState> {
            router $( .route($path, $method($handler)) )*
        }

        /// (method, path, needs a device credential, summary) of every route.
        pub const ROUTES: &[(&str, &str, bool, &str)] = &[ $( (stringify!($method), $path, $auth, $summary) ),* ];
    };
}

api_routes! {
    get "/healthz" => health::healthz, auth: false, "The process is alive.";
    get "/readyz" => health::readyz, auth: false, "Postgres, RabbitMQ and Redis answer.";
    get "/metrics" => metrics::metrics, auth: false, "Prometheus metrics (OpenMetrics text).";
    get "/api/openapi.json" => openapi::document, auth: false, "This document.";
    post "/api/openclaw/pair/start" => pairing::start, auth: false, "Start pairing an agent; the person approves at pairUrl.";
    get "/api/openclaw/pair/sessions/{token}" => pairing::status, auth: false, "A pairing session's state (poll no faster than pollIntervalMs).";
    post "/api/openclaw/pair/sessions/{token}/exchange" => pairing::exchange, auth: false, "Exchange the verifier for the device credential (repeatable until finalize).";
    post "/api/openclaw/pair/sessions/{token}/finalize" => pairing::finalize, auth: false, "Confirm the credential is saved; the server keeps only its hash.";
    get "/api/agent/whoami" => whoami::whoami, auth: true, "Who this credential belongs to.";
    post "/api/mcp" => mcp::mcp, auth: true, "Model Context Protocol (streamable HTTP, JSON-RPC 2.0; errors of its transport are JSON-RPC errors).";
    post "/api/connect/start" => connect::start, auth: true, "Get a link where the person connects an app (or the existing connection).";
    get "/api/connect/sessions/{token}" => connect::status, auth: true, "A connect session's state and, once connected, the connection.";
    get "/api/catalog" => tools::catalog, auth: true, "Every integration of the catalog.";
    get "/api/integrations" => tools::integrations, auth: true, "The caller's connections.";
    get "/api/tools" => tools::list, auth: true, "Every tool, or one page (limit, cursor; nextCursor) filtered by integration (one or a comma list) and connected=true.";
    get "/api/tools/search" => tools::search_tools, auth: true, "Tools ranked for a natural-language query (integration, connected=true, limit up to 25).";
    get "/api/tools/{name}" => tools::describe, auth: true, "One tool with its guidance and the caller's connections.";
    post "/api/tools/{name}/preview" => tools::preview, auth: true, "Validate a call and show what it would do, without doing it; for a tool that needs confirmation, the approvalToken of exactly this call.";
    post "/api/tools/{name}/execute" => execute::execute, auth: true, "Execute a tool call (sync, or async with \"async\": true); approvalToken when the approval policy asks for one.";
    get "/api/executions/{id}" => executions::get_execution, auth: true, "An execution's state and result (long-poll with waitMs).";
}

/// Gives every request an id (the caller's sane `x-request-id`, or a new one) and a span
/// that carries it; see `clawlink_common::telemetry::traced`.
async fn request_id(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    clawlink_common::telemetry::traced("api", &route, request, |r| next.run(r)).await
}

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    with_routes(Router::new())
        .fallback(|| async { ApiError::new(ErrorCode::RouteNotFound, "There is no such endpoint.") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "This endpoint does not accept that method.")
        })
        .layer(axum::middleware::map_response(envelope_plain_errors))
        // One check of every body, on every route (`crate::body`).
        .layer(axum::middleware::map_request(crate::body::guard))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::layer))
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

/// Puts an error that is not JSON yet (axum's own rejections of a bad path or query
/// string, such as `?waitMs=-2`) into the error envelope, so every error an agent gets is
/// the JSON of CONTRACT.md. A plain-text 5xx is a fault of ours (a missing extension, a
/// layer's failure): its text is logged as the cause and the agent gets the request id,
/// never the text.
async fn envelope_plain_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::http::header::CONTENT_TYPE;
    use axum::response::IntoResponse;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let bytes = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if status.is_server_error() {
        return ApiError::internal(format_args!("a plain-text {status} below the handlers: {text:?}"))
            .with_status(status)
            .into_response();
    }
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("Bad request") } else { text };
    ApiError::new(ErrorCode::InvalidRequest, message).with_status(status).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::Value;

    /// A layer or extractor that answers a plain-text 5xx (here: a missing extension's
    /// kind of text) gets the internal-error envelope: the request id, retryable, and not
    /// one word of the text.
    #[tokio::test]
    async fn a_plain_text_5xx_becomes_an_internal_error_with_the_request_id() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    (StatusCode::INTERNAL_SERVER_ERROR, "Missing request extension: pool at 10.1.2.3:5432 closed")
                }),
            )
            .layer(axum::middleware::map_response(envelope_plain_errors));
        let request = axum::http::Request::builder()
            .uri("/boom")
            .header("x-request-id", "req-plain-500")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = clawlink_common::telemetry::traced("api", "/boom", request, |r| {
            use tower::ServiceExt;
            async move { app.oneshot(r).await.unwrap() }
        })
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "internal_error", "{body}");
        assert_eq!(body["error"]["retryable"], true, "{body}");
        assert_eq!(body["error"]["requestId"], "req-plain-500", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("req-plain-500"), "{body}");
        assert!(!body.to_string().contains("10.1.2.3") && !body.to_string().contains("extension"), "{body}");
    }
}
