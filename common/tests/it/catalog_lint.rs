//! Lints the real catalog: every file loads (schemas valid, path parameters declared,
//! examples match their schema, names unique) and every tool carries what an agent needs.

use crate::catalog;
use clawlink_common::catalog::{Mode, render_request, validate_arguments};

#[test]
fn every_tool_is_complete() {
    let catalog = catalog();
    let mut problems = Vec::new();
    for entry in catalog.tools() {
        let t = &entry.tool;
        if t.guidance.examples.is_empty() {
            problems.push(format!("{}: no example", entry.name));
        }
        if t.description.len() < 20 {
            problems.push(format!("{}: description too short", entry.name));
        }
        if t.guidance.when_to_use.is_empty() {
            problems.push(format!("{}: no guidance.when_to_use", entry.name));
        }
        if t.mode != Mode::Read && t.guidance.ask_before.is_empty() {
            problems.push(format!("{}: a {} tool needs guidance.ask_before", entry.name, t.mode.as_str()));
        }
        for (i, example) in t.guidance.examples.iter().enumerate() {
            if let Err(e) = validate_arguments(entry, &example.arguments) {
                problems.push(format!("{}: example {i} is invalid: {:?}", entry.name, e.details));
            } else if let Err(e) = render_request(entry, &example.arguments) {
                problems.push(format!("{}: example {i} does not render: {e}", entry.name));
            }
        }
    }
    assert!(problems.is_empty(), "catalog problems:\n{}", problems.join("\n"));
}

#[test]
fn every_provider_declares_its_basics() {
    let catalog = catalog();
    for p in catalog.providers() {
        assert!(!p.name.is_empty() && !p.categories.is_empty(), "{}: name and categories", p.id);
        assert!(!p.tools.is_empty(), "{}: no tools", p.id);
        assert!(p.base_url.starts_with("https://") || p.id == "sandbox", "{}: base_url must be https", p.id);
    }
}

/// The function-calling rules of the major model APIs (`catalog::lint`): a violation makes
/// the tool list fail for an agent on that model. Strict-mode misses are only counted.
#[test]
fn every_input_schema_is_accepted_by_the_model_apis() {
    let report = clawlink_common::catalog::lint_catalog(&catalog());
    let violations: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    assert!(violations.is_empty(), "{} schema-lint violations:\n{}", violations.len(), violations.join("\n"));
    eprintln!(
        "catalog lint: {} tools, 0 violations; {} not in OpenAI strict form",
        report.tools,
        report.not_strict.len()
    );
}
