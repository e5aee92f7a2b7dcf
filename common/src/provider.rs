//! Calling a provider: the outbound HTTP client, the credential bundle and how it
//! authenticates a request, and the guard that keeps requests on public hosts.
//!
//! Requests go only where the catalog says (see `catalog::render`), and never to a
//! private, loopback, link-local or metadata address — whether written as a literal IP
//! or reached through DNS — except the `host:port` pairs a deployment allows (the
//! emulator in tests). Redirects are not followed. Token requests (`oauth`) go out through
//! the same client and guard ([`ProviderClient::send`]). Knows nothing about queues or
//! storage.

use crate::catalog::{Auth, Provider, RenderedRequest, RequestBody};
use crate::config::ProviderOverrides;
use crate::secret::SecretString;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The decrypted secrets of one connection. Lives only in the worker's memory (and the
/// OAuth callback's); zeroed on drop through `SecretString`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CredentialBundle {
    /// An OAuth access token (with its refresh token when the provider issues one).
    Oauth2 {
        access_token: SecretString,
        #[serde(default)]
        refresh_token: Option<SecretString>,
        /// Unix seconds.
        #[serde(default)]
        expires_at: Option<i64>,
    },
    ApiKey {
        key: SecretString,
    },
    Basic {
        username: String,
        password: SecretString,
    },
    /// An application key and a person's token, sent together (Trello).
    KeyPair {
        key: SecretString,
        token: SecretString,
    },
    /// A static bearer token (the sandbox).
    Bearer {
        token: SecretString,
    },
}

impl CredentialBundle {
    pub fn to_plaintext(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(serde_json::to_vec(self).expect("bundle serialises"))
    }

    pub fn from_plaintext(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the provider took too long to answer")]
    Timeout,
    /// No connection was made: the request was not sent.
    #[error("could not reach the provider: {0}")]
    Connect(String),
    /// The connection failed after the request may have been sent (a reset, a closed
    /// connection before the answer).
    #[error("the connection to the provider failed during the call: {0}")]
    Interrupted(String),
    #[error("the provider's answer was cut off: {0}")]
    Body(String),
    #[error("the request was blocked: {0}")]
    Blocked(String),
    #[error("this connection's credential does not fit the provider's auth")]
    CredentialMismatch,
}

impl CallError {
    /// Worth retrying (the network or the provider may do better next time).
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Timeout | CallError::Connect(_) | CallError::Interrupted(_) | CallError::Body(_))
    }

    /// Whether the provider may have acted on the request: it was sent (or may have been)
    /// and the answer was lost.
    pub fn maybe_performed(&self) -> bool {
        matches!(self, CallError::Timeout | CallError::Interrupted(_) | CallError::Body(_))
    }
}

/// A provider's answer, with the headers the worker needs.
#[derive(Debug)]
pub struct ProviderResponse {
    pub status: u16,
    pub body: serde_json::Value,
    pub retry_after: Option<String>,
    pub reset: Option<String>,
    pub request_id: Option<String>,
    pub elapsed: Duration,
}

/// Whether `ip` is a public unicast address.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 carrier-grade NAT
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8))
            };
            // Forms that carry an IPv4 address inside: 6to4 (2002::/16) and IPv4-translated
            // (::ffff:0:0/96) are as public as the address they carry.
            if s[0] == 0x2002 {
                return is_public_ip(embedded(s[1], s[2]));
            }
            if s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
                return is_public_ip(embedded(s[6], s[7]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 can reach private IPv4
                || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
                || (s[0] == 0x2001 && s[1] == 0) // Teredo: a tunnel whose far end it hides
                || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
                || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0)) // IPv4-compatible
        }
    }
}

#[derive(Clone, Debug)]
struct Guard {
    allowed: Arc<Vec<String>>,
}

impl Guard {
    fn allows(&self, host: &str, port: u16, ip: IpAddr) -> bool {
        is_public_ip(ip)
            || self
                .allowed
                .iter()
                .any(|a| a == &format!("{host}:{port}") || a == &SocketAddr::new(ip, port).to_string())
    }
}

impl Guard {
    /// Refuses a URL whose host is a literal address that is not public (names are
    /// checked after resolution, by [`GuardedResolver`]). The `url` crate has already
    /// normalised every IPv4 spelling (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) to
    /// dotted decimal, so one check covers them all.
    fn check_literal(&self, url: &url::Url) -> Result<(), CallError> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(CallError::Blocked("the URL has no host".into())),
        };
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(0);
        if self.allows(host, port, ip) {
            Ok(())
        } else {
            Err(CallError::Blocked(format!("{ip} is not a public address")))
        }
    }
}

/// Resolves names and drops every answer that is not a public address (DNS rebinding
/// and names that point inside are refused the same way as literal IPs).
struct GuardedResolver {
    guard: Guard,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| {
                    is_public_ip(a.ip()) || guard.allowed.iter().any(|h| h.split(':').next() == Some(host.as_str()))
                })
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(InsideName(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The resolver's refusal, found again in the error chain so the call fails as blocked
/// (for good) rather than as a network error worth retrying.
#[derive(Debug)]
struct InsideName(String);

impl std::fmt::Display for InsideName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves only to private addresses", self.0)
    }
}

impl std::error::Error for InsideName {}

/// The one outbound client of a process: connection pools are shared by every call.
#[derive(Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    guard: Guard,
}

impl ProviderClient {
    pub fn new(overrides: &ProviderOverrides, timeout: Duration) -> Result<Self, reqwest::Error> {
        install_crypto_provider();
        let guard = Guard { allowed: Arc::new(overrides.allowed_private_hosts.clone()) };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .user_agent(concat!("ClawLink/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { guard: guard.clone() }))
            .build()?;
        Ok(Self { http, guard })
    }

    /// Sends `request` with the connection's credential applied.
    pub async fn call(
        &self,
        provider: &Provider,
        request: &RenderedRequest,
        credential: &CredentialBundle,
        idempotency_key: Option<&str>,
    ) -> Result<ProviderResponse, CallError> {
        let url = &request.url;
        self.guard.check_literal(url)?;
        let mut builder = self.http.request(request.method.clone(), url.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let (Some(header), Some(key)) = (&provider.idempotency_header, idempotency_key) {
            builder = builder.header(header, key);
        }
        builder = apply_auth(builder, &provider.auth, credential)?;
        match &request.body {
            Some(RequestBody::Json(body)) => builder = builder.json(body),
            Some(RequestBody::Form(pairs)) => builder = builder.form(pairs),
            None => {}
        }
        let started = Instant::now();
        let response = builder.send().await.map_err(classify_reqwest)?;
        let status = response.status().as_u16();
        let header = |names: &[String]| {
            names
                .iter()
                .find_map(|n| response.headers().get(n.as_str()).and_then(|v| v.to_str().ok()).map(String::from))
        };
        let retry_after = header(&provider.retry_headers.retry_after);
        let reset = header(&provider.retry_headers.reset);
        let request_id = provider.request_id_header.as_ref().and_then(|h| header(std::slice::from_ref(h)));
        let bytes = response.bytes().await.map_err(|e| CallError::Body(e.to_string()))?;
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).chars().take(4096).collect())
            })
        };
        Ok(ProviderResponse { status, body, retry_after, reset, request_id, elapsed: started.elapsed() })
    }
}

impl ProviderClient {
    /// Sends a request that is not a tool call (a token request of `oauth`) through the
    /// same guard, answered within `timeout`, and reads the whole answer.
    pub async fn send(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Duration,
    ) -> Result<http::Response<Vec<u8>>, CallError> {
        let (parts, body) = request.into_parts();
        let url = url::Url::parse(&parts.uri.to_string()).map_err(|_| CallError::Blocked("not a URL".into()))?;
        self.guard.check_literal(&url)?;
        let response = self
            .http
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(classify_reqwest)?;
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.bytes().await.map_err(|e| CallError::Body(e.without_url().to_string()))?;
        let mut answer = http::Response::new(bytes.to_vec());
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

fn classify_reqwest(e: reqwest::Error) -> CallError {
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        if let Some(inside) = cause.downcast_ref::<InsideName>() {
            return CallError::Blocked(inside.to_string());
        }
        source = cause.source();
    }
    // Strip the URL: it is ours, but keep errors short and free of query strings. A
    // connect error (refused, DNS, TLS, a connect timeout) sent nothing; any other failure
    // came after the request may have gone out.
    if e.is_connect() {
        CallError::Connect(e.without_url().to_string())
    } else if e.is_timeout() {
        CallError::Timeout
    } else {
        CallError::Interrupted(e.without_url().to_string())
    }
}

fn apply_auth(
    builder: reqwest::RequestBuilder,
    auth: &Auth,
    credential: &CredentialBundle,
) -> Result<reqwest::RequestBuilder, CallError> {
    Ok(match (auth, credential) {
        (Auth::Oauth2 { .. }, CredentialBundle::Oauth2 { access_token, .. }) => {
            builder.bearer_auth(access_token.expose())
        }
        (_, CredentialBundle::Bearer { token }) => builder.bearer_auth(token.expose()),
        (Auth::ApiKey { header, query, format }, CredentialBundle::ApiKey { key }) => {
            let value = format.replace("{key}", key.expose());
            match (header, query) {
                (Some(h), _) => builder.header(h.as_str(), value),
                (None, Some(q)) => builder.query(&[(q.as_str(), value.as_str())]),
                (None, None) => return Err(CallError::CredentialMismatch),
            }
        }
        (Auth::KeyPair { key_query, token_query }, CredentialBundle::KeyPair { key, token }) => {
            builder.query(&[(key_query.as_str(), key.expose()), (token_query.as_str(), token.expose())])
        }
        (Auth::Basic, CredentialBundle::Basic { username, password }) => {
            let raw = format!("{username}:{}", password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
            builder.header("authorization", format!("Basic {encoded}"))
        }
        _ => return Err(CallError::CredentialMismatch),
    })
}

fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fe80::1",
            "fd00::1",
            "64:ff9b::a00:1",
            "::",
        ] {
            assert!(!is_public_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["140.82.112.3", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    fn guard(allowed: &[&str]) -> Guard {
        Guard { allowed: Arc::new(allowed.iter().map(|a| a.to_string()).collect()) }
    }

    /// Every spelling of an inside address an attacker might put in a base URL, checked
    /// before any connection is attempted (nothing here is ever dialled).
    #[test]
    fn every_spelling_of_an_inside_address_is_refused() {
        let g = guard(&["127.0.0.1:8090"]);
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://127.1/",
            "http://127.0.0.1./",
            "http://0/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[fe80::]/",
            "http://[fe80::1%25eth0]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[::]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0xa9fea9fe/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://100.64.0.1/",
            "http://100.127.255.254/",
            "http://10.0.0.1/",
            "http://012.0.0.1/",
            "http://172.16.0.1/",
            "http://192.168.0.1/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://[::ffff:0:7f00:1]/",
            "http://[::ffff:0:a9fe:a9fe]/",
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://127.0.0.1:8091/",
        ] {
            let parsed = match url::Url::parse(url) {
                Ok(u) => u,
                // A spelling the URL parser refuses cannot be sent either.
                Err(_) => continue,
            };
            assert!(
                matches!(g.check_literal(&parsed), Err(CallError::Blocked(_))),
                "{url} (parsed as {parsed}) was let through"
            );
        }
        // The allowed pair itself, and public addresses and names, pass.
        for url in [
            "http://127.0.0.1:8090/x",
            "https://140.82.112.3/",
            "https://[2606:4700::1111]/",
            "https://[2002:8c52:7003::]/",
            "https://api.github.com/",
        ] {
            assert!(g.check_literal(&url::Url::parse(url).unwrap()).is_ok(), "{url}");
        }
    }

    #[test]
    fn the_url_parser_normalises_every_ipv4_spelling() {
        // The guard relies on this: a spelling left as a name would go to the resolver,
        // which checks too, but the literal check is the first line.
        for url in ["http://2130706433/", "http://0177.0.0.1/", "http://0x7f.1/", "http://127.1/", "http://127.0.0.1./"]
        {
            let parsed = url::Url::parse(url).unwrap();
            assert_eq!(parsed.host(), Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST)), "{url}");
        }
    }

    #[tokio::test]
    async fn names_that_resolve_inside_are_refused() {
        use reqwest::dns::Resolve;
        let resolver = GuardedResolver { guard: guard(&["127.0.0.1:8090"]) };
        let mut names = vec!["localhost".to_string(), "localhost.".into(), "LOCALHOST".into()];
        // The machine's own name resolves to loopback through /etc/hosts on most hosts.
        if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
            names.push(host.trim().to_string());
        }
        for name in names.into_iter().filter(|n| !n.is_empty()) {
            let resolved = resolver.resolve(name.parse().unwrap()).await;
            match resolved {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    assert!(addrs.iter().all(|a| is_public_ip(a.ip())), "{name} → {addrs:?}");
                }
                Err(e) => assert!(
                    e.to_string().contains("private") || e.to_string().contains("failed to lookup"),
                    "{name}: {e}"
                ),
            }
        }
        let refused = resolver.resolve("localhost".parse().unwrap()).await.err().expect("localhost is refused");
        assert!(refused.to_string().contains("resolves only to private addresses"), "{refused}");
    }

    /// A name that resolves inside fails the call as blocked, not as a network error
    /// that would be retried.
    #[tokio::test]
    async fn a_call_to_a_name_that_resolves_inside_is_blocked() {
        let client = ProviderClient::new(&ProviderOverrides::default(), Duration::from_secs(5)).unwrap();
        let provider: Provider = toml::from_str(
            "id = \"r\"\nname = \"R\"\nbase_url = \"http://localhost:9\"\nauth = { type = \"basic\" }\n",
        )
        .unwrap();
        let request = RenderedRequest {
            method: http::Method::GET,
            url: url::Url::parse("http://localhost:9/x").unwrap(),
            headers: vec![],
            body: None,
        };
        let credential = CredentialBundle::Bearer { token: SecretString::new("t") };
        let error = client.call(&provider, &request, &credential, None).await.unwrap_err();
        assert!(matches!(&error, CallError::Blocked(m) if m.contains("private")), "{error:?}");
        assert!(!error.is_transient());
    }

    /// A redirect is an answer, never followed: the client hands back the 3xx as it is.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inside = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inside_addr = inside.local_addr().unwrap();
        let served = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = socket.read(&mut buf).await.unwrap();
            let answer = format!(
                "HTTP/1.1 302 Found\r\nlocation: http://{inside_addr}/latest/meta-data/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
        });
        let overrides = ProviderOverrides {
            // Both are allowed, so only the redirect policy stands between them.
            allowed_private_hosts: vec![addr.to_string(), inside_addr.to_string()],
            ..Default::default()
        };
        let client = ProviderClient::new(&overrides, Duration::from_secs(5)).unwrap();
        let provider: Provider = toml::from_str(&format!(
            "id = \"r\"\nname = \"R\"\nbase_url = \"http://{addr}\"\nauth = {{ type = \"basic\" }}\n"
        ))
        .unwrap();
        let request = RenderedRequest {
            method: http::Method::GET,
            url: url::Url::parse(&format!("http://{addr}/start")).unwrap(),
            headers: vec![],
            body: None,
        };
        let credential = CredentialBundle::Bearer { token: SecretString::new("t") };
        let response = client.call(&provider, &request, &credential, None).await.unwrap();
        assert_eq!(response.status, 302);
        served.await.unwrap();
        let reached = tokio::time::timeout(Duration::from_millis(300), inside.accept()).await;
        assert!(reached.is_err(), "the redirect target was contacted");
    }

    #[test]
    fn bundle_debug_is_redacted() {
        let b = CredentialBundle::Bearer { token: SecretString::new("tok-123-secret") };
        assert!(!format!("{b:?}").contains("tok-123-secret"));
        let round = CredentialBundle::from_plaintext(&b.to_plaintext()).unwrap();
        assert!(matches!(round, CredentialBundle::Bearer { token } if token.expose() == "tok-123-secret"));
    }
}

/// The connected account, as the provider's identity endpoint describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountIdentity {
    /// Stable id of the account at the provider.
    pub id: String,
    /// What a person recognises it by (email, login, workspace).
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the provider refused the credential ({0})")]
    Refused(u16),
    #[error("the provider answered {0} to the identity request")]
    Status(u16),
    #[error("the provider's identity answer has no {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Call(#[from] CallError),
}

impl ProviderClient {
    /// Asks the provider who `credential` belongs to (the catalog's `identity` request).
    /// `None` when the provider declares no identity endpoint.
    pub async fn fetch_identity(
        &self,
        provider: &Provider,
        credential: &CredentialBundle,
    ) -> Result<Option<AccountIdentity>, IdentityError> {
        let Some(identity) = &provider.identity else { return Ok(None) };
        let url = url::Url::parse(&format!("{}{}", provider.base_url.trim_end_matches('/'), identity.path))
            .map_err(|e| CallError::Blocked(format!("identity URL: {e}")))?;
        let method: http::Method = identity.method.parse().unwrap_or(http::Method::GET);
        let request = RenderedRequest {
            method,
            url,
            headers: provider.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            body: identity.body.clone().map(RequestBody::Json),
        };
        let response = self.call(provider, &request, credential, None).await?;
        match response.status {
            200..=299 => {}
            401 | 403 => return Err(IdentityError::Refused(response.status)),
            s => return Err(IdentityError::Status(s)),
        }
        let text = |pointer: &str| {
            response.body.pointer(pointer).and_then(|v| match v {
                serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let id = text(&identity.id).ok_or(IdentityError::Missing("account id"))?;
        let label = text(&identity.label).unwrap_or_else(|| id.clone());
        Ok(Some(AccountIdentity { id, label }))
    }
}
