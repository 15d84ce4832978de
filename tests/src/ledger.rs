//! A ledger of starts and stops, written by a heartbeat-class test agent on every node, from
//! which tests check that no resource ever ran on two nodes at once (rather than assume it).

use std::path::{Path, PathBuf};

use crate::NodeBuilder;

/// A resource script: start/stop append "NODE start|stop RESOURCE TIME" to the ledger (TIME:
/// seconds since the epoch), status reads a per-node state file.
pub fn ledger_script(ledger: &Path, state_dir: &Path) -> String {
    format!(
        "state={state}/{{node}}.$1.on\ncase \"$2\" in\nstart) touch \"$state\"; echo \"{{node}} start $1 $(date +%s.%N)\" >> {ledger};;\nstop) [ -e \"$state\" ] && echo \"{{node}} stop $1 $(date +%s.%N)\" >> {ledger}; rm -f \"$state\";;\nstatus) if [ -e \"$state\" ]; then echo running; else echo stopped; fi;;\nesac\nexit 0\n",
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

    /// The longest time `resource` ran nowhere between its first start and the end of the
    /// ledger (a stop, or its node's power off, until the next start), from the times the
    /// Ledger script writes; with the ledger line that ended that outage.
    pub fn longest_outage(&self, resource: &str) -> (std::time::Duration, String) {
        self.longest_outage_since(resource, 0)
    }

    /// The number of lines in the ledger now (for [`Lab::longest_outage_since`]).
    pub fn line_count(&self) -> usize {
        self.entries().len()
    }

    /// As [`Lab::longest_outage`], counting only outages ended by a line after the first
    /// `from_line` lines.
    pub fn longest_outage_since(&self, resource: &str, from_line: usize) -> (std::time::Duration, String) {
        let text = std::fs::read_to_string(&self.ledger).unwrap_or_default();
        let mut holders: Vec<String> = Vec::new();
        let mut down_since: Option<f64> = None;
        let mut last_time = 0.0_f64;
        let mut longest = (0.0_f64, String::new());
        for (index, line) in text.lines().enumerate() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let time = words
                .get(3)
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap_or(last_time);
            last_time = time;
            match (words.first(), words.get(1), words.get(2)) {
                (Some(node), Some(&"start"), Some(r)) if *r == resource => {
                    if let Some(since) = down_since.take() {
                        if index >= from_line && time - since > longest.0 {
                            longest = (time - since, line.to_owned());
                        }
                    }
                    holders.push(node.to_string());
                }
                (Some(node), Some(event), Some(r)) if *r == resource || *event == "off" => {
                    let before = holders.len();
                    holders.retain(|holder| holder != node);
                    if before > 0 && holders.is_empty() {
                        down_since = Some(time);
                    }
                }
                _ => {}
            }
        }
        (std::time::Duration::from_secs_f64(longest.0.max(0.0)), longest.1)
    }

    /// `node` lost its power: everything it ran is gone (its running markers too, so that a
    /// node started again does not find its resources running), and the ledger says so
    /// ("NODE off all").
    pub fn power_off(&self, node: &str) {
        use std::io::Write;
        if let Ok(entries) = std::fs::read_dir(&self.state) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{node}."))
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.ledger)
            .expect("ledger");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        writeln!(file, "{node} off all {now:.6}").expect("ledger");
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

    /// The nodes `resource` runs on now, by the ledger ("off" ends everything on a node).
    pub fn holders(&self, resource: &str) -> std::collections::BTreeSet<String> {
        let mut holders = std::collections::BTreeSet::new();
        for (node, event, name) in self.entries() {
            match event.as_str() {
                "start" if name == resource => {
                    holders.insert(node);
                }
                "off" => {
                    holders.remove(&node);
                }
                _ if name == resource => {
                    holders.remove(&node);
                }
                _ => {}
            }
        }
        holders
    }

    /// Waits until `resource` runs on `node` and nowhere else; panics with the ledger after
    /// [`crate::PATIENCE`].
    pub async fn wait_for_running(&self, resource: &str, node: &str) {
        let wanted = std::collections::BTreeSet::from([node.to_owned()]);
        let seen = tokio::time::timeout(crate::PATIENCE, async {
            // The ledger file gives no notice to wait on.
            while self.holders(resource) != wanted {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            seen.is_ok(),
            "{resource} never ran on {node} alone: {:?}",
            self.events()
        );
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
