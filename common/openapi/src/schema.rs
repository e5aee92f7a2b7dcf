//! OpenAPI schemas turned into the input schemas model APIs accept (see
//! `clawlink_common::catalog::lint`): `$ref`s inlined with a bound, `allOf` merged, one
//! `type` per schema, enums only on strings, no `null`s (TOML has none), only the
//! keywords that validate or describe. And the other way, [`validation_schema`]: an
//! operation's schema as a JSON Schema a validator can run, for checking requests.

use crate::document::Document;
use serde_json::{Map, Value, json};

/// Bounds on inlining: how deep the result may nest, and how often one `$ref` may be
/// expanded inside itself (a recursive schema such as a tree's node).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_depth: usize,
    pub max_recursion: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_depth: 6, max_recursion: 1 }
    }
}

/// Why a schema could not be inlined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaError {
    /// A `$ref` to another file or to nothing.
    UnresolvedRef(String),
}

/// The keywords kept as they are (after their children are converted).
const KEEP: [&str; 16] = [
    "description",
    "format",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "default",
    "required",
    "additionalProperties",
];

/// Inlines `schema` for a tool's input schema. `read_only` properties are left out (a
/// request does not send them).
pub fn inline(doc: &Document, schema: &Value, limits: Limits) -> Result<Value, SchemaError> {
    let mut inliner = Inliner { doc, limits, stack: Vec::new() };
    inliner.convert(schema, 0)
}

struct Inliner<'a> {
    doc: &'a Document,
    limits: Limits,
    stack: Vec<String>,
}

impl Inliner<'_> {
    fn convert(&mut self, schema: &Value, depth: usize) -> Result<Value, SchemaError> {
        let Some(map) = schema.as_object() else {
            // `true`/`false` schemas, or junk: anything goes.
            return Ok(json!({}));
        };
        if let Some(reference) = map.get("$ref") {
            let reference = reference.as_str().unwrap_or_default().to_string();
            let target = self.doc.lookup(&reference).ok_or_else(|| SchemaError::UnresolvedRef(reference.clone()))?;
            let seen = self.stack.iter().filter(|r| **r == reference).count();
            let mut out = if seen > self.limits.max_recursion || depth >= self.limits.max_depth {
                stub(self.doc, target)
            } else {
                self.stack.push(reference);
                let converted = self.convert(target, depth);
                self.stack.pop();
                converted?
            };
            // OpenAPI 3.1 allows a description beside a $ref; it describes this use.
            if let (Some(d), Some(o)) = (map.get("description").and_then(Value::as_str), out.as_object_mut()) {
                o.insert("description".into(), Value::String(d.to_string()));
            }
            return Ok(out);
        }
        if depth >= self.limits.max_depth {
            return Ok(stub(self.doc, schema));
        }

        let mut out = Map::new();
        // allOf: every part at once — merged into one object schema.
        if let Some(parts) = map.get("allOf").and_then(Value::as_array) {
            for part in parts {
                let part = self.convert(part, depth)?;
                merge(&mut out, part);
            }
        }
        // oneOf/anyOf: a choice. Null alternatives go (nullability is not expressed);
        // a single one left is the schema itself; several stay an `anyOf`, which OpenAI's
        // strict mode and Gemini take (oneOf they do not).
        let mut choices = Vec::new();
        for keyword in ["oneOf", "anyOf"] {
            for choice in map.get(keyword).and_then(Value::as_array).into_iter().flatten() {
                if choice.get("type").and_then(Value::as_str) == Some("null") {
                    continue;
                }
                choices.push(self.convert(choice, depth + 1)?);
            }
        }
        match choices.len() {
            0 => {}
            1 => merge(&mut out, choices.pop().unwrap_or_default()),
            _ => {
                out.insert("anyOf".into(), Value::Array(choices));
            }
        }

        // One type. ["string", "null"] is a nullable string; several real types become an
        // anyOf of them.
        match map.get("type") {
            Some(Value::String(t)) if t != "null" => {
                out.insert("type".into(), Value::String(t.clone()));
            }
            Some(Value::Array(types)) => {
                let real: Vec<&str> = types.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
                match real.as_slice() {
                    [] => {}
                    [one] => {
                        out.insert("type".into(), Value::String(one.to_string()));
                    }
                    many if !out.contains_key("anyOf") => {
                        out.insert("anyOf".into(), many.iter().map(|t| json!({ "type": t })).collect());
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        if !out.contains_key("type") && (map.contains_key("properties") || map.contains_key("additionalProperties")) {
            out.insert("type".into(), "object".into());
        }

        for key in KEEP {
            let Some(value) = map.get(key) else {
                continue;
            };
            match key {
                "additionalProperties" => match value {
                    Value::Bool(b) => {
                        out.insert(key.into(), Value::Bool(*b));
                    }
                    Value::Object(_) => {
                        let child = self.convert(value, depth + 1)?;
                        out.insert(key.into(), child);
                    }
                    _ => {}
                },
                "required" => {
                    let names: Vec<Value> =
                        value.as_array().into_iter().flatten().filter(|v| v.is_string()).cloned().collect();
                    if !names.is_empty() {
                        out.insert(key.into(), Value::Array(names));
                    }
                }
                _ => {
                    if let Some(v) = strip_nulls(value) {
                        out.insert(key.into(), v);
                    }
                }
            }
        }
        // OpenAPI 3.0 booleans for exclusive bounds become JSON Schema numbers.
        for (flag, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
            match map.get(flag) {
                Some(Value::Bool(true)) => {
                    if let Some(b) = out.remove(bound) {
                        out.insert(flag.into(), b);
                    }
                }
                Some(v @ Value::Number(_)) => {
                    out.insert(flag.into(), v.clone());
                }
                _ => {}
            }
        }
        // Enums: strings only (Gemini). Others are said in the description.
        let listed: Vec<Value> = match (map.get("enum"), map.get("const")) {
            (Some(Value::Array(list)), _) => list.iter().filter(|v| !v.is_null()).cloned().collect(),
            (_, Some(c)) if !c.is_null() => vec![c.clone()],
            _ => Vec::new(),
        };
        if !listed.is_empty() {
            let is_string_type = out.get("type").is_none_or(|t| t == "string");
            if is_string_type && listed.iter().all(Value::is_string) {
                out.insert("type".into(), "string".into());
                out.insert("enum".into(), Value::Array(listed));
            } else {
                let words: Vec<String> = listed.iter().take(20).map(|v| v.to_string()).collect();
                append_description(&mut out, &format!("One of: {}.", words.join(", ")));
            }
        }
        if let Some(items) = map.get("items") {
            let items = match items {
                Value::Array(tuple) => tuple.first().cloned().unwrap_or(json!({})),
                other => other.clone(),
            };
            let child = self.convert(&items, depth + 1)?;
            out.insert("items".into(), child);
        } else if out.get("type").is_some_and(|t| t == "array") {
            out.insert("items".into(), json!({}));
        }
        if let Some(properties) = map.get("properties").and_then(Value::as_object) {
            let mut converted = out.remove("properties").and_then(|p| p.as_object().cloned()).unwrap_or_default();
            for (name, child) in properties {
                let resolved = self.doc.resolve(child).unwrap_or(child);
                if resolved.get("readOnly").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                converted.insert(name.clone(), self.convert(child, depth + 1)?);
            }
            out.insert("properties".into(), Value::Object(converted));
        }
        // `required` may only name properties that are there (read-only ones were left out).
        if let Some(Value::Object(props)) = out.get("properties").cloned()
            && let Some(Value::Array(required)) = out.get_mut("required")
        {
            required.retain(|r| r.as_str().is_some_and(|r| props.contains_key(r)));
            if required.is_empty() {
                out.remove("required");
            }
        }
        Ok(Value::Object(out))
    }
}

/// What a schema too deep (or recursive) to inline becomes: its type, and a word saying so.
fn stub(doc: &Document, schema: &Value) -> Value {
    let target = doc.resolve(schema).unwrap_or(schema);
    let mut out = Map::new();
    let kind = match target.get("type") {
        Some(Value::String(t)) if t != "null" => Some(t.clone()),
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).find(|t| *t != "null").map(str::to_string),
        _ if target.get("properties").is_some() => Some("object".into()),
        _ => None,
    };
    if let Some(kind) = kind {
        out.insert("type".into(), Value::String(kind));
    }
    let what = target.get("description").and_then(Value::as_str).map(|d| first_sentence(d, 160));
    let text = match what {
        Some(d) => format!("{d} (nested structure; see the provider's documentation)"),
        None => "Nested structure; see the provider's documentation.".to_string(),
    };
    out.insert("description".into(), Value::String(text));
    Value::Object(out)
}

/// Merges `part` (an object schema) into `out`: properties and required lists join,
/// other keywords keep the first value seen.
fn merge(out: &mut Map<String, Value>, part: Value) {
    let Value::Object(part) = part else {
        return;
    };
    for (key, value) in part {
        match (key.as_str(), out.get_mut(&key)) {
            ("properties", Some(Value::Object(mine))) => {
                if let Value::Object(theirs) = value {
                    for (k, v) in theirs {
                        mine.entry(k).or_insert(v);
                    }
                }
            }
            ("required", Some(Value::Array(mine))) => {
                for v in value.as_array().into_iter().flatten() {
                    if !mine.contains(v) {
                        mine.push(v.clone());
                    }
                }
            }
            ("description", Some(_)) => {}
            (_, Some(_)) => {}
            (_, None) => {
                out.insert(key, value);
            }
        }
    }
}

fn append_description(out: &mut Map<String, Value>, text: &str) {
    let joined = match out.get("description").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => format!("{} {text}", d.trim_end()),
        _ => text.to_string(),
    };
    out.insert("description".into(), Value::String(joined));
}

/// `value` without `null`s (in objects the key goes, in arrays the item); `None` when
/// nothing is left of it.
pub fn strip_nulls(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(strip_nulls).collect())),
        Value::Object(map) => {
            Some(Value::Object(map.iter().filter_map(|(k, v)| Some((k.clone(), strip_nulls(v)?))).collect()))
        }
        other => Some(other.clone()),
    }
}

/// The first sentence of `text` (HTML tags out, whitespace folded), at most `max` chars.
pub fn first_sentence(text: &str, max: usize) -> String {
    let text = plain_text(text);
    let end = text.find(". ").map(|i| i + 1).unwrap_or(text.len());
    truncate(&text[..end], max)
}

/// `text` without HTML tags, with whitespace folded to single spaces.
pub fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters, cut at a word with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > max / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end_matches([',', ';', ':', ' ']))
}

/// A value that fits `schema` (an inlined one): its default or first enum value, else one
/// made from the type and format. Objects get their required properties only.
pub fn example_value(schema: &Value, depth: usize) -> Value {
    if let Some(default) = schema.get("default") {
        return default.clone();
    }
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(first) = schema.get("anyOf").and_then(Value::as_array).and_then(|e| e.first()) {
        return example_value(first, depth + 1);
    }
    let number = |key: &str| schema.get(key).and_then(Value::as_f64);
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => {
            let low = number("minimum").or(number("exclusiveMinimum").map(|m| m + 1.0)).unwrap_or(1.0).ceil();
            json!(low.max(number("maximum").map_or(low, |m| m.min(low))) as i64)
        }
        Some("number") => json!(number("minimum").unwrap_or(1.0)),
        Some("boolean") => json!(true),
        Some("array") => {
            let item = example_value(schema.get("items").unwrap_or(&json!({})), depth + 1);
            let count = schema.get("minItems").and_then(Value::as_u64).unwrap_or(1).clamp(1, 3);
            Value::Array(vec![item; count as usize])
        }
        Some("object") => {
            let mut out = Map::new();
            if depth < 8 {
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                for (name, child) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
                    if required.contains(&name.as_str()) {
                        out.insert(name.clone(), example_value(child, depth + 1));
                    }
                }
            }
            Value::Object(out)
        }
        _ => {
            let text = match schema.get("format").and_then(Value::as_str) {
                Some("date-time") => "2025-01-31T09:00:00Z",
                Some("date") => "2025-01-31",
                Some("email") => "ada@example.com",
                Some("uri" | "url") => "https://example.com",
                Some("uuid") => "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                _ => "example",
            };
            let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
            let mut text = text.to_string();
            while text.len() < min {
                text.push('x');
            }
            json!(text)
        }
    }
}

/// An operation's schema (body or parameter) as a JSON Schema that a validator can run
/// over a request: the document's components travel along so `$ref`s resolve in place,
/// and OpenAPI 3.0's dialect (`nullable`, boolean exclusive bounds) becomes JSON Schema.
pub fn validation_schema(doc: &Document, schema: &Value) -> Value {
    let mut root = Map::new();
    root.insert("allOf".into(), Value::Array(vec![schema.clone()]));
    for key in ["components", "definitions"] {
        if let Some(v) = doc.root.get(key) {
            root.insert(key.into(), v.clone());
        }
    }
    let mut root = Value::Object(root);
    if doc.version != crate::document::Version::OpenApi31 {
        to_json_schema(&mut root, 0);
    }
    root
}

fn to_json_schema(node: &mut Value, depth: usize) {
    if depth > 256 {
        return;
    }
    match node {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    _ if map.contains_key("$ref") || map.contains_key("allOf") || map.contains_key("oneOf") => {
                        let inner = Value::Object(std::mem::take(map));
                        map.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                    }
                    _ => {}
                }
                if let Some(Value::Array(values)) = map.get_mut("enum")
                    && !values.contains(&Value::Null)
                {
                    values.push(Value::Null);
                }
            }
            for (flag, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
                match map.get(flag) {
                    Some(Value::Bool(true)) => {
                        if let Some(b) = map.remove(bound) {
                            map.insert(flag.into(), b);
                        } else {
                            map.remove(flag);
                        }
                    }
                    Some(Value::Bool(false)) => {
                        map.remove(flag);
                    }
                    _ => {}
                }
            }
            // Swagger 2 `type: file` has no JSON Schema meaning.
            if map.get("type").is_some_and(|t| t == "file") {
                map.remove("type");
            }
            for child in map.values_mut() {
                to_json_schema(child, depth + 1);
            }
        }
        Value::Array(items) => {
            for child in items {
                to_json_schema(child, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(components: Value) -> Document {
        Document::from_value(json!({"openapi": "3.0.3", "components": {"schemas": components}})).unwrap()
    }

    #[test]
    fn recursive_refs_stop_at_the_bound() {
        let d = doc(json!({"Node": {"type": "object", "description": "A tree node.", "properties": {
            "name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}}}));
        let out = inline(&d, &json!({"$ref": "#/components/schemas/Node"}), Limits::default()).unwrap();
        let grandchild = &out["properties"]["children"]["items"]["properties"]["children"]["items"];
        assert_eq!(grandchild["type"], "object");
        assert!(grandchild.get("properties").is_none(), "{grandchild}");
        assert!(grandchild["description"].as_str().unwrap().contains("nested structure"));
    }

    #[test]
    fn openapi_dialect_becomes_what_models_take() {
        let d = doc(json!({"Base": {"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string", "readOnly": true}, "kind": {"type": "integer", "enum": [1, 2, null]}}}}));
        let schema = json!({"allOf": [{"$ref": "#/components/schemas/Base"}, {"type": "object", "required": ["name"],
            "properties": {"name": {"type": ["string", "null"], "example": "x", "x-internal": true},
            "when": {"oneOf": [{"type": "string", "format": "date"}, {"type": "null"}]}}}]});
        let out = inline(&d, &schema, Limits::default()).unwrap();
        assert_eq!(out["type"], "object");
        assert!(out["properties"].get("id").is_none(), "read-only left out");
        assert_eq!(out["required"], json!(["name"]));
        assert_eq!(out["properties"]["name"], json!({"type": "string"}));
        assert_eq!(out["properties"]["when"], json!({"type": "string", "format": "date"}));
        assert_eq!(out["properties"]["kind"], json!({"type": "integer", "description": "One of: 1, 2."}));
        assert_eq!(
            inline(&d, &json!({"$ref": "#/components/schemas/Missing"}), Limits::default()),
            Err(SchemaError::UnresolvedRef("#/components/schemas/Missing".into()))
        );
    }

    #[test]
    fn validation_schemas_resolve_refs_and_nullable() {
        let d = doc(json!({"Pet": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "tag": {"type": "string", "nullable": true}}}}));
        let schema = validation_schema(&d, &json!({"$ref": "#/components/schemas/Pet"}));
        let v = jsonschema::validator_for(&schema).unwrap();
        assert!(v.is_valid(&json!({"name": "rex", "tag": null})));
        assert!(!v.is_valid(&json!({"tag": "x"})));
    }
}
