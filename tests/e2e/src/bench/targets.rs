//! The cells that change the stack while they run: isolation (a bulk backlog under sync
//! calls), pacing precision (three workers against a rate-limited provider) and scaling
//! (1, 2, 4 workers). Each leaves the stack as it found it: two workers, empty queues.

use super::stack::{self, Backlog, Worker, WorkerTemplate};
use super::stats::{LoadSpec, closed_loop};
use super::{Options, Path, Row, Tracked, http, log_row, measured};
use anyhow::{Context, bail};
use std::time::Duration;

/// The paced copy of the sandbox that `deploy/local/bench` adds to the bench catalog.
pub const PACED_PROVIDER: &str = "sandbox_paced";

pub struct Isolation {
    pub backlog: usize,
    /// Backlog executions final before and after the loaded cell.
    pub finished_before: u64,
    pub finished_after: u64,
    pub idle: usize,
    pub loaded: usize,
}

pub struct Pacing {
    pub requests: u32,
    pub per_seconds: u32,
    pub burst: u32,
    pub workers: usize,
    pub concurrency: usize,
    /// Provider requests the emulator saw during the cell.
    pub seen: usize,
    pub max_in_window: usize,
    /// Requests per second over the steady part (after the first window, before the last).
    pub achieved: f64,
    /// The fewest requests in any window within the steady part.
    pub fewest_in_window: usize,
    pub row: usize,
}

pub struct Scaling {
    /// (workers, index of the row)
    pub rows: Vec<(usize, usize)>,
}

/// What the stack-changing cells need: the running workers and the database.
pub struct Ctx<'a> {
    pub options: &'a Options,
    pub tracked: &'a Tracked,
    pub api: &'a http::Api,
    pub http: reqwest::Client,
    pub template: WorkerTemplate,
    pub db: sqlx::PgPool,
    /// An execution of the bench user through its sandbox connection (the backlog's model).
    pub model: uuid::Uuid,
}

impl<'a> Ctx<'a> {
    pub async fn new(options: &'a Options, tracked: &'a Tracked, api: &'a http::Api) -> anyhow::Result<Self> {
        let (_, pid) = tracked
            .memory
            .iter()
            .find(|(n, _)| n.starts_with("worker"))
            .context("no running worker found in the pid directory (isolation, pacing and scaling need one)")?;
        let template = WorkerTemplate::from_running(*pid, &options.pid_dir)?;
        let url = template.var("CLAWLINK_DATABASE_URL").context("the worker has no CLAWLINK_DATABASE_URL")?;
        let db = clawlink_common::db::connect(&url, 4).await.context("connecting to the stack's Postgres")?;
        let id = api.submit().await.map_err(anyhow::Error::msg).context("one async call (the backlog's model)")?;
        api.wait_final(&id, Duration::from_secs(60)).await.map_err(anyhow::Error::msg)?;
        let model = uuid::Uuid::parse_str(&id).with_context(|| format!("execution id {id:?} is not a uuid"))?;
        let http = http::client(Duration::from_secs(30))?;
        Ok(Self { options, tracked, api, http, template, db, model })
    }

    fn spec(&self, concurrency: usize) -> LoadSpec {
        LoadSpec {
            concurrency,
            warmup: self.options.warmup,
            duration: Duration::from_secs(self.options.seconds),
            call_timeout: self.options.call_timeout,
        }
    }

    /// A closed loop of sync calls; `workers` are pids of workers the stack's pid files
    /// did not list when the bench started.
    async fn sync_row(&self, spec: LoadSpec, api: &http::Api, workers: &[u32], variant: String) -> Row {
        let mut labels = self.tracked.labels.clone();
        for &pid in workers {
            labels.by_pid.insert(pid, "workers");
        }
        let concurrency = spec.concurrency;
        let a = api.clone();
        let (result, cpu) = measured(&labels, spec.warmup, || {
            closed_loop(spec, move || {
                let a = a.clone();
                async move { a.sync_call().await }
            })
        })
        .await;
        let row = Row { concurrency, path: Path::Sync, result, cpu, calls: None, variant: Some(variant) };
        log_row(&row);
        row
    }

    /// Extra workers `worker-<first>`…, each on its own port.
    async fn start_workers(&self, first: usize, count: usize) -> anyhow::Result<Vec<Worker>> {
        let mut started = Vec::new();
        for i in first..first + count {
            match self.template.start(&format!("worker-{i}"), 8180 + i as u16, &self.http).await {
                Ok(w) => started.push(w),
                Err(e) => {
                    stop_all(&mut started).await;
                    return Err(e);
                }
            }
        }
        Ok(started)
    }

    /// Sync p50/p99 at c=16 idle, then with the bulk backlog queued.
    pub async fn isolation(&self, rows: &mut Vec<Row>) -> anyhow::Result<Isolation> {
        let o = self.options;
        eprintln!("isolation: sync calls at c=16, idle, then over {} queued bulk calls", o.backlog);
        let idle = self.sync_row(self.spec(16), self.api, &[], "idle".into()).await;
        rows.push(idle);
        let idle = rows.len() - 1;
        let backlog = Backlog::create(&self.db, &o.amqp_url, &o.namespace, self.model, o.backlog).await?;
        let result = async {
            let finished_before = backlog.finished(&self.db).await?;
            let loaded = self.sync_row(self.spec(16), self.api, &[], format!("{} bulk queued", o.backlog)).await;
            let finished_after = backlog.finished(&self.db).await?;
            eprintln!("  backlog drained during the cell: {} of {}", finished_after - finished_before, o.backlog);
            anyhow::Ok((loaded, finished_before, finished_after))
        }
        .await;
        backlog.remove(&self.db, &o.amqp_url, &o.namespace).await;
        let (loaded, finished_before, finished_after) = result?;
        rows.push(loaded);
        Ok(Isolation { backlog: o.backlog, finished_before, finished_after, idle, loaded: rows.len() - 1 })
    }

    /// Three workers, sync calls to the paced provider, the emulator's arrival times.
    pub async fn pacing(&self, rows: &mut Vec<Row>) -> anyhow::Result<Pacing> {
        let o = self.options;
        let catalog_dir = self.template.var("CLAWLINK_CATALOG_DIR").context(
            "the workers run without CLAWLINK_CATALOG_DIR: the pacing cell needs deploy/local/bench's bench catalog",
        )?;
        let catalog = clawlink_common::catalog::Catalog::load_dir(
            std::path::Path::new(&catalog_dir),
            &std::collections::BTreeMap::new(),
        )
        .with_context(|| format!("loading the catalog in {catalog_dir}"))?;
        let Some(provider) = catalog.provider(PACED_PROVIDER) else {
            bail!("the catalog in {catalog_dir} has no provider {PACED_PROVIDER:?} (deploy/local/bench adds it)");
        };
        let Some(window) = provider.rate_limits.per_connection.first().copied() else {
            bail!("{PACED_PROVIDER} declares no per_connection rate limit");
        };
        stack::ensure_connection(&self.db, &self.template, self.model, PACED_PROVIDER, &o.emulator_token).await?;
        let api = self.api.for_tool(&format!("{PACED_PROVIDER}_echo"));
        // Enough callers that work always waits: each waits about c / R s for its permit.
        let concurrency = 32;
        eprintln!(
            "pacing: {PACED_PROVIDER} at {} per {} s (burst {}), 3 workers, sync calls at c={concurrency}",
            window.requests, window.per_seconds, window.burst
        );
        let mut extra = self.start_workers(3, 1).await?;
        let result = async {
            stack::emulator_reset(&self.http, &o.emulator_url).await?;
            let pids: Vec<u32> = extra.iter().map(|w| w.pid).collect();
            // At least 10 s: several windows past the first one (which may hold the burst).
            let spec = LoadSpec {
                duration: self.spec(concurrency).duration.max(Duration::from_secs(10)),
                ..self.spec(concurrency)
            };
            let row = self.sync_row(spec, &api, &pids, "paced provider, 3 workers".into()).await;
            let at = stack::emulator_arrivals(&self.http, &o.emulator_url, "/echo").await?;
            anyhow::Ok((row, at))
        }
        .await;
        stop_all(&mut extra).await;
        let (mut row, at) = result?;
        row.path = Path::Paced;
        let window_ms = u64::from(window.per_seconds) * 1000;
        let max = stack::max_in_window(&at, window_ms);
        // The first window may hold the burst and the last one the tail after the load
        // stopped; the rate is taken between them, where callers always had work waiting.
        let (achieved, fewest_in_window) = match (at.first(), at.last()) {
            (Some(&first), Some(&last)) if last > first + 3 * window_ms => {
                let (from, to) = (first + window_ms, last - window_ms);
                let steady = at.iter().filter(|&&t| t >= from && t < to).count();
                let fewest = at
                    .iter()
                    .filter(|&&t| t >= from && t + window_ms <= to)
                    .map(|&t| at.iter().filter(|&&u| u >= t && u < t + window_ms).count())
                    .min()
                    .unwrap_or(0);
                (steady as f64 * 1000.0 / (to - from) as f64, fewest)
            }
            _ => (0.0, 0),
        };
        rows.push(row);
        Ok(Pacing {
            requests: window.requests,
            per_seconds: window.per_seconds,
            burst: window.burst,
            workers: 3,
            concurrency,
            seen: at.len(),
            max_in_window: max,
            achieved,
            fewest_in_window,
            row: rows.len() - 1,
        })
    }

    /// Sync at c=64 with each worker count in `--scaling-workers` (default 1, 2, 4).
    pub async fn scaling(&self, rows: &mut Vec<Row>) -> anyhow::Result<Scaling> {
        let o = self.options;
        let running: Vec<(String, u32)> =
            self.tracked.memory.iter().filter(|(n, _)| n.starts_with("worker")).cloned().collect();
        let base = running.len();
        eprintln!("scaling: sync calls at c=64 with {:?} workers ({base} running)", o.scaling_workers);
        let mut out = Scaling { rows: Vec::new() };
        // The stack's workers this cell stopped and started again (new pids).
        let mut restarted: Vec<u32> = Vec::new();
        for &n in &o.scaling_workers {
            if n < base {
                // Stop the stack's last workers for the cell, then start them again as
                // they were (same environment, same pid file).
                let mut stopped = Vec::new();
                for (name, pid) in &running[n..] {
                    let template = WorkerTemplate::from_running(*pid, &o.pid_dir)?;
                    let mut w = Worker::adopt(name, *pid, &o.pid_dir);
                    w.stop().await;
                    stopped.push((name.clone(), template));
                }
                let row = self.sync_row(self.spec(64), self.api, &restarted, format!("{n} worker{}", plural(n))).await;
                for (name, template) in stopped {
                    let port = template
                        .var("CLAWLINK_WORKER_ADDR")
                        .and_then(|a| a.rsplit(':').next().and_then(|p| p.parse().ok()))
                        .unwrap_or(8180);
                    // Not ours to stop at the end: the stack's stop does.
                    let w = template.start(&name, port, &self.http).await?;
                    restarted.push(w.pid);
                    w.leave_running();
                }
                rows.push(row);
            } else {
                let mut extra = self.start_workers(base + 1, n - base).await?;
                let pids: Vec<u32> = extra.iter().map(|w| w.pid).chain(restarted.iter().copied()).collect();
                let row = self.sync_row(self.spec(64), self.api, &pids, format!("{n} worker{}", plural(n))).await;
                stop_all(&mut extra).await;
                rows.push(row);
            }
            out.rows.push((n, rows.len() - 1));
        }
        Ok(out)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

async fn stop_all(workers: &mut Vec<Worker>) {
    for w in workers.iter_mut() {
        w.stop().await;
    }
    workers.clear();
}
