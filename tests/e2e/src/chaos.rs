//! The chaos runner: drives tool calls through a whole stack while it SIGKILLs workers,
//! restarts RabbitMQ once and Redis once, then reconciles what every caller was told with
//! the database and with the side effects the provider emulator counted.
//!
//! The stack is the test harness's ([`Stack`]): a fresh database, the api and web in this
//! process, workers as child processes (so they can be killed), the emulator playing the
//! sandbox provider, and a RabbitMQ node and a Redis server of the runner's own
//! ([`chaos_infra`](crate::chaos_infra)), never the shared ones. Every call is a
//! `sandbox_create_note` (a write: the emulator counts it under the execution id the
//! worker sends as its idempotency key), sync or async, spread over several users and
//! connections.
//!
//! What it promises to check:
//! - every accepted execution (the caller got an id) ends final, and a failed one has a
//!   reason (`error_code`);
//! - every caller got a result, or an answer that says to retry (CONTRACT.md: 503 with
//!   `retryable`, or 202 and then the result by polling);
//! - no execution was performed twice, except inside the documented window: the worker
//!   died between the provider's answer and the commit of the result. A duplicate counts
//!   as in-window when a worker was SIGKILLed within moments (`WINDOW_SLACK_MS`) after
//!   the provider performed the call (or just before: `IN_FLIGHT_MS`, a request already
//!   sent), and before it performed it again; every other duplicate is a defect.

use crate::chaos_infra::{ChaosBroker, PrivateRedis};
use crate::{Options, SANDBOX_TOKEN, Stack};
use anyhow::Context;
use clawlink_common::ids::ConnectionId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long after a SIGKILL its effects last: the dead worker's leases expire
/// (`clawlink_worker::execute::LEASE_TTL`, 10 s) and the redeliveries check back (2 s).
const KILL_RECOVERY_MS: u64 = 15_000;

/// How long after the provider performed a call a worker's death still counts as "in the
/// window" (the worker had the answer and had not recorded it yet). The window itself is
/// a few milliseconds; the slack covers clock alignment and a loaded machine.
const WINDOW_SLACK_MS: u64 = 2_000;

/// A request the worker had sent just before it was killed reaches the provider (and is
/// performed) a few milliseconds after the kill: the same window, seen from the other side.
const IN_FLIGHT_MS: u64 = 100;

#[derive(Clone, Debug)]
pub struct ChaosOptions {
    /// Tool calls to make.
    pub calls: usize,
    /// Calls in flight at once (each call includes polling until its result).
    pub concurrency: usize,
    pub users: usize,
    pub connections_per_user: usize,
    /// Worker processes alive at any time (a killed one is replaced).
    pub workers: usize,
    /// Worker SIGKILLs, at random moments of the run.
    pub kills: usize,
    /// Share of calls made async, in percent.
    pub async_percent: u32,
    pub restart_rabbitmq: bool,
    pub restart_redis: bool,
    /// Run the broker as a private three-node cluster (every lane a quorum queue with a
    /// member on each node); the broker fault then SIGKILLs the node leading the lanes and
    /// starts it again 5 s later, instead of restarting the single node.
    pub cluster: bool,
    /// How long, after the last call, executions may take to become final.
    pub settle: Duration,
    pub seed: u64,
    /// Where the worker logs go (a temporary folder, removed afterwards, when `None`).
    pub log_dir: Option<PathBuf>,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        Self {
            calls: 300,
            concurrency: 24,
            users: 3,
            connections_per_user: 2,
            workers: 3,
            kills: 3,
            async_percent: 50,
            restart_rabbitmq: true,
            restart_redis: true,
            cluster: false,
            settle: Duration::from_secs(60),
            seed: rand::random(),
            log_dir: None,
        }
    }
}

/// What one caller was told, in the end.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// The final result (directly, or by polling after a 202).
    Final { succeeded: bool, code: Option<String> },
    /// Refused with an answer that says to retry (503/429 with `retryable: true`).
    Retryable(u16),
    /// Anything else: no result and nothing that says to retry.
    Unclear(String),
}

#[derive(Clone, Debug)]
struct Call {
    started_ms: u64,
    ended_ms: u64,
    execution_id: Option<String>,
    answer: Answer,
}

#[derive(Clone, Debug)]
enum FaultEvent {
    Kill {
        at_ms: u64,
    },
    Rabbit {
        from_ms: u64,
        to_ms: u64,
    },
    Redis {
        from_ms: u64,
        to_ms: u64,
    },
    /// A worker process that ended without being killed.
    Exited,
}

/// The reconciled outcome of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub submitted: usize,
    /// Callers that got an execution id.
    pub accepted: usize,
    pub succeeded: usize,
    /// Final failures by `error_code`, as the callers saw them.
    pub failed: BTreeMap<String, usize>,
    /// Refused with a retryable answer (nothing was started, or what was is failed).
    pub refused_retryable: usize,
    /// Callers that got neither a result nor a retryable answer.
    pub unanswered: usize,
    pub unanswered_examples: Vec<String>,
    /// Accepted executions that are not final after the settle time (or have no row).
    pub lost: usize,
    /// Failed executions whose row gives no reason.
    pub failed_without_reason: usize,
    /// Executions the caller saw succeed that the provider never performed.
    pub succeeded_unperformed: usize,
    /// Executions the provider performed more than once, outside the documented window.
    pub duplicated: usize,
    /// … and inside it (a worker was killed between the two).
    pub duplicated_in_window: usize,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub p99_during_faults_ms: u64,
    pub calls_during_faults: usize,
    pub kills: usize,
    pub rabbit_away_ms: Option<u64>,
    /// The broker was the three-node cluster (its fault: the lane leader killed).
    pub cluster: bool,
    pub redis_away_ms: Option<u64>,
    /// Worker processes that ended without being killed (e.g. a broker restart).
    pub worker_exits: usize,
    pub elapsed: Duration,
    pub seed: u64,
}

impl Report {
    /// Nothing lost, nothing done twice outside the window, every caller answered, every
    /// failure with a reason, every success performed.
    pub fn holds(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.unanswered == 0
            && self.failed_without_reason == 0
            && self.succeeded_unperformed == 0
    }

    /// One markdown table.
    pub fn table(&self) -> String {
        let mut t = String::from("| what | count |\n|---|---:|\n");
        let mut row = |what: &str, value: String| {
            let _ = writeln!(t, "| {what} | {value} |");
        };
        row("submitted", self.submitted.to_string());
        row("accepted (caller got an execution id)", self.accepted.to_string());
        row("succeeded", self.succeeded.to_string());
        if self.failed.is_empty() {
            row("failed", "0".into());
        }
        for (code, n) in &self.failed {
            row(&format!("failed: `{code}`"), n.to_string());
        }
        row("refused with a retryable answer (503/429)", self.refused_retryable.to_string());
        row("callers with neither a result nor a retryable answer", self.unanswered.to_string());
        row("lost (accepted, not final)", self.lost.to_string());
        row("failed without a reason", self.failed_without_reason.to_string());
        row("succeeded but never performed", self.succeeded_unperformed.to_string());
        row("duplicated outside the window", self.duplicated.to_string());
        row(
            "duplicated inside the window (worker killed after the provider answered)",
            self.duplicated_in_window.to_string(),
        );
        row("latency p50 / p99, all calls", format!("{} ms / {} ms", self.p50_ms, self.p99_ms));
        row(
            &format!("latency p99 during faults ({} calls)", self.calls_during_faults),
            format!("{} ms", self.p99_during_faults_ms),
        );
        let away = |ms: Option<u64>| ms.map_or("no".to_string(), |ms| format!("away {:.1} s", ms as f64 / 1000.0));
        row("faults: workers SIGKILLed", self.kills.to_string());
        if self.cluster {
            row("faults: RabbitMQ lane leader SIGKILLed (3-node cluster)", away(self.rabbit_away_ms));
        } else {
            row("faults: RabbitMQ restarted", away(self.rabbit_away_ms));
        }
        row("faults: Redis restarted (every key lost)", away(self.redis_away_ms));
        row("worker processes that exited on their own", self.worker_exits.to_string());
        row("wall time", format!("{:.1} s", self.elapsed.as_secs_f64()));
        t
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Clock(Instant);

impl Clock {
    fn ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// Runs the whole thing: private broker and Redis, a stack, the calls, the faults, the
/// reconciliation. Everything it started is stopped before it returns (or on drop).
pub async fn run(options: ChaosOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut rabbit = ChaosBroker::start(options.cluster).await?;
    let mut redis = PrivateRedis::start().await.context("starting a private Redis")?;
    tracing::info!(amqp = %rabbit.url(), redis = %redis.url(), "private broker and redis up");
    let stack = Stack::start(Options {
        workers: 0,
        env: vec![
            ("CLAWLINK_AMQP_URL".into(), rabbit.url()),
            ("CLAWLINK_REDIS_URL".into(), redis.url()),
            // The run drives each device far past the budget that protects a deployment.
            ("CLAWLINK_DEVICE_RATE_PER_SEC".into(), "1000000".into()),
            ("CLAWLINK_DEVICE_BURST".into(), "1000000".into()),
        ],
        db_prefix: "clawlink_chaos",
        sandbox_rate: Some("per_connection = [{ requests = 1000000, per_seconds = 1, burst = 1000000 }]".into()),
        ..Default::default()
    })
    .await;
    let result = drive(&options, &stack, &mut rabbit, &mut redis, started).await;
    stack.finish().await;
    drop(redis);
    drop(rabbit);
    result
}

struct Target {
    key: String,
    connection: ConnectionId,
}

async fn drive(
    options: &ChaosOptions,
    stack: &Stack,
    rabbit: &mut ChaosBroker,
    redis: &mut PrivateRedis,
    started: Instant,
) -> anyhow::Result<Report> {
    let mut targets = Vec::new();
    for u in 0..options.users.max(1) {
        let user = stack.user(&format!("chaos{u}@example.test")).await;
        let mut conn = stack.db.acquire().await?;
        clawlink_common::db::billing::change_plan(&mut conn, user.id, "team", "chaos").await?;
        drop(conn);
        for c in 0..options.connections_per_user.max(1) {
            let connection = stack.sandbox_connection(user.id, &format!("c{c}"), SANDBOX_TOKEN).await;
            targets.push(Target { key: user.api_key.clone(), connection });
        }
    }

    let log_dir =
        options.log_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("{}-chaos", stack.namespace)));
    std::fs::create_dir_all(&log_dir)?;
    let mut workers = Vec::new();
    let mut next_worker = 0usize;
    let mut spawn = |workers: &mut Vec<(String, tokio::process::Child)>| {
        next_worker += 1;
        let id = format!("chaos-w{next_worker}");
        let child = stack.spawn_worker_process(&id, &[("RUST_LOG", "info")], &log_dir.join(format!("{id}.log")));
        workers.push((id, child));
    };
    for _ in 0..options.workers.max(1) {
        spawn(&mut workers);
    }
    stack.wait_for_consumers(options.workers.max(1) as u32).await;

    // The emulator's clock, in this run's clock: one request's arrival seen from both.
    let clock = Arc::new(Clock(Instant::now()));
    let sent = clock.ms();
    let probe = stack
        .http
        .get(format!("{}/echo?message=chaos-clock", stack.emulator.url()))
        .bearer_auth(SANDBOX_TOKEN)
        .send()
        .await?;
    anyhow::ensure!(probe.status().is_success(), "the emulator did not answer the clock probe");
    let received = clock.ms();
    let probe_at = stack.emulator.stats().requests.iter().rev().find(|r| r.path == "/echo").map(|r| r.at_ms);
    let emulator_offset =
        probe_at.context("the clock probe is not in the emulator's log")? as i64 - ((sent + received) / 2) as i64;

    let mut rng = StdRng::seed_from_u64(options.seed);
    let n = options.calls;
    let plan: Vec<(usize, bool)> =
        (0..n).map(|_| (rng.gen_range(0..targets.len()), rng.gen_range(0..100) < options.async_percent)).collect();
    // Fault moments, as numbers of calls submitted.
    let mut faults: Vec<(usize, &str)> =
        (0..options.kills).map(|_| (rng.gen_range(n / 20..=n * 19 / 20), "kill")).collect();
    if options.restart_rabbitmq {
        faults.push((n * 35 / 100, "rabbit"));
    }
    if options.restart_redis {
        faults.push((n * 65 / 100, "redis"));
    }
    faults.sort();

    let submitted = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let targets = Arc::new(targets);
    let next = Arc::new(AtomicUsize::new(0));
    let plan = Arc::new(plan);
    let poll_deadline = options.settle + Duration::from_secs(60);

    let driver = async {
        let lanes = (0..options.concurrency.max(1)).map(|_| {
            let (next, plan, targets, calls, submitted, clock) =
                (next.clone(), plan.clone(), targets.clone(), calls.clone(), submitted.clone(), clock.clone());
            async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= plan.len() {
                        break;
                    }
                    let (target, is_async) = plan[i];
                    submitted.fetch_add(1, Ordering::Relaxed);
                    let call = one_call(stack, &targets[target], i, is_async, &clock, poll_deadline).await;
                    calls.lock().await.push(call);
                }
            }
        });
        futures_util::future::join_all(lanes).await;
        done.store(true, Ordering::Relaxed);
    };

    let chaos = async {
        let mut events = Vec::new();
        let mut faults = faults.into_iter().peekable();
        let mut rng = StdRng::seed_from_u64(options.seed ^ 0x5eed);
        let mut last_progress = Instant::now();
        while !done.load(Ordering::Relaxed) {
            if last_progress.elapsed() >= Duration::from_secs(10) {
                last_progress = Instant::now();
                eprintln!("chaos: {}/{n} calls submitted", submitted.load(Ordering::Relaxed));
            }
            // A worker that ended by itself is replaced, and counted.
            let mut i = 0;
            while i < workers.len() {
                if let Ok(Some(status)) = workers[i].1.try_wait() {
                    let (worker, _) = workers.remove(i);
                    eprintln!("chaos: worker {worker} exited on its own ({status}); replacing it");
                    events.push(FaultEvent::Exited);
                    spawn(&mut workers);
                } else {
                    i += 1;
                }
            }
            while let Some((_, what)) = faults.next_if(|(at, _)| submitted.load(Ordering::Relaxed) >= *at) {
                match what {
                    "kill" if !workers.is_empty() => {
                        let (worker, mut child) = workers.remove(rng.gen_range(0..workers.len()));
                        let at_ms = clock.ms();
                        child.start_kill()?; // SIGKILL
                        let _ = child.wait().await;
                        eprintln!("chaos: worker {worker} SIGKILLed");
                        events.push(FaultEvent::Kill { at_ms });
                        spawn(&mut workers);
                    }
                    "rabbit" => {
                        let from_ms = clock.ms();
                        let lane = stack.topology().work_queue(clawlink_common::queue::Lane::Interactive);
                        if options.cluster {
                            eprintln!("chaos: SIGKILLing the RabbitMQ node that leads the lanes");
                        } else {
                            eprintln!("chaos: restarting RabbitMQ");
                        }
                        rabbit.fault(&lane).await.context("the broker fault")?;
                        events.push(FaultEvent::Rabbit { from_ms, to_ms: clock.ms() });
                    }
                    "redis" => {
                        let from_ms = clock.ms();
                        eprintln!("chaos: restarting Redis");
                        redis.restart(Duration::from_millis(500)).await.context("restarting the private Redis")?;
                        events.push(FaultEvent::Redis { from_ms, to_ms: clock.ms() });
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(events)
    };
    let ((), events) = tokio::join!(driver, chaos);
    let events = events?;

    // Every accepted execution should now become final.
    let settle_until = Instant::now() + options.settle;
    loop {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM executions WHERE status IN ('queued', 'running')")
            .fetch_one(&stack.db)
            .await?;
        if open == 0 || Instant::now() >= settle_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let a late redelivery reach the provider before counting side effects.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rows: Vec<(uuid::Uuid, String, Option<String>)> =
        sqlx::query_as("SELECT id, status, error_code FROM executions").fetch_all(&stack.db).await?;
    let stats = stack.emulator.stats();
    for (_, mut child) in workers {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    if options.log_dir.is_none() {
        let _ = std::fs::remove_dir_all(&log_dir);
    }

    let calls = calls.lock().await.clone();
    Ok(reconcile(options, calls, &events, &rows, &stats, emulator_offset, started))
}

async fn one_call(
    stack: &Stack,
    target: &Target,
    i: usize,
    is_async: bool,
    clock: &Clock,
    poll_deadline: Duration,
) -> Call {
    let started_ms = clock.ms();
    let body = json!({
        "arguments": {"text": format!("chaos note {i}")},
        "connectionId": target.connection.0,
        "confirmed": true,
        "async": is_async,
    });
    let sent = stack
        .http
        .post(format!("{}/api/tools/sandbox_create_note/execute", stack.api_url))
        .header("x-clawlink-api-key", &target.key)
        .json(&body)
        .send()
        .await;
    let finish =
        |execution_id: Option<String>, answer: Answer| Call { started_ms, ended_ms: clock.ms(), execution_id, answer };
    let (status, body) = match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
        Err(err) => {
            let cause = std::error::Error::source(&err).map(|c| format!(": {c}")).unwrap_or_default();
            let waited = clock.ms() - started_ms;
            return finish(None, Answer::Unclear(format!("request failed after {waited} ms: {err}{cause}")));
        }
    };
    let id = body["executionId"].as_str().map(String::from);
    match status {
        200 if body["ok"] == true => finish(id, Answer::Final { succeeded: true, code: None }),
        202 => {
            let Some(id) = id else { return finish(None, Answer::Unclear(format!("202 without an id: {body}"))) };
            let until = Instant::now() + poll_deadline;
            loop {
                let polled = stack
                    .http
                    .get(format!("{}/api/executions/{id}?waitMs=10000", stack.api_url))
                    .header("x-clawlink-api-key", &target.key)
                    .send()
                    .await;
                let polled = match polled {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.unwrap_or(Value::Null),
                    Ok(r) if r.status().as_u16() == 503 || r.status().as_u16() == 429 => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        Value::Null
                    }
                    Ok(r) => return finish(Some(id), Answer::Unclear(format!("polling answered {}", r.status()))),
                    Err(err) => return finish(Some(id), Answer::Unclear(format!("polling failed: {err}"))),
                };
                match polled["status"].as_str() {
                    Some("succeeded") => return finish(Some(id), Answer::Final { succeeded: true, code: None }),
                    Some("failed") => {
                        let code = polled["error"]["code"].as_str().map(String::from);
                        return finish(Some(id), Answer::Final { succeeded: false, code });
                    }
                    _ if Instant::now() >= until => {
                        return finish(Some(id), Answer::Unclear("no result after polling".into()));
                    }
                    _ => {}
                }
            }
        }
        // A final failure carries the execution's meta; a refusal does not.
        _ if id.is_some() && !body["meta"].is_null() => {
            let code = body["error"]["code"].as_str().map(String::from);
            finish(id, Answer::Final { succeeded: false, code })
        }
        503 | 429 if body["error"]["retryable"] == true => finish(id, Answer::Retryable(status)),
        _ => finish(id, Answer::Unclear(format!("{status}: {body}"))),
    }
}

fn reconcile(
    options: &ChaosOptions,
    calls: Vec<Call>,
    events: &[FaultEvent],
    rows: &[(uuid::Uuid, String, Option<String>)],
    stats: &clawlink_emulator::Stats,
    emulator_offset: i64,
    started: Instant,
) -> Report {
    let mut report =
        Report { submitted: calls.len(), seed: options.seed, cluster: options.cluster, ..Default::default() };
    let rows: HashMap<String, (&str, Option<&str>)> =
        rows.iter().map(|(id, status, code)| (id.to_string(), (status.as_str(), code.as_deref()))).collect();

    for call in &calls {
        match &call.answer {
            Answer::Final { succeeded: true, .. } => report.succeeded += 1,
            Answer::Final { succeeded: false, code } => {
                *report.failed.entry(code.clone().unwrap_or_else(|| "(no code)".into())).or_default() += 1
            }
            Answer::Retryable(_) => report.refused_retryable += 1,
            Answer::Unclear(what) => {
                report.unanswered += 1;
                if report.unanswered_examples.len() < 5 {
                    report.unanswered_examples.push(what.clone());
                }
            }
        }
        let Some(id) = &call.execution_id else { continue };
        if !matches!(call.answer, Answer::Retryable(_)) {
            report.accepted += 1;
        }
        match rows.get(id) {
            Some(("succeeded", _)) => {
                if stats.performed(id) == 0 {
                    report.succeeded_unperformed += 1;
                }
            }
            Some(("failed", code)) => {
                if code.is_none() {
                    report.failed_without_reason += 1;
                }
            }
            _ => report.lost += 1,
        }
    }

    // Kill moments in the emulator's clock.
    let kills: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            FaultEvent::Kill { at_ms } => Some(*at_ms as i64 + emulator_offset),
            _ => None,
        })
        .collect();
    let mut performed_at: HashMap<&str, Vec<u64>> = HashMap::new();
    for r in &stats.requests {
        if r.method == "POST" && r.path == "/notes" && r.status == 201 {
            if let Some(key) = r.idempotency_key.as_deref() {
                performed_at.entry(key).or_default().push(r.at_ms);
            }
        }
    }
    for (key, count) in &stats.side_effects {
        if *count < 2 {
            continue;
        }
        let times = performed_at.get(key.as_str()).cloned().unwrap_or_default();
        // In the window: each earlier performance was followed, within moments, by the
        // SIGKILL of a worker (the one that had the provider's answer and died before
        // recording it), and the next performance came after that kill.
        let in_window = times.len() as u32 == *count
            && times.windows(2).all(|w| {
                kills.iter().any(|k| {
                    *k >= w[0] as i64 - IN_FLIGHT_MS as i64
                        && *k <= (w[0] + WINDOW_SLACK_MS) as i64
                        && *k <= w[1] as i64
                })
            });
        if in_window {
            report.duplicated_in_window += 1;
        } else {
            report.duplicated += 1;
            eprintln!(
                "chaos: execution {key} performed {count} times outside the window, at {times:?} ms (kills at {kills:?})"
            );
        }
    }

    // Latency to the caller's final answer; "during faults" from the first fault to the
    // end of the last one's recovery.
    let mut all: Vec<u64> =
        calls.iter().filter(|c| matches!(c.answer, Answer::Final { .. })).map(|c| c.ended_ms - c.started_ms).collect();
    all.sort_unstable();
    report.p50_ms = percentile(&all, 50.0);
    report.p99_ms = percentile(&all, 99.0);
    let spans: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            FaultEvent::Kill { at_ms } => Some((*at_ms, at_ms + KILL_RECOVERY_MS)),
            FaultEvent::Rabbit { from_ms, to_ms } | FaultEvent::Redis { from_ms, to_ms } => Some((*from_ms, *to_ms)),
            FaultEvent::Exited => None,
        })
        .collect();
    if let (Some(first), Some(last)) = (spans.iter().map(|s| s.0).min(), spans.iter().map(|s| s.1).max()) {
        let mut during: Vec<u64> = calls
            .iter()
            .filter(|c| matches!(c.answer, Answer::Final { .. }) && c.ended_ms >= first && c.started_ms <= last)
            .map(|c| c.ended_ms - c.started_ms)
            .collect();
        during.sort_unstable();
        report.calls_during_faults = during.len();
        report.p99_during_faults_ms = percentile(&during, 99.0);
    }
    for e in events {
        match e {
            FaultEvent::Kill { .. } => report.kills += 1,
            FaultEvent::Rabbit { from_ms, to_ms } => report.rabbit_away_ms = Some(to_ms - from_ms),
            FaultEvent::Redis { from_ms, to_ms } => report.redis_away_ms = Some(to_ms - from_ms),
            FaultEvent::Exited => report.worker_exits += 1,
        }
    }
    report.elapsed = started.elapsed();
    report
}
