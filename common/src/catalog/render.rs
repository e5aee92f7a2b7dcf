//! Turning a validated tool call into an HTTP request for the provider.
//!
//! Arguments never choose the host: path values are percent-encoded as one segment
//! each (a `/` or `..` in a value stays inside that segment), and the final URL must keep
//! the base URL's scheme, host and port. Authentication is added later by the worker, so a
//! rendered request holds no secret and can be logged or previewed.

use super::{ArgLocation, BodyEncoding, ToolEntry, Transform};
use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

/// Everything except the unreserved characters of RFC 3986 §2.3.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

#[derive(Debug, Clone, PartialEq)]
pub struct RenderedRequest {
    pub method: http::Method,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<RequestBody>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    Json(Value),
    Form(Vec<(String, String)>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("argument {0} is required in the path")]
    MissingPathArgument(String),
    #[error("argument {0} cannot be empty: it is part of the path")]
    EmptyPathArgument(String),
    #[error("the provider base URL is not valid: {0}")]
    BaseUrl(String),
    #[error("the request would leave the provider's host")]
    HostChanged,
    #[error("argument {0} cannot be \".\" or \"..\": it is one segment of the path")]
    DotSegment(String),
    #[error("argument {0} must be text")]
    NotText(String),
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(scalar_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Renders the request for `tool` with `arguments` (already validated).
pub fn render_request(tool: &ToolEntry, arguments: &Value) -> Result<RenderedRequest, RenderError> {
    let empty = Map::new();
    let args = arguments.as_object().unwrap_or(&empty);
    let spec = &tool.tool;
    let method: http::Method = spec.method.parse().expect("method checked at load");
    let base = url::Url::parse(&tool.provider.base_url).map_err(|e| RenderError::BaseUrl(e.to_string()))?;

    // Path: replace each {name} with its encoded value.
    let mut path = String::with_capacity(spec.path.len() + 16);
    let mut in_path = Vec::new();
    let mut rest = spec.path.as_str();
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map(|e| start + e).expect("placeholders checked at load");
        path.push_str(&rest[..start]);
        let name = &rest[start + 1..end];
        let value = args.get(name).ok_or_else(|| RenderError::MissingPathArgument(name.into()))?;
        let text = scalar_text(value);
        if text.is_empty() {
            return Err(RenderError::EmptyPathArgument(name.into()));
        }
        // `.` and `..` are unreserved, so encoding leaves them as they are, and the URL
        // parser would then resolve them and climb out of the template's path.
        if text == "." || text == ".." {
            return Err(RenderError::DotSegment(name.into()));
        }
        path.extend(utf8_percent_encode(&text, SEGMENT));
        in_path.push(name);
        rest = &rest[end + 1..];
    }
    path.push_str(rest);

    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);

    let default_location =
        if matches!(method, http::Method::GET | http::Method::DELETE) { ArgLocation::Query } else { ArgLocation::Body };
    let mut body = Map::new();
    let mut headers: Vec<(String, String)> =
        tool.provider.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut query = Vec::new();
    for (name, value) in args {
        if in_path.contains(&name.as_str()) {
            continue;
        }
        match spec.args.get(name).unwrap_or(&default_location) {
            ArgLocation::Path => {}
            // An object goes in OpenAPI's `deepObject` style, `created[gte]=1`: the
            // only way a query carries named parts, and how Stripe reads ranges.
            ArgLocation::Query if value.is_object() => flatten_form(name, value, &mut query),
            ArgLocation::Query => {
                if !value.is_null() {
                    query.push((name.clone(), scalar_text(value)));
                }
            }
            ArgLocation::Body => {
                body.insert(name.clone(), value.clone());
            }
            ArgLocation::Header(header) => headers.push((header.clone(), header_value(value))),
        }
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    if url.scheme() != base.scheme() || url.host_str() != base.host_str() || url.port() != base.port() {
        return Err(RenderError::HostChanged);
    }
    match &spec.transform {
        Some(Transform::Graphql { query }) => {
            let variables = Value::Object(std::mem::take(&mut body));
            body.insert("query".into(), Value::String(query.clone()));
            body.insert("variables".into(), variables);
        }
        Some(Transform::Rfc5322Message { target }) => {
            let raw = rfc5322_message(&mut body)?;
            insert_at(&mut body, target, Value::String(raw));
        }
        None => {}
    }
    let body = if body.is_empty() && default_location == ArgLocation::Query {
        None
    } else {
        Some(match tool.provider.body_encoding {
            BodyEncoding::Json => RequestBody::Json(Value::Object(body)),
            BodyEncoding::Form => {
                let mut pairs = Vec::new();
                for (k, v) in &body {
                    flatten_form(k, v, &mut pairs);
                }
                RequestBody::Form(pairs)
            }
        })
    };
    Ok(RenderedRequest { method, url, headers, body })
}

/// Bracket notation for nested form values: `a[b]=1`, `a[0]=x`.
fn flatten_form(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten_form(&format!("{prefix}[{k}]"), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_form(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Value::Null => {}
        other => out.push((prefix.to_string(), scalar_text(other))),
    }
}

/// Puts `value` at the JSON pointer `target` inside `body`, creating objects on the way.
fn insert_at(body: &mut Map<String, Value>, target: &str, value: Value) {
    let parts: Vec<&str> = target.trim_start_matches('/').split('/').collect();
    let mut current = body;
    for part in &parts[..parts.len() - 1] {
        let next = current.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        current = next.as_object_mut().expect("made an object");
    }
    current.insert(parts[parts.len() - 1].to_string(), value);
}

/// One header line's value: control characters (CR and LF among them) become spaces,
/// so an argument cannot add headers or make a value HTTP refuses to send.
fn header_value(v: &Value) -> String {
    let text = match v {
        Value::Array(items) => items.iter().map(scalar_text).collect::<Vec<_>>().join(", "),
        other => scalar_text(other),
    };
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// An RFC 5322 message from the `to`, `cc`, `bcc`, `subject` and `body` arguments
/// (removed from the body), base64url-encoded as Gmail's `raw` expects. The subject is
/// RFC 2047-encoded when it is not plain ASCII; the body is UTF-8 text.
fn rfc5322_message(body: &mut Map<String, Value>) -> Result<String, RenderError> {
    let mut message = String::new();
    for (arg, header) in [("to", "To"), ("cc", "Cc"), ("bcc", "Bcc")] {
        if let Some(v) = body.remove(arg) {
            message.push_str(&format!("{header}: {}\r\n", header_value(&v)));
        }
    }
    if let Some(v) = body.remove("subject") {
        let subject = header_value(&v);
        if subject.is_ascii() {
            message.push_str(&format!("Subject: {subject}\r\n"));
        } else {
            let encoded = base64::engine::general_purpose::STANDARD.encode(subject.as_bytes());
            message.push_str(&format!("Subject: =?UTF-8?B?{encoded}?=\r\n"));
        }
    }
    let text = match body.remove("body") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(RenderError::NotText("body".into())),
        None => String::new(),
    };
    message.push_str(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
    );
    message.push_str(&text.replace("\r\n", "\n").replace('\n', "\r\n"));
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(message.as_bytes()))
}

/// Fills a preview template (`Create note "{text}"`) from the arguments.
pub fn render_preview(template: &str, arguments: &Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 1..start + len];
        match arguments.get(name) {
            Some(v) => {
                let mut text = scalar_text(v);
                if text.chars().count() > 80 {
                    text = text.chars().take(77).collect::<String>() + "...";
                }
                out.push_str(&text);
            }
            None => out.push('—'),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn catalog() -> Catalog {
        let text = r#"
id = "demo"
name = "Demo"
base_url = "https://demo.example/v1"
auth = { type = "basic" }

[[tools]]
action = "get_item"
title = "t"
description = "d"
method = "GET"
path = "/items/{item_id}"
mode = "read"
risk = "safe"
preview = "Read {item_id}"
input_schema = { type = "object", required = ["item_id"], properties = { item_id = { type = "string" }, limit = { type = "integer" } } }

[[tools]]
action = "create"
title = "t"
description = "d"
method = "POST"
path = "/items"
mode = "write"
risk = "confirm"
preview = "Create {name}"
input_schema = { type = "object", properties = { name = { type = "string" }, trace = { type = "string" } } }
args = { trace = { header = "X-Trace" } }
"#;
        Catalog::from_sources(vec![(PathBuf::from("demo.toml"), text.into())], &BTreeMap::new()).unwrap()
    }

    #[test]
    fn path_values_cannot_escape_their_segment() {
        let c = catalog();
        let t = c.tool("demo_get_item").unwrap();
        for evil in ["../../admin", "a/b?x=1#frag", "@evil.example", "%2e%2e", ".%2e", "...", "//evil.example/x"] {
            let r = render_request(t, &json!({ "item_id": evil })).unwrap();
            assert_eq!(r.url.host_str(), Some("demo.example"), "{evil}");
            assert!(r.url.path().starts_with("/v1/items/"), "{evil} → {}", r.url);
            assert_eq!(r.url.path().matches('/').count(), 3, "{evil} → {}", r.url);
            assert!(r.url.query().is_none());
        }
    }

    #[test]
    fn dot_segments_are_refused_not_resolved() {
        let c = catalog();
        let t = c.tool("demo_get_item").unwrap();
        for dots in [json!("."), json!(".."), json!([".."])] {
            assert_eq!(
                render_request(t, &json!({ "item_id": dots })),
                Err(RenderError::DotSegment("item_id".into())),
                "{dots}"
            );
        }
    }

    #[test]
    fn query_body_and_headers_go_where_declared() {
        let c = catalog();
        let r = render_request(c.tool("demo_get_item").unwrap(), &json!({"item_id": "7", "limit": 5})).unwrap();
        assert_eq!(r.url.as_str(), "https://demo.example/v1/items/7?limit=5");
        let r =
            render_request(c.tool("demo_get_item").unwrap(), &json!({"item_id": "7", "created": {"gte": 1, "lt": 2}}))
                .unwrap();
        assert_eq!(r.url.query(), Some("created%5Bgte%5D=1&created%5Blt%5D=2"));
        assert_eq!(r.body, None);
        let r = render_request(c.tool("demo_create").unwrap(), &json!({"name": "x", "trace": "t1"})).unwrap();
        assert_eq!(r.method, http::Method::POST);
        assert_eq!(r.body, Some(RequestBody::Json(json!({"name": "x"}))));
        assert_eq!(r.headers, vec![("X-Trace".to_string(), "t1".to_string())]);
        let r = render_request(c.tool("demo_create").unwrap(), &json!({"trace": "a\r\nX-Evil: 1\u{0}"})).unwrap();
        assert_eq!(r.headers, vec![("X-Trace".to_string(), "a  X-Evil: 1 ".to_string())]);
    }

    fn single(text: &str) -> Catalog {
        Catalog::from_sources(vec![(PathBuf::from("x.toml"), text.into())], &BTreeMap::new()).unwrap()
    }

    #[test]
    fn gmail_messages_are_built_and_cannot_inject_headers() {
        let c = single(
            r#"
id = "mail"
name = "Mail"
base_url = "https://mail.example"
auth = { type = "basic" }
[[tools]]
action = "send"
title = "t"
description = "d"
method = "POST"
path = "/send"
mode = "write"
risk = "confirm"
preview = "p"
transform = { type = "rfc5322_message", target = "/message/raw" }
input_schema = { type = "object", properties = { to = { type = "array" }, subject = { type = "string" }, body = { type = "string" }, threadId = { type = "string" } } }
"#,
        );
        let args = json!({"to": ["a@x.test", "b@x.test"], "subject": "Hi\r\nBcc: evil@x.test", "body": "line1\nline2", "threadId": "t1"});
        let r = render_request(c.tool("mail_send").unwrap(), &args).unwrap();
        let Some(RequestBody::Json(body)) = r.body else { panic!("json body") };
        assert_eq!(body["threadId"], "t1");
        let raw = body["message"]["raw"].as_str().unwrap();
        let text = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).unwrap()).unwrap();
        assert!(text.starts_with("To: a@x.test, b@x.test\r\nSubject: Hi  Bcc: evil@x.test\r\n"), "{text}");
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(text.ends_with("\r\n\r\nline1\r\nline2"), "{text}");
    }

    #[test]
    fn graphql_and_form_bodies() {
        let c = single(
            r#"
id = "gq"
name = "G"
base_url = "https://gq.example"
body_encoding = "form"
auth = { type = "basic" }
[[tools]]
action = "q"
title = "t"
description = "d"
method = "POST"
path = "/graphql"
mode = "read"
risk = "safe"
preview = "p"
transform = { type = "graphql", query = "query($id: String!) { issue(id: $id) { id } }" }
input_schema = { type = "object", properties = { id = { type = "string" } } }
[[tools]]
action = "f"
title = "t"
description = "d"
method = "POST"
path = "/customers"
mode = "write"
risk = "confirm"
preview = "p"
input_schema = { type = "object", properties = { email = { type = "string" }, metadata = { type = "object" }, expand = { type = "array" } } }
"#,
        );
        let r = render_request(
            c.tool("gq_f").unwrap(),
            &json!({"email": "a@x.test", "metadata": {"order": 42}, "expand": ["sources"]}),
        )
        .unwrap();
        assert_eq!(
            r.body,
            Some(RequestBody::Form(vec![
                ("email".into(), "a@x.test".into()),
                ("expand[0]".into(), "sources".into()),
                ("metadata[order]".into(), "42".into()),
            ]))
        );
        let r = render_request(c.tool("gq_q").unwrap(), &json!({"id": "ISS-1"})).unwrap();
        let Some(RequestBody::Form(pairs)) = r.body else { panic!("form") };
        assert!(pairs.iter().any(|(k, v)| k == "variables[id]" && v == "ISS-1"));
    }

    #[test]
    fn previews_fill_placeholders() {
        assert_eq!(render_preview("Create {name} in {where}", &json!({"name": "x"})), "Create x in —");
    }
}
