//! Refuses text Postgres cannot store, or that is not text, before any handler sees it:
//! NUL (`%00`) anywhere, and bytes that do not decode as UTF-8 (`%FF`, or raw), in the
//! path, the query string or a form body. Each is a 400 page. Without this, NUL ended in a
//! 500 at the first insert or filter, and invalid UTF-8 was silently turned into U+FFFD
//! (an email address or label stored other than typed).

use crate::error::WebError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The largest form this front reads (axum's default body limit).
const MAX_FORM_BYTES: usize = 2 * 1024 * 1024;

fn refused(what: &str) -> Response {
    WebError::new(StatusCode::BAD_REQUEST, "Not accepted", format!("{what} Go back and change it.")).into_response()
}

/// Why `encoded` (a path, a query string or an `application/x-www-form-urlencoded`
/// body) cannot be taken as text, if it cannot.
fn problem(encoded: &[u8]) -> Option<&'static str> {
    let decoded: Vec<u8> = percent_encoding::percent_decode(encoded).collect();
    if decoded.contains(&0) {
        Some("Text cannot contain the NUL character.")
    } else if std::str::from_utf8(&decoded).is_err() {
        Some("This text is not valid UTF-8.")
    } else {
        None
    }
}

pub async fn refuse_unstorable(request: Request, next: Next) -> Response {
    let uri = request.uri();
    if let Some(why) = problem(uri.path().as_bytes()).or_else(|| uri.query().and_then(|q| problem(q.as_bytes()))) {
        return refused(why);
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
    if let Some(why) = problem(&bytes) {
        return refused(why);
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

#[cfg(test)]
mod tests {
    use super::problem;

    #[test]
    fn nul_and_invalid_utf8_are_found_encoded_or_raw() {
        assert_eq!(problem(b"email=a%40b.test&name=J%C3%BCrgen+M"), None);
        assert!(problem(b"x=a%00b").is_some() && problem(b"x=a\0b").is_some());
        assert!(problem(b"x=%FF").is_some() && problem(b"x=\xff").is_some() && problem(b"x=%C3").is_some());
        assert_eq!(problem(b"/pair/abc"), None);
        assert!(problem(b"/pair/%FF").is_some());
    }
}
