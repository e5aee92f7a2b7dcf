//! clawlink-worker: consumes both lanes and runs each call through `execute`.

pub mod batch;
pub mod bulkhead;
pub mod config;
pub mod consumer;
pub mod decide;
pub mod execute;
pub mod http;
pub mod priority;

use crate::config::WorkerConfig;
use crate::execute::Executor;
use anyhow::Context;
use clawlink_common::catalog::{self, Catalog};
use clawlink_common::config::Env;
use clawlink_common::pacing::Pacer;
use clawlink_common::provider::ProviderClient;
use clawlink_common::queue::{Lane, Publisher};
use clawlink_common::refresh::Refresher;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Runs until `stop`: then stops consuming, lets in-flight calls finish (bounded by the
/// shutdown grace) and returns.
pub async fn run(config: WorkerConfig, stop: CancellationToken) -> anyhow::Result<()> {
    let catalog =
        Arc::new(Catalog::load_dir(&catalog::default_dir(config.catalog_dir.as_deref()), &config.providers.base_urls)?);
    let infra = clawlink_common::startup::connect_infra(
        &config.infra,
        &config.worker_id,
        config.result_ttl,
        Duration::from_secs(60),
    )
    .await?;
    let link = infra.amqp.clone();
    let publisher = Publisher::new(link.clone()).await.context("opening the publisher")?;
    let pacer = Pacer::new(infra.redis.connection(), &config.infra.namespace, catalog.providers());
    let refresher = Refresher::new(
        infra.redis.connection(),
        &config.infra.namespace,
        infra.db.clone(),
        config.keyring.clone(),
        config.oauth_clients.clone(),
        &config.providers,
    )
    .context("building the token refresh client")?;
    let executor = Arc::new(Executor {
        claims: batch::claims(infra.db.clone()),
        finishes: batch::finishes(infra.db.clone()),
        db: infra.db,
        results: infra.redis,
        publisher,
        pacer,
        refresher,
        client: ProviderClient::new(&config.providers, config.provider_timeout).context("building the HTTP client")?,
        keyring: config.keyring.clone(),
        catalog,
        retry: config.retry,
        max_inline_wait: config.max_inline_wait,
        ack_delay: config.ack_delay,
        metrics: clawlink_common::metrics::Metrics::new(),
        bulkhead: bulkhead::Bulkhead::new(
            usize::from(config.interactive_concurrency) + usize::from(config.bulk_concurrency),
            config.provider_share,
        ),
        lanes: priority::LaneGate::new(
            usize::from(config.bulk_while_interactive),
            config.bulk_spacing,
            priority::INTERACTIVE_QUIET,
        ),
    });

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {} (CLAWLINK_WORKER_ADDR)", config.addr))?;
    tokio::spawn(http::serve(listener, executor.clone(), link.clone(), stop.clone()));
    let tracker = TaskTracker::new();
    let lanes = [(Lane::Interactive, config.interactive_concurrency), (Lane::Bulk, config.bulk_concurrency)];
    let mut consumers = tokio::task::JoinSet::new();
    for (lane, prefetch) in lanes {
        let executor = executor.clone();
        let link = link.clone();
        let tracker = tracker.clone();
        let stop = stop.clone();
        let tag = format!("{}-{}", config.worker_id, lane.as_str());
        consumers
            .spawn(async move { consumer::consume_lane(executor, &link, lane, prefetch, tag, tracker, stop).await });
    }
    tracing::info!(worker = %config.worker_id, "clawlink-worker running");
    // Stopped lanes keep their channels open until the calls in flight have acked.
    let mut stopped = Vec::new();
    while let Some(result) = consumers.join_next().await {
        match result.context("consumer task")? {
            Ok(lane) => stopped.push(lane),
            Err(err) => {
                stop.cancel();
                return Err(err).context("consuming");
            }
        }
    }
    tracker.close();
    tracing::info!(
        in_flight = tracker.len(),
        grace_ms = config.shutdown_grace.as_millis() as u64,
        "consumers cancelled; finishing the calls in flight"
    );
    if tokio::time::timeout(config.shutdown_grace, tracker.wait()).await.is_err() {
        tracing::warn!(in_flight = tracker.len(), "shutdown grace over; unfinished calls will be redelivered");
    }
    drop(stopped);
    link.close("worker stopping").await;
    tracing::info!("clawlink-worker stopped");
    Ok(())
}

pub async fn serve(env: &Env) -> anyhow::Result<()> {
    let config = WorkerConfig::from_env(env)?;
    let stop = CancellationToken::new();
    tokio::spawn(clawlink_common::startup::cancel_on_signal(stop.clone()));
    run(config, stop).await
}
