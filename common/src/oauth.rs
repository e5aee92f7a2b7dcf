//! The OAuth 2.0 token endpoint client: the authorization-code exchange (RFC 6749 §4.1.3,
//! with the PKCE verifier of RFC 7636) for the web's connect callback, and the
//! refresh-token grant (§6) for `refresh`. Requests are built and answers read by the
//! `oauth2` crate; its HTTP goes through [`ProviderClient::send`], so a token URL meets the
//! same guard as a provider call: no private address, written as a literal or reached
//! through DNS, except the `host:port` pairs the deployment allows, and no redirects.
//!
//! Answers are read leniently where providers stray from §5.1: `token_type` may be
//! missing, `expires_in` may be a number in a string, an empty `refresh_token` is none.
//! Errors carry the endpoint's status and RFC 6749 error code, never a token, a secret or
//! the provider's prose. Knows nothing about storage or which connection a token is for.

use crate::config::OAuthClient;
use crate::provider::{CallError, ProviderClient};
use crate::secret::SecretString;
use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AccessToken, AuthType, AuthorizationCode, ClientId, ClientSecret, EndpointNotSet, EndpointSet, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken, TokenUrl,
};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
use time::OffsetDateTime;

/// What a token endpoint granted.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: SecretString,
    /// A refresh token, when the endpoint issued one (on a refresh: it rotated them).
    pub refresh_token: Option<SecretString>,
    /// When the access token expires (Unix seconds), when the endpoint said.
    pub expires_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// RFC 6749 §5.2 `invalid_grant`: the code or refresh token is revoked, expired or
    /// spent.
    #[error("the token endpoint refused the grant (invalid_grant)")]
    InvalidGrant,
    /// Anything else (the guard, the network, 5xx, a malformed answer, a misconfigured
    /// client).
    #[error("{0}")]
    Failed(String),
}

/// Calls token endpoints for one process. Cheap to clone.
#[derive(Clone)]
pub struct TokenClient {
    http: ProviderClient,
    /// Each token request must be answered within this.
    timeout: Duration,
}

/// A token endpoint's answer (RFC 6749 §5.1), read leniently (see the module note).
#[derive(Debug, Deserialize, Serialize)]
struct Answer {
    access_token: AccessToken,
    #[serde(default = "bearer")]
    token_type: BasicTokenType,
    #[serde(default, deserialize_with = "seconds")]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<RefreshToken>,
}

fn bearer() -> BasicTokenType {
    BasicTokenType::Bearer
}

/// A number, or a number in a string (some providers send that).
fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(value.and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok())))
}

impl oauth2::TokenResponse for Answer {
    type TokenType = BasicTokenType;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }

    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(|s| Duration::from_secs(s.max(0) as u64))
    }

    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    fn scopes(&self) -> Option<&Vec<Scope>> {
        None
    }
}

/// The `oauth2` client before (`Unset`) and after (`Client`) its token endpoint is set.
type Unset = oauth2::Client<
    BasicErrorResponse,
    Answer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
>;
type Client = oauth2::Client<
    BasicErrorResponse,
    Answer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

type Failure = RequestTokenError<CallError, BasicErrorResponse>;

impl TokenClient {
    pub fn new(http: ProviderClient, timeout: Duration) -> Self {
        Self { http, timeout }
    }

    /// `grant_type=authorization_code`. With a secret the client authenticates with HTTP
    /// Basic (§2.3.1); without one (a public client) it sends its id in the body.
    pub async fn exchange_code(
        &self,
        token_url: &str,
        client: &OAuthClient,
        redirect_uri: &str,
        code: String,
        pkce_verifier: Option<String>,
        extra: &BTreeMap<String, String>,
    ) -> Result<Tokens, TokenError> {
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|_| TokenError::Failed("the redirect URI is not a URL".into()))?;
        let oauth = oauth_client(token_url, client, AuthType::BasicAuth)?.set_redirect_uri(redirect);
        let mut request = oauth.exchange_code(AuthorizationCode::new(code));
        if let Some(verifier) = pkce_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier));
        }
        for (k, v) in extra {
            request = request.add_extra_param(k.as_str(), v.as_str());
        }
        let transport = self.transport();
        read(request.request_async(&transport).await, &transport.status)
    }

    /// `grant_type=refresh_token`, the client authenticating with its id and secret in the
    /// body (§2.3.1), plus the catalog's extra parameters.
    pub async fn refresh(
        &self,
        token_url: &str,
        client: &OAuthClient,
        refresh_token: &SecretString,
        extra: &BTreeMap<String, String>,
    ) -> Result<Tokens, TokenError> {
        let oauth = oauth_client(token_url, client, AuthType::RequestBody)?;
        let refresh_token = RefreshToken::new(refresh_token.expose().to_string());
        let mut request = oauth.exchange_refresh_token(&refresh_token);
        for (k, v) in extra {
            request = request.add_extra_param(k.as_str(), v.as_str());
        }
        let transport = self.transport();
        read(request.request_async(&transport).await, &transport.status)
    }

    fn transport(&self) -> Transport<'_> {
        Transport { http: &self.http, timeout: self.timeout, status: AtomicU16::new(0) }
    }
}

/// The HTTP of one token request, as `oauth2` calls it: through the guard, noting the
/// status for the error messages. (A named type rather than a closure, so the request's
/// future is `Send` for any lifetime.)
struct Transport<'a> {
    http: &'a ProviderClient,
    timeout: Duration,
    status: AtomicU16,
}

impl<'c> oauth2::AsyncHttpClient<'c> for Transport<'_> {
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, CallError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.http.send(request, self.timeout).await?;
            self.status.store(response.status().as_u16(), Ordering::Relaxed);
            Ok(response)
        })
    }
}

fn oauth_client(token_url: &str, client: &OAuthClient, auth: AuthType) -> Result<Client, TokenError> {
    let url =
        TokenUrl::new(token_url.to_string()).map_err(|_| TokenError::Failed("the token URL is not a URL".into()))?;
    let mut oauth = Unset::new(ClientId::new(client.client_id.clone())).set_token_uri(url).set_auth_type(auth);
    if let Some(secret) = &client.client_secret {
        oauth = oauth.set_client_secret(ClientSecret::new(secret.expose().to_string()));
    }
    Ok(oauth)
}

fn read(answer: Result<Answer, Failure>, status: &AtomicU16) -> Result<Tokens, TokenError> {
    let status = status.load(Ordering::Relaxed);
    let answer = answer.map_err(|e| classify(e, status))?;
    Ok(Tokens {
        access_token: SecretString::new(answer.access_token.into_secret()),
        refresh_token: answer
            .refresh_token
            .map(|t| SecretString::new(t.into_secret()))
            .filter(|t| !t.expose().is_empty()),
        expires_at: answer.expires_in.map(|secs| OffsetDateTime::now_utc().unix_timestamp() + secs),
    })
}

fn classify(error: Failure, status: u16) -> TokenError {
    let failed = |reason: String| TokenError::Failed(reason);
    match error {
        RequestTokenError::ServerResponse(e)
            if matches!(e.error(), BasicErrorResponseType::InvalidGrant) && matches!(status, 400 | 401) =>
        {
            TokenError::InvalidGrant
        }
        // The error code is the spec's vocabulary, never a secret; the description is
        // left out.
        RequestTokenError::ServerResponse(e) => {
            let code: String = e.error().as_ref().chars().take(100).collect();
            failed(format!("the token endpoint answered {status}: {code}"))
        }
        RequestTokenError::Request(CallError::Blocked(reason)) => failed(format!("the token URL is blocked: {reason}")),
        RequestTokenError::Request(CallError::Timeout) => failed("the token endpoint took too long to answer".into()),
        RequestTokenError::Request(CallError::Connect(e)) => {
            failed(format!("the token endpoint could not be reached: {e}"))
        }
        RequestTokenError::Request(CallError::Body(e)) => {
            failed(format!("the token endpoint's answer was cut off: {e}"))
        }
        RequestTokenError::Request(e) => failed(format!("the token request failed: {e}")),
        RequestTokenError::Parse(_, body) => {
            let body = zeroize::Zeroizing::new(body);
            if serde_json::from_slice::<serde_json::Value>(&body).is_ok() {
                failed(format!("the token endpoint answered {status} without an access token"))
            } else {
                failed(format!("the token endpoint answered {status} without a JSON body"))
            }
        }
        RequestTokenError::Other(reason) => failed(format!("the token endpoint answered {status}: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderOverrides;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A token endpoint on loopback that gives every request the same answer and keeps
    /// what it was sent.
    struct Endpoint {
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<String>>>,
    }

    async fn endpoint(status: u16, body: &'static str) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body its content-length announces.
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    let Some(end) = text.find("\r\n\r\n") else { if n == 0 { break } else { continue } };
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
                seen.lock().unwrap().push(String::from_utf8_lossy(&request).to_string());
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        Endpoint { addr, requests }
    }

    fn tokens_for(allowed: &[SocketAddr]) -> TokenClient {
        let overrides = ProviderOverrides {
            allowed_private_hosts: allowed.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        TokenClient::new(ProviderClient::new(&overrides, Duration::from_secs(5)).unwrap(), Duration::from_secs(5))
    }

    fn client(secret: Option<&str>) -> OAuthClient {
        OAuthClient { client_id: "app".into(), client_secret: secret.map(SecretString::new) }
    }

    async fn refresh(status: u16, body: &'static str) -> Result<Tokens, TokenError> {
        let e = endpoint(status, body).await;
        let url = format!("http://{}/token", e.addr);
        tokens_for(&[e.addr]).refresh(&url, &client(Some("s")), &SecretString::new("r1"), &BTreeMap::new()).await
    }

    #[tokio::test]
    async fn answers_are_read_leniently_and_classified() {
        let t = refresh(200, r#"{"access_token":"a1","refresh_token":"r2","expires_in":3600,"token_type":"bearer"}"#)
            .await
            .unwrap();
        assert_eq!(t.access_token.expose(), "a1");
        assert_eq!(t.refresh_token.unwrap().expose(), "r2");
        let in_an_hour = OffsetDateTime::now_utc().unix_timestamp() + 3600;
        assert!((in_an_hour - 2..=in_an_hour).contains(&t.expires_at.unwrap()));
        // No token_type, expires_in in a string, an empty refresh token: no rotation.
        let t = refresh(200, r#"{"access_token":"a1","expires_in":"60","refresh_token":""}"#).await.unwrap();
        assert!(t.refresh_token.is_none() && t.expires_at.is_some());
        assert!(matches!(refresh(400, r#"{"error":"invalid_grant"}"#).await, Err(TokenError::InvalidGrant)));
        let failed = |r: Result<Tokens, TokenError>| match r {
            Err(TokenError::Failed(reason)) => reason,
            other => panic!("expected a failure, got {other:?}"),
        };
        assert_eq!(
            failed(refresh(400, r#"{"error":"invalid_client"}"#).await),
            "the token endpoint answered 400: invalid_client"
        );
        assert_eq!(
            failed(refresh(500, r#"{"error":"invalid_grant"}"#).await),
            "the token endpoint answered 500: invalid_grant",
            "a server error is not the grant's fault"
        );
        assert_eq!(failed(refresh(503, "down").await), "the token endpoint answered 503 without a JSON body");
        assert_eq!(
            failed(refresh(200, r#"{"token_type":"bearer"}"#).await),
            "the token endpoint answered 200 without an access token"
        );
    }

    #[tokio::test]
    async fn failure_reasons_never_carry_tokens() {
        let body = r#"{"error":"server_error","error_description":"leak-d","access_token":"leak-a"}"#;
        let Err(TokenError::Failed(reason)) = refresh(500, body).await else { panic!("expected a failure") };
        assert!(!reason.contains("leak"), "{reason}");
        assert!(reason.contains("server_error"), "{reason}");
    }

    /// The refresh grant authenticates in the body, the code exchange with HTTP Basic
    /// (public clients: the id in the body), each with the catalog's extra parameters.
    #[tokio::test]
    async fn requests_carry_the_grant_and_the_client() {
        let e = endpoint(200, r#"{"access_token":"a"}"#).await;
        let url = format!("http://{}/token", e.addr);
        let tokens = tokens_for(&[e.addr]);
        let extra = BTreeMap::from([("audience".to_string(), "x".to_string())]);
        tokens.refresh(&url, &client(Some("s3")), &SecretString::new("r1"), &extra).await.unwrap();
        tokens
            .exchange_code(&url, &client(Some("s3")), "https://cl.example/cb", "c1".into(), Some("v1".into()), &extra)
            .await
            .unwrap();
        tokens.exchange_code(&url, &client(None), "https://cl.example/cb", "c2".into(), None, &extra).await.unwrap();
        let requests = e.requests.lock().unwrap().clone();
        let body = |i: usize| requests[i].split("\r\n\r\n").nth(1).unwrap().to_string();
        let basic = |i: usize| requests[i].to_ascii_lowercase().contains("authorization: basic");
        let refresh = body(0);
        for part in ["grant_type=refresh_token", "refresh_token=r1", "client_id=app", "client_secret=s3", "audience=x"]
        {
            assert!(refresh.contains(part), "{part} missing from {refresh}");
        }
        assert!(!basic(0));
        let code = body(1);
        for part in ["grant_type=authorization_code", "code=c1", "code_verifier=v1", "redirect_uri=https", "audience=x"]
        {
            assert!(code.contains(part), "{part} missing from {code}");
        }
        assert!(basic(1) && !code.contains("client_secret"), "{}", requests[1]);
        let public = body(2);
        assert!(!basic(2) && public.contains("client_id=app") && !public.contains("client_secret"), "{public}");
    }

    /// The token endpoint goes through the provider guard: a loopback address, literal or
    /// by name, is refused before anything is sent unless the deployment allows it.
    #[tokio::test]
    async fn token_urls_inside_are_refused_literal_or_by_name() {
        let e = endpoint(200, r#"{"access_token":"a"}"#).await;
        let tokens = tokens_for(&[]);
        for url in [format!("http://{}/token", e.addr), format!("http://localhost:{}/token", e.addr.port())] {
            match tokens.refresh(&url, &client(Some("s")), &SecretString::new("r"), &BTreeMap::new()).await {
                Err(TokenError::Failed(reason)) => {
                    assert!(reason.starts_with("the token URL is blocked"), "{url}: {reason}")
                }
                other => panic!("{url}: expected a refusal, got {other:?}"),
            }
        }
        assert!(e.requests.lock().unwrap().is_empty(), "a refused token URL was contacted");
    }
}
