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
    stack.finish().await;
}
