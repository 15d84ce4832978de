//! One table of every benchmark figure (issue #9). Each `hb-bench-*` program prints its
//! figures in its own words and, when `HB_BENCH_REPORT` names a file, also appends each one
//! there as a tab-separated line; `hb-bench-report` runs them all and prints the table.

use std::io::Write;

/// The environment variable naming the file figures are appended to.
pub const REPORT_ENV: &str = "HB_BENCH_REPORT";

/// What a figure should be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// At most this.
    AtMost(f64),
    /// At least this.
    AtLeast(f64),
    /// No target: a figure for the record.
    None,
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit ("ms", "s/min", "MB", …).
    pub unit: String,
    /// What it should be.
    pub target: Target,
    /// The same figure for Heartbeat 3.0.6 or Pacemaker 2.1.5 ("Heartbeat 3.0.6", value).
    pub reference: Option<(String, f64)>,
}

impl Figure {
    /// Whether the target is met (`None` without a target).
    pub fn met(&self) -> Option<bool> {
        match self.target {
            Target::AtMost(limit) => Some(self.value <= limit),
            Target::AtLeast(limit) => Some(self.value >= limit),
            Target::None => None,
        }
    }

    fn line(&self) -> String {
        let (kind, limit) = match self.target {
            Target::AtMost(limit) => ("<=", limit),
            Target::AtLeast(limit) => (">=", limit),
            Target::None => ("-", 0.0),
        };
        let (label, reference) = self.reference.clone().unwrap_or_default();
        format!(
            "{}\t{}\t{}\t{kind}\t{limit}\t{label}\t{reference}",
            self.name, self.value, self.unit
        )
    }

    /// Reads a line written by [`record`]; `None` for anything else.
    pub fn parse(line: &str) -> Option<Figure> {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, value, unit, kind, limit, label, reference] = fields.as_slice() else {
            return None;
        };
        let limit: f64 = limit.parse().ok()?;
        Some(Figure {
            name: (*name).to_owned(),
            value: value.parse().ok()?,
            unit: (*unit).to_owned(),
            target: match *kind {
                "<=" => Target::AtMost(limit),
                ">=" => Target::AtLeast(limit),
                _ => Target::None,
            },
            reference: (!label.is_empty())
                .then(|| Some(((*label).to_owned(), reference.parse().ok()?)))
                .flatten(),
        })
    }
}

/// `count` shell busy loops at nice level `nice` (0: the caller's), the benchmarks' CPU load.
pub fn busy_loops(count: usize, nice: i32) -> Vec<std::process::Child> {
    (0..count)
        .map(|_| {
            std::process::Command::new("nice")
                .args(["-n", &nice.to_string(), "sh", "-c", "while :; do :; done"])
                .spawn()
                .expect("busy loop (nice, sh)")
        })
        .collect()
}

/// The number after `--NAME` on the command line, or `default`.
pub fn option(name: &str, default: u64) -> u64 {
    let flag = format!("--{name}");
    std::env::args()
        .skip_while(|a| *a != flag)
        .nth(1)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Appends `figure` to the report file, if there is one.
pub fn record(name: &str, value: f64, unit: &str, target: Target, reference: Option<(&str, f64)>) {
    let Some(path) = std::env::var_os(REPORT_ENV) else {
        return;
    };
    let figure = Figure {
        name: name.to_owned(),
        value,
        unit: unit.to_owned(),
        target,
        reference: reference.map(|(label, value)| (label.to_owned(), value)),
    };
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{}", figure.line());
    }
}

fn number(value: f64) -> String {
    if value == 0.0 || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// The table, in Markdown: figure, value, target, met, reference and the ratio to it.
pub fn table(figures: &[Figure]) -> String {
    let mut text = String::from(
        "| Figure | heartbeat-rs | Target | Met | Heartbeat 3.0.6 / Pacemaker 2.1.5 | Ratio |\n|---|---|---|---|---|---|\n",
    );
    for figure in figures {
        let target = match figure.target {
            Target::AtMost(limit) => format!("≤ {} {}", number(limit), figure.unit),
            Target::AtLeast(limit) => format!("≥ {} {}", number(limit), figure.unit),
            Target::None => "-".into(),
        };
        let met = match figure.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let (reference, ratio) = match &figure.reference {
            Some((label, value)) if *value != 0.0 => (
                format!("{} {} ({label})", number(*value), figure.unit),
                format!("{:.2}", figure.value / value),
            ),
            _ => ("-".into(), "-".into()),
        };
        text.push_str(&format!(
            "| {} | {} {} | {target} | {met} | {reference} | {ratio} |\n",
            figure.name,
            number(figure.value),
            figure.unit
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_survives_its_line_and_the_table_judges_it() {
        let figure = Figure {
            name: "crash failover median".into(),
            value: 981.0,
            unit: "ms".into(),
            target: Target::AtMost(1050.0),
            reference: Some(("Heartbeat 3.0.6".into(), 1210.0)),
        };
        assert_eq!(Figure::parse(&figure.line()), Some(figure.clone()));
        let slow = Figure {
            value: 1100.0,
            ..figure.clone()
        };
        let table = table(&[figure, slow]);
        assert!(
            table.contains(
                "| crash failover median | 981 ms | ≤ 1050 ms | yes | 1210 ms (Heartbeat 3.0.6) | 0.81 |"
            ),
            "{table}"
        );
        assert!(table.contains("| 1100 ms | ≤ 1050 ms | **no** |"), "{table}");
        assert_eq!(Figure::parse("not a figure"), None);
    }
}
