//! The executions pages: the person's tool calls, newest first, filtered by app, tool,
//! status and time; and one call's detail (timing split, attempts, the error the agent
//! saw, arguments and result — shown only to their owner).

use crate::AppState;
use crate::error::{WebError, page};
use crate::session::{SignedIn, urlencode};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use clawlink_common::db::executions::{self, ExecutionFilter};
use clawlink_common::ids::ExecutionId;
use clawlink_common::status::ExecutionStatus;
use serde::Deserialize;

const PAGE: i64 = 50;

pub struct Row {
    pub id: String,
    pub when: String,
    pub tool: String,
    pub status: String,
    pub attempts: i32,
    pub took: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "executions.html")]
struct ListPage {
    signed_in_as: Option<String>,
    csrf: String,
    apps: Vec<(String, String)>,
    statuses: Vec<&'static str>,
    filter_app: String,
    filter_tool: String,
    filter_status: String,
    filter_since: String,
    filter_until: String,
    rows: Vec<Row>,
    next_page: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    app: String,
    #[serde(default)]
    tool: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    since: String,
    /// The last day shown (inclusive).
    #[serde(default)]
    until: String,
    #[serde(default)]
    before: String,
}

fn when(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.to_offset(time::UtcOffset::UTC).format(&f).unwrap_or_default()
}

fn ms(v: Option<i64>) -> String {
    match v {
        Some(ms) if ms >= 1000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{ms} ms"),
        None => "—".into(),
    }
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

pub async fn list(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let rfc = time::format_description::well_known::Rfc3339;
    let day = |s: &str| {
        some(s).and_then(|d| time::Date::parse(&d, time::macros::format_description!("[year]-[month]-[day]")).ok())
    };
    let since = day(&q.since).map(|d| d.midnight().assume_utc());
    let until = day(&q.until).and_then(|d| d.next_day()).map(|d| d.midnight().assume_utc());
    let before = some(&q.before).and_then(|b| time::OffsetDateTime::parse(&b, &rfc).ok());
    let status = some(&q.status).and_then(|s| ExecutionStatus::parse(&s));
    let filter = ExecutionFilter { integration: some(&q.app), tool: some(&q.tool), status, since, until, before };
    let mut conn = state.db.acquire().await?;
    let found = executions::list_for_user(&mut conn, user.user_id, &filter, PAGE).await?;
    let next_page = (found.len() as i64 == PAGE).then(|| {
        let last = found.last().expect("a full page").created_at.format(&rfc).unwrap_or_default();
        format!(
            "/executions?app={}&tool={}&status={}&since={}&until={}&before={}",
            urlencode(&q.app),
            urlencode(&q.tool),
            urlencode(&q.status),
            urlencode(&q.since),
            urlencode(&q.until),
            urlencode(&last)
        )
    });
    let rows = found
        .into_iter()
        .map(|e| Row {
            id: e.id.to_string(),
            when: when(e.created_at),
            tool: e.tool_name,
            status: e.status.to_string(),
            attempts: e.attempts,
            took: ms(e.duration_ms),
            error: e.error_code.map(|c| c.to_string()),
        })
        .collect();
    let apps = state.catalog.providers().map(|p| (p.id.clone(), p.name.clone())).collect();
    page(&ListPage {
        signed_in_as: Some(user.email),
        csrf: user.csrf_token,
        apps,
        statuses: ExecutionStatus::ALL.iter().map(|s| s.as_str()).collect(),
        filter_app: q.app,
        filter_tool: q.tool,
        filter_status: q.status,
        filter_since: q.since,
        filter_until: q.until,
        rows,
        next_page,
    })
}

#[derive(Template)]
#[template(path = "execution.html")]
struct DetailPage {
    signed_in_as: Option<String>,
    csrf: String,
    id: String,
    tool: String,
    status: String,
    created: String,
    attempts: i32,
    queue_wait: String,
    provider_time: String,
    total: String,
    provider_status: Option<i32>,
    error: Option<String>,
    arguments: String,
    result: String,
}

pub async fn detail(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id: ExecutionId = id.parse().map_err(|_| WebError::not_found())?;
    let mut conn = state.db.acquire().await?;
    // Another person's execution is not found, like an unknown one.
    let row = executions::get_for_user(&mut conn, user.user_id, id).await?.ok_or_else(WebError::not_found)?;
    let arguments = executions::arguments_for_user(&mut conn, user.user_id, id).await?.unwrap_or_default();
    let total = row.finished_at.map(|f| (f - row.created_at).whole_milliseconds() as i64);
    let error = match (&row.error_code, &row.error_message) {
        (Some(code), Some(msg)) if row.status == ExecutionStatus::Failed => Some(format!("{code}: {msg}")),
        (Some(code), None) if row.status == ExecutionStatus::Failed => Some(code.to_string()),
        _ => None,
    };
    page(&DetailPage {
        signed_in_as: Some(user.email),
        csrf: user.csrf_token,
        id: id.to_string(),
        tool: row.tool_name.clone(),
        status: row.status.to_string(),
        created: when(row.created_at),
        attempts: row.attempts,
        queue_wait: ms(row.queue_wait_ms.map(i64::from)),
        provider_time: ms(row.provider_ms.map(i64::from)),
        total: ms(total),
        provider_status: row.provider_status,
        error,
        arguments: serde_json::to_string_pretty(&arguments).unwrap_or_default(),
        result: row
            .result_excerpt
            .as_ref()
            .map(|r| serde_json::to_string_pretty(r).unwrap_or_default())
            .unwrap_or_else(|| "—".into()),
    })
}
