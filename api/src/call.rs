//! One tool call in the api, from the REST routes or MCP: find the tool, check the
//! arguments, choose the connection, apply the confirmation policy and the plan allowance,
//! record the execution, publish its job, and wait for the outcome.
//!
//! Read with `common/src/db/executions.rs` (the insert), `common/src/queue.rs` (the job),
//! `worker/src/execute.rs` (the call) and `common/src/results.rs` (the answer): those five
//! files are the whole path of one tool call. How an outcome is shown is in `view`.

use crate::error::ApiError;
use crate::state::AppState;
use clawlink_common::approval::{self, ApprovalClaims, ApprovalPolicy, TokenError};
use clawlink_common::catalog::{ToolEntry, render_preview, render_request, validate_arguments};
use clawlink_common::codes::ErrorCode;
use clawlink_common::db::approvals;
use clawlink_common::db::connections::Connection;
use clawlink_common::db::devices::DeviceAuth;
use clawlink_common::db::executions::{self, Inserted, NewExecution, Unresolved};
use clawlink_common::ids::{ConnectionId, ExecutionId};
use clawlink_common::queue::{Job, Lane};
use clawlink_common::results::{Outcome, WaitGuard, Wake};
use clawlink_common::status::{ConnectionStatus, ExecutionStatus};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One tool call as the api receives it, from the REST route or from MCP.
pub struct ToolCall {
    pub tool: Arc<ToolEntry>,
    pub arguments: Value,
    pub connection_id: Option<i64>,
    pub confirmed: bool,
    /// The `approvalToken` of a preview of this call, when the agent sends one.
    pub approval_token: Option<String>,
    pub is_async: bool,
    pub idempotency_key: Option<String>,
}

/// What an answer about a call names besides its outcome.
pub struct CallContext {
    pub tool: Arc<ToolEntry>,
    /// `None` only for a replay whose connection was deleted since.
    pub connection_id: Option<ConnectionId>,
}

pub enum CallResult {
    /// The call finished (succeeded or failed) within the wait.
    Finished(CallContext, Outcome),
    /// Still queued or running, or awaiting a person's approval: poll the execution.
    Accepted { id: ExecutionId, status: ExecutionStatus },
}

/// Looks a tool up, or answers 404 with the closest names.
pub fn find_tool(state: &AppState, name: &str) -> Result<Arc<ToolEntry>, ApiError> {
    state.catalog.tool(name).cloned().ok_or_else(|| {
        ApiError::new(ErrorCode::ToolNotFound, format!("There is no tool named {name:?}."))
            .details(state.catalog.closest_names(name, 5).into_iter().map(Value::String))
            .hint("Use GET /api/tools/search?query=… to find the right tool.")
    })
}

/// Validates arguments against the tool's schema and its request template.
pub fn check_arguments(tool: &ToolEntry, arguments: &Value) -> Result<(), ApiError> {
    let invalid = |message: String| {
        let mut e = ApiError::new(ErrorCode::InvalidArguments, message);
        e.input_schema = Some(tool.tool.input_schema.clone());
        e
    };
    if let Err(errors) = validate_arguments(tool, arguments) {
        let mut e = invalid(format!("The arguments for {} are not valid.", tool.name));
        e.missing_fields = errors.missing_fields;
        e.invalid_fields = errors.invalid_fields;
        e.details = errors.details.into_iter().map(Value::String).collect();
        return Err(e.hint("Fix the listed fields; inputSchema describes every argument."));
    }
    render_request(tool, arguments).map_err(|e| invalid(e.to_string()))?;
    Ok(())
}

/// 402: the month's allowance is used up; nothing was queued.
pub fn over_quota(state: &AppState, used: i64, allowed: i64) -> ApiError {
    ApiError::new(
        ErrorCode::PlanLimitReached,
        format!("This account has used {used} of its {allowed} tool calls this month; upgrade the plan or wait for next month."),
    )
    .hint("Ask the person to upgrade their ClawLink plan at upgradeUrl.")
    .with("upgradeUrl", json!(format!("{}/billing", state.config.public_web_url)))
}

/// What a preview shows: the checks of execute passed, nothing was done.
pub struct Preview {
    pub tool: Arc<ToolEntry>,
    pub connection: Connection,
    pub summary: String,
    /// For a tool that needs confirmation: the token that approves exactly this call (this
    /// tool, these arguments, this connection, this device), and until when.
    pub approval: Option<(String, time::OffsetDateTime)>,
}

/// The same checks as [`call_tool`] makes before recording anything (tool, arguments,
/// connection, allowance), and nothing else: no row, no message, no provider call.
pub async fn preview(
    state: &AppState,
    device: &DeviceAuth,
    name: &str,
    arguments: &Value,
    connection_id: Option<i64>,
) -> Result<Preview, ApiError> {
    let user = device.user_id;
    let tool = find_tool(state, name)?;
    crate::grants::check_tool(state, device, &tool)?;
    check_arguments(&tool, arguments)?;
    let connection = resolve_connection(state, device, &tool, connection_id).await?;
    let mut conn = state.db.acquire().await?;
    let standing = clawlink_common::db::billing::standing(&mut conn, user).await?;
    if standing.calls_this_month >= standing.plan.monthly_calls {
        return Err(over_quota(state, standing.calls_this_month, standing.plan.monthly_calls));
    }
    let summary = render_preview(&tool.tool.preview, arguments);
    let approval = tool.requires_confirmation.then(|| {
        let expires = time::OffsetDateTime::now_utc() + state.config.approval_token_ttl;
        let claims =
            ApprovalClaims::new(&tool.name, arguments, connection.id, device.device_id, expires.unix_timestamp());
        (approval::sign(&state.keyring, &claims), expires)
    });
    Ok(Preview { tool, connection, summary, approval })
}

/// How much longer than its token a used nonce is remembered (see `redeem_token`).
const NONCE_MARGIN: time::Duration = time::Duration::minutes(10);

/// The agent-facing error for an approval token that does not approve the call.
fn token_refused(tool: &ToolEntry, err: &TokenError) -> ApiError {
    let again = format!(
        "Preview the call again (POST /api/tools/{}/preview with the arguments you mean to run), show it to the person, and send that approvalToken.",
        tool.name
    );
    match err {
        TokenError::Expired => ApiError::new(ErrorCode::ApprovalExpired, "The approval token has expired.").hint(again),
        TokenError::Invalid => {
            ApiError::new(ErrorCode::ApprovalInvalid, "The approval token is not valid.").hint(again)
        }
        TokenError::Mismatch(what) => ApiError::new(
            ErrorCode::ApprovalInvalid,
            format!("The approval token was issued for a different {what}; nothing was run."),
        )
        .details([json!(what.to_string())])
        .hint(again),
    }
}

/// Checks a presented approval token against the call and uses it up: returns the
/// connection it binds, which the call then runs on. A connection the agent names must be
/// that one.
async fn redeem_token(
    state: &AppState,
    device: &DeviceAuth,
    tool: &ToolEntry,
    arguments: &Value,
    connection_id: Option<i64>,
    token: &str,
    idempotency_key: Option<&str>,
) -> Result<ConnectionId, ApiError> {
    let now = time::OffsetDateTime::now_utc();
    let claims = approval::verify(&state.keyring, token, now.unix_timestamp()).map_err(|e| token_refused(tool, &e))?;
    let connection = connection_id.map(ConnectionId).unwrap_or(claims.connection);
    claims.check(&tool.name, arguments, connection, device.device_id).map_err(|e| token_refused(tool, &e))?;
    // The nonce is kept past the token's expiry by a margin: the expiry is checked on this
    // replica's clock and the nonce forgotten on the database's, and a replica whose clock
    // runs behind must not accept a token whose nonce is gone.
    let keep_until = time::OffsetDateTime::from_unix_timestamp(claims.expires_at).unwrap_or(now) + NONCE_MARGIN;
    let mut conn = state.db.acquire().await?;
    if !approvals::use_nonce(&mut conn, &claims.nonce_bytes(), device.device_id, keep_until).await? {
        // A retry of the same call with its Idempotency-Key is that call, not a replay: the
        // insert answers with the first execution (and refuses a different body).
        let retry = match idempotency_key {
            Some(key) => executions::find_by_key(&mut conn, device.user_id, key).await?.is_some(),
            None => false,
        };
        if !retry {
            return Err(ApiError::new(
                ErrorCode::ApprovalUsed,
                "This approval token was used already; each token approves one call.",
            )
            .hint(format!("Preview the call again (POST /api/tools/{}/preview) for a new approvalToken.", tool.name)));
        }
    }
    Ok(claims.connection)
}

/// What makes two calls with one Idempotency-Key the same call: the tool, the connection
/// asked for (`None`: the default, whichever that is when the first call ran) and the
/// arguments. `arguments` is their JSON text: serde_json's map is ordered (BTreeMap), so
/// equal arguments serialise equally. Public for tests that stand in for an api that died
/// after its insert.
pub fn request_hash(tool: &str, connection: Option<ConnectionId>, arguments: &str) -> Vec<u8> {
    // A version first, so the hash can change shape later without colliding. A named
    // connection is tagged 1, the default 0.
    let mut h = Sha256::new();
    h.update(b"v2\0");
    h.update(tool.as_bytes());
    h.update([0]);
    match connection {
        Some(c) => {
            h.update([1]);
            h.update(c.0.to_be_bytes());
        }
        None => h.update([0]),
    }
    h.update(arguments.as_bytes());
    h.finalize().to_vec()
}

/// Validates, resolves the connection, records the execution, publishes the job and —
/// for a sync call — waits for the outcome up to the sync bound.
pub async fn call_tool(state: &AppState, device: &DeviceAuth, call: ToolCall) -> Result<CallResult, ApiError> {
    let ToolCall { tool, arguments, connection_id, confirmed, approval_token, is_async, idempotency_key } = call;
    crate::grants::check_tool(state, device, &tool)?;
    check_arguments(&tool, &arguments)?;

    // The approval policy (read with the credential: no round trip here). A token the
    // agent presents is checked whatever the policy, so a swapped argument fails closed;
    // a person's policy ignores it (the person decides).
    let mut requested = connection_id.map(ConnectionId);
    let mut awaiting_approval = None;
    if tool.requires_confirmation {
        let policy = device.approval_policy;
        match (policy, approval_token.as_deref()) {
            (ApprovalPolicy::Person, _) => awaiting_approval = Some(state.config.approval_wait),
            (_, Some(token)) => {
                let bound =
                    redeem_token(state, device, &tool, &arguments, connection_id, token, idempotency_key.as_deref())
                        .await?;
                requested = Some(bound);
            }
            (ApprovalPolicy::Allow, None) => {}
            (ApprovalPolicy::AgentConfirmation, None) if confirmed => {}
            (ApprovalPolicy::AgentConfirmation | ApprovalPolicy::ApprovalToken, None) => {
                // A missing connection is reported before the confirmation it would need.
                resolve_connection(state, device, &tool, connection_id).await?;
                let summary = render_preview(&tool.tool.preview, &arguments);
                if policy == ApprovalPolicy::ApprovalToken {
                    return Err(ApiError::new(
                        ErrorCode::ApprovalRequired,
                        format!(
                            "{} changes data ({}); this device must present the approval token of a preview of this exact call.",
                            tool.name,
                            tool.tool.mode.as_str()
                        ),
                    )
                    .hint(format!(
                        "POST /api/tools/{}/preview with these arguments, show the summary to the person, then execute with its \"approvalToken\". Will do: {summary}",
                        tool.name
                    ))
                    .with("summary", json!(summary)));
                }
                return Err(ApiError::new(
                    ErrorCode::ConfirmationRequired,
                    format!(
                        "{} changes data ({}); confirm with the person, then call again with \"confirmed\": true.",
                        tool.name,
                        tool.tool.mode.as_str()
                    ),
                )
                .hint(format!("Will do: {summary}"))
                .with("summary", json!(summary)));
            }
        }
    }

    // A grant that names some connections of this app: the call uses one of those (the
    // insert would otherwise choose among all of the account's).
    match requested {
        Some(chosen) => crate::grants::check_connection(state, device, &tool, chosen)?,
        None if device.grant.only_connections(&tool.provider.id).is_some() => {
            requested = Some(resolve_connection(state, device, &tool, None).await?.id);
        }
        None => {}
    }
    // The budget is taken before the call is recorded and given back when it is not.
    let spent = match device.grant.call_budget {
        None => false,
        Some(_) => match spend_budget(state, device, idempotency_key.as_deref()).await? {
            Budget::Spent => true,
            Budget::Replay => false,
            Budget::Exhausted => return Err(crate::grants::budget_exhausted(state, device)),
        },
    };
    let inserted =
        record(state, device, &tool, arguments, connection_id, requested, is_async, idempotency_key, awaiting_approval)
            .await;
    if spent && !matches!(inserted, Ok((_, _, Inserted::New(_)))) {
        let mut conn = state.db.acquire().await?;
        clawlink_common::db::devices::refund_call(&mut conn, device.device_id).await?;
    }
    let (id, hash, inserted) = inserted?;

    let connection = match inserted {
        Inserted::New(connection) => connection,
        Inserted::Unresolved(why) => return Err(unresolved(&tool, connection_id, &why)),
        Inserted::OverQuota { used, allowed } => return Err(over_quota(state, used, allowed)),
        Inserted::UnknownUser => {
            return Err(ApiError::new(
                ErrorCode::InvalidCredential,
                "This device credential is not valid or has been revoked.",
            ));
        }
        Inserted::Existing(existing) => {
            if existing.request_hash.as_deref() != Some(hash.as_slice()) {
                return Err(ApiError::new(
                    ErrorCode::IdempotencyConflict,
                    "This Idempotency-Key was already used with a different tool call.",
                )
                .hint("Use a new Idempotency-Key for a different call.")
                .with("executionId", json!(existing.id)));
            }
            // A replay: the first execution answers, whatever state it is in.
            clawlink_common::telemetry::record_execution_id(existing.id);
            let ctx = CallContext { tool: tool.clone(), connection_id: existing.connection_id };
            // A call awaiting a person is answered at once, as when it was first made.
            let waits_for_person = existing.status == ExecutionStatus::AwaitingApproval;
            let wait = if is_async || waits_for_person { Duration::ZERO } else { state.config.sync_wait };
            return Ok(match await_outcome(state, existing.id, wait).await? {
                Some(outcome) => CallResult::Finished(ctx, outcome),
                None => CallResult::Accepted {
                    id: existing.id,
                    status: match existing.status {
                        ExecutionStatus::Running => ExecutionStatus::Running,
                        ExecutionStatus::AwaitingApproval => ExecutionStatus::AwaitingApproval,
                        _ => ExecutionStatus::Queued,
                    },
                },
            });
        }
    };
    let ctx = CallContext { tool: tool.clone(), connection_id: Some(connection) };
    if awaiting_approval.is_some() {
        // No job until the person approves; the agent polls the execution (a sync call
        // too: a person may take longer than any wait bound).
        tracing::info!(execution_id = %id, "call awaits the person's approval");
        return Ok(CallResult::Accepted { id, status: ExecutionStatus::AwaitingApproval });
    }

    let job = Job::ExecuteV1 { execution_id: id, reply_to: (!is_async).then(|| state.config.instance_id.clone()) };
    // Register before publishing so a fast result cannot slip past.
    let waiter = (!is_async).then(|| state.waiters.register(id));
    let lane = if is_async { Lane::Bulk } else { Lane::Interactive };
    match state.publisher.publish(lane, &job).await {
        Ok(()) => state.published.submit(id),
        Err(err) => {
            // The broker may have the job even so (a confirm lost with its connection). Only
            // a row failed here, before any worker took it, is a call that was not started;
            // otherwise it runs, and the caller is answered as for any accepted call.
            tracing::error!(execution_id = %id, error = %err, "publish failed");
            let mut conn = state.db.acquire().await?;
            if executions::fail_unqueued(&mut conn, id, "The work queue did not accept the call.").await? {
                return Err(ApiError::unavailable(
                    "The work queue is unavailable; the call was not started. Try again shortly.",
                )
                .with("executionId", json!(id)));
            }
            tracing::warn!(execution_id = %id, "the publish failed but a worker has the job; answering as accepted");
        }
    }
    let Some(waiter) = waiter else {
        return Ok(CallResult::Accepted { id, status: ExecutionStatus::Queued });
    };
    Ok(match wait_for_outcome(state, waiter, Instant::now() + state.config.sync_wait).await? {
        Some(outcome) => CallResult::Finished(ctx, outcome),
        None => CallResult::Accepted { id, status: ExecutionStatus::Running },
    })
}

/// What a budgeted device's call may do.
enum Budget {
    /// One call was taken from the budget.
    Spent,
    /// None is left, but this retries a call already accepted (its Idempotency-Key is
    /// known): it goes on, to be answered as a replay, taking nothing.
    Replay,
    Exhausted,
}

async fn spend_budget(state: &AppState, device: &DeviceAuth, key: Option<&str>) -> Result<Budget, ApiError> {
    let mut conn = state.db.acquire().await?;
    if clawlink_common::db::devices::spend_call(&mut conn, device.device_id).await? {
        return Ok(Budget::Spent);
    }
    Ok(match key {
        Some(key) if executions::find_by_key(&mut conn, device.user_id, key).await?.is_some() => Budget::Replay,
        _ => Budget::Exhausted,
    })
}

/// Records the execution: one statement (batched with concurrent calls) resolves the
/// connection, checks the allowance and the key, and inserts the row with its outbox
/// intent. Returns the new id and the request hash with what the statement found.
#[allow(clippy::too_many_arguments)]
async fn record(
    state: &AppState,
    device: &DeviceAuth,
    tool: &ToolEntry,
    arguments: Value,
    named: Option<i64>,
    connection: Option<ConnectionId>,
    is_async: bool,
    idempotency_key: Option<String>,
    awaiting_approval: Option<Duration>,
) -> Result<(ExecutionId, Vec<u8>, Inserted), ApiError> {
    let id = ExecutionId::new();
    clawlink_common::telemetry::record_execution_id(id);
    // The hash is of the call as the agent sent it (the connection it named, not the one
    // a token or a grant chose), so a retry with its Idempotency-Key matches.
    let hash = request_hash(&tool.name, named.map(ConnectionId), &arguments.to_string());
    let inserted = state
        .inserts
        .call(NewExecution {
            id,
            user: device.user_id,
            device: Some(device.device_id),
            connection,
            integration: tool.provider.id.clone(),
            tool_name: tool.name.clone(),
            arguments,
            lane: if is_async { Lane::Bulk } else { Lane::Interactive },
            idempotency_key,
            request_hash: Some(hash.clone()),
            awaiting_approval,
        })
        .await?;
    Ok((id, hash, inserted))
}

/// Waits up to `wait` for the execution's outcome: woken by the worker's notification,
/// not by polling. `None` when it is still queued or running.
pub async fn await_outcome(state: &AppState, id: ExecutionId, wait: Duration) -> Result<Option<Outcome>, ApiError> {
    if let Some(outcome) = stored_outcome(state, id).await? {
        return Ok(Some(outcome));
    }
    if wait.is_zero() {
        return Ok(None);
    }
    let waiter = state.waiters.register(id);
    // The result may have been stored between the look above and registering.
    if let Some(outcome) = stored_outcome(state, id).await? {
        return Ok(Some(outcome));
    }
    wait_for_outcome(state, waiter, Instant::now() + wait).await
}

/// Waits for a registered execution's outcome until `deadline`; `None` if it is not final
/// by then. The notification normally arrives; if Redis restarted meanwhile it may not, so
/// the result store (then the row) is checked now and then as well.
async fn wait_for_outcome(
    state: &AppState,
    mut waiter: WaitGuard,
    deadline: Instant,
) -> Result<Option<Outcome>, ApiError> {
    let id = waiter.id();
    let mut recheck = Duration::from_millis(500);
    loop {
        let until = deadline.min(Instant::now() + recheck);
        match tokio::time::timeout_at(until, &mut waiter.receiver).await {
            Ok(Ok(Wake::Outcome(outcome))) => return Ok(Some(outcome)),
            Ok(Ok(Wake::Stored)) | Ok(Err(_)) | Err(_) => {
                if let Some(outcome) = stored_outcome(state, id).await? {
                    return Ok(Some(outcome));
                }
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                if waiter.receiver.is_terminated() {
                    // Woken but not stored (yet): listen again.
                    waiter = state.waiters.register(id);
                }
                recheck = (recheck * 2).min(Duration::from_secs(4));
            }
        }
    }
}

/// The outcome from Redis, or from the row when Redis has lost it. `None` while running.
async fn stored_outcome(state: &AppState, id: ExecutionId) -> Result<Option<Outcome>, ApiError> {
    match state.results.get(id).await {
        Ok(Some(outcome)) => return Ok(Some(outcome)),
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "result store unavailable; reading the row"),
    }
    let mut conn = state.db.acquire().await?;
    Ok(executions::get_final(&mut conn, id).await?.and_then(|row| row.outcome()))
}

/// Which connection a call uses: the explicit `connectionId`, else the user's default for
/// the integration, else the only one; otherwise [`unresolved`]. Execute makes this choice
/// inside its insert statement (`executions::insert_many`); preview and an unconfirmed call
/// make it here, from the batched lookup.
pub async fn resolve_connection(
    state: &AppState,
    device: &DeviceAuth,
    tool: &ToolEntry,
    requested: Option<i64>,
) -> Result<Connection, ApiError> {
    if let Some(id) = requested {
        crate::grants::check_connection(state, device, tool, ConnectionId(id))?;
    }
    // Batched with the lookups of concurrent calls (one statement per batch); the list
    // comes default first. Only the connections the device's grant includes count.
    let all = state.connection_lookups.call((device.user_id, tool.provider.id.clone())).await?;
    let candidates = crate::grants::visible(device, all);
    let chosen = match requested {
        Some(id) => candidates.iter().find(|c| c.id.0 == id),
        None => candidates.iter().find(|c| c.is_default).or(match candidates.as_slice() {
            [only] => Some(only),
            _ => None,
        }),
    };
    match chosen {
        Some(c) if c.status != ConnectionStatus::NeedsReauth => Ok(c.clone()),
        chosen => Err(unresolved(
            tool,
            requested,
            &Unresolved { candidates: candidates.iter().map(|c| c.id).collect(), needs_reauth: chosen.map(|c| c.id) },
        )),
    }
}

/// What to do about a connection that must be reconnected: one text whether the api saw it
/// before queueing the call or the worker found out while running it.
pub fn reconnect_hint(provider_name: &str) -> String {
    format!("Reconnect {provider_name} in the ClawLink dashboard (ask the person to), then try again.")
}

/// The error for a call no usable connection answers: the one chosen must be reconnected
/// (401), the one named is not the user's (404), there is none (409) or several and no
/// default (409).
fn unresolved(tool: &ToolEntry, requested: Option<i64>, why: &Unresolved) -> ApiError {
    let integration = &tool.provider.id;
    let ids = || why.candidates.iter().map(|c| json!(c));
    if let Some(id) = why.needs_reauth {
        return ApiError::new(
            ErrorCode::NeedsReauth,
            format!("The {} connection {id} must be reconnected before it can be used.", tool.provider.name),
        )
        .hint(reconnect_hint(&tool.provider.name))
        .with("connectionId", json!(id));
    }
    match requested {
        // Another user's id and a made-up id look the same: 404.
        Some(id) => {
            ApiError::new(ErrorCode::ConnectionNotFound, format!("You have no {integration} connection with id {id}."))
                .details(ids())
                .hint("GET /api/integrations lists your connections.")
        }
        None if why.candidates.is_empty() => ApiError::new(
            ErrorCode::NeedsConnection,
            format!("Connect {} in ClawLink before using {}.", tool.provider.name, tool.name),
        )
        .hint("POST /api/connect/start with this integration gives the person a link to connect it.")
        .with("integration", json!(integration)),
        None => ApiError::new(
            ErrorCode::AmbiguousConnection,
            format!(
                "You have several {} connections and none is the default; say which with connectionId.",
                tool.provider.name
            ),
        )
        .details(ids())
        .with("integration", json!(integration)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_hash_tells_the_default_from_a_named_connection_and_arguments_apart() {
        let default = request_hash("sandbox_echo", None, r#"{"message":"a"}"#);
        assert_eq!(default, request_hash("sandbox_echo", None, r#"{"message":"a"}"#));
        assert_ne!(default, request_hash("sandbox_echo", Some(ConnectionId(0)), r#"{"message":"a"}"#));
        assert_ne!(default, request_hash("sandbox_echo", None, r#"{"message":"b"}"#));
        assert_ne!(default, request_hash("sandbox_list_notes", None, r#"{"message":"a"}"#));
    }
}
