//! Scenarios 8 and 9 (issue 14): ingest and forward on the PostgreSQL store, with one
//! worker and with three workers on one database (same manifests, different ports, the
//! load spread over them), next to the embedded store in the same run. Per event, what
//! the database did (statements, commits, round trips, WAL), and where the CPU went.
//!
//! One throwaway PostgreSQL per scenario (`scripts/postgres.sh`), on the same machine and
//! disk, with its defaults (fsync and synchronous_commit on). Each system in each run gets
//! a schema of its own (`--postgres-schema`), dropped afterwards. The workers reach the
//! server through [`crate::pg::Proxy`], which counts round trips; it is in the path of
//! every PostgreSQL run, 1 or 3 workers alike.

use std::collections::HashSet;
use std::time::Duration;

use super::forward::arrival_rate;
use super::{Ctx, manifests, or_nan, progress, say, wait_delivered};
use crate::load::{LoadResult, Target, closed_loop};
use crate::pg::{Counters, Db, Proxy, Server, machine_cpu, own_cpu_time, url_via, write_top};
use crate::report::{Report, Section, Table, TargetCheck, fmt_num, fmt_pct, fmt_summary};
use crate::sink::Sink;
use crate::stats::{Summary, paired_ratios};
use crate::sut::{Worker, WorkerOpts};

/// Workers in the multi-worker configuration.
pub const MANY: usize = 3;

/// `conns` connections spread over `targets` (as evenly as they divide), closed loop,
/// all at once; one result with every request.
pub async fn closed_loop_many(
    targets: &[Target],
    conns: usize,
    duration: Duration,
    seq_base: u64,
    progress: std::sync::Arc<crate::load::Progress>,
) -> LoadResult {
    let n = targets.len().max(1);
    let tasks: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let c = (conns / n + usize::from(i < conns % n)).max(1);
            let (t, p) = (t.clone(), progress.clone());
            let seq = seq_base + i as u64 * 10_000_000;
            tokio::spawn(async move { closed_loop(&t, c, duration, seq, p).await })
        })
        .collect();
    let mut all = LoadResult {
        t_start: u64::MAX,
        ..LoadResult::default()
    };
    for t in tasks {
        if let Ok(r) = t.await {
            all.t_start = all.t_start.min(r.t_start);
            all.t_end = all.t_end.max(r.t_end);
            all.records.extend(r.records);
        }
    }
    if all.t_start == u64::MAX {
        all.t_start = 0;
    }
    all
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Ingest,
    Forward,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ingest => "pg-ingest",
            Kind::Forward => "pg-forward",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Kind::Ingest => super::ingest::PATH,
            Kind::Forward => super::forward::PATH,
        }
    }
}

/// The database, our connection to it and the counting proxy in front of it.
struct Pg {
    server: Server,
    db: Db,
    proxy: Proxy,
    /// The URL the workers get: through the proxy.
    worker_url: String,
    version: String,
}

async fn start_pg(ctx: &Ctx, report: &mut Report) -> anyhow::Result<Pg> {
    let server = Server::start(&ctx.paths)?;
    let db = Db::connect(&server.url).await?;
    let proxy = Proxy::start(server.addr).await?;
    let worker_url = url_via(&server.url, proxy.addr)
        .ok_or_else(|| anyhow::anyhow!("scripts/postgres.sh printed no URL"))?;
    let version = db.version().await;
    if !report.settings.iter().any(|(k, _)| k == "PostgreSQL") {
        report.settings.push((
            "PostgreSQL".into(),
            format!(
                "{version} (scripts/postgres.sh: defaults, fsync and synchronous_commit on), same machine and disk; \
                 workers with the default pool of 16 connections"
            ),
        ));
    }
    say(format!(
        "postgres {version} on {} (workers through the counting proxy on {})",
        server.addr, proxy.addr
    ));
    Ok(Pg {
        server,
        db,
        proxy,
        worker_url,
        version,
    })
}

/// One system in one run.
#[derive(Clone, Debug, Default)]
struct One {
    /// 202s per second (closed loop, after the warm-up).
    accepted: f64,
    /// Arrivals at the sink per second over the same window (forward).
    delivered: f64,
    /// After the load: until every acknowledged event reached the sink (forward).
    drain_s: f64,
    duplicates: f64,
    /// Acknowledged events (the denominator of every "per event" figure).
    events: usize,
    /// CPU per event, µs: the workers, the database server, this process.
    worker_us: f64,
    pg_us: f64,
    bench_us: f64,
    /// Shares of the machine's CPU during the measurement (0..1).
    share_workers: f64,
    share_pg: f64,
    share_bench: f64,
    share_other: f64,
    share_idle: f64,
    round_trips: f64,
    db: Option<Counters>,
}

struct Cpu {
    workers: Option<Duration>,
    pg: Option<Duration>,
    bench: Option<Duration>,
    machine: Option<(Duration, Duration)>,
}

impl Cpu {
    fn now(workers: &[Worker], pg: Option<&Server>) -> Cpu {
        let mut sum = Some(Duration::ZERO);
        for w in workers {
            sum = sum.zip(w.proc.cpu_time()).map(|(a, b)| a + b);
        }
        Cpu {
            workers: sum,
            pg: pg.and_then(Server::cpu_time),
            bench: own_cpu_time(),
            machine: machine_cpu(),
        }
    }
}

fn delta(a: Option<Duration>, b: Option<Duration>) -> Option<f64> {
    Some(b?.checked_sub(a?)?.as_secs_f64())
}

async fn run_system(
    ctx: &Ctx,
    kind: Kind,
    run: usize,
    sink: Option<&Sink>,
    pg: Option<(&Pg, usize)>,
) -> anyhow::Result<One> {
    let what = match pg {
        None => "embedded".to_string(),
        Some((_, n)) => format!("postgres-{n}w"),
    };
    let dir = ctx.dir(kind.name(), run, &what);
    let yaml = match (kind, sink) {
        (Kind::Forward, Some(s)) => {
            super::forward::bridge_yaml(&s.url("/forward"), ctx.conns, "", "")
        }
        _ => super::ingest::bridge_yaml(),
    };
    let m = manifests(&dir, &yaml)?;
    let schema = format!("bench_{}_r{run}_{what}", kind.name()).replace('-', "_");
    let n = pg.map_or(1, |(_, n)| n);
    let mut workers = Vec::new();
    for i in 0..n {
        let mut opts = WorkerOpts::default();
        if let Some((pg, _)) = pg {
            opts.args = vec![
                "--postgres".into(),
                pg.worker_url.clone(),
                "--postgres-schema".into(),
                schema.clone(),
            ];
        }
        workers.push(Worker::start(&ctx.paths, &dir.join(format!("w{i}")), &m, opts).await?);
    }
    let lsn = match pg {
        Some((pg, _)) => {
            let lsn = pg.db.reset().await?;
            pg.proxy.reset();
            Some(lsn)
        }
        None => None,
    };
    if let Some(s) = sink {
        s.clear();
    }
    let server = pg.map(|(p, _)| &p.server);
    let cpu0 = Cpu::now(&workers, server);
    let targets: Vec<Target> = workers
        .iter()
        .map(|w| Target::new(w.listen, kind.path()))
        .collect();
    let closed = closed_loop_many(
        &targets,
        ctx.conns,
        ctx.closed,
        ctx.seqs(10_000_000 * n as u64),
        progress(),
    )
    .await;
    let mut one = One {
        accepted: closed.throughput(ctx.warmup),
        events: closed.ok_count(),
        delivered: f64::NAN,
        drain_s: f64::NAN,
        duplicates: f64::NAN,
        ..One::default()
    };
    if let Some(sink) = sink {
        let from = closed.t_start + ctx.warmup.as_nanos() as u64;
        one.delivered = arrival_rate(&sink.arrivals(), from, closed.t_end);
        one.drain_s = or_nan(
            wait_delivered(&closed, sink, Duration::from_secs(120))
                .await
                .map(|d| d.as_secs_f64()),
        );
        let arrivals = sink.arrivals();
        let unique: HashSet<u64> = arrivals.iter().map(|a| a.0).collect();
        one.duplicates = (arrivals.len() - unique.len()) as f64;
    }
    let cpu1 = Cpu::now(&workers, server);
    let trips = pg.map(|(p, _)| p.proxy.round_trips());
    for w in &mut workers {
        w.discard();
    }
    let per_event = |s: Option<f64>| {
        s.filter(|_| one.events > 0)
            .map_or(f64::NAN, |s| s * 1e6 / one.events as f64)
    };
    let (workers_s, pg_s, bench_s) = (
        delta(cpu0.workers, cpu1.workers),
        delta(cpu0.pg, cpu1.pg),
        delta(cpu0.bench, cpu1.bench),
    );
    one.worker_us = per_event(workers_s);
    one.pg_us = if pg.is_some() {
        per_event(pg_s)
    } else {
        f64::NAN
    };
    one.bench_us = per_event(bench_s);
    if let (Some((b0, t0)), Some((b1, t1))) = (cpu0.machine, cpu1.machine) {
        let total = (t1 - t0).as_secs_f64();
        let busy = (b1 - b0).as_secs_f64();
        if total > 0.0 {
            let (w, p, b) = (
                workers_s.unwrap_or(0.0),
                if pg.is_some() {
                    pg_s.unwrap_or(0.0)
                } else {
                    0.0
                },
                bench_s.unwrap_or(0.0),
            );
            one.share_workers = w / total;
            one.share_pg = p / total;
            one.share_bench = b / total;
            one.share_other = ((busy - w - p - b) / total).max(0.0);
            one.share_idle = 1.0 - busy / total;
        }
    }
    if let (Some((pg, _)), Some(lsn)) = (pg, lsn) {
        // Backends report their counters as they exit (the workers just stopped).
        tokio::time::sleep(Duration::from_millis(700)).await;
        let c = pg.db.counters(&lsn).await?;
        write_top(&dir, &c, one.events);
        one.round_trips = trips.unwrap_or(0) as f64;
        one.db = Some(c);
        pg.db.drop_schema(&schema).await?;
    }
    let dbtext = one.db.as_ref().map_or(String::new(), |c| {
        let e = one.events.max(1) as f64;
        format!(
            "; per event {:.2} statements, {:.2} round trips, {:.3} commits, {:.0} WAL bytes",
            c.statements / e,
            one.round_trips / e,
            c.commits / e,
            c.wal_bytes / e
        )
    });
    say(format!(
        "{} run {run}: {what}: {:.0} accepted/s{}{}; CPU/event µs: worker {:.0}, postgres {:.0}",
        kind.name(),
        one.accepted,
        if kind == Kind::Forward {
            format!(", {:.0} delivered/s", one.delivered)
        } else {
            String::new()
        },
        dbtext,
        one.worker_us,
        one.pg_us
    ));
    Ok(one)
}

/// Every system of one run: embedded, then PostgreSQL with 1 worker, then with [`MANY`].
#[derive(Default)]
struct Runs {
    embedded: Vec<One>,
    one: Vec<One>,
    many: Vec<One>,
}

async fn measure(ctx: &Ctx, kind: Kind, pg: &Pg, sink: Option<&Sink>) -> anyhow::Result<Runs> {
    let mut r = Runs::default();
    for run in 0..ctx.runs {
        r.embedded
            .push(run_system(ctx, kind, run, sink, None).await?);
        r.one
            .push(run_system(ctx, kind, run, sink, Some((pg, 1))).await?);
        r.many
            .push(run_system(ctx, kind, run, sink, Some((pg, MANY))).await?);
    }
    Ok(r)
}

fn col(v: &[One], f: impl Fn(&One) -> f64) -> Vec<f64> {
    v.iter().map(f).collect()
}

fn per_event(v: &[One], f: impl Fn(&Counters) -> f64) -> Vec<f64> {
    v.iter()
        .map(|o| match &o.db {
            Some(c) if o.events > 0 => f(c) / o.events as f64,
            _ => f64::NAN,
        })
        .collect()
}

fn median(v: &[f64]) -> f64 {
    Summary::of(v).map_or(f64::NAN, |s| s.median)
}

/// The per-event database table, for 1 and [`MANY`] workers.
fn database_table(r: &Runs) -> Table {
    let mut t = Table::new("Per event, from the database (PostgreSQL runs)");
    for (label, v) in [("1 worker", &r.one), ("3 workers", &r.many)] {
        t.add(
            &format!("{label}: SQL statements (`pg_stat_statements` calls, BEGIN/COMMIT included)"),
            "per event",
            per_event(v, |c| c.statements),
        )
        .add(
            &format!("{label}: of which BEGIN/COMMIT/ROLLBACK"),
            "per event",
            per_event(v, |c| c.tx_control),
        )
        .add(
            &format!("{label}: transactions committed (`xact_commit`)"),
            "per event",
            per_event(v, |c| c.commits),
        )
        .add(
            &format!("{label}: round trips (client flights counted by the proxy)"),
            "per event",
            col(v, |o| {
                if o.events > 0 && o.db.is_some() {
                    o.round_trips / o.events as f64
                } else {
                    f64::NAN
                }
            }),
        )
        .add(
            &format!("{label}: WAL written (`pg_current_wal_lsn` delta)"),
            "bytes",
            per_event(v, |c| c.wal_bytes),
        )
        .add(
            &format!("{label}: WAL flushes (`pg_stat_wal.wal_sync`)"),
            "per 1,000 events",
            per_event(v, |c| c.wal_syncs * 1000.0),
        );
    }
    t
}

fn cpu_table(r: &Runs) -> Table {
    let mut t = Table::new("CPU per event, and who used the machine during the PostgreSQL runs");
    t.add(
        "embedded: worker CPU",
        "µs",
        col(&r.embedded, |o| o.worker_us),
    );
    for (label, v) in [
        ("postgres, 1 worker", &r.one),
        ("postgres, 3 workers", &r.many),
    ] {
        t.add(
            &format!("{label}: worker CPU (sum)"),
            "µs",
            col(v, |o| o.worker_us),
        )
        .add(
            &format!("{label}: PostgreSQL CPU (every server process)"),
            "µs",
            col(v, |o| o.pg_us),
        )
        .add(
            &format!("{label}: generator + sink + proxy CPU"),
            "µs",
            col(v, |o| o.bench_us),
        )
        .add(
            &format!("{label}: machine share PostgreSQL"),
            "% of all cores",
            col(v, |o| o.share_pg * 100.0),
        )
        .add(
            &format!("{label}: machine share workers"),
            "% of all cores",
            col(v, |o| o.share_workers * 100.0),
        )
        .add(
            &format!("{label}: machine share generator + sink + proxy"),
            "% of all cores",
            col(v, |o| o.share_bench * 100.0),
        )
        .add(
            &format!("{label}: machine share other processes"),
            "% of all cores",
            col(v, |o| o.share_other * 100.0),
        )
        .add(
            &format!("{label}: idle"),
            "% of all cores",
            col(v, |o| o.share_idle * 100.0),
        );
    }
    t
}

/// A sentence on what bounds the runs, from the medians of the CPU split.
fn bound_note(r: &Runs) -> String {
    let m = |v: &[One], f: fn(&One) -> f64| median(&col(v, f));
    let (pg, w) = (m(&r.one, |o| o.pg_us), m(&r.one, |o| o.worker_us));
    format!(
        "What bounds it (CPU from `/proc`, medians): with 1 worker the machine was {}% idle; PostgreSQL used {}% of \
         all cores and the worker {}% (per event {} µs in PostgreSQL against {} µs in the worker, {}% of the pair's CPU \
         in the database), the generator, sink and proxy {}%, other processes {}%. With 3 workers: idle {}%, \
         PostgreSQL {} µs and the workers {} µs per event.",
        fmt_num(m(&r.one, |o| o.share_idle * 100.0)),
        fmt_num(m(&r.one, |o| o.share_pg * 100.0)),
        fmt_num(m(&r.one, |o| o.share_workers * 100.0)),
        fmt_num(pg),
        fmt_num(w),
        fmt_num(100.0 * pg / (pg + w)),
        fmt_num(m(&r.one, |o| o.share_bench * 100.0)),
        fmt_num(m(&r.one, |o| o.share_other * 100.0)),
        fmt_num(m(&r.many, |o| o.share_idle * 100.0)),
        fmt_num(m(&r.many, |o| o.pg_us)),
        fmt_num(m(&r.many, |o| o.worker_us)),
    )
}

fn method(ctx: &Ctx, pg: &Pg, what: &str) -> String {
    format!(
        "{what} PostgreSQL {} from `scripts/postgres.sh` on the same machine and disk, its defaults (fsync and \
         synchronous_commit on); the workers keep their default pool (16 connections). Closed loop, {} connections for {:.0} s (the first {:.1} s not counted), spread evenly over the workers. \
         Per run, back to back: the embedded store (1 worker), then PostgreSQL with 1 worker, then {MANY} workers \
         (`causeway up --postgres … --postgres-schema S`, the same manifests, different ports, one schema). Before each \
         PostgreSQL measurement: `CHECKPOINT`, `pg_stat_statements_reset()`, `pg_stat_reset_shared('wal')`, \
         `pg_stat_reset()`; the counters are read after the workers stopped (backends report commits and WAL as they \
         exit), so they include everything the workers did in the window (claims, polls, lease renewals, NOTIFY). \
         Per-event figures divide by the events acknowledged. Round trips are counted by a loopback proxy between the \
         workers and PostgreSQL: each time a connection's client sends after the server last spoke is one round trip \
         (statements pipelined in one flight count once). The proxy is in the path of every PostgreSQL run.",
        pg.version,
        ctx.conns,
        ctx.closed.as_secs_f64(),
        ctx.warmup.as_secs_f64()
    )
}

/// Scenario 8: ingest (durable 202s) on PostgreSQL, 1 and 3 workers, against embedded.
pub async fn ingest(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let pg = start_pg(ctx, report).await?;
    let r = measure(ctx, Kind::Ingest, &pg, None).await?;
    let (emb, one, many) = (
        col(&r.embedded, |o| o.accepted),
        col(&r.one, |o| o.accepted),
        col(&r.many, |o| o.accepted),
    );
    let mut thr = Table::new(&format!(
        "Ingest throughput (closed loop, {} connections)",
        ctx.conns
    ));
    thr.add("embedded store, 1 worker", "202/s", emb.clone())
        .add("PostgreSQL, 1 worker", "202/s", one.clone())
        .add(
            &format!("PostgreSQL, {MANY} workers (sum)"),
            "202/s",
            many.clone(),
        )
        .add(
            "PostgreSQL 1 worker / embedded (paired per run)",
            "ratio",
            paired_ratios(&one, &emb),
        )
        .add(
            &format!("PostgreSQL {MANY} workers / 1 worker (paired per run)"),
            "ratio",
            paired_ratios(&many, &one),
        );
    report.sections.push(Section {
        title: "8. Ingest on PostgreSQL (issue 14)".into(),
        method: method(
            ctx,
            &pg,
            "`POST` of 1 KiB JSON events to the bridge of scenario 1 (one destination delayed by 24 h: each event is \
             stored with its delivery job, nothing is sent); the 202 comes after the commit.",
        ),
        tables: vec![thr, database_table(&r), cpu_table(&r)],
        notes: vec![bound_note(&r)],
    });
    drop(pg);
    Ok(())
}

/// Scenario 9: durable forward on PostgreSQL, 1 and 3 workers, against embedded; the
/// targets of issue 14.
pub async fn forward(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let pg = start_pg(ctx, report).await?;
    let sink = Sink::start().await?;
    let r = measure(ctx, Kind::Forward, &pg, Some(&sink)).await?;
    let (emb, one, many) = (
        col(&r.embedded, |o| o.delivered),
        col(&r.one, |o| o.delivered),
        col(&r.many, |o| o.delivered),
    );
    let scale = paired_ratios(&many, &one);
    let mut thr = Table::new(&format!(
        "Durable forward (closed loop, {} connections; each worker delivers with up to {} attempts in flight)",
        ctx.conns, ctx.conns
    ));
    thr.add(
        "embedded store, 1 worker: delivered to the sink",
        "events/s",
        emb.clone(),
    )
    .add("PostgreSQL, 1 worker: delivered", "events/s", one.clone())
    .add(
        &format!("PostgreSQL, {MANY} workers: delivered (sum)"),
        "events/s",
        many.clone(),
    )
    .add(
        "PostgreSQL 1 worker / embedded (paired per run)",
        "ratio",
        paired_ratios(&one, &emb),
    )
    .add(
        &format!("PostgreSQL {MANY} workers / 1 worker (paired per run)"),
        "ratio",
        scale.clone(),
    )
    .add(
        "embedded: accepted (202)",
        "events/s",
        col(&r.embedded, |o| o.accepted),
    )
    .add(
        "PostgreSQL, 1 worker: accepted",
        "events/s",
        col(&r.one, |o| o.accepted),
    )
    .add(
        &format!("PostgreSQL, {MANY} workers: accepted"),
        "events/s",
        col(&r.many, |o| o.accepted),
    )
    .add(
        "embedded: time to deliver the backlog after the run",
        "s",
        col(&r.embedded, |o| o.drain_s),
    )
    .add(
        "PostgreSQL, 1 worker: time to deliver the backlog",
        "s",
        col(&r.one, |o| o.drain_s),
    )
    .add(
        &format!("PostgreSQL, {MANY} workers: time to deliver the backlog"),
        "s",
        col(&r.many, |o| o.drain_s),
    )
    .add(
        &format!("PostgreSQL, {MANY} workers: duplicate deliveries"),
        "events",
        col(&r.many, |o| o.duplicates),
    );

    let rt = |v: &[One]| {
        col(v, |o| {
            if o.events > 0 && o.db.is_some() {
                o.round_trips / o.events as f64
            } else {
                f64::NAN
            }
        })
    };
    let (rt1, rt3) = (rt(&r.one), rt(&r.many));
    let one_s = Summary::of(&one);
    report.targets.push(TargetCheck {
        target: "Durable forward on PostgreSQL ≥ 2,000 events/s with 1 worker".into(),
        measured: format!(
            "{} events/s delivered (embedded in the same runs: {})",
            fmt_summary(one_s),
            fmt_summary(Summary::of(&emb))
        ),
        met: one_s.map(|s| s.median >= 2000.0),
    });
    let rt_s = Summary::of(&rt1);
    report.targets.push(TargetCheck {
        target: "≤ 3 round trips per event amortised (PostgreSQL, forward)".into(),
        measured: format!(
            "{} with 1 worker, {} with {MANY} (client flights counted by a proxy; ingest, claim, attempt record, polls)",
            fmt_summary(rt_s),
            fmt_summary(Summary::of(&rt3))
        ),
        met: rt_s.map(|s| s.median <= 3.0),
    });
    let scale_s = Summary::of(&scale);
    report.targets.push(TargetCheck {
        target: format!("No slower per event with {MANY} workers than with 1 (PostgreSQL forward)"),
        measured: format!(
            "{MANY} workers deliver {} of 1 worker's rate ({} against {} events/s)",
            fmt_pct(scale_s),
            fmt_summary(Summary::of(&many)),
            fmt_summary(one_s)
        ),
        met: scale_s.map(|s| s.median >= 1.0),
    });
    report.sections.push(Section {
        title: "9. Durable forward on PostgreSQL (issue 14)".into(),
        method: method(
            ctx,
            &pg,
            "`POST` of 1 KiB JSON events to the bridge of scenario 2 (one destination, the loopback sink, delivered at \
             once); delivered = arrivals at the sink per second during the loop, while the same machine also ingests. \
             After the loop every acknowledged event must reach the sink (the drain time), and the counters include \
             the drain.",
        ),
        tables: vec![thr, database_table(&r), cpu_table(&r)],
        notes: vec![bound_note(&r)],
    });
    drop(sink);
    drop(pg);
    Ok(())
}
