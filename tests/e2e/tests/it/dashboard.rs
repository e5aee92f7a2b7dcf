//! Dashboard pages over plain HTTP (the browser tests drive the same pages in Chromium).

use clawlink_e2e::browser::Browser;
use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_are_listed_filtered_and_shown_only_to_their_owner() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("history@example.test").await;
    let (_, ok) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "seen in history"}}), &[]).await;
    let (_, failed) = stack
        .execute(
            &user.api_key,
            "sandbox_delete_note",
            json!({"arguments": {"note_id": "nope"}, "confirmed": true}),
            &[],
        )
        .await;
    let ok_id = ok["executionId"].as_str().unwrap().to_string();
    let failed_id = failed["executionId"].as_str().unwrap().to_string();

    let mut browser = Browser::new(&stack.web_url);
    browser.sign_in("history@example.test", "pw").await;
    // The rows are written just after the agent's answer.
    let mut page = browser.get("/executions").await;
    for _ in 0..50 {
        if page.body.contains(&ok_id) && page.body.contains("failed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        page = browser.get("/executions").await;
    }
    assert!(page.body.contains("sandbox_echo") && page.body.contains("sandbox_delete_note"), "{}", page.body);
    let only_failed = browser.get("/executions?status=failed").await;
    assert!(only_failed.body.contains(&failed_id) && !only_failed.body.contains(&ok_id), "{}", only_failed.body);
    let by_tool = browser.get("/executions?tool=sandbox_echo").await;
    assert!(by_tool.body.contains(&ok_id) && !by_tool.body.contains(&failed_id));

    let detail = browser.get(&format!("/executions/{failed_id}")).await;
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains("Waiting in queue") && detail.body.contains("At the provider"), "{}", detail.body);
    assert!(detail.body.contains("provider_error") && detail.body.contains("HTTP 404"), "{}", detail.body);
    assert!(detail.body.contains("nope"), "the owner sees the arguments");
    assert!(!detail.body.contains(SANDBOX_TOKEN), "never a secret");

    let (other, _) = stack.sandbox_user("peeker@example.test").await;
    let _ = other;
    let mut peeker = Browser::new(&stack.web_url);
    peeker.sign_in("peeker@example.test", "pw").await;
    assert_eq!(peeker.get(&format!("/executions/{failed_id}")).await.status, 404);
    assert!(!peeker.get("/executions").await.body.contains(&ok_id));
    stack.finish().await;
}
