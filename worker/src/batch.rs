//! The worker's two writes per call — the claim and the final record — batched with those
//! of concurrent calls (see `clawlink_common::batch`). A failed batch's deliveries are
//! retried like any other Postgres error.

use clawlink_common::batch::Batcher;
use clawlink_common::db::executions::{self, Claim};
use clawlink_common::ids::ExecutionId;
use clawlink_common::results::Outcome;
use sqlx::PgPool;

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
