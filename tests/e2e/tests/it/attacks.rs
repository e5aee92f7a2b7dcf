//! Attack scenarios (issue 10), end to end: outbound requests steered inside (SSRF),
//! another user's ids on every endpoint, secrets planted in every credential kind, and a
//! 429 storm across three workers. Pairing abuse lives in `agent.rs`; this file adds
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
use std::time::Duration;

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
