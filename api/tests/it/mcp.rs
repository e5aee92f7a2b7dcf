//! `/api/mcp`'s transport rules in-process (the same router `tests/e2e` drives with the
//! rmcp client over a real port): Origin, `MCP-Protocol-Version`, the revision agreed at
//! `initialize`, what is a JSON-RPC message and what is not, NUL in a tool's arguments,
//! and the `tools/list` cursor.

use crate::harness::{Answer, TestApi, request};
use axum::body::Body;
use serde_json::{Value, json};

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

/// `POST /api/mcp` with `body` and extra headers.
async fn mcp(api: &TestApi, key: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut builder = request("POST", "/api/mcp", key)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    api.send(builder.body(Body::from(body.to_string())).unwrap()).await
}

/// Checks a refusal of the transport: `status`, a JSON-RPC error with `rpc_code`, the id
/// given, and our code in `error.data.code`; returns the error object.
#[track_caller]
fn refused<'a>(answer: &'a Answer, status: u16, rpc_code: i64, code: &str) -> &'a Value {
    let body = &answer.body;
    assert_eq!(answer.status.as_u16(), status, "{body}");
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["error"]["code"], rpc_code, "{body}");
    assert_eq!(body["error"]["data"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(body.get("result").is_none(), "{body}");
    &body["error"]
}

#[tokio::test]
async fn pages_of_foreign_origins_are_refused_and_allowed_ones_served() {
    let api =
        TestApi::start_with(&[("CLAWLINK_MCP_ALLOWED_ORIGINS", "https://App.example.com, http://localhost:3000")])
            .await;
    let user = api.user("origin@example.test").await;
    let key = user.api_key.as_str();

    // A page that rebinds DNS to this server, a sandboxed page, garbage: 403, before the
    // credential is even looked at.
    for origin in ["https://evil.example", "null", "http://localhost:3001", "https://app.example.com.evil.example"] {
        let answer = mcp(&api, key, &[("origin", origin)], PING).await;
        refused(&answer, 403, -32600, "forbidden_origin");
        assert_eq!(answer.body["id"], Value::Null, "{}", answer.body);
        refused(&mcp(&api, "", &[("origin", origin)], PING).await, 403, -32600, "forbidden_origin");
    }
    // The configured origins (however spelt), the api's own, and no Origin at all (not a
    // browser page): served.
    for origin in
        [Some("https://app.example.com"), Some("https://app.example.com:443"), Some("http://localhost:3000"), None]
            .into_iter()
            .chain([Some(api.state.config.public_api_url.as_str())])
    {
        let headers: Vec<(&str, &str)> = origin.iter().map(|o| ("origin", *o)).collect();
        let answer = mcp(&api, key, &headers, PING).await;
        assert_eq!((answer.status.as_u16(), &answer.body["result"]), (200, &json!({})), "{origin:?}: {}", answer.body);
    }
}

#[tokio::test]
async fn a_protocol_version_this_server_does_not_speak_is_a_400() {
    let api = TestApi::start().await;
    let user = api.user("version@example.test").await;
    let key = user.api_key.as_str();

    for version in ["1900-01-01", "2026-99-99", "not-a-version", ""] {
        let answer = mcp(&api, key, &[("mcp-protocol-version", version)], PING).await;
        let error = refused(&answer, 400, -32600, "unsupported_protocol_version");
        assert_eq!(error["data"]["supported"], json!(["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]));
    }
    for version in ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"] {
        let answer = mcp(&api, key, &[("mcp-protocol-version", version)], PING).await;
        assert_eq!(answer.status, 200, "{version}: {}", answer.body);
    }

    // initialize agrees on the revision asked for when this server speaks it (the current
    // one included), else offers the current one.
    for (asked, agreed) in [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2024-11-05", "2024-11-05"),
        ("2099-01-01", "2025-11-25"),
    ] {
        let init = json!({"jsonrpc": "2.0", "id": "init", "method": "initialize",
            "params": {"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        let answer = mcp(&api, key, &[], &init.to_string()).await;
        assert_eq!(answer.body["result"]["protocolVersion"], agreed, "{asked}: {}", answer.body);
        assert_eq!(answer.body["id"], "init");
    }
}

#[tokio::test]
async fn a_body_that_is_not_one_json_rpc_message_gets_a_json_rpc_error() {
    let api = TestApi::start().await;
    let user = api.user("rpc@example.test").await;
    let key = user.api_key.as_str();

    refused(&mcp(&api, key, &[], "{not json").await, 400, -32700, "invalid_body");
    refused(&mcp(&api, key, &[], "").await, 400, -32700, "invalid_body");
    for body in [
        "{}",
        "42",
        r#""ping""#,
        "null",
        r#"{"jsonrpc":"2.0"}"#,
        r#"{"id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":""}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
    ] {
        let answer = mcp(&api, key, &[], body).await;
        refused(&answer, 400, -32600, "invalid_message");
    }
    // A request whose id could be read is answered with it.
    let answer = mcp(&api, key, &[], r#"{"jsonrpc":"1.0","id":"q7","method":"ping"}"#).await;
    refused(&answer, 400, -32600, "invalid_message");
    assert_eq!(answer.body["id"], "q7");

    // Notifications and responses are accepted with 202 and no body.
    for body in [
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}"#,
    ] {
        let answer = mcp(&api, key, &[], body).await;
        assert_eq!((answer.status.as_u16(), &answer.body), (202, &Value::Null), "{body}");
    }
    // A request with params that are not an object, or an unknown method: JSON-RPC errors
    // answering it (200, its id).
    let answer = mcp(&api, key, &[], r#"{"jsonrpc":"2.0","id":4,"method":"tools/list","params":[1]}"#).await;
    assert_eq!((answer.status.as_u16(), &answer.body["error"]["code"]), (200, &json!(-32602)), "{}", answer.body);
    let answer = mcp(&api, key, &[], r#"{"jsonrpc":"2.0","id":5,"method":"resources/list"}"#).await;
    assert_eq!((&answer.body["id"], &answer.body["error"]["code"]), (&json!(5), &json!(-32601)), "{}", answer.body);
}

/// NUL reached the batched insert through MCP (REST bodies were checked, MCP's were not)
/// and failed the whole statement for every call sharing it. Now the body is refused on
/// the way in, like any other route's.
#[tokio::test]
async fn nul_in_a_tool_call_is_refused_before_anything_is_recorded() {
    let api = TestApi::start().await;
    let user = api.user("nul@example.test").await;
    api.sandbox_connection(user.id, "main").await;
    let key = user.api_key.as_str();
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sandbox_echo","arguments":{"message":"a\u0000b"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sandbox_echo","arguments":{"message":"x","\u0000":1}}}"#,
    ] {
        let answer = mcp(&api, key, &[], body).await;
        let error = refused(&answer, 400, -32600, "invalid_body");
        assert!(error["message"].as_str().unwrap().contains("NUL"), "{}", answer.body);
    }
    // An escaped backslash before `u0000` is text, and runs (202: no worker here).
    let body = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sandbox_echo","arguments":{"message":"a\\u0000b"}}}"#;
    let answer = mcp(&api, key, &[], body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["result"]["structuredContent"]["code"], "still_running", "{}", answer.body);
    assert_eq!(api.recorded_and_queued().await, (1, 1), "the text call only");
}

#[tokio::test]
async fn a_tools_list_cursor_is_a_position_this_server_handed_out() {
    let api = TestApi::start().await;
    let user = api.user("cursor@example.test").await;
    let key = user.api_key.as_str();
    let list = |cursor: Value| json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": cursor}});

    let mut names = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let answer = mcp(&api, key, &[], &list(cursor).to_string()).await;
        let tools = answer.body["result"]["tools"].as_array().unwrap_or_else(|| panic!("{}", answer.body));
        names.extend(tools.iter().map(|t| t["name"].as_str().unwrap().to_string()));
        match &answer.body["result"]["nextCursor"] {
            Value::Null => break,
            next => cursor = next.clone(),
        }
    }
    assert_eq!(names.len(), api.state.catalog.tools().count(), "every tool, once");

    let total = names.len();
    for cursor in [
        json!(usize::MAX.to_string()),
        json!((usize::MAX - 10).to_string()),
        json!("99999999999999999999999999"),
        json!(total.to_string()),
        json!("-1"),
        json!("abc"),
        json!(50),
    ] {
        let answer = mcp(&api, key, &[], &list(cursor.clone()).to_string()).await;
        assert_eq!(answer.status, 200, "{cursor}: {}", answer.body);
        assert_eq!(answer.body["error"]["code"], -32602, "{cursor}: {}", answer.body);
    }
}
