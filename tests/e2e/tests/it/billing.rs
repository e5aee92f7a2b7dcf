//! Plans, metered usage, quota enforcement and the signed payment webhook.

use clawlink_e2e::browser::Browser;
use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack};
use clawlink_emulator::{Fault, FaultKind};
use serde_json::{Value, json};

const SECRET: &str = clawlink_e2e::PAYMENT_WEBHOOK_SECRET;

/// This month's count once every execution row is final (the worker records the row just
/// after the agent has its answer).
async fn usage(stack: &Stack, user: clawlink_common::ids::UserId) -> i64 {
    stack.wait_for_rows_final().await;
    sqlx::query_scalar("SELECT coalesce(sum(calls), 0)::bigint FROM usage_monthly WHERE user_id = $1")
        .bind(user.0)
        .fetch_one(&stack.db)
        .await
        .unwrap()
}

async fn plan_of(stack: &Stack, user: clawlink_common::ids::UserId) -> String {
    sqlx::query_scalar("SELECT plan_id FROM users WHERE id = $1").bind(user.0).fetch_one(&stack.db).await.unwrap()
}

async fn webhook(stack: &Stack, body: &Value, signature: Option<String>) -> (u16, Value) {
    let raw = body.to_string();
    let signature = signature.unwrap_or_else(|| {
        clawlink_web::routes::billing::sign(
            SECRET.as_bytes(),
            time::OffsetDateTime::now_utc().unix_timestamp(),
            raw.as_bytes(),
        )
    });
    let resp = stack
        .http
        .post(format!("{}/billing/webhook", stack.web_url))
        .header("clawlink-signature", signature)
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowance_is_reached_exactly_and_retries_and_replays_do_not_count() {
    let stack =
        Stack::start(Options { env: vec![("CLAWLINK_RETRY_BASE_MS".into(), "10".into())], ..Default::default() }).await;
    sqlx::query("INSERT INTO plans (id, name, monthly_calls, max_connections) VALUES ('tiny', 'Tiny', 3, 5)")
        .execute(&stack.db)
        .await
        .unwrap();
    let (user, _) = stack.sandbox_user("meter@example.test").await;
    sqlx::query("UPDATE users SET plan_id = 'tiny' WHERE id = $1").bind(user.id.0).execute(&stack.db).await.unwrap();

    // One call with two retries counts once.
    stack.emulator.add_fault(Fault {
        method: Some("GET".into()),
        path: Some("/echo".into()),
        kind: FaultKind::Status { status: 503, retry_after: None, body: None, headers: vec![] },
        times: 2,
    });
    let (status, body) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "1"}}), &[]).await;
    assert_eq!((status, body["meta"]["attempts"].as_i64()), (200, Some(3)), "{body}");
    assert_eq!(usage(&stack, user.id).await, 1, "retries are not counted");

    // An idempotent replay counts once.
    let key = [("idempotency-key", "k-1")];
    let call = json!({"arguments": {"text": "once"}, "confirmed": true});
    stack.execute(&user.api_key, "sandbox_create_note", call.clone(), &key).await;
    let (status, _) = stack.execute(&user.api_key, "sandbox_create_note", call.clone(), &key).await;
    assert_eq!(status, 200);
    assert_eq!(usage(&stack, user.id).await, 2, "a replay is not counted");

    let (status, _) = stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "3"}}), &[]).await;
    assert_eq!(status, 200, "the third call is within the allowance");
    assert_eq!(usage(&stack, user.id).await, 3);
    let (status, refused) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "4"}}), &[]).await;
    assert_eq!(status, 402, "{refused}");
    assert_eq!(refused["error"]["code"], "plan_limit_reached");
    assert_eq!(refused["upgradeUrl"], format!("{}/billing", stack.web_url));
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), 4, "the refused call reached nothing");
    let resp = stack
        .http
        .post(format!("{}/api/tools/sandbox_echo/preview", stack.api_url))
        .header("x-clawlink-api-key", &user.api_key)
        .json(&json!({"arguments": {"message": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 402, "preview is refused too");
    // A replay of an earlier call still answers: it is not a new call.
    let (status, _) = stack.execute(&user.api_key, "sandbox_create_note", call, &key).await;
    assert_eq!(status, 200);
    let executions: i64 = sqlx::query_scalar("SELECT count(*) FROM executions").fetch_one(&stack.db).await.unwrap();
    assert_eq!(executions, 3, "nothing was queued past the allowance");

    // The dashboard shows usage against the allowance.
    let mut browser = Browser::new(&stack.web_url);
    browser.sign_in("meter@example.test", "pw").await;
    let page = browser.get("/billing").await;
    assert!(page.body.contains("3 of 3") && page.body.contains("Tiny"), "{}", page.body);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_changes_plans_and_refuses_abuse() {
    let stack = Stack::start(Options {
        env: vec![("CLAWLINK_BILLING_WEBHOOK_SECRET".into(), SECRET.into())],
        ..Default::default()
    })
    .await;
    let (user, _) = stack.sandbox_user("payer@example.test").await;
    assert_eq!(plan_of(&stack, user.id).await, "free");
    let upgrade = json!({"id": "evt_1", "type": "checkout.completed", "data": {"userId": user.id.0, "plan": "pro"}});

    // Abuse first: nothing changes.
    let (status, _) = webhook(&stack, &upgrade, Some("t=1,v1=deadbeef".into())).await;
    assert_eq!(status, 400, "a bad signature is refused");
    let stale = clawlink_web::routes::billing::sign(
        SECRET.as_bytes(),
        time::OffsetDateTime::now_utc().unix_timestamp() - 3600,
        upgrade.to_string().as_bytes(),
    );
    let (status, body) = webhook(&stack, &upgrade, Some(stale)).await;
    assert_eq!(status, 400, "a stale timestamp is refused: {body}");
    let forged = clawlink_web::routes::billing::sign(
        b"not-the-secret",
        time::OffsetDateTime::now_utc().unix_timestamp(),
        upgrade.to_string().as_bytes(),
    );
    assert_eq!(webhook(&stack, &upgrade, Some(forged)).await.0, 400, "another secret is refused");
    assert_eq!(plan_of(&stack, user.id).await, "free");

    let (status, body) = webhook(&stack, &upgrade, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(plan_of(&stack, user.id).await, "pro");
    // A replay of the same event is not processed again, even after a later change.
    let cancel = json!({"id": "evt_2", "type": "subscription.canceled", "data": {"userId": user.id.0}});
    assert_eq!(webhook(&stack, &cancel, None).await.0, 200);
    assert_eq!(plan_of(&stack, user.id).await, "free");
    let (status, body) = webhook(&stack, &upgrade, None).await;
    assert_eq!((status, body["duplicate"].as_bool()), (200, Some(true)), "{body}");
    assert_eq!(plan_of(&stack, user.id).await, "free", "the replay changed nothing");
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM plan_changes WHERE user_id = $1")
        .bind(user.id.0)
        .fetch_one(&stack.db)
        .await
        .unwrap();
    assert_eq!(changes, 2, "each change is recorded once, with its time");

    // A downgrade takes effect at once: above the new allowance, calls are refused.
    sqlx::query("INSERT INTO plans (id, name, monthly_calls, max_connections) VALUES ('tiny', 'Tiny', 1, 5)")
        .execute(&stack.db)
        .await
        .unwrap();
    let (status, _) = stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "a"}}), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(usage(&stack, user.id).await, 1);
    let down = json!({"id": "evt_3", "type": "subscription.updated", "data": {"userId": user.id.0, "plan": "tiny"}});
    assert_eq!(webhook(&stack, &down, None).await.0, 200);
    let (status, _) = stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "b"}}), &[]).await;
    assert_eq!(status, 402);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_is_enforced_at_connect_start() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let user = stack.user("many@example.test").await;
    for label in ["a", "b", "c"] {
        stack.sandbox_connection(user.id, label, SANDBOX_TOKEN).await;
    }
    let resp = stack
        .http
        .post(format!("{}/api/connect/start", stack.api_url))
        .header("x-clawlink-api-key", &user.api_key)
        .json(&json!({"integration": "github"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 402);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "connection_limit_reached");
    assert!(body["upgradeUrl"].as_str().unwrap().ends_with("/billing"));
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_at_the_payment_provider_upgrades_the_plan() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let user = stack.user("buyer@example.test").await;
    let mut browser = Browser::new(&stack.web_url);
    browser.sign_in("buyer@example.test", "pw").await;
    let page = browser.get("/billing").await;
    assert!(page.body.contains("Choose Pro"), "{}", page.body);
    let to_checkout = browser.post("/billing/checkout", &[("csrf", &page.csrf()), ("plan", "pro")]).await;
    assert_eq!(to_checkout.status, 303);
    let checkout_url = to_checkout.location.expect("a redirect to the payment provider");
    assert!(checkout_url.starts_with(&stack.emulator.checkout_url()), "{checkout_url}");
    // The person pays at the provider, which calls the webhook, then sends them back.
    let back = stack.http.get(&checkout_url).send().await.unwrap();
    assert!(
        back.url().as_str().starts_with(&format!("{}/billing?upgraded=1", stack.web_url))
            || back.status().is_redirection()
            || back.status().is_success()
    );
    let deliveries = stack.emulator.payment_deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].1, 200, "the webhook accepted the signed event");
    assert_eq!(plan_of(&stack, user.id).await, "pro");
    let page = browser.get("/billing?upgraded=1").await;
    assert!(page.body.contains("Pro") && page.body.contains("Thank you"), "{}", page.body);
    stack.finish().await;
}
