//! `clawlink-bench`: how fast one tool call goes through ClawLink, next to the raw floor of
//! the same infrastructure with no ClawLink code in it.
//!
//! Rows, each at concurrency 1, 16 and 64, closed loop, a fixed time per cell:
//! - `direct`: GET the emulator's /echo (what a provider call costs by itself);
//! - `floor`: RabbitMQ quorum queue with publisher confirms → a consumer in another process
//!   → the emulator → Redis SET + PUBLISH → one pub/sub waiter (see `bench/floor.rs`);
//! - `clawlink sync`: `POST /api/tools/sandbox_echo/execute`, 200 and `ok: true`;
//! - `clawlink async submit`: the same with `"async": true`, 202 (the submit rate);
//! - `clawlink async completion`: N async calls submitted while as many tasks poll
//!   `GET /api/executions/{id}?waitMs=5000` until each is final.
//!
//! Rows that change the stack while they run (`bench/targets.rs`), each a section of the
//! report with its target from issue 6:
//! - `isolation`: sync calls at c=16 idle, then with `--backlog N` async calls queued on
//!   the bulk lane (written straight into Postgres and RabbitMQ), p99 loaded / idle;
//! - `pacing`: three workers, sync calls to the bench catalog's `sandbox_paced` provider,
//!   the emulator's arrival times: the most in any window against requests + burst, and
//!   the achieved rate against 0.95 of the limit;
//! - `scaling`: sync calls at c=64 with 1, 2 and 4 workers.
//!
//! Run it through `deploy/local/bench`, which starts the stack with a bench catalog (the
//! sandbox's rate limit raised) and stops it afterwards. `--help` lists the options.

#[path = "bench/floor.rs"]
mod floor;
#[path = "bench/http.rs"]
mod http;
#[path = "bench/procinfo.rs"]
mod procinfo;
#[path = "bench/stack.rs"]
mod stack;
#[path = "bench/stats.rs"]
mod stats;
#[path = "bench/targets.rs"]
mod targets;

use anyhow::{Context, bail};
use procinfo::{CpuUsage, Labels};
use stats::{CellResult, LoadSpec, closed_loop};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const USAGE: &str = "\
usage: clawlink-bench [options]

Measures direct, floor and ClawLink rows at each concurrency and prints one markdown
report on stdout (progress on stderr). Start the stack first: deploy/local/bench does it all.

options (environment variable in brackets):
  --seconds N            measured seconds per cell (default 5)
  --warmup-ms N          unrecorded warm-up per cell (default 500)
  --concurrency LIST     comma-separated (default 1,16,64)
  --rows LIST            any of direct,floor,floor-pg,sync,async,isolation,pacing,
                         scaling (default all); floor-pg is the floor plus a committed
                         Postgres INSERT before publishing and UPDATE before answering
  --backlog N            isolation: bulk calls queued under the loaded cell (default
                         100000, as issue 6 asks; about 20 s to write and remove)
  --scaling-workers LIST scaling: worker counts (default 1,2,4)
  --api-url URL          [CLAWLINK_API_URL]
  --api-key KEY          [CLAWLINK_API_KEY]
  --emulator-url URL     [CLAWLINK_EMULATOR_URL] (default http://127.0.0.1:8090)
  --emulator-token T     sandbox bearer token (default sandbox-demo-token)
  --amqp-url URL         [CLAWLINK_AMQP_URL] (default amqp://guest:guest@127.0.0.1:5672/%2f)
  --redis-url URL        [CLAWLINK_REDIS_URL] (default redis://127.0.0.1:6379/)
  --database-url URL     [CLAWLINK_DATABASE_URL] floor-pg's database, where it makes and
                         drops a table of its own (default postgres://postgres@127.0.0.1:5432/clawlink)
  --namespace NS         [CLAWLINK_NAMESPACE] ClawLink's queue prefix (default clawlink)
  --pid-dir DIR          where deploy/local/run writes pids (default .clawlink/pids)
  --api-pid PID          instead of DIR/api.pid
  --worker-pids P1,P2    instead of DIR/worker-*.pid
  --prefetch N           the floor consumer's prefetch (default 128 = 2 workers x 64)
  --call-timeout-secs N  a call slower than this is an error (default 30)
  -h, --help             this help
";

#[derive(Clone, Debug)]
struct Options {
    seconds: u64,
    warmup: Duration,
    concurrency: Vec<usize>,
    rows: BTreeSet<String>,
    api_url: Option<String>,
    api_key: Option<String>,
    emulator_url: String,
    emulator_token: String,
    amqp_url: String,
    redis_url: String,
    database_url: String,
    namespace: String,
    pid_dir: PathBuf,
    api_pid: Option<u32>,
    worker_pids: Option<Vec<u32>>,
    prefetch: u16,
    call_timeout: Duration,
    backlog: usize,
    scaling_workers: Vec<usize>,
}

const ROWS: [&str; 8] = ["direct", "floor", "floor-pg", "sync", "async", "isolation", "pacing", "scaling"];

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

fn parse_options(args: &[String]) -> anyhow::Result<Option<Options>> {
    let mut o = Options {
        seconds: 5,
        warmup: Duration::from_millis(500),
        concurrency: vec![1, 16, 64],
        rows: ROWS.into_iter().map(String::from).collect(),
        api_url: env("CLAWLINK_API_URL"),
        api_key: env("CLAWLINK_API_KEY"),
        emulator_url: env("CLAWLINK_EMULATOR_URL").unwrap_or_else(|| "http://127.0.0.1:8090".into()),
        emulator_token: "sandbox-demo-token".into(),
        amqp_url: env("CLAWLINK_AMQP_URL").unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
        redis_url: env("CLAWLINK_REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379/".into()),
        database_url: env("CLAWLINK_DATABASE_URL")
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/clawlink".into()),
        namespace: env("CLAWLINK_NAMESPACE").unwrap_or_else(|| "clawlink".into()),
        pid_dir: PathBuf::from(".clawlink/pids"),
        api_pid: None,
        worker_pids: None,
        prefetch: 128,
        call_timeout: Duration::from_secs(30),
        backlog: 100_000,
        scaling_workers: vec![1, 2, 4],
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || it.next().cloned().with_context(|| format!("{flag} needs a value"));
        let number = |v: String| -> anyhow::Result<u64> {
            v.trim().parse().with_context(|| format!("{flag}: expected a whole number, got {v:?}"))
        };
        match flag.as_str() {
            "--seconds" => o.seconds = number(value()?)?.max(1),
            "--warmup-ms" => o.warmup = Duration::from_millis(number(value()?)?),
            "--concurrency" => {
                o.concurrency = value()?
                    .split(',')
                    .map(|c| number(c.to_string()).map(|n| n as usize))
                    .collect::<anyhow::Result<_>>()?;
                if o.concurrency.is_empty() || o.concurrency.contains(&0) {
                    bail!("--concurrency: expected positive numbers");
                }
            }
            "--rows" => {
                o.rows = value()?.split(',').map(|r| r.trim().to_string()).collect();
                for r in &o.rows {
                    if !ROWS.contains(&r.as_str()) {
                        bail!("--rows: unknown row {r:?} ({})", ROWS.join(", "));
                    }
                }
            }
            "--api-url" => o.api_url = Some(value()?),
            "--api-key" => o.api_key = Some(value()?),
            "--emulator-url" => o.emulator_url = value()?,
            "--emulator-token" => o.emulator_token = value()?,
            "--amqp-url" => o.amqp_url = value()?,
            "--redis-url" => o.redis_url = value()?,
            "--database-url" => o.database_url = value()?,
            "--namespace" => o.namespace = value()?,
            "--pid-dir" => o.pid_dir = PathBuf::from(value()?),
            "--api-pid" => o.api_pid = Some(number(value()?)? as u32),
            "--worker-pids" => {
                o.worker_pids = Some(
                    value()?
                        .split(',')
                        .map(|p| number(p.to_string()).map(|n| n as u32))
                        .collect::<anyhow::Result<_>>()?,
                )
            }
            "--prefetch" => {
                o.prefetch = u16::try_from(number(value()?)?)
                    .ok()
                    .filter(|p| *p > 0)
                    .context("--prefetch: expected 1 to 65535")?
            }
            "--backlog" => o.backlog = number(value()?)?.clamp(1, 10_000_000) as usize,
            "--scaling-workers" => {
                o.scaling_workers = value()?
                    .split(',')
                    .map(|c| number(c.to_string()).map(|n| n as usize))
                    .collect::<anyhow::Result<_>>()?;
                if o.scaling_workers.is_empty() || o.scaling_workers.iter().any(|n| !(1..=16).contains(n)) {
                    bail!("--scaling-workers: expected numbers from 1 to 16");
                }
            }
            "--call-timeout-secs" => o.call_timeout = Duration::from_secs(number(value()?)?.max(1)),
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    o.concurrency.sort_unstable();
    o.concurrency.dedup();
    Ok(Some(o))
}

fn parse_worker_args(args: &[String]) -> anyhow::Result<floor::WorkerArgs> {
    let mut queue = None;
    let mut emulator_url = None;
    let mut emulator_token = "sandbox-demo-token".to_string();
    let mut amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f".to_string();
    let mut redis_url = "redis://127.0.0.1:6379/".to_string();
    let mut prefetch = 128u16;
    let mut table = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().cloned().with_context(|| format!("floor-worker: {flag} needs a value"))?;
        match flag.as_str() {
            "--queue" => queue = Some(value),
            "--emulator" => emulator_url = Some(value),
            "--emulator-token" => emulator_token = value,
            "--amqp" => amqp_url = value,
            "--redis" => redis_url = value,
            "--prefetch" => prefetch = value.parse().context("floor-worker: --prefetch")?,
            "--table" => table = Some(value),
            other => bail!("floor-worker: unknown argument {other:?}"),
        }
    }
    Ok(floor::WorkerArgs {
        queue: queue.context("floor-worker: --queue is required")?,
        emulator_url: emulator_url.context("floor-worker: --emulator is required")?,
        emulator_token,
        amqp_url,
        redis_url,
        prefetch,
        database: std::env::var(floor::FLOOR_DATABASE_URL).ok().zip(table),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("clawlink-bench: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    if args.first().map(String::as_str) == Some("floor-worker") {
        let result = parse_worker_args(&args[1..]).and_then(|a| runtime.block_on(floor::run_worker(a)));
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("clawlink-bench floor-worker: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match parse_options(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("clawlink-bench: {err:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(options)) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("clawlink-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Direct,
    Floor,
    /// The floor plus one committed INSERT before publishing and one committed UPDATE
    /// before answering: what the durability rule costs any design.
    FloorDurable,
    Sync,
    AsyncSubmit,
    AsyncCompletion,
    /// Sync calls to the rate-limited `sandbox_paced` provider (no floor to compare with).
    Paced,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Floor => "floor",
            Path::FloorDurable => "floor + Postgres",
            Path::Sync => "clawlink sync",
            Path::AsyncSubmit => "clawlink async submit",
            Path::AsyncCompletion => "clawlink async completion",
            Path::Paced => "clawlink sync",
        }
    }

    fn is_clawlink(self) -> bool {
        matches!(self, Path::Sync | Path::AsyncSubmit | Path::AsyncCompletion)
    }
}

struct Row {
    concurrency: usize,
    path: Path,
    result: CellResult,
    cpu: CpuUsage,
    /// For async completion: how many calls were submitted.
    calls: Option<usize>,
    /// What sets the row apart from its path's main row (`idle`, `2 workers`, …).
    variant: Option<String>,
}

impl Row {
    fn label(&self) -> String {
        let mut label = self.path.name().to_string();
        if let Some(v) = &self.variant {
            let _ = write!(label, ", {v}");
        }
        if let Some(n) = self.calls {
            let _ = write!(label, " (N={n})");
        }
        label
    }
}

struct Tracked {
    labels: Labels,
    /// (name, pid) of the processes whose memory the report shows.
    memory: Vec<(String, u32)>,
}

fn discover(options: &Options) -> Tracked {
    let mut labels = Labels::default();
    let mut memory = Vec::new();
    let api = options.api_pid.or_else(|| procinfo::pid_file(&options.pid_dir, "api"));
    if let Some(pid) = api {
        labels.by_pid.insert(pid, "api");
        memory.push(("api".to_string(), pid));
    }
    let workers: Vec<(String, u32)> = match &options.worker_pids {
        Some(pids) => pids.iter().enumerate().map(|(i, p)| (format!("worker-{}", i + 1), *p)).collect(),
        None => procinfo::worker_pids(&options.pid_dir),
    };
    for (name, pid) in workers {
        labels.by_pid.insert(pid, "workers");
        memory.push((name, pid));
    }
    if let Some(pid) = procinfo::pid_file(&options.pid_dir, "emulator") {
        labels.by_pid.insert(pid, "emulator");
        memory.push(("emulator".to_string(), pid));
    }
    labels.by_pid.insert(std::process::id(), "bench");
    Tracked { labels, memory }
}

/// Runs `cell`, measuring CPU use from the end of the warm-up to the end of the cell.
async fn measured<F, Fut>(labels: &Labels, warmup: Duration, cell: F) -> (CellResult, CpuUsage)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = CellResult>,
{
    let before = tokio::spawn(async move {
        tokio::time::sleep(warmup).await;
        tokio::task::spawn_blocking(procinfo::snapshot).await.unwrap_or_default()
    });
    let result = cell().await;
    let after = tokio::task::spawn_blocking(procinfo::snapshot).await.unwrap_or_default();
    let before = before.await.unwrap_or_default();
    (result, procinfo::usage(&before, &after, labels))
}

/// Messages ready in ClawLink's work queues (passive declare), `None` when unknown.
async fn work_queue_depth(amqp_url: &str, namespace: &str) -> Option<u32> {
    let conn = tokio::time::timeout(
        Duration::from_secs(5),
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()),
    )
    .await
    .ok()?
    .ok()?;
    let mut total = 0u32;
    for lane in ["interactive", "bulk"] {
        let channel = conn.create_channel().await.ok()?;
        let queue = channel
            .queue_declare(
                format!("{namespace}.{lane}").as_str().into(),
                lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
                lapin::types::FieldTable::default(),
            )
            .await
            .ok()?;
        total += queue.message_count();
        let _ = channel.close(200, "".into()).await;
    }
    let _ = conn.close(200, "".into()).await;
    Some(total)
}

/// Waits until `last_id` is final and ClawLink's work queues are empty (at most 10 min),
/// so one cell's backlog does not run into the next cell.
async fn drain(api: &http::Api, last_id: Option<String>, options: &Options) {
    let started = Instant::now();
    if let Some(id) = last_id
        && let Err(e) = api.wait_final(&id, Duration::from_secs(600)).await
    {
        eprintln!("  warning: the last async call did not finish cleanly: {e}");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match work_queue_depth(&options.amqp_url, &options.namespace).await {
            Some(0) | None => break,
            Some(n) if Instant::now() >= deadline => {
                eprintln!("  warning: {n} messages still queued; going on");
                break;
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    // Calls still in flight in the workers when the queue emptied.
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!("  drained in {:.1} s", started.elapsed().as_secs_f64());
}

fn log_row(row: &Row) {
    let r = &row.result;
    eprintln!(
        "  c={:<3} {:<36} {:>9.1} calls/s  p50 {:>8} ms  p99 {:>8} ms  errors {}  (machine busy {:.0}%)",
        row.concurrency,
        row.label(),
        r.rate(),
        fmt_ms(r.percentile_ms(50.0)),
        fmt_ms(r.percentile_ms(99.0)),
        r.errors,
        row.cpu.machine_busy * 100.0
    );
    for e in &r.error_samples {
        eprintln!("      error: {e}");
    }
}

async fn run(options: Options) -> anyhow::Result<String> {
    let wants = |r: &str| options.rows.contains(r);
    let needs_api = ["sync", "async", "isolation", "pacing", "scaling"].iter().any(|r| wants(r));
    let http_client = http::client(options.call_timeout)?;
    let direct = http::Direct::new(http_client.clone(), &options.emulator_url, &options.emulator_token)?;
    let api = if needs_api {
        let (Some(url), Some(key)) = (&options.api_url, &options.api_key) else {
            bail!(
                "CLAWLINK_API_URL and CLAWLINK_API_KEY are not set: run deploy/local/run --detach \
                 first and source .clawlink/demo.env (or use deploy/local/bench, which does both), \
                 or pass --api-url and --api-key"
            );
        };
        Some(http::Api::new(http_client.clone(), url, key)?)
    } else {
        None
    };

    // Preflight: each path answers once, or we stop here with the reason.
    if wants("direct") || wants("floor") || wants("floor-pg") {
        tokio::time::timeout(Duration::from_secs(10), direct.call())
            .await
            .map_err(|_| anyhow::anyhow!("no answer"))
            .and_then(|r| r.map_err(anyhow::Error::msg))
            .with_context(|| {
                format!("the emulator at {} does not answer GET /echo (is the stack running?)", options.emulator_url)
            })?;
    }
    if let Some(api) = &api {
        tokio::time::timeout(Duration::from_secs(30), api.sync_call())
            .await
            .map_err(|_| anyhow::anyhow!("no answer within 30 s"))
            .and_then(|r| r.map_err(anyhow::Error::msg))
            .with_context(|| {
                format!("ClawLink at {} does not execute sandbox_echo", options.api_url.as_deref().unwrap_or_default())
            })?;
    }

    let mut tracked = discover(&options);
    if needs_api && !tracked.memory.iter().any(|(n, _)| n == "api") {
        eprintln!(
            "warning: no api pid (looked in {}/api.pid; --api-pid): memory and CPU of the api are not reported",
            options.pid_dir.display()
        );
    }

    let floor = if wants("floor") || wants("floor-pg") {
        eprintln!("starting the floor (private quorum queue + floor-worker process)");
        let f = floor::Floor::start(&floor::FloorConfig {
            amqp_url: options.amqp_url.clone(),
            redis_url: options.redis_url.clone(),
            emulator_url: options.emulator_url.clone(),
            emulator_token: options.emulator_token.clone(),
            prefetch: options.prefetch,
            database_url: wants("floor-pg").then(|| options.database_url.clone()),
        })
        .await
        .context("cannot set up the floor")?;
        if let Some(pid) = f.worker_pid() {
            tracked.labels.by_pid.insert(pid, "floor-worker");
        }
        Some(f)
    } else {
        None
    };

    let started_at = time::OffsetDateTime::now_utc();
    let rss_start: Vec<Option<u64>> = tracked.memory.iter().map(|(_, p)| procinfo::rss_kib(*p)).collect();
    let floor_client = floor.as_ref().map(floor::Floor::client);
    let outcome = tokio::select! {
        r = run_cells(&options, &tracked, &direct, api.as_ref(), floor_client) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(f) = floor {
        f.stop().await;
    }
    let (rows, rss_end, extras) = outcome?;
    Ok(report(&options, started_at, &rows, &tracked, &rss_start, &rss_end, &extras))
}

async fn run_cells(
    options: &Options,
    tracked: &Tracked,
    direct: &http::Direct,
    api: Option<&http::Api>,
    floor: Option<floor::FloorClient>,
) -> anyhow::Result<(Vec<Row>, Vec<Option<u64>>, Extras)> {
    let wants = |r: &str| options.rows.contains(r);
    let labels = &tracked.labels;
    let mut rows = Vec::new();
    let duration = Duration::from_secs(options.seconds);
    for &c in &options.concurrency {
        let spec = LoadSpec { concurrency: c, warmup: options.warmup, duration, call_timeout: options.call_timeout };
        eprintln!("concurrency {c}");
        let mut push = |row: Row| {
            log_row(&row);
            rows.push(row);
        };
        if wants("direct") {
            let d = direct.clone();
            let (result, cpu) = measured(labels, spec.warmup, || {
                closed_loop(spec, move || {
                    let d = d.clone();
                    async move { d.call().await }
                })
            })
            .await;
            push(Row { concurrency: c, path: Path::Direct, result, cpu, calls: None, variant: None });
        }
        if let Some(f) = &floor {
            let paths = [(Path::Floor, wants("floor")), (Path::FloorDurable, f.has_durable())];
            for (path, durable) in paths.into_iter().filter(|(_, on)| *on).map(|(p, _)| (p, p == Path::FloorDurable)) {
                let f = f.clone();
                let (result, cpu) = measured(labels, spec.warmup, || {
                    closed_loop(spec, move || {
                        let f = f.clone();
                        async move { f.call(durable).await }
                    })
                })
                .await;
                push(Row { concurrency: c, path, result, cpu, calls: None, variant: None });
            }
        }
        let mut sync_rate = None;
        if let (Some(api), true) = (api, wants("sync")) {
            let a = api.clone();
            let (result, cpu) = measured(labels, spec.warmup, || {
                closed_loop(spec, move || {
                    let a = a.clone();
                    async move { a.sync_call().await }
                })
            })
            .await;
            sync_rate = Some(result.rate());
            push(Row { concurrency: c, path: Path::Sync, result, cpu, calls: None, variant: None });
        }
        if let (Some(api), true) = (api, wants("async")) {
            let last: Arc<Mutex<Option<String>>> = Arc::default();
            let a = api.clone();
            let l = last.clone();
            let (result, cpu) = measured(labels, spec.warmup, || {
                closed_loop(spec, move || {
                    let a = a.clone();
                    let l = l.clone();
                    async move {
                        let id = a.submit().await?;
                        *l.lock().expect("last id lock") = Some(id);
                        Ok(())
                    }
                })
            })
            .await;
            push(Row { concurrency: c, path: Path::AsyncSubmit, result, cpu, calls: None, variant: None });
            let last_id = last.lock().expect("last id lock").take();
            eprintln!("  waiting for the submitted calls to finish");
            drain(api, last_id, options).await;

            // About as many calls as the sync row completed in one cell.
            let n = sync_rate
                .map(|r| (r * options.seconds as f64).round() as usize)
                .unwrap_or(100 * c)
                .clamp(10 * c, 20_000);
            let give_up_at = Instant::now() + Duration::from_secs(600);
            let (result, cpu) = measured(labels, Duration::ZERO, || {
                http::async_completion(api, c, n, Duration::from_secs(120), give_up_at)
            })
            .await;
            push(Row { concurrency: c, path: Path::AsyncCompletion, result, cpu, calls: Some(n), variant: None });
            drain(api, None, options).await;
        }
    }
    let rss_end = tracked.memory.iter().map(|(_, p)| procinfo::rss_kib(*p)).collect();

    // The cells that change the stack, after the memory reading (they stop and start workers).
    let mut extras = Extras::default();
    if let (Some(api), true) = (api, ["isolation", "pacing", "scaling"].iter().any(|r| wants(r))) {
        let ctx =
            targets::Ctx::new(options, tracked, api).await.context("preparing the isolation/pacing/scaling cells")?;
        let mut note = |what: &str, e: anyhow::Error| {
            eprintln!("  {what} failed: {e:#}");
            extras.failures.push(format!("{what}: {e:#}"));
        };
        if wants("isolation") {
            match ctx.isolation(&mut rows).await {
                Ok(i) => extras.isolation = Some(i),
                Err(e) => note("isolation", e),
            }
        }
        if wants("pacing") {
            match ctx.pacing(&mut rows).await {
                Ok(p) => extras.pacing = Some(p),
                Err(e) => note("pacing", e),
            }
        }
        if wants("scaling") {
            match ctx.scaling(&mut rows).await {
                Ok(s) => extras.scaling = Some(s),
                Err(e) => note("scaling", e),
            }
        }
    }
    Ok((rows, rss_end, extras))
}

#[derive(Default)]
struct Extras {
    isolation: Option<targets::Isolation>,
    pacing: Option<targets::Pacing>,
    scaling: Option<targets::Scaling>,
    failures: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// The report

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(ms) if ms < 10.0 => format!("{ms:.2}"),
        Some(ms) if ms < 100.0 => format!("{ms:.1}"),
        Some(ms) => format!("{ms:.0}"),
    }
}

fn fmt_rate(r: f64) -> String {
    if r < 100.0 { format!("{r:.1}") } else { format!("{r:.0}") }
}

fn fmt_ratio(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.2}×"),
        _ => "–".into(),
    }
}

fn fmt_mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "–".into())
}

fn report(
    options: &Options,
    started_at: time::OffsetDateTime,
    rows: &[Row],
    tracked: &Tracked,
    rss_start: &[Option<u64>],
    rss_end: &[Option<u64>],
    extras: &Extras,
) -> String {
    let m = procinfo::machine();
    let date = started_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "## ClawLink benchmark, {} UTC\n", date[..date.len().min(19)].replace('T', " "));
    let _ = writeln!(
        out,
        "- machine: {} CPUs (nproc), {}, {:.1} GiB RAM, Linux {}",
        m.nproc, m.cpu_model, m.mem_total_gib, m.kernel
    );
    let _ = writeln!(
        out,
        "- load: closed loop, {} s measured per cell after {} ms warm-up; one keep-alive HTTP client; \
         `async completion` submits N calls with c tasks while c other tasks poll `waitMs=5000`\n",
        options.seconds,
        options.warmup.as_millis()
    );
    let _ = writeln!(
        out,
        "| c | path | calls/s | p50 ms | p99 ms | errors | calls/s vs floor | p50 vs floor | calls/s vs floor + Postgres | CPU busy |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let r = &row.result;
        let at = |path: Path| rows.iter().find(|f| f.concurrency == row.concurrency && f.path == path);
        let (rate_ratio, p50_ratio) = match (row.path.is_clawlink(), at(Path::Floor)) {
            (true, Some(f)) => (
                Some(r.rate() / f.result.rate()),
                r.percentile_ms(50.0).zip(f.result.percentile_ms(50.0)).map(|(a, b)| a / b),
            ),
            _ => (None, None),
        };
        let durable_ratio = match (row.path.is_clawlink(), at(Path::FloorDurable)) {
            (true, Some(f)) => Some(r.rate() / f.result.rate()),
            _ => None,
        };
        let path = row.label();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% |",
            row.concurrency,
            path,
            fmt_rate(r.rate()),
            fmt_ms(r.percentile_ms(50.0)),
            fmt_ms(r.percentile_ms(99.0)),
            r.errors,
            fmt_ratio(rate_ratio),
            fmt_ratio(p50_ratio),
            fmt_ratio(durable_ratio),
            row.cpu.machine_busy * 100.0
        );
    }

    if !tracked.memory.is_empty() {
        let last_c = options.concurrency.last().copied().unwrap_or(0);
        let _ = writeln!(out, "\nResident memory (VmRSS):\n");
        let _ = writeln!(out, "| process | pid | before the run | after the c={last_c} cells |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for (i, (name, pid)) in tracked.memory.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {name} | {pid} | {} | {} |",
                fmt_mib(rss_start.get(i).copied().flatten()),
                fmt_mib(rss_end.get(i).copied().flatten())
            );
        }
        // Issue 6, target 5: the api and each worker ≤ 50 MiB under the c=64 load (the
        // readings bracket the cells; VmRSS after them includes what the load grew).
        let _ = writeln!(out);
        for (i, (name, _)) in tracked.memory.iter().enumerate() {
            if name == "emulator" {
                let _ = writeln!(out, "- emulator: not ClawLink (it keeps the last 200,000 requests); no limit");
                continue;
            }
            let peak = rss_start.get(i).copied().flatten().max(rss_end.get(i).copied().flatten());
            let verdict = match peak {
                Some(k) if k <= MEMORY_LIMIT_KIB => "pass",
                Some(_) => "FAIL",
                None => "unknown",
            };
            let _ = writeln!(out, "- {name}: at most {} (the larger reading), limit 50 MiB: {verdict}", fmt_mib(peak));
        }
    }

    if let Some(i) = &extras.isolation {
        isolation_section(&mut out, rows, i);
    }
    if let Some(p) = &extras.pacing {
        pacing_section(&mut out, rows, p);
    }
    if let Some(s) = &extras.scaling {
        scaling_section(&mut out, rows, s);
    }

    // CPU time per successful call, by process family.
    let columns =
        ["bench", "floor-worker", "api", "workers", "emulator", "rabbitmq", "redis", "postgres", "kernel", "other"];
    let present: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| rows.iter().any(|r| r.cpu.seconds.get(c).copied().unwrap_or(0.0) > 0.0))
        .collect();
    if !present.is_empty() {
        let _ = writeln!(out, "\nCPU time per successful call, µs, by process (from /proc, measured window):\n");
        let _ = writeln!(out, "| c | path | {} | total |", present.join(" | "));
        let _ = writeln!(out, "|---:|---|{}---:|", "---:|".repeat(present.len()));
        // The paced row's calls wait for permits: its CPU per call is the machine's idle noise.
        for row in rows.iter().filter(|r| r.path != Path::Paced) {
            let ok = row.result.ok.max(1) as f64;
            let mut total = 0.0;
            let cells: Vec<String> = present
                .iter()
                .map(|c| {
                    let s = row.cpu.seconds.get(c).copied().unwrap_or(0.0);
                    total += s;
                    format!("{:.0}", s * 1e6 / ok)
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} |",
                row.concurrency,
                row.label(),
                cells.join(" | "),
                total * 1e6 / ok
            );
        }
    }

    let errors: Vec<String> = rows
        .iter()
        .flat_map(|r| r.result.error_samples.iter().map(move |e| format!("- c={} {}: {e}", r.concurrency, r.label())))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\nErrors seen (samples):\n\n{}", errors.join("\n"));
    }
    if !extras.failures.is_empty() {
        let _ = writeln!(out, "\nCells that could not run:\n");
        for f in &extras.failures {
            let _ = writeln!(out, "- {f}");
        }
    }
    out
}

const MEMORY_LIMIT_KIB: u64 = 50 * 1024;

fn verdict(ok: bool) -> &'static str {
    if ok { "pass" } else { "FAIL" }
}

fn isolation_section(out: &mut String, rows: &[Row], i: &targets::Isolation) {
    let (idle, loaded) = (&rows[i.idle].result, &rows[i.loaded].result);
    let _ = writeln!(out, "\nIsolation (sync calls at c=16; target: p99 with the backlog ≤ 1.2× idle):\n");
    let _ = writeln!(out, "| sync c=16 | calls/s | p50 ms | p99 ms | errors |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (name, r) in [("idle".to_string(), idle), (format!("{} bulk calls queued", i.backlog), loaded)] {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} |",
            fmt_rate(r.rate()),
            fmt_ms(r.percentile_ms(50.0)),
            fmt_ms(r.percentile_ms(99.0)),
            r.errors
        );
    }
    let ratio = loaded.percentile_ms(99.0).zip(idle.percentile_ms(99.0)).map(|(l, i)| l / i);
    let p50 = loaded.percentile_ms(50.0).zip(idle.percentile_ms(50.0)).map(|(l, i)| l / i);
    let _ = writeln!(
        out,
        "\n- p99 loaded / idle: {} (p50: {}): {}",
        fmt_ratio(ratio),
        fmt_ratio(p50),
        ratio.map_or("unknown", |r| verdict(r <= 1.2))
    );
    let _ = writeln!(
        out,
        "- backlog: {} executions inserted in one statement and published to the bulk queue with confirms \
         (`--backlog N`, default 100,000 as issue 6 asks); {} of them finished during the loaded cell (plus {} \
         before it started), so the workers were busy with bulk calls throughout",
        i.backlog,
        i.finished_after.saturating_sub(i.finished_before),
        i.finished_before
    );
    let _ = writeln!(
        out,
        "- afterwards the bulk queue was purged and every backlog row deleted (not drained: draining {} \
         calls would take minutes)",
        i.backlog
    );
}

fn pacing_section(out: &mut String, rows: &[Row], p: &targets::Pacing) {
    let r = &rows[p.row].result;
    let limit = f64::from(p.requests) / f64::from(p.per_seconds);
    let ceiling = p.requests + p.burst;
    let _ = writeln!(
        out,
        "\nPacing precision ({} workers; `{}` declares {} requests per {} s, burst {}; sync calls at c={}, \
         arrival times from the emulator's request log):\n",
        p.workers,
        targets::PACED_PROVIDER,
        p.requests,
        p.per_seconds,
        p.burst,
        p.concurrency
    );
    let _ = writeln!(
        out,
        "- most requests in any {} s window: {} (target ≤ {} = requests + burst): {}",
        p.per_seconds,
        p.max_in_window,
        ceiling,
        verdict(p.max_in_window as u64 <= u64::from(ceiling))
    );
    let _ = writeln!(
        out,
        "- achieved rate between the first and the last window (work always waiting): {:.1}/s = {:.3}× the \
         limit (target ≥ 0.95×): {}; the fewest in any {} s window there: {}",
        p.achieved,
        p.achieved / limit,
        verdict(p.achieved >= 0.95 * limit),
        p.per_seconds,
        p.fewest_in_window
    );
    let _ = writeln!(
        out,
        "- the emulator saw {} requests (warm-up included); ClawLink completed {} calls in the measured {} s \
         ({} errors), p50 {} ms (mostly the wait for a permit)",
        p.seen,
        r.ok,
        r.elapsed.as_secs(),
        r.errors,
        fmt_ms(r.percentile_ms(50.0))
    );
}

fn scaling_section(out: &mut String, rows: &[Row], s: &targets::Scaling) {
    let _ = writeln!(out, "\nScaling (sync calls at c=64; CPU per call in the table below):\n");
    let _ =
        writeln!(out, "| workers | calls/s | vs 1 worker | p50 ms | p99 ms | errors | CPU busy | largest CPU users |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---|");
    let one = s.rows.iter().find(|(n, _)| *n == 1).map(|(_, i)| rows[*i].result.rate());
    for &(n, i) in &s.rows {
        let row = &rows[i];
        let r = &row.result;
        // Share of the machine's CPU time per process family in the cell.
        let total: f64 = row.cpu.seconds.values().sum();
        let mut top: Vec<(&str, f64)> = row.cpu.seconds.iter().map(|(k, v)| (*k, *v)).collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = top
            .iter()
            .take(3)
            .filter(|(_, v)| *v > 0.0)
            .map(|(k, v)| format!("{k} {:.0}%", 100.0 * v / total.max(f64::MIN_POSITIVE)))
            .collect();
        let _ = writeln!(
            out,
            "| {n} | {} | {} | {} | {} | {} | {:.0}% | {} |",
            fmt_rate(r.rate()),
            fmt_ratio(one.map(|o| r.rate() / o)),
            fmt_ms(r.percentile_ms(50.0)),
            fmt_ms(r.percentile_ms(99.0)),
            r.errors,
            row.cpu.machine_busy * 100.0,
            top.join(", ")
        );
    }
    // Where it stops growing: the first count that adds less than 10 % over the one before,
    // and which families' CPU per call grew there.
    let per_call = |i: usize, family: &str| {
        let row = &rows[i];
        row.cpu.seconds.get(family).copied().unwrap_or(0.0) * 1e6 / row.result.ok.max(1) as f64
    };
    if let Some(w) = s.rows.windows(2).find(|w| rows[w[1].1].result.rate() < 1.1 * rows[w[0].1].result.rate()) {
        let ((a, ia), (b, ib)) = (w[0], w[1]);
        let mut growth: Vec<(&str, f64)> = ["api", "workers", "rabbitmq", "redis", "postgres", "kernel", "other"]
            .into_iter()
            .map(|f| (f, per_call(ib, f) - per_call(ia, f)))
            .filter(|(_, d)| *d >= 1.0)
            .collect();
        growth.sort_by(|x, y| y.1.total_cmp(&x.1));
        let growth: Vec<String> = growth.iter().take(3).map(|(f, d)| format!("{f} +{d:.0}")).collect();
        let total = |i: usize| rows[i].cpu.seconds.values().sum::<f64>() * 1e6 / rows[i].result.ok.max(1) as f64;
        let _ = writeln!(
            out,
            "\n- throughput stops growing after {a} worker{}: with {b} the machine was {:.0}% busy and CPU per call \
             went from {:.0} to {:.0} µs ({})",
            if a == 1 { "" } else { "s" },
            rows[ib].cpu.machine_busy * 100.0,
            total(ia),
            total(ib),
            if growth.is_empty() {
                "no family grew".to_string()
            } else {
                format!("µs per call: {}", growth.join(", "))
            }
        );
    }
}
