//! From an OpenAPI document to a catalog provider: one tool per operation that the
//! catalog can express, and a report of the others with the reason.
//!
//! What an operation becomes:
//! - **name** `<provider>_<action>`, the action in snake case from the `operationId`
//!   (else from the method and path), at most 64 characters in all, unique;
//! - **mode and risk** from the method and the operation's words: `GET` reads; `DELETE`
//!   is destructive; `POST`/`PUT`/`PATCH` write and need confirmation, except searches and
//!   queries sent as `POST` (read), deletions sent as `POST` (destructive) and sends,
//!   payments, refunds, merges and shares (high impact);
//! - **arguments**: path, query and header parameters and the top-level fields of a JSON
//!   or form body, each an input-schema property (its `$ref`s inlined, see `schema.rs`),
//!   with `args` saying where it goes when that is not the default. Credentials never
//!   become arguments: the auth scheme's header or query parameter is left out.
//!
//! Anything else — a multipart upload, a body that is not an object, a name two places
//! share, a required cookie — skips the operation with a [`SkipReason`]: never a panic,
//! never a tool that would send a wrong request.

use crate::document::{Body, Document, Operation};
use crate::schema::{self, Limits, SchemaError, first_sentence, plain_text, truncate};
use clawlink_common::catalog::{
    ArgLocation, Auth, BodyEncoding, Example, Guidance, Mode, Provider, RateLimits, RetryHeaders, Risk, Tool,
    lint_schema, placeholders, validate_tool,
};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// An input schema larger than this (as JSON) is inlined again less deeply, then skipped.
const MAX_SCHEMA_BYTES: usize = 48 * 1024;

/// Tool names are at most this long (OpenAI, Anthropic and Gemini all stop at 64).
const MAX_NAME: usize = 64;

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The provider id (`stripe`): tool names start with it.
    pub provider: String,
    /// Only these operations (by `operationId`, or `METHOD /path`); all when `None`.
    pub operations: Option<Vec<String>>,
    /// The base URL, when the document's servers are not the one to use.
    pub base_url: Option<String>,
}

/// The provider, and what became of each operation.
#[derive(Debug)]
pub struct Import {
    pub provider: Provider,
    pub report: ImportReport,
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub title: String,
    pub api_version: String,
    pub spec_version: &'static str,
    /// Operations considered (all, or those asked for).
    pub operations: usize,
    /// `(tool name, operation)` for each tool made.
    pub tools: Vec<(String, String)>,
    pub skipped: Vec<Skipped>,
    /// Things a reviewer should look at in the written file (`# check:` lines).
    pub warnings: Vec<String>,
}

/// An operation that did not become a tool.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// `METHOD /path (operationId)`.
    pub operation: String,
    pub reason: SkipReason,
    pub detail: String,
}

/// Why an operation did not become a tool, for grouping in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// HEAD, OPTIONS or TRACE: the catalog calls GET, POST, PUT, PATCH and DELETE.
    Method,
    /// Marked deprecated by the document.
    Deprecated,
    /// A `multipart/form-data` body (a file upload).
    Multipart,
    /// A body in a content type other than JSON or a URL-encoded form.
    BodyContentType,
    /// A form body in a provider whose bodies are JSON, or the other way round.
    BodyEncoding,
    /// The body is an array or a scalar: tool arguments are the fields of an object.
    BodyNotObject,
    /// The body is one of several schemas (`oneOf`/`anyOf` at its top).
    BodyChoice,
    /// The body is a map of free keys: there are no fields to make arguments of.
    BodyFreeForm,
    /// A `$ref` to another file or to nothing.
    UnresolvedRef,
    /// A required cookie parameter.
    Cookie,
    /// A required parameter or field whose name model APIs refuse.
    ParameterName,
    /// Two parameters or fields with one name (a path and a body `id`).
    NameCollision,
    /// A path placeholder without a parameter, or a "path" holding a query or fragment
    /// (`/#X-Amz-Target=…`, `/items?op=x`): the catalog's path is a path.
    PathTemplate,
    /// The input schema stays too large even inlined shallowly.
    SchemaTooLarge,
    /// The resulting tool does not load (a pattern the validator cannot compile…).
    InvalidTool,
    /// The input schema breaks a function-calling rule after conversion.
    Lint,
    /// Asked for with `--operations` but not in the document.
    NotFound,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Method => "method not supported (HEAD/OPTIONS/TRACE)",
            SkipReason::Deprecated => "deprecated operation",
            SkipReason::Multipart => "multipart body (file upload)",
            SkipReason::BodyContentType => "body content type not JSON or form",
            SkipReason::BodyEncoding => "body encoding differs from the provider's",
            SkipReason::BodyNotObject => "body is not an object",
            SkipReason::BodyChoice => "body is a oneOf/anyOf choice",
            SkipReason::BodyFreeForm => "body is a free-form map",
            SkipReason::UnresolvedRef => "unresolved $ref",
            SkipReason::Cookie => "required cookie parameter",
            SkipReason::ParameterName => "required name refused by model APIs",
            SkipReason::NameCollision => "two arguments share a name",
            SkipReason::PathTemplate => "path template not a plain path (placeholder without parameter, ? or #)",
            SkipReason::SchemaTooLarge => "input schema too large",
            SkipReason::InvalidTool => "tool does not load",
            SkipReason::Lint => "schema lint",
            SkipReason::NotFound => "operation not in the document",
        }
    }
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} {} ({})", self.title, self.api_version, self.spec_version)?;
        writeln!(f, "{} operations: {} tools, {} skipped", self.operations, self.tools.len(), self.skipped.len())?;
        for warning in &self.warnings {
            writeln!(f, "check: {warning}")?;
        }
        for (name, operation) in &self.tools {
            writeln!(f, "  tool    {name:<48} {operation}")?;
        }
        for s in &self.skipped {
            writeln!(f, "  skipped {}: {} — {}", s.operation, s.reason.as_str(), s.detail)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("provider id {0:?} must be lower-case letters, digits and single '_'")]
    ProviderId(String),
}

type Skip = (SkipReason, String);

/// Imports `doc` as the provider `options.provider`.
pub fn import(doc: &Document, options: &ImportOptions) -> Result<Import, ImportError> {
    let id = options.provider.as_str();
    let slug = !id.is_empty()
        && !id.contains("__")
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && id.len() < MAX_NAME / 2;
    if !slug {
        return Err(ImportError::ProviderId(id.to_string()));
    }
    let mut report = ImportReport {
        title: doc.title().to_string(),
        api_version: doc.api_version().to_string(),
        spec_version: doc.version.as_str(),
        ..ImportReport::default()
    };

    let all = doc.operations();
    let operations: Vec<&Operation> = match &options.operations {
        None => all.iter().collect(),
        Some(wanted) => {
            let key_matches = |op: &Operation, key: &str| {
                op.operation_id == Some(key) || format!("{} {}", op.method, op.path).eq_ignore_ascii_case(key)
            };
            for key in wanted {
                if !all.iter().any(|op| key_matches(op, key)) {
                    report.skipped.push(Skipped {
                        operation: key.clone(),
                        reason: SkipReason::NotFound,
                        detail: "no operation with this operationId (or METHOD /path)".into(),
                    });
                }
            }
            all.iter().filter(|op| wanted.iter().any(|k| key_matches(op, k))).collect()
        }
    };
    report.operations = operations.len();

    let credentials = Credentials::of(doc, &operations, &mut report.warnings);
    let encoding = body_encoding(&operations);
    let base_url = match options.base_url.clone().or_else(|| doc.base_url()) {
        Some(url) => {
            if url.starts_with("http://") {
                report.warnings.push(format!("base_url {url} is not https"));
            }
            url
        }
        None => {
            report.warnings.push("the document names no absolute server URL: set base_url".into());
            "https://api.example.invalid".to_string()
        }
    };
    let name = doc.title().trim().to_string();
    let categories: Vec<String> = doc
        .root
        .pointer("/info/x-apisguru-categories")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .filter(|c: &Vec<String>| !c.is_empty())
        .unwrap_or_else(|| vec!["imported".to_string()]);

    let mut provider = Provider {
        id: id.to_string(),
        name: if name.is_empty() { id.to_string() } else { truncate(&plain_text(&name), 80) },
        categories,
        aliases: Vec::new(),
        base_url,
        auth: credentials.auth.clone(),
        identity: None,
        rate_limits: RateLimits::default(),
        retry_headers: RetryHeaders::default(),
        idempotency_header: None,
        request_id_header: None,
        headers: BTreeMap::new(),
        body_encoding: encoding,
        tools: Vec::new(),
    };

    let mut names = BTreeSet::new();
    for op in operations {
        let made = build(doc, op, &provider, &credentials, Limits::default()).or_else(|(reason, detail)| {
            if reason == SkipReason::SchemaTooLarge {
                build(doc, op, &provider, &credentials, Limits { max_depth: 2, max_recursion: 0 })
            } else {
                Err((reason, detail))
            }
        });
        match made.and_then(|tool| finish(tool, id, &mut names)) {
            Ok(tool) => {
                report.tools.push((format!("{id}_{}", tool.action), op.label()));
                provider.tools.push(tool);
            }
            Err((reason, detail)) => report.skipped.push(Skipped { operation: op.label(), reason, detail }),
        }
    }
    Ok(Import { provider, report })
}

/// Names the tool uniquely, then checks that it loads and passes the lint (dropping an
/// example or the patterns the validator cannot compile, before giving up).
fn finish(mut tool: Tool, provider: &str, names: &mut BTreeSet<String>) -> Result<Tool, Skip> {
    tool.action = unique_action(provider, &tool.action, names);
    if let Err(first) = validate_tool(&tool) {
        if first.contains("guidance.examples") {
            tool.guidance.examples.clear();
        } else {
            strip_key(&mut tool.input_schema, "pattern");
        }
        if let Err(again) = validate_tool(&tool) {
            names.remove(&tool.action);
            return Err((SkipReason::InvalidTool, again));
        }
    }
    let (violations, _) = lint_schema(&format!("{provider}_{}", tool.action), &tool.input_schema);
    if let Some(v) = violations.first() {
        names.remove(&tool.action);
        return Err((SkipReason::Lint, v.to_string()));
    }
    Ok(tool)
}

fn strip_key(value: &mut Value, key: &str) {
    match value {
        Value::Object(map) => {
            if map.get(key).is_some_and(Value::is_string) {
                map.remove(key);
            }
            map.values_mut().for_each(|v| strip_key(v, key));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip_key(v, key)),
        _ => {}
    }
}

fn unique_action(provider: &str, action: &str, names: &mut BTreeSet<String>) -> String {
    let room = MAX_NAME - provider.len() - 1;
    let base = shorten(action, room);
    let mut candidate = base.clone();
    let mut n = 2;
    while names.contains(&candidate) {
        let suffix = format!("_{n}");
        candidate = format!("{}{suffix}", shorten(&base, room - suffix.len()));
        n += 1;
    }
    names.insert(candidate.clone());
    candidate
}

/// At most `room` characters, cut at an underscore where one is near.
fn shorten(action: &str, room: usize) -> String {
    if action.len() <= room {
        return action.to_string();
    }
    let cut = &action[..room];
    match cut.rfind('_') {
        Some(i) if i > room / 2 => cut[..i].to_string(),
        _ => cut.trim_end_matches('_').to_string(),
    }
}

/// How the provider authenticates, and which parameters carry the credential (they never
/// become arguments).
struct Credentials {
    auth: Auth,
    header: Option<String>,
    query: Option<String>,
}

impl Credentials {
    fn of(doc: &Document, operations: &[&Operation], warnings: &mut Vec<String>) -> Credentials {
        let schemes = doc.security_schemes();
        // Schemes the operations ask for, in the order they name them, then the rest.
        let mut order: Vec<&str> = Vec::new();
        for op in operations {
            for requirement in op.security.and_then(Value::as_array).into_iter().flatten() {
                for name in requirement.as_object().into_iter().flat_map(|r| r.keys()) {
                    if !order.contains(&name.as_str()) {
                        order.push(name);
                    }
                }
            }
        }
        for (name, _) in &schemes {
            if !order.contains(name) {
                order.push(name);
            }
        }
        for name in order {
            let Some((_, scheme)) = schemes.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            let text = |key: &str| scheme.get(key).and_then(Value::as_str);
            match text("type").unwrap_or_default() {
                "oauth2" => {
                    let flow = scheme
                        .pointer("/flows/authorizationCode")
                        .or_else(|| (text("flow") == Some("accessCode")).then_some(*scheme));
                    let Some(flow) = flow else {
                        continue;
                    };
                    let url = |key: &str| flow.get(key).and_then(Value::as_str).filter(|u| u.starts_with("http"));
                    let (Some(authorize_url), Some(token_url)) = (url("authorizationUrl"), url("tokenUrl")) else {
                        continue;
                    };
                    let scopes = scopes_used(operations, name);
                    warnings.push("oauth2: check the scopes and whether the provider supports PKCE".into());
                    return Credentials {
                        auth: Auth::Oauth2 {
                            authorize_url: authorize_url.to_string(),
                            token_url: token_url.to_string(),
                            scopes,
                            pkce: true,
                            extra_authorize_params: BTreeMap::new(),
                            extra_token_params: BTreeMap::new(),
                        },
                        header: Some("Authorization".into()),
                        query: None,
                    };
                }
                "apiKey" => {
                    let Some(param) = text("name") else {
                        continue;
                    };
                    match text("in") {
                        Some("header") => {
                            return Credentials {
                                auth: Auth::ApiKey {
                                    header: Some(param.to_string()),
                                    query: None,
                                    format: "{key}".into(),
                                },
                                header: Some(param.to_string()),
                                query: None,
                            };
                        }
                        Some("query") => {
                            return Credentials {
                                auth: Auth::ApiKey {
                                    header: None,
                                    query: Some(param.to_string()),
                                    format: "{key}".into(),
                                },
                                header: None,
                                query: Some(param.to_string()),
                            };
                        }
                        _ => continue,
                    }
                }
                "basic" => return Credentials { auth: Auth::Basic, header: Some("Authorization".into()), query: None },
                "http" => match text("scheme").map(str::to_ascii_lowercase).as_deref() {
                    Some("basic") => {
                        return Credentials { auth: Auth::Basic, header: Some("Authorization".into()), query: None };
                    }
                    Some("bearer") => return Credentials::bearer(),
                    _ => continue,
                },
                _ => continue,
            }
        }
        warnings.push(
            "no usable security scheme (OAuth2 authorization code, API key in a header or query, HTTP basic or bearer): \
             auth is set to a bearer key"
                .into(),
        );
        Credentials::bearer()
    }

    fn bearer() -> Credentials {
        Credentials {
            auth: Auth::ApiKey { header: Some("Authorization".into()), query: None, format: "Bearer {key}".into() },
            header: Some("Authorization".into()),
            query: None,
        }
    }

    fn carries(&self, location: &str, name: &str) -> bool {
        match location {
            "header" => self.header.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(name)),
            "query" => self.query.as_deref() == Some(name),
            _ => false,
        }
    }
}

fn scopes_used(operations: &[&Operation], scheme: &str) -> Vec<String> {
    let mut scopes = BTreeSet::new();
    for op in operations {
        for requirement in op.security.and_then(Value::as_array).into_iter().flatten() {
            for scope in requirement.get(scheme).and_then(Value::as_array).into_iter().flatten() {
                if let Some(s) = scope.as_str() {
                    scopes.insert(s.to_string());
                }
            }
        }
    }
    scopes.into_iter().collect()
}

fn is_json(content_type: &str) -> bool {
    let t = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    t == "application/json" || t == "*/*" || t == "text/json" || t.ends_with("+json")
}

fn is_form(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// Form when more of the operations take only forms than only JSON.
fn body_encoding(operations: &[&Operation]) -> BodyEncoding {
    let (mut json, mut form) = (0, 0);
    for body in operations.iter().filter_map(|op| op.body.as_ref()) {
        let takes_json = body.content.iter().any(|(t, _)| is_json(t));
        let takes_form = body.content.iter().any(|(t, _)| is_form(t));
        match (takes_json, takes_form) {
            (true, false) => json += 1,
            (false, true) => form += 1,
            _ => {}
        }
    }
    if form > json { BodyEncoding::Form } else { BodyEncoding::Json }
}

/// Headers the worker sets itself.
const OWN_HEADERS: [&str; 6] = ["authorization", "accept", "content-type", "content-length", "user-agent", "host"];

/// Query parameters that carry a credential whatever the auth scheme says.
const CREDENTIAL_QUERY: [&str; 3] = ["access_token", "oauth_token", "api_key"];

fn build(
    doc: &Document,
    op: &Operation,
    provider: &Provider,
    credentials: &Credentials,
    limits: Limits,
) -> Result<Tool, Skip> {
    let method = op.method.as_str();
    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method) {
        return Err((SkipReason::Method, method.to_string()));
    }
    if op.deprecated {
        return Err((SkipReason::Deprecated, "the document marks it deprecated".into()));
    }
    if let Some(problem) = op.problems.first() {
        return Err((SkipReason::UnresolvedRef, problem.clone()));
    }
    if op.path.contains(['?', '#']) || !op.path.starts_with('/') {
        return Err((SkipReason::PathTemplate, format!("{} is not a plain path", op.path)));
    }
    let inline = |schema: &Value| {
        schema::inline(doc, schema, limits).map_err(|SchemaError::UnresolvedRef(r)| {
            (SkipReason::UnresolvedRef, format!("$ref {r} does not resolve in the document"))
        })
    };
    let default_location = if method == "GET" || method == "DELETE" { ArgLocation::Query } else { ArgLocation::Body };
    let placeholders = placeholders(op.path);
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut args = BTreeMap::new();
    let mut examples = Map::new();
    let mut dropped = Vec::new();
    let mut add = |name: String,
                   schema: Value,
                   is_required: bool,
                   location: ArgLocation,
                   properties: &mut Map<String, Value>|
     -> Result<(), Skip> {
        if !valid_property(&name) {
            if is_required {
                return Err((SkipReason::ParameterName, format!("{name:?} is required")));
            }
            dropped.push(name);
            return Ok(());
        }
        if properties.contains_key(&name) {
            // An optional body field that repeats a path parameter (`PUT /items/{id}` with
            // an `id` in the body) is left to the path.
            if location == ArgLocation::Body && !is_required && placeholders.contains(&name.as_str()) {
                dropped.push(name);
                return Ok(());
            }
            return Err((SkipReason::NameCollision, format!("{name:?} is both a parameter and a field")));
        }
        properties.insert(name.clone(), schema);
        if is_required {
            required.push(Value::String(name.clone()));
        }
        if location != ArgLocation::Path && location != default_location {
            args.insert(name, location);
        }
        Ok(())
    };

    for p in &op.parameters {
        let (name, location) = match p.location {
            "cookie" if p.required => return Err((SkipReason::Cookie, format!("cookie {}", p.name))),
            "cookie" => continue,
            "header" if OWN_HEADERS.contains(&p.name.to_ascii_lowercase().as_str()) => continue,
            "header" if credentials.carries("header", p.name) => continue,
            "header" => (snake_case(p.name), ArgLocation::Header(p.name.to_string())),
            "query" if credentials.carries("query", p.name) || CREDENTIAL_QUERY.contains(&p.name) => continue,
            "query" => (p.name.to_string(), ArgLocation::Query),
            // A path parameter the template does not use sends nothing.
            "path" if !placeholders.contains(&p.name) => continue,
            _ => (p.name.to_string(), ArgLocation::Path),
        };
        let mut schema = inline(&p.schema)?;
        if let (Some(d), Some(map)) = (p.description, schema.as_object_mut())
            && !map.contains_key("description")
        {
            map.insert("description".into(), Value::String(truncate(&plain_text(d), 400)));
        }
        if let Some(example) = p.example.and_then(schema::strip_nulls) {
            examples.insert(name.clone(), example);
        }
        add(name, schema, p.required, location, &mut properties)?;
    }
    for name in &placeholders {
        if !properties.contains_key(*name) {
            return Err((SkipReason::PathTemplate, format!("{{{name}}} has no path parameter")));
        }
    }

    if let Some(body) = op.body.as_ref().filter(|b| !b.content.is_empty()) {
        let schema = body_schema(body, provider.body_encoding)?;
        let schema = inline(schema)?;
        if schema.get("anyOf").is_some() {
            return Err((SkipReason::BodyChoice, "the body is one of several schemas".into()));
        }
        let fields = schema.get("properties").and_then(Value::as_object);
        match schema.get("type").and_then(Value::as_str) {
            Some("object") | None => {}
            Some(other) => return Err((SkipReason::BodyNotObject, format!("the body is of type {other}"))),
        }
        if fields.is_none_or(|f| f.is_empty()) && schema.get("additionalProperties").is_some_and(|a| a != false) {
            return Err((SkipReason::BodyFreeForm, "the body has no named fields".into()));
        }
        let body_required: Vec<&str> =
            schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        for (name, field) in fields.into_iter().flatten() {
            let is_required = body_required.contains(&name.as_str());
            add(name.clone(), field.clone(), is_required, ArgLocation::Body, &mut properties)?;
        }
    }

    let mut input_schema = Map::new();
    input_schema.insert("type".into(), "object".into());
    input_schema.insert("additionalProperties".into(), Value::Bool(false));
    if !required.is_empty() {
        input_schema.insert("required".into(), Value::Array(required.clone()));
    }
    input_schema.insert("properties".into(), Value::Object(properties.clone()));
    let input_schema = Value::Object(input_schema);
    let size = input_schema.to_string().len();
    if size > MAX_SCHEMA_BYTES {
        return Err((SkipReason::SchemaTooLarge, format!("{} KB after inlining", size / 1024)));
    }

    let (mode, risk) = classify(op);
    let action = action_name(&provider.id, op);
    let title = op
        .summary
        .or(op.description)
        .map(|s| truncate(first_sentence(s, 200).trim_end_matches('.'), 80))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| humanize(&fallback_action(op)));
    let mut description = String::new();
    if let Some(summary) = op.summary {
        description.push_str(plain_text(summary).trim_end_matches('.'));
        description.push('.');
    }
    if let Some(text) = op.description.map(plain_text) {
        let summary = op.summary.map(plain_text).unwrap_or_default();
        if !text.starts_with(summary.trim_end_matches('.')) || summary.is_empty() {
            description.push(' ');
            description.push_str(&text);
        } else {
            description = text;
        }
    }
    let mut description = truncate(description.trim(), 700);
    if description.chars().count() < 40 {
        description = format!("{} Calls {method} {} on {}.", description, op.path, provider.name).trim().to_string();
    }
    if !dropped.is_empty() {
        description.push_str(&format!(" (Optional, not offered: {}.)", dropped.join(", ")));
    }
    let shown: Vec<String> =
        required.iter().filter_map(Value::as_str).take(3).map(|name| format!("{name}={{{name}}}")).collect();
    let preview = if shown.is_empty() { title.clone() } else { format!("{title}: {}", shown.join(", ")) };

    let mut arguments = Map::new();
    for name in required.iter().filter_map(Value::as_str) {
        let value = examples.get(name).cloned().unwrap_or_else(|| schema::example_value(&properties[name], 0));
        arguments.insert(name.to_string(), value);
    }
    let mut ask_before = Vec::new();
    if mode != Mode::Read {
        ask_before.push(format!("Confirm what will be sent to {} with the person.", provider.name));
    }
    if mode == Mode::Destructive {
        ask_before
            .push("This removes or cancels something and may not be undone: make sure the person means it.".into());
    }
    let when_to_use = match op.description.or(op.summary) {
        Some(text) => first_sentence(text, 240),
        None => format!("To call {method} {}.", op.path),
    };
    Ok(Tool {
        action,
        title,
        description,
        method: method.to_string(),
        path: op.path.to_string(),
        mode,
        risk,
        preview,
        input_schema,
        input_rules: None,
        operation_id: op.operation_id.map(str::to_string),
        args,
        synonyms: Vec::new(),
        guidance: Guidance {
            when_to_use,
            ask_before,
            safe_defaults: BTreeMap::new(),
            examples: vec![Example {
                description: "Required arguments only".into(),
                arguments: Value::Object(arguments),
            }],
        },
        result: None,
        transform: None,
        // The loader's default: safe for reads, idempotency-keyed providers and PUT/DELETE,
        // never for other writes (a reviewer may declare a verification read).
        retry: None,
        verify: None,
    })
}

/// The body schema in the provider's encoding, or why there is none.
fn body_schema(body: &Body, encoding: BodyEncoding) -> Result<&Value, Skip> {
    let json = body.content.iter().find(|(t, _)| is_json(t));
    let form = body.content.iter().find(|(t, _)| is_form(t));
    let chosen = match encoding {
        BodyEncoding::Json => json,
        BodyEncoding::Form => form,
    };
    if let Some((_, schema)) = chosen {
        return Ok(schema);
    }
    let types: Vec<&str> = body.content.iter().map(|(t, _)| t.as_str()).collect();
    if json.is_some() || form.is_some() {
        return Err((SkipReason::BodyEncoding, format!("takes {}; the provider sends {encoding:?}", types.join(", "))));
    }
    if types.iter().any(|t| t.starts_with("multipart/")) {
        return Err((SkipReason::Multipart, types.join(", ")));
    }
    Err((SkipReason::BodyContentType, types.join(", ")))
}

/// Names Anthropic accepts for properties (and so every model API).
fn valid_property(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Words of an identifier: `listRepoIssues` → list, repo, issues; `gmail.users.get` →
/// gmail, users, get; `HTTPServer` → http, server.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        let boundary = c.is_ascii_uppercase()
            && i > 0
            && (chars[i - 1].is_ascii_lowercase()
                || chars[i - 1].is_ascii_digit()
                || (chars[i - 1].is_ascii_uppercase() && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())));
        if boundary && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn snake_case(text: &str) -> String {
    words(text).join("_")
}

/// The action: the operationId in snake case without a leading provider id, else one
/// made from the method and path.
fn action_name(provider: &str, op: &Operation) -> String {
    let from_id = op.operation_id.map(snake_case).unwrap_or_default();
    let trimmed = from_id.strip_prefix(&format!("{provider}_")).unwrap_or(&from_id);
    if trimmed.is_empty() || trimmed == provider { fallback_action(op) } else { trimmed.to_string() }
}

/// `list_repos_issues` for `GET /repos/{owner}/{repo}/issues`.
fn fallback_action(op: &Operation) -> String {
    let item = op.path.trim_end_matches('/').ends_with('}');
    let verb = match op.method.as_str() {
        "GET" if item => "get",
        "GET" => "list",
        "POST" => "create",
        "PUT" | "PATCH" => "update",
        "DELETE" => "delete",
        other => return other.to_ascii_lowercase(),
    };
    let mut parts = vec![verb.to_string()];
    for segment in op.path.split('/').filter(|s| !s.is_empty() && !s.starts_with('{')) {
        parts.extend(words(segment));
    }
    parts.join("_")
}

fn humanize(action: &str) -> String {
    let text = action.replace('_', " ");
    let mut chars = text.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

const READ_WORDS: [&str; 14] = [
    "search", "query", "find", "lookup", "list", "get", "fetch", "read", "retrieve", "count", "check", "validate",
    "preview", "estimate",
];
const DESTRUCTIVE_WORDS: [&str; 12] = [
    "delete",
    "remove",
    "destroy",
    "purge",
    "trash",
    "revoke",
    "cancel",
    "void",
    "terminate",
    "erase",
    "wipe",
    "archive",
];
const HIGH_IMPACT_WORDS: [&str; 12] = [
    "send", "pay", "refund", "transfer", "charge", "payout", "capture", "publish", "merge", "invite", "share", "deploy",
];

/// Mode and risk from the method and the operation's words (its id's first and last
/// word, and the path's last literal segment).
pub(crate) fn classify(op: &Operation) -> (Mode, Risk) {
    match op.method.as_str() {
        "GET" => return (Mode::Read, Risk::Safe),
        "DELETE" => return (Mode::Destructive, Risk::HighImpact),
        _ => {}
    }
    let id_words = op.operation_id.map(words).unwrap_or_default();
    let last_segment =
        op.path.rsplit('/').find(|s| !s.is_empty() && !s.starts_with('{')).map(words).unwrap_or_default();
    let mut keys: Vec<String> = Vec::new();
    keys.extend(id_words.first().cloned());
    keys.extend(id_words.last().cloned());
    keys.extend(last_segment.first().cloned());
    keys.extend(last_segment.last().cloned());
    let keys: Vec<String> = keys.into_iter().map(|w| w.strip_suffix('s').map(str::to_string).unwrap_or(w)).collect();
    let has = |list: &[&str]| keys.iter().any(|k| list.contains(&k.as_str()));
    if has(&READ_WORDS) {
        (Mode::Read, Risk::Safe)
    } else if has(&DESTRUCTIVE_WORDS) {
        (Mode::Destructive, Risk::HighImpact)
    } else if has(&HIGH_IMPACT_WORDS) {
        (Mode::Write, Risk::HighImpact)
    } else {
        (Mode::Write, Risk::Confirm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_split_into_words() {
        assert_eq!(words("listRepoIssues"), ["list", "repo", "issues"]);
        assert_eq!(words("gmail.users.messages.list"), ["gmail", "users", "messages", "list"]);
        assert_eq!(words("HTTPServer_get-v2"), ["http", "server", "get", "v2"]);
        assert_eq!(words("issues/create-comment"), ["issues", "create", "comment"]);
    }

    #[test]
    fn long_names_are_shortened_and_kept_unique() {
        let mut names = BTreeSet::new();
        let long = "a_very_long_operation_identifier_that_goes_on_and_on_for_ever_and_ever";
        let first = unique_action("prov", long, &mut names);
        let second = unique_action("prov", long, &mut names);
        assert!(first.len() <= 59 && second.len() <= 59, "{first} {second}");
        assert_ne!(first, second);
        assert!(second.ends_with("_2"));
    }
}
