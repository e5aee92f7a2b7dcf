//! `clawlink-chaos`: drives tool calls through a whole stack while it kills workers and
//! restarts RabbitMQ and Redis, then prints one table of what every caller was told and
//! what the provider did (see `clawlink_e2e::chaos`). Run it through `deploy/local/chaos`.
//! It exits non-zero when anything accepted was lost, performed twice outside the
//! documented window, or left its caller without an answer.

use clawlink_e2e::chaos::{ChaosOptions, run};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: clawlink-chaos [options]

Starts its own RabbitMQ node and Redis server (never the shared ones), a fresh database,
the api, worker processes and the provider emulator; makes the calls while it SIGKILLs
workers, restarts RabbitMQ once and Redis once; prints one markdown table on stdout.

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
  --settle-secs N      how long executions may take to become final after the last call (default 60)
  --seed N             the random seed (printed with the table)
  --log-dir DIR        keep the workers' logs there
  -h, --help           this help
";

fn parse(args: &[String]) -> Result<Option<ChaosOptions>, String> {
    let mut o = ChaosOptions::default();
    let mut kills = None;
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
            "--settle-secs" => o.settle = Duration::from_secs(number(value()?)?),
            "--seed" => o.seed = number(value()?)?,
            "--log-dir" => o.log_dir = Some(value()?.into()),
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }
    o.kills = kills.unwrap_or((o.calls / 1000).clamp(3, 20));
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
        "clawlink-chaos: {} calls, concurrency {}, {} workers, {} kills, seed {}",
        options.calls, options.concurrency, options.workers, options.kills, options.seed
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
