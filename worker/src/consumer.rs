//! The consumer loop: one channel per lane, each with its own prefetch, so the bulk lane
//! can never take the slots the interactive lane needs. A delivery owns its ack.
//!
//! Prefetch equals the lane's concurrency: the broker hands us exactly as many messages
//! as we will work on at once, so none sit unacknowledged in a busy worker while another
//! worker is idle, and a crash returns at most that many to the queue.

use crate::execute::{Disposition, Executor};
use clawlink_common::ids::ExecutionId;
use clawlink_common::queue::{Job, Lane, Link, Topology, consumer_channel};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// A lane that stopped consuming. Its channel must outlive the lane's in-flight calls:
/// they ack on it, and dropping it (or the consumer) closes the channel, which hands
/// their messages back to the broker — finished calls included — and turns their acks
/// into no-ops. Drop it once the in-flight calls are done. Empty when the lane was
/// stopped while it had no channel (its connection being replaced).
pub struct StoppedLane {
    _channel: Option<lapin::Channel>,
    _consumer: Option<lapin::Consumer>,
}

impl StoppedLane {
    fn open(channel: lapin::Channel, consumer: lapin::Consumer) -> Self {
        Self { _channel: Some(channel), _consumer: Some(consumer) }
    }

    fn empty() -> Self {
        Self { _channel: None, _consumer: None }
    }
}

/// How long opening a channel and consumer may take before the connection is taken for
/// stuck and replaced.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a consumer's channel may report itself down, without its stream saying so,
/// before the lane gives up on it and its connection.
const DOWN_LIMIT: Duration = Duration::from_secs(10);

/// Consumes `lane` until `stop`, starting each call on `tracker`; then cancels the
/// consumer (the broker sends no more) and returns the still-open channel.
///
/// The lane never waits on lapin's recovery (it is off: see `queue::connect`). When the
/// broker closes the lane's channel on its own (a delivery past the consumer timeout:
/// PRECONDITION_FAILED) the lane opens a new channel on the same connection; when the
/// connection is dead or stuck, it has the link replace the connection and consumes on
/// the new one. Deliveries not acked on the old channel are handed out again by the
/// broker; the execution's lease and final-row checks keep them from running twice.
pub async fn consume_lane(
    executor: Arc<Executor>,
    link: &Link,
    lane: Lane,
    prefetch: u16,
    consumer_tag: String,
    tracker: TaskTracker,
    stop: CancellationToken,
) -> Result<StoppedLane, lapin::Error> {
    let mut failures = 0u32;
    // The connection generation to replace before consuming again, if any.
    let mut replace: Option<u64> = None;
    'channel: loop {
        if stop.is_cancelled() {
            return Ok(StoppedLane::empty());
        }
        let (generation, connection) = match replace.take() {
            Some(generation) => tokio::select! {
                _ = stop.cancelled() => return Ok(StoppedLane::empty()),
                renewed = link.renew(generation, "a consumer's connection is down") => renewed,
            },
            None => link.current(),
        };
        let opened = tokio::select! {
            _ = stop.cancelled() => return Ok(StoppedLane::empty()),
            opened = tokio::time::timeout(
                OPEN_TIMEOUT,
                open_consumer(&connection, link.topology(), lane, prefetch, &consumer_tag),
            ) => opened,
        };
        let (channel, mut consumer) = match opened {
            Ok(Ok(opened)) => opened,
            failed => {
                failures += 1;
                let timed_out = failed.is_err();
                let error = match failed {
                    Err(_) => format!("no answer within {OPEN_TIMEOUT:?}"),
                    Ok(Err(err)) => err.to_string(),
                    Ok(Ok(_)) => unreachable!(),
                };
                tracing::warn!(error, lane = lane.as_str(), attempt = failures, "cannot consume yet");
                // A dead connection, a stuck one, or a channel refused twice: replace it.
                if !connection.status().connected() || timed_out || failures >= 2 {
                    replace = Some(generation);
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))).await;
                continue 'channel;
            }
        };
        tracing::info!(lane = lane.as_str(), prefetch, connection = generation, "consuming");
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut down_since: Option<tokio::time::Instant> = None;
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => {
                    // Stop taking new work; in-flight calls finish and ack on this same channel.
                    let _ = channel.basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default()).await;
                    return Ok(StoppedLane::open(channel, consumer));
                }
                _ = check.tick() => {
                    // A channel that says it is down while its stream says nothing.
                    if channel.status().connected() && connection.status().connected() {
                        down_since = None;
                        continue;
                    }
                    let since = *down_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() < DOWN_LIMIT {
                        continue;
                    }
                    tracing::warn!(lane = lane.as_str(), "consumer channel down too long; replacing the connection");
                    replace = Some(generation);
                    continue 'channel;
                }
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    failures = 0;
                    let executor = executor.clone();
                    executor.metrics.inflight.inc();
                    tracker.spawn(async move {
                        handle(&executor, delivery, lane).await;
                        executor.metrics.inflight.dec();
                    });
                }
                interrupted => {
                    // Deliveries not acked before the failure will be redelivered.
                    let error = match interrupted {
                        Some(Err(err)) => err.to_string(),
                        _ => "the consumer ended".to_string(),
                    };
                    failures += 1;
                    let connection_down = !connection.status().connected();
                    tracing::warn!(
                        error,
                        lane = lane.as_str(),
                        connection_down,
                        "consumer interrupted; consuming again on a new channel"
                    );
                    if connection_down || failures >= 3 {
                        replace = Some(generation);
                    }
                    continue 'channel;
                }
            }
        }
    }
}

async fn open_consumer(
    connection: &lapin::Connection,
    topology: &Topology,
    lane: Lane,
    prefetch: u16,
    consumer_tag: &str,
) -> Result<(lapin::Channel, lapin::Consumer), lapin::Error> {
    let channel = consumer_channel(connection, prefetch).await?;
    let consumer = channel
        .basic_consume(
            topology.work_queue(lane).as_str().into(),
            consumer_tag.into(),
            BasicConsumeOptions::default(), // manual acks: no_ack = false
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

async fn handle(executor: &Executor, delivery: Delivery, lane: Lane) {
    let job = match serde_json::from_slice::<Job>(&delivery.data) {
        Ok(job) => job,
        Err(err) => {
            tracing::error!(error = %err, bytes = delivery.data.len(), "unreadable message; dead-lettering it");
            let _ = delivery.acker.reject(BasicRejectOptions { requeue: false }).await;
            return;
        }
    };
    let Job::ExecuteV1 { execution_id, reply_to } = job;
    // Every log line of this delivery names the execution, acks and retries included.
    let span = tracing::info_span!("delivery", %execution_id, lane = lane.as_str(), redelivered = delivery.redelivered);
    deliver(executor, delivery, execution_id, reply_to, lane).instrument(span).await
}

async fn deliver(
    executor: &Executor,
    delivery: Delivery,
    execution_id: ExecutionId,
    reply_to: Option<String>,
    lane: Lane,
) {
    // Interactive calls first: a bulk call waits for its turn (its message stays unacked).
    let (_interactive, _bulk) = match lane {
        Lane::Interactive => (Some(executor.lanes.interactive()), None),
        Lane::Bulk => (None, Some(executor.lanes.bulk().await)),
    };
    // Our own infrastructure failing is not the call's fault: keep the message and try
    // again with backoff, for a bounded time, before handing it back to the broker.
    let mut backoff = Duration::from_millis(200);
    let started = tokio::time::Instant::now();
    loop {
        // Boxed: the call's future is large (about 13 KB) and would otherwise be carried
        // inline in this task's and copied each time the task is built and spawned.
        match Box::pin(executor.process(execution_id, reply_to.as_deref(), lane, delivery.redelivered)).await {
            Ok(Disposition::Ack) => {
                if !executor.ack_delay.is_zero() {
                    tokio::time::sleep(executor.ack_delay).await;
                }
                // Not acked means it will be redelivered; the redelivery finds the
                // execution final and only re-publishes its result.
                match delivery.acker.ack(BasicAckOptions::default()).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!("ack not sent: the channel closed; the message will be redelivered"),
                    Err(err) => tracing::warn!(error = %err, "ack did not go out; the message will be redelivered"),
                }
                return;
            }
            Ok(Disposition::DeadLetter(reason)) => {
                tracing::error!(%execution_id, reason, "dead-lettering message");
                let _ = delivery.acker.reject(BasicRejectOptions { requeue: false }).await;
                return;
            }
            Err(err) if started.elapsed() < Duration::from_secs(60) => {
                tracing::warn!(%execution_id, error = %err, "infrastructure error; retrying the delivery");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                tracing::error!(%execution_id, error = %err, "infrastructure error persists; returning the message to the queue");
                let _ = delivery.acker.nack(BasicNackOptions { requeue: true, multiple: false }).await;
                return;
            }
        }
    }
}
