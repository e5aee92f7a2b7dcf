//! One OpenAPI document, read as plain JSON (`serde_json::Value`) whatever its version,
//! with local `$ref`s resolved on demand, and its operations seen through one model: the
//! method and path, the parameters (path-level ones merged in, Swagger 2 `formData` turned
//! into a form body) and the request body by content type.
//!
//! Plain JSON rather than a typed model: the typed crates cover one version each
//! (`openapiv3` 3.0, `oas3` 3.1, neither Swagger 2) and refuse the whole document over
//! one field out of place, which documents in the wild often have; and the schemas end
//! up as JSON Schema in the catalog anyway.

use serde_json::{Map, Value};

/// Following more `$ref`s than this in a row is a cycle (`A: {$ref: B}`, `B: {$ref: A}`).
const MAX_REF_HOPS: usize = 32;

/// Documents larger than this are refused before parsing.
pub const MAX_DOCUMENT_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Swagger2,
    OpenApi30,
    OpenApi31,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Swagger2 => "Swagger 2.0",
            Version::OpenApi30 => "OpenAPI 3.0",
            Version::OpenApi31 => "OpenAPI 3.1",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    #[error("the document is larger than {} MiB", MAX_DOCUMENT_BYTES >> 20)]
    TooLarge,
    #[error("not JSON or YAML: {0}")]
    Syntax(String),
    #[error("not an OpenAPI document: no `openapi` or `swagger` version at the top")]
    NotOpenApi,
    #[error("unsupported version {0:?} (Swagger 2.0 and OpenAPI 3.0/3.1 are)")]
    UnsupportedVersion(String),
}

/// A parsed document.
#[derive(Debug, Clone)]
pub struct Document {
    pub root: Value,
    pub version: Version,
}

/// The HTTP methods an OpenAPI path item can hold, in the order they are listed.
pub const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// One operation of the document.
#[derive(Debug, Clone)]
pub struct Operation<'a> {
    /// Upper case: `GET`.
    pub method: String,
    /// The path template as the document writes it: `/repos/{owner}/{repo}`.
    pub path: &'a str,
    pub operation_id: Option<&'a str>,
    pub summary: Option<&'a str>,
    pub description: Option<&'a str>,
    pub deprecated: bool,
    /// Path, query, header and cookie parameters, resolved; an operation's own parameter
    /// replaces a path-level one of the same name and place.
    pub parameters: Vec<Parameter<'a>>,
    pub body: Option<Body>,
    /// The security requirements that apply (the operation's, else the document's).
    pub security: Option<&'a Value>,
    /// Why a parameter or the body could not be read (an unresolved `$ref`).
    pub problems: Vec<String>,
    pub node: &'a Value,
}

impl Operation<'_> {
    /// `GET /path (operationId)`, for reports.
    pub fn label(&self) -> String {
        match self.operation_id {
            Some(id) => format!("{} {} ({id})", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Parameter<'a> {
    pub name: &'a str,
    /// `path`, `query`, `header` or `cookie`.
    pub location: &'a str,
    pub required: bool,
    pub description: Option<&'a str>,
    /// The parameter's schema (for Swagger 2, built from the parameter's own fields).
    pub schema: Value,
    /// OpenAPI `style` (`form`, `deepObject`…), if set.
    pub style: Option<&'a str>,
    /// OpenAPI `explode`, if set.
    pub explode: Option<bool>,
    /// The parameter's `example`, if any.
    pub example: Option<&'a Value>,
}

/// A request body: its schema per content type, in document order.
#[derive(Debug, Clone)]
pub struct Body {
    pub required: bool,
    pub content: Vec<(String, Value)>,
}

impl Document {
    /// Parses JSON or YAML (anything not starting with `{` is read as YAML).
    pub fn parse(bytes: &[u8]) -> Result<Document, DocumentError> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|e| DocumentError::Syntax(format!("not UTF-8: {e}")))?;
        let text = text.trim_start_matches('\u{feff}');
        let root: Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| DocumentError::Syntax(e.to_string()))?
        } else {
            serde_saphyr::from_str(text).map_err(|e| DocumentError::Syntax(first_line(&e.to_string())))?
        };
        Self::from_value(root)
    }

    pub fn from_value(root: Value) -> Result<Document, DocumentError> {
        let version = if let Some(v) = root.get("openapi") {
            let v = version_text(v);
            if v.starts_with("3.0") {
                Version::OpenApi30
            } else if v.starts_with("3.1") {
                Version::OpenApi31
            } else {
                return Err(DocumentError::UnsupportedVersion(v));
            }
        } else if let Some(v) = root.get("swagger") {
            let v = version_text(v);
            if v.starts_with("2.") || v == "2" {
                Version::Swagger2
            } else {
                return Err(DocumentError::UnsupportedVersion(v));
            }
        } else {
            return Err(DocumentError::NotOpenApi);
        };
        if !root.is_object() {
            return Err(DocumentError::NotOpenApi);
        }
        Ok(Document { root, version })
    }

    pub fn title(&self) -> &str {
        self.root.pointer("/info/title").and_then(Value::as_str).unwrap_or("untitled")
    }

    pub fn api_version(&self) -> &str {
        self.root.pointer("/info/version").and_then(Value::as_str).unwrap_or("")
    }

    /// The node a local reference (`#/components/schemas/Pet`) points at, if any.
    /// References to other files or URLs are not followed (`None`).
    pub fn lookup(&self, reference: &str) -> Option<&Value> {
        let pointer = reference.strip_prefix('#')?;
        let decoded = percent_encoding::percent_decode_str(pointer).decode_utf8().ok()?;
        self.root.pointer(&decoded)
    }

    /// `node`, or what its `$ref` chain ends at; `Err` names the reference that does not
    /// resolve (missing, external, or a cycle).
    pub fn resolve<'a>(&'a self, mut node: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..MAX_REF_HOPS {
            let Some(reference) = node.get("$ref") else {
                return Ok(node);
            };
            let Some(reference) = reference.as_str() else {
                return Err(format!("$ref {reference} is not a string"));
            };
            node = self.lookup(reference).ok_or_else(|| format!("$ref {reference} does not resolve"))?;
        }
        Err(format!("$ref chain longer than {MAX_REF_HOPS} (a cycle)"))
    }

    /// Every operation, in document order (paths as listed, methods in [`METHODS`] order).
    pub fn operations(&self) -> Vec<Operation<'_>> {
        let mut out = Vec::new();
        let Some(paths) = self.root.get("paths").and_then(Value::as_object) else {
            return out;
        };
        for (path, item) in paths {
            let Ok(item) = self.resolve(item) else {
                continue;
            };
            let Some(item_map) = item.as_object() else {
                continue;
            };
            for method in METHODS {
                if let Some(node) = item_map.get(method).filter(|n| n.is_object()) {
                    out.push(self.operation(path, method, item_map, node));
                }
            }
        }
        out
    }

    fn operation<'a>(
        &'a self,
        path: &'a str,
        method: &str,
        item: &'a Map<String, Value>,
        node: &'a Value,
    ) -> Operation<'a> {
        let text = |key: &str| node.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
        let mut op = Operation {
            method: method.to_ascii_uppercase(),
            path,
            operation_id: text("operationId"),
            summary: text("summary"),
            description: text("description"),
            deprecated: node.get("deprecated").and_then(Value::as_bool).unwrap_or(false),
            parameters: Vec::new(),
            body: None,
            security: node.get("security").or_else(|| self.root.get("security")),
            problems: Vec::new(),
            node,
        };
        // Path-level parameters first; an operation's parameter of the same name and
        // place replaces it.
        let mut raw: Vec<&Value> = Vec::new();
        for list in [item.get("parameters"), node.get("parameters")] {
            for p in list.and_then(Value::as_array).into_iter().flatten() {
                match self.resolve(p) {
                    Ok(p) => {
                        let key = |v: &Value| (v.get("name").cloned(), v.get("in").cloned());
                        raw.retain(|q| key(q) != key(p));
                        raw.push(p);
                    }
                    Err(e) => op.problems.push(format!("parameter: {e}")),
                }
            }
        }
        let mut form_fields = Vec::new();
        for p in raw {
            let (Some(name), Some(location)) =
                (p.get("name").and_then(Value::as_str), p.get("in").and_then(Value::as_str))
            else {
                op.problems.push("a parameter without a name or `in`".into());
                continue;
            };
            match location {
                // Swagger 2: the body is a parameter.
                "body" => {
                    let schema = p.get("schema").cloned().unwrap_or_else(|| Value::Object(Map::new()));
                    let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
                    let content = self.consumes(node).into_iter().map(|c| (c, schema.clone())).collect();
                    op.body = Some(Body { required, content });
                }
                "formData" => form_fields.push(p),
                "path" | "query" | "header" | "cookie" => op.parameters.push(Parameter {
                    name,
                    location,
                    required: location == "path" || p.get("required").and_then(Value::as_bool).unwrap_or(false),
                    description: p.get("description").and_then(Value::as_str),
                    schema: match p.get("schema") {
                        Some(schema) => schema.clone(),
                        None => match p.get("content").and_then(Value::as_object).and_then(|c| c.values().next()) {
                            Some(media) => media.get("schema").cloned().unwrap_or_else(|| Value::Object(Map::new())),
                            None => swagger2_schema(p),
                        },
                    },
                    style: p.get("style").and_then(Value::as_str),
                    explode: p.get("explode").and_then(Value::as_bool),
                    example: p.get("example").or_else(|| p.get("x-example")),
                }),
                other => op.problems.push(format!("parameter {name} is in {other:?}")),
            }
        }
        if !form_fields.is_empty() {
            op.body = Some(swagger2_form(&form_fields, &self.consumes(node)));
        }
        if let Some(body) = node.get("requestBody") {
            match self.resolve(body) {
                Ok(body) => {
                    let content = body
                        .get("content")
                        .and_then(Value::as_object)
                        .map(|c| {
                            c.iter()
                                .map(|(kind, media)| {
                                    let schema =
                                        media.get("schema").cloned().unwrap_or_else(|| Value::Object(Map::new()));
                                    (kind.clone(), schema)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let required = body.get("required").and_then(Value::as_bool).unwrap_or(false);
                    op.body = Some(Body { required, content });
                }
                Err(e) => op.problems.push(format!("requestBody: {e}")),
            }
        }
        op
    }

    /// Swagger 2 content types an operation takes (its own, else the document's).
    fn consumes(&self, node: &Value) -> Vec<String> {
        let list = node.get("consumes").or_else(|| self.root.get("consumes")).and_then(Value::as_array);
        let types: Vec<String> = list.into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
        if types.is_empty() { vec!["application/json".to_string()] } else { types }
    }

    /// Where the API lives: the first `https` server (else the first one) with its
    /// variables at their defaults, or Swagger 2's scheme, host and base path. `None` when
    /// the document names no absolute URL.
    pub fn base_url(&self) -> Option<String> {
        if self.version == Version::Swagger2 {
            let host = self.root.get("host").and_then(Value::as_str)?;
            let schemes: Vec<&str> = self
                .root
                .get("schemes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let scheme = if schemes.is_empty() || schemes.contains(&"https") { "https" } else { schemes[0] };
            let base = self.root.get("basePath").and_then(Value::as_str).unwrap_or("");
            return Some(format!("{scheme}://{host}{}", base.trim_end_matches('/')));
        }
        let servers: Vec<String> = self
            .root
            .get("servers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|server| {
                let mut url = server.get("url").and_then(Value::as_str)?.to_string();
                for (name, var) in server.get("variables").and_then(Value::as_object).into_iter().flatten() {
                    let default = var.get("default").map(version_text).unwrap_or_default();
                    url = url.replace(&format!("{{{name}}}"), &default);
                }
                Some(url)
            })
            .filter(|u| (u.starts_with("https://") || u.starts_with("http://")) && !u.contains('{'))
            .collect();
        let chosen = servers.iter().find(|u| u.starts_with("https://")).or(servers.first())?;
        Some(chosen.trim_end_matches('/').to_string())
    }

    /// The security schemes, by name (`components.securitySchemes`, Swagger 2
    /// `securityDefinitions`).
    pub fn security_schemes(&self) -> Vec<(&str, &Value)> {
        let schemes = match self.version {
            Version::Swagger2 => self.root.get("securityDefinitions"),
            _ => self.root.pointer("/components/securitySchemes"),
        };
        schemes
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(name, scheme)| Some((name.as_str(), self.resolve(scheme).ok()?)))
            .collect()
    }
}

fn version_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn first_line(text: &str) -> String {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text).trim().to_string()
}

/// The JSON Schema of a Swagger 2 non-body parameter, from its own fields.
fn swagger2_schema(p: &Value) -> Value {
    const KEYS: [&str; 14] = [
        "type",
        "format",
        "items",
        "enum",
        "default",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
    ];
    let mut schema = Map::new();
    for key in KEYS {
        if let Some(v) = p.get(key) {
            schema.insert(key.to_string(), v.clone());
        }
    }
    Value::Object(schema)
}

/// Swagger 2 `formData` parameters as one form body (multipart when a field is a file or
/// the operation consumes only multipart).
fn swagger2_form(fields: &[&Value], consumes: &[String]) -> Body {
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut file = false;
    for p in fields {
        let Some(name) = p.get("name").and_then(Value::as_str) else {
            continue;
        };
        file |= p.get("type").and_then(Value::as_str) == Some("file");
        let mut schema = swagger2_schema(p);
        if let (Some(d), Some(map)) = (p.get("description"), schema.as_object_mut()) {
            map.insert("description".into(), d.clone());
        }
        properties.insert(name.to_string(), schema);
        if p.get("required").and_then(Value::as_bool).unwrap_or(false) {
            required.push(Value::String(name.to_string()));
        }
    }
    let schema = serde_json::json!({"type": "object", "properties": properties, "required": required});
    let urlencoded = "application/x-www-form-urlencoded";
    let kind = if file
        || (!consumes.iter().any(|c| c == urlencoded) && consumes.iter().any(|c| c.starts_with("multipart/")))
    {
        "multipart/form-data"
    } else {
        urlencoded
    };
    Body { required: !required.is_empty(), content: vec![(kind.to_string(), schema)] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_and_syntax_errors() {
        assert_eq!(Document::parse(b"openapi: 3.1.0\npaths: {}\n").unwrap().version, Version::OpenApi31);
        assert_eq!(Document::parse(br#"{"swagger": "2.0"}"#).unwrap().version, Version::Swagger2);
        assert_eq!(
            Document::parse(b"openapi: 4.0.0\n").unwrap_err(),
            DocumentError::UnsupportedVersion("4.0.0".into())
        );
        assert_eq!(Document::parse(b"title: nothing\n").unwrap_err(), DocumentError::NotOpenApi);
        assert!(matches!(Document::parse(b"{\"openapi\": ").unwrap_err(), DocumentError::Syntax(_)));
        assert!(matches!(Document::parse(b"openapi: [unclosed\n").unwrap_err(), DocumentError::Syntax(_)));
        assert!(matches!(Document::parse(&[0xff, 0xfe]).unwrap_err(), DocumentError::Syntax(_)));
    }

    #[test]
    fn reference_cycles_end_with_an_error() {
        let doc = Document::from_value(json!({"openapi": "3.0.0", "components": {"schemas": {
            "A": {"$ref": "#/components/schemas/B"}, "B": {"$ref": "#/components/schemas/A"}}}}))
        .unwrap();
        let err = doc.resolve(&json!({"$ref": "#/components/schemas/A"})).unwrap_err();
        assert!(err.contains("cycle"), "{err}");
        assert!(doc.resolve(&json!({"$ref": "other.yaml#/A"})).is_err());
        assert_eq!(
            doc.resolve(&json!({"$ref": "#/components/schemas/A~1B"})).unwrap_err(),
            "$ref #/components/schemas/A~1B does not resolve"
        );
    }

    #[test]
    fn swagger2_servers_and_form_bodies() {
        let doc = Document::from_value(json!({"swagger": "2.0", "host": "api.example.com", "basePath": "/v2/",
            "schemes": ["http", "https"], "paths": {"/pets": {"post": {"consumes": ["application/x-www-form-urlencoded"],
            "parameters": [{"name": "name", "in": "formData", "type": "string", "required": true}]}}}}))
        .unwrap();
        assert_eq!(doc.base_url().as_deref(), Some("https://api.example.com/v2"));
        let ops = doc.operations();
        let body = ops[0].body.as_ref().unwrap();
        assert_eq!(body.content[0].0, "application/x-www-form-urlencoded");
        assert_eq!(body.content[0].1["required"], json!(["name"]));
    }
}
