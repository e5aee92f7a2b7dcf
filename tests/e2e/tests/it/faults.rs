//! Infrastructure faults while calls are in flight: Redis restarted, RabbitMQ restarted,
//! a call that outlives the broker's consumer timeout. Each test restarts a private
//! broker or Redis of its own (`chaos_infra`): the shared ones serve everyone else.

use clawlink_e2e::chaos_infra::{PrivateRabbit, PrivateRedis};
use clawlink_e2e::{Options, Stack};
use clawlink_emulator::{Fault, FaultKind};
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

fn note(text: &str, is_async: bool) -> Value {
    json!({"arguments": {"text": text}, "confirmed": true, "async": is_async})
}

fn slow_notes(ms: u64, times: u32) -> Fault {
    Fault { method: Some("POST".into()), path: Some("/notes".into()), kind: FaultKind::Delay { ms }, times }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_while_results_are_in_flight_loses_no_result() {
    let mut redis = PrivateRedis::start().await.expect("private redis");
    let stack = Stack::start(Options {
        workers: 1,
        env: vec![("CLAWLINK_REDIS_URL".into(), redis.url())],
        ..Default::default()
    })
    .await;
    let (user, _) = stack.sandbox_user("redis-restart@example.test").await;
    // Every call is at the provider for 1.5 s, so the restart lands while all are in flight.
    stack.emulator.add_fault(slow_notes(1500, 100));

    let calls = join_all((0..16).map(|i| {
        let (stack, key) = (&stack, &user.api_key);
        async move {
            let started = Instant::now();
            let (status, body) =
                stack.execute(key, "sandbox_create_note", note(&format!("n{i}"), i % 2 == 1), &[]).await;
            (i % 2 == 1, status, body, started.elapsed())
        }
    }));
    let restart = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        redis.restart(Duration::from_millis(1000)).await.expect("restart redis")
    };
    let (answers, down) = tokio::join!(calls, restart);
    assert!(down >= Duration::from_millis(1000));

    let mut ids = Vec::new();
    for (is_async, status, body, took) in answers {
        let id = body["executionId"].as_str().unwrap_or_else(|| panic!("no execution id: {status} {body}")).to_string();
        if is_async {
            assert_eq!(status, 202, "{body}");
        } else {
            // The result, or the documented 202 when it outlives the sync bound: never a hang.
            assert!(status == 200 || status == 202, "sync caller got {status}: {body}");
            if status == 200 {
                assert_eq!(body["ok"], true, "{body}");
            }
            assert!(took < Duration::from_secs(20), "a sync caller waited {took:?}");
        }
        let polled = stack.final_state(&user.api_key, &id).await;
        assert_eq!(polled["status"], "succeeded", "{polled}");
        ids.push(id);
    }
    stack.wait_for_rows_final().await;
    let stats = stack.emulator.stats();
    for id in &ids {
        assert_eq!(stats.performed(id), 1, "execution {id} was performed {} times", stats.performed(id));
    }
    assert_eq!(stats.count("POST", "/notes"), 16);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_restart_while_calls_are_queued_loses_nothing() {
    let mut rabbit = PrivateRabbit::start(None).await.expect("private rabbitmq");
    let mut stack = Stack::start(Options {
        workers: 0,
        env: vec![("CLAWLINK_AMQP_URL".into(), rabbit.url())],
        ..Default::default()
    })
    .await;
    let (user, _) = stack.sandbox_user("rabbit-restart@example.test").await;

    // Accepted and waiting in the queue: no worker yet.
    let mut accepted = Vec::new();
    for i in 0..20 {
        let (status, body) =
            stack.execute(&user.api_key, "sandbox_create_note", note(&format!("q{i}"), true), &[]).await;
        assert_eq!(status, 202, "{body}");
        accepted.push(body["executionId"].as_str().unwrap().to_string());
    }

    // Calls keep coming while the broker restarts: each is accepted or refused retryably.
    let restarting = std::sync::atomic::AtomicBool::new(true);
    let during = async {
        let mut answers = Vec::new();
        let mut i = 0;
        while restarting.load(std::sync::atomic::Ordering::Relaxed) {
            let started = Instant::now();
            let (status, body) =
                stack.execute(&user.api_key, "sandbox_create_note", note(&format!("d{i}"), true), &[]).await;
            answers.push((status, body, started.elapsed()));
            i += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        answers
    };
    let restart = async {
        let down = rabbit.restart().await.expect("restart rabbitmq");
        restarting.store(false, std::sync::atomic::Ordering::Relaxed);
        down
    };
    let (during, down) = tokio::join!(during, restart);
    assert!(!during.is_empty());
    let mut refused = 0;
    for (status, body, took) in &during {
        let id = body["executionId"].as_str().unwrap_or_else(|| panic!("no execution id: {status} {body}"));
        match status {
            202 => accepted.push(id.to_string()),
            503 => {
                assert_eq!(body["error"]["retryable"], true, "{body}");
                assert_eq!(stack.execution_status(id).await, "failed", "a refused call is not left queued");
                refused += 1;
            }
            other => panic!("during the restart a caller got {other}: {body}"),
        }
        assert!(*took < down + Duration::from_secs(10), "a submit took {took:?}; the broker was away {down:?}");
    }

    // After the restart the api publishes again.
    for i in 0..5 {
        let (status, body) =
            stack.execute(&user.api_key, "sandbox_create_note", note(&format!("a{i}"), true), &[]).await;
        assert_eq!(status, 202, "after the restart: {body}");
        accepted.push(body["executionId"].as_str().unwrap().to_string());
    }
    stack.start_worker().await;
    for id in &accepted {
        let polled = stack.final_state(&user.api_key, id).await;
        assert_eq!(polled["status"], "succeeded", "{polled}");
    }
    let stats = stack.emulator.stats();
    for id in &accepted {
        assert_eq!(stats.performed(id), 1, "execution {id} was performed {} times", stats.performed(id));
    }
    assert_eq!(stats.count("POST", "/notes"), accepted.len(), "{refused} refused calls must not reach the provider");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_longer_than_the_consumer_timeout_runs_once() {
    // The broker gives a delivery 2 s to be acknowledged (checked every second).
    let rabbit = PrivateRabbit::start(Some(2000)).await.expect("private rabbitmq");
    let stack = Stack::start(Options {
        workers: 0,
        env: vec![("CLAWLINK_AMQP_URL".into(), rabbit.url())],
        ..Default::default()
    })
    .await;
    let log = std::env::temp_dir().join(format!("{}-long-call-worker.log", stack.namespace));
    let mut worker = stack.spawn_worker_process("long", &[], &log);
    stack.wait_for_consumers(1).await;
    let (user, _) = stack.sandbox_user("long-call@example.test").await;
    // The provider takes 6 s: the broker times the delivery out and hands it out again
    // while the first is still at the provider. A second call would be quick.
    stack.emulator.add_fault(slow_notes(6000, 1));

    let (status, body) = stack.execute(&user.api_key, "sandbox_create_note", note("slow", false), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    let id = body["executionId"].as_str().unwrap().to_string();
    assert!(rabbit.log_contains("timed out"), "the broker did not time the delivery out; the test proves nothing");

    // The redelivered copy checks back after the first has finished; give it that time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stats = stack.emulator.stats();
    assert_eq!(stats.performed(&id), 1, "the note was created {} times", stats.performed(&id));
    assert_eq!(stats.count("POST", "/notes"), 1);
    assert_eq!(stack.execution_status(&id).await, "succeeded");
    let lane = stack.topology().work_queue(clawlink_common::queue::Lane::Interactive);
    let (ready, consumers) = stack.queue_state(&lane).await;
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!((ready, consumers), (0, 1), "nothing is left waiting and the worker consumes again:\n{logged}");
    assert!(worker.try_wait().unwrap().is_none(), "the worker is still running:\n{logged}");
    worker.kill().await.unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(stack.queue_state(&stack.topology().dead_letter_queue()).await.0, 0, "nothing was dead-lettered");
    stack.finish().await;
}
