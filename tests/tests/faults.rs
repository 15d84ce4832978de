//! The default fault run: every fault of `hb_lab::faults` once, each on a fresh cluster in a
//! network namespace, judged by the invariants from the ledger and the buses. The table is
//! printed and kept in target/fault-table.txt (`.ci/run` shows it). Needs root.
//! `hb-faults --random MINUTES` is the long randomized run.

use hb_lab::faults::{default_faults, passed, play, record, table};

#[tokio::test]
async fn every_fault_once_and_no_invariant_broken() {
    let mut rows = Vec::new();
    for fault in default_faults() {
        let outcome = play(fault).await;
        record(&mut rows, fault, outcome);
    }
    let table = table(&rows);
    println!("{table}");
    let kept = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fault-table.txt");
    let _ = std::fs::write(kept, &table);
    assert!(passed(&rows), "{table}");
}
