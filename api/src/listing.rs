//! Which tools an agent is shown, page by page: the filters and the cursor shared by
//! `GET /api/tools` and MCP `tools/list`, so an agent of a person with three apps is not
//! handed thousands of tools.
//!
//! - `integration=a,b` keeps those integrations' tools (a name not in the catalog is a
//!   404 `integration_not_found`, as it always was for one name; a list that cannot be
//!   read is a 400 `invalid_filter`);
//! - `connected=true` keeps the integrations the caller has a usable (not revoked)
//!   connection to; `false` or absent keeps all;
//! - the cursor is opaque to the agent: the name of the last tool of the page before,
//!   encoded. Pages are in name order and start after that name, so a catalog that
//!   changes between two pages neither repeats nor skips the tools that stayed.

use crate::error::ApiError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawlink_common::catalog::{Catalog, ToolEntry};
use clawlink_common::codes::ErrorCode;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The most names one `integration` filter may hold.
const MAX_INTEGRATIONS: usize = 100;
/// What a cursor's text starts with once decoded (a version, should its form change).
const CURSOR_PREFIX: &str = "after:";

/// The filters of a tool list, read and checked.
#[derive(Debug, Default, Clone)]
pub struct ToolFilter {
    /// Only these integrations (all when `None`).
    pub integrations: Option<BTreeSet<String>>,
    /// Only integrations the caller has a connection to.
    pub connected: bool,
}

impl ToolFilter {
    /// Reads `integration` (one slug or a comma list; empty means none) and `connected`
    /// (`true`/`false`, `1`/`0`).
    pub fn parse(catalog: &Catalog, integration: Option<&str>, connected: Option<&str>) -> Result<Self, ApiError> {
        let connected = match connected.map(str::trim) {
            None | Some("") | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidFilter,
                    format!("connected must be true or false, not {:?}.", shown(other)),
                )
                .hint("connected=true lists only the apps this account has connected."));
            }
        };
        let integrations = match integration.map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(list) => {
                let names: Vec<&str> = list.split(',').map(str::trim).collect();
                if names.iter().any(|n| n.is_empty()) {
                    return Err(ApiError::new(
                        ErrorCode::InvalidFilter,
                        format!("integration {:?} has an empty name; give slugs separated by commas.", shown(list)),
                    )
                    .hint("For example integration=github,slack."));
                }
                if names.len() > MAX_INTEGRATIONS {
                    return Err(ApiError::new(
                        ErrorCode::InvalidFilter,
                        format!("integration names {} integrations; at most {MAX_INTEGRATIONS}.", names.len()),
                    ));
                }
                for name in &names {
                    if catalog.provider(name).is_none() {
                        return Err(ApiError::new(
                            ErrorCode::IntegrationNotFound,
                            format!("There is no integration named {:?}.", shown(name)),
                        )
                        .hint("GET /api/catalog lists every integration."));
                    }
                }
                Some(names.into_iter().map(str::to_string).collect())
            }
        };
        Ok(ToolFilter { integrations, connected })
    }

    /// The integrations a tool must belong to, given the caller's connected ones; `None`
    /// when every integration is kept.
    pub fn scope(&self, connected_apps: &BTreeSet<String>) -> Option<BTreeSet<String>> {
        match (&self.integrations, self.connected) {
            (None, false) => None,
            (None, true) => Some(connected_apps.clone()),
            (Some(named), false) => Some(named.clone()),
            (Some(named), true) => Some(named.intersection(connected_apps).cloned().collect()),
        }
    }

    /// The `integration` a list answer echoes: the one name, the list as given, or null.
    pub fn echo(&self) -> Option<String> {
        self.integrations.as_ref().map(|set| set.iter().cloned().collect::<Vec<_>>().join(","))
    }
}

/// A cursor this server handed out, naming the last tool of the page before.
pub fn encode_cursor(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{last}"))
}

/// The tool name a cursor names, or a 400 `invalid_cursor`.
pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let refused = || {
        ApiError::new(ErrorCode::InvalidCursor, "This cursor was not handed out by this server.")
            .hint("Pass nextCursor from the previous page as it was, or leave cursor out to start again.")
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| refused())?;
    let text = String::from_utf8(bytes).map_err(|_| refused())?;
    let name = text.strip_prefix(CURSOR_PREFIX).ok_or_else(refused)?;
    let slug = !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !slug {
        return Err(refused());
    }
    Ok(name.to_string())
}

/// One page of a tool list.
pub struct Page<'a> {
    pub tools: Vec<&'a Arc<ToolEntry>>,
    /// The cursor of the next page, when there are more tools.
    pub next_cursor: Option<String>,
    /// How many tools the filters keep, over every page.
    pub total: usize,
}

/// The tools in `scope` (all when `None`; only reads when `reads_only`) after `after`, at
/// most `limit` of them (all when `None`).
pub fn page<'a>(
    catalog: &'a Catalog,
    scope: Option<&BTreeSet<String>>,
    reads_only: bool,
    after: Option<&str>,
    limit: Option<usize>,
) -> Page<'a> {
    let keep = |t: &&Arc<ToolEntry>| {
        scope.is_none_or(|s| s.contains(&t.provider.id))
            && (!reads_only || t.tool.mode == clawlink_common::catalog::Mode::Read)
    };
    let total = catalog.tools().filter(keep).count();
    let rest: Box<dyn Iterator<Item = &'a Arc<ToolEntry>>> = match after {
        Some(name) => Box::new(catalog.tools_after(name)),
        None => Box::new(catalog.tools()),
    };
    let mut rest = rest.filter(keep);
    let tools: Vec<&Arc<ToolEntry>> = match limit {
        Some(n) => rest.by_ref().take(n).collect(),
        None => rest.by_ref().collect(),
    };
    let next_cursor = match (tools.last(), rest.next()) {
        (Some(last), Some(_)) => Some(encode_cursor(&last.name)),
        _ => None,
    };
    Page { tools, next_cursor, total }
}

/// A value as an error repeats it: the first 100 characters.
fn shown(text: &str) -> String {
    text.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor("github_create_issue")).unwrap(), "github_create_issue");
        for forged in [
            "",
            "abc",
            "50",
            "18446744073709551615",
            "%%%",
            &URL_SAFE_NO_PAD.encode("after:"),
            &URL_SAFE_NO_PAD.encode("before:x"),
            &URL_SAFE_NO_PAD.encode("after:../x"),
        ] {
            let err = decode_cursor(forged).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidCursor, "{forged:?}");
        }
    }
}
