//! What lrmd knows about each resource, kept in STATE_DIR/lrmd/ so that an lrmd that is
//! killed and respawned finds it again: the agent and parameters, the recurring monitor, the
//! last result of each action, and the operation that was running (with its pid, so that the
//! new lrmd can wait for it or kill it, and never runs it a second time).
//!
//! Two TOML files per resource, written in turn and rewritten in place, each ending with a
//! line that gives its generation and length: lrmd dying in the middle of a write leaves a
//! file that fails the check, and the other one (the previous generation) is used. Rewriting
//! in place instead of renaming a new file over the old one matters at scale: a new inode per
//! write made ext4's inode allocation most of lrmd's CPU time with a thousand resources.
//! The files are not fsync'd: they must survive lrmd, not the machine — after a power loss
//! nothing they describe is running any more, and crmd probes every resource when the node
//! comes back. (An fsync per operation was most of an operation's cost.)
//!
//! Records hold resource parameters, OCF passwords among them: the directory is private to
//! root (0700) and every file 0600; a directory or file an older version left readable is
//! made private when the store opens. The executor saves one resource from one writer at a
//! time (see `Executor::persist`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use hbapi::lrmd::{AgentId, OpResult};

/// An operation in flight, as persisted before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Its id.
    pub op_id: u64,
    /// Its action.
    pub action: String,
    /// The agent's pid (and process group).
    pub pid: u32,
    /// The agent's start time in /proc ticks (tells a reused pid apart).
    pub start_ticks: u64,
    /// When it started (seconds since the epoch).
    pub started: u64,
    /// Its timeout.
    pub timeout_ms: u32,
}

/// Everything persisted about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRecord {
    /// Its agent.
    pub agent: AgentId,
    /// Its parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Recurring monitor interval (0: none).
    #[serde(default)]
    pub monitor_interval_ms: u32,
    /// Recurring monitor timeout.
    #[serde(default)]
    pub monitor_timeout_ms: u32,
    /// Last result of each action (recurring monitors separate from one-shot ones).
    #[serde(default)]
    pub last: Vec<OpResult>,
    /// The operation running when this was written.
    #[serde(default)]
    pub pending: Option<Pending>,
}

impl ResourceRecord {
    /// A record for a resource seen for the first time.
    pub fn new(agent: AgentId) -> Self {
        ResourceRecord {
            agent,
            params: BTreeMap::new(),
            monitor_interval_ms: 0,
            monitor_timeout_ms: 0,
            last: Vec::new(),
            pending: None,
        }
    }

    /// Keeps `result` as the last of its action and interval.
    pub fn remember(&mut self, result: OpResult) {
        self.last
            .retain(|r| !(r.action == result.action && r.interval_ms == result.interval_ms));
        self.last.push(result);
        self.last
            .sort_by(|a, b| (&a.action, a.interval_ms).cmp(&(&b.action, b.interval_ms)));
    }

    /// Whether the history says the resource runs: its newest start, stop or monitor result
    /// (by finish time, then operation id) is a successful start, a monitor finding it
    /// running, or a stop that failed.
    pub fn believed_running(&self) -> bool {
        let newest = self
            .last
            .iter()
            .filter(|r| matches!(r.action.as_str(), "start" | "stop" | "monitor" | "status"))
            .max_by_key(|r| (r.finished, r.op_id));
        match newest {
            None => false,
            Some(result) if result.action == "stop" => !(result.status == "done" && result.rc == 0),
            Some(result) => result.status == "done" && result.rc == 0,
        }
    }

    /// The last result of `action` at `interval_ms`.
    pub fn last_of(&self, action: &str, interval_ms: u32) -> Option<&OpResult> {
        self.last
            .iter()
            .find(|r| r.action == action && r.interval_ms == interval_ms)
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StoreError {
    /// File or directory.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// The directory of records.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// The generation last written of each resource.
    generations: Arc<Mutex<HashMap<String, u64>>>,
}

/// The last line of a record file.
const TRAILER: &str = "# generation ";

/// The file of `resource`'s record in `slot` (0 or 1). The second slot's name ends in
/// `+.toml`, which [`file_name`] never produces (it escapes `+`).
fn slot_name(resource: &str, slot: u64) -> String {
    let name = file_name(resource);
    match slot {
        0 => name,
        _ => format!("{}+.toml", name.trim_end_matches(".toml")),
    }
}

/// A record file's text and its generation, if it is complete.
fn checked(text: &str) -> Option<(u64, &str)> {
    let body_end = text.strip_suffix('\n')?.rfind('\n').map_or(0, |i| i + 1);
    let (body, last) = text.split_at(body_end);
    let (generation, length) = last.strip_prefix(TRAILER)?.trim_end().split_once(" length ")?;
    (length.parse::<usize>().ok()? == body.len()).then_some((generation.parse().ok()?, body))
}

/// A resource id as a file name: bytes outside `A-Z a-z 0-9 _ - .` as `%XX` (Heartbeat ids
/// such as `IPaddr::10.0.0.1/24/eth0` contain `/`), and a leading `.` escaped too.
pub fn file_name(resource: &str) -> String {
    let mut name = String::with_capacity(resource.len() + 5);
    for (index, byte) in resource.bytes().enumerate() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-') || (byte == b'.' && index > 0) {
            name.push(byte as char);
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name.push_str(".toml");
    name
}

fn resource_of(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".toml")?;
    let mut bytes = Vec::with_capacity(stem.len());
    let mut chars = stem.bytes();
    while let Some(byte) = chars.next() {
        if byte == b'%' {
            let high = chars.next()?;
            let low = chars.next()?;
            let hex = [high, low];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(byte);
        }
    }
    String::from_utf8(bytes).ok()
}

impl Store {
    /// Opens (creating) `state_dir/lrmd`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let dir = state_dir.join("lrmd");
        let tightened = hbapi::statefile::private_dir(&dir).map_err(|e| StoreError {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        if let hbapi::statefile::Tightened::From(mode) = tightened {
            tracing::warn!(
                "{}: was mode {mode:04o}, made private (0700): it holds resource parameters",
                dir.display()
            );
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if let Ok(hbapi::statefile::Tightened::From(mode)) =
                    hbapi::statefile::tighten(&path, hbapi::statefile::PRIVATE_FILE_MODE)
                {
                    tracing::warn!("{}: was mode {mode:04o}, made private (0600)", path.display());
                }
            }
        }
        Ok(Store {
            dir,
            generations: Arc::default(),
        })
    }

    /// Every record (the newest complete generation of each); files that cannot be read are
    /// reported and skipped (they are not deleted, so nothing is lost to a bug). A file cut
    /// short by lrmd's death is not a problem when the other one is complete.
    pub fn load_all(&self) -> (BTreeMap<String, ResourceRecord>, Vec<StoreError>) {
        let mut newest: BTreeMap<String, (u64, ResourceRecord)> = BTreeMap::new();
        let mut incomplete: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut problems = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return (BTreeMap::new(), problems);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let resource = match file.strip_suffix("+.toml") {
                Some(stem) => resource_of(&format!("{stem}.toml")),
                None => resource_of(&file),
            };
            let Some(resource) = resource else { continue };
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    problems.push(StoreError {
                        path,
                        message: error.to_string(),
                    });
                    continue;
                }
            };
            let Some((generation, body)) = checked(&text) else {
                incomplete.insert(resource, path);
                continue;
            };
            match toml::from_str::<ResourceRecord>(body) {
                Ok(record) => {
                    if newest.get(&resource).is_none_or(|(g, _)| *g < generation) {
                        newest.insert(resource, (generation, record));
                    }
                }
                Err(error) => problems.push(StoreError {
                    path,
                    message: error.to_string(),
                }),
            }
        }
        for (resource, path) in incomplete {
            if !newest.contains_key(&resource) {
                problems.push(StoreError {
                    path,
                    message: "incomplete record (no valid generation trailer)".into(),
                });
            }
        }
        if let Ok(mut generations) = self.generations.lock() {
            for (resource, (generation, _)) in &newest {
                generations.insert(resource.clone(), *generation);
            }
        }
        let records = newest.into_iter().map(|(r, (_, record))| (r, record)).collect();
        (records, problems)
    }

    /// Writes one record, over the older of its two files.
    pub fn save(&self, resource: &str, record: &ResourceRecord) -> Result<(), StoreError> {
        let generation = {
            let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
            let generation = generations.entry(resource.to_owned()).or_insert(0);
            *generation += 1;
            *generation
        };
        let path = self.dir.join(slot_name(resource, generation % 2));
        let error = |e: &dyn std::fmt::Display| StoreError {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut text = toml::to_string(record).map_err(|e| error(&e))?;
        let length = text.len();
        text.push_str(&format!("{TRAILER}{generation} length {length}\n"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(hbapi::statefile::PRIVATE_FILE_MODE)
            .open(&path)
            .map_err(|e| error(&e))?;
        file.write_all(text.as_bytes()).map_err(|e| error(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_round_trip_and_odd_ids_are_safe_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut record = ResourceRecord::new(AgentId {
            class: "heartbeat".into(),
            provider: String::new(),
            agent: "IPaddr".into(),
        });
        record
            .params
            .insert("1".into(), "10.0.0.1/24/eth0 $(x)\n\"q\"".into());
        record.pending = Some(Pending {
            op_id: 7,
            action: "start".into(),
            pid: 42,
            start_ticks: 1234,
            started: 1_700_000_000,
            timeout_ms: 20_000,
        });
        record.remember(OpResult {
            op_id: 3,
            resource: "r".into(),
            action: "monitor".into(),
            interval_ms: 0,
            status: "done".into(),
            rc: 7,
            output: "not running\n".into(),
            duration_ms: 5,
            finished: 1_700_000_000,
        });
        for id in ["IPaddr::10.0.0.1/24/eth0", "../../etc/passwd", ".hidden", "plain"] {
            assert!(!file_name(id).contains('/'), "{id}");
            assert!(!file_name(id).starts_with('.'), "{id}");
            assert_eq!(resource_of(&file_name(id)).as_deref(), Some(id));
            store.save(id, &record).unwrap();
        }
        let (loaded, problems) = store.load_all();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(loaded.len(), 4);
        assert_eq!(loaded["IPaddr::10.0.0.1/24/eth0"], record);
    }

    #[test]
    fn records_are_private_and_an_older_readable_store_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let lrmd = dir.path().join("lrmd");
        // As an older lrmd left it: a world-readable directory and record.
        std::fs::create_dir(&lrmd).unwrap();
        std::fs::set_permissions(&lrmd, std::fs::Permissions::from_mode(0o755)).unwrap();
        let old = lrmd.join(file_name("old"));
        std::fs::write(&old, "").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(mode(&lrmd), 0o700);
        assert_eq!(mode(&old), 0o600);
        let mut record = ResourceRecord::new(AgentId {
            class: "ocf".into(),
            provider: "heartbeat".into(),
            agent: "Dummy".into(),
        });
        record.params.insert("passwd".into(), "s3cret".into());
        for _ in 0..2 {
            store.save("r", &record).unwrap();
        }
        for slot in 0..2 {
            assert_eq!(mode(&lrmd.join(slot_name("r", slot))), 0o600);
        }
    }

    #[test]
    fn a_damaged_record_is_reported_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let path = dir.path().join("lrmd").join(file_name("broken"));
        std::fs::write(&path, "agent = 3\n# generation 1 length 10\n").unwrap();
        let (loaded, problems) = store.load_all();
        assert!(loaded.is_empty());
        assert_eq!(problems.len(), 1);
        assert!(path.exists());
    }

    #[test]
    fn a_write_cut_short_falls_back_to_the_previous_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut record = ResourceRecord::new(AgentId {
            class: "ocf".into(),
            provider: "heartbeat".into(),
            agent: "Dummy".into(),
        });
        store.save("r", &record).unwrap();
        record.monitor_interval_ms = 10_000;
        store.save("r", &record).unwrap();
        // The second write, cut short by lrmd's death at every possible byte.
        let second = dir.path().join("lrmd").join(slot_name("r", 0));
        let full = std::fs::read(&second).unwrap();
        for cut in 0..full.len() {
            std::fs::write(&second, &full[..cut]).unwrap();
            let (loaded, _) = Store::open(dir.path()).unwrap().load_all();
            assert_eq!(loaded["r"].monitor_interval_ms, 0, "cut at {cut}");
        }
        std::fs::write(&second, &full).unwrap();
        let reopened = Store::open(dir.path()).unwrap();
        let (loaded, problems) = reopened.load_all();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(loaded["r"].monitor_interval_ms, 10_000);
        // The next write goes over the older file and wins.
        record.monitor_interval_ms = 20_000;
        reopened.save("r", &record).unwrap();
        let (loaded, _) = Store::open(dir.path()).unwrap().load_all();
        assert_eq!(loaded["r"].monitor_interval_ms, 20_000);
    }
}
