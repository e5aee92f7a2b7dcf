//! Sign-up, sign-in and sign-out. Passwords are hashed with argon2id, off the async
//! threads (`throttle::PasswordPool`); wrong passwords and sign-ups are counted per
//! account and per client address (`throttle::Throttles`), and past their limit the form
//! answers a 429 page without hashing anything.

use crate::AppState;
use crate::client_addr::ClientAddr;
use crate::error::{WebError, page};
use crate::session::{CsrfForm, MaybeUser, NoFields, Visitor, anonymous_csrf, end_session, safe_next, start_session};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use clawlink_common::db::users;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "account_form.html")]
struct AccountForm {
    signed_in_as: Option<String>,
    csrf: String,
    heading: &'static str,
    action: &'static str,
    sign_up: bool,
    error: Option<String>,
    next: String,
    email: String,
    display_name: String,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AccountFields {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    display_name: String,
}

fn form(
    state: &AppState,
    headers: &HeaderMap,
    sign_up: bool,
    next: String,
    fields: Option<(&AccountFields, String)>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let (csrf, set) = anonymous_csrf(state, headers);
    let (email, display_name, error) = match fields {
        Some((f, error)) => (f.email.clone(), f.display_name.clone(), Some(error)),
        None => (String::new(), String::new(), None),
    };
    let template = AccountForm {
        signed_in_as: None,
        csrf,
        heading: if sign_up { "Create your account" } else { "Sign in" },
        action: if sign_up { "/signup" } else { "/signin" },
        sign_up,
        error,
        next,
        email,
        display_name,
    };
    let mut response = page(&template)?;
    *response.status_mut() = status;
    if let Some(cookie) = set {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

pub async fn sign_in_form(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Result<Response, WebError> {
    let next = safe_next(q.next.as_deref());
    if user.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    form(&state, &headers, false, next, None, StatusCode::OK)
}

pub async fn sign_up_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Result<Response, WebError> {
    form(&state, &headers, true, safe_next(q.next.as_deref()), None, StatusCode::OK)
}

fn signed_in_redirect(next: &str, cookie: axum::http::HeaderValue) -> Response {
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

pub async fn sign_up(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    CsrfForm { fields, .. }: CsrfForm<AccountFields, Visitor>,
) -> Result<Response, WebError> {
    let next = safe_next(fields.next.as_deref());
    let email = fields.email.trim().to_string();
    let problem = if !(3..=254).contains(&email.len()) || !email.contains('@') || email.contains(char::is_whitespace) {
        Some("Enter a valid email address.")
    } else if fields.password.chars().count() < 10 {
        Some("Choose a password of at least 10 characters.")
    } else if fields.password.len() > 200 || fields.display_name.chars().count() > 100 {
        Some("That is too long.")
    } else {
        None
    };
    if let Some(problem) = problem {
        return form(&state, &headers, true, next, Some((&fields, problem.into())), StatusCode::UNPROCESSABLE_ENTITY);
    }
    state.throttles.sign_up_address.take(&client.to_string()).map_err(|wait| {
        tracing::warn!(%client, "sign-ups throttled");
        WebError::too_many("Too many accounts were created from this address.", wait)
    })?;
    let hash = state.passwords.hash(fields.password.clone()).await.map_err(WebError::internal)?;
    let mut conn = state.db.acquire().await?;
    let Some(user) = users::create(&mut conn, &email, &hash, fields.display_name.trim()).await? else {
        let msg = "An account with this email exists already. Sign in instead.".to_string();
        return form(&state, &headers, true, next, Some((&fields, msg)), StatusCode::CONFLICT);
    };
    drop(conn);
    tracing::info!(user_id = %user, "account created");
    Ok(signed_in_redirect(&next, start_session(&state, user).await?))
}

pub async fn sign_in(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    CsrfForm { fields, .. }: CsrfForm<AccountFields, Visitor>,
) -> Result<Response, WebError> {
    let next = safe_next(fields.next.as_deref());
    let attempt = state.throttles.sign_in(&fields.email, client).map_err(|wait| {
        tracing::warn!(%client, "sign-ins throttled");
        WebError::too_many("Too many wrong passwords for this account or from this address.", wait)
    })?;
    let mut conn = state.db.acquire().await?;
    let found = users::find_for_sign_in(&mut conn, fields.email.trim()).await?;
    drop(conn);
    // Verify against a real hash even for an unknown email, so timing does not tell
    // which emails have accounts.
    const DUMMY: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9RcEvb6Ub1TfE7yCUzCi6tyaAMCKvJ6J3EAvRmpAJIY";
    let hash = found.as_ref().map_or(DUMMY, |user| user.password_hash.as_str()).to_string();
    let ok = state.passwords.verify(fields.password.clone(), hash).await.map_err(WebError::internal)?;
    match (ok, found) {
        (true, Some(user)) => {
            attempt.succeeded();
            Ok(signed_in_redirect(&next, start_session(&state, user.id).await?))
        }
        _ => {
            tracing::info!("failed sign-in");
            let msg = "That email and password do not match an account.".to_string();
            form(&state, &headers, false, next, Some((&fields, msg)), StatusCode::UNAUTHORIZED)
        }
    }
}

/// Signed out already, there is nothing to protect: the form is not checked.
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    _: CsrfForm<NoFields, MaybeUser>,
) -> Result<Response, WebError> {
    let cookie = end_session(&state, &headers).await?;
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}
