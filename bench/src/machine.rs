//! The machine and the versions that go with the figures.

use std::path::Path;
use std::process::Command;

use crate::sut::Paths;

#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub memory: String,
    pub disk: String,
    /// `/proc/loadavg` when the run started and ended.
    pub load_before: String,
    pub load_after: String,
    pub causeway_rev: String,
    pub rustc: String,
    pub nginx: String,
    pub wasmtime: String,
}

fn run(cmd: &str, args: &[&str], dir: Option<&Path>) -> String {
    let mut c = Command::new(cmd);
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    match c.output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text).trim().to_string()
        }
        Err(e) => format!("unavailable ({e})"),
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Machine {
    pub fn describe(paths: &Paths) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
            .unwrap_or_default();
        let rev = run(
            "git",
            &["rev-parse", "--short=12", "HEAD"],
            Some(&paths.repo),
        );
        // The worker is built from the working tree: say when it differs from the commit.
        let dirty = !run(
            "git",
            &["status", "--porcelain", "--", "runtime", "crds", "operator"],
            Some(&paths.repo),
        )
        .is_empty();
        let disk = run(
            "df",
            &["--output=source,fstype", &paths.work.display().to_string()],
            None,
        )
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            memory,
            disk,
            load_before: loadavg(),
            load_after: String::new(),
            causeway_rev: match std::env::var("BENCH_CAUSEWAY") {
                Ok(bin) if !bin.is_empty() => format!("the worker binary {bin} (BENCH_CAUSEWAY)"),
                _ if dirty => {
                    format!("{rev} + uncommitted changes in runtime/, crds/ or operator/")
                }
                _ => rev,
            },
            rustc: run("rustc", &["-V"], None),
            nginx: run(&paths.nginx().display().to_string(), &["-v"], None),
            wasmtime: run(
                &paths.wasmtime().display().to_string(),
                &["--version"],
                None,
            ),
        }
    }
}
