//! Every binary serves /metrics; what the dashboards and alerts use is really exported.

use clawlink_e2e::{Options, Stack};
use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_executions_queues_and_http() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("metrics@example.test").await;
    let port = free_port();
    let log = std::env::temp_dir().join(format!("{}-metrics-worker.log", stack.namespace));
    let mut worker =
        stack.spawn_worker_process("metered", &[("CLAWLINK_WORKER_ADDR", &format!("127.0.0.1:{port}"))], &log);
    stack.wait_for_consumers(1).await;
    // One 503 first, so the retry counters have something to count.
    stack.emulator.add_fault(clawlink_emulator::Fault {
        method: Some("GET".into()),
        path: Some("/echo".into()),
        kind: clawlink_emulator::FaultKind::Status { status: 503, retry_after: None, body: None, headers: vec![] },
        times: 1,
    });
    let (status, _) = stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "m"}}), &[]).await;
    assert_eq!(status, 200);
    // The worker counts the execution when it records the row, just after the answer.
    let worker_url = format!("http://127.0.0.1:{port}");
    let mut worker_text = String::new();
    for _ in 0..100 {
        worker_text = stack.http.get(format!("{worker_url}/metrics")).send().await.unwrap().text().await.unwrap();
        if worker_text.contains("clawlink_executions_total{") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        worker_text
            .contains(r#"clawlink_executions_total{integration="sandbox",tool="sandbox_echo",outcome="succeeded"} 1"#),
        "{worker_text}"
    );
    assert!(
        worker_text.contains(r#"clawlink_provider_responses_total{integration="sandbox",status_class="2xx"} 1"#),
        "{worker_text}"
    );
    assert!(worker_text.contains(r#"clawlink_execution_duration_seconds_count{phase="total"} 1"#), "{worker_text}");
    assert_eq!(stack.http.get(format!("{worker_url}/readyz")).send().await.unwrap().status().as_u16(), 200);

    // The api counts requests by route template and reads queue depths.
    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    let api_text = stack.http.get(format!("{}/metrics", stack.api_url)).send().await.unwrap().text().await.unwrap();
    assert!(
        api_text.contains(
            r#"clawlink_http_requests_total{service="api",route="/api/tools/{name}/execute",status="200"} 1"#
        ),
        "{api_text}"
    );
    assert!(api_text.contains(r#"clawlink_queue_consumers{queue="interactive"} 1"#), "{api_text}");
    assert!(api_text.contains(r#"clawlink_job_runs_total{name="queue_stats",outcome="ok"}"#), "{api_text}");
    assert!(!api_text.contains(&user.api_key) && !api_text.contains("metrics@example.test"), "no user data in labels");
    stack.http.get(format!("{}/signin", stack.web_url)).send().await.unwrap();
    let web_text = stack.http.get(format!("{}/metrics", stack.web_url)).send().await.unwrap().text().await.unwrap();
    assert!(
        web_text.contains(r#"clawlink_http_requests_total{service="web",route="/signin",status="200"} 1"#),
        "{web_text}"
    );

    // Every metric the Grafana dashboard and alerts use is exported by some binary.
    let names = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/METRICS.txt"))
        .unwrap_or_default();
    let all = format!("{worker_text}\n{api_text}\n{web_text}");
    for name in names.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let family = name
            .trim_end_matches("_total")
            .trim_end_matches("_bucket")
            .trim_end_matches("_count")
            .trim_end_matches("_sum");
        assert!(
            all.contains(&format!("# TYPE {family} ")),
            "{name} is used by the dashboards but no binary exports it"
        );
    }
    worker.kill().await.unwrap();
    let _ = std::fs::remove_file(&log);
    stack.finish().await;
}

/// `clawlink_queue_oldest_message_age_seconds{queue}` of the api's `/metrics`.
async fn oldest_age(stack: &Stack, queue: &str) -> f64 {
    let text = stack.http.get(format!("{}/metrics", stack.api_url)).send().await.unwrap().text().await.unwrap();
    let series = format!(r#"clawlink_queue_oldest_message_age_seconds{{queue="{queue}"}} "#);
    text.lines().find_map(|l| l.strip_prefix(&series)).expect("the gauge is exported").trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_call_waiting_for_a_worker_is_measured_per_lane() {
    let mut stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("oldest@example.test").await;
    let (status, body) = stack
        .execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "wait"}, "async": true}), &[])
        .await;
    assert_eq!(status, 202, "{body}");
    // No worker: the call waits, and the api's queue_stats job (every 5 s) sees it age.
    let mut age = 0.0;
    for _ in 0..200 {
        age = oldest_age(&stack, "bulk").await;
        if age >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(age >= 1.0, "the waiting bulk call is {age} s old");
    assert_eq!(oldest_age(&stack, "interactive").await, 0.0, "nothing waits on the interactive lane");

    // Once a worker has taken it, nothing waits any more.
    stack.start_worker().await;
    let id = body["executionId"].as_str().unwrap();
    let (_, polled) = stack.get(&user.api_key, &format!("/api/executions/{id}?waitMs=15000")).await;
    assert_eq!(polled["status"], "succeeded", "{polled}");
    // A few rounds of the 5 s job: a loaded machine may delay one.
    for _ in 0..200 {
        age = oldest_age(&stack, "bulk").await;
        if age == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let text = stack.http.get(format!("{}/metrics", stack.api_url)).send().await.unwrap().text().await.unwrap();
    let jobs: Vec<_> = text.lines().filter(|l| l.contains("queue_stats") || l.contains("queue_")).collect();
    assert_eq!(age, 0.0, "the gauge went back to 0 once the call was taken: {jobs:#?}");
    stack.finish().await;
}
