//! clawlink-web: the browser plane — accounts, connections and connect flows, pairing
//! approval, devices, executions, billing, and the admin queue view. Server-rendered HTML
//! (askama), one stylesheet, a little JavaScript on the admin view, a CSRF check on every
//! form.

pub mod client_addr;
pub mod config;
pub mod error;
pub mod ops;
pub mod routes;
pub mod session;
pub mod state;
mod text;
pub mod throttle;

pub use config::WebConfig;
pub use state::AppState;

use anyhow::Context;
use axum::Router;
use clawlink_common::config::Env;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub fn router(state: AppState) -> Router {
    routes::router(state)
}

/// Serves on `listener` until `stop`, then finishes in-flight requests.
pub async fn run(config: WebConfig, listener: tokio::net::TcpListener, stop: CancellationToken) -> anyhow::Result<()> {
    let db = clawlink_common::startup::wait_for("postgres", Duration::from_secs(60), || {
        clawlink_common::db::connect(config.infra.database_url.expose(), config.infra.database_max_connections)
    })
    .await?;
    tracing::info!(addr = %listener.local_addr()?, "clawlink-web listening");
    // Connect info gives handlers the peer address (`client_addr::ClientAddr`).
    let app = router(AppState::new(config, db)?).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await?;
    Ok(())
}

pub async fn serve(env: &Env) -> anyhow::Result<()> {
    let config = WebConfig::from_env(env)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {} (CLAWLINK_WEB_ADDR)", config.addr))?;
    let stop = CancellationToken::new();
    tokio::spawn(clawlink_common::startup::cancel_on_signal(stop.clone()));
    run(config, listener, stop).await
}
