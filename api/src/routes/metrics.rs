//! `/metrics` and the middleware that counts every request by route and status.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clawlink_common::metrics::{HttpLabels, Metrics, RouteLabels};

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, clawlink_common::metrics::CONTENT_TYPE)], state.metrics.encode())
}

/// Records a request under its route template (`/api/tools/{name}/execute`), never its
/// concrete path, so label values stay bounded.
pub async fn record(metrics: &Metrics, service: &'static str, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics.http_requests.get_or_create(&HttpLabels { service, route: route.clone(), status }).inc();
    metrics.http_duration.get_or_create(&RouteLabels { service, route }).observe(started.elapsed().as_secs_f64());
    response
}

pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    record(&state.metrics, "api", request, next).await
}
