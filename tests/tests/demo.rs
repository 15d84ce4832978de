//! The README's first command (`scripts/demo` runs this binary): it must run to completion
//! and say how long the failover took.

#[test]
fn the_demo_runs_to_completion_and_prints_the_failover_time() {
    let output = std::process::Command::new(hb_lab::bin("hb-demo"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Failover: Demo::web started on bravo "))
        .unwrap_or_else(|| panic!("no failover line:\n{stdout}"));
    let millis: u64 = line
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no figure in {line:?}"));
    assert!(millis > 0, "{line}");
    assert!(
        stdout.contains("heartbeat-rs on bravo — decision maker: bravo"),
        "{stdout}"
    );
    assert!(stdout.contains("Demo::web  on bravo"), "{stdout}");
}
