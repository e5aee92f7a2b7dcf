//! Shared emulator state: accepted tokens, pending faults, the request log, side-effect
//! counts and each provider's data, all behind one mutex.
//!
//! The mutex is a `std` one and is never held across an `.await`: every critical
//! section is a few field updates, so contention stays cheap even when a benchmark hits
//! the emulator with thousands of requests per second. Providers keep their data in a
//! field of [`World`]; they must not know about each other.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::fault::Fault;
use crate::oauth::{IssuedToken, OauthClient, OauthData};
use crate::record::Served;
use crate::sandbox::SandboxData;

/// How many request records the log keeps; older ones are dropped first.
pub const REQUEST_LOG_CAPACITY: usize = 200_000;

/// Idempotency key under which writes sent without an `Idempotency-Key` are counted.
pub const NO_IDEMPOTENCY_KEY: &str = "-";

/// One request the emulator received (control-plane requests are not recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub method: String,
    /// Full path without the query string, e.g. `/notes/note_1`.
    pub path: String,
    /// Milliseconds since the emulator started, taken when the request arrived.
    pub at_ms: u64,
    /// The idempotency key the request carried: its `Idempotency-Key` header, or the
    /// provider's own idempotency header (Todoist's `X-Request-Id`) once it was served.
    pub idempotency_key: Option<String>,
    /// Status the emulator answered with. `0` means no complete response: the request is
    /// still in flight, or a [`FaultKind::Drop`](crate::FaultKind::Drop) cut it off.
    pub status: u16,
    /// Milliseconds since the emulator started, taken when the answer was ready (after any
    /// delay); `None` while the request is still in flight.
    #[serde(default)]
    pub done_ms: Option<u64>,
    /// Whether the request passed the provider's auth check. Requests to unknown routes
    /// are never checked, so they show `false`.
    pub authorized: bool,
    /// The catalog tool (`github_create_issue`) or identity endpoint (`github.identity`)
    /// the request was answered as, when it passed the provider's auth and request-shape
    /// checks and got its canned answer. `None` for the sandbox, refusals and faults.
    #[serde(default)]
    pub tool: Option<String>,
    /// The account of the OAuth access token the request was authorized with, when the
    /// emulator's authorization server issued it (see `oauth.rs`); `None` for fixed tokens.
    #[serde(default)]
    pub account: Option<String>,
}

/// A snapshot of what the emulator has seen since start or the last reset.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Every recorded request in arrival order (the last [`REQUEST_LOG_CAPACITY`]).
    pub requests: Vec<RequestRecord>,
    /// Idempotency key -> how many times a write carrying it was performed. Nothing is
    /// deduplicated: a write performed twice shows as 2. Writes without a key count
    /// under [`NO_IDEMPOTENCY_KEY`].
    pub side_effects: BTreeMap<String, u32>,
    /// `grant_type` -> how many times a provider's OAuth token endpoint was called with
    /// it (`-` when it was missing), across providers.
    #[serde(default)]
    pub oauth_token_calls: BTreeMap<String, u32>,
}

impl Stats {
    /// How many recorded requests had this method (case-insensitive) and exact path.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests.iter().filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path).count()
    }

    /// How many recorded requests were answered as this tool (see [`RequestRecord::tool`]).
    pub fn served(&self, tool: &str) -> usize {
        self.requests.iter().filter(|r| r.tool.as_deref() == Some(tool)).count()
    }

    /// How many OAuth token-endpoint calls had this `grant_type`.
    pub fn token_calls(&self, grant_type: &str) -> u32 {
        self.oauth_token_calls.get(grant_type).copied().unwrap_or(0)
    }

    /// How many recorded requests were authorized as this OAuth account (see
    /// [`RequestRecord::account`]).
    pub fn by_account(&self, login: &str) -> usize {
        self.requests.iter().filter(|r| r.account.as_deref() == Some(login)).count()
    }

    /// How many times a write with this idempotency key was performed.
    pub fn performed(&self, key: &str) -> u32 {
        self.side_effects.get(key).copied().unwrap_or(0)
    }
}

/// Bounded, arrival-ordered request log. Each record gets a sequence number on arrival
/// so its status can be filled in when the response is ready, even if later requests
/// finished first (a delayed request keeps its place).
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    records: VecDeque<RequestRecord>,
    /// Sequence number of `records[0]`.
    first_seq: u64,
}

impl RequestLog {
    fn push(&mut self, record: RequestRecord) -> u64 {
        if self.records.len() == REQUEST_LOG_CAPACITY {
            self.records.pop_front();
            self.first_seq += 1;
        }
        self.records.push_back(record);
        self.first_seq + self.records.len() as u64 - 1
    }

    fn complete(
        &mut self,
        seq: u64,
        status: u16,
        done_ms: u64,
        authorized: bool,
        served: Option<Served>,
        account: Option<String>,
    ) {
        // A record evicted or cleared by a reset meanwhile is simply gone.
        let Some(index) = seq.checked_sub(self.first_seq) else {
            return;
        };
        if let Some(record) = self.records.get_mut(index as usize) {
            record.status = status;
            record.done_ms = Some(done_ms);
            record.authorized = authorized;
            record.account = account;
            if let Some(served) = served {
                record.tool = Some(served.tool);
                if record.idempotency_key.is_none() {
                    record.idempotency_key = served.idempotency_key;
                }
            }
        }
    }

    fn clear(&mut self) {
        // Keep numbering monotonic so in-flight requests from before the reset do not
        // land on records made after it.
        self.first_seq += self.records.len() as u64;
        self.records.clear();
    }
}

/// Everything mutable, guarded by the one mutex.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub tokens: HashSet<String>,
    /// Pending faults in insertion order; a fault is removed when its `times` runs out.
    pub faults: Vec<Fault>,
    pub log: RequestLog,
    pub side_effects: BTreeMap<String, u32>,
    pub sandbox: SandboxData,
    pub oauth: OauthData,
    pub payments: crate::payments::PaymentsData,
    /// Slow provider accounts: token -> (shortest, longest) time a request it signs takes.
    pub slow_tokens: HashMap<String, (u64, u64)>,
    /// Draws for the slow accounts' timings (a small PRNG: the emulator has no `rand`).
    pub draws: u64,
}

impl World {
    /// Count one performed write under `idempotency_key` (or [`NO_IDEMPOTENCY_KEY`]).
    pub fn perform(&mut self, idempotency_key: Option<&str>) {
        let key = idempotency_key.unwrap_or(NO_IDEMPOTENCY_KEY);
        // Avoid allocating a key on the hot path when it is already present.
        match self.side_effects.get_mut(key) {
            Some(count) => *count += 1,
            None => {
                self.side_effects.insert(key.to_owned(), 1);
            }
        }
    }
}

/// Handle to the shared state, passed to every handler with `State`.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    world: Mutex<World>,
}

impl AppState {
    /// Fresh state accepting these bearer tokens, for driving [`router`](crate::router)
    /// in-process without a port.
    pub fn new(tokens: impl IntoIterator<Item = String>) -> Self {
        let world = World { tokens: tokens.into_iter().collect(), ..World::default() };
        Self { inner: Arc::new(Inner { started: Instant::now(), world: Mutex::new(world) }) }
    }

    /// Lock the world. A panic while holding the lock cannot leave it half-updated in a
    /// way that matters to a test double, so a poisoned lock is simply taken over.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.inner.world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.inner.started.elapsed().as_millis() as u64
    }

    pub(crate) fn record_arrival(&self, record: RequestRecord) -> u64 {
        self.world().log.push(record)
    }

    pub(crate) fn record_completion(
        &self,
        seq: u64,
        status: u16,
        authorized: bool,
        served: Option<Served>,
        account: Option<String>,
    ) {
        let done_ms = self.elapsed_ms();
        self.world().log.complete(seq, status, done_ms, authorized, served, account);
    }

    pub(crate) fn add_slow_token(&self, token: &str, shortest_ms: u64, longest_ms: u64) {
        let mut world = self.world();
        world.tokens.insert(token.to_owned());
        world.slow_tokens.insert(token.to_owned(), (shortest_ms.min(longest_ms), longest_ms.max(shortest_ms)));
    }

    /// Requests with this method and path that arrived in the last `within_ms` and have no
    /// answer yet.
    pub(crate) fn in_flight(&self, method: &str, path: &str, within_ms: u64) -> usize {
        let since = self.elapsed_ms().saturating_sub(within_ms);
        let world = self.world();
        world
            .log
            .records
            .iter()
            .rev()
            .take_while(|r| r.at_ms >= since)
            .filter(|r| r.done_ms.is_none() && r.path == path && r.method.eq_ignore_ascii_case(method))
            .count()
    }

    pub(crate) fn add_token(&self, token: &str) {
        self.world().tokens.insert(token.to_owned());
    }

    pub(crate) fn add_fault(&self, fault: Fault) {
        if fault.times > 0 {
            self.world().faults.push(fault);
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let world = self.world();
        Stats {
            requests: world.log.records.iter().cloned().collect(),
            side_effects: world.side_effects.clone(),
            oauth_token_calls: world.oauth.token_calls.clone(),
        }
    }

    pub(crate) fn oauth_register_client(&self, client: OauthClient) {
        self.world().oauth.register(client);
    }

    pub(crate) fn oauth_deny_next(&self) {
        self.world().oauth.deny_next();
    }

    pub(crate) fn oauth_next_account(&self, login: &str) {
        self.world().oauth.next_account(login);
    }

    pub(crate) fn oauth_set_expires_in(&self, secs: u64) {
        self.world().oauth.set_expires_in(secs);
    }

    pub(crate) fn oauth_expire_all(&self) {
        self.world().oauth.expire_all();
    }

    pub(crate) fn oauth_tokens(&self) -> Vec<IssuedToken> {
        self.world().oauth.tokens()
    }

    /// Clear faults, the request log, side-effect counts, provider data and pending OAuth
    /// decisions; tokens (fixed and issued) and OAuth clients stay.
    pub(crate) fn reset(&self) {
        let mut world = self.world();
        world.faults.clear();
        world.log.clear();
        world.side_effects.clear();
        world.sandbox = SandboxData::default();
        world.oauth.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str) -> RequestRecord {
        RequestRecord {
            method: "GET".into(),
            path: path.into(),
            at_ms: 0,
            idempotency_key: None,
            status: 0,
            done_ms: None,
            authorized: false,
            tool: None,
            account: None,
        }
    }

    #[test]
    fn log_completes_out_of_order_and_survives_reset() {
        let mut log = RequestLog::default();
        let a = log.push(record("/a"));
        let b = log.push(record("/b"));
        log.complete(b, 200, 1, true, None, None);
        log.complete(a, 503, 1, true, None, None);
        let statuses: Vec<_> = log.records.iter().map(|r| (&*r.path, r.status)).collect();
        assert_eq!(statuses, [("/a", 503), ("/b", 200)]);

        log.clear();
        let c = log.push(record("/c"));
        // A request that was in flight across the reset must not touch the new record.
        log.complete(a, 418, 1, true, None, None);
        assert_eq!(log.records[0].status, 0);
        log.complete(c, 201, 1, true, None, None);
        assert_eq!(log.records[0].status, 201);
    }
}
