//! The life of a process, with real processes: request ids from the HTTP answer to the
//! JSON log lines.

use clawlink_e2e::{Options, Stack};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

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
