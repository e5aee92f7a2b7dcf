//! The web front's one error type, rendered as an HTML page. Internal errors are logged
//! with their cause and shown as a short message with a reference.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub signed_in_as: Option<String>,
    pub csrf: String,
    pub heading: String,
    pub message: String,
    pub is_error: bool,
    pub link: Option<(String, String)>,
}

impl MessagePage {
    pub fn info(heading: &str, message: &str) -> Self {
        Self {
            signed_in_as: None,
            csrf: String::new(),
            heading: heading.into(),
            message: message.into(),
            is_error: false,
            link: None,
        }
    }
}

#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub heading: &'static str,
    pub message: String,
    /// Seconds to send as `Retry-After` (a 429 or 503).
    pub retry_after: Option<u64>,
}

impl WebError {
    pub fn new(status: StatusCode, heading: &'static str, message: impl Into<String>) -> Self {
        Self { status, heading, message: message.into(), retry_after: None }
    }

    /// 429: `what` (a sentence) may be tried again after `wait`, which the page and
    /// `Retry-After` both say.
    pub fn too_many(what: &str, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let when = match secs {
            ..=90 => format!("{secs} seconds"),
            _ => format!("{} minutes", secs.div_ceil(60)),
        };
        let mut e =
            Self::new(StatusCode::TOO_MANY_REQUESTS, "Too many attempts", format!("{what} Try again in {when}."));
        e.retry_after = Some(secs);
        e
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", "There is nothing at this address.")
    }

    pub fn forbidden_form() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form could not be verified (it may be stale, or sent from another site). Go back, reload the page and try again.",
        )
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let reference =
            clawlink_common::telemetry::current_request_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        tracing::error!(%reference, error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            format!("Something went wrong on our side. Try again; if it persists, mention reference {reference}."),
        )
    }
}

impl From<sqlx::Error> for WebError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %err, "database unavailable");
                WebError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "ClawLink cannot reach its database right now. Try again in a moment.",
                )
            }
            other => WebError::internal(other),
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(err: askama::Error) -> Self {
        WebError::internal(err)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let page = MessagePage {
            signed_in_as: None,
            csrf: String::new(),
            heading: self.heading.into(),
            message: self.message,
            is_error: true,
            link: Some(("/".into(), "Back to ClawLink".into())),
        };
        let mut response = match page.render() {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(_) => (self.status, self.heading).into_response(),
        };
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// Renders a template into a response.
pub fn page(template: &impl Template) -> Result<Response, WebError> {
    Ok(Html(template.render()?).into_response())
}
