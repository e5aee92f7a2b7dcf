//! Records every provider request in the log: method, path, arrival time and
//! idempotency key when it arrives, status and auth outcome when the response is ready.
//!
//! Control-plane requests (`/_emulator/…`) are not recorded, so a test reading its
//! stats does not disturb them.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::control::CONTROL_PREFIX;
use crate::fault::Dropped;
use crate::gate::{Account, Authorized};
use crate::state::{AppState, RequestRecord};

/// Header callers use to tag writes; counted per value in the side-effect stats.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Marks a response a catalog provider served as one of its tools (see
/// [`RequestRecord::tool`]), with the idempotency key it counted the write under.
#[derive(Clone, Debug)]
pub(crate) struct Served {
    pub tool: String,
    pub idempotency_key: Option<String>,
}

/// The request path before any provider prefix was stripped by nesting. (axum's
/// `OriginalUri` does the same but sits behind a feature the workspace does not enable.)
#[derive(Clone, Debug)]
pub(crate) struct FullPath(pub String);

pub(crate) async fn record(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path.strip_prefix(CONTROL_PREFIX).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
        return next.run(request).await;
    }

    let path = path.to_owned();
    let seq = state.record_arrival(RequestRecord {
        method: request.method().as_str().to_owned(),
        path: path.clone(),
        at_ms: state.elapsed_ms(),
        idempotency_key: idempotency_key(request.headers()).map(str::to_owned),
        status: 0,
        done_ms: None,
        authorized: false,
        tool: None,
        account: None,
    });
    request.extensions_mut().insert(FullPath(path));
    let response = next.run(request).await;
    let status = if response.extensions().get::<Dropped>().is_some() { 0 } else { response.status().as_u16() };
    let authorized = response.extensions().get::<Authorized>().is_some();
    let served = response.extensions().get::<Served>().cloned();
    let account = response.extensions().get::<Account>().map(|a| a.0.clone());
    state.record_completion(seq, status, authorized, served, account);
    response
}

/// The request's `Idempotency-Key` header, if present and readable.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    headers.get(IDEMPOTENCY_KEY)?.to_str().ok()
}
