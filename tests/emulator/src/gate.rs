//! The gate in front of each provider's routes: checks the caller's credentials, then
//! applies the first matching fault, then lets the handler run.
//!
//! Order matters: a refused token stays a `401` and does not use up a fault, and a
//! faulted request never reaches the handler, so a faulted write is not performed.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::error_body;
use crate::fault::{FaultKind, Injection};
use crate::record::FullPath;
use crate::state::AppState;

/// Marks a response to a request that passed the provider's auth check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Authorized;

/// Gate for providers authenticated with `Authorization: Bearer <token>`, the token
/// being one of the emulator's accepted tokens. Install with `route_layer`, so unknown
/// routes fall through to the `404` without an auth check.
pub(crate) async fn bearer(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let fault = {
        let mut world = state.world();
        let authorized = bearer_token(request.headers()).is_some_and(|t| world.tokens.contains(t));
        if !authorized {
            drop(world);
            return error_body(StatusCode::UNAUTHORIZED, "invalid token");
        }
        take_fault(
            &mut world.faults,
            request.method().as_str(),
            full_path(&request),
        )
    };

    let mut response = match fault.map(FaultKind::injection) {
        Some(Injection::Respond(response)) => response,
        Some(Injection::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        None => next.run(request).await,
    };
    response.extensions_mut().insert(Authorized);
    response
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The path as the client sent it. Inside a nested provider router the URI has lost its
/// prefix; faults match the full path, which the request log noted on arrival.
fn full_path(request: &Request) -> &str {
    request
        .extensions()
        .get::<FullPath>()
        .map_or_else(|| request.uri().path(), |path| &path.0)
}

/// Take the first fault matching this request, using up one of its `times`.
fn take_fault(faults: &mut Vec<crate::Fault>, method: &str, path: &str) -> Option<FaultKind> {
    let index = faults.iter().position(|f| f.matches(method, path))?;
    let fault = &mut faults[index];
    fault.times -= 1;
    if fault.times == 0 {
        Some(faults.remove(index).kind)
    } else {
        Some(fault.kind.clone())
    }
}
