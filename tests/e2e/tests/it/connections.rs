//! Connecting apps: connect sessions started by the agent, completed in the browser;
//! and managing connections on the dashboard.

use clawlink_e2e::browser::Browser;
use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_connection_made_in_the_browser_for_the_agent() {
    let stack = Stack::start(Options::default()).await;
    let user = stack.user("keys@example.test").await;
    let mut browser = Browser::new(&stack.web_url);
    assert_eq!(browser.sign_in("keys@example.test", "pw").await.status, 303);

    // The agent asks for a link.
    let (status, started) = stack
        .post_json(&user.api_key, "/api/connect/start", json!({"integration": "sandbox", "reuseIfConnected": true}))
        .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "awaiting_user_action");
    let token = started["sessionToken"].as_str().unwrap().to_string();
    let connect_url = started["connectUrl"].as_str().unwrap();
    assert_eq!(connect_url, format!("{}/connect/{token}", stack.web_url));
    let (status, unknown) = stack.post_json(&user.api_key, "/api/connect/start", json!({"integration": "nope"})).await;
    assert_eq!(status, 404, "{unknown}");

    // The person opens it; a wrong key is refused by the provider's identity check.
    let form = browser.get(&format!("/connect/{token}")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let wrong = browser.post(&format!("/connect/{token}"), &[("csrf", &form.csrf()), ("key", "not-the-key")]).await;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    assert!(wrong.body.contains("refused this key"), "{}", wrong.body);
    let (_, polled) = stack.get(&user.api_key, &format!("/api/connect/sessions/{token}")).await;
    assert_eq!(polled["session"]["status"], "awaiting_user_action");
    let done = browser.post(&format!("/connect/{token}"), &[("csrf", &wrong.csrf()), ("key", SANDBOX_TOKEN)]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("connected as sandbox@example.test"), "{}", done.body);

    // The agent sees it connected, and can use it at once.
    let (status, polled) = stack.get(&user.api_key, &format!("/api/connect/sessions/{token}")).await;
    assert_eq!(status, 200);
    assert_eq!(polled["session"]["status"], "connected", "{polled}");
    assert_eq!(polled["connection"]["isDefault"], true);
    assert_eq!(polled["connection"]["accountLabel"], "sandbox@example.test");
    let (status, body) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "connected"}}), &[]).await;
    assert_eq!(status, 200, "{body}");
    let (_, again) = stack.post_json(&user.api_key, "/api/connect/start", json!({"integration": "sandbox"})).await;
    assert_eq!(again["alreadyConnected"], true, "{again}");
    assert_eq!(again["connection"]["id"], polled["connection"]["id"]);

    // The stored credential is sealed: the key is nowhere in the row.
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM credentials").fetch_one(&stack.db).await.unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains(SANDBOX_TOKEN));

    // Another person cannot use the link.
    let (other, _) = stack.sandbox_user("other@example.test").await;
    let _ = other;
    let mut stranger = Browser::new(&stack.web_url);
    stranger.sign_in("other@example.test", "pw").await;
    assert_eq!(stranger.get(&format!("/connect/{token}")).await.status, 404);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_rename_default_and_delete_with_promotion() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let user = stack.user("manage@example.test").await;
    let first = stack.sandbox_connection(user.id, "work", SANDBOX_TOKEN).await;
    let second = stack.sandbox_connection(user.id, "home", SANDBOX_TOKEN).await;
    let mut browser = Browser::new(&stack.web_url);
    browser.sign_in("manage@example.test", "pw").await;
    let page = browser.get("/connections").await;
    assert!(page.body.contains("Sandbox") && page.body.contains("work") && page.body.contains("home"), "{}", page.body);
    let csrf = page.csrf();

    let renamed =
        browser.post(&format!("/connections/{}/rename", second.0), &[("csrf", &csrf), ("label", "personal")]).await;
    assert_eq!(renamed.status, 303);
    assert_eq!(browser.post(&format!("/connections/{}/default", second.0), &[("csrf", &csrf)]).await.status, 303);
    let (_, listed) = stack.get(&user.api_key, "/api/integrations").await;
    let rows = listed["integrations"].as_array().unwrap();
    let row = |id: i64| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(row(second.0)["connectionLabel"], "personal");
    assert_eq!(row(second.0)["isDefault"], true);
    assert_eq!(row(first.0)["isDefault"], false, "at most one default");

    // Deleting asks first, naming what goes away; then the other connection is promoted.
    let confirm = browser.get(&format!("/connections/{}/delete", second.0)).await;
    assert!(confirm.body.contains("personal") && confirm.body.contains("stored credential"), "{}", confirm.body);
    assert_eq!(browser.post(&format!("/connections/{}/delete", second.0), &[("csrf", &csrf)]).await.status, 303);
    let (_, listed) = stack.get(&user.api_key, "/api/integrations").await;
    assert_eq!(listed["integrations"].as_array().unwrap().len(), 1);
    assert_eq!(listed["integrations"][0]["id"], first.0);
    assert_eq!(listed["integrations"][0]["isDefault"], true, "the remaining connection became the default");
    let credentials: i64 = sqlx::query_scalar("SELECT count(*) FROM credentials").fetch_one(&stack.db).await.unwrap();
    assert_eq!(credentials, 1, "the deleted connection's credential went with it");

    // Someone else's connection id is not found, and nothing changes.
    let (intruder, theirs) = stack.sandbox_user("intruder@example.test").await;
    let _ = intruder;
    let forged = browser.post(&format!("/connections/{}/delete", theirs.0), &[("csrf", &csrf)]).await;
    assert_eq!(forged.status, 404);
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM user_integrations").fetch_one(&stack.db).await.unwrap();
    assert_eq!(still, 2);
    stack.finish().await;
}
