//! The test harness for cross-binary tests: a fresh database, a random queue and key
//! namespace, the provider emulator, the api and workers — in-process or as child
//! processes — all against the real Postgres, RabbitMQ and Redis.

use clawlink_common::config::Env;
use clawlink_common::crypto::{Keyring, RowIdentity, hash_password, token_hash};
use clawlink_common::db::{connections, devices, users};
use clawlink_common::ids::{ConnectionId, UserId};
use clawlink_common::provider::CredentialBundle;
use clawlink_common::queue::Topology;
use clawlink_common::secret::SecretString;
use clawlink_common::tokens;
use clawlink_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;
use sqlx::PgPool;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub mod browser;
pub mod chaos;
pub mod chaos_infra;
pub mod proxy;

/// The secret the emulator's payment provider signs webhooks with in tests.
pub const PAYMENT_WEBHOOK_SECRET: &str = "whsec_test_secret";

pub const SANDBOX_TOKEN: &str = "sandbox-test-token";

/// The OAuth client ClawLink is registered as with the emulator's authorization server
/// (see [`Options::oauth`]).
pub use clawlink_emulator::{
    DEFAULT_OAUTH_CLIENT_ID as OAUTH_CLIENT_ID, DEFAULT_OAUTH_CLIENT_SECRET as OAUTH_CLIENT_SECRET,
};

fn admin_url() -> String {
    std::env::var("CLAWLINK_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database url has a path");
    format!("{base}/{db}")
}

/// The folder of the workspace's built binaries (target/debug when tests run in debug):
/// the parent of `deps/` for a test binary, the binary's own folder for a binary.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("target dir");
    if dir.file_name().is_some_and(|n| n == "deps") { dir.parent().expect("target dir") } else { dir }.to_path_buf()
}

fn shared_amqp_url() -> String {
    std::env::var("CLAWLINK_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct Options {
    /// In-process workers to start.
    pub workers: usize,
    /// Extra `CLAWLINK_…` variables for the api and workers.
    pub env: Vec<(String, String)>,
    /// Replaces the sandbox's rate limit line (for pacing tests).
    pub sandbox_rate: Option<String>,
    /// Extra catalog files, as (file name, TOML), added to a copy of the catalog (for
    /// providers a test plays itself, such as an OAuth provider with its token endpoint).
    pub extra_catalog: Vec<(String, String)>,
    /// Point every OAuth 2 provider's authorize and token URLs at the emulator's
    /// authorization server and register its test client with ClawLink
    /// (`CLAWLINK_PROVIDER_<ID>_AUTHORIZE_URL` / `_TOKEN_URL` / `_CLIENT_ID` /
    /// `_CLIENT_SECRET`). Default on; `env` can still override any of them.
    pub oauth: bool,
    /// The database is `<db_prefix>_<random>`. `deploy/local/test` drops every
    /// `clawlink_test_*` database when it starts (left behind by interrupted runs), so a
    /// long run that must survive someone else's test run uses another prefix.
    pub db_prefix: &'static str,
    /// The Postgres server to create the test database on, as an admin URL (default:
    /// `CLAWLINK_TEST_DATABASE_URL`, the shared server); a private one for tests that
    /// restart it.
    pub database_admin_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            workers: 1,
            env: Vec::new(),
            sandbox_rate: None,
            extra_catalog: Vec::new(),
            oauth: true,
            db_prefix: "clawlink_test",
            database_admin_url: None,
        }
    }
}

pub struct Stack {
    pub db: PgPool,
    pub db_name: String,
    /// The admin URL of the Postgres server the database is on.
    admin_url: String,
    pub namespace: String,
    pub env: Env,
    pub api_url: String,
    /// The web front (sign-in, pairing approval, devices).
    pub web_url: String,
    pub emulator: Emulator,
    pub keyring: Keyring,
    pub http: reqwest::Client,
    stop_api: CancellationToken,
    workers: Vec<(CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>)>,
    _catalog_dir: Option<tempdir::TempDir>,
    /// Set by `finish`; a stack dropped without it (a failed test) cleans up in `Drop`.
    finished: bool,
}

/// A signed-up user with a paired device.
pub struct TestUser {
    pub id: UserId,
    pub api_key: String,
}

mod tempdir {
    /// A temporary folder removed on drop.
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Stack {
    pub async fn start(options: Options) -> Stack {
        install_crypto();
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        assert!(options.db_prefix.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "db_prefix: a-z and _ only");
        let db_name = format!("{}_{suffix}", options.db_prefix);
        let admin_url = options.database_admin_url.clone().unwrap_or_else(admin_url);
        let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect to postgres (CLAWLINK_TEST_DATABASE_URL)");
        // The name is ours: a fixed prefix and hex digits.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let db_url = with_database(&admin_url, &db_name);
        let db = clawlink_common::db::connect(&db_url, 8).await.expect("connect test database");
        clawlink_common::MIGRATOR.run(&db).await.expect("migrations");

        let emulator =
            Emulator::start(EmulatorConfig { sandbox_tokens: vec![SANDBOX_TOKEN.into()], ..Default::default() })
                .await
                .expect("emulator");
        let namespace = format!("t{suffix}");
        let key_b64 = {
            use base64::Engine;
            let raw: [u8; 32] = rand::random();
            base64::engine::general_purpose::STANDARD.encode(raw)
        };
        let keyring = Keyring::from_encoded(vec![("k1".into(), SecretString::new(key_b64.clone()))], None).unwrap();

        let catalog_dir = (options.sandbox_rate.is_some() || !options.extra_catalog.is_empty()).then(|| {
            let dir = std::env::temp_dir().join(format!("clawlink-catalog-{suffix}"));
            std::fs::create_dir_all(&dir).unwrap();
            let src = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog");
            for entry in std::fs::read_dir(src).unwrap() {
                let path = entry.unwrap().path();
                // Provider files only (`specs/` holds the vendored published specs).
                if path.extension().is_none_or(|e| e != "toml") {
                    continue;
                }
                let mut text = std::fs::read_to_string(&path).unwrap();
                if let Some(rate) =
                    options.sandbox_rate.as_ref().filter(|_| path.file_name().unwrap() == "sandbox.toml")
                {
                    let start = text.find("per_connection = ").unwrap();
                    let end = start + text[start..].find('\n').unwrap();
                    text.replace_range(start..end, rate);
                }
                std::fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
            }
            for (name, text) in &options.extra_catalog {
                std::fs::write(dir.join(name), text).unwrap();
            }
            tempdir::TempDir(dir)
        });

        let mut env = Env::from_pairs([
            ("CLAWLINK_DATABASE_URL", db_url.clone()),
            ("CLAWLINK_DATABASE_MAX_CONNECTIONS", "8".into()),
            ("CLAWLINK_NAMESPACE", namespace.clone()),
            ("CLAWLINK_PROVIDER_SANDBOX_BASE_URL", emulator.url()),
            ("CLAWLINK_ALLOW_PRIVATE_PROVIDER_HOSTS", emulator.addr().to_string()),
            ("CLAWLINK_CREDENTIAL_KEYS", format!("k1:{key_b64}")),
            ("CLAWLINK_API_ADDR", "127.0.0.1:0".into()),
            ("CLAWLINK_SYNC_WAIT_MS", "15000".into()),
            ("CLAWLINK_WORKER_ADDR", "127.0.0.1:0".into()),
            // The emulator plays the payment provider.
            ("CLAWLINK_BILLING_CHECKOUT_URL", emulator.checkout_url()),
            ("CLAWLINK_BILLING_WEBHOOK_SECRET", PAYMENT_WEBHOOK_SECRET.into()),
        ]);
        // Every catalog provider is played by the emulator, under `/<id>`.
        for id in emulator.provider_ids() {
            env.set(&format!("CLAWLINK_PROVIDER_{}_BASE_URL", id.to_ascii_uppercase()), emulator.provider_url(&id));
        }
        // Their OAuth authorization servers too, with the emulator's test client.
        if options.oauth {
            for id in emulator.oauth_provider_ids() {
                let var = |suffix: &str| format!("CLAWLINK_PROVIDER_{}_{suffix}", id.to_ascii_uppercase());
                env.set(&var("AUTHORIZE_URL"), emulator.oauth_authorize_url(&id));
                env.set(&var("TOKEN_URL"), emulator.oauth_token_url(&id));
                env.set(&var("CLIENT_ID"), OAUTH_CLIENT_ID);
                env.set(&var("CLIENT_SECRET"), OAUTH_CLIENT_SECRET);
            }
        }
        for var in ["CLAWLINK_AMQP_URL", "CLAWLINK_REDIS_URL"] {
            if let Ok(v) = std::env::var(var) {
                env.set(var, v);
            }
        }
        if let Some(dir) = &catalog_dir {
            env.set("CLAWLINK_CATALOG_DIR", dir.0.display().to_string());
        }
        for (k, v) in &options.env {
            env.set(k, v.clone());
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_url = format!("http://{}", listener.local_addr().unwrap());
        env.set("CLAWLINK_PUBLIC_API_URL", api_url.clone());
        let web_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let web_url = format!("http://{}", web_listener.local_addr().unwrap());
        env.set("CLAWLINK_PUBLIC_WEB_URL", web_url.clone());
        emulator.payments_webhook(&format!("{web_url}/billing/webhook"), PAYMENT_WEBHOOK_SECRET);
        let api_config = clawlink_api::config::ApiConfig::from_env(&env).expect("api config");
        let stop_api = CancellationToken::new();
        let stop = stop_api.clone();
        tokio::spawn(async move {
            if let Err(err) = clawlink_api::run(api_config, listener, stop).await {
                panic!("api stopped: {err:#}");
            }
        });
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let web_config = clawlink_web::WebConfig::from_env(&env).expect("web config");
        let web_stop = stop_api.clone();
        tokio::spawn(async move {
            if let Err(err) = clawlink_web::run(web_config, web_listener, web_stop).await {
                panic!("web stopped: {err:#}");
            }
        });
        let mut stack = Stack {
            db,
            db_name,
            admin_url,
            namespace,
            env,
            api_url,
            web_url,
            emulator,
            keyring,
            http,
            stop_api,
            workers: Vec::new(),
            _catalog_dir: catalog_dir,
            finished: false,
        };
        stack.wait_ready().await;
        for _ in 0..options.workers {
            stack.start_worker().await;
        }
        stack
    }

    async fn wait_ready(&self) {
        for _ in 0..300 {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.api_url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("api did not become ready");
    }

    /// Starts a worker inside this test process.
    pub async fn start_worker(&mut self) {
        let mut env = self.env.clone();
        env.set("CLAWLINK_WORKER_ID", format!("w{}", self.workers.len() + 1));
        let config = clawlink_worker::config::WorkerConfig::from_env(&env).expect("worker config");
        let stop = CancellationToken::new();
        let handle = tokio::spawn(clawlink_worker::run(config, stop.clone()));
        self.workers.push((stop, handle));
        // Consumers are attached once the queue shows them.
        self.wait_for_consumers(self.workers.len() as u32).await;
    }

    /// Stops every in-process worker gracefully.
    pub async fn stop_workers(&mut self) {
        for (stop, handle) in self.workers.drain(..) {
            stop.cancel();
            handle.await.expect("worker task").expect("worker stopped cleanly");
        }
    }

    /// Starts a worker as a child process (the debug binary), with its output captured in
    /// `log`. Used where a test kills a worker.
    pub fn spawn_worker_process(
        &self,
        id: &str,
        extra: &[(&str, &str)],
        log: &std::path::Path,
    ) -> tokio::process::Child {
        let mut env = vec![("CLAWLINK_WORKER_ID", id)];
        env.extend_from_slice(extra);
        self.spawn_process("clawlink-worker", &env, log)
    }

    /// Starts a second api as a child process (the debug binary) on a free port, with its
    /// output captured in `log`, and waits until it is ready. Returns it with its URL.
    /// Used where a test signals the api or reads its logs.
    pub async fn spawn_api_process(
        &self,
        extra: &[(&str, &str)],
        log: &std::path::Path,
    ) -> (tokio::process::Child, String) {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let addr = addr.to_string();
        let mut env = vec![("CLAWLINK_API_ADDR", addr.as_str())];
        env.extend_from_slice(extra);
        let mut child = self.spawn_process("clawlink-api", &env, log);
        let url = format!("http://{addr}");
        for _ in 0..600 {
            if let Ok(r) = self.http.get(format!("{url}/readyz")).send().await {
                if r.status().is_success() {
                    return (child, url);
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the api process exited ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the api process did not become ready: {}", std::fs::read_to_string(log).unwrap_or_default());
    }

    /// Runs one of the workspace's binaries with this stack's environment plus `extra`
    /// (`RUST_LOG=debug` unless `extra` says otherwise), stdout and stderr into `log`.
    fn spawn_process(&self, name: &str, extra: &[(&str, &str)], log: &std::path::Path) -> tokio::process::Child {
        let bin = bin_dir().join(name);
        assert!(bin.exists(), "{} is missing: run `cargo build --workspace --bins` first", bin.display());
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = tokio::process::Command::new(bin);
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("RUST_LOG", "debug");
        for (k, v) in self.env_pairs() {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err)).kill_on_drop(true);
        cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"))
    }

    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env.with_prefix("").map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The broker this stack uses (a private one when `Options::env` names it): one URL or
    /// a comma-separated list (a cluster).
    pub fn amqp_url(&self) -> String {
        self.env.raw("CLAWLINK_AMQP_URL").map(str::to_string).unwrap_or_else(shared_amqp_url)
    }

    pub async fn amqp_channel(&self) -> lapin::Channel {
        let conn = amqp_connect(&self.amqp_url()).await.expect("amqp");
        let channel = conn.create_channel().await.unwrap();
        // Keep the connection alive as long as the channel is used.
        std::mem::forget(conn);
        channel
    }

    pub fn topology(&self) -> Topology {
        Topology::new(&self.namespace)
    }

    /// (messages ready, consumers) of a queue.
    pub async fn queue_state(&self, queue: &str) -> (u32, u32) {
        let channel = self.amqp_channel().await;
        let q = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
                Default::default(),
            )
            .await
            .expect("queue exists");
        let state = (q.message_count(), q.consumer_count());
        let _ = channel.close(200, "done".into()).await;
        state
    }

    pub async fn wait_for_consumers(&self, n: u32) {
        let queue = self.topology().work_queue(clawlink_common::queue::Lane::Interactive);
        for _ in 0..400 {
            let channel = self.amqp_channel().await;
            let declared = channel
                .queue_declare(
                    queue.as_str().into(),
                    lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
                    Default::default(),
                )
                .await;
            let _ = channel.close(200, "done".into()).await;
            if let Ok(q) = declared {
                if q.consumer_count() >= n {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("workers did not attach to {queue}");
    }

    /// A user with a paired device (and no connection yet).
    pub async fn user(&self, email: &str) -> TestUser {
        let mut conn = self.db.acquire().await.unwrap();
        let id = users::upsert(&mut conn, email, &hash_password("pw").unwrap(), "Test").await.unwrap();
        let token = tokens::new_device_credential();
        devices::create(
            &mut conn,
            id,
            "test-device",
            &token_hash(token.expose()),
            &tokens::display_prefix(token.expose()),
            &Default::default(),
        )
        .await
        .unwrap();
        TestUser { id, api_key: token.expose().to_string() }
    }

    /// Adds a sandbox connection with `token` as its credential.
    pub async fn sandbox_connection(&self, user: UserId, label: &str, token: &str) -> ConnectionId {
        let bundle = CredentialBundle::Bearer { token: SecretString::new(token) };
        self.connection(user, "sandbox", label, &bundle).await
    }

    /// Adds a connection to `integration` (a catalog provider id) holding `bundle`, sealed
    /// as the connect flow seals it. The first connection of an integration is the
    /// user's default.
    pub async fn connection(
        &self,
        user: UserId,
        integration: &str,
        label: &str,
        bundle: &CredentialBundle,
    ) -> ConnectionId {
        let mut tx = self.db.begin().await.unwrap();
        let id = connections::insert(
            &mut tx,
            &connections::NewConnection {
                user,
                integration,
                connection_label: label,
                account_label: label,
                external_account_id: None,
            },
        )
        .await
        .unwrap();
        let sealed = self.keyring.seal(RowIdentity::connection(user, id), &bundle.to_plaintext()).unwrap();
        connections::store_credential(&mut tx, id, user, &sealed).await.unwrap();
        tx.commit().await.unwrap();
        id
    }

    /// A user with one default sandbox connection.
    pub async fn sandbox_user(&self, email: &str) -> (TestUser, ConnectionId) {
        let user = self.user(email).await;
        let conn = self.sandbox_connection(user.id, "main", SANDBOX_TOKEN).await;
        (user, conn)
    }

    /// `POST /api/tools/{tool}/execute` → (status, body).
    pub async fn execute(&self, key: &str, tool: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/api/tools/{tool}/execute", self.api_url))
            .header("x-clawlink-api-key", key)
            .json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("execute request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `POST` JSON to the api with a device credential → (status, body).
    pub async fn post_json(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.api_url))
            .header("x-clawlink-api-key", key)
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.api_url))
            .header("x-clawlink-api-key", key)
            .send()
            .await
            .expect("get");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `POST` JSON to the api without a credential (pairing is public) → (status, body).
    pub async fn public_post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self.http.post(format!("{}{path}", self.api_url)).json(&body).send().await.expect("post");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Polls an execution until it is final (bounded: 60 s) and returns its body.
    pub async fn final_state(&self, key: &str, id: &str) -> Value {
        let started = std::time::Instant::now();
        loop {
            let (status, body) = self.get(key, &format!("/api/executions/{id}?waitMs=5000")).await;
            assert_eq!(status, 200, "{body}");
            if body["status"] == "succeeded" || body["status"] == "failed" {
                return body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "execution {id} is still {} after 60 s",
                body["status"]
            );
        }
    }

    /// Waits (bounded) until no execution row is queued or running: the worker records
    /// the row just after the agent has its answer.
    pub async fn wait_for_rows_final(&self) {
        for _ in 0..200 {
            let open: i64 = sqlx::query_scalar("SELECT count(*) FROM executions WHERE status IN ('queued', 'running')")
                .fetch_one(&self.db)
                .await
                .unwrap();
            if open == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The execution's row status.
    pub async fn execution_status(&self, id: &str) -> String {
        let id: uuid::Uuid = id.parse().unwrap();
        sqlx::query_scalar::<_, String>("SELECT status FROM executions WHERE id = $1")
            .bind(id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// Stops everything and removes the test's database and queues.
    pub async fn finish(mut self) {
        self.finished = true;
        self.stop_workers().await;
        self.stop_api.cancel();
        remove_queues(&self.amqp_url(), &self.namespace).await;
        // Closing waits for every checked-out connection to come back; one held by a task
        // that never ends (seen once: the suite hung here) must not hang the run. The
        // forced drop below closes whatever is left.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.db.close()).await;
        drop_database(&self.admin_url, &self.db_name).await;
    }
}

fn queue_names(namespace: &str) -> Vec<String> {
    let t = Topology::new(namespace);
    let mut names = vec![t.dead_letter_queue()];
    for lane in clawlink_common::queue::Lane::ALL {
        names.push(t.work_queue(lane));
        for secs in clawlink_common::queue::DELAY_TIERS_SECS {
            names.push(t.delay_queue(lane, secs));
        }
    }
    names
}

/// Deletes a test namespace's queues: every quorum queue left behind costs the shared
/// broker a Raft group for good. Bounded, like every teardown step: clean-up that hangs
/// would hang the suite.
async fn remove_queues(url: &str, namespace: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        let Ok(conn) = amqp_connect(url).await else { return };
        if let Ok(channel) = conn.create_channel().await {
            for name in queue_names(namespace) {
                let _ = channel.queue_delete(name.as_str().into(), Default::default()).await;
            }
        }
        let _ = conn.close(200, "test done".into()).await;
    })
    .await;
}

/// A connection to the first broker of `url` (one URL or a comma-separated list) that
/// answers.
pub async fn amqp_connect(url: &str) -> anyhow::Result<lapin::Connection> {
    let addresses = clawlink_common::queue::BrokerAddresses::parse(url).map_err(anyhow::Error::msg)?;
    Ok(clawlink_common::queue::connect_any(&addresses, "clawlink-test").await?)
}

/// Drops a test database, closing the connections still open to it (bounded).
async fn drop_database(admin_url: &str, name: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        if let Ok(admin) = sqlx::PgPool::connect(admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    })
    .await;
}

impl Drop for Stack {
    /// A failed test does not reach `finish`: remove its queues and database anyway, on a
    /// thread of its own (Drop cannot await, and may run inside the test's runtime).
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.stop_api.cancel();
        for (stop, _) in &self.workers {
            stop.cancel();
        }
        let namespace = self.namespace.clone();
        let amqp_url = self.amqp_url();
        let db_name = self.db_name.clone();
        let admin_url = self.admin_url.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                remove_queues(&amqp_url, &namespace).await;
                drop_database(&admin_url, &db_name).await;
            });
        })
        .join();
    }
}
