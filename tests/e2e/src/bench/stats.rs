//! Closed-loop load generation and latency statistics.
//!
//! A cell runs `concurrency` tasks; each issues its next call as soon as the previous one
//! returns. The first `warmup` is not recorded. A call is recorded when it starts inside
//! the measured window; the rate is the recorded successes over the time from the start of
//! the window to the return of the last recorded call.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What one cell measured.
#[derive(Clone, Debug, Default)]
pub struct CellResult {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies of the successful calls, microseconds, sorted.
    pub latencies_us: Vec<u32>,
    /// A few distinct error messages, for the log.
    pub error_samples: Vec<String>,
}

impl CellResult {
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 { 0.0 } else { self.ok as f64 / secs }
    }

    /// Nearest-rank percentile in milliseconds; `None` without successful calls.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        percentile_ms(&self.latencies_us, p)
    }
}

pub fn percentile_ms(sorted_us: &[u32], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted_us.len()) - 1;
    Some(f64::from(sorted_us[idx]) / 1000.0)
}

/// Collects error samples (at most a few distinct messages) from many tasks.
#[derive(Clone, Default)]
pub struct ErrorLog(Arc<Mutex<Vec<String>>>);

impl ErrorLog {
    pub fn note(&self, message: String) {
        let mut samples = self.0.lock().expect("error log lock");
        if samples.len() < 5 && !samples.contains(&message) {
            samples.push(message);
        }
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("error log lock"))
    }
}

#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// One call longer than this counts as an error (and the task moves on).
    pub call_timeout: Duration,
}

struct TaskTally {
    ok: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    last_end: Option<Instant>,
}

/// Runs `call` closed-loop at `spec.concurrency`. `call` returns `Err(message)` on
/// failure; a failing task pauses 5 ms so a refused connection does not spin.
pub async fn closed_loop<F, Fut>(spec: LoadSpec, call: F) -> CellResult
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let errors = ErrorLog::default();
    let t0 = Instant::now();
    let window_start = t0 + spec.warmup;
    let deadline = window_start + spec.duration;
    let mut tasks = Vec::with_capacity(spec.concurrency);
    for _ in 0..spec.concurrency {
        let call = call.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = TaskTally { ok: 0, errors: 0, latencies_us: Vec::with_capacity(4096), last_end: None };
            loop {
                let start = Instant::now();
                if start >= deadline {
                    break;
                }
                let result = match tokio::time::timeout(spec.call_timeout, call()).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {:?}", spec.call_timeout)),
                };
                let end = Instant::now();
                let recorded = start >= window_start;
                match result {
                    Ok(()) if recorded => {
                        tally.ok += 1;
                        let us = (end - start).as_micros().min(u128::from(u32::MAX)) as u32;
                        tally.latencies_us.push(us);
                        tally.last_end = Some(end);
                    }
                    Ok(()) => {}
                    Err(message) => {
                        if recorded {
                            tally.errors += 1;
                            tally.last_end = Some(end);
                        }
                        errors.note(message);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            tally
        }));
    }
    let mut result = CellResult::default();
    let mut last_end = window_start;
    // Every call is bounded by call_timeout, so the tasks end soon after the deadline.
    let bound = deadline + spec.call_timeout + Duration::from_secs(5);
    for task in tasks {
        let abort = task.abort_handle();
        match tokio::time::timeout_at(bound, task).await {
            Ok(Ok(tally)) => {
                result.ok += tally.ok;
                result.errors += tally.errors;
                result.latencies_us.extend(tally.latencies_us);
                if let Some(end) = tally.last_end {
                    last_end = last_end.max(end);
                }
            }
            Ok(Err(join)) => {
                result.errors += 1;
                errors.note(format!("a load task failed: {join}"));
            }
            Err(_) => {
                abort.abort();
                result.errors += 1;
                errors.note("a load task did not finish in time".into());
            }
        }
    }
    result.elapsed = last_end.saturating_duration_since(window_start);
    if result.elapsed.is_zero() {
        result.elapsed = spec.duration;
    }
    result.latencies_us.sort_unstable();
    result.error_samples = errors.take();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), Some(50.0));
        assert_eq!(percentile_ms(&v, 99.0), Some(99.0));
        assert_eq!(percentile_ms(&[7000], 99.0), Some(7.0));
        assert_eq!(percentile_ms(&[], 50.0), None);
    }
}
