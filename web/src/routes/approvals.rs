//! The approvals inbox: the calls of the person's agents that wait for their approval
//! (approval policy `person`), each with its rendered preview and one-click approve or
//! deny; and the account's approval policy (a device's own is set on the devices page).

use crate::AppState;
use crate::error::{WebError, page};
use crate::session::{CsrfForm, NoFields, SignedIn};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use clawlink_common::approval::ApprovalPolicy;
use clawlink_common::audit;
use clawlink_common::catalog::render_preview;
use clawlink_common::db::{approvals, executions, users};
use clawlink_common::ids::ExecutionId;
use serde::Deserialize;

/// Most calls the inbox lists at once.
const INBOX: i64 = 100;

pub struct Waiting {
    pub id: String,
    pub app: String,
    pub tool: String,
    /// The tool's preview line with the call's arguments in it.
    pub summary: String,
    pub mode: String,
    pub device: String,
    pub connection: String,
    pub arguments: String,
    pub asked: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct InboxPage {
    signed_in_as: Option<String>,
    csrf: String,
    waiting: Vec<Waiting>,
    notice: Option<&'static str>,
    policy: &'static str,
    policies: Vec<(&'static str, &'static str)>,
}

#[derive(Debug, Default, Deserialize)]
pub struct InboxQuery {
    #[serde(default)]
    done: String,
}

fn when(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC).format(&f).unwrap_or_default()
}

/// Every policy with what it means, for the settings controls.
pub fn policy_choices() -> Vec<(&'static str, &'static str)> {
    ApprovalPolicy::ALL.iter().map(|p| (p.as_str(), p.describe())).collect()
}

pub async fn inbox(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Query(q): Query<InboxQuery>,
) -> Result<Response, WebError> {
    let mut conn = state.db.acquire().await?;
    let policy = users::approval_policy(&mut conn, user.user_id).await?.unwrap_or_default();
    let rows = approvals::list_awaiting(&mut conn, user.user_id, INBOX).await?;
    let waiting = rows
        .into_iter()
        .map(|c| {
            let tool = state.catalog.tool(&c.tool_name);
            Waiting {
                id: c.id.to_string(),
                app: state.catalog.provider(&c.integration).map(|p| p.name.clone()).unwrap_or(c.integration.clone()),
                summary: tool
                    .map(|t| render_preview(&t.tool.preview, &c.arguments))
                    .unwrap_or_else(|| format!("Run {}", c.tool_name)),
                mode: tool.map(|t| t.tool.mode.as_str().to_string()).unwrap_or_default(),
                tool: c.tool_name,
                device: c.device_label.unwrap_or_else(|| "a removed device".into()),
                connection: c.connection_label.filter(|l| !l.is_empty()).unwrap_or_else(|| "the default".into()),
                arguments: serde_json::to_string_pretty(&c.arguments).unwrap_or_default(),
                asked: when(c.created_at),
                expires: when(c.expires_at),
            }
        })
        .collect();
    let notice = match q.done.as_str() {
        "approved" => Some("Approved: the call runs now. Your agent reads its result."),
        "denied" => Some("Denied: the call will not run. Your agent is told so."),
        "gone" => Some("That call no longer waits for you: it was decided already or its time ran out."),
        "policy" => Some("Saved. Your agents follow the new policy within a second."),
        _ => None,
    };
    page(&InboxPage {
        signed_in_as: Some(user.email),
        csrf: user.csrf_token,
        waiting,
        notice,
        policy: policy.as_str(),
        policies: policy_choices(),
    })
}

/// Approve or deny: one click, then back to the inbox. Another person's call, or an id
/// that is not one, is not found; one that no longer waits says so.
async fn decide(
    state: &AppState,
    user: &clawlink_common::db::web_sessions::SessionUser,
    id: &str,
    approve: bool,
) -> Result<Response, WebError> {
    let id: ExecutionId = id.parse().map_err(|_| WebError::not_found())?;
    let mut conn = state.db.acquire().await?;
    let changed = if approve {
        approvals::approve(&mut conn, user.user_id, id).await?
    } else {
        approvals::deny(&mut conn, user.user_id, id).await?
    };
    if changed {
        tracing::info!(user_id = %user.user_id, execution_id = %id, approved = approve, "approval decided");
        if !approve {
            wake_waiters(state, &mut conn, id).await;
        }
        return Ok(
            Redirect::to(if approve { "/approvals?done=approved" } else { "/approvals?done=denied" }).into_response()
        );
    }
    if executions::get_for_user(&mut conn, user.user_id, id).await?.is_none() {
        return Err(WebError::not_found());
    }
    Ok(Redirect::to("/approvals?done=gone").into_response())
}

/// A denied call is final: its outcome goes to the result store, waking the agent's long
/// poll at once, as a worker's result would. Best effort: the poll also reads the row.
async fn wake_waiters(state: &AppState, conn: &mut sqlx::PgConnection, id: ExecutionId) {
    let outcome = match executions::get_final(conn, id).await {
        Ok(row) => row.and_then(|row| row.outcome()),
        Err(err) => {
            tracing::warn!(execution_id = %id, error = %err, "denied; could not read the row back");
            None
        }
    };
    let Some(outcome) = outcome else { return };
    let published = match state.ops.result_store().await {
        Ok(store) => store.publish(&outcome, None).await.map_err(crate::ops::OpsError::from),
        Err(err) => Err(err),
    };
    if let Err(err) = published {
        tracing::warn!(execution_id = %id, error = %err, "denied; the result could not be stored in redis");
    }
}

pub async fn approve(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
    _: CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    decide(&state, &user, &id, true).await
}

pub async fn deny(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
    _: CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    decide(&state, &user, &id, false).await
}

#[derive(Debug, Deserialize)]
pub struct PolicyForm {
    #[serde(default)]
    pub policy: String,
}

/// A policy from a form, or the 400 page naming the choices.
pub fn parse_policy(text: &str) -> Result<ApprovalPolicy, WebError> {
    ApprovalPolicy::parse(text).ok_or_else(|| {
        WebError::new(
            StatusCode::BAD_REQUEST,
            "Choose a policy",
            format!(
                "The form did not name an approval policy; choose one of {}.",
                ApprovalPolicy::ALL.map(|p| p.as_str()).join(", ")
            ),
        )
    })
}

pub async fn set_policy(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    CsrfForm { fields, .. }: CsrfForm<PolicyForm>,
) -> Result<Response, WebError> {
    let policy = parse_policy(&fields.policy)?;
    let mut tx = state.db.begin().await?;
    users::set_approval_policy(&mut tx, user.user_id, policy).await?;
    let subject = format!("account:{}", user.user_id);
    let details = serde_json::json!({"policy": policy.as_str()});
    audit::record(&mut tx, &audit::Event::by_person(user.user_id, audit::ACCOUNT_POLICY_CHANGED, &subject, details))
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, policy = policy.as_str(), "approval policy set");
    Ok(Redirect::to("/approvals?done=policy").into_response())
}
