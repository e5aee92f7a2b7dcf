//! The api's shared state: one `AppState` (an `Arc` inside) handed to every handler.

use crate::config::ApiConfig;
use clawlink_common::catalog::Catalog;
use clawlink_common::db::connections::Connection;
use clawlink_common::db::devices::DeviceAuth;
use clawlink_common::db::executions;
use clawlink_common::ids::UserId;
use clawlink_common::queue::Publisher;
use clawlink_common::results::{ResultStore, Waiters};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a pairing status answer is reused: under the poll interval (2 s), so an agent
/// polling at the interval reads the database each time, and one polling faster sees
/// news at most this late.
pub const PAIR_STATUS_TTL: Duration = Duration::from_millis(1000);

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: ApiConfig,
    pub db: PgPool,
    pub results: ResultStore,
    pub publisher: Publisher,
    pub amqp: std::sync::Arc<clawlink_common::queue::Link>,
    pub waiters: Waiters,
    pub catalog: Arc<Catalog>,
    pub devices: DeviceCache,
    /// Pairing sessions' status answers by token, kept for [`PAIR_STATUS_TTL`]: a poll
    /// inside the poll interval is answered from here, not refused and not read again.
    pub pair_statuses: TtlCache<String, serde_json::Value>,
    /// New executions, inserted in batches with those of concurrent calls.
    pub inserts: clawlink_common::batch::Batcher<executions::NewExecution, executions::Inserted>,
    /// Jobs the broker confirmed: their outbox rows are deleted in batches, not waited for.
    pub published: clawlink_common::batch::Batcher<clawlink_common::ids::ExecutionId, ()>,
    /// A user's usable connections to an integration, read in batches (see `resolve_connection`).
    pub connection_lookups: clawlink_common::batch::Batcher<(UserId, String), Vec<Connection>>,
    pub metrics: clawlink_common::metrics::Metrics,
    pub keyring: clawlink_common::crypto::Keyring,
    /// Per-device request budget of this replica.
    pub device_budget: clawlink_common::pacing::KeyedLimiter<clawlink_common::ids::DeviceId>,
    /// Devices seen since the last flush, with when; written in one batch (see `flush_last_used`).
    pub last_used: Mutex<HashMap<clawlink_common::ids::DeviceId, time::OffsetDateTime>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

/// Device lookups by credential hash, kept for one second: a hot agent costs one database
/// read per second instead of one per call, and a revoked credential is refused within a
/// second on every replica.
pub type DeviceCache = TtlCache<Vec<u8>, Option<DeviceAuth>>;

/// Answers kept in this process for a short while (`ttl`); past 10,000 entries the
/// expired ones are dropped on the next insert.
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let entries = self.entries.lock().expect("cache lock");
        entries.get(key).filter(|(_, at)| at.elapsed() < self.ttl).map(|(v, _)| v.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() > 10_000 {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        entries.insert(key, (value, Instant::now()));
    }

    pub fn forget<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.entries.lock().expect("cache lock").remove(key);
    }
}

/// Writes the devices' last-use times every `every`, in one statement per flush, so
/// recording use costs no database write per request.
pub async fn flush_last_used(state: AppState, every: Duration, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.cancelled() => true,
        };
        // The device budget remembers only devices still paying off a burst.
        state.device_budget.forget_idle();
        let batch: Vec<_> = std::mem::take(&mut *state.last_used.lock().expect("last_used lock")).into_iter().collect();
        if !batch.is_empty() {
            let ids: Vec<i64> = batch.iter().map(|(d, _)| d.0).collect();
            let at: Vec<time::OffsetDateTime> = batch.iter().map(|(_, t)| *t).collect();
            let result = async {
                let mut conn = state.db.acquire().await?;
                clawlink_common::db::devices::touch_many(&mut conn, &ids, &at).await
            }
            .await;
            if let Err(err) = result {
                tracing::warn!(error = %err, devices = ids.len(), "could not record device last use");
            }
        }
        if stopping {
            return;
        }
    }
}
