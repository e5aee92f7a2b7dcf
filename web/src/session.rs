//! Browser sessions and CSRF.
//!
//! - Session: cookie `clawlink_session` (HttpOnly, SameSite=Lax, Secure over TLS) holding a
//!   random token; the database keeps its SHA-256.
//! - CSRF: every form carries a hidden `csrf` field. Signed in, it must equal the
//!   session's token; signed out (sign-in and sign-up forms), it must equal the
//!   `clawlink_csrf` cookie set with the form. A POST whose `Origin` is another site is
//!   refused as well. Handlers take their form as a [`CsrfForm`], which checks both
//!   before they run.

use crate::AppState;
use crate::error::WebError;
use axum::Form;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, RawForm, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use clawlink_common::crypto::token_hash;
use clawlink_common::db::web_sessions::{self, SessionUser};
use clawlink_common::tokens::random_urlsafe;
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::marker::PhantomData;

pub const SESSION_COOKIE: &str = "clawlink_session";
pub const CSRF_COOKIE: &str = "clawlink_csrf";

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if state.config.secure_cookies() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"))
        .expect("cookie is ascii")
}

/// The signed-in person, if any.
pub struct MaybeUser(pub Option<SessionUser>);

/// The session found for this request, kept in its extensions: a handler's `SignedIn`
/// and its `CsrfForm` both ask for it, the database is asked once.
#[derive(Clone)]
struct FoundSession(Option<SessionUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(FoundSession(found)) = parts.extensions.get::<FoundSession>() {
            return Ok(MaybeUser(found.clone()));
        }
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else { return Ok(MaybeUser(None)) };
        let mut conn = state.db.acquire().await?;
        let found = web_sessions::find(&mut conn, &token_hash(token)).await?;
        parts.extensions.insert(FoundSession(found.clone()));
        Ok(MaybeUser(found))
    }
}

/// A signed-in person; otherwise the browser goes to sign-in and comes back.
pub struct SignedIn(pub SessionUser);

pub struct ToSignIn(String);

impl IntoResponse for ToSignIn {
    fn into_response(self) -> Response {
        Redirect::to(&format!("/signin?next={}", urlencode(&self.0))).into_response()
    }
}

pub enum SignedInRejection {
    Error(WebError),
    SignIn(ToSignIn),
}

impl IntoResponse for SignedInRejection {
    fn into_response(self) -> Response {
        match self {
            SignedInRejection::Error(e) => e.into_response(),
            SignedInRejection::SignIn(r) => r.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = SignedInRejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match MaybeUser::from_request_parts(parts, state).await.map_err(SignedInRejection::Error)? {
            MaybeUser(Some(user)) => Ok(SignedIn(user)),
            MaybeUser(None) => {
                let next = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
                Err(SignedInRejection::SignIn(ToSignIn(next)))
            }
        }
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A redirect target from a form or query, as the path (with query and fragment) of a
/// URL on this site: `next` is resolved against this site's origin the way a browser
/// resolves a `Location` (tabs and newlines dropped, `\` read as `/`, `//host`, a scheme),
/// and anything that lands on another origin is `/`. What comes out is percent-encoded
/// ASCII, so it is always a valid header value.
pub fn safe_next(next: Option<&str>) -> String {
    static BASE: std::sync::LazyLock<url::Url> =
        std::sync::LazyLock::new(|| url::Url::parse("http://this-site.invalid/").expect("a valid base URL"));
    match next.and_then(|n| BASE.join(n).ok()) {
        Some(url) if url.origin() == BASE.origin() => url[url::Position::BeforePath..].to_string(),
        _ => "/".into(),
    }
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses a form post whose `Origin` is another site, or whose token does not match.
fn check_form(state: &AppState, origin: Option<&HeaderValue>, sent: &str, expected: &str) -> Result<(), WebError> {
    if let Some(origin) = origin.and_then(|o| o.to_str().ok())
        && origin != "null"
        && origin.trim_end_matches('/') != state.config.public_web_url
    {
        tracing::warn!(origin, "form post from another origin refused");
        return Err(WebError::forbidden_form());
    }
    if expected.is_empty() || !same(sent, expected) {
        return Err(WebError::forbidden_form());
    }
    Ok(())
}

/// Who posts a form, and so which token its `csrf` field must carry.
pub trait Poster: FromRequestParts<AppState, Rejection: IntoResponse> {
    /// The token the form must carry; `None`: there is nothing to protect, no check.
    fn csrf_token(&self) -> Option<&str>;
}

/// A signed-in person's forms carry the session's token.
impl Poster for SignedIn {
    fn csrf_token(&self) -> Option<&str> {
        Some(&self.0.csrf_token)
    }
}

/// Signed in, the session's token; signed out there is no session to protect (sign-out).
impl Poster for MaybeUser {
    fn csrf_token(&self) -> Option<&str> {
        self.0.as_ref().map(|user| user.csrf_token.as_str())
    }
}

/// Anyone, signed in or not, posting a form that a signed-out page served (sign-in,
/// sign-up): it carries the token of the `clawlink_csrf` cookie set with the form.
pub struct Visitor(String);

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Visitor(cookie(&parts.headers, CSRF_COOKIE).unwrap_or_default().to_string()))
    }
}

impl Poster for Visitor {
    fn csrf_token(&self) -> Option<&str> {
        Some(&self.0)
    }
}

/// The fields of a form that carries nothing but its CSRF token (revoke, delete…).
#[derive(Debug, serde::Deserialize)]
pub struct NoFields {}

/// A form `T` posted by `P` (a signed-in person unless said otherwise) that passed the
/// CSRF check: its `Origin`, when sent, is this site, and its `csrf` field equals `P`'s
/// token. Anything else is the 403 "Form expired" page and the handler does not run. It
/// reads the body, so it comes last among a handler's arguments.
pub struct CsrfForm<T, P = SignedIn> {
    pub fields: T,
    /// Private: a `CsrfForm` exists only where the check passed.
    poster: PhantomData<P>,
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T, P> FromRequest<AppState> for CsrfForm<T, P>
where
    T: DeserializeOwned,
    P: Poster + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let poster = P::from_request_parts(&mut parts, state).await.map_err(IntoResponse::into_response)?;
        let origin = parts.headers.get(header::ORIGIN).cloned();
        // Read as axum's `Form` reads (content type, body limit) and parsed by it, twice:
        // a malformed token or field is refused exactly as a plain `Form` refuses it.
        let RawForm(bytes) = RawForm::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Form(sent) = parse::<CsrfField>(bytes.clone(), state).await?;
        let Form(fields) = parse::<T>(bytes, state).await?;
        if let Some(expected) = poster.csrf_token() {
            check_form(state, origin.as_ref(), &sent.csrf, expected).map_err(IntoResponse::into_response)?;
        }
        Ok(CsrfForm { fields, poster: PhantomData })
    }
}

/// Parses form bytes with axum's `Form`, its rejections included.
async fn parse<T: DeserializeOwned>(bytes: Bytes, state: &AppState) -> Result<Form<T>, Response> {
    let request = Request::post("/")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(bytes))
        .expect("a static request is valid");
    Form::<T>::from_request(request, state).await.map_err(IntoResponse::into_response)
}

/// The CSRF token for a signed-out form, and the cookie to set when the browser has none.
pub fn anonymous_csrf(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, CSRF_COOKIE) {
        Some(token) if token.len() >= 32 => (token.to_string(), None),
        _ => {
            let token = random_urlsafe(32);
            let header = set_cookie(state, CSRF_COOKIE, &token, 86_400);
            (token, Some(header))
        }
    }
}

/// Starts a session for `user` and returns the Set-Cookie header.
pub async fn start_session(state: &AppState, user: clawlink_common::ids::UserId) -> Result<HeaderValue, WebError> {
    let token = random_urlsafe(32);
    let csrf = random_urlsafe(32);
    let expires = time::OffsetDateTime::now_utc() + state.config.session_ttl;
    let mut conn = state.db.acquire().await?;
    web_sessions::create(&mut conn, &token_hash(&token), user, &csrf, expires).await?;
    Ok(set_cookie(state, SESSION_COOKIE, &token, state.config.session_ttl.as_secs()))
}

pub async fn end_session(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, WebError> {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        let mut conn = state.db.acquire().await?;
        web_sessions::delete(&mut conn, &token_hash(token)).await?;
    }
    Ok(set_cookie(state, SESSION_COOKIE, "", 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/pair/abc")), "/pair/abc");
        assert_eq!(safe_next(Some("/executions?tool=a&status=failed#x")), "/executions?tool=a&status=failed#x");
        for evil in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/\n/evil.example",
            "\t//evil.example",
            " //evil.example",
            "//evil.example/pair/abc",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
        // Controls and non-ASCII stay on this site, encoded: a valid Location header.
        assert_eq!(safe_next(Some("/a\u{1}b")), "/a%01b");
        assert_eq!(safe_next(Some("/a\r\nSet-Cookie: x")), "/aSet-Cookie:%20x");
        assert_eq!(safe_next(Some("/café")), "/caf%C3%A9");
        // Same scheme, no host: a path on this site, as a browser reads it.
        assert_eq!(safe_next(Some("http:evil.example")), "/evil.example");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; clawlink_session=tok; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "missing"), None);
    }
}
