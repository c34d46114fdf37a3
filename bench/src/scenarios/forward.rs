//! Scenario 2, forward: ingest plus immediate delivery to the sink, against nginx
//! `proxy_pass` to the same sink at the same concurrency.

use std::time::Duration;

use super::{
    Ctx, ack_percentiles, cpu_per_event, end_to_end_us, manifests, or_nan, progress,
    sample_backlog, say, wait_delivered,
};
use crate::load::{LoadResult, OpenLoop, Target, closed_loop, open_loop};
use crate::report::{Report, Section, Table, TargetCheck, fmt_pct, fmt_summary};
use crate::sink::Sink;
use crate::stats::{Percentiles, Summary, paired_ratios, slope};
use crate::sut::{Worker, WorkerOpts, start_nginx};

pub const PATH: &str = "/hooks/default/forward";

/// A bridge delivering every event at once to `url`, with `conns` attempts in flight.
pub fn bridge_yaml(url: &str, conns: usize, extra_spec: &str, extra_dest: &str) -> String {
    format!(
        r#"apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: forward}}
spec:
{extra_spec}  destinations:
  - name: sink
    url: "{url}"
    maxConcurrency: {conns}
    retries: 20
    backoff: {{policy: fixed, delays: [100ms]}}
{extra_dest}"#
    )
}

/// Sink arrivals per second between `from` and `to` (benchmark clock, ns).
pub fn arrival_rate(arrivals: &[(u64, u64)], from: u64, to: u64) -> f64 {
    let n = arrivals.iter().filter(|a| a.1 >= from && a.1 <= to).count();
    if to <= from {
        f64::NAN
    } else {
        n as f64 / ((to - from) as f64 / 1e9)
    }
}

/// End-to-end percentiles (send → sink) of an open-loop run; missing arrivals are counted.
pub fn e2e(r: &LoadResult, sink: &Sink) -> (Option<Percentiles>, usize) {
    let (mut lat, missing) = end_to_end_us(r, &sink.arrivals());
    (Percentiles::of(&mut lat), missing)
}

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let sink = Sink::start().await?;
    let (mut ng_max, mut ng_p50, mut ng_p99) = (vec![], vec![], vec![]);
    let (mut cw_in, mut cw_out, mut cw_slope, mut cw_depth, mut cw_drain) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut closed_cpu = vec![];
    let (mut cw_p50, mut cw_p99, mut ack_p50, mut ack_p99, mut open_slope, mut cpu_us, mut missing) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for run in 0..ctx.runs {
        // Baseline 2: nginx.
        let dir = ctx.dir("forward", run, "nginx");
        sink.clear();
        let (mut ng, addr) = start_nginx(&ctx.paths, &dir, sink.addr).await?;
        let t = Target::new(addr, "/forward");
        let closed = closed_loop(&t, ctx.conns, ctx.closed, ctx.seqs(10_000_000), progress()).await;
        ng_max.push(closed.throughput(ctx.warmup));
        sink.clear();
        let plan = OpenLoop {
            rate: ctx.forward_rate,
            duration: ctx.open,
            conns: ctx.conns,
            seq_base: ctx.seqs(10_000_000),
        };
        let open = open_loop(&t, plan, progress()).await;
        let (p, _) = e2e(&open, &sink);
        ng_p50.push(or_nan(p.map(|p| p.p50)));
        ng_p99.push(or_nan(p.map(|p| p.p99)));
        ng.terminate(Duration::from_secs(5));
        say(format!(
            "forward run {run}: nginx {:.0} req/s max, e2e p50 {:.0} µs",
            ng_max[run], ng_p50[run]
        ));

        // Causeway.
        let dir = ctx.dir("forward", run, "causeway");
        sink.clear();
        let m = manifests(&dir, &bridge_yaml(&sink.url("/forward"), ctx.conns, "", ""))?;
        let mut w = Worker::start(&ctx.paths, &dir, &m, WorkerOpts::default()).await?;
        let t = Target::new(w.listen, PATH);
        let profile = crate::sut::Profile::start(w.proc.pid(), &dir, "worker-closed");
        let cpu_closed0 = w.proc.cpu_time();
        let prog = progress();
        let task = {
            let (t, p, conns, dur, seq) = (
                t.clone(),
                prog.clone(),
                ctx.conns,
                ctx.closed,
                ctx.seqs(10_000_000),
            );
            tokio::spawn(async move { closed_loop(&t, conns, dur, seq, p).await })
        };
        let (samples, depths) = sample_backlog(&task, &prog, &sink, Some(&w)).await;
        let closed = task.await?;
        if let Some(p) = profile.and_then(crate::sut::Profile::finish) {
            say(format!("profile: {}", p.display()));
        }
        // The worker refreshes its queue-depth gauge every 5 s (and has no series while
        // the queue is empty): the largest value seen during the run.
        cw_depth.push(depths.iter().copied().fold(f64::NAN, f64::max));
        let from = closed.t_start + ctx.warmup.as_nanos() as u64;
        cw_in.push(closed.throughput(ctx.warmup));
        cw_out.push(arrival_rate(&sink.arrivals(), from, closed.t_end));
        let steady: Vec<(f64, f64)> = samples
            .into_iter()
            .filter(|s| s.0 * 1e9 >= from as f64)
            .collect();
        cw_slope.push(or_nan(slope(&steady)));
        cw_drain.push(or_nan(
            wait_delivered(&closed, &sink, Duration::from_secs(120))
                .await
                .map(|d| d.as_secs_f64()),
        ));
        closed_cpu.push(cpu_per_event(
            cpu_closed0,
            w.proc.cpu_time(),
            closed.ok_count(),
        ));

        sink.clear();
        let prog = progress();
        let cpu0 = w.proc.cpu_time();
        let task = {
            let plan = OpenLoop {
                rate: ctx.forward_rate,
                duration: ctx.open,
                conns: ctx.conns,
                seq_base: ctx.seqs(10_000_000),
            };
            let (t, p) = (t.clone(), prog.clone());
            tokio::spawn(async move { open_loop(&t, plan, p).await })
        };
        let (samples, _) = sample_backlog(&task, &prog, &sink, None).await;
        let open = task.await?;
        let _ = wait_delivered(&open, &sink, Duration::from_secs(30)).await;
        let cpu1 = w.proc.cpu_time();
        cpu_us.push(cpu_per_event(cpu0, cpu1, open.ok_count()));
        open_slope.push(or_nan(slope(&samples)));
        let (p, miss) = e2e(&open, &sink);
        missing.push(miss as f64);
        cw_p50.push(or_nan(p.map(|p| p.p50)));
        cw_p99.push(or_nan(p.map(|p| p.p99)));
        let a = ack_percentiles(&open);
        ack_p50.push(or_nan(a.map(|p| p.p50)));
        ack_p99.push(or_nan(a.map(|p| p.p99)));
        w.discard();
        say(format!(
            "forward run {run}: causeway in {:.0}/s, delivered {:.0}/s, backlog slope {:.0}/s; e2e p50 {:.0} µs",
            cw_in[run], cw_out[run], cw_slope[run], cw_p50[run]
        ));
    }

    let ratios = paired_ratios(&cw_out, &ng_max);
    let mut thr = Table::new(&format!(
        "Throughput (closed loop, {} connections)",
        ctx.conns
    ));
    thr.add("nginx proxy_pass → sink", "req/s", ng_max)
        .add("causeway accepted (202, durable)", "events/s", cw_in)
        .add(
            "causeway delivered to the sink (sustained)",
            "events/s",
            cw_out.clone(),
        )
        .add(
            "causeway delivered / nginx (paired per run)",
            "ratio",
            ratios.clone(),
        )
        .add(
            "backlog growth while saturated (accepted − delivered)",
            "events/s",
            cw_slope,
        )
        .add(
            "largest `causeway_queue_depth` seen (gauge refreshed every 5 s)",
            "jobs",
            cw_depth,
        )
        .add("time to deliver the backlog after the run", "s", cw_drain)
        .add(
            "worker CPU per event (ingest + delivery, backlog included)",
            "µs",
            closed_cpu,
        );
    let mut lat = Table::new(&format!(
        "Latency at a fixed {:.0} events/s (open loop, {} connections)",
        ctx.forward_rate, ctx.conns
    ));
    lat.add("nginx: send → arrival at the sink, p50", "µs", ng_p50)
        .add("nginx: send → arrival at the sink, p99", "µs", ng_p99)
        .add("causeway: send → arrival at the sink, p50", "µs", cw_p50)
        .add("causeway: send → arrival at the sink, p99", "µs", cw_p99)
        .add("causeway: send → 202, p50", "µs", ack_p50)
        .add("causeway: send → 202, p99", "µs", ack_p99)
        .add(
            "causeway: backlog growth at this rate",
            "events/s",
            open_slope,
        )
        .add(
            "causeway: acknowledged but not at the sink after 30 s",
            "events",
            missing,
        )
        .add(
            "causeway: worker CPU per event (ingest + delivery)",
            "µs",
            cpu_us,
        );
    let ratio = Summary::of(&ratios);
    report.targets.push(TargetCheck {
        target: "Forward ≥ 50% of nginx, while durable".into(),
        measured: format!(
            "{} of nginx ({} events/s delivered)",
            fmt_pct(ratio),
            fmt_summary(Summary::of(&cw_out))
        ),
        met: ratio.map(|s| s.median >= 0.50),
    });
    report.sections.push(Section {
        title: "2. Forward".into(),
        method: format!(
            "The same events, now delivered at once (no delay) to the sink; the destination's `maxConcurrency` equals the \
             generator's {} connections, and nginx (`proxy_pass`, keep-alive upstream, one worker per core) forwards with the \
             same {} client connections. Sustained throughput is what reached the sink per second during the closed-loop run, \
             while the ingress accepted as fast as it could: a lower bound, since the ingress takes CPU from delivery. The \
             backlog (acknowledged minus delivered) is sampled every 250 ms; its slope says whether the queue was stable. \
             Latency: open loop, from the planned send to the arrival at the sink (the sink is in the generator's process, \
             same clock).",
            ctx.conns, ctx.conns
        ),
        tables: vec![thr, lat],
        notes: vec![],
    });
    Ok(())
}
