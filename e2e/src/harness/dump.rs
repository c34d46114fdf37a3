//! What a failed test leaves behind: the namespace's objects and events, the workers'
//! and the operator's logs. Everything goes to `<failures>/<namespace>/`; a summary goes
//! to stderr (which the test harness prints with the failure).

use std::fmt::Write as _;
use std::path::Path;

use super::{Stack, kubectl};

const KINDS: &str = "workerpools.causeway.dev,bridges.causeway.dev,plugins.causeway.dev";
const CHILDREN: &str = "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,secrets,persistentvolumeclaims,poddisruptionbudgets,horizontalpodautoscalers";

fn get(args: &[&str]) -> String {
    match kubectl(args) {
        Ok(o) if o.success() => o.stdout,
        Ok(o) => format!("({} failed: {})\n", o.cmd, o.stderr.trim()),
        Err(e) => format!("({e:#})\n"),
    }
}

/// Text without ANSI colour sequences (some processes colour their logs even into files).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
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

fn tail(path: &Path, lines: usize) -> String {
    let text = strip_ansi(&String::from_utf8_lossy(
        &std::fs::read(path).unwrap_or_default(),
    ));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn modified(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// Dump namespace `ns` of test `test`.
pub fn dump(ns: &str, test: &str) {
    let Ok(stack) = Stack::get() else { return };
    let dir = stack.failures_dir().join(ns);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("[e2e] dump: {e}");
        return;
    }
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "\n======== e2e failure dump: test {test}, namespace {ns} (full dump: {}) ========",
        dir.display()
    );

    let causeway = get(&["get", "-n", ns, KINDS, "-o", "yaml"]);
    let children = get(&["get", "-n", ns, CHILDREN, "-o", "wide", "--show-labels"]);
    let pods = get(&["get", "-n", ns, "pods", "-o", "yaml"]);
    let events = get(&["get", "-n", ns, "events", "--sort-by=.lastTimestamp"]);
    let release_events = get(&[
        "get",
        "-n",
        &stack.release_ns,
        "events",
        "--sort-by=.lastTimestamp",
    ]);
    let _ = std::fs::write(dir.join("causeway.yaml"), &causeway);
    let _ = std::fs::write(dir.join("children.txt"), &children);
    let _ = std::fs::write(dir.join("pods.yaml"), &pods);
    let _ = std::fs::write(dir.join("events.txt"), &events);
    let _ = std::fs::write(dir.join("operator-events.txt"), &release_events);
    let _ = writeln!(
        summary,
        "--- kubectl get {KINDS}\n{}",
        get(&["get", "-n", ns, KINDS, "-o", "wide"])
    );
    let conds = get(&[
        "get",
        "-n",
        ns,
        KINDS,
        "-o",
        r#"jsonpath={range .items[*]}{.kind}/{.metadata.name} gen={.metadata.generation} observed={.status.observedGeneration}{"\n"}{range .status.conditions[*]}  {.type}={.status} {.reason}: {.message}{"\n"}{end}{end}"#,
    ]);
    let _ = writeln!(summary, "--- conditions\n{conds}");
    let _ = writeln!(summary, "--- children\n{children}");
    let _ = writeln!(summary, "--- events\n{events}");

    match stack.run_dir() {
        Some(run_dir) => {
            // Every container log of the namespace's pods, and the newest operator log.
            let mut logs: Vec<(std::path::PathBuf, usize)> = Vec::new();
            let mut operator: Option<std::path::PathBuf> = None;
            if let Ok(entries) = std::fs::read_dir(run_dir.join("pods")) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let is_ns = name.starts_with(&format!("{ns}_"));
                    let is_operator = name.starts_with(&format!("{}_", stack.release_ns));
                    let Ok(files) = std::fs::read_dir(e.path()) else {
                        continue;
                    };
                    for f in files
                        .flatten()
                        .map(|f| f.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    {
                        if is_ns {
                            logs.push((f, 40));
                        } else if is_operator
                            && operator.as_ref().is_none_or(|o| modified(&f) > modified(o))
                        {
                            operator = Some(f);
                        }
                    }
                }
            }
            logs.extend(operator.map(|o| (o, 60)));
            for (f, lines) in logs {
                let label = f
                    .strip_prefix(run_dir.join("pods"))
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .replace('/', "__");
                let _ = std::fs::write(
                    dir.join(label),
                    strip_ansi(&String::from_utf8_lossy(
                        &std::fs::read(&f).unwrap_or_default(),
                    )),
                );
                let _ = writeln!(
                    summary,
                    "--- last {lines} lines of {}\n{}",
                    f.display(),
                    tail(&f, lines)
                );
            }
            let runner = run_dir.join("logs/pod-runner.log");
            let _ = std::fs::copy(&runner, dir.join("pod-runner.log"));
            let text = std::fs::read_to_string(&runner).unwrap_or_default();
            let mine: Vec<&str> = text.lines().filter(|l| l.contains(ns)).collect();
            let _ = writeln!(
                summary,
                "--- pod runner lines about {ns} (last 20)\n{}",
                mine[mine.len().saturating_sub(20)..].join("\n")
            );
        }
        None => {
            let logs = get(&[
                "logs",
                "-n",
                ns,
                "-l",
                "causeway.dev/pool",
                "--all-containers",
                "--prefix",
                "--tail=200",
            ]);
            let _ = std::fs::write(dir.join("workers.log"), &logs);
            let op = get(&[
                "logs",
                "-n",
                &stack.release_ns,
                &format!("deploy/{}-operator", stack.release),
                "--tail=300",
            ]);
            let _ = std::fs::write(dir.join("operator.log"), &op);
            let _ = writeln!(
                summary,
                "--- worker logs (tail)\n{}",
                logs.lines()
                    .rev()
                    .take(60)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let _ = writeln!(
                summary,
                "--- operator log (tail)\n{}",
                op.lines()
                    .rev()
                    .take(60)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    let _ = writeln!(summary, "======== end of dump for {ns} ========");
    let _ = std::fs::write(dir.join("summary.txt"), &summary);
    eprintln!("{summary}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn ansi_sequences_are_removed() {
        assert_eq!(
            super::strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x"),
            "2026  INFO x"
        );
    }
}
