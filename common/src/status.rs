//! The states of the product's two long-lived things: an execution (a tool call) and a
//! connection. Stored as `text` in Postgres, sent in snake_case in JSON; the spellings are
//! part of CONTRACT.md and of the stored rows, so a variant may be added, never renamed.

use serde::{Deserialize, Serialize};

/// `executions.status`: queued → running → succeeded | failed (a retry parked in a delay
/// queue goes back to queued). A call whose policy asks a person starts as
/// awaiting_approval → queued (approved) | failed (denied, expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Waiting for a person to approve it on the dashboard; no job exists yet.
    AwaitingApproval,
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 5] = [
        ExecutionStatus::AwaitingApproval,
        ExecutionStatus::Queued,
        ExecutionStatus::Running,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::AwaitingApproval => "awaiting_approval",
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, ExecutionStatus::Succeeded | ExecutionStatus::Failed)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `user_integrations.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    /// The grant is gone (a refused refresh token, revoked access): calls on it are refused
    /// until the person reconnects it.
    NeedsReauth,
    Revoked,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::NeedsReauth => "needs_reauth",
            ConnectionStatus::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_match_serde_and_parse() {
        for s in ExecutionStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::Value::String(s.as_str().into()));
            assert_eq!(ExecutionStatus::parse(s.as_str()), Some(s));
        }
        for s in [ConnectionStatus::Active, ConnectionStatus::NeedsReauth, ConnectionStatus::Revoked] {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::Value::String(s.as_str().into()));
        }
        assert_eq!(ExecutionStatus::parse("paused"), None);
    }
}
