//! Cgroups (v2) holding lab nodes: frozen, thawed or killed as one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The prefix that starts a command inside the cgroup at `path` (v1 or v2): `sh -c …` moving
/// itself in, then exec.
pub fn enter_cgroup(path: &std::path::Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "echo $$ > \"$0/cgroup.procs\" && exec \"$@\"".into(),
        path.display().to_string(),
    ]
}

/// A cgroup (v2) holding one lab node: frozen and thawed, or killed, as one.
pub struct Cgroup {
    /// Its directory.
    pub path: PathBuf,
}

/// The cgroup2 hierarchy mounted once more on a temporary directory: `ip netns exec` gives
/// the nodes a /sys of their own without the host's cgroup mounts, while a mount under /tmp
/// made before they start is seen by them at the same path — the power switch, run by a
/// node's stonithd, reaches the other nodes' cgroups there.
pub struct CgroupMount {
    dir: tempfile::TempDir,
}

impl CgroupMount {
    /// Mounts it; panics with the reason when that is impossible (not root, no cgroup2).
    #[allow(clippy::new_without_default)]
    pub fn new() -> CgroupMount {
        let dir = tempfile::Builder::new()
            .prefix("hb-lab-cgroup-")
            .tempdir()
            .expect("tempdir");
        let status = std::process::Command::new("mount")
            .args(["-t", "cgroup2", "none"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "mount -t cgroup2 (needs root and a kernel with cgroup v2)"
        );
        CgroupMount { dir }
    }

    /// A new cgroup `hbrs-TAG-PID` in it.
    pub fn cgroup(&self, tag: &str) -> Cgroup {
        let path = self.dir.path().join(format!("hbrs-{tag}-{}", std::process::id()));
        if !path.exists() {
            std::fs::create_dir(&path)
                .unwrap_or_else(|e| panic!("create {} (needs root): {e}", path.display()));
        }
        Cgroup { path }
    }
}

impl Cgroup {
    /// The processes in it.
    pub fn procs(&self) -> Vec<u32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Freezes (true) or thaws (false) every process in it.
    pub fn freeze(&self, frozen: bool) {
        std::fs::write(self.path.join("cgroup.freeze"), if frozen { "1" } else { "0" })
            .expect("cgroup.freeze");
    }

    /// Kills every process in it and waits until they are gone.
    pub async fn kill(&self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.procs().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The prefix that starts a command inside it.
    pub(super) fn wrapper(&self) -> Vec<String> {
        enter_cgroup(&self.path)
    }
}

impl Drop for CgroupMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("cgroup.freeze"), "0");
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        for _ in 0..500 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
