//! Scenario 1, ingest: accept plus durable write, no delivery, against baseline 1 (the HTTP
//! floor). The bridge's one destination is delayed by a day, so each event is stored with
//! its delivery job (as in production) and nothing is sent during the run.

use std::time::Duration;

use super::{
    Ctx, ack_percentiles, cpu_per_event, histogram_mean, manifests, or_nan, progress, say,
};
use crate::load::{OpenLoop, Target, closed_loop, open_loop};
use crate::report::{Report, Section, Table, TargetCheck, fmt_pct, fmt_summary};
use crate::stats::{Summary, paired_ratios};
use crate::sut::{Worker, WorkerOpts, start_floor};

pub const PATH: &str = "/hooks/default/ingest";

pub fn bridge_yaml() -> String {
    r#"apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: ingest}
spec:
  destinations:
  - name: later
    url: "http://127.0.0.1:9/never"
    delay: 24h
"#
    .to_string()
}

#[derive(Default)]
struct Side {
    max: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    p999: Vec<f64>,
    errors: Vec<f64>,
}

impl Side {
    fn push_open(&mut self, r: &crate::load::LoadResult) {
        let p = ack_percentiles(r);
        self.p50.push(or_nan(p.map(|p| p.p50)));
        self.p99.push(or_nan(p.map(|p| p.p99)));
        self.p999.push(or_nan(p.map(|p| p.p999)));
        self.errors.push(r.error_count() as f64 + r.not_sent as f64);
    }
}

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let mut floor = Side::default();
    let mut cw = Side::default();
    let mut cpu_us = Vec::new();
    let mut floor_cpu_us = Vec::new();
    let mut batch = Vec::new();
    let mut commit_ms = Vec::new();
    for run in 0..ctx.runs {
        // Baseline 1.
        let dir = ctx.dir("ingest", run, "floor");
        let (mut p, addr) = start_floor(&ctx.paths, &dir).await?;
        let t = Target::new(addr, PATH);
        let cpu0 = p.cpu_time();
        let closed = closed_loop(&t, ctx.conns, ctx.closed, ctx.seqs(10_000_000), progress()).await;
        floor_cpu_us.push(cpu_per_event(cpu0, p.cpu_time(), closed.ok_count()));
        floor.max.push(closed.throughput(ctx.warmup));
        let plan = OpenLoop {
            rate: ctx.ingest_rate,
            duration: ctx.open,
            conns: ctx.conns,
            seq_base: ctx.seqs(10_000_000),
        };
        let open = open_loop(&t, plan, progress()).await;
        floor.push_open(&open);
        p.terminate(Duration::from_secs(5));
        say(format!(
            "ingest run {run}: floor {:.0} req/s max, p50 {:.0} µs at {}/s",
            floor.max[run], floor.p50[run], ctx.ingest_rate
        ));

        // Causeway.
        let dir = ctx.dir("ingest", run, "causeway");
        let m = manifests(&dir, &bridge_yaml())?;
        let mut w = Worker::start(&ctx.paths, &dir, &m, WorkerOpts::default()).await?;
        let t = Target::new(w.listen, PATH);
        let profile = crate::sut::Profile::start(w.proc.pid(), &dir, "worker");
        let cpu0 = w.proc.cpu_time();
        let closed = closed_loop(&t, ctx.conns, ctx.closed, ctx.seqs(10_000_000), progress()).await;
        let cpu1 = w.proc.cpu_time();
        if let Some(p) = profile.and_then(crate::sut::Profile::finish) {
            say(format!("profile: {}", p.display()));
        }
        cw.max.push(closed.throughput(ctx.warmup));
        cpu_us.push(cpu_per_event(cpu0, cpu1, closed.ok_count()));
        let metrics = w.metrics().await;
        batch.push(or_nan(histogram_mean(
            &metrics,
            "causeway_store_commit_batch_size",
        )));
        commit_ms.push(or_nan(
            histogram_mean(&metrics, "causeway_store_commit_seconds").map(|s| s * 1e3),
        ));
        let plan = OpenLoop {
            rate: ctx.ingest_rate,
            duration: ctx.open,
            conns: ctx.conns,
            seq_base: ctx.seqs(10_000_000),
        };
        let open = open_loop(&t, plan, progress()).await;
        cw.push_open(&open);
        w.discard();
        say(format!(
            "ingest run {run}: causeway {:.0} req/s max, p50 {:.0} µs at {}/s",
            cw.max[run], cw.p50[run], ctx.ingest_rate
        ));
    }

    let ratios = paired_ratios(&cw.max, &floor.max);
    let cw_max = cw.max.clone();
    let mut max = Table::new("Maximum throughput (closed loop)");
    max.add(
        &format!("HTTP floor, {} connections", ctx.conns),
        "req/s",
        floor.max.clone(),
    )
    .add(
        &format!("causeway ingest (durable), {} connections", ctx.conns),
        "req/s",
        cw.max.clone(),
    )
    .add("causeway / floor (paired per run)", "ratio", ratios.clone())
    .add("HTTP floor CPU per request", "µs", floor_cpu_us)
    .add("worker CPU per accepted event", "µs", cpu_us)
    .add("events per group commit (mean)", "events", batch)
    .add("group commit incl. fsync (mean)", "ms", commit_ms);
    let mut lat = Table::new(&format!(
        "Latency at a fixed {:.0} req/s (open loop, {} connections)",
        ctx.ingest_rate, ctx.conns
    ));
    lat.add("HTTP floor p50", "µs", floor.p50)
        .add("HTTP floor p99", "µs", floor.p99)
        .add("HTTP floor p99.9", "µs", floor.p999)
        .add("HTTP floor errors", "requests", floor.errors)
        .add("causeway p50 (202 after fsync)", "µs", cw.p50)
        .add("causeway p99", "µs", cw.p99)
        .add("causeway p99.9", "µs", cw.p999)
        .add("causeway errors", "requests", cw.errors);
    let ratio = Summary::of(&ratios);
    report.targets.push(TargetCheck {
        target: "Ingest ≥ 40% of baseline 1 (HTTP floor)".into(),
        measured: format!(
            "{} of the floor ({} req/s)",
            fmt_pct(ratio),
            fmt_summary(Summary::of(&cw_max))
        ),
        met: ratio.map(|s| s.median >= 0.40),
    });
    report.sections.push(Section {
        title: "1. Ingest".into(),
        method: format!(
            "`POST` of 1 KiB JSON events to one bridge whose destination is delayed by 24 h: each event is parsed, stored \
             with its delivery job and fsynced (group commit) before the 202. Baseline 1 is `http-floor`: the worker's \
             hyper stack reading the body and answering 202 without storing. Maximum: closed loop, {} connections, {:.0} s \
             (the first {:.1} s not counted). Latency: open loop at {:.0} req/s for {:.0} s, measured from the planned send time.",
            ctx.conns,
            ctx.closed.as_secs_f64(),
            ctx.warmup.as_secs_f64(),
            ctx.ingest_rate,
            ctx.open.as_secs_f64()
        ),
        tables: vec![max, lat],
        notes: vec![],
    });
    Ok(())
}
