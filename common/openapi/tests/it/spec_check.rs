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
                if let Err(found) = check_request(&doc, &options, &request) {
                    for p in found {
                        problems.push(format!("{} example {i} ({} {}): {p}", tool.name, request.method, request.url));
                    }
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
    eprintln!(
        "checked {checked_tools} tools ({checked_requests} example requests) of {} providers against their published documents",
        with_spec.len()
    );
    assert!(checked_tools > 0);
}
