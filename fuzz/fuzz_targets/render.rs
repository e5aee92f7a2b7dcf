//! Request rendering from the catalog under libFuzzer: the first byte picks a tool, the
//! rest is its arguments — a JSON object as it is, any other JSON value or non-JSON
//! bytes (as text) given to every argument the tool declares. Validation, the preview
//! and rendering must not panic, and a rendered request must keep the provider's scheme,
//! host and port, one segment per path template segment (never `.` or `..`) and header
//! values HTTP can send.

#![no_main]

use clawlink_common::catalog::{Catalog, ToolEntry, render_preview, render_request, validate_arguments};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

static TOOLS: LazyLock<Vec<Arc<ToolEntry>>> = LazyLock::new(|| {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog");
    let catalog = Catalog::load_dir(&dir, &BTreeMap::new()).expect("the catalog loads");
    catalog.tools().cloned().collect()
});

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let tool = &TOOLS[pick as usize % TOOLS.len()];
    let args = match serde_json::from_slice::<Value>(rest) {
        Ok(Value::Object(map)) => Value::Object(map),
        parsed => {
            let value = parsed.unwrap_or_else(|_| Value::String(String::from_utf8_lossy(rest).into_owned()));
            let names = tool.tool.input_schema.get("properties").and_then(Value::as_object);
            Value::Object(names.into_iter().flatten().map(|(k, _)| (k.clone(), value.clone())).collect::<Map<_, _>>())
        }
    };
    let _ = validate_arguments(tool, &args);
    let _ = render_preview(&tool.tool.preview, &args);
    let Ok(request) = render_request(tool, &args) else { return };
    let base = url::Url::parse(&tool.provider.base_url).unwrap();
    assert_eq!(
        (request.url.scheme(), request.url.host_str(), request.url.port()),
        (base.scheme(), base.host_str(), base.port()),
        "{} left its host: {}",
        tool.name,
        request.url
    );
    let template = format!("{}{}", base.path().trim_end_matches('/'), tool.tool.path);
    let got = segments(request.url.path());
    assert_eq!(got.len(), segments(&template).len(), "{}: {template} → {}", tool.name, request.url);
    assert!(got.iter().all(|s| *s != "." && *s != ".."), "{}: {}", tool.name, request.url);
    for (name, value) in &request.headers {
        assert!(http::HeaderValue::from_str(value).is_ok(), "{}: header {name}: {value:?}", tool.name);
    }
});
