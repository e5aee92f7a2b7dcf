//! The error codes an agent reads (`error.code` in CONTRACT.md's envelope), each with its
//! kind (`error.type`) and the HTTP status that tells the agent what it means. This is the
//! one place that maps a code to both: the api's envelope, the worker's outcomes, the rows
//! of `executions.error_code` and the dashboard all use these values.
//!
//! The spellings are part of the contract (the published OpenClaw plugin and agents' prompts
//! match on them): a variant may be added, never renamed. Knows nothing about HTTP serving;
//! an HTTP status is only a number here.

use http::StatusCode;
use serde::{Deserialize, Serialize};

/// `error.type`: the family of an error, for an agent that branches on families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Validation,
    NotFound,
    Auth,
    Connection,
    Confirmation,
    PlanLimit,
    RateLimit,
    Conflict,
    Pairing,
    /// The device's grant does not reach this (its app, connection, mode, budget or time).
    Grant,
    Provider,
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Validation => "validation",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Auth => "auth",
            ErrorKind::Connection => "connection",
            ErrorKind::Confirmation => "confirmation",
            ErrorKind::PlanLimit => "plan_limit",
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Pairing => "pairing",
            ErrorKind::Grant => "grant",
            ErrorKind::Provider => "provider",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Declares the codes once: the enum, its spelling, its kind and its HTTP status.
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, $kind:ident, $status:ident; )*) => {
        /// `error.code`. Serialised (serde, and sqlx as `text`) in snake_case.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
        #[serde(rename_all = "snake_case")]
        #[sqlx(type_name = "text", rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, for tests and documentation.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant ),* ];

            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $text, )* }
            }

            pub fn kind(self) -> ErrorKind {
                match self { $( ErrorCode::$variant => ErrorKind::$kind, )* }
            }

            /// The status an answer carrying this code has.
            pub fn http_status(self) -> StatusCode {
                match self { $( ErrorCode::$variant => StatusCode::$status, )* }
            }
        }

        impl std::str::FromStr for ErrorCode {
            type Err = UnknownCode;
            fn from_str(s: &str) -> Result<Self, UnknownCode> {
                match s { $( $text => Ok(ErrorCode::$variant), )* _ => Err(UnknownCode(s.to_string())) }
            }
        }
    };
}

error_codes! {
    // What a finished execution failed with (the worker, the upkeep jobs, the dead-letter
    // view): stored in `executions.error_code`.
    /// The connection's grant is gone; the person must reconnect it.
    NeedsReauth = "needs_reauth", Auth, UNAUTHORIZED;
    /// The stored credential does not decrypt with any loaded key.
    CredentialUnreadable = "credential_unreadable", Auth, UNAUTHORIZED;
    /// The call's connection was deleted before it ran.
    ConnectionMissing = "connection_missing", Auth, CONFLICT;
    InvalidArguments = "invalid_arguments", Validation, BAD_REQUEST;
    /// The provider kept answering 429.
    RateLimited = "rate_limited", RateLimit, TOO_MANY_REQUESTS;
    /// The provider kept failing transiently (5xx, timeouts, resets).
    ProviderUnavailable = "provider_unavailable", Provider, SERVICE_UNAVAILABLE;
    /// The provider refused the call (a 4xx other than 429).
    ProviderError = "provider_error", Provider, BAD_GATEWAY;
    /// The work queue did not take the call: it was never started.
    QueueUnavailable = "queue_unavailable", Unavailable, SERVICE_UNAVAILABLE;
    /// Running far too long; it may or may not have reached the app.
    Stuck = "stuck", Internal, GATEWAY_TIMEOUT;
    /// The write was sent and its answer lost; the tool may not be sent again blindly and
    /// no verification could tell whether it happened.
    OutcomeUnknown = "outcome_unknown", Provider, GATEWAY_TIMEOUT;
    /// Discarded by an admin from the dead-letter queue.
    DeadLettered = "dead_lettered", Internal, INTERNAL_SERVER_ERROR;
    /// The tool left the catalog between the call and its run.
    ToolUnavailable = "tool_unavailable", Internal, INTERNAL_SERVER_ERROR;
    /// A person denied the call on the dashboard (its policy asks a person).
    ApprovalDenied = "approval_denied", Confirmation, FORBIDDEN;
    /// No person approved the call in time; or an approval token presented past its expiry.
    ApprovalExpired = "approval_expired", Confirmation, GONE;
    /// A row that is failed without a code (none is written so today).
    Internal = "internal", Internal, INTERNAL_SERVER_ERROR;

    // What the api refuses a request with; nothing was queued.
    RouteNotFound = "route_not_found", NotFound, NOT_FOUND;
    MethodNotAllowed = "method_not_allowed", Validation, METHOD_NOT_ALLOWED;
    /// A request axum refused before our code saw it (its status is kept).
    InvalidRequest = "invalid_request", Validation, BAD_REQUEST;
    InvalidBody = "invalid_body", Validation, BAD_REQUEST;
    BodyTooLarge = "body_too_large", Validation, PAYLOAD_TOO_LARGE;
    UnsupportedMediaType = "unsupported_media_type", Validation, UNSUPPORTED_MEDIA_TYPE;
    MissingCredential = "missing_credential", Auth, UNAUTHORIZED;
    InvalidCredential = "invalid_credential", Auth, UNAUTHORIZED;
    TooManyRequests = "too_many_requests", RateLimit, TOO_MANY_REQUESTS;
    ToolNotFound = "tool_not_found", NotFound, NOT_FOUND;
    IntegrationNotFound = "integration_not_found", NotFound, NOT_FOUND;
    ExecutionNotFound = "execution_not_found", NotFound, NOT_FOUND;
    ConnectionNotFound = "connection_not_found", NotFound, NOT_FOUND;
    ConnectSessionNotFound = "connect_session_not_found", NotFound, NOT_FOUND;
    PairingNotFound = "pairing_not_found", NotFound, NOT_FOUND;
    NeedsConnection = "needs_connection", Connection, CONFLICT;
    AmbiguousConnection = "ambiguous_connection", Connection, CONFLICT;
    ConfirmationRequired = "confirmation_required", Confirmation, PRECONDITION_FAILED;
    /// The policy asks for the approval token of a preview of this exact call.
    ApprovalRequired = "approval_required", Confirmation, PRECONDITION_FAILED;
    /// The approval token is forged, altered, or was issued for another tool, other
    /// arguments, another connection or another device.
    ApprovalInvalid = "approval_invalid", Confirmation, FORBIDDEN;
    /// The approval token was used already (each approves one call).
    ApprovalUsed = "approval_used", Confirmation, CONFLICT;
    /// The tool's app, the connection, or (for a read-only grant) a tool that changes data
    /// is outside this device's grant; its person can widen it on the devices page.
    NotGranted = "not_granted", Grant, FORBIDDEN;
    /// The device's grant has expired; its person can extend it on the devices page.
    GrantExpired = "grant_expired", Grant, FORBIDDEN;
    /// The device has made every call its grant's budget allows.
    GrantBudgetExhausted = "grant_budget_exhausted", Grant, FORBIDDEN;
    PlanLimitReached = "plan_limit_reached", PlanLimit, PAYMENT_REQUIRED;
    ConnectionLimitReached = "connection_limit_reached", PlanLimit, PAYMENT_REQUIRED;
    IdempotencyConflict = "idempotency_conflict", Conflict, CONFLICT;
    InvalidIdempotencyKey = "invalid_idempotency_key", Validation, BAD_REQUEST;
    MissingQuery = "missing_query", Validation, BAD_REQUEST;
    InvalidLimit = "invalid_limit", Validation, BAD_REQUEST;
    /// A list's `cursor` that this server did not hand out.
    InvalidCursor = "invalid_cursor", Validation, BAD_REQUEST;
    /// A list's filter that cannot be read (`connected=maybe`, `integration=a,,b`).
    InvalidFilter = "invalid_filter", Validation, BAD_REQUEST;
    InvalidDeviceLabel = "invalid_device_label", Validation, BAD_REQUEST;
    InvalidVerifier = "invalid_verifier", Validation, BAD_REQUEST;
    TooManyAttempts = "too_many_attempts", RateLimit, TOO_MANY_REQUESTS;
    /// RFC 8628 §3.5: polled faster than the interval.
    SlowDown = "slow_down", RateLimit, TOO_MANY_REQUESTS;
    PairingExpired = "pairing_expired", Pairing, GONE;
    PairingDenied = "pairing_denied", Pairing, CONFLICT;
    NotApproved = "not_approved", Pairing, CONFLICT;
    AlreadyPaired = "already_paired", Pairing, CONFLICT;
    NotExchanged = "not_exchanged", Pairing, CONFLICT;
    /// MCP: a browser page of an origin the api does not allow (DNS rebinding).
    ForbiddenOrigin = "forbidden_origin", Auth, FORBIDDEN;
    /// MCP: an `MCP-Protocol-Version` header naming a revision this server does not speak.
    UnsupportedProtocolVersion = "unsupported_protocol_version", Validation, BAD_REQUEST;
    /// MCP: a body that is not one JSON-RPC 2.0 message.
    InvalidMessage = "invalid_message", Validation, BAD_REQUEST;
    /// A dependency (Postgres, Redis, RabbitMQ) is down; try again.
    ServiceUnavailable = "service_unavailable", Unavailable, SERVICE_UNAVAILABLE;
    /// Something of ours failed; the message names the request id.
    InternalError = "internal_error", Internal, INTERNAL_SERVER_ERROR;
}

/// A code this version does not know (written by a newer one).
#[derive(Debug, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownCode(pub String);

impl ErrorCode {
    /// A code that asks the person to reconnect the connection.
    pub fn needs_reconnect(self) -> bool {
        matches!(self, ErrorCode::NeedsReauth | ErrorCode::CredentialUnreadable)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_spelling_serde_and_from_str() {
        for code in ErrorCode::ALL {
            let text = serde_json::to_value(code).unwrap();
            assert_eq!(text, serde_json::Value::String(code.as_str().into()), "{code:?}");
            assert_eq!(code.as_str().parse::<ErrorCode>().unwrap(), *code);
            let kind = serde_json::to_value(code.kind()).unwrap();
            assert_eq!(kind, serde_json::Value::String(code.kind().as_str().into()));
        }
        assert!("no_such_code".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn codes_an_agent_acts_on_keep_their_status() {
        // The statuses CONTRACT.md promises.
        let expected = [
            (ErrorCode::InvalidArguments, 400),
            (ErrorCode::NeedsReauth, 401),
            (ErrorCode::InvalidCredential, 401),
            (ErrorCode::PlanLimitReached, 402),
            (ErrorCode::ToolNotFound, 404),
            (ErrorCode::NeedsConnection, 409),
            (ErrorCode::AmbiguousConnection, 409),
            (ErrorCode::ConfirmationRequired, 412),
            (ErrorCode::BodyTooLarge, 413),
            (ErrorCode::TooManyRequests, 429),
            (ErrorCode::ServiceUnavailable, 503),
        ];
        for (code, status) in expected {
            assert_eq!(code.http_status().as_u16(), status, "{code}");
        }
        // Every failure an agent can retry is a 429 or a 5xx, never a 4xx it should fix.
        for code in ErrorCode::ALL {
            if code.kind() == ErrorKind::Validation {
                assert!(code.http_status().is_client_error(), "{code}");
            }
        }
    }
}
