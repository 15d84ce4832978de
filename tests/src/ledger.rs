//! A ledger of starts and stops, written by a heartbeat-class test agent on every node, from
//! which tests check that no resource ever ran on two nodes at once (rather than assume it).

use std::path::{Path, PathBuf};

use crate::NodeBuilder;

/// A resource script: start/stop append "NODE start|stop" to the ledger, status reads a
/// per-node state file.
pub fn ledger_script(ledger: &Path, state_dir: &Path) -> String {
    format!(
        "state={state}/{{node}}.$1.on\ncase \"$2\" in\nstart) touch \"$state\"; echo \"{{node}} start $1\" >> {ledger};;\nstop) [ -e \"$state\" ] && echo \"{{node}} stop $1\" >> {ledger}; rm -f \"$state\";;\nstatus) if [ -e \"$state\" ]; then echo running; else echo stopped; fi;;\nesac\nexit 0\n",
        state = state_dir.display(),
        ledger = ledger.display()
    )
}

/// A shared ledger of starts and stops written by the `Ledger` resource script.
pub struct Lab {
    _root: tempfile::TempDir,
    /// The ledger file.
    pub ledger: PathBuf,
    /// Where the script keeps each node's running marker.
    pub state: PathBuf,
}

impl Lab {
    /// A fresh ledger and state directory.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Lab {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        Lab {
            ledger: root.path().join("ledger"),
            state,
            _root: root,
        }
    }

    /// `builder` with `haresources` and the `Ledger` script.
    pub fn configure(&self, builder: NodeBuilder, haresources: &str) -> NodeBuilder {
        builder
            .haresources(haresources)
            .resource_script("Ledger", &ledger_script(&self.ledger, &self.state))
    }

    /// `builder` in FreeHA style with this oops window, running FreeHA's service `hasrv`
    /// from `starthasrv`/`stophasrv` scripts that keep the ledger (and `monitorhasrv`, an LSB
    /// status, checked every `monitor_interval`, when given).
    pub fn configure_freeha(
        &self,
        builder: NodeBuilder,
        oops_timeout: std::time::Duration,
        monitor_interval: Option<std::time::Duration>,
    ) -> NodeBuilder {
        let state = format!("{}/{{node}}.hasrv.on", self.state.display());
        let ledger = self.ledger.display();
        let mut scripts = vec![
            (
                "starthasrv",
                format!("touch {state}\necho \"{{node}} start hasrv\" >> {ledger}\n"),
            ),
            (
                "stophasrv",
                format!(
                    "[ -e {state} ] && echo \"{{node}} stop hasrv\" >> {ledger}\nrm -f {state}\nexit 0\n"
                ),
            ),
        ];
        if monitor_interval.is_some() {
            scripts.push(("monitorhasrv", format!("[ -e {state} ] || exit 3\n")));
        }
        let ops = hbapi::config::OpSettings {
            monitor_interval,
            ..Default::default()
        };
        builder.freeha(oops_timeout).freeha_service(&scripts, ops)
    }

    /// `node` lost its power: everything it ran is gone (its running markers too, so that a
    /// node started again does not find its resources running), and the ledger says so
    /// ("NODE off all").
    pub fn power_off(&self, node: &str) {
        use std::io::Write;
        if let Ok(entries) = std::fs::read_dir(&self.state) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&format!("{node}.")) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.ledger)
            .expect("ledger");
        writeln!(file, "{node} off all").expect("ledger");
    }

    /// Waits until the ledger has a `node` `event` line ("alpha start"); panics with the
    /// ledger after [`crate::PATIENCE`].
    pub async fn wait_for(&self, node: &str, event: &str) {
        let seen = tokio::time::timeout(crate::PATIENCE, async {
            while !self.entries().iter().any(|(n, e, _)| n == node && e == event) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(seen.is_ok(), "never \"{node} {event}\": {:?}", self.entries());
    }

    /// Every ledger line as "node event" ("alpha start"), for comparing whole histories.
    pub fn events(&self) -> Vec<String> {
        self.entries()
            .iter()
            .map(|(n, e, _)| format!("{n} {e}"))
            .collect()
    }

    /// Every ledger line as (node, event, resource).
    pub fn entries(&self) -> Vec<(String, String, String)> {
        std::fs::read_to_string(&self.ledger)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                Some((
                    words.next()?.to_owned(),
                    words.next()?.to_owned(),
                    words.next()?.to_owned(),
                ))
            })
            .collect()
    }

    /// Every start of a resource on a node while it still ran on another, as a sentence. A
    /// line "NODE off all" (written by the lab's power switch, or by a test that kills a whole
    /// node) ends everything that ran on NODE; "stop" and "crash" end one resource there.
    pub fn double_starts(&self) -> Vec<String> {
        self.replay().1
    }

    /// What the ledger says runs now: resource → node.
    pub fn running(&self) -> std::collections::BTreeMap<String, String> {
        self.replay().0
    }

    /// Plays the ledger through: what runs at the end, and every double start on the way.
    fn replay(&self) -> (std::collections::BTreeMap<String, String>, Vec<String>) {
        let mut running: std::collections::BTreeMap<String, String> = Default::default();
        let mut found = Vec::new();
        for (index, (node, event, resource)) in self.entries().into_iter().enumerate() {
            match event.as_str() {
                "start" => {
                    if let Some(other) = running.get(&resource).filter(|other| **other != node) {
                        found.push(format!(
                            "ledger line {}: {resource} started on {node} while running on {other}",
                            index + 1
                        ));
                    }
                    running.insert(resource, node);
                }
                "off" => running.retain(|_, holder| *holder != node),
                _ => {
                    if running.get(&resource) == Some(&node) {
                        running.remove(&resource);
                    }
                }
            }
        }
        (running, found)
    }

    /// From the ledger: no resource was ever started on a node while it ran on another,
    /// counting a crashed node's resources as running until that node was `cleared`.
    pub fn assert_never_twice(&self, cleared: &[&str]) {
        let mut running: std::collections::BTreeMap<String, String> = Default::default();
        for (node, event, resource) in self.entries() {
            if event == "start" {
                if let Some(other) = running.get(&resource) {
                    assert!(
                        cleared.contains(&other.as_str()),
                        "{resource} started on {node} while running on {other}: {:?}",
                        self.entries()
                    );
                }
                running.insert(resource, node);
            } else {
                // "stop", or "crash" written by a test that kills the resource behind its back.
                running.remove(&resource);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_while_running_elsewhere_is_caught_and_power_off_ends_everything() {
        let lab = Lab::new();
        std::fs::write(
            &lab.ledger,
            "alpha start web\nbravo start db\nbravo start web\nalpha off all\ncharlie start web\nbravo stop db\n",
        )
        .unwrap();
        // After line 3 bravo holds web: alpha's power-off does not end it there.
        assert_eq!(
            lab.double_starts(),
            [
                "ledger line 3: web started on bravo while running on alpha",
                "ledger line 5: web started on charlie while running on bravo"
            ]
        );
        assert_eq!(lab.running(), [("web".to_owned(), "charlie".to_owned())].into());
        std::fs::write(&lab.ledger, "alpha start web\nalpha off all\nbravo start web\n").unwrap();
        assert!(lab.double_starts().is_empty());
    }
}
