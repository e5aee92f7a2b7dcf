//! Grants per device: what a paired agent may reach. A person chooses one on the pairing
//! approval page and edits it on the devices page; the api enforces it on every agent
//! endpoint (list, search, describe, preview, execute, MCP).
//!
//! A grant names the apps the device may use (all, or some — and for each app either all
//! of its connections or some of them), whether it may only read, how many calls it may
//! make, and until when. The default grant (every app, read-write, no budget, no expiry)
//! is how every device behaved before grants, so the published OpenClaw plugin sees no
//! difference unless its person narrows it.
//!
//! Owns the rules that need nothing but the grant and the thing asked for. Knows nothing
//! about HTTP or tables: the columns are `db::devices`, the answers the api's.

use crate::catalog::{Mode, ToolEntry};
use crate::ids::ConnectionId;
use serde_json::Value;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Which connections of one granted app the device may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connections {
    /// Every connection of the app, those made later included.
    All,
    /// Only these.
    Only(Vec<ConnectionId>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// `None`: every app, every connection. Otherwise the granted apps by integration id.
    pub apps: Option<BTreeMap<String, Connections>>,
    /// Only tools whose mode is `read`.
    pub read_only: bool,
    /// At most this many calls accepted (`calls_used` counts them).
    pub call_budget: Option<i64>,
    pub calls_used: i64,
    pub expires_at: Option<OffsetDateTime>,
}

/// Why a grant refuses something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The app is not granted.
    App,
    /// The tool changes data and the grant is read-only.
    ReadOnly,
    /// The app is granted, this connection of it is not.
    Connection(ConnectionId),
}

impl Grant {
    /// Whether this is the grant every device had before grants existed.
    pub fn is_default(&self) -> bool {
        self.apps.is_none() && !self.read_only && self.call_budget.is_none() && self.expires_at.is_none()
    }

    pub fn expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the device may use apps of this integration at all.
    pub fn allows_app(&self, integration: &str) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.contains_key(integration))
    }

    /// Whether the tool is inside the grant (its app granted; a read if read-only).
    pub fn check_tool(&self, tool: &ToolEntry) -> Result<(), Refusal> {
        if !self.allows_app(&tool.provider.id) {
            return Err(Refusal::App);
        }
        if self.read_only && tool.tool.mode != Mode::Read {
            return Err(Refusal::ReadOnly);
        }
        Ok(())
    }

    pub fn allows_tool(&self, tool: &ToolEntry) -> bool {
        self.check_tool(tool).is_ok()
    }

    /// Whether the device may use this connection of `integration`.
    pub fn allows_connection(&self, integration: &str, connection: ConnectionId) -> bool {
        match self.apps.as_ref() {
            None => true,
            Some(apps) => match apps.get(integration) {
                None => false,
                Some(Connections::All) => true,
                Some(Connections::Only(ids)) => ids.contains(&connection),
            },
        }
    }

    /// The granted connections of `integration` when the grant names some, `None` when
    /// every connection of it is granted (or the app is not granted at all).
    pub fn only_connections(&self, integration: &str) -> Option<&[ConnectionId]> {
        match self.apps.as_ref()?.get(integration)? {
            Connections::All => None,
            Connections::Only(ids) => Some(ids),
        }
    }

    /// Calls left under the budget; `None` without a budget.
    pub fn calls_left(&self) -> Option<i64> {
        self.call_budget.map(|b| (b - self.calls_used).max(0))
    }

    /// The `grant_apps` column: NULL for every app, else `{"app": null | [ids]}`.
    pub fn apps_json(&self) -> Option<Value> {
        self.apps.as_ref().map(|apps| {
            Value::Object(
                apps.iter()
                    .map(|(app, c)| {
                        let v = match c {
                            Connections::All => Value::Null,
                            Connections::Only(ids) => Value::from(ids.iter().map(|c| c.0).collect::<Vec<_>>()),
                        };
                        (app.clone(), v)
                    })
                    .collect(),
            )
        })
    }

    /// Reads the `grant_apps` column. A value that is not of the stored shape grants
    /// nothing (fails closed) rather than everything.
    pub fn apps_from_json(value: Option<&Value>) -> Option<BTreeMap<String, Connections>> {
        let object = match value? {
            Value::Object(o) => o,
            _ => return Some(BTreeMap::new()),
        };
        let mut apps = BTreeMap::new();
        for (app, v) in object {
            let connections = match v {
                Value::Null => Connections::All,
                Value::Array(ids) => {
                    Connections::Only(ids.iter().filter_map(Value::as_i64).map(ConnectionId).collect())
                }
                _ => Connections::Only(Vec::new()),
            };
            apps.insert(app.clone(), connections);
        }
        Some(apps)
    }

    /// One line for the dashboard and the audit trail: what the grant allows.
    pub fn describe(&self) -> String {
        let apps = match &self.apps {
            None => "every app".to_string(),
            Some(apps) if apps.is_empty() => "no app".to_string(),
            Some(apps) => apps
                .iter()
                .map(|(app, c)| match c {
                    Connections::All => app.clone(),
                    Connections::Only(ids) => format!(
                        "{app} (connection{} {})",
                        if ids.len() == 1 { "" } else { "s" },
                        ids.iter().map(|c| c.0.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        let mut text = format!("{apps}; {}", if self.read_only { "read-only" } else { "read and write" });
        if let Some(budget) = self.call_budget {
            text.push_str(&format!("; {} of {budget} calls used", self.calls_used.min(budget)));
        }
        if let Some(at) = self.expires_at {
            let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
            text.push_str(&format!(
                "; until {}",
                at.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grant(apps: Value) -> Grant {
        Grant { apps: Grant::apps_from_json(Some(&apps)), ..Grant::default() }
    }

    #[test]
    fn the_default_grant_allows_everything() {
        let g = Grant::default();
        assert!(g.is_default());
        assert!(g.allows_app("github"));
        assert!(g.allows_connection("github", ConnectionId(7)));
        assert_eq!(g.only_connections("github"), None);
        assert!(!g.expired(OffsetDateTime::now_utc()));
        assert_eq!(g.apps_json(), None);
    }

    #[test]
    fn apps_and_connections_are_granted_per_app() {
        let g = grant(json!({"github": null, "slack": [3, 4]}));
        assert!(!g.is_default());
        assert!(g.allows_app("github") && g.allows_app("slack"));
        assert!(!g.allows_app("notion"));
        assert!(g.allows_connection("github", ConnectionId(99)));
        assert!(g.allows_connection("slack", ConnectionId(3)));
        assert!(!g.allows_connection("slack", ConnectionId(5)));
        // A connection id granted for one app does not open another app.
        assert!(!g.allows_connection("notion", ConnectionId(3)));
        assert_eq!(g.only_connections("slack"), Some(&[ConnectionId(3), ConnectionId(4)][..]));
        assert_eq!(g.apps_json(), Some(json!({"github": null, "slack": [3, 4]})));
    }

    #[test]
    fn a_malformed_column_grants_nothing() {
        let g = grant(json!(["github"]));
        assert!(!g.allows_app("github"));
        let g = grant(json!({"github": "all"}));
        assert!(g.allows_app("github"));
        assert!(!g.allows_connection("github", ConnectionId(1)));
    }

    #[test]
    fn budget_and_expiry() {
        let now = OffsetDateTime::now_utc();
        let g = Grant { call_budget: Some(3), calls_used: 5, expires_at: Some(now), ..Grant::default() };
        assert_eq!(g.calls_left(), Some(0));
        assert!(g.expired(now));
        assert!(!g.expired(now - time::Duration::seconds(1)));
        assert!(g.describe().contains("3 of 3 calls used"), "{}", g.describe());
    }
}
