//! Property tests of argument validation and request rendering over the whole catalog:
//! for every tool, arbitrary argument values validate and render without a panic, the
//! rendered request never leaves the provider's scheme, host and port, each path
//! argument stays one encoded segment, and header values stay one header line.

use crate::catalog;
use clawlink_common::catalog::{render_preview, render_request, validate_arguments};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Strings an attacker would try in a path, query or header argument.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(".".to_string()),
        Just("..".to_string()),
        Just("...".to_string()),
        Just("../../admin".to_string()),
        Just("%2e%2e".to_string()),
        Just(".%2e".to_string()),
        Just("a/b?x=1#frag".to_string()),
        Just("@evil.example".to_string()),
        Just("//evil.example/x".to_string()),
        Just("http://169.254.169.254/".to_string()),
        Just("\\\\evil.example\\x".to_string()),
        Just("x\r\nX-Injected: 1".to_string()),
        Just("\u{0}\u{7f}\t".to_string()),
        Just("\u{202e}\u{feff}é漢🦀".to_string()),
        Just(String::new()),
        "[./%?#@:\\\\a-z \r\n]{0,12}",
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        hostile_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(hostile_text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The argument names a tool's schema declares.
fn property_names(schema: &Value) -> Vec<String> {
    schema.get("properties").and_then(Value::as_object).map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_tool_renders_any_arguments_safely(values in prop::collection::vec(json_value(), 1..12), offset in 0usize..64, extra in hostile_text()) {
        for tool in catalog().tools() {
            let names = property_names(&tool.tool.input_schema);
            let mut args = Map::new();
            for (k, name) in names.iter().enumerate() {
                args.insert(name.clone(), values[(k + offset) % values.len()].clone());
            }
            args.insert(extra.clone(), values[offset % values.len()].clone());
            let args = Value::Object(args);

            let _ = validate_arguments(tool, &args);
            let _ = render_preview(&tool.tool.preview, &args);
            let Ok(request) = render_request(tool, &args) else { continue };

            let base = url::Url::parse(&tool.provider.base_url).unwrap();
            prop_assert_eq!(request.url.scheme(), base.scheme(), "{} → {}", tool.name, request.url);
            prop_assert_eq!(request.url.host_str(), base.host_str(), "{} → {}", tool.name, request.url);
            prop_assert_eq!(request.url.port(), base.port(), "{} → {}", tool.name, request.url);
            prop_assert!(request.url.fragment().is_none(), "{} → {}", tool.name, request.url);

            // The path keeps the template's shape: the base path, then one segment per
            // template segment, each path argument in its own segment, decoded intact.
            let template = format!("{}{}", base.path().trim_end_matches('/'), tool.tool.path);
            let want = segments(&template);
            let got = segments(request.url.path());
            prop_assert_eq!(got.len(), want.len(), "{}: {} → {}", tool.name, template, request.url);
            for (w, g) in want.iter().zip(&got) {
                prop_assert!(*g != "." && *g != "..", "{}: a dot segment in {}", tool.name, request.url);
                match w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                    Some(name) => {
                        if let Some(Value::String(s)) = args.get(name) {
                            let decoded = percent_decode_str(g).decode_utf8_lossy();
                            prop_assert_eq!(decoded.as_ref(), s.as_str(), "{}: {}", tool.name, request.url);
                        }
                    }
                    None if !w.contains('{') => prop_assert_eq!(*g, *w, "{}: {}", tool.name, request.url),
                    None => {}
                }
            }
            for (name, value) in &request.headers {
                prop_assert!(
                    http::HeaderValue::from_str(value).is_ok(),
                    "{}: header {} cannot be sent: {:?}", tool.name, name, value
                );
            }
        }
    }
}
