//! The gate in front of each provider's routes: checks the caller's credentials, then
//! applies the first matching fault, then lets the handler run.
//!
//! Order matters: a refused credential stays a refusal and does not use up a fault, and a
//! faulted request never reaches the handler, so a faulted write is not performed.
//!
//! Every provider is gated the same way; only where the secret travels differs (a
//! [`Scheme`]) and what a refusal looks like. The secret must be one of the emulator's
//! accepted tokens, the same set for every provider, or a live access token that the
//! emulator's authorization server (`oauth.rs`) issued for this provider; the latter
//! signs the request in as its account ([`Account`]). An expired issued token is refused.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;

use crate::error::error_body;
use crate::fault::{AfterHandler, FaultKind, Injection};
use crate::oauth::Verdict;
use crate::record::FullPath;
use crate::state::{AppState, World};

/// Marks a response to a request that passed the provider's auth check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Authorized;

/// The OAuth account a request was authorized as (an access token issued by `oauth.rs`):
/// on the request for the handler (the identity answers for it), and on the response for
/// the request log.
#[derive(Clone, Debug)]
pub(crate) struct Account(pub String);

/// Where a provider expects the secret, and in which format.
#[derive(Clone, Debug)]
pub(crate) enum Scheme {
    /// `Authorization: Bearer <token>` (OAuth 2 access tokens, the sandbox).
    Bearer,
    /// A header holding `<prefix><token><suffix>`, e.g. Discord's `Authorization: Bot <token>`.
    Header { name: HeaderName, prefix: String, suffix: String },
    /// A query parameter holding `<prefix><token><suffix>`, e.g. Trello's `?key=<token>`.
    Query { name: String, prefix: String, suffix: String },
    /// `Authorization: Basic base64(user:password)`, the password being the token.
    Basic,
}

impl Scheme {
    /// A header or query scheme from an API key `format` such as `Bot {key}`.
    pub(crate) fn header(name: HeaderName, format: &str) -> Scheme {
        let (prefix, suffix) = split_format(format);
        Scheme::Header { name, prefix, suffix }
    }

    pub(crate) fn query(name: &str, format: &str) -> Scheme {
        let (prefix, suffix) = split_format(format);
        Scheme::Query { name: name.to_owned(), prefix, suffix }
    }

    /// The secret the request presents where this scheme expects it.
    fn secret<'r>(&self, request: &'r Request) -> Option<Cow<'r, str>> {
        match self {
            Scheme::Bearer => bearer_token(request.headers()).map(Cow::Borrowed),
            Scheme::Header { name, prefix, suffix } => request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| unwrap_format(v, prefix, suffix))
                .map(Cow::Borrowed),
            Scheme::Query { name, prefix, suffix } => {
                url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| unwrap_format(&v, prefix, suffix).map(|t| Cow::Owned(t.to_owned())))
            }
            Scheme::Basic => basic_password(request.headers()).map(Cow::Owned),
        }
    }
}

/// Who may pass and what a refusal looks like.
#[derive(Clone)]
pub(crate) struct Gate {
    /// Every scheme must accept the request (Trello wants both `key` and `token`).
    schemes: Vec<Scheme>,
    /// The catalog provider behind the gate, whose issued OAuth tokens it accepts; `None`
    /// for the sandbox.
    provider: Option<String>,
    refuse: Arc<dyn Fn() -> Response + Send + Sync>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("schemes", &self.schemes).field("provider", &self.provider).finish_non_exhaustive()
    }
}

impl Gate {
    pub(crate) fn new(schemes: Vec<Scheme>, refuse: impl Fn() -> Response + Send + Sync + 'static) -> Gate {
        Gate { schemes, provider: None, refuse: Arc::new(refuse) }
    }

    /// This gate guards `provider`: it also accepts that provider's issued OAuth tokens.
    pub(crate) fn for_provider(mut self, provider: &str) -> Gate {
        self.provider = Some(provider.to_owned());
        self
    }

    /// Whether every scheme finds an accepted secret: then the OAuth account it belongs to,
    /// and how long the request takes when a secret is a slow account's (see
    /// [`Emulator::add_slow_token`](crate::Emulator::add_slow_token)).
    fn admit(&self, request: &Request, world: &mut World) -> Option<(Option<String>, Option<Slow>)> {
        let World { tokens, oauth, slow_tokens, draws, .. } = world;
        let mut account = None;
        let mut slow = None;
        for scheme in &self.schemes {
            let secret = scheme.secret(request)?;
            match oauth.check(self.provider.as_deref(), &secret) {
                Verdict::NotIssued if tokens.contains(secret.as_ref()) => {
                    if let Some(&(shortest, longest)) = slow_tokens.get(secret.as_ref()) {
                        slow = Some(Slow::draw(draws, shortest, longest));
                    }
                }
                Verdict::NotIssued | Verdict::Refused => return None,
                Verdict::Account(login) => {
                    account.get_or_insert(login);
                }
            }
        }
        Some((account, slow))
    }

    /// Bearer auth refused with the shared `{"error":{"message":"invalid token"}}`.
    pub(crate) fn bearer() -> Gate {
        Gate::new(vec![Scheme::Bearer], || error_body(StatusCode::UNAUTHORIZED, "invalid token"))
    }
}

/// The gate middleware. Install with `route_layer` and `from_fn_with_state`, so unknown
/// routes fall through to the `404` without an auth check.
pub(crate) async fn check(
    State((state, gate)): State<(AppState, Arc<Gate>)>,
    mut request: Request,
    next: Next,
) -> Response {
    let (fault, account, slow) = {
        let mut world = state.world();
        let Some((account, slow)) = gate.admit(&request, &mut world) else {
            drop(world);
            return (gate.refuse)();
        };
        (take_fault(&mut world.faults, request.method().as_str(), full_path(&request)), account, slow)
    };
    if let Some(login) = &account {
        request.extensions_mut().insert(Account(login.clone()));
    }

    let mut response = match (fault, slow) {
        // A slow account acts somewhere inside its time: part of it before the handler runs
        // (the write happens then), the rest before the answer goes out.
        (None, Some(slow)) => {
            tokio::time::sleep(slow.before).await;
            let response = next.run(request).await;
            tokio::time::sleep(slow.after).await;
            response
        }
        (fault, _) => inject(fault, request, next).await,
    };
    response.extensions_mut().insert(Authorized);
    if let Some(login) = account {
        response.extensions_mut().insert(Account(login));
    }
    response
}

/// Faults without a credential check, for routes that take no provider credential (the
/// OAuth authorization server's).
pub(crate) async fn faults_only(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let fault = take_fault(&mut state.world().faults, request.method().as_str(), full_path(&request));
    inject(fault, request, next).await
}

async fn inject(fault: Option<FaultKind>, request: Request, next: Next) -> Response {
    match fault.map(FaultKind::injection) {
        Some(Injection::Respond(response)) => response,
        Some(Injection::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(Injection::After(after)) => {
            let response = next.run(request).await;
            match after {
                AfterHandler::Drop => crate::fault::dropped_response(),
                AfterHandler::Delay(delay) => {
                    tokio::time::sleep(delay).await;
                    response
                }
            }
        }
        None => next.run(request).await,
    }
}

/// How long one request of a slow account takes, before and after its handler runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slow {
    before: Duration,
    after: Duration,
}

impl Slow {
    /// A total time uniform in `[shortest, longest]` ms, split at a uniform point.
    fn draw(state: &mut u64, shortest: u64, longest: u64) -> Slow {
        let total = shortest + splitmix64(state) % (longest - shortest + 1);
        let before = splitmix64(state) % (total + 1);
        Slow { before: Duration::from_millis(before), after: Duration::from_millis(total - before) }
    }
}

/// SplitMix64 (<https://prng.di.unimi.it/splitmix64.c>): plenty for spreading test delays.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    (!user.is_empty()).then(|| password.to_owned())
}

/// `Bot {key}` → (`Bot `, ``).
fn split_format(format: &str) -> (String, String) {
    match format.split_once("{key}") {
        Some((prefix, suffix)) => (prefix.to_owned(), suffix.to_owned()),
        None => (format.to_owned(), String::new()),
    }
}

/// The token inside `value` when it has the expected prefix (case-insensitive, as auth
/// schemes are) and suffix.
fn unwrap_format<'v>(value: &'v str, prefix: &str, suffix: &str) -> Option<&'v str> {
    let head = value.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let token = value[prefix.len()..].strip_suffix(suffix)?;
    (!token.is_empty()).then_some(token)
}

/// The path as the client sent it. Inside a nested provider router the URI has lost its
/// prefix; faults match the full path, which the request log noted on arrival.
fn full_path(request: &Request) -> &str {
    request.extensions().get::<FullPath>().map_or_else(|| request.uri().path(), |path| &path.0)
}

/// Take the first fault matching this request, using up one of its `times`.
fn take_fault(faults: &mut Vec<crate::Fault>, method: &str, path: &str) -> Option<FaultKind> {
    let index = faults.iter().position(|f| f.matches(method, path))?;
    let fault = &mut faults[index];
    fault.times -= 1;
    if fault.times == 0 { Some(faults.remove(index).kind) } else { Some(fault.kind.clone()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_wrap_the_token() {
        let (p, s) = split_format("Bot {key}");
        assert_eq!(unwrap_format("Bot abc", &p, &s), Some("abc"));
        assert_eq!(unwrap_format("bot abc", &p, &s), Some("abc"));
        assert_eq!(unwrap_format("Bearer abc", &p, &s), None);
        assert_eq!(unwrap_format("Bot ", &p, &s), None);
        let (p, s) = split_format("{key}");
        assert_eq!(unwrap_format("abc", &p, &s), Some("abc"));
    }

    #[test]
    fn slow_draws_stay_in_range_and_split_the_time() {
        let mut state = 7;
        for _ in 0..1000 {
            let slow = Slow::draw(&mut state, 1000, 3000);
            let total = (slow.before + slow.after).as_millis();
            assert!((1000..=3000).contains(&total), "{slow:?}");
        }
        let fixed = Slow::draw(&mut state, 500, 500);
        assert_eq!((fixed.before + fixed.after).as_millis(), 500);
    }

    #[test]
    fn basic_takes_the_password() {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode("ana@example.com:tok:1");
        headers.insert(header::AUTHORIZATION, format!("Basic {encoded}").parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(basic_password(&headers).as_deref(), Some("tok:1"));
    }
}
