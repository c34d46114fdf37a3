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

impl TargetCheck {
    /// Its row in the Targets table.
    pub fn row(&self) -> String {
        let mark = match self.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        format!("| {} | {} | {mark} |", self.target, self.measured)
    }
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

impl Section {
    /// `## title`, an optional line saying when it was measured, the method, the tables
    /// and the notes.
    pub fn markdown(&self, measured: Option<&str>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {}\n", self.title);
        if let Some(m) = measured {
            let _ = writeln!(out, "_{}_\n", m.trim());
        }
        if !self.method.is_empty() {
            let _ = writeln!(out, "{}\n", self.method.trim());
        }
        for t in &self.tables {
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
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }

    /// The scenario number its title starts with (`"8. Ingest on …"` → `"8"`).
    fn number(&self) -> Option<&str> {
        let (n, _) = self.title.split_once(". ")?;
        n.chars().all(|c| c.is_ascii_digit()).then_some(n)
    }
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

/// A partial update (`bench run --only … --merge`): put `new`'s sections and target rows
/// into the written report `old`, replacing the section with the same number and the
/// target row with the same target, appending the others; everything else (the machine
/// table, the other sections) stays as it was. Each merged section says when and how it
/// was measured, since the machine table describes the older run. The notes are
/// refreshed from `new` when it has any. `None` when `old` has no notes marker or no
/// Targets table; failed sections are not merged.
pub fn merge(old: &str, new: &Report) -> Option<String> {
    let at = old.find(NOTES_MARKER)?;
    let (body, notes) = (&old[..at], &old[at + NOTES_MARKER.len()..]);
    let mut lines: Vec<String> = body.lines().map(str::to_string).collect();
    // Target rows.
    let head = lines.iter().position(|l| l == "## Targets")?;
    for t in &new.targets {
        let key = format!("| {} |", t.target);
        let rows = head + 1..lines.len();
        let table: Vec<usize> = rows
            .skip_while(|&i| !lines[i].starts_with('|'))
            .take_while(|&i| lines[i].starts_with('|'))
            .collect();
        let last = *table.last()?;
        match table.iter().find(|&&i| lines[i].starts_with(&key)) {
            Some(&i) => lines[i] = t.row(),
            None => lines.insert(last + 1, t.row()),
        }
    }
    let mut body = lines.join("\n");
    body.push('\n');
    // Sections.
    let measured = format!(
        "Measured on {} in a run of its own (`bench run --only … --merge`; {} run(s), load average {} at start, {} at \
         end), not in the run the machine table describes.{}",
        new.started,
        new.runs,
        new.machine.load_before,
        new.machine.load_after,
        if new.quick { " Quick mode." } else { "" }
    );
    for s in new.sections.iter().filter(|s| s.number().is_some()) {
        let text = s.markdown(Some(&measured));
        let heading = format!("## {}. ", s.number().unwrap_or_default());
        let start = if body.starts_with(&heading) {
            Some(0)
        } else {
            body.find(&format!("\n{heading}")).map(|i| i + 1)
        };
        body = match start {
            Some(i) => {
                let end = body[i + 3..]
                    .find("\n## ")
                    .map_or(body.len(), |j| i + 3 + j + 1);
                format!("{}{text}{}", &body[..i], &body[end..])
            }
            None => {
                let trimmed = body.trim_end();
                format!("{trimmed}\n\n{text}")
            }
        };
    }
    let notes = if new.notes.trim().is_empty() {
        notes.to_string()
    } else {
        format!("\n{}\n", new.notes.trim())
    };
    Some(format!("{body}{NOTES_MARKER}{notes}"))
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
            let _ = writeln!(out, "{}", t.row());
        }
        out.push('\n');

        for s in &self.sections {
            out.push_str(&s.markdown(None));
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

    fn section(title: &str, figure: f64) -> Section {
        let mut t = Table::new("");
        t.add("x", "u", vec![figure]);
        Section {
            title: title.into(),
            method: "how".into(),
            tables: vec![t],
            notes: vec![],
        }
    }

    fn target(name: &str, measured: &str) -> TargetCheck {
        TargetCheck {
            target: name.into(),
            measured: measured.into(),
            met: Some(true),
        }
    }

    #[test]
    fn a_partial_run_replaces_only_its_sections_and_target_rows() {
        let old = Report {
            targets: vec![target("A", "old a"), target("B", "old b")],
            sections: vec![section("1. One", 1.0), section("8. Eight", 8.0)],
            notes: "notes".into(),
            ..Report::default()
        }
        .markdown();
        let new = Report {
            started: "today".into(),
            targets: vec![target("B", "new b"), target("C", "new c")],
            sections: vec![
                section("8. Eight", 88.0),
                section("9. Nine", 9.0),
                section("Scenario 10: failed", 0.0),
            ],
            ..Report::default()
        };
        let merged = merge(&old, &new).unwrap();
        // Untouched: section 1, target A, the notes.
        assert!(merged.contains("## 1. One\n"));
        assert!(merged.contains("| A | old a | met |"));
        assert!(merged.ends_with(&format!("{NOTES_MARKER}\nnotes\n")));
        // Replaced in place, appended after the others.
        assert!(merged.contains("| B | new b | met |\n| C | new c | met |\n"));
        assert!(!merged.contains("old b"));
        assert_eq!(merged.matches("## 8. Eight").count(), 1);
        assert!(merged.contains("| x | 88 | u | 1 |"));
        assert!(!merged.contains("| x | 8 | u | 1 |"));
        assert!(merged.find("## 8. Eight").unwrap() < merged.find("## 9. Nine").unwrap());
        assert!(merged.contains("_Measured on today in a run of its own"));
        assert!(!merged.contains("failed"));
        // Merging again changes nothing more.
        assert_eq!(merge(&merged, &new).unwrap(), merged);
        assert_eq!(merge("no marker", &new), None);
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
