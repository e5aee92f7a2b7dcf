//! A bulkhead per provider: one provider's calls hold at most a share of this worker's
//! call slots, so a provider that hangs (every call waits out its timeout) cannot take
//! every slot and stall the calls of every other provider behind it.
//!
//! A call that finds its provider's share taken is not made: it goes back through a delay
//! queue (no attempt counted) and is delivered again later. The wait grows with how long
//! the provider has been full, from [`MIN_WAIT`] to [`MAX_WAIT`], so a provider that stays
//! hung costs a redelivery now and then per waiting call, not a busy loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The first wait of a call turned away.
pub const MIN_WAIT: Duration = Duration::from_secs(1);
/// The longest.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Provider {
    in_flight: usize,
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
        let slot = || Slot { bulkhead: self.clone(), provider: provider.to_string() };
        let mut providers = self.providers.lock().expect("bulkhead lock");
        let p = providers.entry(provider.to_string()).or_default();
        if self.limit == 0 || p.in_flight < self.limit {
            p.in_flight += 1;
            return Ok(slot());
        }
        let full_for = p.full_since.get_or_insert_with(Instant::now).elapsed();
        Err(full_for.clamp(MIN_WAIT, MAX_WAIT))
    }

    /// Calls in flight to `provider` now.
    pub fn in_flight(&self, provider: &str) -> usize {
        self.providers.lock().expect("bulkhead lock").get(provider).map_or(0, |p| p.in_flight)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut providers = self.bulkhead.providers.lock().expect("bulkhead lock");
        if let Some(p) = providers.get_mut(&self.provider) {
            p.in_flight = p.in_flight.saturating_sub(1);
            p.full_since = None;
            if p.in_flight == 0 {
                providers.remove(&self.provider);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_holds_at_most_its_share_and_others_are_not_held_back() {
        let b = Bulkhead::new(16, 50);
        assert_eq!(b.limit(), Some(8));
        let held: Vec<Slot> = (0..8).map(|_| b.enter("hung").unwrap()).collect();
        assert_eq!(b.in_flight("hung"), 8);
        let wait = b.enter("hung").err().expect("the ninth call waits");
        assert_eq!(wait, MIN_WAIT);
        // Another provider still gets every slot of its own share.
        let other: Vec<Slot> = (0..8).map(|_| b.enter("fine").unwrap()).collect();
        assert_eq!(other.len(), 8);
        drop(held);
        assert_eq!(b.in_flight("hung"), 0);
        assert!(b.enter("hung").is_ok(), "a slot given back is free again");
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
