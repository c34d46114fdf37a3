//! Scenario 6, crash: SIGKILL during scenario 2 at a steady rate, restart at once on the
//! same data dir, keep sending. Every acknowledged event must reach the sink.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::forward::{PATH, bridge_yaml};
use super::{Ctx, manifests, progress, say};
use crate::load::{OpenLoop, Target, now_ns, open_loop};
use crate::report::{Report, Section, Table, TargetCheck, fmt_summary};
use crate::sink::Sink;
use crate::stats::Summary;
use crate::sut::{Worker, WorkerOpts};

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let sink = Sink::start().await?;
    let duration = if ctx.quick {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(10)
    };
    let (mut lost, mut dups, mut acked_n, mut refused) = (vec![], vec![], vec![], vec![]);
    let (mut restart_ms, mut first_ack_ms, mut catch_up_ms, mut drain_all_ms) =
        (vec![], vec![], vec![], vec![]);
    let mut notes = vec![];
    for run in 0..ctx.runs {
        sink.clear();
        let dir = ctx.dir("crash", run, "causeway");
        let m = manifests(&dir, &bridge_yaml(&sink.url("/crash"), ctx.conns, "", ""))?;
        let mut w = Worker::start(&ctx.paths, &dir, &m, WorkerOpts::default()).await?;
        let t = Target::new(w.listen, PATH);
        let plan = OpenLoop {
            rate: ctx.crash_rate,
            duration,
            conns: ctx.conns,
            seq_base: ctx.seqs(10_000_000),
        };
        let task = {
            let t = t.clone();
            tokio::spawn(async move { open_loop(&t, plan, progress()).await })
        };
        tokio::time::sleep(duration.mul_f64(0.4)).await;
        let t_kill = now_ns();
        w.proc.kill9();
        let ready = w.restart().await?;
        restart_ms.push(ready.as_secs_f64() * 1e3);
        let load = task.await?;
        let t_end_load = now_ns();
        let acked: Vec<&crate::load::Record> = load.ok().collect();
        let want: HashSet<u64> = acked.iter().map(|r| r.seq).collect();
        // Wait (bounded) until every acknowledged event arrived.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut got: HashMap<u64, Vec<u64>> = HashMap::new();
        loop {
            got.clear();
            for (seq, at) in sink.arrivals() {
                got.entry(seq).or_default().push(at);
            }
            if want.iter().all(|s| got.contains_key(s)) || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let missing = want.iter().filter(|s| !got.contains_key(s)).count();
        let duplicates: usize = got.values().map(|v| v.len() - 1).sum();
        lost.push(missing as f64);
        dups.push(duplicates as f64);
        acked_n.push(acked.len() as f64);
        refused.push((load.error_count() as u64 + load.not_sent) as f64);
        first_ack_ms.push(
            acked
                .iter()
                .filter(|r| r.sent > t_kill)
                .map(|r| r.done)
                .min()
                .map_or(f64::NAN, |d| (d - t_kill) as f64 / 1e6),
        );
        let before_kill: Vec<u64> = acked
            .iter()
            .filter(|r| r.done < t_kill)
            .map(|r| r.seq)
            .collect();
        catch_up_ms.push(
            before_kill
                .iter()
                .filter_map(|s| got.get(s).and_then(|v| v.iter().min().copied()))
                .max()
                .map_or(f64::NAN, |at| (at as f64 - t_kill as f64) / 1e6),
        );
        let last = got
            .values()
            .filter_map(|v| v.iter().min().copied())
            .max()
            .unwrap_or(t_end_load);
        drain_all_ms.push((last as f64 - t_end_load as f64) / 1e6);
        if missing == 0 {
            w.discard()
        } else {
            w.stop()
        }
        if missing > 0 {
            notes.push(format!("run {run}: {missing} acknowledged events never reached the sink (data dir kept: {})", dir.display()));
        }
        say(format!(
            "crash run {run}: acked {}, lost {missing}, duplicates {duplicates}, ready again after {:.0} ms",
            acked.len(),
            restart_ms[run]
        ));
    }
    let mut t = Table::new(&format!(
        "SIGKILL at 40% of a {:.0} s open-loop run at {:.0} events/s, restart at once",
        duration.as_secs_f64(),
        ctx.crash_rate
    ));
    t.add("acknowledged (202)", "events", acked_n)
        .add(
            "refused or cut off while down (not acknowledged)",
            "requests",
            refused,
        )
        .add(
            "**lost** (acknowledged, never delivered)",
            "events",
            lost.clone(),
        )
        .add(
            "duplicates at the sink (redelivered after the restart)",
            "deliveries",
            dups,
        )
        .add("restart: spawn to ready", "ms", restart_ms)
        .add("kill → first 202 again", "ms", first_ack_ms)
        .add(
            "last event acknowledged before the kill reached the sink, after the kill (negative: before)",
            "ms",
            catch_up_ms,
        )
        .add("last delivery, after the end of the load (negative: before)", "ms", drain_all_ms);
    let total_lost: f64 = lost.iter().sum();
    report.targets.push(TargetCheck {
        target: "Zero loss (SIGKILL under load)".into(),
        measured: format!(
            "{total_lost:.0} lost over {} runs (per run: {})",
            lost.len(),
            fmt_summary(Summary::of(&lost))
        ),
        met: (!lost.is_empty()).then_some(total_lost == 0.0),
    });
    report.sections.push(Section {
        title: "6. Crash".into(),
        method: "Scenario 2's bridge under an open-loop load; the worker is killed with SIGKILL (by PID) and started again \
                 on the same data dir and ports while the generator keeps sending (requests to the dead worker fail and \
                 are not acknowledged). Afterwards the sink is checked for every acknowledged event (waiting up to 120 s)."
            .into(),
        tables: vec![t],
        notes,
    });
    Ok(())
}
