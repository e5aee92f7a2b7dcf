//! A bulkhead per provider: one provider's calls hold at most a share of this worker's
//! call slots, so a provider that hangs (every call waits out its timeout) cannot take
//! every slot and stall the calls of every other provider behind it.
//!
//! The share binds only a provider not known to be fast: past its share, a call is made
//! only while the provider's recent calls took under [`SLOW`] on average and none in flight
//! has run that long. Otherwise it is not made, and goes back through a delay queue (no
//! attempt counted) to be delivered again later. A fast provider's calls, each done in
//! milliseconds, may use every slot as before. The wait grows with how long
//! the provider has been full, from [`MIN_WAIT`] to [`MAX_WAIT`], so a provider that stays
//! hung costs a redelivery now and then per waiting call, not a busy loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The first wait of a call turned away.
pub const MIN_WAIT: Duration = Duration::from_secs(1);
/// The longest.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// A provider whose oldest call in flight has run this long is slow: its share binds.
pub const SLOW: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Provider {
    /// When each call in flight started, by slot number.
    in_flight: HashMap<u64, Instant>,
    next: u64,
    /// How long its calls took lately (a moving average); `None` before the first is done.
    typical: Option<Duration>,
    /// Since when the share has been taken (`None` while there is room).
    full_since: Option<Instant>,
}

pub struct Bulkhead {
    /// The most calls in flight to one provider at once; 0: no bulkhead.
    limit: usize,
    providers: Mutex<HashMap<String, Provider>>,
}

/// A call slot of one provider, given back on drop.
pub struct Slot {
    bulkhead: Arc<Bulkhead>,
    provider: String,
    number: u64,
}

impl Bulkhead {
    /// `share_percent` of `slots` (the worker's concurrency, both lanes), at least one;
    /// 100 or more: no bulkhead.
    pub fn new(slots: usize, share_percent: u16) -> Arc<Bulkhead> {
        let limit = if share_percent >= 100 { 0 } else { (slots * usize::from(share_percent)).div_ceil(100).max(1) };
        Arc::new(Bulkhead { limit, providers: Mutex::new(HashMap::new()) })
    }

    pub fn limit(&self) -> Option<usize> {
        (self.limit > 0).then_some(self.limit)
    }

    /// A slot for a call to `provider`, or how long to wait before trying again.
    pub fn enter(self: &Arc<Self>, provider: &str) -> Result<Slot, Duration> {
        let mut providers = self.providers.lock().expect("bulkhead lock");
        let p = providers.entry(provider.to_string()).or_default();
        let now = Instant::now();
        let fast = p.typical.is_some_and(|t| t < SLOW)
            && p.in_flight.values().min().is_none_or(|oldest| now.duration_since(*oldest) < SLOW);
        if self.limit > 0 && p.in_flight.len() >= self.limit && !fast {
            let full_for = now.duration_since(*p.full_since.get_or_insert(now));
            return Err(full_for.clamp(MIN_WAIT, MAX_WAIT));
        }
        let number = p.next;
        p.next += 1;
        p.in_flight.insert(number, now);
        Ok(Slot { bulkhead: self.clone(), provider: provider.to_string(), number })
    }

    /// Calls in flight to `provider` now.
    pub fn in_flight(&self, provider: &str) -> usize {
        self.providers.lock().expect("bulkhead lock").get(provider).map_or(0, |p| p.in_flight.len())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut providers = self.bulkhead.providers.lock().expect("bulkhead lock");
        if let Some(p) = providers.get_mut(&self.provider) {
            if let Some(started) = p.in_flight.remove(&self.number) {
                let took = started.elapsed();
                p.typical = Some(match p.typical {
                    None => took,
                    Some(t) => (t * 4 + took) / 5,
                });
            }
            p.full_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Makes the calls in flight to `provider` look as if they started `ago`.
    fn age(b: &Bulkhead, provider: &str, ago: Duration) {
        let mut providers = b.providers.lock().unwrap();
        for started in providers.get_mut(provider).unwrap().in_flight.values_mut() {
            *started -= ago;
        }
    }

    #[test]
    fn a_slow_provider_holds_at_most_its_share_and_others_are_not_held_back() {
        let b = Bulkhead::new(16, 50);
        assert_eq!(b.limit(), Some(8));
        let held: Vec<Slot> = (0..8).map(|_| b.enter("hung").unwrap()).collect();
        assert_eq!(b.in_flight("hung"), 8);
        let wait = b.enter("hung").err().expect("past the share of a provider not known to be fast a call waits");
        assert_eq!(wait, MIN_WAIT);
        // Another provider still gets every slot of its own share.
        let other: Vec<Slot> = (0..8).map(|_| b.enter("fine").unwrap()).collect();
        assert_eq!(other.len(), 8);
        drop(held);
        assert_eq!(b.in_flight("hung"), 0);
        assert!(b.enter("hung").is_ok(), "a slot given back is free again");
    }

    #[test]
    fn a_fast_provider_may_use_every_slot_until_one_of_its_calls_runs_long() {
        let b = Bulkhead::new(4, 50);
        drop(b.enter("fast").unwrap());
        let mut held: Vec<Slot> = (0..10).map(|_| b.enter("fast").expect("a fast provider is not held back")).collect();
        assert_eq!(b.in_flight("fast"), 10);
        age(&b, "fast", SLOW * 2);
        assert!(b.enter("fast").is_err(), "a call in flight for a second makes its share bind");
        held.clear();
        // Those calls took two seconds each: its average is no longer fast.
        let _two: Vec<Slot> = (0..2).map(|_| b.enter("fast").unwrap()).collect();
        assert!(b.enter("fast").is_err());
    }

    #[test]
    fn the_share_is_at_least_one_and_100_percent_is_no_bulkhead() {
        assert_eq!(Bulkhead::new(3, 10).limit(), Some(1));
        let open = Bulkhead::new(4, 100);
        assert_eq!(open.limit(), None);
        let slots: Vec<Slot> = (0..50).map(|_| open.enter("p").unwrap()).collect();
        assert_eq!(slots.len(), 50);
    }
}
