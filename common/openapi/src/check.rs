//! Does a request, rendered exactly as the worker sends it, match an operation of the
//! provider's published document? The method and path template must exist; required
//! path, query and header parameters must be there and each sent value fit its schema
//! (type, enum, bounds); nothing may be sent that the operation does not declare; and
//! the body must be in a content type the operation takes and fit its schema.
//!
//! JSON bodies are validated against the full schema (`$ref`s and all). Form bodies are
//! checked on their top-level fields (declared, required, scalar types and enums), since
//! a form carries every value as text.

use crate::document::{Document, Operation, Parameter};
use crate::schema::validation_schema;
use clawlink_common::catalog::{RenderedRequest, RequestBody};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Where the document's paths start in our URLs: its server URL, unless the API lives
/// elsewhere (a tenant's host, a newer host name) and the caller says so.
#[derive(Debug, Clone)]
pub struct ApiRoot(url::Url);

impl ApiRoot {
    pub fn parse(url: &str) -> Result<ApiRoot, String> {
        url::Url::parse(url.trim_end_matches('/')).map(ApiRoot).map_err(|e| format!("api root {url:?}: {e}"))
    }

    /// The path after the root, if `url` is under it.
    fn relative<'u>(&self, url: &'u url::Url) -> Option<&'u str> {
        let root = &self.0;
        if url.scheme() != root.scheme() || url.host_str() != root.host_str() || url.port() != root.port() {
            return None;
        }
        let prefix = root.path().trim_end_matches('/');
        let rest = url.path().strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }
}

/// How to read a document for our requests.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub api_root: ApiRoot,
    /// Parameters that carry the credential, which the worker adds after rendering (Slack's
    /// document declares its token as a required `token` header).
    pub credential_parameters: Vec<String>,
    /// The provider takes JSON bodies where its document lists only forms (why, in the
    /// stamp): JSON bodies are then checked on their field names and required fields.
    pub json_for_form: bool,
}

impl CheckOptions {
    pub fn new(api_root: ApiRoot) -> CheckOptions {
        CheckOptions { api_root, credential_parameters: Vec::new(), json_for_form: false }
    }

    /// The options a trimmed document carries in its `x-clawlink` stamp (see `trim`):
    /// `api_root` (else the document's server), `credential_parameters`, and
    /// `json_for_form` (a reason, when set).
    pub fn from_stamp(doc: &Document) -> Result<CheckOptions, String> {
        let stamp = doc.root.get("x-clawlink");
        let root = stamp
            .and_then(|s| s.get("api_root"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| doc.base_url())
            .ok_or("the document names no server URL and its stamp no api_root")?;
        let credential_parameters = stamp
            .and_then(|s| s.get("credential_parameters"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let json_for_form = stamp.and_then(|s| s.get("json_for_form")).and_then(Value::as_str).is_some();
        Ok(CheckOptions { api_root: ApiRoot::parse(&root)?, credential_parameters, json_for_form })
    }

    /// Whether the worker supplies `name`: a parameter named here, or one the document's
    /// own API-key schemes name.
    fn is_credential(&self, doc: &Document, name: &str) -> bool {
        self.credential_parameters.iter().any(|c| c.eq_ignore_ascii_case(name))
            || doc.security_schemes().iter().any(|(_, scheme)| {
                scheme.get("type").and_then(Value::as_str) == Some("apiKey")
                    && scheme.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
    }
}

/// The operation a request matched, as `METHOD /template`.
pub type Matched = String;

/// Checks `request` against `doc`; `Ok` with the operation it matched, else every problem
/// found (the first ones say why no operation matched at all).
pub fn check_request(
    doc: &Document,
    options: &CheckOptions,
    request: &RenderedRequest,
) -> Result<Matched, Vec<String>> {
    let root = &options.api_root;
    let Some(path) = root.relative(&request.url) else {
        return Err(vec![format!("{} is not under the document's API root {}", request.url, root.0)]);
    };
    let method = request.method.as_str();
    let (operation, captured) = find_operation(doc, method, path)?;
    let mut problems = Vec::new();
    let label = format!("{method} {}", operation.path);

    // Path parameters.
    for (name, value) in &captured {
        if let Some(p) = operation.parameters.iter().find(|p| p.location == "path" && p.name == name) {
            check_text(doc, p, std::slice::from_ref(value), &mut problems);
        }
    }
    // Query parameters: by base name (`created` for `created[gte]`).
    let mut sent: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (k, v) in request.url.query_pairs() {
        let base = k.split('[').next().unwrap_or(&k).to_string();
        sent.entry(base).or_default().push((k.into_owned(), v.into_owned()));
    }
    for p in operation.parameters.iter().filter(|p| p.location == "query" && !options.is_credential(doc, p.name)) {
        match sent.remove(p.name) {
            None if p.required => problems.push(format!("required query parameter {} is missing", p.name)),
            None => {}
            Some(pairs) => check_query(doc, p, &pairs, &mut problems),
        }
    }
    for name in sent.keys() {
        problems.push(format!("query parameter {name} is not a parameter of {label}"));
    }
    // Header parameters that are required (credentials are added later by the worker).
    for p in operation
        .parameters
        .iter()
        .filter(|p| p.location == "header" && p.required && !options.is_credential(doc, p.name))
    {
        let lower = p.name.to_ascii_lowercase();
        if ["authorization", "content-type", "accept"].contains(&lower.as_str()) {
            continue;
        }
        match request.headers.iter().find(|(h, _)| h.eq_ignore_ascii_case(p.name)) {
            None => problems.push(format!("required header {} is missing", p.name)),
            Some((_, v)) => check_text(doc, p, std::slice::from_ref(v), &mut problems),
        }
    }
    check_body(doc, &operation, request.body.as_ref(), options.json_for_form, &mut problems);
    if problems.is_empty() { Ok(label) } else { Err(problems) }
}

/// The `(METHOD, /template)` of the operation `request` goes to, or why there is none.
pub fn matching_operation(
    doc: &Document,
    root: &ApiRoot,
    request: &RenderedRequest,
) -> Result<(String, String), String> {
    let Some(path) = root.relative(&request.url) else {
        return Err(format!("{} is not under the document's API root {}", request.url, root.0));
    };
    let (op, _) = find_operation(doc, request.method.as_str(), path).map_err(|mut e| e.remove(0))?;
    Ok((op.method.clone(), op.path.to_string()))
}

/// The placeholders of a matched path template and their values.
type Captured = Vec<(String, String)>;

/// The operation for `method` at the path that matches `path` best (most literal
/// segments), with the values of its placeholders.
fn find_operation<'d>(doc: &'d Document, method: &str, path: &str) -> Result<(Operation<'d>, Captured), Vec<String>> {
    let mut best: Option<(usize, &str, Captured)> = None;
    let paths = doc.root.get("paths").and_then(Value::as_object);
    for template in paths.into_iter().flat_map(|p| p.keys()) {
        if let Some((literal, captured)) = match_template(template, path)
            && best.as_ref().is_none_or(|(n, _, _)| literal > *n)
        {
            best = Some((literal, template, captured));
        }
    }
    let Some((_, template, captured)) = best else {
        return Err(vec![format!("no path of the document matches {path}")]);
    };
    let operations = doc.operations();
    let at_path: Vec<&Operation> = operations.iter().filter(|op| op.path == template).collect();
    match at_path.iter().find(|op| op.method == method) {
        Some(op) => Ok(((*op).clone(), captured)),
        None => {
            let methods: Vec<&str> = at_path.iter().map(|op| op.method.as_str()).collect();
            Err(vec![format!("{template} has no {method} operation (it has {})", methods.join(", "))])
        }
    }
}

/// Whether `path` fits `template`; the number of literal segments and the placeholders'
/// values (percent-decoded) if so. A segment may mix text and placeholders (`{id}.json`).
fn match_template(template: &str, path: &str) -> Option<(usize, Captured)> {
    let t: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut literal = 0;
    let mut captured = Vec::new();
    for (ts, ps) in t.iter().zip(&p) {
        if !ts.contains('{') {
            if ts != ps {
                return None;
            }
            literal += 1;
            continue;
        }
        let decoded = percent_encoding::percent_decode_str(ps).decode_utf8_lossy().into_owned();
        captured.extend(match_segment(ts, &decoded)?);
    }
    Some((literal, captured))
}

fn match_segment(template: &str, segment: &str) -> Option<Captured> {
    let start = template.find('{')?;
    let end = template[start..].find('}')? + start;
    let (prefix, name, suffix) = (&template[..start], &template[start + 1..end], &template[end + 1..]);
    let rest = segment.strip_prefix(prefix)?;
    // The placeholder takes up to where the rest of the template next matches.
    if !suffix.contains('{') {
        let value = rest.strip_suffix(suffix)?;
        return (!value.is_empty()).then(|| vec![(name.to_string(), value.to_string())]);
    }
    let literal_end = suffix.find('{').unwrap_or(suffix.len());
    let next = &suffix[..literal_end];
    let split = if next.is_empty() { rest.len() } else { rest.find(next)? };
    let mut out = vec![(name.to_string(), rest[..split].to_string())];
    out.extend(match_segment(suffix, &rest[split..])?);
    Some(out)
}

fn check_query(doc: &Document, p: &Parameter, pairs: &[(String, String)], problems: &mut Vec<String>) {
    let schema = doc.resolve(&p.schema).unwrap_or(&p.schema);
    let kind = schema.get("type").and_then(Value::as_str);
    let bracketed = pairs.iter().any(|(k, _)| k.contains('['));
    if bracketed {
        if p.style != Some("deepObject") && kind != Some("object") && schema.get("anyOf").is_none() {
            problems.push(format!("query parameter {} is sent in brackets but is not an object", p.name));
        }
        return;
    }
    if kind == Some("array") {
        // A document that says `explode: true` wants a=1&a=2. One that says nothing is
        // read as taking a comma list too: Swagger 2's default (`collectionFormat: csv`),
        // which documents converted to OpenAPI 3 still mean, and what Jira documents.
        let explode = p.explode.unwrap_or(false);
        let values: Vec<String> = if explode && pairs.len() == 1 && pairs[0].1.contains(',') {
            problems.push(format!(
                "query parameter {} is an exploded array: send {0}=a&{0}=b, not {0}={}",
                p.name, pairs[0].1
            ));
            return;
        } else if explode {
            pairs.iter().map(|(_, v)| v.clone()).collect()
        } else {
            pairs.iter().flat_map(|(_, v)| v.split(',').map(str::to_string)).collect()
        };
        let items = schema.get("items").map(|i| doc.resolve(i).unwrap_or(i)).cloned().unwrap_or_default();
        let item = Parameter { schema: items, ..p.clone() };
        check_text(doc, &item, &values, problems);
        return;
    }
    if pairs.len() > 1 {
        problems.push(format!("query parameter {} is sent {} times", p.name, pairs.len()));
    }
    let values: Vec<String> = pairs.iter().map(|(_, v)| v.clone()).collect();
    check_text(doc, p, &values, problems);
}

/// Each text value fits the parameter's schema once read as its type.
fn check_text(doc: &Document, p: &Parameter, values: &[String], problems: &mut Vec<String>) {
    let schema = validation_schema(doc, &p.schema);
    let Ok(validator) = jsonschema::validator_for(&schema) else {
        return;
    };
    let resolved = doc.resolve(&p.schema).unwrap_or(&p.schema);
    for text in values {
        let value = typed(resolved, text);
        if let Some(error) = validator.iter_errors(&value).next() {
            problems.push(format!("{} parameter {} = {text:?}: {error}", p.location, p.name));
        }
    }
}

/// A text value read as the schema's type when it parses as one (else left as text, so
/// the validator says what is wrong).
fn typed(schema: &Value, text: &str) -> Value {
    let kinds: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for kind in kinds {
        match kind {
            "integer" => {
                if let Ok(n) = text.parse::<i64>() {
                    return Value::from(n);
                }
            }
            "number" => {
                if let Some(n) = text.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                    return Value::Number(n);
                }
            }
            "boolean" => {
                if let Ok(b) = text.parse::<bool>() {
                    return Value::Bool(b);
                }
            }
            _ => {}
        }
    }
    Value::String(text.to_string())
}

fn check_body(
    doc: &Document,
    op: &Operation,
    body: Option<&RequestBody>,
    json_for_form: bool,
    problems: &mut Vec<String>,
) {
    let declared = op.body.as_ref().filter(|b| !b.content.is_empty());
    let sent_fields = match body {
        Some(RequestBody::Json(Value::Object(m))) => !m.is_empty(),
        Some(RequestBody::Form(pairs)) => !pairs.is_empty(),
        Some(RequestBody::Json(_)) => true,
        None => false,
    };
    let Some(declared) = declared else {
        if sent_fields {
            problems.push(format!("a body is sent, but {} {} takes none", op.method, op.path));
        }
        return;
    };
    let Some(body) = body else {
        if declared.required {
            problems.push("the operation requires a body and none is sent".into());
        }
        return;
    };
    let (kind, wanted): (&str, fn(&str) -> bool) = match body {
        RequestBody::Json(_) => ("JSON", |t| {
            let t = t.split(';').next().unwrap_or_default().trim();
            t == "application/json" || t == "*/*" || t.ends_with("+json")
        }),
        RequestBody::Form(_) => ("a form", |t| t.starts_with("application/x-www-form-urlencoded")),
    };
    let Some((_, schema)) = declared.content.iter().find(|(t, _)| wanted(t)) else {
        let form = declared.content.iter().find(|(t, _)| t.starts_with("application/x-www-form-urlencoded"));
        if let (true, Some((_, schema)), RequestBody::Json(Value::Object(fields))) = (json_for_form, form, body) {
            check_names(doc, schema, fields.keys().map(String::as_str), problems);
            return;
        }
        let types: Vec<&str> = declared.content.iter().map(|(t, _)| t.as_str()).collect();
        problems.push(format!("the body is sent as {kind}; the operation takes {}", types.join(", ")));
        return;
    };
    match body {
        RequestBody::Json(value) => {
            let schema = validation_schema(doc, schema);
            match jsonschema::validator_for(&schema) {
                Ok(validator) => {
                    for error in validator.iter_errors(value).take(5) {
                        let at = error.instance_path().to_string();
                        problems.push(format!(
                            "body{}: {error}",
                            if at.is_empty() { String::new() } else { format!(" {at}") }
                        ));
                    }
                }
                Err(e) => problems.push(format!("the operation's body schema does not compile: {e}")),
            }
        }
        RequestBody::Form(pairs) => check_form(doc, schema, pairs, problems),
    }
}

/// The sent top-level field names are the body's, and its required ones are there.
fn check_names<'n>(doc: &Document, schema: &Value, sent: impl Iterator<Item = &'n str>, problems: &mut Vec<String>) {
    let schema = doc.resolve(schema).unwrap_or(schema);
    let properties = schema.get("properties").and_then(Value::as_object);
    let open = schema.get("additionalProperties").is_some_and(|a| a != false);
    let sent: Vec<&str> = sent.collect();
    for name in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !sent.contains(&name) {
            problems.push(format!("required body field {name} is missing"));
        }
    }
    for name in sent {
        if !open && !properties.is_some_and(|p| p.contains_key(name)) {
            problems.push(format!("body field {name} is not a field of the body"));
        }
    }
}

fn check_form(doc: &Document, schema: &Value, pairs: &[(String, String)], problems: &mut Vec<String>) {
    let schema = doc.resolve(schema).unwrap_or(schema);
    let properties = schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_else(Map::new);
    let mut sent: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in pairs {
        sent.entry(k.split('[').next().unwrap_or(k)).or_default().push(v);
    }
    check_names(doc, schema, sent.keys().copied(), problems);
    for (name, values) in &sent {
        let Some(field) = properties.get(*name) else {
            continue;
        };
        let field = doc.resolve(field).unwrap_or(field);
        let scalar =
            matches!(field.get("type").and_then(Value::as_str), Some("string" | "integer" | "number" | "boolean"));
        if scalar {
            let p = Parameter {
                name,
                location: "form",
                required: false,
                description: None,
                schema: field.clone(),
                style: None,
                explode: None,
                example: None,
            };
            let texts: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            check_text(doc, &p, &texts, problems);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_segments_and_mixed_placeholders() {
        assert_eq!(
            match_template("/repos/{owner}/{repo}", "/repos/octo/web"),
            Some((2, vec![("owner".into(), "octo".into()), ("repo".into(), "web".into())]))
        );
        assert_eq!(match_template("/repos/{owner}", "/repos/octo/web"), None);
        assert_eq!(
            match_template("/files/{id}.json", "/files/a%20b.json"),
            Some((2, vec![("id".into(), "a b".into())]))
        );
        assert_eq!(
            match_template("/v1/{name}:{verb}", "/v1/jobs:run"),
            Some((2, vec![("name".into(), "jobs".into()), ("verb".into(), "run".into())]))
        );
        assert_eq!(match_template("/users/{id}", "/users/"), None);
    }
}
