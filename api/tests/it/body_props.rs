//! Property tests of execute and preview bodies: any bytes sent as a JSON body are either
//! read into an `ExecuteBody` or refused with a 4xx in the error envelope, and any
//! arguments, for every catalog tool, pass or fail validation with a 400 that names the
//! problem — never a panic, never a 5xx. (The same path over HTTP, with the api running,
//! is `tests/e2e/tests/it/fuzz_bodies.rs`.)

use axum::extract::FromRequest;
use axum::response::IntoResponse;
use clawlink_api::call::check_arguments;
use clawlink_api::error::{ApiError, ApiJson};
use clawlink_api::routes::execute::ExecuteBody;
use clawlink_common::catalog::Catalog;
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::LazyLock;

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog");
    Catalog::load_dir(&dir, &BTreeMap::new()).expect("the catalog loads")
});

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().unwrap());

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        any::<String>().prop_map(Value::String),
        "[a-z_.]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{0,10}|.*", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The answer an error becomes, checked against CONTRACT.md's envelope.
fn check_envelope(error: ApiError) -> Result<(), TestCaseError> {
    let status = error.status.as_u16();
    prop_assert!((400..500).contains(&status), "a {status} for a bad body");
    let response = error.into_response();
    let bytes = RUNTIME.block_on(axum::body::to_bytes(response.into_body(), usize::MAX)).unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    prop_assert_eq!(&body["ok"], &Value::Bool(false));
    prop_assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{body}");
    Ok(())
}

fn read_body(bytes: Vec<u8>) -> Result<ExecuteBody, ApiError> {
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/api/tools/x/execute")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(bytes))
        .unwrap();
    // Through the check the router puts on every body, as a request over HTTP.
    RUNTIME.block_on(async {
        ApiJson::<ExecuteBody>::from_request(clawlink_api::body::guard(request).await, &()).await.map(|ApiJson(b)| b)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_body_is_read_or_refused_with_a_4xx(bytes in prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        json_value().prop_map(|v| serde_json::to_vec(&serde_json::json!({"arguments": v, "confirmed": true})).unwrap()),
        prop::collection::vec(any::<u8>(), 0..256),
    ]) {
        if let Err(error) = read_body(bytes) {
            check_envelope(error)?;
        }
    }

    #[test]
    fn any_arguments_pass_or_fail_validation_with_a_400(args in json_value(), names in prop::collection::vec(json_value(), 0..6)) {
        for tool in CATALOG.tools() {
            // The tool's own argument names, given arbitrary values, so validation goes deep.
            let mut object = args.as_object().cloned().unwrap_or_default();
            if let Some(properties) = tool.tool.input_schema["properties"].as_object() {
                for (name, value) in properties.keys().zip(&names) {
                    object.insert(name.clone(), value.clone());
                }
            }
            for arguments in [args.clone(), Value::Object(object)] {
                if let Err(error) = check_arguments(tool, &arguments) {
                    prop_assert_eq!(error.status.as_u16(), 400);
                    prop_assert_eq!(error.code.as_str(), "invalid_arguments");
                    check_envelope(error)?;
                }
            }
        }
    }
}
