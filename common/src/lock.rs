//! A lock in Redis with an owner token, for work that one process at a time may do across
//! every process: a connection's token refresh, an execution's delivery (the worker's
//! lease), a round of the api's refresh sweep.
//!
//! `SET key token NX PX ttl` takes it; it frees itself after `ttl` unless renewed, so a
//! holder that died holds it no longer than that. Only the owner releases or renews it
//! (compare-and-delete, compare-and-extend scripts), so a holder that stalled past its
//! lock's life cannot free the next holder's. Knows nothing about what the lock guards.

use crate::keys::LockKey;
use rand::RngCore;
use redis::aio::ConnectionManager;
use std::time::Duration;

/// Releases the lock only when it still holds our token: after our lock expired and
/// another process took it, a late release must not free theirs.
const COMPARE_AND_DELETE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Extends a lock that is still ours, or takes it again when it vanished (Redis lost its
/// keys); 0 when another holder has it.
const RENEW: &str = r#"
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// A held lock: its key and our owner token.
#[derive(Clone, Debug)]
pub struct RedisLock {
    key: LockKey,
    token: String,
}

fn millis(ttl: Duration) -> u64 {
    ttl.as_millis().max(1) as u64
}

impl RedisLock {
    /// Takes the lock if nobody holds it. It frees itself after `ttl`.
    pub async fn try_acquire(
        conn: &mut ConnectionManager,
        key: &LockKey,
        ttl: Duration,
    ) -> redis::RedisResult<Option<Self>> {
        let mut raw = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let set: Option<String> =
            redis::cmd("SET").arg(key).arg(&token).arg("NX").arg("PX").arg(millis(ttl)).query_async(conn).await?;
        Ok(set.map(|_| Self { key: key.clone(), token }))
    }

    /// Whether anyone holds the lock at `key`.
    pub async fn is_held(conn: &mut ConnectionManager, key: &LockKey) -> redis::RedisResult<bool> {
        redis::cmd("EXISTS").arg(key).query_async(conn).await
    }

    /// Keeps the lock for another `ttl` (see `RENEW`). Returns whether it is still ours.
    pub async fn renew(&self, conn: &mut ConnectionManager, ttl: Duration) -> redis::RedisResult<bool> {
        let kept: i64 =
            redis::Script::new(RENEW).key(&self.key).arg(&self.token).arg(millis(ttl)).invoke_async(conn).await?;
        Ok(kept == 1)
    }

    /// Releases the lock if it is still ours. Returns whether it was.
    pub async fn release(self, conn: &mut ConnectionManager) -> redis::RedisResult<bool> {
        let deleted: i64 =
            redis::Script::new(COMPARE_AND_DELETE).key(&self.key).arg(&self.token).invoke_async(conn).await?;
        Ok(deleted == 1)
    }
}
