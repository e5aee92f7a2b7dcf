//! The catalog providers over real HTTP: every tool's first example, rendered as ClawLink
//! renders it, is answered as that tool; refusals and bad requests look like the provider;
//! faults and side effects work as for the sandbox.

use std::collections::BTreeMap;

use clawlink_common::catalog::{Auth, Catalog, Provider, RequestBody, default_dir, render_request};
use clawlink_emulator::{Emulator, Fault, FaultKind};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{TOKEN, client, json_of, start};

/// The catalog with every provider's base URL pointed at `emulator`.
fn catalog_for(emulator: &Emulator) -> Catalog {
    let dir = default_dir(None);
    let plain = Catalog::load_dir(&dir, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
    let urls = plain.providers().map(|p| (p.id.clone(), emulator.provider_url(&p.id))).collect();
    Catalog::load_dir(&dir, &urls).unwrap_or_else(|e| panic!("{e}"))
}

/// `request` with the credential applied where `provider` expects it, as the worker does
/// (plus Trello's member token, which the worker does not send yet).
fn authorize(request: reqwest::RequestBuilder, provider: &Provider, token: &str) -> reqwest::RequestBuilder {
    let request = match &provider.auth {
        Auth::Oauth2 { .. } => request.bearer_auth(token),
        Auth::ApiKey { header: Some(header), format, .. } => {
            request.header(header.as_str(), format.replace("{key}", token))
        }
        Auth::ApiKey { query: Some(query), format, .. } => {
            request.query(&[(query.as_str(), format.replace("{key}", token))])
        }
        Auth::ApiKey { .. } => request,
        Auth::Basic => request.basic_auth("ada@example.com", Some(token)),
        Auth::KeyPair { key_query, token_query } => {
            request.query(&[(key_query.as_str(), token), (token_query.as_str(), token)])
        }
    };
    request
}

/// Sends `arguments` for `tool` as ClawLink renders them, with `token` as the credential.
async fn call(
    client: &reqwest::Client,
    catalog: &Catalog,
    tool: &str,
    arguments: &Value,
    token: &str,
) -> reqwest::Response {
    let entry = catalog.tool(tool).unwrap_or_else(|| panic!("no tool {tool}"));
    let rendered = render_request(entry, arguments).unwrap_or_else(|e| panic!("{tool}: {e}"));
    let mut request = client.request(rendered.method, rendered.url);
    for (name, value) in &rendered.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if let Some(header) = &entry.provider.idempotency_header {
        request = request.header(header.as_str(), format!("key-{tool}"));
    }
    request = match rendered.body {
        Some(RequestBody::Json(body)) => request.json(&body),
        Some(RequestBody::Form(pairs)) => request.form(&pairs),
        None => request,
    };
    authorize(request, &entry.provider, token).send().await.unwrap_or_else(|e| panic!("{tool}: {e}"))
}

#[tokio::test]
async fn every_first_example_is_answered_as_its_tool() {
    let emulator = start().await;
    let client = client();
    let catalog = catalog_for(&emulator);
    let mut failures = Vec::new();
    let mut served = Vec::new();
    let mut writes_without_key = 0;
    for entry in catalog.tools().filter(|t| t.provider.id != "sandbox") {
        let Some(example) = entry.tool.guidance.examples.first() else {
            failures.push(format!("{}: no example", entry.name));
            continue;
        };
        let response = call(&client, &catalog, &entry.name, &example.arguments, TOKEN).await;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            failures.push(format!("{}: {status} {text}", entry.name));
            continue;
        }
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", entry.name))
        };
        if let Some(pointer) = &entry.tool.result
            && body.pointer(pointer).is_none()
        {
            failures.push(format!("{}: result {pointer} missing in {body}", entry.name));
        }
        if entry.tool.mode != clawlink_common::catalog::Mode::Read && entry.provider.idempotency_header.is_none() {
            writes_without_key += 1;
        }
        served.push(entry.clone());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let stats = emulator.stats();
    for entry in &served {
        assert_eq!(stats.served(&entry.name), 1, "{}", entry.name);
        if entry.tool.mode != clawlink_common::catalog::Mode::Read && entry.provider.idempotency_header.is_some() {
            assert_eq!(stats.performed(&format!("key-{}", entry.name)), 1, "{}", entry.name);
        }
    }
    assert_eq!(stats.performed("-"), writes_without_key);
    assert!(stats.requests.iter().all(|r| r.authorized && r.tool.is_some()));
    emulator.shutdown().await;
}

#[tokio::test]
async fn identities_resolve_the_catalog_pointers() {
    let emulator = start().await;
    let client = client();
    let catalog = catalog_for(&emulator);
    for provider in catalog.providers().filter(|p| p.id != "sandbox") {
        let Some(identity) = &provider.identity else {
            continue;
        };
        let url = format!("{}{}", provider.base_url, identity.path);
        let method = identity.method.parse().unwrap_or_else(|e| panic!("{e}"));
        let mut request = client.request(method, url);
        for (name, value) in &provider.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &identity.body {
            request = request.json(body);
        }
        let response = authorize(request, provider, TOKEN).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), StatusCode::OK, "{}", provider.id);
        let body = json_of(response).await;
        for pointer in [&identity.id, &identity.label] {
            assert!(body.pointer(pointer).is_some(), "{}: {pointer} in {body}", provider.id);
        }
        assert_eq!(emulator.stats().served(&format!("{}.identity", provider.id)), 1);
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn refusals_look_like_the_provider_and_use_up_no_fault() {
    let emulator = start().await;
    let client = client();
    let catalog = catalog_for(&emulator);
    emulator.add_fault(Fault {
        method: None,
        path: None,
        kind: FaultKind::Status { status: 503, retry_after: None, body: None, headers: vec![] },
        times: 1,
    });
    let issue = json!({"owner": "octo-org", "repo": "web", "issue_number": 42});

    let github = call(&client, &catalog, "github_get_issue", &issue, "wrong").await;
    assert_eq!(github.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(github).await["message"], "Bad credentials");

    // Slack refuses with 200 and ok: false.
    let slack = call(&client, &catalog, "slack_get_user", &json!({"user": "U1"}), "wrong").await;
    assert_eq!(slack.status(), StatusCode::OK);
    assert_eq!(json_of(slack).await, json!({"ok": false, "error": "invalid_auth"}));

    // Discord wants `Bot <token>`, not a bearer token.
    let discord = client
        .get(format!("{}/users/@me", emulator.provider_url("discord")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(discord.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(discord).await["message"], "401: Unauthorized");

    // Trello wants the member token beside the key, and refuses in plain text.
    let trello = client
        .get(format!("{}/members/me", emulator.provider_url("trello")))
        .query(&[("key", TOKEN)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(trello.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(trello.text().await.unwrap_or_default(), "invalid token");

    let stats = emulator.stats();
    assert!(stats.requests.iter().all(|r| !r.authorized && r.tool.is_none()));
    // The fault is still there for the first authorized request.
    let faulted = call(&client, &catalog, "github_get_issue", &issue, TOKEN).await;
    assert_eq!(faulted.status(), StatusCode::SERVICE_UNAVAILABLE);
    let answered = call(&client, &catalog, "github_get_issue", &issue, TOKEN).await;
    assert_eq!(answered.status(), StatusCode::OK);
    assert_eq!(json_of(answered).await["number"], 42);
    emulator.shutdown().await;
}

#[tokio::test]
async fn request_shapes_are_checked() {
    let emulator = start().await;
    let client = client();
    let catalog = catalog_for(&emulator);
    let github = emulator.provider_url("github");

    // A required body field missing, then of the wrong type.
    for (body, reason) in [
        (json!({"body": "no title"}), "missing required field: title"),
        (json!({"title": 5}), "field title must be string, not number"),
    ] {
        let response = client
            .post(format!("{github}/repos/octo-org/web/issues"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json_of(response).await["message"], reason);
    }
    // Not JSON at all.
    let response = client
        .post(format!("{github}/repos/octo-org/web/issues"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("title=x")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Notion needs its version header.
    let response = client
        .get(format!("{}/users/me", emulator.provider_url("notion")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert_eq!(body["message"], "missing required header: notion-version");
    assert_eq!(body["code"], "validation_error");

    // Stripe refuses JSON bodies.
    let response = client
        .post(format!("{}/customers", emulator.provider_url("stripe")))
        .bearer_auth(TOKEN)
        .json(&json!({"email": "ana@example.com"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json_of(response).await;
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("x-www-form-urlencoded")), "{body}");

    // A query-located argument must be in the query.
    let response = client
        .post(format!("{}/calendars/primary/events/quickAdd", emulator.provider_url("google_calendar")))
        .bearer_auth(TOKEN)
        .json(&json!({"text": "Lunch tomorrow"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(response).await["error"]["message"], "missing required query parameter: text");

    // Gmail wants a message with the required headers.
    let response = client
        .post(format!("{}/users/me/messages/send", emulator.provider_url("gmail")))
        .bearer_auth(TOKEN)
        .json(&json!({"raw": "U3ViamVjdDogaGkNCg0KYm9keQ"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(response).await["error"]["message"], "the message has no To header");

    // A GraphQL tool must get its own query and variables.
    let linear = format!("{}/graphql", emulator.provider_url("linear"));
    let query = match &catalog.tool("linear_add_comment").unwrap_or_else(|| panic!("linear_add_comment")).tool.transform
    {
        Some(clawlink_common::catalog::Transform::Graphql { query }) => query.clone(),
        other => panic!("{other:?}"),
    };
    for (body, reason) in [
        (json!({"query": "query { x }"}), "the GraphQL query is not one"),
        (json!({"query": query, "variables": {"issueId": "ENG-1"}}), "missing required field: body"),
    ] {
        let response =
            client.post(&linear).bearer_auth(TOKEN).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = json_of(response).await;
        assert!(body["errors"][0]["message"].as_str().is_some_and(|m| m.starts_with(reason)), "{body}");
    }
    assert_eq!(emulator.stats().performed("-"), 0);
    emulator.shutdown().await;
}

#[tokio::test]
async fn tools_sharing_a_path_are_told_apart_and_writes_counted() {
    let emulator = start().await;
    let client = client();
    let catalog = catalog_for(&emulator);
    let issue = json!({"owner": "o", "repo": "r", "issue_number": 1});
    let mut close = issue.clone();
    close["state"] = json!("closed");
    let mut update = issue.clone();
    update["title"] = json!("New title");
    call(&client, &catalog, "github_close_issue", &close, TOKEN).await;
    call(&client, &catalog, "github_update_issue", &update, TOKEN).await;
    let post = json!({"channel": "C1", "text": "hi"});
    let reply = json!({"channel": "C1", "text": "hi", "thread_ts": "1.2"});
    call(&client, &catalog, "slack_post_message", &post, TOKEN).await;
    let answer = call(&client, &catalog, "slack_reply_in_thread", &reply, TOKEN).await;
    assert!(json_of(answer).await["message"]["thread_ts"].is_string());
    // Todoist's idempotency header is X-Request-Id; the write counts under it.
    call(&client, &catalog, "todoist_close_task", &json!({"task_id": "t1"}), TOKEN).await;

    let stats = emulator.stats();
    let tools: Vec<_> = stats.requests.iter().map(|r| r.tool.as_deref()).collect();
    assert_eq!(
        tools,
        [
            Some("github_close_issue"),
            Some("github_update_issue"),
            Some("slack_post_message"),
            Some("slack_reply_in_thread"),
            Some("todoist_close_task"),
        ]
    );
    assert_eq!(stats.performed("-"), 4);
    assert_eq!(stats.performed("key-todoist_close_task"), 1);
    assert_eq!(stats.requests[4].idempotency_key.as_deref(), Some("key-todoist_close_task"));
    assert_eq!(stats.requests[4].status, 204);
    emulator.shutdown().await;
}
