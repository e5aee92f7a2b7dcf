//! The connections pages: list, add (catalog with search and categories), rename, make
//! default, reconnect and delete (after a confirmation that names what goes away).

use crate::AppState;
use crate::error::{WebError, page};
use crate::routes::connect::new_session;
use crate::session::{CsrfForm, NoFields, SignedIn};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use clawlink_common::audit;
use clawlink_common::catalog::search::search;
use clawlink_common::db::connections;
use clawlink_common::ids::{ConnectionId, UserId};
use serde::Deserialize;
use std::collections::BTreeMap;

pub struct ConnectionView {
    pub id: i64,
    pub label: String,
    pub account: String,
    pub status: String,
    pub is_default: bool,
}

pub struct Group {
    pub name: String,
    pub connections: Vec<ConnectionView>,
}

#[derive(Template)]
#[template(path = "connections.html")]
struct ConnectionsPage {
    signed_in_as: Option<String>,
    csrf: String,
    groups: Vec<Group>,
}

pub async fn list(State(state): State<AppState>, SignedIn(user): SignedIn) -> Result<Response, WebError> {
    let mut conn = state.db.acquire().await?;
    let rows = connections::list_for_user(&mut conn, user.user_id).await?;
    let mut grouped: BTreeMap<String, Vec<ConnectionView>> = BTreeMap::new();
    for c in rows {
        let name = state.catalog.provider(&c.integration).map(|p| p.name.clone()).unwrap_or(c.integration.clone());
        grouped.entry(name).or_default().push(ConnectionView {
            id: c.id.0,
            label: c.connection_label,
            account: c.account_label,
            status: c.status.to_string(),
            is_default: c.is_default,
        });
    }
    let groups = grouped.into_iter().map(|(name, connections)| Group { name, connections }).collect();
    page(&ConnectionsPage { signed_in_as: Some(user.email), csrf: user.csrf_token, groups })
}

pub struct AppView {
    pub id: String,
    pub name: String,
    pub categories: String,
    pub tool_count: usize,
    pub auth: &'static str,
}

#[derive(Template)]
#[template(path = "connections_new.html")]
struct NewPage {
    signed_in_as: Option<String>,
    csrf: String,
    query: String,
    category: String,
    categories: Vec<String>,
    apps: Vec<AppView>,
}

#[derive(Debug, Deserialize)]
pub struct CatalogQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    category: String,
}

pub async fn new_form(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Query(q): Query<CatalogQuery>,
) -> Result<Response, WebError> {
    let mut categories: Vec<String> = state.catalog.providers().flat_map(|p| p.categories.clone()).collect();
    categories.sort();
    categories.dedup();
    let matching: Vec<String> = if q.q.trim().is_empty() {
        state.catalog.providers().map(|p| p.id.clone()).collect()
    } else {
        let mut ids = Vec::new();
        for (tool, _) in search(&state.catalog, &q.q, None, 25) {
            if !ids.contains(&tool.provider.id) {
                ids.push(tool.provider.id.clone());
            }
        }
        ids
    };
    let apps = matching
        .iter()
        .filter_map(|id| state.catalog.provider(id))
        .filter(|p| q.category.is_empty() || p.categories.contains(&q.category))
        .map(|p| AppView {
            id: p.id.clone(),
            name: p.name.clone(),
            categories: p.categories.join(", "),
            tool_count: p.tools.len(),
            auth: match p.auth.kind() {
                "oauth2" => "sign in with the app",
                _ => "API key",
            },
        })
        .collect();
    page(&NewPage {
        signed_in_as: Some(user.email),
        csrf: user.csrf_token,
        query: q.q,
        category: q.category,
        categories,
        apps,
    })
}

#[derive(Debug, Deserialize)]
pub struct StartForm {
    #[serde(default)]
    integration: String,
}

pub async fn start(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    CsrfForm { fields: form, .. }: CsrfForm<StartForm>,
) -> Result<Response, WebError> {
    if state.catalog.provider(&form.integration).is_none() {
        return Err(WebError::not_found());
    }
    let mut conn = state.db.acquire().await?;
    let standing = clawlink_common::db::billing::standing(&mut conn, user.user_id).await?;
    if standing.connections >= i64::from(standing.plan.max_connections) {
        return Err(WebError::new(
            axum::http::StatusCode::PAYMENT_REQUIRED,
            "Connection limit reached",
            format!(
                "The {} plan allows {} connections and all are in use. Upgrade on the Plan page, or delete a connection first.",
                standing.plan.name, standing.plan.max_connections
            ),
        ));
    }
    drop(conn);
    let token = new_session(&state, user.user_id, &form.integration, None).await?;
    Ok(Redirect::to(&format!("/connect/{token}")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct LabelForm {
    #[serde(default)]
    label: String,
}

pub async fn rename(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<i64>,
    CsrfForm { fields: form, .. }: CsrfForm<LabelForm>,
) -> Result<Response, WebError> {
    let label = form.label.trim();
    if label.is_empty() || label.chars().count() > 100 {
        return Err(WebError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "Name not saved",
            "A connection's name must be 1 to 100 characters.",
        ));
    }
    let mut tx = state.db.begin().await?;
    if !connections::rename(&mut tx, user.user_id, ConnectionId(id), label).await? {
        return Err(WebError::not_found());
    }
    record(&mut tx, user.user_id, audit::CONNECTION_RENAMED, id, serde_json::json!({"label": label})).await?;
    tx.commit().await?;
    Ok(Redirect::to("/connections").into_response())
}

pub async fn make_default(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<i64>,
    _: CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    let mut tx = state.db.begin().await?;
    if !connections::make_default(&mut tx, user.user_id, ConnectionId(id)).await? {
        return Err(WebError::not_found());
    }
    record(&mut tx, user.user_id, audit::CONNECTION_DEFAULT_SET, id, serde_json::json!({})).await?;
    tx.commit().await?;
    Ok(Redirect::to("/connections").into_response())
}

pub async fn reconnect(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<i64>,
    _: CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    let mut conn = state.db.acquire().await?;
    let c =
        connections::get_for_user(&mut conn, user.user_id, ConnectionId(id)).await?.ok_or_else(WebError::not_found)?;
    drop(conn);
    let token = new_session(&state, user.user_id, &c.integration, Some(c.id)).await?;
    Ok(Redirect::to(&format!("/connect/{token}")).into_response())
}

#[derive(Template)]
#[template(path = "confirm_delete.html")]
struct ConfirmDelete {
    signed_in_as: Option<String>,
    csrf: String,
    id: i64,
    label: String,
    app_name: String,
    account: String,
    is_default: bool,
}

pub async fn confirm_delete(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let mut conn = state.db.acquire().await?;
    let c =
        connections::get_for_user(&mut conn, user.user_id, ConnectionId(id)).await?.ok_or_else(WebError::not_found)?;
    page(&ConfirmDelete {
        signed_in_as: Some(user.email),
        csrf: user.csrf_token,
        id,
        app_name: state.catalog.provider(&c.integration).map(|p| p.name.clone()).unwrap_or(c.integration),
        label: c.connection_label,
        account: c.account_label,
        is_default: c.is_default,
    })
}

pub async fn delete(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(id): Path<i64>,
    _: CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    let mut tx = state.db.begin().await?;
    if !connections::delete(&mut tx, user.user_id, ConnectionId(id)).await? {
        return Err(WebError::not_found());
    }
    record(&mut tx, user.user_id, audit::CONNECTION_DELETED, id, serde_json::json!({})).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, connection_id = id, "connection deleted");
    Ok(Redirect::to("/connections").into_response())
}

/// Records the person's change to one of their connections in their audit trail, on the
/// change's own transaction.
async fn record(
    tx: &mut sqlx::PgConnection,
    user: UserId,
    action: &str,
    connection: i64,
    details: serde_json::Value,
) -> Result<(), WebError> {
    let subject = format!("connection:{connection}");
    audit::record(tx, &audit::Event::by_person(user, action, &subject, details)).await?;
    Ok(())
}
