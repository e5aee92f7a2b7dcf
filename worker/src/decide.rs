//! What next after a provider's answer: succeed, fail for good, retry now, or park the call
//! in a delay queue. A pure function of the answer and the call's state, so every branch is
//! tested here without a provider, a queue or a clock; `execute` carries the decision out.

use clawlink_common::catalog::RetryClass;
use clawlink_common::codes::ErrorCode;
use clawlink_common::provider::{CallError, ProviderResponse};
use clawlink_common::results::OutcomeError;
use clawlink_common::retry::{Classification, RetryPolicy, classify_status};
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// The state of the call the answer belongs to.
pub struct CallState<'a> {
    /// The provider's display name, for messages.
    pub provider_name: &'a str,
    /// Attempts made so far, the one just answered included.
    pub attempts: u32,
    /// The token changed during this call: a 401 on it means access was revoked.
    pub refreshed: bool,
    pub retry: &'a RetryPolicy,
    /// Longer waits go through a delay queue instead of holding a worker slot.
    pub max_inline_wait: Duration,
    /// Whether a write whose answer was lost may be sent again (the tool's catalog entry).
    pub class: RetryClass,
}

#[derive(Debug, PartialEq)]
pub enum Step {
    Succeed,
    /// Final; `keep_body`: the provider's error body goes to the agent as `data`.
    Fail {
        error: OutcomeError,
        keep_body: bool,
    },
    /// Try again in this process after `wait`.
    Retry {
        wait: Duration,
        reason: String,
    },
    /// The request went out and its answer was lost, and the tool may not be sent again
    /// blindly: verify (`RetryClass::Verify`) or fail with `outcome_unknown`.
    Unknown {
        reason: String,
    },
    /// Try again after `wait`, through a delay queue.
    Defer {
        wait: Duration,
        reason: String,
    },
}

#[derive(Debug, PartialEq)]
pub struct Decision {
    pub step: Step,
    /// The provider said 429: every worker holds off this connection this long.
    pub pause: Option<Duration>,
}

/// The connection's grant is gone (refused refresh token, revoked access): the agent is
/// told to have the person reconnect.
pub fn needs_reauth(provider_name: &str, provider_status: Option<u16>) -> OutcomeError {
    OutcomeError::new(
        ErrorCode::NeedsReauth,
        format!("The {provider_name} connection must be reconnected."),
        false,
        provider_status,
    )
}

/// The most useful line of a provider's error body.
fn provider_message(body: &Value) -> Option<String> {
    let candidates = [
        body.pointer("/error/message"),
        body.pointer("/message"),
        body.pointer("/error_description"),
        body.pointer("/errors/0/message"),
        body.get("error").filter(|e| e.is_string()),
    ];
    candidates.into_iter().flatten().find_map(|v| v.as_str()).map(|s| s.chars().take(500).collect())
}

/// Decides what follows `answer`, the result of attempt `call.attempts`.
pub fn next_step(answer: &Result<ProviderResponse, CallError>, call: &CallState<'_>, now: SystemTime) -> Decision {
    let (classification, status) = match answer {
        Ok(r) => (classify_status(r.status, r.retry_after.as_deref(), r.reset.as_deref(), now), Some(r.status)),
        Err(err) if err.is_transient() => (Classification::Transient { not_before: None }, None),
        Err(_) => (Classification::Permanent, None),
    };
    let decided = |step| Decision { step, pause: None };
    match classification {
        Classification::Success => decided(Step::Succeed),
        Classification::Permanent if status == Some(401) && call.refreshed => {
            // The provider refuses a token it has just issued: access was revoked.
            decided(Step::Fail { error: needs_reauth(call.provider_name, status), keep_body: false })
        }
        Classification::Permanent => {
            let message = match answer {
                Ok(r) => format!(
                    "{} answered {}: {}",
                    call.provider_name,
                    r.status,
                    provider_message(&r.body).unwrap_or_else(|| "no details".into())
                ),
                Err(err) => err.to_string(),
            };
            let error = OutcomeError::new(ErrorCode::ProviderError, message, false, status);
            decided(Step::Fail { error, keep_body: answer.is_ok() })
        }
        Classification::Transient { not_before } => {
            let pause = (status == Some(429)).then(|| not_before.unwrap_or(Duration::from_secs(1)));
            let reason = match (answer, status) {
                (_, Some(429)) => "rate limited by the provider (429)".to_string(),
                (_, Some(s)) => format!("the provider answered {s}"),
                (Err(err), _) => err.to_string(),
                (Ok(_), None) => unreachable!("a response has a status"),
            };
            // A 429 or a 503 says the request was not acted on; a timeout, a reset or
            // another 5xx leaves it open.
            let maybe_performed = match answer {
                Ok(r) => r.status >= 500 && r.status != 503,
                Err(err) => err.maybe_performed(),
            };
            let step = if maybe_performed && call.class != RetryClass::Safe {
                Step::Unknown { reason }
            } else {
                again(call, not_before, reason, status)
            };
            Decision { step, pause }
        }
    }
}

/// A transient failure (or a write found not to have happened): retry now or later while
/// attempts are left, else fail retryably with the reason.
pub fn again(call: &CallState<'_>, not_before: Option<Duration>, reason: String, status: Option<u16>) -> Step {
    if !call.retry.may_retry(call.attempts) {
        let code = if status == Some(429) { ErrorCode::RateLimited } else { ErrorCode::ProviderUnavailable };
        let message = format!("{} did not succeed after {} attempts: {reason}", call.provider_name, call.attempts);
        return Step::Fail { error: OutcomeError::new(code, message, true, status), keep_body: false };
    }
    let wait = call.retry.next_wait(call.attempts, not_before);
    if wait > call.max_inline_wait { Step::Defer { wait, reason } } else { Step::Retry { wait, reason } }
}

/// A write that may have happened and cannot be sent again: the agent must check.
pub fn outcome_unknown(provider_name: &str, reason: &str, status: Option<u16>) -> OutcomeError {
    OutcomeError::new(
        ErrorCode::OutcomeUnknown,
        format!(
            "{provider_name} may or may not have done this: the request was sent and its answer was lost ({reason}). \
             Check in {provider_name} before calling again."
        ),
        false,
        status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POLICY: RetryPolicy =
        RetryPolicy { max_attempts: 3, base: Duration::from_millis(200), cap: Duration::from_secs(60) };

    fn call(attempts: u32, refreshed: bool) -> CallState<'static> {
        CallState {
            provider_name: "Sandbox",
            attempts,
            refreshed,
            retry: &POLICY,
            max_inline_wait: Duration::from_secs(5),
            class: RetryClass::Safe,
        }
    }

    fn write(attempts: u32, class: RetryClass) -> CallState<'static> {
        CallState { class, ..call(attempts, false) }
    }

    fn answered(status: u16, body: Value, retry_after: Option<&str>) -> Result<ProviderResponse, CallError> {
        Ok(ProviderResponse {
            status,
            body,
            retry_after: retry_after.map(String::from),
            reset: None,
            request_id: None,
            elapsed: Duration::from_millis(3),
        })
    }

    fn decide(answer: Result<ProviderResponse, CallError>, call: CallState<'_>) -> Decision {
        next_step(&answer, &call, SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
    }

    fn failed(d: &Decision) -> &OutcomeError {
        match &d.step {
            Step::Fail { error, .. } => error,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_2xx_succeeds() {
        assert_eq!(decide(answered(201, json!({"id": 1}), None), call(1, false)).step, Step::Succeed);
    }

    #[test]
    fn a_4xx_fails_for_good_with_the_providers_message_and_body() {
        let d = decide(answered(422, json!({"message": "title is missing"}), None), call(1, false));
        let Step::Fail { error, keep_body } = &d.step else { panic!("{d:?}") };
        assert_eq!(error.code, ErrorCode::ProviderError);
        assert_eq!(error.message, "Sandbox answered 422: title is missing");
        assert_eq!(error.provider_status, Some(422));
        assert!(!error.retryable && *keep_body && d.pause.is_none());
    }

    #[test]
    fn a_401_means_expired_unless_the_token_was_just_refreshed() {
        let plain = decide(answered(401, json!({}), None), call(1, false));
        assert_eq!(failed(&plain).code, ErrorCode::ProviderError);
        let revoked = decide(answered(401, json!({}), None), call(1, true));
        assert_eq!(failed(&revoked).code, ErrorCode::NeedsReauth);
        assert_eq!(failed(&revoked).provider_status, Some(401));
    }

    #[test]
    fn a_5xx_with_attempts_left_retries_inline_after_a_short_wait() {
        let d = decide(answered(503, json!({}), None), call(1, false));
        let Step::Retry { wait, reason } = &d.step else { panic!("{d:?}") };
        assert!(*wait <= POLICY.base, "{wait:?}");
        assert_eq!(reason, "the provider answered 503");
        assert_eq!(d.pause, None, "only a 429 pauses the connection");
    }

    #[test]
    fn a_long_retry_after_parks_the_call_and_a_429_pauses_the_connection() {
        let d = decide(answered(429, json!({}), Some("30")), call(1, false));
        let Step::Defer { wait, .. } = &d.step else { panic!("{d:?}") };
        assert!(*wait >= Duration::from_secs(30), "never sooner than the provider asked: {wait:?}");
        assert_eq!(d.pause, Some(Duration::from_secs(30)));
        // A 429 without a time pauses a second.
        let d = decide(answered(429, json!({}), None), call(1, false));
        assert_eq!(d.pause, Some(Duration::from_secs(1)));
    }

    #[test]
    fn the_last_attempt_fails_retryably_with_the_reason() {
        let d = decide(answered(429, json!({}), Some("1")), call(3, false));
        let e = failed(&d);
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.retryable);
        assert_eq!(e.message, "Sandbox did not succeed after 3 attempts: rate limited by the provider (429)");
        assert_eq!(d.pause, Some(Duration::from_secs(1)), "the pause holds even when no retry follows");
        let d = decide(Err(CallError::Timeout), call(3, false));
        assert_eq!(failed(&d).code, ErrorCode::ProviderUnavailable);
        assert_eq!(failed(&d).provider_status, None);
    }

    #[test]
    fn transport_errors_retry_when_transient_and_fail_when_not() {
        let d = decide(Err(CallError::Interrupted("connection reset".into())), call(1, false));
        assert!(matches!(d.step, Step::Retry { .. }), "{d:?}");
        let d = decide(Err(CallError::Connect("connection refused".into())), call(1, false));
        assert!(matches!(d.step, Step::Retry { .. }), "{d:?}");
        let d = decide(Err(CallError::Blocked("private address".into())), call(1, false));
        let Step::Fail { error, keep_body } = &d.step else { panic!("{d:?}") };
        assert_eq!(error.code, ErrorCode::ProviderError);
        assert!(!keep_body);
    }

    #[test]
    fn a_write_that_may_have_happened_is_not_sent_again_unless_it_is_safe() {
        for class in [RetryClass::Verify, RetryClass::Never] {
            for maybe in [
                Err(CallError::Timeout),
                Err(CallError::Interrupted("connection reset by peer".into())),
                Err(CallError::Body("cut off".into())),
                answered(500, json!({}), None),
                answered(502, json!({}), None),
                answered(504, json!({}), None),
            ] {
                let d = decide(maybe, write(1, class));
                assert!(matches!(d.step, Step::Unknown { .. }), "{class:?}: {d:?}");
            }
            // Not sent, or refused without acting: sending again is fine.
            for not_done in [
                Err(CallError::Connect("connection refused".into())),
                answered(503, json!({}), None),
                answered(429, json!({}), None),
            ] {
                let d = decide(not_done, write(1, class));
                assert!(matches!(d.step, Step::Retry { .. }), "{class:?}: {d:?}");
            }
        }
        let d = decide(Err(CallError::Timeout), write(1, RetryClass::Safe));
        assert!(matches!(d.step, Step::Retry { .. }), "{d:?}");
    }

    #[test]
    fn an_unknown_outcome_tells_the_agent_to_check() {
        let e = outcome_unknown("Sandbox", "the provider took too long to answer", None);
        assert_eq!(e.code, ErrorCode::OutcomeUnknown);
        assert!(!e.retryable);
        assert!(e.message.contains("Check in Sandbox before calling again"), "{}", e.message);
    }
}
