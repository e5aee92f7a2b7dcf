//! The execute path as an agent sees it.

use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack};
use clawlink_emulator::{Fault, FaultKind};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_execute_returns_the_providers_answer() {
    let stack = Stack::start(Options::default()).await;
    let (user, conn) = stack.sandbox_user("sync@example.test").await;
    let (status, body) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "hi there"}}), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["data"]["message"], "hi there");
    assert_eq!(body["toolName"], "sandbox_echo");
    assert_eq!(body["integration"], "sandbox");
    assert_eq!(body["connectionId"], conn.0);
    assert_eq!(body["mode"], "read");
    assert_eq!(body["meta"]["attempts"], 1);
    assert!(body["meta"]["durationMs"].is_u64());
    let id = body["executionId"].as_str().unwrap();
    // Polling right after the answer shows the same final state.
    let (_, polled) = stack.get(&user.api_key, &format!("/api/executions/{id}")).await;
    assert_eq!(polled["status"], "succeeded", "{polled}");
    assert_eq!(polled["data"]["message"], "hi there");
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), 1);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_execute_is_accepted_then_polled() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("async@example.test").await;
    let (status, body) = stack
        .execute(
            &user.api_key,
            "sandbox_create_note",
            json!({"arguments": {"text": "later"}, "confirmed": true, "async": true}),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    let id = body["executionId"].as_str().unwrap().to_string();
    assert!(body["statusUrl"].as_str().unwrap().ends_with(&format!("/api/executions/{id}")));
    let (status, polled) = stack.get(&user.api_key, &format!("/api/executions/{id}?waitMs=10000")).await;
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["status"], "succeeded", "{polled}");
    assert_eq!(polled["data"]["text"], "later");
    assert_eq!(stack.emulator.stats().performed(&id), 1, "the worker sends the execution id as the idempotency key");

    // `Prefer: respond-async` works the same way.
    let (status, _) = stack
        .execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "x"}}), &[("prefer", "respond-async")])
        .await;
    assert_eq!(status, 202);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_and_conflicts() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("idem@example.test").await;
    let body = json!({"arguments": {"text": "once"}, "confirmed": true});
    let key = [("idempotency-key", "order-42")];
    let (s1, first) = stack.execute(&user.api_key, "sandbox_create_note", body.clone(), &key).await;
    let (s2, second) = stack.execute(&user.api_key, "sandbox_create_note", body.clone(), &key).await;
    assert_eq!((s1, s2), (200, 200), "{first} {second}");
    assert_eq!(first["executionId"], second["executionId"]);
    assert_eq!(first["data"], second["data"], "the replay returns the first result");
    assert_eq!(stack.emulator.stats().count("POST", "/notes"), 1, "the note was created once");

    let (s3, conflict) = stack
        .execute(&user.api_key, "sandbox_create_note", json!({"arguments": {"text": "other"}, "confirmed": true}), &key)
        .await;
    assert_eq!(s3, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    assert_eq!(stack.emulator.stats().count("POST", "/notes"), 1);

    // Concurrent duplicates run once.
    let key = [("idempotency-key", "burst-1")];
    let calls = (0..8).map(|_| stack.execute(&user.api_key, "sandbox_create_note", body.clone(), &key));
    let results = futures_util::future::join_all(calls).await;
    let ids: std::collections::BTreeSet<_> = results.iter().map(|(_, b)| b["executionId"].to_string()).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(stack.emulator.stats().count("POST", "/notes"), 2);

    // Naming the connection is part of the body: the first call used the default, so the
    // same key naming that very connection is a different call (409), and the other way
    // round too.
    let key = [("idempotency-key", "order-42")];
    let named = json!({"arguments": {"text": "once"}, "confirmed": true, "connectionId": first["connectionId"]});
    let (status, conflict) = stack.execute(&user.api_key, "sandbox_create_note", named.clone(), &key).await;
    assert_eq!((status, conflict["error"]["code"].as_str()), (409, Some("idempotency_conflict")), "{conflict}");
    let key = [("idempotency-key", "order-43")];
    let (status, named_first) = stack.execute(&user.api_key, "sandbox_create_note", named.clone(), &key).await;
    assert_eq!(status, 200, "{named_first}");
    let (status, replay) = stack.execute(&user.api_key, "sandbox_create_note", named, &key).await;
    assert_eq!((status, &replay["executionId"]), (200, &named_first["executionId"]), "{replay}");
    let (status, conflict) = stack.execute(&user.api_key, "sandbox_create_note", body.clone(), &key).await;
    assert_eq!((status, conflict["error"]["code"].as_str()), (409, Some("idempotency_conflict")), "{conflict}");
    assert_eq!(stack.emulator.stats().count("POST", "/notes"), 3);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resolution_needs_and_ambiguity() {
    let stack = Stack::start(Options::default()).await;
    let user = stack.user("conns@example.test").await;
    let call = json!({"arguments": {"message": "x"}});
    let (status, body) = stack.execute(&user.api_key, "sandbox_echo", call.clone(), &[]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "needs_connection");

    let a = stack.sandbox_connection(user.id, "work", SANDBOX_TOKEN).await;
    let b = stack.sandbox_connection(user.id, "home", SANDBOX_TOKEN).await;
    // The first connection became the default: it is used without an explicit id.
    let (status, body) = stack.execute(&user.api_key, "sandbox_echo", call.clone(), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connectionId"], a.0);
    let (status, body) = stack
        .execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "x"}, "connectionId": b.0}), &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connectionId"], b.0);

    sqlx::query("UPDATE user_integrations SET is_default = false").execute(&stack.db).await.unwrap();
    let (status, body) = stack.execute(&user.api_key, "sandbox_echo", call.clone(), &[]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "ambiguous_connection");
    assert_eq!(body["details"], json!([a.0, b.0]));

    // Another user's connection id is a 404, like a made-up one.
    let (other, other_conn) = stack.sandbox_user("other@example.test").await;
    let _ = other;
    let (status, body) = stack
        .execute(
            &user.api_key,
            "sandbox_echo",
            json!({"arguments": {"message": "x"}, "connectionId": other_conn.0}),
            &[],
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "connection_not_found");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_are_refused_before_anything_is_queued() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("bad@example.test").await;
    let (status, body) = stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {}}), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_arguments");
    assert_eq!(body["missingFields"], json!(["message"]));
    assert!(body["inputSchema"]["properties"]["message"].is_object());

    let (status, body) = stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": 5}}), &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["invalidFields"], json!(["message"]));

    let (status, body) = stack.execute(&user.api_key, "sandbox_ecko", json!({"arguments": {}}), &[]).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "tool_not_found");
    assert_eq!(body["details"][0], "sandbox_echo");

    let (status, body) =
        stack.execute(&user.api_key, "sandbox_create_note", json!({"arguments": {"text": "x"}}), &[]).await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["error"]["code"], "confirmation_required");

    let (status, body) =
        stack.execute("clk_live_not_a_real_key", "sandbox_echo", json!({"arguments": {"message": "x"}}), &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_credential");

    let resp = stack
        .http
        .post(format!("{}/api/tools/sandbox_echo/execute", stack.api_url))
        .header("x-clawlink-api-key", &user.api_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_body");

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM executions").fetch_one(&stack.db).await.unwrap();
    assert_eq!(count, 0, "no refused call left a row");
    let (ready, _) = stack.queue_state(&stack.topology().work_queue(clawlink_common::queue::Lane::Interactive)).await;
    assert_eq!(ready, 0, "no refused call was queued");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_counted() {
    let stack =
        Stack::start(Options { env: vec![("CLAWLINK_RETRY_BASE_MS".into(), "20".into())], ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("retry@example.test").await;
    stack.emulator.add_fault(Fault {
        method: Some("GET".into()),
        path: Some("/echo".into()),
        kind: FaultKind::Status { status: 503, retry_after: None, body: None, headers: vec![] },
        times: 2,
    });
    let (status, body) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "third time"}}), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["message"], "third time");
    assert_eq!(body["meta"]["attempts"], 3);
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), 3);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let stack =
        Stack::start(Options { env: vec![("CLAWLINK_RETRY_BASE_MS".into(), "10".into())], ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("429@example.test").await;
    stack.emulator.add_fault(Fault {
        method: Some("GET".into()),
        path: Some("/echo".into()),
        kind: FaultKind::Status { status: 429, retry_after: Some("2".into()), body: None, headers: vec![] },
        times: 1,
    });
    let (status, body) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "patient"}}), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["attempts"], 2);
    let times: Vec<u64> =
        stack.emulator.stats().requests.iter().filter(|r| r.path == "/echo").map(|r| r.at_ms).collect();
    assert_eq!(times.len(), 2);
    assert!(times[1] - times[0] >= 2000, "retried after {} ms", times[1] - times[0]);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_are_not_retried() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("404@example.test").await;
    let (status, body) = stack
        .execute(
            &user.api_key,
            "sandbox_delete_note",
            json!({"arguments": {"note_id": "note_999"}, "confirmed": true}),
            &[],
        )
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"]["code"], "provider_error");
    assert_eq!(body["error"]["providerStatus"], 404);
    assert_eq!(body["error"]["retryable"], false);
    assert!(body["error"]["message"].as_str().unwrap().contains("note not found"), "{body}");
    assert_eq!(body["meta"]["attempts"], 1);
    assert_eq!(stack.emulator.stats().count("DELETE", "/notes/note_999"), 1);
    let id = body["executionId"].as_str().unwrap();
    let (_, polled) = stack.get(&user.api_key, &format!("/api/executions/{id}")).await;
    assert_eq!(polled["status"], "failed", "{polled}");
    assert_eq!(polled["error"]["providerStatus"], 404);

    // A wrong provider token is the provider's 401: permanent, not retried.
    let user2 = stack.user("badtoken@example.test").await;
    stack.sandbox_connection(user2.id, "broken", "wrong-token").await;
    let (status, body) =
        stack.execute(&user2.api_key, "sandbox_echo", json!({"arguments": {"message": "x"}}), &[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["providerStatus"], 401);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_call_past_its_bound_answers_202_and_completes() {
    let stack =
        Stack::start(Options { env: vec![("CLAWLINK_SYNC_WAIT_MS".into(), "300".into())], ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("slow@example.test").await;
    stack.emulator.add_fault(Fault {
        method: None,
        path: Some("/echo".into()),
        kind: FaultKind::Delay { ms: 1200 },
        times: 1,
    });
    let (status, body) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "slow"}}), &[]).await;
    assert_eq!(status, 202, "{body}");
    let id = body["executionId"].as_str().unwrap().to_string();
    let (_, polled) = stack.get(&user.api_key, &format!("/api/executions/{id}?waitMs=10000")).await;
    assert_eq!(polled["status"], "succeeded", "{polled}");
    assert_eq!(polled["data"]["message"], "slow");

    // Another user cannot see it.
    let (other, _) = stack.sandbox_user("snoop@example.test").await;
    let (status, _) = stack.get(&other.api_key, &format!("/api/executions/{id}")).await;
    assert_eq!(status, 404);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_retry_wait_travels_through_a_delay_queue() {
    // Waits above 100 ms leave the worker: the retry is parked in the 2 s delay queue.
    let stack = Stack::start(Options {
        env: vec![("CLAWLINK_WORKER_MAX_INLINE_WAIT_MS".into(), "100".into())],
        ..Default::default()
    })
    .await;
    let (user, _) = stack.sandbox_user("delay@example.test").await;
    stack.emulator.add_fault(Fault {
        method: Some("GET".into()),
        path: Some("/echo".into()),
        kind: FaultKind::Status { status: 503, retry_after: Some("1".into()), body: None, headers: vec![] },
        times: 1,
    });
    let (status, body) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "parked"}}), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["message"], "parked");
    assert_eq!(body["meta"]["attempts"], 2);
    let times: Vec<u64> =
        stack.emulator.stats().requests.iter().filter(|r| r.path == "/echo").map(|r| r.at_ms).collect();
    assert_eq!(times.len(), 2);
    assert!(times[1] - times[0] >= 1900, "the delay queue held the retry for {} ms", times[1] - times[0]);
    stack.finish().await;
}

/// A provider's answer may hold NUL, which Postgres's `text` and `jsonb` refuse: the call
/// still ends (its stored copy without the NUL) and the agent gets the answer as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_answer_holding_nul_is_stored_and_returned() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("nul-answer@example.test").await;
    let answer = |status: u16, body| Fault {
        method: Some("GET".into()),
        path: Some("/echo".into()),
        kind: FaultKind::Status { status, retry_after: None, body: Some(body), headers: vec![] },
        times: 1,
    };
    stack.emulator.add_fault(answer(200, json!({"message": "a\u{0}b", "k\u{0}ey": ["x\u{0}"]})));
    let (status, body) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "m"}}), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["message"], "a\u{0}b", "{body}");
    let id = body["executionId"].as_str().unwrap();
    // The poll reads the result from Redis; the row in Postgres must be final too.
    assert_eq!(stored(&stack, id).await, ("succeeded".into(), Some(json!({"message": "ab", "key": ["x"]}))));

    stack.emulator.add_fault(answer(422, json!({"message": "bad\u{0}value"})));
    let (status, body) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "m"}}), &[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "provider_error", "{body}");
    let id = body["executionId"].as_str().expect("failed call has an id").to_owned();
    assert_eq!(stored(&stack, &id).await.0, "failed");
    stack.finish().await;
}

/// The stored status and result copy of an execution, once it is final (bounded wait).
async fn stored(stack: &Stack, id: &str) -> (String, Option<serde_json::Value>) {
    let started = std::time::Instant::now();
    loop {
        let row: (String, Option<serde_json::Value>) =
            sqlx::query_as("SELECT status::text, result_excerpt FROM executions WHERE id::text = $1")
                .bind(id)
                .fetch_one(&stack.db)
                .await
                .expect("execution row");
        if row.0 == "succeeded" || row.0 == "failed" {
            return row;
        }
        assert!(started.elapsed().as_secs() < 20, "execution {id} is still {} in Postgres after 20 s", row.0);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
