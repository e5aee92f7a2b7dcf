//! Grants per device (issue 18, part 1): the person chooses what a paired agent may use on
//! the pairing approval page and changes it on the devices page; every agent endpoint keeps
//! to it. A device paired with the default grant behaves exactly as before (the published
//! OpenClaw plugin's tests in `agent.rs` still pass unchanged). Side effects are counted
//! by the emulator: a refused call never reaches the provider.

use clawlink_common::ids::ConnectionId;
use clawlink_e2e::browser::Browser;
use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack, TestUser};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// Pairs a new device of the signed-in `person`, who approves it with `grant` (the picker's
/// form fields), and returns its credential and device id.
pub(crate) async fn pair_with_grant(
    stack: &Stack,
    person: &mut Browser,
    label: &str,
    grant: &[(&str, &str)],
) -> (String, i64) {
    let (status, started) = stack.public_post("/api/openclaw/pair/start", json!({"deviceLabel": label})).await;
    assert_eq!(status, 200, "{started}");
    let token = started["sessionToken"].as_str().unwrap().to_string();
    let verifier = started["verifier"].as_str().unwrap().to_string();
    let page = person.get(&format!("/pair/{token}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf();
    let mut form = vec![("csrf", csrf.as_str()), ("decision", "approve")];
    form.extend_from_slice(grant);
    let approved = person.post(&format!("/pair/{token}"), &form).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert!(approved.body.contains("can now act for you"), "{}", approved.body);
    let (status, exchanged) = stack
        .public_post(&format!("/api/openclaw/pair/sessions/{token}/exchange"), json!({"verifier": verifier}))
        .await;
    assert_eq!(status, 200, "{exchanged}");
    let (status, done) = stack
        .public_post(&format!("/api/openclaw/pair/sessions/{token}/finalize"), json!({"verifier": verifier}))
        .await;
    assert_eq!(status, 200, "{done}");
    (exchanged["apiKey"].as_str().unwrap().to_string(), exchanged["apiKeyId"].as_i64().unwrap())
}

fn names(listed: &Value) -> BTreeSet<String> {
    listed["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// MCP `tools/list` (every page) and one `tools/call` with the official Rust SDK.
async fn mcp_client(stack: &Stack, key: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{}/api/mcp", stack.api_url));
    config.auth_header = Some(key.to_string());
    ().serve(StreamableHttpClientTransport::from_config(config)).await.expect("MCP initialize")
}

async fn mcp_call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    tool: &str,
    args: Value,
) -> rmcp::model::CallToolResult {
    let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args.as_object().unwrap().clone());
    client.call_tool(params).await.expect("tools/call")
}

/// The person, a second sandbox connection and a GitHub connection; a device with the
/// default grant (`stack.user`) and one paired with a narrow grant: only the sandbox's
/// second connection, read-only.
struct Narrow {
    owner: TestUser,
    person: Browser,
    main: ConnectionId,
    second: ConnectionId,
    github: ConnectionId,
    narrow: String,
}

async fn narrow_setup(stack: &Stack, email: &str) -> Narrow {
    let (owner, main) = stack.sandbox_user(email).await;
    let second = stack.sandbox_connection(owner.id, "second", SANDBOX_TOKEN).await;
    let bundle = clawlink_common::provider::CredentialBundle::Bearer {
        token: clawlink_common::secret::SecretString::new("gh-token-for-grants"),
    };
    let github = stack.connection(owner.id, "github", "work", &bundle).await;
    let mut person = Browser::new(&stack.web_url);
    person.sign_in(email, "pw").await;
    let conn_field = format!("conn.{}", second.0);
    let (narrow, _) = pair_with_grant(
        stack,
        &mut person,
        "Narrow agent",
        &[("scope", "some"), (conn_field.as_str(), "on"), ("access", "read"), ("expires", "never")],
    )
    .await;
    Narrow { owner, person, main, second, github, narrow }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_sees_and_calls_only_what_its_grant_includes_on_every_endpoint() {
    let stack = Stack::start(Options::default()).await;
    let Narrow { owner, person: _person, main, second, github, narrow } =
        narrow_setup(&stack, "granter@example.test").await;
    let full = &owner.api_key;
    let (stranger, stranger_conn) = stack.sandbox_user("stranger@example.test").await;

    // whoami states the grant.
    let (status, me) = stack.get(&narrow, "/api/agent/whoami").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["device"]["grant"]["readOnly"], true, "{me}");
    assert_eq!(me["device"]["grant"]["apps"], json!([{"integration": "sandbox", "connectionIds": [second.0]}]));
    let (_, me) = stack.get(full, "/api/agent/whoami").await;
    assert_eq!(me["device"]["grant"]["apps"], Value::Null, "the default grant: every app");

    // List: only the sandbox's read tools; the full device still sees everything.
    let (status, listed) = stack.get(&narrow, "/api/tools").await;
    assert_eq!(status, 200, "{listed}");
    let seen = names(&listed);
    assert_eq!(
        seen,
        ["sandbox_echo", "sandbox_list_messages", "sandbox_list_notes"].into_iter().map(String::from).collect(),
        "{listed}"
    );
    assert_eq!(listed["total"], 3);
    let (_, everything) = stack.get(full, "/api/tools").await;
    let all = names(&everything);
    assert!(all.contains("github_create_issue") && all.contains("sandbox_create_note"), "{everything}");
    assert!(all.len() > 20);
    let (_, filtered) = stack.get(&narrow, "/api/tools?integration=github").await;
    assert_eq!(filtered["count"], 0, "{filtered}");
    let (_, paged) = stack.get(&narrow, "/api/tools?limit=2").await;
    assert_eq!((paged["count"].as_u64(), paged["total"].as_u64()), (Some(2), Some(3)), "{paged}");
    let echo = &listed["tools"].as_array().unwrap().iter().find(|t| t["name"] == "sandbox_echo").unwrap().clone();
    assert_eq!(echo["connectionCount"], 1, "only the granted connection counts: {echo}");
    assert_eq!(echo["defaultConnectionId"], second.0, "{echo}");

    // Search: nothing outside the grant, whatever the words.
    for query in ["create an issue on github", "create a note", "delete a note", "echo a message"] {
        let (status, found) = stack.get(&narrow, &format!("/api/tools/search?query={}", query.replace(' ', "+"))).await;
        assert_eq!(status, 200, "{found}");
        for name in names(&found) {
            assert!(seen.contains(&name), "{query:?} found {name} outside the grant");
        }
    }
    let (_, found) = stack.get(full, "/api/tools/search?query=create+an+issue+on+github").await;
    assert!(names(&found).contains("github_create_issue"), "{found}");

    // Describe, preview, execute: a tool outside the grant is refused with not_granted.
    for tool in ["github_create_issue", "github_list_repos", "sandbox_create_note", "sandbox_delete_note"] {
        let (status, body) = stack.get(&narrow, &format!("/api/tools/{tool}")).await;
        assert_eq!((status, code(&body)), (403, "not_granted"), "describe {tool}: {body}");
        let (status, body) =
            stack.post_json(&narrow, &format!("/api/tools/{tool}/preview"), json!({"arguments": {}})).await;
        assert_eq!((status, code(&body)), (403, "not_granted"), "preview {tool}: {body}");
        let (status, body) = stack.execute(&narrow, tool, json!({"arguments": {}, "confirmed": true}), &[]).await;
        assert_eq!((status, code(&body)), (403, "not_granted"), "execute {tool}: {body}");
        assert_eq!(body["error"]["type"], "grant", "{body}");
    }
    let (status, described) = stack.get(&narrow, "/api/tools/sandbox_echo").await;
    assert_eq!(status, 200, "{described}");
    let ids: Vec<i64> =
        described["tool"]["connections"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![second.0], "{described}");

    // A call without a connection uses the granted one, not the account's default (main).
    let (status, previewed) =
        stack.post_json(&narrow, "/api/tools/sandbox_echo/preview", json!({"arguments": {"message": "hi"}})).await;
    assert_eq!(status, 200, "{previewed}");
    assert_eq!(previewed["connectionId"], second.0);
    let (status, ran) = stack.execute(&narrow, "sandbox_echo", json!({"arguments": {"message": "granted"}}), &[]).await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["connectionId"], second.0, "{ran}");
    // Naming another connection — of this account or another's — is refused.
    for other in [main.0, stranger_conn.0, github.0] {
        let body = json!({"arguments": {"message": "x"}, "connectionId": other});
        let (status, refused) = stack.execute(&narrow, "sandbox_echo", body.clone(), &[]).await;
        assert_eq!((status, code(&refused)), (403, "not_granted"), "{refused}");
        let (status, refused) = stack.post_json(&narrow, "/api/tools/sandbox_echo/preview", body).await;
        assert_eq!((status, code(&refused)), (403, "not_granted"), "{refused}");
    }
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), 1, "only the granted call reached the provider");
    assert_eq!(stack.emulator.stats().count("POST", "/notes"), 0);

    // The full device, as before: main is its default; a stranger's connection is not found.
    let (status, ran_full) = stack.execute(full, "sandbox_echo", json!({"arguments": {"message": "full"}}), &[]).await;
    assert_eq!(status, 200, "{ran_full}");
    assert_eq!(ran_full["connectionId"], main.0);
    let (status, body) = stack
        .execute(full, "sandbox_echo", json!({"arguments": {"message": "x"}, "connectionId": stranger_conn.0}), &[])
        .await;
    assert_eq!((status, code(&body)), (404, "connection_not_found"), "{body}");

    // Executions: the narrow device cannot read a call made on a connection outside its
    // grant; nobody reads another account's.
    let full_id = ran_full["executionId"].as_str().unwrap();
    let (status, body) = stack.get(&narrow, &format!("/api/executions/{full_id}")).await;
    assert_eq!((status, code(&body)), (404, "execution_not_found"), "{body}");
    let narrow_id = ran["executionId"].as_str().unwrap();
    let (status, _) = stack.get(&narrow, &format!("/api/executions/{narrow_id}")).await;
    assert_eq!(status, 200);
    let (status, body) = stack.get(&stranger.api_key, &format!("/api/executions/{narrow_id}")).await;
    assert_eq!((status, code(&body)), (404, "execution_not_found"), "{body}");

    // Integrations and the catalog: only what the grant includes.
    let (_, integrations) = stack.get(&narrow, "/api/integrations").await;
    let listed: Vec<i64> =
        integrations["integrations"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(listed, vec![second.0], "{integrations}");
    let (_, catalog) = stack.get(&narrow, "/api/catalog").await;
    let apps: Vec<&str> =
        catalog["integrations"].as_array().unwrap().iter().map(|p| p["integration"].as_str().unwrap()).collect();
    assert_eq!(apps, vec!["sandbox"], "{catalog}");
    let (status, body) = stack.post_json(&narrow, "/api/connect/start", json!({"integration": "github"})).await;
    assert_eq!((status, code(&body)), (403, "not_granted"), "{body}");

    // MCP: the same grant.
    let client = mcp_client(&stack, &narrow).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let listed: BTreeSet<String> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(listed, seen, "MCP lists what REST lists");
    let refused = mcp_call(&client, "github_create_issue", json!({"owner": "o", "repo": "r", "title": "t"})).await;
    assert_eq!(refused.is_error, Some(true));
    assert_eq!(refused.structured_content.as_ref().unwrap()["code"], "not_granted", "{refused:?}");
    let refused = mcp_call(&client, "sandbox_create_note", json!({"text": "no"})).await;
    assert_eq!(refused.structured_content.as_ref().unwrap()["code"], "not_granted", "{refused:?}");
    let ok = mcp_call(&client, "sandbox_echo", json!({"message": "over mcp"})).await;
    assert_eq!(ok.is_error, Some(false), "{ok:?}");
    assert_eq!(ok.structured_content.as_ref().unwrap()["connectionId"], second.0);
    client.cancel().await.ok();
    let stats = stack.emulator.stats();
    assert_eq!(stats.count("GET", "/echo"), 3, "the narrow device's two echoes and the full device's one");
    assert_eq!(stats.requests.len(), 3, "no refused call reached a provider: {:?}", stats.requests);
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_budget_holds_under_concurrency_and_the_devices_page_raises_it() {
    let stack = Stack::start(Options::default()).await;
    let (_owner, _) = stack.sandbox_user("budget@example.test").await;
    let mut person = Browser::new(&stack.web_url);
    person.sign_in("budget@example.test", "pw").await;
    let (key, device) = pair_with_grant(&stack, &mut person, "Budgeted agent", &[("budget", "5")]).await;

    // Twenty calls at once: exactly five are accepted.
    let calls = (0..20).map(|i| {
        let (stack, key) = (&stack, key.clone());
        async move {
            let idem = format!("budget-{i}");
            stack
                .execute(
                    &key,
                    "sandbox_echo",
                    json!({"arguments": {"message": format!("call {i}")}}),
                    &[("idempotency-key", idem.as_str())],
                )
                .await
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let ok: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 200).map(|(_, b)| b).collect();
    let refused: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 403).map(|(_, b)| b).collect();
    assert_eq!((ok.len(), refused.len()), (5, 15), "{answers:?}");
    assert!(refused.iter().all(|b| code(b) == "grant_budget_exhausted"), "{refused:?}");
    assert_eq!(refused[0]["callBudget"], 5, "{:?}", refused[0]);
    stack.wait_for_rows_final().await;
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), 5, "only the budgeted calls ran");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM executions").fetch_one(&stack.db).await.unwrap();
    assert_eq!(rows, 5, "a refused call records nothing");

    // A retry of an accepted call is answered as a replay, not refused and not run again.
    let accepted = answers.iter().position(|(s, _)| *s == 200).unwrap();
    let idem = format!("budget-{accepted}");
    let (status, replay) = stack
        .execute(
            &key,
            "sandbox_echo",
            json!({"arguments": {"message": format!("call {accepted}")}}),
            &[("idempotency-key", idem.as_str())],
        )
        .await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["executionId"], answers[accepted].1["executionId"]);
    let (status, body) = stack.execute(&key, "sandbox_echo", json!({"arguments": {"message": "one more"}}), &[]).await;
    assert_eq!((status, code(&body)), (403, "grant_budget_exhausted"), "{body}");
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), 5);
    // Previews and lists are not calls: they still work.
    let (status, _) = stack.get(&key, "/api/tools").await;
    assert_eq!(status, 200);

    // The devices page shows the count and raises the budget; a new budget starts afresh.
    let devices = person.get("/devices").await;
    assert!(devices.body.contains("5 of 5 calls used"), "{}", devices.body);
    let form = person.get(&format!("/devices/{device}/grant")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains(r#"value="5""#), "the form shows the budget: {}", form.body);
    let saved = person
        .post(
            &format!("/devices/{device}/grant"),
            &[("csrf", &form.csrf()), ("scope", "all"), ("access", "read_write"), ("budget", "7"), ("expires", "keep")],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    // The audit trail has the grant chosen at pairing and the change, before and after.
    let approved: Value = sqlx::query_scalar("SELECT details FROM audit_events WHERE action = 'pairing.approved'")
        .fetch_one(&stack.db)
        .await
        .unwrap();
    assert_eq!(approved["grant"]["callBudget"], 5, "{approved}");
    let changed: Value =
        sqlx::query_scalar("SELECT details FROM audit_events WHERE action = 'grant.changed' AND subject = $1")
            .bind(format!("device:{device}"))
            .fetch_one(&stack.db)
            .await
            .unwrap();
    assert_eq!(
        (changed["before"]["callBudget"].as_i64(), changed["after"]["callBudget"].as_i64()),
        (Some(5), Some(7)),
        "{changed}"
    );
    assert!(!changed.to_string().contains(&key), "no credential in the trail");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = stack.execute(&key, "sandbox_echo", json!({"arguments": {"message": "raised"}}), &[]).await;
    assert_eq!(status, 200, "{body}");
    let (_, me) = stack.get(&key, "/api/agent/whoami").await;
    assert_eq!(
        (me["device"]["grant"]["callBudget"].as_i64(), me["device"]["grant"]["callsLeft"].as_i64()),
        (Some(7), Some(6)),
        "{me}"
    );
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_grant_reaches_nothing_until_the_person_extends_it() {
    let stack = Stack::start(Options::default()).await;
    let (_owner, _) = stack.sandbox_user("expiry@example.test").await;
    let mut person = Browser::new(&stack.web_url);
    person.sign_in("expiry@example.test", "pw").await;
    let (key, device) = pair_with_grant(&stack, &mut person, "Short-lived agent", &[("expires", "1h")]).await;
    let (_, me) = stack.get(&key, "/api/agent/whoami").await;
    assert!(me["device"]["grant"]["expiresAt"].is_string(), "{me}");
    let (status, _) = stack.execute(&key, "sandbox_echo", json!({"arguments": {"message": "in time"}}), &[]).await;
    assert_eq!(status, 200);

    // An hour later (moved, not waited for).
    sqlx::query("UPDATE devices SET grant_expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(device)
        .execute(&stack.db)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let echo = json!({"arguments": {"message": "late"}});
    let refusals = [
        stack.get(&key, "/api/tools").await,
        stack.get(&key, "/api/tools/search?query=echo").await,
        stack.get(&key, "/api/tools/sandbox_echo").await,
        stack.post_json(&key, "/api/tools/sandbox_echo/preview", echo.clone()).await,
        stack.execute(&key, "sandbox_echo", echo.clone(), &[]).await,
        stack.get(&key, "/api/integrations").await,
        stack.post_json(&key, "/api/mcp", json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await,
    ];
    for (status, body) in &refusals {
        assert_eq!((*status, code(body)), (403, "grant_expired"), "{body}");
    }
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), 1, "nothing ran after the expiry");

    // The person removes the expiry on the devices page.
    let form = person.get(&format!("/devices/{device}/grant")).await;
    assert!(form.body.contains("Keep: "), "the form shows the expiry: {}", form.body);
    let saved = person.post(&format!("/devices/{device}/grant"), &[("csrf", &form.csrf()), ("expires", "never")]).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = stack.execute(&key, "sandbox_echo", echo, &[]).await;
    assert_eq!(status, 200, "{body}");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_form_refuses_bad_input_and_other_peoples_devices_and_changes_nothing() {
    let stack = Stack::start(Options::default()).await;
    let Narrow { owner: _owner, mut person, second, narrow, .. } = narrow_setup(&stack, "forms@example.test").await;
    let (other, other_conn) = stack.sandbox_user("other@example.test").await;
    let _ = other;
    let (_, me) = stack.get(&narrow, "/api/agent/whoami").await;
    let device = me["device"]["id"].as_i64().unwrap();
    let before: Value = sqlx::query_scalar("SELECT to_jsonb(d) - 'last_used_at' FROM devices d WHERE id = $1")
        .bind(device)
        .fetch_one(&stack.db)
        .await
        .unwrap();

    // The form shows the grant as it is.
    let form = person.get(&format!("/devices/{device}/grant")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let second_box = format!(r#"name="conn.{}" checked"#, second.0);
    assert!(form.body.contains(&second_box), "{}", form.body);
    assert!(form.body.contains(r#"name="access" value="read" checked"#), "{}", form.body);
    let csrf = form.csrf();
    let path = format!("/devices/{device}/grant");
    let other_field = format!("conn.{}", other_conn.0);
    let bad: Vec<Vec<(&str, &str)>> = vec![
        vec![("budget", "abc")],
        vec![("budget", "0")],
        vec![("budget", "-3")],
        vec![("budget", "99999999999999999999")],
        vec![("access", "admin")],
        vec![("expires", "forever")],
        vec![("scope", "some")],
        vec![("scope", "some"), ("app.nosuchapp", "on")],
        vec![("scope", "some"), (other_field.as_str(), "on")],
        vec![("scope", "everything")],
    ];
    for fields in bad {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields.iter().cloned());
        let refused = person.post(&path, &form).await;
        assert_eq!(refused.status, 400, "{fields:?}: {}", refused.body);
        assert!(!refused.body.contains("internal"), "{}", refused.body);
    }
    // Without the CSRF token, nothing either.
    let forged = person.post(&path, &[("scope", "all")]).await;
    assert_eq!(forged.status, 403);
    let after: Value = sqlx::query_scalar("SELECT to_jsonb(d) - 'last_used_at' FROM devices d WHERE id = $1")
        .bind(device)
        .fetch_one(&stack.db)
        .await
        .unwrap();
    assert_eq!(before, after, "no refused form changed the device");

    // Another person cannot see or change this device's grant.
    let mut mallory = Browser::new(&stack.web_url);
    mallory.sign_in("other@example.test", "pw").await;
    assert_eq!(mallory.get(&path).await.status, 404);
    let page = mallory.get("/devices").await;
    let stolen = mallory.post(&path, &[("csrf", &page.csrf()), ("scope", "all")]).await;
    assert_eq!(stolen.status, 404, "{}", stolen.body);
    let after: Value = sqlx::query_scalar("SELECT to_jsonb(d) - 'last_used_at' FROM devices d WHERE id = $1")
        .bind(device)
        .fetch_one(&stack.db)
        .await
        .unwrap();
    assert_eq!(before, after);

    // The pairing page refuses a bad grant without approving.
    let (status, started) = stack.public_post("/api/openclaw/pair/start", json!({"deviceLabel": "Bad grant"})).await;
    assert_eq!(status, 200);
    let token = started["sessionToken"].as_str().unwrap();
    let page = person.get(&format!("/pair/{token}")).await;
    let refused = person
        .post(&format!("/pair/{token}"), &[("csrf", &page.csrf()), ("decision", "approve"), ("budget", "lots")])
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let status: String = sqlx::query_scalar("SELECT status FROM pairing_sessions WHERE token = $1")
        .bind(token)
        .fetch_one(&stack.db)
        .await
        .unwrap();
    assert_eq!(status, "awaiting_browser", "a refused grant approves nothing");
    stack.finish().await;
}
