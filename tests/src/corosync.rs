//! Corosync 3 nodes on one machine, for the `engine corosync` tests and benchmarks: one network
//! namespace per node with a veth pair to a bridge in a namespace of its own (10.99.0.N/24),
//! knet with crypto on (one `corosync-keygen` key), each instance in a mount namespace of its
//! own for /run (3.1.7 has no per-instance pid-file option) and with its own
//! `system.state_dir`. The heartbeat-rs node of the same name runs in the same network
//! namespace ([`CorosyncLab::wrapper`]): Corosync's IPC sockets are abstract, hence per
//! network namespace. Needs root and Debian's `corosync` package.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Namespace;

/// Corosync's token timeout in the lab (ms): the issue's comparison with deadtime 1 s.
pub const TOKEN_MS: u32 = 1000;

/// An address every node reaches on the bridge, for `ping` lines.
pub const PING_NODE: &str = "10.99.0.254";

/// One Corosync instance.
pub struct Instance {
    /// The node's name (nodelist `name`, and the heartbeat-rs node's).
    pub name: String,
    /// Its network namespace.
    pub namespace: Namespace,
    /// Its address on the bridge.
    pub address: String,
    conf: PathBuf,
    log: PathBuf,
    process: std::sync::Mutex<Option<Child>>,
}

/// N Corosync instances on a bridge.
pub struct CorosyncLab {
    /// The instances, node ids 1…N in this order.
    pub instances: Vec<Instance>,
    bridge: Namespace,
    dir: tempfile::TempDir,
}

/// Whether this machine can run the lab (the corosync binary is installed).
pub fn available() -> bool {
    Path::new("/usr/sbin/corosync").exists()
}

fn run(args: &[&str]) -> Result<String, String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?}: {}{}",
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        ))
    }
}

impl CorosyncLab {
    /// Namespaces, links, key and configuration for `names` (not started). `tag` keeps the
    /// namespaces of labs alive at once apart.
    pub fn new(names: &[&str], tag: &str) -> CorosyncLab {
        let dir = tempfile::Builder::new()
            .prefix("hb-lab-corosync-")
            .tempdir()
            .expect("tempdir");
        let bridge = Namespace::new(&format!("{tag}br"));
        bridge.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
        bridge.exec(&["ip", "link", "set", "br0", "up"]);
        // The bridge's own address answers pings: the lab's ping node (ipfail).
        bridge.exec(&["ip", "addr", "add", &format!("{PING_NODE}/24"), "dev", "br0"]);
        let key = dir.path().join("authkey");
        run(&["corosync-keygen", "-l", "-k", &key.display().to_string()])
            .unwrap_or_else(|e| panic!("corosync-keygen (apt-get install corosync): {e}"));
        let nodelist: String = names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                format!(
                    "    node {{\n        name: {name}\n        nodeid: {}\n        ring0_addr: 10.99.0.{}\n    }}\n",
                    index + 1,
                    index + 1
                )
            })
            .collect();
        let two_node = if names.len() == 2 { "    two_node: 1\n" } else { "" };
        // Corosync raises itself to realtime round-robin at top priority (sched_rr, on by
        // default), right for one instance per machine; dozens on the lab's two cores starve
        // one another (instances "not scheduled" for over a minute at 64): off beyond eight.
        let sched_rr = if names.len() > 8 { "no" } else { "yes" };
        let mut instances = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let namespace = Namespace::new(&format!("{tag}n{index}"));
            let port = format!("v{index}");
            namespace.exec(&[
                "ip",
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &bridge.name,
            ]);
            bridge.exec(&["ip", "link", "set", &port, "master", "br0"]);
            bridge.exec(&["ip", "link", "set", &port, "up"]);
            let address = format!("10.99.0.{}", index + 1);
            namespace.exec(&["ip", "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
            namespace.exec(&["ip", "link", "set", "eth0", "up"]);
            let node_dir = dir.path().join(name);
            std::fs::create_dir_all(node_dir.join("state")).expect("state dir");
            let conf = node_dir.join("corosync.conf");
            std::fs::write(
                &conf,
                format!(
                    "totem {{\n    version: 2\n    cluster_name: hbrs-lab\n    transport: knet\n    token: {TOKEN_MS}\n    crypto_cipher: aes256\n    crypto_hash: sha256\n    keyfile: {}\n}}\nnodelist {{\n{nodelist}}}\nquorum {{\n    provider: corosync_votequorum\n{two_node}}}\nlogging {{\n    to_stderr: yes\n    to_syslog: no\n    timestamp: on\n}}\nsystem {{\n    state_dir: {}\n    allow_knet_handle_fallback: yes\n    sched_rr: {sched_rr}\n}}\n",
                    key.display(),
                    node_dir.join("state").display()
                ),
            )
            .expect("corosync.conf");
            instances.push(Instance {
                name: (*name).to_owned(),
                namespace,
                address,
                conf,
                log: node_dir.join("corosync.log"),
                process: std::sync::Mutex::new(None),
            });
        }
        CorosyncLab {
            instances,
            bridge,
            dir,
        }
    }

    /// Starts instance `index`, behind `prefix` (a cgroup's, so that a power-off ends it
    /// too).
    pub fn start(&self, index: usize, prefix: &[String]) {
        let instance = &self.instances[index];
        let script = format!(
            "mount -t tmpfs none /run && mkdir -p /run/corosync && exec corosync -f -c {}",
            instance.conf.display()
        );
        let mut args: Vec<String> = prefix.to_vec();
        args.extend(
            [
                "ip",
                "netns",
                "exec",
                &instance.namespace.name,
                "unshare",
                "-m",
                "sh",
                "-c",
                &script,
            ]
            .map(str::to_owned),
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&instance.log)
            .expect("corosync log");
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start corosync");
        *instance.process.lock().expect("process") = Some(child);
    }

    /// Waits until instance `index` answers and its partition is quorate.
    pub fn wait_quorate(&self, index: usize, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let namespace = &self.instances[index].namespace.name;
        loop {
            let status = run(&["ip", "netns", "exec", namespace, "corosync-quorumtool", "-s"]);
            match &status {
                Ok(text)
                    if text
                        .lines()
                        .any(|l| l.starts_with("Quorate:") && l.contains("Yes")) =>
                {
                    return Ok(())
                }
                _ if Instant::now() > deadline => {
                    return Err(format!(
                        "{}'s Corosync not quorate within {within:?}: {status:?}; log: {}",
                        self.instances[index].name,
                        self.log(index)
                    ))
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The members instance `index` sees (corosync-quorumtool's list), by name.
    pub fn members(&self, index: usize) -> Vec<String> {
        let namespace = &self.instances[index].namespace.name;
        run(&["ip", "netns", "exec", namespace, "corosync-quorumtool", "-l"])
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                (words.len() >= 3 && words[0].parse::<u32>().is_ok()).then(|| words[2].to_owned())
            })
            .collect()
    }

    /// Instance `index`'s pid (Corosync's own: the lab's wrappers exec it).
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.instances[index].process.lock().ok()?.as_ref().map(Child::id)
    }

    /// Instance `index`'s log so far.
    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(&self.instances[index].log).unwrap_or_default()
    }

    /// The command prefix that runs a program in instance `index`'s network namespace.
    pub fn wrapper(&self, index: usize) -> Vec<String> {
        self.instances[index]
            .namespace
            .wrapper()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Kills instance `index` with SIGKILL (a crash of Corosync alone).
    pub fn kill(&self, index: usize) {
        if let Some(mut child) = self.instances[index].process.lock().expect("process").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops instance `index` as its unit would (SIGTERM), waiting for it.
    pub fn stop(&self, index: usize) {
        if let Some(mut child) = self.instances[index].process.lock().expect("process").take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs a program in instance `index`'s namespace and returns what it printed.
    pub fn exec(&self, index: usize, args: &[&str]) -> Result<String, String> {
        let mut full = vec![
            "ip",
            "netns",
            "exec",
            self.instances[index].namespace.name.as_str(),
        ];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Cuts (`cut` true) or restores what instance `index` hears (`into`) and what it sends
    /// (`out_of`).
    pub fn isolate(&self, index: usize, into: bool, out_of: bool, cut: bool) {
        let namespace = &self.instances[index].namespace;
        let action = if cut { "-A" } else { "-D" };
        if into {
            namespace.exec(&["iptables", action, "INPUT", "-i", "eth0", "-j", "DROP"]);
        }
        if out_of {
            namespace.exec(&["iptables", action, "OUTPUT", "-o", "eth0", "-j", "DROP"]);
        }
    }

    /// Drops (or stops dropping) the ping node's echo replies to instance `index`.
    pub fn cut_pings(&self, index: usize, cut: bool) {
        let action = if cut { "-A" } else { "-D" };
        self.instances[index].namespace.exec(&[
            "iptables", action, "INPUT", "-p", "icmp", "-s", PING_NODE, "-j", "DROP",
        ]);
    }

    /// Removes every cut.
    pub fn heal(&self) {
        for instance in &self.instances {
            instance.namespace.exec(&["iptables", "-F", "INPUT"]);
            instance.namespace.exec(&["iptables", "-F", "OUTPUT"]);
        }
    }

    /// The lab's directory (configuration, key, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bridge's namespace.
    pub fn bridge(&self) -> &Namespace {
        &self.bridge
    }
}

impl Drop for CorosyncLab {
    fn drop(&mut self) {
        for index in 0..self.instances.len() {
            self.stop(index);
        }
    }
}
