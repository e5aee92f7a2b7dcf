//! The provider-style error body every emulated API answers with:
//! `{"error":{"message":"…"}}`. Providers whose real error shape differs build their own.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A JSON error response in the shared `{"error":{"message":…}}` shape.
pub(crate) fn error_body(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": {"message": message}}))).into_response()
}

/// Fallback for any route no provider or the control plane serves.
pub(crate) async fn no_such_route() -> Response {
    error_body(StatusCode::NOT_FOUND, "no such route")
}

/// Fallback for a known path called with a method it does not serve.
pub(crate) async fn method_not_allowed() -> Response {
    error_body(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}
