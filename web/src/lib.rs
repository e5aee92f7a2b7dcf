//! clawlink-web: the browser plane — accounts, connections and connect flows, pairing
//! approval, devices, executions, billing, and the admin queue view. Server-rendered HTML
//! (askama), one stylesheet, a little JavaScript on the admin view, a CSRF check on every
//! form.

pub mod error;
mod nul;
pub mod ops;
pub mod routes;
pub mod session;

use anyhow::Context;
use axum::Router;
use clawlink_common::config::{ConfigError, Env, InfraConfig, SharedConfig, socket_addr};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct WebConfig {
    pub infra: InfraConfig,
    /// Result TTL (a dead letter discarded from the admin view stores its failure in Redis,
    /// as a worker would), catalog, provider overrides, OAuth clients, keyring.
    pub shared: SharedConfig,
    /// The payment provider's checkout page; unset: plans cannot be bought here.
    pub checkout_url: Option<String>,
    /// The secret the payment provider signs webhooks with (HMAC-SHA256).
    pub webhook_secret: Option<clawlink_common::secret::SecretString>,
    /// How old a webhook's signed timestamp may be.
    pub webhook_tolerance: Duration,
    pub addr: SocketAddr,
    /// How the web front is reached from outside; an `https` URL turns on Secure cookies
    /// and is the only Origin accepted on forms.
    pub public_web_url: String,
    pub session_ttl: Duration,
}

impl std::ops::Deref for WebConfig {
    type Target = SharedConfig;
    fn deref(&self) -> &SharedConfig {
        &self.shared
    }
}

impl WebConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            infra: InfraConfig::from_env(env)?,
            shared: SharedConfig::from_env(env)?,
            checkout_url: match env.raw("CLAWLINK_BILLING_CHECKOUT_URL") {
                Some(_) => Some(env.url("CLAWLINK_BILLING_CHECKOUT_URL", "", &["http", "https"])?),
                None => None,
            },
            webhook_secret: env.raw("CLAWLINK_BILLING_WEBHOOK_SECRET").map(clawlink_common::secret::SecretString::new),
            webhook_tolerance: Duration::from_secs(env.parse(
                "CLAWLINK_BILLING_WEBHOOK_TOLERANCE_SECS",
                300,
                "a whole number of seconds",
            )?),
            addr: socket_addr(env, "CLAWLINK_WEB_ADDR", "127.0.0.1:8081")?,
            public_web_url: env.url("CLAWLINK_PUBLIC_WEB_URL", "http://127.0.0.1:8081", &["http", "https"])?,
            session_ttl: Duration::from_secs(env.parse(
                "CLAWLINK_SESSION_TTL_SECS",
                14 * 86_400,
                "a whole number of seconds",
            )?),
        })
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_web_url.starts_with("https://")
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: WebConfig,
    pub db: PgPool,
    pub catalog: Arc<clawlink_common::catalog::Catalog>,
    /// Outbound calls to providers (identity checks), with the private-address guard.
    pub providers: clawlink_common::provider::ProviderClient,
    /// The OAuth token exchange client (no redirects).
    pub oauth_http: reqwest::Client,
    pub metrics: clawlink_common::metrics::Metrics,
    /// RabbitMQ and Redis for the admin queue view, connected on first use.
    pub ops: ops::Ops,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(config: WebConfig, db: PgPool) -> anyhow::Result<Self> {
        let catalog = clawlink_common::catalog::Catalog::load_dir(
            &clawlink_common::catalog::default_dir(config.catalog_dir.as_deref()),
            &config.providers.base_urls,
        )?;
        let providers = clawlink_common::provider::ProviderClient::new(&config.providers, Duration::from_secs(15))?;
        let oauth_http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()?;
        let metrics = clawlink_common::metrics::Metrics::new();
        let ops = ops::Ops::new(&config);
        Ok(Self(Arc::new(Inner { config, db, catalog: Arc::new(catalog), providers, oauth_http, metrics, ops })))
    }
}

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
    axum::serve(listener, router(AppState::new(config, db)?)).with_graceful_shutdown(stop.cancelled_owned()).await?;
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
