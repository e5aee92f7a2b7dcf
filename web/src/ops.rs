//! What the admin queue view reads and does, outside Postgres: queue depths and consumers
//! from RabbitMQ (passive declares), the dead-letter queue (peek, replay, discard), and
//! the pacing state in Redis. The web front connects to the broker and Redis lazily, on
//! the first admin request, so the rest of the dashboard never depends on them.
//!
//! Queue names come from `clawlink_common::queue::Topology`, Redis keys from
//! `clawlink_common::keys` (read only here; `pacing` writes them).

use clawlink_common::catalog::{Catalog, RateWindow};
use clawlink_common::ids::ExecutionId;
use clawlink_common::keys::{Keys, PaceWindow};
use clawlink_common::pacing::window_cells;
use clawlink_common::queue::{DELAY_TIERS_SECS, Job, Lane, Topology};
use clawlink_common::results::ResultStore;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Dead letters read per page load: a peek holds each message unacknowledged for a
/// moment, so it stays short.
pub const PEEK_LIMIT: usize = 50;
/// Up to this many Redis keys, the pacing view walks them for per-connection state.
const SCAN_KEYSPACE_LIMIT: u64 = 200_000;
/// Messages looked through to find the one to replay or discard.
const SCAN_LIMIT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("rabbitmq: {0}")]
    Broker(#[from] lapin::Error),
    #[error("rabbitmq: {0}")]
    NoBroker(#[from] clawlink_common::queue::NoBroker),
    #[error("rabbitmq: {0}")]
    Publish(#[from] clawlink_common::queue::PublishError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("timed out talking to {0}")]
    Timeout(&'static str),
}

pub struct Ops {
    amqp_addresses: clawlink_common::queue::BrokerAddresses,
    redis_url: clawlink_common::secret::SecretString,
    pub topology: Topology,
    namespace: String,
    result_ttl: Duration,
    amqp: tokio::sync::Mutex<Option<Arc<lapin::Connection>>>,
    results: tokio::sync::OnceCell<ResultStore>,
}

/// Depth and consumers of one queue.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueState {
    pub name: String,
    /// `interactive`, `bulk`, `delay` or `dead`.
    pub kind: &'static str,
    pub lane: Option<&'static str>,
    /// Messages ready for delivery (not counting those delivered and not yet acked).
    pub ready: u32,
    pub consumers: u32,
}

/// One dead letter, as the admin sees it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub execution_id: Option<ExecutionId>,
    /// `delivery_limit`, `rejected`, `expired` … (from the `x-death` header).
    pub reason: String,
    /// How many times it died in its queue.
    pub count: i64,
    /// The queue it died in.
    pub queue: String,
    /// When it first died (unix seconds).
    pub died_at: Option<u64>,
}

/// One provider's pacing state.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PacingState {
    pub provider: String,
    pub name: String,
    /// The app-wide windows: permits available now out of the window's capacity.
    pub app_windows: Vec<WindowState>,
    /// The per-connection limit, described (each connection has its own budget).
    pub per_connection: Vec<String>,
    /// Connections whose budget is partly used right now.
    pub busy_connections: usize,
    /// Connections with no permit left right now.
    pub exhausted_connections: usize,
    /// Connections paused after a 429, and until when (unix milliseconds).
    pub paused: Vec<Paused>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowState {
    pub limit: String,
    pub permits: u64,
    pub capacity: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Paused {
    pub connection: String,
    pub until_ms: u64,
}

/// Permits a GCRA window grants now, from its stored theoretical arrival time (`tat`,
/// microseconds; `None` when the key expired: the window is full).
pub fn permits_now(w: &RateWindow, tat: Option<u64>, now_us: u64) -> (u64, u64) {
    let (interval, tolerance) = window_cells(w);
    let capacity = tolerance / interval.max(1) + 1;
    let tat = tat.unwrap_or(now_us).max(now_us);
    let permits =
        if tat > now_us + tolerance { 0 } else { ((now_us + tolerance - tat) / interval.max(1) + 1).min(capacity) };
    (permits, capacity)
}

fn describe(w: &RateWindow) -> String {
    let per = match w.per_seconds {
        1 => "s".to_string(),
        60 => "min".to_string(),
        3600 => "h".to_string(),
        86_400 => "day".to_string(),
        s => format!("{s} s"),
    };
    if w.burst > 0 { format!("{}/{per} (+{} burst)", w.requests, w.burst) } else { format!("{}/{per}", w.requests) }
}

fn header<'a>(table: &'a FieldTable, name: &str) -> Option<&'a AMQPValue> {
    table.inner().iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v)
}

fn text(v: Option<&AMQPValue>) -> Option<String> {
    match v? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn number(v: Option<&AMQPValue>) -> Option<i64> {
    match v? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// Reads a dead-lettered message: its execution id (when the payload is a job) and the
/// first entry of its `x-death` header (the most recent death).
fn read_dead(delivery: &lapin::message::Delivery) -> DeadLetter {
    let execution_id =
        serde_json::from_slice::<Job>(&delivery.data).ok().map(|Job::ExecuteV1 { execution_id, .. }| execution_id);
    let death = delivery.properties.headers().as_ref().and_then(|h| match header(h, "x-death") {
        Some(AMQPValue::FieldArray(deaths)) => deaths.as_slice().iter().find_map(|d| match d {
            AMQPValue::FieldTable(t) => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    });
    match death {
        Some(d) => DeadLetter {
            execution_id,
            reason: text(header(&d, "reason")).unwrap_or_else(|| "unknown".into()),
            count: number(header(&d, "count")).unwrap_or(1),
            queue: text(header(&d, "queue")).unwrap_or_default(),
            died_at: number(header(&d, "time")).and_then(|t| u64::try_from(t).ok()),
        },
        // No header: a message published here directly, or a broker that does not add it.
        None => DeadLetter { execution_id, reason: "unknown".into(), count: 1, queue: String::new(), died_at: None },
    }
}

/// A dead letter taken off the queue, held unacknowledged until `ack`. Dropped without
/// `ack` (an error on the way), its channel closes and the message goes back to the
/// dead-letter queue as it was.
pub struct Taken {
    pub letter: DeadLetter,
    pub payload: Vec<u8>,
    held: Option<(lapin::Channel, lapin::message::Delivery)>,
}

impl Taken {
    /// Acks the message (it leaves the dead-letter queue) and releases the others the
    /// search held.
    pub async fn ack(mut self) -> Result<(), OpsError> {
        let (channel, delivery) = self.held.take().expect("held until ack");
        let acked = delivery.acker.ack(BasicAckOptions::default()).await;
        let _ = channel.close(200, "done".into()).await;
        acked?;
        Ok(())
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some((channel, _)) = self.held.take() {
            tokio::spawn(async move {
                let _ = channel.close(200, "released".into()).await;
            });
        }
    }
}

impl Ops {
    pub fn new(config: &crate::WebConfig) -> Self {
        Self {
            amqp_addresses: config.infra.amqp_addresses.clone(),
            redis_url: config.infra.redis_url.clone(),
            topology: Topology::new(&config.infra.namespace),
            namespace: config.infra.namespace.clone(),
            result_ttl: config.result_ttl,
            amqp: tokio::sync::Mutex::new(None),
            results: tokio::sync::OnceCell::new(),
        }
    }

    async fn connection(&self) -> Result<Arc<lapin::Connection>, OpsError> {
        let mut slot = self.amqp.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(c.clone());
        }
        let connect = clawlink_common::queue::connect_any(&self.amqp_addresses, "clawlink-web-admin");
        let c = Arc::new(
            tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .map_err(|_| OpsError::Timeout("rabbitmq"))??,
        );
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn results(&self) -> Result<&ResultStore, OpsError> {
        self.results
            .get_or_try_init(|| async {
                let connect = ResultStore::connect(self.redis_url.expose(), &self.namespace, self.result_ttl);
                tokio::time::timeout(Duration::from_secs(5), connect)
                    .await
                    .map_err(|_| OpsError::Timeout("redis"))?
                    .map_err(OpsError::from)
            })
            .await
    }

    /// Depth and consumers of every queue, on one channel (a missing queue reads as empty:
    /// nothing has declared the topology yet).
    pub async fn queues(&self) -> Result<Vec<QueueState>, OpsError> {
        let connection = self.connection().await?;
        let mut names: Vec<(String, &'static str, Option<&'static str>)> = Vec::new();
        for lane in Lane::ALL {
            names.push((self.topology.work_queue(lane), lane.as_str(), Some(lane.as_str())));
        }
        for lane in Lane::ALL {
            for secs in DELAY_TIERS_SECS {
                names.push((self.topology.delay_queue(lane, secs), "delay", Some(lane.as_str())));
            }
        }
        names.push((self.topology.dead_letter_queue(), "dead", None));
        let mut channel = connection.create_channel().await?;
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let mut out = Vec::with_capacity(names.len());
        for (name, kind, lane) in names {
            match channel.queue_declare(name.as_str().into(), passive, FieldTable::default()).await {
                Ok(q) => {
                    out.push(QueueState { name, kind, lane, ready: q.message_count(), consumers: q.consumer_count() })
                }
                // NOT_FOUND closes the channel: read it as empty, go on with a new one.
                Err(_) => {
                    out.push(QueueState { name, kind, lane, ready: 0, consumers: 0 });
                    channel = connection.create_channel().await?;
                }
            }
        }
        let _ = channel.close(200, "read".into()).await;
        Ok(out)
    }

    /// The first dead letters, without removing them: each is fetched unacknowledged and
    /// goes back to the queue when the channel closes.
    pub async fn peek_dead(&self, limit: usize) -> Result<Vec<DeadLetter>, OpsError> {
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        let queue = self.topology.dead_letter_queue();
        let mut out = Vec::new();
        while out.len() < limit {
            match channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }).await {
                Ok(Some(message)) => out.push(read_dead(&message.delivery)),
                Ok(None) => break,
                Err(err) => {
                    let _ = channel.close(200, "peeked".into()).await;
                    return if out.is_empty() { Err(err.into()) } else { Ok(out) };
                }
            }
        }
        let _ = channel.close(200, "peeked".into()).await;
        Ok(out)
    }

    /// Finds the dead letter of `execution` and holds it, unacknowledged, for the caller
    /// to ack or release. `None` when it is not among the first messages.
    pub async fn take_dead(&self, execution: ExecutionId) -> Result<Option<Taken>, OpsError> {
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        let queue = self.topology.dead_letter_queue();
        for _ in 0..SCAN_LIMIT {
            let Some(message) = channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }).await?
            else {
                break;
            };
            let letter = read_dead(&message.delivery);
            if letter.execution_id == Some(execution) {
                let payload = message.delivery.data.clone();
                return Ok(Some(Taken { letter, payload, held: Some((channel, message.delivery)) }));
            }
        }
        let _ = channel.close(200, "not found".into()).await;
        Ok(None)
    }

    /// Publishes `payload` to `lane` with confirms.
    pub async fn republish(&self, lane: Lane, payload: &[u8]) -> Result<(), OpsError> {
        let connection = self.connection().await?;
        clawlink_common::queue::publish_once(&connection, &self.topology.work_queue(lane), payload).await?;
        Ok(())
    }

    pub async fn result_store(&self) -> Result<&ResultStore, OpsError> {
        self.results().await
    }

    /// Pacing state of every provider with declared limits: app windows' permits now,
    /// connections busy or out of permits, and pauses after a 429. The app windows are
    /// read by name, pauses from their index (`Pacer::pause`). Connections' windows need a
    /// SCAN, which walks the whole Redis keyspace (results live there too), so it runs only
    /// while the keyspace is small; the flag says whether it ran.
    pub async fn pacing(&self, catalog: &Catalog) -> Result<(Vec<PacingState>, bool), OpsError> {
        let results = self.results().await?;
        let keys: &Keys = results.keys();
        let mut redis = results.connection();
        let (time, keyspace): ((u64, u64), u64) =
            redis::pipe().cmd("TIME").cmd("DBSIZE").query_async(&mut redis).await?;
        let now_us = time.0 * 1_000_000 + time.1;
        let mut pace_keys: Vec<String> = catalog
            .providers()
            .flat_map(|p| (0..p.rate_limits.per_app.len()).map(move |i| keys.pace_app(&p.id, i).to_string()))
            .collect();
        // Pauses come from their index, whatever the keyspace's size.
        let now_ms = now_us / 1000;
        let paused_now: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys.paused_index())
            .arg(now_ms)
            .arg("+inf")
            .arg("WITHSCORES")
            .query_async(&mut redis)
            .await?;
        let scanned = keyspace <= SCAN_KEYSPACE_LIMIT;
        if scanned {
            let mut cursor: u64 = 0;
            loop {
                let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(keys.pace_pattern())
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut redis)
                    .await?;
                for key in found {
                    if matches!(keys.parse_pace(&key), Some((_, PaceWindow::Connection { .. }))) {
                        pace_keys.push(key);
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        // One round trip for every window's TAT.
        let tats: Vec<Option<u64>> = if pace_keys.is_empty() {
            Vec::new()
        } else {
            let mut pipe = redis::pipe();
            for k in &pace_keys {
                pipe.cmd("GET").arg(k);
            }
            pipe.query_async(&mut redis).await?
        };
        let mut out = Vec::new();
        for p in catalog.providers() {
            let limits = &p.rate_limits;
            let app_windows = limits
                .per_app
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let key = keys.pace_app(&p.id, i);
                    let tat = pace_keys.iter().position(|k| k == key.as_str()).and_then(|at| tats[at]);
                    let (permits, capacity) = permits_now(w, tat, now_us);
                    WindowState { limit: describe(w), permits, capacity }
                })
                .collect();
            let mut busy = std::collections::BTreeSet::new();
            let mut exhausted = std::collections::BTreeSet::new();
            for (key, tat) in pace_keys.iter().zip(&tats) {
                let Some((provider, PaceWindow::Connection { connection: conn, window })) = keys.parse_pace(key) else {
                    continue;
                };
                let Some(w) = limits.per_connection.get(window).filter(|_| provider == p.id) else { continue };
                let (permits, capacity) = permits_now(w, *tat, now_us);
                if permits < capacity {
                    busy.insert(conn.to_string());
                }
                if permits == 0 {
                    exhausted.insert(conn.to_string());
                }
            }
            let pause_prefix = format!("{}:", p.id);
            let paused: Vec<Paused> = paused_now
                .iter()
                .filter_map(|(member, until)| {
                    let conn = member.strip_prefix(&pause_prefix)?;
                    Some(Paused { connection: conn.to_string(), until_ms: *until as u64 })
                })
                .collect();
            if limits.per_app.is_empty() && limits.per_connection.is_empty() && paused.is_empty() {
                continue;
            }
            out.push(PacingState {
                provider: p.id.clone(),
                name: p.name.clone(),
                app_windows,
                per_connection: limits.per_connection.iter().map(describe).collect(),
                busy_connections: busy.len(),
                exhausted_connections: exhausted.len(),
                paused,
            });
        }
        Ok((out, scanned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_follow_the_gcra_state() {
        let w = RateWindow { requests: 10, per_seconds: 1, burst: 4 };
        let (interval, _) = window_cells(&w);
        let now = 1_000_000_000;
        // An unused window (no key) grants its whole burst.
        assert_eq!(permits_now(&w, None, now), (5, 5));
        // Two cells taken just now.
        assert_eq!(permits_now(&w, Some(now + 2 * interval), now), (3, 5));
        // Every cell taken: nothing until the first one drains.
        assert_eq!(permits_now(&w, Some(now + 5 * interval), now), (0, 5));
        // A TAT in the past is a full window again.
        assert_eq!(permits_now(&w, Some(now - 10 * interval), now), (5, 5));
    }
}
