//! Interactive calls first. The lanes have their own queues and prefetch, but one worker's
//! calls share its CPU (and the machine's Postgres and broker): a bulk backlog running at
//! full speed slows every sync call beside it. So while this worker has interactive calls
//! in flight — or had one within the last `quiet` — a bulk call starts at most once per
//! `spacing`, and at most `bulk_while_busy` run at once; the other bulk deliveries wait
//! (unacked, in prefetch) for their turn. With the interactive lane idle, bulk runs at its
//! full concurrency and rate again.
//!
//! The spacing is what protects the CPU: one short bulk call after another takes a core's
//! worth of it even one at a time. By default (one start per 50 ms, no cap of its own on
//! concurrency) a backlog keeps draining at up to 20 calls per second per worker under
//! steady interactive load, however slow its provider; `bulk_while_busy` 0 is strict
//! priority (bulk waits for a quiet interactive lane).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long after its last interactive call a worker still counts as busy: the gaps
/// between one agent's calls are shorter, and bulk should not flood in through them.
pub const INTERACTIVE_QUIET: Duration = Duration::from_millis(100);

pub struct LaneGate {
    state: Mutex<State>,
    /// Wakes bulk calls waiting for a turn when a bulk call ends.
    turn: Notify,
    bulk_while_busy: usize,
    spacing: Duration,
    quiet: Duration,
}

#[derive(Default)]
struct State {
    interactive: usize,
    bulk: usize,
    last_interactive: Option<Instant>,
    last_bulk_start: Option<Instant>,
}

impl State {
    /// How long the interactive lane stays busy from now (`None`: calls are in flight).
    fn busy_for(&self, quiet: Duration) -> Option<Duration> {
        if self.interactive > 0 {
            return None;
        }
        let since = self.last_interactive.map_or(quiet, |at| at.elapsed());
        Some(quiet.saturating_sub(since))
    }
}

impl LaneGate {
    /// At most `bulk_while_busy` bulk calls at once, and one bulk start per `spacing`,
    /// while the interactive lane is busy (calls in flight, or one within `quiet`).
    pub fn new(bulk_while_busy: usize, spacing: Duration, quiet: Duration) -> Arc<Self> {
        Arc::new(Self { state: Mutex::default(), turn: Notify::new(), bulk_while_busy, spacing, quiet })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is counters only; a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks an interactive call in flight until the guard drops.
    pub fn interactive(self: &Arc<Self>) -> InteractiveCall {
        self.lock().interactive += 1;
        InteractiveCall(self.clone())
    }

    /// Waits for a bulk call's turn; it runs until the guard drops.
    pub async fn bulk(self: &Arc<Self>) -> BulkCall {
        loop {
            // Created before the check, so a turn freed between the check and the wait
            // still wakes it.
            let freed = self.turn.notified();
            let recheck = {
                let mut s = self.lock();
                let busy_for = s.busy_for(self.quiet);
                let spaced_for =
                    s.last_bulk_start.map_or(Duration::ZERO, |at| self.spacing.saturating_sub(at.elapsed()));
                let idle = busy_for == Some(Duration::ZERO);
                if idle || (s.bulk < self.bulk_while_busy && spaced_for.is_zero()) {
                    s.bulk += 1;
                    s.last_bulk_start = Some(Instant::now());
                    return BulkCall(self.clone());
                }
                // Busy: a freed bulk turn wakes this; otherwise it looks again when the
                // spacing is over (if a turn is free) or the lane may have gone quiet.
                let quiet_in = busy_for.unwrap_or(self.quiet);
                let next = if s.bulk < self.bulk_while_busy { spaced_for.min(quiet_in) } else { quiet_in };
                next.max(Duration::from_millis(1))
            };
            let _ = tokio::time::timeout(recheck, freed).await;
        }
    }

    /// (interactive, bulk) calls running now.
    pub fn running(&self) -> (usize, usize) {
        let s = self.lock();
        (s.interactive, s.bulk)
    }
}

pub struct InteractiveCall(Arc<LaneGate>);

impl Drop for InteractiveCall {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.interactive -= 1;
        s.last_interactive = Some(Instant::now());
    }
}

pub struct BulkCall(Arc<LaneGate>);

impl Drop for BulkCall {
    fn drop(&mut self) {
        self.0.lock().bulk -= 1;
        self.0.turn.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bulk_runs_freely_while_the_interactive_lane_is_idle() {
        let gate = LaneGate::new(1, Duration::ZERO, Duration::from_millis(100));
        let held: Vec<BulkCall> = futures_util::future::join_all((0..5).map(|_| gate.bulk())).await;
        assert_eq!(gate.running(), (0, 5));
        drop(held);
        assert_eq!(gate.running(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn interactive_calls_hold_bulk_to_its_share_until_the_lane_is_quiet() {
        let quiet = Duration::from_millis(100);
        let gate = LaneGate::new(1, Duration::ZERO, quiet);
        let call = gate.interactive();
        let first = gate.bulk().await;
        // A second bulk call waits while the interactive call runs.
        let second = tokio::spawn({
            let gate = gate.clone();
            async move {
                let turn = gate.bulk().await;
                (Instant::now(), turn)
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(gate.running(), (1, 1), "the second bulk call must still wait");
        // The interactive call ends: the second waits out the quiet period, then runs.
        let ended = Instant::now();
        drop(call);
        let (started, _second) = second.await.unwrap();
        assert!(started >= ended + quiet, "bulk resumed {:?} after the last interactive call", started - ended);
        assert!(started <= ended + quiet + Duration::from_millis(5));
        assert_eq!(gate.running(), (0, 2));
        drop(first);
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_bulk_call_hands_its_turn_to_a_waiting_one() {
        let gate = LaneGate::new(1, Duration::ZERO, Duration::from_secs(60));
        let _call = gate.interactive();
        let first = gate.bulk().await;
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.bulk().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        drop(first);
        let _second = tokio::time::timeout(Duration::from_millis(1), waiting).await.expect("turn handed on").unwrap();
        assert_eq!(gate.running(), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_share_is_strict_priority() {
        let gate = LaneGate::new(0, Duration::ZERO, Duration::from_millis(50));
        let call = gate.interactive();
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.bulk().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "no bulk call runs beside an interactive one");
        drop(call);
        let _turn = tokio::time::timeout(Duration::from_millis(60), waiting).await.expect("runs once quiet").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn while_interactive_calls_run_bulk_calls_start_at_most_once_per_spacing() {
        let spacing = Duration::from_millis(20);
        let gate = LaneGate::new(1, spacing, Duration::from_millis(100));
        let _call = gate.interactive();
        let t0 = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..5 {
            // Each bulk call ends at once; the next still waits out the spacing.
            drop(gate.bulk().await);
            starts.push(Instant::now() - t0);
        }
        for pair in starts.windows(2) {
            assert!(pair[1] - pair[0] >= spacing, "bulk starts {starts:?}");
        }
        assert!(starts[4] <= 4 * spacing + Duration::from_millis(5), "no longer than the spacing: {starts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn without_interactive_calls_the_spacing_does_not_apply() {
        let gate = LaneGate::new(1, Duration::from_secs(1), Duration::from_millis(100));
        let t0 = Instant::now();
        for _ in 0..5 {
            drop(gate.bulk().await);
        }
        assert_eq!(Instant::now(), t0, "an idle interactive lane holds nothing back");
    }
}
