//! Pacing calls to each provider's declared rate limits, across every worker.
//!
//! Two gates, in order:
//! 1. In this process, a `governor` keyed limiter per provider (key: connection) with the
//!    tightest per-connection window. It never lets one worker alone exceed the limit and
//!    spares Redis the calls that would certainly be refused.
//! 2. Across all workers, GCRA (the generic cell rate algorithm — the same one governor
//!    uses) with its state in Redis: one Lua script checks every declared window for the
//!    (provider, connection) and the provider as a whole, and takes a cell from each only
//!    when all allow. Redis's clock is the only clock, so workers' clock skew does not
//!    matter. Each window admits at most `requests` per `per_seconds` plus `burst`.
//!
//! A call refused a permit waits its turn in this process: the calls waiting on one
//! (provider, connection) queue first-come first-served and only the head asks Redis again.
//! Without the queue every waiter woke for every free permit and one of them won at random,
//! so an unlucky call could lose for seconds (and be parked in a delay queue) while Redis
//! answered a crowd of refusals.
//!
//! A 429 pauses the (provider, connection) for every worker until its `Retry-After`.
//! Keys (spelled in `keys`): a window's arrival time `<ns>:pace:…`, the pause
//! `<ns>:pause:<provider>:<connection>`, and the index of pauses `<ns>:paused` the admin
//! view reads. Knows nothing about HTTP or queues.

use crate::catalog::{Provider, RateWindow};
use crate::ids::ConnectionId;
use crate::keys::Keys;
use governor::Quota;
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

const GCRA: &str = r#"
-- KEYS: pause key, then one state key per window.
-- ARGV: for each window, emission interval and burst tolerance (microseconds).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused = redis.call('PTTL', KEYS[1])
if paused > 0 then return paused * 1000 end
local wait = 0
local tats = {}
for i = 2, #KEYS do
  local interval = tonumber(ARGV[(i - 2) * 2 + 1])
  local tolerance = tonumber(ARGV[(i - 2) * 2 + 2])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local w = tat - now - tolerance
  if w > wait then wait = w end
  tats[i] = tat + interval
end
if wait > 0 then return wait end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], tats[i], 'PX', math.floor((tats[i] - now) / 1000) + 1000)
end
return 0
"#;

#[derive(Debug, thiserror::Error)]
pub enum PaceError {
    /// Waiting would exceed the caller's bound; try again after this long.
    #[error("rate limited for {0:?}")]
    WaitTooLong(Duration),
    #[error("pacing state unavailable: {0}")]
    Redis(#[from] redis::RedisError),
}

/// An in-process keyed GCRA limiter on the operating system's monotonic clock.
///
/// Not governor's default quanta clock: quanta reads the CPU's time-stamp counter, which
/// on some machines differs between cores, so a thread moved to another core can see time
/// go back and be refused well inside its burst (governor issue 299, quanta issue 111).
/// That is what made fifty calls on a budget of 200 come back 429 in a CI run here.
pub struct KeyedLimiter<K: std::hash::Hash + Eq + Clone>(
    governor::RateLimiter<K, HashMapStateStore<K>, MonotonicClock, NoOpMiddleware<std::time::Instant>>,
);

impl<K: std::hash::Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(quota: Quota) -> Self {
        Self(governor::RateLimiter::hashmap_with_clock(quota, MonotonicClock))
    }

    /// Takes one cell for `key`, or says how long until one is free.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.0.check_key(key).map_err(|not_until| not_until.wait_time_from(MonotonicClock.now()))
    }

    /// Forgets the keys whose budget is whole again (they would pass as if never seen), so
    /// the map holds only recently active keys.
    pub fn forget_idle(&self) {
        self.0.retain_recent();
    }

    /// Keys remembered now.
    pub fn remembered(&self) -> usize {
        self.0.len()
    }
}

/// Calls waiting for a permit on one (provider, connection): the holder asks Redis.
type WaitQueue = Arc<tokio::sync::Mutex<()>>;

#[derive(Clone)]
pub struct Pacer {
    redis: redis::aio::ConnectionManager,
    keys: Keys,
    script: Arc<redis::Script>,
    local: Arc<HashMap<String, KeyedLimiter<ConnectionId>>>,
    /// The queue of calls waiting for a permit, per (provider, connection) with waiters.
    waiting: Arc<std::sync::Mutex<HashMap<(String, ConnectionId), WaitQueue>>>,
}

/// The GCRA emission interval and burst tolerance of a window, in microseconds.
///
/// The interval is 2 % longer than the window's average: a permit is granted on Redis's
/// clock, but the provider counts arrivals, and the time from permit to arrival varies by
/// a few milliseconds between workers. The margin keeps every window at the provider
/// within `requests + burst` while costing 2 % of the allowed rate. (The admin view
/// reads windows with the same arithmetic.)
pub fn window_cells(w: &RateWindow) -> (u64, u64) {
    let interval_us = u64::from(w.per_seconds) * 1_020_000 / u64::from(w.requests.max(1));
    (interval_us, interval_us * u64::from(w.burst))
}

/// One call's two gates, in order: this process's limiter, then the script in Redis. A
/// cell taken from the local limiter is kept while Redis refuses (asking the limiter again
/// would take another cell for the same call).
struct Gates<'a> {
    local: Option<&'a KeyedLimiter<ConnectionId>>,
    local_passed: bool,
    connection: ConnectionId,
    invocation: redis::ScriptInvocation<'a>,
}

impl Gates<'_> {
    /// Zero when both gates let the call through now; else how long until it should ask again.
    async fn next_wait(&mut self, redis: &redis::aio::ConnectionManager) -> Result<Duration, PaceError> {
        if let (Some(limiter), false) = (self.local, self.local_passed) {
            match limiter.check(&self.connection) {
                Ok(()) => self.local_passed = true,
                Err(wait) => return Ok(wait.max(Duration::from_micros(1))),
            }
        }
        let mut conn = redis.clone();
        let wait_us: u64 = self.invocation.invoke_async(&mut conn).await?;
        Ok(Duration::from_micros(wait_us))
    }
}

impl Pacer {
    /// Builds the in-process limiters for every provider that declares per-connection limits.
    pub fn new<'a>(
        redis: redis::aio::ConnectionManager,
        namespace: &str,
        providers: impl Iterator<Item = &'a Arc<Provider>>,
    ) -> Self {
        let mut local = HashMap::new();
        for p in providers {
            // The tightest per-connection window, as a governor quota.
            let tightest = p
                .rate_limits
                .per_connection
                .iter()
                .min_by_key(|w| u64::from(w.per_seconds) * 1_000_000 / u64::from(w.requests.max(1)));
            if let Some(w) = tightest {
                let period = Duration::from_micros(window_cells(w).0.max(1));
                if let Some(q) = Quota::with_period(period) {
                    let burst = NonZeroU32::new(w.burst + 1).expect("burst + 1 > 0");
                    local.insert(p.id.clone(), KeyedLimiter::new(q.allow_burst(burst)));
                }
            }
        }
        Self {
            redis,
            keys: Keys::new(namespace),
            script: Arc::new(redis::Script::new(GCRA)),
            local: Arc::new(local),
            waiting: Arc::default(),
        }
    }

    /// Waits for a permit to call `provider` for `connection`. Returns how long it waited.
    /// When the next permit is further away than `max_wait`, returns `WaitTooLong` at once
    /// without taking a permit, so the caller can park the call in a delay queue.
    pub async fn acquire(
        &self,
        provider: &Provider,
        connection: ConnectionId,
        max_wait: Duration,
    ) -> Result<Duration, PaceError> {
        let started = tokio::time::Instant::now();
        let mut invocation = self.script.prepare_invoke();
        invocation.key(self.keys.pause(&provider.id, connection));
        for (i, w) in provider.rate_limits.per_connection.iter().enumerate() {
            let (interval, tolerance) = window_cells(w);
            invocation.key(self.keys.pace_connection(&provider.id, connection, i));
            invocation.arg(interval).arg(tolerance);
        }
        for (i, w) in provider.rate_limits.per_app.iter().enumerate() {
            let (interval, tolerance) = window_cells(w);
            invocation.key(self.keys.pace_app(&provider.id, i));
            invocation.arg(interval).arg(tolerance);
        }
        let mut gates = Gates { local: self.local.get(&provider.id), local_passed: false, connection, invocation };
        let key = (provider.id.clone(), connection);
        // With no call waiting on this (provider, connection), most calls get their permit at
        // once. With calls waiting, a newcomer goes behind them: asking first would let it
        // take the permit the head is sleeping for.
        let queued = self.waiting.lock().expect("pacing queue lock").contains_key(&key);
        let mut wait = Duration::ZERO;
        if !queued {
            wait = gates.next_wait(&self.redis).await?;
            if wait.is_zero() {
                return Ok(started.elapsed());
            }
            if started.elapsed() + wait > max_wait {
                return Err(PaceError::WaitTooLong(wait));
            }
        }
        // Wait in this process's queue for the (provider, connection), then ask again at
        // the head of it until a permit is granted.
        let queue = self.waiting.lock().expect("pacing queue lock").entry(key.clone()).or_default().clone();
        let turn = async {
            // Still not at the head after the whole bound: the queue is at least that long,
            // so the call should come back no sooner.
            let too_long = |learnt: Duration| PaceError::WaitTooLong(learnt.max(max_wait));
            let Some(left) = max_wait.checked_sub(started.elapsed()) else {
                return Err(too_long(wait));
            };
            let Ok(_head) = tokio::time::timeout(left, queue.lock()).await else {
                return Err(too_long(wait));
            };
            // At the head: ask again now. The wait learnt on arrival is stale (after a
            // 429's pause every waiter learnt the whole pause; sleeping it again here
            // would add it once per waiter).
            wait = gates.next_wait(&self.redis).await?;
            if wait.is_zero() {
                return Ok(started.elapsed());
            }
            loop {
                if started.elapsed() + wait > max_wait {
                    return Err(PaceError::WaitTooLong(wait));
                }
                tokio::time::sleep(wait).await;
                wait = gates.next_wait(&self.redis).await?;
                if wait.is_zero() {
                    return Ok(started.elapsed());
                }
            }
        }
        .await;
        // The last waiter out removes the queue (the map holds one reference, we another).
        let mut waiting = self.waiting.lock().expect("pacing queue lock");
        if Arc::strong_count(&queue) == 2 {
            waiting.remove(&key);
        }
        turn
    }

    /// Pauses every worker's calls to `provider` for `connection` for `wait` (a 429's
    /// `Retry-After`). A longer pause already in place is kept.
    pub async fn pause(&self, provider: &str, connection: ConnectionId, wait: Duration) -> Result<(), PaceError> {
        let key = self.keys.pause(provider, connection);
        let index = self.keys.paused_index();
        let ms = wait.as_millis().max(1) as u64;
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let mut conn = self.redis.clone();
        // SET … GT needs Redis 7; PX with NX then PEXPIRE GT keeps the longer pause.
        redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("PX")
            .arg(ms)
            .arg("NX")
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ms)
            .arg("GT")
            .ignore()
            // The index of pauses the admin view reads (no keyspace walk): member
            // `<provider>:<connection>`, score = until (ms since the epoch), the later kept.
            .cmd("ZADD")
            .arg(&index)
            .arg("GT")
            .arg(now_ms + ms)
            .arg(format!("{provider}:{connection}"))
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(now_ms)
            .ignore()
            // The index lives as long as its longest pause: NX gives a fresh (or older,
            // TTL-less) index one, GT extends it.
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(ms)
            .arg("NX")
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(ms)
            .arg("GT")
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_granted_whole_from_many_threads_then_refused_with_a_wait() {
        // 1 cell per hour, burst 200: 200 cells from 8 threads all pass, the next waits
        // about an hour. A clock that went back between threads would refuse some early.
        let quota = Quota::per_hour(NonZeroU32::new(1).unwrap()).allow_burst(NonZeroU32::new(200).unwrap());
        let limiter = Arc::new(KeyedLimiter::new(quota));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || (0..25).filter(|_| limiter.check(&"device").is_ok()).count())
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(granted, 200);
        let wait = limiter.check(&"device").expect_err("the burst is spent");
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600), "{wait:?}");
        assert!(limiter.check(&"another device").is_ok(), "keys have their own budgets");
    }

    #[test]
    fn keys_whose_budget_is_whole_again_are_forgotten() {
        let limiter = KeyedLimiter::new(Quota::with_period(Duration::from_millis(1)).unwrap());
        limiter.check(&"idle").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let busy = KeyedLimiter::new(Quota::per_hour(NonZeroU32::new(1).unwrap()));
        busy.check(&"busy").unwrap();
        limiter.forget_idle();
        busy.forget_idle();
        assert_eq!(limiter.remembered(), 0, "a key with its budget whole is dropped");
        assert_eq!(busy.remembered(), 1, "a key still paying off its cells is kept");
        assert!(busy.check(&"busy").is_err(), "and still refused");
    }
}
