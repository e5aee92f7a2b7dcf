//! What a write may do again when its outcome is unknown (the request was sent and the
//! answer was lost: a timeout, a reset, a 5xx other than 503, or a worker that died during
//! the call), and the read that finds out whether it happened.
//!
//! A tool declares `retry = "safe" | "verify" | "never"`; without it, reads, tools of a
//! provider that honours an idempotency key, and `PUT`/`DELETE` (idempotent by RFC 9110
//! §9.2.2) are safe to send again, every other write is never sent again blindly. A
//! `verify` tool names a read tool of its provider and how to recognise its own result in
//! the read's answer:
//!
//! ```toml
//! retry = "verify"
//! [tools.verify]
//! action = "list_messages"              # a read tool of the same provider
//! arguments = { channel = "{channel}" } # templates over the write's arguments
//! items = ""                            # JSON pointer to the list in the read's result
//! matches = { "/text" = "{text}" }      # item field (pointer) = template
//! created_at = "/createdAt"             # optional: only items created after the call began
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The retry policy of a write whose outcome is unknown.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RetryClass {
    /// Sending it again cannot do it twice (a read, an idempotency key, an idempotent method).
    Safe,
    /// Run the declared verification read first; send again only if it finds nothing.
    Verify,
    /// Never send again blindly: the execution fails with `outcome_unknown`.
    Never,
}

impl RetryClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryClass::Safe => "safe",
            RetryClass::Verify => "verify",
            RetryClass::Never => "never",
        }
    }
}

/// How to find out whether a write whose answer was lost happened.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// The read tool's action (same provider).
    pub action: String,
    /// The read's arguments: a string value may hold `{argument}` placeholders of the
    /// write's arguments; a value that is one placeholder keeps the argument's JSON type.
    #[serde(default)]
    pub arguments: serde_json::Map<String, Value>,
    /// JSON pointer to the list of items in the read's (shaped) result; empty: the result.
    #[serde(default)]
    pub items: String,
    /// An item is the write's when each field (a JSON pointer in the item) equals its
    /// rendered template.
    pub matches: BTreeMap<String, Value>,
    /// JSON pointer to an item's RFC 3339 creation time: only items created after the
    /// call's first attempt began can be its result.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// `template` with `{name}` placeholders replaced from `arguments`. A string that is one
/// placeholder becomes the argument's value as it is; `None` when an argument is missing.
pub fn fill(template: &Value, arguments: &Value) -> Option<Value> {
    match template {
        Value::String(s) => {
            let whole = s.strip_prefix('{').and_then(|r| r.strip_suffix('}'));
            if let Some(name) = whole.filter(|n| !n.contains(['{', '}'])) {
                return arguments.get(name).cloned();
            }
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find('{') {
                let end = start + rest[start..].find('}')?;
                out.push_str(&rest[..start]);
                match arguments.get(&rest[start + 1..end])? {
                    Value::String(v) => out.push_str(v),
                    other => out.push_str(&other.to_string()),
                }
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            Some(Value::String(out))
        }
        Value::Array(items) => items.iter().map(|v| fill(v, arguments)).collect::<Option<Vec<_>>>().map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| fill(v, arguments).map(|v| (k.clone(), v)))
            .collect::<Option<serde_json::Map<_, _>>>()
            .map(Value::Object),
        other => Some(other.clone()),
    }
}

impl Verify {
    /// The read's arguments for a write called with `arguments`.
    pub fn read_arguments(&self, arguments: &Value) -> Option<Value> {
        fill(&Value::Object(self.arguments.clone()), arguments)
    }

    /// The write's result in the read's answer, if it is there: the first item whose
    /// fields match and which was created at or after `since` (when `created_at` is set;
    /// an item without a readable time is not counted as the write's).
    pub fn find(&self, arguments: &Value, result: &Value, since: time::OffsetDateTime) -> Option<Value> {
        let expected: Vec<(&String, Value)> =
            self.matches.iter().map(|(pointer, t)| Some((pointer, fill(t, arguments)?))).collect::<Option<_>>()?;
        let list = if self.items.is_empty() { result } else { result.pointer(&self.items)? };
        let created = |item: &Value| -> bool {
            let Some(pointer) = &self.created_at else { return true };
            item.pointer(pointer)
                .and_then(Value::as_str)
                .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
                // A second of slack: the provider's clock and ours are not the same clock.
                .is_some_and(|t| t >= since - time::Duration::SECOND)
        };
        list.as_array()?
            .iter()
            .find(|item| created(item) && expected.iter().all(|(pointer, v)| item.pointer(pointer) == Some(v)))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verify() -> Verify {
        toml::from_str(
            r#"
            action = "list_messages"
            arguments = { channel = "{channel}", q = "text:{text}" }
            items = "/messages"
            matches = { "/text" = "{text}", "/channel" = "{channel}" }
            created_at = "/createdAt"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn templates_fill_from_the_writes_arguments_keeping_types() {
        let args = json!({"channel": "C1", "text": "hi", "n": 3});
        assert_eq!(verify().read_arguments(&args), Some(json!({"channel": "C1", "q": "text:hi"})));
        assert_eq!(fill(&json!("{n}"), &args), Some(json!(3)));
        assert_eq!(fill(&json!("n={n}"), &args), Some(json!("n=3")));
        assert_eq!(fill(&json!("{missing}"), &args), None);
    }

    #[test]
    fn only_a_matching_item_created_since_the_call_began_is_the_writes() {
        let since = time::macros::datetime!(2026-12-03 12:00:00 UTC);
        let args = json!({"channel": "C1", "text": "hi"});
        let answer = json!({"messages": [
            {"id": 1, "channel": "C1", "text": "hi", "createdAt": "2026-12-03T11:00:00Z"},
            {"id": 2, "channel": "C2", "text": "hi", "createdAt": "2026-12-03T12:00:05Z"},
            {"id": 3, "channel": "C1", "text": "hi", "createdAt": "2026-12-03T12:00:06Z"},
        ]});
        assert_eq!(verify().find(&args, &answer, since).unwrap()["id"], 3, "an hour-old twin is not it");
        assert_eq!(verify().find(&json!({"channel": "C1", "text": "other"}), &answer, since), None);
        assert_eq!(verify().find(&args, &json!({"messages": "not a list"}), since), None);
        assert_eq!(verify().find(&args, &json!({"messages": [{"channel": "C1", "text": "hi"}]}), since), None);
    }
}
