//! What to do after a provider call: classify the outcome and choose the next wait.
//!
//! 2xx → success. 429, 5xx, timeouts and connection errors → transient: retry after an
//! exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
//! Jitter"), capped, but never sooner than the provider asked (`Retry-After` in seconds
//! or as an HTTP date, RFC 9110 §10.2.3; or a reset header with an epoch second). Other
//! 4xx → permanent: no retry. Knows nothing about queues or HTTP clients.

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;
use std::time::{Duration, SystemTime};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classification {
    Success,
    /// Worth retrying; `not_before` is the provider's own instruction, if it gave one.
    Transient {
        not_before: Option<Duration>,
    },
    Permanent,
}

/// Classifies an HTTP status with its retry headers (already looked up by name).
pub fn classify_status(status: u16, retry_after: Option<&str>, reset: Option<&str>, now: SystemTime) -> Classification {
    match status {
        200..=299 => Classification::Success,
        429 | 500..=599 | 408 => Classification::Transient {
            not_before: retry_after
                .and_then(|v| parse_retry_after(v, now))
                .or_else(|| reset.and_then(|v| parse_reset(v, now))),
        },
        _ => Classification::Permanent,
    }
}

/// `Retry-After`: delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A reset header: an epoch second in the future (GitHub, Slack), or — when the number is
/// small — a delta in seconds (some providers send that).
pub fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let secs = value.trim().parse::<u64>().ok()?;
    let epoch_now = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    if secs > 1_000_000_000 {
        Some(Duration::from_secs(secs.saturating_sub(epoch_now)))
    } else {
        Some(Duration::from_secs(secs))
    }
}

/// The retry schedule of one execution.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, base: Duration::from_millis(200), cap: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): full jitter over the capped
    /// exponential ceiling, raised to the provider's `not_before` when it gave one.
    pub fn next_wait(&self, attempt: u32, not_before: Option<Duration>) -> Duration {
        // backon gives the capped exponential ceiling for this attempt.
        let ceiling = ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.cap)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.cap);
        let jittered = Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling.as_millis() as u64));
        match not_before {
            Some(floor) => floor.max(jittered),
            None => jittered,
        }
    }

    pub fn may_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let now = SystemTime::now();
        assert_eq!(classify_status(201, None, None, now), Classification::Success);
        assert_eq!(classify_status(404, None, None, now), Classification::Permanent);
        assert_eq!(classify_status(422, None, None, now), Classification::Permanent);
        assert_eq!(classify_status(503, None, None, now), Classification::Transient { not_before: None });
        assert_eq!(
            classify_status(429, Some("2"), None, now),
            Classification::Transient { not_before: Some(Duration::from_secs(2)) }
        );
    }

    #[test]
    fn retry_after_as_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn reset_as_epoch_or_delta() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_reset("1700000030", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_reset("12", now), Some(Duration::from_secs(12)));
    }

    #[test]
    fn waits_are_jittered_capped_and_honour_the_floor() {
        let p = RetryPolicy { max_attempts: 5, base: Duration::from_millis(100), cap: Duration::from_secs(1) };
        for attempt in 1..10 {
            let w = p.next_wait(attempt, None);
            assert!(w <= Duration::from_secs(1), "{attempt}: {w:?}");
        }
        assert!(p.next_wait(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        // Over many draws the jitter spreads out (full jitter, not a fixed delay).
        let draws: std::collections::BTreeSet<_> = (0..50).map(|_| p.next_wait(4, None)).collect();
        assert!(draws.len() > 10);
        assert!(p.may_retry(4) && !p.may_retry(5));
    }
}
