//! Writes whose answer is lost after the request went out. A provider that honours an
//! idempotency key may get the write again; one that does not must not get it blindly:
//! the worker runs the tool's verification read first (`retry = "verify"`), or reports
//! `outcome_unknown` (`retry = "never"`).

use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack, TestUser};
use clawlink_emulator::{Fault, FaultKind};
use serde_json::json;

fn fault(path: &str, kind: FaultKind) -> Fault {
    Fault { method: Some("POST".into()), path: Some(path.into()), kind, times: 1 }
}

/// A stack whose catalog adds the provider `id` (played by the emulator's message board),
/// with one worker started after its base URL is set, and a user connected to it.
async fn provider_stack(id: &str, toml: &str, env: Vec<(String, String)>, email: &str) -> (Stack, TestUser) {
    let mut stack = Stack::start(Options {
        workers: 0,
        extra_catalog: vec![(format!("{id}.toml"), toml.into())],
        env,
        ..Default::default()
    })
    .await;
    stack.env.set(&format!("CLAWLINK_PROVIDER_{}_BASE_URL", id.to_ascii_uppercase()), stack.emulator.url());
    stack.start_worker().await;
    let user = stack.user(email).await;
    let bundle = clawlink_common::provider::CredentialBundle::Bearer {
        token: clawlink_common::secret::SecretString::new(SANDBOX_TOKEN),
    };
    stack.connection(user.id, id, "main", &bundle).await;
    (stack, user)
}

/// The message is posted, then its answer is cut off. Before, the worker retried the
/// transient failure and the board got the message twice. Now it finds the message with
/// the verification read and answers with it; the board has it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_answer_was_lost_is_verified_not_repeated() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("verify-found@example.test").await;
    stack.emulator.add_fault(fault("/messages", FaultKind::DropAfter));
    let (status, body) = stack
        .execute(
            &user.api_key,
            "sandbox_post_message",
            json!({"arguments": {"text": "once only"}, "confirmed": true}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["data"]["text"], "once only", "the result is the message found: {body}");
    let stats = stack.emulator.stats();
    assert_eq!(stats.count("POST", "/messages"), 1, "posted once");
    assert_eq!(stats.count("GET", "/messages"), 1, "verified once");
    assert_eq!(stats.performed(body["executionId"].as_str().unwrap()), 1);
    stack.finish().await;
}

/// The answer is lost and the message is not on the board (the provider dropped the
/// request before acting): the verification finds nothing, so the worker posts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_verification_does_not_find_is_sent_again() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("verify-missing@example.test").await;
    // A twin posted before this call began is not this call's message.
    let (status, _) = stack
        .execute(
            &user.api_key,
            "sandbox_post_message",
            json!({"arguments": {"text": "twice?"}, "confirmed": true}),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    stack.emulator.add_fault(fault("/messages", FaultKind::Drop));
    let (status, body) = stack
        .execute(
            &user.api_key,
            "sandbox_post_message",
            json!({"arguments": {"text": "twice?"}, "confirmed": true}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["executionId"].as_str().unwrap();
    let stats = stack.emulator.stats();
    assert_eq!(stats.performed(id), 1, "the second call's message was posted once");
    assert_eq!(stats.count("POST", "/messages"), 3, "the first call, the dropped try, the post after verifying");
    assert_eq!(body["meta"]["attempts"], 2, "{body}");
    stack.finish().await;
}

/// A write with `retry = "never"` whose answer never comes (the provider acts, then holds
/// its answer past the timeout): the agent gets `outcome_unknown`, and the write is not
/// sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_may_not_be_retried_reports_outcome_unknown() {
    let board = r#"
id = "board"
name = "Board"
categories = ["developer-tools"]
base_url = "http://127.0.0.1:9"
auth = { type = "api_key", header = "Authorization", format = "Bearer {key}" }

[[tools]]
action = "post"
title = "Post to the board"
description = "Posts a message; this provider has no idempotency keys and no way to look a post up."
method = "POST"
path = "/messages"
mode = "write"
risk = "confirm"
preview = "Post {text}"
input_schema = { type = "object", additionalProperties = false, required = ["text"], properties = { text = { type = "string" } } }
"#;
    let env = vec![("CLAWLINK_PROVIDER_TIMEOUT_MS".into(), "1000".into())];
    let (stack, user) = provider_stack("board", board, env, "never@example.test").await;
    stack.emulator.add_fault(fault("/messages", FaultKind::DelayAfter { ms: 3000 }));
    let (status, body) = stack
        .execute(&user.api_key, "board_post", json!({"arguments": {"text": "maybe"}, "confirmed": true}), &[])
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "outcome_unknown", "{body}");
    assert_eq!(body["error"]["retryable"], false, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("Check in Board"), "{body}");
    // Give a wrongly retried post the time it would take.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(stack.emulator.stats().count("POST", "/messages"), 1, "sent once, never again");
    let id = body["executionId"].as_str().unwrap();
    stack.wait_for_rows_final().await;
    assert_eq!(stack.execution_status(id).await, "failed");
    stack.finish().await;
}

/// A worker is killed while its post is at the provider (the provider acts; its answer
/// is slow). Before, the redelivered message posted again. Now the next worker finds the
/// marker of the unanswered attempt, verifies, finds the message, and does not post.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_a_post_leaves_it_to_verification() {
    let mut stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("killed-post@example.test").await;
    let log = std::env::temp_dir().join(format!("{}-killed-post-worker.log", stack.namespace));
    let mut doomed = stack.spawn_worker_process("doomed", &[], &log);
    stack.wait_for_consumers(1).await;
    stack.emulator.add_fault(fault("/messages", FaultKind::DelayAfter { ms: 4000 }));
    let (status, body) = stack
        .execute(
            &user.api_key,
            "sandbox_post_message",
            json!({"arguments": {"text": "survives a kill"}, "confirmed": true, "async": true}),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["executionId"].as_str().unwrap().to_string();
    for _ in 0..200 {
        if stack.emulator.stats().count("POST", "/messages") == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(stack.emulator.stats().count("POST", "/messages"), 1, "the post reached the provider");
    doomed.kill().await.expect("SIGKILL the worker mid-call");
    stack.start_worker().await;
    let (status, polled) = stack.get(&user.api_key, &format!("/api/executions/{id}?waitMs=30000")).await;
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["status"], "succeeded", "{polled}");
    assert_eq!(polled["data"]["text"], "survives a kill", "{polled}");
    let stats = stack.emulator.stats();
    assert_eq!(stats.count("POST", "/messages"), 1, "not posted a second time");
    assert_eq!(stats.performed(&id), 1);
    stack.finish().await;
}

/// Seen in a chaos run: a post is acted on and its answer cut off; the verification read
/// must wait for the provider's rate limit, so the call is parked in a delay queue — and
/// meanwhile Redis loses every key, its sent-marker with them. The redelivery posted again.
/// Now the row itself says an answer is missing, so the redelivery verifies first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_verified_even_when_redis_lost_its_marker() {
    let board = r#"
id = "slowboard"
name = "Slow board"
categories = ["developer-tools"]
base_url = "http://127.0.0.1:9"
idempotency_header = "Idempotency-Key"
auth = { type = "api_key", header = "Authorization", format = "Bearer {key}" }

# One request per two seconds: the verification read after a post must wait.
[rate_limits]
per_connection = [{ requests = 1, per_seconds = 2, burst = 0 }]

[[tools]]
action = "post"
title = "Post to the board"
description = "Posts a message; this provider has no idempotency keys."
method = "POST"
path = "/messages"
mode = "write"
risk = "confirm"
preview = "Post {text}"
retry = "verify"
input_schema = { type = "object", additionalProperties = false, required = ["text"], properties = { text = { type = "string" } } }

[tools.verify]
action = "list"
arguments = { text = "{text}" }
items = ""
matches = { "/text" = "{text}" }
created_at = "/createdAt"

[[tools]]
action = "list"
title = "List the board"
description = "Lists the board's messages with a text."
method = "GET"
path = "/messages"
mode = "read"
risk = "safe"
preview = "List messages"
result = "/messages"
input_schema = { type = "object", additionalProperties = false, properties = { text = { type = "string" } } }
"#;
    // The read's wait (about 2 s) is longer than a worker waits inline.
    let env = vec![("CLAWLINK_WORKER_MAX_INLINE_WAIT_MS".into(), "200".into())];
    let (stack, user) = provider_stack("slowboard", board, env, "marker-lost@example.test").await;
    stack.emulator.add_fault(fault("/messages", FaultKind::DropAfter));
    let (status, body) = stack
        .execute(
            &user.api_key,
            "slowboard_post",
            json!({"arguments": {"text": "posted once"}, "confirmed": true, "async": true}),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["executionId"].as_str().unwrap().to_string();
    // Wait until the call is parked, the read still ahead of it.
    for _ in 0..200 {
        if stack.execution_status(&id).await == "queued" && stack.emulator.stats().count("POST", "/messages") == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(stack.emulator.stats().count("POST", "/messages"), 1, "the post reached the provider");
    assert_eq!(stack.emulator.stats().count("GET", "/messages"), 0, "the read waits for its permit");
    // What a Redis restart does to the marker.
    let redis_url = std::env::var("CLAWLINK_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let mut redis = redis::Client::open(redis_url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let removed: u32 =
        redis::cmd("DEL").arg(format!("{}:sent:{id}", stack.namespace)).query_async(&mut redis).await.unwrap();
    assert_eq!(removed, 1, "the marker was there to lose");

    let (status, polled) = stack.get(&user.api_key, &format!("/api/executions/{id}?waitMs=30000")).await;
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["status"], "succeeded", "{polled}");
    assert_eq!(polled["data"]["text"], "posted once", "the result is the message found: {polled}");
    let stats = stack.emulator.stats();
    assert_eq!(stats.count("POST", "/messages"), 1, "not posted a second time");
    assert_eq!(stats.count("GET", "/messages"), 1, "verified once");
    assert_eq!(stats.performed(&id), 1);
    stack.finish().await;
}
