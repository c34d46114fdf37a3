//! Causeway's benchmark harness (issue 8): an open-loop and a closed-loop load generator,
//! a sink that records arrivals, the systems under test and their baselines as child
//! processes, the scenarios, and the report that becomes BENCHMARKS.md.
//!
//! `bench run` (the orchestrator, `src/bin/bench.rs`) is what `make bench` calls;
//! `http-floor` is baseline 1. Method notes: `docs/benchmarks.md`.

pub mod event;
pub mod load;
pub mod machine;
pub mod pg;
pub mod report;
pub mod scenarios;
pub mod sink;
pub mod stats;
pub mod sut;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use report::{Report, Section};
use scenarios::{Ctx, say};
use sut::Paths;

const USAGE: &str = "usage: bench run [--only 1,2,3,4,5,6,7,8,9,11,12,13] [--out BENCHMARKS.md] [--merge] [--work DIR]
         --merge: update only the scenarios run (their sections and target rows) in --out
       bench host-calls [N] [on-demand]   (in-process plugin calls only, for profiling)
       bench notes [BENCHMARKS.md]        (refresh the report's copy of bench/notes.md)
  BENCH_QUICK=1          2 runs of 2 s instead of 5 runs of 5 s
  BENCH_RUNS, BENCH_SECS, BENCH_CONNS, BENCH_INGEST_RATE, BENCH_FORWARD_RATE, BENCH_CRASH_RATE  override
  BENCH_RETENTION_MIB, BENCH_RETENTION_RATE, BENCH_RETENTION_SECS, BENCH_LOW_RATE, BENCH_LOW_SECS  (scenarios 12, 13)
  BENCH_OPERATOR=1       also scenario 7 (starts the e2e stack: minutes)
  BENCH_NO_WASMTIME=1    scenario 3 without its `wasmtime serve` floor (no wasmtime-cli needed)
  BENCH_PG_DIR           where scenarios 8 and 9 put their PostgreSQL (default /var/tmp/causeway-bench-pg-PID)
  CAUSEWAY_CACHE         where nginx and wasmtime are (default ~/.cache/causeway)";

struct Args {
    only: Vec<u32>,
    out: PathBuf,
    merge: bool,
    work: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    if it.next().map(String::as_str) != Some("run") {
        return Err(USAGE.into());
    }
    let mut a = Args {
        only: (1..=9).chain([11, 12, 13]).collect(),
        out: PathBuf::from("BENCHMARKS.md"),
        merge: false,
        work: None,
    };
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--only" => {
                a.only = value()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .map_err(|_| format!("--only: {s:?} is not a scenario number"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--out" => a.out = PathBuf::from(value()?),
            "--merge" => a.merge = true,
            "--work" => a.work = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Paths from the environment: the repository (current directory, else the one this was
/// built from), the binaries next to this one, the cache and a scratch directory.
fn paths(work: Option<PathBuf>) -> Result<Paths, String> {
    let repo = std::env::current_dir()
        .ok()
        .filter(|d| d.join("bench/Cargo.toml").exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
        .ok_or("cannot find my own binary")?;
    let cache = std::env::var_os("CAUSEWAY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/causeway")))
        .ok_or("set CAUSEWAY_CACHE or HOME")?;
    // Under target/, on the same disk as the build: not tmpfs, so fsync costs what it costs.
    let work = work.unwrap_or_else(|| bin_dir.join("bench-work"));
    Ok(Paths {
        repo,
        bin_dir,
        cache,
        work,
    })
}

fn preflight(p: &Paths, only: &[u32]) -> Result<(), String> {
    let mut need = vec![(
        p.causeway(),
        "cargo build --release -p causeway --bin causeway",
    )];
    if only.iter().any(|s| [1, 3].contains(s)) {
        need.push((p.floor(), "cargo build --release -p causeway-bench"));
    }
    if only.contains(&2) {
        need.push((p.nginx(), "bench/setup.sh"));
    }
    if only.iter().any(|s| [3, 5].contains(s)) {
        need.push((p.plugin("tagger"), "make plugins"));
    }
    // BENCH_NO_WASMTIME=1: scenario 3 runs without its `wasmtime serve` floor (it says so).
    let no_wasmtime = std::env::var("BENCH_NO_WASMTIME").is_ok_and(|v| v == "1");
    if only.contains(&3) && !no_wasmtime {
        need.push((p.wasmtime(), "bench/setup.sh"));
    }
    if only.iter().any(|s| [8, 9].contains(s)) {
        // It installs Debian's postgresql itself when missing.
        need.push((
            p.repo.join("scripts/postgres.sh"),
            "a checkout with scripts/",
        ));
    }
    let missing: Vec<String> = need
        .iter()
        .filter(|(f, _)| !f.exists())
        .map(|(f, how)| format!("  {} (run `{how}`)", f.display()))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("missing:\n{}", missing.join("\n")))
    }
}

/// `bench host-calls [N] [on-demand]`: only the in-process plugin host calls of scenario 3,
/// for profiling (`perf record -g -- target/release/bench host-calls 20000`).
fn host_calls_cli(args: &[String]) -> ExitCode {
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let mode = if args.iter().any(|a| a == "on-demand") {
        causeway_plugins::PoolingMode::Off
    } else {
        causeway_plugins::PoolingMode::Auto
    };
    let Ok(paths) = paths(None) else {
        return ExitCode::FAILURE;
    };
    let cache = paths.work.join("host-calls-cache");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let wasm = paths.plugin("tagger");
    match rt.block_on(scenarios::pipeline::host_calls(mode, &cache, &wasm, n)) {
        Ok(r) => {
            let mut ns = r.calls_ns.clone();
            let p = stats::Percentiles::of(&mut ns);
            let mean = r.calls_ns.iter().sum::<u64>() as f64 / r.calls_ns.len().max(1) as f64;
            println!(
                "{n} calls ({}): p50 {:.1} µs, p99 {:.1} µs, mean {:.1} µs; apply {:.1} ms",
                r.allocator,
                p.map_or(f64::NAN, |p| p.p50 / 1e3),
                p.map_or(f64::NAN, |p| p.p99 / 1e3),
                mean / 1e3,
                r.apply_ms
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `bench notes [FILE]`: copy `bench/notes.md` into a written report (default
/// BENCHMARKS.md), replacing the notes it has.
fn notes_cli(args: &[String]) -> ExitCode {
    let out = PathBuf::from(args.get(1).map_or("BENCHMARKS.md", String::as_str));
    let Ok(paths) = paths(None) else {
        return ExitCode::FAILURE;
    };
    let notes = std::fs::read_to_string(paths.repo.join("bench/notes.md")).unwrap_or_default();
    let updated = std::fs::read_to_string(&out)
        .ok()
        .and_then(|r| report::replace_notes(&r, &notes));
    match updated.map(|text| std::fs::write(&out, text)) {
        Some(Ok(())) => ExitCode::SUCCESS,
        _ => {
            eprintln!("bench: {} is missing or has no notes marker", out.display());
            ExitCode::FAILURE
        }
    }
}

/// `bench run …`: see [`USAGE`].
pub fn run_cli(args: Vec<String>) -> ExitCode {
    if args.first().map(String::as_str) == Some("host-calls") {
        return host_calls_cli(&args);
    }
    if args.first().map(String::as_str) == Some("notes") {
        return notes_cli(&args);
    }
    let args = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let paths = match paths(args.work.clone()).and_then(|p| preflight(&p, &args.only).map(|_| p)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = std::fs::remove_dir_all(&paths.work);
    if let Err(e) = std::fs::create_dir_all(&paths.work) {
        eprintln!("bench: {}: {e}", paths.work.display());
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = rt.block_on(run_all(Ctx::new(paths.clone(), quick), &args.only));
    let text = if args.merge {
        let old = std::fs::read_to_string(&args.out).unwrap_or_default();
        match report::merge(&old, &report) {
            Some(t) => t,
            None => {
                let fallback = args.out.with_extension("partial.md");
                eprintln!(
                    "bench: {} has no notes marker or Targets table to merge into; writing {}",
                    args.out.display(),
                    fallback.display()
                );
                let _ = std::fs::write(&fallback, report.markdown());
                return ExitCode::FAILURE;
            }
        }
    } else {
        report.markdown()
    };
    if let Err(e) = std::fs::write(&args.out, &text) {
        eprintln!("bench: {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("\nTargets:");
    for t in &report.targets {
        let mark = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        eprintln!("  {:<12} {} — {}", mark, t.target, t.measured);
    }
    eprintln!(
        "bench: wrote {} ({:.0} s); logs and data dirs in {}",
        args.out.display(),
        report.elapsed_secs,
        paths.work.display()
    );
    ExitCode::SUCCESS
}

async fn run_all(ctx: Ctx, only: &[u32]) -> Report {
    let started = Instant::now();
    let mut report = Report {
        machine: machine::Machine::describe(&ctx.paths),
        started: utc_now(),
        quick: ctx.quick,
        runs: ctx.runs,
        ..Report::default()
    };
    report.settings = vec![
        (
            "runs × length".into(),
            format!(
                "{} × {:.0} s (closed and open loop each)",
                ctx.runs,
                ctx.closed.as_secs_f64()
            ),
        ),
        ("connections".into(), ctx.conns.to_string()),
        (
            "fixed rates".into(),
            format!(
                "ingest {:.0}/s, forward {:.0}/s, crash {:.0}/s",
                ctx.ingest_rate, ctx.forward_rate, ctx.crash_rate
            ),
        ),
        (
            "event".into(),
            format!("{} bytes of JSON", event::EVENT_BYTES),
        ),
    ];
    say(format!(
        "{} run(s) per scenario, scenarios {only:?}; scratch {}",
        ctx.runs,
        ctx.paths.work.display()
    ));
    for &s in only {
        let t = Instant::now();
        let result = match s {
            1 => scenarios::ingest::run(&ctx, &mut report).await,
            2 => scenarios::forward::run(&ctx, &mut report).await,
            3 | 4 => {
                if s == 4 && only.contains(&3) {
                    continue; // measured together with 3
                }
                scenarios::pipeline::run(&ctx, &mut report).await
            }
            5 => scenarios::density::run(&ctx, &mut report).await,
            6 => scenarios::crash::run(&ctx, &mut report).await,
            7 => scenarios::operator::run(&ctx, &mut report),
            8 => scenarios::postgres::ingest(&ctx, &mut report).await,
            9 => scenarios::postgres::forward(&ctx, &mut report).await,
            11 => scenarios::streams::run(&ctx, &mut report).await,
            12 => scenarios::retention::run(&ctx, &mut report).await,
            13 => scenarios::lowrate::run(&ctx, &mut report).await,
            _ => Err(anyhow::anyhow!("no scenario {s}")),
        };
        match result {
            Ok(()) => say(format!(
                "scenario {s} done in {:.0} s",
                t.elapsed().as_secs_f64()
            )),
            Err(e) => {
                say(format!("scenario {s} failed: {e:#}"));
                report.sections.push(Section {
                    title: format!("Scenario {s}: failed"),
                    method: format!("```\n{e:#}\n```"),
                    ..Section::default()
                });
            }
        }
    }
    report.notes =
        std::fs::read_to_string(ctx.paths.repo.join("bench/notes.md")).unwrap_or_default();
    report.machine.load_after = machine::loadavg();
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report
}
