//! The load generator: HTTP/1.1 keep-alive connections (hyper's client connection, no pool
//! in between), in two modes.
//!
//! - **Open loop** ([`open_loop`]): request `i` is planned for `t0 + i / rate` whatever
//!   happened before, spread over `conns` connections (`i mod conns`). Latency starts at the
//!   planned time when the connection was still busy (see [`crate::stats::latency_start`]),
//!   so a stall in the system shows up in every request planned during it.
//! - **Closed loop** ([`closed_loop`]): `conns` connections each send the next request as
//!   soon as the previous answer arrived; this finds the maximum throughput at that
//!   concurrency. Its latencies are service times and are not reported as latency.
//!
//! Every run is bounded: a fixed number of requests (open loop) or a fixed duration (closed
//! loop), a timeout per request, and a hard deadline after which nothing more is sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::event::{SEQ_HEADER, event};
use crate::stats::latency_start;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process's benchmark clock: nanoseconds since the first call. The generator and the
/// sink share it, so "sent" and "arrived" are comparable.
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn instant_at(ns: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(*EPOCH.get_or_init(Instant::now) + Duration::from_nanos(ns))
}

/// Where requests go.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
}

impl Target {
    pub fn new(addr: SocketAddr, path: &str) -> Target {
        Target {
            addr,
            path: path.to_string(),
        }
    }
}

/// One request. `status` 0 means a transport error (refused, reset, timeout) or not sent.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub seq: u64,
    pub intended: u64,
    pub sent: u64,
    /// Where latency starts (see [`latency_start`]); `sent` in closed loop.
    pub start: u64,
    pub done: u64,
    pub status: u16,
}

/// Live counters of a run, readable while it goes.
#[derive(Default, Debug)]
pub struct Progress {
    /// 2xx answers so far.
    pub ok: AtomicU64,
    pub errors: AtomicU64,
}

/// What one run produced.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub records: Vec<Record>,
    pub t_start: u64,
    pub t_end: u64,
    /// Largest delay between a planned time and the actual send on an idle connection:
    /// the generator's own lag. Large values mean the generator, not the system, was late.
    pub max_idle_lateness: u64,
    /// Requests planned but never sent because the hard deadline passed.
    pub not_sent: u64,
}

impl LoadResult {
    pub fn ok(&self) -> impl Iterator<Item = &Record> {
        self.records
            .iter()
            .filter(|r| (200..300).contains(&r.status))
    }

    pub fn ok_count(&self) -> usize {
        self.ok().count()
    }

    pub fn error_count(&self) -> usize {
        self.records.len() - self.ok_count()
    }

    /// 2xx answers per second, counting answers that arrived after `warmup` from the start.
    pub fn throughput(&self, warmup: Duration) -> f64 {
        let from = self.t_start + warmup.as_nanos() as u64;
        let n = self
            .ok()
            .filter(|r| r.done >= from && r.done <= self.t_end)
            .count();
        let secs = (self.t_end.saturating_sub(from)) as f64 / 1e9;
        if secs <= 0.0 {
            f64::NAN
        } else {
            n as f64 / secs
        }
    }

    /// Latencies of 2xx answers in microseconds.
    pub fn latencies_us(&self) -> Vec<u64> {
        self.ok()
            .map(|r| (r.done.saturating_sub(r.start)) / 1000)
            .collect()
    }
}

/// Per-request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// After the planned end, how long answers may still take before the run is cut.
pub const DRAIN: Duration = Duration::from_secs(10);

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

async fn send(sender: &mut SendRequest<Full<Bytes>>, target: &Target, seq: u64) -> Result<u16, ()> {
    let req = http::Request::post(&target.path)
        .header(http::header::HOST, target.addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(SEQ_HEADER, seq)
        .body(Full::new(event(seq)))
        .map_err(|_| ())?;
    let work = async {
        sender.ready().await.map_err(|_| ())?;
        let resp = sender.send_request(req).await.map_err(|_| ())?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.map_err(|_| ())?;
        Ok(status)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .map_err(|_| ())?
}

/// An open-loop plan: `rate` requests per second for `duration`, over `conns` connections,
/// sequence numbers from `seq_base`.
#[derive(Clone, Copy, Debug)]
pub struct OpenLoop {
    pub rate: f64,
    pub duration: Duration,
    pub conns: usize,
    pub seq_base: u64,
}

/// Run an open-loop plan (see the module docs).
pub async fn open_loop(target: &Target, plan: OpenLoop, progress: Arc<Progress>) -> LoadResult {
    let total = (plan.rate * plan.duration.as_secs_f64()).round() as u64;
    let conns = plan.conns.max(1) as u64;
    let t0 = now_ns() + 20_000_000;
    let hard_deadline = t0 + plan.duration.as_nanos() as u64 + DRAIN.as_nanos() as u64;
    let interval = 1e9 / plan.rate;
    let mut tasks = Vec::new();
    for c in 0..conns.min(total.max(1)) {
        let target = target.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity((total / conns + 1) as usize);
            let mut sender: Option<SendRequest<Full<Bytes>>> = None;
            let mut prev_done = 0u64;
            let mut max_idle_lateness = 0u64;
            let mut not_sent = 0u64;
            let mut i = c;
            while i < total {
                let seq = plan.seq_base + i;
                let intended = t0 + (i as f64 * interval) as u64;
                i += conns;
                if now_ns() > hard_deadline {
                    not_sent += 1;
                    continue;
                }
                tokio::time::sleep_until(instant_at(intended)).await;
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    sender = connect(target.addr).await;
                }
                let sent = now_ns();
                let status = match sender.as_mut() {
                    Some(s) => send(s, &target, seq).await.unwrap_or(0),
                    None => 0,
                };
                let done = now_ns();
                if status == 0 {
                    sender = None;
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                } else if (200..300).contains(&status) {
                    progress.ok.fetch_add(1, Ordering::Relaxed);
                }
                if prev_done <= intended {
                    max_idle_lateness = max_idle_lateness.max(sent.saturating_sub(intended));
                }
                let start = latency_start(intended, sent, prev_done);
                out.push(Record {
                    seq,
                    intended,
                    sent,
                    start,
                    done,
                    status,
                });
                prev_done = done;
            }
            (out, max_idle_lateness, not_sent)
        }));
    }
    let mut result = LoadResult {
        t_start: t0,
        ..LoadResult::default()
    };
    for t in tasks {
        if let Ok((recs, lateness, not_sent)) = t.await {
            result.records.extend(recs);
            result.max_idle_lateness = result.max_idle_lateness.max(lateness);
            result.not_sent += not_sent;
        }
    }
    result.t_end = result
        .records
        .iter()
        .map(|r| r.done)
        .max()
        .unwrap_or(t0)
        .max(t0 + plan.duration.as_nanos() as u64);
    result
}

/// Run `conns` connections back to back for `duration` (see the module docs).
pub async fn closed_loop(
    target: &Target,
    conns: usize,
    duration: Duration,
    seq_base: u64,
    progress: Arc<Progress>,
) -> LoadResult {
    let t0 = now_ns();
    let end = t0 + duration.as_nanos() as u64;
    let next = Arc::new(AtomicU64::new(seq_base));
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let (target, next, progress) = (target.clone(), next.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut sender: Option<SendRequest<Full<Bytes>>> = None;
            while now_ns() < end {
                if sender.as_ref().is_none_or(|s| s.is_closed()) {
                    sender = connect(target.addr).await;
                    if sender.is_none() {
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let sent = now_ns();
                let status = match sender.as_mut() {
                    Some(s) => send(s, &target, seq).await.unwrap_or(0),
                    None => 0,
                };
                let done = now_ns();
                if status == 0 {
                    sender = None;
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                } else if (200..300).contains(&status) {
                    progress.ok.fetch_add(1, Ordering::Relaxed);
                }
                out.push(Record {
                    seq,
                    intended: sent,
                    sent,
                    start: sent,
                    done,
                    status,
                });
            }
            out
        }));
    }
    let mut result = LoadResult {
        t_start: t0,
        t_end: end,
        ..LoadResult::default()
    };
    for t in tasks {
        if let Ok(recs) = t.await {
            result.records.extend(recs);
        }
    }
    result
}
