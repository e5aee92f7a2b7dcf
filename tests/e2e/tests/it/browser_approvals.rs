//! The approvals inbox in a real browser (headless Chromium, as `browser_chromium`): the
//! person chooses "I approve each call", the agent's calls wait in the inbox with their
//! rendered preview, and one click approves one (at a phone's width) and denies another
//! (at a desktop's); the agent reads each outcome. Pages are saved under
//! `target/screenshots/` at both widths, and none may be wider than a phone.

use crate::browser_chromium::{Chromium, DESKTOP, PHONE};
use clawlink_e2e::{Options, Stack};
use serde_json::{Value, json};

async fn wait_outcome(stack: &Stack, key: &str, id: &str) -> Value {
    let (status, polled) = stack.get(key, &format!("/api/executions/{id}?waitMs=10000")).await;
    assert_eq!(status, 200, "{polled}");
    polled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_and_denies_calls_from_the_inbox_in_chromium() {
    let stack = Stack::start(Options::default()).await;
    let (agent, _) = stack.sandbox_user("inbox@example.test").await;
    let browser = Chromium::start(&stack.web_url).await;
    let b = &browser;

    b.goto("/signin").await;
    b.fill("#email", "inbox@example.test").await;
    b.fill("#password", "pw").await;
    b.click("main form button[type=submit]").await;
    b.goto("/approvals").await;
    assert!(b.body().await.contains("No call is waiting for your approval."), "{}", b.body().await);
    // The policy control: the default is checked; choose the person.
    let checked: Value =
        b.client.execute("return document.querySelector('input[name=policy]:checked').value;", vec![]).await.unwrap();
    assert_eq!(checked, "agent_confirmation");
    b.client.find(fantoccini::Locator::Css("input[name=policy][value=person]")).await.unwrap().click().await.unwrap();
    b.click("form[aria-label='Approval policy'] button[type=submit]").await;
    assert!(b.text("#notice").await.contains("Saved"), "{}", b.body().await);

    // The agent asks twice; both wait.
    let mut ids = Vec::new();
    for text in ["from my phone", "from my desk"] {
        let (status, accepted) =
            stack.execute(&agent.api_key, "sandbox_create_note", json!({"arguments": {"text": text}}), &[]).await;
        assert_eq!(status, 202, "{accepted}");
        assert_eq!(accepted["status"], "awaiting_approval");
        ids.push(accepted["executionId"].as_str().unwrap().to_string());
    }
    b.goto("/approvals").await;
    let page = b.body().await;
    for text in ["Create a sandbox note: \"from my phone\"", "Create a sandbox note: \"from my desk\"", "test-device"] {
        assert!(page.contains(text), "{text} missing: {page}");
    }
    b.shoot("15-approvals-inbox").await;

    // At a phone's width: approve the first with one tap.
    b.resize(PHONE).await;
    b.click(&format!("#approval-{} button[data-action=approve]", ids[0])).await;
    assert!(b.text("#notice").await.contains("Approved"), "{}", b.body().await);
    let polled = wait_outcome(&stack, &agent.api_key, &ids[0]).await;
    assert_eq!(polled["status"], "succeeded", "{polled}");
    assert_eq!(stack.emulator.stats().count("POST", "/notes"), 1);
    let page = b.body().await;
    assert!(!page.contains("from my phone") && page.contains("from my desk"), "only the other waits: {page}");
    b.shoot("16-approvals-one-left").await;

    // At a desktop's width: deny the second.
    b.resize(DESKTOP).await;
    b.click(&format!("#approval-{} button[data-action=deny]", ids[1])).await;
    assert!(b.text("#notice").await.contains("Denied"), "{}", b.body().await);
    let polled = wait_outcome(&stack, &agent.api_key, &ids[1]).await;
    assert_eq!(polled["error"]["code"], "approval_denied", "{polled}");
    assert!(b.body().await.contains("No call is waiting for your approval."));
    assert_eq!(stack.emulator.stats().count("POST", "/notes"), 1, "the denied call never ran");

    // The history shows both outcomes; the devices page carries the per-device control.
    b.goto("/executions").await;
    let page = b.body().await;
    assert!(page.contains("approval_denied"), "{page}");
    b.goto("/devices").await;
    let source = b.client.source().await.unwrap();
    assert!(source.contains("As the account (person)"), "{source}");
    b.shoot("17-devices-approval-policy").await;

    browser.client.clone().close().await.unwrap();
    stack.finish().await;
}
