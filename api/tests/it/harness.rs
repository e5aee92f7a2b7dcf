//! The api's real state in this process — a fresh database migrated with
//! `clawlink_common::MIGRATOR`, a random queue and key namespace on the shared RabbitMQ and
//! Redis — and its router, driven with `oneshot`. No worker runs: a call that would be
//! queued is answered 202 and stays queued. Dropping a [`TestApi`] removes its database
//! and queues, also when the test failed.
//!
//! `tests/e2e` has a fuller harness (the api over a real port, workers, the emulator);
//! this one stays small so the api's tests link only the api.

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use clawlink_api::state::AppState;
use clawlink_common::config::Env;
use clawlink_common::crypto::{RowIdentity, token_hash};
use clawlink_common::db::{connections, devices, users};
use clawlink_common::ids::{ConnectionId, DeviceId, UserId};
use clawlink_common::provider::CredentialBundle;
use clawlink_common::queue::{DELAY_TIERS_SECS, Lane, Topology};
use clawlink_common::secret::SecretString;
use clawlink_common::tokens;
use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The Postgres the test databases are created on (`deploy/local/test` sets it).
fn admin_url() -> String {
    std::env::var("CLAWLINK_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn amqp_url() -> String {
    std::env::var("CLAWLINK_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub struct TestApi {
    pub state: AppState,
    router: Router,
    db_name: String,
    namespace: String,
    stop: CancellationToken,
}

/// A user with one paired device.
pub struct TestUser {
    pub id: UserId,
    pub device: DeviceId,
    pub api_key: String,
}

/// An answer: status, headers and the body as JSON (`Null` when it is not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestApi {
    pub async fn start() -> TestApi {
        Self::start_with(&[]).await
    }

    /// [`TestApi::start`] with extra `CLAWLINK_…` settings.
    pub async fn start_with(settings: &[(&str, &str)]) -> TestApi {
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        // The prefix `deploy/local/test` sweeps when an interrupted run left one behind.
        let db_name = format!("clawlink_test_api_{suffix}");
        let admin = PgPool::connect(&admin_url()).await.expect("connect to postgres (CLAWLINK_TEST_DATABASE_URL)");
        // The name is ours: a fixed prefix and hex digits.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&admin)
            .await
            .expect("create the test database");
        admin.close().await;
        let db_url = format!("{}/{db_name}", admin_url().rsplit_once('/').expect("the admin URL names a database").0);
        let db = PgPool::connect(&db_url).await.expect("connect the test database");
        clawlink_common::MIGRATOR.run(&db).await.expect("migrations");
        db.close().await;

        // `tapi`: a queue left behind by these tests is told from e2e's (`t…`) at a glance.
        let namespace = format!("tapi{suffix}");
        let key = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
        };
        let mut env = Env::from_pairs([
            ("CLAWLINK_DATABASE_URL", db_url),
            ("CLAWLINK_DATABASE_MAX_CONNECTIONS", "4".into()),
            ("CLAWLINK_NAMESPACE", namespace.clone()),
            ("CLAWLINK_CREDENTIAL_KEYS", format!("k1:{key}")),
            // Without a worker a sync call is answered 202 when this bound passes.
            ("CLAWLINK_SYNC_WAIT_MS", "300".into()),
        ]);
        for var in ["CLAWLINK_AMQP_URL", "CLAWLINK_REDIS_URL"] {
            if let Ok(v) = std::env::var(var) {
                env.set(var, v);
            }
        }
        for (var, value) in settings {
            env.set(var, *value);
        }
        let config = clawlink_api::config::ApiConfig::from_env(&env).expect("api config");
        let stop = CancellationToken::new();
        let state = clawlink_api::build_state(config, stop.clone()).await.expect("the api's state");
        // What `axum::serve(…into_make_service_with_connect_info…)` gives a handler: the
        // peer's address (pairing counts guesses per address).
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000));
        let router = clawlink_api::router(state.clone()).layer(MockConnectInfo(peer));
        TestApi { state, router, db_name, namespace, stop }
    }

    /// Sends one request through the router, as axum would hand it over from a socket.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the body is read");
        Answer { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    /// `GET path` with the device credential `key` (none when empty).
    pub async fn get(&self, key: &str, path: &str) -> Answer {
        self.send(request("GET", path, key).body(Body::empty()).unwrap()).await
    }

    /// `POST path` with a JSON body and the device credential `key` (none when empty).
    pub async fn post(&self, key: &str, path: &str, body: &Value) -> Answer {
        self.post_raw(key, path, "application/json", body.to_string()).await
    }

    /// `POST path` with any bytes as the body.
    pub async fn post_raw(&self, key: &str, path: &str, content_type: &str, body: impl Into<Body>) -> Answer {
        self.send(request("POST", path, key).header("content-type", content_type).body(body.into()).unwrap()).await
    }

    /// A user with a paired device and no connection. No password: nothing here signs in.
    pub async fn user(&self, email: &str) -> TestUser {
        let mut conn = self.state.db.acquire().await.unwrap();
        let id = users::upsert(&mut conn, email, "no-password", "Test").await.unwrap();
        let secret = tokens::new_device_credential();
        let token = secret.expose();
        let device = devices::create(
            &mut conn,
            id,
            "test-device",
            &token_hash(token),
            &tokens::display_prefix(token),
            &Default::default(),
        )
        .await
        .unwrap();
        TestUser { id, device, api_key: token.to_string() }
    }

    /// Adds a sandbox connection with a sealed credential, as the connect flow stores it;
    /// the user's first one of an integration becomes the default.
    pub async fn sandbox_connection(&self, user: UserId, label: &str) -> ConnectionId {
        let mut tx = self.state.db.begin().await.unwrap();
        let new = connections::NewConnection {
            user,
            integration: "sandbox",
            connection_label: label,
            account_label: label,
            external_account_id: None,
        };
        let id = connections::insert(&mut tx, &new).await.unwrap();
        let bundle = CredentialBundle::Bearer { token: SecretString::new("sandbox-test-token") };
        let sealed = self.state.keyring.seal(RowIdentity::connection(user, id), &bundle.to_plaintext()).unwrap();
        connections::store_credential(&mut tx, id, user, &sealed).await.unwrap();
        tx.commit().await.unwrap();
        id
    }

    /// How many executions were recorded and how many calls wait in the work queues
    /// (nothing consumes them here): a refused call must leave neither.
    pub async fn recorded_and_queued(&self) -> (i64, u32) {
        let rows = sqlx::query_scalar("SELECT count(*) FROM executions").fetch_one(&self.state.db).await.unwrap();
        let (_, connection) = self.state.amqp.current();
        let channel = connection.create_channel().await.unwrap();
        let mut queued = 0;
        for lane in Lane::ALL {
            let queue = self.state.amqp.topology().work_queue(lane);
            let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
            queued += channel
                .queue_declare(queue.as_str().into(), passive, Default::default())
                .await
                .unwrap()
                .message_count();
        }
        let _ = channel.close(200, "counted".into()).await;
        (rows, queued)
    }
}

/// A request to `path`, with `key` in `X-ClawLink-API-Key` unless it is empty.
pub fn request(method: &str, path: &str, key: &str) -> axum::http::request::Builder {
    let builder = Request::builder().method(method).uri(path);
    if key.is_empty() { builder } else { builder.header("x-clawlink-api-key", key) }
}

impl Answer {
    /// Checks that this is the error of CONTRACT.md — `status`, JSON, `ok: false`,
    /// `error.{type, code, message, retryable}` — with `code`, and returns the body.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> &Value {
        let body = &self.body;
        assert_eq!(self.status.as_u16(), status, "{body}");
        let content_type = self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with("application/json"), "content-type {content_type:?}: {body}");
        assert_eq!(body["ok"], false, "{body}");
        let error = &body["error"];
        assert_eq!(error["code"], code, "{body}");
        assert!(error["type"].as_str().is_some_and(|t| !t.is_empty()), "error.type: {body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "error.message: {body}");
        // A client error is the caller's to fix; only a rate limit or an outage is worth
        // the same call again.
        let retryable = matches!(status, 429 | 503);
        assert_eq!(error["retryable"], retryable, "error.retryable: {body}");
        body
    }
}

impl Drop for TestApi {
    /// Removes the queues (each quorum queue left behind costs the shared broker a Raft
    /// group for good) and the database, on a thread of its own: Drop cannot await, and
    /// runs inside the test's runtime. Bounded: a clean-up that hangs would hang the suite.
    fn drop(&mut self) {
        self.stop.cancel();
        let (namespace, db_name) = (self.namespace.clone(), self.db_name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            let clean_up = async {
                let topology = Topology::new(&namespace);
                let mut queues = vec![topology.dead_letter_queue()];
                for lane in Lane::ALL {
                    queues.push(topology.work_queue(lane));
                    queues.extend(DELAY_TIERS_SECS.iter().map(|&secs| topology.delay_queue(lane, secs)));
                }
                let props = lapin::ConnectionProperties::default();
                if let Ok(conn) = lapin::Connection::connect(&amqp_url(), props).await {
                    if let Ok(channel) = conn.create_channel().await {
                        for name in queues {
                            let _ = channel.queue_delete(name.as_str().into(), Default::default()).await;
                        }
                    }
                    let _ = conn.close(200, "test done".into()).await;
                }
                if let Ok(admin) = PgPool::connect(&admin_url()).await {
                    let drop = format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await;
                    admin.close().await;
                }
            };
            let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), clean_up).await });
        })
        .join();
    }
}
