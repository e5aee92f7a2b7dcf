//! The running local stack as the isolation, pacing and scaling cells change it: worker
//! processes started and stopped, a backlog of executions written straight into Postgres
//! and RabbitMQ, and the emulator's request log.
//!
//! A worker is started from a running worker's own executable and environment (read from
//! `/proc/<pid>/`), so it has the stack's configuration (database, broker, catalog, keys)
//! without the bench knowing it. Each started worker gets a pid file in the pid directory,
//! so `deploy/local/stop` stops it too if the bench dies before it does.

use anyhow::{Context, bail};
use clawlink_common::ids::ExecutionId;
use clawlink_common::queue::{Job, Lane, Publisher, Topology};
use futures_util::StreamExt;
use sqlx::PgPool;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// How to start one more worker like a running one.
#[derive(Clone, Debug)]
pub struct WorkerTemplate {
    exe: PathBuf,
    env: Vec<(OsString, OsString)>,
    pid_dir: PathBuf,
}

impl WorkerTemplate {
    pub fn from_running(pid: u32, pid_dir: &Path) -> anyhow::Result<Self> {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .with_context(|| format!("cannot read the executable of worker pid {pid}"))?;
        let raw = std::fs::read(format!("/proc/{pid}/environ"))
            .with_context(|| format!("cannot read the environment of worker pid {pid}"))?;
        let env = raw
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let eq = kv.iter().position(|b| *b == b'=')?;
                Some((OsString::from_vec(kv[..eq].to_vec()), OsString::from_vec(kv[eq + 1..].to_vec())))
            })
            .collect();
        Ok(Self { exe, env, pid_dir: pid_dir.to_path_buf() })
    }

    /// A variable of the template's environment.
    pub fn var(&self, name: &str) -> Option<String> {
        self.env.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.to_str()).map(String::from)
    }

    /// Starts worker `name` listening on 127.0.0.1:`port` and waits for its `/readyz`.
    /// Its output is appended to `<pid dir>/../logs/<name>.log`.
    pub async fn start(&self, name: &str, port: u16, http: &reqwest::Client) -> anyhow::Result<Worker> {
        let log_dir = self.pid_dir.parent().map(|p| p.join("logs")).unwrap_or_else(|| PathBuf::from("."));
        let _ = std::fs::create_dir_all(&log_dir);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{name}.log")))
            .with_context(|| format!("cannot open the log of {name}"))?;
        let addr = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(&self.exe)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("CLAWLINK_WORKER_ID", name)
            .env("CLAWLINK_WORKER_ADDR", &addr)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C meant for the bench does not skip the stop.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", self.exe.display()))?;
        let pid = child.id();
        let pid_file = self.pid_dir.join(format!("{name}.pid"));
        std::fs::write(&pid_file, format!("{pid}\n"))
            .with_context(|| format!("cannot write {}", pid_file.display()))?;
        let mut worker = Worker { name: name.to_string(), pid, child: Some(child), pid_file };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("http://{addr}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if !super::procinfo::alive(pid) || Instant::now() >= deadline {
                worker.stop().await;
                bail!("{name} did not become ready on {addr} within 30 s (see its log in {})", log_dir.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Ready means its connections are up; give the consumers a moment to subscribe.
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!("  started {name} (pid {pid})");
        Ok(worker)
    }
}

/// A worker process; `stop` sends SIGTERM and waits for it (SIGKILL after 40 s).
pub struct Worker {
    pub name: String,
    pub pid: u32,
    child: Option<std::process::Child>,
    pid_file: PathBuf,
}

impl Worker {
    /// A worker the stack started (not our child), to stop it.
    pub fn adopt(name: &str, pid: u32, pid_dir: &Path) -> Self {
        Self { name: name.to_string(), pid, child: None, pid_file: pid_dir.join(format!("{name}.pid")) }
    }

    /// Leaves the process running after the bench (a stack worker started again; its pid
    /// file lets `deploy/local/stop` stop it).
    pub fn leave_running(self) {}

    pub async fn stop(&mut self) {
        let pid = self.pid.to_string();
        let _ = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await;
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let gone = match &mut self.child {
                Some(child) => !matches!(child.try_wait(), Ok(None)),
                None => !super::procinfo::alive(self.pid),
            };
            if gone {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("  warning: {} (pid {pid}) did not stop within 40 s: SIGKILL", self.name);
                let _ = tokio::process::Command::new("kill").args(["-KILL", &pid]).status().await;
                if let Some(child) = &mut self.child {
                    let _ = child.wait();
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if std::fs::read_to_string(&self.pid_file).is_ok_and(|t| t.trim() == pid) {
            let _ = std::fs::remove_file(&self.pid_file);
        }
        eprintln!("  stopped {} (pid {pid})", self.name);
    }
}

/// Async executions written straight into Postgres (one statement) and the bulk work
/// queue (publisher confirms), like the api would but without its HTTP cost.
pub struct Backlog {
    pub ids: Vec<uuid::Uuid>,
}

impl Backlog {
    /// `n` queued bulk executions copying `model`'s user, device, connection, tool and
    /// arguments, then one `execute.v1` message each on `<ns>.bulk`.
    pub async fn create(
        db: &PgPool,
        amqp_url: &str,
        namespace: &str,
        model: uuid::Uuid,
        n: usize,
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            r#"INSERT INTO executions (id, user_id, device_id, connection_id, integration, tool_name, arguments,
                                       lane, status)
               SELECT gen_random_uuid(), m.user_id, m.device_id, m.connection_id, m.integration, m.tool_name,
                      m.arguments, 'bulk', 'queued'
                 FROM executions m, generate_series(1, $2::int)
                WHERE m.id = $1
               RETURNING id"#,
        )
        .bind(model)
        .bind(n as i32)
        .fetch_all(db)
        .await
        .context("inserting the backlog's executions")?;
        if ids.len() != n {
            bail!("inserting the backlog: {} rows instead of {n} (is execution {model} gone?)", ids.len());
        }
        let inserted = started.elapsed();
        let backlog = Self { ids };
        let published = backlog.publish(amqp_url, namespace).await;
        if let Err(e) = published {
            backlog.remove(db, amqp_url, namespace).await;
            return Err(e);
        }
        eprintln!(
            "  backlog: {n} executions inserted in {:.1} s, published in {:.1} s",
            inserted.as_secs_f64(),
            (started.elapsed() - inserted).as_secs_f64()
        );
        Ok(backlog)
    }

    async fn publish(&self, amqp_url: &str, namespace: &str) -> anyhow::Result<()> {
        let conn = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default())
            .await
            .context("connecting to RabbitMQ to publish the backlog")?;
        let addresses =
            clawlink_common::queue::BrokerAddresses::parse(amqp_url).map_err(|e| anyhow::anyhow!("--amqp-url: {e}"))?;
        let link =
            clawlink_common::queue::Link::new(conn, addresses, 0, "clawlink-bench backlog", Topology::new(namespace));
        let publisher = Publisher::new(link.clone()).await.context("opening a confirming channel")?;
        let results: Vec<_> = futures_util::stream::iter(self.ids.iter().copied())
            .map(|id| {
                let publisher = publisher.clone();
                async move {
                    let job = Job::ExecuteV1 { execution_id: ExecutionId(id), reply_to: None };
                    publisher.publish(Lane::Bulk, &job).await
                }
            })
            .buffer_unordered(1024)
            .collect()
            .await;
        link.close("backlog published").await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            bail!("{failed} of the backlog's publishes failed, e.g.: {e}");
        }
        Ok(())
    }

    /// How many of the backlog's executions are final.
    pub async fn finished(&self, db: &PgPool) -> anyhow::Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM executions WHERE id = ANY($1) AND finished_at IS NOT NULL")
                .bind(&self.ids)
                .fetch_one(db)
                .await?;
        Ok(n as u64)
    }

    /// Purges the bulk queue (nothing else is queued there during the cell), lets the
    /// deliveries already in the workers finish, then deletes every row of the backlog,
    /// finished or not, so neither its messages nor its rows reach the next cell.
    pub async fn remove(&self, db: &PgPool, amqp_url: &str, namespace: &str) {
        let started = Instant::now();
        match purge_bulk(amqp_url, namespace).await {
            Ok(n) => eprintln!("  purged {n} backlog messages from {namespace}.bulk"),
            Err(e) => eprintln!("  warning: could not purge {namespace}.bulk: {e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        match sqlx::query("DELETE FROM executions WHERE id = ANY($1)").bind(&self.ids).execute(db).await {
            Ok(r) => eprintln!(
                "  deleted the backlog's {} rows ({:.1} s to clean up)",
                r.rows_affected(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("  warning: could not delete the backlog's rows: {e}"),
        }
    }
}

async fn purge_bulk(amqp_url: &str, namespace: &str) -> anyhow::Result<u32> {
    let conn = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    let queue = Topology::new(namespace).work_queue(Lane::Bulk);
    let n = channel.queue_purge(queue.as_str().into(), Default::default()).await?;
    let _ = conn.close(200, "".into()).await;
    Ok(n)
}

/// Arrival times (ms since the emulator started) of the provider requests to `path`
/// the emulator recorded, from `GET /_emulator/stats`.
pub async fn emulator_arrivals(http: &reqwest::Client, emulator_url: &str, path: &str) -> anyhow::Result<Vec<u64>> {
    #[derive(serde::Deserialize)]
    struct Stats {
        requests: Vec<Record>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Record {
        path: String,
        at_ms: u64,
    }
    let url = format!("{}/_emulator/stats", emulator_url.trim_end_matches('/'));
    let stats: Stats = http
        .get(&url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .with_context(|| format!("reading {url}"))?;
    let mut at: Vec<u64> = stats.requests.into_iter().filter(|r| r.path == path).map(|r| r.at_ms).collect();
    at.sort_unstable();
    Ok(at)
}

/// Gives the user of execution `model` a usable connection to `integration` (the bench
/// catalog's paced copy of the sandbox) whose credential is the sandbox bearer `token`,
/// sealed with the stack's key (from the worker's environment) like `seed-demo` does.
pub async fn ensure_connection(
    db: &PgPool,
    template: &WorkerTemplate,
    model: uuid::Uuid,
    integration: &str,
    token: &str,
) -> anyhow::Result<()> {
    use clawlink_common::config::{Env, keyring_from_env};
    use clawlink_common::crypto::RowIdentity;
    use clawlink_common::db::connections;
    use clawlink_common::ids::UserId;
    use clawlink_common::provider::CredentialBundle;
    use clawlink_common::secret::SecretString;

    let env = Env::from_pairs(
        ["CLAWLINK_CREDENTIAL_KEYS", "CLAWLINK_CREDENTIAL_ACTIVE_KEY"]
            .into_iter()
            .filter_map(|k| template.var(k).map(|v| (k, v))),
    );
    let keyring = keyring_from_env(&env).context("the stack's credential key (from the worker's environment)")?;
    let user: i64 = sqlx::query_scalar("SELECT user_id FROM executions WHERE id = $1")
        .bind(model)
        .fetch_one(db)
        .await
        .context("the bench user (from its first execution)")?;
    let user = UserId(user);
    let mut tx = db.begin().await?;
    let connection = match connections::list_usable(&mut tx, user, integration).await?.first() {
        Some(c) => c.id,
        None => {
            connections::insert(
                &mut tx,
                &connections::NewConnection {
                    user,
                    integration,
                    connection_label: "Sandbox (paced, bench)",
                    account_label: "sandbox@example.test",
                    external_account_id: Some("sandbox-user-1"),
                },
            )
            .await?
        }
    };
    let bundle = CredentialBundle::Bearer { token: SecretString::new(token.to_string()) };
    let sealed = keyring
        .seal(RowIdentity::connection(user, connection), &bundle.to_plaintext())
        .map_err(|e| anyhow::anyhow!("sealing the credential: {e}"))?;
    connections::store_credential(&mut tx, connection, user, &sealed).await?;
    tx.commit().await?;
    Ok(())
}

/// `POST /_emulator/reset`: forget the request log (and faults, notes) before a cell.
pub async fn emulator_reset(http: &reqwest::Client, emulator_url: &str) -> anyhow::Result<()> {
    let url = format!("{}/_emulator/reset", emulator_url.trim_end_matches('/'));
    http.post(&url).send().await.and_then(|r| r.error_for_status()).with_context(|| format!("POST {url}"))?;
    Ok(())
}

/// The most arrivals in any window of `window_ms` (sorted input).
pub fn max_in_window(at: &[u64], window_ms: u64) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..at.len() {
        while at[hi] - at[lo] >= window_ms {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}
