//! A private RabbitMQ node (or a three-node cluster of them), a private Redis server and a
//! private PostgreSQL server, each in a temporary folder on ports of their own, for tests
//! and the chaos runner that restart or kill them.
//!
//! The shared broker (5672) and Redis (6379) serve every other test on this machine and
//! must never be restarted; these are started, restarted and stopped by whoever owns them,
//! and removed on drop (also when a test fails).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A free TCP port on loopback below the ephemeral range (32768+), where a port picked
/// now is less likely to be taken by an outgoing connection before the server binds it.
fn free_port() -> u16 {
    for _ in 0..200 {
        let port = rand::random::<u16>() % 10_000 + 21_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 21000 and 31000 on 127.0.0.1");
}

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]));
    std::fs::create_dir_all(&dir).expect("create a temporary folder");
    dir
}

/// RabbitMQ's scripts live in /usr/lib/rabbitmq/bin on Debian; the /usr/sbin wrappers
/// switch to the `rabbitmq` user, who cannot write our folder, so those are avoided.
fn rabbitmq_bin(name: &str) -> PathBuf {
    let debian = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if debian.exists() { debian } else { PathBuf::from(name) }
}

/// A RabbitMQ node of our own: its own node name, ports, Mnesia and log folders, cookie
/// (`HOME`) and config, no plugins.
pub struct PrivateRabbit {
    dir: PathBuf,
    node: String,
    port: u16,
    dist_port: u16,
    child: Option<Child>,
    /// The OS process id of the node's Erlang VM (what a SIGKILL is sent to).
    vm_pid: Option<u32>,
}

impl PrivateRabbit {
    /// Starts a node. `consumer_timeout_ms` sets the broker's delivery acknowledgement
    /// timeout (and checks it every second rather than every minute).
    pub async fn start(consumer_timeout_ms: Option<u64>) -> anyhow::Result<PrivateRabbit> {
        Self::start_node(consumer_timeout_ms, None).await
    }

    /// Starts a node whose Erlang cookie is `cookie` when given (nodes that are to form a
    /// cluster share one).
    async fn start_node(consumer_timeout_ms: Option<u64>, cookie: Option<&str>) -> anyhow::Result<PrivateRabbit> {
        let dir = temp_dir("clawlink-rabbit");
        if let Some(cookie) = cookie {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join(".erlang.cookie");
            std::fs::write(&path, cookie)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))?;
        }
        let mut conf = String::from("loopback_users = none\n");
        if let Some(ms) = consumer_timeout_ms {
            conf.push_str(&format!("consumer_timeout = {ms}\n"));
        }
        std::fs::write(dir.join("rabbitmq.conf"), conf)?;
        // How often a channel evaluates the consumer timeout (3.10 default: 60 s).
        let tick = if consumer_timeout_ms.is_some() { 1000 } else { 60_000 };
        std::fs::write(dir.join("advanced.config"), format!("[{{rabbit, [{{channel_tick_interval, {tick}}}]}}].\n"))?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(dir.join("rabbitmq-env.conf"), "")?;
        let node =
            format!("clawlink-{}@localhost", dir.file_name().unwrap().to_string_lossy().rsplit('-').next().unwrap());
        let mut rabbit = PrivateRabbit { dir, node, port: 0, dist_port: 0, child: None, vm_pid: None };
        let mut last = None;
        for _ in 0..3 {
            rabbit.port = free_port();
            rabbit.dist_port = free_port();
            match rabbit.boot().await {
                Ok(()) => return Ok(rabbit),
                Err(err) => {
                    tracing::warn!(error = %err, "private rabbitmq did not start; trying other ports");
                    rabbit.kill_child().await;
                    let _ = std::fs::remove_dir_all(rabbit.dir.join("mnesia"));
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap())
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether the node's log has a line containing `text` (e.g. "timed out").
    pub fn log_contains(&self, text: &str) -> bool {
        let log = self.dir.join("log").join(format!("{}.log", self.node));
        std::fs::read_to_string(log).is_ok_and(|l| l.contains(text))
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(rabbitmq_bin(program));
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        cmd.env("HOME", &self.dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d("mnesia"))
            .env("RABBITMQ_LOG_BASE", d("log"))
            .env("RABBITMQ_CONFIG_FILE", d("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", d("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d("pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    async fn boot(&mut self) -> anyhow::Result<()> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.out"))?;
        let child = self
            .command("rabbitmq-server")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .context("starting rabbitmq-server (is RabbitMQ installed?)")?;
        self.child = Some(child);
        // `await_startup` fails at once while the VM has not registered its name yet.
        let began = tokio::time::Instant::now();
        loop {
            let status = self
                .command("rabbitmqctl")
                .args(["-n", &self.node, "await_startup", "--timeout", "60"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await?;
            if status.success() {
                self.vm_pid = self.ctl(&["eval", "os:getpid()."]).await?.trim().trim_matches('"').parse().ok();
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || began.elapsed() > Duration::from_secs(60) {
                let out = std::fs::read_to_string(self.dir.join("server.out")).unwrap_or_default();
                let tail: String =
                    out.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                bail!("rabbitmq node {} did not start ({exited:?}):\n{tail}", self.node);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Ends a node that did not come up: SIGTERM to the start script stops the VM it
    /// started (SIGKILL would orphan it), then SIGKILL if it lingers.
    async fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
            }
            if tokio::time::timeout(Duration::from_secs(20), child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }

    /// Runs `rabbitmqctl -n <node> <args>` and returns its output; an error when it fails.
    async fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.tool("rabbitmqctl", args).await
    }

    /// Runs one of RabbitMQ's command-line tools against this node.
    async fn tool(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(program)
            .args(["-n", &self.node])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "{program} {} on {}: {}{}",
                args.join(" "),
                self.node,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the node is running (not killed or stopped by us).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILLs the node's Erlang VM: no goodbye to its cluster peers or its clients, the
    /// way a machine that loses power goes. Its data stays on disk for `start_again`.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        let pid = self.vm_pid.take().context("the node's VM process id is unknown")?;
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status().await?;
        if let Some(mut child) = self.child.take() {
            // The start script exits once its VM is gone.
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        Ok(())
    }

    /// Stops the node the way an operator would (`rabbitmqctl stop`); messages on disk stay.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let _ = self
            .command("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await?;
        if let Some(mut child) = self.child.take() {
            if tokio::time::timeout(Duration::from_secs(30), child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        Ok(())
    }

    /// Starts the stopped node again, on the same ports and data.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.boot().await
    }

    /// Stop, then start again. Returns how long the broker was away.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        let began = tokio::time::Instant::now();
        self.stop().await?;
        self.start_again().await?;
        Ok(began.elapsed())
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ctl = rabbitmq_bin("rabbitmqctl");
            let _ = std::process::Command::new(ctl)
                .args(["-n", &self.node, "stop"])
                .env("HOME", &self.dir)
                .env("ERL_EPMD_ADDRESS", "127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if let Some(child) = self.child.as_mut() {
                let _ = child.start_kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RabbitMQ cluster of our own: `n` private nodes sharing one Erlang cookie, joined
/// with `rabbitmqctl join_cluster`. Quorum queues declared on it get a member on every
/// node, so any one node can die and the others keep the queues (a majority remains).
pub struct PrivateRabbitCluster {
    pub nodes: Vec<PrivateRabbit>,
}

impl PrivateRabbitCluster {
    pub async fn start(n: usize) -> anyhow::Result<PrivateRabbitCluster> {
        let cookie = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let booted =
            futures_util::future::join_all((0..n).map(|_| PrivateRabbit::start_node(None, Some(&cookie)))).await;
        let mut nodes = Vec::new();
        for node in booted {
            nodes.push(node?);
        }
        let first = nodes[0].node().to_string();
        for node in &nodes[1..] {
            node.ctl(&["stop_app"]).await?;
            node.ctl(&["join_cluster", &first]).await?;
            node.ctl(&["start_app"]).await?;
            node.ctl(&["await_startup", "--timeout", "60"]).await?;
        }
        let status = nodes[0].ctl(&["cluster_status", "--formatter", "json"]).await?;
        let status: serde_json::Value = serde_json::from_str(&status).context("cluster_status output")?;
        let running = status["running_nodes"].as_array().map_or(0, Vec::len);
        if running != n {
            bail!("the cluster has {running} running nodes, expected {n}: {status}");
        }
        Ok(PrivateRabbitCluster { nodes })
    }

    /// Every node's URL, comma-separated, in node order: a `CLAWLINK_AMQP_URL` list.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(PrivateRabbit::url).collect::<Vec<_>>().join(",")
    }

    /// The position of the node that leads quorum queue `queue`, asked of a running node.
    pub async fn leader_of(&self, queue: &str) -> anyhow::Result<usize> {
        let asked = self.nodes.iter().find(|n| n.is_running()).context("no node is running")?;
        let out = asked.ctl(&["list_queues", "name", "leader", "--formatter", "json"]).await?;
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).context("list_queues output")?;
        let leader = rows
            .iter()
            .find(|r| r["name"] == queue)
            .and_then(|r| r["leader"].as_str())
            .with_context(|| format!("queue {queue} has no leader in {out}"))?;
        self.nodes.iter().position(|n| n.node() == leader).with_context(|| format!("leader {leader} is not ours"))
    }

    /// The members of quorum queue `queue` (node names), asked of a running node.
    pub async fn members_of(&self, queue: &str) -> anyhow::Result<Vec<String>> {
        let asked = self.nodes.iter().find(|n| n.is_running()).context("no node is running")?;
        let out = asked.ctl(&["list_queues", "name", "members", "--formatter", "json"]).await?;
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).context("list_queues output")?;
        let members = rows.iter().find(|r| r["name"] == queue).with_context(|| format!("no queue {queue}"))?;
        Ok(members["members"].as_array().into_iter().flatten().filter_map(|m| m.as_str().map(String::from)).collect())
    }
}

impl PrivateRabbitCluster {
    /// SIGKILLs the node that leads quorum queue `queue`, leaves it down for `down`, then
    /// starts it again (it rejoins the cluster from its data). Returns the node's name and
    /// how long it was away.
    pub async fn kill_leader_of(&mut self, queue: &str, down: Duration) -> anyhow::Result<(String, Duration)> {
        let leader = self.leader_of(queue).await?;
        let began = tokio::time::Instant::now();
        self.nodes[leader].kill().await?;
        tokio::time::sleep(down).await;
        self.nodes[leader].start_again().await?;
        Ok((self.nodes[leader].node().to_string(), began.elapsed()))
    }
}

/// The chaos runner's broker: one private node, which its fault restarts, or a private
/// three-node cluster, whose fault SIGKILLs the node leading the lanes and starts it
/// again later.
pub enum ChaosBroker {
    Node(Box<PrivateRabbit>),
    Cluster(PrivateRabbitCluster),
}

impl ChaosBroker {
    pub async fn start(cluster: bool) -> anyhow::Result<ChaosBroker> {
        Ok(if cluster {
            ChaosBroker::Cluster(PrivateRabbitCluster::start(3).await.context("starting a private 3-node cluster")?)
        } else {
            ChaosBroker::Node(Box::new(PrivateRabbit::start(None).await.context("starting a private RabbitMQ node")?))
        })
    }

    /// `CLAWLINK_AMQP_URL`: the node's URL, or every node's, comma-separated.
    pub fn url(&self) -> String {
        match self {
            ChaosBroker::Node(node) => node.url(),
            ChaosBroker::Cluster(cluster) => cluster.urls(),
        }
    }

    /// The broker fault: the node restarted (`rabbitmqctl stop`, then start), or the
    /// cluster node leading `lane_queue` SIGKILLed and started again after 5 s. Returns
    /// how long the node was away.
    pub async fn fault(&mut self, lane_queue: &str) -> anyhow::Result<Duration> {
        match self {
            ChaosBroker::Node(node) => node.restart().await,
            ChaosBroker::Cluster(cluster) => {
                let (node, away) = cluster.kill_leader_of(lane_queue, Duration::from_secs(5)).await?;
                tracing::info!(node, away_ms = away.as_millis() as u64, "lane leader killed and started again");
                Ok(away)
            }
        }
    }
}

/// A Redis server of our own without persistence: a restart loses every key, which is
/// what a crashed cache node looks like.
pub struct PrivateRedis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    /// `--replicaof 127.0.0.1 <port>` when this server started as a replica.
    replica_of: Option<u16>,
}

impl PrivateRedis {
    pub async fn start() -> anyhow::Result<PrivateRedis> {
        let mut redis =
            PrivateRedis { dir: temp_dir("clawlink-redis"), port: free_port(), child: None, replica_of: None };
        redis.boot().await?;
        Ok(redis)
    }

    /// A replica of `primary` (asynchronous replication, as Redis does it), once its link
    /// to the primary is up and the first sync is done.
    pub async fn start_replica_of(primary: &PrivateRedis) -> anyhow::Result<PrivateRedis> {
        let mut redis = PrivateRedis {
            dir: temp_dir("clawlink-redis"),
            port: free_port(),
            child: None,
            replica_of: Some(primary.port),
        };
        redis.boot().await?;
        for _ in 0..200 {
            if redis.info_replication().await?.contains("master_link_status:up") {
                return Ok(redis);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the replica on port {} did not sync with its primary", redis.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    async fn info_replication(&self) -> anyhow::Result<String> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        Ok(redis::cmd("INFO").arg("replication").query_async(&mut conn).await?)
    }

    /// SIGKILLs the server: gone, with whatever it had not replicated yet.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Makes this replica a primary (`REPLICAOF NO ONE`), as Sentinel or an operator does
    /// when the primary is lost.
    pub async fn promote(&mut self) -> anyhow::Result<()> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _: String = redis::cmd("REPLICAOF").arg("NO").arg("ONE").query_async(&mut conn).await?;
        self.replica_of = None;
        Ok(())
    }

    /// How many of `keys` this server holds.
    pub async fn count_existing(&self, keys: &[String]) -> anyhow::Result<usize> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut n = 0;
        for key in keys {
            let exists: bool = redis::cmd("EXISTS").arg(key).query_async(&mut conn).await?;
            n += usize::from(exists);
        }
        Ok(n)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn boot(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        if let Some(primary) = self.replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        let child = cmd
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (is Redis installed?)")?;
        self.child = Some(child);
        let client = redis::Client::open(self.url())?;
        for _ in 0..100 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("redis-server on port {} did not answer", self.port)
    }

    /// Kills the server (SIGKILL: every key is gone) and starts it again on the same port
    /// after `down`. Returns how long it was away.
    pub async fn restart(&mut self, down: Duration) -> anyhow::Result<Duration> {
        let began = tokio::time::Instant::now();
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        tokio::time::sleep(down).await;
        self.boot().await?;
        Ok(began.elapsed())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A stable address in front of a server that changes: a loopback TCP forwarder whose
/// target can be moved, which cuts the connections to the old target — what a Kubernetes
/// Service whose selector a failover operator moves, a virtual IP, or a Sentinel-aware
/// proxy does for clients that know one address.
pub struct MovableAddress {
    port: u16,
    target: tokio::sync::watch::Sender<u16>,
}

impl MovableAddress {
    pub async fn start(target: u16) -> anyhow::Result<MovableAddress> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = tokio::sync::watch::channel(target);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut moved = rx.clone();
                let target = *moved.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        // Moved: both sockets are dropped, so the client sees its
                        // connection end and reconnects (to the new target).
                        _ = moved.changed() => {}
                    }
                });
            }
        });
        Ok(MovableAddress { port, target: tx })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// New connections go to `target`; the open ones are cut.
    pub fn point_at(&self, target: u16) {
        let _ = self.target.send(target);
    }
}

/// PostgreSQL's programs (Debian keeps them out of `PATH`).
fn postgres_bin(name: &str) -> PathBuf {
    let debian = Path::new("/usr/lib/postgresql/15/bin").join(name);
    if debian.exists() { debian } else { PathBuf::from(name) }
}

/// A PostgreSQL server of our own: `initdb` in a temporary folder, its own port and socket
/// folder, trust authentication on loopback, no fsync (a test server). Run as the
/// `postgres` user when this process is root (PostgreSQL refuses to run as root).
pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    running: bool,
}

impl PrivatePostgres {
    pub async fn start() -> anyhow::Result<PrivatePostgres> {
        let dir = temp_dir("clawlink-pg");
        let mut pg = PrivatePostgres { dir, port: free_port(), running: false };
        if is_root() {
            let status = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&pg.dir).status().await?;
            anyhow::ensure!(status.success(), "chown of {} to postgres failed", pg.dir.display());
        }
        let data = pg.dir.join("data");
        let out = pg
            .as_owner(&postgres_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .await
            .context("running initdb (is PostgreSQL installed?)")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        pg.pg_ctl(&["start"]).await?;
        pg.running = true;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`: the admin URL a test stack creates
    /// its database with.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn as_owner(&self, program: &Path) -> Command {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.stdin(Stdio::null()).current_dir(&self.dir);
        cmd
    }

    async fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let out = self
            .as_owner(&postgres_bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60"])
            .args(args)
            .output()
            .await?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            bail!(
                "pg_ctl {}: {}{}\n{log}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// `pg_ctl restart -m <mode>` (`fast`: sessions are cut, a checkpoint is written;
    /// `immediate`: no checkpoint, crash recovery at start). Returns how long it took.
    pub async fn restart(&mut self, mode: &str) -> anyhow::Result<Duration> {
        let began = tokio::time::Instant::now();
        self.pg_ctl(&["restart", "-m", mode]).await?;
        Ok(began.elapsed())
    }
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let mut cmd = if is_root() {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(postgres_bin("pg_ctl"));
                c
            } else {
                std::process::Command::new(postgres_bin("pg_ctl"))
            };
            let _ = cmd
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
