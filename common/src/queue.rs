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
use crate::secret::SecretString;
use lapin::options::{BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A lane of work. Interactive: someone is waiting. Bulk: async, fire-and-poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
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

/// Opens a connection without lapin's automatic recovery. After a broker restart under
/// load that recovery can stall forever (amqp-rs/lapin#450: the I/O thread spins, nothing
/// is published or consumed again); a dead connection is instead replaced by a fresh one
/// (`Link::renew`), which re-declares the topology, and its users open new channels.
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    Connection::connect(url, props).await
}

/// One address of the broker list: its URL (which may hold a password) and what logs
/// and errors show of it (`host:port`, never the user or password).
#[derive(Clone)]
struct BrokerAddress {
    url: SecretString,
    shown: String,
}

/// The brokers a process may connect to: `CLAWLINK_AMQP_URL` holds one URL, or several
/// separated by commas (the nodes of a cluster). Connections try them in turn, starting
/// with the one that last worked (`Link`). `Debug` shows `host:port` only.
#[derive(Clone)]
pub struct BrokerAddresses {
    list: Vec<BrokerAddress>,
}

impl BrokerAddresses {
    /// Parses one URL or a comma-separated list. Each must be `amqp://` or `amqps://` with
    /// a host; an error names the entry by position and host, never its password.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut list = Vec::new();
        for (i, entry) in raw.split(',').map(str::trim).enumerate() {
            let position = i + 1;
            if entry.is_empty() {
                return Err(format!("address {position} of the list is empty"));
            }
            let url = url::Url::parse(entry).map_err(|e| format!("address {position} is not a URL ({e})"))?;
            if !matches!(url.scheme(), "amqp" | "amqps") {
                return Err(format!("address {position}: expected a URL with scheme amqp or amqps"));
            }
            let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
                return Err(format!("address {position}: the URL has no host"));
            };
            let port = url.port().unwrap_or(if url.scheme() == "amqps" { 5671 } else { 5672 });
            list.push(BrokerAddress {
                url: SecretString::new(entry.trim_end_matches('/')),
                shown: format!("{host}:{port}"),
            });
        }
        Ok(Self { list })
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// What logs show of address `i`: `host:port`.
    pub fn shown(&self, i: usize) -> &str {
        &self.list[i % self.list.len()].shown
    }

    /// The URL of address `i`, to connect with. Never log it.
    pub fn url(&self, i: usize) -> &str {
        self.list[i % self.list.len()].url.expose()
    }

    /// Every address once, starting with `first` and going round the list.
    pub fn order(&self, first: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.list.len();
        (0..n).map(move |k| (first + k) % n)
    }
}

impl std::fmt::Debug for BrokerAddresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.list.iter().map(|a| &a.shown)).finish()
    }
}

/// No address of the list gave a connection (with the topology declared on it).
#[derive(Debug, thiserror::Error)]
#[error("no broker address answered: {0}")]
pub struct NoBroker(String);

/// How long opening a connection to one address (and declaring the topology on it) may
/// take before that address is given up for this round and the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Tries each address once, from `first` on; returns the first connection that opened
/// with the topology declared on it, and its address's position.
async fn open_any(
    addresses: &BrokerAddresses,
    first: usize,
    name: &str,
    topology: &Topology,
) -> Result<(usize, Connection), NoBroker> {
    let mut errors = Vec::new();
    for i in addresses.order(first) {
        let attempt = async {
            let connection = connect(addresses.url(i), name).await?;
            topology.declare_on(&connection).await?;
            Ok::<_, lapin::Error>(connection)
        };
        let error = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(connection)) => return Ok((i, connection)),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
        };
        if addresses.len() > 1 {
            tracing::warn!(
                dependency = "rabbitmq",
                address = addresses.shown(i),
                error,
                "broker address failed; trying the next"
            );
        }
        errors.push(format!("{}: {error}", addresses.shown(i)));
    }
    Err(NoBroker(errors.join("; ")))
}

/// Opens one connection to the first address of the list that answers, without declaring
/// anything (the web front's admin view reads queues that others declare).
pub async fn connect_any(addresses: &BrokerAddresses, name: &str) -> Result<Connection, NoBroker> {
    let mut errors = Vec::new();
    for i in addresses.order(0) {
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(addresses.url(i), name)).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(err)) => errors.push(format!("{}: {err}", addresses.shown(i))),
            Err(_) => errors.push(format!("{}: no answer within {CONNECT_TIMEOUT:?}", addresses.shown(i))),
        }
    }
    Err(NoBroker(errors.join("; ")))
}

/// The process's link to the broker: the current connection and its generation. Whoever
/// finds the connection unusable calls `renew` with the generation it used; the first
/// caller drops that connection (without waiting on it) and opens a new one, the others
/// get the new one. Channels are their users' business.
///
/// With several addresses (a cluster), a renewal tries them in turn, starting with the
/// one that last worked and moving on when one refuses or does not answer within
/// `CONNECT_TIMEOUT`; after a whole round without a connection it backs off and goes
/// round again.
pub struct Link {
    addresses: BrokerAddresses,
    /// The position of the address that last gave a connection.
    last_good: std::sync::atomic::AtomicUsize,
    name: String,
    topology: Topology,
    current: std::sync::RwLock<(u64, Arc<Connection>)>,
    renewing: tokio::sync::Mutex<()>,
}

impl Link {
    /// Wraps an open connection to address `address` of `addresses`, on which
    /// `topology` is declared.
    pub fn new(
        connection: Connection,
        addresses: BrokerAddresses,
        address: usize,
        name: &str,
        topology: Topology,
    ) -> Arc<Self> {
        Arc::new(Self {
            addresses,
            last_good: std::sync::atomic::AtomicUsize::new(address),
            name: name.to_string(),
            topology,
            current: std::sync::RwLock::new((0, Arc::new(connection))),
            renewing: tokio::sync::Mutex::new(()),
        })
    }

    /// Connects to the first address that answers (in list order) and declares
    /// `topology` there.
    pub async fn open(addresses: &BrokerAddresses, name: &str, topology: Topology) -> Result<Arc<Self>, NoBroker> {
        let (address, connection) = open_any(addresses, 0, name, &topology).await?;
        tracing::info!(address = addresses.shown(address), "connected to the broker");
        Ok(Self::new(connection, addresses.clone(), address, name, topology))
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The current connection and its generation.
    pub fn current(&self) -> (u64, Arc<Connection>) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (current.0, current.1.clone())
    }

    pub fn connected(&self) -> bool {
        self.current().1.status().connected()
    }

    /// `host:port` of the address the current connection goes to.
    pub fn address(&self) -> &str {
        self.addresses.shown(self.last_good.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Replaces connection `generation` by a fresh one (topology declared), retrying with
    /// backoff until a broker of the list answers; returns the new connection. When
    /// `generation` was replaced already, returns the current one at once.
    pub async fn renew(&self, generation: u64, reason: &str) -> (u64, Arc<Connection>) {
        let _renewing = self.renewing.lock().await;
        let (current, old) = self.current();
        if current != generation {
            return (current, old);
        }
        tracing::warn!(generation, reason, address = self.address(), "replacing the broker connection");
        // Close the old connection in the background: a stuck one may never answer.
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), old.close(200, "replaced".into())).await;
        });
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let first = self.last_good.load(std::sync::atomic::Ordering::Relaxed);
            match open_any(&self.addresses, first, &self.name, &self.topology).await {
                Ok((address, connection)) => {
                    let connection = Arc::new(connection);
                    let next = generation + 1;
                    self.last_good.store(address, std::sync::atomic::Ordering::Relaxed);
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = (next, connection.clone());
                    tracing::info!(
                        generation = next,
                        address = self.addresses.shown(address),
                        after_ms = started.elapsed().as_millis() as u64,
                        "broker connection replaced"
                    );
                    return (next, connection);
                }
                Err(err) => {
                    tracing::warn!(
                        dependency = "rabbitmq",
                        error = %err,
                        retry_in_ms = delay.as_millis() as u64,
                        "waiting for the broker to open a new connection"
                    );
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Closes the current connection (at shutdown).
    pub async fn close(&self, reason: &str) {
        let (_, connection) = self.current();
        let _ = tokio::time::timeout(Duration::from_secs(5), connection.close(200, reason.into())).await;
    }
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

/// The longest a publish may wait for a usable channel and the broker's confirm. Past it
/// the publish is reported as failed (ambiguous, like any unconfirmed publish: see
/// `publish_raw`) and the connection is replaced.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long opening a channel on a connection that reports itself connected may take
/// before the connection is taken for stuck and replaced.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes jobs with publisher confirms and `mandatory`, so a publish either reached a
/// queue or is reported as an error — never silently lost. Many publishes may be in
/// flight on the one channel at once; each awaits its own confirm. When the channel fails
/// the publisher opens a new one (on a new connection when the old one is dead or stuck);
/// concurrent failing publishes share that one renewal.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<PublisherInner>,
}

struct PublisherInner {
    link: Arc<Link>,
    /// The confirm channel and its generation (this publisher's own count).
    channel: std::sync::RwLock<(u64, Channel)>,
    renewing: tokio::sync::Mutex<()>,
}

async fn confirm_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(channel)
}

impl PublisherInner {
    fn current(&self) -> (u64, Channel) {
        let current = self.channel.read().unwrap_or_else(|e| e.into_inner());
        (current.0, current.1.clone())
    }

    /// Replaces channel `generation` unless that was done already. `stuck`: the channel
    /// did not answer, so its connection is replaced too even if it claims to be up.
    async fn renew(&self, generation: u64, mut stuck: bool) {
        let _renewing = self.renewing.lock().await;
        if self.current().0 != generation {
            return;
        }
        loop {
            let (mut link_generation, mut connection) = self.link.current();
            if stuck || !connection.status().connected() {
                (link_generation, connection) = self.link.renew(link_generation, "publisher channel failed").await;
            }
            match tokio::time::timeout(CHANNEL_TIMEOUT, confirm_channel(&connection)).await {
                Ok(Ok(channel)) => {
                    *self.channel.write().unwrap_or_else(|e| e.into_inner()) = (generation + 1, channel);
                    tracing::info!(connection = link_generation, "publisher channel reopened");
                    return;
                }
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cannot open a publisher channel; replacing the connection")
                }
                Err(_) => tracing::warn!("opening a publisher channel timed out; replacing the connection"),
            }
            stuck = true;
        }
    }

    /// Renews in a task of its own, so a caller that gives up (its publish timed out) does
    /// not cancel the renewal others wait for.
    fn renew_in_background(self: &Arc<Self>, generation: u64, stuck: bool) -> tokio::task::JoinHandle<()> {
        let inner = self.clone();
        tokio::spawn(async move { inner.renew(generation, stuck).await })
    }
}

impl Publisher {
    pub async fn new(link: Arc<Link>) -> Result<Self, lapin::Error> {
        let channel = confirm_channel(&link.current().1).await?;
        Ok(Self {
            inner: Arc::new(PublisherInner {
                link,
                channel: std::sync::RwLock::new((0, channel)),
                renewing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn topology(&self) -> &Topology {
        self.inner.link.topology()
    }

    pub fn link(&self) -> &Arc<Link> {
        &self.inner.link
    }

    pub async fn publish(&self, lane: Lane, job: &Job) -> Result<(), PublishError> {
        self.publish_to(&self.topology().work_queue(lane), job).await
    }

    /// Sends `job` back to `lane` after at least `wait`, through a delay queue.
    pub async fn publish_delayed(&self, lane: Lane, job: &Job, wait: Duration) -> Result<(), PublishError> {
        let queue = self.topology().delay_queue(lane, Topology::delay_tier(wait));
        self.publish_to(&queue, job).await
    }

    pub async fn publish_to(&self, queue: &str, job: &Job) -> Result<(), PublishError> {
        let payload = serde_json::to_vec(job)?;
        self.publish_raw(queue, &payload).await
    }

    pub async fn publish_raw(&self, queue: &str, payload: &[u8]) -> Result<(), PublishError> {
        let generation = self.inner.current().0;
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_confirmed(queue, payload)).await {
            Ok(result) => result,
            Err(_) => {
                // No answer: the channel or its connection is stuck. Replace both.
                drop(self.inner.renew_in_background(generation, true));
                Err(PublishError::Timeout(PUBLISH_TIMEOUT))
            }
        }
    }

    async fn publish_confirmed(&self, queue: &str, payload: &[u8]) -> Result<(), PublishError> {
        let (generation, result) = self.publish_attempt(queue, payload).await;
        if !matches!(result, Err(PublishError::Nacked)) {
            return result;
        }
        // A nack: the broker says it did not take the message. On a cluster, a channel whose
        // queue client still points at a killed leader nacked every publish to that queue
        // for as long as it lived (RabbitMQ 3.10, `ha::killing_the_node_that_leads_the_lanes…`);
        // a new channel starts from the current leader. Sending again cannot do harm: were
        // the first copy queued after all, its second delivery finds the execution leased
        // or final.
        tracing::warn!(queue, "the broker refused a publish (nack); sending it once more on a new channel");
        let _ = self.inner.renew_in_background(generation, false).await;
        self.publish_attempt(queue, payload).await.1
    }

    /// One publish on the current channel (reopened once when it was down before anything
    /// was sent); returns the generation of the channel that was used.
    async fn publish_attempt(&self, queue: &str, payload: &[u8]) -> (u64, Result<(), PublishError>) {
        let props = BasicProperties::default()
            .with_delivery_mode(2) // persistent: survives a broker restart
            .with_content_type(ShortString::from("application/json"));
        let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
        let (mut generation, mut channel) = self.inner.current();
        let confirm = match channel.basic_publish("".into(), queue.into(), opts, payload, props.clone()).await {
            Ok(confirm) => confirm,
            // The channel was down before anything was sent: on a new channel, sending once
            // more cannot duplicate.
            Err(err) => {
                tracing::warn!(error = %err, "publisher channel unusable; reopening it");
                let _ = self.inner.renew_in_background(generation, false).await;
                (generation, channel) = self.inner.current();
                match channel.basic_publish("".into(), queue.into(), opts, payload, props).await {
                    Ok(confirm) => confirm,
                    Err(err) => {
                        drop(self.inner.renew_in_background(generation, false));
                        return (generation, Err(err.into()));
                    }
                }
            }
        };
        // A failure here is ambiguous (the message may have been queued); the caller must
        // treat it as not queued *and* make a late delivery harmless.
        let confirmation = match confirm.await {
            Ok(confirmation) => confirmation,
            Err(err) => {
                drop(self.inner.renew_in_background(generation, false));
                return (generation, Err(err.into()));
            }
        };
        if confirmation.is_nack() {
            return (generation, Err(PublishError::Nacked));
        }
        if confirmation.take_message().is_some() {
            return (generation, Err(PublishError::Unroutable(queue.to_string())));
        }
        (generation, Ok(()))
    }
}

/// Publishes `payload` to `queue` once, with confirms and `mandatory`, on a channel of its
/// own (the admin's replay: one message now and then, on a connection of its own).
pub async fn publish_once(connection: &Connection, queue: &str, payload: &[u8]) -> Result<(), PublishError> {
    let attempt = async {
        let channel = confirm_channel(connection).await?;
        let props =
            BasicProperties::default().with_delivery_mode(2).with_content_type(ShortString::from("application/json"));
        let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
        let confirmation = channel.basic_publish("".into(), queue.into(), opts, payload, props).await?.await?;
        let _ = channel.close(200, "published".into()).await;
        if confirmation.is_nack() {
            return Err(PublishError::Nacked);
        }
        if confirmation.take_message().is_some() {
            return Err(PublishError::Unroutable(queue.to_string()));
        }
        Ok(())
    };
    tokio::time::timeout(PUBLISH_TIMEOUT, attempt).await.unwrap_or(Err(PublishError::Timeout(PUBLISH_TIMEOUT)))
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
    fn one_broker_url_or_a_list_of_them() {
        let one = BrokerAddresses::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!((one.len(), one.shown(0)), (1, "127.0.0.1:5672"));
        assert_eq!(one.url(0), "amqp://guest:guest@127.0.0.1:5672/%2f");
        let three = BrokerAddresses::parse(
            "amqp://u:s3cret@rabbit-0:5672/%2f, amqp://u:s3cret@rabbit-1/%2f ,amqps://u:s3cret@rabbit-2.example",
        )
        .unwrap();
        assert_eq!(three.len(), 3);
        assert_eq!(
            [three.shown(0), three.shown(1), three.shown(2)],
            ["rabbit-0:5672", "rabbit-1:5672", "rabbit-2.example:5671"]
        );
        assert_eq!(three.url(1), "amqp://u:s3cret@rabbit-1/%2f");
        // What logs show of the list never holds the password.
        let shown = format!("{three:?}");
        assert!(!shown.contains("s3cret") && shown.contains("rabbit-2.example:5671"), "{shown}");
    }

    #[test]
    fn a_bad_broker_address_is_named_without_its_password() {
        for (raw, says) in [
            ("amqp://u:s3cret@a:5672,", "address 2 of the list is empty"),
            ("amqp://u:s3cret@a:5672,http://u:s3cret@b", "address 2: expected a URL with scheme amqp"),
            ("u:s3cret@a", "address 1: expected a URL with scheme amqp"),
            ("amqp://u:s3cret@/%2f", "address 1 is not a URL (empty host)"),
            ("amqp://u:s3cret@a,amqp://u:s3cret@b:99999", "address 2 is not a URL"),
        ] {
            let err = BrokerAddresses::parse(raw).unwrap_err();
            assert!(err.contains(says), "{raw}: {err}");
            assert!(!err.contains("s3cret"), "{raw}: {err}");
        }
    }

    #[test]
    fn addresses_are_tried_from_the_last_good_one_round_the_list() {
        let list = BrokerAddresses::parse("amqp://a,amqp://b,amqp://c").unwrap();
        assert_eq!(list.order(0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(list.order(1).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(list.order(2).collect::<Vec<_>>(), [2, 0, 1]);
        let one = BrokerAddresses::parse("amqp://a").unwrap();
        assert_eq!(one.order(0).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn delay_tiers_round_up() {
        assert_eq!(Topology::delay_tier(Duration::from_millis(1500)), 2);
        assert_eq!(Topology::delay_tier(Duration::from_secs(6)), 30);
        assert_eq!(Topology::delay_tier(Duration::from_secs(5000)), 600);
    }
}
