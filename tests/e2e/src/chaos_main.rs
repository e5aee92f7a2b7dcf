//! `clawlink-chaos`: drives tool calls through a whole stack while it kills workers and an
//! api, restarts RabbitMQ and Redis, loses publisher confirms and provider answers, then
//! prints one table of what every caller was told and what the provider did (see
//! `clawlink_e2e::chaos`). Run it through `deploy/local/chaos`. It exits non-zero when
//! anything accepted was lost or stranded, a refused call was performed, something was
//! performed twice outside the documented classes, or a caller was left without an answer.

use clawlink_e2e::chaos::{ChaosOptions, run};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: clawlink-chaos [options]

Starts its own RabbitMQ node and Redis server (never the shared ones), a fresh database,
two api replicas, worker processes and the provider emulator; makes the calls while it
SIGKILLs workers (at random and while calls are at a slow provider), SIGKILLs an api
between its inserts and their publishes, loses publisher confirms and board answers,
restarts RabbitMQ once and Redis once; prints one markdown table on stdout.

options:
  --calls N            tool calls (default 300)
  --concurrency N      calls in flight, each until its result (default 24)
  --users N            users (default 3), each with --connections N connections (default 2)
  --workers N          worker processes alive at a time (default 3)
  --kills N            worker SIGKILLs at random moments (default calls/1000, 3 to 20)
  --async-percent P    share of async calls (default 50)
  --no-rabbitmq        do not restart RabbitMQ
  --cluster            run RabbitMQ as a private 3-node cluster; instead of restarting the
                       node, SIGKILL the one leading the lanes (and start it again 5 s later)
  --no-redis           do not restart Redis
  --lost-confirms N    publisher confirms lost, at random moments (default calls/1000, 3 to 20)
  --api-kills N        api SIGKILLs between insert and publish (default calls/4000, 2 to 5;
                       0: one api, in-process)
  --slow-percent P     share of calls on a slow provider account, 1-3 s each (default 5)
  --mid-call-kills N   worker SIGKILLs while calls are at the slow provider (default
                       calls/2000, 2 to 10)
  --board-percent P    share of calls posting to the board, a provider without
                       idempotency keys (default 10)
  --lost-board-answers N  board answers cut off after the post; every other one with a
                       failing verification read (default calls/1000, 4 to 20)
  --settle-secs N      how long executions may take to become final after the last call (default 60)
  --seed N             the random seed (printed with the table)
  --log-dir DIR        keep the workers' logs there
  -h, --help           this help
";

fn parse(args: &[String]) -> Result<Option<ChaosOptions>, String> {
    let mut o = ChaosOptions::default();
    let (mut kills, mut lost_confirms, mut api_kills, mut mid_call_kills, mut lost_board_answers) =
        (None, None, None, None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        let number =
            |v: String| v.trim().parse::<u64>().map_err(|_| format!("{flag}: expected a whole number, got {v:?}"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--calls" => o.calls = number(value()?)?.max(1) as usize,
            "--concurrency" => o.concurrency = number(value()?)?.max(1) as usize,
            "--users" => o.users = number(value()?)?.max(1) as usize,
            "--connections" => o.connections_per_user = number(value()?)?.max(1) as usize,
            "--workers" => o.workers = number(value()?)?.max(1) as usize,
            "--kills" => kills = Some(number(value()?)? as usize),
            "--async-percent" => o.async_percent = number(value()?)?.min(100) as u32,
            "--no-rabbitmq" => o.restart_rabbitmq = false,
            "--no-redis" => o.restart_redis = false,
            "--cluster" => o.cluster = true,
            "--lost-confirms" => lost_confirms = Some(number(value()?)? as usize),
            "--api-kills" => api_kills = Some(number(value()?)? as usize),
            "--slow-percent" => o.slow_percent = number(value()?)?.min(100) as u32,
            "--mid-call-kills" => mid_call_kills = Some(number(value()?)? as usize),
            "--board-percent" => o.board_percent = number(value()?)?.min(100) as u32,
            "--lost-board-answers" => lost_board_answers = Some(number(value()?)? as usize),
            "--settle-secs" => o.settle = Duration::from_secs(number(value()?)?),
            "--seed" => o.seed = number(value()?)?,
            "--log-dir" => o.log_dir = Some(value()?.into()),
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    o.kills = kills.unwrap_or((o.calls / 1000).clamp(3, 20));
    o.lost_confirms = lost_confirms.unwrap_or((o.calls / 1000).clamp(3, 20));
    o.api_kills = api_kills.unwrap_or((o.calls / 4000).clamp(2, 5));
    o.mid_call_kills = mid_call_kills.unwrap_or((o.calls / 2000).clamp(2, 10));
    o.lost_board_answers = lost_board_answers.unwrap_or((o.calls / 1000).clamp(4, 20));
    Ok(Some(o))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("clawlink-chaos: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("clawlink-chaos: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "clawlink-chaos: {} calls, concurrency {}, {} workers, {} kills (+{} mid-call), {} api kills, \
         {} lost confirms, {} lost board answers, {}% slow, {}% board, seed {}",
        options.calls,
        options.concurrency,
        options.workers,
        options.kills,
        options.mid_call_kills,
        options.api_kills,
        options.lost_confirms,
        options.lost_board_answers,
        options.slow_percent,
        options.board_percent,
        options.seed
    );
    let report = runtime.block_on(async {
        tokio::select! {
            report = run(options) => Some(report),
            // Dropping the run stops the stack, the workers, the broker and Redis it started.
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    match report {
        None => {
            eprintln!("clawlink-chaos: interrupted; everything it started is stopped");
            ExitCode::from(130)
        }
        Some(Err(err)) => {
            eprintln!("clawlink-chaos: {err:#}");
            ExitCode::FAILURE
        }
        Some(Ok(report)) => {
            print!("{}", report.table());
            println!("\nseed {}", report.seed);
            for example in &report.unanswered_examples {
                eprintln!("clawlink-chaos: a caller without an answer: {example}");
            }
            if report.holds() {
                ExitCode::SUCCESS
            } else {
                eprintln!("clawlink-chaos: the promises did not hold (see the table)");
                ExitCode::FAILURE
            }
        }
    }
}
