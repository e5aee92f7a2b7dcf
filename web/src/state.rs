//! The web front's state: its configuration, the database pool, the catalog, the outbound
//! clients, the admin view's broker and Redis connections, the sign-in throttles and the
//! password pool, shared by every handler.

use crate::config::WebConfig;
use crate::ops;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// What every handler gets through `State`; cloning it clones an `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: WebConfig,
    pub db: PgPool,
    pub catalog: Arc<clawlink_common::catalog::Catalog>,
    /// Outbound calls to providers (identity checks), with the private-address guard.
    pub providers: clawlink_common::provider::ProviderClient,
    /// The OAuth code exchange, through the same guard.
    pub tokens: clawlink_common::oauth::TokenClient,
    pub metrics: clawlink_common::metrics::Metrics,
    /// RabbitMQ and Redis for the admin queue view, connected on first use.
    pub ops: ops::Ops,
    /// Sign-in and sign-up attempt counters.
    pub throttles: crate::throttle::Throttles,
    /// Where password hashes run.
    pub passwords: crate::throttle::PasswordPool,
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
        let tokens = clawlink_common::oauth::TokenClient::new(providers.clone(), Duration::from_secs(15));
        let metrics = clawlink_common::metrics::Metrics::new();
        let ops = ops::Ops::new(&config);
        Ok(Self(Arc::new(Inner {
            config,
            db,
            catalog: Arc::new(catalog),
            providers,
            tokens,
            metrics,
            ops,
            throttles: Default::default(),
            passwords: Default::default(),
        })))
    }
}
