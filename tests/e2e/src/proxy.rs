//! A loopback TCP proxy in front of RabbitMQ that plays two faults of a client's broker
//! link:
//!
//! - **a lost publisher confirm** ([`ConfirmCutter::arm`]): it lets the client's next
//!   `basic.publish` through to the broker, holds the broker's next answer on that
//!   connection for a while, then cuts the connection without delivering it. The broker
//!   has routed (and confirmed) the message; the client only sees its connection reset —
//!   the ambiguous publish of a broker that stops gracefully or a network that drops.
//! - **publishes that never arrive** ([`ConfirmCutter::stall`]): from then on nothing the
//!   clients send reaches the broker, and the execution ids of the jobs swallowed are
//!   noted. With the client SIGKILLed next, that is an api dead between its insert and
//!   its publish.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct ConfirmCutter {
    /// `amqp://…` URL through the proxy (same credentials and vhost as the upstream).
    pub url: String,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    armed: AtomicBool,
    /// How long the answer to the doomed publish is held, in ms (set when armed).
    hold_ms: AtomicU64,
    cuts: AtomicUsize,
    stalled: AtomicBool,
    /// Bumped by `resume`: connections that swallowed bytes end then.
    resumed: AtomicU64,
    swallowed: Mutex<BTreeSet<String>>,
}

impl ConfirmCutter {
    /// Proxies to `upstream` (an `amqp://user:pass@host:port/vhost` URL); `hold` is how long
    /// the broker's answer to the cut publish is held before the cut.
    pub async fn start(upstream: &str, hold: Duration) -> Self {
        let (scheme_user, rest) = upstream.split_once('@').expect("amqp url with credentials");
        let (host_port, vhost) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream_addr = host_port.to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        shared.hold_ms.store(hold.as_millis() as u64, Ordering::SeqCst);
        let inner = shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // Connecting upstream is each connection's own business: a broker that is
                // starting may leave a connect hanging, and the next client must not wait.
                let (upstream_addr, inner) = (upstream_addr.clone(), inner.clone());
                tokio::spawn(async move {
                    let connect = tokio::net::TcpStream::connect(&upstream_addr);
                    if let Ok(Ok(server)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
                        relay(client, server, inner).await;
                    }
                });
            }
        });
        Self { url: format!("{scheme_user}@{addr}/{vhost}"), shared }
    }

    /// Loses the confirm of the next publish sent through the proxy.
    pub fn arm(&self) {
        self.shared.armed.store(true, Ordering::SeqCst);
    }

    /// [`arm`](Self::arm), holding the broker's answer for `hold` before the cut (a short
    /// hold: the client learns of the failure before any worker took the job; a long one:
    /// after).
    pub fn arm_holding(&self, hold: Duration) {
        self.shared.hold_ms.store(hold.as_millis() as u64, Ordering::SeqCst);
        self.arm();
    }

    /// Whether an armed cut still waits for its publish.
    pub fn is_armed(&self) -> bool {
        self.shared.armed.load(Ordering::SeqCst)
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// From now on every byte a client sends is dropped (the broker never sees it): its
    /// publishes are neither routed nor confirmed.
    pub fn stall(&self) {
        self.shared.stalled.store(true, Ordering::SeqCst);
    }

    /// Ends [`stall`](Self::stall): connections that lost bytes are closed (their AMQP
    /// stream is broken); new ones pass again.
    pub fn resume(&self) {
        self.shared.stalled.store(false, Ordering::SeqCst);
        self.shared.resumed.fetch_add(1, Ordering::SeqCst);
    }

    /// The execution ids of the jobs whose publish the stall swallowed, so far.
    pub fn swallowed(&self) -> BTreeSet<String> {
        self.shared.swallowed.lock().unwrap().clone()
    }
}

/// Whether `bytes` hold an AMQP method frame `basic.publish` (class 60, method 40).
fn has_publish(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w[0] == 1 && w[7..11] == [0, 60, 0, 40])
}

/// The execution ids in job bodies (`"executionId":"<uuid>"`) inside `bytes`.
fn execution_ids(bytes: &[u8]) -> Vec<String> {
    const TAG: &[u8] = b"\"executionId\":\"";
    let mut ids = Vec::new();
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(TAG.len()).position(|w| w == TAG) {
        let start = at + found + TAG.len();
        match bytes.get(start..start + 36).and_then(|id| std::str::from_utf8(id).ok()) {
            Some(id) if uuid::Uuid::parse_str(id).is_ok() => ids.push(id.to_string()),
            _ => {}
        }
        at = start;
    }
    ids
}

async fn relay(client: tokio::net::TcpStream, server: tokio::net::TcpStream, shared: Arc<Shared>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set when this connection sent the publish whose answer is to be lost.
    let doomed = Arc::new(AtomicBool::new(false));
    let up = {
        let (doomed, shared) = (doomed.clone(), shared.clone());
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            // The tail of the bytes swallowed before, for an id split across two reads.
            let mut carry: Vec<u8> = Vec::new();
            // The `resumed` generation at which this connection started swallowing.
            let mut swallowing: Option<u64> = None;
            loop {
                let read = tokio::select! {
                    read = client_read.read(&mut buf) => read,
                    // A connection that swallowed bytes ends when the stall does.
                    _ = tokio::time::sleep(Duration::from_millis(50)), if swallowing.is_some() => {
                        if swallowing != Some(shared.resumed.load(Ordering::SeqCst)) {
                            break;
                        }
                        continue;
                    }
                };
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if swallowing.is_some() || shared.stalled.load(Ordering::SeqCst) {
                    swallowing.get_or_insert(shared.resumed.load(Ordering::SeqCst));
                    carry.extend_from_slice(&buf[..n]);
                    shared.swallowed.lock().unwrap().extend(execution_ids(&carry));
                    let keep = carry.len().saturating_sub(64);
                    carry.drain(..keep);
                    continue;
                }
                if has_publish(&buf[..n]) && shared.armed.swap(false, Ordering::SeqCst) {
                    doomed.store(true, Ordering::SeqCst);
                }
                if server_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if doomed.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(shared.hold_ms.load(Ordering::SeqCst))).await;
                shared.cuts.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    // Either direction ending ends both: dropping the halves closes the sockets.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_are_found_in_job_bodies() {
        let id = "0192f0c4-5b1e-7c3a-9d2e-1f2a3b4c5d6e";
        let body = format!("junk{{\"type\":\"execute.v1\",\"executionId\":\"{id}\",\"replyTo\":\"api-1\"}}more");
        assert_eq!(execution_ids(body.as_bytes()), vec![id.to_string()]);
        assert!(execution_ids(b"\"executionId\":\"not-a-uuid-at-all-but-36-chars-long!!\"").is_empty());
        assert!(execution_ids(b"\"executionId\":\"0192f0c4").is_empty(), "a cut id is not an id");
    }
}
