//! Scenario 11, streams (issue 17): many idle Server-Sent Events consumers on one worker
//! (RSS per idle consumer; fan-out latency of one event to all of them), and ingest
//! throughput with 1,000 consumers reading every event against none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Ctx, manifests, or_nan, progress, say};
use crate::load::{Target, closed_loop};
use crate::report::{Report, Section, Table, TargetCheck, fmt_summary};
use crate::stats::{Percentiles, Summary, paired_ratios};
use crate::sut::{Worker, WorkerOpts};

const HOOK: &str = "/hooks/default/feed";
const STREAM: &str = "/streams/default/feed/live";
/// Another bridge's stream, on which no event arrives during the ingest runs.
const QUIET: &str = "/streams/default/quiet/live";
/// Events sent one at a time to measure fan-out.
const PROBES: u64 = 5;

fn bridge_yaml() -> String {
    // The destination is delayed by a day, so nothing is delivered during the run: the
    // events are stored with their jobs (as in scenario 1) and streamed.
    r#"apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: feed}
spec:
  destinations:
  - name: later
    url: "http://127.0.0.1:9/never"
    delay: 24h
  streams:
  - {name: live, heartbeat: 60s, buffer: {maxEvents: 4096}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: quiet}
spec:
  destinations:
  - name: later
    url: "http://127.0.0.1:9/never"
    delay: 24h
  streams:
  - {name: live, heartbeat: 60s}
"#
    .to_string()
}

fn opts() -> WorkerOpts {
    WorkerOpts {
        args: [
            "--max-connections",
            "30000",
            "--max-connections-per-peer",
            "30000",
        ]
        .map(String::from)
        .to_vec(),
        ..WorkerOpts::default()
    }
}

/// When each consumer saw each probe: `seen[consumer * PROBES + probe]`, ns since `epoch`
/// (0: not yet).
struct Arrivals {
    epoch: Instant,
    seen: Vec<AtomicU64>,
}

/// One SSE consumer on a raw socket: reads everything, notes when a probe arrives.
async fn consumer(
    addr: std::net::SocketAddr,
    path: &'static str,
    index: usize,
    arrivals: Arc<Arrivals>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    // The head and the first chunk (`retry:`): the consumer is in the fan-out.
    let mut buf = vec![0u8; 2048];
    let mut got = Vec::new();
    while !got.windows(7).any(|w| w == b"retry: ") {
        let n = s.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "stream closed before its first chunk");
        got.extend_from_slice(&buf[..n]);
    }
    anyhow::ensure!(got.starts_with(b"HTTP/1.1 200"), "stream refused");
    Ok(tokio::spawn(async move {
        let marker = b"\"probe\":";
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let at = arrivals.epoch.elapsed().as_nanos() as u64;
            carry.extend_from_slice(&buf[..n]);
            let mut start = 0;
            while let Some(p) = carry[start..]
                .windows(marker.len())
                .position(|w| w == marker)
            {
                let i = start + p + marker.len();
                let digits: Vec<u8> = carry[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .copied()
                    .collect();
                if i + digits.len() >= carry.len() {
                    break; // the number may go on in the next read
                }
                if let Ok(k) = std::str::from_utf8(&digits).unwrap_or("").parse::<u64>()
                    && k < PROBES
                {
                    let slot = &arrivals.seen[index * PROBES as usize + k as usize];
                    let _ =
                        slot.compare_exchange(0, at.max(1), Ordering::Relaxed, Ordering::Relaxed);
                }
                start = i;
            }
            // Keep only a tail that may hold a marker cut in two.
            let keep = carry.len().saturating_sub(32);
            carry.drain(..keep.max(start.min(carry.len())).min(carry.len()));
        }
    }))
}

async fn connect_all(
    addr: std::net::SocketAddr,
    path: &'static str,
    n: usize,
    arrivals: &Arc<Arrivals>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut out = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
        let mut batch = Vec::new();
        for &i in chunk {
            batch.push(tokio::spawn(consumer(addr, path, i, arrivals.clone())));
        }
        for b in batch {
            out.push(b.await??);
        }
    }
    Ok(out)
}

/// POST one event on a fresh connection; returns when its 202 arrived.
async fn post(addr: std::net::SocketAddr, body: &str) -> anyhow::Result<Instant> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        format!(
            "POST {HOOK} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut head = vec![0u8; 512];
    let n = s.read(&mut head).await?;
    let at = Instant::now();
    anyhow::ensure!(head[..n].starts_with(b"HTTP/1.1 202"), "event refused");
    Ok(at)
}

async fn rss_mib(w: &Worker) -> f64 {
    tokio::time::sleep(Duration::from_millis(1000)).await;
    w.proc
        .rss_kib()
        .map(|k| k as f64 / 1024.0)
        .unwrap_or(f64::NAN)
}

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let consumers = if ctx.quick { 2_000 } else { 10_000 };
    let (mut per_consumer_kib, mut p50, mut p99, mut all_ms) = (vec![], vec![], vec![], vec![]);
    let (mut none, mut idle_1000, mut with_1000) = (vec![], vec![], vec![]);
    for run in 0..ctx.runs {
        // Idle consumers and fan-out.
        let dir = ctx.dir("streams", run, "fanout");
        let m = manifests(&dir, &bridge_yaml())?;
        let mut w = Worker::start(&ctx.paths, &dir, &m, opts()).await?;
        // One consumer first, so that the bridge's fan-out exists before the baseline.
        let warm = Arc::new(Arrivals {
            epoch: Instant::now(),
            seen: (0..PROBES).map(|_| AtomicU64::new(0)).collect(),
        });
        let first = connect_all(w.listen, STREAM, 1, &warm).await?;
        let before = rss_mib(&w).await;
        let arrivals = Arc::new(Arrivals {
            epoch: Instant::now(),
            seen: (0..consumers as u64 * PROBES)
                .map(|_| AtomicU64::new(0))
                .collect(),
        });
        let tasks = connect_all(w.listen, STREAM, consumers, &arrivals).await?;
        let after = rss_mib(&w).await;
        per_consumer_kib.push((after - before) * 1024.0 / consumers as f64);
        let (mut run_p50, mut run_p99, mut run_all) = (vec![], vec![], vec![]);
        for k in 0..PROBES {
            let acked = post(w.listen, &format!(r#"{{"probe":{k}}}"#)).await?;
            let acked_ns = acked.duration_since(arrivals.epoch).as_nanos() as u64;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let missing = (0..consumers)
                    .filter(|c| {
                        arrivals.seen[c * PROBES as usize + k as usize].load(Ordering::Relaxed) == 0
                    })
                    .count();
                if missing == 0 {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "probe {k}: {missing} consumers never got it"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut lat: Vec<u64> = (0..consumers)
                .map(|c| {
                    arrivals.seen[c * PROBES as usize + k as usize]
                        .load(Ordering::Relaxed)
                        .saturating_sub(acked_ns)
                        / 1000
                })
                .collect();
            let last = lat.iter().copied().max().unwrap_or(0);
            if let Some(p) = Percentiles::of(&mut lat) {
                run_p50.push(p.p50 / 1000.0);
                run_p99.push(p.p99 / 1000.0);
            }
            run_all.push(last as f64 / 1000.0);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let median = |v: &[f64]| Summary::of(v).map(|s| s.median);
        p50.push(or_nan(median(&run_p50)));
        p99.push(or_nan(median(&run_p99)));
        all_ms.push(or_nan(median(&run_all)));
        for t in tasks.into_iter().chain(first) {
            t.abort();
        }
        w.discard();
        say(format!(
            "streams run {run}: {:.1} KiB per idle consumer, fan-out to {consumers}: p50 {:.1} ms, p99 {:.1} ms, all {:.1} ms",
            per_consumer_kib[run], p50[run], p99[run], all_ms[run]
        ));

        // Ingest with 1,000 consumers reading every event, against none.
        for (with, path, out) in [
            (0usize, STREAM, &mut none),
            (1000, QUIET, &mut idle_1000),
            (1000, STREAM, &mut with_1000),
        ] {
            let dir = ctx.dir("streams", run, &format!("ingest-{with}-{}", path.len()));
            let m = manifests(&dir, &bridge_yaml())?;
            let mut w = Worker::start(&ctx.paths, &dir, &m, opts()).await?;
            let arrivals = Arc::new(Arrivals {
                epoch: Instant::now(),
                seen: (0..with as u64 * PROBES)
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            });
            let tasks = connect_all(w.listen, path, with, &arrivals).await?;
            let t = Target::new(w.listen, HOOK);
            let profile = crate::sut::Profile::start(w.proc.pid(), &dir, "worker");
            let closed =
                closed_loop(&t, ctx.conns, ctx.closed, ctx.seqs(10_000_000), progress()).await;
            if let Some(p) = profile {
                p.finish();
            }
            out.push(closed.throughput(ctx.warmup));
            for t in tasks {
                t.abort();
            }
            w.discard();
        }
        say(format!(
            "streams run {run}: ingest {:.0} req/s without consumers, {:.0} with 1,000 idle on another bridge, {:.0} with 1,000 reading",
            none[run], idle_1000[run], with_1000[run]
        ));
    }
    let ratios = paired_ratios(&with_1000, &none);
    let idle_ratios = paired_ratios(&idle_1000, &none);
    let mut t = Table::new(&format!("{consumers} idle SSE consumers on one worker"));
    t.add("RSS per idle consumer", "KiB", per_consumer_kib.clone())
        .add(
            "fan-out of one event, p50 over consumers (from its 202)",
            "ms",
            p50,
        )
        .add("fan-out of one event, p99 over consumers", "ms", p99)
        .add("fan-out of one event, last consumer", "ms", all_ms);
    let mut i = Table::new(&format!("Ingest (closed loop, {} connections)", ctx.conns));
    i.add("no stream consumer", "req/s", none)
        .add(
            "1,000 SSE consumers connected to another bridge's stream",
            "req/s",
            idle_1000,
        )
        .add(
            "1,000 SSE consumers reading every event",
            "req/s",
            with_1000,
        )
        .add(
            "idle 1,000 / none (paired per run)",
            "ratio",
            idle_ratios.clone(),
        )
        .add(
            "reading 1,000 / none (paired per run)",
            "ratio",
            ratios.clone(),
        );
    let rss = Summary::of(&per_consumer_kib);
    report.targets.push(TargetCheck {
        target: "Streams: RSS per idle SSE consumer < 16 KiB".into(),
        measured: format!("{} KiB", fmt_summary(rss)),
        met: rss.map(|s| s.median < 16.0),
    });
    let r = Summary::of(&ratios);
    let idle = Summary::of(&idle_ratios);
    report.targets.push(TargetCheck {
        target: "Streams: ingest with 1,000 consumers ≥ 90% of ingest without".into(),
        measured: format!(
            "{} of it with 1,000 consumers reading every event; {} with 1,000 connected to another bridge's stream",
            fmt_summary(r),
            fmt_summary(idle)
        ),
        met: r.map(|s| s.median >= 0.9),
    });
    report.sections.push(Section {
        title: "11. Streams (issue 17)".into(),
        method: format!(
            "One worker (`causeway up`, embedded store), a bridge with one stream. {consumers} consumers connect over \
             loopback (raw sockets, `Accept: text/event-stream`) and stay idle; RSS per consumer = (`VmRSS` with them − \
             `VmRSS` with one) / {consumers}, a second after the last connected. Then {PROBES} events are posted one at a \
             time; for each, every consumer's arrival time minus the time its 202 came back gives the fan-out latency \
             (p50, p99 and the last consumer; the median of the {PROBES} events per run). Ingest: scenario 1's closed \
             loop on a fresh worker with no consumer, on one with 1,000 consumers connected to another bridge's stream \
             (connected, nothing to send them), and on one with 1,000 consumers reading every event (each event written \
             to 1,000 sockets, on the same cores as ingest)."
        ),
        tables: vec![t, i],
        notes: vec![],
    });
    Ok(())
}
