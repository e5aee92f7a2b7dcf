//! The api's router in-process: every refusal an agent can get is the error envelope of
//! CONTRACT.md with the status that means what it says, and a refused call records and
//! queues nothing. Driven with `oneshot` against the real state (see `harness`); the
//! answers over a real port are `tests/e2e/tests/it/execute.rs` and `fuzz_bodies.rs`.

use crate::harness::{TestApi, request};
use axum::body::Body;
use clawlink_common::db::devices;
use serde_json::{Value, json};

const ECHO: &str = "/api/tools/sandbox_echo/execute";
const CREATE_NOTE: &str = "/api/tools/sandbox_create_note/execute";

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_envelope() {
    let api = TestApi::start().await;
    let user = api.user("routes@example.test").await;

    api.get("", "/api/nope").await.error(404, "route_not_found");
    api.get(&user.api_key, "/api/tools/sandbox_echo/nope").await.error(404, "route_not_found");
    // A route that exists, asked with a method it does not serve: 405, not 404.
    let wrong = api.send(request("DELETE", "/api/tools", &user.api_key).body(Body::empty()).unwrap()).await;
    wrong.error(405, "method_not_allowed");
    assert_eq!(wrong.headers["allow"], "GET,HEAD", "405 names the methods that work");
    api.get(&user.api_key, ECHO).await.error(405, "method_not_allowed");
    api.post(&user.api_key, "/api/agent/whoami", &json!({})).await.error(405, "method_not_allowed");
}

#[tokio::test]
async fn the_request_id_is_echoed_on_answers_and_errors() {
    let api = TestApi::start().await;
    for path in ["/healthz", "/api/nope", "/api/agent/whoami"] {
        let answer = api
            .send(request("GET", path, "").header("x-request-id", "agent-run:42").body(Body::empty()).unwrap())
            .await;
        assert_eq!(answer.headers["x-request-id"], "agent-run:42", "{path}: {}", answer.body);
    }
    // An id that could forge log lines is replaced by a fresh one, still returned.
    let answer = api
        .send(request("GET", "/api/nope", "").header("x-request-id", "two words").body(Body::empty()).unwrap())
        .await;
    let id = answer.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn a_missing_unknown_or_revoked_credential_is_a_401() {
    let api = TestApi::start().await;
    let user = api.user("creds@example.test").await;
    let revoked = api.user("revoked@example.test").await;
    let mut conn = api.state.db.acquire().await.unwrap();
    assert!(devices::revoke(&mut conn, revoked.id, revoked.device).await.unwrap());
    drop(conn);

    let missing = api.get("", "/api/agent/whoami").await;
    assert!(missing.error(401, "missing_credential")["hint"].is_string(), "{}", missing.body);
    // Every 401 names how to authenticate (RFC 9110 §15.5.2; a Bearer challenge, RFC 6750).
    assert_eq!(missing.headers["www-authenticate"], r#"Bearer realm="clawlink""#);
    let malformed = api.get("not-a-credential", "/api/agent/whoami").await;
    malformed.error(401, "invalid_credential");
    assert_eq!(malformed.headers["www-authenticate"], r#"Bearer realm="clawlink", error="invalid_token""#);
    let unknown = clawlink_common::tokens::new_device_credential();
    api.get(unknown.expose(), "/api/agent/whoami").await.error(401, "invalid_credential");
    let answer = api.get(&revoked.api_key, "/api/agent/whoami").await;
    answer.error(401, "invalid_credential");
    assert_eq!(answer.headers["www-authenticate"], r#"Bearer realm="clawlink", error="invalid_token""#);
    let mcp = api.post("", "/api/mcp", &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).await;
    mcp.error(401, "missing_credential");
    assert_eq!(mcp.headers["www-authenticate"], r#"Bearer realm="clawlink""#, "the MCP endpoint's 401 too");
    // The credential is checked before the body is read: a bad body without one is a 401.
    api.post_raw("", ECHO, "application/json", "{not json").await.error(401, "missing_credential");
    api.post(&revoked.api_key, ECHO, &json!({"arguments": {"message": "x"}})).await.error(401, "invalid_credential");

    // `Authorization: Bearer` works too, and `X-ClawLink-API-Key` wins when both are sent.
    let bearer =
        |token: &str| request("GET", "/api/agent/whoami", "").header("authorization", format!("Bearer {token}"));
    let answer = api.send(bearer(&user.api_key).body(Body::empty()).unwrap()).await;
    assert_eq!((answer.status.as_u16(), &answer.body["device"]["id"]), (200, &json!(user.device)), "{}", answer.body);
    let both = |key: &str, token: &str| bearer(token).header("x-clawlink-api-key", key).body(Body::empty()).unwrap();
    assert_eq!(api.send(both(&user.api_key, &revoked.api_key)).await.status, 200);
    api.send(both(&revoked.api_key, &user.api_key)).await.error(401, "invalid_credential");
    assert_eq!(api.recorded_and_queued().await, (0, 0), "a refused call records and queues nothing");
}

#[tokio::test]
async fn bad_bodies_are_refused_in_the_envelope_and_record_nothing() {
    let api = TestApi::start().await;
    let user = api.user("bodies@example.test").await;
    api.sandbox_connection(user.id, "main").await;
    let key = user.api_key.as_str();

    api.post_raw(key, ECHO, "application/json", "{not json").await.error(400, "invalid_body");
    api.post_raw(key, ECHO, "application/json", "").await.error(400, "invalid_body");
    api.post_raw(key, ECHO, "application/json", &b"{\"arguments\": {\"message\": \"\xff\xfe\"}}"[..])
        .await
        .error(400, "invalid_body");
    api.post(key, ECHO, &json!({"arguments": {"message": "a\u{0}b"}})).await.error(400, "invalid_body");
    api.post(key, ECHO, &json!({"arguments": {"message": "x"}, "confirmed": "yes"})).await.error(400, "invalid_body");
    api.post(key, ECHO, &json!("arguments")).await.error(400, "invalid_body");
    api.post_raw(key, ECHO, "text/plain", r#"{"arguments": {"message": "x"}}"#)
        .await
        .error(415, "unsupported_media_type");

    // One byte over the limit, however valid the JSON.
    let limit = api.state.config.max_body_bytes;
    let padding = "x".repeat(limit - r#"{"arguments":{"message":""}}"#.len() + 1);
    let big = json!({"arguments": {"message": padding}}).to_string();
    assert_eq!(big.len(), limit + 1);
    api.post_raw(key, ECHO, "application/json", big.clone()).await.error(413, "body_too_large");
    api.post_raw(key, "/api/tools/sandbox_echo/preview", "application/json", big).await.error(413, "body_too_large");

    assert_eq!(api.recorded_and_queued().await, (0, 0), "no refused body left a row or a message");
}

/// serde fills a struct from a JSON array by position: `[arguments, connectionId,
/// confirmed]` on execute was read as a confirmed call, and ran. Every body of the REST
/// routes must be an object.
#[tokio::test]
async fn a_body_that_is_not_an_object_is_refused_and_runs_nothing() {
    let api = TestApi::start().await;
    let user = api.user("arrays@example.test").await;
    api.sandbox_connection(user.id, "main").await;
    let key = user.api_key.as_str();

    let positional = json!([{"text": "written by position"}, null, true]);
    let answer = api.post(key, CREATE_NOTE, &positional).await;
    assert!(answer.error(400, "invalid_body")["error"]["message"].as_str().unwrap().contains("object"));
    api.post(key, ECHO, &json!([{"message": "x"}])).await.error(400, "invalid_body");
    api.post(key, "/api/tools/sandbox_echo/preview", &json!([{"message": "x"}])).await.error(400, "invalid_body");
    api.post(key, "/api/connect/start", &json!(["sandbox", true])).await.error(400, "invalid_body");
    api.post("", "/api/openclaw/pair/start", &json!(["laptop"])).await.error(400, "invalid_body");
    for body in ["null", "true", "7", r#""text""#] {
        api.post_raw(key, ECHO, "application/json", body).await.error(400, "invalid_body");
    }
    // Whitespace before the object is still an object.
    let spaced = api.post_raw(key, CREATE_NOTE, "application/json", " \n{\"arguments\": {\"text\": \"x\"}}").await;
    spaced.error(412, "confirmation_required");
    assert_eq!(api.recorded_and_queued().await, (0, 0), "nothing was recorded or queued");
}

/// A value Postgres cannot store that got past the body checks (handed here straight to
/// the api's insert batcher) fails its own call only, with a 400 the caller can act on;
/// the other account's call in the same batch is recorded.
#[tokio::test]
async fn a_value_the_database_cannot_store_fails_only_its_own_call_with_a_400() {
    use clawlink_common::db::executions::{Inserted, NewExecution};
    let api = TestApi::start().await;
    let (alice, bob) = (api.user("alice@example.test").await, api.user("bob@example.test").await);
    api.sandbox_connection(alice.id, "main").await;
    api.sandbox_connection(bob.id, "main").await;
    let call = |user: &crate::harness::TestUser, message: &str| NewExecution {
        id: clawlink_common::ids::ExecutionId::new(),
        user: user.id,
        device: Some(user.device),
        connection: None,
        integration: "sandbox".into(),
        tool_name: "sandbox_echo".into(),
        arguments: json!({"message": message}),
        lane: clawlink_common::queue::Lane::Interactive,
        idempotency_key: None,
        request_hash: None,
        awaiting_approval: None,
    };
    // One thread: both are queued before the batcher runs, so they share a statement.
    let (bad, good) =
        tokio::join!(api.state.inserts.call(call(&alice, "a\u{0}b")), api.state.inserts.call(call(&bob, "fine")));
    assert!(matches!(good, Ok(Inserted::New(_))), "Bob's call is recorded");
    let err = clawlink_api::error::ApiError::from(bad.err().expect("Alice's call is refused"));
    assert_eq!((err.status.as_u16(), err.code.as_str(), err.retryable), (400, "invalid_body", false), "{err:?}");
    assert_eq!(api.recorded_and_queued().await.0, 1);
}

#[tokio::test]
async fn tool_and_argument_errors_say_what_to_fix() {
    let api = TestApi::start().await;
    let user = api.user("tools@example.test").await;
    api.sandbox_connection(user.id, "main").await;
    let key = user.api_key.as_str();

    // A misspelt tool: 404 with the close names, on describe, preview and execute alike.
    for (method, path) in [
        ("GET", "/api/tools/sandbox_ecko"),
        ("POST", "/api/tools/sandbox_ecko/preview"),
        ("POST", "/api/tools/sandbox_ecko/execute"),
    ] {
        let answer = api
            .send(request(method, path, key).header("content-type", "application/json").body(Body::from("{}")).unwrap())
            .await;
        let body = answer.error(404, "tool_not_found");
        let close = body["details"].as_array().unwrap_or_else(|| panic!("{method} {path}: no details: {body}"));
        assert!(close.contains(&json!("sandbox_echo")), "{method} {path}: {body}");
    }

    let schema = api.state.catalog.tool("sandbox_echo").unwrap().tool.input_schema.clone();
    let answer = api.post(key, ECHO, &json!({"arguments": {}})).await;
    let body = answer.error(400, "invalid_arguments");
    assert_eq!(body["missingFields"], json!(["message"]), "{body}");
    assert_eq!(body["inputSchema"], schema, "{body}");
    assert!(body["hint"].is_string(), "{body}");
    let answer = api.post(key, ECHO, &json!({"arguments": {"message": 5}})).await;
    let body = answer.error(400, "invalid_arguments");
    assert_eq!(body["invalidFields"], json!(["message"]), "{body}");
    assert_eq!(body["inputSchema"], schema, "{body}");
    // Arguments that are not an object at all, and the same checks on preview.
    for arguments in [json!("hello"), json!([{"message": "x"}])] {
        let answer = api.post(key, ECHO, &json!({"arguments": arguments})).await;
        assert_eq!(answer.error(400, "invalid_arguments")["details"], json!(["arguments must be a JSON object"]));
    }
    let answer = api.post(key, "/api/tools/sandbox_echo/preview", &json!({"arguments": {}})).await;
    assert_eq!(answer.error(400, "invalid_arguments")["missingFields"], json!(["message"]), "{}", answer.body);

    // A write without `confirmed`: 412 with what it would do.
    let note = json!({"arguments": {"text": "buy oat milk"}});
    let answer = api.post(key, CREATE_NOTE, &note).await;
    let body = answer.error(412, "confirmation_required");
    assert_eq!(body["summary"], r#"Create a sandbox note: "buy oat milk""#, "{body}");
    assert!(body["hint"].as_str().is_some_and(|h| h.contains("buy oat milk")), "{body}");
    let preview = api.post(key, "/api/tools/sandbox_create_note/preview", &note).await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(preview.body["data"]["summary"], body["summary"], "{}", preview.body);
    assert_eq!(preview.body["data"]["confirmationRequired"], true, "{}", preview.body);

    // The catalog's own bounds.
    api.get(key, "/api/tools?integration=nope").await.error(404, "integration_not_found");
    api.get(key, "/api/tools/search?query=email&limit=26").await.error(400, "invalid_limit");
    api.get(key, "/api/tools/search?limit=5").await.error(400, "missing_query");

    assert_eq!(api.recorded_and_queued().await, (0, 0), "no refused call left a row or a message");
}

#[tokio::test]
async fn a_call_no_connection_answers_is_a_409_or_404_that_names_the_candidates() {
    let api = TestApi::start().await;
    let user = api.user("conns@example.test").await;
    let key = user.api_key.as_str();
    let echo = json!({"arguments": {"message": "x"}});

    let answer = api.post(key, ECHO, &echo).await;
    assert_eq!(answer.error(409, "needs_connection")["integration"], "sandbox", "{}", answer.body);
    // A missing connection is reported before the confirmation it would need.
    api.post(key, CREATE_NOTE, &json!({"arguments": {"text": "x"}})).await.error(409, "needs_connection");
    api.post(key, "/api/tools/sandbox_echo/preview", &echo).await.error(409, "needs_connection");

    let a = api.sandbox_connection(user.id, "work").await;
    let b = api.sandbox_connection(user.id, "home").await;
    sqlx::query("UPDATE user_integrations SET is_default = false").execute(&api.state.db).await.unwrap();
    let answer = api.post(key, ECHO, &echo).await;
    assert_eq!(answer.error(409, "ambiguous_connection")["details"], json!([a.0, b.0]), "{}", answer.body);
    let answer = api.post(key, "/api/tools/sandbox_echo/preview", &echo).await;
    assert_eq!(answer.error(409, "ambiguous_connection")["details"], json!([a.0, b.0]), "{}", answer.body);

    // Another user's connection looks like a made-up one: 404.
    let other = api.user("other@example.test").await;
    let theirs = api.sandbox_connection(other.id, "theirs").await;
    for id in [theirs.0, 999_999] {
        let call = json!({"arguments": {"message": "x"}, "connectionId": id});
        api.post(key, ECHO, &call).await.error(404, "connection_not_found");
    }

    // A connection that must be reconnected: 401 naming it.
    sqlx::query("UPDATE user_integrations SET status = 'needs_reauth' WHERE id = $1")
        .bind(a.0)
        .execute(&api.state.db)
        .await
        .unwrap();
    let call = json!({"arguments": {"message": "x"}, "connectionId": a.0});
    let answer = api.post(key, ECHO, &call).await;
    assert_eq!(answer.error(401, "needs_reauth")["connectionId"], a.0, "{}", answer.body);
    assert_eq!(answer.headers["www-authenticate"], r#"Bearer realm="clawlink""#, "every 401 has its challenge");

    assert_eq!(api.recorded_and_queued().await, (0, 0), "no refused call left a row or a message");
}

#[tokio::test]
async fn executions_are_their_owners_and_wait_ms_is_checked() {
    let api = TestApi::start().await;
    let owner = api.user("owner@example.test").await;
    api.sandbox_connection(owner.id, "main").await;
    let stranger = api.user("stranger@example.test").await;

    // Queued for a worker (none runs here): 202 with where to look.
    let call = json!({"arguments": {"message": "later"}, "async": true});
    let accepted = api.post(&owner.api_key, ECHO, &call).await;
    assert_eq!((accepted.status.as_u16(), &accepted.body["status"]), (202, &json!("queued")), "{}", accepted.body);
    let id = accepted.body["executionId"].as_str().unwrap().to_string();
    let path = format!("/api/executions/{id}");
    assert!(accepted.body["statusUrl"].as_str().is_some_and(|u| u.ends_with(&path)), "{}", accepted.body);

    let polled = api.get(&owner.api_key, &path).await;
    assert_eq!((polled.status.as_u16(), &polled.body["status"]), (200, &json!("queued")), "{}", polled.body);
    assert_eq!(polled.body["toolName"], "sandbox_echo", "{}", polled.body);

    // Someone else's execution, a made-up one and a malformed id look the same.
    api.get(&stranger.api_key, &path).await.error(404, "execution_not_found");
    api.get(&owner.api_key, &format!("/api/executions/{}", uuid::Uuid::new_v4()))
        .await
        .error(404, "execution_not_found");
    api.get(&owner.api_key, "/api/executions/not-an-id").await.error(404, "execution_not_found");

    // A wait that is not a whole number of milliseconds: 400 in the envelope, not axum's text.
    for wait in ["-2", "soon", "1.5"] {
        api.get(&owner.api_key, &format!("{path}?waitMs={wait}")).await.error(400, "invalid_request");
    }
    assert_eq!(api.recorded_and_queued().await, (1, 1), "the accepted call only");
}

#[tokio::test]
async fn a_device_over_its_request_budget_gets_a_429_with_retry_after() {
    let api = TestApi::start_with(&[("CLAWLINK_DEVICE_RATE_PER_SEC", "1"), ("CLAWLINK_DEVICE_BURST", "2")]).await;
    let user = api.user("busy@example.test").await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let answer = api.get(&user.api_key, "/api/agent/whoami").await;
        statuses.push(answer.status.as_u16());
        if answer.status == 429 {
            answer.error(429, "too_many_requests");
            let wait: u64 = answer.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=2).contains(&wait), "Retry-After: {wait}");
            break;
        }
    }
    assert_eq!(statuses[..2], [200, 200], "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "the burst of 2 at 1/s ran out within 10 quick requests: {statuses:?}");
    // Another device of the same person has a budget of its own.
    let other = api.user("busy-too@example.test").await;
    assert_eq!(api.get(&other.api_key, "/api/agent/whoami").await.status, 200);
}

/// `error` holds the four fields of CONTRACT.md and nothing else — no cause, no internal
/// message — whatever the status and whichever layer refused (the router's fallback, the
/// credential check, the body reader, a handler, axum's query rejection).
#[tokio::test]
async fn every_error_body_has_the_same_shape() {
    let api = TestApi::start().await;
    let user = api.user("shape@example.test").await;
    let answers = [
        api.get("", "/api/nope").await,
        api.get("", "/api/tools").await,
        api.post_raw(&user.api_key, ECHO, "application/json", "[").await,
        api.post(&user.api_key, ECHO, &json!({"arguments": {"message": "x"}})).await,
        api.get(&user.api_key, "/api/executions/x?waitMs=-2").await,
    ];
    for answer in answers {
        let body = &answer.body;
        assert!(answer.status.is_client_error(), "{} {body}", answer.status);
        let mut keys: Vec<&str> =
            body["error"].as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "message", "retryable", "type"], "{body}");
        assert_eq!(body["ok"], Value::Bool(false), "{body}");
    }
}
