//! What a failed test leaves behind: the namespace's objects and events, the workers'
//! and the operator's logs. Everything goes to `<failures>/<namespace>/`; a summary goes
//! to stderr (which the test harness prints with the failure).

use std::fmt::Write as _;

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

/// The last `lines` lines of `text`.
fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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
    // Node, pod IP, status (e.g. OOMKilled, CrashLoopBackOff) and restarts at a glance;
    // the full container states are in pods.yaml.
    let pods_wide = get(&["get", "-n", ns, "pods", "-o", "wide"]);
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
    let _ = writeln!(summary, "--- kubectl get pods -o wide\n{pods_wide}");
    let _ = writeln!(summary, "--- events\n{events}");

    // Logs come through the API (`kubectl logs`; the kubelet serves them), on the local
    // node as on a cluster.
    let logs = strip_ansi(&get(&[
        "logs",
        "-n",
        ns,
        "-l",
        "causeway.dev/pool",
        "--all-containers",
        "--prefix",
        "--tail=200",
    ]));
    // A container that restarted (SIGKILL, OOM) ended in its previous instance.
    let previous = strip_ansi(&get(&[
        "logs",
        "-n",
        ns,
        "-l",
        "causeway.dev/pool",
        "--all-containers",
        "--prefix",
        "--previous",
        "--tail=100",
    ]));
    let _ = std::fs::write(dir.join("workers.log"), &logs);
    let _ = std::fs::write(dir.join("workers.previous.log"), &previous);
    let op = strip_ansi(&get(&[
        "logs",
        "-n",
        &stack.release_ns,
        &format!("deploy/{}-operator", stack.release),
        "--tail=300",
    ]));
    let _ = std::fs::write(dir.join("operator.log"), &op);
    let _ = writeln!(summary, "--- worker logs (tail)\n{}", last_lines(&logs, 60));
    let _ = writeln!(summary, "--- operator log (tail)\n{}", last_lines(&op, 60));
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
