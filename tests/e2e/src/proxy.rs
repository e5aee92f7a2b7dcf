//! A loopback TCP proxy in front of RabbitMQ that can lose a publisher confirm: armed, it
//! lets the client's next `basic.publish` through to the broker, holds the broker's next
//! answer on that connection for a while, then cuts the connection without delivering it.
//! The broker has routed (and confirmed) the message; the client only sees its connection
//! reset — the ambiguous publish of a broker that stops gracefully or a network that drops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct ConfirmCutter {
    /// `amqp://…` URL through the proxy (same credentials and vhost as the upstream).
    pub url: String,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
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
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (armed_in, cuts_in) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream_addr).await else { continue };
                tokio::spawn(relay(client, server, armed_in.clone(), cuts_in.clone(), hold));
            }
        });
        Self { url: format!("{scheme_user}@{addr}/{vhost}"), armed, cuts }
    }

    /// Loses the confirm of the next publish sent through the proxy.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// Whether `bytes` hold an AMQP method frame `basic.publish` (class 60, method 40).
fn has_publish(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w[0] == 1 && w[7..11] == [0, 60, 0, 40])
}

async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
    hold: Duration,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set when this connection sent the publish whose answer is to be lost.
    let doomed = Arc::new(AtomicBool::new(false));
    let up = {
        let doomed = doomed.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if has_publish(&buf[..n]) && armed.swap(false, Ordering::SeqCst) {
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
                tokio::time::sleep(hold).await;
                cuts.fetch_add(1, Ordering::SeqCst);
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
