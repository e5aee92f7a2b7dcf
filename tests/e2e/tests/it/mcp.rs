//! `/api/mcp` driven by the official Rust MCP SDK (`rmcp`) as the client.

use clawlink_e2e::{Options, Stack};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_lists_and_calls_tools() {
    let stack = Stack::start(Options::default()).await;
    let (user, _) = stack.sandbox_user("mcp@example.test").await;
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{}/api/mcp", stack.api_url));
    config.auth_header = Some(user.api_key.clone());
    let transport = StreamableHttpClientTransport::from_config(config);
    let client = ().serve(transport).await.expect("MCP initialize");
    // The current revision, which rmcp asks for; it then sends it as MCP-Protocol-Version.
    let agreed = client.peer_info().map(|info| info.protocol_version.to_string());
    assert_eq!(agreed.as_deref(), Some("2025-11-25"));

    let tools = client.list_all_tools().await.expect("tools/list");
    let catalog_count = stack.get(&user.api_key, "/api/tools").await.1["count"].as_u64().unwrap() as usize;
    assert_eq!(tools.len(), catalog_count, "every tool is listed across pages");
    let echo = tools.iter().find(|t| t.name == "sandbox_echo").expect("sandbox_echo listed");
    assert_eq!(echo.annotations.as_ref().and_then(|a| a.read_only_hint), Some(true));
    let delete = tools.iter().find(|t| t.name == "sandbox_delete_note").unwrap();
    assert_eq!(delete.annotations.as_ref().and_then(|a| a.destructive_hint), Some(true));

    let args = json!({"message": "over mcp"}).as_object().unwrap().clone();
    let result =
        client.call_tool(CallToolRequestParams::new("sandbox_echo").with_arguments(args)).await.expect("tools/call");
    assert_eq!(result.is_error, Some(false));
    let text = serde_json::to_string(&result.content).unwrap();
    assert!(text.contains("over mcp"), "{text}");
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), 1, "the call went through the worker to the provider");

    // Bad arguments are a tool error with the same message as the REST API.
    let result = client
        .call_tool(CallToolRequestParams::new("sandbox_echo").with_arguments(serde_json::Map::new()))
        .await
        .expect("tools/call");
    assert_eq!(result.is_error, Some(true));
    let text = serde_json::to_string(&result.content).unwrap();
    assert!(text.contains("not valid") && text.contains("message"), "{text}");
    client.cancel().await.ok();

    // Without a credential the endpoint refuses.
    let resp = stack
        .http
        .post(format!("{}/api/mcp", stack.api_url))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["www-authenticate"], r#"Bearer realm="clawlink""#);
    stack.finish().await;
}

/// Issue 16: a NUL in one account's tool arguments, sent through MCP, reached the batched
/// insert and Postgres refused the whole statement — every call in that batch, of every
/// account, got a 500. Now the body is refused on the way in, and a batch that fails on a
/// row fails that row only (`common/tests/it/batch.rs` drives that part directly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_mcp_call_fails_alone_while_other_accounts_calls_succeed() {
    let stack = Stack::start(Options::default()).await;
    let mut good = Vec::new();
    for i in 0..5 {
        good.push(stack.sandbox_user(&format!("tenant{i}@example.test")).await.0);
    }
    let (mallory, _) = stack.sandbox_user("mallory@example.test").await;
    let mcp = |key: String, body: String| {
        let request = stack
            .http
            .post(format!("{}/api/mcp", stack.api_url))
            .header("x-clawlink-api-key", key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        async move {
            let response = request.send().await.expect("an answer");
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let call = |message: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "sandbox_echo", "arguments": {"message": message}}})
        .to_string()
    };

    // Waves of calls at once, so the good ones share insert batches with the bad ones.
    let mut good_calls = 0;
    for wave in 0..3 {
        let poisoned = (0..10).map(|i| {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"sandbox_echo","arguments":{{"message":"x\u0000{wave}"}}}}}}"#
            );
            mcp(mallory.api_key.clone(), body)
        });
        let over_mcp =
            good.iter().flat_map(|u| (0..4).map(move |i| (u, format!("mcp {wave} {i}")))).map(|(u, message)| {
                let answer = mcp(u.api_key.clone(), call(&message));
                async move { (message, answer.await) }
            });
        let over_rest =
            good.iter().flat_map(|u| (0..4).map(move |i| (u, format!("rest {wave} {i}")))).map(|(u, message)| {
                let body = json!({"arguments": {"message": message}});
                let answer = stack.execute(&u.api_key, "sandbox_echo", body, &[]);
                async move { (message, answer.await) }
            });
        let (poisoned, over_mcp, over_rest) = tokio::join!(
            futures_util::future::join_all(poisoned),
            futures_util::future::join_all(over_mcp),
            futures_util::future::join_all(over_rest),
        );
        for (message, (status, body)) in over_mcp {
            assert_eq!(status, 200, "{message}: {body}");
            assert_eq!(body["result"]["isError"], false, "{message}: {body}");
            assert_eq!(body["result"]["structuredContent"]["data"]["message"], message, "{body}");
        }
        for (message, (status, body)) in over_rest {
            assert_eq!(status, 200, "{message}: {body}");
            assert_eq!(body["data"]["message"], message, "{body}");
        }
        // The bad call is refused, with a JSON-RPC error saying why.
        for (status, body) in poisoned {
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["error"]["data"]["code"], "invalid_body", "{body}");
        }
        good_calls += good.len() * 8;
    }
    let recorded: Vec<(i64, String)> =
        sqlx::query_as("SELECT user_id, status FROM executions").fetch_all(&stack.db).await.unwrap();
    assert!(recorded.iter().all(|(user, _)| *user != mallory.id.0), "nothing of the poisoned calls was recorded");
    assert_eq!(recorded.len(), good_calls);
    stack.wait_for_rows_final().await;
    let succeeded: i64 = sqlx::query_scalar("SELECT count(*) FROM executions WHERE status = 'succeeded'")
        .fetch_one(&stack.db)
        .await
        .unwrap();
    assert_eq!(succeeded as usize, good_calls);
    assert_eq!(stack.emulator.stats().count("GET", "/echo"), good_calls, "each good call reached the app once");
    stack.finish().await;
}
