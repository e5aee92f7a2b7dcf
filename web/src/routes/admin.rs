//! The admin pages: the live queue view (`/admin/queues`, refreshed from
//! `/admin/queues.json` every two seconds by a little script) and the dead letters'
//! replay and discard. Anyone who is not an admin — signed out included — gets the same
//! 404 as an unknown address, so the pages do not confirm they exist.
//!
//! Where each figure comes from:
//! - depth and consumers: RabbitMQ, a passive declare per queue (ready messages only);
//! - publish / deliver / ack rates and p50 / p99: the `executions` table — rows created /
//!   first started / finished per 10 s over the last 5 minutes (first starts only, rows
//!   created in the window only), so they are close, not exact;
//! - pacing: the GCRA state and pauses that `clawlink_common::pacing` keeps in Redis.

use crate::AppState;
use crate::error::{WebError, page};
use crate::ops::{DeadLetter, PEEK_LIMIT, PacingState, QueueState};
use crate::session::{CsrfForm, NoFields, SignedIn};
use askama::Template;
use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use clawlink_common::audit;
use clawlink_common::codes::ErrorCode;
use clawlink_common::db::admin::{self, Activity};
use clawlink_common::db::executions;
use clawlink_common::db::web_sessions::SessionUser;
use clawlink_common::ids::ExecutionId;
use clawlink_common::queue::Job;
use clawlink_common::results::{FinalStatus, Outcome, OutcomeError, OutcomeMeta};
use serde::{Deserialize, Serialize};

/// The history the page charts: 30 buckets of 10 s.
const BUCKETS: i32 = 30;
const BUCKET_SECS: i32 = 10;
/// Rates are averaged over the last three buckets.
const RATE_BUCKETS: usize = 3;

/// A signed-in admin. Everyone else is "not found".
pub struct Admin(pub SessionUser);

impl FromRequestParts<AppState> for Admin {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match SignedIn::from_request_parts(parts, state).await {
            Ok(SignedIn(user)) if user.is_admin => Ok(Admin(user)),
            _ => Err(WebError::not_found()),
        }
    }
}

/// Calls per second over the last few buckets, from the executions table.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rates {
    /// Rows created: calls published to a lane.
    pub publish: f64,
    /// Rows first started: calls a worker took.
    pub deliver: f64,
    /// Rows finished: calls done (the worker acks right after).
    pub ack: f64,
}

/// Everything the live view shows, as JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Server time (unix milliseconds).
    pub at_ms: i64,
    pub queues: Vec<QueueState>,
    pub broker_error: Option<String>,
    pub bucket_secs: i32,
    pub activity: Activity,
    pub rates: Rates,
    pub pacing: Vec<PacingState>,
    /// Whether connections' pacing state was read (only while Redis holds few keys).
    pub pacing_connections_read: bool,
    pub pacing_error: Option<String>,
}

impl Snapshot {
    fn ready(&self, kind: &str) -> u64 {
        self.queues.iter().filter(|q| q.kind == kind).map(|q| u64::from(q.ready)).sum()
    }

    fn consumers(&self, kind: &str) -> u32 {
        self.queues.iter().filter(|q| q.kind == kind).map(|q| q.consumers).sum()
    }
}

fn rate(series: &[i64]) -> f64 {
    let n = series.len().min(RATE_BUCKETS);
    let sum: i64 = series[series.len() - n..].iter().sum();
    if n == 0 { 0.0 } else { sum as f64 / (n as f64 * f64::from(BUCKET_SECS)) }
}

async fn snapshot(state: &AppState) -> Result<Snapshot, WebError> {
    let mut conn = state.db.acquire().await?;
    // The three sources answer at once: the page's one round trip to each.
    let (activity, queues, pacing) = tokio::join!(
        admin::activity(&mut conn, BUCKETS, BUCKET_SECS),
        state.ops.queues(),
        state.ops.pacing(&state.catalog)
    );
    let activity = activity?;
    let rates =
        Rates { publish: rate(&activity.created), deliver: rate(&activity.started), ack: rate(&activity.finished) };
    let (queues, broker_error) = match queues {
        Ok(q) => (q, None),
        Err(err) => {
            tracing::warn!(error = %err, "admin view: broker unreachable");
            (Vec::new(), Some("RabbitMQ did not answer; depths are unknown.".to_string()))
        }
    };
    let (pacing, pacing_connections_read, pacing_error) = match pacing {
        Ok((p, read)) => (p, read, None),
        Err(err) => {
            tracing::warn!(error = %err, "admin view: redis unreachable");
            (Vec::new(), false, Some("Redis did not answer; pacing state is unknown.".to_string()))
        }
    };
    Ok(Snapshot {
        at_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
        queues,
        broker_error,
        bucket_secs: BUCKET_SECS,
        activity,
        rates,
        pacing,
        pacing_connections_read,
        pacing_error,
    })
}

pub async fn stats(State(state): State<AppState>, Admin(_): Admin) -> Result<Response, WebError> {
    let snapshot = snapshot(&state).await?;
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], Json(snapshot)).into_response())
}

pub struct DeadView {
    pub execution_id: String,
    pub tool: String,
    pub status: String,
    pub reason: String,
    pub count: i64,
    pub queue: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "admin_queues.html")]
struct QueuesPage {
    signed_in_as: Option<String>,
    csrf: String,
    notice: Option<String>,
    s: Snapshot,
    interactive: u64,
    bulk: u64,
    delay: u64,
    dead: u64,
    consumers_interactive: u32,
    consumers_bulk: u32,
    publish: String,
    deliver: String,
    ack: String,
    p50: String,
    p99: String,
    wait_p50: String,
    wait_p99: String,
    pacing: Vec<PacingView>,
    dead_letters: Vec<DeadView>,
    dead_error: Option<String>,
    /// The snapshot, for the script to start its chart from.
    initial_json: String,
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(ms) if ms >= 1000.0 => format!("{:.1} s", ms / 1000.0),
        Some(ms) => format!("{ms:.0} ms"),
        None => "—".into(),
    }
}

fn clock(ms: u64) -> String {
    let f = time::macros::format_description!("[hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&f).ok())
        .unwrap_or_default()
}

/// One provider's pacing, as the page prints it.
pub struct PacingView {
    pub name: String,
    pub app: String,
    pub per_connection: String,
    pub busy: usize,
    pub exhausted: usize,
    pub paused: String,
}

impl From<&PacingState> for PacingView {
    fn from(p: &PacingState) -> Self {
        let app =
            p.app_windows.iter().map(|w| format!("{} of {} ({})", w.permits, w.capacity, w.limit)).collect::<Vec<_>>();
        let paused = p
            .paused
            .iter()
            .map(|x| format!("connection {} until {}", x.connection, clock(x.until_ms)))
            .collect::<Vec<_>>();
        PacingView {
            name: p.name.clone(),
            app: if app.is_empty() { "—".into() } else { app.join("; ") },
            per_connection: if p.per_connection.is_empty() { "—".into() } else { p.per_connection.join("; ") },
            busy: p.busy_connections,
            exhausted: p.exhausted_connections,
            paused: if paused.is_empty() { "no".into() } else { paused.join("; ") },
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct QueuesQuery {
    #[serde(default)]
    done: String,
}

fn when(unix: Option<u64>) -> String {
    let Some(secs) = unix.and_then(|s| i64::try_from(s).ok()) else { return "—".into() };
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(secs).ok().and_then(|t| t.format(&f).ok()).unwrap_or_else(|| "—".into())
}

pub async fn queues(
    State(state): State<AppState>,
    Admin(user): Admin,
    Query(q): Query<QueuesQuery>,
) -> Result<Response, WebError> {
    let (s, peeked) = tokio::join!(snapshot(&state), state.ops.peek_dead(PEEK_LIMIT));
    let s = s?;
    let (letters, dead_error) = match peeked {
        Ok(l) => (l, None),
        Err(err) => {
            tracing::warn!(error = %err, "admin view: dead letters unreadable");
            (Vec::new(), Some("The dead-letter queue could not be read.".to_string()))
        }
    };
    let ids: Vec<ExecutionId> = letters.iter().filter_map(|l| l.execution_id).collect();
    let rows = if ids.is_empty() {
        Vec::new()
    } else {
        let mut conn = state.db.acquire().await?;
        admin::rows(&mut conn, &ids).await?
    };
    let dead_letters = letters
        .into_iter()
        .map(|l: DeadLetter| {
            let row = l.execution_id.and_then(|id| rows.iter().find(|r| r.id == id));
            DeadView {
                execution_id: l.execution_id.map(|i| i.to_string()).unwrap_or_default(),
                tool: row.map(|r| r.tool_name.clone()).unwrap_or_else(|| "—".into()),
                status: row.map(|r| r.status.to_string()).unwrap_or_else(|| "no execution row".into()),
                reason: l.reason,
                count: l.count,
                queue: l.queue,
                when: when(l.died_at),
            }
        })
        .collect();
    let notice = match q.done.as_str() {
        "replayed" => Some("Replayed: the message is back in its lane.".to_string()),
        "discarded" => Some("Discarded: the message is gone and its execution is failed.".to_string()),
        _ => None,
    };
    let initial_json = serde_json::to_string(&s).unwrap_or_else(|_| "null".into()).replace("</", "<\\/");
    page(&QueuesPage {
        signed_in_as: Some(user.email),
        csrf: user.csrf_token,
        notice,
        interactive: s.ready("interactive"),
        bulk: s.ready("bulk"),
        delay: s.ready("delay"),
        dead: s.ready("dead"),
        consumers_interactive: s.consumers("interactive"),
        consumers_bulk: s.consumers("bulk"),
        publish: format!("{:.1}/s", s.rates.publish),
        deliver: format!("{:.1}/s", s.rates.deliver),
        ack: format!("{:.1}/s", s.rates.ack),
        p50: ms(s.activity.p50_ms),
        p99: ms(s.activity.p99_ms),
        wait_p50: ms(s.activity.queue_wait_p50_ms),
        wait_p99: ms(s.activity.queue_wait_p99_ms),
        pacing: s.pacing.iter().map(PacingView::from).collect(),
        s,
        dead_letters,
        dead_error,
        initial_json,
    })
}

fn ops_failed(err: crate::ops::OpsError) -> WebError {
    tracing::warn!(error = %err, "admin action: broker or redis failed");
    WebError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "Not done",
        "RabbitMQ or Redis did not answer; nothing was changed. Try again in a moment.",
    )
}

fn gone() -> WebError {
    WebError::new(
        axum::http::StatusCode::NOT_FOUND,
        "Not in the dead-letter queue",
        "This message is no longer in the dead-letter queue (replayed or discarded already?). Reload the queue view.",
    )
}

/// Takes the dead letter of `id` off the queue (held, not acked) with its execution row.
async fn take(state: &AppState, id: ExecutionId) -> Result<(crate::ops::Taken, Option<admin::DeadRow>), WebError> {
    let taken = state.ops.take_dead(id).await.map_err(ops_failed)?.ok_or_else(gone)?;
    let mut conn = state.db.acquire().await?;
    let row = admin::rows(&mut conn, &[id]).await?.pop();
    Ok((taken, row))
}

/// Replay: the execution row is made runnable again (a row left `running` by the
/// deliveries that died returns to `queued`, as a waiting message's row is), the message
/// is published to its lane with confirms, and only then acked from the dead-letter
/// queue. A final row is left alone: the worker then only re-publishes its result.
pub async fn replay(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<String>,
    _: CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    let id: ExecutionId = id.parse().map_err(|_| WebError::not_found())?;
    let (taken, row) = take(&state, id).await?;
    let Some(row) = row else {
        return Err(WebError::new(
            axum::http::StatusCode::CONFLICT,
            "Cannot replay",
            "This message has no execution row to run; discard it instead.",
        ));
    };
    let lane = row.lane;
    admin::make_runnable(&mut *state.db.acquire().await?, id).await?;
    let details = serde_json::json!({"lane": lane.as_str(), "tool": row.tool_name, "reason": taken.letter.reason});
    state.ops.republish(lane, &taken.payload).await.map_err(ops_failed)?;
    // Published: a failed ack leaves a copy in the dead-letter queue, which a second
    // replay would run as a duplicate — harmless, the worker finds the row final.
    if let Err(err) = taken.ack().await {
        tracing::warn!(execution_id = %id, error = %err, "replayed, but the dead letter could not be acked");
    }
    record(&state, &user, audit::ADMIN_REPLAYED, id, details).await?;
    tracing::info!(execution_id = %id, lane = lane.as_str(), admin = %user.user_id, "dead letter replayed");
    Ok(Redirect::to("/admin/queues?done=replayed").into_response())
}

/// Discard: the execution, if not final yet, fails with a reason the agent can read (its
/// result is stored and the waiting api instance woken, as a worker would), then the
/// message is acked from the dead-letter queue.
pub async fn discard(
    State(state): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<String>,
    _: CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    let id: ExecutionId = id.parse().map_err(|_| WebError::not_found())?;
    let (taken, row) = take(&state, id).await?;
    let reply_to =
        serde_json::from_slice::<Job>(&taken.payload).ok().and_then(|Job::ExecuteV1 { reply_to, .. }| reply_to);
    let tool = row.as_ref().map(|r| r.tool_name.clone());
    if let Some(row) = row.filter(|r| !r.status.is_final()) {
        let outcome = Outcome {
            execution_id: id,
            status: FinalStatus::Failed,
            data: None,
            error: Some(OutcomeError::new(
                ErrorCode::DeadLettered,
                format!(
                    "ClawLink could not run this call ({}, {} deliveries) and an operator discarded it; the app was not called by this attempt. It is safe to try again.",
                    taken.letter.reason, taken.letter.count
                ),
                // Not billed, and the agent may try again.
                true,
                None,
            )),
            meta: OutcomeMeta {
                ended_at: Some(time::OffsetDateTime::now_utc()),
                attempts: row.attempts.max(0) as u32,
                ..Default::default()
            },
        };
        if executions::finish(&mut *state.db.acquire().await?, &outcome).await? {
            // Best effort: the row is final either way; the agent's poll also reads it.
            let published = match state.ops.result_store().await {
                Ok(store) => store.publish(&outcome, reply_to.as_deref()).await.map_err(crate::ops::OpsError::from),
                Err(err) => Err(err),
            };
            if let Err(err) = published {
                tracing::warn!(execution_id = %id, error = %err, "discarded; the result could not be stored in redis");
            }
        }
    }
    let details = serde_json::json!({"tool": tool, "reason": taken.letter.reason});
    taken.ack().await.map_err(ops_failed)?;
    record(&state, &user, audit::ADMIN_DISCARDED, id, details).await?;
    tracing::info!(execution_id = %id, admin = %user.user_id, "dead letter discarded");
    Ok(Redirect::to("/admin/queues?done=discarded").into_response())
}

/// Records an operator's action on a dead letter in the operator chain, once it is done
/// (the broker's part cannot share a database transaction).
async fn record(
    state: &AppState,
    admin: &SessionUser,
    action: &str,
    id: ExecutionId,
    details: serde_json::Value,
) -> Result<(), WebError> {
    let subject = format!("execution:{id}");
    let event =
        audit::Event { user: None, actor: audit::Actor::Person(admin.user_id), action, subject: &subject, details };
    audit::record(&mut *state.db.acquire().await?, &event).await?;
    Ok(())
}
