//! OAuth token refresh and credential key rotation, end to end.
//!
//! The provider is `oauthbox`, a test catalog entry whose API is the emulator's sandbox
//! (bearer auth against the emulator's accepted tokens) and whose token endpoint is
//! played here: it counts refresh calls, rotates refresh tokens (a used one is spent)
//! and answers a spent or unknown one with 400 `invalid_grant`, as RFC 6749 §5.2 says.
//! It issues `access-<n>` / `refresh-<n>`; tests tell the emulator which access tokens
//! to accept.

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clawlink_api::jobs::TokenSweep;
use clawlink_common::catalog::Catalog;
use clawlink_common::config::{ProviderOverrides, keyring_from_env, oauth_clients_from_env};
use clawlink_common::crypto::{Keyring, RowIdentity};
use clawlink_common::db::credentials;
use clawlink_common::ids::{ConnectionId, UserId};
use clawlink_common::keys::Keys;
use clawlink_common::lock::RedisLock;
use clawlink_common::provider::CredentialBundle;
use clawlink_common::refresh::Refresher;
use clawlink_common::rotation;
use clawlink_common::secret::SecretString;
use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack};
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

const CLIENT_ID: &str = "test-client";
const CLIENT_SECRET: &str = "test-secret";

/// How the token endpoint behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Rotates refresh tokens and issues access tokens the emulator is told to accept.
    Normal,
    /// Answers 503 to everything.
    Down,
    /// Issues access tokens the provider then refuses (access revoked right after).
    IssuesRefusedTokens,
}

#[derive(Default)]
struct Book {
    calls: u32,
    invalid_grants: u32,
    issued: u32,
    /// Refresh tokens that may be used (once).
    live: HashSet<String>,
}

struct TokenEndpoint {
    mode: Mode,
    expires_in: i64,
    /// Each answer takes this long (widens the window concurrent callers fall into).
    delay: Duration,
    book: Mutex<Book>,
}

struct TokenServer {
    addr: SocketAddr,
    endpoint: Arc<TokenEndpoint>,
}

impl TokenServer {
    async fn start(mode: Mode, expires_in: i64, delay: Duration) -> TokenServer {
        let endpoint = Arc::new(TokenEndpoint { mode, expires_in, delay, book: Mutex::default() });
        let app = axum::Router::new().route("/token", axum::routing::post(token)).with_state(endpoint.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TokenServer { addr, endpoint }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes `refresh_token` usable once.
    fn grant(&self, refresh_token: &str) {
        self.endpoint.book.lock().unwrap().live.insert(refresh_token.to_string());
    }

    fn calls(&self) -> u32 {
        self.endpoint.book.lock().unwrap().calls
    }

    fn invalid_grants(&self) -> u32 {
        self.endpoint.book.lock().unwrap().invalid_grants
    }

    fn is_live(&self, refresh_token: &str) -> bool {
        self.endpoint.book.lock().unwrap().live.contains(refresh_token)
    }
}

async fn token(State(endpoint): State<Arc<TokenEndpoint>>, Form(form): Form<HashMap<String, String>>) -> Response {
    tokio::time::sleep(endpoint.delay).await;
    let mut book = endpoint.book.lock().unwrap();
    book.calls += 1;
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("grant_type") != Some("refresh_token")
        || field("client_id") != Some(CLIENT_ID)
        || field("client_secret") != Some(CLIENT_SECRET)
        || field("audience") != Some("clawlink-test")
    {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    if endpoint.mode == Mode::Down {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": "temporarily_unavailable"})))
            .into_response();
    }
    if !field("refresh_token").is_some_and(|t| book.live.remove(t)) {
        book.invalid_grants += 1;
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response();
    }
    book.issued += 1;
    let n = book.issued;
    let refresh = format!("refresh-{n}");
    book.live.insert(refresh.clone());
    let access =
        if endpoint.mode == Mode::IssuesRefusedTokens { format!("refused-{n}") } else { format!("access-{n}") };
    axum::Json(json!({
        "access_token": access,
        "refresh_token": refresh,
        "expires_in": endpoint.expires_in,
        "token_type": "bearer",
    }))
    .into_response()
}

fn provider_toml(token_url: &str) -> String {
    format!(
        r#"id = "oauthbox"
name = "OAuth Box"
categories = ["developer-tools"]
# Workers get the emulator's URL through CLAWLINK_PROVIDER_OAUTHBOX_BASE_URL.
base_url = "http://127.0.0.1:9"
auth = {{ type = "oauth2", authorize_url = "{token_url}/authorize", token_url = "{token_url}/token", extra_token_params = {{ audience = "clawlink-test" }} }}

[[tools]]
action = "echo"
title = "Echo"
description = "Echoes a message."
method = "GET"
path = "/echo"
mode = "read"
risk = "safe"
preview = "Echo {{message}}"
input_schema = {{ type = "object", additionalProperties = false, required = ["message"], properties = {{ message = {{ type = "string" }} }} }}
"#
    )
}

/// A stack whose catalog has `oauthbox`, with `workers` workers that reach the emulator
/// and the token endpoint. `keys`: extra `CLAWLINK_CREDENTIAL_*` settings for the workers.
async fn oauth_stack(tokens: &TokenServer, workers: usize, keys: &[(&str, String)]) -> Stack {
    let mut stack = Stack::start(Options {
        workers: 0,
        env: vec![
            ("CLAWLINK_PROVIDER_OAUTHBOX_CLIENT_ID".into(), CLIENT_ID.into()),
            ("CLAWLINK_PROVIDER_OAUTHBOX_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            // Some tests here drive calls flat out; the per-device budget (100/s) is not
            // what they test.
            ("CLAWLINK_DEVICE_RATE_PER_SEC".into(), "100000".into()),
        ],
        extra_catalog: vec![("oauthbox.toml".into(), provider_toml(&tokens.url()))],
        ..Default::default()
    })
    .await;
    stack.env.set("CLAWLINK_PROVIDER_OAUTHBOX_BASE_URL", stack.emulator.url());
    stack.env.set("CLAWLINK_ALLOW_PRIVATE_PROVIDER_HOSTS", format!("{},{}", stack.emulator.addr(), tokens.addr));
    for (k, v) in keys {
        stack.env.set(k, v.clone());
    }
    for _ in 0..workers {
        stack.start_worker().await;
    }
    stack
}

/// Adds an `oauthbox` connection whose access token expires in `expires_in` seconds.
async fn oauth_connection(
    stack: &Stack,
    user: UserId,
    label: &str,
    access: &str,
    refresh: &str,
    expires_in: i64,
) -> ConnectionId {
    let bundle = CredentialBundle::Oauth2 {
        access_token: SecretString::new(access),
        refresh_token: Some(SecretString::new(refresh)),
        expires_at: Some(OffsetDateTime::now_utc().unix_timestamp() + expires_in),
    };
    stack.connection(user, "oauthbox", label, &bundle).await
}

/// What is stored for a connection now.
struct Stored {
    access: String,
    refresh: Option<String>,
    expires_at: Option<i64>,
    status: String,
    key_id: String,
    version: i64,
    token_expires_at: Option<OffsetDateTime>,
}

async fn stored(stack: &Stack, keyring: &Keyring, user: UserId, connection: ConnectionId) -> Stored {
    let mut conn = stack.db.acquire().await.unwrap();
    let row = credentials::get(&mut conn, connection).await.unwrap().expect("credential row");
    let token_expires_at: Option<OffsetDateTime> =
        sqlx::query_scalar("SELECT token_expires_at FROM user_integrations WHERE id = $1")
            .bind(connection.0)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    let plain = keyring.open(RowIdentity::connection(user, connection), &row.sealed).unwrap();
    let CredentialBundle::Oauth2 { access_token, refresh_token, expires_at } =
        CredentialBundle::from_plaintext(plain.expose()).unwrap()
    else {
        panic!("not an OAuth bundle");
    };
    Stored {
        access: access_token.expose().to_string(),
        refresh: refresh_token.map(|t| t.expose().to_string()),
        expires_at,
        status: row.status,
        key_id: row.sealed.key_id,
        version: row.version,
        token_expires_at,
    }
}

fn echo(message: &str) -> Value {
    json!({"arguments": {"message": message}})
}

async fn redis() -> redis::aio::ConnectionManager {
    let url = std::env::var("CLAWLINK_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap()).await.expect("redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_calls_on_an_expired_token_refresh_it_once() {
    let tokens = TokenServer::start(Mode::Normal, 3600, Duration::from_millis(300)).await;
    tokens.grant("refresh-0");
    // Two workers: the calls meet both in one process (single flight) and across
    // processes (the Redis lock).
    let stack = oauth_stack(&tokens, 2, &[]).await;
    let user = stack.user("fifty@example.test").await;
    let conn = oauth_connection(&stack, user.id, "main", "access-0", "refresh-0", -60).await;
    stack.emulator.add_token("access-1");

    let calls = (0..50).map(|i| {
        let (stack, key) = (&stack, user.api_key.clone());
        async move { stack.execute(&key, "oauthbox_echo", echo(&format!("m{i}")), &[]).await }
    });
    let answers = join_all(calls).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "call {i}: {body}");
        assert_eq!(body["data"]["message"], format!("m{i}"));
    }
    assert_eq!(tokens.calls(), 1, "fifty calls on one expired token make one refresh");
    let stats = stack.emulator.stats();
    assert_eq!(stats.count("GET", "/echo"), 50);
    assert!(stats.requests.iter().all(|r| r.status == 200), "no call went out with the expired token");

    let now = OffsetDateTime::now_utc().unix_timestamp();
    let s = stored(&stack, &stack.keyring, user.id, conn).await;
    assert_eq!(s.access, "access-1");
    assert_eq!(s.refresh.as_deref(), Some("refresh-1"), "the rotated refresh token is stored");
    assert!((s.expires_at.unwrap() - (now + 3600)).abs() < 30);
    assert_eq!(s.version, 2, "one write");
    let trail: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, details::text FROM audit_events WHERE subject = $1 AND action LIKE 'credential.%' ORDER BY id",
    )
    .bind(format!("connection:{conn}"))
    .fetch_all(&stack.db)
    .await
    .unwrap();
    assert_eq!(trail.iter().filter(|(a, _)| a == "credential.refreshed").count(), 1, "{trail:?}");
    assert_eq!(trail.iter().filter(|(a, _)| a == "credential.decrypted").count(), 50, "{trail:?}");
    assert!(
        trail.iter().all(|(_, d)| !d.contains("access-") && !d.contains("refresh-")),
        "no token in the trail: {trail:?}"
    );
    let recorded = s.token_expires_at.expect("token_expires_at is recorded").unix_timestamp();
    assert_eq!(recorded, s.expires_at.unwrap(), "the expiry is recorded with the credential");
    assert_eq!(s.status, "active");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_refresh_token_means_reconnect_not_a_loop() {
    let tokens = TokenServer::start(Mode::Normal, 3600, Duration::ZERO).await;
    // `refresh-0` was used already (by a copy of this credential, say): it is spent, so
    // the token endpoint refuses it.
    let stack = oauth_stack(&tokens, 1, &[]).await;
    let user = stack.user("reused@example.test").await;
    let conn = oauth_connection(&stack, user.id, "main", "access-0", "refresh-0", -60).await;

    let answers = join_all((0..5).map(|i| {
        let (stack, key) = (&stack, user.api_key.clone());
        async move { stack.execute(&key, "oauthbox_echo", echo(&format!("m{i}")), &[]).await }
    }))
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, 401, "{body}");
        assert_eq!(body["error"]["code"], "needs_reauth", "{body}");
        // Whether the api refused it (the connection already marked) or the worker found
        // out, the agent reads one hint.
        assert_eq!(body["hint"], "Reconnect OAuth Box in the ClawLink dashboard (ask the person to), then try again.");
    }
    assert_eq!(tokens.calls(), 1, "one refused refresh for five calls");
    let s = stored(&stack, &stack.keyring, user.id, conn).await;
    assert_eq!(s.status, "needs_reauth", "the dashboard shows the connection must be reconnected");
    assert_eq!(s.access, "access-0", "the credential itself is left as it was");

    let (status, body) = stack.execute(&user.api_key, "oauthbox_echo", echo("again"), &[]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "needs_reauth");
    assert_eq!(body["hint"], answers[0].1["hint"], "the api's refusal reads like the worker's");
    assert_eq!(tokens.calls(), 1, "a connection that needs reauth makes no further token call");
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), 0, "nothing went out with the expired token");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_right_after_its_refresh_means_reconnect() {
    let tokens = TokenServer::start(Mode::IssuesRefusedTokens, 3600, Duration::ZERO).await;
    tokens.grant("refresh-0");
    let stack = oauth_stack(&tokens, 1, &[]).await;
    let user = stack.user("revoked@example.test").await;
    oauth_connection(&stack, user.id, "main", "access-0", "refresh-0", -60).await;

    let (status, body) = stack.execute(&user.api_key, "oauthbox_echo", echo("hi"), &[]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "needs_reauth", "{body}");
    assert_eq!(body["error"]["providerStatus"], 401, "{body}");
    assert_eq!(tokens.calls(), 1);
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), 1, "the fresh token was tried once, not retried");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_endpoint_is_backed_off() {
    let tokens = TokenServer::start(Mode::Down, 3600, Duration::ZERO).await;
    tokens.grant("refresh-0");
    let stack = oauth_stack(&tokens, 1, &[]).await;
    let user = stack.user("down@example.test").await;
    let conn = oauth_connection(&stack, user.id, "main", "access-0", "refresh-0", -60).await;

    for attempt in 0..3 {
        let (status, body) = stack.execute(&user.api_key, "oauthbox_echo", echo("hi"), &[]).await;
        assert_eq!(status, 503, "attempt {attempt}: {body}");
        assert_eq!(body["error"]["code"], "provider_unavailable", "{body}");
        assert_eq!(body["error"]["retryable"], true, "{body}");
    }
    assert_eq!(tokens.calls(), 1, "after a failure the connection's refresh waits out its backoff");
    let s = stored(&stack, &stack.keyring, user.id, conn).await;
    assert_eq!(s.status, "active", "a failing endpoint is not a reason to reconnect");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_refreshes_tokens_expiring_soon_once_across_replicas() {
    let tokens = TokenServer::start(Mode::Normal, 3600, Duration::from_millis(200)).await;
    tokens.grant("refresh-0");
    tokens.grant("refresh-b");
    let stack = oauth_stack(&tokens, 0, &[]).await;
    let user = stack.user("sweep@example.test").await;
    // Expires in five minutes: outside a worker's margin, inside the sweep's horizon.
    let soon = oauth_connection(&stack, user.id, "soon", "access-0", "refresh-0", 300).await;
    let later = oauth_connection(&stack, user.id, "later", "access-b", "refresh-b", 3000).await;
    for (id, secs) in [(soon, 300), (later, 3000)] {
        sqlx::query("UPDATE user_integrations SET token_expires_at = now() + make_interval(secs => $2) WHERE id = $1")
            .bind(id.0)
            .bind(secs as f64)
            .execute(&stack.db)
            .await
            .unwrap();
    }

    let catalog = Arc::new(
        Catalog::load_dir(stack.env.raw("CLAWLINK_CATALOG_DIR").unwrap().as_ref(), &Default::default()).unwrap(),
    );
    let overrides = ProviderOverrides::from_env(&stack.env).unwrap();
    let metrics = clawlink_common::metrics::Metrics::new();
    let sweep = |redis: redis::aio::ConnectionManager| TokenSweep {
        refresher: Refresher::new(
            redis.clone(),
            &stack.namespace,
            stack.db.clone(),
            stack.keyring.clone(),
            oauth_clients_from_env(&stack.env).unwrap(),
            &overrides,
        )
        .unwrap(),
        db: stack.db.clone(),
        redis,
        namespace: stack.namespace.clone(),
        catalog: catalog.clone(),
        metrics: metrics.clone(),
        every: Duration::from_secs(60),
        horizon: Duration::from_secs(600),
    };
    let (a, b) = (sweep(redis().await), sweep(redis().await));
    let (ra, rb) = tokio::join!(a.sweep_once(), b.sweep_once());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.fresh + rb.fresh, 2, "{ra:?} {rb:?}");
    assert_eq!(tokens.calls(), 1, "two replicas sweeping at once refresh the token once");
    // Each replica saw the token fresh afterwards (one refreshed it, the other found it
    // refreshed): the metric counts the refresh, approximately, and no failure.
    let text = metrics.encode();
    assert!(
        text.contains(r#"clawlink_token_refreshes_total{outcome="refreshed"} 1"#)
            || text.contains(r#"clawlink_token_refreshes_total{outcome="refreshed"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"clawlink_token_refreshes_total{outcome="failed"} 0"#), "{text}");

    let s = stored(&stack, &stack.keyring, user.id, soon).await;
    assert_eq!(s.access, "access-1");
    let now = OffsetDateTime::now_utc();
    assert!(s.token_expires_at.unwrap() > now + Duration::from_secs(3000), "the new expiry is recorded");
    assert_eq!(
        stored(&stack, &stack.keyring, user.id, later).await.access,
        "access-b",
        "a token not due is left alone"
    );

    let again = a.sweep_once().await.unwrap();
    assert_eq!(again, Default::default(), "nothing is due any more");
    assert_eq!(tokens.calls(), 1);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_while_executions_run_fails_none() {
    // Tokens live 60 s, inside the worker's 120 s margin: every call on an OAuth
    // connection refreshes its token (rotating the refresh token), so refresh writes and
    // rotation batches meet on the same rows all the time.
    let tokens = TokenServer::start(Mode::Normal, 60, Duration::ZERO).await;
    let k2 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    };
    // Every process has both keys before rotation starts; new writes use k2.
    let mut stack = oauth_stack(&tokens, 0, &[]).await;
    let k1 = stack.env.raw("CLAWLINK_CREDENTIAL_KEYS").unwrap().to_string();
    stack.env.set("CLAWLINK_CREDENTIAL_KEYS", format!("{k1},k2:{k2}"));
    stack.env.set("CLAWLINK_CREDENTIAL_ACTIVE_KEY", "k2");
    stack.start_worker().await;
    stack.start_worker().await;
    let to_k2 = keyring_from_env(&stack.env).unwrap();
    let mut env = stack.env.clone();
    env.set("CLAWLINK_CREDENTIAL_ACTIVE_KEY", "k1");
    let to_k1 = keyring_from_env(&env).unwrap();

    let user = stack.user("rotation@example.test").await;
    let mut connections = Vec::new();
    for i in 0..6 {
        tokens.grant(&format!("seed-refresh-{i}"));
        let id = oauth_connection(
            &stack,
            user.id,
            &format!("o{i}"),
            &format!("seed-{i}"),
            &format!("seed-refresh-{i}"),
            -10,
        )
        .await;
        connections.push(("oauthbox_echo", id));
        connections.push(("sandbox_echo", stack.sandbox_connection(user.id, &format!("s{i}"), SANDBOX_TOKEN).await));
    }
    for n in 1..=2000 {
        stack.emulator.add_token(&format!("access-{n}"));
    }
    let before: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT key_id FROM credentials").fetch_all(&stack.db).await.unwrap();
    assert_eq!(before, ["k1"]);

    let stop = AtomicBool::new(false);
    let done = AtomicU32::new(0);
    let failures = Mutex::new(Vec::new());
    let stream = |lane: usize| {
        let (stack, key, connections, stop, done, failures) =
            (&stack, user.api_key.clone(), &connections, &stop, &done, &failures);
        async move {
            let mut i = lane;
            while !stop.load(Ordering::SeqCst) {
                let (tool, conn) = connections[i % connections.len()];
                let body = json!({"arguments": {"message": format!("call {i}")}, "connectionId": conn.0});
                let (status, answer) = stack.execute(&key, tool, body, &[]).await;
                if status != 200 {
                    failures.lock().unwrap().push(format!("{tool} on {conn}: {status} {answer}"));
                }
                done.fetch_add(1, Ordering::SeqCst);
                i += 4;
            }
        }
    };
    let rotate = async {
        // Back and forth several times while the calls run, then to k2 for good; each
        // run re-seals two rows per transaction.
        let mut resealed = 0;
        for round in 0..9 {
            let ring = if round % 2 == 0 { &to_k2 } else { &to_k1 };
            let progress = rotation::rotate(&stack.db, ring, 2, |_| {}).await.unwrap();
            assert_eq!(progress.remaining, 0, "{progress:?}");
            assert!(progress.unreadable.is_empty(), "{progress:?}");
            resealed += progress.resealed;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        while done.load(Ordering::SeqCst) < 60 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The last pass re-seals whatever a k1-era batch left; workers write under k2.
        resealed += rotation::rotate(&stack.db, &to_k2, 2, |_| {}).await.unwrap().resealed;
        stop.store(true, Ordering::SeqCst);
        resealed
    };
    let (resealed, _) = tokio::join!(rotate, join_all((0..4).map(stream)));

    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} calls failed during rotation: {failures:#?}", failures.len());
    assert!(done.load(Ordering::SeqCst) >= 60);
    assert!(resealed >= 12, "every row was re-sealed at least once ({resealed})");
    assert!(tokens.calls() >= 6, "refreshes ran during the rotation ({})", tokens.calls());
    assert_eq!(tokens.invalid_grants(), 0, "no rotated refresh token was lost to a concurrent re-seal");

    let keys: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT key_id FROM credentials").fetch_all(&stack.db).await.unwrap();
    assert_eq!(keys, ["k2"], "every credential ends under the active key");
    // The audit trail has every re-seal and every refresh, each in its own transaction.
    let count = |action: &'static str| {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_events WHERE action = $1")
            .bind(action)
            .fetch_one(&stack.db)
    };
    assert_eq!(count("credential.resealed").await.unwrap(), resealed as i64, "one event per re-seal");
    assert_eq!(count("credential.refreshed").await.unwrap(), tokens.calls() as i64, "one event per refresh");
    // Old key gone: everything still opens with k2 alone, and each stored refresh token is
    // the one the provider will accept next.
    let only_k2 = Keyring::from_encoded(vec![("k2".into(), SecretString::new(k2))], None).unwrap();
    for (tool, conn) in &connections {
        if *tool == "oauthbox_echo" {
            let s = stored(&stack, &only_k2, user.id, *conn).await;
            assert_eq!(s.status, "active");
            assert_eq!(s.key_id, "k2");
            assert!(tokens.is_live(s.refresh.as_deref().unwrap()), "connection {conn} holds a live refresh token");
        }
    }
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_lock_is_released_only_by_its_owner() {
    let mut redis = redis().await;
    let key = Keys::new(&format!("t{}", uuid::Uuid::new_v4().simple())).refresh_lock(ConnectionId(1));
    let first =
        RedisLock::try_acquire(&mut redis, &key, Duration::from_millis(200)).await.unwrap().expect("a free lock");
    assert!(
        RedisLock::try_acquire(&mut redis, &key, Duration::from_secs(10)).await.unwrap().is_none(),
        "a held lock is not taken twice"
    );
    // The first holder stalls past its lock's life; another process takes the lock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = RedisLock::try_acquire(&mut redis, &key, Duration::from_secs(10)).await.unwrap().expect("expired");
    assert!(!first.release(&mut redis).await.unwrap(), "a late release by the old holder does nothing");
    assert!(
        RedisLock::try_acquire(&mut redis, &key, Duration::from_secs(10)).await.unwrap().is_none(),
        "the new holder still holds it"
    );
    assert!(second.release(&mut redis).await.unwrap(), "the holder releases its own lock");
    let third = RedisLock::try_acquire(&mut redis, &key, Duration::from_secs(10)).await.unwrap().expect("released");
    assert!(third.release(&mut redis).await.unwrap());
}
