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

    /// Adds (`drop` true) or removes an iptables rule dropping the arriving packets that
    /// `matching` describes (`-p udp --dport 694 …`).
    pub fn drop_input(&self, drop: bool, matching: &[&str]) {
        let mut rule = vec!["iptables", if drop { "-A" } else { "-D" }, "INPUT"];
        rule.extend_from_slice(matching);
        rule.extend_from_slice(&["-j", "DROP"]);
        self.exec(&rule);
    }

    /// Drops that share of the UDP packets to `port` arriving in the namespace (iptables'
    /// statistic match), e.g. 0.2 for 20 %.
    pub fn drop_udp(&self, port: u16, probability: f64) {
        let (port, probability) = (port.to_string(), probability.to_string());
        self.drop_input(
            true,
            &[
                "-p",
                "udp",
                "--dport",
                &port,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
            ],
        );
    }

    /// Drops (`cut` true) or lets through again the ICMP echo replies to `address` (every
    /// address when `None`): the ping nodes go silent for it.
    pub fn cut_pings(&self, address: Option<&str>, cut: bool) {
        let mut matching = vec!["-p", "icmp", "--icmp-type", "echo-reply"];
        if let Some(address) = address {
            matching.extend_from_slice(&["-d", address]);
        }
        self.drop_input(cut, &matching);
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}
