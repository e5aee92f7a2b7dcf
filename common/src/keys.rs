//! Every Redis key and channel name of a deployment, spelled in one place.
//!
//! Each key type holds one kind of value, and the module that owns the value is the only
//! writer; every write gives the key a time to live, so nothing stays behind in Redis
//! when its writer is gone. (svix `core/cache`: typed keys.)
//!
//! | key | value | written by |
//! |---|---|---|
//! | `<ns>:result:<execution>` ([`ResultKey`]) | JSON `results::Outcome` | `results` |
//! | `<ns>:lease:<execution>` ([`LockKey`]) | owner token | `lock`, for the worker |
//! | `<ns>:sent:<execution>` ([`SentKey`]) | the attempt whose answer is not in yet | `results`, for the worker |
//! | `<ns>:refresh-lock:<connection>` ([`LockKey`]) | owner token | `lock`, for `refresh` |
//! | `<ns>:refresh-sweep` ([`LockKey`]) | owner token | `lock`, for the api's sweep |
//! | `<ns>:refresh-backoff:<connection>` ([`BackoffKey`]) | JSON `refresh::Backoff` | `refresh` |
//! | `<ns>:pause:<provider>:<connection>` ([`PauseKey`]) | `1` | `pacing` |
//! | `<ns>:pace:<provider>:c<connection>:w<i>`, `<ns>:pace:<provider>:app:w<i>` ([`PaceKey`]) | GCRA arrival time (µs) | `pacing` |
//! | `<ns>:paused` ([`PausedIndexKey`]) | sorted set `<provider>:<connection>` → until (ms) | `pacing` |
//!
//! Channels ([`Channel`]): `<ns>:notify:<api instance>` and `<ns>:done` (see `results`).
//! The spellings are fixed: running deployments hold these keys, and tests read them.
//! Knows nothing about what the values mean.

use crate::ids::{ConnectionId, ExecutionId};
use redis::{RedisWrite, ToRedisArgs, ToSingleRedisArg};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// A key of one kind; `Value` is what it holds.
pub trait RedisKey: ToRedisArgs {
    type Value;
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ToRedisArgs for $name {
            fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
                out.write_arg(self.0.as_bytes());
            }
        }

        impl ToSingleRedisArg for $name {}
    };
}

key_type!(
    /// Where a finished execution's outcome waits for its caller.
    ResultKey
);
key_type!(
    /// A lock held by an owner token (`lock::RedisLock`).
    LockKey
);
key_type!(
    /// A connection's refresh failures, waited out before the next attempt.
    BackoffKey
);
key_type!(
    /// A (provider, connection) paused after a 429; its TTL is the pause.
    PauseKey
);
key_type!(
    /// One GCRA window's theoretical arrival time (`pacing`'s script writes it).
    PaceKey
);
key_type!(
    /// The index of a namespace's pauses, for the admin view.
    PausedIndexKey
);
key_type!(
    /// The attempt of a write whose request may be out with no answer recorded.
    SentKey
);
key_type!(
    /// A pub/sub channel.
    Channel
);

/// The owner token of a lock.
impl RedisKey for LockKey {
    type Value = String;
}

/// `1` while the pause lasts.
impl RedisKey for PauseKey {
    type Value = u8;
}

/// Microseconds on Redis's clock.
impl RedisKey for PaceKey {
    type Value = u64;
}

/// The attempt number.
impl RedisKey for SentKey {
    type Value = u32;
}

/// One window a [`PaceKey`] belongs to, read back from its name (the admin view).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaceWindow<'a> {
    /// The provider's app-wide window `i`.
    App(usize),
    /// Window `window` of one connection (the id as written in the key).
    Connection { connection: &'a str, window: usize },
}

/// The names of one namespace (`CLAWLINK_NAMESPACE`). Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    namespace: Arc<str>,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Self { namespace: namespace.into() }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn result(&self, execution: ExecutionId) -> ResultKey {
        ResultKey(format!("{}:result:{execution}", self.namespace))
    }

    /// The one delivery working on an execution.
    pub fn lease(&self, execution: ExecutionId) -> LockKey {
        LockKey(format!("{}:lease:{execution}", self.namespace))
    }

    /// Set before a write that may not be sent again blindly goes out; cleared when an
    /// answer says it was not acted on (`worker::execute`).
    pub fn sent(&self, execution: ExecutionId) -> SentKey {
        SentKey(format!("{}:sent:{execution}", self.namespace))
    }

    /// The one process refreshing a connection's token.
    pub fn refresh_lock(&self, connection: ConnectionId) -> LockKey {
        LockKey(format!("{}:refresh-lock:{connection}", self.namespace))
    }

    /// The one api replica sweeping tokens this round.
    pub fn refresh_sweep(&self) -> LockKey {
        LockKey(format!("{}:refresh-sweep", self.namespace))
    }

    pub fn refresh_backoff(&self, connection: ConnectionId) -> BackoffKey {
        BackoffKey(format!("{}:refresh-backoff:{connection}", self.namespace))
    }

    pub fn pause(&self, provider: &str, connection: ConnectionId) -> PauseKey {
        PauseKey(format!("{}:pause:{provider}:{connection}", self.namespace))
    }

    /// Window `window` of `provider`'s per-connection limits, for `connection`.
    pub fn pace_connection(&self, provider: &str, connection: ConnectionId, window: usize) -> PaceKey {
        PaceKey(format!("{}:pace:{provider}:c{connection}:w{window}", self.namespace))
    }

    /// Window `window` of `provider`'s app-wide limits.
    pub fn pace_app(&self, provider: &str, window: usize) -> PaceKey {
        PaceKey(format!("{}:pace:{provider}:app:w{window}", self.namespace))
    }

    /// The `SCAN … MATCH` pattern of every [`PaceKey`].
    pub fn pace_pattern(&self) -> String {
        format!("{}:pace:*", self.namespace)
    }

    /// The provider and window of a [`PaceKey`]'s name; `None` for any other key.
    pub fn parse_pace<'k>(&self, key: &'k str) -> Option<(&'k str, PaceWindow<'k>)> {
        let rest = key.strip_prefix(&*self.namespace)?.strip_prefix(":pace:")?;
        let (head, window) = rest.rsplit_once(":w")?;
        let window = window.parse().ok()?;
        let (provider, scope) = head.rsplit_once(':')?;
        if scope == "app" {
            return Some((provider, PaceWindow::App(window)));
        }
        Some((provider, PaceWindow::Connection { connection: scope.strip_prefix('c')?, window }))
    }

    pub fn paused_index(&self) -> PausedIndexKey {
        PausedIndexKey(format!("{}:paused", self.namespace))
    }

    /// Wakes the api instance `instance` with a sync call's outcome.
    pub fn notify_channel(&self, instance: &str) -> Channel {
        Channel(format!("{}:notify:{instance}", self.namespace))
    }

    /// Carries the id of every finished async call, to every api instance.
    pub fn done_channel(&self) -> Channel {
        Channel(format!("{}:done", self.namespace))
    }
}

/// A value encoded for its key type: encode once, write it and send it elsewhere too.
pub struct Json<V> {
    bytes: Vec<u8>,
    value: PhantomData<fn(&V)>,
}

impl<V: Serialize> Json<V> {
    pub fn encode(value: &V) -> Self {
        Self { bytes: serde_json::to_vec(value).expect("a typed value serialises"), value: PhantomData }
    }
}

impl<V> Json<V> {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Adds `SET key value PX ttl` to `pipe`: the write of every JSON-valued key.
pub fn set_json<'p, K>(
    pipe: &'p mut redis::Pipeline,
    key: &K,
    value: &Json<K::Value>,
    ttl: Duration,
) -> &'p mut redis::Pipeline
where
    K: RedisKey,
{
    pipe.cmd("SET").arg(key).arg(value.as_bytes()).arg("PX").arg(ttl.as_millis().max(1) as u64)
}

/// Reads a JSON-valued key; a value that does not decode reads as absent.
pub async fn get_json<K>(conn: &mut redis::aio::ConnectionManager, key: &K) -> redis::RedisResult<Option<K::Value>>
where
    K: RedisKey,
    K::Value: DeserializeOwned,
{
    let raw: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(conn).await?;
    Ok(raw.and_then(|r| serde_json::from_slice(&r).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Running deployments hold these keys and the e2e tests read some of them: a change
    /// here is a migration, not a refactor.
    #[test]
    fn every_spelling_is_pinned() {
        let k = Keys::new("ns");
        let execution: ExecutionId = "0190a0b0-0000-7000-8000-000000000001".parse().unwrap();
        let c = ConnectionId(42);
        assert_eq!(k.result(execution).as_str(), "ns:result:0190a0b0-0000-7000-8000-000000000001");
        assert_eq!(k.lease(execution).as_str(), "ns:lease:0190a0b0-0000-7000-8000-000000000001");
        assert_eq!(k.sent(execution).as_str(), "ns:sent:0190a0b0-0000-7000-8000-000000000001");
        assert_eq!(k.refresh_lock(c).as_str(), "ns:refresh-lock:42");
        assert_eq!(k.refresh_sweep().as_str(), "ns:refresh-sweep");
        assert_eq!(k.refresh_backoff(c).as_str(), "ns:refresh-backoff:42");
        assert_eq!(k.pause("github", c).as_str(), "ns:pause:github:42");
        assert_eq!(k.pace_connection("github", c, 1).as_str(), "ns:pace:github:c42:w1");
        assert_eq!(k.pace_app("github", 0).as_str(), "ns:pace:github:app:w0");
        assert_eq!(k.pace_pattern(), "ns:pace:*");
        assert_eq!(k.paused_index().as_str(), "ns:paused");
        assert_eq!(k.notify_channel("api-1").as_str(), "ns:notify:api-1");
        assert_eq!(k.done_channel().as_str(), "ns:done");
        assert_eq!(
            k.result(execution).to_redis_args(),
            vec![b"ns:result:0190a0b0-0000-7000-8000-000000000001".to_vec()]
        );
    }

    #[test]
    fn pace_keys_read_back_as_their_window() {
        let k = Keys::new("ns");
        let c = ConnectionId(7);
        let app = k.pace_app("google-calendar", 2);
        assert_eq!(k.parse_pace(app.as_str()), Some(("google-calendar", PaceWindow::App(2))));
        let conn = k.pace_connection("github", c, 3);
        assert_eq!(
            k.parse_pace(conn.as_str()),
            Some(("github", PaceWindow::Connection { connection: "7", window: 3 }))
        );
        for other in ["ns:pause:github:7", "other:pace:github:app:w0", "ns:pace:github:x7:w0", "ns:pace:github:c7:wx"] {
            assert_eq!(k.parse_pace(other), None, "{other}");
        }
    }
}
