//! The table of outcomes, and the randomized run's generator.

use std::time::Duration;

use super::*;

/// One line of the table: a fault's outcomes over its runs.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The fault's name.
    pub fault: String,
    /// Which cluster.
    pub shape: String,
    /// Outcomes, one per run.
    pub outcomes: Vec<Outcome>,
}

pub(super) fn spread(values: &[Duration]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_millis();
    format!(
        "{}/{}/{}",
        ms(sorted[0]),
        ms(sorted[sorted.len() / 2]),
        ms(sorted[sorted.len() - 1])
    )
}

/// The table: fault, runs, violations, detection and recovery (min/median/max ms), false
/// deaths, unnecessary restarts; then every violation.
pub fn table(rows: &[Row]) -> String {
    let mut text = format!(
        "{:<28} {:<17} {:>4} {:>10} {:>16} {:>16} {:>6} {:>8}\n",
        "fault", "cluster", "runs", "violations", "detection ms", "recovery ms", "false", "restarts"
    );
    text.push_str(&format!(
        "{:<28} {:<17} {:>4} {:>10} {:>16} {:>16} {:>6} {:>8}\n",
        "", "", "", "", "min/median/max", "min/median/max", "deaths", "unneeded"
    ));
    for row in rows {
        let violations: usize = row.outcomes.iter().map(|o| o.violations.len()).sum();
        let expected = row.outcomes.iter().any(|o| o.violations_expected);
        let detection: Vec<Duration> = row.outcomes.iter().filter_map(|o| o.detection).collect();
        let recovery: Vec<Duration> = row.outcomes.iter().filter_map(|o| o.recovery).collect();
        text.push_str(&format!(
            "{:<28} {:<17} {:>4} {:>10} {:>16} {:>16} {:>6} {:>8}\n",
            row.fault,
            row.shape,
            row.outcomes.len(),
            if expected {
                format!("{violations} (expected)")
            } else {
                violations.to_string()
            },
            spread(&detection),
            spread(&recovery),
            row.outcomes.iter().map(|o| o.false_deaths).sum::<u32>(),
            row.outcomes.iter().map(|o| o.unnecessary_restarts).sum::<u32>(),
        ));
    }
    for row in rows {
        for outcome in &row.outcomes {
            for violation in &outcome.violations {
                text.push_str(&format!("  {}: {violation}\n", row.fault));
            }
        }
    }
    text
}

/// Adds `outcome` to `fault`'s row.
pub fn record(rows: &mut Vec<Row>, fault: Fault, outcome: Outcome) {
    let name = fault.name();
    match rows.iter_mut().find(|r| r.fault == name) {
        Some(row) => row.outcomes.push(outcome),
        None => rows.push(Row {
            fault: name,
            shape: fault.shape.label().into(),
            outcomes: vec![outcome],
        }),
    }
}

/// Whether the rows hold up: no violation except where one was the expected result, and
/// there at least one (the checker caught it).
pub fn passed(rows: &[Row]) -> bool {
    rows.iter().all(|row| {
        row.outcomes.iter().all(|o| {
            if o.violations_expected {
                !o.violations.is_empty()
            } else {
                o.violations.is_empty()
            }
        })
    })
}

/// A small deterministic generator for the randomized run (re-playable by seed).
pub struct Seeded(u64);

impl Seeded {
    /// From a seed (0 is replaced: xorshift needs a bit set).
    pub fn new(seed: u64) -> Seeded {
        Seeded(seed.max(1))
    }

    /// The next number below `bound`.
    pub fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound.max(1) as u64) as usize
    }
}
