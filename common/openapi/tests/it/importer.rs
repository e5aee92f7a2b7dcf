//! The importer on two documents written for it (tests/fixtures): a Swagger 2.0 YAML and
//! an OpenAPI 3.1 JSON. What a reviewer and an agent would notice: the tools made, their
//! names, modes and arguments, the operations skipped and why, and that the written file
//! loads with the catalog's own loader and renders the requests the document describes.

use clawlink_common::catalog::{
    ArgLocation, Auth, BodyEncoding, Catalog, Mode, RequestBody, Risk, render_request, validate_arguments,
};
use clawlink_openapi::{
    ApiRoot, CheckOptions, Document, ImportOptions, SkipReason, check_request, import, to_catalog_toml,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixture(name: &str) -> Document {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    Document::parse(&std::fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn load(text: &str) -> Catalog {
    Catalog::from_sources(vec![(PathBuf::from("x.toml"), text.to_string())], &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Every example of every tool renders a request `doc` accepts.
fn examples_match(doc: &Document, catalog: &Catalog, base_url: &str) {
    let options = CheckOptions::new(ApiRoot::parse(base_url).unwrap());
    for entry in catalog.tools() {
        for example in &entry.tool.guidance.examples {
            let request = render_request(entry, &example.arguments).unwrap();
            check_request(doc, &options, &request).unwrap_or_else(|e| panic!("{}: {e:?}", entry.name));
        }
    }
}

fn skipped(report: &clawlink_openapi::ImportReport) -> Vec<(String, SkipReason)> {
    report.skipped.iter().map(|s| (s.operation.clone(), s.reason)).collect()
}

#[test]
fn swagger2_yaml_becomes_a_form_provider_with_the_right_skips() {
    let doc = fixture("petstore-swagger2.yaml");
    let imported = import(&doc, &ImportOptions { provider: "pets".into(), ..Default::default() }).unwrap();
    let p = &imported.provider;
    assert_eq!(p.base_url, "https://pets.example.com/v2");
    assert_eq!(p.body_encoding, BodyEncoding::Form, "most bodies are forms");
    assert_eq!(p.auth, Auth::ApiKey { header: Some("X-Api-Key".into()), query: None, format: "{key}".into() });

    let names: Vec<String> = imported.report.tools.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, ["pets_list_pets", "pets_add_pet", "pets_delete_pet"]);
    assert_eq!(
        skipped(&imported.report),
        [
            ("GET /pets/legacy (legacyPets)".to_string(), SkipReason::Deprecated),
            ("POST /pets/search (searchPets)".to_string(), SkipReason::BodyEncoding),
            ("PUT /pets/{petId} (replacePet)".to_string(), SkipReason::NameCollision),
            ("HEAD /pets/{petId} (petExists)".to_string(), SkipReason::Method),
            ("POST /pets/{petId}/photo (uploadPhoto)".to_string(), SkipReason::Multipart),
        ]
    );

    let text = to_catalog_toml(p, &imported.report, "petstore-swagger2.yaml").unwrap();
    let catalog = load(&text);
    let list = catalog.tool("pets_list_pets").unwrap();
    assert_eq!(list.tool.operation_id.as_deref(), Some("listPets"), "the operation id survives loading");
    assert_eq!((list.tool.mode, list.tool.risk), (Mode::Read, Risk::Safe));
    let properties = list.tool.input_schema["properties"].as_object().unwrap();
    assert!(!properties.contains_key("X-Api-Key"), "the credential header is not an argument");
    assert_eq!(list.tool.args.get("x_request_id"), Some(&ArgLocation::Header("X-Request-Id".into())));
    let r = render_request(list, &json!({"status": "sold", "limit": 5, "x_request_id": "r1"})).unwrap();
    assert_eq!(r.url.as_str(), "https://pets.example.com/v2/pets?limit=5&status=sold");
    assert_eq!(r.headers, [("X-Request-Id".to_string(), "r1".to_string())]);
    assert!(validate_arguments(list, &json!({"status": "lost"})).is_err(), "the enum is kept");

    let add = catalog.tool("pets_add_pet").unwrap();
    assert_eq!((add.tool.mode, add.tool.risk), (Mode::Write, Risk::Confirm));
    assert!(validate_arguments(add, &json!({"age": 3})).unwrap_err().missing_fields.contains(&"name".to_string()));
    let r = render_request(add, &json!({"name": "Rex", "age": 3})).unwrap();
    assert_eq!(r.body, Some(RequestBody::Form(vec![("age".into(), "3".into()), ("name".into(), "Rex".into())])));
    let delete = catalog.tool("pets_delete_pet").unwrap();
    assert_eq!((delete.tool.mode, delete.tool.risk), (Mode::Destructive, Risk::HighImpact));
    assert!(!delete.tool.guidance.ask_before.is_empty());

    // Each example renders a request the document itself accepts.
    examples_match(&doc, &catalog, &p.base_url);
}

#[test]
fn openapi31_refs_all_of_and_choices() {
    let doc = fixture("tasks-openapi31.json");
    let imported = import(&doc, &ImportOptions { provider: "tasks".into(), ..Default::default() }).unwrap();
    let p = &imported.provider;
    assert_eq!(p.base_url, "https://eu.tasks.example.com/api", "server variables take their defaults");
    assert_eq!(p.categories, ["productivity"]);
    let Auth::Oauth2 { authorize_url, scopes, .. } = &p.auth else { panic!("oauth2: {:?}", p.auth) };
    assert_eq!(authorize_url, "https://tasks.example.com/oauth/authorize");
    assert_eq!(scopes, &["tasks:read", "tasks:write"], "only the scopes the operations ask for");

    let names: Vec<&str> = imported.report.tools.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["tasks_list", "tasks_create", "tasks_remove", "tasks_update", "tasks_create_tasks_complete"]);
    assert_eq!(
        skipped(&imported.report),
        [
            ("POST /tasks/batch (tasks.batch)".to_string(), SkipReason::BodyNotObject),
            ("POST /tasks/choose (tasks.choose)".to_string(), SkipReason::BodyChoice),
            ("POST /tasks/external (tasks.external)".to_string(), SkipReason::UnresolvedRef),
        ]
    );
    let text = to_catalog_toml(p, &imported.report, "tasks-openapi31.json").unwrap();
    let catalog = load(&text);

    let list = catalog.tool("tasks_list").unwrap();
    let properties = list.tool.input_schema["properties"].as_object().unwrap();
    assert!(properties.contains_key("label"));
    assert!(!properties.contains_key("$filter") && !properties.contains_key("session"), "{properties:?}");
    assert!(
        list.tool.description.contains("$filter"),
        "a dropped optional parameter is said: {}",
        list.tool.description
    );

    let create = catalog.tool("tasks_create").unwrap();
    let schema = &create.tool.input_schema;
    assert_eq!(schema["required"], json!(["title"]), "allOf merged, required kept");
    assert!(schema["properties"].get("id").is_none(), "read-only fields are not sent");
    assert_eq!(schema["properties"]["due"], json!({"type": "string", "format": "date"}));
    assert_eq!(schema["properties"]["priority"]["type"], "integer");
    assert!(schema["properties"]["priority"].get("enum").is_none(), "integer enums are described, not listed");
    assert_eq!(create.tool.args.get("notify"), Some(&ArgLocation::Query));
    let r = render_request(create, &json!({"title": "Buy milk", "notify": true, "labels": ["home"]})).unwrap();
    assert_eq!(r.url.as_str(), "https://eu.tasks.example.com/api/tasks?notify=true");
    assert_eq!(r.body, Some(RequestBody::Json(json!({"title": "Buy milk", "labels": ["home"]}))));

    let update = catalog.tool("tasks_update").unwrap();
    assert_eq!(update.tool.input_schema["required"], json!(["task_id"]), "path-level parameters apply");
    assert!(update.tool.description.contains("not offered: task_id"), "{}", update.tool.description);
    assert_eq!(update.tool.guidance.examples[0].arguments, json!({"task_id": "t_42"}), "the document's example");
    assert!(validate_arguments(update, &json!({"task_id": "nope"})).is_err(), "the pattern is kept");
    assert_eq!(catalog.tool("tasks_remove").unwrap().tool.mode, Mode::Destructive);
    let complete = catalog.tool("tasks_create_tasks_complete").unwrap();
    assert_eq!(complete.tool.operation_id, None);
    assert_eq!(complete.tool.title, "Complete a task");

    examples_match(&doc, &catalog, &p.base_url);
}

#[test]
fn asked_for_operations_only_and_unknown_ones_reported() {
    let doc = fixture("tasks-openapi31.json");
    let options = ImportOptions {
        provider: "tasks".into(),
        operations: Some(vec!["tasks.list".into(), "DELETE /tasks/{task_id}".into(), "tasks.nope".into()]),
        base_url: Some("https://tasks.internal.example".into()),
    };
    let imported = import(&doc, &options).unwrap();
    assert_eq!(imported.provider.base_url, "https://tasks.internal.example");
    assert_eq!(imported.provider.tools.len(), 2);
    assert_eq!(skipped(&imported.report), [("tasks.nope".to_string(), SkipReason::NotFound)]);
    assert!(import(&doc, &ImportOptions { provider: "Bad-Id".into(), ..Default::default() }).is_err());
}

#[test]
fn the_check_finds_what_a_wrong_tool_would_send() {
    let doc = fixture("tasks-openapi31.json");
    let options = CheckOptions::new(ApiRoot::parse("https://eu.tasks.example.com/api").unwrap());
    let catalog = load(
        r#"
id = "tasks"
name = "Tasks"
base_url = "https://eu.tasks.example.com/api"
auth = { type = "basic" }
[[tools]]
action = "wrong_path"
title = "t"
description = "d"
method = "GET"
path = "/task"
mode = "read"
risk = "safe"
preview = "p"
input_schema = { type = "object" }
[[tools]]
action = "wrong_method"
title = "t"
description = "d"
method = "PUT"
path = "/tasks/{task_id}"
mode = "write"
risk = "confirm"
preview = "p"
input_schema = { type = "object", required = ["task_id"], properties = { task_id = { type = "string" } } }
[[tools]]
action = "wrong_arguments"
title = "t"
description = "d"
method = "POST"
path = "/tasks"
mode = "write"
risk = "confirm"
preview = "p"
input_schema = { type = "object" }
args = { }
"#,
    );
    let problems = |name: &str, args: serde_json::Value| {
        let request = render_request(catalog.tool(name).unwrap(), &args).unwrap();
        check_request(&doc, &options, &request).unwrap_err().join("; ")
    };
    assert!(problems("tasks_wrong_path", json!({})).contains("no path of the document matches /task"));
    assert!(problems("tasks_wrong_method", json!({"task_id": "t_1"})).contains("has no PUT operation"));
    let found = problems("tasks_wrong_method", json!({"task_id": "t_1"}));
    assert!(found.contains("PATCH") && found.contains("DELETE"), "{found}");
    let found = problems("tasks_wrong_arguments", json!({"titel": "x", "priority": "high", "notify": true}));
    assert!(found.contains("\"title\" is a required property"), "{found}");
    assert!(found.contains("\"high\" is not of type \"integer\"") || found.contains("not of type"), "{found}");
    assert!(found.contains("body"), "{found}");
}
