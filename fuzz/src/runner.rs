//! Runs targets for a duration or a number of executions, one thread per target, catching
//! panics and saving the inputs that caused them.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Rng, Target, all_targets};

/// An execution slower than this is reported (and saved) as slow.
pub const SLOW: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Run each target this long (all targets at once, one thread each).
    pub seconds: Option<f64>,
    /// Or this many executions per target.
    pub max_execs: Option<u64>,
    /// Target names; empty means all.
    pub targets: Vec<String>,
    pub seed: u64,
    /// Where crashing inputs go; None keeps them in memory only.
    pub crash_dir: Option<PathBuf>,
    /// At most this many distinct crashes saved per target.
    pub max_saved: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seconds: Some(60.0),
            max_execs: None,
            targets: Vec::new(),
            seed: 0x00C0_FFEE,
            crash_dir: Some(default_crash_dir()),
            max_saved: 20,
        }
    }
}

/// `fuzz/crashes/` of this crate's source tree.
pub fn default_crash_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crashes")
}

/// The outcome for one target.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub target: &'static str,
    pub executions: u64,
    /// Panics and broken properties.
    pub crashes: u64,
    /// Panics of dependencies that the code under test caught and failed closed on.
    pub contained: u64,
    /// Executions slower than [`SLOW`].
    pub slow: u64,
    pub slowest: Duration,
    pub elapsed: Duration,
    /// Distinct crash messages (first few).
    pub messages: Vec<String>,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Run the selected targets. Panics inside targets are caught; the process's panic hook
/// is replaced while running (so caught panics do not flood stderr) and restored after.
pub fn run(opts: &Options) -> Vec<Report> {
    let targets: Vec<Box<dyn Target>> = all_targets()
        .into_iter()
        .filter(|t| opts.targets.is_empty() || opts.targets.iter().any(|n| n == t.name()))
        .collect();
    run_targets(&targets, opts)
}

/// [`run`] with the given targets (`opts.targets` is not consulted).
pub fn run_targets(targets: &[Box<dyn Target>], opts: &Options) -> Vec<Report> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("{info}");
        LAST_PANIC.with(|l| *l.borrow_mut() = Some(msg));
    }));
    let reports = std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let seed = opts.seed ^ ((i as u64 + 1) << 48);
                std::thread::Builder::new()
                    .name(format!("fuzz-{}", t.name()))
                    .stack_size(64 << 20)
                    .spawn_scoped(s, move || run_one(t.as_ref(), seed, opts))
            })
            .collect();
        handles
            .into_iter()
            .zip(targets)
            .map(|(h, t)| match h.map(|h| h.join()) {
                Ok(Ok(r)) => r,
                _ => Report {
                    target: t.name(),
                    crashes: 1,
                    messages: vec!["the runner thread failed".into()],
                    ..Report::default()
                },
            })
            .collect()
    });
    std::panic::set_hook(previous);
    reports
}

fn run_one(t: &dyn Target, seed: u64, opts: &Options) -> Report {
    let mut rng = Rng::new(seed);
    let mut r = Report {
        target: t.name(),
        ..Report::default()
    };
    let start = Instant::now();
    let deadline = opts
        .seconds
        .map(|s| start + Duration::from_secs_f64(s.max(0.0)));
    let mut saved = std::collections::HashSet::new();
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d)
            || opts.max_execs.is_some_and(|m| r.executions >= m)
        {
            break;
        }
        if deadline.is_none() && opts.max_execs.is_none() {
            break;
        }
        let input = t.generate(&mut rng);
        let began = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| t.execute(&input)));
        let took = began.elapsed();
        r.executions += 1;
        r.slowest = r.slowest.max(took);
        match outcome {
            Ok(None) => {}
            Ok(Some(note)) => {
                r.contained += 1;
                record(
                    t,
                    &input,
                    &format!("contained: {note}"),
                    "contained",
                    opts,
                    &mut saved,
                    &mut r,
                );
            }
            Err(_) => {
                r.crashes += 1;
                let msg = LAST_PANIC
                    .with(|l| l.borrow_mut().take())
                    .unwrap_or_else(|| "panic".into());
                record(t, &input, &msg, "input", opts, &mut saved, &mut r);
            }
        }
        if took > SLOW {
            r.slow += 1;
            record(
                t,
                &input,
                &format!("slow: {} ms", took.as_millis()),
                "slow",
                opts,
                &mut saved,
                &mut r,
            );
        }
    }
    r.elapsed = start.elapsed();
    r
}

/// Keep the message and save the input, once per distinct message (location included).
fn record(
    t: &dyn Target,
    input: &[u8],
    msg: &str,
    ext: &str,
    opts: &Options,
    saved: &mut std::collections::HashSet<u64>,
    r: &mut Report,
) {
    let mut h = DefaultHasher::new();
    // Messages quote inputs; the first line with its location identifies the bug.
    msg.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(160)
        .collect::<String>()
        .hash(&mut h);
    let key = h.finish();
    if !saved.insert(key) || saved.len() > opts.max_saved {
        return;
    }
    r.messages.push(msg.chars().take(500).collect());
    if let Some(dir) = &opts.crash_dir {
        let base = dir.join(format!("{}-{key:016x}", t.name()));
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(base.with_extension(ext), input);
        let _ = std::fs::write(base.with_extension("txt"), msg);
    }
}

/// The table printed by the binary: `target executions crashes` and the details.
pub fn format_reports(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>12} {:>8} {:>10} {:>6} {:>11} {:>9}",
        "target", "executions", "crashes", "contained", "slow", "slowest_ms", "seconds"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<14} {:>12} {:>8} {:>10} {:>6} {:>11} {:>9.1}",
            r.target,
            r.executions,
            r.crashes,
            r.contained,
            r.slow,
            r.slowest.as_millis(),
            r.elapsed.as_secs_f64()
        );
    }
    for r in reports {
        for m in &r.messages {
            let _ = writeln!(out, "{}: {}", r.target, m.lines().next().unwrap_or(""));
        }
    }
    out
}

/// The `fuzz` binary: parse arguments, run, print; exit code 1 when anything crashed.
pub fn cli(args: &[String]) -> i32 {
    let mut opts = Options::default();
    let mut replay: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--seconds" => match value().parse::<f64>() {
                Ok(s) => opts.seconds = Some(s),
                Err(_) => return usage("--seconds takes a number"),
            },
            "--execs" => match value().parse::<u64>() {
                Ok(n) => {
                    opts.max_execs = Some(n);
                    opts.seconds = None;
                }
                Err(_) => return usage("--execs takes a number"),
            },
            "--target" => opts.targets.push(value()),
            "--seed" => match value().parse::<u64>() {
                Ok(s) => opts.seed = s,
                Err(_) => return usage("--seed takes a number"),
            },
            "--crash-dir" => opts.crash_dir = Some(PathBuf::from(value())),
            "--replay" => replay = Some(PathBuf::from(value())),
            "--list" => {
                for t in all_targets() {
                    println!("{}", t.name());
                }
                return 0;
            }
            "-h" | "--help" => return usage(""),
            other => return usage(&format!("unknown argument {other}")),
        }
    }
    let known: Vec<&str> = all_targets().iter().map(|t| t.name()).collect::<Vec<_>>();
    if let Some(bad) = opts.targets.iter().find(|n| !known.contains(&n.as_str())) {
        return usage(&format!(
            "unknown target {bad} (targets: {})",
            known.join(", ")
        ));
    }
    if let Some(path) = replay {
        return replay_file(&opts, &path);
    }
    let reports = run(&opts);
    print!("{}", format_reports(&reports));
    if reports.iter().any(|r| r.crashes > 0) {
        1
    } else {
        0
    }
}

fn replay_file(opts: &Options, path: &Path) -> i32 {
    let [name] = opts.targets.as_slice() else {
        return usage("--replay needs exactly one --target");
    };
    let input = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return usage(&format!("cannot read {}: {e}", path.display())),
    };
    for t in all_targets().iter().filter(|t| t.name() == name) {
        // The default hook prints the panic, with its location.
        match t.execute(&input) {
            None => println!("{name}: no crash"),
            Some(note) => println!("{name}: contained: {note}"),
        }
    }
    0
}

fn usage(problem: &str) -> i32 {
    if !problem.is_empty() {
        eprintln!("fuzz: {problem}");
    }
    eprintln!(
        "usage: fuzz [--seconds N | --execs N] [--target NAME]... [--seed S] [--crash-dir DIR] [--list]\n       fuzz --target NAME --replay FILE"
    );
    if problem.is_empty() { 0 } else { 2 }
}
