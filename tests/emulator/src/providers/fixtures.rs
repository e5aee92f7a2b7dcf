//! The canned answers of the catalog providers: one `fixtures/<provider>.toml` each,
//! holding the provider's error shapes, its identity answer and one answer per tool.
//!
//! ```toml
//! [auth]                      # optional
//! token_query = ["token"]     # query parameters that must also carry an accepted token
//!
//! [errors]                    # "{message}" in any string is replaced by the reason
//! unauthorized = { status = 401, body = { message = "Bad credentials" } }
//! bad_request = { status = 422, body = { message = "{message}" } }
//!
//! [identity]
//! body = { login = "octocat", id = 1 }
//!
//! [tools.create_issue]        # keyed by the tool's action
//! status = 201                # default 200
//! body = { number = 42, state = "open" }   # omitted: an empty body (a 204)
//! headers = { location = "…" }             # optional
//! ```
//!
//! A body is JSON written as TOML (TOML 1.1, so inline tables may span lines). TOML has
//! no null, so fields a provider sends as `null` are left out. A string body is sent as
//! `text/plain`, as some providers answer errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

/// One provider's fixture file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProviderFixtures {
    #[serde(default)]
    pub auth: AuthExtras,
    pub errors: Errors,
    #[serde(default)]
    pub identity: Option<Canned>,
    #[serde(default)]
    pub tools: BTreeMap<String, Canned>,
}

/// What the provider's auth needs beyond what the catalog declares.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthExtras {
    /// Query parameters that must also carry an accepted token (Trello's `token`, next to
    /// the `key` the catalog declares).
    #[serde(default)]
    pub token_query: Vec<String>,
}

/// How the provider refuses a request.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Errors {
    /// A missing or unknown credential.
    pub unauthorized: Canned,
    /// A request whose body, query or headers do not fit the endpoint.
    pub bad_request: Canned,
}

/// A canned answer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Canned {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn ok() -> u16 {
    200
}

impl Canned {
    fn validate(&self) -> Result<(), String> {
        let status =
            StatusCode::from_u16(self.status).map_err(|_| format!("status {} is not an HTTP status", self.status))?;
        if (status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED) && self.body.is_some() {
            return Err(format!("a {status} answer cannot have a body"));
        }
        for (name, value) in &self.headers {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
            HeaderValue::from_str(value).map_err(|_| format!("header {name}: {value:?} is not a header value"))?;
        }
        Ok(())
    }

    /// The answer as a response, with `{message}` in its strings replaced by `message`.
    pub fn respond(&self, message: Option<&str>) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = match &self.body {
            None => status.into_response(),
            Some(Value::String(text)) => {
                let text = match message {
                    Some(m) => text.replace("{message}", m),
                    None => text.clone(),
                };
                (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
            }
            Some(body) => match message {
                Some(m) => (status, Json(fill(body, m))).into_response(),
                None => (status, Json(body)).into_response(),
            },
        };
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// `body` with `{message}` replaced in every string.
fn fill(body: &Value, message: &str) -> Value {
    match body {
        Value::String(s) => Value::String(s.replace("{message}", message)),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, message)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), fill(v, message))).collect()),
        other => other.clone(),
    }
}

/// This crate's `fixtures/` folder.
pub(crate) fn default_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
}

/// Every `<provider>.toml` in `dir`, by provider id. A file that does not parse or holds
/// an impossible answer is an error naming the file and the place.
pub(crate) fn load_dir(dir: &Path) -> anyhow::Result<BTreeMap<String, ProviderFixtures>> {
    let mut out = BTreeMap::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading the emulator fixtures in {}", dir.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let Some(id) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let fixtures = parse(&text).with_context(|| format!("fixture {}", path.display()))?;
        out.insert(id, fixtures);
    }
    Ok(out)
}

fn parse(text: &str) -> anyhow::Result<ProviderFixtures> {
    let fixtures: ProviderFixtures = toml::from_str(text).map_err(|e| {
        let place = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {col}: ")
        });
        anyhow::anyhow!("{}{}", place.unwrap_or_default(), e.message())
    })?;
    let answers = [
        ("errors.unauthorized".to_owned(), &fixtures.errors.unauthorized),
        ("errors.bad_request".to_owned(), &fixtures.errors.bad_request),
    ]
    .into_iter()
    .chain(fixtures.identity.iter().map(|c| ("identity".to_owned(), c)))
    .chain(fixtures.tools.iter().map(|(action, c)| (format!("tools.{action}"), c)));
    for (place, canned) in answers {
        if let Err(reason) = canned.validate() {
            bail!("{place}: {reason}");
        }
    }
    Ok(fixtures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_span_lines_and_messages_are_filled() {
        let fixtures = parse(
            r#"
[errors]
unauthorized = { status = 401, body = "invalid token" }
bad_request = { status = 400, body = { error = { message = "{message}", code = 400 } } }

[tools.get]
body = {
  id = "1",
  items = [{ name = "a" }, { name = "b" }],
}

[tools.delete]
status = 204
"#,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(fixtures.tools["get"].body.as_ref().unwrap()["items"][1]["name"], "b");
        let filled = fill(fixtures.errors.bad_request.body.as_ref().unwrap(), "title is required");
        assert_eq!(filled["error"]["message"], "title is required");
        assert_eq!(filled["error"]["code"], 400);
    }

    #[test]
    fn a_204_with_a_body_is_refused_with_its_place() {
        let err = parse(
            r#"
[errors]
unauthorized = { status = 401 }
bad_request = { status = 400 }
[tools.delete]
status = 204
body = { deleted = true }
"#,
        )
        .err()
        .map(|e| format!("{e:#}"));
        assert!(err.is_some_and(|e| e.contains("tools.delete")));
    }
}
