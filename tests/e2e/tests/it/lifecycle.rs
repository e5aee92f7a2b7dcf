//! The life of a process, with real processes: request ids from the HTTP answer to the
//! JSON log lines, and SIGTERM — a worker finishes what it started and leaves the rest
//! in the queue; the api answers the call in flight and refuses new connections.

use clawlink_common::queue::Lane;
use clawlink_e2e::{Options, Stack};
use clawlink_emulator::{Fault, FaultKind};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the process is running");
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

/// The JSON lines of a log file (other lines are skipped).
fn json_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// Waits (bounded) until the log has a JSON line that `matches`, and returns it.
async fn logged(log: &Path, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        if let Some(line) = json_lines(log).into_iter().find(|l| matches(l)) {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no log line {what} in {}:\n{}", log.display(), std::fs::read_to_string(log).unwrap_or_default());
}

/// The slow provider: the next `times` note creations wait `ms` before being performed.
fn slow_notes(stack: &Stack, ms: u64, times: u32) {
    stack.emulator.add_fault(Fault {
        method: Some("POST".into()),
        path: Some("/notes".into()),
        kind: FaultKind::Delay { ms },
        times,
    });
}

/// Note creations the emulator has received and not answered yet.
fn notes_in_flight(stack: &Stack) -> usize {
    stack.emulator.stats().requests.iter().filter(|r| r.method == "POST" && r.path == "/notes" && r.status == 0).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_an_id_in_its_answer_and_on_its_json_log_lines() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("request-id@example.test").await;
    let api_log = std::env::temp_dir().join(format!("{}-request-id-api.log", stack.namespace));
    let worker_log = std::env::temp_dir().join(format!("{}-request-id-worker.log", stack.namespace));
    let json_logs = [("CLAWLINK_LOG_FORMAT", "json"), ("RUST_LOG", "info")];
    let (mut api, api_url) = stack.spawn_api_process(&json_logs, &api_log).await;
    let mut worker = stack.spawn_worker_process("traced", &json_logs, &worker_log);
    stack.wait_for_consumers(1).await;

    // The caller's id is kept, answered in the header, and on the request's log lines
    // together with the execution id.
    let resp = stack
        .http
        .post(format!("{api_url}/api/tools/sandbox_echo/execute"))
        .header("x-clawlink-api-key", &user.api_key)
        .header("x-request-id", "it-exec-0001")
        .json(&json!({"arguments": {"message": "traced"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "it-exec-0001");
    let body: Value = resp.json().await.unwrap();
    let execution_id = body["executionId"].as_str().expect("an execution id").to_string();
    let line = logged(&api_log, "for request it-exec-0001", |l| {
        l["span"]["request_id"] == "it-exec-0001" && l["message"] == "request"
    })
    .await;
    assert_eq!(line["span"]["execution_id"], execution_id.as_str(), "{line}");
    assert_eq!(line["span"]["route"], "/api/tools/{name}/execute", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    // The worker's lines for that call name the execution.
    let done = logged(&worker_log, "for the execution", |l| {
        l["message"] == "execution finished" && l["span"]["execution_id"] == execution_id.as_str()
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // An id that is not sane is replaced; no id gets a fresh one. Both are logged.
    for sent in [Some("not sane; at all"), None] {
        let mut req = stack.http.get(format!("{api_url}/api/agent/whoami")).header("x-clawlink-api-key", &user.api_key);
        if let Some(id) = sent {
            req = req.header("x-request-id", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id:?} is a new id");
        logged(&api_log, "for the whoami", |l| l["span"]["request_id"] == id.as_str()).await;
    }
    let logged_text = std::fs::read_to_string(&api_log).unwrap();
    assert!(!logged_text.contains("not sane"), "a refused id is not logged");
    assert!(!logged_text.contains(&user.api_key), "the device credential leaked into the api log");

    // The web front does the same.
    let resp =
        stack.http.get(format!("{}/signin", stack.web_url)).header("x-request-id", "it-web-1").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "it-web-1");
    let resp = stack.http.get(format!("{}/signin", stack.web_url)).send().await.unwrap();
    assert!(uuid::Uuid::parse_str(resp.headers()["x-request-id"].to_str().unwrap()).is_ok());
    // Its readiness is Postgres answering.
    let ready = stack.http.get(format!("{}/readyz", stack.web_url)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["postgres"], true);

    api.kill().await.unwrap();
    worker.kill().await.unwrap();
    let _ = std::fs::remove_file(&api_log);
    let _ = std::fs::remove_file(&worker_log);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_with_sigterm_finishes_its_calls_and_leaves_the_rest_queued() {
    let mut stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("drain@example.test").await;
    let log = std::env::temp_dir().join(format!("{}-drain-worker.log", stack.namespace));
    // Two calls at a time on the bulk lane, and a bound well above what they need.
    let mut worker = stack.spawn_worker_process(
        "drained",
        &[("CLAWLINK_WORKER_BULK_CONCURRENCY", "2"), ("CLAWLINK_WORKER_SHUTDOWN_GRACE_MS", "10000")],
        &log,
    );
    stack.wait_for_consumers(1).await;
    slow_notes(&stack, 3000, 2);
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, body) = stack
            .execute(
                &user.api_key,
                "sandbox_create_note",
                json!({"arguments": {"text": format!("note {i}")}, "confirmed": true, "async": true}),
                &[],
            )
            .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["executionId"].as_str().unwrap().to_string());
    }
    wait_until("two calls in flight at the provider", || async { notes_in_flight(&stack) == 2 }).await;

    let signalled = Instant::now();
    sigterm(&worker);
    let exit = tokio::time::timeout(Duration::from_secs(10), worker.wait())
        .await
        .expect("the worker exits within its shutdown bound")
        .unwrap();
    let took = signalled.elapsed();
    eprintln!("worker drained and exited {} ms after SIGTERM", took.as_millis());
    assert!(exit.success(), "exit {exit}: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(took >= Duration::from_millis(1500), "it waited for the slow calls ({took:?})");

    // The two calls it had started finished, each once; it started nothing else.
    let stats = stack.emulator.stats();
    let posts: Vec<_> = stats.requests.iter().filter(|r| r.method == "POST" && r.path == "/notes").collect();
    assert_eq!(posts.len(), 2, "no call started after SIGTERM: {posts:?}");
    let mut started = Vec::new();
    for post in posts {
        assert!((200..300).contains(&post.status), "{post:?}");
        let id = post.idempotency_key.clone().expect("the execution id as idempotency key");
        assert_eq!(stats.performed(&id), 1);
        assert_eq!(stack.execution_status(&id).await, "succeeded", "the row of a finished call is final");
        started.push(id);
    }
    // The rest were never taken: their rows are queued and their messages still there.
    let rest: Vec<_> = ids.iter().filter(|id| !started.contains(id)).collect();
    assert_eq!(rest.len(), 3);
    for id in &rest {
        assert_eq!(stack.execution_status(id).await, "queued");
    }
    let (ready, consumers) = stack.queue_state(&stack.topology().work_queue(Lane::Bulk)).await;
    assert_eq!((ready, consumers), (3, 0), "the messages it never started wait in the queue");

    // A new worker completes them; nothing is done twice.
    stack.start_worker().await;
    for id in &ids {
        let (_, polled) = stack.get(&user.api_key, &format!("/api/executions/{id}?waitMs=15000")).await;
        assert_eq!(polled["status"], "succeeded", "{polled}");
    }
    let stats = stack.emulator.stats();
    assert_eq!(stats.count("POST", "/notes"), 5);
    for id in &ids {
        assert_eq!(stats.performed(id), 1, "{id} performed once");
    }
    let _ = std::fs::remove_file(&log);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_stopped_with_sigterm_answers_its_call_in_flight_and_refuses_new_connections() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("api-drain@example.test").await;
    let log = std::env::temp_dir().join(format!("{}-drain-api.log", stack.namespace));
    let (mut api, api_url) = stack.spawn_api_process(&[("RUST_LOG", "info")], &log).await;
    let addr = api_url.trim_start_matches("http://").to_string();
    slow_notes(&stack, 4000, 1);

    let http = stack.http.clone();
    let key = user.api_key.clone();
    let sent = Instant::now();
    let call = tokio::spawn(async move {
        let resp = http
            .post(format!("{api_url}/api/tools/sandbox_create_note/execute"))
            .header("x-clawlink-api-key", key)
            .json(&json!({"arguments": {"text": "in flight"}, "confirmed": true}))
            .send()
            .await
            .expect("the call in flight is answered");
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null), sent.elapsed())
    });
    wait_until("the call to reach the provider", || async { notes_in_flight(&stack) == 1 }).await;

    let signalled = Instant::now();
    sigterm(&api);
    wait_until("new connections to be refused", || async { tokio::net::TcpStream::connect(&addr).await.is_err() })
        .await;
    let refused_after = signalled.elapsed();
    assert!(!call.is_finished(), "connections were refused while the call was still in flight");

    let (status, body, answered_in) = call.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    // The result arrives by notification, not by a late poll of the result store.
    assert!(answered_in < Duration::from_millis(6000), "answered after {answered_in:?}");
    let exit = tokio::time::timeout(Duration::from_secs(10), api.wait())
        .await
        .expect("the api exits once its requests are done")
        .unwrap();
    eprintln!(
        "api refused connections {} ms after SIGTERM; the call in flight was answered {} ms after it was sent; exited {} ms after SIGTERM",
        refused_after.as_millis(),
        answered_in.as_millis(),
        signalled.elapsed().as_millis()
    );
    assert!(exit.success(), "exit {exit}: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let id = body["executionId"].as_str().unwrap();
    assert_eq!(stack.emulator.stats().performed(id), 1);
    let _ = std::fs::remove_file(&log);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_call_outlasts_the_shutdown_bound_exits_and_does_not_ack_it() {
    let mut stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("bound@example.test").await;
    let log = std::env::temp_dir().join(format!("{}-bound-worker.log", stack.namespace));
    let mut worker = stack.spawn_worker_process("bounded", &[("CLAWLINK_WORKER_SHUTDOWN_GRACE_MS", "1000")], &log);
    stack.wait_for_consumers(1).await;
    slow_notes(&stack, 8000, 1);
    let (status, body) = stack
        .execute(
            &user.api_key,
            "sandbox_create_note",
            json!({"arguments": {"text": "too slow"}, "confirmed": true, "async": true}),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["executionId"].as_str().unwrap().to_string();
    wait_until("the call to reach the provider", || async { notes_in_flight(&stack) == 1 }).await;

    let signalled = Instant::now();
    sigterm(&worker);
    let exit = tokio::time::timeout(Duration::from_secs(5), worker.wait())
        .await
        .expect("the worker exits at its shutdown bound, not when the call ends")
        .unwrap();
    let took = signalled.elapsed();
    eprintln!("worker with a call past its 1 s bound exited {} ms after SIGTERM", took.as_millis());
    assert!(exit.success(), "exit {exit}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(3000), "{took:?}");
    // Not finished, so not acked: the message is back in the queue and the row not final.
    let (ready, _) = stack.queue_state(&stack.topology().work_queue(Lane::Bulk)).await;
    assert_eq!(ready, 1, "the unfinished call's message was returned to the queue");
    assert_ne!(stack.execution_status(&id).await, "succeeded");

    stack.start_worker().await;
    let (_, polled) = stack.get(&user.api_key, &format!("/api/executions/{id}?waitMs=15000")).await;
    assert_eq!(polled["status"], "succeeded", "{polled}");
    let _ = std::fs::remove_file(&log);
    stack.finish().await;
}
