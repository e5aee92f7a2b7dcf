//! clawlink-api: the agent plane. Routes per resource in `routes/` (thin adapters), one
//! tool call in `call` and its answer in `view`, the device-auth extractor in `auth`, the
//! device's grant as the api applies it in `grants`, the JSON error envelope in `error`,
//! the check every request body passes in `body`, scheduled jobs in `jobs`.

pub mod auth;
pub mod body;
pub mod call;
pub mod client_addr;
pub mod commands;
pub mod config;
pub mod error;
pub mod grants;
pub mod jobs;
pub mod listing;
pub mod routes;
pub mod state;
pub mod view;

use crate::config::ApiConfig;
use crate::state::{AppState, DeviceCache, Inner, TtlCache};
use anyhow::Context;
use clawlink_common::catalog::{self, Catalog};
use clawlink_common::config::Env;
use clawlink_common::queue::Publisher;
use clawlink_common::results::Waiters;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use routes::router;

/// Loads the catalog named by the configuration (a bad file is an error naming it).
pub fn load_catalog(
    dir: Option<&str>,
    base_urls: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<Catalog> {
    Ok(Catalog::load_dir(&catalog::default_dir(dir), base_urls)?)
}

/// Connects everything and returns the state, with the result listener running.
pub async fn build_state(config: ApiConfig, stop: CancellationToken) -> anyhow::Result<AppState> {
    let catalog = Arc::new(load_catalog(config.catalog_dir.as_deref(), &config.providers.base_urls)?);
    let infra = clawlink_common::startup::connect_infra(
        &config.infra,
        &config.instance_id,
        config.result_ttl,
        Duration::from_secs(60),
    )
    .await?;
    let link = infra.amqp.clone();
    let publisher = Publisher::new(link.clone()).await.context("opening the publisher")?;

    let waiters = Waiters::default();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(waiters.clone().listen(
        config.infra.redis_url.expose().to_string(),
        vec![infra.redis.keys().notify_channel(&config.instance_id), infra.redis.keys().done_channel()],
        Some(ready_tx),
        stop,
    ));
    tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .context("subscribing to the result channel timed out")?
        .context("the result listener stopped")?;

    let quota =
        governor::Quota::per_second(std::num::NonZeroU32::new(config.device_rate_per_sec).expect("checked positive"))
            .allow_burst(std::num::NonZeroU32::new(config.device_burst).expect("checked positive"));
    Ok(AppState::new(Inner {
        keyring: config.keyring.clone(),
        device_budget: clawlink_common::pacing::KeyedLimiter::new(quota),
        inserts: inserts(infra.db.clone(), config.outbox_relay_after),
        published: published(infra.db.clone()),
        connection_lookups: connection_lookups(infra.db.clone()),
        last_used: Default::default(),
        config,
        db: infra.db,
        results: infra.redis,
        publisher,
        amqp: link,
        waiters,
        catalog,
        devices: DeviceCache::new(Duration::from_secs(1)),
        pair_statuses: TtlCache::new(state::PAIR_STATUS_TTL),
        metrics: {
            let metrics = clawlink_common::metrics::Metrics::new();
            jobs::declare(&metrics);
            metrics
        },
    }))
}

/// Serves on `listener` until `stop` is cancelled: then closes the listener (new
/// connections are refused), finishes in-flight requests — a sync call still gets its
/// result, so the result listener outlives them — and returns.
pub async fn run(config: ApiConfig, listener: tokio::net::TcpListener, stop: CancellationToken) -> anyhow::Result<()> {
    let results_stop = CancellationToken::new();
    let _stop_results = results_stop.clone().drop_guard();
    let state = build_state(config, results_stop).await?;
    tracing::info!(addr = %listener.local_addr()?, instance = %state.config.instance_id, "clawlink-api listening");
    tokio::spawn(state::flush_last_used(state.clone(), Duration::from_secs(10), stop.clone()));
    let refresher = clawlink_common::refresh::Refresher::new(
        state.results.connection(),
        &state.config.infra.namespace,
        state.db.clone(),
        state.keyring.clone(),
        state.config.oauth_clients.clone(),
        &state.config.providers,
    )
    .context("building the token refresh client")?;
    tokio::spawn(jobs::TokenSweep::new(&state, refresher).run(stop.clone()));
    tokio::spawn(jobs::queue_stats(state.clone(), Duration::from_secs(5), stop.clone()));
    tokio::spawn(jobs::upkeep(state.clone(), state.config.job_interval, stop.clone()));
    tokio::spawn(jobs::outbox_relay(state.clone(), jobs::RELAY_EVERY, stop.clone()));
    let app = router(state);
    // Connect info gives handlers the peer address (`client_addr::ClientAddr`).
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(stop.cancelled_owned())
        .await?;
    tracing::info!("clawlink-api stopped");
    Ok(())
}

/// `clawlink-api serve`: reads the environment, serves until SIGINT or SIGTERM.
pub async fn serve(env: &Env) -> anyhow::Result<()> {
    let config = ApiConfig::from_env(env)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {} (CLAWLINK_API_ADDR)", config.addr))?;
    let stop = CancellationToken::new();
    tokio::spawn(clawlink_common::startup::cancel_on_signal(stop.clone()));
    run(config, listener, stop).await
}

/// New executions go to Postgres in batches: the calls that arrive while one insert
/// commits share the next statement (`clawlink_common::batch`).
fn inserts(
    db: sqlx::PgPool,
    relay_after: Duration,
) -> clawlink_common::batch::Batcher<
    clawlink_common::db::executions::NewExecution,
    clawlink_common::db::executions::Inserted,
> {
    clawlink_common::batch::Batcher::start(move |new| {
        let db = db.clone();
        async move {
            let mut conn = db.acquire().await?;
            clawlink_common::db::executions::insert_many(&mut conn, new, relay_after).await
        }
    })
}

/// Confirmed publishes leave the outbox in batches (see `executions::mark_published`).
fn published(db: sqlx::PgPool) -> clawlink_common::batch::Batcher<clawlink_common::ids::ExecutionId, ()> {
    clawlink_common::batch::Batcher::start(move |ids: Vec<clawlink_common::ids::ExecutionId>| {
        let db = db.clone();
        async move {
            let mut conn = db.acquire().await?;
            clawlink_common::db::executions::mark_published(&mut conn, &ids).await?;
            Ok(vec![(); ids.len()])
        }
    })
}

/// Connection lookups of concurrent calls share one statement.
fn connection_lookups(
    db: sqlx::PgPool,
) -> clawlink_common::batch::Batcher<
    (clawlink_common::ids::UserId, String),
    Vec<clawlink_common::db::connections::Connection>,
> {
    clawlink_common::batch::Batcher::start(move |keys: Vec<(clawlink_common::ids::UserId, String)>| {
        let db = db.clone();
        async move {
            let mut conn = db.acquire().await?;
            clawlink_common::db::connections::list_usable_many(&mut conn, &keys).await
        }
    })
}
