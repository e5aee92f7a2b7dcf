//! Refuses text with NUL in it before any handler sees it: Postgres cannot store NUL in
//! text, so a form field or query value holding `%00` would otherwise end in a 500 at the
//! first insert or filter.

use crate::error::WebError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The largest form this front reads (axum's default body limit).
const MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

fn refused() -> Response {
    WebError::new(StatusCode::BAD_REQUEST, "Not accepted", "Text cannot contain the NUL character.").into_response()
}

pub async fn refuse_nul(request: Request, next: Next) -> Response {
    if request.uri().query().is_some_and(|q| q.contains("%00")) {
        return refused();
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return WebError::new(StatusCode::PAYLOAD_TOO_LARGE, "Too large", "This form is too large.").into_response();
    };
    if bytes.windows(3).any(|w| w == b"%00") || bytes.contains(&0) {
        return refused();
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}
