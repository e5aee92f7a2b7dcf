//! The worker's small HTTP side: `/healthz` (alive), `/readyz` (Postgres, Redis and the
//! broker answer) and `/metrics` (Prometheus), on `CLAWLINK_WORKER_ADDR`.

use crate::execute::Executor;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

#[derive(Clone)]
struct HttpState {
    executor: Arc<Executor>,
    link: Arc<clawlink_common::queue::Link>,
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    let db = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&s.executor.db).await.is_ok();
    let mut redis = s.executor.results.connection();
    let cache = redis::cmd("PING").query_async::<String>(&mut redis).await.is_ok();
    let broker = s.link.connected();
    let ok = db && cache && broker;
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(serde_json::json!({"ok": ok, "postgres": db, "redis": cache, "rabbitmq": broker})))
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, clawlink_common::metrics::CONTENT_TYPE)], s.executor.metrics.encode())
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    executor: Arc<Executor>,
    link: Arc<clawlink_common::queue::Link>,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(HttpState { executor, link });
    axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await
}
