//! What a request to one endpoint must carry, derived from the catalog tool: the required
//! arguments where the catalog puts them (JSON or form body, GraphQL variables, an RFC 5322
//! message, the query string, a header), with their JSON types where the body is JSON.
//!
//! Where an argument goes follows the catalog's rules (`catalog::render`): a path
//! placeholder goes in the path, an `args` entry says where, otherwise GET and DELETE put
//! it in the query and other methods in the body. The emulator re-derives this from the
//! tool's declaration rather than calling the renderer, so a renderer that drifts from the
//! declaration is caught.

use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, Method, header};
use base64::Engine;
use clawlink_common::catalog::{ArgLocation, BodyEncoding, Tool, Transform};
use serde_json::{Map, Value};

/// The parts of an incoming request the checks read, parsed once.
pub(crate) struct Incoming<'r> {
    query: Vec<(String, String)>,
    headers: &'r HeaderMap,
    body: Body,
}

enum Body {
    Empty,
    Parsed(Value),
    /// Why the body could not be read (wrong content type, not JSON…).
    Invalid(String),
}

impl<'r> Incoming<'r> {
    pub fn parse(parts: &'r Parts, bytes: &[u8], encoding: BodyEncoding) -> Incoming<'r> {
        let query = url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let content_type =
            parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let body = if bytes.is_empty() {
            Body::Empty
        } else {
            match encoding {
                BodyEncoding::Json if !content_type.starts_with("application/json") => {
                    Body::Invalid(format!("the body must be sent as application/json, not {content_type:?}"))
                }
                BodyEncoding::Json => match serde_json::from_slice(bytes) {
                    Ok(value) => Body::Parsed(value),
                    Err(e) => Body::Invalid(format!("the body is not valid JSON: {e}")),
                },
                BodyEncoding::Form if !content_type.starts_with("application/x-www-form-urlencoded") => {
                    // Stripe's own words for a JSON body.
                    Body::Invalid(
                        "Invalid request (check that your POST content type is \
                         application/x-www-form-urlencoded)."
                            .into(),
                    )
                }
                BodyEncoding::Form => Body::Parsed(form_fields(bytes)),
            }
        };
        Incoming { query, headers: &parts.headers, body }
    }

    fn in_query(&self, name: &str) -> bool {
        self.query.iter().any(|(k, v)| k == name && !v.is_empty())
    }
}

/// Form pairs as an object of their top-level names: `metadata[crm_id]=51` gives
/// `metadata: {}` (nested values are not rebuilt; only presence is checked).
fn form_fields(bytes: &[u8]) -> Value {
    let mut fields = Map::new();
    for (key, value) in url::form_urlencoded::parse(bytes) {
        match key.split_once('[') {
            Some((name, _)) => {
                fields.entry(name.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            }
            None => {
                fields.insert(key.into_owned(), Value::String(value.into_owned()));
            }
        }
    }
    Value::Object(fields)
}

/// The start of the reason given when a GraphQL query is not the endpoint's: it says the
/// request is for another endpoint, not that it is malformed.
pub(crate) const OTHER_QUERY: &str = "the GraphQL query is not one";

/// One required body field and the JSON types its schema allows (empty: any).
#[derive(Clone, Debug)]
struct Field {
    name: String,
    types: Vec<String>,
}

/// What a request to one endpoint must carry.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shape {
    /// The body must be a JSON (or form) object: the endpoint takes arguments there.
    wants_body: bool,
    /// Types are checked only in JSON bodies (a form carries text).
    json: bool,
    body: Vec<Field>,
    query: Vec<String>,
    headers: Vec<HeaderName>,
    /// The GraphQL document the body's `query` must be; fields are then `variables`.
    graphql: Option<String>,
    /// An RFC 5322 message (base64url) expected at this JSON pointer, with these headers.
    message: Option<(String, Vec<&'static str>)>,
}

/// Arguments an RFC 5322 transform turns into the message, and the header each becomes.
const MESSAGE_ARGS: &[(&str, Option<&str>)] =
    &[("to", Some("To")), ("cc", Some("Cc")), ("bcc", Some("Bcc")), ("subject", Some("Subject")), ("body", None)];

impl Shape {
    /// The shape of a catalog tool's request.
    pub fn of_tool(tool: &Tool, encoding: BodyEncoding) -> anyhow::Result<Shape> {
        let method: Method = tool.method.parse()?;
        let default =
            if method == Method::GET || method == Method::DELETE { ArgLocation::Query } else { ArgLocation::Body };
        let placeholders = placeholders(&tool.path);
        let properties = tool.input_schema.get("properties").and_then(Value::as_object);
        let required: Vec<&str> = tool
            .input_schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let message = match &tool.transform {
            Some(Transform::Rfc5322Message { target }) => Some(target.clone()),
            _ => None,
        };
        let location = |name: &str| {
            if placeholders.contains(&name) {
                ArgLocation::Path
            } else {
                tool.args.get(name).cloned().unwrap_or(default.clone())
            }
        };

        let mut shape = Shape {
            json: encoding == BodyEncoding::Json,
            graphql: match &tool.transform {
                Some(Transform::Graphql { query }) => Some(query.clone()),
                _ => None,
            },
            ..Shape::default()
        };
        shape.wants_body =
            tool.transform.is_some() || properties.is_some_and(|p| p.keys().any(|k| location(k) == ArgLocation::Body));
        let mut message_headers = Vec::new();
        for name in required {
            if message.is_some()
                && let Some((_, header)) = MESSAGE_ARGS.iter().find(|(arg, _)| *arg == name)
            {
                message_headers.extend(*header);
                continue;
            }
            match location(name) {
                ArgLocation::Path => {}
                ArgLocation::Query => shape.query.push(name.to_owned()),
                ArgLocation::Header(h) => shape.headers.push(h.parse()?),
                ArgLocation::Body => {
                    let types = properties
                        .and_then(|p| p.get(name))
                        .and_then(|schema| schema.get("type"))
                        .map(|t| match t {
                            Value::String(s) => vec![s.clone()],
                            Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                            _ => Vec::new(),
                        })
                        .unwrap_or_default();
                    shape.body.push(Field { name: name.to_owned(), types });
                }
            }
        }
        shape.message = message.map(|target| (target, message_headers));
        Ok(shape)
    }

    /// The shape of an identity request: nothing, or the declared body's GraphQL query.
    pub fn of_identity(body: Option<&Value>) -> Shape {
        let graphql = body.and_then(|b| b.get("query")).and_then(Value::as_str).map(str::to_owned);
        Shape { wants_body: body.is_some(), json: true, graphql, ..Shape::default() }
    }

    /// How many arguments this shape demands: a more demanding endpoint is tried first
    /// when several share a method and path.
    pub fn demands(&self) -> usize {
        self.body.len() + self.query.len() + self.headers.len() + self.message.as_ref().map_or(0, |(_, h)| h.len())
    }

    /// `Ok` when the request fits, else the reason, in words for the error body.
    pub fn check(&self, incoming: &Incoming<'_>) -> Result<(), String> {
        if self.wants_body || !matches!(incoming.body, Body::Empty) {
            let body = match &incoming.body {
                Body::Invalid(reason) => return Err(reason.clone()),
                Body::Empty if !self.wants_body => None,
                // An empty form is a form without fields (Stripe reads it that way).
                Body::Empty if !self.json => None,
                Body::Empty => return Err("a JSON object body is required".into()),
                Body::Parsed(Value::Object(map)) => Some(map),
                Body::Parsed(_) => return Err("the body must be a JSON object".into()),
            };
            let empty = Map::new();
            let mut fields = body.unwrap_or(&empty);
            if let Some(expected) = &self.graphql {
                let query = fields.get("query").and_then(Value::as_str).unwrap_or("");
                if !same_document(query, expected) {
                    return Err(format!("{OTHER_QUERY} this endpoint answers"));
                }
                fields = match fields.get("variables") {
                    None => &empty,
                    Some(Value::Object(variables)) => variables,
                    Some(_) => return Err("variables must be a JSON object".into()),
                };
            }
            if let Some((target, headers)) = &self.message {
                check_message(body.unwrap_or(&empty), target, headers)?;
            }
            for field in &self.body {
                let Some(value) = fields.get(&field.name) else {
                    return Err(format!("missing required field: {}", field.name));
                };
                if self.json && !field.types.is_empty() && !field.types.iter().any(|t| type_matches(t, value)) {
                    return Err(format!(
                        "field {} must be {}, not {}",
                        field.name,
                        field.types.join(" or "),
                        type_name(value)
                    ));
                }
            }
        }
        if let Some(name) = self.query.iter().find(|q| !incoming.in_query(q)) {
            return Err(format!("missing required query parameter: {name}"));
        }
        if let Some(name) = self.headers.iter().find(|h| !incoming.headers.contains_key(*h)) {
            return Err(format!("missing required header: {name}"));
        }
        Ok(())
    }
}

/// Equal GraphQL documents up to whitespace.
fn same_document(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

fn check_message(body: &Map<String, Value>, target: &str, headers: &[&str]) -> Result<(), String> {
    let raw = Value::Object(body.clone());
    let Some(raw) = raw.pointer(target).and_then(Value::as_str) else {
        return Err(format!("missing the base64url-encoded RFC 2822 message at {target}"));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .map_err(|_| format!("the message at {target} is not base64url"))?;
    let text = String::from_utf8_lossy(&bytes);
    let Some((head, _)) = text.split_once("\r\n\r\n") else {
        return Err("the message has no header section".into());
    };
    for name in headers {
        let present = head.split("\r\n").any(|line| {
            line.split_once(':').is_some_and(|(n, v)| n.eq_ignore_ascii_case(name) && !v.trim().is_empty())
        });
        if !present {
            return Err(format!("the message has no {name} header"));
        }
    }
    Ok(())
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The `{name}` placeholders of a path template.
pub(crate) fn placeholders(template: &str) -> Vec<&str> {
    template.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}
