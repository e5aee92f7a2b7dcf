//! Browser sessions and CSRF.
//!
//! - Session: cookie `clawlink_session` (HttpOnly, SameSite=Lax, Secure over TLS) holding a
//!   random token; the database keeps its SHA-256.
//! - CSRF: every form carries a hidden `csrf` field. Signed in, it must equal the
//!   session's token; signed out (sign-in and sign-up forms), it must equal the
//!   `clawlink_csrf` cookie set with the form. A POST whose `Origin` is another site is
//!   refused as well.

use crate::AppState;
use crate::error::WebError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use clawlink_common::crypto::token_hash;
use clawlink_common::db::web_sessions::{self, SessionUser};
use clawlink_common::tokens::random_urlsafe;

pub const SESSION_COOKIE: &str = "clawlink_session";
pub const CSRF_COOKIE: &str = "clawlink_csrf";

/// A form that carries nothing but its CSRF token (revoke, delete, make default…).
#[derive(Debug, serde::Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

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

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else { return Ok(MaybeUser(None)) };
        let mut conn = state.db.acquire().await?;
        Ok(MaybeUser(web_sessions::find(&mut conn, &token_hash(token)).await?))
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

/// A redirect target from a form or query: only a path on this site (no `//host`,
/// no scheme), so sign-in cannot be turned into an open redirect.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") && !n.contains(['\r', '\n']) => {
            n.to_string()
        }
        _ => "/".into(),
    }
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses a form post whose `Origin` is another site, or whose token does not match.
pub fn check_form(state: &AppState, headers: &HeaderMap, sent: &str, expected: &str) -> Result<(), WebError> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        if origin != "null" && origin.trim_end_matches('/') != state.config.public_web_url {
            tracing::warn!(origin, "form post from another origin refused");
            return Err(WebError::forbidden_form());
        }
    }
    if expected.is_empty() || !same(sent, expected) {
        return Err(WebError::forbidden_form());
    }
    Ok(())
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
        for evil in
            ["//evil.example", "https://evil.example", "/\\evil.example", "javascript:alert(1)", "/a\r\nSet-Cookie: x"]
        {
            assert_eq!(safe_next(Some(evil)), "/", "{evil}");
        }
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
