//! The report: figures (one value per run), tables, targets, and BENCHMARKS.md.

use std::fmt::Write as _;

use crate::machine::Machine;
use crate::stats::Summary;

/// One figure, measured once per run.
#[derive(Clone, Debug)]
pub struct Figure {
    pub label: String,
    pub unit: String,
    pub values: Vec<f64>,
}

impl Figure {
    pub fn new(label: &str, unit: &str, values: Vec<f64>) -> Figure {
        Figure {
            label: label.to_string(),
            unit: unit.to_string(),
            values,
        }
    }

    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.values)
    }
}

/// A table of figures.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub title: String,
    pub figures: Vec<Figure>,
}

impl Table {
    pub fn new(title: &str) -> Table {
        Table {
            title: title.to_string(),
            figures: vec![],
        }
    }

    pub fn add(&mut self, label: &str, unit: &str, values: Vec<f64>) -> &mut Self {
        self.figures.push(Figure::new(label, unit, values));
        self
    }
}

/// A target from the issue, with what was measured.
#[derive(Clone, Debug)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    /// `None`: not measured in this run.
    pub met: Option<bool>,
}

/// One scenario's part of the report.
#[derive(Clone, Debug, Default)]
pub struct Section {
    pub title: String,
    /// How it was measured, in a few lines.
    pub method: String,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
}

/// The whole report.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub machine: Machine,
    pub started: String,
    pub elapsed_secs: f64,
    pub quick: bool,
    pub runs: usize,
    pub settings: Vec<(String, String)>,
    pub sections: Vec<Section>,
    pub targets: Vec<TargetCheck>,
    /// Hand-written analysis (profiles), kept in `bench/notes.md` and copied in.
    pub notes: String,
}

/// Everything after this line in BENCHMARKS.md is `bench/notes.md`.
pub const NOTES_MARKER: &str = "<!-- The rest is bench/notes.md (hand-written); `bench notes` refreshes it without a new run. -->";

/// Replace what follows [`NOTES_MARKER`] in a written report with `notes`.
pub fn replace_notes(report: &str, notes: &str) -> Option<String> {
    let at = report.find(NOTES_MARKER)? + NOTES_MARKER.len();
    Some(format!("{}\n{}\n", &report[..at], notes.trim()))
}

/// A number with a sensible number of digits for its size.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if x.fract() == 0.0 && a < 1e15 {
        return group_thousands(&format!("{x:.0}"));
    }
    if a >= 1_000.0 {
        let s = format!("{:.0}", x);
        group_thousands(&s)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn group_thousands(s: &str) -> String {
    let (sign, digits) = s.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", s));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// `median [min – max]` of a figure, or "–".
pub fn fmt_summary(s: Option<Summary>) -> String {
    match s {
        Some(s) if s.runs > 1 => format!(
            "{} [{} – {}]",
            fmt_num(s.median),
            fmt_num(s.min),
            fmt_num(s.max)
        ),
        Some(s) => fmt_num(s.median),
        None => "–".into(),
    }
}

/// A ratio as percentages: `47% [42% – 51%]`.
pub fn fmt_pct(s: Option<Summary>) -> String {
    match s {
        Some(s) if s.runs > 1 => format!(
            "{:.0}% [{:.0}% – {:.0}%]",
            s.median * 100.0,
            s.min * 100.0,
            s.max * 100.0
        ),
        Some(s) => format!("{:.0}%", s.median * 100.0),
        None => "–".into(),
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Written by `make bench` (`bench/`); method in [docs/benchmarks.md](docs/benchmarks.md). \
             Each figure is the **median of {} runs, [min – max]**. Ratios and added costs are computed run by run \
             (system and baseline measured back to back in the same run), then summarised.{}\n",
            self.runs,
            if self.quick {
                " **Quick mode (`BENCH_QUICK=1`): fewer, shorter runs; indicative only.**"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "## Machine and versions\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| date | {} |", self.started);
        let _ = writeln!(out, "| cores | {} ({}) |", m.cores, m.cpu);
        let _ = writeln!(out, "| memory | {} |", m.memory);
        let _ = writeln!(out, "| kernel | {} |", m.kernel);
        let _ = writeln!(out, "| scratch disk | {} |", m.disk);
        let _ = writeln!(
            out,
            "| load average (1/5/15 min) | {} at start, {} at end |",
            m.load_before, m.load_after
        );
        let _ = writeln!(out, "| causeway | {} |", m.causeway_rev);
        let _ = writeln!(out, "| rustc | {} |", m.rustc);
        let _ = writeln!(out, "| nginx | {} |", m.nginx);
        let _ = writeln!(out, "| wasmtime | {} |", m.wasmtime);
        let _ = writeln!(out, "| wall time | {:.0} s |", self.elapsed_secs);
        for (k, v) in &self.settings {
            let _ = writeln!(out, "| {k} | {v} |");
        }
        let _ = writeln!(
            out,
            "\nThe load generator, the sink and every system under test share the same {} cores, \
             so absolute figures are lower than on a dedicated machine; ratios are the figures to compare.\n",
            m.cores
        );

        let _ = writeln!(out, "## Targets\n");
        let _ = writeln!(
            out,
            "| target | measured (median [min – max]) | |\n|---|---|---|"
        );
        for t in &self.targets {
            let mark = match t.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "not measured",
            };
            let _ = writeln!(out, "| {} | {} | {mark} |", t.target, t.measured);
        }
        out.push('\n');

        for s in &self.sections {
            let _ = writeln!(out, "## {}\n", s.title);
            if !s.method.is_empty() {
                let _ = writeln!(out, "{}\n", s.method.trim());
            }
            for t in &s.tables {
                if !t.title.is_empty() {
                    let _ = writeln!(out, "**{}**\n", t.title);
                }
                let _ = writeln!(
                    out,
                    "| figure | median [min – max] | unit | runs |\n|---|---|---|---|"
                );
                for f in &t.figures {
                    let s = f.summary();
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} |",
                        f.label,
                        fmt_summary(s),
                        f.unit,
                        s.map(|s| s.runs).unwrap_or(0)
                    );
                }
                out.push('\n');
            }
            for n in &s.notes {
                let _ = writeln!(out, "- {n}");
            }
            if !s.notes.is_empty() {
                out.push('\n');
            }
        }
        out.push_str(NOTES_MARKER);
        out.push('\n');
        if !self.notes.trim().is_empty() {
            out.push_str(self.notes.trim());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_replaced_after_the_marker() {
        let r = Report {
            notes: "old".into(),
            ..Report::default()
        }
        .markdown();
        let new = replace_notes(&r, "new notes").unwrap();
        assert!(new.ends_with(&format!("{NOTES_MARKER}\nnew notes\n")));
        assert!(!new.contains("old"));
        assert_eq!(replace_notes("no marker", "x"), None);
    }

    #[test]
    fn numbers_are_readable() {
        assert_eq!(fmt_num(12_345.6), "12,346");
        assert_eq!(fmt_num(1_234_567.0), "1,234,567");
        assert_eq!(fmt_num(512.4), "512");
        assert_eq!(fmt_num(9312.4), "9,312");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(3.0), "3");
        assert_eq!(fmt_num(42.26), "42.3");
        assert_eq!(fmt_num(3.456), "3.46");
        assert_eq!(fmt_num(0.5), "0.500");
        assert_eq!(fmt_num(f64::NAN), "–");
        assert_eq!(
            fmt_summary(Summary::of(&[1.5, 2.5, 3.5])),
            "2.50 [1.50 – 3.50]"
        );
    }
}
