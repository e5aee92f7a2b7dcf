//! The provider catalog: providers and their tools as data, one TOML file per provider.
//!
//! TOML because its parser is maintained, strict (no YAML "Norway problem" or implicit
//! types), and reports errors with line and column; and because Rust users read it daily.
//! Loading validates every file; a bad file stops start-up naming the file, the place in
//! it and the reason. Knows nothing about HTTP serving, queues or storage.

mod arguments;
pub mod lint;
mod render;
pub mod search;
mod verify;

pub use arguments::{ArgumentErrors, validate_arguments};
pub use lint::{LintReport, Violation, lint_catalog, lint_schema, lint_tool};
pub use render::{RenderError, RenderedRequest, RequestBody, render_preview, render_request};
pub use verify::{RetryClass, Verify};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a provider authenticates our requests.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// OAuth2 authorization code (PKCE where the provider supports it); the access token
    /// goes in `Authorization: Bearer`.
    Oauth2 {
        authorize_url: String,
        token_url: String,
        #[serde(default)]
        scopes: Vec<String>,
        #[serde(default = "yes")]
        pkce: bool,
        #[serde(default)]
        extra_authorize_params: BTreeMap<String, String>,
        #[serde(default)]
        extra_token_params: BTreeMap<String, String>,
    },
    /// A key the person pastes; sent in a header (with a format such as `Bearer {key}`) or
    /// a query parameter.
    ApiKey {
        #[serde(default)]
        header: Option<String>,
        #[serde(default)]
        query: Option<String>,
        #[serde(default = "default_key_format")]
        format: String,
    },
    /// HTTP basic authentication with a user name and password (or token).
    Basic,
    /// Two values in the query: an application key and a per-person token (Trello).
    KeyPair { key_query: String, token_query: String },
}

impl Auth {
    /// `oauth2`, `api_key` or `basic`.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::Oauth2 { .. } => "oauth2",
            Auth::ApiKey { .. } => "api_key",
            Auth::Basic => "basic",
            Auth::KeyPair { .. } => "key_pair",
        }
    }
}

fn yes() -> bool {
    true
}

fn default_key_format() -> String {
    "{key}".into()
}

/// How to read the connected account's identity, for account labels.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    /// JSON pointer to the account's stable id in the response.
    pub id: String,
    /// JSON pointer to a human label (email, login, workspace name).
    pub label: String,
    /// A JSON body to send (a GraphQL query, for providers without a REST identity).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

fn get() -> String {
    "GET".into()
}

/// One rate-limit window: at most `requests` per `per_seconds`, with `burst` extra calls
/// allowed at once (the bucket's capacity beyond one).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateWindow {
    pub requests: u32,
    pub per_seconds: u32,
    #[serde(default)]
    pub burst: u32,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Windows that apply to each connection (each account's token).
    #[serde(default)]
    pub per_connection: Vec<RateWindow>,
    /// Windows that apply to the whole app (every connection together).
    #[serde(default)]
    pub per_app: Vec<RateWindow>,
}

/// Headers that tell us when to come back.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetryHeaders {
    #[serde(default = "default_retry_after")]
    pub retry_after: Vec<String>,
    /// Headers carrying the epoch second at which the limit resets.
    #[serde(default)]
    pub reset: Vec<String>,
}

fn default_retry_after() -> Vec<String> {
    vec!["retry-after".into()]
}

impl Default for RetryHeaders {
    fn default() -> Self {
        Self { retry_after: default_retry_after(), reset: Vec::new() }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Read,
    Write,
    Destructive,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Read => "read",
            Mode::Write => "write",
            Mode::Destructive => "destructive",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Safe,
    Confirm,
    HighImpact,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Safe => "safe",
            Risk::Confirm => "confirm",
            Risk::HighImpact => "high_impact",
        }
    }
}

/// Where one argument goes in the request.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum ArgLocation {
    Path,
    Query,
    Body,
    /// A request header of this name.
    Header(String),
}

/// How a request body is encoded.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`, nested values in bracket notation
    /// (`metadata[order]=42`, `items[0][price]=p_1`), as Stripe expects.
    Form,
}

/// A small, reusable step for requests a template cannot express.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transform {
    /// Builds an RFC 5322 message from the `to`, `cc`, `bcc`, `subject` and `body`
    /// arguments and puts it, base64url-encoded, at the JSON pointer `target` of the body
    /// (Gmail: `/raw` to send, `/message/raw` for a draft).
    Rfc5322Message { target: String },
    /// Sends `{"query": query, "variables": {…the arguments…}}` (GraphQL over HTTP).
    Graphql { query: String },
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub description: String,
    pub arguments: serde_json::Value,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Guidance {
    #[serde(default)]
    pub when_to_use: String,
    #[serde(default)]
    pub ask_before: Vec<String>,
    #[serde(default)]
    pub safe_defaults: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub examples: Vec<Example>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// The action id; the tool's name is `<integration>_<action>`.
    pub action: String,
    pub title: String,
    pub description: String,
    pub method: String,
    /// Path template relative to the provider's base URL, with `{argument}` placeholders.
    pub path: String,
    pub mode: Mode,
    pub risk: Risk,
    /// One-line summary with `{argument}` placeholders, shown before a risky call.
    pub preview: String,
    pub input_schema: serde_json::Value,
    /// Constraints checked with `input_schema` but not published in it, because the
    /// function-calling schemas of model APIs refuse them at the top level: "at least one
    /// of" (`anyOf`), "exactly one of" (`oneOf`). The description says the rule in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_rules: Option<serde_json::Value>,
    /// The provider's OpenAPI `operationId` this tool calls, for tracing a tool back to the
    /// provider's published specification (set by `catalog import`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// Where arguments go when not the default (path placeholders → path; GET/DELETE →
    /// query; otherwise → JSON body).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, ArgLocation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<String>,
    #[serde(default)]
    pub guidance: Guidance,
    /// JSON pointer to the part of the response worth returning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// A request the path/query/body template cannot express.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
    /// Whether the call may be sent again when its outcome is unknown (`verify.rs`);
    /// unset: the default for its mode, method and provider ([`ToolEntry::retry`]).
    #[serde(default)]
    pub retry: Option<RetryClass>,
    /// The read that tells whether a `retry = "verify"` write happened.
    #[serde(default)]
    pub verify: Option<Verify>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub categories: Vec<String>,
    /// Other names people call this app by ("gcal"), for search.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub base_url: String,
    pub auth: Auth,
    #[serde(default)]
    pub identity: Option<Identity>,
    #[serde(default)]
    pub rate_limits: RateLimits,
    #[serde(default)]
    pub retry_headers: RetryHeaders,
    /// The request header that makes a write idempotent at the provider, if it has one;
    /// the worker sends the execution id in it.
    #[serde(default)]
    pub idempotency_header: Option<String>,
    /// Header carrying the provider's request id, shown to the agent for support.
    #[serde(default)]
    pub request_id_header: Option<String>,
    /// Fixed headers sent on every request (an API version, for example).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body_encoding: BodyEncoding,
    #[serde(default)]
    pub tools: Vec<Tool>,
}

/// A tool with everything needed on the hot path precomputed once at load.
#[derive(Debug)]
pub struct ToolEntry {
    pub name: String,
    pub provider: Arc<Provider>,
    pub tool: Tool,
    pub validator: jsonschema::Validator,
    /// Whether the tool needs `confirmed: true` (mode not read, or risk not safe).
    pub requires_confirmation: bool,
    /// What the worker may do when a call's outcome is unknown: the tool's `retry`, else
    /// safe for reads, for a provider with an idempotency key and for PUT/DELETE, else
    /// never.
    pub retry: RetryClass,
}

/// The whole catalog, loaded once and shared read-only.
#[derive(Debug, Default)]
pub struct Catalog {
    providers: BTreeMap<String, Arc<Provider>>,
    tools: BTreeMap<String, Arc<ToolEntry>>,
    /// The tools in name order: hit `n` of [`Catalog::search`] is `ordered[n]`.
    pub(crate) ordered: Vec<Arc<ToolEntry>>,
    /// The search index, built once here at load.
    pub(crate) search: search::SearchIndex,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("catalog folder {path}: {reason}")]
    Folder { path: PathBuf, reason: String },
}

impl Catalog {
    /// Loads every `*.toml` in `dir`, applying base URL overrides.
    pub fn load_dir(dir: &Path, base_urls: &BTreeMap<String, String>) -> Result<Self, CatalogError> {
        let folder_err = |reason: String| CatalogError::Folder { path: dir.to_path_buf(), reason };
        let mut files = std::fs::read_dir(dir)
            .map_err(|e| folder_err(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect::<Vec<_>>();
        files.sort();
        if files.is_empty() {
            return Err(folder_err("no provider files (*.toml)".into()));
        }
        let mut sources = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| CatalogError::File { path: path.clone(), reason: e.to_string() })?;
            sources.push((path, text));
        }
        Self::from_sources(sources, base_urls)
    }

    /// Builds a catalog from `(path, text)` pairs; the path is only used in errors.
    pub fn from_sources(
        sources: Vec<(PathBuf, String)>,
        base_urls: &BTreeMap<String, String>,
    ) -> Result<Self, CatalogError> {
        let mut catalog = Catalog::default();
        for (path, text) in sources {
            let file_err = |reason: String| CatalogError::File { path: path.clone(), reason };
            let mut provider: Provider = toml::from_str(&text).map_err(|e| file_err(describe_toml_error(&text, &e)))?;
            check_provider(&provider).map_err(file_err)?;
            if let Some(url) = base_urls.get(&provider.id) {
                provider.base_url = url.clone();
            }
            if let Auth::Oauth2 { authorize_url, token_url, .. } = &mut provider.auth {
                if let Some(url) = base_urls.get(&format!("{}.authorize_url", provider.id)) {
                    *authorize_url = url.clone();
                }
                if let Some(url) = base_urls.get(&format!("{}.token_url", provider.id)) {
                    *token_url = url.clone();
                }
            }
            if catalog.providers.contains_key(&provider.id) {
                return Err(file_err(format!("provider id {:?} is declared twice", provider.id)));
            }
            let provider = Arc::new(provider);
            for (index, tool) in provider.tools.iter().enumerate() {
                let place = format!("tools[{index}] (action {:?})", tool.action);
                let name = format!("{}_{}", provider.id, tool.action);
                let validator = check_tool(tool).map_err(|r| file_err(format!("{place}: {r}")))?;
                if catalog.tools.contains_key(&name) {
                    return Err(file_err(format!("{place}: tool name {name:?} is declared twice")));
                }
                let requires_confirmation = tool.mode != Mode::Read || tool.risk != Risk::Safe;
                check_verify(&provider, tool).map_err(|r| file_err(format!("{place}: {r}")))?;
                let entry = ToolEntry {
                    name: name.clone(),
                    provider: provider.clone(),
                    tool: tool.clone(),
                    validator,
                    requires_confirmation,
                    retry: default_retry(&provider, tool),
                };
                catalog.tools.insert(name, Arc::new(entry));
            }
            catalog.providers.insert(provider.id.clone(), provider);
        }
        catalog.ordered = catalog.tools.values().cloned().collect();
        catalog.search = search::SearchIndex::build(catalog.ordered.iter().map(|t| search::SearchDoc::of(t)));
        Ok(catalog)
    }

    pub fn tool(&self, name: &str) -> Option<&Arc<ToolEntry>> {
        self.tools.get(name)
    }

    pub fn provider(&self, id: &str) -> Option<&Arc<Provider>> {
        self.providers.get(id)
    }

    pub fn providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    pub fn tools(&self) -> impl Iterator<Item = &Arc<ToolEntry>> {
        self.tools.values()
    }

    /// The tools whose names sort after `name`, in name order (a page that starts after
    /// the last tool of the one before; `name` need not be a tool any more).
    pub fn tools_after(&self, name: &str) -> impl Iterator<Item = &Arc<ToolEntry>> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.tools.range::<str, _>((Excluded(name), Unbounded)).map(|(_, t)| t)
    }

    /// The names closest to `name`, best first, for a `tool_not_found` answer.
    pub fn closest_names(&self, name: &str, limit: usize) -> Vec<String> {
        let mut scored =
            self.tools.keys().map(|candidate| (edit_distance(name, candidate), candidate)).collect::<Vec<_>>();
        scored.sort();
        scored.into_iter().take(limit).map(|(_, n)| n.clone()).collect()
    }
}

/// The default catalog folder: `CLAWLINK_CATALOG_DIR`, else `./catalog`, else the one in
/// the source tree this binary was built from.
pub fn default_dir(configured: Option<&str>) -> PathBuf {
    if let Some(dir) = configured {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("catalog");
    if local.is_dir() {
        return local;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../catalog"))
}

fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {col}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

fn is_slug(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_provider(p: &Provider) -> Result<(), String> {
    if !is_slug(&p.id) || p.id.contains("__") {
        return Err(format!("id {:?} must be lower-case letters, digits and '_'", p.id));
    }
    if !(p.base_url.starts_with("https://") || p.base_url.starts_with("http://")) {
        return Err(format!("base_url {:?} must be an http(s) URL", p.base_url));
    }
    if let Auth::ApiKey { header: None, query: None, .. } = p.auth {
        return Err("auth: an api_key provider needs `header` or `query`".into());
    }
    for w in p.rate_limits.per_connection.iter().chain(&p.rate_limits.per_app) {
        if w.requests == 0 || w.per_seconds == 0 {
            return Err("rate_limits: requests and per_seconds must be positive".into());
        }
    }
    Ok(())
}

/// The retry class a tool gets when it declares none.
fn default_retry(provider: &Provider, tool: &Tool) -> RetryClass {
    if let Some(declared) = tool.retry {
        return declared;
    }
    let idempotent_method = matches!(tool.method.as_str(), "GET" | "PUT" | "DELETE");
    if tool.mode == Mode::Read || provider.idempotency_header.is_some() || idempotent_method {
        RetryClass::Safe
    } else {
        RetryClass::Never
    }
}

/// A `verify` block goes with `retry = "verify"`, names a read tool of the same provider
/// and uses only the write's own arguments.
fn check_verify(provider: &Provider, tool: &Tool) -> Result<(), String> {
    let verify = match (tool.retry, &tool.verify) {
        (Some(RetryClass::Verify), Some(v)) => v,
        (Some(RetryClass::Verify), None) => return Err("retry = \"verify\" needs a [tools.verify] block".into()),
        (_, Some(_)) => return Err("a [tools.verify] block needs retry = \"verify\"".into()),
        (_, None) => return Ok(()),
    };
    let Some(read) = provider.tools.iter().find(|t| t.action == verify.action) else {
        return Err(format!("verify.action {:?} is not a tool of this provider", verify.action));
    };
    if read.mode != Mode::Read {
        return Err(format!("verify.action {:?} must be a read tool", verify.action));
    }
    let declared = tool.input_schema.get("properties").and_then(|p| p.as_object());
    let mut templates: Vec<&serde_json::Value> = verify.arguments.values().collect();
    templates.extend(verify.matches.values());
    for template in templates {
        let text = template.to_string();
        for name in placeholders(&text) {
            if !declared.is_some_and(|p| p.contains_key(name)) {
                return Err(format!("verify placeholder {{{name}}} is not a property of input_schema"));
            }
        }
    }
    if verify.matches.is_empty() {
        return Err("verify.matches must name at least one field".into());
    }
    Ok(())
}

/// The `{name}` placeholders of a path or preview template, in order.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    out
}

/// Checks one tool as loading does (names, method, path parameters, schema, examples);
/// the reason when it would stop the catalog from loading.
pub fn validate_tool(t: &Tool) -> Result<(), String> {
    check_tool(t).map(|_| ())
}

fn check_tool(t: &Tool) -> Result<jsonschema::Validator, String> {
    if !is_slug(&t.action) {
        return Err("action must be lower-case letters, digits and '_'".into());
    }
    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&t.method.as_str()) {
        return Err(format!("method {:?} is not one of GET POST PUT PATCH DELETE", t.method));
    }
    if !t.path.starts_with('/') {
        return Err(format!("path {:?} must start with '/'", t.path));
    }
    if t.input_schema.get("type").and_then(|v| v.as_str()) != Some("object") {
        return Err("input_schema must be a JSON Schema with type = \"object\"".into());
    }
    let mut validator =
        jsonschema::validator_for(&t.input_schema).map_err(|e| format!("input_schema is invalid: {e}"))?;
    if let Some(rules) = &t.input_rules {
        jsonschema::validator_for(rules).map_err(|e| format!("input_rules is invalid: {e}"))?;
        let both = serde_json::json!({ "allOf": [t.input_schema, rules] });
        validator = jsonschema::validator_for(&both).map_err(|e| format!("input_rules is invalid: {e}"))?;
    }
    let properties = t.input_schema.get("properties").and_then(|p| p.as_object());
    let declared = |name: &str| properties.is_some_and(|p| p.contains_key(name));
    let required = t
        .input_schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>())
        .unwrap_or_default();
    for name in placeholders(&t.path) {
        if !declared(name) || !required.contains(&name) {
            return Err(format!("path parameter {{{name}}} must be a required property of input_schema"));
        }
    }
    for name in placeholders(&t.preview) {
        if !declared(name) {
            return Err(format!("preview placeholder {{{name}}} is not a property of input_schema"));
        }
    }
    for name in t.args.keys() {
        if !declared(name) {
            return Err(format!("args.{name} is not a property of input_schema"));
        }
    }
    for (i, ex) in t.guidance.examples.iter().enumerate() {
        if !validator.is_valid(&ex.arguments) {
            return Err(format!("guidance.examples[{i}] does not match input_schema"));
        }
    }
    Ok(validator)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "demo"
name = "Demo"
base_url = "https://demo.example"
auth = { type = "api_key", header = "Authorization", format = "Bearer {key}" }

[[tools]]
action = "get_item"
title = "Get an item"
description = "Reads one item."
method = "GET"
path = "/items/{item_id}"
mode = "read"
risk = "safe"
preview = "Read item {item_id}"
input_schema = { type = "object", required = ["item_id"], properties = { item_id = { type = "string" } } }
guidance = { examples = [{ description = "item 1", arguments = { item_id = "1" } }] }
"#;

    fn load(text: &str) -> Result<Catalog, CatalogError> {
        Catalog::from_sources(vec![(PathBuf::from("demo.toml"), text.to_string())], &BTreeMap::new())
    }

    #[test]
    fn loads_a_good_file() {
        let c = load(GOOD).unwrap();
        let t = c.tool("demo_get_item").unwrap();
        assert!(!t.requires_confirmation);
        assert_eq!(c.closest_names("demo_get_itme", 1), vec!["demo_get_item".to_string()]);
    }

    #[test]
    fn a_syntax_error_names_file_and_line() {
        let broken = GOOD.replace("mode = \"read\"", "mode = read");
        let err = load(&broken).unwrap_err().to_string();
        assert!(err.contains("demo.toml"), "{err}");
        assert!(err.contains("line 13, column 8"), "{err}");
    }

    #[test]
    fn an_undeclared_path_parameter_is_refused() {
        let broken = GOOD.replace("/items/{item_id}", "/items/{id}");
        let err = load(&broken).unwrap_err().to_string();
        assert!(err.contains("tools[0]") && err.contains("{id}"), "{err}");
    }

    #[test]
    fn an_unknown_mode_is_refused_with_its_place() {
        let broken = GOOD.replace("mode = \"read\"", "mode = \"reed\"");
        let err = load(&broken).unwrap_err().to_string();
        assert!(err.contains("demo.toml") && err.contains("reed"), "{err}");
    }

    #[test]
    fn base_url_override_applies() {
        let mut urls = BTreeMap::new();
        urls.insert("demo".to_string(), "http://127.0.0.1:1".to_string());
        let c = Catalog::from_sources(vec![(PathBuf::from("d.toml"), GOOD.into())], &urls).unwrap();
        assert_eq!(c.provider("demo").unwrap().base_url, "http://127.0.0.1:1");
    }
}
