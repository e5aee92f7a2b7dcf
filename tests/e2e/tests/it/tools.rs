//! Listing, searching, describing and previewing tools, as the plugin does.

use clawlink_e2e::{Options, Stack};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_search_describe_and_catalog() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, conn) = stack.sandbox_user("tools@example.test").await;
    let key = &user.api_key;

    let (status, all) = stack.get(key, "/api/tools").await;
    assert_eq!(status, 200);
    assert!(all["count"].as_u64().unwrap() >= 100, "{}", all["count"]);
    let (status, sandbox) = stack.get(key, "/api/tools?integration=sandbox").await;
    assert_eq!(status, 200);
    assert_eq!(sandbox["integration"], "sandbox");
    let echo =
        sandbox["tools"].as_array().unwrap().iter().find(|t| t["name"] == "sandbox_echo").expect("echo listed").clone();
    for field in [
        "integration",
        "integrationName",
        "name",
        "description",
        "inputSchema",
        "mode",
        "accessLevel",
        "risk",
        "guidanceAvailable",
        "requiresConfirmation",
        "previewAvailable",
        "defaultConnectionId",
        "connectionCount",
    ] {
        assert!(echo.get(field).is_some(), "descriptor lacks {field}: {echo}");
    }
    assert_eq!(echo["defaultConnectionId"], conn.0);
    assert_eq!(echo["connectionCount"], 1);
    assert_eq!(echo["requiresConfirmation"], false);
    let (status, body) = stack.get(key, "/api/tools?integration=nope").await;
    assert_eq!(status, 404, "{body}");

    let (status, found) = stack.get(key, "/api/tools/search?query=open%20a%20github%20issue&limit=3").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["tools"][0]["name"], "github_create_issue");
    assert!(found["count"].as_u64().unwrap() <= 3);
    let (status, body) = stack.get(key, "/api/tools/search?query=x&limit=26").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = stack.get(key, "/api/tools/search").await;
    assert_eq!(status, 400);

    let (status, described) = stack.get(key, "/api/tools/sandbox_create_note").await;
    assert_eq!(status, 200);
    let tool = &described["tool"];
    assert_eq!(tool["requiresConfirmation"], true);
    assert!(!tool["askBefore"].as_array().unwrap().is_empty());
    assert!(!tool["examples"].as_array().unwrap().is_empty());
    assert_eq!(tool["connections"][0]["id"], conn.0);
    let (status, missing) = stack.get(key, "/api/tools/github_create_isue").await;
    assert_eq!(status, 404);
    assert_eq!(missing["details"][0], "github_create_issue");

    let (status, catalog) = stack.get(key, "/api/catalog").await;
    assert_eq!(status, 200);
    let integrations = catalog["integrations"].as_array().unwrap();
    assert!(integrations.len() >= 13);
    let sandbox = integrations.iter().find(|i| i["integration"] == "sandbox").unwrap();
    assert_eq!(sandbox["connected"], true);
    let github = integrations.iter().find(|i| i["integration"] == "github").unwrap();
    assert_eq!(github["connected"], false);
    assert_eq!(github["authTypes"], json!(["oauth2"]));

    let (status, listed) = stack.get(key, "/api/integrations").await;
    assert_eq!(status, 200);
    let row = &listed["integrations"][0];
    assert_eq!(row["id"], conn.0);
    assert_eq!(row["isDefault"], true);
    assert_eq!(row["status"], "active");
    assert_eq!(row["integrationName"], "Sandbox");
    stack.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_validates_like_execute_and_changes_nothing() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, conn) = stack.sandbox_user("preview@example.test").await;
    let post = |body: serde_json::Value| {
        stack
            .http
            .post(format!("{}/api/tools/sandbox_delete_note/preview", stack.api_url))
            .header("x-clawlink-api-key", &user.api_key)
            .json(&body)
            .send()
    };
    let resp = post(json!({"arguments": {"note_id": "note_7"}})).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["ok"], true);
    assert_eq!(body["mode"], "preview");
    assert_eq!(body["connectionId"], conn.0);
    assert_eq!(body["data"]["willExecute"], false);
    assert_eq!(body["data"]["confirmationRequired"], true);
    assert_eq!(body["data"]["summary"], "Delete sandbox note note_7");

    let resp = post(json!({"arguments": {}})).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["missingFields"], json!(["note_id"]));

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM executions").fetch_one(&stack.db).await.unwrap();
    assert_eq!(count, 0, "a preview records nothing");
    assert!(stack.emulator.stats().requests.is_empty(), "a preview calls no provider");
    stack.finish().await;
}

/// Pages and filters over a real port, as an agent with a big catalog uses them: a walk
/// with `limit` gives the same tools as the whole list, `connected=true` only the
/// connected app's, on REST and on MCP `tools/list`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_connected_scope_over_a_real_port() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let (user, _conn) = stack.sandbox_user("pages@example.test").await;
    let key = &user.api_key;
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
    };

    let (status, all) = stack.get(key, "/api/tools").await;
    assert_eq!(status, 200);
    let mut walked = Vec::new();
    let mut path = "/api/tools?limit=20".to_string();
    loop {
        let (status, page) = stack.get(key, &path).await;
        assert_eq!(status, 200, "{page}");
        walked.extend(names(&page));
        match page["nextCursor"].as_str() {
            Some(next) => path = format!("/api/tools?limit=20&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(walked, names(&all), "every tool once, in the order of the whole list");

    let (status, connected) = stack.get(key, "/api/tools?connected=true").await;
    assert_eq!(status, 200);
    assert!(!names(&connected).is_empty() && names(&connected).iter().all(|n| n.starts_with("sandbox_")));
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let (status, answer) = stack.post_json(key, "/api/mcp?connected=true", list).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(names(&answer["result"]), names(&connected), "{answer}");

    let (status, body) = stack.get(key, "/api/tools?limit=5&cursor=not-ours").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_cursor")), "{body}");
    stack.finish().await;
}
