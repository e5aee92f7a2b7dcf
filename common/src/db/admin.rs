//! Reads and writes for the admin queue view: recent activity over every user's
//! executions (rates, latency percentiles, a short history) and the execution rows behind
//! dead letters. Not user-scoped on purpose: only the admin pages call these.

use crate::ids::ExecutionId;
use crate::queue::Lane;
use crate::status::ExecutionStatus;
use sqlx::PgConnection;
use time::OffsetDateTime;

/// The smallest UUIDv7 at `at`: execution ids are UUIDv7, so `id >= lower_bound(t)` is a
/// range scan of the primary key that finds every row created since `t` (no index on
/// `created_at` alone is needed, nor added to the insert path).
pub fn lower_bound(at: OffsetDateTime) -> ExecutionId {
    let ms = (at.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70; // version 7
    bytes[8] = 0x80; // RFC 4122 variant
    ExecutionId(uuid::Uuid::from_bytes(bytes))
}

/// What the executions table says about the last minutes, from rows created since
/// `since` (so a call created earlier and finished inside the window is not counted).
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// Rows created / first started / finished per bucket, oldest bucket first.
    pub created: Vec<i64>,
    pub started: Vec<i64>,
    pub finished: Vec<i64>,
    /// Total time (created → finished) of the calls finished in the window.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Time spent waiting in the queue before the first start, same calls.
    pub queue_wait_p50_ms: Option<f64>,
    pub queue_wait_p99_ms: Option<f64>,
    /// Calls queued or running right now among those rows.
    pub open: i64,
}

/// Activity over `buckets` buckets of `bucket_secs` each, ending now: one statement.
pub async fn activity(conn: &mut PgConnection, buckets: i32, bucket_secs: i32) -> sqlx::Result<Activity> {
    let since = OffsetDateTime::now_utc() - time::Duration::seconds(i64::from(buckets * bucket_secs));
    let row = sqlx::query!(
        r#"WITH recent AS (
               SELECT status, created_at, started_at, finished_at, queue_wait_ms
                 FROM executions WHERE id >= $1 AND created_at >= $2),
           events AS (
               SELECT floor(extract(epoch FROM created_at - $2) / $4::int)::int AS i, 1 AS c, 0 AS s, 0 AS f FROM recent
               UNION ALL
               SELECT floor(extract(epoch FROM started_at - $2) / $4::int)::int, 0, 1, 0 FROM recent WHERE started_at IS NOT NULL
               UNION ALL
               SELECT floor(extract(epoch FROM finished_at - $2) / $4::int)::int, 0, 0, 1 FROM recent WHERE finished_at IS NOT NULL),
           counts AS (
               SELECT g.i, coalesce(sum(e.c), 0)::bigint AS created, coalesce(sum(e.s), 0)::bigint AS started,
                      coalesce(sum(e.f), 0)::bigint AS finished
                 FROM generate_series(0, $3::int - 1) AS g(i) LEFT JOIN events e ON e.i = g.i
                GROUP BY g.i)
           SELECT (SELECT array_agg(created ORDER BY i) FROM counts) AS "created!: Vec<i64>",
                  (SELECT array_agg(started ORDER BY i) FROM counts) AS "started!: Vec<i64>",
                  (SELECT array_agg(finished ORDER BY i) FROM counts) AS "finished!: Vec<i64>",
                  (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at) * 1000)
                     FROM recent WHERE finished_at IS NOT NULL) AS "p50: f64",
                  (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at) * 1000)
                     FROM recent WHERE finished_at IS NOT NULL) AS "p99: f64",
                  (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY queue_wait_ms)
                     FROM recent WHERE finished_at IS NOT NULL) AS "qw50: f64",
                  (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY queue_wait_ms)
                     FROM recent WHERE finished_at IS NOT NULL) AS "qw99: f64",
                  (SELECT count(*) FROM recent WHERE status IN ('queued', 'running')) AS "open!""#,
        lower_bound(since).0,
        since,
        buckets,
        bucket_secs
    )
    .fetch_one(conn)
    .await?;
    Ok(Activity {
        created: row.created,
        started: row.started,
        finished: row.finished,
        p50_ms: row.p50,
        p99_ms: row.p99,
        queue_wait_p50_ms: row.qw50,
        queue_wait_p99_ms: row.qw99,
        open: row.open,
    })
}

/// The execution row behind a dead letter.
#[derive(Debug)]
pub struct DeadRow {
    pub id: ExecutionId,
    pub tool_name: String,
    pub status: ExecutionStatus,
    pub lane: Lane,
    pub attempts: i32,
}

/// The rows of these executions (unknown ids are left out), in one statement.
pub async fn rows(conn: &mut PgConnection, ids: &[ExecutionId]) -> sqlx::Result<Vec<DeadRow>> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|i| i.0).collect();
    sqlx::query_as!(
        DeadRow,
        r#"SELECT id AS "id: ExecutionId", tool_name, status AS "status: ExecutionStatus", lane AS "lane: Lane", attempts
             FROM executions WHERE id = ANY($1)"#,
        &ids
    )
    .fetch_all(conn)
    .await
}

/// Makes a dead-lettered execution runnable again before its message is replayed: a row
/// left `running` by the deliveries that died goes back to `queued`, the state a
/// message waiting in its lane has (the worker claims `queued` and `running` rows alike,
/// and a final row only has its result re-published). Returns the row's status now.
pub async fn make_runnable(conn: &mut PgConnection, id: ExecutionId) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        r#"WITH upd AS (UPDATE executions SET status = 'queued', error_message = 'replayed from the dead-letter queue'
                         WHERE id = $1 AND status = 'running' RETURNING status)
           SELECT coalesce((SELECT status FROM upd), (SELECT status FROM executions WHERE id = $1)) AS "status?""#,
        id.0
    )
    .fetch_one(conn)
    .await
}
