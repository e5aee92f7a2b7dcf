//! What keeps password guessing and account creation slow and the web front responsive:
//! attempt counters per account and per client address, and the pool that runs the
//! password hash (argon2, tens of milliseconds of CPU and 19 MiB each) off the async
//! threads.
//!
//! The counters live in this process: the web front depends on Postgres alone (Redis is
//! only for the admin view), so with N web replicas behind a balancer a guesser gets up to
//! N times the budget below. Each window is fixed, starting at its first attempt; the
//! time left in it is the `Retry-After` of the 429 page.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Wrong passwords per account per window: the right one is refused too once they are
/// used up, or guessing would go on.
pub const SIGN_IN_FAILURES_PER_ACCOUNT: u32 = 10;
/// Wrong passwords per client address per window, whichever accounts they were for.
pub const SIGN_IN_FAILURES_PER_ADDRESS: u32 = 50;
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Sign-up attempts that reach the password hash, per client address per window.
pub const SIGN_UPS_PER_ADDRESS: u32 = 20;
pub const SIGN_UP_WINDOW: Duration = Duration::from_secs(60 * 60);

/// Attempts per key in a fixed window.
pub struct Counter {
    limit: u32,
    window: Duration,
    /// Key → (attempts, when the window began).
    windows: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Counter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window, windows: Mutex::new(HashMap::new()) }
    }

    /// Takes one attempt for `key`, or says how long until its window ends. Taken before
    /// the work it guards, so attempts sent at once cannot all slip under the limit.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let mut windows = self.windows.lock().expect("throttle lock");
        if windows.len() > 10_000 {
            let window = self.window;
            windows.retain(|_, (_, began)| began.elapsed() < window);
        }
        let now = Instant::now();
        let entry = windows.entry(key.to_string()).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        if entry.0 >= self.limit {
            return Err(self.window - now.duration_since(entry.1));
        }
        entry.0 += 1;
        Ok(())
    }

    /// Gives back an attempt [`Counter::take`] took (it did not fail after all).
    pub fn give_back(&self, key: &str) {
        if let Some(entry) = self.windows.lock().expect("throttle lock").get_mut(key) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }
}

/// The counters of the sign-in and sign-up forms.
pub struct Throttles {
    pub sign_in_account: Counter,
    pub sign_in_address: Counter,
    pub sign_up_address: Counter,
}

impl Default for Throttles {
    fn default() -> Self {
        Self {
            sign_in_account: Counter::new(SIGN_IN_FAILURES_PER_ACCOUNT, SIGN_IN_WINDOW),
            sign_in_address: Counter::new(SIGN_IN_FAILURES_PER_ADDRESS, SIGN_IN_WINDOW),
            sign_up_address: Counter::new(SIGN_UPS_PER_ADDRESS, SIGN_UP_WINDOW),
        }
    }
}

/// A failed sign-in, to be counted against both the account and the address.
pub struct SignInAttempt<'a> {
    throttles: &'a Throttles,
    account: String,
    address: String,
}

impl Throttles {
    /// Takes a sign-in attempt for `email` from `client`; refused when either is out of
    /// attempts (and then neither is charged).
    pub fn sign_in(&self, email: &str, client: IpAddr) -> Result<SignInAttempt<'_>, Duration> {
        let account = email.trim().to_lowercase();
        let address = client.to_string();
        self.sign_in_address.take(&address)?;
        if let Err(wait) = self.sign_in_account.take(&account) {
            self.sign_in_address.give_back(&address);
            return Err(wait);
        }
        Ok(SignInAttempt { throttles: self, account, address })
    }
}

impl SignInAttempt<'_> {
    /// The password was right: the attempt does not count.
    pub fn succeeded(self) {
        self.throttles.sign_in_account.give_back(&self.account);
        self.throttles.sign_in_address.give_back(&self.address);
    }
}

/// Runs the password hash on tokio's blocking threads, at most `permits` at once: the
/// async threads that serve every page never run it, and a burst of sign-ins queues
/// here (cheaply, as futures) instead of taking every core and 19 MiB per hash.
pub struct PasswordPool {
    permits: Semaphore,
}

impl Default for PasswordPool {
    /// One core is left to the pages: on two cores, one hash at a time.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Self { permits: Semaphore::new(cores.saturating_sub(1).max(1)) }
    }
}

impl PasswordPool {
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(work).await.map_err(|e| e.to_string())
    }

    pub async fn hash(&self, password: String) -> Result<String, String> {
        self.run(move || clawlink_common::crypto::hash_password(&password)).await?
    }

    /// Whether `password` matches the PHC string `hash` (`false` for a malformed one).
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, String> {
        self.run(move || clawlink_common::crypto::verify_password(&password, &hash)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_refuses_past_its_limit_until_the_window_ends() {
        let c = Counter::new(2, Duration::from_millis(200));
        assert!(c.take("a").is_ok() && c.take("a").is_ok());
        let wait = c.take("a").unwrap_err();
        assert!(wait <= Duration::from_millis(200) && wait > Duration::from_millis(100), "{wait:?}");
        assert!(c.take("b").is_ok(), "keys are counted apart");
        c.give_back("a");
        assert!(c.take("a").is_ok(), "a given-back attempt can be taken again");
        std::thread::sleep(Duration::from_millis(210));
        assert!(c.take("a").is_ok(), "a new window");
    }

    #[test]
    fn a_refused_sign_in_charges_neither_counter_and_a_success_gives_back_both() {
        let t = Throttles {
            sign_in_account: Counter::new(1, SIGN_IN_WINDOW),
            sign_in_address: Counter::new(3, SIGN_IN_WINDOW),
            sign_up_address: Counter::new(1, SIGN_UP_WINDOW),
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        t.sign_in("A@example.test ", ip).unwrap().succeeded();
        let _failed = t.sign_in("a@example.test", ip).unwrap();
        assert!(t.sign_in("a@EXAMPLE.test", ip).is_err(), "the account's email is matched as sign-in does");
        assert!(t.sign_in("b@example.test", ip).is_ok());
        assert!(t.sign_in("c@example.test", ip).is_ok(), "the refused attempt did not use the address's budget");
        assert!(t.sign_in("d@example.test", ip).is_err(), "the address's budget is used up");
    }
}
