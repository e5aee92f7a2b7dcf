//! RabbitMQ: the topology, the typed job message, a publisher with confirms, and the
//! consumer side's delivery handling.
//!
//! Topology (every name prefixed by the namespace):
//! - `<ns>.interactive` and `<ns>.bulk`: quorum work queues. Sync calls go to the
//!   interactive lane and async calls to the bulk lane, each consumed with its own
//!   budget, so a bulk backlog never delays an agent that is waiting.
//! - `<ns>.delay.<lane>.<secs>s`: quorum queues without consumers whose messages expire
//!   after a fixed TTL and are dead-lettered back to their lane: long retry waits travel
//!   here instead of holding a worker slot.
//! - `<ns>.dead`: where a message goes after its delivery limit, or when it cannot be
//!   parsed. Nothing is dropped silently; the admin view can replay it.
//!
//! Messages carry ids only, never secrets or arguments. Knows nothing about executions'
//! storage or HTTP.

use crate::ids::ExecutionId;
use lapin::options::{BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A lane of work. Interactive: someone is waiting. Bulk: async, fire-and-poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    Interactive,
    Bulk,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Interactive, Lane::Bulk];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Interactive => "interactive",
            Lane::Bulk => "bulk",
        }
    }

    pub fn parse(s: &str) -> Option<Lane> {
        match s {
            "interactive" => Some(Lane::Interactive),
            "bulk" => Some(Lane::Bulk),
            _ => None,
        }
    }
}

/// The job message. Versioned variants so old messages in flight survive a deploy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Job {
    /// Execute one tool call; everything else is read from its `executions` row.
    #[serde(rename = "execute.v1")]
    ExecuteV1 {
        #[serde(rename = "executionId")]
        execution_id: ExecutionId,
        /// The api instance whose caller waits for the result, if any.
        #[serde(rename = "replyTo", default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
    },
}

/// Retry waits above the worker's inline limit are rounded up to one of these tiers.
pub const DELAY_TIERS_SECS: [u64; 5] = [2, 5, 30, 120, 600];

/// How many times a message may be delivered before it is dead-lettered. Each delivery
/// that dies with its worker counts; an execution's own retries are separate messages.
pub const DELIVERY_LIMIT: i64 = 5;

#[derive(Clone, Debug)]
pub struct Topology {
    namespace: String,
}

impl Topology {
    pub fn new(namespace: &str) -> Self {
        Self { namespace: namespace.to_string() }
    }

    pub fn work_queue(&self, lane: Lane) -> String {
        format!("{}.{}", self.namespace, lane.as_str())
    }

    pub fn delay_queue(&self, lane: Lane, secs: u64) -> String {
        format!("{}.delay.{}.{}s", self.namespace, lane.as_str(), secs)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.namespace)
    }

    /// The smallest delay tier at least `wait` long (the longest tier if none is).
    pub fn delay_tier(wait: Duration) -> u64 {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        DELAY_TIERS_SECS.iter().copied().find(|t| *t >= secs).unwrap_or(DELAY_TIERS_SECS[DELAY_TIERS_SECS.len() - 1])
    }

    /// Declares every queue. Idempotent: the same arguments each time.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        let quorum = |extra: Vec<(&str, AMQPValue)>| {
            let mut t = FieldTable::default();
            t.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
            for (k, v) in extra {
                t.insert(ShortString::from(k), v);
            }
            t
        };
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));

        channel.queue_declare(self.dead_letter_queue().as_str().into(), durable, quorum(vec![])).await?;
        for lane in Lane::ALL {
            // Work queue: dead-letter to <ns>.dead after DELIVERY_LIMIT deliveries, or on
            // reject without requeue (a message we cannot parse). at-least-once
            // dead-lettering (RabbitMQ ≥ 3.10) so a dead letter is never lost in transit;
            // it requires overflow=reject-publish.
            let args = quorum(vec![
                ("x-delivery-limit", AMQPValue::LongLongInt(DELIVERY_LIMIT)),
                ("x-dead-letter-exchange", text("")),
                ("x-dead-letter-routing-key", text(&self.dead_letter_queue())),
                ("x-dead-letter-strategy", text("at-least-once")),
                ("x-overflow", text("reject-publish")),
            ]);
            channel.queue_declare(self.work_queue(lane).as_str().into(), durable, args).await?;
            for secs in DELAY_TIERS_SECS {
                let args = quorum(vec![
                    ("x-message-ttl", AMQPValue::LongLongInt((secs * 1000) as i64)),
                    ("x-dead-letter-exchange", text("")),
                    ("x-dead-letter-routing-key", text(&self.work_queue(lane))),
                    ("x-dead-letter-strategy", text("at-least-once")),
                    ("x-overflow", text("reject-publish")),
                ]);
                channel.queue_declare(self.delay_queue(lane, secs).as_str().into(), durable, args).await?;
            }
        }
        Ok(())
    }
}

impl Topology {
    /// Declares every queue on a fresh channel, retrying: when several processes start at
    /// once they race to create the same quorum queues, and RabbitMQ answers the losers
    /// with NOT_FOUND ("home node … down or inaccessible") until creation settles. Each
    /// attempt needs a new channel because the error closes the old one.
    pub async fn declare_on(&self, connection: &Connection) -> Result<(), lapin::Error> {
        let mut attempt = 0u32;
        loop {
            let channel = connection.create_channel().await?;
            match self.declare(&channel).await {
                Ok(()) => {
                    let _ = channel.close(200, "declared".into()).await;
                    return Ok(());
                }
                Err(err) if attempt < 10 => {
                    attempt += 1;
                    tracing::info!(error = %err, attempt, "queue declaration raced another process; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// Opens a connection with lapin's automatic recovery: channels, queues and consumers
/// are re-established after a broker restart or a network cut.
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name)).enable_auto_recover();
    Connection::connect(url, props).await
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker could not route the message to {0}")]
    Unroutable(String),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("the broker is unreachable: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the message could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the broker did not confirm the message within {0:?}")]
    Timeout(Duration),
}

/// The longest a publish may wait for the channel to come back and the broker to confirm.
/// After a broker restart with publishes in flight lapin's recovery may never complete
/// (amqp-rs/lapin#450); without a bound every caller would hang. Past it the publish is
/// reported as failed (ambiguous, like any unconfirmed publish: see `publish_raw`).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes jobs with publisher confirms and `mandatory`, so a publish either reached a
/// queue or is reported as an error — never silently lost. Many publishes may be in
/// flight on the one channel at once; each awaits its own confirm.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    topology: Topology,
}

impl Publisher {
    pub async fn new(connection: &Connection, topology: Topology) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Self { channel, topology })
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub async fn publish(&self, lane: Lane, job: &Job) -> Result<(), PublishError> {
        self.publish_to(&self.topology.work_queue(lane), job).await
    }

    /// Sends `job` back to `lane` after at least `wait`, through a delay queue.
    pub async fn publish_delayed(&self, lane: Lane, job: &Job, wait: Duration) -> Result<(), PublishError> {
        let queue = self.topology.delay_queue(lane, Topology::delay_tier(wait));
        self.publish_to(&queue, job).await
    }

    pub async fn publish_to(&self, queue: &str, job: &Job) -> Result<(), PublishError> {
        let payload = serde_json::to_vec(job)?;
        self.publish_raw(queue, &payload).await
    }

    pub async fn publish_raw(&self, queue: &str, payload: &[u8]) -> Result<(), PublishError> {
        tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_confirmed(queue, payload))
            .await
            .unwrap_or(Err(PublishError::Timeout(PUBLISH_TIMEOUT)))
    }

    async fn publish_confirmed(&self, queue: &str, payload: &[u8]) -> Result<(), PublishError> {
        let props = BasicProperties::default()
            .with_delivery_mode(2) // persistent: survives a broker restart
            .with_content_type(ShortString::from("application/json"));
        let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
        let confirm = match self.channel.basic_publish("".into(), queue.into(), opts, payload, props.clone()).await {
            Ok(confirm) => confirm,
            // The channel was down before anything was sent: after recovery, sending once
            // more cannot duplicate.
            Err(err) => {
                self.channel.wait_for_recovery(err).await?;
                self.channel.basic_publish("".into(), queue.into(), opts, payload, props).await?
            }
        };
        // A failure here is ambiguous (the message may have been queued); the caller must
        // treat it as not queued *and* make a late delivery harmless.
        let confirmation = confirm.await?;
        if confirmation.is_nack() {
            return Err(PublishError::Nacked);
        }
        if confirmation.take_message().is_some() {
            return Err(PublishError::Unroutable(queue.to_string()));
        }
        Ok(())
    }
}

/// Opens a consuming channel with `prefetch` unacknowledged deliveries at most.
pub async fn consumer_channel(connection: &Connection, prefetch: u16) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_wire_format_is_stable() {
        let id: ExecutionId = "0192f0c0-0000-7000-8000-000000000001".parse().unwrap();
        let job = Job::ExecuteV1 { execution_id: id, reply_to: Some("api-1".into()) };
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(
            text,
            r#"{"type":"execute.v1","executionId":"0192f0c0-0000-7000-8000-000000000001","replyTo":"api-1"}"#
        );
        assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), job);
    }

    #[test]
    fn delay_tiers_round_up() {
        assert_eq!(Topology::delay_tier(Duration::from_millis(1500)), 2);
        assert_eq!(Topology::delay_tier(Duration::from_secs(6)), 30);
        assert_eq!(Topology::delay_tier(Duration::from_secs(5000)), 600);
    }
}
