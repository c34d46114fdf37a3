//! Scenario 12, retention under ingest (issue 15): a store filled to about 1.5× its
//! `retention.maxBytes`, then ingest at a fixed rate while retention trims it, against the
//! same rate on a copy of the same store without a limit, side by side in each run.
//!
//! Both sides start from a copy of one filled data dir, with retention every 5 s (the
//! first pass runs as the worker starts, the way a restart under load meets it). The load
//! starts when `/readyz` answers, so the first trim, and any compaction, happen under it.

use std::path::Path;
use std::time::Duration;

use super::forward::{PATH, bridge_yaml};
use super::{Ctx, manifests, or_nan, progress, say, wait_delivered};
use crate::load::{LoadResult, OpenLoop, Target, closed_loop, open_loop};
use crate::report::{Report, Section, Table, TargetCheck, fmt_num, fmt_summary};
use crate::sink::Sink;
use crate::stats::{Percentiles, Summary, paired_ratios};
use crate::sut::{Worker, WorkerOpts};

/// How often retention runs in both workers.
const INTERVAL: &str = "5s";

fn env_f(k: &str, d: f64) -> f64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn file_bytes(data: &Path) -> u64 {
    std::fs::metadata(data.join("store/events.redb")).map_or(0, |m| m.len())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// The forward bridge, with a pool whose retention limit is `max_bytes` (none: the
/// default, far above the store).
fn yaml(sink: &Sink, conns: usize, max_bytes: Option<u64>) -> String {
    let pool = match max_bytes {
        Some(b) => format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: local}}\nspec:\n  retention: {{maxAge: 7d, maxBytes: \"{b}\"}}\n---\n"
        ),
        None => String::new(),
    };
    format!(
        "{pool}{}",
        bridge_yaml(&sink.url("/retention"), conns, "", "")
    )
}

/// Fills a store to `want` bytes of file with delivered (finished) events; returns the
/// data dir, stopped.
async fn fill(ctx: &Ctx, sink: &Sink, want: u64) -> anyhow::Result<std::path::PathBuf> {
    let dir = ctx.dir("retention", 0, "fill");
    let m = manifests(&dir, &yaml(sink, ctx.conns, None))?;
    let mut w = Worker::start(&ctx.paths, &dir, &m, WorkerOpts::default()).await?;
    let t = Target::new(w.listen, PATH);
    let mut sent = 0usize;
    for _ in 0..200 {
        if file_bytes(&w.data_dir) >= want {
            break;
        }
        let r = closed_loop(
            &t,
            ctx.conns,
            Duration::from_secs(2),
            ctx.seqs(10_000_000),
            progress(),
        )
        .await;
        sent += r.ok_count();
        if wait_delivered(&r, sink, Duration::from_secs(120))
            .await
            .is_none()
        {
            anyhow::bail!("fill: events not delivered within 120 s");
        }
    }
    // Attempt records reach the disk within 200 ms; a clean stop flushes them anyway.
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.stop();
    say(format!(
        "retention: filled {} events, {} MiB of file",
        sent,
        file_bytes(&w.data_dir) >> 20
    ));
    Ok(w.data_dir.clone())
}

/// One side of a run: what the load saw and what the file did.
struct Side {
    load: LoadResult,
    before: u64,
    after: u64,
    /// After a quiet retention pass (no load for longer than the interval).
    after_quiet: u64,
    compactions: usize,
    trimmed: usize,
}

async fn side(
    ctx: &Ctx,
    sink: &Sink,
    filled: &Path,
    run: usize,
    max_bytes: Option<u64>,
    plan: OpenLoop,
) -> anyhow::Result<Side> {
    let what = if max_bytes.is_some() {
        "retention"
    } else {
        "baseline"
    };
    let dir = ctx.dir("retention", run, what);
    let data = dir.join("data");
    copy_dir(filled, &data)?;
    let before = file_bytes(&data);
    sink.clear();
    let m = manifests(&dir, &yaml(sink, ctx.conns, max_bytes))?;
    let opts = WorkerOpts {
        args: vec!["--retention-interval".into(), INTERVAL.into()],
        ..WorkerOpts::default()
    };
    let mut w = Worker::start(&ctx.paths, &dir, &m, opts).await?;
    let t = Target::new(w.listen, PATH);
    let load = open_loop(&t, plan, progress()).await;
    let _ = wait_delivered(&load, sink, Duration::from_secs(60)).await;
    let after = file_bytes(&w.data_dir);
    // One retention pass on a quiet store (compaction may wait for one).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let after_quiet = file_bytes(&w.data_dir);
    let log = w.proc.log_text();
    let lines = log.lines().filter(|l| l.contains(" retention"));
    let (mut compactions, mut trimmed) = (0, 0);
    for l in lines {
        if l.contains("compacted=true") {
            compactions += 1;
        }
        let field = |name: &str| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        };
        trimmed += field("by_size=") + field("by_age=");
    }
    w.discard();
    Ok(Side {
        load,
        before,
        after,
        after_quiet,
        compactions,
        trimmed,
    })
}

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let sink = Sink::start().await?;
    let want =
        (env_f("BENCH_RETENTION_MIB", if ctx.quick { 16.0 } else { 48.0 }) * 1048576.0) as u64;
    let rate = env_f("BENCH_RETENTION_RATE", 300.0);
    let secs = env_f("BENCH_RETENTION_SECS", if ctx.quick { 8.0 } else { 20.0 });
    let filled = fill(ctx, &sink, want).await?;
    let file = file_bytes(&filled);
    // 1.5× over the limit.
    let limit = file * 2 / 3;
    let mut base = [vec![], vec![], vec![]]; // max, p99.9, p99 (ms)
    let mut ret = [vec![], vec![], vec![]];
    let (mut base_err, mut ret_err) = (vec![], vec![]);
    let (mut before, mut after, mut after_quiet, mut base_after, mut compactions, mut trimmed) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let figures = |l: &LoadResult| {
        let mut lat = l.latencies_us();
        let max = lat.iter().copied().max().map(|m| m as f64 / 1e3);
        let p = Percentiles::of(&mut lat);
        [
            or_nan(max),
            or_nan(p.map(|p| p.p999 / 1e3)),
            or_nan(p.map(|p| p.p99 / 1e3)),
        ]
    };
    for run in 0..ctx.runs {
        let plan = |seq_base| OpenLoop {
            rate,
            duration: Duration::from_secs_f64(secs),
            conns: ctx.conns,
            seq_base,
        };
        let b = side(ctx, &sink, &filled, run, None, plan(ctx.seqs(10_000_000))).await?;
        let r = side(
            ctx,
            &sink,
            &filled,
            run,
            Some(limit),
            plan(ctx.seqs(10_000_000)),
        )
        .await?;
        let (fb, fr) = (figures(&b.load), figures(&r.load));
        for i in 0..3 {
            base[i].push(fb[i]);
            ret[i].push(fr[i]);
        }
        base_err.push(b.load.error_count() as f64);
        ret_err.push(r.load.error_count() as f64);
        before.push(r.before as f64 / 1048576.0);
        after.push(r.after as f64 / 1048576.0);
        after_quiet.push(r.after_quiet as f64 / 1048576.0);
        base_after.push(b.after as f64 / 1048576.0);
        compactions.push(r.compactions as f64);
        trimmed.push(r.trimmed as f64);
        say(format!(
            "retention run {run}: max {:.1} ms p99.9 {:.1} ms (baseline p99.9 {:.1} ms, max {:.1} ms); file {} → {} → {} MiB, {} trimmed, {} compaction(s)",
            fr[0],
            fr[1],
            fb[1],
            fb[0],
            r.before >> 20,
            r.after >> 20,
            r.after_quiet >> 20,
            r.trimmed,
            r.compactions
        ));
    }
    let ratio = paired_ratios(&ret[0], &base[1]);
    let met_runs = ratio.iter().filter(|r| **r <= 1.0).count();
    let mut lat = Table::new(&format!(
        "Request latency (send → 202) at a fixed {rate:.0} events/s for {secs:.0} s, {} connections",
        ctx.conns
    ));
    lat.add("without retention: max", "ms", base[0].clone())
        .add("without retention: p99.9", "ms", base[1].clone())
        .add("without retention: p99", "ms", base[2].clone())
        .add("while retention trims: max", "ms", ret[0].clone())
        .add("while retention trims: p99.9", "ms", ret[1].clone())
        .add("while retention trims: p99", "ms", ret[2].clone())
        .add(
            "max with retention / p99.9 without (paired per run)",
            "ratio",
            ratio.clone(),
        )
        .add(
            "requests failed or timed out, without retention",
            "",
            base_err,
        )
        .add("requests failed or timed out, with retention", "", ret_err);
    let mut size = Table::new(&format!(
        "The file (limit {} MiB)",
        fmt_num(limit as f64 / 1048576.0)
    ));
    size.add("file before", "MiB", before)
        .add("file at the end of the load, with retention", "MiB", after)
        .add(
            "file 7 s later (a retention pass with no load), with retention",
            "MiB",
            after_quiet,
        )
        .add("file after the run, without retention", "MiB", base_after)
        .add("events deleted by retention", "events", trimmed)
        .add(
            "compactions (during the load and the quiet pass)",
            "",
            compactions,
        );
    let max = Summary::of(&ret[0]);
    let p999 = Summary::of(&base[1]);
    report.targets.push(TargetCheck {
        target: "Retention trimming a store 1.5× over its limit: no request waits longer than the p99.9 without retention".into(),
        measured: format!(
            "max {} ms against {} ms; held in {met_runs} of {} runs",
            fmt_summary(max),
            fmt_summary(p999),
            ratio.len()
        ),
        met: (!ratio.is_empty()).then_some(met_runs == ratio.len()),
    });
    report.sections.push(Section {
        title: "12. Retention under ingest".into(),
        method: format!(
            "One store filled by scenario 2's bridge with delivered events to {} MiB of file; each run starts two workers \
             in turn on copies of it: one whose pool has `retention.maxBytes` at two thirds of the file (the store is 1.5× \
             over its limit), one with the default limit (nothing to trim), both with `--retention-interval {INTERVAL}`. \
             The open-loop load ({rate:.0} events/s) starts as soon as `/readyz` answers, while the first retention pass \
             runs. Latency is from the planned send to the 202 (a stalled request delays the ones planned behind it on \
             its connection, which are charged from their planned time).",
            file >> 20
        ),
        tables: vec![lat, size],
        notes: vec![],
    });
    Ok(())
}
