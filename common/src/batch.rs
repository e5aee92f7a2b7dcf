//! Group commit: writes that arrive while a statement is in flight go together in the next
//! one, so under load a process runs one statement and one commit per batch instead of per
//! call. One batch is in flight at a time per `Batcher`; a lone call goes out at once, so
//! an idle process adds no wait.
//!
//! Each caller waits for its own batch's commit, so nothing is acknowledged before its row
//! is written. A batch that fails because of what one of its rows holds (a data error or a
//! constraint, see [`is_per_row`]) does not fail its neighbours: it is split in halves and
//! each half tried again, down to single inputs, so the good inputs commit and only the bad
//! one gets the error — a bad input costs at most two statements per halving (about 14 for a
//! batch of 128), and a batch whose every row is bad at most 2n−1 (each refused before it
//! writes anything). Inputs are cloned for that only when a batch holds more than one.
//! Any other failure (the connection, the pool, the server) is the same for
//! every row: it fails the whole batch at once, without a storm of retries.
//!
//! For the retry to be safe, `run` must commit nothing when it fails with a per-row error:
//! one statement, or one transaction.

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

impl<I: Clone + Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// `run` gets the batch's inputs and returns one output per input, in order. The task
    /// ends when the `Batcher` is dropped.
    pub fn start<F, Fut>(mut run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = sqlx::Result<Vec<O>>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(I, Reply<O>)>();
        tokio::spawn(async move {
            let mut queued = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
                let (inputs, replies): (Vec<I>, Vec<Reply<O>>) = queued.drain(..).unzip();
                settle(&mut run, inputs, replies).await;
            }
        });
        Self { tx }
    }

    /// Queues `input` without waiting for its batch: for a write whose loss is harmless
    /// (it is logged with the batch's failure).
    pub fn submit(&self, input: I) {
        let (reply, _) = oneshot::channel();
        let _ = self.tx.send((input, reply));
    }

    /// Queues `input` and waits for its batch to commit.
    pub async fn call(&self, input: I) -> Result<O, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((input, reply)).map_err(|_| Arc::new(sqlx::Error::PoolClosed))?;
        answer.await.map_err(|_| Arc::new(sqlx::Error::PoolClosed))?
    }
}

/// Runs one batch and answers its callers; on a per-row error, the halves again.
// `&mut`: a future holding `&F` would need `F: Sync`.
async fn settle<I: Clone, O, F, Fut>(run: &mut F, inputs: Vec<I>, replies: Vec<Reply<O>>)
where
    F: Fn(Vec<I>) -> Fut,
    Fut: Future<Output = sqlx::Result<Vec<O>>>,
{
    // Depth first, the first half before the second: callers are answered in about the
    // order they came.
    let mut pending = vec![(inputs, replies)];
    while let Some((inputs, mut replies)) = pending.pop() {
        let n = inputs.len();
        // Kept only where a split could need them: a single input is never retried.
        let kept = (n > 1).then(|| inputs.clone());
        match (run(inputs).await, kept) {
            (Ok(outputs), _) => {
                debug_assert_eq!(outputs.len(), n);
                for (output, reply) in outputs.into_iter().zip(replies) {
                    let _ = reply.send(Ok(output));
                }
            }
            (Err(err), Some(mut inputs)) if is_per_row(&err) => {
                tracing::warn!(error = %err, calls = n, "a batched write failed on a row; trying its halves apart");
                let (second, second_replies) = (inputs.split_off(n / 2), replies.split_off(n / 2));
                pending.push((second, second_replies));
                pending.push((inputs, replies));
            }
            (Err(err), _) => {
                tracing::warn!(error = %err, calls = n, "a batched write failed");
                let err = Arc::new(err);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Whether Postgres refused a statement for what a row holds, so the other rows of the
/// batch would commit without it: SQLSTATE class 22 (data exception: NUL in text or JSONB,
/// a value out of range), 23 (integrity: a row whose user or connection was deleted a
/// moment ago, a duplicate key) or 54 (a limit: a key too long for its index). A failure of
/// the connection, the pool or the server (class 08, 53, 57 …, or no SQLSTATE at all)
/// would fail every retry too.
pub fn is_per_row(err: &sqlx::Error) -> bool {
    let Some(code) = err.as_database_error().and_then(|e| e.code()) else {
        return false;
    };
    matches!(code.get(..2), Some("22" | "23" | "54"))
}
