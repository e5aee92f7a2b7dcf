//! The grant picker in a real browser (headless Chromium, as `browser_chromium`): at a
//! phone's width the person approves a pairing with a narrow grant (one of two sandbox
//! connections, read-only, a budget and an expiry); at a desktop's width they widen it on
//! the devices page. The agent sees each grant on its next request. Pages are saved under
//! `target/screenshots/` at both widths, and none may be wider than a phone.

use crate::browser_chromium::{Chromium, DESKTOP, PHONE};
use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack};
use fantoccini::Locator;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// Clicks something that does not load a page (a checkbox, a radio, a summary).
async fn tick(b: &Chromium, css: &str) {
    b.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

async fn checked(b: &Chromium, css: &str) -> bool {
    let script = format!("return document.querySelector({css:?}).checked;");
    b.client.execute(&script, vec![]).await.unwrap() == Value::Bool(true)
}

async fn tool_names(stack: &Stack, key: &str) -> BTreeSet<String> {
    let (status, listed) = stack.get(key, "/api/tools").await;
    assert_eq!(status, 200, "{listed}");
    listed["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_chooses_and_widens_a_grant_in_chromium() {
    let stack = Stack::start(Options::default()).await;
    let (owner, _main) = stack.sandbox_user("picker@example.test").await;
    let second = stack.sandbox_connection(owner.id, "second", SANDBOX_TOKEN).await;
    let browser = Chromium::start(&stack.web_url).await;
    let b = &browser;
    b.goto("/signin").await;
    b.fill("#email", "picker@example.test").await;
    b.fill("#password", "pw").await;
    b.click("main form button[type=submit]").await;

    // At a phone's width: approve the pairing with a narrow grant.
    let (status, started) =
        stack.public_post("/api/openclaw/pair/start", json!({"deviceLabel": "Phone-approved agent"})).await;
    assert_eq!(status, 200, "{started}");
    let token = started["sessionToken"].as_str().unwrap().to_string();
    let verifier = started["verifier"].as_str().unwrap().to_string();
    b.resize(PHONE).await;
    b.client.goto(started["pairUrl"].as_str().unwrap()).await.unwrap();
    assert!(b.body().await.contains("What this agent may use: every app"), "{}", b.body().await);
    assert!(checked(b, "input[name=scope][value=all]").await, "the default grant is every app");
    tick(b, "details.grant-picker summary").await;
    tick(b, "input[name=scope][value=some]").await;
    tick(b, &format!("input[name='conn.{}']", second.0)).await;
    tick(b, "input[name=access][value=read]").await;
    b.fill("#grant-budget", "10").await;
    b.client.find(Locator::Css("#grant-expires")).await.unwrap().select_by_value("7d").await.unwrap();
    b.shoot("18-pair-grant-picker").await;
    b.resize(PHONE).await;
    b.click("button[value=approve]").await;
    let page = b.body().await;
    assert!(page.contains(&format!("sandbox (connection {})", second.0)) && page.contains("read-only"), "{page}");
    assert!(page.contains("0 of 10 calls used") && page.contains("until "), "{page}");
    let exchange = format!("/api/openclaw/pair/sessions/{token}/exchange");
    let (status, exchanged) = stack.public_post(&exchange, json!({"verifier": verifier})).await;
    assert_eq!(status, 200, "{exchanged}");
    let key = exchanged["apiKey"].as_str().unwrap().to_string();
    let device = exchanged["apiKeyId"].as_i64().unwrap();
    let finalize = format!("/api/openclaw/pair/sessions/{token}/finalize");
    assert_eq!(stack.public_post(&finalize, json!({"verifier": verifier})).await.0, 200);

    let narrow = tool_names(&stack, &key).await;
    let reads: BTreeSet<String> =
        ["sandbox_echo", "sandbox_list_messages", "sandbox_list_notes"].into_iter().map(String::from).collect();
    assert_eq!(narrow, reads);
    let (status, ran) = stack.execute(&key, "sandbox_echo", json!({"arguments": {"message": "narrow"}}), &[]).await;
    assert_eq!((status, ran["connectionId"].as_i64()), (200, Some(second.0)), "{ran}");

    // At a desktop's width: the devices page shows the grant; widen it to every app.
    b.resize(DESKTOP).await;
    b.goto("/devices").await;
    let page = b.body().await;
    assert!(page.contains("1 of 10 calls used"), "{page}");
    b.shoot("19-devices-grant").await;
    b.resize(DESKTOP).await;
    b.click(&format!("a[href='/devices/{device}/grant']")).await;
    assert!(checked(b, &format!("input[name='conn.{}']", second.0)).await, "the form shows the grant as it is");
    assert!(checked(b, "input[name=access][value=read]").await);
    b.shoot("20-device-grant-form").await;
    b.resize(DESKTOP).await;
    tick(b, "input[name=scope][value=all]").await;
    tick(b, "input[name=access][value=read_write]").await;
    b.fill("#grant-budget", "").await;
    b.client.find(Locator::Css("#grant-expires")).await.unwrap().select_by_value("never").await.unwrap();
    b.click("form[aria-label^='Grant of'] button[type=submit]").await;
    assert_eq!(b.path().await, "/devices");
    assert!(b.body().await.contains("every app; read and write"), "{}", b.body().await);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let wide = tool_names(&stack, &key).await;
    assert!(wide.contains("sandbox_create_note") && wide.contains("github_create_issue"), "{wide:?}");
    let (_, me) = stack.get(&key, "/api/agent/whoami").await;
    assert_eq!(me["device"]["grant"]["apps"], Value::Null, "{me}");
    assert_eq!(me["device"]["grant"]["expiresAt"], Value::Null, "{me}");

    browser.client.clone().close().await.unwrap();
    stack.finish().await;
}
