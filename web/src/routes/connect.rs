//! The connect flow on the web front: every flow is a connect session (started by an
//! agent through the api, or here from the connections page). OAuth2 goes through the
//! `oauth2` crate with PKCE S256 (RFC 7636), a `state` bound to the session and the exact
//! redirect URI; the code is exchanged by `clawlink_common::oauth` (through the provider
//! guard); API keys are checked against the provider's identity endpoint before
//! they are saved. Either way the account lands on the exact `user_integrations` row —
//! the reconnected one, the same external account's, or a new one — and its credential
//! is sealed in the same transaction.

use crate::AppState;
use crate::error::{MessagePage, WebError, page};
use crate::session::{CsrfForm, SignedIn};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use clawlink_common::audit;
use clawlink_common::catalog::{Auth, Provider};
use clawlink_common::crypto::{RowIdentity, token_hash};
use clawlink_common::db::connect_sessions::{self, ConnectSession, NewConnectSession};
use clawlink_common::db::connections;
use clawlink_common::db::web_sessions::SessionUser;
use clawlink_common::ids::{ConnectionId, UserId};
use clawlink_common::provider::{AccountIdentity, CredentialBundle, IdentityError};
use clawlink_common::secret::SecretString;
use clawlink_common::tokens;
use oauth2::{AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope, TokenUrl};
use serde::Deserialize;
use std::time::Duration;
use time::OffsetDateTime;

const CONNECT_TTL: Duration = Duration::from_secs(15 * 60);

fn display_code() -> String {
    tokens::random_urlsafe(6).to_uppercase().chars().filter(|c| c.is_ascii_alphanumeric()).take(6).collect()
}

/// Starts a connect session from the dashboard; returns its token.
pub async fn new_session(
    state: &AppState,
    user: UserId,
    integration: &str,
    reconnect: Option<ConnectionId>,
) -> Result<String, WebError> {
    let token = tokens::random_urlsafe(24);
    let mut conn = state.db.acquire().await?;
    connect_sessions::create(
        &mut conn,
        &NewConnectSession {
            token: &token,
            user,
            integration,
            reconnect,
            display_code: &display_code(),
            expires_at: OffsetDateTime::now_utc() + CONNECT_TTL,
        },
    )
    .await?;
    Ok(token)
}

fn redirect_uri(state: &AppState) -> String {
    format!("{}/oauth/callback", state.config.public_web_url)
}

#[derive(Template)]
#[template(path = "connect_form.html")]
struct KeyForm {
    signed_in_as: Option<String>,
    csrf: String,
    token: String,
    app_name: String,
    display_code: String,
    basic: bool,
    /// An application key plus a token.
    pair: bool,
    error: Option<String>,
}

fn finished_page(
    email: &str,
    csrf: &str,
    heading: &str,
    message: String,
    is_error: bool,
    status: StatusCode,
) -> Result<Response, WebError> {
    let mut m = MessagePage::info(heading, &message);
    m.signed_in_as = Some(email.to_string());
    m.csrf = csrf.to_string();
    m.is_error = is_error;
    m.link = Some(("/connections".into(), "Your connections".into()));
    let mut response = page(&m)?;
    *response.status_mut() = status;
    Ok(response)
}

async fn open_session(
    state: &AppState,
    user: UserId,
    token: &str,
) -> Result<(ConnectSession, std::sync::Arc<Provider>), WebError> {
    let mut conn = state.db.acquire().await?;
    // Another person's session is not found, like an unknown one.
    let session = connect_sessions::get_for_user(&mut conn, user, token).await?.ok_or_else(WebError::not_found)?;
    let provider = state.catalog.provider(&session.integration).cloned().ok_or_else(WebError::not_found)?;
    Ok((session, provider))
}

fn closed_message(status: &str, error: Option<&str>) -> String {
    match status {
        "connected" => "This connection is made already. You can go back to your agent.".into(),
        "failed" => format!("This connect attempt failed: {}", error.unwrap_or("unknown reason")),
        _ => "This connect link has expired. Start again from your agent or the connections page.".into(),
    }
}

/// `GET /connect/{token}`: OAuth providers redirect to the provider; key providers show
/// the form.
pub async fn show(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    let (session, provider) = open_session(&state, user.user_id, &token).await?;
    if session.effective_status() != "awaiting_user_action" {
        let msg = closed_message(session.effective_status(), session.error_message.as_deref());
        return finished_page(&user.email, &user.csrf_token, "Connect", msg, false, StatusCode::OK);
    }
    match &provider.auth {
        Auth::Oauth2 { authorize_url, token_url, scopes, pkce, extra_authorize_params, .. } => {
            let Some(client) = state.config.oauth_clients.get(&provider.id) else {
                let msg = format!(
                    "{} is not set up on this ClawLink: the operator must register an OAuth app and set CLAWLINK_PROVIDER_{}_CLIENT_ID.",
                    provider.name,
                    provider.id.to_uppercase()
                );
                let mut conn = state.db.acquire().await?;
                connect_sessions::fail(&mut conn, session.id, &msg).await?;
                return finished_page(
                    &user.email,
                    &user.csrf_token,
                    "Cannot connect",
                    msg,
                    true,
                    StatusCode::SERVICE_UNAVAILABLE,
                );
            };
            let oauth = oauth2::basic::BasicClient::new(ClientId::new(client.client_id.clone()))
                .set_auth_uri(AuthUrl::new(authorize_url.clone()).map_err(WebError::internal)?)
                .set_token_uri(TokenUrl::new(token_url.clone()).map_err(WebError::internal)?)
                .set_redirect_uri(RedirectUrl::new(redirect_uri(&state)).map_err(WebError::internal)?);
            let mut request =
                oauth.authorize_url(CsrfToken::new_random).add_scopes(scopes.iter().map(|s| Scope::new(s.clone())));
            let verifier = if *pkce {
                let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
                request = request.set_pkce_challenge(challenge);
                verifier.secret().clone()
            } else {
                String::new()
            };
            for (k, v) in extra_authorize_params {
                request = request.add_extra_param(k.clone(), v.clone());
            }
            let (url, csrf_state) = request.url();
            let mut conn = state.db.acquire().await?;
            connect_sessions::begin_oauth(&mut conn, session.id, &token_hash(csrf_state.secret()), &verifier).await?;
            Ok(Redirect::to(url.as_str()).into_response())
        }
        Auth::ApiKey { .. } | Auth::Basic | Auth::KeyPair { .. } => page(&KeyForm {
            signed_in_as: Some(user.email),
            csrf: user.csrf_token,
            token,
            app_name: provider.name.clone(),
            display_code: session.display_code,
            basic: matches!(provider.auth, Auth::Basic),
            pair: matches!(provider.auth, Auth::KeyPair { .. }),
            error: None,
        }),
    }
}

/// Stores the account: the exact row, its sealed credential and the session's end, in
/// one transaction.
async fn save(
    state: &AppState,
    session: &ConnectSession,
    provider: &Provider,
    identity: &AccountIdentity,
    bundle: &CredentialBundle,
    expires_at: Option<OffsetDateTime>,
) -> Result<ConnectionId, WebError> {
    let mut tx = state.db.begin().await?;
    let reconnect = if session.reconnect { session.connection_id } else { None };
    let (id, created) = match connections::upsert_account(
        &mut tx,
        session.user_id,
        &provider.id,
        reconnect,
        &identity.id,
        &identity.label,
        expires_at,
    )
    .await
    {
        Ok(upserted) => upserted,
        Err(e) if clawlink_common::db::is_unique_violation(&e, "user_integrations_external_account") => {
            return Err(WebError::new(
                StatusCode::CONFLICT,
                "Account connected already",
                format!("{} is connected already as another connection. Reconnect that one instead.", identity.label),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let sealed = state
        .config
        .keyring
        .seal(RowIdentity::connection(session.user_id, id), &bundle.to_plaintext())
        .map_err(WebError::internal)?;
    connections::store_credential(&mut tx, id, session.user_id, &sealed).await?;
    connect_sessions::complete(&mut tx, session.id, id).await?;
    let action = if created { audit::CONNECTION_CREATED } else { audit::CONNECTION_REAUTHORIZED };
    let subject = format!("connection:{id}");
    // The app and the account's display label: never the credential or the provider's answer.
    let details = serde_json::json!({"integration": provider.id, "account": identity.label});
    audit::record(&mut tx, &audit::Event::by_person(session.user_id, action, &subject, details)).await?;
    tx.commit().await?;
    tracing::info!(user_id = %session.user_id, connection_id = %id, integration = %provider.id, "connection saved");
    Ok(id)
}

fn connected_message(provider: &Provider, identity: &AccountIdentity) -> String {
    format!("{} is connected as {}. You can go back to your agent.", provider.name, identity.label)
}

#[derive(Debug, Deserialize)]
pub struct KeyFields {
    #[serde(default)]
    key: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// `POST /connect/{token}`: an API key (or user name and password), checked against the
/// provider's identity endpoint before it is saved.
pub async fn submit_key(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(token): Path<String>,
    CsrfForm { fields, .. }: CsrfForm<KeyFields>,
) -> Result<Response, WebError> {
    let (session, provider) = open_session(&state, user.user_id, &token).await?;
    if session.effective_status() != "awaiting_user_action" {
        let msg = closed_message(session.effective_status(), session.error_message.as_deref());
        return finished_page(&user.email, &user.csrf_token, "Connect", msg, false, StatusCode::CONFLICT);
    }
    let bundle = match provider.auth {
        Auth::Basic => CredentialBundle::Basic {
            username: fields.username.trim().to_string(),
            password: SecretString::new(fields.password),
        },
        Auth::ApiKey { .. } => CredentialBundle::ApiKey { key: SecretString::new(fields.key.trim()) },
        Auth::KeyPair { .. } => CredentialBundle::KeyPair {
            key: SecretString::new(fields.key.trim()),
            token: SecretString::new(fields.password.trim()),
        },
        Auth::Oauth2 { .. } => return Err(WebError::not_found()),
    };
    let retry = |error: String| {
        let mut response = page(&KeyForm {
            signed_in_as: Some(user.email.clone()),
            csrf: user.csrf_token.clone(),
            token: token.clone(),
            app_name: provider.name.clone(),
            display_code: session.display_code.clone(),
            basic: matches!(provider.auth, Auth::Basic),
            pair: matches!(provider.auth, Auth::KeyPair { .. }),
            error: Some(error),
        })?;
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok::<_, WebError>(response)
    };
    let identity = match state.providers.fetch_identity(&provider, &bundle).await {
        Ok(Some(identity)) => identity,
        // No identity endpoint: the key cannot be checked; label the account by its end.
        Ok(None) => {
            AccountIdentity { id: format!("key-{}", &hex_tail(&bundle)), label: format!("{} key", provider.name) }
        }
        Err(IdentityError::Refused(_)) => {
            return retry(format!("{} refused this key. Check it and try again.", provider.name));
        }
        Err(e) => {
            tracing::warn!(error = %e, integration = %provider.id, "identity check failed");
            return retry(format!("{} could not be reached to check the key. Try again in a moment.", provider.name));
        }
    };
    save(&state, &session, &provider, &identity, &bundle, None).await?;
    finished_page(
        &user.email,
        &user.csrf_token,
        "Connected",
        connected_message(&provider, &identity),
        false,
        StatusCode::OK,
    )
}

/// A short, non-secret tag of a key: the first hex digits of its SHA-256.
fn hex_tail(bundle: &CredentialBundle) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bundle.to_plaintext().as_slice());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Ends the session as failed, with a message the person sees here and the agent sees
/// when it polls.
async fn fail_session(
    state: &AppState,
    user: &SessionUser,
    session_id: i64,
    message: String,
) -> Result<Response, WebError> {
    let mut conn = state.db.acquire().await?;
    connect_sessions::fail(&mut conn, session_id, &message).await?;
    finished_page(&user.email, &user.csrf_token, "Not connected", message, true, StatusCode::BAD_REQUEST)
}

#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /oauth/callback`: the provider sends the person back with a code (or an error).
pub async fn callback(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Query(cb): Query<Callback>,
) -> Result<Response, WebError> {
    let bad = || {
        WebError::new(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "This sign-in link is not valid or was used already. Start connecting again.",
        )
    };
    let raw_state = cb.state.as_deref().filter(|s| !s.is_empty()).ok_or_else(bad)?;
    let mut conn = state.db.acquire().await?;
    let session = connect_sessions::take_by_state(&mut conn, &token_hash(raw_state)).await?.ok_or_else(bad)?;
    drop(conn);
    let fail = |message: String| fail_session(&state, &user, session.id, message);
    if session.user_id != user.user_id {
        tracing::warn!("oauth callback for another person's session refused");
        return fail("This connect link belongs to another account.".into()).await;
    }
    if session.effective_status() != "awaiting_user_action" {
        return fail(closed_message(session.effective_status(), session.error_message.as_deref())).await;
    }
    let Some(provider) = state.catalog.provider(&session.integration).cloned() else {
        return Err(WebError::not_found());
    };
    if let Some(error) = cb.error.as_deref() {
        let detail = cb.error_description.as_deref().unwrap_or(error);
        let message = if error == "access_denied" {
            format!("Access was not granted at {}.", provider.name)
        } else {
            format!("{} refused the connection: {}", provider.name, detail.chars().take(200).collect::<String>())
        };
        return fail(message).await;
    }
    let Some(code) = cb.code.filter(|c| !c.is_empty()) else {
        return fail("The provider sent no authorization code.".into()).await;
    };
    let Auth::Oauth2 { token_url, extra_token_params, .. } = &provider.auth else { return Err(WebError::not_found()) };
    let Some(client) = state.config.oauth_clients.get(&provider.id) else {
        return fail(format!("{} is not set up on this ClawLink.", provider.name)).await;
    };
    let verifier = session.pkce_verifier.clone().filter(|v| !v.is_empty());
    let redirect = redirect_uri(&state);
    let exchange = state.tokens.exchange_code(token_url, client, &redirect, code, verifier, extra_token_params);
    let tokens = match exchange.await {
        Ok(tokens) => tokens,
        Err(e) => {
            tracing::warn!(error = %e, integration = %provider.id, "code exchange failed");
            return fail(format!(
                "{} did not accept the sign-in (the code exchange failed). Try connecting again.",
                provider.name
            ))
            .await;
        }
    };
    let expires_at = tokens.expires_at.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
    let bundle = CredentialBundle::Oauth2 {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_at: tokens.expires_at,
    };
    let identity = match state.providers.fetch_identity(&provider, &bundle).await {
        Ok(Some(identity)) => identity,
        Ok(None) => AccountIdentity { id: format!("{}-account", provider.id), label: provider.name.clone() },
        Err(e) => {
            tracing::warn!(error = %e, integration = %provider.id, "identity after oauth failed");
            return fail(format!(
                "Connected to {}, but it would not say which account this is; try again.",
                provider.name
            ))
            .await;
        }
    };
    match save(&state, &session, &provider, &identity, &bundle, expires_at).await {
        Ok(_) => finished_page(
            &user.email,
            &user.csrf_token,
            "Connected",
            connected_message(&provider, &identity),
            false,
            StatusCode::OK,
        ),
        Err(e) => {
            let message = e.message.clone();
            let _ = fail(message).await;
            Err(e)
        }
    }
}
