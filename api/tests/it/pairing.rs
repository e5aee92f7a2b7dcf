//! Pairing's refusals, and what a shared address or a fast client cannot break: guessing
//! is capped per client address without ever refusing a real token or verifier, the
//! client address comes from forwarding headers only behind a trusted proxy, a status poll
//! inside the interval is answered, and the exchange keeps RFC 8628's pacing.

use crate::harness::{Answer, TestApi, request};
use axum::body::Body;
use serde_json::{Value, json};

const START: &str = "/api/openclaw/pair/start";

/// A started pairing session: (token, verifier).
async fn start(api: &TestApi, label: &str) -> (String, String) {
    let started = api.post("", START, &json!({"deviceLabel": label})).await;
    assert_eq!(started.status, 200, "{}", started.body);
    (started.body["sessionToken"].as_str().unwrap().into(), started.body["verifier"].as_str().unwrap().into())
}

/// `GET path` as sent through a proxy that recorded `forwarded_for`.
async fn get_via(api: &TestApi, forwarded_for: &str, path: &str) -> Answer {
    api.send(request("GET", path, "").header("x-forwarded-for", forwarded_for).body(Body::empty()).unwrap()).await
}

async fn post_via(api: &TestApi, forwarded_for: &str, path: &str, body: &Value) -> Answer {
    let req = request("POST", path, "")
        .header("x-forwarded-for", forwarded_for)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    api.send(req).await
}

fn retry_after(answer: &Answer) -> u64 {
    answer.headers.get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap()
}

/// Sends unknown tokens from `forwarded_for` until one is refused with 429; returns that
/// answer and how many were answered 404 before it.
async fn guess_until_capped(api: &TestApi, forwarded_for: &str) -> (Answer, usize) {
    for not_found in 0..40 {
        let guess = clawlink_common::tokens::random_urlsafe(32);
        let answer = get_via(api, forwarded_for, &format!("/api/openclaw/pair/sessions/{guess}")).await;
        if answer.status == 429 {
            return (answer, not_found);
        }
        answer.error(404, "pairing_not_found");
    }
    panic!("40 unknown tokens from {forwarded_for} were all answered 404");
}

#[tokio::test]
async fn pairing_refuses_unknown_tokens_wrong_verifiers_and_early_exchanges() {
    let api = TestApi::start().await;
    let (token, verifier) = start(&api, "laptop").await;
    let session = format!("/api/openclaw/pair/sessions/{token}");
    let polled = api.get("", &session).await;
    assert_eq!(polled.body["session"]["status"], "awaiting_browser", "{}", polled.body);
    let exchange = format!("{session}/exchange");
    api.post("", &exchange, &json!({"verifier": "not-the-verifier"})).await.error(400, "invalid_verifier");
    api.post("", &exchange, &json!({"verifier": verifier})).await.error(409, "not_approved");
    api.post("", &format!("{session}/finalize"), &json!({"verifier": verifier})).await.error(409, "not_approved");
    api.get("", "/api/openclaw/pair/sessions/no-such-token").await.error(404, "pairing_not_found");
    let unknown = "/api/openclaw/pair/sessions/no-such-token/exchange";
    api.post("", unknown, &json!({"verifier": verifier})).await.error(404, "pairing_not_found");
    api.post("", START, &json!({"deviceLabel": "x".repeat(101)})).await.error(400, "invalid_device_label");
}

/// The published plugin treats any non-2xx as a failure: a status poll twice within the
/// interval (a person who says "done" twice) is answered both times. The exchange, which
/// RFC 8628 paces, answers `slow_down` with the time actually left.
#[tokio::test]
async fn a_fast_status_poll_is_answered_and_a_fast_pending_exchange_slows_down() {
    let api = TestApi::start().await;
    let (token, verifier) = start(&api, "fast agent").await;
    let session = format!("/api/openclaw/pair/sessions/{token}");
    for poll in 0..3 {
        let polled = api.get("", &session).await;
        assert_eq!(polled.status, 200, "poll {poll}: {}", polled.body);
        assert_eq!(polled.body["session"]["status"], "awaiting_browser", "{}", polled.body);
        assert_eq!(polled.body["session"]["token"], token.as_str());
    }

    let exchange = format!("{session}/exchange");
    api.post("", &exchange, &json!({"verifier": verifier})).await.error(409, "not_approved");
    let fast = api.post("", &exchange, &json!({"verifier": verifier})).await;
    fast.error(429, "slow_down");
    assert!((1..=2).contains(&retry_after(&fast)), "Retry-After {:?}", fast.headers.get("retry-after"));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    api.post("", &exchange, &json!({"verifier": verifier})).await.error(409, "not_approved");
}

/// Behind one ingress every agent shares an address: 30 unknown tokens from it cap
/// guessing there, yet a real token's lookup, exchange and finalize still work from that
/// same address, and so does a new pairing.
#[tokio::test]
async fn guessing_from_an_address_never_refuses_a_real_token_or_verifier() {
    let api = TestApi::start().await;
    let (token, verifier) = start(&api, "shared office").await;
    let (capped, answered) = guess_until_capped(&api, "").await;
    capped.error(429, "too_many_attempts");
    assert_eq!(answered, 30, "unknown tokens answered 404 before the cap");
    let left = retry_after(&capped);
    assert!((590..=600).contains(&left), "Retry-After is the time left in the window: {left}");

    let session = format!("/api/openclaw/pair/sessions/{token}");
    let polled = api.get("", &session).await;
    assert_eq!(polled.status, 200, "a real token is answered from a capped address: {}", polled.body);
    let exchange = format!("{session}/exchange");
    api.post("", &exchange, &json!({"verifier": verifier})).await.error(409, "not_approved");
    // A wrong verifier is a guess like an unknown token: refused as capped.
    api.post("", &exchange, &json!({"verifier": "guess"})).await.error(429, "too_many_attempts");

    // The person approves; the agent at the capped address gets its credential.
    let user = api.user("office@example.test").await;
    let mut conn = api.state.db.acquire().await.unwrap();
    assert!(
        clawlink_common::db::pairing::decide(&mut conn, &token, user.id, Some(&Default::default()))
            .await
            .unwrap()
            .is_some()
    );
    drop(conn);
    let exchanged = api.post("", &exchange, &json!({"verifier": verifier})).await;
    assert_eq!(exchanged.status, 200, "{}", exchanged.body);
    assert!(exchanged.body["apiKey"].as_str().unwrap().starts_with("clk_live_"));
    let finalized = api.post("", &format!("{session}/finalize"), &json!({"verifier": verifier})).await;
    assert_eq!(finalized.status, 200, "{}", finalized.body);
    // Right after finalize, the status says so (this replica's copy is dropped).
    assert_eq!(api.get("", &session).await.body["session"]["status"], "paired");
    start(&api, "another agent from the same office").await;
}

/// Forwarding headers name the client only when the peer is a trusted proxy: behind one,
/// each forwarded client has a cap of its own; without one, a header changes nothing.
#[tokio::test]
async fn forwarded_clients_have_their_own_cap_only_behind_a_trusted_proxy() {
    // The harness's peer is 127.0.0.1.
    let api = TestApi::start_with(&[("CLAWLINK_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")]).await;
    let (capped, answered) = guess_until_capped(&api, "198.51.100.1, 10.0.0.7").await;
    capped.error(429, "too_many_attempts");
    assert_eq!(answered, 30);
    // Another client behind the same proxies, and one that forged a leftmost entry.
    let (_, answered) = guess_until_capped(&api, "198.51.100.1, 198.51.100.2").await;
    assert_eq!(answered, 30, "198.51.100.2 has a cap of its own, whatever it wrote to the left");

    let untrusted = TestApi::start().await;
    let (_, answered) = guess_until_capped(&untrusted, "198.51.100.1").await;
    assert_eq!(answered, 30);
    let (capped, answered) = guess_until_capped(&untrusted, "198.51.100.2").await;
    assert_eq!(answered, 0, "without a trusted proxy the header is ignored: the peer is capped");
    capped.error(429, "too_many_attempts");
}

/// Pairing starts need no account, so each address may start 30 per ten minutes; past
/// that, 429 with the time left, and other addresses are not affected.
#[tokio::test]
async fn pairing_starts_are_limited_per_address() {
    let api = TestApi::start_with(&[("CLAWLINK_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let body = json!({"deviceLabel": "bulk"});
    for n in 0..30 {
        let started = post_via(&api, "203.0.113.5", START, &body).await;
        assert_eq!(started.status, 200, "start {n}: {}", started.body);
    }
    let refused = post_via(&api, "203.0.113.5", START, &body).await;
    refused.error(429, "too_many_requests");
    let left = retry_after(&refused);
    assert!((1..=600).contains(&left), "{left}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM pairing_sessions").fetch_one(&api.state.db).await.unwrap();
    assert_eq!(rows, 30, "a refused start writes nothing");
    let elsewhere = post_via(&api, "203.0.113.6", START, &body).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);
}

/// A device label is shown to the person who approves: characters that reorder or hide
/// text are refused, so the label shown is the label sent.
#[tokio::test]
async fn device_labels_with_bidi_overrides_or_invisible_formatting_are_refused() {
    let api = TestApi::start().await;
    for evil in [
        "Laptop \u{202E}gnp.exe",
        "a\u{202A}b",
        "a\u{202D}b",
        "\u{2066}isolated\u{2069}",
        "a\u{2067}b",
        "mark\u{200F}",
        "zero\u{200B}width",
        "bom\u{FEFF}",
        "tag\u{E0041}",
        "line\u{2028}break",
        "arabic\u{061C}mark",
    ] {
        let answer = api.post("", START, &json!({"deviceLabel": evil})).await;
        answer.error(400, "invalid_device_label");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM pairing_sessions").fetch_one(&api.state.db).await.unwrap();
    assert_eq!(rows, 0);
    // Scripts and emoji sequences that need joiners still pass.
    for fine in ["Family 👨\u{200D}👩\u{200D}👧 Mac", "می\u{200C}خواهم", "Ноутбук Ани", "עברית laptop"]
    {
        let answer = api.post("", START, &json!({"deviceLabel": fine})).await;
        assert_eq!(answer.status, 200, "{fine}: {}", answer.body);
        assert_eq!(answer.body["deviceLabel"], fine);
    }
}
