//! Faults a test asks the emulator to inject: an error status (optionally with
//! `Retry-After`), a slow response, or a connection dropped mid-response.
//!
//! This module owns what a fault is, which request it matches and the response it
//! turns into. When a fault applies (after auth, before the handler) is the gate's
//! business, not this module's.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use serde::{Deserialize, Serialize};

use crate::error::error_body;

/// A fault to inject into matching provider requests.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// HTTP method to match, e.g. `"POST"` (case-insensitive); `None` matches any.
    #[serde(default)]
    pub method: Option<String>,
    /// Exact request path to match, e.g. `"/notes"` (no query string); `None` matches any.
    #[serde(default)]
    pub path: Option<String>,
    pub kind: FaultKind,
    /// How many matching requests the fault applies to before it is removed.
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// What an applied fault does to the request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status instead of running the handler.
    Status {
        status: u16,
        /// Raw `Retry-After` header value: delay seconds or an HTTP-date.
        #[serde(default, alias = "retryAfter")]
        retry_after: Option<String>,
        /// JSON body; `None` sends a provider-style `{"error":{"message":…}}`.
        #[serde(default)]
        body: Option<serde_json::Value>,
        /// Extra response headers, e.g. rate-limit reset headers.
        #[serde(default)]
        headers: Vec<(String, String)>,
    },
    /// Sleep this long, then serve the request normally.
    Delay { ms: u64 },
    /// Send a `200` status line and headers, then abort the body and close the
    /// connection, so the client sees a network error while reading the response.
    Drop,
    /// Run the handler (the write happens and is counted), then cut the answer off as
    /// [`FaultKind::Drop`] does: the client cannot know the write happened.
    DropAfter,
    /// Run the handler, then hold its answer this long (past the client's timeout, the
    /// write happened and the client never hears of it).
    DelayAfter { ms: u64 },
}

/// How long a dropped response stays open after its headers, so that they reach the
/// client before the connection is cut.
const DROP_AFTER: Duration = Duration::from_millis(5);

impl Fault {
    /// Whether this fault applies to a request with this method and path.
    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.as_deref().is_none_or(|p| p == path)
    }

    /// Check that the fault can be turned into a response, so a mistake surfaces when
    /// the fault is added rather than as a puzzling response later.
    pub fn validate(&self) -> Result<(), String> {
        let FaultKind::Status { status, retry_after, headers, .. } = &self.kind else {
            return Ok(());
        };
        StatusCode::from_u16(*status).map_err(|_| format!("{status} is not an HTTP status"))?;
        if let Some(value) = retry_after {
            HeaderValue::from_str(value).map_err(|_| format!("retry_after {value:?} is not a valid header value"))?;
        }
        for (name, value) in headers {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a valid header name"))?;
            HeaderValue::from_str(value)
                .map_err(|_| format!("header {name}: {value:?} is not a valid header value"))?;
        }
        Ok(())
    }
}

/// What the gate does with a request once a fault has been taken.
pub(crate) enum Injection {
    /// Answer with this response; the handler does not run.
    Respond(Response),
    /// Wait, then run the handler.
    Delay(Duration),
    /// Run the handler, then answer with this instead of its response.
    After(AfterHandler),
}

/// What becomes of the handler's own response.
pub(crate) enum AfterHandler {
    Drop,
    Delay(Duration),
}

/// Marks a response whose body will be cut off, so the request log can say so.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dropped;

impl FaultKind {
    pub(crate) fn injection(self) -> Injection {
        match self {
            FaultKind::Status { status, retry_after, body, headers } => {
                Injection::Respond(status_response(status, retry_after, body, headers))
            }
            FaultKind::Delay { ms } => Injection::Delay(Duration::from_millis(ms)),
            FaultKind::Drop => Injection::Respond(dropped_response()),
            FaultKind::DropAfter => Injection::After(AfterHandler::Drop),
            FaultKind::DelayAfter { ms } => Injection::After(AfterHandler::Delay(Duration::from_millis(ms))),
        }
    }
}

fn status_response(
    status: u16,
    retry_after: Option<String>,
    body: Option<serde_json::Value>,
    headers: Vec<(String, String)>,
) -> Response {
    // Faults are validated when added; anything invalid here is skipped rather than
    // turning the emulator's own response into a panic.
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match body {
        Some(body) => (status, axum::Json(body)).into_response(),
        None => error_body(status, &format!("injected fault: {status}")),
    };
    let response_headers = response.headers_mut();
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response_headers.insert(header::RETRY_AFTER, value);
    }
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            response_headers.append(name, value);
        }
    }
    response
}

/// A `200` whose chunked body starts, stalls briefly, then fails: hyper then closes the
/// connection without the final chunk, which every client reports as an error.
pub(crate) fn dropped_response() -> Response {
    let start = stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"{\"")) });
    let abort = stream::once(async {
        tokio::time::sleep(DROP_AFTER).await;
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "emulator fault: connection dropped"))
    });
    let mut response = Response::new(Body::from_stream(start.chain(abort)));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.extensions_mut().insert(Dropped);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_json_uses_the_documented_shape() {
        let fault: Fault = serde_json::from_value(serde_json::json!({
            "method": "POST",
            "path": "/notes",
            "kind": {"type": "status", "status": 429, "retryAfter": "2"},
        }))
        .unwrap_or_else(|e| panic!("fault should parse: {e}"));
        assert_eq!(fault.times, 1);
        assert!(fault.matches("post", "/notes"));
        assert!(!fault.matches("GET", "/notes"));
        assert!(!fault.matches("POST", "/notes/note_1"));

        let drop: Fault = serde_json::from_value(serde_json::json!({"kind": {"type": "drop"}, "times": 3}))
            .unwrap_or_else(|e| panic!("fault should parse: {e}"));
        assert!(matches!(drop.kind, FaultKind::Drop));
        assert!(drop.matches("DELETE", "/anything"));
    }

    #[test]
    fn invalid_status_is_refused() {
        let fault = Fault {
            method: None,
            path: None,
            kind: FaultKind::Status { status: 1000, retry_after: None, body: None, headers: vec![] },
            times: 1,
        };
        assert!(fault.validate().is_err());
    }
}
