//! The accept loop every port of the worker uses (ingress, internal, admin).
//!
//! Connections are bounded twice: by a semaphore over all peers (the loop takes a permit
//! before it accepts, so further clients wait in the kernel's listen backlog instead of
//! costing memory here) and per peer address, so that one client cannot hold every slot;
//! a connection over its peer's cap is closed at once. Each connection is HTTP/1.1 with a
//! header read timeout (which also closes idle keep-alive connections).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Bounds of one listener.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// Connections served at once over all peers.
    pub max_connections: usize,
    /// Connections served at once from one peer address.
    pub max_per_peer: usize,
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// On shutdown, how long open connections may take to finish.
    pub shutdown_grace: Duration,
}

/// What the listener tells a handler about the connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: std::net::SocketAddr,
    /// Cancelled: the connection is closed at once (a stalled stream consumer).
    pub closer: CancellationToken,
}

/// What the loop reports to the caller's metrics.
pub trait ConnObserver: Send + Sync + 'static {
    fn opened(&self) {}
    fn closed(&self) {}
    /// A connection closed at once because its peer was at its cap.
    fn refused_peer(&self, _peer: IpAddr) {}
}

impl ConnObserver for () {}

/// Open connections per peer; a slot is given back when its guard drops.
#[derive(Default)]
struct PeerCounts(Mutex<HashMap<IpAddr, usize>>);

struct PeerSlot {
    counts: Arc<PeerCounts>,
    ip: IpAddr,
}

impl PeerCounts {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut m = crate::sync::lock(&self.0);
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = crate::sync::lock(&self.counts.0);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Connections that open with `prefix` are served by `serve` on the bare socket instead of
/// by hyper (stream consumers: see `streams::serve_raw`). The connection limits apply the
/// same.
#[derive(Clone)]
pub struct RawRoute {
    pub prefix: &'static [u8],
    pub serve: Arc<dyn Fn(TcpStream, ConnInfo) -> BoxFuture<'static, ()> + Send + Sync>,
}

/// Serve `listener` until `stop`, then let open connections finish within the grace.
pub async fn serve<H, Fut, B>(
    listener: TcpListener,
    limits: ConnLimits,
    stop: CancellationToken,
    observer: Arc<dyn ConnObserver>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_routed(listener, limits, stop, observer, None, handler).await
}

/// Whether the connection's first bytes are `prefix`: peeked (nothing is taken from the
/// socket), within `timeout`.
async fn opens_with(stream: &TcpStream, prefix: &[u8], timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 32];
    let want = prefix.len().min(buf.len());
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf[..want])).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        if buf[..n] != prefix[..n] {
            return false;
        }
        if n == want {
            return true;
        }
        // Part of the prefix so far: the rest is on its way (peek returns at once while
        // those bytes wait unread, so look again a little later).
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`serve`], with connections that open with `raw`'s prefix handed to it.
pub async fn serve_routed<H, Fut, B>(
    listener: TcpListener,
    limits: ConnLimits,
    stop: CancellationToken,
    observer: Arc<dyn ConnObserver>,
    raw: Option<RawRoute>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = limits.max_connections.max(1);
    let per_peer = limits.max_per_peer.max(1);
    let permits = Arc::new(Semaphore::new(max));
    let peers = Arc::new(PeerCounts::default());
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = peers.take(peer.ip(), per_peer) else {
            observer.refused_peer(peer.ip());
            debug!(%peer, "connection refused: its peer holds its share of connections");
            drop(stream);
            continue;
        };
        let stop = stop.clone();
        let handler = handler.clone();
        let observer = observer.clone();
        let header_timeout = limits.header_timeout;
        let raw = raw.clone();
        tokio::spawn(async move {
            observer.opened();
            // Handlers may close their connection at once (a stalled stream consumer).
            let closer = CancellationToken::new();
            let info = ConnInfo {
                peer,
                closer: closer.clone(),
            };
            if let Some(raw) = raw
                && opens_with(&stream, raw.prefix, header_timeout).await
            {
                let conn = (raw.serve)(stream, info);
                tokio::select! {
                    _ = conn => {}
                    _ = closer.cancelled() => debug!(%peer, "connection closed by its handler"),
                }
                observer.closed();
                drop(slot);
                drop(permit);
                return;
            }
            let svc = service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(info.clone());
                let fut = handler(req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            // With upgrades: a stream consumer may switch to a WebSocket.
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { debug!(%peer, error = %e, "connection closed") },
                _ = closer.cancelled() => debug!(%peer, "connection closed by its handler"),
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            observer.closed();
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    // Wait for open connections (each finishing its request) within the grace period.
    let drained =
        tokio::time::timeout(limits.shutdown_grace, permits.acquire_many(max as u32)).await;
    if drained.is_err() {
        warn!("connections still open after the shutdown grace period");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_slots_are_capped_and_given_back() {
        let counts = Arc::new(PeerCounts::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = counts.take(a, 2).unwrap();
        let _s2 = counts.take(a, 2).unwrap();
        assert!(counts.take(a, 2).is_none(), "a third from the same peer");
        let _other = counts.take(b, 2).expect("another peer still gets in");
        drop(s1);
        assert!(
            counts.take(a, 2).is_some(),
            "a closed connection gives its slot back"
        );
    }
}
