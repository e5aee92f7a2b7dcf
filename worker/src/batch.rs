//! Group commit for the worker's two writes per call — the claim and the final record.
//! Calls that arrive while a statement is in flight go together in the next one, so under
//! load a worker runs one statement and one commit per batch instead of per call. One
//! batch is in flight at a time per kind; a lone call goes out at once, so an idle worker
//! adds no wait.
//!
//! Each caller waits for its own batch's commit: nothing is acked before its row is
//! written. A failed batch fails every caller in it, whose deliveries are then retried
//! like any other Postgres error.

use clawlink_common::db::executions::{self, Claim};
use clawlink_common::ids::ExecutionId;
use clawlink_common::results::Outcome;
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Largest batch: bounds a statement's size (results are capped at 16 KiB each).
const MAX_BATCH: usize = 128;

pub type BatchError = Arc<sqlx::Error>;
type Reply<O> = oneshot::Sender<Result<O, BatchError>>;

/// Runs `run` over the inputs queued since its last run; hands each caller its output.
pub struct Batcher<I, O> {
    tx: mpsc::UnboundedSender<(I, Reply<O>)>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// `run` gets the batch's inputs and returns one output per input, in order. The task
    /// ends when the `Batcher` is dropped.
    pub fn start<F, Fut>(run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = sqlx::Result<Vec<O>>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(I, Reply<O>)>();
        tokio::spawn(async move {
            let mut queued = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
                let (inputs, replies): (Vec<I>, Vec<Reply<O>>) = queued.drain(..).unzip();
                let n = inputs.len();
                match run(inputs).await {
                    Ok(outputs) => {
                        debug_assert_eq!(outputs.len(), n);
                        for (output, reply) in outputs.into_iter().zip(replies) {
                            let _ = reply.send(Ok(output));
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, calls = n, "a batched write failed");
                        let err = Arc::new(err);
                        for reply in replies {
                            let _ = reply.send(Err(err.clone()));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Queues `input` and waits for its batch to commit.
    pub async fn call(&self, input: I) -> Result<O, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((input, reply)).map_err(|_| Arc::new(sqlx::Error::PoolClosed))?;
        answer.await.map_err(|_| Arc::new(sqlx::Error::PoolClosed))?
    }
}

/// Claims executions (see `executions::claim_many`): `None` for one already final or
/// unknown.
pub fn claims(db: PgPool) -> Batcher<ExecutionId, Option<Claim>> {
    Batcher::start(move |ids: Vec<ExecutionId>| {
        let db = db.clone();
        async move {
            let mut conn = db.acquire().await?;
            let claimed = executions::claim_many(&mut conn, &ids).await?;
            // The same execution twice in one batch (a duplicate delivery) gets the same
            // claim twice, as two single claims would.
            Ok(ids.iter().map(|id| claimed.iter().find(|c| c.id == *id).cloned()).collect())
        }
    })
}

/// Records finished executions (see `executions::finish_many`): whether this call made
/// the row final.
pub fn finishes(db: PgPool) -> Batcher<Outcome, bool> {
    Batcher::start(move |outcomes: Vec<Outcome>| {
        let db = db.clone();
        async move {
            let mut conn = db.acquire().await?;
            let refs: Vec<&Outcome> = outcomes.iter().collect();
            let changed = executions::finish_many(&mut conn, &refs).await?;
            Ok(outcomes.iter().map(|o| changed.contains(&o.execution_id)).collect())
        }
    })
}
