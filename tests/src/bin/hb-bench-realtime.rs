//! ha.cf's `realtime` under a load that CFS fairness does not absorb (issue #21, item 8): per
//! core, several busy loops at nice -20 (each weighs 87 times a nice-0 daemon), and memory
//! pressure on the nodes' own memory cgroup (a limit just above what the nodes use, and a
//! reader streaming a larger file through the page cache inside the same cgroup, so
//! reclaim keeps evicting the nodes' unlocked pages). One two-node cluster per candidate
//! deadtime (keepalive a quarter of it) with `realtime on` and one with `realtime off`, all
//! under the same load at once, watched for `--minutes N` (default 10). A false death is any
//! node declared dead: nobody is killed here.
//!
//! Needs root (a memory cgroup, nice -20); cgroup v2 (`memory.high`) or v1
//! (`memory.limit_in_bytes`), whichever holds the memory controller.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hb_lab::report::{record, Target};
use hb_lab::{start_cluster, wait_peer_status};
use hbapi::comm::CommProxy;

const CANDIDATES_MS: [u64; 6] = [50, 100, 150, 200, 300, 500];
const BUSY_PER_CORE: usize = 8;
/// The limit above what the nodes use once started: less than the streamed file (512 MiB),
/// so that every pass of the reader makes the cgroup reclaim.
const HEADROOM: u64 = 48 << 20;

/// A memory cgroup the nodes and the reader run in.
struct MemoryCgroup {
    path: PathBuf,
    v2: bool,
}

impl MemoryCgroup {
    fn create() -> MemoryCgroup {
        let v2_root = Path::new("/sys/fs/cgroup");
        let v2 = std::fs::read_to_string(v2_root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
        let parent = if v2 {
            v2_root.to_path_buf()
        } else {
            // v1: under this process's own memory cgroup (a container may own only that).
            let own = std::fs::read_to_string("/proc/self/cgroup")
                .unwrap_or_default()
                .lines()
                .find_map(|l| {
                    l.split_once(":memory:")
                        .map(|(_, p)| p.trim_start_matches('/').to_owned())
                })
                .expect("no memory cgroup (v1 or v2) for this process");
            Path::new("/sys/fs/cgroup/memory").join(own)
        };
        let path = parent.join(format!("hb-bench-realtime-{}", std::process::id()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e} (needs root)", path.display()));
        MemoryCgroup { path, v2 }
    }

    fn usage(&self) -> u64 {
        let file = if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        std::fs::read_to_string(self.path.join(file))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn limit(&self, bytes: u64) {
        let file = if self.v2 {
            "memory.high"
        } else {
            "memory.limit_in_bytes"
        };
        std::fs::write(self.path.join(file), bytes.to_string()).expect("set the memory limit");
    }

    fn wrapper(&self) -> Vec<String> {
        hb_lab::faults::enter_cgroup(&self.path)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        for _ in 0..500 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Drops the page cache of the node's binaries, so that the pages the nodes fault in are
/// charged to their cgroup (and reclaimed there) rather than to whoever read them first.
fn uncache(binaries: &[&str]) {
    for name in binaries {
        if let Ok(file) = std::fs::File::open(hb_lab::bin(name)) {
            let _ =
                nix::fcntl::posix_fadvise(&file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let minutes = hb_lab::report::option("minutes", 10);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cgroup = MemoryCgroup::create();
    uncache(&["heartbeat", "hbcomm", "crmd", "lrmd", "stonithd"]);

    // Written before any node runs (its writeback would stall them all at once), then dropped
    // from the page cache so that every read charges the nodes' cgroup.
    let stream_file = tempfile::Builder::new()
        .prefix("hb-bench-realtime-")
        .tempfile_in(std::env::current_dir().expect("cwd"))
        .expect("pressure file");
    let stream_mib = 512;
    std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "status=none", "conv=fsync"])
        .arg(format!("of={}", stream_file.path().display()))
        .arg(format!("count={stream_mib}"))
        .status()
        .expect("dd");
    let _ = nix::fcntl::posix_fadvise(
        stream_file.as_file(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );

    let mut clusters = Vec::new();
    let mut watched = Vec::new();
    for realtime in [true, false] {
        for deadtime in CANDIDATES_MS {
            let keepalive = format!("{}ms", deadtime / 4);
            let wrapper = cgroup.wrapper();
            let nodes = start_cluster(&["alpha", "bravo"], |b| {
                let prefix: Vec<&str> = wrapper.iter().map(String::as_str).collect();
                b.timing(&keepalive, &format!("{deadtime}ms"), "10")
                    .ha_cf(if realtime { "realtime on" } else { "realtime off" })
                    .wrapper(&prefix)
            })
            .await;
            wait_peer_status(&nodes[0], "bravo", "active").await;
            wait_peer_status(&nodes[1], "alpha", "active").await;
            let mut streams = Vec::new();
            for node in &nodes {
                let proxy = CommProxy::new(&node.connection).await.expect("proxy");
                streams.push(proxy.receive_node_status_changed().await.expect("subscribe"));
            }
            watched.push(((realtime, deadtime), futures_util::stream::select_all(streams)));
            clusters.push(nodes);
        }
    }

    let nodes_bytes = cgroup.usage();
    let limit = nodes_bytes + HEADROOM;
    cgroup.limit(limit);
    let mut load: Vec<std::process::Child> = Vec::new();
    let mut reader = cgroup.wrapper();
    // At the busy loops' priority, or they would starve it and the pressure with it.
    reader.extend([
        "nice".into(),
        "-n".into(),
        "-20".into(),
        "sh".into(),
        "-c".into(),
        "while :; do cat \"$0\" > /dev/null; done".into(),
    ]);
    reader.push(stream_file.path().display().to_string());
    load.push(
        std::process::Command::new(&reader[0])
            .args(&reader[1..])
            .spawn()
            .expect("page-cache reader"),
    );
    load.extend(hb_lab::report::busy_loops(cores * BUSY_PER_CORE, -20));
    println!(
        "realtime: {} nodes using {} MiB in one memory cgroup limited to {} MiB; a reader streaming {} MiB through it; {} busy loops at nice -20 on {cores} cores; {minutes} min",
        clusters.len() * 2,
        nodes_bytes >> 20,
        limit >> 20,
        stream_mib,
        cores * BUSY_PER_CORE
    );

    let window = Duration::from_secs(minutes * 60);
    let begun = Instant::now();
    let keys: Vec<(bool, u64)> = watched.iter().map(|(key, _)| *key).collect();
    let mut counts = vec![0u32; keys.len()];
    let mut merged = futures_util::stream::select_all(
        watched
            .into_iter()
            .enumerate()
            .map(|(index, (_, stream))| stream.map(move |signal| (index, signal))),
    );
    while begun.elapsed() < window {
        if let Ok(Some((index, signal))) =
            tokio::time::timeout(window.saturating_sub(begun.elapsed()), merged.next()).await
        {
            if signal.args().is_ok_and(|a| a.new == "dead") {
                counts[index] += 1;
            }
        }
    }
    // The longest gap either node of each cluster saw, read while the load still runs.
    let mut longest_ms = Vec::new();
    for nodes in &clusters {
        let mut longest = 0;
        for node in nodes {
            match CommProxy::new(&node.connection)
                .await
                .expect("proxy")
                .heartbeat_timing()
                .await
            {
                Ok(timing) => {
                    longest = timing
                        .nodes
                        .iter()
                        .map(|n| n.longest_gap_ms)
                        .fold(longest, u64::max)
                }
                Err(error) => println!("realtime: {}: no heartbeat timing: {error}", node.node),
            }
        }
        longest_ms.push(longest);
    }
    for child in &mut load {
        let _ = child.kill();
        let _ = child.wait();
    }
    let reclaimed = if cgroup.v2 {
        String::new()
    } else {
        std::fs::read_to_string(cgroup.path.join("memory.failcnt"))
            .map(|c| format!(", the limit was hit {} times", c.trim()))
            .unwrap_or_default()
    };
    drop(clusters);
    println!("realtime: load stopped{reclaimed}");
    for (((realtime, deadtime), count), longest) in keys.iter().zip(&counts).zip(&longest_ms) {
        println!(
            "realtime {}: deadtime {deadtime} ms (keepalive {} ms): {count} false deaths, longest gap between two heartbeats {longest} ms ({} ms late)",
            if *realtime { "on " } else { "off" },
            deadtime / 4,
            longest.saturating_sub(deadtime / 4)
        );
    }
    for realtime in [true, false] {
        let lowest = keys
            .iter()
            .zip(&counts)
            .find(|((rt, _), count)| *rt == realtime && **count == 0)
            .map(|((_, deadtime), _)| *deadtime);
        let mode = if realtime { "on" } else { "off" };
        let name = format!(
            "lowest deadtime with no false death over {minutes} min, {BUSY_PER_CORE} busy loops per core at nice -20 and memory pressure, realtime {mode}"
        );
        let value = lowest.unwrap_or(1000) as f64;
        println!(
            "realtime {mode}: lowest deadtime without a false death: {}",
            lowest.map_or("none of 50–500 ms".to_owned(), |d| format!("{d} ms"))
        );
        let target = if realtime {
            Target::AtMost(300.0)
        } else {
            Target::None
        };
        record(&name, value, "ms", target, None);
        // How late the heartbeats came, beyond their keepalive, worst over the clusters that
        // lived through the window (a cluster with a false death has its gap cut short).
        let lateness = keys
            .iter()
            .zip(&counts)
            .zip(&longest_ms)
            .filter(|(((rt, _), count), _)| *rt == realtime && **count == 0)
            .map(|(((_, deadtime), _), longest)| longest.saturating_sub(deadtime / 4))
            .max()
            .unwrap_or(0);
        println!("realtime {mode}: heartbeats at most {lateness} ms late");
        record(
            &format!("longest heartbeat lateness under the same load, realtime {mode}"),
            lateness as f64,
            "ms",
            Target::None,
            None,
        );
    }
}
