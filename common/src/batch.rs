//! Group commit: writes that arrive while a statement is in flight go together in the next
//! one, so under load a process runs one statement and one commit per batch instead of per
//! call. One batch is in flight at a time per `Batcher`; a lone call goes out at once, so
//! an idle process adds no wait.
//!
//! Each caller waits for its own batch's commit, so nothing is acknowledged before its row
//! is written. A failed batch fails every caller in it.

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
