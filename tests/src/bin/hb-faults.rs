//! The fault-injection run (needs root):
//!
//!     hb-faults                      every fault once, then the table
//!     hb-faults NAME…                the named faults (see --list)
//!     hb-faults --list               the faults' names
//!     hb-faults --random MINUTES [--seed N]
//!                                    random faults for MINUTES; the seed is printed, and the
//!                                    same seed plays the same faults in the same order
//!
//! Exits 1 when an invariant was violated (or the checker missed the violation the lying
//! fence device is there to cause).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use hb_lab::faults::{default_faults, passed, play, record, table, Seeded};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = default_faults();
    if args.first().map(String::as_str) == Some("--list") {
        for fault in &all {
            println!("{}", fault.name());
        }
        return ExitCode::SUCCESS;
    }
    let mut plan = Vec::new();
    let mut random: Option<(Duration, u64)> = None;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--random" => {
                let Some(minutes) = words.next().and_then(|m| m.parse::<u64>().ok()) else {
                    eprintln!("hb-faults: --random MINUTES");
                    return ExitCode::from(2);
                };
                let seed = random.map_or_else(
                    || {
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(1, |d| d.as_nanos() as u64)
                    },
                    |(_, seed)| seed,
                );
                random = Some((Duration::from_secs(minutes * 60), seed));
            }
            "--seed" => {
                let Some(seed) = words.next().and_then(|s| s.parse::<u64>().ok()) else {
                    eprintln!("hb-faults: --seed N");
                    return ExitCode::from(2);
                };
                random = Some((random.map_or(Duration::from_secs(600), |(d, _)| d), seed));
            }
            name => match all.iter().find(|f| f.name() == name) {
                Some(fault) => plan.push(*fault),
                None => {
                    eprintln!("hb-faults: no fault {name:?} (see --list)");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let mut rows = Vec::new();
    if let Some((length, seed)) = random {
        println!(
            "randomized run: {} min, seed {seed} (replay with --random {} --seed {seed})",
            length.as_secs() / 60,
            length.as_secs() / 60
        );
        let mut generator = Seeded::new(seed);
        let end = Instant::now() + length;
        while Instant::now() < end {
            let fault = all[generator.below(all.len())];
            println!("{}", fault.name());
            record(&mut rows, fault, play(fault).await);
        }
    } else {
        if plan.is_empty() {
            plan = all;
        }
        for fault in plan {
            let began = Instant::now();
            let outcome = play(fault).await;
            println!(
                "{} ({:.1} s): {} violation(s)",
                fault.name(),
                began.elapsed().as_secs_f64(),
                outcome.violations.len()
            );
            record(&mut rows, fault, outcome);
        }
    }
    print!("\n{}", table(&rows));
    if passed(&rows) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
