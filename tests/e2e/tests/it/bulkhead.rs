//! A bulkhead per provider (issue 19, item 3): while one provider hangs, its calls hold at
//! most their share of a worker's call slots, and another provider's sync calls keep
//! going. The same run with the bulkhead off (share 100 %) shows the stall it prevents.

use clawlink_common::provider::CredentialBundle;
use clawlink_common::secret::SecretString;
use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack};
use clawlink_emulator::{Fault, FaultKind};
use futures_util::future::join_all;
use serde_json::json;
use std::time::{Duration, Instant};

/// How long each call to the hung provider is held by the emulator.
const HANG: Duration = Duration::from_secs(6);

/// Sixteen sync calls to a hung sandbox, then one sync GitHub call: how long the GitHub
/// call took. Every sandbox call still runs exactly once.
async fn github_call_behind_a_hung_provider(share: &str) -> Duration {
    let stack = Stack::start(Options {
        workers: 1,
        env: vec![
            ("CLAWLINK_WORKER_INTERACTIVE_CONCURRENCY".into(), "8".into()),
            ("CLAWLINK_WORKER_BULK_CONCURRENCY".into(), "8".into()),
            ("CLAWLINK_WORKER_PROVIDER_SHARE_PERCENT".into(), share.into()),
        ],
        ..Default::default()
    })
    .await;
    let (user, _) = stack.sandbox_user("bulkhead@example.test").await;
    let github = CredentialBundle::Oauth2 {
        access_token: SecretString::new(SANDBOX_TOKEN),
        refresh_token: None,
        expires_at: None,
    };
    stack.connection(user.id, "github", "work", &github).await;
    stack.emulator.add_fault(Fault {
        method: Some("GET".into()),
        path: Some("/echo".into()),
        kind: FaultKind::Delay { ms: HANG.as_millis() as u64 },
        times: 100,
    });
    let key = user.api_key.clone();
    let hung =
        join_all((0..16).map(|i| {
            let (stack, key) = (&stack, key.clone());
            async move {
                stack.execute(&key, "sandbox_echo", json!({"arguments": {"message": format!("hung {i}")}}), &[]).await
            }
        }));
    let other = async {
        // Once the hung calls hold their slots.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let started = Instant::now();
        let (status, body) = stack.execute(&key, "github_list_repos", json!({"arguments": {}}), &[]).await;
        assert_eq!(status, 200, "{body}");
        started.elapsed()
    };
    let (answers, took) = tokio::join!(hung, other);
    for (status, body) in &answers {
        assert!(*status == 200 || *status == 202, "{body}");
        if *status == 202 {
            let done = stack.final_state(&key, body["executionId"].as_str().unwrap()).await;
            assert_eq!(done["status"], "succeeded", "{done}");
        } else {
            assert_eq!(body["ok"], true, "{body}");
        }
    }
    stack.wait_for_rows_final().await;
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), 16, "each hung call ran once, none was lost");
    stack.finish().await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_provider_holds_only_its_share_of_slots_and_other_calls_go_on() {
    // A quarter of the 16 slots: 4 hung calls at a time; the other 12 wait in a delay queue.
    let with = github_call_behind_a_hung_provider("25").await;
    let without = github_call_behind_a_hung_provider("100").await;
    eprintln!("a sync GitHub call behind 16 hung sandbox calls: {with:?} with the bulkhead, {without:?} without");
    assert!(without >= HANG / 2, "without a bulkhead the interactive slots are all held: {without:?}");
    assert!(with < Duration::from_secs(2), "with it the GitHub call is not held back: {with:?}");
}
