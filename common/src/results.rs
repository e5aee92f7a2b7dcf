//! Redis: where a finished execution's result waits for its caller, and the per-instance
//! channel that wakes the api instance whose caller is waiting.
//!
//! Keys and channels (spelled in `keys`):
//! - `<ns>:result:<execution id>` → JSON [`Outcome`], for the result TTL.
//! - `<ns>:lease:<execution id>` → the owner token of the one delivery working on the
//!   execution (a `lock::RedisLock`, renewed while the call runs; see the worker).
//! - `<ns>:notify:<api instance id>` → JSON [`Outcome`] of a sync call (the whole result,
//!   so the waiting caller needs no second round trip).
//! - `<ns>:done` → the execution id of a finished async call, heard by every api instance
//!   so a long poll (`GET /api/executions/{id}?waitMs=`) wakes at once; the poller then
//!   reads the result key. Only the id travels: a bulk backlog costs every instance
//!   36 bytes per call, not the results.
//!
//! Knows nothing about HTTP or the database.

use crate::codes::{ErrorCode, ErrorKind};
use crate::ids::ExecutionId;
use crate::keys::{self, Channel, Json, Keys, RedisKey, ResultKey};
use crate::status::ExecutionStatus;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalStatus {
    Succeeded,
    Failed,
}

impl FinalStatus {
    pub fn as_str(self) -> &'static str {
        ExecutionStatus::from(self).as_str()
    }
}

impl From<FinalStatus> for ExecutionStatus {
    fn from(s: FinalStatus) -> Self {
        match s {
            FinalStatus::Succeeded => ExecutionStatus::Succeeded,
            FinalStatus::Failed => ExecutionStatus::Failed,
        }
    }
}

/// Why an execution failed, as the agent sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeError {
    /// Always `code.kind()`; sent so an agent reads the same `type` as in the envelope.
    #[serde(rename = "type")]
    pub kind: ErrorKind,
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<u16>,
}

impl OutcomeError {
    pub fn new(code: ErrorCode, message: impl Into<String>, retryable: bool, provider_status: Option<u16>) -> Self {
        Self { kind: code.kind(), code, message: message.into(), retryable, provider_status }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeMeta {
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub started_at: Option<time::OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub ended_at: Option<time::OffsetDateTime>,
    pub duration_ms: u64,
    pub queue_wait_ms: u64,
    pub provider_ms: u64,
    pub attempts: u32,
    #[serde(default)]
    pub provider_request_id: Option<String>,
    #[serde(default)]
    pub provider_status: Option<u16>,
}

/// A finished execution: what the agent gets back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub execution_id: ExecutionId,
    pub status: FinalStatus,
    pub data: Option<serde_json::Value>,
    pub error: Option<OutcomeError>,
    pub meta: OutcomeMeta,
}

impl RedisKey for ResultKey {
    type Value = Outcome;
}

#[derive(Clone)]
pub struct ResultStore {
    conn: ConnectionManager,
    keys: Keys,
    ttl: Duration,
}

impl ResultStore {
    pub async fn connect(url: &str, namespace: &str, ttl: Duration) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self { conn, keys: Keys::new(namespace), ttl })
    }

    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn namespace(&self) -> &str {
        self.keys.namespace()
    }

    /// The names of this store's namespace.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Notes that attempt `attempt` of a write that may not be sent again blindly is going
    /// out; a later delivery that finds it knows that attempt's outcome is unknown.
    pub async fn mark_sent(&self, id: ExecutionId, attempt: u32) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        conn.set_ex(self.keys.sent(id), attempt, self.ttl.as_secs().max(1)).await
    }

    /// An answer said the write was not acted on: it may be sent again.
    pub async fn clear_sent(&self, id: ExecutionId) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        conn.del(self.keys.sent(id)).await
    }

    /// The attempt whose request went out with no answer recorded, if any.
    pub async fn sent_unanswered(&self, id: ExecutionId) -> redis::RedisResult<Option<u32>> {
        let mut conn = self.conn.clone();
        conn.get(self.keys.sent(id)).await
    }

    /// Stores the outcome and wakes whoever waits for it (the sync caller's instance, or
    /// any long poll of an async call), in one round trip.
    pub async fn publish(&self, outcome: &Outcome, reply_to: Option<&str>) -> redis::RedisResult<()> {
        let payload = Json::encode(outcome);
        let mut pipe = redis::pipe();
        let ttl = self.ttl.max(Duration::from_secs(1));
        keys::set_json(&mut pipe, &self.keys.result(outcome.execution_id), &payload, ttl).ignore();
        match reply_to {
            Some(instance) => pipe.publish(self.keys.notify_channel(instance), payload.as_bytes()).ignore(),
            None => pipe.publish(self.keys.done_channel(), outcome.execution_id.to_string()).ignore(),
        };
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await
    }

    pub async fn get(&self, id: ExecutionId) -> redis::RedisResult<Option<Outcome>> {
        let mut conn = self.conn.clone();
        keys::get_json(&mut conn, &self.keys.result(id)).await
    }
}

/// The callers of one api instance waiting for results, woken by the notify channels.
/// Several callers may wait for the same execution (a call and its replays, long polls).
#[derive(Clone, Default)]
pub struct Waiters {
    pending: Arc<Mutex<WaiterMap>>,
}

#[derive(Default)]
struct WaiterMap {
    next: u64,
    by_id: HashMap<ExecutionId, Vec<(u64, oneshot::Sender<Wake>)>>,
}

/// What wakes a waiter: the outcome itself, or word that it is stored (read it).
#[derive(Debug)]
pub enum Wake {
    Outcome(Outcome),
    Stored,
}

/// Removes the waiter when the caller stops waiting (answered, timed out or gone).
pub struct WaitGuard {
    waiters: Waiters,
    id: ExecutionId,
    token: u64,
    pub receiver: oneshot::Receiver<Wake>,
}

impl WaitGuard {
    pub fn id(&self) -> ExecutionId {
        self.id
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut map = self.waiters.pending.lock().expect("waiters lock");
        if let Some(list) = map.by_id.get_mut(&self.id) {
            list.retain(|(token, _)| *token != self.token);
            if list.is_empty() {
                map.by_id.remove(&self.id);
            }
        }
    }
}

impl Waiters {
    /// Registers interest in `id`. Register before publishing the job (or before the
    /// last look at the result store) so a fast result cannot arrive unobserved.
    pub fn register(&self, id: ExecutionId) -> WaitGuard {
        let (tx, rx) = oneshot::channel();
        let mut map = self.pending.lock().expect("waiters lock");
        map.next += 1;
        let token = map.next;
        map.by_id.entry(id).or_default().push((token, tx));
        WaitGuard { waiters: self.clone(), id, token, receiver: rx }
    }

    /// Executions waited for.
    pub fn len(&self) -> usize {
        self.pending.lock().expect("waiters lock").by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn deliver(&self, id: ExecutionId, wake: impl Fn() -> Wake) {
        let senders = self.pending.lock().expect("waiters lock").by_id.remove(&id);
        for (_, sender) in senders.into_iter().flatten() {
            let _ = sender.send(wake());
        }
    }

    fn on_message(&self, channel: &str, payload: &[u8]) {
        if channel.ends_with(":done") {
            if let Some(id) = std::str::from_utf8(payload).ok().and_then(|s| s.parse::<ExecutionId>().ok()) {
                self.deliver(id, || Wake::Stored);
            }
        } else if let Ok(outcome) = serde_json::from_slice::<Outcome>(payload) {
            self.deliver(outcome.execution_id, || Wake::Outcome(outcome.clone()));
        }
    }

    /// Subscribes to `channels` (this instance's notify channel and the namespace's done
    /// channel) and delivers results until `stop`. Reconnects after Redis restarts; a
    /// result published while disconnected is still in its key, which waiters re-check
    /// (see the api's wait loop).
    pub async fn listen(
        self,
        redis_url: String,
        channels: Vec<Channel>,
        ready: Option<oneshot::Sender<()>>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut ready = ready;
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                let client = redis::Client::open(redis_url.as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channels).await?;
                redis::RedisResult::Ok(pubsub)
            };
            match attempt.await {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(100);
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                    tracing::debug!(?channels, "listening for results");
                    let mut stream = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            msg = stream.next() => match msg {
                                Some(msg) => self.on_message(msg.get_channel_name(), msg.get_payload_bytes()),
                                None => break,
                            }
                        }
                    }
                    tracing::warn!(?channels, "result channels closed; reconnecting");
                }
                Err(err) => tracing::warn!(error = %err, "cannot subscribe to results; retrying"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
