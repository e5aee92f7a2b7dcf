//! The agent's whole journey, the way the OpenClaw plugin drives it: pair through the
//! browser, then use the paired credential.

use clawlink_e2e::browser::Browser;
use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack};
use serde_json::{Value, json};
use std::time::Duration;

async fn post_json(stack: &Stack, path: &str, body: Value) -> (u16, Value) {
    let resp = stack.http.post(format!("{}{path}", stack.api_url)).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn poll(stack: &Stack, token: &str) -> (u16, Value) {
    let resp = stack.http.get(format!("{}/api/openclaw/pair/sessions/{token}", stack.api_url)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_through_the_browser_then_using_the_credential() {
    let stack = Stack::start(Options::default()).await;

    // 1. The agent starts pairing.
    let (status, started) = post_json(&stack, "/api/openclaw/pair/start", json!({"deviceLabel": "Laptop agent"})).await;
    assert_eq!(status, 200, "{started}");
    for field in
        ["sessionToken", "verifier", "displayCode", "deviceLabel", "status", "expiresAt", "pollIntervalMs", "pairUrl"]
    {
        assert!(started.get(field).is_some(), "start lacks {field}");
    }
    assert_eq!(started["status"], "awaiting_browser");
    let token = started["sessionToken"].as_str().unwrap().to_string();
    let verifier = started["verifier"].as_str().unwrap().to_string();
    let pair_url = started["pairUrl"].as_str().unwrap().to_string();
    assert_eq!(pair_url, format!("{}/pair/{token}", stack.web_url));

    // Polling: an immediate second poll is answered too (the plugin's status tool fails
    // on any non-2xx, and a person may say "done" twice).
    for _ in 0..2 {
        let (status, polled) = poll(&stack, &token).await;
        assert_eq!(status, 200, "{polled}");
        assert_eq!(polled["session"]["status"], "awaiting_browser");
    }

    // Exchange before approval is refused; an immediate second one is slow_down
    // (RFC 8628's pacing lives on the exchange).
    let path = format!("/api/openclaw/pair/sessions/{token}/exchange");
    let (status, early) = post_json(&stack, &path, json!({"verifier": verifier})).await;
    assert_eq!(status, 409, "{early}");
    let (status, fast) = post_json(&stack, &path, json!({"verifier": verifier})).await;
    assert_eq!((status, fast["error"]["code"].as_str()), (429, Some("slow_down")), "{fast}");

    // 2. A signed-out person opening pairUrl is sent to sign in and brought back.
    let mut browser = Browser::new(&stack.web_url);
    let pair_path = format!("/pair/{token}");
    let page = browser.get(&pair_path).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some(format!("/signin?next={pair_path}").as_str()));
    let signed_up = browser.sign_up("pairer@example.test", "correct horse battery").await;
    assert_eq!(signed_up.status, 303, "{}", signed_up.body);
    let page = browser.get(&pair_path).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Laptop agent") && page.body.contains(started["displayCode"].as_str().unwrap()),
        "{}",
        page.body
    );

    // A forged approval (no CSRF token) changes nothing.
    let forged = browser.post(&pair_path, &[("decision", "approve")]).await;
    assert_eq!(forged.status, 403);
    let csrf = page.csrf();
    let approved = browser.post(&pair_path, &[("csrf", &csrf), ("decision", "approve")]).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert!(approved.body.contains("go back to your agent"), "{}", approved.body);

    // 3. The agent polls, exchanges — twice, getting the same credential — and
    //    finalizes. A status answer may be up to a second old (the api's copy of it).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, polled) = poll(&stack, &token).await;
    assert_eq!(polled["session"]["status"], "ready_for_device", "{polled}");
    assert_eq!(polled["session"]["approvedUserHint"], "p***@example.test");
    let (status, wrong) = post_json(&stack, &path, json!({"verifier": "not-the-verifier"})).await;
    assert_eq!(status, 400, "{wrong}");
    let (status, first) = post_json(&stack, &path, json!({"verifier": verifier})).await;
    assert_eq!(status, 200, "{first}");
    let api_key = first["apiKey"].as_str().unwrap().to_string();
    assert!(api_key.starts_with("clk_live_"));
    let (_, again) = post_json(&stack, &path, json!({"verifier": verifier})).await;
    assert_eq!(again["apiKey"], first["apiKey"], "a repeated exchange returns the same credential");
    assert_eq!(again["apiKeyId"], first["apiKeyId"]);
    let (status, done) =
        post_json(&stack, &format!("/api/openclaw/pair/sessions/{token}/finalize"), json!({"verifier": verifier}))
            .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["session"]["status"], "paired");
    let (status, _) = post_json(&stack, &path, json!({"verifier": verifier})).await;
    assert_eq!(status, 409, "after finalize the credential cannot be fetched again");
    let leftover: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT pending_ciphertext FROM pairing_sessions").fetch_one(&stack.db).await.unwrap();
    assert!(leftover.is_none(), "no copy of the credential is left after finalize");

    // 4. The plugin's surface with the new credential.
    let (status, me) = stack.get(&api_key, "/api/agent/whoami").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["email"], "pairer@example.test");
    assert_eq!(me["device"]["label"], "Laptop agent");
    let user_id = clawlink_common::ids::UserId(me["user"]["id"].as_i64().unwrap());
    let conn = stack.sandbox_connection(user_id, "main", SANDBOX_TOKEN).await;
    let (status, listed) = stack.get(&api_key, "/api/integrations").await;
    assert_eq!(status, 200);
    assert_eq!(listed["integrations"][0]["id"], conn.0);
    let (status, _) = stack.get(&api_key, "/api/tools/search?query=echo").await;
    assert_eq!(status, 200);
    let (status, body) =
        stack.execute(&api_key, "sandbox_echo", json!({"arguments": {"message": "paired"}}), &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = stack
        .execute(&api_key, "sandbox_echo", json!({"arguments": {"message": "explicit"}, "connectionId": conn.0}), &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = stack
        .execute(&api_key, "sandbox_create_note", json!({"arguments": {"text": "x"}, "confirmed": false}), &[])
        .await;
    assert_eq!(status, 412, "{body}");

    // 5. The person revokes the device in the browser; the agent is refused within a second.
    let devices = browser.get("/devices").await;
    assert!(devices.body.contains("Laptop agent"), "{}", devices.body);
    let device_id = first["apiKeyId"].as_i64().unwrap();
    let revoked = browser.post(&format!("/devices/{device_id}/revoke"), &[("csrf", &devices.csrf())]).await;
    assert_eq!(revoked.status, 303);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, refused) = stack.get(&api_key, "/api/agent/whoami").await;
    assert_eq!(status, 401, "{refused}");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_abuse_is_refused() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (status, _) = poll(&stack, "no-such-token").await;
    assert_eq!(status, 404);

    // Approval by another account: only the approver's credential comes out of it, and a
    // second approval (by anyone) changes nothing.
    let (_, started) = post_json(&stack, "/api/openclaw/pair/start", json!({"deviceLabel": "Agent"})).await;
    let token = started["sessionToken"].as_str().unwrap();
    let mut alice = Browser::new(&stack.web_url);
    alice.sign_up("alice@example.test", "alice password 1").await;
    let page = alice.get(&format!("/pair/{token}")).await;
    alice.post(&format!("/pair/{token}"), &[("csrf", &page.csrf()), ("decision", "approve")]).await;
    let mut mallory = Browser::new(&stack.web_url);
    mallory.sign_up("mallory@example.test", "mallory password 1").await;
    let page = mallory.get(&format!("/pair/{token}")).await;
    assert!(page.body.contains("approved already"), "{}", page.body);
    let csrf = mallory.get("/devices").await.csrf();
    let again = mallory.post(&format!("/pair/{token}"), &[("csrf", &csrf), ("decision", "deny")]).await;
    assert!(again.body.contains("Nothing changed"), "{}", again.body);
    let (_, exchanged) = post_json(
        &stack,
        &format!("/api/openclaw/pair/sessions/{token}/exchange"),
        json!({"verifier": started["verifier"]}),
    )
    .await;
    let key = exchanged["apiKey"].as_str().unwrap();
    let (_, me) = stack.get(key, "/api/agent/whoami").await;
    assert_eq!(me["user"]["email"], "alice@example.test");

    // An expired session answers 410.
    let (_, started) = post_json(&stack, "/api/openclaw/pair/start", json!({"deviceLabel": "Late"})).await;
    let token = started["sessionToken"].as_str().unwrap();
    sqlx::query("UPDATE pairing_sessions SET expires_at = now() - interval '1 second' WHERE token = $1")
        .bind(token)
        .execute(&stack.db)
        .await
        .unwrap();
    let (status, body) = post_json(
        &stack,
        &format!("/api/openclaw/pair/sessions/{token}/exchange"),
        json!({"verifier": started["verifier"]}),
    )
    .await;
    assert_eq!(status, 410, "{body}");

    // Guessing verifiers is capped per address.
    let mut last = 0;
    for _ in 0..40 {
        let (status, _) =
            post_json(&stack, &format!("/api/openclaw/pair/sessions/{token}/exchange"), json!({"verifier": "guess"}))
                .await;
        last = status;
    }
    assert_eq!(last, 429, "guessing is capped");
    stack.finish().await;
}
