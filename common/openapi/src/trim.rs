//! A trimmed copy of a document: only the operations named, only what a request check
//! reads of them (parameters and request body, not responses), and only the components
//! those reach through `$ref`. Small enough to keep in git beside the catalog.

use crate::document::{Document, METHODS};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// Keys of an operation a request check reads.
const OPERATION_KEYS: [&str; 8] =
    ["operationId", "summary", "parameters", "requestBody", "consumes", "deprecated", "security", "x-github"];

/// `doc` with only the `(METHOD, /template)` operations in `keep`, stamped with `stamp`
/// under `x-clawlink`.
pub fn trim(doc: &Document, keep: &BTreeSet<(String, String)>, stamp: Value) -> Value {
    let root = &doc.root;
    let mut out = Map::new();
    for key in ["openapi", "swagger", "host", "basePath", "schemes", "consumes", "servers"] {
        if let Some(v) = root.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let info = root.get("info").cloned().unwrap_or_default();
    let mut kept_info = Map::new();
    for key in ["title", "version", "license", "termsOfService"] {
        if let Some(v) = info.get(key) {
            kept_info.insert(key.into(), v.clone());
        }
    }
    out.insert("info".into(), Value::Object(kept_info));
    out.insert("x-clawlink".into(), stamp);

    let mut paths = Map::new();
    for (path, item) in root.get("paths").and_then(Value::as_object).into_iter().flatten() {
        let Ok(item) = doc.resolve(item) else {
            continue;
        };
        let mut kept = Map::new();
        for method in METHODS {
            if !keep.contains(&(method.to_ascii_uppercase(), path.clone())) {
                continue;
            }
            let Some(op) = item.get(method).and_then(Value::as_object) else {
                continue;
            };
            let mut trimmed: Map<String, Value> = op
                .iter()
                .filter(|(k, _)| OPERATION_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            trimmed.insert("responses".into(), json!({"default": {"description": "(trimmed)"}}));
            kept.insert(method.into(), Value::Object(trimmed));
        }
        if !kept.is_empty() {
            if let Some(p) = item.get("parameters") {
                kept.insert("parameters".into(), p.clone());
            }
            paths.insert(path.clone(), Value::Object(kept));
        }
    }
    let mut out = Value::Object(out);
    if let Some(map) = out.as_object_mut() {
        map.insert("paths".into(), Value::Object(paths.clone()));
    }

    // Components reached from the kept paths, transitively.
    let mut pending: Vec<String> = Vec::new();
    collect_refs(&Value::Object(paths), &mut pending);
    let mut seen = BTreeSet::new();
    while let Some(reference) = pending.pop() {
        if !seen.insert(reference.clone()) {
            continue;
        }
        let Some(target) = doc.lookup(&reference) else {
            continue;
        };
        collect_refs(target, &mut pending);
        insert_at(&mut out, &reference, target.clone());
    }
    out
}

fn collect_refs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref")
                && r.starts_with("#/")
            {
                out.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn insert_at(root: &mut Value, reference: &str, value: Value) {
    let pointer = reference.trim_start_matches('#');
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| {
            let p = percent_encoding::percent_decode_str(p).decode_utf8_lossy();
            p.replace("~1", "/").replace("~0", "~")
        })
        .collect();
    let mut current = root;
    for (i, part) in parts.iter().enumerate() {
        let Some(map) = current.as_object_mut() else {
            return;
        };
        if i + 1 == parts.len() {
            map.insert(part.clone(), value);
            return;
        }
        current = map.entry(part.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
}
