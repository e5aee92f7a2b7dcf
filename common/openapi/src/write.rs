//! A provider as a catalog file a person can review: the layout of the hand-written
//! files (provider keys, `[auth]`, then one `[[tools]]` block per tool with its input
//! schema one property a line), checked by loading it back with the catalog's own loader.

use crate::import::ImportReport;
use clawlink_common::catalog::{ArgLocation, Auth, BodyEncoding, Catalog, Provider, Tool};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The catalog file for `provider`, headed by what the report asks a reviewer to check.
/// `Err` if the text would not load (a bug here, said plainly rather than written).
pub fn to_catalog_toml(provider: &Provider, report: &ImportReport, source: &str) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} {} ({}), imported by `clawlink-api catalog import`",
        report.title, report.api_version, report.spec_version
    );
    let _ = writeln!(
        out,
        "# from {source}: {} tools from {} operations, {} skipped.",
        report.tools.len(),
        report.operations,
        report.skipped.len()
    );
    let _ = writeln!(out, "# Review before shipping: descriptions, guidance, mode and risk, rate limits.");
    for warning in &report.warnings {
        let _ = writeln!(out, "# check: {}", one_line(warning));
    }
    key(&mut out, "id", &provider.id)?;
    key(&mut out, "name", &provider.name)?;
    key(&mut out, "categories", &provider.categories)?;
    key(&mut out, "base_url", &provider.base_url)?;
    if provider.body_encoding == BodyEncoding::Form {
        key(&mut out, "body_encoding", "form")?;
    }
    out.push_str("\n[auth]\n");
    match &provider.auth {
        Auth::Oauth2 { authorize_url, token_url, scopes, pkce, .. } => {
            key(&mut out, "type", "oauth2")?;
            key(&mut out, "authorize_url", authorize_url)?;
            key(&mut out, "token_url", token_url)?;
            key(&mut out, "scopes", scopes)?;
            key(&mut out, "pkce", pkce)?;
        }
        Auth::ApiKey { header, query, format } => {
            key(&mut out, "type", "api_key")?;
            if let Some(h) = header {
                key(&mut out, "header", h)?;
            }
            if let Some(q) = query {
                key(&mut out, "query", q)?;
            }
            key(&mut out, "format", format)?;
        }
        Auth::Basic => key(&mut out, "type", "basic")?,
        Auth::KeyPair { key_query, token_query } => {
            key(&mut out, "type", "key_pair")?;
            key(&mut out, "key_query", key_query)?;
            key(&mut out, "token_query", token_query)?;
        }
    }
    for tool in &provider.tools {
        write_tool(&mut out, tool)?;
    }
    Catalog::from_sources(vec![(PathBuf::from(format!("{}.toml", provider.id)), out.clone())], &BTreeMap::new())
        .map_err(|e| format!("the written file does not load: {e}"))?;
    Ok(out)
}

fn write_tool(out: &mut String, tool: &Tool) -> Result<(), String> {
    out.push_str(
        "\n# ---------------------------------------------------------------------------------------\n[[tools]]\n",
    );
    key(out, "action", &tool.action)?;
    if let Some(id) = &tool.operation_id {
        key(out, "operation_id", id)?;
    }
    key(out, "title", &tool.title)?;
    key(out, "description", &tool.description)?;
    key(out, "method", &tool.method)?;
    key(out, "path", &tool.path)?;
    key(out, "mode", tool.mode.as_str())?;
    key(out, "risk", tool.risk.as_str())?;
    key(out, "preview", &tool.preview)?;
    if !tool.args.is_empty() {
        let args: BTreeMap<&str, Value> = tool
            .args
            .iter()
            .map(|(name, location)| {
                let value = match location {
                    ArgLocation::Path => Value::from("path"),
                    ArgLocation::Query => Value::from("query"),
                    ArgLocation::Body => Value::from("body"),
                    ArgLocation::Header(h) => serde_json::json!({ "header": h }),
                };
                (name.as_str(), value)
            })
            .collect();
        key(out, "args", &args)?;
    }
    out.push_str("\n[tools.input_schema]\n");
    let schema = tool.input_schema.as_object().cloned().unwrap_or_default();
    let first = ["type", "additionalProperties", "required"];
    for name in first {
        if let Some(value) = schema.get(name) {
            key(out, name, value)?;
        }
    }
    for (name, value) in &schema {
        if name != "properties" && !first.contains(&name.as_str()) {
            key(out, name, value)?;
        }
    }
    if let Some(Value::Object(properties)) = schema.get("properties")
        && !properties.is_empty()
    {
        out.push_str("[tools.input_schema.properties]\n");
        for (name, value) in properties {
            key(out, name, value)?;
        }
    }
    out.push_str("\n[tools.guidance]\n");
    key(out, "when_to_use", &tool.guidance.when_to_use)?;
    if !tool.guidance.ask_before.is_empty() {
        key(out, "ask_before", &tool.guidance.ask_before)?;
    }
    if !tool.guidance.examples.is_empty() {
        key(out, "examples", &tool.guidance.examples)?;
    }
    Ok(())
}

/// `name = value` with the value inline.
fn key(out: &mut String, name: &str, value: &(impl Serialize + ?Sized)) -> Result<(), String> {
    let mut text = String::new();
    value
        .serialize(toml::ser::ValueSerializer::new(&mut text))
        .map_err(|e| format!("{name} cannot be written as TOML: {e}"))?;
    let _ = writeln!(out, "{} = {text}", bare_or_quoted(name));
    Ok(())
}

fn bare_or_quoted(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        name.to_string()
    } else {
        serde_json::to_string(name).unwrap_or_else(|_| format!("\"{name}\""))
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
