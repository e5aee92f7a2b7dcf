//! Attack scenarios (issue 10), end to end: outbound requests steered inside (SSRF),
//! another user's ids on every endpoint, forged web forms (CSRF), secrets planted in every
//! credential kind, and a 429 storm across three workers. Pairing abuse lives in `agent.rs`; this file adds
//! token guessing to it.
//!
//! Nothing here dials an address outside loopback: the inside addresses are spelled as
//! loopback in every encoding, and a listener of ours counts whatever reaches it. The
//! other ranges (link-local, metadata, CGNAT, ULA) are refused by the same guard before
//! any connection and are checked without a network in `common/src/provider.rs`.

use clawlink_common::provider::CredentialBundle;
use clawlink_common::secret::SecretString;
use clawlink_e2e::browser::Browser;
use clawlink_e2e::{Options, SANDBOX_TOKEN, Stack};
use clawlink_emulator::{Fault, FaultKind};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A loopback listener that counts connections and answers each with a 200 JSON body,
/// so a request that got through would also look like a success.
struct Trap {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Trap {
    async fn bind(addr: &str) -> Option<Trap> {
        let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let _ = socket.read(&mut buf).await;
                    let body = r#"{"stolen":true}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Some(Trap { port, hits })
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A one-tool provider whose base URL is `base_url` (as a deployment's override or a
/// catalog file could set it).
fn provider_toml(id: &str, base_url: &str) -> String {
    format!(
        r#"
id = "{id}"
name = "{id}"
base_url = "{base_url}"
auth = {{ type = "api_key", header = "Authorization", format = "Bearer {{key}}" }}
[[tools]]
action = "read"
title = "Read"
description = "Reads something."
method = "GET"
path = "/latest/meta-data"
mode = "read"
risk = "safe"
preview = "Read"
input_schema = {{ type = "object" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_calls_cannot_be_steered_inside() {
    let v4 = Trap::bind("127.0.0.1:0").await.expect("a loopback listener");
    let v6 = Trap::bind("[::1]:0").await;
    let p = v4.port;
    let mut hosts = vec![
        format!("http://127.0.0.1:{p}"),
        format!("http://2130706433:{p}"),
        format!("http://0177.0.0.1:{p}"),
        format!("http://0x7f.1:{p}"),
        format!("http://0x7f000001:{p}"),
        format!("http://127.1:{p}"),
        format!("http://127.0.0.1.:{p}"),
        format!("http://[::ffff:127.0.0.1]:{p}"),
        format!("http://[::ffff:7f00:1]:{p}"),
        format!("http://localhost:{p}"),
        format!("http://localhost.:{p}"),
        format!("http://LocalHost:{p}"),
        format!("http://0.0.0.0:{p}"),
        format!("http://0:{p}"),
    ];
    if let Ok(name) = std::fs::read_to_string("/etc/hostname") {
        // The machine's own name, which /etc/hosts usually points at loopback.
        if !name.trim().is_empty() {
            hosts.push(format!("http://{}:{p}", name.trim()));
        }
    }
    if let Some(v6) = &v6 {
        hosts.push(format!("http://[::1]:{}", v6.port));
        hosts.push(format!("http://[0:0:0:0:0:0:0:1]:{}", v6.port));
    }
    let extra: Vec<(String, String)> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (format!("ssrf{i}.toml"), provider_toml(&format!("ssrf{i}"), h)))
        .collect();
    let stack = Stack::start(Options { extra_catalog: extra, ..Default::default() }).await;
    let (user, _) = stack.sandbox_user("ssrf@example.test").await;

    // The listener counts what reaches it (so a zero below means something).
    let direct = stack.http.get(format!("http://127.0.0.1:{p}/")).send().await.unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(v4.hits(), 1);

    for (i, host) in hosts.iter().enumerate() {
        let integration = format!("ssrf{i}");
        let bundle = CredentialBundle::ApiKey { key: SecretString::new("k") };
        stack.connection(user.id, &integration, "inside", &bundle).await;
        let (status, body) =
            stack.execute(&user.api_key, &format!("{integration}_read"), json!({"arguments": {}}), &[]).await;
        assert_ne!(status, 200, "{host}: {body}");
        assert_ne!(body["data"]["stolen"], true, "{host}: {body}");
        // A name this machine cannot resolve (`localhost.` without DNS) fails before any
        // connection too; only names that resolve are refused by the guard itself.
        let parsed = reqwest::Url::parse(host).unwrap();
        let name = parsed.host_str().unwrap().trim_start_matches('[').trim_end_matches(']').to_string();
        if tokio::net::lookup_host((name.as_str(), p)).await.is_err() {
            continue;
        }
        let message = body["error"]["message"].as_str().unwrap_or_default().to_ascii_lowercase();
        assert!(
            message.contains("public address") || message.contains("private address") || message.contains("blocked"),
            "{host}: refused for another reason: {body}"
        );
        assert_eq!(body["error"]["retryable"], false, "{host}: a blocked call is not worth retrying: {body}");
    }
    assert_eq!(v4.hits(), 1, "a call reached the IPv4 loopback listener");
    if let Some(v6) = &v6 {
        assert_eq!(v6.hits(), 0, "a call reached the IPv6 loopback listener");
    }

    // A provider's redirect towards the inside is handed back, never followed.
    stack.emulator.add_fault(Fault {
        method: Some("GET".into()),
        path: Some("/echo".into()),
        kind: FaultKind::Status {
            status: 302,
            retry_after: None,
            body: Some(json!({})),
            headers: vec![("location".into(), format!("http://127.0.0.1:{p}/latest/meta-data"))],
        },
        times: 1,
    });
    let (status, body) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "x"}}), &[]).await;
    assert_ne!(status, 200, "{body}");
    assert_eq!(body["error"]["providerStatus"], 302, "{body}");
    assert_eq!(v4.hits(), 1, "the redirect was followed");

    // Path arguments stay inside the tool's path: `..` is refused before anything is queued.
    let before = stack.emulator.stats().requests.len();
    for dots in ["..", "."] {
        let (status, body) = stack
            .execute(
                &user.api_key,
                "sandbox_delete_note",
                json!({"arguments": {"note_id": dots}, "confirmed": true}),
                &[],
            )
            .await;
        assert_eq!(status, 400, "{dots}: {body}");
        assert_eq!(body["error"]["code"], "invalid_arguments", "{body}");
    }
    assert_eq!(stack.emulator.stats().requests.len(), before, "a refused call reached the provider");
    stack.finish().await;
}

/// Alice's rows, as JSON text per table: what another person's requests must not change.
async fn rows_of(stack: &Stack, user: clawlink_common::ids::UserId) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (table, owner) in [
        ("users", "id"),
        ("devices", "user_id"),
        ("user_integrations", "user_id"),
        ("credentials", "user_id"),
        ("executions", "user_id"),
        ("connect_sessions", "user_id"),
        ("pairing_sessions", "approved_user_id"),
        ("usage_monthly", "user_id"),
        ("plan_changes", "user_id"),
        ("web_sessions", "user_id"),
    ] {
        // Table and column names are ours, from the list above.
        let sql = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]')::text FROM {table} t WHERE {owner} = $1"
        );
        let rows: String =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(user.0).fetch_one(&stack.db).await.unwrap();
        out.push((table.to_string(), rows));
    }
    out
}

/// What the web front routes, read from its router (`web/src/routes/mod.rs`), so a new
/// page is noticed here: (method, path) pairs.
fn web_routes() -> Vec<(String, String)> {
    let source = include_str!("../../../../web/src/routes/mod.rs");
    let mut routes = Vec::new();
    for line in source.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
        let path = line[".route(\"".len()..].split('"').next().unwrap().to_string();
        let handlers = &line[".route(\"".len() + path.len()..];
        for method in ["get", "post"] {
            if handlers.contains(&format!(" {method}(")) || handlers.contains(&format!(".{method}(")) {
                routes.push((method.to_string(), path.clone()));
            }
        }
    }
    assert!(routes.len() > 20, "the web router was not understood: {routes:?}");
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_ids_answer_404_and_change_nothing() {
    let stack = Stack::start(Options::default()).await;
    // Alice: a connection, an execution, an open connect session, a device, an approved
    // pairing session, a browser session.
    let (alice, alice_conn) = stack.sandbox_user("alice@example.test").await;
    sqlx::query("UPDATE user_integrations SET connection_label = 'alice-private-label' WHERE id = $1")
        .bind(alice_conn.0)
        .execute(&stack.db)
        .await
        .unwrap();
    let (status, done) = stack
        .execute(
            &alice.api_key,
            "sandbox_echo",
            json!({"arguments": {"message": "alice"}}),
            &[("idempotency-key", "k1")],
        )
        .await;
    assert_eq!(status, 200, "{done}");
    let alice_exec = done["executionId"].as_str().unwrap().to_string();
    let (_, connect) = stack
        .post_json(&alice.api_key, "/api/connect/start", json!({"integration": "stripe", "reuseIfConnected": false}))
        .await;
    let alice_connect = connect["sessionToken"].as_str().expect("a connect session").to_string();
    let alice_device: i64 = sqlx::query_scalar("SELECT id FROM devices WHERE user_id = $1")
        .bind(alice.id.0)
        .fetch_one(&stack.db)
        .await
        .unwrap();
    let mut alice_browser = Browser::new(&stack.web_url);
    assert_eq!(alice_browser.sign_in("alice@example.test", "pw").await.status, 303);
    let (_, pairing) = stack
        .http
        .post(format!("{}/api/openclaw/pair/start", stack.api_url))
        .json(&json!({"deviceLabel": "alice-agent"}))
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    let pairing: Value = pairing.json().await.unwrap();
    let alice_pairing = pairing["sessionToken"].as_str().unwrap().to_string();
    let page = alice_browser.get(&format!("/pair/{alice_pairing}")).await;
    let approved =
        alice_browser.post(&format!("/pair/{alice_pairing}"), &[("csrf", &page.csrf()), ("decision", "approve")]).await;
    assert_eq!(approved.status, 200, "{}", approved.body);

    // Mallory: her own account, connection, device and browser.
    let (mallory, mallory_conn) = stack.sandbox_user("mallory@example.test").await;
    let mut browser = Browser::new(&stack.web_url);
    assert_eq!(browser.sign_in("mallory@example.test", "pw").await.status, 303);
    let csrf = browser.get("/devices").await.csrf();

    let before = rows_of(&stack, alice.id).await;
    let secrets_of_alice = ["alice@example.test", "alice-private-label", alice_exec.as_str(), alice_connect.as_str()];
    let leaks = |what: &str, body: &str| {
        for s in secrets_of_alice {
            assert!(!body.contains(s), "{what} shows Alice's {s}: {body}");
        }
    };

    // The agent plane, route by route.
    let key = mallory.api_key.as_str();
    let a = alice_conn.0;
    for (method, path, _, _) in clawlink_api::routes::ROUTES {
        let what = format!("{method} {path}");
        // (expected status, request) per route; `None` expects any 2xx and checks for leaks.
        let (expect, url, body): (Option<u16>, String, Option<Value>) = match (*method, *path) {
            // No id of anyone's: public, or about the caller only.
            ("get", "/healthz" | "/readyz" | "/metrics" | "/api/openapi.json" | "/api/agent/whoami")
            | ("get", "/api/catalog" | "/api/integrations" | "/api/tools") => (None, path.to_string(), None),
            ("post", "/api/openclaw/pair/start") => (None, path.to_string(), Some(json!({"deviceLabel": "m"}))),
            ("get", "/api/tools/{name}") => (None, "/api/tools/sandbox_echo".into(), None),
            ("get", "/api/tools/search") => (None, "/api/tools/search?query=echo".into(), None),
            ("post", "/api/connect/start") => {
                (None, path.to_string(), Some(json!({"integration": "sandbox", "reuseIfConnected": true})))
            }
            // Pairing sessions belong to a device until approved; the session token and
            // the verifier guard them (agent.rs). Alice's approved session: a wrong
            // verifier is refused and changes nothing.
            ("get", "/api/openclaw/pair/sessions/{token}") => {
                (None, format!("/api/openclaw/pair/sessions/{alice_pairing}"), None)
            }
            (
                "post",
                "/api/openclaw/pair/sessions/{token}/exchange" | "/api/openclaw/pair/sessions/{token}/finalize",
            ) => (Some(400), path.replace("{token}", &alice_pairing), Some(json!({"verifier": "not-alices-verifier"}))),
            // Alice's ids.
            ("post", "/api/mcp") => (
                None,
                path.to_string(),
                Some(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "sandbox_echo", "arguments": {"message": "m"}, "_meta": {"connectionId": a}}})),
            ),
            ("get", "/api/connect/sessions/{token}") => {
                (Some(404), format!("/api/connect/sessions/{alice_connect}"), None)
            }
            ("post", "/api/tools/{name}/preview") => (
                Some(404),
                "/api/tools/sandbox_echo/preview".into(),
                Some(json!({"arguments": {"message": "m"}, "connectionId": a})),
            ),
            ("post", "/api/tools/{name}/execute") => (
                Some(404),
                "/api/tools/sandbox_echo/execute".into(),
                Some(json!({"arguments": {"message": "m"}, "connectionId": a})),
            ),
            ("get", "/api/executions/{id}") => (Some(404), format!("/api/executions/{alice_exec}"), None),
            _ => panic!("{what} has no case in the cross-user table: add one"),
        };
        let mut request = match body {
            Some(b) => stack.http.post(format!("{}{url}", stack.api_url)).json(&b),
            None => stack.http.get(format!("{}{url}", stack.api_url)),
        };
        request = request.header("x-clawlink-api-key", key).header("idempotency-key", "k1");
        if *path == "/api/mcp" {
            request = request.header("accept", "application/json, text/event-stream");
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        match expect {
            Some(want) => assert_eq!(status, want, "{what}: {text}"),
            None => assert!(status < 300 || status == 429, "{what}: {status} {text}"),
        }
        if *path == "/api/mcp" {
            assert!(
                text.contains("isError") || text.contains("\"error\""),
                "{what}: Alice's connection was used: {text}"
            );
            assert!(!text.contains("\"echo\""), "{what}: {text}");
        }
        if *path != "/api/openclaw/pair/sessions/{token}" {
            leaks(&what, &text);
        }
    }

    // The browser plane, every page of the router.
    for (method, path) in web_routes() {
        let what = format!("web {method} {path}");
        let foreign = |p: &str| {
            p.replace(
                "{id}",
                &match path.as_str() {
                    "/executions/{id}" | "/approvals/{id}/approve" | "/approvals/{id}/deny" => alice_exec.clone(),
                    "/devices/{id}/revoke" | "/devices/{id}/policy" => alice_device.to_string(),
                    _ => a.to_string(),
                },
            )
            .replace("{token}", &alice_connect)
        };
        let expect: Option<u16> = match (method.as_str(), path.as_str()) {
            // The admin view: Mallory is no admin, so it does not exist for her.
            ("get", "/admin/queues" | "/admin/queues.json") => Some(404),
            (
                "get",
                "/" | "/healthz" | "/readyz" | "/static/style.css" | "/static/admin.js" | "/signup" | "/signin",
            )
            | ("get", "/metrics")
            | ("get", "/connections" | "/connections/new" | "/billing" | "/executions" | "/devices" | "/approvals")
            // The caller's own audit chain (another account's never shows: `leaks` below).
            | ("get", "/audit" | "/audit.jsonl") => None,
            // Forms about the caller only; posted empty they are refused or redirect.
            (
                "post",
                "/signup" | "/signin" | "/signout" | "/connections/new" | "/billing/checkout" | "/approvals/policy",
            ) => {
                if path == "/signout" {
                    continue; // would end Mallory's session for the rest of the table
                }
                Some(0)
            }
            // Signed by the payment provider, not tied to a browser: an unsigned call is refused.
            ("post", "/billing/webhook") => Some(400),
            // The state is the secret; a stranger's use of a leaked callback is in oauth.rs.
            ("get", "/oauth/callback") => Some(400),
            // Alice's approved pairing session: shown as decided, and deciding again changes nothing.
            ("get" | "post", "/pair/{token}") => {
                let url = format!("/pair/{alice_pairing}");
                let page = if method == "get" {
                    browser.get(&url).await
                } else {
                    browser.post(&url, &[("csrf", &csrf), ("decision", "deny")]).await
                };
                assert!(
                    page.body.contains("approved already") || page.body.contains("Nothing changed"),
                    "{what}: {}",
                    page.body
                );
                leaks(&what, &page.body);
                continue;
            }
            ("get" | "post", _) if path.contains('{') => Some(404),
            _ => panic!("{what} has no case in the cross-user table: add one"),
        };
        let url = foreign(&path);
        let page = if method == "get" {
            browser.get(&url).await
        } else {
            browser
                .post(&url, &[("csrf", &csrf), ("label", "pwned"), ("key", SANDBOX_TOKEN), ("decision", "approve")])
                .await
        };
        match expect {
            Some(0) => assert!(page.status < 500, "{what}: {} {}", page.status, page.body),
            Some(want) => assert_eq!(page.status, want, "{what} ({url}): {}", page.body),
            None => assert!(matches!(page.status, 200 | 303), "{what}: {} {}", page.status, page.body),
        }
        leaks(&what, &page.body);
    }

    // Nothing of Alice's changed, and Mallory's own connection still works.
    let after = rows_of(&stack, alice.id).await;
    for ((table, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(b, a, "Alice's {table} rows changed");
    }
    let (status, body) = stack
        .execute(
            &mallory.api_key,
            "sandbox_echo",
            json!({"arguments": {"message": "mine"}, "connectionId": mallory_conn.0}),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    stack.finish().await;
}

/// Every form of the web front (each POST of its router but the signed billing webhook)
/// is refused with the "Form expired" page when its CSRF token is missing or is someone
/// else's, or when another site's page posts it with the right token — and nothing
/// changes. The same form from this site with the right token then goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_forms_refuse_a_missing_or_wrong_csrf_token_and_a_foreign_origin() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    // Alice, an admin (so the dead-letter forms are hers to post), with a connection, a
    // device, an open connect session, a pairing waiting for her approval, and a dead
    // letter (Bob's call) in the queue. Her own key stays unused: its last use would be
    // written while the forms are tried.
    let (alice, conn) = stack.sandbox_user("alice@example.test").await;
    sqlx::query("UPDATE users SET is_admin = true WHERE id = $1").bind(alice.id.0).execute(&stack.db).await.unwrap();
    let device: i64 = sqlx::query_scalar("SELECT id FROM devices WHERE user_id = $1")
        .bind(alice.id.0)
        .fetch_one(&stack.db)
        .await
        .unwrap();
    let (bob, _) = stack.sandbox_user("bob@example.test").await;
    let dead = crate::browser_admin::dead_letter(&stack, &bob.api_key, "held").await;
    let pairing: Value = stack
        .http
        .post(format!("{}/api/openclaw/pair/start", stack.api_url))
        .json(&json!({"deviceLabel": "forged-agent"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pairing = pairing["sessionToken"].as_str().unwrap().to_string();
    let mut browser = Browser::new(&stack.web_url);
    assert_eq!(browser.sign_in("alice@example.test", "pw").await.status, 303);
    let csrf = browser.get("/devices").await.csrf();
    let started = browser.post("/connections/new", &[("csrf", &csrf), ("integration", "stripe")]).await;
    let connect = started.location.expect("a connect session").trim_start_matches("/connect/").to_string();
    // Someone signed out, holding the cookie token of the sign-up form.
    let mut visitor = Browser::new(&stack.web_url);
    let visitor_csrf = visitor.get("/signup").await.csrf();

    let before = rows_of(&stack, alice.id).await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&stack.db).await.unwrap();
    let dead_queue = stack.topology().dead_letter_queue();
    let dead_status = stack.execution_status(&dead).await;
    assert_eq!(stack.queue_state(&dead_queue).await.0, 1);

    let (a, d) = (conn.0.to_string(), device.to_string());
    let mut tried = 0;
    for (method, path) in web_routes() {
        if method != "post" || path == "/billing/webhook" {
            continue;
        }
        let (url, fields): (String, Vec<(&str, &str)>) = match path.as_str() {
            "/signup" => (path.clone(), vec![("email", "new@example.test"), ("password", "long password 1")]),
            "/signin" => (path.clone(), vec![("email", "alice@example.test"), ("password", "pw")]),
            "/signout" | "/connections/new" | "/billing/checkout" => {
                (path.clone(), vec![("integration", "sandbox"), ("plan", "pro")])
            }
            "/pair/{token}" => (format!("/pair/{pairing}"), vec![("decision", "approve")]),
            "/connect/{token}" => (format!("/connect/{connect}"), vec![("key", SANDBOX_TOKEN)]),
            "/connections/{id}/rename"
            | "/connections/{id}/default"
            | "/connections/{id}/reconnect"
            | "/connections/{id}/delete" => (path.replace("{id}", &a), vec![("label", "forged")]),
            "/devices/{id}/revoke" => (path.replace("{id}", &d), vec![]),
            "/devices/{id}/policy" => (path.replace("{id}", &d), vec![("policy", "allow")]),
            "/devices/{id}/grant" => (path.replace("{id}", &d), vec![("scope", "some"), ("app.github", "on")]),
            "/approvals/policy" => (path.clone(), vec![("policy", "allow")]),
            // Any execution id: the form is refused before it is looked at.
            "/approvals/{id}/approve" | "/approvals/{id}/deny" => (path.replace("{id}", &dead), vec![]),
            "/admin/dead-letters/{id}/replay" | "/admin/dead-letters/{id}/discard" => {
                (path.replace("{id}", &dead), vec![])
            }
            _ => panic!("POST {path} has no case in the CSRF table: add one"),
        };
        // The sign-in and sign-up forms are a signed-out visitor's; the rest Alice's.
        let signed_out = path == "/signup" || path == "/signin";
        let (who, own, others) = if signed_out {
            (&mut visitor, visitor_csrf.as_str(), csrf.as_str())
        } else {
            (&mut browser, csrf.as_str(), visitor_csrf.as_str())
        };
        let site = stack.web_url.clone();
        for (case, origin, token) in [
            ("no token", site.as_str(), None),
            ("someone else's token", site.as_str(), Some(others)),
            ("another site's page", "https://evil.example", Some(own)),
        ] {
            let mut form = fields.clone();
            if let Some(token) = token {
                form.push(("csrf", token));
            }
            let page = who.post_from(origin, &url, &form).await;
            assert_eq!(page.status, 403, "POST {path} with {case}: {}", page.body);
            assert!(page.body.contains("could not be verified"), "POST {path} with {case}: {}", page.body);
        }
        tried += 1;
    }
    assert!(tried >= 14, "only {tried} forms were tried");

    let after = rows_of(&stack, alice.id).await;
    for ((table, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(b, a, "a refused form changed Alice's {table} rows");
    }
    let users_after: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&stack.db).await.unwrap();
    assert_eq!(users_after, users, "a refused sign-up made an account");
    assert_eq!(stack.queue_state(&dead_queue).await.0, 1, "a refused admin form took the dead letter");
    assert_eq!(stack.execution_status(&dead).await, dead_status);
    // Still signed in (sign-out was refused), and her own form from this site goes through.
    let renamed = browser.post(&format!("/connections/{a}/rename"), &[("csrf", &csrf), ("label", "work")]).await;
    assert_eq!(renamed.status, 303, "{}", renamed.body);
    stack.finish().await;
}

/// Unix milliseconds now.
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// How long after a 429 is answered a request may still arrive without breaking the
/// pause: one sent before the worker that got the 429 had recorded it.
const IN_FLIGHT_SLACK_MS: u64 = 500;

/// Fires `n` async echo calls at once and waits for each result.
async fn storm(stack: &Stack, key: &str, n: usize, tag: &str) -> Vec<Value> {
    let calls = (0..n).map(|i| {
        let body = json!({"arguments": {"message": format!("{tag}-{i}")}, "async": true});
        async move {
            let (status, accepted) = stack.execute(key, "sandbox_echo", body, &[]).await;
            assert_eq!(status, 202, "{accepted}");
            let id = accepted["executionId"].as_str().unwrap().to_string();
            loop {
                let (status, polled) = stack.get(key, &format!("/api/executions/{id}?waitMs=20000")).await;
                assert_eq!(status, 200, "{polled}");
                if polled["status"] == "succeeded" || polled["status"] == "failed" {
                    return polled;
                }
            }
        }
    });
    futures_util::future::join_all(calls).await
}

/// Checks one phase of the storm: every call succeeded; after each 429 (beyond the
/// in-flight slack) nothing arrived before `moment(t429)`; no window of a second carried
/// more than the connection's budget.
fn check_phase(
    requests: &[clawlink_emulator::RequestRecord],
    results: &[Value],
    moment: impl Fn(u64) -> u64,
    what: &str,
) {
    for r in results {
        assert_eq!(r["status"], "succeeded", "{what}: {r}");
    }
    let refused: Vec<u64> = requests.iter().filter(|r| r.status == 429).map(|r| r.at_ms).collect();
    assert!(!refused.is_empty(), "{what}: the storm never hit");
    for &t in &refused {
        let until = moment(t);
        let early: Vec<u64> =
            requests.iter().map(|r| r.at_ms).filter(|&a| a > t + IN_FLIGHT_SLACK_MS && a < until).collect();
        assert!(
            early.is_empty(),
            "{what}: requests at {early:?} ms, after a 429 at {t} ms paused the connection until {until} ms"
        );
    }
    // The refused calls were retried after the moment (a request in flight when the 429
    // was answered may land just after it, and is allowed by the slack above).
    let resumed = requests.iter().filter(|r| r.status != 429 && r.at_ms >= moment(refused[0])).count();
    assert!(resumed >= refused.len(), "{what}: only {resumed} requests after the pause");
    // The connection's budget (20/s, burst 5) held through the storm.
    let times: Vec<u64> = requests.iter().map(|r| r.at_ms).collect();
    for &start in &times {
        let in_window = times.iter().filter(|&&a| a >= start && a < start + 1000).count();
        assert!(in_window <= 25 + 1, "{what}: {in_window} requests in the second from {start} ms");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_across_three_workers_waits_out_retry_after() {
    let stack = Stack::start(Options {
        workers: 3,
        sandbox_rate: Some("per_connection = [{ requests = 20, per_seconds = 1, burst = 5 }]".into()),
        env: vec![("CLAWLINK_RETRY_BASE_MS".into(), "20".into())],
        ..Default::default()
    })
    .await;
    let (user, _) = stack.sandbox_user("storm@example.test").await;

    // The emulator's clock against ours, from one call.
    let sent = unix_ms();
    let (status, body) =
        stack.execute(&user.api_key, "sandbox_echo", json!({"arguments": {"message": "clock"}}), &[]).await;
    let answered = unix_ms();
    assert_eq!(status, 200, "{body}");
    let probe = stack.emulator.stats().requests.last().unwrap().at_ms;
    // Unix ms = emulator ms + offset, with offset within [sent - probe, answered - probe].
    let offset_high = answered - probe;
    let _ = sent;

    // 1. Retry-After in delta-seconds.
    let echo = |kind| Fault { method: Some("GET".into()), path: Some("/echo".into()), kind, times: 3 };
    let start = stack.emulator.stats().requests.len();
    stack.emulator.add_fault(echo(FaultKind::Status {
        status: 429,
        retry_after: Some("2".into()),
        body: None,
        headers: vec![],
    }));
    let results = storm(&stack, &user.api_key, 30, "delta").await;
    let requests = stack.emulator.stats().requests[start..].to_vec();
    check_phase(&requests, &results, |t| t + 2000, "delta-seconds");

    // 2. Retry-After as an HTTP-date, three to four seconds ahead.
    let moment_unix_ms = (unix_ms() / 1000 + 4) * 1000;
    let date = time::OffsetDateTime::from_unix_timestamp((moment_unix_ms / 1000) as i64)
        .unwrap()
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap();
    let start = stack.emulator.stats().requests.len();
    stack.emulator.add_fault(echo(FaultKind::Status {
        status: 429,
        retry_after: Some(date.clone()),
        body: None,
        headers: vec![],
    }));
    let results = storm(&stack, &user.api_key, 30, "date").await;
    let requests = stack.emulator.stats().requests[start..].to_vec();
    // The date in the emulator's clock, taken early (so the check is never too strict).
    let moment = moment_unix_ms - offset_high;
    check_phase(&requests, &results, |_| moment, &format!("HTTP-date {date}"));
    stack.finish().await;
}

/// A free loopback port (bound, then released for a child process to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts a ClawLink binary as a child process at debug level, its output in `log`.
fn spawn_binary(
    stack: &Stack,
    name: &str,
    args: &[&str],
    extra: &[(String, String)],
    log: &std::path::Path,
) -> tokio::process::Child {
    let bin = clawlink_e2e::bin_dir().join(name);
    assert!(bin.exists(), "{} is missing: run `cargo build --workspace --bins` first", bin.display());
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("RUST_LOG", "debug");
    for (k, v) in stack.env_pairs().into_iter().chain(extra.iter().cloned()) {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::from(out.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(out))
        .kill_on_drop(true);
    cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"))
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    for _ in 0..400 {
        if http.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{url} did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_never_leave_the_credential_store() {
    use clawlink_common::catalog::{Catalog, Mode, default_dir};
    let trap = Trap::bind("127.0.0.1:0").await.unwrap();
    let basic_provider = provider_toml("vault", "http://127.0.0.1:9").replace(
        r#"auth = { type = "api_key", header = "Authorization", format = "Bearer {key}" }"#,
        r#"auth = { type = "basic" }"#,
    );
    let stack = Stack::start(Options {
        workers: 0,
        extra_catalog: vec![("vault.toml".into(), basic_provider)],
        ..Default::default()
    })
    .await;
    let mark = uuid::Uuid::new_v4().simple().to_string();
    let planted = |kind: &str| format!("PLANTED{kind}{mark}");
    let access = planted("oauthaccess");
    let refresh = planted("oauthrefresh");
    let stale_refresh = planted("stalerefresh");
    let client_secret = planted("clientsecret");
    let api_key = planted("apikey");
    let password = planted("basicpassword");
    let (pair_key, pair_token) = (planted("pairkey"), planted("pairtoken"));
    let typed_key = planted("typedkey");
    for accepted in [&access, &api_key, &pair_key, &pair_token, &typed_key] {
        stack.emulator.add_token(accepted);
    }

    let user = stack.user("vault@example.test").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let oauth = |access: &str, refresh: &str, expires_at: i64| CredentialBundle::Oauth2 {
        access_token: SecretString::new(access),
        refresh_token: Some(SecretString::new(refresh)),
        expires_at: Some(expires_at),
    };
    let bundles: Vec<(&str, CredentialBundle)> = vec![
        ("github", oauth(&access, &refresh, now + 3600)),
        // Expired: the worker refreshes it with the client secret (and is refused).
        ("linear", oauth(&planted("staleaccess"), &stale_refresh, now - 60)),
        ("stripe", CredentialBundle::ApiKey { key: SecretString::new(&api_key) }),
        ("vault", CredentialBundle::Basic { username: "ada".into(), password: SecretString::new(&password) }),
        (
            "trello",
            CredentialBundle::KeyPair { key: SecretString::new(&pair_key), token: SecretString::new(&pair_token) },
        ),
    ];

    // api, web and a worker as processes at debug level, their output captured.
    let dir = std::env::temp_dir().join(format!("{}-secrets", stack.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    let (api_port, web_port, worker_port) = (free_port(), free_port(), free_port());
    let allowed = format!("{},127.0.0.1:{}", stack.emulator.addr(), trap.port);
    let extra = vec![
        ("CLAWLINK_API_ADDR".to_string(), format!("127.0.0.1:{api_port}")),
        ("CLAWLINK_WEB_ADDR".to_string(), format!("127.0.0.1:{web_port}")),
        ("CLAWLINK_WORKER_ADDR".to_string(), format!("127.0.0.1:{worker_port}")),
        ("CLAWLINK_WORKER_ID".to_string(), "watched".to_string()),
        ("CLAWLINK_PUBLIC_API_URL".to_string(), format!("http://127.0.0.1:{api_port}")),
        ("CLAWLINK_PUBLIC_WEB_URL".to_string(), format!("http://127.0.0.1:{web_port}")),
        ("CLAWLINK_ALLOW_PRIVATE_PROVIDER_HOSTS".to_string(), allowed),
        ("CLAWLINK_PROVIDER_VAULT_BASE_URL".to_string(), format!("http://127.0.0.1:{}", trap.port)),
        ("CLAWLINK_PROVIDER_LINEAR_CLIENT_SECRET".to_string(), client_secret.clone()),
        ("CLAWLINK_PROVIDER_GITHUB_CLIENT_SECRET".to_string(), client_secret.clone()),
    ];
    let logs = [dir.join("api.log"), dir.join("web.log"), dir.join("worker.log")];
    let _api = spawn_binary(&stack, "clawlink-api", &["serve"], &extra, &logs[0]);
    let _web = spawn_binary(&stack, "clawlink-web", &[], &extra, &logs[1]);
    let api = format!("http://127.0.0.1:{api_port}");
    let web = format!("http://127.0.0.1:{web_port}");
    wait_ready(&stack.http, &api).await;
    wait_ready(&stack.http, &web).await;

    let mut seen: Vec<(String, String)> = Vec::new(); // (where, text) to scan
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = stack.http.request(method, format!("{api}{path}")).header("x-clawlink-api-key", &user.api_key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = format!("{:?}", resp.headers());
            (status, format!("{headers}\n{}", resp.text().await.unwrap()))
        }
    };

    // A key typed into the connect page by the person, through the watched web.
    let mut browser = Browser::new(&web);
    assert_eq!(browser.sign_in("vault@example.test", "pw").await.status, 303);
    let (_, started) =
        call(reqwest::Method::POST, "/api/connect/start".into(), Some(json!({"integration": "sandbox"}))).await;
    seen.push(("connect start".into(), started.clone()));
    let token = started
        .split("\"sessionToken\":\"")
        .nth(1)
        .unwrap_or_else(|| panic!("{started}"))
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let form = browser.get(&format!("/connect/{token}")).await;
    let done = browser.post(&format!("/connect/{token}"), &[("csrf", &form.csrf()), ("key", &typed_key)]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    seen.push(("connect page".into(), form.body.clone() + &done.body));
    let cookie = browser.cookies.values().cloned().collect::<Vec<_>>();
    assert!(!cookie.is_empty());

    // The other credential kinds, planted as the connect flows store them (past the free
    // plan's connection limit, which only connect/start enforces).
    for (integration, bundle) in &bundles {
        stack.connection(user.id, integration, integration, bundle).await;
    }

    // One async call per connection, read off the queue before any worker runs.
    let catalog = Catalog::load_dir(&default_dir(None), &Default::default()).unwrap();
    let mut integrations: Vec<&str> = bundles.iter().map(|(i, _)| *i).collect();
    integrations.push("sandbox");
    let mut ids = Vec::new();
    for integration in &integrations {
        let (tool, args) = if *integration == "vault" {
            ("vault_read".to_string(), json!({}))
        } else {
            let tool = catalog
                .tools()
                .find(|t| {
                    t.provider.id == *integration && t.tool.mode == Mode::Read && !t.tool.guidance.examples.is_empty()
                })
                .unwrap_or_else(|| panic!("a read tool of {integration}"));
            (tool.name.clone(), tool.tool.guidance.examples[0].arguments.clone())
        };
        let connection: i64 = sqlx::query_scalar(
            "SELECT id FROM user_integrations WHERE user_id = $1 AND integration = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(user.id.0)
        .bind(integration)
        .fetch_one(&stack.db)
        .await
        .unwrap();
        let body = json!({"arguments": args, "connectionId": connection, "async": true});
        let (status, text) = call(reqwest::Method::POST, format!("/api/tools/{tool}/execute"), Some(body)).await;
        assert_eq!(status, 202, "{tool}: {text}");
        let id = text.split("\"executionId\":\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        ids.push((tool, id));
        seen.push((format!("{integration} accepted"), text));
    }
    let channel = stack.amqp_channel().await;
    let queue = stack.topology().work_queue(clawlink_common::queue::Lane::Bulk);
    let mut taken = Vec::new();
    while let Some(message) =
        channel.basic_get(queue.as_str().into(), lapin::options::BasicGetOptions { no_ack: false }).await.unwrap()
    {
        seen.push(("queue message".into(), String::from_utf8_lossy(&message.delivery.data).into_owned()));
        taken.push(message);
    }
    assert_eq!(taken.len(), ids.len(), "every call is on the queue");
    for message in taken {
        message.delivery.acker.nack(lapin::options::BasicNackOptions { requeue: true, multiple: false }).await.unwrap();
    }
    let _ = channel.close(200, "done".into()).await;

    // The worker runs them; the agent reads every result, successes and failures.
    let _worker = spawn_binary(&stack, "clawlink-worker", &[], &extra, &logs[2]);
    let mut outcomes = Vec::new();
    for (tool, id) in &ids {
        let (status, text) = call(reqwest::Method::GET, format!("/api/executions/{id}?waitMs=20000"), None).await;
        assert_eq!(status, 200, "{tool}: {text}");
        outcomes
            .push(format!("{tool}: {}", text.split("\"status\":\"").nth(1).unwrap_or("?").split('"').next().unwrap()));
        seen.push((format!("{tool} result"), text));
    }
    assert!(trap.hits() >= 1, "the basic-auth call reached its provider");
    // Every secret was used: each call succeeded with its credential, and the expired
    // token went to the token endpoint with the client secret (which refused it).
    for (tool, _) in &ids {
        let want = if tool.starts_with("linear_") { "failed" } else { "succeeded" };
        assert!(outcomes.contains(&format!("{tool}: {want}")), "{tool}: {outcomes:?}");
    }
    assert!(stack.emulator.stats().token_calls("refresh_token") >= 1, "the expired token was not refreshed");
    // Errors: bad arguments, a tool of a connection that needs reconnecting, unknown ids.
    for (path, body) in [
        ("/api/tools/stripe_list_customers/execute", json!({"arguments": {"limit": "many"}})),
        ("/api/tools/sandbox_echo/execute", json!({"arguments": {}})),
        ("/api/tools/sandbox_echo/preview", json!({"arguments": {"message": "x"}})),
    ] {
        let (_, text) = call(reqwest::Method::POST, path.to_string(), Some(body)).await;
        seen.push((path.to_string(), text));
    }
    for path in ["/api/integrations", "/api/agent/whoami", "/api/tools/github_get_repo"] {
        let (_, text) = call(reqwest::Method::GET, path.to_string(), None).await;
        seen.push((path.to_string(), text));
    }
    for (what, url) in [
        ("api metrics", format!("{api}/metrics")),
        ("web metrics", format!("{web}/metrics")),
        ("worker metrics", format!("http://127.0.0.1:{worker_port}/metrics")),
    ] {
        let text = stack.http.get(url).send().await.unwrap().text().await.unwrap();
        assert!(text.contains("# TYPE"), "{what}: {text}");
        seen.push((what.into(), text));
    }
    for page in ["/connections", "/executions", "/devices"] {
        seen.push((format!("web {page}"), browser.get(page).await.body));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (i, log) in logs.iter().enumerate() {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("DEBUG"), "{} was not captured at debug level", log.display());
        if i == 2 {
            assert!(ids.iter().all(|(_, id)| text.contains(id.as_str())), "the worker log names every execution");
        }
        seen.push((log.display().to_string(), text));
    }
    let _ = std::fs::remove_dir_all(&dir);

    let key_b64 = stack.env.raw("CLAWLINK_CREDENTIAL_KEYS").unwrap().trim_start_matches("k1:").to_string();
    let basic_header = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("ada:{password}"))
    };
    let secrets: Vec<(&str, &str)> = vec![
        ("OAuth access token", access.as_str()),
        ("OAuth refresh token", refresh.as_str()),
        ("refresh token being refreshed", stale_refresh.as_str()),
        ("OAuth client secret", client_secret.as_str()),
        ("API key", api_key.as_str()),
        ("basic password", password.as_str()),
        ("basic Authorization header", basic_header.as_str()),
        ("key-pair key", pair_key.as_str()),
        ("key-pair token", pair_token.as_str()),
        ("key typed into the connect page", typed_key.as_str()),
        ("encryption key", key_b64.as_str()),
        ("device credential", user.api_key.as_str()),
        ("session cookie", cookie[0].as_str()),
    ];
    let mut found = Vec::new();
    for (kind, secret) in &secrets {
        for (place, text) in &seen {
            if text.contains(secret) {
                found.push(format!("{kind} in {place}"));
            }
        }
    }
    assert!(found.is_empty(), "secrets leaked: {found:?} (outcomes: {outcomes:?})");
    stack.finish().await;
}

/// Pairing abuse beyond `agent.rs`: a denied session never yields a credential, and
/// guessing session tokens is capped per address with a `Retry-After` — while the real
/// token still answers from that address (behind an ingress every agent shares it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_tokens_cannot_be_guessed_and_denials_stick() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let post = |path: String, body: Value| {
        let req = stack.http.post(format!("{}{path}", stack.api_url)).json(&body);
        async move {
            let r = req.send().await.unwrap();
            let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), retry_after, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (_, _, denied) = post("/api/openclaw/pair/start".into(), json!({"deviceLabel": "Denied"})).await;
    let token = denied["sessionToken"].as_str().unwrap().to_string();
    let verifier = denied["verifier"].clone();
    let mut person = Browser::new(&stack.web_url);
    person.sign_up("denier@example.test", "denier password 1").await;
    let page = person.get(&format!("/pair/{token}")).await;
    person.post(&format!("/pair/{token}"), &[("csrf", &page.csrf()), ("decision", "deny")]).await;
    for step in ["exchange", "finalize"] {
        let (status, _, body) =
            post(format!("/api/openclaw/pair/sessions/{token}/{step}"), json!({"verifier": verifier})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("pairing_denied")), "{step}: {body}");
        assert!(body.get("apiKey").is_none());
    }
    let devices: i64 = sqlx::query_scalar("SELECT count(*) FROM devices").fetch_one(&stack.db).await.unwrap();
    assert_eq!(devices, 0, "a denied pairing made a device");

    // Guessing: unknown tokens are 404 until the address's cap, then 429.
    let (_, _, real) = post("/api/openclaw/pair/start".into(), json!({"deviceLabel": "Real"})).await;
    let real = real["sessionToken"].as_str().unwrap().to_string();
    let mut not_found = 0;
    let mut refused = None;
    for _ in 0..40 {
        let guess = clawlink_common::tokens::random_urlsafe(24);
        let r = stack.http.get(format!("{}/api/openclaw/pair/sessions/{guess}", stack.api_url)).send().await.unwrap();
        match r.status().as_u16() {
            404 => not_found += 1,
            429 => {
                refused = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                break;
            }
            other => panic!("a guess answered {other}"),
        }
    }
    assert!(not_found <= 31, "{not_found} guesses were answered before the cap");
    let retry_after: u64 = refused.expect("guessing was capped").parse().unwrap();
    assert!((1..=600).contains(&retry_after), "{retry_after}");
    let r = stack.http.get(format!("{}/api/openclaw/pair/sessions/{real}", stack.api_url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "a real token is answered from the capped address");
    stack.finish().await;
}

/// NUL in a form field or a query value is refused with a 400 page (Postgres cannot store
/// it; it used to be a 500), and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_web_forms_and_queries_is_refused() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (_, conn) = stack.sandbox_user("nul@example.test").await;
    let mut stranger = Browser::new(&stack.web_url);
    let form = stranger.get("/signup").await;
    let fields = [
        ("csrf", form.csrf()),
        ("email", "a\0@x.test".into()),
        ("password", "long password 1".into()),
        ("display_name", "x".into()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(stranger.post("/signup", &fields).await.status, 400);
    let mut browser = Browser::new(&stack.web_url);
    assert_eq!(browser.sign_in("nul@example.test", "pw").await.status, 303);
    let csrf = browser.get("/devices").await.csrf();
    let renamed = browser.post(&format!("/connections/{}/rename", conn.0), &[("csrf", &csrf), ("label", "a\0b")]).await;
    assert_eq!(renamed.status, 400, "{}", renamed.body);
    for path in ["/executions?tool=%00", "/connections/new?q=%00"] {
        assert_eq!(browser.get(path).await.status, 400, "{path}");
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&stack.db).await.unwrap();
    assert_eq!(users, 1);
    let label: String = sqlx::query_scalar("SELECT connection_label FROM user_integrations WHERE id = $1")
        .bind(conn.0)
        .fetch_one(&stack.db)
        .await
        .unwrap();
    assert_eq!(label, "main");
    // Ordinary forms still work.
    let renamed = browser.post(&format!("/connections/{}/rename", conn.0), &[("csrf", &csrf), ("label", "work")]).await;
    assert_eq!(renamed.status, 303, "{}", renamed.body);
    stack.finish().await;
}
