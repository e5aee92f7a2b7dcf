//! Approvals bound to the call (issue 18): the default policy is the agent's
//! confirmation, exactly as before (the published plugin); `approval_token` runs only the
//! exact previewed call, once, before its token expires; `person` holds the call
//! `awaiting_approval` until the person approves or denies it on the dashboard, or it
//! expires; MCP follows the same policies. Every side effect is counted by the emulator.

use clawlink_common::crypto::token_hash;
use clawlink_common::db::devices;
use clawlink_common::ids::UserId;
use clawlink_common::tokens;
use clawlink_e2e::browser::Browser;
use clawlink_e2e::{Options, Stack, TestUser};
use serde_json::{Value, json};
use std::time::Duration;

/// The account's policy, set as the dashboard sets it: the person signs in and saves the
/// form on the approvals page.
pub(crate) async fn set_policy_in_dashboard(stack: &Stack, email: &str, policy: &str) -> Browser {
    let mut person = Browser::new(&stack.web_url);
    person.sign_in(email, "pw").await;
    let inbox = person.get("/approvals").await;
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    let saved = person.post("/approvals/policy", &[("csrf", &inbox.csrf()), ("policy", policy)]).await;
    assert_eq!(saved.location.as_deref(), Some("/approvals?done=policy"), "{}", saved.body);
    person
}

/// Notes the sandbox has created (each execute of `sandbox_create_note` that ran).
fn notes_created(stack: &Stack) -> usize {
    stack.emulator.stats().count("POST", "/notes")
}

async fn preview(stack: &Stack, key: &str, tool: &str, body: Value) -> Value {
    let (status, answer) = stack.post_json(key, &format!("/api/tools/{tool}/preview"), body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// A second paired device of the same account.
async fn second_device(stack: &Stack, user: UserId) -> String {
    let token = tokens::new_device_credential();
    let mut conn = stack.db.acquire().await.unwrap();
    devices::create(
        &mut conn,
        user,
        "other-device",
        &token_hash(token.expose()),
        &tokens::display_prefix(token.expose()),
        &Default::default(),
    )
    .await
    .unwrap();
    token.expose().to_string()
}

async fn set_account_policy(stack: &Stack, user: &TestUser, policy: &str) {
    sqlx::query("UPDATE users SET approval_policy = $2 WHERE id = $1")
        .bind(user.id.0)
        .bind(policy)
        .execute(&stack.db)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_policy_is_the_agents_confirmation_as_before_and_a_preview_adds_a_token() {
    let stack = Stack::start(Options::default()).await;
    let (user, connection) = stack.sandbox_user("plugin@example.test").await;
    let key = &user.api_key;

    let (_, me) = stack.get(key, "/api/agent/whoami").await;
    assert_eq!(me["device"]["approvalPolicy"], "agent_confirmation", "{me}");
    // The plugin's path, unchanged: unconfirmed is 412, confirmed runs.
    let (status, refused) =
        stack.execute(key, "sandbox_create_note", json!({"arguments": {"text": "milk"}}), &[]).await;
    assert_eq!(status, 412, "{refused}");
    assert_eq!(refused["error"]["code"], "confirmation_required", "{refused}");
    let (status, done) =
        stack.execute(key, "sandbox_create_note", json!({"arguments": {"text": "milk"}, "confirmed": true}), &[]).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(notes_created(&stack), 1);

    // The preview keeps every field and adds the token and the policy.
    let answer = preview(&stack, key, "sandbox_create_note", json!({"arguments": {"text": "eggs"}})).await;
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["data"]["confirmationRequired"], true);
    assert_eq!(answer["data"]["summary"], "Create a sandbox note: \"eggs\"");
    assert_eq!(answer["data"]["approvalPolicy"], "agent_confirmation");
    assert_eq!(answer["connectionId"], connection.0);
    let token = answer["data"]["approvalToken"].as_str().expect("a token for a tool that needs confirmation");
    assert!(token.starts_with("clap1."), "{token}");
    assert!(answer["data"]["approvalExpiresAt"].is_string(), "{answer}");
    // A read tool needs no approval: no token.
    let read = preview(&stack, key, "sandbox_echo", json!({"arguments": {"message": "hi"}})).await;
    assert!(read["data"].get("approvalToken").is_none(), "{read}");

    // Under this policy a valid token is a confirmation too; a swapped argument is not.
    let (status, swapped) = stack
        .execute(key, "sandbox_create_note", json!({"arguments": {"text": "beer"}, "approvalToken": token}), &[])
        .await;
    assert_eq!(status, 403, "{swapped}");
    assert_eq!(swapped["error"]["code"], "approval_invalid");
    let (status, done) = stack
        .execute(key, "sandbox_create_note", json!({"arguments": {"text": "eggs"}, "approvalToken": token}), &[])
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(notes_created(&stack), 2);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_token_runs_only_the_previewed_call_and_only_once() {
    let stack = Stack::start(Options::default()).await;
    let (user, main) = stack.sandbox_user("strict@example.test").await;
    let spare = stack.sandbox_connection(user.id, "spare", clawlink_e2e::SANDBOX_TOKEN).await;
    set_account_policy(&stack, &user, "approval_token").await;
    let other_device = second_device(&stack, user.id).await;
    let key = &user.api_key;

    // `confirmed: true` is not enough any more: the policy asks for a token.
    let (status, refused) =
        stack.execute(key, "sandbox_create_note", json!({"arguments": {"text": "milk"}, "confirmed": true}), &[]).await;
    assert_eq!(status, 412, "{refused}");
    assert_eq!(refused["error"]["code"], "approval_required", "{refused}");
    assert!(refused["hint"].as_str().unwrap().contains("/preview"), "{refused}");

    let answer = preview(&stack, key, "sandbox_create_note", json!({"arguments": {"text": "milk"}})).await;
    assert_eq!(answer["data"]["approvalPolicy"], "approval_token");
    let token = answer["data"]["approvalToken"].as_str().unwrap().to_string();

    // Every attempt to stretch the token to another call fails closed, naming what differs.
    let attempts = [
        (key.as_str(), "sandbox_create_note", json!({"text": "whisky"}), None, "set of arguments"),
        (key.as_str(), "sandbox_create_note", json!({"text": "milk", "extra": 1}), None, "invalid_arguments"),
        (key.as_str(), "sandbox_post_message", json!({"text": "milk"}), None, "tool"),
        (key.as_str(), "sandbox_create_note", json!({"text": "milk"}), Some(spare.0), "connection"),
        (other_device.as_str(), "sandbox_create_note", json!({"text": "milk"}), None, "device"),
    ];
    for (caller, tool, arguments, connection, differs) in attempts {
        let mut body = json!({"arguments": arguments, "approvalToken": token});
        if let Some(c) = connection {
            body["connectionId"] = json!(c);
        }
        let (status, refused) = stack.execute(caller, tool, body, &[]).await;
        if differs == "invalid_arguments" {
            // Arguments the schema refuses are refused before any token is looked at.
            assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_arguments")), "{refused}");
            continue;
        }
        assert_eq!(status, 403, "{differs}: {refused}");
        assert_eq!(refused["error"]["code"], "approval_invalid", "{refused}");
        assert_eq!(refused["details"], json!([differs]), "{refused}");
    }
    // A forged token: the payload altered to other arguments, the signature kept.
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}x.{}", parts[0], parts[1], parts[2], parts[3]);
    let (status, refused) = stack
        .execute(key, "sandbox_create_note", json!({"arguments": {"text": "milk"}, "approvalToken": forged}), &[])
        .await;
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("approval_invalid")), "{refused}");
    assert_eq!(notes_created(&stack), 0, "no refused attempt reached the app");

    // The exact call runs, on the previewed connection; the same token again is refused.
    let body = json!({"arguments": {"text": "milk"}, "approvalToken": token});
    let (status, done) = stack.execute(key, "sandbox_create_note", body.clone(), &[]).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["connectionId"], main.0);
    let (status, replayed) = stack.execute(key, "sandbox_create_note", body, &[]).await;
    assert_eq!(status, 409, "{replayed}");
    assert_eq!(replayed["error"]["code"], "approval_used", "{replayed}");
    assert_eq!(notes_created(&stack), 1, "the replay did not run");

    // A retry under the same Idempotency-Key is the same call (its first answer), not a
    // replay; the token under a new key is.
    let token = preview(&stack, key, "sandbox_create_note", json!({"arguments": {"text": "bread"}})).await["data"]
        ["approvalToken"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"arguments": {"text": "bread"}, "approvalToken": token});
    let (status, first) = stack.execute(key, "sandbox_create_note", body.clone(), &[("idempotency-key", "k-1")]).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = stack.execute(key, "sandbox_create_note", body.clone(), &[("idempotency-key", "k-1")]).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["executionId"], first["executionId"]);
    let (status, replayed) = stack.execute(key, "sandbox_create_note", body, &[("idempotency-key", "k-2")]).await;
    assert_eq!((status, replayed["error"]["code"].as_str()), (409, Some("approval_used")), "{replayed}");
    assert_eq!(notes_created(&stack), 2);

    // Reads need no token.
    let (status, read) = stack.execute(key, "sandbox_echo", json!({"arguments": {"message": "hi"}}), &[]).await;
    assert_eq!(status, 200, "{read}");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_approval_token_is_refused() {
    let env = vec![("CLAWLINK_APPROVAL_TOKEN_TTL_SECS".to_string(), "1".to_string())];
    let stack = Stack::start(Options { env, ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("slow@example.test").await;
    set_account_policy(&stack, &user, "approval_token").await;
    let answer = preview(&stack, &user.api_key, "sandbox_create_note", json!({"arguments": {"text": "late"}})).await;
    let token = answer["data"]["approvalToken"].as_str().unwrap();
    // The token's time is what is tested: let it pass.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, refused) = stack
        .execute(
            &user.api_key,
            "sandbox_create_note",
            json!({"arguments": {"text": "late"}, "approvalToken": token}),
            &[],
        )
        .await;
    assert_eq!(status, 410, "{refused}");
    assert_eq!(refused["error"]["code"], "approval_expired", "{refused}");
    assert!(refused["hint"].as_str().unwrap().contains("Preview the call again"), "{refused}");
    assert_eq!(notes_created(&stack), 0);
    stack.finish().await;
}

/// The agent's poll of an execution, waiting up to 10 s for it to be final.
async fn outcome(stack: &Stack, key: &str, id: &str) -> Value {
    let (status, polled) = stack.get(key, &format!("/api/executions/{id}?waitMs=10000")).await;
    assert_eq!(status, 200, "{polled}");
    polled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_or_denies_each_waiting_call_and_unapproved_calls_expire() {
    // Long enough for the steps before each decision on a busy machine, short enough to
    // watch a call expire.
    let env = vec![("CLAWLINK_APPROVAL_WAIT_SECS".to_string(), "8".to_string())];
    let stack = Stack::start(Options { env, ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("careful@example.test").await;
    stack.user("stranger@example.test").await;
    // Set in the dashboard before the device's first call (credentials are cached a second).
    let mut person = set_policy_in_dashboard(&stack, "careful@example.test", "person").await;
    let key = &user.api_key;

    // A sync call waits for no one: 202 at once, awaiting the person, nothing run.
    let (status, accepted) =
        stack.execute(key, "sandbox_create_note", json!({"arguments": {"text": "approve me"}}), &[]).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "awaiting_approval", "{accepted}");
    assert_eq!(accepted["approvalUrl"], format!("{}/approvals", stack.web_url));
    let approved = accepted["executionId"].as_str().unwrap().to_string();
    // The same call again under one Idempotency-Key is the one waiting call.
    let keyed = json!({"arguments": {"text": "keyed"}});
    let (_, first) = stack.execute(key, "sandbox_create_note", keyed.clone(), &[("idempotency-key", "p-1")]).await;
    let (status, again) = stack.execute(key, "sandbox_create_note", keyed, &[("idempotency-key", "p-1")]).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(
        (again["executionId"].clone(), again["status"].clone()),
        (first["executionId"].clone(), json!("awaiting_approval"))
    );
    let keyed_id = first["executionId"].as_str().unwrap().to_string();
    let (_, polled) = stack.get(key, &format!("/api/executions/{approved}")).await;
    assert_eq!(polled["status"], "awaiting_approval", "{polled}");
    assert!(polled["approvalExpiresAt"].is_string(), "{polled}");
    assert_eq!(stack.execution_status(&approved).await, "awaiting_approval");
    // No job exists: the outbox holds nothing for it and no worker ran it.
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM execution_outbox").fetch_one(&stack.db).await.unwrap();
    assert_eq!(outbox, 0);
    // A read is not held.
    let (status, read) = stack.execute(key, "sandbox_echo", json!({"arguments": {"message": "hi"}}), &[]).await;
    assert_eq!(status, 200, "{read}");

    // The inbox shows the rendered preview, with one-click approve and deny.
    let inbox = person.get("/approvals").await;
    assert!(
        inbox.body.contains("Create a sandbox note: &#34;approve me&#34;")
            || inbox.body.contains("Create a sandbox note: &quot;approve me&quot;"),
        "{}",
        inbox.body
    );
    assert!(inbox.body.contains("test-device"), "who asked: {}", inbox.body);
    let csrf = inbox.csrf();
    // A forged form and another person's click change nothing.
    assert_eq!(person.post(&format!("/approvals/{approved}/approve"), &[("csrf", "forged")]).await.status, 403);
    let mut stranger = Browser::new(&stack.web_url);
    stranger.sign_in("stranger@example.test", "pw").await;
    let stranger_csrf = stranger.get("/approvals").await.csrf();
    let page = stranger.post(&format!("/approvals/{approved}/approve"), &[("csrf", &stranger_csrf)]).await;
    assert_eq!(page.status, 404);
    assert!(!stranger.get("/approvals").await.body.contains("approve me"), "a stranger's inbox is their own");
    assert_eq!(stack.execution_status(&approved).await, "awaiting_approval");

    let done = person.post(&format!("/approvals/{approved}/approve"), &[("csrf", &csrf)]).await;
    assert_eq!(done.location.as_deref(), Some("/approvals?done=approved"), "{}", done.body);
    let polled = outcome(&stack, key, &approved).await;
    assert_eq!(polled["status"], "succeeded", "the approved call ran: {polled}");
    assert_eq!(notes_created(&stack), 1);
    // Deciding twice changes nothing.
    let again = person.post(&format!("/approvals/{approved}/deny"), &[("csrf", &csrf)]).await;
    assert_eq!(again.location.as_deref(), Some("/approvals?done=gone"));

    person.post(&format!("/approvals/{keyed_id}/deny"), &[("csrf", &csrf)]).await;

    // Denied: final, with the reason the agent reads; never run.
    let (status, accepted) =
        stack.execute(key, "sandbox_create_note", json!({"arguments": {"text": "deny me"}}), &[]).await;
    assert_eq!(status, 202, "{accepted}");
    let denied = accepted["executionId"].as_str().unwrap().to_string();
    // The agent is already long-polling when the person clicks: the click wakes it at
    // once (its own re-reads of the row would be 1.5 s late here).
    let poll = outcome(&stack, key, &denied);
    let click = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let done = person.post(&format!("/approvals/{denied}/deny"), &[("csrf", &csrf)]).await;
        assert_eq!(done.location.as_deref(), Some("/approvals?done=denied"));
        std::time::Instant::now()
    };
    let (polled, clicked) = tokio::join!(poll, click);
    assert!(
        clicked.elapsed() < Duration::from_millis(1000),
        "the poll answered {:?} after the click",
        clicked.elapsed()
    );
    assert_eq!(polled["status"], "failed", "{polled}");
    assert_eq!(polled["error"]["code"], "approval_denied", "{polled}");
    assert!(polled["error"]["message"].as_str().unwrap().contains("denied"), "{polled}");

    // Nobody decides: the call expires with a reason, and approving it late does nothing.
    let (status, accepted) = stack
        .execute(key, "sandbox_create_note", json!({"arguments": {"text": "forget me"}, "async": true}), &[])
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "awaiting_approval");
    let forgotten = accepted["executionId"].as_str().unwrap().to_string();
    let (_, polled) = stack.get(key, &format!("/api/executions/{forgotten}?waitMs=20000")).await;
    assert_eq!(polled["status"], "failed", "{polled}");
    assert_eq!(polled["error"]["code"], "approval_expired", "{polled}");
    let late = person.post(&format!("/approvals/{forgotten}/approve"), &[("csrf", &csrf)]).await;
    assert_eq!(late.location.as_deref(), Some("/approvals?done=gone"));
    assert!(person.get("/approvals").await.body.contains("No call is waiting"), "the inbox is empty again");
    // What the agent sends is shown as text, never as markup.
    let (status, accepted) = stack
        .execute(key, "sandbox_create_note", json!({"arguments": {"text": "<img src=x onerror=alert(1)>"}}), &[])
        .await;
    assert_eq!(status, 202, "{accepted}");
    let hostile = accepted["executionId"].as_str().unwrap().to_string();
    let inbox = person.get("/approvals").await;
    assert!(inbox.body.contains("&#60;img src=x onerror=alert(1)&#62;"), "{}", inbox.body);
    assert!(!inbox.body.contains("<img src=x"), "{}", inbox.body);
    let detail = person.get(&format!("/executions/{hostile}")).await;
    assert!(detail.body.contains(r#"<a href="/approvals">approve or deny it</a>"#), "{}", detail.body);
    person.post(&format!("/approvals/{hostile}/deny"), &[("csrf", &csrf)]).await;
    stack.wait_for_rows_final().await;
    assert_eq!(notes_created(&stack), 1, "neither the denied nor the expired call ran");
    let billed: Option<i64> =
        sqlx::query_scalar("SELECT sum(calls)::bigint FROM usage_monthly").fetch_one(&stack.db).await.unwrap();
    assert_eq!(billed, Some(2), "the echo and the approved note count; denied and expired calls do not");

    // A device of its own policy overrides the account's: this one may act alone.
    let devices_page = person.get("/devices").await;
    let device_id: i64 = sqlx::query_scalar("SELECT id FROM devices WHERE user_id = $1")
        .bind(user.id.0)
        .fetch_one(&stack.db)
        .await
        .unwrap();
    let saved = person
        .post(&format!("/devices/{device_id}/policy"), &[("csrf", &devices_page.csrf()), ("policy", "allow")])
        .await;
    assert_eq!(saved.location.as_deref(), Some("/devices"), "{}", saved.body);
    assert!(person.get("/devices").await.body.contains(r#"<option value="allow" selected>"#), "the page shows it");
    let stranger_page = stranger.get("/devices").await;
    let refused = stranger
        .post(&format!("/devices/{device_id}/policy"), &[("csrf", &stranger_page.csrf()), ("policy", "person")])
        .await;
    assert_eq!(refused.status, 404, "another person's device is not found");
    let bad = person.post(&format!("/devices/{device_id}/policy"), &[("csrf", &csrf), ("policy", "sometimes")]).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the api's credential cache
    let (status, done) =
        stack.execute(key, "sandbox_create_note", json!({"arguments": {"text": "on my own"}}), &[]).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(notes_created(&stack), 2);
    stack.finish().await;
}

/// One MCP `tools/call`, over plain HTTP.
async fn mcp_call(stack: &Stack, key: &str, name: &str, arguments: Value, meta: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": meta}});
    let response = stack
        .http
        .post(format!("{}/api/mcp", stack.api_url))
        .header("x-clawlink-api-key", key)
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json::<Value>().await.unwrap()["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_destructive_tools_follow_the_policy() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("mcp-policy@example.test").await;
    let key = &user.api_key;
    let (status, _) = stack
        .execute(key, "sandbox_create_note", json!({"arguments": {"text": "doomed"}, "confirmed": true}), &[])
        .await;
    assert_eq!(status, 200);
    let note = json!({"note_id": "note_1"});
    let deletes = |s: &Stack| s.emulator.stats().count("DELETE", "/notes/note_1");
    set_account_policy(&stack, &user, "approval_token").await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // the api's credential cache

    // No token: refused, and the refusal carries the token of exactly this call.
    let refused = mcp_call(&stack, key, "sandbox_delete_note", note.clone(), json!({})).await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert_eq!(refused["structuredContent"]["code"], "approval_required", "{refused}");
    assert_eq!(refused["structuredContent"]["summary"], "Delete sandbox note note_1");
    let token = refused["structuredContent"]["approvalToken"].as_str().unwrap().to_string();
    assert_eq!(deletes(&stack), 0);
    // Sent back with other arguments: refused; with these: run.
    let swapped =
        mcp_call(&stack, key, "sandbox_delete_note", json!({"note_id": "note_2"}), json!({"approvalToken": token}))
            .await;
    assert_eq!(swapped["structuredContent"]["code"], "approval_invalid", "{swapped}");
    let done = mcp_call(&stack, key, "sandbox_delete_note", note.clone(), json!({"approvalToken": token})).await;
    assert_eq!(done["isError"], false, "{done}");
    assert_eq!(deletes(&stack), 1);

    // A person's policy holds the call for the dashboard.
    set_account_policy(&stack, &user, "person").await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // the api's credential cache
    let held = mcp_call(&stack, key, "sandbox_delete_note", json!({"note_id": "note_9"}), json!({})).await;
    assert_eq!(held["structuredContent"]["code"], "awaiting_approval", "{held}");
    let id = held["structuredContent"]["executionId"].as_str().unwrap();
    assert_eq!(stack.execution_status(id).await, "awaiting_approval");
    assert_eq!(stack.emulator.stats().count("DELETE", "/notes/note_9"), 0);
    stack.finish().await;
}

/// What each policy costs an agent, measured rather than argued: sequential sync calls of
/// a write tool under `agent_confirmation` (the default: one execute, the policy read with
/// the credential), `allow`, and `approval_token` (a preview, then the execute that checks
/// the token and records its nonce). Prints p50/p95; run with
/// `deploy/local/test -p clawlink-e2e -- approvals::cost --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn cost_of_each_policy() {
    const CALLS: usize = 200;
    let stack = Stack::start(Options::default()).await;
    let mut report = Vec::new();
    for policy in ["agent_confirmation", "allow", "approval_token"] {
        let (user, _) = stack.sandbox_user(&format!("{policy}@example.test")).await;
        set_account_policy(&stack, &user, policy).await;
        let mut took = Vec::with_capacity(CALLS);
        for i in 0..CALLS + 20 {
            let arguments = json!({"text": format!("{policy} {i}")});
            let started = std::time::Instant::now();
            let mut body = json!({"arguments": arguments, "confirmed": true});
            if policy == "approval_token" {
                let answer =
                    preview(&stack, &user.api_key, "sandbox_create_note", json!({"arguments": arguments})).await;
                body["approvalToken"] = answer["data"]["approvalToken"].clone();
            }
            let (status, done) = stack.execute(&user.api_key, "sandbox_create_note", body, &[]).await;
            assert_eq!(status, 200, "{done}");
            // The first calls warm pools and caches.
            if i >= 20 {
                took.push(started.elapsed());
            }
        }
        took.sort();
        let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)].as_secs_f64() * 1000.0;
        report.push(format!("{policy:>18}: p50 {:.2} ms, p95 {:.2} ms over {CALLS} calls", at(0.5), at(0.95)));
    }
    for line in report {
        println!("{line}");
    }
    stack.finish().await;
}
