//! `GET /api/tools` and MCP `tools/list` at catalog scale: pages walk every tool exactly
//! once, filters keep what they say (integration lists, the person's connected apps,
//! following a connection being added and removed), and a cursor or filter the server
//! cannot read is a clear 400 (a JSON-RPC -32602 through MCP).

use crate::harness::{TestApi, request};
use axum::body::Body;
use clawlink_common::db::connections;
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Every page of `GET /api/tools?{query}&limit={limit}`: the names in order, and the
/// `total` of the first page.
async fn walk(api: &TestApi, key: &str, query: &str, limit: usize) -> (Vec<String>, u64) {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let mut total = None;
    for _ in 0..10_000 {
        let mut path = format!("/api/tools?{query}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode(c)));
        }
        let answer = api.get(key, &path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let page = names(&answer.body);
        assert!(page.len() <= limit, "{path}: {} tools", page.len());
        assert_eq!(answer.body["count"], page.len(), "{}", answer.body);
        total.get_or_insert(answer.body["total"].as_u64().unwrap());
        all.extend(page);
        match &answer.body["nextCursor"] {
            Value::String(next) => cursor = Some(next.clone()),
            Value::Null => return (all, total.unwrap()),
            other => panic!("nextCursor {other}"),
        }
    }
    panic!("the pages never ended");
}

#[tokio::test]
async fn pages_walk_every_tool_once_and_no_parameters_is_the_whole_catalog() {
    let api = TestApi::start().await;
    let user = api.user("pages@example.test").await;
    let key = user.api_key.as_str();
    let catalog: Vec<String> = api.state.catalog.tools().map(|t| t.name.clone()).collect();

    // What the plugin sends: every tool, the contract's fields, no next page.
    let answer = api.get(key, "/api/tools").await;
    assert_eq!(answer.status, 200);
    assert_eq!(names(&answer.body), catalog);
    assert_eq!(answer.body["count"], catalog.len());
    assert_eq!(answer.body["integration"], Value::Null);
    assert_eq!(answer.body["nextCursor"], Value::Null);

    for limit in [1, 7, 50, 500] {
        let (walked, total) = walk(&api, key, "", limit).await;
        assert_eq!(walked, catalog, "limit {limit}: every tool, once, in order");
        assert_eq!(total as usize, catalog.len());
    }
    // A filtered walk: only the named integrations, each of their tools once.
    let (walked, total) = walk(&api, key, "integration=github,slack", 3).await;
    let expected: Vec<String> =
        catalog.iter().filter(|n| n.starts_with("github_") || n.starts_with("slack_")).cloned().collect();
    assert!(expected.len() > 3);
    assert_eq!((walked, total as usize), (expected.clone(), expected.len()));
    let answer = api.get(key, "/api/tools?integration=slack,github").await;
    assert_eq!(answer.body["integration"], "github,slack", "{}", answer.body);
    assert_eq!(names(&answer.body), expected);
    // One integration, as the plugin sends it: unchanged answer.
    let answer = api.get(key, "/api/tools?integration=sandbox").await;
    assert_eq!(answer.body["integration"], "sandbox");
    assert!(names(&answer.body).iter().all(|n| n.starts_with("sandbox_")) && answer.body["count"].as_u64() > Some(0));
}

#[tokio::test]
async fn connected_follows_connections_being_added_and_removed() {
    let api = TestApi::start().await;
    let user = api.user("connected@example.test").await;
    let key = user.api_key.as_str();
    let sandbox: Vec<String> =
        api.state.catalog.tools().filter(|t| t.provider.id == "sandbox").map(|t| t.name.clone()).collect();

    let answer = api.get(key, "/api/tools?connected=true").await;
    assert_eq!((answer.status.as_u16(), names(&answer.body).len()), (200, 0), "nothing connected: {}", answer.body);

    let id = api.sandbox_connection(user.id, "work").await;
    let answer = api.get(key, "/api/tools?connected=true").await;
    assert_eq!(names(&answer.body), sandbox, "{}", answer.body);
    assert!(answer.body["tools"].as_array().unwrap().iter().all(|t| t["defaultConnectionId"] == id.0));
    // Combined with an integration list: the intersection.
    assert_eq!(names(&api.get(key, "/api/tools?connected=true&integration=sandbox,github").await.body), sandbox);
    assert!(names(&api.get(key, "/api/tools?connected=true&integration=github").await.body).is_empty());
    // connected=false is no filter; search honours it too.
    assert_eq!(names(&api.get(key, "/api/tools?connected=false").await.body).len(), api.state.catalog.tools().count());
    let found = api.get(key, "/api/tools/search?query=send%20a%20message&connected=true").await;
    assert!(
        !names(&found.body).is_empty() && names(&found.body).iter().all(|n| n.starts_with("sandbox_")),
        "{}",
        found.body
    );

    // Another person's connection changes nothing here.
    let other = api.user("other@example.test").await;
    assert!(names(&api.get(&other.api_key, "/api/tools?connected=true").await.body).is_empty());

    let mut tx = api.state.db.begin().await.unwrap();
    assert!(connections::delete(&mut tx, user.id, id).await.unwrap());
    tx.commit().await.unwrap();
    let answer = api.get(key, "/api/tools?connected=true").await;
    assert!(names(&answer.body).is_empty(), "after removal: {}", answer.body);
}

#[tokio::test]
async fn a_cursor_or_filter_the_server_cannot_read_is_a_400() {
    let api = TestApi::start().await;
    let user = api.user("bad@example.test").await;
    let key = user.api_key.as_str();

    for cursor in ["abc", "50", "%FF", "YWZ0ZXI6", "Zm9vOmJhcg"] {
        let body = api.get(key, &format!("/api/tools?limit=5&cursor={cursor}")).await;
        let body = body.error(400, "invalid_cursor");
        assert!(body["hint"].as_str().is_some_and(|h| h.contains("nextCursor")), "{body}");
    }
    for query in
        ["connected=maybe", "connected=yes", "integration=github,,slack", "integration=github,", "integration=,"]
    {
        api.get(key, &format!("/api/tools?{query}")).await.error(400, "invalid_filter");
        api.get(key, &format!("/api/tools/search?query=x&{query}")).await.error(400, "invalid_filter");
    }
    let many = vec!["github"; 101].join(",");
    api.get(key, &format!("/api/tools?integration={many}")).await.error(400, "invalid_filter");
    for limit in ["0", "501", "-1", "ten"] {
        api.get(key, &format!("/api/tools?limit={limit}")).await.error(400, "invalid_limit");
    }
    let body = api.get(key, "/api/tools?integration=github,nope").await;
    assert!(body.error(404, "integration_not_found")["error"]["message"].as_str().unwrap().contains("nope"));
    // A cursor of the last page's last tool: an empty page, not an error.
    let last = api.state.catalog.tools().last().unwrap().name.clone();
    let cursor = clawlink_api::listing::encode_cursor(&last);
    let answer = api.get(key, &format!("/api/tools?cursor={cursor}")).await;
    assert_eq!((answer.status.as_u16(), names(&answer.body).len()), (200, 0), "{}", answer.body);
}

/// `tools/list` through `POST {path}`, following every cursor: the names.
async fn mcp_walk(api: &TestApi, key: &str, path: &str) -> Result<Vec<String>, Value> {
    let mut all = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": cursor}});
        let req = request("POST", path, key)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Body::from(body.to_string()))
            .unwrap();
        let answer = api.send(req).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        if answer.body.get("error").is_some() {
            return Err(answer.body["error"].clone());
        }
        all.extend(names(&answer.body["result"]));
        match &answer.body["result"]["nextCursor"] {
            Value::Null => return Ok(all),
            next => cursor = next.clone(),
        }
    }
}

#[tokio::test]
async fn mcp_tools_list_is_scoped_by_the_url() {
    let api = TestApi::start().await;
    let user = api.user("mcpscope@example.test").await;
    let key = user.api_key.as_str();
    let all: Vec<String> = api.state.catalog.tools().map(|t| t.name.clone()).collect();

    assert_eq!(mcp_walk(&api, key, "/api/mcp").await.unwrap(), all, "unscoped: every tool once");
    assert!(mcp_walk(&api, key, "/api/mcp?connected=true").await.unwrap().is_empty());
    api.sandbox_connection(user.id, "work").await;
    let connected = mcp_walk(&api, key, "/api/mcp?connected=true").await.unwrap();
    assert!(!connected.is_empty() && connected.iter().all(|n| n.starts_with("sandbox_")), "{connected:?}");
    let listed = mcp_walk(&api, key, "/api/mcp?integration=github%2Cjira").await.unwrap();
    let apps: BTreeSet<&str> = listed.iter().map(|n| n.split('_').next().unwrap()).collect();
    assert_eq!(apps, BTreeSet::from(["github", "jira"]), "{listed:?}");

    for (path, code) in [
        ("/api/mcp?connected=maybe", "invalid_filter"),
        ("/api/mcp?integration=github,,jira", "invalid_filter"),
        ("/api/mcp?integration=nope", "integration_not_found"),
    ] {
        let error = mcp_walk(&api, key, path).await.unwrap_err();
        assert_eq!(
            (error["code"].as_i64(), error["data"]["code"].as_str()),
            (Some(-32602), Some(code)),
            "{path}: {error}"
        );
    }
}
