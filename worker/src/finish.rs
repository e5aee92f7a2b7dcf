//! Group commit for finished executions: calls that end while a commit is in progress are
//! recorded together in the next statement, so under load a worker writes one statement
//! and one commit per batch instead of per call. One batch is in flight at a time; a lone
//! call goes out at once, so an idle worker adds no wait.
//!
//! Nothing is acked before its row is committed: each caller waits for its own batch's
//! commit (see `Executor::process`), and a failed batch fails every caller in it, whose
//! deliveries are then retried like any other Postgres error.

use clawlink_common::db::executions;
use clawlink_common::results::Outcome;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Largest batch: bounds the statement's size (results are capped at 16 KiB each).
const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<bool, Arc<sqlx::Error>>>;

#[derive(Clone)]
pub struct Finisher {
    tx: mpsc::UnboundedSender<(Outcome, Reply)>,
}

impl Finisher {
    /// Starts the batching task on `db`; it ends when the last `Finisher` is dropped.
    pub fn start(db: PgPool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(db, rx));
        Self { tx }
    }

    /// Records `outcome` (see `executions::finish`); returns whether this call made the
    /// row final. Resolves only after the commit.
    pub async fn finish(&self, outcome: Outcome) -> Result<bool, Arc<sqlx::Error>> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((outcome, reply)).map_err(|_| Arc::new(sqlx::Error::PoolClosed))?;
        answer.await.map_err(|_| Arc::new(sqlx::Error::PoolClosed))?
    }
}

async fn run(db: PgPool, mut rx: mpsc::UnboundedReceiver<(Outcome, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcomes: Vec<&Outcome> = batch.iter().map(|(o, _)| o).collect();
        let result = async {
            let mut conn = db.acquire().await?;
            executions::finish_many(&mut conn, &outcomes).await
        }
        .await;
        match result {
            Ok(changed) => {
                for (outcome, reply) in batch.drain(..) {
                    let _ = reply.send(Ok(changed.contains(&outcome.execution_id)));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, calls = batch.len(), "recording a batch of results failed");
                let err = Arc::new(err);
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
