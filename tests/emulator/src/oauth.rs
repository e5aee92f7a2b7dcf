//! An OAuth 2.0 authorization server (RFC 6749 authorization code grant, PKCE S256 from
//! RFC 7636, refresh-token rotation) that every catalog provider serves under
//! `/<provider>/oauth/`:
//!
//! - `GET /<provider>/oauth/authorize?response_type=code&client_id&redirect_uri&state
//!   &code_challenge&code_challenge_method=S256&scope` approves at once (there is no consent
//!   page) and answers `302` to `redirect_uri?code=…&state=…`, or
//!   `?error=access_denied&state=…` when the next decision was set to deny
//!   ([`Emulator::oauth_deny_next`](crate::Emulator::oauth_deny_next)). An unknown client or
//!   a bad `redirect_uri` is answered `400` here and never redirected (§4.1.2.1).
//! - `POST /<provider>/oauth/token` (form body; the client authenticates with
//!   `client_id`/`client_secret` in the body or HTTP Basic): `authorization_code` (single
//!   use, bound to the client, the redirect URI and the PKCE challenge) and `refresh_token`
//!   (rotating: a used refresh token is spent). Errors are RFC 6749 §5.2 bodies.
//!
//! An issued access token is accepted by that provider's routes, as the account it was
//! issued to, until it expires (`expires_in`, default 3600 s); an expired one is refused
//! like an unknown token. The provider's identity endpoint answers for that account:
//! `id = "<provider>-<login>"`, `label = "<login>@example.test"`, written at the catalog's
//! identity pointers into the fixture's identity answer.
//!
//! Clients: `clawlink-test` / `clawlink-test-secret` is registered from the start, for any
//! redirect URI; more with [`Emulator::oauth_register_client`](crate::Emulator::oauth_register_client).
//! Tokens and clients survive a reset; pending decisions and the token-call counts do not.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::gate;
use crate::state::AppState;

/// The client registered from the start.
pub const DEFAULT_OAUTH_CLIENT_ID: &str = "clawlink-test";
/// The secret of [`DEFAULT_OAUTH_CLIENT_ID`].
pub const DEFAULT_OAUTH_CLIENT_SECRET: &str = "clawlink-test-secret";
/// The account an approval signs in as unless told otherwise.
pub const DEFAULT_OAUTH_ACCOUNT: &str = "emu-user";
/// Lifetime of issued access tokens unless told otherwise.
pub const DEFAULT_EXPIRES_IN_SECS: u64 = 3600;
/// How long an authorization code can be exchanged (RFC 6749 §4.1.2 recommends at most
/// ten minutes).
const CODE_TTL: Duration = Duration::from_secs(600);

/// An OAuth client registered with the emulator's authorization server (every provider
/// shares the registrations).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OauthClient {
    pub client_id: String,
    /// `None`: a public client, which must use PKCE and sends no secret.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Exact redirect URIs allowed; empty allows any `http`/`https` URI.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

/// One access token the authorization server issued, as seen by tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    pub provider: String,
    /// The account it signs in as.
    pub login: String,
    pub client_id: String,
    pub access_token: String,
    /// The refresh token issued with it.
    pub refresh_token: String,
    /// `authorization_code` or `refresh_token`: how it was obtained.
    pub grant_type: String,
    pub scope: String,
    /// Past its `expires_in`: the provider refuses it.
    pub expired: bool,
    /// Revoked because its authorization code was replayed (RFC 6749 §4.1.2).
    pub revoked: bool,
    /// How many provider requests it authorized.
    pub uses: u32,
}

/// The authorization server's data, in the shared world.
#[derive(Debug)]
pub(crate) struct OauthData {
    clients: BTreeMap<String, OauthClient>,
    deny_next: bool,
    next_account: Option<String>,
    expires_in: u64,
    codes: HashMap<String, CodeGrant>,
    /// Access tokens in issue order; `by_token` indexes them.
    access: Vec<AccessGrant>,
    by_token: HashMap<String, usize>,
    refresh: HashMap<String, RefreshGrant>,
    /// Token-endpoint calls by `grant_type` (`-` when it was missing).
    pub token_calls: BTreeMap<String, u32>,
}

impl Default for OauthData {
    fn default() -> Self {
        let client = OauthClient {
            client_id: DEFAULT_OAUTH_CLIENT_ID.into(),
            client_secret: Some(DEFAULT_OAUTH_CLIENT_SECRET.into()),
            redirect_uris: Vec::new(),
        };
        Self {
            clients: BTreeMap::from([(client.client_id.clone(), client)]),
            deny_next: false,
            next_account: None,
            expires_in: DEFAULT_EXPIRES_IN_SECS,
            codes: HashMap::new(),
            access: Vec::new(),
            by_token: HashMap::new(),
            refresh: HashMap::new(),
            token_calls: BTreeMap::new(),
        }
    }
}

#[derive(Debug)]
struct CodeGrant {
    provider: String,
    client_id: String,
    /// The `redirect_uri` sent to the authorize endpoint, which the exchange must repeat.
    redirect_uri: Option<String>,
    challenge: Option<String>,
    scope: String,
    login: String,
    issued_at: Instant,
    used: bool,
    /// What the exchange issued, revoked if the code is replayed.
    issued: Vec<(String, String)>,
}

#[derive(Debug)]
struct AccessGrant {
    token: IssuedToken,
    expires_at: Instant,
}

#[derive(Debug)]
struct RefreshGrant {
    provider: String,
    client_id: String,
    login: String,
    scope: String,
    live: bool,
}

/// What the provider gate makes of a presented secret.
pub(crate) enum Verdict {
    /// Not issued here: the emulator's fixed token set decides.
    NotIssued,
    /// Issued here but expired, revoked or for another provider.
    Refused,
    /// A live token of this account.
    Account(String),
}

impl OauthData {
    pub(crate) fn register(&mut self, client: OauthClient) {
        self.clients.insert(client.client_id.clone(), client);
    }

    pub(crate) fn deny_next(&mut self) {
        self.deny_next = true;
    }

    pub(crate) fn next_account(&mut self, login: &str) {
        self.next_account = Some(login.to_owned());
    }

    pub(crate) fn set_expires_in(&mut self, secs: u64) {
        self.expires_in = secs;
    }

    /// Make every issued access token expire now.
    pub(crate) fn expire_all(&mut self) {
        let now = Instant::now();
        for grant in &mut self.access {
            grant.expires_at = grant.expires_at.min(now);
        }
    }

    pub(crate) fn tokens(&self) -> Vec<IssuedToken> {
        let now = Instant::now();
        self.access.iter().map(|g| IssuedToken { expired: g.expires_at <= now, ..g.token.clone() }).collect()
    }

    /// Forget pending decisions and call counts; clients and tokens stay.
    pub(crate) fn reset(&mut self) {
        self.deny_next = false;
        self.next_account = None;
        self.token_calls.clear();
    }

    /// Whether `secret`, presented to `provider`'s routes, is a live access token issued
    /// here (counting the use).
    pub(crate) fn check(&mut self, provider: Option<&str>, secret: &str) -> Verdict {
        let Some(&index) = self.by_token.get(secret) else {
            return Verdict::NotIssued;
        };
        let grant = &mut self.access[index];
        if grant.token.revoked || grant.expires_at <= Instant::now() || provider != Some(grant.token.provider.as_str())
        {
            return Verdict::Refused;
        }
        grant.token.uses += 1;
        Verdict::Account(grant.token.login.clone())
    }

    fn issue(&mut self, provider: &str, client_id: &str, login: &str, scope: &str, grant_type: &str) -> Value {
        let access_token = format!("emu-{provider}-at-{}", clawlink_common::tokens::random_urlsafe(18));
        let refresh_token = format!("emu-{provider}-rt-{}", clawlink_common::tokens::random_urlsafe(18));
        let token = IssuedToken {
            provider: provider.to_owned(),
            login: login.to_owned(),
            client_id: client_id.to_owned(),
            access_token: access_token.clone(),
            refresh_token: refresh_token.clone(),
            grant_type: grant_type.to_owned(),
            scope: scope.to_owned(),
            expired: false,
            revoked: false,
            uses: 0,
        };
        self.by_token.insert(access_token.clone(), self.access.len());
        self.access.push(AccessGrant { token, expires_at: Instant::now() + Duration::from_secs(self.expires_in) });
        self.refresh.insert(
            refresh_token.clone(),
            RefreshGrant {
                provider: provider.to_owned(),
                client_id: client_id.to_owned(),
                login: login.to_owned(),
                scope: scope.to_owned(),
                live: true,
            },
        );
        json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": refresh_token,
            "scope": scope,
        })
    }

    fn revoke(&mut self, access_token: &str, refresh_token: &str) {
        if let Some(&index) = self.by_token.get(access_token) {
            self.access[index].token.revoked = true;
        }
        if let Some(grant) = self.refresh.get_mut(refresh_token) {
            grant.live = false;
        }
    }
}

/// The provider's identity answer for an account: `id = "<provider>-<login>"` and
/// `label = "<login>@example.test"` written at the catalog's pointers (the label last, so
/// it wins where both pointers name one field).
pub(crate) fn personalize(body: &Value, provider: &str, login: &str, id_pointer: &str, label_pointer: &str) -> Value {
    let mut body = body.clone();
    set_pointer(&mut body, id_pointer, Value::String(format!("{provider}-{login}")));
    set_pointer(&mut body, label_pointer, Value::String(format!("{login}@example.test")));
    body
}

/// Set the value at a JSON pointer, creating objects along the way.
fn set_pointer(target: &mut Value, pointer: &str, value: Value) {
    let Some(path) = pointer.strip_prefix('/') else {
        if pointer.is_empty() {
            *target = value;
        }
        return;
    };
    let mut here = target;
    for token in path.split('/') {
        let key = token.replace("~1", "/").replace("~0", "~");
        let index = key.parse::<usize>().ok().filter(|i| here.as_array().is_some_and(|items| *i < items.len()));
        if index.is_none() && !here.is_object() {
            *here = Value::Object(serde_json::Map::new());
        }
        here = match (here, index) {
            (Value::Array(items), Some(index)) => &mut items[index],
            (Value::Object(map), _) => map.entry(key).or_insert(Value::Null),
            _ => return,
        };
    }
    *here = value;
}

/// The authorization server's routes for one provider, nested with its API under
/// `/<provider>`. Injected faults apply to them (a token endpoint can be made to fail);
/// there is no credential check.
pub(crate) fn router(provider: &str, state: &AppState) -> Router<AppState> {
    let id: Arc<str> = Arc::from(provider);
    let for_token = id.clone();
    Router::new()
        .route(
            "/oauth/authorize",
            get(move |State(state): State<AppState>, Query(query): Query<Vec<(String, String)>>| {
                let id = id.clone();
                async move { authorize(&state, &id, &query) }
            }),
        )
        .route(
            "/oauth/token",
            post(move |State(state): State<AppState>, headers: HeaderMap, body: Bytes| {
                let id = for_token.clone();
                async move { token(&state, &id, &headers, &body) }
            }),
        )
        .route_layer(from_fn_with_state(state.clone(), gate::faults_only))
}

/// The single value of a parameter; a repeated one is an error (RFC 6749 §3.1, §3.2).
fn single<'q>(params: &'q [(String, String)], name: &str) -> Result<Option<&'q str>, String> {
    let mut values = params.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(format!("{name} is repeated"));
    }
    Ok(first.filter(|v| !v.is_empty()))
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An error the authorize endpoint shows instead of redirecting.
fn authorize_refusal(error: &str, description: &str) -> Response {
    no_store((StatusCode::BAD_REQUEST, Json(json!({"error": error, "error_description": description}))).into_response())
}

fn redirect(uri: &str, params: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(uri) {
        Ok(url) => url,
        Err(_) => return authorize_refusal("invalid_request", "redirect_uri is not a URL"),
    };
    url.query_pairs_mut().extend_pairs(params);
    no_store((StatusCode::FOUND, [(header::LOCATION, url.as_str().to_owned())]).into_response())
}

fn is_base64url(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `code_verifier = 43*128unreserved` (RFC 7636 §4.1).
fn is_verifier(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize(state: &AppState, provider: &str, query: &[(String, String)]) -> Response {
    let param = |name: &str| single(query, name);
    // Until the client and its redirect URI are known good, errors are shown, not sent.
    let (client_id, redirect_uri) = match (param("client_id"), param("redirect_uri")) {
        (Ok(client_id), Ok(redirect_uri)) => (client_id, redirect_uri),
        (Err(e), _) | (_, Err(e)) => return authorize_refusal("invalid_request", &e),
    };
    let Some(client_id) = client_id else {
        return authorize_refusal("invalid_request", "client_id is required");
    };
    let mut world = state.world();
    let Some(client) = world.oauth.clients.get(client_id).cloned() else {
        return authorize_refusal("invalid_client", "unknown client_id");
    };
    let target = match redirect_uri {
        Some(uri) => {
            let Ok(url) = url::Url::parse(uri) else {
                return authorize_refusal("invalid_request", "redirect_uri is not an absolute URL");
            };
            if !matches!(url.scheme(), "http" | "https") || url.fragment().is_some() {
                return authorize_refusal("invalid_request", "redirect_uri must be http(s) without a fragment");
            }
            if !client.redirect_uris.is_empty() && !client.redirect_uris.iter().any(|r| r == uri) {
                return authorize_refusal("invalid_request", "redirect_uri is not registered for this client");
            }
            uri.to_owned()
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => return authorize_refusal("invalid_request", "redirect_uri is required"),
        },
    };

    // From here on, errors go back to the client.
    let client_state = match param("state") {
        Ok(s) => s.map(str::to_owned),
        Err(e) => return redirect(&target, &[("error", "invalid_request"), ("error_description", &e)]),
    };
    let back = |error: &str, description: &str| {
        let mut params = vec![("error", error), ("error_description", description)];
        if let Some(s) = &client_state {
            params.push(("state", s));
        }
        redirect(&target, &params)
    };
    let fields = ["response_type", "code_challenge", "code_challenge_method", "scope"].map(param);
    let [response_type, challenge, method, scope] = match fields {
        [Ok(a), Ok(b), Ok(c), Ok(d)] => [a, b, c, d],
        _ => return back("invalid_request", "a parameter is repeated"),
    };
    match response_type {
        Some("code") => {}
        None => return back("invalid_request", "response_type is required"),
        Some(_) => return back("unsupported_response_type", "only response_type=code is supported"),
    }
    match (challenge, method) {
        (Some(challenge), Some("S256")) => {
            if challenge.len() != 43 || !is_base64url(challenge) {
                return back("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier");
            }
        }
        (Some(_), _) => return back("invalid_request", "code_challenge_method must be S256"),
        (None, Some(_)) => return back("invalid_request", "code_challenge_method without code_challenge"),
        (None, None) if client.client_secret.is_none() => {
            return back("invalid_request", "public clients must use PKCE (code_challenge)");
        }
        (None, None) => {}
    }

    if std::mem::take(&mut world.oauth.deny_next) {
        return back("access_denied", "The user denied the request.");
    }
    let login = world.oauth.next_account.take().unwrap_or_else(|| DEFAULT_OAUTH_ACCOUNT.to_owned());
    let code = clawlink_common::tokens::random_urlsafe(24);
    world.oauth.codes.insert(
        code.clone(),
        CodeGrant {
            provider: provider.to_owned(),
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.map(str::to_owned),
            challenge: challenge.map(str::to_owned),
            scope: scope.unwrap_or_default().to_owned(),
            login,
            issued_at: Instant::now(),
            used: false,
            issued: Vec::new(),
        },
    );
    drop(world);
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &client_state {
        params.push(("state", s));
    }
    redirect(&target, &params)
}

/// An RFC 6749 §5.2 error.
fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    no_store((status, Json(json!({"error": error, "error_description": description}))).into_response())
}

fn invalid_client(basic: bool, description: &str) -> Response {
    let mut response = token_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    if basic {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"emulator\""));
    }
    response
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decode = |part: &str| -> String {
        url::form_urlencoded::parse(format!("v={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|text| text.split_once(':').map(|(id, secret)| (decode(id), decode(secret))))
            .ok_or(()),
    )
}

fn token(state: &AppState, provider: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let form: Vec<(String, String)> =
        url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let grant_type = single(&form, "grant_type");
    {
        let mut world = state.world();
        let key = match &grant_type {
            Ok(Some(g)) => (*g).to_owned(),
            _ => "-".to_owned(),
        };
        *world.oauth.token_calls.entry(key).or_default() += 1;
    }
    if !content_type.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
    }
    let param = |name: &str| single(&form, name);
    let fields =
        ["client_id", "client_secret", "code", "redirect_uri", "code_verifier", "refresh_token", "scope"].map(param);
    let [client_id, client_secret, code, redirect_uri, verifier, refresh_token, scope] = match fields {
        [Ok(a), Ok(b), Ok(c), Ok(d), Ok(e), Ok(f), Ok(g)] => [a, b, c, d, e, f, g],
        _ => return token_error(StatusCode::BAD_REQUEST, "invalid_request", "a parameter is repeated"),
    };
    let grant_type = match grant_type {
        Ok(Some(g)) => g,
        Ok(None) => return token_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
        Err(e) => return token_error(StatusCode::BAD_REQUEST, "invalid_request", &e),
    };

    // Client authentication: HTTP Basic or the body, never both (§2.3).
    let basic = basic_credentials(headers);
    let used_basic = basic.is_some();
    let (id, secret) = match basic {
        Some(Err(())) => return invalid_client(true, "the Basic credentials cannot be read"),
        Some(Ok(_)) if client_secret.is_some() => {
            return token_error(StatusCode::BAD_REQUEST, "invalid_request", "use one client authentication method");
        }
        Some(Ok((id, _))) if client_id.is_some_and(|body_id| body_id != id) => {
            return invalid_client(true, "client_id does not match the Basic credentials");
        }
        Some(Ok((id, secret))) => (id, Some(secret)),
        None => match client_id {
            Some(id) => (id.to_owned(), client_secret.map(str::to_owned)),
            None => return invalid_client(false, "client authentication is required"),
        },
    };
    let mut world = state.world();
    let Some(client) = world.oauth.clients.get(&id).cloned() else {
        return invalid_client(used_basic, "unknown client");
    };
    match (&client.client_secret, &secret) {
        (Some(expected), Some(given)) if expected == given => {}
        (None, None) => {}
        (None, Some(_)) => return invalid_client(used_basic, "a public client has no secret"),
        _ => return invalid_client(used_basic, "wrong or missing client secret"),
    }
    let oauth = &mut world.oauth;
    let invalid_grant = |description: &str| token_error(StatusCode::BAD_REQUEST, "invalid_grant", description);

    match grant_type {
        "authorization_code" => {
            let Some(code) = code else {
                return token_error(StatusCode::BAD_REQUEST, "invalid_request", "code is required");
            };
            let Some(grant) = oauth.codes.get_mut(code) else {
                return invalid_grant("unknown authorization code");
            };
            if grant.used {
                // A replayed code: what it issued is revoked (§4.1.2).
                let issued = std::mem::take(&mut grant.issued);
                for (access, refresh) in &issued {
                    oauth.revoke(access, refresh);
                }
                return invalid_grant("the authorization code was used already");
            }
            if grant.provider != provider {
                return invalid_grant("the authorization code was issued by another provider");
            }
            if grant.client_id != client.client_id {
                return invalid_grant("the authorization code was issued to another client");
            }
            if grant.issued_at.elapsed() > CODE_TTL {
                return invalid_grant("the authorization code expired");
            }
            if grant.redirect_uri.is_some() && grant.redirect_uri.as_deref() != redirect_uri {
                return invalid_grant("redirect_uri does not match the authorization request");
            }
            match (&grant.challenge, verifier) {
                (Some(challenge), Some(verifier)) => {
                    if !is_verifier(verifier) || s256(verifier) != *challenge {
                        return invalid_grant("code_verifier does not match the code_challenge");
                    }
                }
                (Some(_), None) => return invalid_grant("code_verifier is required"),
                (None, Some(_)) => return invalid_grant("code_verifier sent but no code_challenge was"),
                (None, None) => {}
            }
            grant.used = true;
            let (login, scope) = (grant.login.clone(), grant.scope.clone());
            let answer = oauth.issue(provider, &client.client_id, &login, &scope, "authorization_code");
            let pair = (
                answer["access_token"].as_str().unwrap_or_default().to_owned(),
                answer["refresh_token"].as_str().unwrap_or_default().to_owned(),
            );
            if let Some(grant) = oauth.codes.get_mut(code) {
                grant.issued.push(pair);
            }
            no_store(Json(answer).into_response())
        }
        "refresh_token" => {
            let Some(refresh_token) = refresh_token else {
                return token_error(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token is required");
            };
            let Some(grant) = oauth.refresh.get_mut(refresh_token) else {
                return invalid_grant("unknown refresh token");
            };
            if !grant.live {
                return invalid_grant("the refresh token was used already or revoked");
            }
            if grant.provider != provider || grant.client_id != client.client_id {
                return invalid_grant("the refresh token was issued to another client");
            }
            if let Some(asked) = scope
                && !asked.split(' ').filter(|s| !s.is_empty()).all(|s| grant.scope.split(' ').any(|g| g == s))
            {
                return token_error(StatusCode::BAD_REQUEST, "invalid_scope", "the scope exceeds the original grant");
            }
            // Rotation: the presented refresh token is spent.
            grant.live = false;
            let (login, scope) = (grant.login.clone(), grant.scope.clone());
            no_store(Json(oauth.issue(provider, &client.client_id, &login, &scope, "refresh_token")).into_response())
        }
        _ => token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "use authorization_code or refresh_token"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_are_written_creating_objects() {
        let body = json!({"login": "octocat", "id": 1, "name": "x"});
        let out = personalize(&body, "github", "ana", "/id", "/login");
        assert_eq!(out, json!({"login": "ana@example.test", "id": "github-ana", "name": "x"}));
        let out = personalize(&json!({}), "linear", "ana", "/data/viewer/id", "/data/viewer/email");
        assert_eq!(out, json!({"data": {"viewer": {"id": "linear-ana", "email": "ana@example.test"}}}));
        let out = personalize(&json!({"emailAddress": "a"}), "gmail", "bo", "/emailAddress", "/emailAddress");
        assert_eq!(out, json!({"emailAddress": "bo@example.test"}));
    }

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        assert_eq!(s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(is_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!is_verifier("short"));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode("my%20client:s%3Acret");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(basic_credentials(&headers), Some(Ok(("my client".into(), "s:cret".into()))));
    }
}
