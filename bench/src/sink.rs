//! The sink: a loopback HTTP/1.1 server that answers every request with 200 and records
//! each arrival (sequence number, time on the benchmark clock). The sequence number comes
//! from the `x-bench-seq` header when the sender forwarded it, else from the body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;

use crate::event::{SEQ_HEADER, seq_in_body};
use crate::load::now_ns;

#[derive(Default)]
struct Inner {
    /// `(seq, arrival ns)`; `u64::MAX` when no sequence number was found.
    arrivals: Mutex<Vec<(u64, u64)>>,
    count: AtomicU64,
}

/// A running sink; stops (with its connections) when dropped.
pub struct Sink {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Listen on a free loopback port.
    pub async fn start() -> anyhow::Result<Sink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner::default());
        let state = inner.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let from_header = req
                                .headers()
                                .get(SEQ_HEADER)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse().ok());
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let at = now_ns();
                            let seq = from_header
                                .or_else(|| seq_in_body(&body))
                                .unwrap_or(u64::MAX);
                            if let Ok(mut a) = state.arrivals.lock() {
                                a.push((seq, at));
                            }
                            state.count.fetch_add(1, Ordering::Relaxed);
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Sink { addr, inner, task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Every arrival so far, `(seq, ns)`.
    pub fn arrivals(&self) -> Vec<(u64, u64)> {
        self.inner
            .arrivals
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Forget what arrived (between runs against a sink that stays up).
    pub fn clear(&self) {
        if let Ok(mut a) = self.inner.arrivals.lock() {
            a.clear();
        }
        self.inner.count.store(0, Ordering::Relaxed);
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
