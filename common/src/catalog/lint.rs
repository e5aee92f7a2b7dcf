//! Whether each tool's input schema is one the function-calling APIs of the major models
//! accept as it is: OpenAI (`tools[].function.parameters`), Anthropic (`input_schema`) and
//! Gemini (`functionDeclarations[].parameters`, an OpenAPI subset). A schema they refuse
//! makes the whole tool list fail for an agent on that model, so these are violations.
//! OpenAI's strict mode (every property required, `additionalProperties: false` on every
//! object) is reported apart: it is optional there, and most real APIs have optional
//! arguments.
//!
//! The rules, each with the API that has it:
//! - the top level is `type: "object"` (all three) without `oneOf`/`anyOf`/`allOf`/`not`/
//!   `enum` beside it (OpenAI refuses them at the top level);
//! - no `type` arrays such as `["string", "null"]` (Gemini's schema has one type);
//! - no `$ref` that does not resolve inside the schema itself (nothing else is sent);
//! - `enum` only on strings, with string values (Gemini);
//! - property names of 1 to 64 characters from `a-zA-Z0-9_.-` (Anthropic);
//! - tool names of 1 to 64 characters from `a-zA-Z0-9_-` (all three).

use super::{Catalog, ToolEntry};
use serde_json::Value;

/// One rule a tool's schema breaks, at a JSON pointer into its input schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub tool: String,
    /// JSON pointer into the input schema (`""` for the top level).
    pub at: String,
    pub rule: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.at.is_empty() { "/" } else { self.at.as_str() };
        write!(f, "{} at {at}: {} ({})", self.tool, self.rule, self.detail)
    }
}

/// The lint of a whole catalog.
#[derive(Debug, Default)]
pub struct LintReport {
    pub tools: usize,
    pub violations: Vec<Violation>,
    /// Tools whose schema OpenAI's strict mode would refuse (informative, not a violation).
    pub not_strict: Vec<String>,
}

/// Lints every tool of `catalog`.
pub fn lint_catalog(catalog: &Catalog) -> LintReport {
    let mut report = LintReport::default();
    for entry in catalog.tools() {
        report.tools += 1;
        let (violations, strict) = lint_tool(entry);
        report.violations.extend(violations);
        if !strict {
            report.not_strict.push(entry.name.clone());
        }
    }
    report
}

/// The violations of one tool, and whether OpenAI's strict mode would take its schema.
pub fn lint_tool(entry: &ToolEntry) -> (Vec<Violation>, bool) {
    lint_schema(&entry.name, &entry.tool.input_schema)
}

/// [`lint_tool`] for a tool not (yet) in a catalog: its name and input schema.
pub fn lint_schema(tool: &str, schema: &Value) -> (Vec<Violation>, bool) {
    let mut lint = Lint { tool, root: schema, violations: Vec::new(), strict: true };
    if !valid_name(tool, false) {
        lint.push("", "tool name", format!("{tool:?} must be 1 to 64 of a-z A-Z 0-9 _ -"));
    }
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        lint.push("", "top-level type object", "the input schema must have type \"object\"".into());
    }
    for keyword in ["oneOf", "anyOf", "allOf", "not", "enum"] {
        if schema.get(keyword).is_some() {
            lint.push(
                "",
                "no top-level combinator",
                format!("{keyword} at the top level is refused; move it to input_rules"),
            );
        }
    }
    lint.walk(schema, String::new(), 0);
    (lint.violations, lint.strict)
}

/// Nesting beyond this is reported instead of walked (and is far past what models take).
const MAX_DEPTH: usize = 32;

struct Lint<'a> {
    tool: &'a str,
    root: &'a Value,
    violations: Vec<Violation>,
    strict: bool,
}

impl Lint<'_> {
    fn push(&mut self, at: &str, rule: &'static str, detail: String) {
        self.violations.push(Violation { tool: self.tool.to_string(), at: at.to_string(), rule, detail });
    }

    fn walk(&mut self, schema: &Value, at: String, depth: usize) {
        let Some(map) = schema.as_object() else {
            return;
        };
        if depth > MAX_DEPTH {
            self.push(&at, "nesting", format!("nested deeper than {MAX_DEPTH} levels"));
            return;
        }
        if let Some(types) = map.get("type").and_then(Value::as_array) {
            self.push(
                &at,
                "no type arrays",
                format!("type is the array {}; use one type", Value::Array(types.clone())),
            );
        }
        if let Some(target) = map.get("$ref") {
            let resolves = target
                .as_str()
                .and_then(|t| t.strip_prefix('#'))
                .is_some_and(|pointer| self.root.pointer(pointer).is_some());
            if !resolves {
                self.push(&at, "no unresolved $ref", format!("$ref {target} does not resolve inside the schema"));
            }
        }
        if let Some(values) = map.get("enum") {
            let strings = values.as_array().is_some_and(|v| v.iter().all(Value::is_string));
            let typed = map.get("type").is_none_or(|t| t == "string");
            if !strings || !typed {
                self.push(&at, "string enums", format!("enum {values} must list strings on a string type (Gemini)"));
            }
        }
        let properties = map.get("properties").and_then(Value::as_object);
        if map.get("type").and_then(Value::as_str) == Some("object") || properties.is_some() {
            let required: Vec<&str> =
                map.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
            let all_required = properties.is_none_or(|p| p.keys().all(|k| required.contains(&k.as_str())));
            if !all_required || map.get("additionalProperties") != Some(&Value::Bool(false)) {
                self.strict = false;
            }
        }
        for (name, child) in properties.into_iter().flatten() {
            let child_at = format!("{at}/properties/{}", name.replace('~', "~0").replace('/', "~1"));
            if !valid_name(name, true) {
                self.push(
                    &child_at,
                    "property names",
                    format!("{name:?} must be 1 to 64 of a-z A-Z 0-9 _ . - (Anthropic)"),
                );
            }
            self.walk(child, child_at, depth + 1);
        }
        for keyword in ["items", "additionalProperties", "not"] {
            if let Some(child) = map.get(keyword) {
                self.walk(child, format!("{at}/{keyword}"), depth + 1);
            }
        }
        for keyword in ["anyOf", "oneOf", "allOf", "prefixItems"] {
            for (i, child) in map.get(keyword).and_then(Value::as_array).into_iter().flatten().enumerate() {
                self.walk(child, format!("{at}/{keyword}/{i}"), depth + 1);
            }
        }
        for keyword in ["$defs", "definitions"] {
            for (name, child) in map.get(keyword).and_then(Value::as_object).into_iter().flatten() {
                self.walk(child, format!("{at}/{keyword}/{name}"), depth + 1);
            }
        }
    }
}

fn valid_name(name: &str, allow_dot: bool) -> bool {
    (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (allow_dot && c == '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(schema: Value) -> Vec<&'static str> {
        lint_schema("demo_tool", &schema).0.into_iter().map(|v| v.rule).collect()
    }

    #[test]
    fn a_plain_object_schema_passes() {
        let schema = json!({"type": "object", "properties": {"q": {"type": "string", "enum": ["a", "b"]}}});
        assert_eq!(rules(schema.clone()), Vec::<&str>::new());
        assert!(!lint_schema("demo_tool", &schema).1, "q is optional: not strict");
        let strict = json!({"type": "object", "additionalProperties": false, "required": ["q"], "properties": {"q": {"type": "string"}}});
        assert!(lint_schema("demo_tool", &strict).1);
    }

    #[test]
    fn each_rule_is_found_where_it_is_broken() {
        assert_eq!(rules(json!({"type": "object", "anyOf": [{"required": ["a"]}]})), ["no top-level combinator"]);
        assert_eq!(rules(json!({"type": "array"})), ["top-level type object"]);
        assert_eq!(
            rules(json!({"type": "object", "properties": {"a": {"type": ["string", "null"]}}})),
            ["no type arrays"]
        );
        assert_eq!(
            rules(json!({"type": "object", "properties": {"a": {"$ref": "#/components/schemas/A"}}})),
            ["no unresolved $ref"]
        );
        assert_eq!(
            rules(
                json!({"type": "object", "$defs": {"A": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/A"}}})
            ),
            Vec::<&str>::new()
        );
        assert_eq!(
            rules(json!({"type": "object", "properties": {"a": {"type": "integer", "enum": [0, 1]}}})),
            ["string enums"]
        );
        let (found, _) =
            lint_schema("demo_tool", &json!({"type": "object", "properties": {"created[gte]": {"type": "integer"}}}));
        assert_eq!(found[0].at, "/properties/created[gte]");
        assert_eq!(found[0].rule, "property names");
        assert_eq!(
            rules(
                json!({"type": "object", "properties": {"a": {"type": "array", "items": {"type": ["integer", "string"]}}}})
            ),
            ["no type arrays"]
        );
        assert_eq!(lint_schema("a tool", &json!({"type": "object"})).0[0].rule, "tool name");
    }
}
