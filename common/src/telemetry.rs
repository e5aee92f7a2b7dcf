//! Tracing set-up shared by the binaries: JSON lines when `CLAWLINK_LOG_FORMAT=json`
//! (what a log pipeline wants), readable text otherwise; `RUST_LOG` filters.
//!
//! Knows nothing about what is logged. Never log a secret: the types that hold secrets
//! print `[redacted]`.

use tracing_subscriber::EnvFilter;

pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("CLAWLINK_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let result = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    // A second init (tests running several services in one process) keeps the first.
    let _ = result;
}

/// The header that carries a request's id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    /// The id of the HTTP request this task is answering (set by [`traced`]).
    static REQUEST_ID: String;
}

/// The id of the request being answered, when called inside [`traced`].
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A caller's `x-request-id` when it is sane (1 to 128 characters of letters, digits and
/// `-_.:/+=@`), so a log line or an error body never carries someone's junk or a header
/// injection; otherwise a new one.
pub fn accept_request_id(incoming: Option<&http::HeaderValue>) -> String {
    let sane = |v: &str| {
        (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
    };
    match incoming.and_then(|v| v.to_str().ok()) {
        Some(v) if sane(v) => v.to_string(),
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// Answers one HTTP request inside a `request` span that carries its id (and, once a
/// handler records it, the `execution_id`), so every log line of the request names it;
/// returns the id in `x-request-id`. `route` is the route template, never the concrete
/// path (paths can hold session tokens). Ends with one `request` log line: `info`, or
/// `debug` for probes and scrapes.
pub async fn traced<B, R, Fut>(
    service: &'static str,
    route: &str,
    mut request: http::Request<B>,
    next: impl FnOnce(http::Request<B>) -> Fut,
) -> http::Response<R>
where
    Fut: std::future::Future<Output = http::Response<R>>,
{
    use tracing::Instrument;
    let id = accept_request_id(request.headers().get(REQUEST_ID_HEADER));
    let value = http::HeaderValue::from_str(&id).expect("a sane request id is a valid header value");
    request.headers_mut().insert(REQUEST_ID_HEADER, value.clone());
    let span = tracing::info_span!(
        "request",
        service,
        request_id = %id,
        method = %request.method(),
        route,
        execution_id = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let probe = matches!(route, "/healthz" | "/readyz" | "/metrics");
    let mut response = REQUEST_ID
        .scope(id, async move {
            let response = next(request).await;
            let status = response.status().as_u16();
            let ms = started.elapsed().as_millis() as u64;
            if probe {
                tracing::debug!(status, ms, "request");
            } else {
                tracing::info!(status, ms, "request");
            }
            response
        })
        .instrument(span)
        .await;
    response.headers_mut().insert(REQUEST_ID_HEADER, value);
    response
}

/// Puts `execution_id` on the current request's span (a no-op outside one), so the
/// request's remaining log lines name the execution too.
pub fn record_execution_id(id: impl std::fmt::Display) {
    tracing::Span::current().record("execution_id", tracing::field::display(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_request_id_is_kept_and_anything_else_replaced() {
        let keep = http::HeaderValue::from_static("req-42_a.b:c");
        assert_eq!(accept_request_id(Some(&keep)), "req-42_a.b:c");
        for junk in ["has space", "quote\"", "", &"x".repeat(129)] {
            let v = http::HeaderValue::from_str(junk).unwrap();
            let got = accept_request_id(Some(&v));
            assert_ne!(got, junk);
            assert!(uuid::Uuid::parse_str(&got).is_ok(), "{got}");
        }
        assert!(uuid::Uuid::parse_str(&accept_request_id(None)).is_ok());
    }
}
