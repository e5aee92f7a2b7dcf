//! `GET /api/openapi.json`: the OpenAPI 3.1 document, built from the same route table as
//! the router (see `routes::ROUTES`).

use crate::routes::ROUTES;
use axum::Json;
use serde_json::{Map, Value, json};

fn error_envelope() -> Value {
    json!({
        "type": "object",
        "required": ["ok", "error"],
        "properties": {
            "ok": {"const": false},
            "error": {
                "type": "object",
                "required": ["type", "code", "message", "retryable"],
                "properties": {
                    "type": {"type": "string"}, "code": {"type": "string"},
                    "message": {"type": "string"}, "retryable": {"type": "boolean"}
                }
            },
            "missingFields": {"type": "array", "items": {"type": "string"}},
            "invalidFields": {"type": "array", "items": {"type": "string"}},
            "details": {"type": "array"},
            "hint": {"type": "string"},
            "inputSchema": {"type": "object"},
            "upgradeUrl": {"type": "string"}
        }
    })
}

pub fn build() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path, auth, summary) in ROUTES {
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut operation = json!({
            "summary": summary,
            "operationId": format!("{method}_{}", path.trim_start_matches('/').replace(['/', '{', '}', '.'], "_")),
            "parameters": parameters,
            "responses": {
                "200": {"description": "Success", "content": {"application/json": {"schema": {"type": "object"}}}},
                "default": {"description": "An error (CONTRACT.md envelope)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if *method == "post" {
            operation["requestBody"] = json!({"content": {"application/json": {"schema": {"type": "object"}}}});
        }
        operation["security"] = if *auth { json!([{"deviceCredential": []}, {"bearer": []}]) } else { json!([]) };
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[*method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "ClawLink agent API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "The agent-facing API: pairing, connections, tools, executions and MCP."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "deviceCredential": {"type": "apiKey", "in": "header", "name": "X-ClawLink-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"}
            },
            "schemas": {"Error": error_envelope()}
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(build())
}
