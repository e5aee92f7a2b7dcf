//! `/healthz` (the process is alive) and `/readyz` (its dependencies answer).

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.db).await.is_ok();
    let mut redis = state.results.connection();
    let cache = redis::cmd("PING").query_async::<String>(&mut redis).await.is_ok();
    let broker = state.amqp.connected();
    let ok = db && cache && broker;
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"ok": ok, "postgres": db, "redis": cache, "rabbitmq": broker})))
}
