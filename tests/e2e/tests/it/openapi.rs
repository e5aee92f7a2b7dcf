//! The OpenAPI document lists every route the api serves, and every route it lists is
//! served.

use clawlink_e2e::{Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_served() {
    let stack = Stack::start(Options { workers: 0, ..Default::default() }).await;
    let doc: serde_json::Value =
        stack.http.get(format!("{}/api/openapi.json", stack.api_url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = 0;
    for (method, path, auth, _) in clawlink_api::routes::ROUTES {
        let op = &paths[*path][*method];
        assert!(op.is_object(), "{method} {path} is missing from the document");
        assert_eq!(op["security"].as_array().map(|s| !s.is_empty()), Some(*auth), "{method} {path} security");
        documented += 1;
        // Served: a request reaches a handler (never the router's own 404 or 405).
        let url = format!("{}{}", stack.api_url, path.replace('{', "x").replace('}', ""));
        let req =
            if *method == "post" { stack.http.post(&url).json(&serde_json::json!({})) } else { stack.http.get(&url) };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_ne!(body["error"]["code"], "route_not_found", "{method} {path} is documented but not served");
        assert_ne!(status, 405, "{method} {path}");
    }
    assert_eq!(
        paths.values().map(|p| p.as_object().unwrap().len()).sum::<usize>(),
        documented,
        "nothing undeclared is documented"
    );
    let (status, body) = stack.get("x", "/api/nope").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("route_not_found")));
    stack.finish().await;
}
