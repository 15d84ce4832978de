//! Network namespaces for tests that cut, drop or filter traffic without touching the host:
//! nodes started inside one share its loopback (127.0.0.x) and are reached from the test over
//! their bus sockets, which live in the file system. Needs root.

use std::process::Command;

/// A network namespace with `lo` up, deleted on drop.
pub struct Namespace {
    /// Its name (`ip netns` name).
    pub name: String,
}

fn run(args: &[&str]) -> Result<(), String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Namespace {
    /// Creates `hbrs-TAG-PID`; panics with the reason when that is impossible (not root).
    pub fn new(tag: &str) -> Namespace {
        let name = format!("hbrs-{tag}-{}", std::process::id());
        let _ = run(&["ip", "netns", "del", &name]);
        run(&["ip", "netns", "add", &name]).unwrap_or_else(|e| panic!("network namespace (needs root): {e}"));
        let namespace = Namespace { name };
        namespace.exec(&["ip", "link", "set", "lo", "up"]);
        namespace
    }

    /// Runs a command inside; panics if it fails.
    pub fn exec(&self, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        run(&full).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The command prefix for [`crate::NodeBuilder::wrapper`].
    pub fn wrapper(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", self.name.as_str()]
    }

    /// Drops that share of the UDP packets to `port` arriving in the namespace (iptables'
    /// statistic match), e.g. 0.2 for 20 %.
    pub fn drop_udp(&self, port: u16, probability: f64) {
        self.exec(&[
            "iptables",
            "-A",
            "INPUT",
            "-p",
            "udp",
            "--dport",
            &port.to_string(),
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &probability.to_string(),
            "-j",
            "DROP",
        ]);
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}
