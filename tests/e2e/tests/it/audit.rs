//! The audit trail (issue 18, part 3): what a person does and what is done with their
//! credentials lands in their own hash chain, with no secret in it; the page and the
//! export show only their chain; `clawlink-api audit verify` passes on the real chain
//! and names a tampered row; the table refuses changes.

use clawlink_common::audit;
use clawlink_common::ids::UserId;
use clawlink_e2e::browser::{Browser, Page};
use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack};
use serde_json::{Value, json};
use std::time::Duration;

async fn api_post(stack: &Stack, path: &str, body: Value) -> (u16, Value) {
    let resp = stack.http.post(format!("{}{path}", stack.api_url)).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Pairs an agent through the browser the way the plugin does; returns the device's
/// credential, its id, and the pairing's session token and verifier (secrets too).
async fn pair(stack: &Stack, browser: &mut Browser, label: &str) -> (String, i64, String, String) {
    let (status, started) = api_post(stack, "/api/openclaw/pair/start", json!({"deviceLabel": label})).await;
    assert_eq!(status, 200, "{started}");
    let token = started["sessionToken"].as_str().unwrap().to_string();
    let verifier = started["verifier"].as_str().unwrap().to_string();
    let page = browser.get(&format!("/pair/{token}")).await;
    let approved = browser.post(&format!("/pair/{token}"), &[("csrf", &page.csrf()), ("decision", "approve")]).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let path = format!("/api/openclaw/pair/sessions/{token}/exchange");
    let (status, exchanged) = api_post(stack, &path, json!({"verifier": verifier})).await;
    assert_eq!(status, 200, "{exchanged}");
    let path = format!("/api/openclaw/pair/sessions/{token}/finalize");
    let (status, done) = api_post(stack, &path, json!({"verifier": verifier})).await;
    assert_eq!(status, 200, "{done}");
    let key = exchanged["apiKey"].as_str().unwrap().to_string();
    (key, exchanged["apiKeyId"].as_i64().unwrap(), token, verifier)
}

/// Connects the sandbox app with its API key through the dashboard; returns the
/// connection's id.
async fn connect_sandbox(stack: &Stack, browser: &mut Browser, user: UserId) -> i64 {
    let form = browser.get("/connections/new").await;
    let started = browser.post("/connections/new", &[("csrf", &form.csrf()), ("integration", "sandbox")]).await;
    assert_eq!(started.status, 303, "{}", started.body);
    let connect = started.location.clone().unwrap();
    let form = browser.get(&connect).await;
    let done = browser.post(&connect, &[("csrf", &form.csrf()), ("key", SANDBOX_TOKEN)]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    sqlx::query_scalar("SELECT id FROM user_integrations WHERE user_id = $1 ORDER BY id DESC LIMIT 1")
        .bind(user.0)
        .fetch_one(&stack.db)
        .await
        .unwrap()
}

/// The person's JSONL export, checked for its content type and its chain links, as
/// (raw text, parsed lines).
async fn export(browser: &mut Browser) -> (String, Vec<Value>) {
    let page: Page = browser.get("/audit.jsonl").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.headers.get("content-type").unwrap(), "application/x-ndjson");
    let lines: Vec<Value> =
        page.body.lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect();
    for pair in lines.windows(2) {
        assert_eq!(pair[1]["prevHash"], pair[0]["hash"], "each line carries the hash of the one before");
        assert!(pair[1]["id"].as_i64() > pair[0]["id"].as_i64(), "oldest first");
    }
    if let Some(first) = lines.first() {
        assert_eq!(first["prevHash"], Value::Null, "the chain starts with no predecessor");
    }
    for line in &lines {
        for field in ["id", "at", "actor", "action", "subject", "details", "hash"] {
            assert!(!line[field].is_null(), "{field} missing in {line}");
        }
        assert_eq!(line["hash"].as_str().unwrap().len(), 64, "SHA-256 in hex");
    }
    (page.body, lines)
}

fn actions(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["action"].as_str().unwrap()).collect()
}

async fn user_id(stack: &Stack, email: &str) -> UserId {
    UserId(sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(email).fetch_one(&stack.db).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_records_a_persons_changes_and_decrypts_without_secrets_and_only_for_them() {
    let stack = Stack::start(Options::default()).await;
    let mut browser = Browser::new(&stack.web_url);
    assert_eq!(browser.sign_up("audited@example.test", "correct horse battery").await.status, 303);
    let me = user_id(&stack, "audited@example.test").await;

    // The journey: pair an agent, connect an app, rename it, call a tool, set the device's
    // policy, revoke it.
    let (api_key, device, pairing_token, verifier) = pair(&stack, &mut browser, "Audited laptop").await;
    let connection = connect_sandbox(&stack, &mut browser, me).await;
    let page = browser.get("/connections").await;
    let renamed = browser
        .post(&format!("/connections/{connection}/rename"), &[("csrf", &page.csrf()), ("label", "Work sandbox")])
        .await;
    assert_eq!(renamed.status, 303, "{}", renamed.body);
    let secret_argument = "argument-that-must-not-be-audited";
    let (status, body) =
        stack.execute(&api_key, "sandbox_echo", json!({"arguments": {"message": secret_argument}}), &[]).await;
    assert_eq!(status, 200, "{body}");
    let execution_id = body["executionId"].as_str().unwrap().to_string();
    let devices = browser.get("/devices").await;
    let policy =
        browser.post(&format!("/devices/{device}/policy"), &[("csrf", &devices.csrf()), ("policy", "person")]).await;
    assert_eq!(policy.status, 303, "{}", policy.body);
    let revoked = browser.post(&format!("/devices/{device}/revoke"), &[("csrf", &devices.csrf())]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);

    // Each step is in the person's chain, in order, by the right actor.
    let (raw, lines) = export(&mut browser).await;
    assert_eq!(
        actions(&lines),
        [
            audit::PAIRING_APPROVED,
            audit::DEVICE_PAIRED,
            audit::CONNECTION_CREATED,
            audit::CONNECTION_RENAMED,
            audit::CREDENTIAL_DECRYPTED,
            audit::DEVICE_POLICY_CHANGED,
            audit::DEVICE_REVOKED,
        ],
        "{raw}"
    );
    let find = |action: &str| lines.iter().find(|l| l["action"] == action).unwrap().clone();
    let person = format!("person:{me}");
    assert_eq!(find(audit::PAIRING_APPROVED)["actor"], person.as_str());
    assert_eq!(find(audit::DEVICE_PAIRED)["actor"], format!("device:{device}"));
    assert_eq!(find(audit::DEVICE_PAIRED)["subject"], format!("device:{device}"));
    assert_eq!(find(audit::CONNECTION_CREATED)["subject"], format!("connection:{connection}"));
    assert_eq!(find(audit::CONNECTION_CREATED)["details"]["integration"], "sandbox");
    assert_eq!(find(audit::CONNECTION_RENAMED)["details"]["label"], "Work sandbox");
    let decrypted = find(audit::CREDENTIAL_DECRYPTED);
    assert_eq!(decrypted["actor"], "worker");
    assert_eq!(decrypted["subject"], format!("connection:{connection}"));
    assert_eq!(decrypted["details"]["executionId"], execution_id.as_str());
    assert_eq!(decrypted["details"]["tool"], "sandbox_echo");
    assert_eq!(find(audit::DEVICE_POLICY_CHANGED)["details"]["policy"], "person");
    assert_eq!(find(audit::DEVICE_REVOKED)["actor"], person.as_str());

    // No secret anywhere: not the device credential (nor its recognisable prefix), not
    // the app's key, not the pairing's token or verifier, not the call's arguments.
    for secret in [api_key.as_str(), SANDBOX_TOKEN, pairing_token.as_str(), verifier.as_str(), secret_argument] {
        assert!(!raw.contains(secret), "the export holds a secret: {secret}");
    }
    assert!(!raw.contains("clk_live_"), "{raw}");
    let stored: String =
        sqlx::query_scalar("SELECT string_agg(actor || subject || details::text, ' ') FROM audit_events")
            .fetch_one(&stack.db)
            .await
            .unwrap();
    for secret in [api_key.as_str(), SANDBOX_TOKEN, secret_argument] {
        assert!(!stored.contains(secret), "the table holds a secret: {secret}");
    }

    // The page shows the same, newest first.
    let page = browser.get("/audit").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let revoked_at = page.body.find(audit::DEVICE_REVOKED).expect("revocation on the page");
    let approved_at = page.body.find(audit::PAIRING_APPROVED).expect("pairing on the page");
    assert!(revoked_at < approved_at, "newest first");
    assert!(page.body.contains("href=\"/audit\""), "the nav links the page");
    // Paging: before the oldest event there is nothing; a bad `before` is a 400 page.
    let oldest = lines[0]["id"].as_i64().unwrap();
    let older = browser.get(&format!("/audit?before={oldest}")).await;
    assert_eq!(older.status, 200);
    assert!(older.body.contains("No older entries") && !older.body.contains(audit::PAIRING_APPROVED), "{}", older.body);
    let newest = lines.last().unwrap()["id"].as_i64().unwrap();
    let before_newest = browser.get(&format!("/audit?before={newest}")).await;
    assert!(
        !before_newest.body.contains(audit::DEVICE_REVOKED) && before_newest.body.contains(audit::PAIRING_APPROVED)
    );
    for bad in ["abc", "-1", "0", "1e9", "99999999999999999999"] {
        assert_eq!(browser.get(&format!("/audit?before={bad}")).await.status, 400, "before={bad}");
    }
    // Signed out: sent to sign in, for the page and the export.
    let mut anonymous = Browser::new(&stack.web_url);
    assert_eq!(anonymous.get("/audit").await.status, 303);
    assert_eq!(anonymous.get("/audit.jsonl").await.status, 303);

    // Another account's events never show on this person's page or export, nor theirs here.
    let (other, other_connection) = stack.sandbox_user("other@example.test").await;
    let (status, body) =
        stack.execute(&other.api_key, "sandbox_echo", json!({"arguments": {"message": "x"}}), &[]).await;
    assert_eq!(status, 200, "{body}");
    let other_execution = body["executionId"].as_str().unwrap().to_string();
    let mut other_browser = Browser::new(&stack.web_url);
    assert_eq!(other_browser.sign_in("other@example.test", "pw").await.status, 303);
    let (other_raw, other_lines) = export(&mut other_browser).await;
    assert_eq!(actions(&other_lines), [audit::CREDENTIAL_DECRYPTED], "{other_raw}");
    assert!(other_raw.contains(&other_execution));
    assert!(!other_raw.contains(&execution_id) && !other_raw.contains(&format!("connection:{connection}")));
    let (raw_after, lines_after) = export(&mut browser).await;
    assert_eq!(lines_after.len(), lines.len(), "{raw_after}");
    assert!(!raw_after.contains(&other_execution));
    assert!(!raw_after.contains(&format!("connection:{other_connection}")));
    let page = browser.get("/audit").await;
    assert!(!page.body.contains(&other_execution), "{}", page.body);
    let other_page = other_browser.get("/audit").await;
    assert!(!other_page.body.contains(audit::DEVICE_REVOKED), "{}", other_page.body);
    stack.finish().await;
}

/// Runs `clawlink-api audit verify` against the stack's database: (success, stdout).
async fn verify(stack: &Stack) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(clawlink_e2e::bin_dir().join("clawlink-api"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).args(["audit", "verify"]);
    for (k, v) in stack.env_pairs() {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("verify in time").unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_passes_on_the_real_chain_and_names_a_tampered_row_and_changes_are_refused() {
    let mut stack = Stack::start(Options::default()).await;
    stack.start_worker().await;
    let (alice, _) = stack.sandbox_user("alice@example.test").await;
    let (bob, _) = stack.sandbox_user("bob@example.test").await;

    // Concurrent calls of one account (claimed in batches by two workers) chain without a
    // fork: every decrypt is recorded once and the chain verifies.
    let calls = (0..24).map(|i| {
        let key = if i % 3 == 0 { bob.api_key.clone() } else { alice.api_key.clone() };
        let stack = &stack;
        async move { stack.execute(&key, "sandbox_echo", json!({"arguments": {"message": format!("m{i}")}}), &[]).await }
    });
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    // The operator chain too.
    let mut conn = stack.db.acquire().await.unwrap();
    let event = audit::Event {
        user: None,
        actor: audit::Actor::Operator,
        action: audit::ADMIN_REPLAYED,
        subject: "execution:test",
        details: json!({}),
    };
    audit::record(&mut conn, &event).await.unwrap();
    let decrypts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE user_id = $1 AND action = 'credential.decrypted'")
            .bind(alice.id.0)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!(decrypts, 16);

    let (ok, out) = verify(&stack).await;
    assert!(ok, "{out}");
    assert!(out.contains("chain operator: 1 rows, ok"), "{out}");
    assert!(out.contains(&format!("chain user:{}: 16 rows, ok", alice.id)), "{out}");
    assert!(out.contains(&format!("chain user:{}: 8 rows, ok", bob.id)), "{out}");

    // Through a normal session the table is append-only.
    let target: i64 = sqlx::query_scalar("SELECT id FROM audit_events WHERE user_id = $1 ORDER BY id OFFSET 5 LIMIT 1")
        .bind(alice.id.0)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    for statement in [
        "UPDATE audit_events SET details = '{\"forged\": true}' WHERE id = $1",
        "DELETE FROM audit_events WHERE id = $1",
    ] {
        let err = sqlx::query(statement).bind(target).execute(&mut *conn).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    let err = sqlx::query("TRUNCATE audit_events").execute(&mut *conn).await.unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let (ok, out) = verify(&stack).await;
    assert!(ok, "refused changes changed nothing: {out}");

    // Tampering with triggers bypassed (a superuser's replica session) is found: the
    // verifier names the row, its chain and its action, and fails.
    sqlx::query("SET session_replication_role = replica").execute(&mut *conn).await.unwrap();
    sqlx::query("UPDATE audit_events SET details = '{\"forged\": true}' WHERE id = $1")
        .bind(target)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("RESET session_replication_role").execute(&mut *conn).await.unwrap();
    drop(conn);
    let (ok, out) = verify(&stack).await;
    assert!(!ok, "a tampered chain must fail verification: {out}");
    assert!(
        out.contains(&format!("chain user:{}: 16 rows, BROKEN at row {target} (credential.decrypted)", alice.id)),
        "{out}"
    );
    assert!(out.contains(&format!("chain user:{}: 8 rows, ok", bob.id)), "other chains are intact: {out}");
    assert!(out.contains("chain operator: 1 rows, ok"), "{out}");
    stack.finish().await;
}
