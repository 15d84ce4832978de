//! The heartbeat-rs lab: complete nodes on one machine, each with its own directories, node
//! name and private bus, for integration tests, benchmarks and the demo.
//!
//! Everything here waits on events — the master's `READY=1` on a notify socket, bus signals —
//! never on fixed sleeps. Timeouts exist only so that a broken build fails instead of hanging.

pub mod container;
pub mod corosync;
pub mod faults;
pub mod groups;
pub mod ledger;
pub mod mixed;
pub mod netns;
pub mod report;
pub mod serial;
pub mod watchdog;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use hbapi::master::{ChildInfo, HeartbeatProxy};
use tokio::process::{Child, Command};

/// How long any single wait may take before the test is failed.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Path of a binary built from this workspace (same profile as the running test).
pub fn bin(name: &str) -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_hb-testchild").filter(|_| name == "hb-testchild") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` (or `cargo test --workspace`, which builds it)",
        path.display()
    );
    path
}

/// Which bus a node's master provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// The embedded busd.
    Busd,
    /// A spawned dbus-daemon.
    DbusDaemon,
}

/// A node to be started.
pub struct NodeBuilder {
    node: String,
    nodes: Vec<String>,
    extra_ha_cf: Vec<String>,
    bus: BusKind,
    master_args: Vec<String>,
    core_daemons: bool,
    wrapper: Vec<String>,
    bind: Option<String>,
    links: Vec<String>,
    timing: String,
    env: Vec<(String, String)>,
    haresources: String,
    scripts: Vec<(String, String)>,
    config_files: Vec<(String, String)>,
    ops: Vec<(String, hbapi::config::OpSettings)>,
    groups: Option<Vec<hbapi::config::ResourceGroup>>,
    freeha: Option<Duration>,
    freeha_service: Option<(Vec<(String, String)>, hbapi::config::OpSettings)>,
    bus_address: Option<String>,
    state_tmpfs: Option<String>,
}

impl NodeBuilder {
    /// A node named `node` in a two-node cluster with a loopback ucast link.
    pub fn new(node: &str) -> Self {
        NodeBuilder {
            node: node.to_owned(),
            nodes: vec![node.to_owned(), "peer".to_owned()],
            extra_ha_cf: Vec::new(),
            bus: BusKind::Busd,
            master_args: Vec::new(),
            core_daemons: false,
            wrapper: Vec::new(),
            bind: None,
            links: vec!["ucast lo 127.0.0.1".to_owned()],
            timing: "keepalive 200ms\ndeadtime 1\ninitdead 10\n".to_owned(),
            env: Vec::new(),
            haresources: String::new(),
            scripts: Vec::new(),
            config_files: Vec::new(),
            ops: Vec::new(),
            groups: None,
            freeha: None,
            freeha_service: None,
            bus_address: None,
            state_tmpfs: None,
        }
    }

    /// Resource groups given as the model (any class, e.g. OCF), written to the node's ha.toml
    /// like [`NodeBuilder::resource_ops`] does.
    pub fn groups(mut self, groups: Vec<hbapi::config::ResourceGroup>) -> Self {
        self.groups = Some(groups);
        self
    }

    /// Operation settings of one resource (monitor interval, migration threshold, …), which
    /// only ha.toml can express: the node then gets the ha.toml equivalent of its ha.cf and
    /// haresources with these settings (ha.toml wins over ha.cf when both are present).
    pub fn resource_ops(mut self, resource: &str, ops: hbapi::config::OpSettings) -> Self {
        self.ops.push((resource.to_owned(), ops));
        self
    }

    /// FreeHA's semantics (ha.toml's `style = "freeha"`) with this oops window.
    pub fn freeha(mut self, oops_timeout: Duration) -> Self {
        self.freeha = Some(oops_timeout);
        self
    }

    /// FreeHA's service `hasrv` as the only group, preferring the alphabetically first node:
    /// `scripts` (`starthasrv`, `stophasrv`, and `monitorhasrv` when given, `{node}`
    /// replaced) in the node's FREEHA_BINDIR, `NODE_DIR/freeha`.
    pub fn freeha_service(mut self, scripts: &[(&str, String)], ops: hbapi::config::OpSettings) -> Self {
        let scripts = scripts
            .iter()
            .map(|(name, body)| (name.to_string(), body.replace("{node}", &self.node)))
            .collect();
        self.freeha_service = Some((scripts, ops));
        self
    }

    /// The haresources file.
    pub fn haresources(mut self, text: &str) -> Self {
        self.haresources = text.to_owned();
        self
    }

    /// An executable heartbeat-class script in the node's resource.d; `{node}` in `body` is
    /// replaced by the node's name (a ledger can say who ran it).
    pub fn resource_script(mut self, name: &str, body: &str) -> Self {
        self.scripts
            .push((name.to_owned(), body.replace("{node}", &self.node)));
        self
    }

    /// A file in the node's configuration directory (`conf/OCF/Dummy/d1`, …); `{node}` in
    /// `text` is replaced by the node's name.
    pub fn config_file(mut self, path: &str, text: &str) -> Self {
        self.config_files
            .push((path.to_owned(), text.replace("{node}", &self.node)));
        self
    }

    /// Sets an environment variable for the master and so for every daemon it starts.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Starts the core daemons built beside `heartbeat` (hbcomm, …); without this the master
    /// supervises only its respawn lines.
    pub fn core_daemons(mut self) -> Self {
        self.core_daemons = true;
        self
    }

    /// Runs the master under a command prefix, e.g. `ip netns exec NS`.
    pub fn wrapper(mut self, prefix: &[&str]) -> Self {
        self.wrapper = prefix.iter().map(|s| s.to_string()).collect();
        self
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.node
    }

    /// Member list.
    pub fn nodes(mut self, nodes: &[&str]) -> Self {
        self.nodes = nodes.iter().map(|n| n.to_string()).collect();
        self
    }

    /// The address this node's hbcomm binds (several nodes on one host).
    pub fn bind(mut self, address: &str) -> Self {
        self.bind = Some(address.to_owned());
        self
    }

    /// Replaces the link lines.
    pub fn links(mut self, lines: Vec<String>) -> Self {
        self.links = lines;
        self
    }

    /// Replaces the keepalive/deadtime/initdead lines.
    pub fn timing(mut self, keepalive: &str, deadtime: &str, initdead: &str) -> Self {
        self.timing = format!("keepalive {keepalive}\ndeadtime {deadtime}\ninitdead {initdead}\n");
        self
    }

    /// Adds an ha.cf line.
    pub fn ha_cf(mut self, line: impl Into<String>) -> Self {
        self.extra_ha_cf.push(line.into());
        self
    }

    /// Adds `respawn root <hb-testchild> ARGS`.
    pub fn test_child(self, args: &str) -> Self {
        let line = format!("respawn root {} {args}", bin("hb-testchild").display());
        self.ha_cf(line)
    }

    /// Uses a bus that is already there (e.g. a dbus-daemon with the policy file) instead.
    pub fn bus_address(mut self, address: &str) -> Self {
        self.bus_address = Some(address.to_owned());
        self
    }

    /// Mounts a tmpfs of `size` (mount's `size=` option) on the state directory before the
    /// node starts, so that a test can fill it or make it read-only under the running node.
    /// Needs root.
    pub fn state_tmpfs(mut self, size: &str) -> Self {
        self.state_tmpfs = Some(size.to_owned());
        self
    }

    /// Chooses the bus the master provides.
    pub fn bus(mut self, bus: BusKind) -> Self {
        self.bus = bus;
        self
    }

    /// Passes an option to the master.
    pub fn master_arg(mut self, arg: impl Into<String>) -> Self {
        self.master_args.push(arg.into());
        self
    }

    /// The ha.cf text.
    pub fn ha_cf_text(&self) -> String {
        let mut text = format!(
            "# written by hb-lab\nnode {}\n{}\n{}auto_failback off\n",
            self.nodes.join(" "),
            self.links.join("\n"),
            self.timing
        );
        for line in &self.extra_ha_cf {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Writes the configuration and starts the master; returns once it said READY=1.
    pub async fn start(self) -> Node {
        self.start_with_authkeys("auth 1\n1 sha256 hb-lab-test-key\n")
            .await
    }

    /// Starts the master without waiting for it to be ready (it may never be): for tests of
    /// the start-up itself.
    pub async fn spawn_unready(self) -> Unready {
        let launched = self.launch("auth 1\n1 sha256 hb-lab-test-key\n");
        Unready {
            master: launched.master,
            _root: launched.root,
        }
    }

    /// As [`NodeBuilder::start`], with this authkeys text.
    pub async fn start_with_authkeys(self, authkeys_text: &str) -> Node {
        let Launched {
            node,
            root,
            config_dir,
            run_dir,
            state_dir,
            mounted,
            mut master,
            notify,
        } = self.launch(authkeys_text);
        // Until the node is handed out, a failure here must not leave the master running.
        let guard = TermOnDrop(master.id());
        let mut buffer = vec![0u8; 4096];
        let ready = tokio::select! {
            received = tokio::time::timeout(PATIENCE, async {
                loop {
                    let length = notify.recv(&mut buffer).await.expect("notify recv");
                    if String::from_utf8_lossy(&buffer[..length]).lines().any(|l| l == "READY=1") {
                        break;
                    }
                }
            }) => received.is_ok(),
            status = master.wait() => panic!("heartbeat exited before READY=1: {status:?}"),
        };
        assert!(ready, "heartbeat did not send READY=1 within {PATIENCE:?}");
        let address = std::fs::read_to_string(run_dir.join(hbapi::names::run_files::BUS_ADDRESS))
            .expect("bus.address")
            .trim()
            .to_owned();
        let connection = hbapi::bus::connect(&address)
            .await
            .expect("connect to the node's bus");
        std::mem::forget(guard);
        Node {
            node,
            mounted,
            state_dir,
            root,
            config_dir,
            run_dir,
            address,
            master,
            connection,
            corosync: None,
        }
    }

    /// Writes the node's directories and starts its master.
    fn launch(self, authkeys_text: &str) -> Launched {
        let root = tempfile::Builder::new()
            .prefix(&format!("hb-lab-{}-", self.node))
            .tempdir()
            .expect("tempdir");
        // Traversable as /etc, /run and /var/lib are: a respawn line run as hacluster must
        // reach the bus socket and its state directory.
        std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod node root");
        let config_dir = root.path().join("ha.d");
        let state_dir = root.path().join("state");
        let run_dir = root.path().join("run");
        std::fs::create_dir_all(&config_dir).expect("config dir");
        let mounted = self.state_tmpfs.as_ref().map(|size| {
            std::fs::create_dir_all(&state_dir).expect("state dir");
            let status = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
                .arg(&state_dir)
                .status()
                .expect("mount");
            assert!(
                status.success(),
                "mount tmpfs on {} (needs root)",
                state_dir.display()
            );
            state_dir.clone()
        });
        std::fs::write(config_dir.join("ha.cf"), self.ha_cf_text()).expect("ha.cf");
        std::fs::write(config_dir.join("haresources"), &self.haresources).expect("haresources");
        if !self.scripts.is_empty() {
            let resource_d = config_dir.join("resource.d");
            std::fs::create_dir_all(&resource_d).expect("resource.d");
            for (name, body) in &self.scripts {
                let path = resource_d.join(name);
                std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("script");
                std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .expect("chmod");
            }
        }
        for (path, text) in &self.config_files {
            let path = config_dir.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("config file dir");
            std::fs::write(&path, text).expect("config file");
        }
        let authkeys = config_dir.join("authkeys");
        std::fs::write(&authkeys, authkeys_text).expect("authkeys");
        std::fs::set_permissions(&authkeys, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");

        if !self.ops.is_empty()
            || self.groups.is_some()
            || self.freeha.is_some()
            || self.freeha_service.is_some()
        {
            let mut loaded = hbapi::config::load_classic(&config_dir).expect("lab configuration");
            if let Some(groups) = &self.groups {
                loaded.config.groups = groups.clone();
            }
            if let Some(oops_timeout) = self.freeha {
                loaded.config.style = hbapi::config::Style::FreeHa;
                loaded.config.oops_timeout = oops_timeout;
                // FreeHA's default: services that moved stay where they are.
                loaded.config.auto_failback = hbapi::config::AutoFailback::Off;
            }
            if let Some((scripts, ops)) = &self.freeha_service {
                let bindir = root.path().join("freeha");
                std::fs::create_dir_all(&bindir).expect("freeha bindir");
                for (name, body) in scripts {
                    let path = bindir.join(name);
                    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("script");
                    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                        .expect("chmod");
                }
                loaded.config.freeha_bindir = bindir;
                loaded.config.groups = vec![hbapi::config::ResourceGroup {
                    id: "hasrv".into(),
                    preferred_node: self.nodes.iter().min().cloned().unwrap_or_default(),
                    resources: vec![hbapi::config::Resource {
                        id: "hasrv".into(),
                        class: hbapi::config::AgentClass::FreeHa,
                        agent: "hasrv".into(),
                        args: Vec::new(),
                        params: Default::default(),
                        ops: *ops,
                    }],
                }];
            }
            for group in &mut loaded.config.groups {
                for resource in &mut group.resources {
                    if let Some((_, ops)) = self.ops.iter().find(|(id, _)| *id == resource.id) {
                        resource.ops = *ops;
                    }
                }
            }
            std::fs::write(
                config_dir.join("ha.toml"),
                hbapi::config::to_toml(&loaded.config, "authkeys"),
            )
            .expect("ha.toml");
        }

        let notify_path = root.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
        notify.set_nonblocking(true).expect("nonblocking");
        let notify = tokio::net::UnixDatagram::from_std(notify).expect("notify socket");

        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(bin("heartbeat"));
                command
            }
            None => Command::new(bin("heartbeat")),
        };
        command
            .arg("--config-dir")
            .arg(&config_dir)
            .arg("--node")
            .arg(&self.node)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--bus")
            .arg(self.bus_address.clone().unwrap_or_else(|| {
                match self.bus {
                    BusKind::Busd => "private",
                    BusKind::DbusDaemon => "dbus-daemon",
                }
                .to_owned()
            }))
            .args(&self.master_args)
            .args(if self.core_daemons {
                Vec::new()
            } else {
                let empty = root.path().join("no-daemons");
                std::fs::create_dir_all(&empty).expect("empty daemon dir");
                vec!["--daemon-dir".into(), empty.display().to_string()]
            })
            .env("NOTIFY_SOCKET", &notify_path)
            .env("HB_LOG_STDERR", "1")
            .env("HB_BIND_ADDRESS", self.bind.clone().unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        let master = command.spawn().expect("spawn heartbeat");
        Launched {
            node: self.node,
            root,
            config_dir,
            run_dir,
            state_dir,
            mounted,
            master,
            notify,
        }
    }
}

/// A node's master just started, and what it was given.
struct Launched {
    node: String,
    root: tempfile::TempDir,
    config_dir: PathBuf,
    run_dir: PathBuf,
    state_dir: PathBuf,
    mounted: Option<PathBuf>,
    master: Child,
    notify: tokio::net::UnixDatagram,
}

/// A master started by [`NodeBuilder::spawn_unready`]; SIGTERMed if still running when dropped.
pub struct Unready {
    master: Child,
    _root: tempfile::TempDir,
}

impl Unready {
    /// Its exit status, once it exits on its own (within the patience).
    pub async fn wait_exit(&mut self) -> ExitStatus {
        tokio::time::timeout(PATIENCE, self.master.wait())
            .await
            .expect("heartbeat did not exit")
            .expect("wait heartbeat")
    }

    /// SIGTERM, then its exit status (within the patience).
    pub async fn terminate(&mut self) -> ExitStatus {
        terminate_master(&mut self.master).await
    }
}

impl Drop for Unready {
    fn drop(&mut self) {
        if let Some(pid) = self.master.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// SIGTERM to a master, then its exit status (within the patience).
async fn terminate_master(master: &mut Child) -> ExitStatus {
    if let Some(pid) = master.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    tokio::time::timeout(PATIENCE, master.wait())
        .await
        .expect("heartbeat did not stop within the patience")
        .expect("wait heartbeat")
}

struct TermOnDrop(Option<u32>);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// Waits until `name` is owned on the bus by process `pid`.
pub async fn wait_name_owner(connection: &zbus::Connection, name: &str, pid: u32) {
    let dbus = zbus::fdo::DBusProxy::new(connection).await.expect("dbus proxy");
    let mut changes = dbus
        .receive_name_owner_changed_with_args(&[(0, name)])
        .await
        .expect("subscribe");
    let done = tokio::time::timeout(PATIENCE, async {
        loop {
            if name_owner_pid(connection, name).await == Some(pid) {
                return;
            }
            changes.next().await.expect("NameOwnerChanged stream ended");
        }
    })
    .await;
    assert!(done.is_ok(), "{name} not owned by pid {pid} within {PATIENCE:?}");
}

/// A running node.
pub struct Node {
    /// Its name.
    pub node: String,
    root: tempfile::TempDir,
    /// Its configuration directory.
    pub config_dir: PathBuf,
    /// Its run directory.
    pub run_dir: PathBuf,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// A tmpfs mounted on the state directory, unmounted when the node goes.
    mounted: Option<PathBuf>,
    /// Its bus address.
    pub address: String,
    master: Child,
    /// A connection to its bus.
    pub connection: zbus::Connection,
    /// The Corosync lab it runs on and its instance there ([`start_cluster`] on Corosync),
    /// dropped after the node has stopped.
    pub corosync: Option<(std::sync::Arc<corosync::CorosyncLab>, usize)>,
}

impl Drop for Node {
    /// A node still running when its test ends is stopped the way an admin would, and waited
    /// for (up to the patience), so that its daemons stop their resources and clean up before
    /// the node's directories go.
    fn drop(&mut self) {
        if let Ok(None) = self.master.try_wait() {
            if let Some(pid) = self.master.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = std::time::Instant::now() + PATIENCE;
            while matches!(self.master.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(path) = &self.mounted {
            let _ = std::process::Command::new("umount").arg("-l").arg(path).status();
        }
    }
}

impl Node {
    /// A scratch path inside the node's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The UDP port its ha.cf names (694 when it names none).
    pub fn udp_port(&self) -> u16 {
        std::fs::read_to_string(self.config_dir.join("ha.cf"))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("udpport ")?.trim().parse().ok())
            .unwrap_or(694)
    }

    /// The pid of a running child of the master.
    pub async fn child_pid(&self, name: &str) -> u32 {
        self.wait_child(name, |c| c.state == "running").await.pid
    }

    /// Calls a method on this node's bus as user `nobody` with `busctl call ARGS…` (the bus
    /// socket opened to everyone first, so that the daemon's own uid check is what decides);
    /// returns whether it succeeded and its stderr.
    pub async fn call_as_nobody(&self, args: &[&str]) -> (bool, String) {
        std::fs::set_permissions(
            self.run_dir.join("bus.sock"),
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .expect("chmod bus socket");
        busctl_as_nobody(&self.address, args).await
    }

    /// The master's pid.
    pub fn master_pid(&self) -> u32 {
        self.master.id().unwrap_or(0)
    }

    /// A proxy to the master.
    pub async fn master(&self) -> HeartbeatProxy<'static> {
        HeartbeatProxy::new(&self.connection).await.expect("master proxy")
    }

    /// Waits until the child `name` satisfies `condition`, by its state-change signals.
    pub async fn wait_child(&self, name: &str, condition: impl Fn(&ChildInfo) -> bool) -> ChildInfo {
        let proxy = self.master().await;
        let mut changes = proxy.receive_child_state_changed().await.expect("subscribe");
        let current = proxy.list_children().await.expect("list children");
        if let Some(child) = current.into_iter().find(|c| c.name == name && condition(c)) {
            return child;
        }
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(signal) = changes.next().await {
                let child = signal.args().expect("signal args").child;
                if child.name == name && condition(&child) {
                    return child;
                }
            }
            panic!("signal stream ended");
        })
        .await;
        match found {
            Ok(child) => child,
            Err(_) => panic!(
                "child {name} did not reach the expected state within {PATIENCE:?}; now: {:?}",
                proxy.list_children().await
            ),
        }
    }

    /// Kills the master and every child at once with SIGKILL, as a crash or power loss would
    /// (a child killed alone would just be respawned).
    pub async fn crash(&self) {
        // On Corosync the whole machine goes: its Corosync too.
        if let Some((lab, index)) = &self.corosync {
            lab.kill(*index);
        }
        let children = self.master().await.list_children().await.expect("children");
        let pids = std::iter::once(self.master_pid())
            .chain(children.iter().map(|c| c.pid))
            .filter(|pid| *pid != 0);
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// How this node's hbcomm sees `peer`.
    pub async fn peer(&self, peer: &str) -> hbapi::comm::NodeInfo {
        let comm = hbapi::comm::CommProxy::new(&self.connection)
            .await
            .expect("comm proxy");
        let nodes = comm.list_nodes().await.expect("list nodes");
        nodes
            .into_iter()
            .find(|n| n.name == peer)
            .unwrap_or_else(|| panic!("{} does not know {peer}", self.node))
    }

    /// Sends SIGTERM to the master and waits for it to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        terminate_master(&mut self.master).await
    }

    /// Waits for the master to exit on its own.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        tokio::time::timeout(PATIENCE, self.master.wait())
            .await
            .expect("heartbeat did not exit")
            .expect("wait")
    }

    /// Runs `heartbeat ARGS` against this node's directories and returns (exit code, stdout,
    /// stderr).
    pub async fn heartbeat_cli(&self, args: &[&str]) -> (i32, String, String) {
        let mut command = Command::new(bin("heartbeat"));
        command
            .arg("--config-dir")
            .arg(&self.config_dir)
            .arg("--node")
            .arg(&self.node)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .args(args);
        outcome(command).await
    }

    /// Runs one of the administration commands (`hb_standby`, `hb_cleanup`, …) against this
    /// node's bus and returns (exit code, stdout, stderr).
    pub async fn tool(&self, program: &str, args: &[&str]) -> (i32, String, String) {
        let mut command = Command::new(bin(program));
        command
            .args(args)
            .env(hbapi::names::env::BUS_ADDRESS, &self.address);
        outcome(command).await
    }
}

/// Runs `command` to its end: (exit code, stdout, stderr).
async fn outcome(mut command: Command) -> (i32, String, String) {
    let output = command.output().await.expect("run a command");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A cluster of complete nodes on one host: node i binds 127.0.0.(i+1) on a UDP port of its
/// own, with one ucast link to every node (each skips its own address).
///
/// With `HB_LAB_ENGINE=corosync` (and the `corosync` feature) the nodes run on Corosync
/// instead: one Corosync instance per node in a network namespace of its own
/// ([`corosync::CorosyncLab`]), `engine corosync`, no heartbeat links — the same tests on the
/// other engine.
pub async fn start_cluster(names: &[&str], configure: impl Fn(NodeBuilder) -> NodeBuilder) -> Vec<Node> {
    use std::sync::atomic::{AtomicU16, Ordering};
    if std::env::var("HB_LAB_ENGINE").is_ok_and(|engine| engine == "corosync") {
        return start_corosync_cluster(names, configure).await;
    }
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let port = 20_000 + (std::process::id() % 400) as u16 * 100 + NEXT.fetch_add(1, Ordering::Relaxed) % 100;
    let address = |index: usize| format!("127.0.0.{}", index + 1);
    let mut links = vec![format!("udpport {port}")];
    links.extend((0..names.len()).map(|index| format!("ucast lo {}", address(index))));
    let mut nodes = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let builder = NodeBuilder::new(name)
            .nodes(names)
            .core_daemons()
            .bind(&address(index))
            .links(links.clone());
        nodes.push(configure(builder).start().await);
    }
    nodes
}

/// [`start_cluster`] on Corosync (whatever `HB_LAB_ENGINE` says); each node's
/// [`Node::corosync`] is the lab and its instance.
pub async fn start_corosync_cluster(
    names: &[&str],
    configure: impl Fn(NodeBuilder) -> NodeBuilder,
) -> Vec<Node> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let tag = format!("c{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let lab = std::sync::Arc::new(corosync::CorosyncLab::new(names, &tag));
    for index in 0..names.len() {
        lab.start(index, &[]);
    }
    let lab_for_wait = lab.clone();
    let count = names.len();
    // Corosync's knet brings its links up pairwise: on two cores, tens of instances take
    // minutes, three take two seconds.
    let patience = Duration::from_secs(30 + 5 * count as u64);
    tokio::task::spawn_blocking(move || {
        for index in 0..count {
            lab_for_wait
                .wait_quorate(index, patience)
                .expect("Corosync quorate");
        }
    })
    .await
    .expect("wait for Corosync");
    let mut nodes = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let wrapper = lab.wrapper(index);
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        let builder = NodeBuilder::new(name)
            .nodes(names)
            .core_daemons()
            .links(Vec::new())
            .ha_cf("engine corosync")
            .wrapper(&wrapper);
        let mut node = configure(builder).start().await;
        node.corosync = Some((lab.clone(), index));
        nodes.push(node);
    }
    nodes
}

/// Waits until `node` sees `peer` with `status`, by hbcomm's signals.
pub async fn wait_peer_status(node: &Node, peer: &str, status: &str) {
    let proxy = hbapi::comm::CommProxy::new(&node.connection)
        .await
        .expect("comm proxy");
    let mut changes = proxy.receive_node_status_changed().await.expect("subscribe");
    let seen = |nodes: Vec<hbapi::comm::NodeInfo>| nodes.iter().any(|n| n.name == peer && n.status == status);
    if proxy.list_nodes().await.map(seen).unwrap_or(false) {
        return;
    }
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(signal) = changes.next().await {
            let args = signal.args().expect("args");
            if args.node == peer && args.new == status {
                return;
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "{} did not see {peer} {status} within {PATIENCE:?}: {:?}",
        node.node,
        proxy.list_nodes().await
    );
}

/// Reads a test child's ledger: `(event, pid)` per line.
pub fn ledger(path: &Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (event, pid) = line.split_once(' ')?;
            Some((event.to_owned(), pid.parse().ok()?))
        })
        .collect()
}

/// How many times a test child started, by its ledger.
pub fn starts(path: &Path) -> usize {
    ledger(path).iter().filter(|(event, _)| event == "start").count()
}

/// Pids of live processes whose process group is `pgid`.
pub fn processes_in_group(pgid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state ppid pgrp …
        let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.get(2).and_then(|f| f.parse::<u32>().ok()) == Some(pgid) && fields.first() != Some(&"Z") {
            found.push(pid);
        }
    }
    found
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU seconds a process has run, all its threads, from the scheduler's nanosecond counts
/// (/proc/PID/task/*/schedstat); `None` where the kernel keeps none.
fn scheduler_cpu(pid: u32) -> Option<f64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total as f64 / 1e9)
}

/// (CPU seconds, RSS in kB) of a process, for benchmarks. CPU comes from the scheduler's
/// nanosecond counts where the kernel has them (the clock-tick counts of /proc/PID/stat are
/// too coarse for an idle daemon's fraction of a second per minute).
pub fn process_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let cpu = fields.get(11).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (scheduler_cpu(pid).unwrap_or(cpu / clock_ticks()), rss)
}

/// `busctl call ARGS` on the bus at `address` as user nobody: whether it succeeded, and its
/// stderr.
pub async fn busctl_as_nobody(address: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "busctl"])
        .arg(format!("--address={address}"))
        .arg("call")
        .args(args)
        .output()
        .await
        .expect("setpriv busctl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The pid owning `name` on the bus.
pub async fn name_owner_pid(connection: &zbus::Connection, name: &str) -> Option<u32> {
    let dbus = zbus::fdo::DBusProxy::new(connection).await.ok()?;
    let name = zbus::names::BusName::try_from(name).ok()?;
    dbus.get_connection_unix_process_id(name).await.ok()
}

/// What a cluster did while it was held untouched ([`hold`]).
#[derive(Debug, Clone, Copy)]
pub struct Held {
    /// Nodes declared dead by any node (nothing was killed: each is a false death).
    pub deaths: u32,
    /// CPU seconds per minute of the stack's processes (every master and its children).
    pub stack_cpu_per_minute: f64,
    /// The same for the `others` passed in (e.g. Corosync's processes).
    pub others_cpu_per_minute: f64,
    /// How many stack processes were measured.
    pub stack_processes: usize,
    /// Resident memory of the stack's processes at the end, KiB.
    pub stack_rss_kib: u64,
    /// The same for the `others`.
    pub others_rss_kib: u64,
}

/// Watches `nodes` for `window` without touching them: every node status change to `dead`
/// any node reports is counted, and the CPU their processes (and `others`) use is measured.
pub async fn hold(nodes: &[Node], others: &[u32], window: Duration) -> Held {
    use futures_util::StreamExt;
    let mut streams = Vec::new();
    for node in nodes {
        let proxy = hbapi::comm::CommProxy::new(&node.connection)
            .await
            .expect("proxy");
        streams.push(proxy.receive_node_status_changed().await.expect("subscribe"));
    }
    let mut merged = futures_util::stream::select_all(streams);
    let mut stack = Vec::new();
    for node in nodes {
        stack.push(node.master_pid());
        for child in node.master().await.list_children().await.expect("children") {
            stack.push(child.pid);
        }
    }
    let cpu = |pids: &[u32]| pids.iter().map(|p| process_usage(*p).0).sum::<f64>();
    let (stack_before, others_before) = (cpu(&stack), cpu(others));
    let watch = std::time::Instant::now();
    let mut deaths = 0u32;
    while watch.elapsed() < window {
        if let Ok(Some(signal)) =
            tokio::time::timeout(window.saturating_sub(watch.elapsed()), merged.next()).await
        {
            if signal.args().is_ok_and(|a| a.new == "dead") {
                deaths += 1;
            }
        }
    }
    let per_minute = |now: f64, before: f64| (now - before) * 60.0 / watch.elapsed().as_secs_f64();
    let rss = |pids: &[u32]| pids.iter().map(|p| process_usage(*p).1).sum::<u64>();
    Held {
        deaths,
        stack_rss_kib: rss(&stack),
        others_rss_kib: rss(others),
        stack_cpu_per_minute: per_minute(cpu(&stack), stack_before),
        others_cpu_per_minute: per_minute(cpu(others), others_before),
        stack_processes: stack.len(),
    }
}
