//! Start-up: connecting to Postgres, RabbitMQ and Redis with a bounded, logged backoff,
//! so a process started before its dependencies waits for them and says what it waits for.

use crate::config::InfraConfig;
use std::future::Future;
use std::time::Duration;

/// Retries `connect` with exponential backoff until it succeeds or `budget` is spent.
pub async fn wait_for<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    what: &str,
    budget: Duration,
    mut connect: impl FnMut() -> F,
) -> anyhow::Result<T> {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match connect().await {
            Ok(v) => return Ok(v),
            Err(err) if started.elapsed() + delay < budget => {
                tracing::warn!(dependency = what, error = %err, retry_in_ms = delay.as_millis() as u64, "waiting for dependency");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => anyhow::bail!("{what} is not reachable after {:?}: {err}", budget),
        }
    }
}

/// The connections every binary opens.
pub struct Infra {
    pub db: sqlx::PgPool,
    /// The broker link, connected to the first address of the list that answered, with
    /// the topology declared.
    pub amqp: std::sync::Arc<crate::queue::Link>,
    pub redis: crate::results::ResultStore,
}

pub async fn connect_infra(
    cfg: &InfraConfig,
    name: &str,
    result_ttl: Duration,
    budget: Duration,
) -> anyhow::Result<Infra> {
    let db =
        wait_for("postgres", budget, || crate::db::connect(cfg.database_url.expose(), cfg.database_max_connections))
            .await?;
    let amqp = wait_for("rabbitmq", budget, || {
        crate::queue::Link::open(&cfg.amqp_addresses, name, crate::queue::Topology::new(&cfg.namespace))
    })
    .await?;
    let redis = wait_for("redis", budget, || {
        crate::results::ResultStore::connect(cfg.redis_url.expose(), &cfg.namespace, result_ttl)
    })
    .await?;
    Ok(Infra { db, amqp, redis })
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: tokio_util::sync::CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    token.cancel();
}
