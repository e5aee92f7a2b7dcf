//! The grant picker: what a paired agent may reach, chosen on the pairing approval page and
//! edited on the devices page. One form serves both (`templates/grant_picker.html`).
//!
//! Its fields: `scope` (`all` or `some`), `app.<integration>` and `conn.<id>` checkboxes
//! (a checked connection grants its app with only the checked connections; a checked app
//! without any checked connection grants all of its connections, later ones included),
//! `access` (`read_write` or `read`), `budget` (empty: none) and `expires` (`never`,
//! `1h`, `1d`, `7d`, `30d`, or `keep` on the devices page).

use crate::AppState;
use crate::error::WebError;
use axum::http::StatusCode;
use clawlink_common::db::connections::{self, Connection};
use clawlink_common::grant::{Connections, Grant};
use clawlink_common::ids::{ConnectionId, UserId};
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap};

/// The most calls a budget may name.
const MAX_BUDGET: i64 = 1_000_000_000;

/// How long a grant may be given for: the form's value, its label, its length.
const EXPIRIES: [(&str, &str, Option<time::Duration>); 5] = [
    ("never", "No expiry", None),
    ("1h", "1 hour", Some(time::Duration::hours(1))),
    ("1d", "1 day", Some(time::Duration::days(1))),
    ("7d", "7 days", Some(time::Duration::days(7))),
    ("30d", "30 days", Some(time::Duration::days(30))),
];

pub struct ConnectionChoice {
    pub id: i64,
    pub label: String,
    pub checked: bool,
}

pub struct AppChoice {
    pub id: String,
    pub name: String,
    pub checked: bool,
    pub connections: Vec<ConnectionChoice>,
}

/// What the picker shows: the person's connected apps with their connections first, then
/// every other app of the catalog.
pub struct Picker {
    pub everything: bool,
    pub connected: Vec<AppChoice>,
    pub others: Vec<AppChoice>,
    pub read_only: bool,
    pub budget: String,
    /// The grant's expiry now, for the devices page ("" when none).
    pub expires_now: String,
    /// `keep` is offered (editing an existing grant).
    pub can_keep: bool,
    pub expiries: Vec<(&'static str, &'static str)>,
}

impl Picker {
    pub fn new(state: &AppState, connections: &[Connection], grant: &Grant, editing: bool) -> Picker {
        let mut by_app: BTreeMap<&str, Vec<&Connection>> = BTreeMap::new();
        for c in connections {
            by_app.entry(c.integration.as_str()).or_default().push(c);
        }
        let granted = |app: &str| grant.apps.as_ref().and_then(|apps| apps.get(app));
        let mut connected = Vec::new();
        let mut others = Vec::new();
        for provider in state.catalog.providers() {
            let choice = granted(&provider.id);
            let conns = by_app.get(provider.id.as_str()).map(Vec::as_slice).unwrap_or_default();
            let app = AppChoice {
                id: provider.id.clone(),
                name: provider.name.clone(),
                checked: choice.is_some(),
                connections: conns
                    .iter()
                    .map(|c| ConnectionChoice {
                        id: c.id.0,
                        label: if c.account_label.is_empty() || c.account_label == c.connection_label {
                            c.connection_label.clone()
                        } else {
                            format!("{} ({})", c.connection_label, c.account_label)
                        },
                        checked: matches!(choice, Some(Connections::Only(ids)) if ids.contains(&c.id)),
                    })
                    .collect(),
            };
            if conns.is_empty() { others.push(app) } else { connected.push(app) }
        }
        let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
        Picker {
            everything: grant.apps.is_none(),
            connected,
            others,
            read_only: grant.read_only,
            budget: grant.call_budget.map(|b| b.to_string()).unwrap_or_default(),
            expires_now: grant
                .expires_at
                .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&format).ok())
                .unwrap_or_default(),
            can_keep: editing,
            expiries: EXPIRIES.iter().map(|(v, l, _)| (*v, *l)).collect(),
        }
    }
}

/// The person's connections (any status: a connection to reconnect can still be granted).
pub async fn connections_of(conn: &mut PgConnection, user: UserId) -> Result<Vec<Connection>, WebError> {
    Ok(connections::list_for_user(conn, user).await?)
}

fn refused(message: impl Into<String>) -> WebError {
    WebError::new(StatusCode::BAD_REQUEST, "Check the grant", message)
}

/// Reads the picker's fields into a grant; `current` is the grant being edited (its
/// expiry is kept with `expires=keep`). A field naming an app that is not in the catalog
/// or a connection that is not the person's is refused, and nothing changes.
pub fn parse(
    state: &AppState,
    fields: &HashMap<String, String>,
    connections: &[Connection],
    current: Option<&Grant>,
) -> Result<Grant, WebError> {
    let field = |name: &str| fields.get(name).map(|v| v.trim()).unwrap_or_default();
    let read_only = match field("access") {
        "" | "read_write" => false,
        "read" => true,
        other => return Err(refused(format!("Access must be read and write, or read only; not {other:?}."))),
    };
    let call_budget = match field("budget") {
        "" => None,
        text => match text.parse::<i64>() {
            Ok(n) if (1..=MAX_BUDGET).contains(&n) => Some(n),
            _ => {
                return Err(refused(format!(
                    "The call budget must be a whole number from 1 to {MAX_BUDGET}, or empty for no budget."
                )));
            }
        },
    };
    let expires_at = match field("expires") {
        "" | "never" => None,
        "keep" if current.is_some() => current.and_then(|g| g.expires_at),
        text => match EXPIRIES.iter().find(|(v, _, _)| *v == text) {
            Some((_, _, Some(length))) => Some(time::OffsetDateTime::now_utc() + *length),
            _ => return Err(refused(format!("{text:?} is not one of the offered expiries."))),
        },
    };
    let apps = match field("scope") {
        "" | "all" => None,
        "some" => {
            let mut apps: BTreeMap<String, Connections> = BTreeMap::new();
            for (name, value) in fields {
                if value != "on" {
                    continue;
                }
                if let Some(app) = name.strip_prefix("app.") {
                    if state.catalog.provider(app).is_none() {
                        return Err(refused(format!("There is no app named {app:?}.")));
                    }
                    apps.entry(app.to_string()).or_insert(Connections::All);
                } else if let Some(id) = name.strip_prefix("conn.") {
                    let found = id.parse::<i64>().ok().and_then(|id| connections.iter().find(|c| c.id.0 == id));
                    let Some(c) = found else {
                        return Err(refused("One of the chosen connections is not yours (deleted meanwhile?)."));
                    };
                    apps.entry(c.integration.clone()).or_insert(Connections::All);
                }
            }
            // A granted app with checked connections has only those.
            for (app, choice) in apps.iter_mut() {
                let checked = |c: &&Connection| fields.get(&format!("conn.{}", c.id.0)).is_some_and(|v| v == "on");
                let mut ids: Vec<ConnectionId> =
                    connections.iter().filter(|c| &c.integration == app).filter(checked).map(|c| c.id).collect();
                ids.sort();
                if !ids.is_empty() {
                    *choice = Connections::Only(ids);
                }
            }
            if apps.is_empty() {
                return Err(refused("Choose at least one app, or grant every app."));
            }
            Some(apps)
        }
        other => return Err(refused(format!("{other:?} is not a choice of apps."))),
    };
    Ok(Grant { apps, read_only, call_budget, calls_used: 0, expires_at })
}

/// A grant as the audit trail records it: what it reaches, not how much of it is used.
pub fn audit_details(grant: &Grant) -> serde_json::Value {
    serde_json::json!({
        "apps": grant.apps_json(),
        "readOnly": grant.read_only,
        "callBudget": grant.call_budget,
        "expiresAt": grant.expires_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
    })
}
