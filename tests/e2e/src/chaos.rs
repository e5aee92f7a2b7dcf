//! The chaos runner: drives tool calls through a whole stack while it injects faults, then
//! reconciles what every caller was told with the database and with the side effects the
//! provider emulator counted.
//!
//! The stack is the test harness's ([`Stack`]): a fresh database, the api and web in this
//! process, workers as child processes (so they can be killed), the emulator playing the
//! sandbox provider, and a RabbitMQ node and a Redis server of the runner's own
//! ([`chaos_infra`](crate::chaos_infra)), never the shared ones. With api kills on, a
//! second api runs as a child process and the callers spread over both replicas. Every
//! call carries an `Idempotency-Key`, as a careful agent's would.
//!
//! The calls: `sandbox_create_note` (a write whose provider honours the idempotency key:
//! the emulator counts it under the execution id the worker sends), and a share of
//! `sandbox_post_message` (the board: a provider without idempotency keys, whose tool
//! verifies before it sends again). A share of both goes to a slow provider account
//! (each call 1–3 s, the write happening at a random point inside). Sync or async, spread
//! over several users and connections.
//!
//! The faults, each its own function and option ([`Fault`]):
//! - worker SIGKILLs at random moments, and SIGKILLs timed while a slow call is at the
//!   provider;
//! - one RabbitMQ restart and one Redis restart (every key lost);
//! - lost publisher confirms: an api's broker connection is cut after the broker took a
//!   publish ([`ConfirmCutter`]);
//! - an api SIGKILLed between its inserts and their publishes: its broker link swallows
//!   every publish first, so the rows it inserted were never queued;
//! - board posts whose answer is cut off after the post happened, half of them followed
//!   by a verification read that fails.
//!
//! What it checks:
//! - every accepted execution (the caller got an id) ends final, and a failed one has a
//!   reason (`error_code`); no row at all is left queued or running (stranded);
//! - every caller got a result, or an answer that says to retry (CONTRACT.md: 503 with
//!   `retryable`, or 202 and then the result by polling);
//! - no call refused as "not started" (a row failed `queue_unavailable`) was performed;
//! - a caller cut off by an api kill that retries with the same key gets the same
//!   execution;
//! - no execution was performed twice outside the documented classes (RELIABILITY.md,
//!   promise 3): a note (`safe`: resent with the same idempotency key) counts as in the
//!   window when a worker was SIGKILLed while the earlier request was at the provider or
//!   just after its answer (`WINDOW_SLACK_MS`), and before the next. A board post
//!   (`verify`) is never performed twice: the row remembers an answer that went missing,
//!   so not even a Redis restart that lost the sent-marker lets it be sent blindly. A
//!   board post answered `outcome_unknown` was performed at most once.

use crate::chaos_infra::{ChaosBroker, PrivateRedis};
use crate::proxy::ConfirmCutter;
use crate::{Options, SANDBOX_TOKEN, Stack};
use anyhow::Context;
use clawlink_common::ids::ConnectionId;
use clawlink_emulator::{FaultKind, Stats};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::process::Child;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long after a SIGKILL its effects last: the dead worker's leases expire
/// (`clawlink_worker::execute::LEASE_TTL`, 10 s) and the redeliveries check back (2 s).
const KILL_RECOVERY_MS: u64 = 15_000;

/// How long after the provider answered a worker's death still counts as "in the window"
/// (the worker had the answer and had not recorded it yet). The window itself is a few
/// milliseconds; the slack covers clock alignment and a loaded machine.
const WINDOW_SLACK_MS: u64 = 2_000;

/// A request the worker had sent just before it was killed reaches the provider (and is
/// performed) a few milliseconds after the kill: the same window, seen from the other side.
const IN_FLIGHT_MS: u64 = 100;

/// The slow provider account: every request it signs takes this long.
const SLOW_TOKEN: &str = "sandbox-slow-token";
const SLOW_SHORTEST: Duration = Duration::from_millis(1000);
const SLOW_LONGEST: Duration = Duration::from_millis(3000);

/// How often a caller refused as "not started" tries again with the same key.
const REFUSAL_RETRIES: u32 = 3;

/// The outbox relay's bound in the run (`CLAWLINK_OUTBOX_RELAY_AFTER_MS`; 10 s by
/// default): shorter, so rows an api kill strands are relayed within a small run.
const RELAY_AFTER_MS: &str = "3000";

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
    /// Run the broker as a private three-node cluster (every lane a quorum queue with a
    /// member on each node); the broker fault then SIGKILLs the node leading the lanes and
    /// starts it again 5 s later, instead of restarting the single node.
    pub cluster: bool,
    pub restart_redis: bool,
    /// Lost publisher confirms, at random moments: an api's broker connection is cut after
    /// the broker took a publish, its answer held 0–1.5 s first.
    pub lost_confirms: usize,
    /// SIGKILLs of the second api replica between its inserts and their publishes (0: the
    /// in-process api alone serves the callers).
    pub api_kills: usize,
    /// Share of calls, in percent, on the slow provider account (1–3 s each).
    pub slow_percent: u32,
    /// Worker SIGKILLs timed while a call is at the provider (on the slow account).
    pub mid_call_kills: usize,
    /// Share of calls, in percent, that post to the board (no idempotency keys).
    pub board_percent: u32,
    /// Board posts whose answer is cut off after the post happened; every other one is
    /// followed by a verification read that fails (so the call ends `outcome_unknown`).
    pub lost_board_answers: usize,
    /// How long, after the last call, executions may take to become final.
    pub settle: Duration,
    pub seed: u64,
    /// Where the worker and api logs go (a temporary folder, removed afterwards, when `None`).
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
            cluster: false,
            restart_redis: true,
            lost_confirms: 3,
            api_kills: 2,
            slow_percent: 5,
            mid_call_kills: 2,
            board_percent: 10,
            lost_board_answers: 4,
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

/// Which tool a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    /// `sandbox_create_note`: the provider honours the idempotency key (`safe`).
    Note,
    /// `sandbox_post_message`: the board, no idempotency keys (`verify`).
    Board,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Note => "sandbox_create_note",
            Tool::Board => "sandbox_post_message",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Tool::Note => "/notes",
            Tool::Board => "/messages",
        }
    }
}

/// One planned call.
#[derive(Clone, Copy, Debug)]
struct Planned {
    target: usize,
    is_async: bool,
    tool: Tool,
    slow: bool,
}

#[derive(Clone, Debug)]
struct Call {
    planned: Planned,
    started_ms: u64,
    ended_ms: u64,
    execution_id: Option<String>,
    answer: Answer,
    /// The first request went to an api replica that died under it; the call was sent
    /// again, with the same Idempotency-Key, to the other one.
    cut_off: bool,
    /// Retryable refusals ("not started") before the answer, each retried with the same key.
    refusals: u32,
    key: String,
}

/// A fault, planned at a number of calls submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill,
    MidCallKill,
    Rabbit,
    Redis,
    LostConfirm,
    ApiKill,
    LostBoardAnswer { verification_fails: bool },
}

#[derive(Clone, Debug)]
enum FaultEvent {
    Kill {
        at_ms: u64,
        /// Timed while a call was at the provider: how many were.
        mid_call: Option<usize>,
    },
    Rabbit {
        from_ms: u64,
        to_ms: u64,
    },
    Redis {
        from_ms: u64,
        to_ms: u64,
    },
    LostConfirm,
    ApiKill {
        at_ms: u64,
        /// Execution ids of the jobs the killed api never got to the broker.
        swallowed: BTreeSet<String>,
    },
    LostBoardAnswer,
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
    /// Refused with a retryable answer (nothing was started, or what was is failed), still
    /// after `REFUSAL_RETRIES` retries with the same key.
    pub refused_retryable: usize,
    /// Callers refused at first whose retry with the same key ran the call.
    pub refused_then_ran: usize,
    /// Callers refused at first whose retry with the same key got the refusal back as a
    /// final failure: told to retry, they never could (a defect).
    pub refused_for_good: usize,
    /// Callers that got neither a result nor a retryable answer.
    pub unanswered: usize,
    pub unanswered_examples: Vec<String>,
    /// Accepted executions that are not final after the settle time (or have no row).
    pub lost: usize,
    /// Rows of any execution (a caller knew its id or not) still queued or running.
    pub stranded: usize,
    /// Failed executions whose row gives no reason.
    pub failed_without_reason: usize,
    /// Executions the caller saw succeed that the provider never performed.
    pub succeeded_unperformed: usize,
    /// Rows failed as "not started" (`queue_unavailable`: the caller was told 503) that
    /// the provider performed anyway.
    pub refused_performed: usize,
    /// Rows failed as "not started".
    pub refused_rows: usize,
    /// Executions the provider performed more than once, outside the documented classes.
    pub duplicated: usize,
    /// Notes performed again, with the same idempotency key, after a worker was killed
    /// while the earlier request was at the provider or just after it answered.
    pub duplicated_in_window: usize,
    // The board (no idempotency keys).
    pub board_calls: usize,
    pub board_succeeded_once: usize,
    /// Board posts whose answer the emulator cut off (or held while a worker was killed)
    /// that then succeeded through the verification read.
    pub board_answer_lost_then_verified: usize,
    pub board_outcome_unknown: usize,
    /// … of which the provider performed more than once (a blind resend).
    pub board_unknown_resent: usize,
    // The slow provider account.
    pub slow_calls: usize,
    pub slow_succeeded: usize,
    pub mid_call_kills: usize,
    /// Calls at the provider when the mid-call kills happened (summed over the kills).
    pub in_flight_at_mid_call_kills: usize,
    // Ambiguous publishes.
    pub lost_confirms: usize,
    // Api kills.
    pub api_kills: usize,
    /// Jobs the killed apis never got to the broker (their rows were inserted).
    pub unpublished_at_kill: usize,
    /// … of those, final afterwards (relayed by a surviving replica).
    pub unpublished_final: usize,
    /// Callers cut off by an api kill that retried with the same Idempotency-Key.
    pub cut_off_retried: usize,
    /// … of whom the retry answered an execution other than the key's (a defect).
    pub cut_off_other_execution: usize,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub p99_during_faults_ms: u64,
    pub calls_during_faults: usize,
    pub kills: usize,
    pub rabbit_away_ms: Option<u64>,
    pub redis_away_ms: Option<u64>,
    /// The broker was the three-node cluster (its fault: the lane leader killed).
    pub cluster: bool,
    /// Worker processes that ended without being killed (e.g. a broker restart).
    pub worker_exits: usize,
    pub elapsed: Duration,
    pub seed: u64,
}

impl Report {
    /// Nothing lost or stranded, nothing done twice outside the documented classes, no
    /// refused call performed, every caller answered, every failure with a reason, every
    /// success performed, every retry after an api kill the same execution.
    pub fn holds(&self) -> bool {
        self.lost == 0
            && self.stranded == 0
            && self.duplicated == 0
            && self.unanswered == 0
            && self.failed_without_reason == 0
            && self.succeeded_unperformed == 0
            && self.refused_performed == 0
            && self.refused_for_good == 0
            && self.board_unknown_resent == 0
            && self.cut_off_other_execution == 0
            && self.unpublished_final == self.unpublished_at_kill
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
        row(
            "refused with a retryable answer (503/429), still after 3 retries with the same key",
            self.refused_retryable.to_string(),
        );
        row("refused at first, then run on a retry with the same key", self.refused_then_ran.to_string());
        row("refused at first, the retry with the same key refused for good", self.refused_for_good.to_string());
        row("callers with neither a result nor a retryable answer", self.unanswered.to_string());
        row("lost (accepted, not final)", self.lost.to_string());
        row("stranded (any row still queued or running)", self.stranded.to_string());
        row("failed without a reason", self.failed_without_reason.to_string());
        row("succeeded but never performed", self.succeeded_unperformed.to_string());
        row(
            &format!("refused as not started (row failed `queue_unavailable`: {}) yet performed", self.refused_rows),
            self.refused_performed.to_string(),
        );
        row("duplicated outside the documented classes", self.duplicated.to_string());
        row(
            "notes (`safe`) sent again with the same key after a worker died with the call at the provider",
            self.duplicated_in_window.to_string(),
        );
        row("board: calls (a provider without idempotency keys)", self.board_calls.to_string());
        row("board: succeeded, performed once", self.board_succeeded_once.to_string());
        row(
            "board: answer cut off after the post, then found by the verification read",
            self.board_answer_lost_then_verified.to_string(),
        );
        row("board: answered `outcome_unknown`", self.board_outcome_unknown.to_string());
        row("board: `outcome_unknown` yet sent again", self.board_unknown_resent.to_string());
        row("slow account (1–3 s): calls / succeeded", format!("{} / {}", self.slow_calls, self.slow_succeeded));
        row(
            "faults: workers SIGKILLed with calls at the provider (calls in flight)",
            format!("{} ({})", self.mid_call_kills, self.in_flight_at_mid_call_kills),
        );
        row("faults: publisher confirms lost (api's broker link cut)", self.lost_confirms.to_string());
        row("faults: api SIGKILLed between insert and publish", self.api_kills.to_string());
        row(
            "api kills: jobs never published / final afterwards (relayed)",
            format!("{} / {}", self.unpublished_at_kill, self.unpublished_final),
        );
        row("api kills: callers cut off, retried with the same key", self.cut_off_retried.to_string());
        row("api kills: … answered with another execution", self.cut_off_other_execution.to_string());
        row("latency p50 / p99, all calls", format!("{} ms / {} ms", self.p50_ms, self.p99_ms));
        row(
            &format!("latency p99 during faults ({} calls)", self.calls_during_faults),
            format!("{} ms", self.p99_during_faults_ms),
        );
        let away = |ms: Option<u64>| ms.map_or("no".to_string(), |ms| format!("away {:.1} s", ms as f64 / 1000.0));
        row("faults: workers SIGKILLed (all)", self.kills.to_string());
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
    // The in-process api reaches the broker through a proxy that can lose a confirm; the
    // workers go direct.
    let cutter = ConfirmCutter::start(first_address(&rabbit.url()), Duration::ZERO).await;
    let stack = Stack::start(Options {
        workers: 0,
        env: vec![
            ("CLAWLINK_AMQP_URL".into(), through(&cutter, &rabbit.url())),
            ("CLAWLINK_REDIS_URL".into(), redis.url()),
            // The run drives each device far past the budget that protects a deployment.
            ("CLAWLINK_DEVICE_RATE_PER_SEC".into(), "1000000".into()),
            ("CLAWLINK_DEVICE_BURST".into(), "1000000".into()),
            ("CLAWLINK_OUTBOX_RELAY_AFTER_MS".into(), RELAY_AFTER_MS.into()),
        ],
        db_prefix: "clawlink_chaos",
        sandbox_rate: Some("per_connection = [{ requests = 1000000, per_seconds = 1, burst = 1000000 }]".into()),
        ..Default::default()
    })
    .await;
    stack.emulator.add_slow_token(SLOW_TOKEN, SLOW_SHORTEST, SLOW_LONGEST);
    let mut infra = Infra { rabbit: &mut rabbit, redis: &mut redis, cutter: &cutter };
    let result = drive(&options, &stack, &mut infra, started).await;
    stack.finish().await;
    drop(redis);
    drop(rabbit);
    result
}

/// The runner's own broker and Redis, and the proxy in front of the in-process api's
/// broker link.
struct Infra<'a> {
    rabbit: &'a mut ChaosBroker,
    redis: &'a mut PrivateRedis,
    cutter: &'a ConfirmCutter,
}

struct Target {
    key: String,
    connection: ConnectionId,
    /// The same user's connection on the slow provider account.
    slow: ConnectionId,
}

/// The api replicas the callers spread over: the in-process one (index 0, never killed)
/// and, with api kills on, an api process (index 1; `None` while it is down).
struct Apis {
    urls: RwLock<Vec<Option<String>>>,
    /// Execute requests in flight to each replica, and sent to each so far.
    in_flight: [AtomicUsize; 2],
    sent: [AtomicUsize; 2],
}

impl Apis {
    /// The replica for call `i`: round robin over the live ones.
    fn pick(&self, i: usize) -> (usize, String) {
        let urls = self.urls.read().unwrap();
        let index = i % urls.len();
        match &urls[index] {
            Some(url) => (index, url.clone()),
            None => (0, urls[0].clone().expect("the in-process api is never down")),
        }
    }

    fn in_process(&self) -> String {
        self.urls.read().unwrap()[0].clone().expect("the in-process api is never down")
    }

    fn set(&self, index: usize, url: Option<String>) {
        self.urls.write().unwrap()[index] = url;
    }
}

/// The second api replica: a child process whose broker link goes through a proxy that
/// can lose a confirm or swallow its publishes.
struct ApiReplica {
    proxy: ConfirmCutter,
    child: Child,
    /// The broker the proxy forwards to.
    broker: String,
    /// Confirms lost through the proxies of earlier processes.
    cuts_before: usize,
    log_dir: PathBuf,
    started: usize,
}

impl ApiReplica {
    async fn start(stack: &Stack, broker: &str, log_dir: &Path, apis: &Apis) -> ApiReplica {
        let proxy = ConfirmCutter::start(first_address(broker), Duration::ZERO).await;
        let (child, url) = spawn_api(stack, &proxy, broker, log_dir, 1).await;
        apis.set(1, Some(url));
        ApiReplica {
            proxy,
            child,
            broker: broker.to_string(),
            cuts_before: 0,
            log_dir: log_dir.to_path_buf(),
            started: 1,
        }
    }

    /// The api dies between its inserts and their publishes: once calls are coming in,
    /// its broker link swallows every publish, and once a few are swallowed (or 5 s
    /// passed) it is SIGKILLed. Then it is started again. Returns the kill's moment and
    /// the jobs that never got out.
    async fn kill_between_insert_and_publish(
        &mut self,
        stack: &Stack,
        apis: &Apis,
        clock: &Clock,
        rng: &mut StdRng,
        more_calls: &dyn Fn() -> bool,
    ) -> anyhow::Result<(u64, BTreeSet<String>)> {
        // Callers may all be waiting on calls a killed worker held: wait for new ones.
        let sent_before = apis.sent[1].load(Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(15);
        while apis.sent[1].load(Ordering::Relaxed) == sent_before && Instant::now() < until && more_calls() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.proxy.stall();
        let until = Instant::now() + Duration::from_secs(5);
        while self.proxy.swallowed().is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A few more calls inserted and stuck with it.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1000))).await;
        let in_flight = apis.in_flight[1].load(Ordering::Relaxed);
        apis.set(1, None);
        let at_ms = clock.ms();
        self.child.start_kill()?; // SIGKILL
        let _ = self.child.wait().await;
        let swallowed = self.proxy.swallowed();
        eprintln!(
            "chaos: api replica SIGKILLed with {} jobs unpublished, {in_flight} calls in flight",
            swallowed.len()
        );
        self.proxy.resume();
        self.cuts_before += self.proxy.cuts();
        // A fresh proxy for the new process, so the ids swallowed are this kill's alone.
        self.proxy = ConfirmCutter::start(first_address(&self.broker), Duration::ZERO).await;
        self.started += 1;
        let (child, url) = spawn_api(stack, &self.proxy, &self.broker, &self.log_dir, self.started).await;
        self.child = child;
        apis.set(1, Some(url));
        Ok((at_ms, swallowed))
    }
}

async fn spawn_api(stack: &Stack, proxy: &ConfirmCutter, broker: &str, log_dir: &Path, n: usize) -> (Child, String) {
    let log = log_dir.join(format!("chaos-api{n}.log"));
    stack.spawn_api_process(&[("CLAWLINK_AMQP_URL", through(proxy, broker).as_str()), ("RUST_LOG", "warn")], &log).await
}

/// The first of a `CLAWLINK_AMQP_URL` list: the node an api's proxy stands in front of.
fn first_address(broker: &str) -> &str {
    broker.split(',').next().unwrap_or(broker)
}

/// An api's `CLAWLINK_AMQP_URL`: the proxy in front of the first node, then the cluster's
/// other nodes direct (none for a single node), so a killed first node leaves the api the
/// survivors to reconnect to.
fn through(proxy: &ConfirmCutter, broker: &str) -> String {
    std::iter::once(proxy.url.as_str()).chain(broker.split(',').skip(1)).collect::<Vec<_>>().join(",")
}

/// The worker processes: a killed or exited one is replaced.
struct Workers {
    list: Vec<(String, Child)>,
    next: usize,
    log_dir: PathBuf,
    broker: String,
}

impl Workers {
    fn spawn(&mut self, stack: &Stack) {
        self.next += 1;
        let id = format!("chaos-w{}", self.next);
        let log = self.log_dir.join(format!("{id}.log"));
        let child =
            stack.spawn_worker_process(&id, &[("RUST_LOG", "info"), ("CLAWLINK_AMQP_URL", self.broker.as_str())], &log);
        self.list.push((id, child));
    }

    /// SIGKILLs a random worker and starts a replacement; returns the kill's moment.
    async fn kill_one(&mut self, stack: &Stack, clock: &Clock, rng: &mut StdRng) -> anyhow::Result<Option<u64>> {
        if self.list.is_empty() {
            return Ok(None);
        }
        let (worker, mut child) = self.list.remove(rng.gen_range(0..self.list.len()));
        let at_ms = clock.ms();
        child.start_kill()?; // SIGKILL
        let _ = child.wait().await;
        eprintln!("chaos: worker {worker} SIGKILLed");
        self.spawn(stack);
        Ok(Some(at_ms))
    }

    /// Replaces the workers that ended by themselves; returns how many did.
    fn replace_exited(&mut self, stack: &Stack) -> usize {
        let mut exited = 0;
        let mut i = 0;
        while i < self.list.len() {
            if let Ok(Some(status)) = self.list[i].1.try_wait() {
                let (worker, _) = self.list.remove(i);
                eprintln!("chaos: worker {worker} exited on its own ({status}); replacing it");
                exited += 1;
                self.spawn(stack);
            } else {
                i += 1;
            }
        }
        exited
    }

    async fn stop(self) {
        for (_, mut child) in self.list {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// The fault plan: each fault at a number of calls submitted.
fn plan_faults(options: &ChaosOptions, rng: &mut StdRng) -> Vec<(usize, Fault)> {
    let n = options.calls;
    let at = |rng: &mut StdRng| rng.gen_range(n / 20..=n * 19 / 20);
    let mut faults: Vec<(usize, Fault)> = Vec::new();
    for _ in 0..options.kills {
        faults.push((at(rng), Fault::Kill));
    }
    if options.restart_rabbitmq {
        faults.push((n * 35 / 100, Fault::Rabbit));
    }
    if options.restart_redis {
        faults.push((n * 65 / 100, Fault::Redis));
    }
    // Early enough that publishes still follow.
    for _ in 0..options.lost_confirms {
        faults.push((rng.gen_range(n / 20..=n * 4 / 5), Fault::LostConfirm));
    }
    // Spread evenly between 10 % and 90 % (jittered), so that calls are still arriving when
    // each happens: a kill needs fresh inserts to strand.
    for k in 0..options.api_kills {
        let share = 0.1 + 0.8 * (k as f64 + 0.5) / options.api_kills as f64;
        let at = (n as f64 * share) as usize + rng.gen_range(0..=n / 40);
        faults.push((at.min(n * 19 / 20), Fault::ApiKill));
    }
    if options.slow_percent > 0 {
        for _ in 0..options.mid_call_kills {
            faults.push((at(rng), Fault::MidCallKill));
        }
    }
    if options.board_percent > 0 {
        for k in 0..options.lost_board_answers {
            let at = rng.gen_range(n / 20..=n * 4 / 5);
            faults.push((at, Fault::LostBoardAnswer { verification_fails: k % 2 == 1 }));
        }
    }
    faults.sort();
    faults
}

async fn drive(
    options: &ChaosOptions,
    stack: &Stack,
    infra: &mut Infra<'_>,
    started: Instant,
) -> anyhow::Result<Report> {
    let broker = infra.rabbit.url();
    let mut targets = Vec::new();
    for u in 0..options.users.max(1) {
        let user = stack.user(&format!("chaos{u}@example.test")).await;
        let mut conn = stack.db.acquire().await?;
        clawlink_common::db::billing::change_plan(&mut conn, user.id, "team", "chaos").await?;
        drop(conn);
        let slow = stack.sandbox_connection(user.id, "slow", SLOW_TOKEN).await;
        for c in 0..options.connections_per_user.max(1) {
            let connection = stack.sandbox_connection(user.id, &format!("c{c}"), SANDBOX_TOKEN).await;
            targets.push(Target { key: user.api_key.clone(), connection, slow });
        }
    }

    let log_dir =
        options.log_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("{}-chaos", stack.namespace)));
    std::fs::create_dir_all(&log_dir)?;
    let mut workers = Workers { list: Vec::new(), next: 0, log_dir: log_dir.clone(), broker: broker.clone() };
    for _ in 0..options.workers.max(1) {
        workers.spawn(stack);
    }
    stack.wait_for_consumers(options.workers.max(1) as u32).await;
    let apis = Arc::new(Apis {
        urls: RwLock::new(vec![Some(stack.api_url.clone())]),
        in_flight: Default::default(),
        sent: Default::default(),
    });
    let mut replica = None;
    if options.api_kills > 0 {
        apis.urls.write().unwrap().push(None);
        replica = Some(ApiReplica::start(stack, &broker, &log_dir, &apis).await);
    }

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
    let plan: Vec<Planned> = (0..n)
        .map(|_| Planned {
            target: rng.gen_range(0..targets.len()),
            is_async: rng.gen_range(0..100) < options.async_percent,
            tool: if rng.gen_range(0..100) < options.board_percent { Tool::Board } else { Tool::Note },
            slow: rng.gen_range(0..100) < options.slow_percent,
        })
        .collect();
    let faults = plan_faults(options, &mut rng);

    let submitted = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let targets = Arc::new(targets);
    let next = Arc::new(AtomicUsize::new(0));
    let plan = Arc::new(plan);
    let poll_deadline = options.settle + Duration::from_secs(60);
    let seed = options.seed;

    let driver = async {
        let lanes = (0..options.concurrency.max(1)).map(|_| {
            let (next, plan, targets, calls, submitted, clock, apis) = (
                next.clone(),
                plan.clone(),
                targets.clone(),
                calls.clone(),
                submitted.clone(),
                clock.clone(),
                apis.clone(),
            );
            async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= plan.len() {
                        break;
                    }
                    submitted.fetch_add(1, Ordering::Relaxed);
                    let call =
                        one_call(stack, &apis, &targets[plan[i].target], plan[i], i, seed, &clock, poll_deadline).await;
                    calls.lock().await.push(call);
                }
            }
        });
        futures_util::future::join_all(lanes).await;
        done.store(true, Ordering::Relaxed);
    };

    // Restarts of the broker and Redis run beside the process faults: a restart takes
    // seconds, and the kills and lost confirms planned meanwhile should not wait for it.
    let (infra_plan, process_plan): (Vec<_>, Vec<_>) =
        faults.into_iter().partition(|(_, f)| matches!(f, Fault::Rabbit | Fault::Redis));
    let Infra { rabbit, redis, cutter } = infra;
    let restarts = async {
        let mut events = Vec::new();
        let mut faults = infra_plan.into_iter().peekable();
        while !done.load(Ordering::Relaxed) {
            while let Some((_, fault)) = faults.next_if(|(at, _)| submitted.load(Ordering::Relaxed) >= *at) {
                events.push(match fault {
                    Fault::Rabbit => broker_fault(rabbit, stack, &clock).await?,
                    _ => restart_redis(redis, &clock).await?,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(events)
    };
    let processes = async {
        let mut events = Vec::new();
        let mut faults = process_plan.into_iter().peekable();
        let mut rng = StdRng::seed_from_u64(options.seed ^ 0x5eed);
        let mut last_progress = Instant::now();
        let more_calls = || submitted.load(Ordering::Relaxed) < n;
        while !done.load(Ordering::Relaxed) {
            if last_progress.elapsed() >= Duration::from_secs(10) {
                last_progress = Instant::now();
                eprintln!("chaos: {}/{n} calls submitted", submitted.load(Ordering::Relaxed));
            }
            for _ in 0..workers.replace_exited(stack) {
                events.push(FaultEvent::Exited);
            }
            while let Some((_, fault)) = faults.next_if(|(at, _)| submitted.load(Ordering::Relaxed) >= *at) {
                let event = match fault {
                    Fault::Kill => workers
                        .kill_one(stack, &clock, &mut rng)
                        .await?
                        .map(|at_ms| FaultEvent::Kill { at_ms, mid_call: None }),
                    Fault::MidCallKill => kill_worker_mid_call(stack, &mut workers, &clock, &mut rng).await?,
                    Fault::LostConfirm => {
                        lose_a_confirm(cutter, replica.as_ref().map(|r| &r.proxy), &mut rng);
                        Some(FaultEvent::LostConfirm)
                    }
                    Fault::ApiKill => match replica.as_mut() {
                        Some(replica) => {
                            let (at_ms, swallowed) = replica
                                .kill_between_insert_and_publish(stack, &apis, &clock, &mut rng, &more_calls)
                                .await?;
                            Some(FaultEvent::ApiKill { at_ms, swallowed })
                        }
                        None => None,
                    },
                    Fault::LostBoardAnswer { verification_fails } => {
                        lose_a_board_answer(stack, verification_fails);
                        Some(FaultEvent::LostBoardAnswer)
                    }
                    Fault::Rabbit | Fault::Redis => None,
                };
                events.extend(event);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(events)
    };
    let chaos = async {
        let (restarts, processes) = tokio::join!(restarts, processes);
        let mut events = restarts?;
        events.extend(processes?);
        anyhow::Ok(events)
    };
    let ((), events) = tokio::join!(driver, chaos);
    let events = events?;

    // Every execution should now become final.
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
    let rows: Vec<Row> =
        sqlx::query_as("SELECT id, status, error_code, idempotency_key FROM executions").fetch_all(&stack.db).await?;
    let stats = stack.emulator.stats();
    let lost_confirms = cutter.cuts() + replica.as_ref().map_or(0, |r| r.cuts_before + r.proxy.cuts());
    eprintln!(
        "chaos: execute requests sent to the in-process api {}, to the api process {}",
        apis.sent[0].load(Ordering::Relaxed),
        apis.sent[1].load(Ordering::Relaxed)
    );
    workers.stop().await;
    if let Some(mut replica) = replica {
        let _ = replica.child.start_kill();
        let _ = replica.child.wait().await;
    }
    if options.log_dir.is_none() {
        let _ = std::fs::remove_dir_all(&log_dir);
    }

    let calls = calls.lock().await.clone();
    let mut report = reconcile(options, calls, &events, &rows, &stats, emulator_offset, started);
    report.lost_confirms += lost_confirms;
    Ok(report)
}

/// One `executions` row: id, status, error code, idempotency key.
type Row = (uuid::Uuid, String, Option<String>, Option<String>);

/// Waits (up to 5 s) until a write is at the provider (the slow account's take 1–3 s),
/// then SIGKILLs a random worker. `None` when no worker was there to kill.
async fn kill_worker_mid_call(
    stack: &Stack,
    workers: &mut Workers,
    clock: &Clock,
    rng: &mut StdRng,
) -> anyhow::Result<Option<FaultEvent>> {
    let at_provider = || {
        let within = SLOW_LONGEST + Duration::from_millis(500);
        [Tool::Note, Tool::Board].iter().map(|t| stack.emulator.in_flight("POST", t.path(), within)).sum::<usize>()
    };
    let until = Instant::now() + Duration::from_secs(5);
    // More than one in flight: a random worker is then likely to hold one.
    while at_provider() < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_flight = at_provider();
    Ok(workers.kill_one(stack, clock, rng).await?.map(|at_ms| FaultEvent::Kill { at_ms, mid_call: Some(in_flight) }))
}

/// RabbitMQ restarted, or with `--cluster` the node leading the lanes SIGKILLed (and
/// started again 5 s later).
async fn broker_fault(rabbit: &mut ChaosBroker, stack: &Stack, clock: &Clock) -> anyhow::Result<FaultEvent> {
    let from_ms = clock.ms();
    let lane = stack.topology().work_queue(clawlink_common::queue::Lane::Interactive);
    if matches!(rabbit, ChaosBroker::Cluster(_)) {
        eprintln!("chaos: SIGKILLing the RabbitMQ node that leads the lanes");
    } else {
        eprintln!("chaos: restarting RabbitMQ");
    }
    rabbit.fault(&lane).await.context("the broker fault")?;
    Ok(FaultEvent::Rabbit { from_ms, to_ms: clock.ms() })
}

async fn restart_redis(redis: &mut PrivateRedis, clock: &Clock) -> anyhow::Result<FaultEvent> {
    let from_ms = clock.ms();
    eprintln!("chaos: restarting Redis");
    redis.restart(Duration::from_millis(500)).await.context("restarting the private Redis")?;
    Ok(FaultEvent::Redis { from_ms, to_ms: clock.ms() })
}

/// Arms the proxy of one api replica (at random) to lose the confirm of its next publish,
/// holding the broker's answer not at all or 0.2–1.5 s: at once, the api may hear of the
/// failure before any worker took the job (the row is failed, the caller told 503); later,
/// a worker has it (the caller is answered as accepted).
fn lose_a_confirm(in_process: &ConfirmCutter, replica: Option<&ConfirmCutter>, rng: &mut StdRng) {
    let cutter = match replica {
        Some(replica) if rng.gen_bool(0.5) => replica,
        _ => in_process,
    };
    let hold = Duration::from_millis(if rng.gen_bool(0.5) { 0 } else { rng.gen_range(200..1500) });
    eprintln!("chaos: the next publish of an api loses its confirm (answer held {} ms)", hold.as_millis());
    cutter.arm_holding(hold);
}

/// The next board post happens but its answer is cut off; with `verification_fails`, the
/// next read of the board (the verification) fails too.
fn lose_a_board_answer(stack: &Stack, verification_fails: bool) {
    let fault = |method: &str, kind| clawlink_emulator::Fault {
        method: Some(method.into()),
        path: Some(Tool::Board.path().into()),
        kind,
        times: 1,
    };
    stack.emulator.add_fault(fault("POST", FaultKind::DropAfter));
    if verification_fails {
        let kind = FaultKind::Status { status: 500, retry_after: None, body: None, headers: Vec::new() };
        stack.emulator.add_fault(fault("GET", kind));
    }
}

/// What an execute or poll request got back: a transport error, or (status, body).
async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
    match request.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            Ok((status, resp.json::<Value>().await.unwrap_or(Value::Null)))
        }
        Err(err) => {
            let cause = std::error::Error::source(&err).map(|c| format!(": {c}")).unwrap_or_default();
            Err(format!("{err}{cause}"))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn one_call(
    stack: &Stack,
    apis: &Apis,
    target: &Target,
    planned: Planned,
    i: usize,
    seed: u64,
    clock: &Clock,
    poll_deadline: Duration,
) -> Call {
    let started_ms = clock.ms();
    let key = format!("chaos-{seed:x}-{i}");
    let (argument, text) = match planned.tool {
        Tool::Note => ("text", format!("chaos note {i}")),
        Tool::Board => ("text", format!("chaos message {seed:x}-{i}")),
    };
    let body = json!({
        "arguments": {argument: text},
        "connectionId": if planned.slow { target.slow.0 } else { target.connection.0 },
        "confirmed": true,
        "async": planned.is_async,
    });
    let mut cut_off = false;
    let refusals = std::cell::Cell::new(0);
    let finish = |execution_id: Option<String>, answer: Answer, cut_off: bool| Call {
        planned,
        started_ms,
        ended_ms: clock.ms(),
        execution_id,
        answer,
        cut_off,
        refusals: refusals.get(),
        key: key.clone(),
    };
    let (mut replica, mut url) = apis.pick(i);
    let (status, body) = loop {
        let (status, answer) = loop {
            apis.sent[replica].fetch_add(1, Ordering::Relaxed);
            apis.in_flight[replica].fetch_add(1, Ordering::Relaxed);
            let sent = send(
                stack
                    .http
                    .post(format!("{url}/api/tools/{}/execute", planned.tool.name()))
                    .header("x-clawlink-api-key", &target.key)
                    .header("idempotency-key", &key)
                    .json(&body),
            )
            .await;
            apis.in_flight[replica].fetch_sub(1, Ordering::Relaxed);
            match sent {
                Ok(answer) => break answer,
                // The replica died under the call (an api kill): the same call, with the same
                // key, to the replica that is up.
                Err(_) if replica != 0 => {
                    cut_off = true;
                    (replica, url) = (0, apis.in_process());
                }
                Err(err) => {
                    let waited = clock.ms() - started_ms;
                    return finish(None, Answer::Unclear(format!("request failed after {waited} ms: {err}")), cut_off);
                }
            }
        };
        // Refused as not started: try again, as the answer says, with the same key (a few
        // times, a second apart).
        let refused = matches!(status, 503 | 429) && answer["error"]["retryable"] == true;
        if refused && answer["executionId"].is_string() && refusals.get() < REFUSAL_RETRIES {
            refusals.set(refusals.get() + 1);
            tokio::time::sleep(Duration::from_secs(1)).await;
            (replica, url) = apis.pick(i + refusals.get() as usize);
            continue;
        }
        break (status, answer);
    };
    let id = body["executionId"].as_str().map(String::from);
    match status {
        200 if body["ok"] == true => finish(id, Answer::Final { succeeded: true, code: None }, cut_off),
        202 => {
            let Some(id) = id else {
                return finish(None, Answer::Unclear(format!("202 without an id: {body}")), cut_off);
            };
            let until = Instant::now() + poll_deadline;
            loop {
                let (replica, url) = apis.pick(i);
                let polled = send(
                    stack
                        .http
                        .get(format!("{url}/api/executions/{id}?waitMs=10000"))
                        .header("x-clawlink-api-key", &target.key),
                )
                .await;
                let polled = match polled {
                    Ok((200..=299, body)) => body,
                    Ok((503 | 429, _)) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        Value::Null
                    }
                    // The replica polled died (an api kill): poll the other one.
                    Err(_) if replica != 0 => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Value::Null
                    }
                    Ok((status, _)) => {
                        return finish(Some(id), Answer::Unclear(format!("polling answered {status}")), cut_off);
                    }
                    Err(err) => return finish(Some(id), Answer::Unclear(format!("polling failed: {err}")), cut_off),
                };
                match polled["status"].as_str() {
                    Some("succeeded") => {
                        return finish(Some(id), Answer::Final { succeeded: true, code: None }, cut_off);
                    }
                    Some("failed") => {
                        let code = polled["error"]["code"].as_str().map(String::from);
                        return finish(Some(id), Answer::Final { succeeded: false, code }, cut_off);
                    }
                    _ if Instant::now() >= until => {
                        return finish(Some(id), Answer::Unclear("no result after polling".into()), cut_off);
                    }
                    _ => {}
                }
            }
        }
        // A final failure carries the execution's meta; a refusal does not.
        _ if id.is_some() && !body["meta"].is_null() => {
            let code = body["error"]["code"].as_str().map(String::from);
            finish(id, Answer::Final { succeeded: false, code }, cut_off)
        }
        503 | 429 if body["error"]["retryable"] == true => finish(id, Answer::Retryable(status), cut_off),
        _ => finish(id, Answer::Unclear(format!("{status}: {body}")), cut_off),
    }
}

/// A provider request of one execution, in the emulator's clock.
#[derive(Clone, Copy, Debug)]
struct Sent {
    at_ms: u64,
    /// When its answer was ready; `None`: it never was (cut off, or still held).
    done_ms: Option<u64>,
    /// The emulator cut its answer off.
    dropped: bool,
}

fn reconcile(
    options: &ChaosOptions,
    calls: Vec<Call>,
    events: &[FaultEvent],
    rows: &[Row],
    stats: &Stats,
    emulator_offset: i64,
    started: Instant,
) -> Report {
    let mut report =
        Report { submitted: calls.len(), seed: options.seed, cluster: options.cluster, ..Default::default() };
    let by_id: HashMap<String, (&str, Option<&str>)> =
        rows.iter().map(|(id, status, code, _)| (id.to_string(), (status.as_str(), code.as_deref()))).collect();
    let by_key: HashMap<&str, String> =
        rows.iter().filter_map(|(id, _, _, key)| key.as_deref().map(|k| (k, id.to_string()))).collect();
    let final_row = |id: &str| matches!(by_id.get(id), Some(("succeeded" | "failed", _)));

    // Every provider write request, by the idempotency key ClawLink sent (the execution id).
    let mut sent: HashMap<&str, Vec<Sent>> = HashMap::new();
    for r in &stats.requests {
        if r.method == "POST"
            && (r.path == Tool::Note.path() || r.path == Tool::Board.path())
            && let Some(key) = r.idempotency_key.as_deref()
        {
            let dropped = r.status == 0 && r.done_ms.is_some();
            sent.entry(key).or_default().push(Sent { at_ms: r.at_ms, done_ms: r.done_ms, dropped });
        }
    }

    // Kill moments and Redis restarts in the emulator's clock.
    let shift = |ms: u64| ms as i64 + emulator_offset;
    let kills: Vec<i64> = events
        .iter()
        .filter_map(|e| match e {
            FaultEvent::Kill { at_ms, .. } => Some(shift(*at_ms)),
            _ => None,
        })
        .collect();
    let redis_restarts: Vec<(i64, i64)> = events
        .iter()
        .filter_map(|e| match e {
            FaultEvent::Redis { from_ms, to_ms } => Some((shift(*from_ms), shift(*to_ms))),
            _ => None,
        })
        .collect();
    let board: BTreeSet<&str> =
        calls.iter().filter(|c| c.planned.tool == Tool::Board).filter_map(|c| c.execution_id.as_deref()).collect();
    for (key, count) in &stats.side_effects {
        if *count < 2 {
            continue;
        }
        let mut times = sent.get(key.as_str()).cloned().unwrap_or_default();
        times.sort_by_key(|s| s.at_ms);
        // In the window: each earlier request was followed, while it was at the provider
        // or within moments of its answer, by the SIGKILL of a worker (the one that sent
        // it and died before recording the answer), and the next request came after that.
        let in_window = times.len() as u32 >= *count
            && times.windows(2).all(|w| {
                let (from, to) = (w[0].at_ms as i64 - IN_FLIGHT_MS as i64, w[0].done_ms.unwrap_or(w[1].at_ms) as i64);
                kills.iter().any(|k| *k >= from && *k <= to + WINDOW_SLACK_MS as i64 && *k <= w[1].at_ms as i64)
            });
        // A board post is verified before any second send, whatever was killed or lost.
        let is_board = board.contains(key.as_str());
        if in_window && !is_board {
            report.duplicated_in_window += 1;
        } else {
            report.duplicated += 1;
            let times: Vec<_> = times.iter().map(|s| (s.at_ms, s.done_ms, s.dropped)).collect();
            eprintln!(
                "chaos: execution {key} performed {count} times outside the documented classes; requests \
                 (at, answered, cut off) {times:?} ms; kills at {kills:?}; Redis away {redis_restarts:?}; \
                 board {is_board}"
            );
        }
    }

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
        if call.refusals > 0 {
            match &call.answer {
                Answer::Final { succeeded: true, .. } => report.refused_then_ran += 1,
                Answer::Final { code, .. } if code.as_deref() == Some("queue_unavailable") => {
                    report.refused_for_good += 1;
                }
                _ => {}
            }
        }
        if call.planned.slow {
            report.slow_calls += 1;
            report.slow_succeeded += usize::from(matches!(call.answer, Answer::Final { succeeded: true, .. }));
        }
        if call.cut_off {
            report.cut_off_retried += 1;
            if call.execution_id.is_some() && call.execution_id.as_ref() != by_key.get(call.key.as_str()) {
                report.cut_off_other_execution += 1;
                eprintln!("chaos: the retry of {} answered {:?}, not the key's execution", call.key, call.execution_id);
            }
        }
        if call.planned.tool == Tool::Board {
            report.board_calls += 1;
        }
        let Some(id) = &call.execution_id else { continue };
        if !matches!(call.answer, Answer::Retryable(_)) {
            report.accepted += 1;
        }
        let performed = stats.performed(id);
        match by_id.get(id) {
            Some(("succeeded", _)) => {
                if performed == 0 {
                    report.succeeded_unperformed += 1;
                }
            }
            Some(("failed", code)) => {
                if code.is_none() {
                    report.failed_without_reason += 1;
                }
            }
            _ if matches!(call.answer, Answer::Retryable(_)) => {}
            _ => report.lost += 1,
        }
        // Told "not started": it must not have run (rows failed as such are checked below).
        if matches!(call.answer, Answer::Retryable(_))
            && performed > 0
            && by_id.get(id).is_none_or(|(_, code)| *code != Some("queue_unavailable"))
        {
            report.refused_performed += 1;
            eprintln!("chaos: execution {id} was answered retryable, yet performed {performed} times");
        }
        if call.planned.tool == Tool::Board {
            match &call.answer {
                Answer::Final { succeeded: true, .. } if performed == 1 => {
                    report.board_succeeded_once += 1;
                    let requests = sent.get(id.as_str()).map_or(&[][..], Vec::as_slice);
                    if requests.iter().any(|s| s.dropped) {
                        report.board_answer_lost_then_verified += 1;
                    }
                }
                Answer::Final { succeeded: false, code } if code.as_deref() == Some("outcome_unknown") => {
                    report.board_outcome_unknown += 1;
                    if performed > 1 {
                        report.board_unknown_resent += 1;
                        eprintln!("chaos: board post {id} answered outcome_unknown was performed {performed} times");
                    }
                }
                _ => {}
            }
        }
    }

    // Rows: none left open; none refused as "not started" and performed.
    for (id, status, code, _) in rows {
        if status == "queued" || status == "running" {
            report.stranded += 1;
            eprintln!("chaos: execution {id} is still {status}");
        }
        if code.as_deref() == Some("queue_unavailable") {
            report.refused_rows += 1;
            let performed = stats.performed(&id.to_string());
            if performed > 0 {
                report.refused_performed += 1;
                eprintln!("chaos: execution {id} was refused as not started, yet performed {performed} times");
            }
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
            FaultEvent::Kill { at_ms, .. } | FaultEvent::ApiKill { at_ms, .. } => {
                Some((*at_ms, at_ms + KILL_RECOVERY_MS))
            }
            FaultEvent::Rabbit { from_ms, to_ms } | FaultEvent::Redis { from_ms, to_ms } => Some((*from_ms, *to_ms)),
            FaultEvent::LostConfirm | FaultEvent::LostBoardAnswer | FaultEvent::Exited => None,
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
            FaultEvent::Kill { mid_call, .. } => {
                report.kills += 1;
                if let Some(in_flight) = mid_call {
                    report.mid_call_kills += 1;
                    report.in_flight_at_mid_call_kills += in_flight;
                }
            }
            FaultEvent::Rabbit { from_ms, to_ms } => report.rabbit_away_ms = Some(to_ms - from_ms),
            FaultEvent::Redis { from_ms, to_ms } => report.redis_away_ms = Some(to_ms - from_ms),
            FaultEvent::ApiKill { swallowed, .. } => {
                report.api_kills += 1;
                report.unpublished_at_kill += swallowed.len();
                report.unpublished_final += swallowed.iter().filter(|id| final_row(id)).count();
            }
            FaultEvent::LostConfirm | FaultEvent::LostBoardAnswer => {}
            FaultEvent::Exited => report.worker_exits += 1,
        }
    }
    report.elapsed = started.elapsed();
    report
}
