//! Golden placement scenarios: every tests/scenarios/*.scn must give exactly its expected
//! actions (see tests/scenarios/README.md for the format). `HB_UPDATE_SCENARIOS=1` rewrites
//! each file's expected part from what `decide` returns instead of failing.

use std::path::PathBuf;

#[test]
fn every_scenario_gives_its_expected_actions() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "scn"))
        .collect();
    files.sort();
    assert!(files.len() >= 50, "only {} scenarios", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let (view, expected) =
            crmd::policy::parse_scenario(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let actual: Vec<String> = crmd::policy::decide(&view)
            .iter()
            .map(ToString::to_string)
            .collect();
        if std::env::var_os("HB_UPDATE_SCENARIOS").is_some() {
            if actual != expected {
                let input = text.split("\nexpect").next().unwrap_or(&text).trim_end();
                let mut rewritten = format!("{input}\nexpect\n");
                for action in &actual {
                    rewritten.push_str(action);
                    rewritten.push('\n');
                }
                std::fs::write(file, rewritten).unwrap();
            }
            continue;
        }
        if actual != expected {
            failures.push(format!(
                "{}:\n  expected {expected:?}\n  got      {actual:?}",
                file.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
