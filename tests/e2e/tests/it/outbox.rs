//! The promise to queue a call is kept whatever happens to the api that accepted it: a
//! publish whose confirm is lost is never reported as "not started" when a worker has the
//! job, and a row whose job was never published is published again by the outbox relay.

use clawlink_common::db::executions::{self, Inserted, NewExecution};
use clawlink_common::ids::ExecutionId;
use clawlink_common::queue::Lane;
use clawlink_e2e::proxy::ConfirmCutter;
use clawlink_e2e::{Options, Stack};
use serde_json::json;
use std::time::Duration;

/// The api's broker connection is cut after the broker confirmed the publish and a worker
/// (on its own connection) took the job. Before, the api failed nothing (the row was no
/// longer queued) yet answered 503 "not started", and the caller's retry did the write a
/// second time. Now it answers as an accepted call: with the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_confirm_after_a_worker_took_the_job_is_answered_with_the_result() {
    let direct = std::env::var("CLAWLINK_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let cutter = ConfirmCutter::start(&direct, Duration::from_millis(1500)).await;
    let stack = Stack::start(Options {
        workers: 0,
        env: vec![("CLAWLINK_AMQP_URL".into(), cutter.url.clone())],
        ..Default::default()
    })
    .await;
    let (user, _) = stack.sandbox_user("lost-confirm@example.test").await;
    let log = std::env::temp_dir().join(format!("{}-lost-confirm-worker.log", stack.namespace));
    let _worker = stack.spawn_worker_process("direct", &[("CLAWLINK_AMQP_URL", direct.as_str())], &log);
    stack.wait_for_consumers(1).await;

    cutter.arm();
    let (status, body) = stack
        .execute(
            &user.api_key,
            "sandbox_create_note",
            json!({"arguments": {"text": "written once"}, "confirmed": true}),
            &[],
        )
        .await;
    assert_eq!(cutter.cuts(), 1, "the publish's confirm was lost");
    assert_eq!(status, 200, "a call a worker ran is not 'not started': {body}");
    assert_eq!(body["ok"], true, "{body}");
    let id = body["executionId"].as_str().unwrap();
    assert_eq!(stack.emulator.stats().performed(id), 1);
    stack.wait_for_rows_final().await;
    assert_eq!(stack.execution_status(id).await, "succeeded");
    stack.finish().await;
}

/// A lost confirm before any worker took the job: the row is failed first, so the 503 "not
/// started" is true — the delivery that reaches a worker later finds it final and calls
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_confirm_before_any_worker_took_the_job_fails_it_and_it_never_runs() {
    let direct = std::env::var("CLAWLINK_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let cutter = ConfirmCutter::start(&direct, Duration::from_millis(200)).await;
    let mut stack = Stack::start(Options {
        workers: 0,
        env: vec![("CLAWLINK_AMQP_URL".into(), cutter.url.clone())],
        ..Default::default()
    })
    .await;
    let (user, _) = stack.sandbox_user("lost-confirm-early@example.test").await;
    cutter.arm();
    let (status, body) = stack
        .execute(
            &user.api_key,
            "sandbox_create_note",
            json!({"arguments": {"text": "never written"}, "confirmed": true}),
            &[],
        )
        .await;
    assert_eq!(cutter.cuts(), 1);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["retryable"], true);
    let id = body["executionId"].as_str().unwrap().to_string();
    assert_eq!(stack.execution_status(&id).await, "failed");
    // The job did reach the queue; a worker now takes it and must not run it.
    stack.start_worker().await;
    let queue = stack.topology().work_queue(Lane::Interactive);
    for _ in 0..200 {
        if stack.queue_state(&queue).await.0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stack.queue_state(&queue).await.0, 0, "the worker took the late delivery");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.emulator.stats().count("POST", "/notes"), 0, "a refused call never runs");
    assert_eq!(stack.execution_status(&id).await, "failed");
    stack.finish().await;
}

/// A call refused as "not started" (503, retryable) is retried, as told, with the same
/// Idempotency-Key. Before, the retry got the refused execution back — a 503 that is no
/// longer retryable, for good, so a careful agent could never get the call done. Now the
/// refusal releases the key: the retry is a new call, which runs once; the refused one
/// never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_refused_as_not_started_runs_when_retried_with_the_same_key() {
    let direct = std::env::var("CLAWLINK_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let cutter = ConfirmCutter::start(&direct, Duration::from_millis(200)).await;
    let mut stack = Stack::start(Options {
        workers: 0,
        env: vec![("CLAWLINK_AMQP_URL".into(), cutter.url.clone())],
        ..Default::default()
    })
    .await;
    let (user, _) = stack.sandbox_user("refused-retry@example.test").await;
    let call = json!({"arguments": {"text": "retried as told"}, "confirmed": true});
    let key = [("idempotency-key", "refused-then-retried")];
    cutter.arm();
    let (status, refused) = stack.execute(&user.api_key, "sandbox_create_note", call.clone(), &key).await;
    assert_eq!(cutter.cuts(), 1);
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["retryable"], true, "{refused}");
    let refused_id = refused["executionId"].as_str().unwrap().to_string();

    stack.start_worker().await;
    let (status, body) = stack.execute(&user.api_key, "sandbox_create_note", call.clone(), &key).await;
    assert_eq!(status, 200, "the retry with the same key runs the call: {body}");
    assert_eq!(body["ok"], true, "{body}");
    let id = body["executionId"].as_str().unwrap().to_string();
    assert_ne!(id, refused_id, "the retry is a new execution");
    // The key now names the new execution.
    let (status, again) = stack.execute(&user.api_key, "sandbox_create_note", call, &key).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["executionId"], json!(id), "{again}");
    let stats = stack.emulator.stats();
    assert_eq!(stats.performed(&id), 1);
    assert_eq!(stats.performed(&refused_id), 0, "a refused call never runs");
    assert_eq!(stats.count("POST", "/notes"), 1);
    assert_eq!(stack.execution_status(&refused_id).await, "failed");
    stack.finish().await;
}

/// An api inserts the row and dies before publishing (played here by inserting the row as
/// the api's insert does and publishing nothing). Before, the row stayed `queued` forever
/// and an agent retrying with the same Idempotency-Key waited on it forever. Now the relay
/// publishes it within its bound; the retry gets the result; the note is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_job_was_never_published_is_run_by_the_relay() {
    let stack = Stack::start(Options {
        workers: 1,
        env: vec![("CLAWLINK_OUTBOX_RELAY_AFTER_MS".into(), "1000".into())],
        ..Default::default()
    })
    .await;
    let (user, connection) = stack.sandbox_user("stranded@example.test").await;
    let arguments = json!({"text": "stranded no more"});
    let key = "retry-me-1";
    let id = ExecutionId::new();
    let mut conn = stack.db.acquire().await.unwrap();
    let device: i64 = sqlx::query_scalar("SELECT id FROM devices WHERE user_id = $1")
        .bind(user.id.0)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let inserted = executions::insert(
        &mut conn,
        NewExecution {
            id,
            user: user.id,
            device: Some(clawlink_common::ids::DeviceId(device)),
            connection: None,
            integration: "sandbox".into(),
            tool_name: "sandbox_create_note".into(),
            arguments: arguments.clone(),
            lane: Lane::Interactive,
            idempotency_key: Some(key.into()),
            request_hash: Some(clawlink_api::call::request_hash("sandbox_create_note", None, &arguments.to_string())),
            awaiting_approval: None,
        },
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert!(matches!(inserted, Inserted::New(c) if c == connection), "the row is recorded on the default connection");
    drop(conn);

    // The agent, never answered, retries the same call with the same key.
    let (status, body) = stack
        .execute(
            &user.api_key,
            "sandbox_create_note",
            json!({"arguments": arguments, "confirmed": true}),
            &[("idempotency-key", key)],
        )
        .await;
    assert_eq!(status, 200, "the retry gets the first execution's result: {body}");
    assert_eq!(body["executionId"], json!(id));
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(stack.emulator.stats().performed(&id.to_string()), 1);
    assert_eq!(stack.emulator.stats().count("POST", "/notes"), 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM execution_outbox").fetch_one(&stack.db).await.unwrap();
    assert_eq!(left, 0, "nothing is left to relay");
    stack.finish().await;
}

/// Calls that go through normally leave nothing in the outbox: the confirm (or the
/// worker's claim) removes each intent, so the relay has nothing to publish twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_calls_leave_the_outbox_empty() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("outbox-empty@example.test").await;
    for async_call in [false, true] {
        let (status, body) = stack
            .execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "hi"}, "async": async_call}), &[])
            .await;
        assert!(status == 200 || status == 202, "{body}");
    }
    stack.wait_for_rows_final().await;
    let mut left = -1;
    for _ in 0..100 {
        left =
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM execution_outbox").fetch_one(&stack.db).await.unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 0);
    stack.finish().await;
}
