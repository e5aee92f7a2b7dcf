//! The consumer loop: one channel per lane, each with its own prefetch, so the bulk lane
//! can never take the slots the interactive lane needs. A delivery owns its ack.
//!
//! Prefetch equals the lane's concurrency: the broker hands us exactly as many messages
//! as we will work on at once, so none sit unacknowledged in a busy worker while another
//! worker is idle, and a crash returns at most that many to the queue.

use crate::execute::{Disposition, Executor};
use clawlink_common::ids::ExecutionId;
use clawlink_common::queue::{Job, Lane, Topology, consumer_channel};
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
/// into no-ops. Drop it once the in-flight calls are done.
pub struct StoppedLane {
    _channel: lapin::Channel,
    _consumer: lapin::Consumer,
}

/// Consumes `lane` until `stop`, starting each call on `tracker`; then cancels the
/// consumer (the broker sends no more) and returns the still-open channel.
pub async fn consume_lane(
    executor: Arc<Executor>,
    connection: &lapin::Connection,
    topology: &Topology,
    lane: Lane,
    prefetch: u16,
    consumer_tag: String,
    tracker: TaskTracker,
    stop: CancellationToken,
) -> Result<StoppedLane, lapin::Error> {
    // The broker closes a channel on its own now and then (a delivery past the consumer
    // timeout: PRECONDITION_FAILED), which lapin's recovery does not bring back. The
    // worker then opens a new channel and consumes again instead of stopping: the timed-out
    // delivery is handed out again, and the execution's lease keeps it from running twice.
    let mut reopened = 0u32;
    'channel: loop {
        let (channel, mut consumer) = match open_consumer(connection, topology, lane, prefetch, &consumer_tag).await {
            Ok(opened) => opened,
            Err(err) if reopened > 0 && reopened <= 10 && !stop.is_cancelled() => {
                tracing::warn!(error = %err, lane = lane.as_str(), attempt = reopened, "cannot consume again yet");
                reopened += 1;
                tokio::time::sleep(Duration::from_millis(200 * u64::from(reopened))).await;
                continue 'channel;
            }
            Err(err) => return Err(err),
        };
        tracing::info!(lane = lane.as_str(), prefetch, "consuming");
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => {
                    // Stop taking new work; in-flight calls finish and ack on this same channel.
                    let _ = channel.basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default()).await;
                    return Ok(StoppedLane { _channel: channel, _consumer: consumer });
                }
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    reopened = 0;
                    let executor = executor.clone();
                    executor.metrics.inflight.inc();
                    tracker.spawn(async move {
                        handle(&executor, delivery, lane).await;
                        executor.metrics.inflight.dec();
                    });
                }
                Some(Err(err)) => {
                    // With automatic recovery the channel and consumer come back; deliveries
                    // not acked before the failure will be redelivered.
                    tracing::warn!(error = %err, lane = lane.as_str(), "consumer interrupted; waiting for recovery");
                    if let Err(err) = channel.wait_for_recovery(err).await {
                        if stop.is_cancelled() {
                            return Ok(StoppedLane { _channel: channel, _consumer: consumer });
                        }
                        tracing::warn!(error = %err, lane = lane.as_str(), "channel not recovered; opening a new one");
                        reopened += 1;
                        continue 'channel;
                    }
                }
                None => return Ok(StoppedLane { _channel: channel, _consumer: consumer }),
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
    // Our own infrastructure failing is not the call's fault: keep the message and try
    // again with backoff, for a bounded time, before handing it back to the broker.
    let mut backoff = Duration::from_millis(200);
    let started = tokio::time::Instant::now();
    loop {
        match executor.process(execution_id, reply_to.as_deref(), lane, delivery.redelivered).await {
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
