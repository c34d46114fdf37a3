//! The scenarios of issue 8. Each one runs its systems `runs` times, side by side with
//! its baselines, and adds a section (and target checks) to the report.

pub mod crash;
pub mod density;
pub mod forward;
pub mod ingest;
pub mod lowrate;
pub mod operator;
pub mod pipeline;
pub mod postgres;
pub mod retention;
pub mod streams;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::load::{LoadResult, Progress, now_ns};
use crate::sink::Sink;
use crate::stats::Percentiles;
use crate::sut::Paths;

/// Settings of one benchmark run.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub paths: Paths,
    pub quick: bool,
    pub runs: usize,
    /// Closed-loop (maximum throughput) run length.
    pub closed: Duration,
    /// Open-loop (fixed rate) run length.
    pub open: Duration,
    /// Closed-loop answers before this are not counted (connections warming up).
    pub warmup: Duration,
    /// Connections of the load generator (and the destination's `maxConcurrency`).
    pub conns: usize,
    /// Fixed rates (requests per second).
    pub ingest_rate: f64,
    pub forward_rate: f64,
    pub crash_rate: f64,
    seq: Arc<AtomicU64>,
}

impl Ctx {
    pub fn new(paths: Paths, quick: bool) -> Ctx {
        let env_f = |k: &str, d: f64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let runs = env_f("BENCH_RUNS", if quick { 2.0 } else { 5.0 }) as usize;
        let secs = env_f("BENCH_SECS", if quick { 2.0 } else { 5.0 });
        Ctx {
            paths,
            quick,
            runs: runs.max(1),
            closed: Duration::from_secs_f64(secs),
            open: Duration::from_secs_f64(secs),
            warmup: Duration::from_secs_f64(secs / 10.0),
            conns: env_f("BENCH_CONNS", 64.0) as usize,
            ingest_rate: env_f("BENCH_INGEST_RATE", 2000.0),
            forward_rate: env_f("BENCH_FORWARD_RATE", 1000.0),
            crash_rate: env_f("BENCH_CRASH_RATE", 500.0),
            seq: Arc::new(AtomicU64::new(1)),
        }
    }

    /// A fresh block of sequence numbers (every request of the whole benchmark is unique).
    pub fn seqs(&self, n: u64) -> u64 {
        self.seq.fetch_add(n, Ordering::Relaxed)
    }

    /// A fresh directory for one system in one run.
    pub fn dir(&self, scenario: &str, run: usize, what: &str) -> PathBuf {
        let d = self
            .paths
            .work
            .join(scenario)
            .join(format!("run{run}"))
            .join(what);
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::create_dir_all(&d);
        d
    }
}

/// Print progress on stderr.
pub fn say(msg: impl AsRef<str>) {
    eprintln!("[bench {:>7.1}s] {}", now_ns() as f64 / 1e9, msg.as_ref());
}

/// Write `yaml` as the only manifest in `dir/manifests`; returns the directory.
pub fn manifests(dir: &Path, yaml: &str) -> anyhow::Result<PathBuf> {
    let m = dir.join("manifests");
    std::fs::create_dir_all(&m)?;
    std::fs::write(m.join("bench.yaml"), yaml)?;
    Ok(m)
}

/// Latency percentiles (µs) of 2xx answers.
pub fn ack_percentiles(r: &LoadResult) -> Option<Percentiles> {
    Percentiles::of(&mut r.latencies_us())
}

/// For each acknowledged request, the time from its latency start (see
/// [`crate::stats::latency_start`]) to its first arrival at the sink, in µs; and how many
/// acknowledged requests have not arrived.
pub fn end_to_end_us(r: &LoadResult, arrivals: &[(u64, u64)]) -> (Vec<u64>, usize) {
    let mut first: HashMap<u64, u64> = HashMap::with_capacity(arrivals.len());
    for &(seq, at) in arrivals {
        first
            .entry(seq)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }
    let mut out = Vec::new();
    let mut missing = 0;
    for rec in r.ok() {
        match first.get(&rec.seq) {
            Some(&at) => out.push(at.saturating_sub(rec.start) / 1000),
            None => missing += 1,
        }
    }
    (out, missing)
}

/// Wait until the sink has seen every acknowledged request of `r` (bounded by `limit`);
/// returns how long it took, or `None` if some never arrived.
pub async fn wait_delivered(r: &LoadResult, sink: &Sink, limit: Duration) -> Option<Duration> {
    let want: Vec<u64> = r.ok().map(|x| x.seq).collect();
    let t = Instant::now();
    loop {
        // Cheap check first: counts, then the real set.
        if sink.count() as usize >= want.len() {
            let got: std::collections::HashSet<u64> =
                sink.arrivals().into_iter().map(|a| a.0).collect();
            if want.iter().all(|s| got.contains(s)) {
                return Some(t.elapsed());
            }
        }
        if t.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh progress counter.
pub fn progress() -> Arc<Progress> {
    Arc::new(Progress::default())
}

/// Sample `acked - delivered` every 250 ms while `task` runs: `(seconds, backlog)`; and,
/// with a worker, its `causeway_queue_depth` gauge once a second (values seen).
pub async fn sample_backlog<T>(
    task: &tokio::task::JoinHandle<T>,
    progress: &Progress,
    sink: &Sink,
    worker: Option<&crate::sut::Worker>,
) -> (Vec<(f64, f64)>, Vec<f64>) {
    let mut out = Vec::new();
    let mut depths = Vec::new();
    let mut i = 0u32;
    while !task.is_finished() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let acked = progress.ok.load(Ordering::Relaxed) as f64;
        out.push((now_ns() as f64 / 1e9, acked - sink.count() as f64));
        i += 1;
        if let Some(w) = worker.filter(|_| i.is_multiple_of(4))
            && let Some(d) = crate::sut::metric_sum(&w.metrics().await, "causeway_queue_depth")
        {
            depths.push(d);
        }
    }
    (out, depths)
}

/// Mean of a Prometheus histogram (`_sum / _count`), over all its labels.
pub fn histogram_mean(metrics: &str, name: &str) -> Option<f64> {
    let sum = crate::sut::metric_sum(metrics, &format!("{name}_sum"))?;
    let count = crate::sut::metric_sum(metrics, &format!("{name}_count"))?;
    (count > 0.0).then(|| sum / count)
}

/// CPU microseconds per event between two `/proc` readings; NaN when unknown.
pub fn cpu_per_event(before: Option<Duration>, after: Option<Duration>, events: usize) -> f64 {
    match (before, after) {
        (Some(a), Some(b)) if events > 0 && b >= a => (b - a).as_secs_f64() * 1e6 / events as f64,
        _ => f64::NAN,
    }
}

/// NaN for "not measured in this run" (skipped by the summaries).
pub fn or_nan(x: Option<f64>) -> f64 {
    x.unwrap_or(f64::NAN)
}
