//! The emulator over real HTTP: auth, the sandbox API, fault injection, side-effect
//! counting and the control plane; the catalog providers in `catalog.rs`, the OAuth
//! authorization server in `oauth.rs`.

mod catalog;
mod oauth;

use std::time::{Duration, Instant};

use clawlink_emulator::{Emulator, EmulatorConfig, Fault, FaultKind};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "sandbox-demo-token";

async fn start() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.unwrap_or_else(|e| panic!("emulator should start: {e:#}"))
}

fn client() -> reqwest::Client {
    // reqwest is built without a TLS provider and refuses to build a client until one is
    // installed, even for http://. Another test may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("client should build: {e}"))
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap_or_else(|e| panic!("response should be JSON: {e}"))
}

async fn create_note(client: &reqwest::Client, emulator: &Emulator, key: &str, text: &str) -> reqwest::Response {
    client
        .post(format!("{}/notes", emulator.url()))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", key)
        .json(&json!({"text": text}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /notes should get a response: {e}"))
}

fn status_fault(status: u16, retry_after: Option<&str>, times: u32) -> Fault {
    Fault {
        method: Some("POST".into()),
        path: Some("/notes".into()),
        kind: FaultKind::Status {
            status,
            retry_after: retry_after.map(str::to_owned),
            body: None,
            headers: vec![("x-ratelimit-remaining".into(), "0".into())],
        },
        times,
    }
}

#[tokio::test]
async fn refuses_missing_and_unknown_tokens_without_using_up_faults() {
    let emulator = start().await;
    let client = client();
    emulator.add_fault(status_fault(503, None, 1));

    let missing = client
        .post(format!("{}/notes", emulator.url()))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(missing).await, json!({"error": {"message": "invalid token"}}));
    let wrong = client
        .get(format!("{}/me", emulator.url()))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // The fault is still there for the first authorized request.
    let faulted = create_note(&client, &emulator, "k1", "x").await;
    assert_eq!(faulted.status(), StatusCode::SERVICE_UNAVAILABLE);

    // A token added later is accepted.
    emulator.add_token("second-token");
    let me = client
        .get(format!("{}/me", emulator.url()))
        .bearer_auth("second-token")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(json_of(me).await["id"], "sandbox-user-1");

    let stats = emulator.stats();
    let seen: Vec<_> = stats.requests.iter().map(|r| (r.status, r.authorized)).collect();
    assert_eq!(seen, [(401, false), (401, false), (503, true), (200, true)]);
    assert_eq!(stats.performed("k1"), 0);
    emulator.shutdown().await;
}

#[tokio::test]
async fn echo_and_notes_count_every_performed_write() {
    let emulator = start().await;
    let client = client();

    let echo = client
        .get(format!("{}/echo?message=hi%20there%20%26%20more", emulator.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(echo.status(), StatusCode::OK);
    assert_eq!(json_of(echo).await, json!({"message": "hi there & more"}));

    // The same key twice is performed twice: the emulator never deduplicates.
    let first = create_note(&client, &emulator, "exec-1", "hello").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = json_of(first).await;
    assert_eq!(first["id"], "note_1");
    assert_eq!(first["text"], "hello");
    assert!(first["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    let second = create_note(&client, &emulator, "exec-1", "hello").await;
    assert_eq!(json_of(second).await["id"], "note_2");

    let bad = client
        .post(format!("{}/notes", emulator.url()))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", "exec-2")
        .json(&json!({"text": 5}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(bad).await, json!({"error": {"message": "text is required"}}));

    let list = client
        .get(format!("{}/notes", emulator.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let list = json_of(list).await;
    assert_eq!(list["notes"].as_array().map(Vec::len), Some(2));

    let delete = |id: &'static str| {
        client
            .delete(format!("{}/notes/{id}", emulator.url()))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", "exec-3")
            .send()
    };
    let deleted = delete("note_1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = delete("note_1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_of(gone).await, json!({"error": {"message": "note not found"}}));

    let stats = emulator.stats();
    assert_eq!(stats.count("POST", "/notes"), 3);
    assert_eq!(stats.count("GET", "/echo"), 1);
    assert_eq!(stats.performed("exec-1"), 2);
    assert_eq!(stats.performed("exec-2"), 0);
    assert_eq!(stats.performed("exec-3"), 1);
    assert_eq!(stats.requests[1].idempotency_key.as_deref(), Some("exec-1"));

    emulator.reset();
    let stats = emulator.stats();
    assert!(stats.requests.is_empty() && stats.side_effects.is_empty());
    emulator.shutdown().await;
}

#[tokio::test]
async fn status_fault_carries_retry_after_and_is_used_up() {
    let emulator = start().await;
    let client = client();
    emulator.add_fault(status_fault(429, Some("2"), 2));

    for _ in 0..2 {
        let limited = create_note(&client, &emulator, "exec-1", "x").await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"2"[..]));
        assert_eq!(limited.headers().get("x-ratelimit-remaining").map(|v| v.as_bytes()), Some(&b"0"[..]));
        assert!(json_of(limited).await["error"]["message"].is_string());
    }
    // The fault matched only POST /notes: other requests pass meanwhile.
    let me =
        client.get(format!("{}/me", emulator.url())).bearer_auth(TOKEN).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(me.status(), StatusCode::OK);

    let created = create_note(&client, &emulator, "exec-1", "x").await;
    assert_eq!(created.status(), StatusCode::CREATED);

    let stats = emulator.stats();
    let statuses: Vec<_> = stats.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200, 201]);
    // Faulted writes were not performed; only the last one was.
    assert_eq!(stats.performed("exec-1"), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn drop_fault_makes_the_client_fail_and_performs_nothing() {
    let emulator = start().await;
    let client = client();
    emulator.add_fault(Fault { method: None, path: Some("/notes".into()), kind: FaultKind::Drop, times: 1 });

    let outcome = match client
        .post(format!("{}/notes", emulator.url()))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", "exec-1")
        .json(&json!({"text": "x"}))
        .send()
        .await
    {
        Ok(response) => response.bytes().await.map(|_| ()),
        Err(err) => Err(err),
    };
    assert!(outcome.is_err(), "a dropped response must fail the client");

    let created = create_note(&client, &emulator, "exec-2", "x").await;
    assert_eq!(created.status(), StatusCode::CREATED);

    let stats = emulator.stats();
    let statuses: Vec<_> = stats.requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [0, 201]);
    assert_eq!(stats.performed("exec-1"), 0);
    assert_eq!(stats.performed("exec-2"), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn delay_fault_delays_then_performs() {
    let emulator = start().await;
    let client = client();
    emulator.add_fault(Fault { method: Some("post".into()), path: None, kind: FaultKind::Delay { ms: 200 }, times: 1 });

    let started = Instant::now();
    let created = create_note(&client, &emulator, "exec-1", "x").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert!(started.elapsed() >= Duration::from_millis(200));

    let started = Instant::now();
    create_note(&client, &emulator, "exec-2", "x").await;
    assert!(started.elapsed() < Duration::from_millis(200));

    assert_eq!(emulator.stats().performed("exec-1"), 1);
    emulator.shutdown().await;
}

/// A slow account's request takes its time, is in flight meanwhile, performs its write
/// once, and its record says when it was answered; the same request with the ordinary
/// token is fast.
#[tokio::test]
async fn a_slow_account_takes_its_time_and_writes_once() {
    let emulator = start().await;
    let client = client();
    emulator.add_slow_token("slow-token", Duration::from_millis(300), Duration::from_millis(400));
    let post = |token: &'static str, key: &'static str| {
        client
            .post(format!("{}/notes", emulator.url()))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({"text": "slow"}))
            .send()
    };

    let started = Instant::now();
    let slow = tokio::spawn(post("slow-token", "exec-slow"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(emulator.in_flight("POST", "/notes", Duration::from_secs(5)), 1, "the slow call is at the provider");
    let created = slow.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created.status(), StatusCode::CREATED);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "took {took:?}");
    assert_eq!(emulator.in_flight("POST", "/notes", Duration::from_secs(5)), 0);

    let started = Instant::now();
    assert_eq!(post(TOKEN, "exec-fast").await.unwrap_or_else(|e| panic!("{e}")).status(), StatusCode::CREATED);
    assert!(started.elapsed() < Duration::from_millis(300), "the ordinary token is not slow");

    let stats = emulator.stats();
    assert_eq!(stats.performed("exec-slow"), 1);
    let record = &stats.requests[0];
    let answered = record.done_ms.unwrap_or_else(|| panic!("answered: {record:?}"));
    assert!(answered - record.at_ms >= 300, "{record:?}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn control_plane_over_http() {
    let emulator = start().await;
    let client = client();
    let control = |path: &str| format!("{}/_emulator/{path}", emulator.url());

    let health = client.get(control("health")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.ok().as_deref(), Some("ok"));

    let added =
        client.post(control("tokens")).json(&json!({"token": "t2"})).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(added.status(), StatusCode::NO_CONTENT);
    let fault = json!({
        "method": "GET", "path": "/echo",
        "kind": {"type": "status", "status": 503, "retry_after": "Wed, 21 Oct 2015 07:28:00 GMT",
                 "body": {"message": "busy"}},
    });
    let added = client.post(control("faults")).json(&fault).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(added.status(), StatusCode::NO_CONTENT);
    let refused = client
        .post(control("faults"))
        .json(&json!({"kind": {"type": "status", "status": 42}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);

    let echo = client
        .get(format!("{}/echo?message=x", emulator.url()))
        .bearer_auth("t2")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(echo.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(echo.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"Wed, 21 Oct 2015 07:28:00 GMT"[..]));
    assert_eq!(json_of(echo).await, json!({"message": "busy"}));

    let unknown = client.get(format!("{}/nope", emulator.url())).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_of(unknown).await, json!({"error": {"message": "no such route"}}));

    let stats = client.get(control("stats")).send().await.unwrap_or_else(|e| panic!("{e}"));
    let stats = json_of(stats).await;
    // Control-plane calls are not logged; the two provider requests are.
    assert_eq!(stats["requests"].as_array().map(Vec::len), Some(2));
    assert_eq!(stats["requests"][0]["path"], "/echo");
    assert_eq!(stats["requests"][0]["status"], 503);
    assert_eq!(stats["requests"][1]["authorized"], false);
    assert!(stats["requests"][0]["atMs"].is_u64());

    let reset = client.post(control("reset")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert!(emulator.stats().requests.is_empty());
    emulator.shutdown().await;
}
