//! Debian 12 containers booted with systemd-nspawn, for testing what an administrator
//! installs: the .deb, its units under a real systemd, the daemons on the real system bus
//! with the shipped policy. One Debian root is built with debootstrap from the mirror apt
//! already uses (kept in `target/package-test/root` once complete); each container runs on an
//! overlay of it, so that its upper directory shows exactly what the container changed (what
//! a purge must leave behind). Each joins a network namespace of a [`crate::mixed::Wire`].
//! The test reaches a container's system bus from the host through
//! `/proc/PID/root/run/dbus/system_bus_socket` (same user namespace: root is root). Needs
//! root, debootstrap and systemd-container.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The mirror debootstrap fetches from: the one the machine's apt uses.
const MIRROR: &str = "http://deb.debian.org/debian";

/// Packages of the root beyond minbase: systemd as PID 1 and the system bus.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,iproute2";

fn require(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    assert!(
        found,
        "{program} is missing: install the Debian package {package} (scripts/test does)"
    );
}

/// Runs a command on the host; panics with its stderr if it fails.
pub fn host(args: &[&str]) -> Output {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        output.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A minimal Debian root with systemd, built once per target directory.
pub struct DebianRoot {
    /// Its directory.
    pub path: PathBuf,
}

impl DebianRoot {
    /// The root under `dir`, built with debootstrap unless an earlier run completed it.
    pub fn ensure(dir: &Path) -> DebianRoot {
        require("debootstrap", "debootstrap");
        require("systemd-nspawn", "systemd-container");
        let path = dir.join("root");
        let complete = dir.join("root.complete");
        if !complete.exists() {
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(dir).expect("package test dir");
            let path_text = path.display().to_string();
            let include = format!("--include={INCLUDE}");
            host(&[
                "debootstrap",
                "--variant=minbase",
                &include,
                "bookworm",
                &path_text,
                MIRROR,
            ]);
            std::fs::write(&complete, "").expect("mark root complete");
        }
        DebianRoot { path }
    }
}

/// A booted container, halted and unmounted on drop.
pub struct Container {
    /// Its host name (and node name).
    pub name: String,
    nspawn: Child,
    /// PID (on the host) of its systemd.
    pub init_pid: u32,
    /// The overlay's upper directory: every file the container created or changed.
    pub upper: PathBuf,
    merged: PathBuf,
}

impl Container {
    /// Boots `name` on an overlay of `root` under `work`, in the network namespace
    /// `netns`, with `binds` (host path, same path inside) shared; returns once systemd
    /// reports the boot finished.
    pub fn boot(root: &DebianRoot, work: &Path, name: &str, netns: &str, binds: &[&Path]) -> Container {
        let dir = work.join(name);
        let _ = Command::new("umount").arg(dir.join("merged")).output();
        let _ = std::fs::remove_dir_all(&dir);
        let (upper, scratch, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &scratch, &merged] {
            std::fs::create_dir_all(d).expect("overlay dirs");
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            root.path.display(),
            upper.display(),
            scratch.display()
        );
        host(&[
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            &options,
            &merged.display().to_string(),
        ]);
        std::fs::write(merged.join("etc/hostname"), format!("{name}\n")).expect("hostname");
        let mut command = Command::new("systemd-nspawn");
        command
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .args(["--register=no", "--keep-unit", "--console=passive", "-q"])
            .arg("-D")
            .arg(&merged)
            .arg(format!("--machine={name}"))
            .arg(format!("--network-namespace-path=/run/netns/{netns}"));
        for bind in binds {
            command.arg(format!("--bind={}", bind.display()));
        }
        let log = std::fs::File::create(dir.join("console.log")).expect("console log");
        let nspawn = command
            .arg("--boot")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn");
        let mut container = Container {
            name: name.to_owned(),
            init_pid: 0,
            nspawn,
            upper,
            merged,
        };
        container.init_pid = container.find_init();
        let mut state = String::new();
        for _ in 0..1200 {
            // "offline" (or nothing) until systemd listens; then --wait waits for the boot.
            let booted = container.run(&["systemctl", "is-system-running", "--wait"]);
            state = String::from_utf8_lossy(&booted.stdout).trim().to_owned();
            if !matches!(state.as_str(), "" | "offline") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            state == "running" || state == "degraded",
            "{name} did not boot: {state}; console: {}",
            std::fs::read_to_string(dir.join("console.log")).unwrap_or_default()
        );
        container
    }

    /// The container's systemd: the child of systemd-nspawn, once it has exec'd.
    fn find_init(&mut self) -> u32 {
        let nspawn = self.nspawn.id();
        for _ in 0..600 {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!(
                    "systemd-nspawn for {} exited: {status}: {}",
                    self.name,
                    std::fs::read_to_string(self.upper.with_file_name("console.log")).unwrap_or_default()
                );
            }
            let children =
                std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).unwrap_or_default();
            for child in children.split_whitespace() {
                let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return child.parse().expect("pid");
                }
            }
            // nspawn forks and execs systemd within milliseconds; nothing to subscribe to.
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{}: no systemd started within 30 s", self.name);
    }

    /// The command that runs `args` inside (every namespace of the container's systemd).
    pub fn command(&self, args: &[&str]) -> Command {
        let pid = self.init_pid.to_string();
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &pid, "-m", "-u", "-i", "-n", "-p", "--"])
            .args(args);
        command
    }

    /// Runs `args` inside.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("nsenter")
    }

    /// Runs `args` inside; panics with the output if it fails; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{}: {args:?} failed ({}): {}{}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs a shell script inside; panics if it fails; returns stdout.
    pub fn sh(&self, script: &str) -> String {
        self.ok(&["sh", "-ec", script])
    }

    /// Sends `signal` (`KILL`, `STOP`, …) to `pid` of the container's pid namespace.
    pub fn kill(&self, signal: &str, pid: u32) {
        self.sh(&format!("kill -{signal} {pid}"));
    }

    /// A file in the container, seen from the host (its /run included).
    pub fn file(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.init_pid)).join(path.trim_start_matches('/'))
    }

    /// A connection to the container's system bus, as root.
    pub async fn system_bus(&self) -> zbus::Connection {
        let address = format!(
            "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
            self.init_pid
        );
        hbapi::bus::connect(&address)
            .await
            .unwrap_or_else(|e| panic!("{}: system bus: {e}", self.name))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM to systemd-nspawn halts the container; a second one ends it at once.
        if let Ok(pid) = i32::try_from(self.nspawn.id()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..300 {
                if !matches!(self.nspawn.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        let _ = Command::new("umount").arg(&self.merged).output();
    }
}
