//! Scenario 13, low rate (issue 15): scenario 2's forward at 100 events/s, where nothing
//! is batched, against the same worker saturated in the same run; the same two hops through
//! nginx (`proxy_pass`, nothing stored) at both rates, for what a low rate costs any
//! server on this machine; and what one fsync costs on the disk the store is on.

use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use super::forward::{PATH, bridge_yaml, e2e};
use super::{
    Ctx, ack_percentiles, cpu_per_event, manifests, or_nan, progress, say, wait_delivered,
};
use crate::load::{OpenLoop, Target, closed_loop, open_loop};
use crate::report::{Report, Section, Table, TargetCheck, fmt_num, fmt_summary};
use crate::sink::Sink;
use crate::stats::{Percentiles, Summary, paired_ratios};
use crate::sut::{Worker, WorkerOpts, metric_sum, start_nginx};

/// The pages a durable commit of the store writes at a low rate besides its header (counted
/// with strace on the worker at 100 events/s; bench/notes.md, session 19).
const COMMIT_PAGES: usize = 16;

fn env_f(k: &str, d: f64) -> f64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// `n` rounds of rewriting `pages` 4 KiB pages of a 1 MiB file, each round followed by
/// `fdatasync`: what a commit's sync costs here at least. `spread`: the pages lie apart
/// (as a B-tree's copied pages do: a durable commit of the store at a low rate writes
/// its header and ~16 pages, see bench/notes.md), else they are adjacent. Microseconds per
/// sync, in `dir` (the disk the stores are on), and the CPU this thread spent per round
/// (the scheduler's run time of the thread, which on a VM includes the exits that talk to
/// the virtual disk).
pub fn fdatasync_us(
    dir: &std::path::Path,
    n: usize,
    pages: usize,
    spread: bool,
) -> std::io::Result<(Vec<u64>, f64)> {
    const FILE_PAGES: usize = 256;
    let pages = pages.clamp(1, FILE_PAGES / 2);
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    f.write_all(&vec![0u8; FILE_PAGES * 4096])?;
    f.sync_all()?;
    let page = [7u8; 4096];
    let mut out = Vec::with_capacity(n);
    let cpu0 = thread_run_ns();
    for i in 0..n {
        for k in 0..pages {
            // 37 is prime to the file's 256 pages: spread pages of a round never meet.
            let at = if spread {
                (i * 17 + k * 37) % FILE_PAGES
            } else {
                (i * 17) % (FILE_PAGES - pages) + k
            };
            f.seek(SeekFrom::Start(at as u64 * 4096))?;
            f.write_all(&page)?;
        }
        let t = Instant::now();
        f.sync_data()?;
        out.push(t.elapsed().as_micros() as u64);
    }
    let cpu_us = match (cpu0, thread_run_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e3 / n.max(1) as f64,
        _ => f64::NAN,
    };
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok((out, cpu_us))
}

/// Nanoseconds this thread has run (`/proc/thread-self/schedstat`, first field).
fn thread_run_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let sink = Sink::start().await?;
    let rate = env_f("BENCH_LOW_RATE", 100.0);
    let secs = env_f("BENCH_LOW_SECS", if ctx.quick { 6.0 } else { 20.0 });
    let conns = 8;
    let (mut sat_cpu, mut low_cpu, mut p50, mut p99, mut p999, mut ack50, mut ack99, mut missing) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    let (mut sync50, mut sync99, mut sync_max, mut sync_cpu) = (vec![], vec![], vec![], vec![]);
    let (mut spread50, mut adjacent50) = (vec![], vec![]);
    let (mut commits_per_event, mut commit_ms) = (vec![], vec![]);
    let (mut ng_sat, mut ng_low, mut ng_p50, mut ng_p99) = (vec![], vec![], vec![], vec![]);
    // The low-rate load, the same for nginx and the worker (fresh sequence numbers each).
    let low_rate = || OpenLoop {
        rate,
        duration: Duration::from_secs_f64(secs),
        conns,
        seq_base: ctx.seqs(10_000_000),
    };
    for run in 0..ctx.runs {
        // The same two hops without a store: nginx saturated, then at the low rate. Its
        // ratio is what wake-ups cost any server here when nothing arrives to share them.
        let dir = ctx.dir("lowrate", run, "nginx");
        sink.clear();
        let (mut ng, addr) = start_nginx(&ctx.paths, &dir, sink.addr).await?;
        let t = Target::new(addr, "/low");
        let cpu0 = ng.tree_cpu_time();
        let closed = closed_loop(&t, ctx.conns, ctx.closed, ctx.seqs(10_000_000), progress()).await;
        ng_sat.push(cpu_per_event(cpu0, ng.tree_cpu_time(), closed.ok_count()));
        sink.clear();
        let cpu0 = ng.tree_cpu_time();
        let open = open_loop(&t, low_rate(), progress()).await;
        ng_low.push(cpu_per_event(cpu0, ng.tree_cpu_time(), open.ok_count()));
        let (e, _) = e2e(&open, &sink);
        ng_p50.push(or_nan(e.map(|p| p.p50)));
        ng_p99.push(or_nan(e.map(|p| p.p99)));
        ng.terminate(Duration::from_secs(5));

        let dir = ctx.dir("lowrate", run, "causeway");
        // The disk's own cost, next to the store it measures for.
        let (mut s, cpu) = fdatasync_us(&dir, if ctx.quick { 100 } else { 300 }, 1, true)?;
        sync_cpu.push(cpu);
        let max = s.iter().copied().max().map(|m| m as f64);
        let p = Percentiles::of(&mut s);
        sync50.push(or_nan(p.map(|p| p.p50)));
        sync99.push(or_nan(p.map(|p| p.p99)));
        sync_max.push(or_nan(max));
        // A commit's worth of pages, apart and side by side: the disk prices each apart.
        let rounds = if ctx.quick { 50 } else { 100 };
        for (spread, out) in [(true, &mut spread50), (false, &mut adjacent50)] {
            let (mut s, _) = fdatasync_us(&dir, rounds, COMMIT_PAGES, spread)?;
            out.push(or_nan(Percentiles::of(&mut s).map(|p| p.p50)));
        }

        sink.clear();
        let m = manifests(&dir, &bridge_yaml(&sink.url("/low"), ctx.conns, "", ""))?;
        let mut w = Worker::start(&ctx.paths, &dir, &m, WorkerOpts::default()).await?;
        let t = Target::new(w.listen, PATH);
        // Saturated: the CPU figure to compare with.
        let cpu0 = w.proc.cpu_time();
        let closed = closed_loop(&t, ctx.conns, ctx.closed, ctx.seqs(10_000_000), progress()).await;
        let _ = wait_delivered(&closed, &sink, Duration::from_secs(120)).await;
        sat_cpu.push(cpu_per_event(cpu0, w.proc.cpu_time(), closed.ok_count()));
        // Let the store settle (attempt records flushed) before the low-rate run.
        tokio::time::sleep(Duration::from_secs(1)).await;
        sink.clear();
        let profile = crate::sut::Profile::start(w.proc.pid(), &dir, "worker-lowrate");
        let m0 = w.metrics().await;
        let cpu0 = w.proc.cpu_time();
        let open = open_loop(&t, low_rate(), progress()).await;
        let _ = wait_delivered(&open, &sink, Duration::from_secs(30)).await;
        low_cpu.push(cpu_per_event(cpu0, w.proc.cpu_time(), open.ok_count()));
        // The store's commits during the low-rate run: how many per event, how long each.
        let m1 = w.metrics().await;
        let delta = |name: &str| match (metric_sum(&m1, name), metric_sum(&m0, name)) {
            (Some(a), Some(b)) => a - b,
            _ => f64::NAN,
        };
        let commits = delta("causeway_store_commit_seconds_count");
        commits_per_event.push(commits / open.ok_count().max(1) as f64);
        commit_ms.push(delta("causeway_store_commit_seconds_sum") * 1e3 / commits);
        if let Some(p) = profile.and_then(crate::sut::Profile::finish) {
            say(format!("profile: {}", p.display()));
        }
        let (e, miss) = e2e(&open, &sink);
        p50.push(or_nan(e.map(|p| p.p50)));
        p99.push(or_nan(e.map(|p| p.p99)));
        p999.push(or_nan(e.map(|p| p.p999)));
        missing.push(miss as f64);
        let a = ack_percentiles(&open);
        ack50.push(or_nan(a.map(|p| p.p50)));
        ack99.push(or_nan(a.map(|p| p.p99)));
        w.discard();
        say(format!(
            "lowrate run {run}: e2e p50 {:.0} µs p99 {:.0} µs; CPU/event {:.0} µs at {rate:.0}/s, {:.0} µs saturated; nginx {:.0} and {:.0} µs; fdatasync p50 {:.0} µs p99 {:.0} µs",
            p50[run],
            p99[run],
            low_cpu[run],
            sat_cpu[run],
            ng_low[run],
            ng_sat[run],
            sync50[run],
            sync99[run]
        ));
    }
    let cpu_ratio = paired_ratios(&low_cpu, &sat_cpu);
    let ng_ratio = paired_ratios(&ng_low, &ng_sat);
    // Per run, from the four figures (a run missing one is left out, not shifted).
    let per_run = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<f64>>();
    let over_nginx = paired_ratios(&per_run(&low_cpu, &sat_cpu), &per_run(&ng_low, &ng_sat));
    let mut ngt = Table::new(&format!(
        "The same two hops without a store: nginx `proxy_pass` → sink, saturated and at {rate:.0}/s"
    ));
    ngt.add(
        &format!("nginx CPU per request at {rate:.0}/s (master and workers)"),
        "µs",
        ng_low,
    )
    .add(
        "nginx CPU per request saturated (closed loop)",
        "µs",
        ng_sat,
    )
    .add(
        "nginx: CPU per request at the low rate / saturated (paired per run)",
        "ratio",
        ng_ratio.clone(),
    )
    .add(
        "causeway's low-rate ratio / nginx's (paired per run)",
        "ratio",
        over_nginx,
    )
    .add("nginx: send → arrival at the sink, p50", "µs", ng_p50)
    .add("nginx: send → arrival at the sink, p99", "µs", ng_p99);
    let mut lat = Table::new(&format!(
        "Forward at a fixed {rate:.0} events/s for {secs:.0} s ({conns} connections)"
    ));
    lat.add("send → arrival at the sink, p50", "µs", p50)
        .add("send → arrival at the sink, p99", "µs", p99.clone())
        .add("send → arrival at the sink, p99.9", "µs", p999)
        .add("send → 202, p50", "µs", ack50)
        .add("send → 202, p99", "µs", ack99)
        .add(
            "acknowledged but not at the sink after 30 s",
            "events",
            missing,
        )
        .add(
            &format!("worker CPU per event at {rate:.0}/s"),
            "µs",
            low_cpu,
        )
        .add(
            "worker CPU per event saturated (closed loop, same worker, just before)",
            "µs",
            sat_cpu,
        )
        .add(
            "CPU per event at the low rate / saturated (paired per run)",
            "ratio",
            cpu_ratio.clone(),
        )
        .add(
            "store commits per event at the low rate (group commits, durable or not)",
            "",
            commits_per_event,
        )
        .add(
            "store commit, mean (the writer's time in the commit, fsync included)",
            "ms",
            commit_ms,
        );
    let mut disk = Table::new("fdatasync after rewriting 4 KiB pages, on the store's disk");
    disk.add("one page, p50", "µs", sync50)
        .add("one page, p99", "µs", sync99)
        .add("one page, max", "µs", sync_max)
        .add(
            "one page: CPU of the probe's thread per rewrite and fdatasync (mean)",
            "µs",
            sync_cpu,
        )
        .add(
            &format!("{COMMIT_PAGES} pages apart, p50 (a low-rate commit's pages)"),
            "µs",
            spread50,
        )
        .add(
            &format!("{COMMIT_PAGES} adjacent pages, p50"),
            "µs",
            adjacent50,
        );
    let tail = Summary::of(&p99);
    let ratio = Summary::of(&cpu_ratio);
    report.targets.push(TargetCheck {
        target: format!("p99 send → sink at {rate:.0} events/s ≤ 10 ms"),
        measured: format!("{} µs", fmt_summary(tail)),
        met: tail.map(|s| s.median <= 10_000.0),
    });
    report.targets.push(TargetCheck {
        target: format!("CPU per event at {rate:.0} events/s ≤ 2× the saturated figure"),
        measured: format!(
            "{}× (median of paired runs); nginx `proxy_pass` in the same runs {}×",
            ratio.map_or("–".into(), |s| fmt_num(s.median)),
            Summary::of(&ng_ratio).map_or("–".into(), |s| fmt_num(s.median))
        ),
        met: ratio.map(|s| s.median <= 2.0),
    });
    report.sections.push(Section {
        title: "13. Low rate".into(),
        method: format!(
            "Scenario 2's bridge and sink. Each run starts a fresh worker, saturates it for {:.0} s (closed loop, {} \
             connections) for the CPU figure to compare with, waits for the backlog, then sends {rate:.0} events/s for \
             {secs:.0} s over {conns} connections (open loop) and measures send → sink and the worker's CPU per event \
             (`/proc`, user + system, every thread, until the last event arrived). Before the worker, nginx forwards to \
             the same sink under the same two loads (CPU of its master and workers per request): a server that stores \
             nothing, for what the low rate alone costs on this machine. The disk figure is a separate probe in \
             the run's directory: one 4 KiB page rewritten and `fdatasync`ed, {} times; then {COMMIT_PAGES} pages at a time \
             (what a low-rate commit of the store writes), apart and side by side.",
            ctx.closed.as_secs_f64(),
            ctx.conns,
            if ctx.quick { 100 } else { 300 }
        ),
        tables: vec![lat, ngt, disk],
        notes: vec![],
    });
    Ok(())
}
