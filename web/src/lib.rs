//! clawlink-web: the browser plane. For now: health and a placeholder page; sign-in, the
//! dashboard, connect flows and pairing approval land here next.

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use clawlink_common::config::{ConfigError, Env, socket_addr};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct WebConfig {
    pub addr: SocketAddr,
}

impl WebConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            addr: socket_addr(env, "CLAWLINK_WEB_ADDR", "127.0.0.1:8081")?,
        })
    }
}

pub fn router() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/",
            get(|| async { Html(include_str!("placeholder.html")) }),
        )
}

pub async fn serve(env: &Env) -> anyhow::Result<()> {
    let config = WebConfig::from_env(env)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on {} (CLAWLINK_WEB_ADDR): {e}", config.addr)
        })?;
    let stop = CancellationToken::new();
    tokio::spawn(clawlink_common::startup::cancel_on_signal(stop.clone()));
    tracing::info!(addr = %config.addr, "clawlink-web listening");
    axum::serve(listener, router())
        .with_graceful_shutdown(stop.cancelled_owned())
        .await?;
    Ok(())
}
