//! Scenario 7, operator scale: `bench/operator-scale.sh` drives the e2e stack (a real
//! kube-apiserver with etcd and kube-controller-manager, the real node, the operator
//! installed by Helm); this turns its `key=value` lines into the report. It runs only
//! with `BENCH_OPERATOR=1`: the stack takes minutes to start and a lot of the machine.

use std::collections::BTreeMap;
use std::process::Command;

use super::{Ctx, say};
use crate::report::{Report, Section, Table, TargetCheck, fmt_summary};
use crate::stats::Summary;

const TARGET: &str = "Operator: N Bridges applied at once → all Ready (time, API requests, RSS); RSS flat across runs";

pub fn enabled() -> bool {
    std::env::var("BENCH_OPERATOR").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The script's lines, one map per run: a run prints its figures, and later (after its
/// namespace is gone) the operator's RSS then, on a second line with the same `run=`.
pub fn merge_runs(stdout: &str) -> Vec<BTreeMap<String, String>> {
    let mut runs: BTreeMap<u64, BTreeMap<String, String>> = BTreeMap::new();
    for line in stdout.lines().filter(|l| l.starts_with("run=")) {
        let m = parse_line(line);
        let Some(run) = m.get("run").and_then(|r| r.parse().ok()) else {
            continue;
        };
        runs.entry(run).or_default().extend(m);
    }
    runs.into_values().collect()
}

/// `key=value key=value …` → map.
pub fn parse_line(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    if !enabled() {
        todo(
            report,
            "Not run by default: it starts the whole e2e stack (etcd, kube-apiserver, kube-controller-manager, the node, the operator through Helm), which takes minutes and most of a 2-core machine. `BENCH_OPERATOR=1 make bench` runs it.",
        );
        return Ok(());
    }
    // As many runs as the other scenarios (5 by default): each figure is a median.
    let runs = if ctx.quick { 1 } else { ctx.runs.max(1) };
    say(format!(
        "operator scale: {runs} run(s) with bench/operator-scale.sh"
    ));
    let out = Command::new(ctx.paths.repo.join("bench/operator-scale.sh"))
        .arg(runs.to_string())
        .env("BENCH_E2E_DIR", ctx.paths.work.join("e2e"))
        .current_dir(&ctx.paths.repo)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let rows = merge_runs(&String::from_utf8_lossy(&out.stdout));
    anyhow::ensure!(
        !rows.is_empty(),
        "bench/operator-scale.sh produced no figures (exit {})",
        out.status
    );
    let col = |k: &str| -> Vec<f64> {
        rows.iter()
            .map(|r| r.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN))
            .collect()
    };
    let n = rows[0].get("bridges").cloned().unwrap_or_default();
    let bridges: f64 = n.parse().unwrap_or(f64::NAN);
    let per_bridge = |v: &[f64]| -> Vec<f64> { v.iter().map(|x| x / bridges).collect() };
    let all_ready = rows.iter().all(|r| r.get("ready") == r.get("bridges"));
    let ready_s = col("ready_s");
    let mut t = Table::new(&format!(
        "{n} Bridges in one `kubectl apply --server-side`, one namespace, default pool"
    ));
    t.add("apply (kubectl returns)", "s", col("apply_s"))
        .add("**apply → all Ready**", "s", ready_s.clone())
        .add(
            "API requests meanwhile, all clients (`apiserver_request_total`)",
            "requests",
            col("requests"),
        )
        .add(
            "… of which `causeway.dev` resources",
            "requests",
            col("causeway_requests"),
        )
        .add(
            "… of which the benchmark's own (applies, polls)",
            "requests",
            col("own_requests"),
        )
        .add("operator RSS before", "MiB", col("operator_rss_before_mib"))
        .add(
            "operator RSS, peak seen (polled every second)",
            "MiB",
            col("operator_rss_peak_mib"),
        )
        .add("operator RSS after", "MiB", col("operator_rss_after_mib"))
        .add(
            "operator RSS after the run's namespace is gone",
            "MiB",
            col("operator_rss_deleted_mib"),
        )
        .add(
            "pool renders (config rendered and applied)",
            "renders",
            col("renders"),
        )
        .add(
            "Bridge status writes per Bridge",
            "writes",
            per_bridge(&col("bridge_status_writes")),
        )
        .add(
            "`causeway.dev` requests per Bridge",
            "requests",
            per_bridge(&col("causeway_requests")),
        );
    // Operator RSS once each run's namespace is gone, run by run: flat means the operator
    // keeps nothing of a namespace it no longer serves.
    let deleted = col("operator_rss_deleted_mib");
    let rss_by_run = deleted
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    let ready = Summary::of(&ready_s);
    report.targets.push(TargetCheck {
        target: TARGET.into(),
        measured: format!(
            "all Ready after {} s; {} MiB operator RSS at peak",
            fmt_summary(ready),
            fmt_summary(Summary::of(&col("operator_rss_peak_mib")))
        ),
        // The issue sets no target figure for this scenario: only that it completes.
        met: Some(all_ready),
    });
    report.sections.push(Section {
        title: "7. Operator scale".into(),
        method: format!(
            "`bench/operator-scale.sh` on the e2e stack (docs/e2e.md) in its own `E2E_DIR`: a real kube-apiserver 1.34 \
             with etcd and kube-controller-manager, the operator installed by Helm, worker pods on the e2e stack's real \
             node (debug builds, as the e2e suite runs them). Each run creates a namespace, applies {n} Bridges in one \
             server-side apply, and polls every second until every Bridge has `Ready=True` (the operator rendered the \
             pool's config, a worker pod runs it and reported it); then deletes the namespace, waits until it is gone \
             and reads the operator's RSS again before the next run. Renders and status writes are the operator's own \
             counters. Requests are the apiserver's own counter, before \
             and after, for all clients (operator, controller manager, kubelet, the benchmark). {runs} run(s)."
        ),
        tables: vec![t],
        notes: {
            let mut notes = vec![format!(
                "Operator RSS after each run's namespace was deleted, runs 1..{}: {rss_by_run} MiB.",
                deleted.len()
            )];
            if !all_ready {
                notes.push("Some runs timed out before every Bridge was Ready.".into());
            }
            notes
        },
    });
    Ok(())
}

pub fn todo(report: &mut Report, why: &str) {
    report.targets.push(TargetCheck {
        target: TARGET.into(),
        measured: "TODO, see scenario 7".into(),
        met: None,
    });
    report.sections.push(Section {
        title: "7. Operator scale — TODO".into(),
        method: format!(
            "**Not measured in this run.** {why}\n\n\
             Method: `bench/operator-scale.sh` brings up the e2e stack in its own `E2E_DIR`, reads \
             `apiserver_request_total` from the apiserver's `/metrics`, applies 1,000 Bridges in one server-side apply, \
             polls until every Bridge has `Ready=True`, reads the counter again and the operator's `VmRSS`."
        ),
        tables: vec![],
        notes: vec![],
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_second_line_joins_its_first() {
        let rows = merge_runs(
            "run=0 bridges=10 ready_s=1.5\nrun=0 operator_rss_deleted_mib=40.0\nnoise\nrun=1 bridges=10 ready_s=2\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["ready_s"], "1.5");
        assert_eq!(rows[0]["operator_rss_deleted_mib"], "40.0");
        assert!(!rows[1].contains_key("operator_rss_deleted_mib"));
    }

    #[test]
    fn script_lines_parse() {
        let m = parse_line("run=0 bridges=1000 ready=1000 ready_s=12.50 operator_rss_peak_mib=nan");
        assert_eq!(m["ready_s"], "12.50");
        assert_eq!(m["bridges"], "1000");
        assert!(m["operator_rss_peak_mib"].parse::<f64>().unwrap().is_nan());
    }
}
