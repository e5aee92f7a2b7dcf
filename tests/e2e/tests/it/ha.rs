//! High availability: a list of broker addresses, a three-node RabbitMQ cluster whose lane
//! leader is killed under load, a Postgres restart under load, a Redis replica promoted.
//! Every fault lands on a private server of the test's own (`chaos_infra`): the shared
//! ones serve everyone else.

use clawlink_common::queue::Lane;
use clawlink_e2e::chaos_infra::{MovableAddress, PrivatePostgres, PrivateRabbitCluster, PrivateRedis};
use clawlink_e2e::{Options, Stack};
use clawlink_emulator::{Fault, FaultKind};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

fn note(text: &str, is_async: bool) -> Value {
    json!({"arguments": {"text": text}, "confirmed": true, "async": is_async})
}

fn shared_amqp_url() -> String {
    std::env::var("CLAWLINK_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A port on loopback that nothing listens on (bound, then released).
fn refusing_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `CLAWLINK_AMQP_URL` is a list whose first address refuses connections: the api and a
/// worker process connect to the next one, a call runs, and the worker's log names the
/// refusing address by host and port, never with its password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_list_whose_first_address_refuses_connects_to_the_next() {
    let dead = format!("amqp://guest:pw-of-the-dead-node@127.0.0.1:{}/%2f", refusing_port());
    let list = format!("{dead},{}", shared_amqp_url());
    let stack =
        Stack::start(Options { workers: 0, env: vec![("CLAWLINK_AMQP_URL".into(), list)], ..Default::default() }).await;
    let log = std::env::temp_dir().join(format!("{}-list-worker.log", stack.namespace));
    let mut worker = stack.spawn_worker_process("list", &[], &log);
    stack.wait_for_consumers(1).await;
    let (user, _) = stack.sandbox_user("broker-list@example.test").await;

    let (status, body) = stack.execute(&user.api_key, "sandbox_create_note", note("via the second", false), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    let id = body["executionId"].as_str().unwrap();
    assert_eq!(stack.emulator.stats().performed(id), 1);

    worker.kill().await.unwrap();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let port = dead.rsplit_once(':').unwrap().1.trim_end_matches("/%2f");
    assert!(logged.contains(&format!("127.0.0.1:{port}")), "the refusing address is named:\n{logged}");
    assert!(logged.contains("broker address failed; trying the next"), "{logged}");
    assert!(!logged.contains("pw-of-the-dead-node"), "a broker password reached the log:\n{logged}");
    stack.finish().await;
}

/// Every note creation is at the provider for `ms`, so calls are in flight at any moment.
fn slow_notes(ms: u64) -> Fault {
    Fault { method: Some("POST".into()), path: Some("/notes".into()), kind: FaultKind::Delay { ms }, times: 100_000 }
}

/// One caller's answer: when it was submitted (since the kill, negative before), status,
/// body, how long it took.
struct Answer {
    submitted_ms: i64,
    status: u16,
    body: Value,
    retry_after: Option<String>,
    took: Duration,
}

/// `POST /api/tools/sandbox_create_note/execute` on the api at `api` → (status, body).
async fn execute_at(stack: &Stack, api: &str, key: &str, body: Value) -> (u16, Value, Option<String>) {
    let resp = stack
        .http
        .post(format!("{api}/api/tools/sandbox_create_note/execute"))
        .header("x-clawlink-api-key", key)
        .json(&body)
        .send()
        .await
        .expect("execute request");
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(String::from);
    (status, resp.json().await.unwrap_or(Value::Null), retry_after)
}

/// Callers keep making calls (half sync, half async) to the api at `api` until `stop`;
/// each answer is kept. A refused caller waits 200 ms before its next call.
async fn load(
    stack: &Stack,
    api: &str,
    key: &str,
    callers: usize,
    kill: &std::sync::Mutex<Option<Instant>>,
    stop: &AtomicBool,
) -> Vec<Answer> {
    let lanes = (0..callers).map(|c| async move {
        let mut answers = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let killed = *kill.lock().unwrap();
            let submitted_ms = killed.map_or(-1, |k| started.duration_since(k).as_millis() as i64);
            let (status, body, retry_after) = execute_at(stack, api, key, note(&format!("c{c}-{i}"), i % 2 == 1)).await;
            answers.push(Answer { submitted_ms, status, body, retry_after, took: started.elapsed() });
            if status == 503 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            i += 1;
        }
        answers
    });
    futures_util::future::join_all(lanes).await.into_iter().flatten().collect()
}

/// Accepted ids and refused count of `answers`; panics on an answer that is neither
/// accepted nor a retryable refusal.
async fn sort_answers(stack: &Stack, answers: &[Answer]) -> (Vec<String>, usize) {
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for a in answers {
        let id = a.body["executionId"].as_str();
        let accepted_id = || id.unwrap_or_else(|| panic!("no execution id: {} {}", a.status, a.body)).to_string();
        match a.status {
            200 => {
                assert_eq!(a.body["ok"], true, "{}", a.body);
                accepted.push(accepted_id());
            }
            202 => accepted.push(accepted_id()),
            503 => {
                assert_eq!(a.body["error"]["retryable"], true, "{}", a.body);
                assert!(a.retry_after.is_some(), "a 503 says when to retry: {}", a.body);
                // Refused before an execution existed (the database was away), or with
                // one that was failed before any worker took it.
                if let Some(id) = id {
                    assert_eq!(stack.execution_status(id).await, "failed", "a refused call is not left to run");
                }
                refused += 1;
            }
            other => panic!("a caller got {other}: {}", a.body),
        }
    }
    (accepted, refused)
}

/// The proof on a three-node cluster: the lanes are quorum queues with a member on every
/// node; the api (in this process) and two worker processes are given the three
/// addresses and all connect to the first node, which also leads the lanes (quorum
/// queues are led by the node they were declared on). Under load, that node is
/// SIGKILLed. The survivors elect new leaders, the api and the workers reconnect to them,
/// every accepted call runs exactly once, every refused call is a retryable 503 and
/// never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_that_leads_the_lanes_under_load_loses_nothing() {
    let began = Instant::now();
    let mut cluster = PrivateRabbitCluster::start(3).await.expect("a three-node rabbitmq cluster");
    eprintln!("ha: cluster of 3 up in {:?}", began.elapsed());
    let stack = Stack::start(Options {
        workers: 0,
        env: vec![
            ("CLAWLINK_AMQP_URL".into(), cluster.urls()),
            // Callers and pollers drive one device far past the budget that protects a
            // deployment.
            ("CLAWLINK_DEVICE_RATE_PER_SEC".into(), "1000000".into()),
            ("CLAWLINK_DEVICE_BURST".into(), "1000000".into()),
        ],
        ..Default::default()
    })
    .await;
    let api_log = std::env::temp_dir().join(format!("{}-ha-api.log", stack.namespace));
    let (mut api, api_url) =
        stack.spawn_api_process(&[("RUST_LOG", "info"), ("CLAWLINK_LOG_FORMAT", "json")], &api_log).await;
    let lane = stack.topology().work_queue(Lane::Interactive);
    let bulk = stack.topology().work_queue(Lane::Bulk);
    for queue in [&lane, &bulk] {
        let members = cluster.members_of(queue).await.unwrap();
        assert_eq!(members.len(), 3, "{queue} is replicated on every node: {members:?}");
    }
    let logs: Vec<_> =
        (1..=2).map(|i| std::env::temp_dir().join(format!("{}-ha-worker{i}.log", stack.namespace))).collect();
    let mut workers: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| {
            stack.spawn_worker_process(
                &format!("ha{}", i + 1),
                &[("RUST_LOG", "info"), ("CLAWLINK_LOG_FORMAT", "json")],
                log,
            )
        })
        .collect();
    stack.wait_for_consumers(2).await;
    let leader = cluster.leader_of(&lane).await.unwrap();
    assert_eq!(cluster.leader_of(&bulk).await.unwrap(), leader, "both lanes are led by the node that declared them");
    let (user, _) = stack.sandbox_user("cluster-kill@example.test").await;
    stack.emulator.add_fault(slow_notes(300));

    let kill = std::sync::Mutex::new(None);
    let stop = AtomicBool::new(false);
    let fault = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        *kill.lock().unwrap() = Some(Instant::now());
        cluster.nodes[leader].kill().await.expect("SIGKILL the lane leader");
        eprintln!("ha: node {} (lane leader) SIGKILLed", cluster.nodes[leader].node());
        tokio::time::sleep(Duration::from_secs(8)).await;
        stop.store(true, Ordering::Relaxed);
    };
    let (answers, ()) = tokio::join!(load(&stack, &api_url, &user.api_key, 6, &kill, &stop), fault);

    let (accepted, refused) = sort_answers(&stack, &answers).await;
    let after: Vec<&Answer> = answers.iter().filter(|a| a.submitted_ms >= 0).collect();
    let first_ok = after
        .iter()
        .filter(|a| a.status == 200 || a.status == 202)
        .map(|a| a.submitted_ms as u64 + a.took.as_millis() as u64)
        .min()
        .expect("no call was accepted after the leader was killed: the api did not reconnect");
    let slowest = answers.iter().map(|a| a.took).max().unwrap();
    eprintln!(
        "ha: {} calls, {} accepted, {refused} refused (retryable 503), {} submitted after the kill; \
         first accepted answer {first_ok} ms after the kill; slowest answer {slowest:?}",
        answers.len(),
        accepted.len(),
        after.len()
    );
    let mut refused_by_second = std::collections::BTreeMap::new();
    let mut refusals = std::collections::BTreeSet::new();
    for a in answers.iter().filter(|a| a.status == 503) {
        *refused_by_second.entry(a.submitted_ms.div_euclid(1000)).or_insert(0) += 1;
        refusals.insert(a.body["error"]["message"].as_str().unwrap_or_default().to_string());
    }
    eprintln!("ha: refused by second since the kill {refused_by_second:?}: {refusals:?}");
    assert!(slowest < Duration::from_secs(30), "a caller waited {slowest:?}");

    // The workers consume again, on the survivors, under a new leader.
    stack.wait_for_consumers(2).await;
    let new_leader = cluster.leader_of(&lane).await.unwrap();
    assert_ne!(new_leader, leader, "a survivor leads the lane");
    for id in &accepted {
        let polled = stack.final_state(&user.api_key, id).await;
        assert_eq!(polled["status"], "succeeded", "{polled}");
    }
    stack.wait_for_rows_final().await;
    let stats = stack.emulator.stats();
    for id in &accepted {
        assert_eq!(stats.performed(id), 1, "execution {id} was performed {} times", stats.performed(id));
    }
    assert_eq!(stats.count("POST", "/notes"), accepted.len(), "refused calls never reach the provider");

    // The api and both workers replaced their connection with one to a survivor.
    let survivors: Vec<String> =
        (0..3).filter(|i| *i != leader).map(|i| format!("127.0.0.1:{}", cluster.nodes[i].port())).collect();
    let mut processes: Vec<(&str, &mut tokio::process::Child, &std::path::Path)> =
        vec![("api", &mut api, api_log.as_path())];
    for (worker, log) in workers.iter_mut().zip(&logs) {
        processes.push(("worker", worker, log.as_path()));
    }
    for (what, child, log) in processes {
        let logged = std::fs::read_to_string(log).unwrap_or_default();
        assert!(child.try_wait().unwrap().is_none(), "the {what} is still running:\n{logged}");
        let events: Vec<Value> = logged.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let replaced = events
            .iter()
            .find(|e| e["message"] == "broker connection replaced")
            .unwrap_or_else(|| panic!("the {what} did not replace its broker connection:\n{logged}"));
        let address = replaced["address"].as_str().unwrap_or_default();
        assert!(
            survivors.iter().any(|s| s == address),
            "the {what} reconnected to {address}, not a survivor {survivors:?}"
        );
        eprintln!("ha: {what} reconnected to {address} after {} ms", replaced["after_ms"]);
        let failed = events.iter().filter(|e| e["message"] == "publish failed").count();
        if failed > 0 {
            eprintln!(
                "ha: {what}: {failed} publishes failed, e.g. {}",
                events.iter().find(|e| e["message"] == "publish failed").unwrap()["error"]
            );
        }
        child.kill().await.unwrap();
        let _ = std::fs::remove_file(log);
    }
    stack.finish().await;
    eprintln!("ha: whole test {:?}", began.elapsed());
}

/// Postgres restarted (`pg_ctl restart -m fast`: every session cut, then a few seconds
/// without a server) while six callers make calls through an api process and two worker
/// processes. Each call is accepted and runs exactly once, or is refused with a retryable
/// 503 (with `Retry-After`, without any database text) and never runs; never a 500. After
/// the restart the api accepts calls again and both processes are still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_loses_nothing() {
    let began = Instant::now();
    let mut pg = PrivatePostgres::start().await.expect("a private postgres");
    let stack = Stack::start(Options {
        workers: 0,
        database_admin_url: Some(pg.admin_url()),
        env: vec![
            ("CLAWLINK_DEVICE_RATE_PER_SEC".into(), "1000000".into()),
            ("CLAWLINK_DEVICE_BURST".into(), "1000000".into()),
        ],
        ..Default::default()
    })
    .await;
    let json_logs = [("RUST_LOG", "info"), ("CLAWLINK_LOG_FORMAT", "json")];
    let api_log = std::env::temp_dir().join(format!("{}-pg-api.log", stack.namespace));
    let (mut api, api_url) = stack.spawn_api_process(&json_logs, &api_log).await;
    let logs: Vec<_> =
        (1..=2).map(|i| std::env::temp_dir().join(format!("{}-pg-worker{i}.log", stack.namespace))).collect();
    let mut workers: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| stack.spawn_worker_process(&format!("pg{}", i + 1), &json_logs, log))
        .collect();
    stack.wait_for_consumers(2).await;
    let (user, _) = stack.sandbox_user("pg-restart@example.test").await;
    stack.emulator.add_fault(slow_notes(300));

    let restart_at = std::sync::Mutex::new(None);
    let stop = AtomicBool::new(false);
    let fault = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        *restart_at.lock().unwrap() = Some(Instant::now());
        let took = pg.restart("fast").await.expect("pg_ctl restart");
        eprintln!("ha: postgres restarted (fast) in {took:?}");
        tokio::time::sleep(Duration::from_secs(6)).await;
        stop.store(true, Ordering::Relaxed);
        took
    };
    let (answers, away) = tokio::join!(load(&stack, &api_url, &user.api_key, 6, &restart_at, &stop), fault);

    // The harness's own pool held sessions the restart ended: let it find and drop them.
    for _ in 0..50 {
        let checks = futures_util::future::join_all((0..8).map(|_| sqlx::query("SELECT 1").execute(&stack.db))).await;
        if checks.iter().all(Result::is_ok) {
            break;
        }
    }
    for a in answers.iter().filter(|a| a.status == 503) {
        let message = a.body["error"]["message"].as_str().unwrap_or_default().to_lowercase();
        for internal in ["sqlx", "sqlstate", "terminating", "postgres", "connection refused", "pool"] {
            assert!(!message.contains(internal), "a 503 shows an internal detail ({internal}): {}", a.body);
        }
    }
    let (accepted, refused) = sort_answers(&stack, &answers).await;
    let during = answers.iter().filter(|a| a.submitted_ms >= 0 && (a.submitted_ms as u128) < away.as_millis()).count();
    let after_ok = answers
        .iter()
        .filter(|a| a.submitted_ms >= 0 && (a.status == 200 || a.status == 202))
        .map(|a| a.submitted_ms as u128 + a.took.as_millis())
        .filter(|end| *end > away.as_millis())
        .count();
    let slowest = answers.iter().map(|a| a.took).max().unwrap();
    let mut refusals = std::collections::BTreeSet::new();
    for a in answers.iter().filter(|a| a.status == 503) {
        refusals.insert(a.body["error"]["message"].as_str().unwrap_or_default().to_string());
    }
    eprintln!(
        "ha: {} calls, {} accepted, {refused} refused (retryable 503: {refusals:?}), {during} submitted while \
         postgres restarted, {after_ok} accepted after; slowest answer {slowest:?}",
        answers.len(),
        accepted.len(),
    );
    assert!(after_ok > 0, "the api accepts calls again after the restart");
    assert!(slowest < Duration::from_secs(30), "a caller waited {slowest:?}");

    for id in &accepted {
        let polled = stack.final_state(&user.api_key, id).await;
        assert_eq!(polled["status"], "succeeded", "{polled}");
    }
    stack.wait_for_rows_final().await;
    let stats = stack.emulator.stats();
    for id in &accepted {
        assert_eq!(stats.performed(id), 1, "execution {id} was performed {} times", stats.performed(id));
    }
    assert_eq!(stats.count("POST", "/notes"), accepted.len(), "refused calls never reach the provider");

    let mut processes: Vec<(&str, &mut tokio::process::Child, &std::path::Path)> =
        vec![("api", &mut api, api_log.as_path())];
    for (worker, log) in workers.iter_mut().zip(&logs) {
        processes.push(("worker", worker, log.as_path()));
    }
    for (what, child, log) in processes {
        let logged = std::fs::read_to_string(log).unwrap_or_default();
        assert!(child.try_wait().unwrap().is_none(), "the {what} is still running:\n{logged}");
        let events: Vec<Value> = logged.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let away: Vec<&Value> = events.iter().filter(|e| e["message"] == "database unavailable").collect();
        if let Some(e) = away.first() {
            eprintln!("ha: {what}: {} database errors answered as unavailable, e.g. {}", away.len(), e["error"]);
        }
        child.kill().await.unwrap();
        let _ = std::fs::remove_file(log);
    }
    stack.finish().await;
    drop(pg);
    eprintln!("ha: whole test {:?}", began.elapsed());
}

/// Redis with a replica: the api and a worker know one address (a `MovableAddress`, as a
/// Kubernetes Service or a virtual IP is), which leads to the primary. Four calls finish;
/// then 16 calls (8 sync, 8 async) are at the provider when the primary is SIGKILLed, the
/// replica promoted (`REPLICAOF NO ONE`) and the address moved to it. The results stored
/// before the loss were replicated and are still read; every caller in flight gets its
/// result or a 202 whose poll gives it; each note is created once; a call after the
/// failover runs. Leases and pacing budgets written in the last moments before the loss
/// may be gone (asynchronous replication): RELIABILITY.md says what that costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_primary_lost_and_its_replica_promoted_loses_no_result() {
    let mut primary = PrivateRedis::start().await.expect("private redis primary");
    let mut replica = PrivateRedis::start_replica_of(&primary).await.expect("private redis replica");
    let address = MovableAddress::start(primary.port()).await.unwrap();
    let stack = Stack::start(Options {
        workers: 1,
        env: vec![("CLAWLINK_REDIS_URL".into(), format!("redis://127.0.0.1:{}/", address.port()))],
        ..Default::default()
    })
    .await;
    let (user, _) = stack.sandbox_user("redis-failover@example.test").await;

    let mut before = Vec::new();
    for i in 0..4 {
        let (status, body) =
            stack.execute(&user.api_key, "sandbox_create_note", note(&format!("b{i}"), false), &[]).await;
        assert_eq!(status, 200, "{body}");
        before.push(body["executionId"].as_str().unwrap().to_string());
    }
    let result_keys: Vec<String> = before.iter().map(|id| format!("{}:result:{id}", stack.namespace)).collect();
    // Replication is asynchronous: give it its moment before the primary goes.
    tokio::time::sleep(Duration::from_millis(200)).await;

    stack.emulator.add_fault(slow_notes(1500));
    let calls = futures_util::future::join_all((0..16).map(|i| {
        let (stack, key) = (&stack, &user.api_key);
        async move {
            let started = Instant::now();
            let (status, body) =
                stack.execute(key, "sandbox_create_note", note(&format!("n{i}"), i % 2 == 1), &[]).await;
            (i % 2 == 1, status, body, started.elapsed())
        }
    }));
    let failover = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let began = Instant::now();
        primary.kill().await;
        replica.promote().await.expect("REPLICAOF NO ONE");
        address.point_at(replica.port());
        began.elapsed()
    };
    let (answers, took) = tokio::join!(calls, failover);
    eprintln!("ha: redis primary killed, replica promoted and the address moved in {took:?}");
    let survived = replica.count_existing(&result_keys).await.unwrap();
    eprintln!("ha: {survived} of {} results stored before the loss are on the promoted replica", result_keys.len());
    assert_eq!(survived, result_keys.len(), "results replicated before the loss survive it");

    let mut ids = Vec::new();
    let mut deferred = 0;
    for (is_async, status, body, took) in answers {
        let id = body["executionId"].as_str().unwrap_or_else(|| panic!("no execution id: {status} {body}")).to_string();
        if is_async {
            assert_eq!(status, 202, "{body}");
        } else {
            assert!(status == 200 || status == 202, "sync caller got {status}: {body}");
            if status == 200 {
                assert_eq!(body["ok"], true, "{body}");
            } else {
                deferred += 1;
            }
            assert!(took < Duration::from_secs(20), "a sync caller waited {took:?}");
        }
        let polled = stack.final_state(&user.api_key, &id).await;
        assert_eq!(polled["status"], "succeeded", "{polled}");
        ids.push(id);
    }
    eprintln!("ha: {} of 8 sync callers got a 202 and then the result by polling", deferred);
    for id in &before {
        let polled = stack.final_state(&user.api_key, id).await;
        assert_eq!(polled["status"], "succeeded", "{polled}");
        assert!(polled["data"].is_object(), "the stored result is still read: {polled}");
    }
    let (status, body) = stack.execute(&user.api_key, "sandbox_create_note", note("after", false), &[]).await;
    assert_eq!(status, 200, "a call after the failover: {body}");
    stack.wait_for_rows_final().await;
    let stats = stack.emulator.stats();
    for id in &ids {
        assert_eq!(stats.performed(id), 1, "execution {id} was performed {} times", stats.performed(id));
    }
    assert_eq!(stats.count("POST", "/notes"), 4 + 16 + 1);
    stack.finish().await;
}
