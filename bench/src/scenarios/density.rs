//! Scenario 5, density: 1,000 bridges (`BENCH_DENSITY_BRIDGES` for another count) and 100
//! plugins in one worker. Configuration load (start to ready) and swap time, RSS, RSS per
//! idle bridge and per plugin, and RSS across `BENCH_SWAPS` swaps of every bridge.
//!
//! Swap time comes from the worker's own log: the manifest source polls every second and
//! logs a load failure at once; a broken manifest dropped in the directory gives the poll's
//! phase (the next poll is one second after the failure was logged), the real change is
//! written right after, and `configuration applied` is logged when the swap is done.
//! Swap = applied − (failure + 1 s): reading the files, rendering, compiling every bridge,
//! loading the plugins, swapping. The time until the admin API shows the new version
//! (which includes the wait for the poll) is reported too.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Ctx, say};
use crate::report::{Report, Section, Table, TargetCheck, fmt_summary};
use crate::stats::{Summary, paired_differences};
use crate::sut::{Worker, WorkerOpts};

pub const BRIDGES: usize = 1000;
pub const PLUGINS: usize = 100;

/// How many bridges the scenario loads: `BENCH_DENSITY_BRIDGES`, else [`BRIDGES`].
fn bridge_count() -> usize {
    std::env::var("BENCH_DENSITY_BRIDGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n >= 2)
        .unwrap_or(BRIDGES)
}

/// `n` bridges; every tenth one has a step on one of `plugins` plugins. `gen` changes
/// every bridge (an env value) so that a swap recompiles all of them.
pub fn bridges_yaml(n: usize, plugins: usize, generation: u32) -> String {
    let mut s = String::with_capacity(n * 300);
    for i in 0..n {
        let step = if plugins > 0 && i % 10 == 0 {
            format!("  steps:\n  - plugin: p{:03}\n", (i / 10) % plugins)
        } else {
            String::new()
        };
        s.push_str(&format!(
            "---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: b{i:04}}}\nspec:\n  filter: \"payload.amount >= {i}\"\n{step}  destinations:\n  - name: out\n    url: \"http://127.0.0.1:9/b{i:04}\"\n    body: '{{\"id\": \"$payload.id\", \"gen\": \"$env.GEN\"}}'\n  env:\n  - {{name: GEN, value: \"{generation}\"}}\n"
        ));
    }
    s
}

/// `n` plugins, all the same component file under different names.
pub fn plugins_yaml(n: usize, wasm: &Path) -> String {
    (0..n)
        .map(|i| {
            format!(
                "---\napiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: p{i:03}}}\nspec:\n  source: {{file: \"{}\"}}\n",
                wasm.display()
            )
        })
        .collect()
}

/// Seconds since midnight of the first RFC 3339 timestamp in a log line.
pub fn log_time(line: &str) -> Option<f64> {
    let clean = strip_ansi(line);
    let ts = clean
        .split_whitespace()
        .find(|w| w.len() >= 19 && w.as_bytes().get(10) == Some(&b'T'))?;
    let time = &ts[11..];
    let mut parts = time.trim_end_matches('Z').split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The times of log lines containing `needle`, in order.
fn times_of(log: &str, needle: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(log_time)
        .collect()
}

async fn wait_log(
    w: &Worker,
    needle: &str,
    count_before: usize,
    limit: Duration,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    loop {
        let times = times_of(&w.proc.log_text(), needle);
        if times.len() > count_before {
            return Ok(times[count_before]);
        }
        if t.elapsed() > limit {
            bail!(
                "no new {needle:?} in {} after {limit:?}",
                w.proc.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Swap every bridge to a new generation; `(swap s from the log, observed s via the admin API)`.
async fn swap(w: &Worker, m: &Path, count: usize, generation: u32) -> anyhow::Result<(f64, f64)> {
    const FAILED: &str = "configuration not reloaded";
    // The worker's line, not the plugin host's "plugin configuration applied".
    const APPLIED: &str = "configuration applied bridges=";
    let log = w.proc.log_text();
    let (failed_before, applied_before) =
        (times_of(&log, FAILED).len(), times_of(&log, APPLIED).len());
    let version_before = w.config_version().await;
    let broken = m.join("zz-broken.yaml");
    std::fs::write(&broken, "apiVersion: causeway.dev/v1alpha1\nkind: [\n")?;
    let t_fail = wait_log(w, FAILED, failed_before, Duration::from_secs(10)).await?;
    let wrote = Instant::now();
    std::fs::remove_file(&broken)?;
    std::fs::write(
        m.join("bridges.yaml"),
        bridges_yaml(count, PLUGINS, generation),
    )?;
    let t_applied = wait_log(w, APPLIED, applied_before, Duration::from_secs(60)).await?;
    let observed = loop {
        if w.config_version().await != version_before {
            break wrote.elapsed().as_secs_f64();
        }
        if wrote.elapsed() > Duration::from_secs(60) {
            bail!("the admin API never showed a new version");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    Ok((t_applied - t_fail - 1.0, observed))
}

fn write(
    dir: &Path,
    bridges: usize,
    plugins: usize,
    wasm: &Path,
) -> anyhow::Result<std::path::PathBuf> {
    let m = dir.join("manifests");
    std::fs::create_dir_all(&m)?;
    std::fs::write(m.join("bridges.yaml"), bridges_yaml(bridges, plugins, 0))?;
    if plugins > 0 {
        std::fs::write(m.join("plugins.yaml"), plugins_yaml(plugins, wasm))?;
    }
    Ok(m)
}

/// RSS in MiB after the worker settled for a moment.
async fn settled_rss(w: &Worker) -> f64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.proc
        .rss_kib()
        .map(|k| k as f64 / 1024.0)
        .unwrap_or(f64::NAN)
}

pub async fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let count = bridge_count();
    let wasm = ctx.paths.plugin("tagger");
    let (mut rss_one, mut rss_bridges, mut rss_full, mut rss_swapped) =
        (vec![], vec![], vec![], vec![]);
    let (mut ready_one, mut ready_bridges, mut ready_cold, mut ready_warm) =
        (vec![], vec![], vec![], vec![]);
    let (mut swap_s, mut observed_s) = (vec![], vec![]);
    let mut rss_swapped3 = vec![];
    let mut notes = vec![];
    let swaps = std::env::var("BENCH_SWAPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3u32)
        .max(2);
    for run in 0..ctx.runs {
        let dir = ctx.dir("density", run, "one");
        let mut w = Worker::start(
            &ctx.paths,
            &dir,
            &write(&dir, 1, 0, &wasm)?,
            WorkerOpts::default(),
        )
        .await?;
        ready_one.push(w.ready_after.as_secs_f64() * 1e3);
        rss_one.push(settled_rss(&w).await);
        w.discard();

        let dir = ctx.dir("density", run, "bridges");
        let mut w = Worker::start(
            &ctx.paths,
            &dir,
            &write(&dir, count, 0, &wasm)?,
            WorkerOpts::default(),
        )
        .await?;
        ready_bridges.push(w.ready_after.as_secs_f64() * 1e3);
        rss_bridges.push(settled_rss(&w).await);
        let loaded = w.config_version().await.is_some();
        w.discard();
        anyhow::ensure!(
            loaded,
            "the worker with {count} bridges has no configuration"
        );

        let dir = ctx.dir("density", run, "full");
        let m = write(&dir, count, PLUGINS, &wasm)?;
        let mut w = Worker::start(&ctx.paths, &dir, &m, WorkerOpts::default()).await?;
        ready_cold.push(w.ready_after.as_secs_f64() * 1e3);
        rss_full.push(settled_rss(&w).await);
        let (_, body) = crate::sut::http_get(w.admin, "/api/v1/config").await?;
        let cfg: serde_json::Value = serde_json::from_str(&body).context("config JSON")?;
        let n_bridges = cfg["bridges"].as_array().map_or(0, |a| a.len());
        let n_plugins = cfg["plugins"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|p| p["ready"] == true).count());
        let errors = cfg["errors"].as_array().map_or(0, |a| a.len());
        if run == 0 {
            notes.push(format!("The full configuration loaded {n_bridges} bridges and {n_plugins} ready plugins with {errors} errors."));
        }
        match swap(&w, &m, count, 100 * run as u32 + 1).await {
            Ok((s, o)) => {
                swap_s.push(s * 1e3);
                observed_s.push(o * 1e3);
            }
            Err(e) => {
                notes.push(format!("run {run}: swap not measured: {e}"));
                swap_s.push(f64::NAN);
                observed_s.push(f64::NAN);
            }
        }
        rss_swapped.push(settled_rss(&w).await);
        // Two more swaps: does RSS keep growing (a leak) or stay at its high-water mark?
        let mut more = Ok((0.0, 0.0));
        for g in 2..=swaps {
            more = swap(&w, &m, count, 100 * run as u32 + g).await;
            if more.is_err() {
                break;
            }
        }
        rss_swapped3.push(if more.is_ok() {
            settled_rss(&w).await
        } else {
            f64::NAN
        });
        w.stop();
        ready_warm.push(w.restart().await?.as_secs_f64() * 1e3);
        w.discard();
        say(format!(
            "density run {run}: ready {:.0} ms cold / {:.0} ms warm, swap {:.0} ms, RSS {:.0} MiB",
            ready_cold[run], ready_warm[run], swap_s[run], rss_full[run]
        ));
    }
    let per_bridge: Vec<f64> = paired_differences(&rss_bridges, &rss_one)
        .iter()
        .map(|d| d * 1024.0 / (count - 1) as f64)
        .collect();
    let per_plugin: Vec<f64> = paired_differences(&rss_full, &rss_bridges)
        .iter()
        .map(|d| d * 1024.0 / PLUGINS as f64)
        .collect();
    let mut t = Table::new(&format!(
        "{count} bridges (each with a filter, a body template and an env value; every tenth with a plugin step) and {PLUGINS} plugins"
    ));
    t.add("start to ready, 1 bridge", "ms", ready_one)
        .add(
            &format!("start to ready, {count} bridges"),
            "ms",
            ready_bridges,
        )
        .add(
            &format!("start to ready, {count} bridges + {PLUGINS} plugins, cold compile cache"),
            "ms",
            ready_cold,
        )
        .add(
            &format!("start to ready, {count} bridges + {PLUGINS} plugins, warm compile cache"),
            "ms",
            ready_warm.clone(),
        )
        .add(
            "**swap: every bridge changed** (from the worker's log)",
            "ms",
            swap_s.clone(),
        )
        .add(
            "swap as seen on the admin API (includes up to 1 s of file polling)",
            "ms",
            observed_s,
        )
        .add("RSS, 1 bridge", "MiB", rss_one)
        .add(&format!("RSS, {count} bridges"), "MiB", rss_bridges)
        .add(
            &format!("**RSS, {count} bridges + {PLUGINS} plugins**"),
            "MiB",
            rss_full.clone(),
        )
        .add("RSS after the swap", "MiB", rss_swapped.clone())
        .add(
            &format!("RSS after the last swap ({swaps} swaps in all; `BENCH_SWAPS` to change)"),
            "MiB",
            rss_swapped3.clone(),
        )
        .add(
            "RSS after the last swap ÷ after the first (paired per run)",
            "×",
            rss_swapped3
                .iter()
                .zip(&rss_swapped)
                .map(|(last, first)| last / first)
                .collect(),
        )
        .add("RSS per idle bridge", "KiB", per_bridge)
        .add(
            "RSS per plugin (same component, 100 names)",
            "KiB",
            per_plugin,
        );
    let load = Summary::of(&ready_warm);
    let sw = Summary::of(&swap_s);
    let rss = Summary::of(&rss_full);
    let growth = Summary::of(
        &rss_swapped3
            .iter()
            .zip(&rss_swapped)
            .map(|(last, first)| last / first)
            .collect::<Vec<_>>(),
    );
    report.targets.push(TargetCheck {
        target: format!("RSS after {swaps} full swaps within 10% of RSS after the first"),
        measured: format!("last ÷ first {}", fmt_summary(growth)),
        met: growth.map(|g| g.median <= 1.10),
    });
    if count >= 10_000 {
        let ready = Summary::of(&ready_warm);
        report.targets.push(TargetCheck {
            target: format!("{count} bridges + {PLUGINS} plugins: ready < 3 s and < 500 MiB RSS"),
            measured: format!(
                "start to ready {} ms (warm cache); {} MiB",
                fmt_summary(ready),
                fmt_summary(Summary::of(&rss_full))
            ),
            met: match (ready, Summary::of(&rss_full)) {
                (Some(r), Some(m)) => Some(r.median < 3000.0 && m.median < 500.0),
                _ => None,
            },
        });
        report.sections.push(Section {
            title: "5. Density".into(),
            method: format!(
                "As with 1,000 bridges (below), with `BENCH_DENSITY_BRIDGES={count}`. RSS per idle bridge = (RSS with {count} − RSS with 1) / {}.",
                count - 1
            ),
            tables: vec![t],
            notes,
        });
        return Ok(());
    }
    report.targets.push(TargetCheck {
        target: "1,000 bridges (+100 plugins) loaded in < 2 s".into(),
        measured: format!(
            "start to ready {} ms (warm cache); swap {} ms",
            fmt_summary(load),
            fmt_summary(sw)
        ),
        met: match (load, sw) {
            (Some(l), Some(s)) => Some(l.median < 2000.0 && s.median < 2000.0),
            _ => None,
        },
    });
    report.targets.push(TargetCheck {
        target: "1,000 bridges (+100 plugins) in < 300 MiB RSS".into(),
        measured: format!("{} MiB", fmt_summary(rss)),
        met: rss.map(|s| s.median < 300.0),
    });
    report.sections.push(Section {
        title: "5. Density".into(),
        method: "Generated manifests in one directory, `causeway up -f`. Start to ready is from spawning the process to \
                 `/readyz` answering 200 (store opened, manifests rendered, bridges compiled, plugins compiled or loaded from \
                 the compile cache). The 100 plugins are the same `tagger.wasm` under 100 names, so the cache compiles it \
                 once. RSS is `VmRSS` half a second after ready; per idle bridge = (RSS with 1,000 − RSS with 1) / 999, \
                 per plugin = (RSS with plugins − RSS without) / 100, both paired per run."
            .into(),
        tables: vec![t],
        notes,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times_are_read_from_tracing_lines() {
        let line = "\u{1b}[2m2025-11-21T14:55:00.250000Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m causeway: configuration applied bridges=1000";
        assert_eq!(log_time(line), Some(14.0 * 3600.0 + 55.0 * 60.0 + 0.25));
        assert_eq!(log_time("2025-11-21T00:00:01.5Z ERROR x"), Some(1.5));
        assert_eq!(log_time("no time here"), None);
    }

    #[test]
    fn generated_manifests_render() {
        let yaml = bridges_yaml(20, 2, 3) + &plugins_yaml(2, Path::new("/x/tagger.wasm"));
        let inv = causeway_crds::manifest::load_str(&yaml, Path::new("d.yaml")).unwrap();
        let r = causeway_crds::render(
            &inv,
            &causeway_crds::Scope::All,
            &causeway_crds::RenderContext::default(),
        );
        assert_eq!(r.config.bridges.len(), 20);
        assert_eq!(r.config.plugins.len(), 2);
    }
}
