//! Every benchmark, one table (issue #9): runs each `hb-bench-*` program built beside it, each
//! printing its own lines as it goes, then prints one Markdown table of every figure against
//! its target and, where the issue measured it for Heartbeat 3.0.6 or Pacemaker 2.1.5 on the
//! same machine, the ratio. `--minutes N` (default 10) is the length of the two long runs
//! (deadtime under load, 32 nodes); `--quick` makes it 1.

use std::process::Command;

use hb_lab::bin;
use hb_lab::report::{table, Figure, REPORT_ENV};

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores ({cpu}), {memory:.0} GiB, Linux {}", kernel.trim())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let minutes = if args.iter().any(|a| a == "--quick") {
        1
    } else {
        hb_lab::report::option("minutes", 10)
    };
    let report = tempfile::NamedTempFile::new().expect("report file");
    let long = ["--minutes".to_owned(), minutes.to_string()];
    let runs: Vec<(&str, Vec<String>)> = vec![
        ("hb-bench-respawn", vec![]),
        ("hb-bench-lrmd", vec![]),
        ("hb-bench-stonith", vec![]),
        ("hb-bench-failover", vec![]),
        ("hb-bench-upgrade", vec![]),
        ("hb-bench-comm", vec![]),
        ("hb-bench-node", vec![]),
        ("hb-bench-many", vec![]),
        ("hb-bench-load", long.to_vec()),
        ("hb-bench-realtime", long.to_vec()),
        ("hb-bench-32", long.to_vec()),
        // Built only with the `corosync` feature (scripts/bench builds it when Corosync's
        // libraries are installed): both engines side by side.
        ("hb-bench-engines", long.to_vec()),
    ];
    let began = std::time::SystemTime::now();
    let mut failed = Vec::new();
    for (program, args) in &runs {
        if !bin(program).exists() {
            println!("== {program}: not built, skipped");
            continue;
        }
        println!("== {program}");
        let status = Command::new(bin(program))
            .args(args)
            .env(REPORT_ENV, report.path())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            failed.push(*program);
        }
    }
    let figures: Vec<Figure> = std::fs::read_to_string(report.path())
        .unwrap_or_default()
        .lines()
        .filter_map(Figure::parse)
        .collect();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "\n## Benchmarks, {date}\n\nMachine: {}. Run: {:.0} min (`scripts/bench`; long runs {minutes} min).\n",
        machine(),
        began.elapsed().map_or(0.0, |d| d.as_secs_f64() / 60.0)
    );
    print!("{}", table(&figures));
    if !failed.is_empty() {
        println!("\nFailed to run: {}", failed.join(", "));
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
