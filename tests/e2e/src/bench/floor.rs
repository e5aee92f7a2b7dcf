//! The floor: the same path as a ClawLink sync call through the same infrastructure, with
//! no ClawLink code and nothing else (no auth, no Postgres, no catalog, no pacing).
//!
//! publisher (bench process): register a waiter → publish (persistent, mandatory,
//! publisher confirms) to a private quorum queue → await the confirm → await the waiter.
//! floor worker (a child process, `clawlink-bench floor-worker`): consume (manual ack,
//! prefetch) → GET the emulator's /echo → Redis `SET key value EX 60` + `PUBLISH` (one
//! pipelined round trip, as ClawLink's worker does) → ack.
//! waiter (bench process): one Redis pub/sub subscription, a map id → oneshot.
//!
//! The durable floor (`floor-pg`, with `--database-url`) adds what issue 6's durability
//! rule asks of any design, and nothing else: the publisher INSERTs a row (committed)
//! before it publishes, and the worker UPDATEs it (committed) before the result goes to
//! Redis and the message is acked — two single-row autocommit statements, no batching, in
//! a table of its own that is dropped afterwards.

use anyhow::{Context, bail};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::oneshot;

/// The job message: the id and where to answer, like ClawLink's `execute.v1`.
#[derive(Serialize, Deserialize)]
struct FloorJob<'a> {
    id: &'a str,
    #[serde(rename = "replyTo")]
    reply_to: &'a str,
    /// The durable floor: the worker records the call in Postgres before answering.
    #[serde(default)]
    durable: bool,
}

/// Connections per side (bench publisher, floor worker) for the durable floor; the stack's
/// own pools stay within Postgres's default 100 connections beside them.
const DURABLE_POOL: u32 = 16;

/// How the floor worker gets the durable floor's database URL.
pub const FLOOR_DATABASE_URL: &str = "CLAWLINK_BENCH_FLOOR_DATABASE_URL";

fn durable_table() -> String {
    format!("clawlink_bench_floor_{}", std::process::id())
}

/// What the waiter reads from the notification (the whole result travels, as in ClawLink).
#[derive(Deserialize)]
struct FloorOutcome {
    id: String,
    ok: bool,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<bool>>>>;

/// Removes the waiter however the call ends.
struct WaitGuard {
    pending: Pending,
    id: String,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.pending.lock().expect("pending lock").remove(&self.id);
    }
}

pub struct FloorConfig {
    pub amqp_url: String,
    pub redis_url: String,
    pub emulator_url: String,
    pub emulator_token: String,
    pub prefetch: u16,
    /// Set: the durable floor is available (its table is created in this database).
    pub database_url: Option<String>,
}

/// The durable floor's connection pool and table.
#[derive(Clone)]
struct Durable {
    db: sqlx::PgPool,
    table: Arc<str>,
}

/// The publisher side and the spawned worker process.
pub struct Floor {
    connection: Connection,
    channel: Channel,
    queue: String,
    notify_channel: String,
    pending: Pending,
    listener: tokio::task::JoinHandle<()>,
    child: Option<Child>,
    child_stdin: Option<ChildStdin>,
    durable: Option<Durable>,
}

/// A cheap handle for the load tasks.
#[derive(Clone)]
pub struct FloorClient {
    channel: Channel,
    queue: Arc<str>,
    notify_channel: Arc<str>,
    pending: Pending,
    durable: Option<Durable>,
}

fn quorum_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    t
}

async fn amqp_connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    tokio::time::timeout(Duration::from_secs(10), Connection::connect(url, props))
        .await
        .map_err(|_| anyhow::anyhow!("RabbitMQ did not answer within 10 s"))?
        .context("cannot connect to RabbitMQ")
}

impl Floor {
    /// Declares the private queue, subscribes the waiter and starts the worker process.
    pub async fn start(config: &FloorConfig) -> anyhow::Result<Floor> {
        let pid = std::process::id();
        let queue = format!("clawlink-bench.floor.{pid}");
        let notify_channel = format!("clawlink-bench:floor-notify:{pid}");

        let connection = amqp_connect(&config.amqp_url, "clawlink-bench publisher").await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions { durable: true, ..Default::default() },
                quorum_args(),
            )
            .await
            .with_context(|| format!("cannot declare the quorum queue {queue}"))?;

        // The waiter: subscribed before the first publish.
        let pending: Pending = Arc::default();
        let client = redis::Client::open(config.redis_url.as_str()).context("bad Redis URL")?;
        let mut pubsub = tokio::time::timeout(Duration::from_secs(10), client.get_async_pubsub())
            .await
            .map_err(|_| anyhow::anyhow!("Redis did not answer within 10 s"))?
            .context("cannot connect to Redis")?;
        pubsub.subscribe(&notify_channel).await.context("cannot subscribe to the floor's notify channel")?;
        let listener = {
            let pending = pending.clone();
            tokio::spawn(async move {
                let mut stream = pubsub.into_on_message();
                while let Some(msg) = stream.next().await {
                    if let Ok(outcome) = serde_json::from_slice::<FloorOutcome>(msg.get_payload_bytes()) {
                        let sender = pending.lock().expect("pending lock").remove(&outcome.id);
                        if let Some(sender) = sender {
                            let _ = sender.send(outcome.ok);
                        }
                    }
                }
            })
        };

        let durable = match &config.database_url {
            Some(url) => {
                let db = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(DURABLE_POOL)
                    .connect(url)
                    .await
                    .context("cannot connect to Postgres for the durable floor")?;
                let table = durable_table();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE TABLE IF NOT EXISTS {table} (id uuid PRIMARY KEY, created_at timestamptz NOT NULL \
                     DEFAULT now(), finished_at timestamptz, ok boolean)"
                )))
                .execute(&db)
                .await
                .with_context(|| format!("cannot create the durable floor's table {table}"))?;
                Some(Durable { db, table: table.into() })
            }
            None => None,
        };
        let mut floor = Floor {
            connection,
            channel,
            queue,
            notify_channel,
            pending,
            listener,
            child: None,
            child_stdin: None,
            durable,
        };
        if let Err(err) = floor.spawn_worker(config).await {
            floor.stop().await;
            return Err(err);
        }
        Ok(floor)
    }

    async fn spawn_worker(&mut self, config: &FloorConfig) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the bench's own executable")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("floor-worker")
            .args(["--queue", &self.queue])
            .args(["--emulator", &config.emulator_url])
            .args(["--emulator-token", &config.emulator_token])
            .args(["--amqp", &config.amqp_url])
            .args(["--redis", &config.redis_url])
            .args(["--prefetch", &config.prefetch.to_string()])
            .args(match &self.durable {
                Some(d) => vec!["--table".to_string(), d.table.to_string()],
                None => Vec::new(),
            })
            // The URL may carry a password: the environment, not the command line `ps` shows.
            .envs(config.database_url.as_ref().map(|url| (FLOOR_DATABASE_URL, url.clone())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the floor worker process")?;
        let stdout = child.stdout.take().expect("piped stdout");
        self.child_stdin = child.stdin.take();
        self.child = Some(child);
        let mut lines = BufReader::new(stdout).lines();
        match tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await {
            Ok(Ok(Some(line))) if line.trim() == "ready" => Ok(()),
            Ok(Ok(Some(line))) => bail!("the floor worker said {line:?} instead of ready"),
            Ok(Ok(None)) | Ok(Err(_)) => {
                bail!("the floor worker exited during start-up (see its error above)")
            }
            Err(_) => bail!("the floor worker was not ready within 20 s"),
        }
    }

    pub fn worker_pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn client(&self) -> FloorClient {
        FloorClient {
            channel: self.channel.clone(),
            queue: self.queue.as_str().into(),
            notify_channel: self.notify_channel.as_str().into(),
            pending: self.pending.clone(),
            durable: self.durable.clone(),
        }
    }

    /// Stops the worker process, deletes the queue, closes the connections.
    pub async fn stop(mut self) {
        // Closing its stdin asks the worker to exit; it is killed if it has not within 2 s.
        drop(self.child_stdin.take());
        if let Some(mut child) = self.child.take()
            && tokio::time::timeout(Duration::from_secs(2), child.wait()).await.is_err()
        {
            let _ = child.kill().await;
        }
        let deleted = tokio::time::timeout(
            Duration::from_secs(10),
            self.channel.queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default()),
        )
        .await;
        if !matches!(deleted, Ok(Ok(_))) {
            eprintln!("warning: could not delete the floor queue {}; delete it by hand", self.queue);
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.connection.close(200, "bench done".into())).await;
        self.listener.abort();
        if let Some(d) = self.durable.take() {
            let dropped =
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {}", d.table))).execute(&d.db).await;
            if dropped.is_err() {
                eprintln!("warning: could not drop the durable floor's table {}; drop it by hand", d.table);
            }
            d.db.close().await;
        }
    }
}

impl FloorClient {
    /// Whether the durable floor is set up (`floor-pg`).
    pub fn has_durable(&self) -> bool {
        self.durable.is_some()
    }

    /// One call through the floor path; `durable`: through the durable floor (a row
    /// committed before publishing, updated before the answer).
    pub async fn call(&self, durable: bool) -> Result<(), String> {
        let uuid = uuid::Uuid::new_v4();
        let id = uuid.to_string();
        if durable {
            let d = self.durable.as_ref().ok_or("the durable floor has no database (--database-url)")?;
            sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {} (id) VALUES ($1)", d.table)))
                .bind(uuid)
                .execute(&d.db)
                .await
                .map_err(|e| format!("insert: {e}"))?;
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id.clone(), tx);
        let _guard = WaitGuard { pending: self.pending.clone(), id: id.clone() };
        let payload =
            serde_json::to_vec(&FloorJob { id: &id, reply_to: &self.notify_channel, durable }).expect("job serialises");
        let props =
            BasicProperties::default().with_delivery_mode(2).with_content_type(ShortString::from("application/json"));
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                self.queue.as_ref().into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                &payload,
                props,
            )
            .await
            .map_err(|e| format!("publish: {e}"))?;
        let confirmation = confirm.await.map_err(|e| format!("confirm: {e}"))?;
        if confirmation.is_nack() {
            return Err("the broker nacked the message".into());
        }
        if confirmation.take_message().is_some() {
            return Err("the broker returned the message (unroutable)".into());
        }
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the floor worker reported a failed emulator call".into()),
            Err(_) => Err("waiter dropped".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The worker process

pub struct WorkerArgs {
    pub queue: String,
    pub emulator_url: String,
    pub emulator_token: String,
    pub amqp_url: String,
    pub redis_url: String,
    pub prefetch: u16,
    /// The durable floor's database and table.
    pub database: Option<(String, String)>,
}

/// `clawlink-bench floor-worker …`: prints `ready` once consuming, exits when its stdin
/// closes (the bench ended or died).
pub async fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;
    let echo_url: Arc<str> = format!("{}/echo?message=x", args.emulator_url.trim_end_matches('/')).into();
    let auth: Arc<str> = format!("Bearer {}", args.emulator_token).into();

    let client = redis::Client::open(args.redis_url.as_str()).context("bad Redis URL")?;
    let redis_config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2);
    let redis = redis::aio::ConnectionManager::new_with_config(client, redis_config)
        .await
        .context("cannot connect to Redis")?;

    let durable = match &args.database {
        Some((url, table)) => {
            let db = sqlx::postgres::PgPoolOptions::new()
                .max_connections(DURABLE_POOL)
                .connect(url)
                .await
                .context("cannot connect to Postgres")?;
            let update: Arc<str> = format!("UPDATE {table} SET finished_at = now(), ok = $2 WHERE id = $1").into();
            Some((db, update))
        }
        None => None,
    };

    let connection = amqp_connect(&args.amqp_url, "clawlink-bench floor-worker").await?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(args.prefetch, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            args.queue.as_str().into(),
            "clawlink-bench-floor".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot consume {}", args.queue))?;

    println!("ready");
    // No async stdin in this tokio build: a plain thread watches it.
    let (gone_tx, parent_gone) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = gone_tx.send(());
    });
    tokio::pin!(parent_gone);

    loop {
        let delivery = tokio::select! {
            _ = &mut parent_gone => break,
            next = consumer.next() => match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(err)) => bail!("consumer failed: {err}"),
                None => break,
            },
        };
        let http = http.clone();
        let echo_url = echo_url.clone();
        let auth = auth.clone();
        let mut redis = redis.clone();
        let durable = durable.clone();
        tokio::spawn(async move {
            #[derive(Deserialize)]
            struct Job {
                id: String,
                #[serde(rename = "replyTo")]
                reply_to: String,
                #[serde(default)]
                durable: bool,
            }
            let Ok(job) = serde_json::from_slice::<Job>(&delivery.data) else {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                return;
            };
            let response = http.get(&*echo_url).header("authorization", &*auth).send().await;
            let (ok, data) = match response {
                Ok(r) if r.status().is_success() => match r.text().await {
                    Ok(body) if !body.is_empty() => (true, body),
                    _ => (false, "null".to_string()),
                },
                _ => (false, "null".to_string()),
            };
            let (ok, data) = match (&durable, job.durable, uuid::Uuid::parse_str(&job.id)) {
                (_, false, _) => (ok, data),
                (Some((db, update)), true, Ok(id)) => {
                    match sqlx::query(sqlx::AssertSqlSafe(update.to_string())).bind(id).bind(ok).execute(db).await {
                        Ok(_) => (ok, data),
                        Err(err) => {
                            eprintln!("floor worker: postgres: {err}");
                            (false, "null".to_string())
                        }
                    }
                }
                _ => (false, "null".to_string()),
            };
            let payload = format!(r#"{{"id":"{}","ok":{ok},"data":{data}}}"#, job.id);
            let key = format!("clawlink-bench:floor:{}", job.id);
            let mut pipe = redis::pipe();
            pipe.set_ex(&key, &payload, 60).ignore();
            pipe.publish(&job.reply_to, &payload).ignore();
            if let Err(err) = pipe.query_async::<()>(&mut redis).await {
                eprintln!("floor worker: redis: {err}");
            }
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), connection.close(200, "floor worker done".into())).await;
    Ok(())
}
